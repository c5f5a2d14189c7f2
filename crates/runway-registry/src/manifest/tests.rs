use super::*;

fn d(n: u8) -> String {
    format!("sha256:{}", hex::encode([n; 32]))
}

fn image(extra: &str) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":7}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":32}}]{extra}}}"#,
        d(1),
        d(2)
    )
}

#[test]
fn parses_an_oci_image_manifest() {
    let m = parse(Some(OCI_MANIFEST), image("").as_bytes()).unwrap();
    assert_eq!(m.kind, Kind::OciManifest);
    assert_eq!(m.config.as_ref().unwrap().size, 7);
    assert_eq!(m.layers.len(), 1);
    assert_eq!(m.blobs().count(), 2);
    assert_eq!(
        m.referrer_artifact_type(),
        Some("application/vnd.oci.image.config.v1+json")
    );
    // Parameters on the Content-Type are ignored; no header at all is fine too.
    parse(
        Some(&format!("{OCI_MANIFEST}; charset=utf-8")),
        image("").as_bytes(),
    )
    .unwrap();
    parse(None, image("").as_bytes()).unwrap();
}

#[test]
fn parses_subject_artifact_type_and_annotations() {
    let extra = format!(
        r#","artifactType":"application/vnd.example.sbom.v1","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":100}},"annotations":{{"a":"b"}}"#,
        d(9)
    );
    let m = parse(Some(OCI_MANIFEST), image(&extra).as_bytes()).unwrap();
    assert_eq!(m.subject.as_ref().unwrap().digest.to_string(), d(9));
    assert_eq!(
        m.referrer_artifact_type(),
        Some("application/vnd.example.sbom.v1")
    );
    assert_eq!(m.annotations.get("a").map(String::as_str), Some("b"));
}

#[test]
fn parses_indexes_and_docker_types() {
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_LIST}","manifests":[
            {{"mediaType":"{DOCKER_MANIFEST}","digest":"{}","size":10,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        d(3)
    );
    let m = parse(Some(DOCKER_MANIFEST_LIST), index.as_bytes()).unwrap();
    assert_eq!(m.kind, Kind::DockerManifestList);
    assert_eq!(m.manifests[0].platform.as_ref().unwrap().os, "linux");
    assert_eq!(m.referrer_artifact_type(), None);
    // Without mediaType, the fields tell an OCI index from an OCI manifest.
    let bare = r#"{"schemaVersion":2,"manifests":[]}"#.to_string();
    assert_eq!(parse(None, bare.as_bytes()).unwrap().kind, Kind::OciIndex);
    assert_eq!(
        parse(Some("application/json"), bare.as_bytes())
            .unwrap()
            .kind,
        Kind::OciIndex
    );
    // Foreign layers need not be in the registry.
    let foreign = image("").replace(
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    );
    let m = parse(None, foreign.as_bytes()).unwrap();
    assert_eq!(m.blobs().count(), 1);
}

#[test]
fn malformed_manifests_are_errors_not_panics() {
    let deep = "[".repeat(100_000);
    let huge_size = image("").replace("\"size\":7", "\"size\":18446744073709551615");
    let cases: Vec<(Option<&str>, String)> = vec![
        (None, String::new()),
        (None, "null".into()),
        (None, "[]".into()),
        (None, "\"manifest\"".into()),
        (None, "{".into()),
        (None, deep.clone()),
        (None, format!("{{\"schemaVersion\":{deep}")),
        (None, "\u{0}\u{ff}garbage".into()),
        (None, "{}".into()),
        (None, r#"{"schemaVersion":"2"}"#.into()),
        (None, r#"{"schemaVersion":2.5,"manifests":[]}"#.into()),
        (
            None,
            r#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#.into(),
        ),
        (None, r#"{"schemaVersion":2}"#.into()),
        (
            None,
            r#"{"schemaVersion":2,"mediaType":"text/html","manifests":[]}"#.into(),
        ),
        (Some(DOCKER_SCHEMA1[1]), image("")),
        (Some(OCI_INDEX), image("")),
        (
            Some("application/vnd.example+json"),
            image("").replace(&format!("\"mediaType\":\"{OCI_MANIFEST}\","), ""),
        ),
        (None, image("").replace("\"layers\"", "\"manifests\"")),
        (None, image(r#","manifests":[]"#)),
        (None, image("").replace(&d(2), "sha256:abc")),
        (None, image("").replace(&d(2), &d(2).to_uppercase())),
        (
            None,
            image("").replace(&d(2), "md5:d41d8cd98f00b204e9800998ecf8427e"),
        ),
        (None, image("").replace("\"size\":32", "\"size\":-1")),
        (None, image("").replace("\"size\":32", "\"size\":\"32\"")),
        (None, huge_size),
        (
            None,
            image("").replace("\"size\":7", "\"size\":7,\"size\":8"),
        ),
        (
            None,
            image("").replace("application/vnd.oci.image.config.v1+json", "no-slash"),
        ),
        (
            None,
            image("").replace("application/vnd.oci.image.config.v1+json", "a/b c"),
        ),
        (None, image(r#","subject":{"digest":"sha256:00"}"#)),
        (None, image(r#","subject":"sha256:00""#)),
        (None, image(r#","artifactType":"??""#)),
        (None, image(r#","annotations":{"a":1}"#)),
        (None, image("").replace("\"layers\":", "\"x\":")),
        (None, format!("{} trailing", image(""))),
    ];
    for (i, (ct, body)) in cases.iter().enumerate() {
        let result = parse(*ct, body.as_bytes());
        assert!(result.is_err(), "case {i} should be refused: {result:?}");
        let message = result.unwrap_err().to_string();
        assert!(message.len() < 600, "case {i}: message too long: {message}");
    }
}

#[test]
fn type_errors_say_what_is_wrong() {
    let mismatch = parse(Some(DOCKER_MANIFEST), image("").as_bytes()).unwrap_err();
    assert!(
        matches!(mismatch, ManifestError::TypeMismatch { .. }),
        "{mismatch}"
    );
    let bad = parse(None, image("").replace(&d(2), "sha256:abc").as_bytes()).unwrap_err();
    assert_eq!(
        bad.to_string(),
        "layers[0]: digest \"sha256:abc\" must have 64 lowercase hex digits"
    );
    let json = parse(None, br#"{"schemaVersion":2,"layers":"x"}"#).unwrap_err();
    assert!(json.to_string().contains("layers"), "{json}");
}
