use super::*;

#[test]
fn every_runtime_has_one_row_and_round_trips() {
    for r in Runtime::ALL {
        assert_eq!(TABLE.iter().filter(|i| i.runtime == r).count(), 1);
        assert_eq!(Runtime::from_name(r.name()), Some(r));
        assert_eq!(Runtime::from_api_name(r.api_name()), Some(r));
        r.check_version(r.default_version()).unwrap();
    }
    // Every API runtime the model accepts maps to one runway builds.
    for name in runway_model::validate::RUNTIMES {
        assert!(Runtime::from_api_name(name).is_some(), "{name}");
    }
    assert_eq!(Runtime::from_api_name("PHP_81"), Some(Runtime::Php8));
    assert_eq!(Runtime::from_name("python9"), None);
}

#[test]
fn version_policy() {
    Runtime::Python311.check_version("3.11").unwrap();
    Runtime::Python311.check_version("3.11.9").unwrap();
    assert!(Runtime::Python311.check_version("3.12").is_err());
    assert!(Runtime::Python311.check_version("3.1").is_err());
    Runtime::Python3.check_version("3.12.1").unwrap();
    assert!(Runtime::Python3.check_version("2.7").is_err());
    assert!(Runtime::Nodejs22.check_version("18").is_err());
    assert!(Runtime::Nodejs22.check_version("22.x").is_err());
    assert!(Runtime::Nodejs22.check_version("22;rm").is_err());
    assert!(Runtime::Nodejs22.check_version("").is_err());
}

#[test]
fn references_from_defaults_and_overrides() {
    let images = RuntimeImages::default();
    assert_eq!(
        images.reference(Runtime::Python3, None).unwrap(),
        "docker.io/library/python:3.11-slim"
    );
    assert_eq!(
        images.reference(Runtime::Nodejs22, Some("22.4.1")).unwrap(),
        "docker.io/library/node:22.4.1-slim"
    );
    assert!(images.reference(Runtime::Nodejs22, Some("20")).is_err());
    let overrides = HashMap::from([
        ("python3".to_string(), "runtimes/python3:latest".to_string()),
        (
            "NODEJS_22".to_string(),
            "registry.example.com/node:{version}".to_string(),
        ),
    ]);
    let images = RuntimeImages::new(&overrides).unwrap();
    assert_eq!(
        images.reference(Runtime::Python3, Some("3.11")).unwrap(),
        "runtimes/python3:latest"
    );
    assert_eq!(
        images.reference(Runtime::Nodejs22, None).unwrap(),
        "registry.example.com/node:22"
    );
    let bad = HashMap::from([("cobol".to_string(), "x".to_string())]);
    assert!(RuntimeImages::new(&bad).is_err());
}

#[test]
fn local_references() {
    let own = vec!["127.0.0.1:5000".to_string()];
    assert!(is_local_reference("runtimes/python3:latest", &own));
    assert!(is_local_reference("python3", &own));
    assert!(is_local_reference("127.0.0.1:5000/runtimes/python3", &own));
    assert!(!is_local_reference(
        "docker.io/library/python:3.11-slim",
        &own
    ));
    assert!(!is_local_reference("localhost:5001/x", &own));
    assert_eq!(
        split_local_reference("runtimes/python3:latest", &own),
        ("runtimes/python3".into(), "latest".into())
    );
    assert_eq!(
        split_local_reference("127.0.0.1:5000/team/py", &own),
        ("team/py".into(), "latest".into())
    );
    let d = format!("sha256:{}", "a".repeat(64));
    assert_eq!(
        split_local_reference(&format!("py@{d}"), &own),
        ("py".into(), d)
    );
}
