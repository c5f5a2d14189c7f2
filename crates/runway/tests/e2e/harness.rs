//! Starts real `runway server` processes in temporary data directories and drives them
//! with real clients: the AWS CLI v2, boto3, and raw SigV4-signed HTTP.

use runway_runtime::{NetConfig, RuntimeConfig, ShimCommand};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

pub const REGION: &str = "us-east-1";

/// A running server with its own data directory, bridge and subnet, stopped and removed
/// (instances, network and all) on drop.
pub struct Server {
    pub dir: tempfile::TempDir,
    /// The bridge its instances use (unique, so servers can run in parallel).
    pub bridge: String,
    pub subnet: String,
    flags: Vec<String>,
    /// The address the API and the registry listen on (loopback by default).
    listen: std::net::IpAddr,
    /// The server's limit on open files, if the test sets one.
    nofile: Option<u64>,
    /// The next launch puts the registry on a new port.
    move_registry: bool,
    child: Option<Child>,
    pub api: String,
    pub registry: String,
    pub http: String,
    pub https: String,
    pub metrics: String,
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_runway")
}

impl Server {
    /// A whole server: API, registry, router, runtime and controller.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// A server that records operations but deploys nothing (`--no-controller`), for
    /// tests of the API's own behaviour.
    pub fn api_only() -> Server {
        Self::start_with(&["--no-controller"])
    }

    /// A whole server with extra flags.
    pub fn start_with(flags: &[&str]) -> Server {
        Self::start_opts(Options {
            flags,
            ..Options::default()
        })
    }

