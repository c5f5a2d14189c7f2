use super::*;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};

pub(crate) fn master(dir: &Path) -> Arc<MasterKey> {
    Arc::new(MasterKey::load_or_create(&dir.join("master.key")).unwrap())
}

/// Runs a TLS handshake in memory between `server` and a client that trusts only
/// `ca_pem`, for `name`; the error if the client refuses.
pub(crate) fn handshake(
    server: Arc<rustls::ServerConfig>,
    ca_pem: &str,
    name: &str,
) -> Result<Option<Vec<u8>>, rustls::Error> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut client_config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_config.alpn_protocols = vec![b"h2".to_vec()];
    let mut client = ClientConnection::new(
        Arc::new(client_config),
        ServerName::try_from(name.to_string()).unwrap(),
    )
    .unwrap();
    let mut server = ServerConnection::new(server).unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        let mut slice = &buf[..];
        while !slice.is_empty() {
            server.read_tls(&mut slice).unwrap();
        }
        server.process_new_packets()?;
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        let mut slice = &buf[..];
        while !slice.is_empty() {
            client.read_tls(&mut slice).unwrap();
        }
        client.process_new_packets()?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(client.alpn_protocol().map(<[u8]>::to_vec));
        }
    }
    panic!("the handshake did not finish");
}

#[test]
fn first_start_creates_a_ca_and_a_wildcard_that_clients_trust() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("certs");
    let store = CertStore::open(&dir, master(data.path()), "runway.localhost").unwrap();
    assert!(store.created_ca());
    assert_eq!(store.ca_path(), dir.join("ca.pem"));
    let ca_pem = std::fs::read_to_string(store.ca_path()).unwrap();
    assert!(ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let config = store.server_config().unwrap();
    for name in [
        "hello-1234abcd.runway.localhost",
        "runway.localhost",
        "v2---hello-1234abcd.runway.localhost",
    ] {
        assert_eq!(
            handshake(config.clone(), &ca_pem, name).unwrap(),
            Some(b"h2".to_vec()),
            "{name}"
        );
    }
    // Two labels below the base domain are not covered by its wildcard.
    assert!(handshake(config.clone(), &ca_pem, "a.b.runway.localhost").is_err());
    // A client that does not trust the CA refuses.
    let other = tempfile::tempdir().unwrap();
    let other_store =
        CertStore::open(other.path(), master(other.path()), "runway.localhost").unwrap();
    assert!(handshake(config, other_store.ca_pem(), "x.runway.localhost").is_err());
}

#[test]
fn private_keys_are_never_stored_in_plaintext() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("certs");
    let store = CertStore::open(&dir, master(data.path()), "runway.localhost").unwrap();
    store.issue_local("www.example.com").unwrap();
    let mut files = 0;
    for path in [dir.clone(), dir.join(DOMAINS_DIR)] {
        for entry in std::fs::read_dir(path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                files += 1;
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(!text.contains("PRIVATE KEY"), "{}", path.display());
            }
        }
    }
    assert_eq!(files, 4, "ca.json, ca.pem, wildcard.json, one domain");
}

#[test]
fn a_restart_keeps_the_ca_and_reissues_the_wildcard_for_a_new_base_domain() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("certs");
    let key = master(data.path());
    let first = CertStore::open(&dir, key.clone(), "runway.localhost").unwrap();
    let ca = first.ca_pem().to_string();
    let wildcard = std::fs::read_to_string(dir.join(WILDCARD_STATE)).unwrap();
    drop(first);

    // ca.pem lost: rewritten from the sealed state, the same CA.
    std::fs::remove_file(dir.join(CA_FILE)).unwrap();
    let again = CertStore::open(&dir, key.clone(), "runway.localhost").unwrap();
    assert!(!again.created_ca());
    assert_eq!(again.ca_pem(), ca);
    assert_eq!(std::fs::read_to_string(dir.join(CA_FILE)).unwrap(), ca);
    assert_eq!(
        std::fs::read_to_string(dir.join(WILDCARD_STATE)).unwrap(),
        wildcard,
        "a valid wildcard is kept"
    );

    let moved = CertStore::open(&dir, key, "apps.example.com").unwrap();
    assert_eq!(moved.ca_pem(), ca);
    let config = moved.server_config().unwrap();
    assert!(handshake(config.clone(), &ca, "hello-1.apps.example.com").is_ok());
    // The default certificate is now the new domain's.
    assert!(handshake(config, &ca, "hello-1.runway.localhost").is_err());
}

