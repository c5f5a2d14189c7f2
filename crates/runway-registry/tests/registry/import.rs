//! Pull-through: registry B imports images from registry A (another in-process runway
//! registry acting as the upstream), once.

use crate::harness::*;
use runway_model::reference::ImageReference;
use runway_registry::test_util::build_layout;
use runway_registry::{RegistryError, UpstreamAuth};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Default)]
struct Counts {
    all: AtomicUsize,
    blob_gets: AtomicUsize,
}

/// An upstream registry that counts the requests it serves.
async fn upstream() -> (Server, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    let s = Server::start_with(
        |_| {},
        move |router| {
            router.layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    let c = c.clone();
                    async move {
                        c.all.fetch_add(1, Ordering::SeqCst);
                        if req.method() == http::Method::GET
                            && req.uri().path().contains("/blobs/sha")
                        {
                            c.blob_gets.fetch_add(1, Ordering::SeqCst);
                        }
                        next.run(req).await
                    }
                },
            ))
        },
    )
    .await;
    (s, counts)
}

fn basic(s: &Server) -> Option<UpstreamAuth> {
    Some(UpstreamAuth::Basic {
        username: s.key_id.clone(),
        password: s.secret.clone(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_is_imported_once_and_served_from_the_internal_store() {
    let (a, counts) = upstream().await;
    let b = Server::start().await;
    let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel();
    b.registry.on_push(move |e| {
        let _ = tx.send(e.clone());
    });
    let work = tempfile::tempdir().unwrap();
    let layout = build_layout(&work.path().join("src"), "v1", 2, 500_000).unwrap();
    let out = skopeo_copy(
        &layout.reference(),
        &format!("docker://{}/team/app:v1", a.host()),
        &["--preserve-digests", "--dest-creds", &a.creds()],
    )
    .await;
    success("push to the upstream", &out);
    let before = counts.blob_gets.load(Ordering::SeqCst);

    let reference = ImageReference::parse(&format!("{}/team/app:v1", a.host())).unwrap();
    let imported = b.registry.import(&reference, basic(&a)).await.unwrap();
    let repo = format!("127.0.0.1-{}/team/app", a.addr.port());
    assert_eq!(imported.repository, repo);
    assert_eq!(imported.digest, layout.manifest.digest);
    assert_eq!(imported.media_type, OCI_MANIFEST);
    assert_eq!(imported.index_digest, None);
    assert_eq!(imported.source, format!("{}/team/app:v1", a.host()));
    assert_eq!(imported.blobs_fetched, 3);
    assert_eq!(counts.blob_gets.load(Ordering::SeqCst) - before, 3);
    let m = b.registry.resolve_manifest(&repo, "v1").await.unwrap();
    assert_eq!(m.bytes.as_ref(), layout.manifest_bytes.as_slice());
    for layer in &layout.layers {
        let path = b.registry.blob_path(&layer.digest).unwrap();
        assert_eq!(
            std::fs::read(path).unwrap(),
            std::fs::read(layout.blob_path(&layer.digest)).unwrap()
        );
    }
    assert!(pushes.try_recv().is_err(), "imports do not fire push hooks");

    // Again by tag: the manifest is resolved upstream, no blob is downloaded.
    let again = b.registry.import(&reference, basic(&a)).await.unwrap();
    assert_eq!(again.digest, imported.digest);
    assert_eq!((again.blobs_fetched, again.bytes_fetched), (0, 0));
    assert_eq!(counts.blob_gets.load(Ordering::SeqCst) - before, 3);
    // By digest: the upstream is not asked anything at all.
    let requests = counts.all.load(Ordering::SeqCst);
    let pinned =
        ImageReference::parse(&format!("{}/team/app@{}", a.host(), layout.manifest.digest))
            .unwrap();
    let by_digest = b.registry.import(&pinned, basic(&a)).await.unwrap();
    assert_eq!(by_digest.digest, imported.digest);
    assert_eq!(counts.all.load(Ordering::SeqCst), requests);

    // Once imported, the image is pulled from B even with the upstream gone.
    drop(a);
    let back = work.path().join("back");
    let out = skopeo_copy(
        &format!("docker://{}/{repo}:v1", b.host()),
        &format!("oci:{}:v1", back.display()),
        &["--src-creds", &b.creds()],
    )
    .await;
    success("pull the imported image from B", &out);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(back.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], layout.manifest.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_failures_name_the_registry() {
    let b = Server::start().await;
    let unreachable = ImageReference::parse("127.0.0.1:1/team/app:v1").unwrap();
    let err = b.registry.import(&unreachable, None).await.unwrap_err();
    assert!(matches!(err, RegistryError::Upstream { .. }), "{err:?}");
    assert!(err.to_string().contains("registry 127.0.0.1:1"), "{err}");

    let (a, _) = upstream().await;
    let http = a.http();
    push_small_image(&http, "private", "v1").await;
    let reference = ImageReference::parse(&format!("{}/private:v1", a.host())).unwrap();
    let wrong = Some(UpstreamAuth::Basic {
        username: a.key_id.clone(),
        password: "wrong".into(),
    });
    let err = b.registry.import(&reference, wrong).await.unwrap_err();
    assert!(err.to_string().contains(&a.host()), "{err}");
    let err = b.registry.import(&reference, None).await.unwrap_err();
    assert!(err.to_string().contains(&a.host()), "{err}");
    let missing = ImageReference::parse(&format!("{}/private:nope", a.host())).unwrap();
    let err = b.registry.import(&missing, basic(&a)).await.unwrap_err();
    assert!(err.to_string().contains(&a.host()), "{err}");

    // Anonymous import from a repository that allows anonymous pull.
    a.registry
        .set_anonymous_pull("private", true)
        .await
        .unwrap();
    let imported = b.registry.import(&reference, None).await.unwrap();
    assert_eq!(imported.blobs_fetched, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_platform_image_imports_the_host_platform_only() {
    let (a, _) = upstream().await;
    let http = a.http();
    let (host_manifest, host_digest) = push_small_image(&http, "multi", "host").await;
    let (other_manifest, other_digest) = push_small_image(&http, "multi", "other").await;
    let other_layer = serde_json::from_slice::<serde_json::Value>(&other_manifest).unwrap()["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let platform = runway_registry::host_platform();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": other_digest, "size": other_manifest.len(),
             "platform": {"architecture": "s390x", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": host_digest, "size": host_manifest.len(),
             "platform": {"architecture": platform.architecture, "os": "linux"}},
        ],
    })
    .to_string();
    let r = http
        .put_manifest(
            "multi",
            "latest",
            "application/vnd.oci.image.index.v1+json",
            index.as_bytes(),
        )
        .await;
    assert_eq!(r.status(), 201);

    let b = Server::start().await;
    let reference = ImageReference::parse(&format!("{}/multi", a.host())).unwrap();
    let imported = b.registry.import(&reference, basic(&a)).await.unwrap();
    assert_eq!(imported.digest, host_digest);
    assert_eq!(imported.index_digest, Some(sha256(index.as_bytes())));
    assert_eq!(imported.blobs_fetched, 2);
    assert!(
        b.registry.blob_path(&other_layer).is_none(),
        "the other platform is not fetched"
    );
    let m = b
        .registry
        .resolve_manifest(&imported.repository, "latest")
        .await
        .unwrap();
    assert_eq!(m.digest, host_digest);
}