    /// A whole server as `options` say.
    pub fn start_opts(options: Options<'_>) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("runway-e2e-")
            .tempdir()
            .expect("temp dir");
        let n = unique();
        let mut server = Server {
            dir,
            bridge: format!("rwe{:04x}", n & 0xffff),
            subnet: format!("10.{}.{}.0/24", 202 + (n >> 8) % 40, n & 0xff),
            flags: options.flags.iter().map(|f| f.to_string()).collect(),
            listen: options.listen,
            nofile: options.nofile,
            move_registry: false,
            child: None,
            api: String::new(),
            registry: String::new(),
            http: String::new(),
            https: String::new(),
            metrics: String::new(),
        };
        server.launch();
        server
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn credentials(&self) -> PathBuf {
        self.data_dir().join("credentials")
    }

    /// The `runway` command, pointed at this server's data directory (and at the API by
    /// its address).
    pub fn runway(&self) -> Command {
        let mut cmd = Command::new(binary());
        cmd.env("RUNWAY_DATA_DIR", self.data_dir())
            .env("RUNWAY_ENDPOINT_URL", self.api_url())
            .env_remove("RUNWAY_PROFILE")
            .env_remove("RUNWAY_CA_FILE");
        cmd
    }

    /// What `runway ARGS` printed; panics with its error output if it failed.
    #[track_caller]
    pub fn runway_out(&self, args: &[&str]) -> String {
        let out = self.runway().args(args).output().unwrap();
        assert_ok(&out, &format!("runway {args:?}"))
    }

    /// `runway deploy --source DIR`, as a user deploys a checkout; its output, whether
    /// it succeeded or not.
    pub fn deploy_source(&self, dir: &Path) -> Output {
        self.runway()
            .args(["deploy", "--source"])
            .arg(dir)
            .output()
            .unwrap()
    }

    fn launch(&mut self) {
        if let Err(status) = self.try_launch() {
            panic!("runway server exited with {status}:\n{}", self.log());
        }
    }

    /// Starts the server; how it exited if it does not start.
    fn try_launch(&mut self) -> Result<(), std::process::ExitStatus> {
        // A relaunched server keeps its registry's address, as a configured one does:
        // image references of its services name it.
        let previous = self
            .registry_addr()
            .filter(|_| !std::mem::take(&mut self.move_registry));
        let registry_listen = match previous {
            Some(previous) => previous.to_string(),
            None => std::net::SocketAddr::new(self.listen, 0).to_string(),
        };
        let api_listen = std::net::SocketAddr::new(self.listen, 0).to_string();
        let endpoints = self.data_dir().join("endpoints.json");
        let _ = std::fs::remove_file(&endpoints);
        // The log says where this launch listens just after endpoints.json is written.
        let starts = |log: &str| log.matches("runway started").count();
        let started_before = starts(&self.log());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir().join("server.log"))
            .expect("log file");
        let mut command = match self.nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        let child = command
            .args(["server", "--data-dir"])
            .arg(self.data_dir())
            .args([
                "--api-listen",
                &api_listen,
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .args(["--registry-listen", &registry_listen])
            .args(
                ["--http-listen", "--https-listen"]
                    .iter()
                    .flat_map(|flag| {
                        // A test may listen elsewhere (`[::]:0` for IPv6 clients).
                        (!self.flags.iter().any(|f| f == flag)).then_some([*flag, "127.0.0.1:0"])
                    })
                    .flatten(),
            )
            .args(["--bridge", &self.bridge, "--subnet", &self.subnet])
            .args(&self.flags)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start runway server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(raw) = std::fs::read(&endpoints)
                && starts(&self.log()) > started_before
            {
                let v: Value = serde_json::from_slice(&raw).expect("endpoints.json is JSON");
                let field = |k: &str| {
                    v[k].as_str()
                        .unwrap_or_else(|| panic!("endpoints.json has no {k}"))
                        .to_string()
                };
                self.api = field("api");
                self.registry = field("registry");
                self.http = field("http");
                self.https = field("https");
                self.metrics = field("metrics");
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(status);
            }
            assert!(
                Instant::now() < deadline,
                "runway server did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `runway restart-router` for this data directory (a new router process takes the
    /// listening sockets over while the old one drains); panics if it fails.
    pub fn restart_router(&self) {
        let data_dir = self.data_dir().to_str().unwrap();
        self.runway_out(&["restart-router", "--data-dir", data_dir]);
    }

    /// The router process's id, while one serves the data directory.
    pub fn router_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.data_dir().join("router.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        std::path::Path::new(&format!("/proc/{pid}"))
            .exists()
            .then_some(pid)
    }

    /// The server process's id (the control plane; the router serves in its own).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("the server runs")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("server.log")).unwrap_or_default()
    }

    fn signal(&mut self, signal: &str) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        Some(child.wait().expect("wait for runway server"))
    }

    /// Stops the server with SIGTERM and starts it again on the same data directory.
    pub fn restart(&mut self) {
        let status = self.signal("-TERM").expect("server was running");
        assert!(
            status.success(),
            "graceful shutdown should exit 0, got {status}:\n{}",
            self.log()
        );
        self.launch();
    }

    /// Stops the server with SIGTERM and starts it again with `flags` instead of the ones
    /// it had, as when an operator changes its configuration.
    pub fn restart_with(&mut self, flags: &[&str]) {
        self.flags = flags.iter().map(|f| f.to_string()).collect();
        self.restart();
    }

    /// Stops the server with SIGTERM and starts it with `flags`, which must make it fail:
    /// its log. The server stays stopped (with its former flags) for [`Server::relaunch`].
    pub fn restart_failing_with(&mut self, flags: &[&str]) -> String {
        let status = self.signal("-TERM").expect("server was running");
        assert!(status.success(), "{}", self.log());
        let former = std::mem::replace(
            &mut self.flags,
            flags.iter().map(|f| f.to_string()).collect(),
        );
        let started = self.try_launch();
        self.flags = former;
        assert!(started.is_err(), "the server started with {flags:?}");
        self.log()
    }

    /// Stops the server with SIGTERM and starts it again with its registry on another
    /// port, as when an operator changes `--registry-listen`.
    pub fn restart_moving_the_registry(&mut self) {
        self.move_registry = true;
        self.restart();
    }

    /// Kills the server with SIGKILL and starts it again on the same data directory.
    pub fn crash_and_restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Kills the server with SIGKILL (its instances run on).
    pub fn kill(&mut self) {
        self.signal("-KILL").expect("server was running");
    }

    /// Starts the server again after [`Server::kill`].
    pub fn relaunch(&mut self) {
        self.launch();
    }

    /// The registry's `host:port`, as image references name it.
    pub fn registry_host(&self) -> &str {
        self.registry
            .split_once("://")
            .map_or(self.registry.as_str(), |(_, rest)| rest)
    }

    /// The address `part` (`api`, `registry`) listens on, once the server has started:
    /// endpoints.json may name it by a public name, the log has the address.
    fn listening(&self, part: &str) -> Option<std::net::SocketAddr> {
        let log = self.log();
        let started = log.lines().rev().find(|l| l.contains("runway started"))?;
        let value = started
            .split(&format!(" {part}="))
            .nth(1)?
            .split_whitespace()
            .next()?;
        value.parse().ok()
    }

    fn registry_addr(&self) -> Option<std::net::SocketAddr> {
        self.listening("registry")
    }

    /// The API's URL by its address (the certificate names it too), for clients on this
    /// machine, which may not resolve the public name `api` has.
    pub fn api_url(&self) -> String {
        let scheme = self.api.split_once("://").map_or("http", |(s, _)| s);
        match self.listening("api") {
            Some(addr) => format!("{scheme}://{addr}"),
            None => self.api.clone(),
        }
    }

    /// The local CA's certificate, which signs the router's certificates (and the API's
    /// and registry's with `--tls`).
    pub fn ca(&self) -> PathBuf {
        self.data_dir().join("certs/ca.pem")
    }

    /// The admin access key as `KEYID:SECRET`, for skopeo's `--creds`.
    pub fn creds(&self) -> String {
        let (id, secret) = read_key(&self.credentials());
        format!("{id}:{secret}")
    }

    /// Runs `aws apprunner <args>` against this server.
    pub fn aws(&self, args: &[&str]) -> Aws {
        self.aws_with(&self.credentials(), args)
    }

    /// Like [`Server::aws`], with another credentials file.
    pub fn aws_with(&self, credentials: &Path, args: &[&str]) -> Aws {
        self.aws_cli(credentials, "apprunner", args)
    }

    /// Runs `aws <service> <args>` (secretsmanager, ssm, kms) against this server.
    pub fn aws_service(&self, service: &str, args: &[&str]) -> Aws {
        self.aws_cli(&self.credentials(), service, args)
    }

    /// Runs `aws ec2 <args>` against this server (runway's EC2 subset).
    pub fn ec2(&self, args: &[&str]) -> Aws {
        self.aws_cli(&self.credentials(), "ec2", args)
    }

    fn aws_cli(&self, credentials: &Path, service: &str, args: &[&str]) -> Aws {
        let out = Command::new(aws_binary())
            .arg(service)
            .args(args)
            .args([
                "--endpoint-url",
                &self.api_url(),
                "--region",
                REGION,
                "--output",
                "json",
            ])
            .env("AWS_SHARED_CREDENTIALS_FILE", credentials)
            .env("AWS_PROFILE", "runway")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_PAGER", "")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CA_BUNDLE", self.ca())
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_DEFAULT_REGION")
            .stdin(Stdio::null())
            .output()
            .expect("run the AWS CLI (apt-get install awscli)");
        Aws(out)
    }

    /// Runs the boto3 script `tests/e2e/py/<name>` against this server; it asserts on its own.
    pub fn boto3(&self, script: &str) -> String {
        self.boto3_with(script, &[])
    }

    /// Like [`Server::boto3`], with more environment variables for the script.
    pub fn boto3_with(&self, script: &str, vars: &[(&str, &str)]) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/e2e/py")
            .join(script);
        let out = Command::new("python3")
            .arg(&path)
            .env("RUNWAY_ENDPOINT", self.api_url())
            .env("AWS_CA_BUNDLE", self.ca())
            .env("AWS_SHARED_CREDENTIALS_FILE", self.credentials())
            .env("AWS_PROFILE", "runway")
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .envs(vars.iter().copied())
            .output()
            .expect("run python3");
        assert_ok(&out, script)
    }

