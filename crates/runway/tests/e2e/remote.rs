//! runway from another machine: a client in its own network namespace (its own link to
//! the host, its own /etc/hosts) reaches the API and the registry over HTTPS by their
//! names, trusting runway's CA the standard way for each client and with no insecure
//! flag; the listeners' limits hold when that machine misbehaves; certificates and plain
//! HTTP are handled as an operator expects.

use crate::deploy::{get, push_testapp, wait_status};
use crate::harness::{Aws, Options, REGION, Server, assert_ok};
use crate::netns::Link;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn runway_binary() -> &'static str {
    env!("CARGO_BIN_EXE_runway")
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e/py")
        .join(name)
}

/// A scratch directory whose path is all lowercase (podman names an image pulled from
/// `oci:<dir>` after the path), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("runway-remote-{}", uuid()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uuid() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos:x}", std::process::id())
}

/// The admin key as (id, secret).
fn key(server: &Server) -> (String, String) {
    let creds = server.creds();
    let (id, secret) = creds.split_once(':').unwrap();
    (id.to_string(), secret.to_string())
}

/// The other machine: a namespace with a home directory of its own.
struct Machine<'a> {
    link: &'a Link,
    home: &'a Path,
}

impl Machine<'_> {
    /// `program` on the other machine, with its own HOME (so podman and skopeo look for
    /// CA certificates in $HOME/.config/containers/certs.d) and nothing of this one's
    /// AWS or runway settings.
    fn command(&self, program: &str) -> Command {
        let mut command = self.link.command(program);
        command
            .env("HOME", self.home)
            .env("RUNWAY_CONFIG_DIR", self.home.join(".config/runway"))
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_PAGER", "")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null());
        for name in [
            "AWS_CA_BUNDLE",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_DEFAULT_REGION",
            "AWS_PROFILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "RUNWAY_DATA_DIR",
            "RUNWAY_ENDPOINT_URL",
            "RUNWAY_PROFILE",
            "RUNWAY_CA_FILE",
        ] {
            command.env_remove(name);
        }
        command
    }

    /// `aws apprunner <args>` against `endpoint` with the credentials file `credentials`,
    /// trusting `ca` (AWS_CA_BUNDLE) if given.
    fn aws(&self, endpoint: &str, credentials: &Path, ca: Option<&Path>, args: &[&str]) -> Aws {
        let mut command = self.command("/usr/bin/aws");
        command
            .arg("apprunner")
            .args(args)
            .args([
                "--endpoint-url",
                endpoint,
                "--region",
                REGION,
                "--output",
                "json",
            ])
            .env("AWS_SHARED_CREDENTIALS_FILE", credentials)
            .env("AWS_PROFILE", "runway");
        if let Some(ca) = ca {
            command.env("AWS_CA_BUNDLE", ca);
        }
        Aws(command.output().expect("aws"))
    }

    /// podman with its storage under the home directory.
    fn podman(&self, args: &[&str]) -> Output {
        let d = |p: &str| self.home.join(p).display().to_string();
        std::fs::create_dir_all(self.home.join("tmp")).unwrap();
        self.command("podman")
            .args(["--root", &d("storage"), "--runroot", &d("run")])
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "none", "--tmpdir", &d("tmp")])
            .args(args)
            .output()
            .expect("podman")
    }
}

