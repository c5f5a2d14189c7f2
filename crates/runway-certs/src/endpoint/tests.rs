use super::*;
use crate::tests::{handshake, master};

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| n.to_string()).collect()
}

#[test]
fn the_local_ca_issues_one_certificate_for_the_endpoints_names_and_addresses() {
    let data = tempfile::tempdir().unwrap();
    let store =
        CertStore::open(&data.path().join("certs"), master(data.path()), "apps.test").unwrap();
    let wanted = names(&["runway.example.test", "10.1.2.3", "localhost", "127.0.0.1"]);
    let cert = Arc::new(store.endpoint_certificate(&wanted).unwrap());
    let config = cert.server_config().unwrap();
    for name in ["runway.example.test", "10.1.2.3", "localhost", "127.0.0.1"] {
        assert_eq!(
            handshake(config.clone(), store.ca_pem(), name).unwrap(),
            Some(b"h2".to_vec()),
            "{name}"
        );
    }
    assert!(handshake(config, store.ca_pem(), "other.example.test").is_err());
    let raw = std::fs::read_to_string(data.path().join("certs").join(ENDPOINTS_STATE)).unwrap();
    assert!(!raw.contains("PRIVATE KEY"), "the key is stored sealed");

    // The same names next time: the same certificate; other names: a new one.
    let again = store.endpoint_certificate(&wanted).unwrap();
    assert_eq!(again.leaf(), cert.leaf());
    let more = store
        .endpoint_certificate(&names(&["registry.example.test", "localhost"]))
        .unwrap();
    assert_ne!(more.leaf(), cert.leaf());
    assert!(matches!(
        store.endpoint_certificate(&names(&["Bad Name"])),
        Err(CertsError::InvalidDomain(_))
    ));
}

#[test]
fn files_replaced_on_disk_are_served_from_the_next_handshake_and_bad_ones_are_not() {
    let data = tempfile::tempdir().unwrap();
    // Two operators' CAs, each issuing a certificate for the same name.
    let ca = |n: &str| {
        let dir = data.path().join(n);
        std::fs::create_dir(&dir).unwrap();
        CertStore::open(&dir, master(&dir), "x.test").unwrap()
    };
    let (first_ca, second_ca) = (ca("first"), ca("second"));
    let name = names(&["runway.example.test"]);
    let first = first_ca.inner.ca.issue(&name).unwrap();
    let second = second_ca.inner.ca.issue(&name).unwrap();
    let (cert_path, key_path) = (data.path().join("tls.crt"), data.path().join("tls.key"));
    std::fs::write(&cert_path, &first.chain_pem).unwrap();
    std::fs::write(&key_path, &first.key_pem).unwrap();

    let cert = Arc::new(EndpointCert::from_files(&cert_path, &key_path).unwrap());
    let config = cert.server_config().unwrap();
    let host = "runway.example.test";
    assert!(handshake(config.clone(), first_ca.ca_pem(), host).is_ok());
    assert!(handshake(config.clone(), second_ca.ca_pem(), host).is_err());

    // Replaced by renaming over the old files, as certbot and cert-manager do.
    let (tmp_cert, tmp_key) = (data.path().join("new.crt"), data.path().join("new.key"));
    std::fs::write(&tmp_cert, &second.chain_pem).unwrap();
    std::fs::write(&tmp_key, &second.key_pem).unwrap();
    std::fs::rename(&tmp_key, &key_path).unwrap();
    std::fs::rename(&tmp_cert, &cert_path).unwrap();
    assert!(handshake(config.clone(), second_ca.ca_pem(), host).is_ok());
    assert!(handshake(config.clone(), first_ca.ca_pem(), host).is_err());

    // A half-written certificate, then a key of another pair: the last good pair stays.
    std::fs::write(&cert_path, &second.chain_pem[..100]).unwrap();
    assert!(handshake(config.clone(), second_ca.ca_pem(), host).is_ok());
    std::fs::write(&cert_path, &second.chain_pem).unwrap();
    std::fs::write(&key_path, &first.key_pem).unwrap();
    assert!(handshake(config.clone(), second_ca.ca_pem(), host).is_ok());
    // Rewritten in place with the matching pair: served.
    std::fs::write(&cert_path, &first.chain_pem).unwrap();
    assert!(handshake(config, first_ca.ca_pem(), host).is_ok());

    // Unusable files are refused at start.
    std::fs::write(&key_path, "not a key").unwrap();
    assert!(EndpointCert::from_files(&cert_path, &key_path).is_err());
    assert!(EndpointCert::from_files(&data.path().join("missing"), &key_path).is_err());
}

#[test]
fn names_under_the_base_domain_get_its_certificate_as_it_is_replaced() {
    let data = tempfile::tempdir().unwrap();
    let store =
        CertStore::open(&data.path().join("certs"), master(data.path()), "apps.test").unwrap();
    let wanted = names(&[
        "api.apps.test",
        "a.b.apps.test",
        "runway.example.test",
        "127.0.0.1",
    ]);
    let mut cert = store.endpoint_certificate(&wanted).unwrap();
    assert_eq!(
        cert.share_base_domain(&store, &wanted),
        names(&["api.apps.test"])
    );
    let config = Arc::new(cert).server_config().unwrap();
    // The local CA's wildcard until another is saved.
    for name in ["api.apps.test", "a.b.apps.test", "runway.example.test"] {
        assert!(
            handshake(config.clone(), store.ca_pem(), name).is_ok(),
            "{name}"
        );
    }

    // The base domain's certificate from another CA (as the ACME issuer saves it): the
    // shared name is served with it from the next handshake, the others keep runway's.
    let public = {
        let dir = data.path().join("public");
        std::fs::create_dir(&dir).unwrap();
        CertStore::open(&dir, master(&dir), "x.test").unwrap()
    };
    let wildcard = names(&["*.apps.test", "apps.test"]);
    let issued = public.inner.ca.issue(&wildcard).unwrap();
    store
        .save_certificate(&wildcard, &issued.chain_pem, &issued.key_pem)
        .unwrap();
    assert!(handshake(config.clone(), public.ca_pem(), "api.apps.test").is_ok());
    assert!(handshake(config.clone(), store.ca_pem(), "api.apps.test").is_err());
    for name in ["a.b.apps.test", "runway.example.test"] {
        assert!(
            handshake(config.clone(), store.ca_pem(), name).is_ok(),
            "{name}"
        );
    }
}