    /// Sends `body` to the API signed for `operation`, letting `tweak` change the request
    /// before (`sign_time`) and after signing; returns the status and JSON body.
    pub fn raw(&self, request: RawRequest<'_>) -> (u16, Value) {
        raw_call(&self.api_url(), &self.credentials(), &self.ca(), request)
    }
}

/// How a test server is started.
pub struct Options<'a> {
    /// The address the API and the registry listen on.
    pub listen: std::net::IpAddr,
    pub flags: &'a [&'a str],
    /// A limit on the server's open files (soft and hard).
    pub nofile: Option<u64>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            listen: [127, 0, 0, 1].into(),
            flags: &[],
            nofile: None,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // So does the router process.
        if let Some(pid) = self.router_pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}/exe")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Instances outlive the server by design; a test's must not outlive the test.
        let mut config = RuntimeConfig::new(
            self.data_dir().join("runtime"),
            ShimCommand::runway(Path::new(binary())),
        );
        config.net = NetConfig {
            bridge: self.bridge.clone(),
            subnet: self.subnet.parse().expect("subnet"),
            ipv6: None,
        };
        if let Err(e) = runway_runtime::purge(&config) {
            eprintln!("cleaning up after the test server failed: {e}");
        }
    }
}

/// A number no other test server in any test process is using: a random start, then
/// checked against the bridges that exist.
fn unique() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(2654435761)
        ^ SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
    loop {
        let n = (seed.wrapping_add(NEXT.fetch_add(97, Ordering::Relaxed))) % (40 * 256);
        if !Path::new(&format!("/sys/class/net/rwe{:04x}", n & 0xffff)).exists() {
            return n;
        }
    }
}

