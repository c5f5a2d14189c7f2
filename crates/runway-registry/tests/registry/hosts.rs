//! The hosts the registry is known by, kept across addresses.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_served_under_before_are_remembered() {
    let s = Server::start().await;
    let first = vec!["registry.example.test".to_string(), "127.0.0.1:5000".into()];
    assert_eq!(s.registry.remember_hosts(&first).await.unwrap(), first);
    // Moved to another port: the new hosts first, the old ones still known.
    let known = s
        .registry
        .remember_hosts(&["127.0.0.1:5001".to_string()])
        .await
        .unwrap();
    assert_eq!(known[0], "127.0.0.1:5001");
    assert_eq!(known.len(), 3);
    assert!(first.iter().all(|h| known.contains(h)), "{known:?}");
    // Bounded: the oldest are forgotten.
    let many: Vec<String> = (0..runway_registry::REMEMBERED_HOSTS + 5)
        .map(|i| format!("10.0.0.{}:5000", i % 250))
        .collect();
    let known = s.registry.remember_hosts(&many[..10]).await.unwrap();
    assert_eq!(known.len(), 13);
    for chunk in many.chunks(10) {
        s.registry.remember_hosts(chunk).await.unwrap();
    }
    let known = s
        .registry
        .remember_hosts(&["new:1".to_string()])
        .await
        .unwrap();
    assert_eq!(known.len(), runway_registry::REMEMBERED_HOSTS);
    assert_eq!(known[0], "new:1");
}