/// Waits until the latest of `arn`'s operations has ended; its status.
fn last_operation_ended(server: &Server, arn: &str, count: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ops =
            server.aws(&["list-operations", "--service-arn", arn]).ok()["OperationSummaryList"]
                .clone();
        let list = ops.as_array().cloned().unwrap_or_default();
        if list.len() >= count
            && !matches!(
                list[0]["Status"].as_str(),
                Some("PENDING" | "IN_PROGRESS" | "ROLLBACK_IN_PROGRESS")
            )
        {
            return list[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "operation {count} of {arn} did not end: {ops}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn another_machine_uses_the_api_and_the_registry_over_https_and_deploys_what_it_pushed() {
    let link = Link::new();
    let mut server = Server::start_opts(Options {
        listen: link.host_ip.into(),
        flags: &[
            "--tls",
            "--api-host",
            "runway.test",
            "--registry-host",
            "registry.test",
        ],
        nofile: None,
    });
    link.hosts(&[
        (link.host_ip, "runway.test"),
        (link.host_ip, "registry.test"),
    ]);
    assert!(
        server.api.starts_with("https://runway.test:"),
        "{}",
        server.api
    );
    let registry = server.registry_host().to_string();
    assert!(registry.starts_with("registry.test:"), "{registry}");

    // What the operator hands the other machine: runway's CA certificate and a key.
    let scratch = Scratch::new();
    let home = scratch.0.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let ca = home.join("runway-ca.pem");
    std::fs::copy(server.ca(), &ca).unwrap();
    let credentials = home.join("credentials");
    std::fs::copy(server.credentials(), &credentials).unwrap();
    let (key_id, secret) = key(&server);
    let machine = Machine {
        link: &link,
        home: &home,
    };

    // The AWS CLI trusts only runway's CA: without it the certificate is refused.
    let listed = machine.aws(&server.api, &credentials, Some(&ca), &["list-services"]);
    assert_eq!(listed.ok()["ServiceSummaryList"], json!([]));
    let untrusted = machine.aws(&server.api, &credentials, None, &["list-services"]);
    assert!(!untrusted.0.status.success());
    let stderr = String::from_utf8_lossy(&untrusted.0.stderr);
    assert!(
        stderr.contains("SSL") || stderr.contains("certificate"),
        "{stderr}"
    );

    // skopeo pushes once the CA is in the standard per-registry directory, and not before.
    let layout = scratch.0.join("layout");
    runway_runtime::test_util::testapp_image(&layout);
    let copy = |tag: &str| {
        machine
            .command("skopeo")
            .args([
                "copy",
                "--quiet",
                "--dest-creds",
                &format!("{key_id}:{secret}"),
            ])
            .arg(format!("oci:{}:testapp", layout.display()))
            .arg(format!("docker://{registry}/hello:{tag}"))
            .output()
            .unwrap()
    };
    let refused = copy("v1");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");
    let certs_d = home.join(".config/containers/certs.d").join(&registry);
    std::fs::create_dir_all(&certs_d).unwrap();
    std::fs::copy(&ca, certs_d.join("ca.crt")).unwrap();
    assert_ok(&copy("v1"), "skopeo copy");

    // The image, named by the registry's public name, is runway's own: deployed from it.
    let input = json!({
        "ServiceName": "hello",
        "SourceConfiguration": {
            "ImageRepository": {
                "ImageIdentifier": format!("{registry}/hello:v1"),
                "ImageRepositoryType": "ECR",
                "ImageConfiguration": { "Port": "8080" }
            }
        },
        "HealthCheckConfiguration": { "Protocol": "HTTP", "Path": "/healthz", "Interval": 1 }
    });
    let created = machine
        .aws(
            &server.api,
            &credentials,
            Some(&ca),
            &["create-service", "--cli-input-json", &input.to_string()],
        )
        .ok();
    let arn = created["Service"]["ServiceArn"]
        .as_str()
        .unwrap()
        .to_string();
    let service = wait_status(&server, &arn, "RUNNING");
    let host = service["ServiceUrl"].as_str().unwrap();
    assert_eq!(get(&server, host, "/healthz").0, 200);
    let first = last_operation_ended(&server, &arn, 1);
    assert_eq!(first["Status"], "SUCCEEDED", "{first}");

    // podman signs in (the token flow over HTTPS) and pushes a new image to the tag: the
    // push deploys it.
    let out = machine.podman(&["pull", "-q", &format!("oci:{}:testapp", layout.display())]);
    let id = assert_ok(&out, "podman pull").trim().to_string();
    let image = format!("{registry}/hello:v1");
    assert_ok(&machine.podman(&["tag", &id, &image]), "podman tag");
    let authfile = home.join("auth.json").display().to_string();
    let out = machine.podman(&[
        "login",
        "--authfile",
        &authfile,
        "-u",
        &key_id,
        "-p",
        &secret,
        &registry,
    ]);
    assert_ok(&out, "podman login");
    let digestfile = home.join("digest");
    let out = machine.podman(&[
        "push",
        "--authfile",
        &authfile,
        "--digestfile",
        &digestfile.display().to_string(),
        &image,
    ]);
    assert_ok(&out, "podman push");
    let deployed = last_operation_ended(&server, &arn, 2);
    assert_eq!(deployed["Type"], "START_DEPLOYMENT", "{deployed}");
    assert_eq!(deployed["Status"], "SUCCEEDED", "{deployed}");
    let revisions = server
        .runway()
        .args(["revisions", "ls", "hello", "--output", "json"])
        .output()
        .unwrap();
    let pushed = std::fs::read_to_string(&digestfile).unwrap();
    assert!(
        assert_ok(&revisions, "runway revisions ls").contains(pushed.trim()),
        "the new revision runs the digest podman pushed"
    );

    // The runway CLI logs in once; later commands need no flags.
    let secret_file = home.join("secret");
    std::fs::write(&secret_file, &secret).unwrap();
    let out = machine
        .command(runway_binary())
        .args(["login", "--endpoint", &server.api, "--ca-file"])
        .arg(&ca)
        .args(["--access-key-id", &key_id, "--secret-access-key-file"])
        .arg(&secret_file)
        .output()
        .unwrap();
    let said = assert_ok(&out, "runway login");
    assert!(
        said.contains(&format!("Registry: https://{registry}")),
        "{said}"
    );
    let out = machine
        .command(runway_binary())
        .args(["services", "ls"])
        .output()
        .unwrap();
    let listed = assert_ok(&out, "runway services ls");
    assert!(
        listed.contains("hello") && listed.contains("RUNNING"),
        "{listed}"
    );
    let out = machine
        .command(runway_binary())
        .args(["registry", "tags", "hello"])
        .output()
        .unwrap();
    assert!(assert_ok(&out, "runway registry tags").contains("v1"));

    // The registry moves to another port: the service's image still names the old
    // address, which stays runway's own, so a deployment finds it.
    server.restart_moving_the_registry();
    assert_ne!(server.registry_host(), registry);
    server
        .aws(&["start-deployment", "--service-arn", &arn])
        .ok();
    let redeployed = last_operation_ended(&server, &arn, 3);
    assert_eq!(redeployed["Status"], "SUCCEEDED", "{redeployed}");
}

#[test]
fn api_and_registry_names_under_the_base_domain_are_served_its_certificate_from_the_acme_ca() {
    use crate::domains::{BASE, Pebble, Unbound, free_port};
    let link = Link::new();
    // pebble validates the base domain's DNS-01 challenge through a resolver that is
    // delegated the base domain, as the internet would be.
    let dns_port = free_port();
    let resolver = Unbound::start(Some(dns_port));
    let prepared = Pebble::prepare();
    let directory = format!("https://127.0.0.1:{}/dir", prepared.2);
    let (dns, checks) = (
        format!("127.0.0.1:{dns_port}"),
        format!("127.0.0.1:{}", resolver.port),
    );
    let (api_name, registry_name) = (format!("api.{BASE}"), format!("registry.{BASE}"));
    let server = Server::start_opts(Options {
        listen: link.host_ip.into(),
        flags: &[
            "--no-controller",
            "--base-domain",
            BASE,
            "--dns-listen",
            &dns,
            "--public-address",
            "127.0.0.1",
            "--acme-directory",
            &directory,
            "--acme-ca-root",
            prepared.1.to_str().unwrap(),
            "--acme-check-interval",
            "1",
            "--dns-resolver",
            &checks,
            "--acme-base-domain",
            "--tls",
            "--api-host",
            &api_name,
            "--registry-host",
            &registry_name,
        ],
        nofile: None,
    });
    let port = |url: &str| url.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let pebble = Pebble::start(
        prepared,
        resolver.port,
        port(&server.http),
        port(&server.https),
        None,
    );
    link.hosts(&[(link.host_ip, &api_name), (link.host_ip, &registry_name)]);
    assert!(
        server.api.starts_with(&format!("https://{api_name}:")),
        "{}",
        server.api
    );

    // The other machine trusts the ACME CA's root (as it would trust a public CA), not
    // runway's CA.
    let scratch = Scratch::new();
    let home = scratch.0.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let root = home.join("acme-root.pem");
    std::fs::copy(pebble.root(), &root).unwrap();
    let credentials = home.join("credentials");
    std::fs::copy(server.credentials(), &credentials).unwrap();
    let machine = Machine {
        link: &link,
        home: &home,
    };
    // The AWS CLI reaches the API once the base domain's certificate is issued.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let listed = machine.aws(&server.api, &credentials, Some(&root), &["list-services"]);
        if listed.0.status.success() {
            assert_eq!(listed.ok()["ServiceSummaryList"], json!([]));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API is not served the ACME CA's certificate: {}\nserver log:\n{}\npebble log:\n{}",
            String::from_utf8_lossy(&listed.0.stderr),
            server.log(),
            pebble.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The registry too (unsigned: 401 once TLS is through).
    let registry = format!("https://{}/v2/", server.registry_host());
    let out = machine
        .command("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&root)
        .arg(&registry)
        .output()
        .unwrap();
    assert_eq!(assert_ok(&out, "curl"), "401", "{registry}");
    // Other names keep the local CA's certificate: the API by its address.
    let by_address = machine.aws(
        &server.api_url(),
        &credentials,
        Some(&server.ca()),
        &["list-services"],
    );
    assert_eq!(by_address.ok()["ServiceSummaryList"], json!([]));
}

/// Runs `signin.py` on `link`: `count` calls with `secret`; each answer's (status, error
/// code, Retry-After).
fn sign_in(link: &Link, server: &Server, secret: &str, count: usize) -> Vec<(u16, String, String)> {
    let (key_id, _) = key(server);
    let out = link
        .command("python3")
        .arg(script("signin.py"))
        .args([&server.api, &server.ca().display().to_string(), REGION])
        .args([&key_id, secret, &count.to_string()])
        .output()
        .unwrap();
    assert_ok(&out, "signin.py")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Descriptors the process holds.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[test]
fn failed_sign_ins_and_half_open_connections_from_one_machine_do_not_shut_out_another() {
    let (a, b) = (Link::new(), Link::new());
    // A limit on open files well below the attack, as a default soft limit would be.
    let server = Server::start_opts(Options {
        listen: a.host_ip.into(),
        flags: &["--tls"],
        nofile: Some(4096),
    });
    push_testapp(&server, "hello:v1");
    let input = json!({
        "ServiceName": "steady",
        "SourceConfiguration": {
            "ImageRepository": {
                "ImageIdentifier": format!("{}/hello:v1", server.registry_host()),
                "ImageRepositoryType": "ECR",
                "ImageConfiguration": { "Port": "8080" }
            }
        },
        "HealthCheckConfiguration": { "Protocol": "HTTP", "Path": "/healthz", "Interval": 1 }
    });
    let created = server
        .aws(&["create-service", "--cli-input-json", &input.to_string()])
        .ok();
    let arn = created["Service"]["ServiceArn"].as_str().unwrap();
    let service = wait_status(&server, arn, "RUNNING");
    let host = service["ServiceUrl"].as_str().unwrap().to_string();
    let (_, secret) = key(&server);

    // Wrong secrets from machine A: answered until its allowance (10) is used, then
    // refused unchecked with a time to wait, and let through at one a second after that.
    let started = Instant::now();
    let answers = sign_in(&a, &server, "not-the-secret", 30);
    let seconds = started.elapsed().as_secs();
    let checked = answers.iter().filter(|(s, ..)| *s == 403).count();
    assert!(answers[..10].iter().all(|(s, ..)| *s == 403), "{answers:?}");
    assert!(
        checked <= 10 + seconds as usize + 1,
        "{checked} in {seconds} s: {answers:?}"
    );
    for (status, code, retry_after) in answers.iter().filter(|(s, ..)| *s != 403) {
        assert_eq!(
            (*status, code.as_str()),
            (429, "ThrottlingException"),
            "{answers:?}"
        );
        assert!(
            retry_after.parse::<u64>().is_ok_and(|s| s >= 1),
            "{answers:?}"
        );
    }
    // Machine B is not slowed down: its right secret works, its wrong one is just wrong.
    assert_eq!(sign_in(&b, &server, &secret, 1)[0].0, 200);
    assert_eq!(sign_in(&b, &server, "not-the-secret", 1)[0].0, 403);
    // Each failure is in the auth log, with where it came from.
    let log = std::fs::read_to_string(server.data_dir().join("logs/auth.log")).unwrap();
    let from = |ip: std::net::Ipv4Addr| {
        log.lines()
            .filter(|l| l.contains(&format!("\"client\":\"{ip}:")))
            .collect::<Vec<_>>()
    };
    assert!(from(a.client_ip).len() > checked, "{log}");
    assert!(
        from(a.client_ip)
            .iter()
            .any(|l| l.contains("too many failures")),
        "{log}"
    );
    assert_eq!(from(b.client_ip).len(), 1, "{log}");

    // 10,000 half-open connections from machine A to the API: the router keeps serving,
    // the API keeps answering machine B, and the server holds a bounded number of them.
    let api_port = server.api_url().rsplit(':').next().unwrap().to_string();
    let mut attack = a
        .command("python3")
        .arg(script("half_open.py"))
        .args([&a.host_ip.to_string(), &api_port, "10000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(attack.stdout.take().unwrap()).lines();
    let opened: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        opened["opened"].as_u64().unwrap() + opened["refused"].as_u64().unwrap(),
        10_000,
        "{opened}"
    );
    let pid = server.pid();
    assert!(
        open_files(pid) < 1500,
        "the server holds {} files",
        open_files(pid)
    );
    for _ in 0..5 {
        assert_eq!(get(&server, &host, "/healthz").0, 200);
    }
    assert_eq!(sign_in(&b, &server, &secret, 1)[0].0, 200);
    assert!(
        open_files(pid) < 1500,
        "the server holds {} files",
        open_files(pid)
    );
    // Closing its input lets the attacker go.
    drop(attack.stdin.take());
    let closed: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let _ = attack.wait();
    // Beyond machine A's share, connections were closed at once.
    assert!(
        closed["closed_by_server"].as_u64().unwrap() + 300 >= opened["opened"].as_u64().unwrap(),
        "{opened} {closed}"
    );
    assert_eq!(get(&server, &host, "/healthz").0, 200);
    let (_, metrics) = crate::harness::get(&server.metrics);
    assert!(
        metrics.contains("runway_listener_refused_total{listener=\"api\",reason=\"address\"}"),
        "{metrics}"
    );
}

/// Makes a CA and a certificate for `runway.test` and 127.0.0.1 signed by it, with
/// openssl, as an operator would: (CA certificate, leaf certificate, leaf key).
fn openssl_certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let p = |f: &str| dir.join(format!("{name}-{f}"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert_ok(&out, "openssl");
    };
    let s = |p: &PathBuf| p.display().to_string();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &s(&p("ca.key")),
        "-out",
        &s(&p("ca.pem")),
        "-days",
        "30",
        "-subj",
        &format!("/CN={name} CA"),
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &s(&p("tls.key")),
        "-out",
        &s(&p("tls.csr")),
        "-subj",
        "/CN=runway.test",
    ]);
    std::fs::write(
        p("ext"),
        "subjectAltName=DNS:runway.test,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &s(&p("tls.csr")),
        "-CA",
        &s(&p("ca.pem")),
        "-CAkey",
        &s(&p("ca.key")),
        "-CAcreateserial",
        "-out",
        &s(&p("tls.crt")),
        "-days",
        "30",
        "-extfile",
        &s(&p("ext")),
    ]);
    (p("ca.pem"), p("tls.crt"), p("tls.key"))
}

/// `curl`'s answer (status, or 0 when the connection failed) for `url`, trusting only
/// `ca`.
fn status_trusting(ca: &Path, url: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg("--cacert")
        .arg(ca)
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn a_certificate_file_replaced_on_disk_is_served_on_the_next_connection() {
    let certs = tempfile::tempdir().unwrap();
    let (first_ca, first_cert, first_key) = openssl_certificate(certs.path(), "first");
    let (second_ca, second_cert, second_key) = openssl_certificate(certs.path(), "second");
    let (cert, key) = (certs.path().join("tls.crt"), certs.path().join("tls.key"));
    std::fs::copy(&first_cert, &cert).unwrap();
    std::fs::copy(&first_key, &key).unwrap();
    let server = Server::start_with(&[
        "--no-controller",
        "--tls-cert",
        &cert.display().to_string(),
        "--tls-key",
        &key.display().to_string(),
    ]);
    let api = format!("{}/", server.api_url());
    let registry = format!("{}/v2/", server.registry);
    // Unsigned: the API answers 403 and the registry 401, once TLS is through.
    assert_eq!(status_trusting(&first_ca, &api), 403);
    assert_eq!(status_trusting(&first_ca, &registry), 401);
    assert_eq!(status_trusting(&second_ca, &api), 0);

    // Renewed the way certbot and cert-manager do it: new files renamed over the old.
    let (new_cert, new_key) = (certs.path().join("new.crt"), certs.path().join("new.key"));
    std::fs::copy(&second_cert, &new_cert).unwrap();
    std::fs::copy(&second_key, &new_key).unwrap();
    std::fs::rename(&new_key, &key).unwrap();
    std::fs::rename(&new_cert, &cert).unwrap();
    assert_eq!(status_trusting(&second_ca, &api), 403);
    assert_eq!(status_trusting(&second_ca, &registry), 401);
    assert_eq!(status_trusting(&first_ca, &api), 0);

    // A file being written is not served half-done: the last good pair stays.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
    assert_eq!(status_trusting(&second_ca, &api), 403);
    assert!(
        server
            .log()
            .contains("cannot be used; still serving the previous certificate")
    );
}

#[test]
fn plain_http_on_a_non_loopback_address_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for flag in ["--api-listen", "--registry-listen"] {
        let out = Command::new(runway_binary())
            .args(["server", "--data-dir"])
            .arg(dir.path())
            .args([flag, "0.0.0.0:0"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("refusing to serve")
                && stderr.contains("plain HTTP on 0.0.0.0:0")
                && stderr.contains("--tls")
                && stderr.contains("--allow-insecure-http"),
            "{stderr}"
        );
    }
    // Nothing was started or written.
    assert!(!dir.path().join("endpoints.json").exists());
}
