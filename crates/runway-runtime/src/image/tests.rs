use super::*;
use crate::test_util::{TarBuilder, write_layout};
use serde_json::json;

fn put(dir: &Path, data: &[u8]) -> String {
    let digest = sha256_digest(data);
    std::fs::write(dir.join("blobs/sha256").join(&digest[7..]), data).unwrap();
    digest
}

#[test]
fn resolves_a_manifest_with_its_config_and_layers() {
    let dir = tempfile::tempdir().unwrap();
    let layers = [
        TarBuilder::new().file("a", 0o644, b"1").finish(),
        TarBuilder::new().file("b", 0o644, b"2").finish(),
    ];
    let (layout, image) = write_layout(
        dir.path(),
        &layers,
        json!({"Entrypoint": ["/app"], "Cmd": ["--serve"], "Env": ["A=1"], "WorkingDir": "/srv", "User": "app"}),
        "v1",
    )
    .unwrap();
    assert_eq!(
        layout.image("x", Some("v1")).unwrap(),
        ImageRef {
            repository: "x".into(),
            ..image.clone()
        }
    );
    assert!(matches!(
        layout.image("x", Some("v2")),
        Err(ImageError::NotFound { .. })
    ));
    let resolved = resolve(&layout, &image).unwrap();
    assert_eq!(resolved.manifest_digest, image.digest);
    assert_eq!(resolved.config.entrypoint, Some(vec!["/app".to_string()]));
    assert_eq!(resolved.config.cmd, Some(vec!["--serve".to_string()]));
    assert_eq!(resolved.config.user.as_deref(), Some("app"));
    assert_eq!(resolved.layers.len(), 2);
    assert_eq!(
        resolved.layers[0].diff_id.as_deref(),
        Some(sha256_digest(&layers[0]).as_str())
    );
}

#[test]
fn an_index_resolves_to_its_linux_amd64_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, image) = write_layout(dir.path(), &[], json!({"Cmd": ["x"]}), "v1").unwrap();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256_digest(b"arm"), "size": 3,
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image.digest, "size": 1,
             "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    });
    let index_digest = put(dir.path(), &serde_json::to_vec(&index).unwrap());
    let resolved = resolve(
        &layout,
        &ImageRef {
            repository: "r".into(),
            digest: index_digest,
        },
    )
    .unwrap();
    assert_eq!(resolved.manifest_digest, image.digest);

    let only_arm = json!({"schemaVersion": 2, "manifests": [
        {"digest": sha256_digest(b"arm"), "platform": {"architecture": "arm64", "os": "linux"}}]});
    let digest = put(dir.path(), &serde_json::to_vec(&only_arm).unwrap());
    let err = resolve(
        &layout,
        &ImageRef {
            repository: "r".into(),
            digest,
        },
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::Unsupported(_)), "{err}");
}

#[test]
fn docker_schema_2_manifests_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, _) = write_layout(dir.path(), &[], json!({}), "v1").unwrap();
    let tar = TarBuilder::new().file("f", 0o644, b"x").finish();
    let layer = put(dir.path(), &crate::test_util::gzip(&tar));
    let config = put(
        dir.path(),
        &serde_json::to_vec(
            &json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&tar)]}}),
        )
        .unwrap(),
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config, "size": 1},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer, "size": 1}],
    });
    let digest = put(dir.path(), &serde_json::to_vec(&manifest).unwrap());
    let resolved = resolve(
        &layout,
        &ImageRef {
            repository: "r".into(),
            digest,
        },
    )
    .unwrap();
    assert_eq!(resolved.config.cmd, Some(vec!["/bin/true".to_string()]));
    assert_eq!(resolved.layers[0].digest, layer);
}

#[test]
fn bad_images_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, image) = write_layout(dir.path(), &[], json!({}), "v1").unwrap();
    // A digest that could walk the filesystem is refused before any read.
    for bad in ["sha256:../../etc/passwd", "md5:abc", "sha256:ABC"] {
        let err = resolve(
            &layout,
            &ImageRef {
                repository: "r".into(),
                digest: bad.into(),
            },
        )
        .unwrap_err();
        assert!(matches!(err, ImageError::BadDigest(_)), "{bad}: {err}");
    }
    // Content that does not match its digest.
    let path = dir.path().join("blobs/sha256").join(&image.digest[7..]);
    let original = std::fs::read(&path).unwrap();
    std::fs::write(&path, b"{}").unwrap();
    assert!(matches!(
        resolve(&layout, &image),
        Err(ImageError::DigestMismatch { .. })
    ));
    std::fs::write(&path, original).unwrap();
    // Another platform, an unknown layer type, garbage.
    let config = put(dir.path(), br#"{"architecture":"arm64","os":"linux"}"#);
    let m = json!({"schemaVersion": 2, "config": {"digest": config}, "layers": []});
    let digest = put(dir.path(), &serde_json::to_vec(&m).unwrap());
    assert!(matches!(
        resolve(
            &layout,
            &ImageRef {
                repository: "r".into(),
                digest
            }
        ),
        Err(ImageError::Unsupported(_))
    ));
    let config = put(dir.path(), br#"{"architecture":"amd64","os":"linux"}"#);
    let m = json!({"schemaVersion": 2, "config": {"digest": config},
        "layers": [{"mediaType": "application/x-strange", "digest": config}]});
    let digest = put(dir.path(), &serde_json::to_vec(&m).unwrap());
    assert!(matches!(
        resolve(
            &layout,
            &ImageRef {
                repository: "r".into(),
                digest
            }
        ),
        Err(ImageError::Unsupported(_))
    ));
    let digest = put(dir.path(), b"not json");
    assert!(matches!(
        resolve(
            &layout,
            &ImageRef {
                repository: "r".into(),
                digest
            }
        ),
        Err(ImageError::Invalid { .. })
    ));
    assert!(OciLayout::open(&dir.path().join("blobs")).is_err());
}