#[test]
fn another_master_key_cannot_open_the_ca() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("certs");
    CertStore::open(&dir, master(data.path()), "runway.localhost").unwrap();
    let other = tempfile::tempdir().unwrap();
    let err = CertStore::open(&dir, master(other.path()), "runway.localhost").unwrap_err();
    assert!(matches!(err, CertsError::Secrets(_)), "{err}");
}

#[test]
fn custom_domains_are_served_by_sni_and_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("certs");
    let key = master(data.path());
    let store = CertStore::open(&dir, key.clone(), "runway.localhost").unwrap();
    let ca = store.ca_pem().to_string();
    assert!(handshake(store.server_config().unwrap(), &ca, "shop.example.com").is_err());
    store.issue_local("shop.example.com").unwrap();
    store.issue_local("*.example.org").unwrap();
    let config = store.server_config().unwrap();
    assert!(handshake(config.clone(), &ca, "shop.example.com").is_ok());
    assert!(handshake(config.clone(), &ca, "www.example.org").is_ok());
    drop(store);

    let store = CertStore::open(&dir, key, "runway.localhost").unwrap();
    let config = store.server_config().unwrap();
    assert!(handshake(config.clone(), &ca, "shop.example.com").is_ok());
    assert!(store.remove("shop.example.com").unwrap());
    assert!(!store.remove("shop.example.com").unwrap());
    assert!(handshake(config, &ca, "shop.example.com").is_err());
}

#[test]
fn bad_certificates_and_names_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("certs");
    let store = CertStore::open(&dir, master(data.path()), "runway.localhost").unwrap();
    let one = store.inner.ca.issue(&["one.example.com".into()]).unwrap();
    let two = store.inner.ca.issue(&["two.example.com".into()]).unwrap();
    // A key that belongs to another certificate.
    let err = store
        .save("one.example.com", &one.chain_pem, &two.key_pem)
        .unwrap_err();
    assert!(
        matches!(err, CertsError::InvalidCertificate { .. }),
        "{err}"
    );
    let err = store
        .save("one.example.com", "not pem", &one.key_pem)
        .unwrap_err();
    assert!(
        matches!(err, CertsError::InvalidCertificate { .. }),
        "{err}"
    );
    let err = store
        .save("one.example.com", &one.chain_pem, "")
        .unwrap_err();
    assert!(
        matches!(err, CertsError::InvalidCertificate { .. }),
        "{err}"
    );
    for bad in [
        "",
        "UPPER.example.com",
        "a..b",
        "-a.b",
        "a_b.c",
        "*.",
        "a.*.b",
    ] {
        assert!(
            matches!(store.issue_local(bad), Err(CertsError::InvalidDomain(_))),
            "{bad:?}"
        );
    }
    assert!(CertStore::open(&dir, master(data.path()), "Bad_Domain").is_err());
    assert!(
        store
            .save("one.example.com", &one.chain_pem, &one.key_pem)
            .is_ok()
    );
}

#[test]
fn a_corrupt_custom_certificate_is_skipped_not_fatal() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("certs");
    let key = master(data.path());
    let store = CertStore::open(&dir, key.clone(), "runway.localhost").unwrap();
    store.issue_local("ok.example.com").unwrap();
    std::fs::write(dir.join(DOMAINS_DIR).join("bad.example.com.json"), "{").unwrap();
    drop(store);
    let store = CertStore::open(&dir, key, "runway.localhost").unwrap();
    let ca = store.ca_pem().to_string();
    assert!(handshake(store.server_config().unwrap(), &ca, "ok.example.com").is_ok());
}

#[test]
fn refresh_reissues_a_wildcard_close_to_expiry() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("certs");
    let store = CertStore::open(&dir, master(data.path()), "runway.localhost").unwrap();
    let path = dir.join(WILDCARD_STATE);
    let before = std::fs::read_to_string(&path).unwrap();
    store.refresh().unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        before,
        "still valid: kept"
    );
    // Make the stored certificate look like it expires in a week.
    let mut stored: StoredCert = serde_json::from_str(&before).unwrap();
    stored.not_after =
        Some((time::OffsetDateTime::now_utc() + time::Duration::days(7)).unix_timestamp());
    write_json(&path, &stored).unwrap();
    store.refresh().unwrap();
    let after: StoredCert = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(
        after.not_after.unwrap()
            > (time::OffsetDateTime::now_utc() + time::Duration::days(300)).unix_timestamp()
    );
    assert_ne!(after.chain_pem, stored.chain_pem);
    let ca = store.ca_pem().to_string();
    assert!(handshake(store.server_config().unwrap(), &ca, "x-1.runway.localhost").is_ok());
}
