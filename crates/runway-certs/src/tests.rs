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

/// The leaf certificate served for `name` (by SNI; `None`: no server name).
fn served_leaf(store: &CertStore, name: Option<&str>) -> Option<Vec<u8>> {
    let key = store.resolver().lookup(name)?;
    Some(key.cert.first()?.as_ref().to_vec())
}

fn leaf_of(chain_pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .as_ref()
        .to_vec()
}

#[test]
fn former_base_domains_are_the_default_hosts_domains_but_the_base_domain() {
    let hosts = [
        "hello-1234abcd.moved.localhost",
        "old-1234abcd.runway.localhost",
        "older-1234abcd.apps.example.com",
        "again-1234abcd.runway.localhost",
        "bare-1234abcd.localhost",
        "nodots",
        "bad-1.Upper.example",
        "bad-2.*.example",
        "bad-3..example",
    ];
    let former = former_base_domains("moved.localhost", hosts);
    assert_eq!(
        former.into_iter().collect::<Vec<_>>(),
        ["apps.example.com", "localhost", "runway.localhost"]
    );
    assert!(former_base_domains("moved.localhost", ["a-1.moved.localhost"]).is_empty());
    assert!(former_base_domains("moved.localhost", []).is_empty());
}

#[test]
fn a_former_base_domain_gets_a_local_wildcard_until_no_service_uses_it() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("certs");
    let key = master(data.path());
    drop(CertStore::open(&dir, key.clone(), "runway.localhost").unwrap());
    let store = CertStore::open(&dir, key, "moved.localhost").unwrap();
    let ca = store.ca_pem().to_string();
    let config = store.server_config().unwrap();
    let default = served_leaf(&store, None);
    assert!(handshake(config.clone(), &ca, "old-1.runway.localhost").is_err());

    let former = BTreeSet::from(["runway.localhost".to_string()]);
    store.serve_former_base_domains(&former).unwrap();
    for name in [
        "old-1.runway.localhost",
        "v2---old-1.runway.localhost",
        "runway.localhost",
        "new-1.moved.localhost",
        "moved.localhost",
    ] {
        assert!(handshake(config.clone(), &ca, name).is_ok(), "{name}");
    }
    assert_eq!(
        served_leaf(&store, None),
        default,
        "the default is still the base domain's"
    );
    let old = served_leaf(&store, Some("old-1.runway.localhost"));
    assert_ne!(old, default);
    // The same domains again: nothing is reissued.
    store.serve_former_base_domains(&former).unwrap();
    assert_eq!(served_leaf(&store, Some("old-1.runway.localhost")), old);

    // The last service under it is gone: so is its certificate.
    store.serve_former_base_domains(&BTreeSet::new()).unwrap();
    assert!(handshake(config.clone(), &ca, "old-1.runway.localhost").is_err());
    assert!(!store.serves("*.runway.localhost"));
    assert!(!store.serves("runway.localhost"));
    assert!(handshake(config, &ca, "new-1.moved.localhost").is_ok());
}

#[test]
fn a_saved_certificate_for_a_former_base_domain_keeps_winning() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("certs");
    let store = CertStore::open(&dir, master(data.path()), "apps.example.com").unwrap();
    let ca = store.ca_pem().to_string();
    // The wildcard a public CA issued while old.example.com was the base domain (here:
    // another runway's CA, which our clients do not trust), and a custom domain in it.
    let other = tempfile::tempdir().unwrap();
    let public = CertStore::open(
        &other.path().join("certs"),
        master(other.path()),
        "elsewhere.localhost",
    )
    .unwrap();
    let names = [
        "*.old.example.com".to_string(),
        "old.example.com".to_string(),
    ];
    let acme = public.inner.ca.issue(&names).unwrap();
    store
        .save_certificate(&names, &acme.chain_pem, &acme.key_pem)
        .unwrap();
    store.issue_local("shop.old.example.com").unwrap();
    let shop = served_leaf(&store, Some("shop.old.example.com"));
    let base = served_leaf(&store, Some("x-1.apps.example.com"));
    let default = served_leaf(&store, None);

    let former = BTreeSet::from(["old.example.com".to_string()]);
    store.serve_former_base_domains(&former).unwrap();
    for name in ["svc-1.old.example.com", "old.example.com"] {
        assert_eq!(
            served_leaf(&store, Some(name)),
            Some(leaf_of(&acme.chain_pem)),
            "{name}"
        );
    }
    assert_eq!(served_leaf(&store, Some("shop.old.example.com")), shop);
    assert_eq!(served_leaf(&store, Some("x-1.apps.example.com")), base);
    assert_eq!(served_leaf(&store, None), default);

    // Once the saved one is removed, the local CA's stands in at the next call.
    store.remove_certificate(&names).unwrap();
    store.serve_former_base_domains(&former).unwrap();
    let config = store.server_config().unwrap();
    assert!(handshake(config.clone(), &ca, "svc-1.old.example.com").is_ok());
    assert_eq!(served_leaf(&store, Some("shop.old.example.com")), shop);
    // A certificate saved for it later replaces the local one, and is not removed when
    // the domain is no longer used.
    store
        .save_certificate(&names, &acme.chain_pem, &acme.key_pem)
        .unwrap();
    store.serve_former_base_domains(&BTreeSet::new()).unwrap();
    assert_eq!(
        served_leaf(&store, Some("svc-1.old.example.com")),
        Some(leaf_of(&acme.chain_pem))
    );
}

#[test]
fn a_former_base_domain_under_the_base_domain_leaves_the_base_wildcard_its_name() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("certs");
    let store = CertStore::open(&dir, master(data.path()), "example.com").unwrap();
    let ca = store.ca_pem().to_string();
    let apex = served_leaf(&store, Some("apps.example.com"));
    let base = served_leaf(&store, Some("x-1.example.com"));
    // The base domain itself is never a former one.
    store
        .serve_former_base_domains(&BTreeSet::from([
            "apps.example.com".to_string(),
            "example.com".to_string(),
        ]))
        .unwrap();
    // `apps.example.com` is one label under the base domain: its wildcard keeps it.
    assert_eq!(served_leaf(&store, Some("apps.example.com")), apex);
    assert_eq!(served_leaf(&store, Some("x-1.example.com")), base);
    assert_eq!(served_leaf(&store, None), base);
    let config = store.server_config().unwrap();
    assert!(handshake(config, &ca, "svc-1.apps.example.com").is_ok());
}
