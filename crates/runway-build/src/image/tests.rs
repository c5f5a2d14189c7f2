use super::*;
use crate::test_util::{TestRegistry, write_files};

fn tiny_rootfs(t: &TestRegistry) -> std::path::PathBuf {
    let root = t.path("rootfs");
    write_files(
        &root,
        &[("bin/sh", "#!fake\n"), ("etc/os-release", "ID=test\n")],
    );
    root
}

#[test]
fn names_split_into_repository_and_tag() {
    assert_eq!(
        split_name("runtimes/python3").unwrap(),
        ("runtimes/python3".into(), "latest".into())
    );
    assert_eq!(
        split_name("runtimes/python3:v2").unwrap(),
        ("runtimes/python3".into(), "v2".into())
    );
    for bad in ["", "Runtimes/x", "x:", "x:-bad", "a//b", "x y"] {
        assert!(split_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn derived_configs() {
    let base = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/bin", "LANG=C"], "Entrypoint": ["/entry"], "Cmd": ["base"], "Labels": {"a": "b"}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]},
        "history": [{"created_by": "base"}]
    });
    let layer = |d: &str| NewLayer {
        file: LayerFile {
            path: "/x".into(),
            digest: format!("sha256:{d}"),
            diff_id: format!("sha256:{d}{d}"),
            size: 1,
        },
        created_by: format!("made {d}"),
    };
    let run = RunSettings {
        cmd: Some(vec!["/bin/sh".into(), "-c".into(), "exec app".into()]),
        env: vec![
            ("LANG".into(), "C.UTF-8".into()),
            ("PORT".into(), "8080".into()),
        ],
        working_dir: Some("/app".into()),
        exposed_port: Some(8080),
        labels: vec![("org.opencontainers.image.revision".into(), "abc".into())],
    };
    let c = derive_config(
        &base,
        &[layer("bb"), layer("cc")],
        &run,
        "2026-01-01T00:00:00Z",
    );
    assert_eq!(
        c["rootfs"]["diff_ids"],
        json!(["sha256:aa", "sha256:bbbb", "sha256:cccc"])
    );
    assert_eq!(c["history"].as_array().unwrap().len(), 3);
    assert_eq!(c["config"]["Cmd"], json!(["/bin/sh", "-c", "exec app"]));
    assert!(
        c["config"].get("Entrypoint").is_none(),
        "the base's entrypoint is dropped"
    );
    assert_eq!(
        c["config"]["Env"],
        json!(["PATH=/usr/bin", "LANG=C.UTF-8", "PORT=8080"])
    );
    assert_eq!(c["config"]["WorkingDir"], "/app");
    assert_eq!(c["config"]["ExposedPorts"], json!({"8080/tcp": {}}));
    assert_eq!(
        c["config"]["Labels"],
        json!({"a": "b", "org.opencontainers.image.revision": "abc"})
    );
    assert_eq!(c["created"], "2026-01-01T00:00:00Z");
    // Whatever the base holds, the result is a config.
    let odd = derive_config(
        &json!({"config": 5, "rootfs": "x", "history": {}}),
        &[layer("dd")],
        &run,
        "t",
    );
    assert_eq!(odd["rootfs"]["diff_ids"], json!(["sha256:dddd"]));
    assert_eq!(odd["os"], "linux");
    let odd = derive_config(&json!([1, 2]), &[], &RunSettings::default(), "t");
    assert!(odd.is_object());
}

#[tokio::test]
async fn an_imported_root_filesystem_is_a_base_image() {
    let t = TestRegistry::new();
    let root = tiny_rootfs(&t);
    let imported = import_rootfs(
        &t.registry,
        &root,
        "runtimes/test",
        &RootfsOptions::default(),
        &t.path("scratch"),
    )
    .await
    .unwrap();
    assert_eq!(
        (imported.repository.as_str(), imported.tag.as_str()),
        ("runtimes/test", "latest")
    );
    assert_eq!(
        std::fs::read_dir(t.path("scratch")).unwrap().count(),
        0,
        "the layer file is removed"
    );
    let own = vec!["127.0.0.1:5000".to_string()];
    let base = resolve_base(&t.registry, "runtimes/test:latest", &own)
        .await
        .unwrap();
    assert_eq!(base.digest, imported.digest);
    assert_eq!(base.layers.len(), 1);
    assert_eq!(base.layers[0]["digest"], imported.layer_digest);
    assert_eq!(base.config["config"]["Cmd"], json!(["/bin/sh"]));
    assert!(
        base.config["config"]["Env"][0]
            .as_str()
            .unwrap()
            .starts_with("PATH=")
    );
    assert_eq!(
        base.config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        1
    );
    // By the registry's address, the same.
    let again = resolve_base(&t.registry, "127.0.0.1:5000/runtimes/test", &own)
        .await
        .unwrap();
    assert_eq!(again.digest, imported.digest);
    // Importing the same directory again gives the same layer.
    let twice = import_rootfs(
        &t.registry,
        &root,
        "runtimes/test:v2",
        &RootfsOptions::default(),
        &t.path("scratch"),
    )
    .await
    .unwrap();
    assert_eq!(twice.layer_digest, imported.layer_digest);
}

#[tokio::test]
async fn missing_and_unreachable_base_images_say_what_to_do() {
    let t = TestRegistry::new();
    let e = resolve_base(&t.registry, "runtimes/none:latest", &[])
        .await
        .unwrap_err();
    assert!(matches!(e, ImageError::Base { .. }), "{e}");
    assert!(e.to_string().contains("import-rootfs"), "{e}");
    let e = resolve_base(&t.registry, "127.0.0.1:9/library/python:3.11", &[])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot pull"), "{e}");
    let e = resolve_base(&t.registry, "Bad Reference", &[])
        .await
        .unwrap_err();
    assert!(matches!(e, ImageError::Base { .. }), "{e}");
}

#[tokio::test]
async fn an_upstream_image_pulled_before_is_reused_without_the_upstream() {
    let t = TestRegistry::new();
    let root = tiny_rootfs(&t);
    // As if `docker.io/library/python:3.11-slim` had been pulled once already.
    let imported = import_rootfs(
        &t.registry,
        &root,
        "docker.io/library/python:3.11-slim",
        &RootfsOptions::default(),
        &t.path("scratch"),
    )
    .await
    .unwrap();
    let base = resolve_base(&t.registry, "docker.io/library/python:3.11-slim", &[])
        .await
        .unwrap();
    assert_eq!(base.digest, imported.digest);
    assert_eq!(base.repository, "docker.io/library/python");
}

#[tokio::test]
async fn images_are_pushed_on_top_of_a_base() {
    let t = TestRegistry::new();
    let root = tiny_rootfs(&t);
    import_rootfs(
        &t.registry,
        &root,
        "runtimes/test",
        &RootfsOptions::default(),
        &t.path("scratch"),
    )
    .await
    .unwrap();
    let base = resolve_base(&t.registry, "runtimes/test", &[])
        .await
        .unwrap();
    let src = t.path("src");
    write_files(&src, &[("app.py", "print(1)\n")]);
    let file = crate::layer::write_source_layer(&src, &t.path("out").join("s.tar.gz")).unwrap();
    let layers = [NewLayer {
        file,
        created_by: "COPY".into(),
    }];
    let config = derive_config(&base.config, &layers, &RunSettings::default(), "t");
    let digest = push_image(&t.registry, "svc", "abc", &base, &layers, &config)
        .await
        .unwrap();
    let m = t.registry.resolve_manifest("svc", "abc").await.unwrap();
    assert_eq!(m.digest, digest);
    let doc: Value = serde_json::from_slice(&m.bytes).unwrap();
    assert_eq!(doc["layers"].as_array().unwrap().len(), 2);
    assert_eq!(doc["layers"][0]["digest"], base.layers[0]["digest"]);
    assert_eq!(doc["layers"][1]["mediaType"], GZIP_LAYER);
}
