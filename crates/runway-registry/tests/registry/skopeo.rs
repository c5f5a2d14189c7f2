//! skopeo copies OCI layouts into the registry and back, digests preserved.

use crate::harness::*;
use runway_registry::test_util::{Layout, build_layout};
use std::collections::BTreeSet;

fn index_digest(dir: &std::path::Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn all_digests(layout: &Layout) -> BTreeSet<String> {
    layout
        .layers
        .iter()
        .chain([&layout.config, &layout.manifest])
        .map(|b| b.digest.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_a_layout_in_and_back_with_digests_preserved() {
    let s = Server::start().await;
    let work = tempfile::tempdir().unwrap();
    let layout = build_layout(&work.path().join("src"), "v1", 3, 300_000).unwrap();
    let dest = format!("docker://{}/team/app:v1", s.host());
    let creds = s.creds();

    let out = skopeo_copy(
        &layout.reference(),
        &dest,
        &["--preserve-digests", "--dest-creds", &creds],
    )
    .await;
    success("skopeo copy in", &out);

    let out = run(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &creds,
            &dest,
        ],
    )
    .await;
    assert_eq!(
        success("skopeo inspect --raw", &out).as_bytes(),
        layout.manifest_bytes.as_slice(),
        "the registry returns the exact manifest bytes"
    );
    let out = run(
        "skopeo",
        &["inspect", "--tls-verify=false", "--creds", &creds, &dest],
    )
    .await;
    let info: serde_json::Value = serde_json::from_str(&success("skopeo inspect", &out)).unwrap();
    assert_eq!(info["Digest"], layout.manifest.digest);
    let layers: Vec<String> = info["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = layout.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(layers, expected);
    // Stored once each: layers, config, manifest.
    assert_eq!(s.blob_files().len(), all_digests(&layout).len());

    // And back, by tag and by digest.
    let back = work.path().join("back");
    let out = skopeo_copy(
        &dest,
        &format!("oci:{}:v1", back.display()),
        &["--preserve-digests", "--src-creds", &creds],
    )
    .await;
    success("skopeo copy out", &out);
    assert_eq!(index_digest(&back), layout.manifest.digest);
    for digest in all_digests(&layout) {
        let (_, hex) = digest.split_once(':').unwrap();
        let copied = std::fs::read(back.join("blobs/sha256").join(hex)).unwrap();
        let original = std::fs::read(layout.blob_path(&digest)).unwrap();
        assert!(
            copied == original,
            "blob {digest} differs after the round trip"
        );
    }
    let by_digest = format!("docker://{}/team/app@{}", s.host(), layout.manifest.digest);
    let back2 = work.path().join("back2");
    let out = skopeo_copy(
        &by_digest,
        &format!("oci:{}:x", back2.display()),
        &["--src-creds", &creds],
    )
    .await;
    success("skopeo copy by digest", &out);
    assert_eq!(index_digest(&back2), layout.manifest.digest);

    // Registry to registry within runway (cross-repository mounts or uploads).
    let out = skopeo_copy(
        &dest,
        &format!("docker://{}/team/copy:v1", s.host()),
        &["--src-creds", &creds, "--dest-creds", &creds],
    )
    .await;
    success("skopeo copy between repositories", &out);
    let out = run(
        "skopeo",
        &[
            "list-tags",
            "--tls-verify=false",
            "--creds",
            &creds,
            &format!("docker://{}/team/copy", s.host()),
        ],
    )
    .await;
    let tags: serde_json::Value = serde_json::from_str(&success("skopeo list-tags", &out)).unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["v1"]));
    assert_eq!(s.blob_files().len(), all_digests(&layout).len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_pushing_the_same_image_at_once_both_succeed() {
    let s = Server::start().await;
    let work = tempfile::tempdir().unwrap();
    let layout = build_layout(&work.path().join("src"), "v1", 3, 2_000_000).unwrap();
    let creds = s.creds();
    let src = layout.reference();
    let flags = ["--dest-creds", creds.as_str()];
    let dests = ["app:a", "app:b", "other:c"].map(|t| format!("docker://{}/{t}", s.host()));
    let (a, b, c) = tokio::join!(
        skopeo_copy(&src, &dests[0], &flags),
        skopeo_copy(&src, &dests[1], &flags),
        skopeo_copy(&src, &dests[2], &flags),
    );
    success("push a", &a);
    success("push b", &b);
    success("push c", &c);
    assert_eq!(
        s.blob_files().len(),
        all_digests(&layout).len(),
        "{:?}",
        s.blob_files()
    );
    for (repo, tag) in [("app", "a"), ("app", "b"), ("other", "c")] {
        let m = s.registry.resolve_manifest(repo, tag).await.unwrap();
        assert_eq!(m.digest, layout.manifest.digest);
        assert_eq!(m.bytes.as_ref(), layout.manifest_bytes.as_slice());
    }
    for blob in &layout.layers {
        let path = s.registry.blob_path(&blob.digest).unwrap();
        assert_eq!(
            std::fs::read(path).unwrap(),
            std::fs::read(layout.blob_path(&blob.digest)).unwrap()
        );
    }
    assert!(s.upload_entries().is_empty(), "{:?}", s.upload_entries());
}