/// The AWS CLI v2 from Debian's awscli package, not a v1 that may come first on PATH.
fn aws_binary() -> &'static str {
    if Path::new("/usr/bin/aws").exists() {
        "/usr/bin/aws"
    } else {
        "aws"
    }
}

/// The outcome of an AWS CLI call.
pub struct Aws(pub Output);

impl Aws {
    /// The JSON the command printed; panics with the CLI's message if it failed.
    #[track_caller]
    pub fn ok(&self) -> Value {
        assert!(
            self.0.status.success(),
            "aws failed ({}): {}",
            self.0.status,
            String::from_utf8_lossy(&self.0.stderr)
        );
        let stdout = String::from_utf8_lossy(&self.0.stdout);
        if stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&stdout).expect("the AWS CLI printed JSON")
        }
    }

    /// The error type the CLI reported; panics if the call succeeded.
    #[track_caller]
    pub fn err(&self) -> (String, String) {
        let stderr = String::from_utf8_lossy(&self.0.stderr).into_owned();
        assert!(
            !self.0.status.success(),
            "expected an error, got {}",
            String::from_utf8_lossy(&self.0.stdout)
        );
        // "An error occurred (InvalidRequestException) when calling the X operation: message"
        let kind = stderr
            .split_once("An error occurred (")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(kind, _)| kind.to_string())
            .unwrap_or_else(|| panic!("unexpected AWS CLI error output: {stderr}"));
        let message = stderr
            .split_once("operation: ")
            .map(|(_, m)| m.trim().to_string())
            .unwrap_or_default();
        (kind, message)
    }
}

