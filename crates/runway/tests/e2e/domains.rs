//! Custom domains end to end, with real outside parts: Debian's `pebble` as the ACME CA,
//! `unbound` as the internet's recursive resolver (it holds the user's zone
//! `example.test`, where the test creates the records `runway domains add` asks for, and
//! is delegated `runway.test` to runway's own DNS server), `dig` against runway's DNS
//! server, `curl` trusting pebble's root to load `https://<custom domain>/`, `openssl
//! s_client` to read served certificates, and the AWS CLI for the three operations.

use crate::deploy::create_testapp;
use crate::harness::{Server, assert_ok, get as http_get};
use serde_json::{Value, json};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BASE: &str = "runway.test";

/// A port free for both UDP and TCP on loopback.
pub(crate) fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// `dig @127.0.0.1 -p PORT ARGS +short`, sorted lines.
fn dig(port: u16, args: &[&str]) -> Vec<String> {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=2"])
        .args(args)
        .arg("+short")
        .output()
        .expect("dig (apt-get install dnsutils)");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

/// An unbound resolver: authoritative data for the user's zone `example.test` (the
/// records a user adds at their DNS provider) and `runway.test` delegated to runway's
/// DNS server, recursion for everything else it knows.
pub(crate) struct Unbound {
    dir: tempfile::TempDir,
    pub(crate) port: u16,
    child: Child,
    serial: std::cell::Cell<u32>,
}

impl Unbound {
    pub(crate) fn start(runway_dns: Option<u16>) -> Unbound {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let stub = runway_dns
            .map(|p| format!("stub-zone:\n  name: \"{BASE}\"\n  stub-addr: 127.0.0.1@{p}\n"))
            .unwrap_or_default();
        let config = format!(
            "server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  do-not-query-localhost: no\n  \
             access-control: 127.0.0.0/8 allow\n  chroot: \"\"\n  username: \"\"\n  directory: \"{d}\"\n  \
             pidfile: \"{d}/unbound.pid\"\n  use-syslog: no\n  logfile: \"\"\n  module-config: \"iterator\"\n  \
             cache-max-ttl: 0\n  cache-max-negative-ttl: 0\n  do-ip6: no\n  local-zone: \"test.\" nodefault\n\
             auth-zone:\n  name: \"example.test\"\n  zonefile: \"{d}/example.zone\"\n  for-downstream: no\n  for-upstream: yes\n{stub}",
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("unbound.conf"), config).unwrap();
        let unbound = |dir: &Path| {
            Command::new("unbound")
                .args(["-d", "-c"])
                .arg(dir.join("unbound.conf"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("unbound (apt-get install unbound)")
        };
        write_zone(dir.path(), 1, "");
        let resolver = Unbound {
            child: unbound(dir.path()),
            dir,
            port,
            serial: std::cell::Cell::new(1),
        };
        resolver.wait_for_serial();
        resolver
    }

    /// The user's zone becomes `records` (zone-file lines relative to example.test.).
    fn reload(&self, records: &str) {
        let serial = self.serial.get() + 1;
        self.serial.set(serial);
        write_zone(self.dir.path(), serial, records);
        signal(self.child.id(), "-HUP");
        self.wait_for_serial();
    }

    fn wait_for_serial(&self) {
        let want = format!("\"{}\"", self.serial.get());
        let deadline = Instant::now() + Duration::from_secs(10);
        while dig(self.port, &["probe.example.test", "TXT"]) != [want.clone()] {
            assert!(Instant::now() < deadline, "unbound did not reload its zone");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pause(&self) {
        signal(self.child.id(), "-STOP");
    }

    fn resume(&self) {
        signal(self.child.id(), "-CONT");
    }
}

/// Writes the user's zone file: a serial (also in `probe.example.test`'s TXT record, to
/// see when it is loaded) and `records`.
fn write_zone(dir: &Path, serial: u32, records: &str) {
    let zone = format!(
        "$ORIGIN example.test.\n$TTL 1\n@ IN SOA ns.example.test. hostmaster.example.test. {serial} 60 60 60 1\n\
         @ IN NS ns.example.test.\nns IN A 127.0.0.1\nprobe IN TXT \"{serial}\"\n{records}\n"
    );
    std::fs::write(dir.join("example.zone"), zone).unwrap();
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a certificate for 127.0.0.1, for pebble's own HTTPS.
fn pebble_tls(dir: &Path) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "pebble test listener CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "pebble");
    let leaf = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    dir.join("ca.pem")
}

/// Debian's pebble, validating through `resolver` and reaching runway's router on
/// `http_port` (HTTP-01) and `tls_port` (TLS-ALPN-01).
pub(crate) struct Pebble {
    dir: tempfile::TempDir,
    port: u16,
    management: u16,
    child: Child,
}

impl Pebble {
    /// Pebble's listener's CA, for `--acme-ca-root`, and its free port, before it starts.
    pub(crate) fn prepare() -> (tempfile::TempDir, PathBuf, u16) {
        let dir = tempfile::tempdir().unwrap();
        let ca = pebble_tls(dir.path());
        (dir, ca, free_port())
    }

    pub(crate) fn start(
        (dir, _, port): (tempfile::TempDir, PathBuf, u16),
        resolver: u16,
        http_port: u16,
        tls_port: u16,
        validity: Option<u64>,
    ) -> Pebble {
        let management = free_port();
        let d = dir.path();
        let mut config = json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": d.join("cert.pem"),
            "privateKey": d.join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        if let Some(seconds) = validity {
            config["pebble"]["certificateValidityPeriod"] = json!(seconds);
        }
        std::fs::write(d.join("pebble.json"), config.to_string()).unwrap();
        let log = std::fs::File::create(d.join("pebble.log")).unwrap();
        let child = Command::new("pebble")
            .arg("-config")
            .arg(d.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{resolver}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble (apt-get install pebble)");
        let pebble = Pebble {
            dir,
            port,
            management,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pebble.log().contains("Listening on") {
            assert!(
                Instant::now() < deadline,
                "pebble did not start:\n{}",
                pebble.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        pebble
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// How many times the log shows `what` (a request line such as `POST /order-plz`).
    fn count(&self, what: &str) -> usize {
        self.log().matches(what).count()
    }

    /// Pebble's issuing root (made at its start), for clients to trust.
    pub(crate) fn root(&self) -> PathBuf {
        let path = self.dir.path().join("root.pem");
        let out = Command::new("curl")
            .args(["-sSf", "--cacert"])
            .arg(self.dir.path().join("ca.pem"))
            .arg(format!("https://127.0.0.1:{}/roots/0", self.management))
            .arg("-o")
            .arg(&path)
            .output()
            .unwrap();
        assert_ok(&out, "curl (pebble's root)");
        path
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl https://HOST:PORT/PATH` through the router, trusting only `ca`; (status, body),
/// status 0 and curl's message when TLS or the connection failed.
fn curl(server: &Server, ca: &Path, host: &str, path: &str) -> (u16, String) {
    let port = server.https.rsplit(':').next().unwrap();
    let out = Command::new("curl")
        .args([
            "-sS",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "20",
            "--cacert",
        ])
        .arg(ca)
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    match status.trim().parse() {
        Ok(status) if status > 0 => (status, body.to_string()),
        _ => (0, String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// `openssl x509 -noout -<field>` of the certificate the router serves for `host`.
fn served(server: &Server, host: &str, field: &str) -> String {
    let port = server.https.rsplit(':').next().unwrap();
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername {host} </dev/null 2>/dev/null \
         | openssl x509 -noout -{field}"
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The serial of the certificate the router serves for `host`.
fn served_serial(server: &Server, host: &str) -> String {
    served(server, host, "serial")
        .trim_start_matches("serial=")
        .to_ascii_lowercase()
}

fn describe(server: &Server, arn: &str) -> Value {
    server
        .aws(&["describe-custom-domains", "--service-arn", arn])
        .ok()
}

fn domain<'a>(described: &'a Value, name: &str) -> Option<&'a Value> {
    described["CustomDomains"]
        .as_array()?
        .iter()
        .find(|d| d["DomainName"] == name)
}

/// Waits until `name` of service `arn` has status `want`; the domain as described.
fn wait_domain(server: &Server, arn: &str, name: &str, want: &str, pebble: &Pebble) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let described = describe(server, arn);
        let found = domain(&described, name).cloned().unwrap_or(Value::Null);
        if found["Status"] == want {
            return found;
        }
        if Instant::now() > deadline {
            let events = server
                .runway()
                .args(["events", "shop"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            panic!(
                "{name} is {found} not {want}\nevents:\n{events}\nserver log:\n{}\npebble log:\n{}",
                server.log(),
                pebble.log()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn associate(server: &Server, arn: &str, name: &str, www: bool) -> crate::harness::Aws {
    let www = if www {
        "--enable-www-subdomain"
    } else {
        "--no-enable-www-subdomain"
    };
    server.aws(&[
        "associate-custom-domain",
        "--service-arn",
        arn,
        "--domain-name",
        name,
        www,
    ])
}

/// The CNAME lines (zone-file syntax, relative to example.test.) for a domain's
/// validation records, as a user copies them from the answer.
fn validation_lines(described: &Value) -> String {
    described["CertificateValidationRecords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let name = r["Name"]
                .as_str()
                .unwrap()
                .trim_end_matches(".example.test");
            format!("{name} IN CNAME {}\n", r["Value"].as_str().unwrap())
        })
        .collect()
}

#[test]
fn custom_domains_are_validated_issued_served_and_survive_a_crash_during_issuance() {
    let dns_port = free_port();
    // Runway's own checks and pebble's validations ask different resolvers, so that the
    // CA's lookup can be held while runway is killed mid-issuance.
    let checks = Unbound::start(Some(dns_port));
    let validations = Unbound::start(Some(dns_port));
    let prepared = Pebble::prepare();
    let directory = format!("https://127.0.0.1:{}/dir", prepared.2);
    let mut server = Server::start_with(&[
        "--base-domain",
        BASE,
        "--dns-listen",
        &format!("127.0.0.1:{dns_port}"),
        "--public-address",
        "127.0.0.1",
        "--acme-directory",
        &directory,
        "--acme-ca-root",
        prepared.1.to_str().unwrap(),
        "--acme-check-interval",
        "1",
        "--dns-resolver",
        &format!("127.0.0.1:{}", checks.port),
        "--acme-base-domain",
    ]);
    let port = |url: &str| url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let pebble = Pebble::start(
        prepared,
        validations.port,
        port(&server.http),
        port(&server.https),
        None,
    );
    assert_eq!(pebble.directory(), directory);
    let (shop, shop_host) =
        create_testapp(&server, "shop", json!({ "GREETING": "shop" }), json!({}));
    let root = pebble.root();

    // runway's DNS server answers for its zone, with the router's public address.
    assert_eq!(
        dig(dns_port, &[BASE, "NS", "+norec"]),
        [format!("ns1.{BASE}.")]
    );
    assert!(dig(dns_port, &[BASE, "SOA", "+norec"])[0].starts_with(&format!("ns1.{BASE}. ")));
    assert_eq!(dig(dns_port, &[&shop_host, "A", "+norec"]), ["127.0.0.1"]);
    assert_eq!(dig(dns_port, &["example.com", "A"]), Vec::<String>::new());
    // ...and through the resolver, as the delegated zone it is.
    assert_eq!(dig(checks.port, &[&shop_host, "A"]), ["127.0.0.1"]);

    // The base domain's wildcard comes from the ACME CA by DNS-01, answered by runway's
    // own DNS server: the default URL is served with a certificate pebble issued.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = curl(&server, &root, &shop_host, "/env");
        if status == 200 {
            assert!(body.contains(r#""GREETING":"shop""#), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the base domain's certificate is not pebble's: {body}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Associate: App Runner's shape, the records to create, and nothing served yet but a
    // page that says what is going on.
    let associated = associate(&server, &shop, "Shop.Example.test", true).ok();
    assert_eq!(associated["DNSTarget"], shop_host.as_str());
    assert_eq!(associated["ServiceArn"], shop.as_str());
    assert_eq!(associated["VpcDNSTargets"], json!([]));
    let custom = &associated["CustomDomain"];
    assert_eq!(custom["DomainName"], "shop.example.test");
    assert_eq!(custom["EnableWWWSubdomain"], true);
    assert_eq!(custom["Status"], "CREATING");
    let records = custom["CertificateValidationRecords"].as_array().unwrap();
    let names: Vec<&str> = records
        .iter()
        .map(|r| r["Name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "_acme-challenge.shop.example.test",
            "_acme-challenge.www.shop.example.test"
        ]
    );
    for r in records {
        assert_eq!(r["Type"], "CNAME");
        assert_eq!(r["Status"], "PENDING_VALIDATION");
        assert!(
            r["Value"]
                .as_str()
                .unwrap()
                .ends_with(&format!(".acme-validations.{BASE}.")),
            "{r}"
        );
    }
    let runway_ca = server.data_dir().join("certs/ca.pem");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = curl(&server, &runway_ca, "shop.example.test", "/");
        if status == 503 && body.contains("waiting for its certificate") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no validation page: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Bad input is refused with App Runner's error types, and nothing is stored.
    let other = server
        .aws(&[
            "create-service",
            "--service-name",
            "other",
            "--source-configuration",
            &json!({ "ImageRepository": {
                "ImageIdentifier": format!("{}/shop:v1", server.registry_host()),
                "ImageRepositoryType": "ECR" } })
            .to_string(),
        ])
        .ok()["Service"]["ServiceArn"]
        .as_str()
        .unwrap()
        .to_string();
    for (service, name, www, kind, says) in [
        (
            &shop,
            "bad_name.example.test",
            false,
            "InvalidRequestException",
            "DomainName",
        ),
        (
            &shop,
            "app.localhost",
            false,
            "InvalidRequestException",
            ".localhost",
        ),
        (&shop, "test", false, "InvalidRequestException", "top-level"),
        (
            &shop,
            "10.0.0.1",
            false,
            "InvalidRequestException",
            "IP address",
        ),
        (
            &shop,
            "x.runway.test",
            false,
            "InvalidRequestException",
            "base domain",
        ),
        (
            &shop,
            "*.wild.example.test",
            true,
            "InvalidRequestException",
            "EnableWWWSubdomain",
        ),
        (
            &shop,
            "shop.example.test",
            false,
            "InvalidRequestException",
            "already associated with this service",
        ),
        (
            &other,
            "shop.example.test",
            false,
            "InvalidRequestException",
            "already associated with service",
        ),
        (
            &other,
            "www.shop.example.test",
            false,
            "InvalidRequestException",
            "already associated",
        ),
    ] {
        let (got, message) = associate(&server, service, name, www).err();
        assert_eq!(got, kind, "{name}: {message}");
        assert!(message.contains(says), "{name}: {message}");
    }
    let (got, _) = associate(
        &server,
        &shop.replace("/shop/", "/gone/"),
        "a.example.test",
        false,
    )
    .err();
    assert_eq!(got, "InvalidRequestException");
    for i in 1..=5 {
        associate(&server, &other, &format!("d{i}.quota.test"), false).ok();
    }
    let (got, message) = associate(&server, &other, "d6.quota.test", false).err();
    assert_eq!(got, "InvalidRequestException");
    assert!(message.contains("quota of 5"), "{message}");
    assert_eq!(
        describe(&server, &other)["CustomDomains"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        describe(&server, &shop)["CustomDomains"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Pages of at most MaxResults, App Runner's limit being 5.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut args = vec![
            "describe-custom-domains",
            "--service-arn",
            &other,
            "--max-results",
            "2",
        ];
        if let Some(t) = &token {
            args.extend(["--next-token", t.as_str()]);
        }
        let page = server.aws(&args).ok();
        let list = page["CustomDomains"].as_array().unwrap();
        assert!(list.len() <= 2);
        seen.extend(
            list.iter()
                .map(|d| d["DomainName"].as_str().unwrap().to_string()),
        );
        match page["NextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        (1..=5)
            .map(|i| format!("d{i}.quota.test"))
            .collect::<Vec<_>>()
    );
    let (got, _) = server
        .aws(&[
            "describe-custom-domains",
            "--service-arn",
            &other,
            "--max-results",
            "6",
        ])
        .err();
    assert_eq!(got, "InvalidRequestException");
    for (service, name) in [(&shop, "nope.example.test"), (&other, "shop.example.test")] {
        let (got, message) = server
            .aws(&[
                "disassociate-custom-domain",
                "--service-arn",
                service,
                "--domain-name",
                name,
            ])
            .err();
        assert_eq!(got, "ResourceNotFoundException", "{message}");
    }
    for i in 1..=5 {
        let gone = server
            .aws(&[
                "disassociate-custom-domain",
                "--service-arn",
                &other,
                "--domain-name",
                &format!("d{i}.quota.test"),
            ])
            .ok();
        assert_eq!(gone["CustomDomain"]["Status"], "DELETING");
    }
    let (got, _) = server
        .aws(&[
            "disassociate-custom-domain",
            "--service-arn",
            &other,
            "--domain-name",
            "d1.quota.test",
        ])
        .err();
    assert!(
        got == "InvalidStateException" || got == "ResourceNotFoundException",
        "{got}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !describe(&server, &other)["CustomDomains"]
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "disassociated domains stay");
        std::thread::sleep(Duration::from_millis(250));
    }

    // The user creates the records: DNS-01 through runway's validation zone, and the
    // domain becomes ACTIVE by itself, served with pebble's certificate.
    let mut zone = validation_lines(custom);
    zone += &format!("shop IN CNAME {shop_host}.\nwww.shop IN CNAME {shop_host}.\n");
    validations.reload(&zone);
    checks.reload(&zone);
    let active = wait_domain(&server, &shop, "shop.example.test", "ACTIVE", &pebble);
    for r in active["CertificateValidationRecords"].as_array().unwrap() {
        assert_eq!(r["Status"], "SUCCESS", "{r}");
    }
    for host in ["shop.example.test", "www.shop.example.test"] {
        let (status, body) = curl(&server, &root, host, "/env");
        assert_eq!(status, 200, "{host}: {body}");
        assert!(body.contains(r#""GREETING":"shop""#), "{body}");
    }

    // HTTP-01, answered by the router before any redirect: a domain that points at
    // runway (an A record) without the validation CNAME, added with the runway CLI.
    let printed = server.runway_out(&["domains", "add", "shop", "api.example.test", "--no-www"]);
    assert!(
        printed.contains("_acme-challenge.api.example.test"),
        "{printed}"
    );
    assert!(printed.contains(&format!("{shop_host}.")), "{printed}");
    zone += "api IN A 127.0.0.1\n";
    validations.reload(&zone);
    checks.reload(&zone);
    let active = wait_domain(&server, &shop, "api.example.test", "ACTIVE", &pebble);
    assert_eq!(
        active["CertificateValidationRecords"][0]["Status"], "PENDING_VALIDATION",
        "validated over HTTP, not through the CNAME"
    );
    let (status, _) = curl(&server, &root, "api.example.test", "/");
    assert_eq!(status, 200);
    let listed = server
        .runway()
        .args(["domains", "ls", "shop"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("api.example.test") && listed.contains("ACTIVE"),
        "{listed}"
    );

    // A wildcard: DNS-01 only, and every name one label below it is served.
    let wild = associate(&server, &shop, "*.wild.example.test", false).ok();
    assert_eq!(
        wild["CustomDomain"]["CertificateValidationRecords"][0]["Name"],
        "_acme-challenge.wild.example.test"
    );
    zone += &validation_lines(&wild["CustomDomain"]);
    zone += &format!("*.wild IN CNAME {shop_host}.\n");
    validations.reload(&zone);
    checks.reload(&zone);
    wait_domain(&server, &shop, "*.wild.example.test", "ACTIVE", &pebble);
    let (status, body) = curl(&server, &root, "anything.wild.example.test", "/");
    assert_eq!(status, 200, "{body}");

    // kill -9 in the middle of an issuance: the order is placed and its challenge
    // answered, the CA's lookup is held; runway is killed and started again, the CA
    // then validates, and the restarted runway finishes the same order.
    let orders = pebble.count("POST /order-plz");
    let answered = pebble.count("POST /chalZ/");
    let late = associate(&server, &shop, "late.example.test", false).ok();
    zone += &validation_lines(&late["CustomDomain"]);
    validations.reload(&zone);
    validations.pause();
    checks.reload(&zone);
    let deadline = Instant::now() + Duration::from_secs(30);
    while pebble.count("POST /chalZ/") == answered {
        assert!(
            Instant::now() < deadline,
            "runway did not answer the challenge:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    server.relaunch();
    validations.resume();
    wait_domain(&server, &shop, "late.example.test", "ACTIVE", &pebble);
    assert_eq!(
        pebble.count("POST /order-plz"),
        orders + 1,
        "the order placed before the crash is the one finished"
    );
    let (status, _) = curl(&server, &root, "late.example.test", "/");
    assert_eq!(status, 200);

    // Events and metrics for what was issued.
    let events = server.runway().args(["events", "shop"]).output().unwrap();
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(
        events.contains("Certificate for shop.example.test, www.shop.example.test issued"),
        "{events}"
    );
    let (_, metrics) = http_get(&server.metrics);
    let issued = metrics
        .lines()
        .find(|l| l.starts_with("runway_certificates_issued_total{kind=\"issue\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(issued >= 1.0, "{metrics}");
    assert!(
        metrics
            .contains("runway_certificate_expiry_timestamp_seconds{domain=\"api.example.test\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("runway_dns_responses_total{rcode=\"NOERROR\"}"),
        "{metrics}"
    );

    // Disassociating removes the route and the certificate.
    server.runway_out(&["domains", "rm", "shop", "api.example.test"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while domain(&describe(&server, &shop), "api.example.test").is_some() {
        assert!(Instant::now() < deadline, "api.example.test stays");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        !server
            .data_dir()
            .join("certs/domains/api.example.test.json")
            .exists()
    );
    let (status, body) = curl(&server, &root, "api.example.test", "/");
    assert_eq!(
        status, 0,
        "no certificate for api.example.test is served any more: {body}"
    );
    // Over plain HTTP (no certificate to check any more): the host is not routed.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let port = server.http.rsplit(':').next().unwrap();
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--resolve"])
            .arg(format!("api.example.test:{port}:127.0.0.1"))
            .arg(format!("http://api.example.test:{port}/"))
            .output()
            .unwrap();
        let status = String::from_utf8_lossy(&out.stdout).into_owned();
        if status == "404" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "api.example.test is still routed ({status})"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn tls_alpn_01_issues_and_certificates_renew_before_they_expire() {
    let resolver = Unbound::start(None);
    let prepared = Pebble::prepare();
    let directory = format!("https://127.0.0.1:{}/dir", prepared.2);
    let server = Server::start_with(&[
        "--base-domain",
        BASE,
        "--public-address",
        "127.0.0.1",
        "--acme-directory",
        &directory,
        "--acme-ca-root",
        prepared.1.to_str().unwrap(),
        "--acme-check-interval",
        "1",
        "--dns-resolver",
        &format!("127.0.0.1:{}", resolver.port),
        "--acme-challenges",
        "tls-alpn-01",
    ]);
    let port = |url: &str| url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    // Certificates valid for 45 seconds: renewed at two thirds, 30 seconds in.
    let pebble = Pebble::start(
        prepared,
        resolver.port,
        port(&server.http),
        port(&server.https),
        Some(45),
    );
    let (shop, _) = create_testapp(&server, "shop", json!({ "GREETING": "alpn" }), json!({}));
    resolver.reload("alpn IN A 127.0.0.1\n");
    associate(&server, &shop, "alpn.example.test", false).ok();
    wait_domain(&server, &shop, "alpn.example.test", "ACTIVE", &pebble);
    let root = pebble.root();
    let (status, body) = curl(&server, &root, "alpn.example.test", "/env");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""GREETING":"alpn""#), "{body}");
    let first = served_serial(&server, "alpn.example.test");
    assert!(!first.is_empty());

    let deadline = Instant::now() + Duration::from_secs(75);
    loop {
        let now = served_serial(&server, "alpn.example.test");
        if !now.is_empty() && now != first {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not renewed (serial {now}):\n{}\n{}",
            server.log(),
            pebble.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (status, _) = curl(&server, &root, "alpn.example.test", "/");
    assert_eq!(status, 200);
    let events = server.runway().args(["events", "shop"]).output().unwrap();
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(
        events.contains("Certificate for alpn.example.test renewed"),
        "{events}"
    );
    let (_, metrics) = http_get(&server.metrics);
    assert!(
        metrics.contains("runway_certificates_issued_total{kind=\"renewal\"}"),
        "{metrics}"
    );
    assert_eq!(
        describe(&server, &shop)["CustomDomains"][0]["Status"],
        "ACTIVE",
        "a renewal keeps the domain ACTIVE"
    );

    // Deleting the service takes its domains and their certificates with it.
    server.aws(&["delete-service", "--service-arn", &shop]).ok();
    let saved = server
        .data_dir()
        .join("certs/domains/alpn.example.test.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while saved.exists() || served(&server, "alpn.example.test", "issuer").contains("Pebble") {
        assert!(
            Instant::now() < deadline,
            "the deleted service's certificate stays"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
