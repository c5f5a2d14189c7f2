use super::*;
use std::process::Command;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The first `n` certificates of the host's bundle, as PEM files' text.
fn host_certs(n: usize) -> Vec<String> {
    let bundle = SYSTEM_BUNDLES
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .expect("the host has a system bundle");
    let certs = read_bundle(bundle).unwrap();
    assert!(certs.len() >= n);
    certs[..n].iter().map(|c| pem(c)).collect()
}

#[test]
fn proxy_settings_are_passed_in_both_spellings_lower_case_first() {
    let env = proxy_env(vars(&[
        ("HTTPS_PROXY", "http://upper:3128"),
        ("https_proxy", "http://lower:3128"),
        ("NO_PROXY", "localhost,.internal"),
        ("http_proxy", "  "),
        ("PATH", "/bin"),
    ]));
    assert_eq!(
        env,
        vars(&[
            ("HTTPS_PROXY", "http://lower:3128"),
            ("https_proxy", "http://lower:3128"),
            ("NO_PROXY", "localhost,.internal"),
            ("no_proxy", "localhost,.internal"),
        ])
    );
}

#[test]
fn the_log_line_names_the_proxy_without_its_credentials() {
    let trust = BuildTrust {
        proxy: proxy_env(vars(&[("HTTPS_PROXY", "http://user:secret@proxy:3128")])),
        ..BuildTrust::default()
    };
    let line = trust.describe(&TrustMaterial::default());
    assert!(line.contains("HTTPS_PROXY=http://proxy:3128"), "{line}");
    assert!(!line.contains("secret"), "{line}");
}

#[test]
fn the_bundle_holds_the_hosts_and_the_extra_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let certs = host_certs(3);
    let host = dir.path().join("host.crt");
    std::fs::write(&host, format!("{}{}", certs[0], certs[1])).unwrap();
    let anchors = dir.path().join("anchors/sub");
    std::fs::create_dir_all(&anchors).unwrap();
    std::fs::write(anchors.join("corp.crt"), &certs[1]).unwrap();
    std::fs::write(anchors.join("README"), "not a certificate").unwrap();
    let extra = dir.path().join("extra.pem");
    std::fs::write(&extra, format!("comment\n{}", certs[2])).unwrap();
    let trust = BuildTrust {
        host_bundle: Some(host),
        host_anchor_dirs: vec![dir.path().join("anchors")],
        extra_bundle: Some(extra.clone()),
        ..BuildTrust::default()
    };
    let m = trust.load().unwrap();
    assert_eq!((m.host_count, m.extra_count), (2, 1));
    assert_eq!(m.bundle, format!("{}{}{}", certs[0], certs[1], certs[2]));
    let mut added = vec![certs[1].clone(), certs[2].clone()];
    added.sort();
    assert_eq!(m.added, added);
    assert!(trust.describe(&m).contains("and 1 from"));

    // An extra bundle without certificates is refused, naming it.
    std::fs::write(&extra, "nothing here\n").unwrap();
    let e = trust.load().unwrap_err().to_string();
    assert!(
        e.contains("extra.pem") && e.contains("no certificate"),
        "{e}"
    );
    std::fs::remove_file(&extra).unwrap();
    let e = trust.load().unwrap_err().to_string();
    assert!(e.contains("cannot read") && e.contains("extra.pem"), "{e}");
}

#[test]
fn builds_point_every_tool_at_the_bundle() {
    let env = BuildTrust::default().build_env();
    for name in [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "PIP_CERT",
        "NODE_EXTRA_CA_CERTS",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
    ] {
        assert!(
            env.contains(&(
                name.to_string(),
                format!("{CONTAINER_DIR}/ca-certificates.crt")
            )),
            "{name}: {env:?}"
        );
    }
}

/// Runs the prelude with `dir` in place of the container's trust directory; the
/// environment it leaves (`env`'s output).
fn run_prelude(dir: &Path) -> String {
    let script = format!(
        "set -e\n{}\nenv",
        prelude().replace(CONTAINER_DIR, &dir.display().to_string())
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .env_remove("JAVA_TOOL_OPTIONS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_prelude_joins_the_system_bundle_and_the_hosts_and_fills_a_jdk_trust_store() {
    let dir = tempfile::tempdir().unwrap();
    let certs = host_certs(1);
    // The host's first certificate is in the system bundle too: it is there twice.
    let material = TrustMaterial {
        bundle: certs[0].clone(),
        added: certs.clone(),
        host_count: 1,
        extra_count: 0,
    };
    write_files(dir.path(), &material).unwrap();
    let env = run_prelude(dir.path());
    let joined = std::fs::read_to_string(dir.path().join("ca-certificates.crt")).unwrap();
    assert!(
        joined.matches(certs[0].trim()).count() >= 2,
        "the system bundle, then the host's"
    );
    assert!(joined.ends_with(&certs[0]));

    if Command::new("keytool").arg("-help").output().is_ok() {
        let store = dir.path().join("java-cacerts");
        assert!(
            env.contains(&format!(
                "JAVA_TOOL_OPTIONS=-Djavax.net.ssl.trustStore={}",
                store.display()
            )),
            "{env}"
        );
        let list = Command::new("keytool")
            .args(["-list", "-storepass", "changeit", "-keystore"])
            .arg(&store)
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&list.stdout);
        assert!(list.contains("runway-added-1"), "{list}");
        // The JDK's own authorities are still there.
        assert!(list.lines().count() > 20, "{list}");
    }
}

#[test]
fn without_a_trust_directory_the_prelude_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let env = run_prelude(&missing);
    assert!(!env.contains("JAVA_TOOL_OPTIONS"), "{env}");
    assert!(!missing.exists());
}