/// A hand-made API request.
pub struct RawRequest<'a> {
    pub operation: &'a str,
    /// The target prefix: `AppRunner` or runway's `Runway` (or `secretsmanager`, ...).
    pub prefix: &'a str,
    /// The service name the request is signed for.
    pub signing_name: &'a str,
    pub body: &'a str,
    pub content_type: &'a str,
    /// Sign as if at this time (default: now).
    pub sign_time: Option<SystemTime>,
    /// Replace the secret the request is signed with.
    pub secret: Option<&'a str>,
    /// Replace the access key id the request is signed with.
    pub access_key: Option<&'a str>,
    /// Headers added after signing.
    pub unsigned_headers: &'a [(&'a str, &'a str)],
    /// Send without an Authorization header.
    pub unsigned: bool,
}

impl Default for RawRequest<'_> {
    fn default() -> Self {
        RawRequest {
            operation: "ListServices",
            prefix: "AppRunner",
            signing_name: "apprunner",
            body: "{}",
            content_type: "application/x-amz-json-1.0",
            sign_time: None,
            secret: None,
            access_key: None,
            unsigned_headers: &[],
            unsigned: false,
        }
    }
}

fn read_key(credentials: &Path) -> (String, String) {
    let text = std::fs::read_to_string(credentials).expect("credentials file");
    let get = |k: &str| {
        text.lines()
            .find_map(|l| {
                l.split_once('=')
                    .filter(|(key, _)| key.trim() == k)
                    .map(|(_, v)| v.trim().to_string())
            })
            .expect("key in credentials")
    };
    (get("aws_access_key_id"), get("aws_secret_access_key"))
}

pub fn raw_call(api: &str, credentials: &Path, ca: &Path, r: RawRequest<'_>) -> (u16, Value) {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4::SigningParams;

    let (id, secret) = read_key(credentials);
    let url = format!("{api}/");
    let mut request = http::Request::builder()
        .method("POST")
        .uri(&url)
        .header("content-type", r.content_type)
        .header("x-amz-target", format!("{}.{}", r.prefix, r.operation))
        .body(r.body.as_bytes().to_vec())
        .expect("request");
    let host = request.uri().authority().expect("authority").to_string();
    request
        .headers_mut()
        .insert("host", host.parse().expect("host"));
    if !r.unsigned {
        let creds = aws_credential_types::Credentials::new(
            r.access_key.unwrap_or(&id),
            r.secret.unwrap_or(&secret),
            None,
            None,
            "test",
        );
        let identity = creds.into();
        let params = SigningParams::builder()
            .identity(&identity)
            .region(REGION)
            .name(r.signing_name)
            .time(r.sign_time.unwrap_or_else(SystemTime::now))
            .settings(SigningSettings::default())
            .build()
            .expect("signing params")
            .into();
        let signable = SignableRequest::new(
            "POST",
            url.as_str(),
            request
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str(), v.to_str().expect("ascii header"))),
            SignableBody::Bytes(r.body.as_bytes()),
        )
        .expect("signable");
        let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
        instructions.apply_to_request_http1x(&mut request);
    }
    for (k, v) in r.unsigned_headers {
        let name = http::HeaderName::from_bytes(k.as_bytes()).expect("header name");
        request
            .headers_mut()
            .insert(name, v.parse().expect("header value"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let request =
            reqwest::Request::try_from(request.map(reqwest::Body::from)).expect("reqwest request");
        let client = match std::fs::read(ca) {
            Ok(pem) if api.starts_with("https") => reqwest::Client::builder()
                .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).expect("CA PEM"))
                .build()
                .expect("client"),
            _ => reqwest::Client::new(),
        };
        let response = client.execute(request).await.expect("send");
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("body");
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    })
}

/// A simple GET, for the metrics endpoint.
pub fn get(url: &str) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let response = reqwest::get(url).await.expect("GET");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    })
}

/// The standard output of a program run that must have succeeded (`what` names it);
/// otherwise the test fails with its status and output.
#[track_caller]
pub fn assert_ok(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
