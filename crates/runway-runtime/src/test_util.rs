//! Test helpers, for this crate's tests and the crates above it: the test app built
//! statically and packed as an OCI image, a busybox image for tests that need a shell,
//! hand-made layer tarballs (including malicious ones), networks no other test uses, and
//! a runtime environment that removes everything it created when dropped, even after a
//! failed test.

use crate::image::{ImageRef, OciLayout, sha256_digest};
use crate::local::{LocalRuntime, RuntimeConfig, ShimCommand, purge};
use crate::{HealthCheck, InstanceSpec, Probe};
use runway_net::{NetConfig, Subnet};
use serde_json::json;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The target triple the test app is built for (statically linked).
const TESTAPP_TARGET: &str = "x86_64-unknown-linux-gnu";

/// The cargo target directory the running test was built in.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // <target>/<profile>/deps/<test binary>
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds a binary of the workspace with cargo, once per process (cargo's own lock
/// serialises builds across processes).
fn cargo_build(args: &[&str], target: &Path, rustflags: Option<&str>) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .args(args)
        .arg("--manifest-path")
        .arg(workspace_dir().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target)
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if let Some(flags) = rustflags {
        cmd.env("RUSTFLAGS", flags);
    }
    let status = cmd.status().expect("cannot run cargo");
    assert!(status.success(), "cargo build {args:?} failed");
    target.to_path_buf()
}

/// The test app, built with `-C target-feature=+crt-static` into its own target
/// directory (so the flags do not invalidate the main build).
pub fn testapp_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let target = target_dir().join("testapp");
        cargo_build(
            &[
                "--release",
                "-p",
                "runway-testapp",
                "--target",
                TESTAPP_TARGET,
            ],
            &target,
            Some("-C target-feature=+crt-static -C strip=symbols"),
        )
        .join(TESTAPP_TARGET)
        .join("release/runway-testapp")
    })
    .clone()
}

/// The shim binary of this crate, built on demand into its own target directory (a
/// running `cargo test` may hold the lock of its own), for crates whose tests cannot name
/// it with `CARGO_BIN_EXE_runway-shim`.
pub fn shim_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let target = target_dir().join("shim");
        cargo_build(
            &["-p", "runway-runtime", "--bin", "runway-shim"],
            &target,
            None,
        )
        .join("debug/runway-shim")
    })
    .clone()
}

/// The shim command for tests of other crates (see [`shim_binary`]).
pub fn shim_command() -> ShimCommand {
    ShimCommand {
        program: shim_binary(),
        args: Vec::new(),
    }
}

/// A tarball built entry by entry, names written as given (so a test can write the
/// `..` and absolute names that `tar::Builder` refuses).
#[derive(Default)]
pub struct TarBuilder {
    out: Vec<u8>,
}

impl std::fmt::Debug for TarBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarBuilder")
            .field("bytes", &self.out.len())
            .finish()
    }
}

impl TarBuilder {
    pub fn new() -> TarBuilder {
        TarBuilder::default()
    }

    fn entry(
        mut self,
        kind: tar::EntryType,
        path: &str,
        mode: u32,
        link: Option<&str>,
        data: &[u8],
    ) -> TarBuilder {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        {
            let old = h.as_old_mut();
            assert!(path.len() < 100, "test tar names must be short");
            old.name = [0; 100];
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(link) = link {
                assert!(link.len() < 100, "test link names must be short");
                old.linkname = [0; 100];
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(self, path: &str, mode: u32, data: &[u8]) -> TarBuilder {
        self.entry(tar::EntryType::Regular, path, mode, None, data)
    }

    pub fn dir(self, path: &str, mode: u32) -> TarBuilder {
        self.entry(tar::EntryType::Directory, path, mode, None, b"")
    }

    pub fn symlink(self, path: &str, target: &str) -> TarBuilder {
        self.entry(tar::EntryType::Symlink, path, 0o777, Some(target), b"")
    }

    pub fn hardlink(self, path: &str, target: &str) -> TarBuilder {
        self.entry(tar::EntryType::Link, path, 0o644, Some(target), b"")
    }

    pub fn char_device(mut self, path: &str, major: u32, minor: u32) -> TarBuilder {
        self = self.entry(tar::EntryType::Char, path, 0o666, None, b"");
        // Device numbers live in the header just written.
        let start = self.out.len() - 512;
        let mut h = tar::Header::new_gnu();
        h.as_mut_bytes().copy_from_slice(&self.out[start..]);
        h.set_device_major(major)
            .expect("a GNU header has device fields");
        h.set_device_minor(minor)
            .expect("a GNU header has device fields");
        h.set_cksum();
        self.out[start..].copy_from_slice(h.as_bytes());
        self
    }

    pub fn fifo(self, path: &str) -> TarBuilder {
        self.entry(tar::EntryType::Fifo, path, 0o644, None, b"")
    }

    /// The tarball, with its end-of-archive blocks.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(&[0u8; 1024]);
        self.out
    }
}

/// Gzip with a fixed header, so equal input gives an equal digest.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

/// Writes an OCI image layout at `dir` with one gzipped layer per tarball in `layers`
/// (bottom first) and `config` as the image's run config; tagged `tag`.
pub fn write_layout(
    dir: &Path,
    layers: &[Vec<u8>],
    config: serde_json::Value,
    tag: &str,
) -> io::Result<(OciLayout, ImageRef)> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let put = |data: &[u8]| -> io::Result<(String, usize)> {
        let digest = sha256_digest(data);
        std::fs::write(blobs.join(&digest["sha256:".len()..]), data)?;
        Ok((digest, data.len()))
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in layers {
        diff_ids.push(sha256_digest(tar));
        let (digest, size) = put(&gzip(tar))?;
        descs.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest,
            "size": size,
        }));
    }
    let image_config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (config_digest, config_size) = put(&serde_json::to_vec(&image_config)?)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": descs,
    });
    let (manifest_digest, manifest_size) = put(&serde_json::to_vec(&manifest)?)?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    let layout = OciLayout::open(dir).map_err(io::Error::other)?;
    let image = ImageRef {
        repository: format!("test/{tag}"),
        digest: manifest_digest,
    };
    Ok((layout, image))
}

/// The test app's layer: the static binary at `/app`.
fn testapp_layer() -> Vec<u8> {
    let bin = std::fs::read(testapp_binary()).expect("the test app was built");
    TarBuilder::new().file("app", 0o755, &bin).finish()
}

/// The static test app as an OCI image at `dir`: one layer with `/app`, entrypoint
/// `["/app"]`, port 8080.
pub fn testapp_image(dir: &Path) -> (OciLayout, ImageRef) {
    write_layout(
        dir,
        &[testapp_layer()],
        json!({
            "Entrypoint": ["/app"],
            "ExposedPorts": {"8080/tcp": {}},
            "Env": [format!("PATH={}", crate::spec::DEFAULT_PATH)],
        }),
        "testapp",
    )
    .expect("cannot write the test app image")
}

/// The busybox applets linked in the busybox image.
const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "env", "id", "sleep", "ps", "kill", "true", "false", "wget", "nc",
    "mkdir", "rm", "touch", "head", "tail", "grep", "dd", "hostname", "ln", "chmod", "chown",
    "stat", "pwd",
];

/// An image with Debian's static busybox at `/bin/busybox` (and `/bin/sh`, ...), users
/// `root` and `app` (1000:1000), and the test app at `/app` as its entrypoint, in two
/// layers. Needs the `busybox-static` package.
pub fn busybox_image(dir: &Path) -> (OciLayout, ImageRef) {
    write_layout(
        dir,
        &[busybox_base().finish(), testapp_layer()],
        json!({
            "Entrypoint": ["/app"],
            "Env": [format!("PATH={}", crate::spec::DEFAULT_PATH)],
        }),
        "busybox",
    )
    .expect("cannot write the busybox image")
}

/// The bottom layer of [`busybox_image`] (`/bin` with busybox and its applets, `/etc`
/// with `passwd` and `group`, `/tmp`), for tests that add entries of their own.
pub fn busybox_base() -> TarBuilder {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    let mut base = TarBuilder::new()
        .dir("bin", 0o755)
        .dir("etc", 0o755)
        .dir("tmp", 0o1777)
        .file("bin/busybox", 0o755, &busybox)
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        )
        .file(
            "etc/group",
            0o644,
            b"root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
        );
    for applet in APPLETS {
        base = base.symlink(&format!("bin/{applet}"), "busybox");
    }
    base
}

/// A file in `/run/runway-test` that reserves a name for this process; removed when
/// dropped. A reservation of a process that died is taken over.
#[derive(Debug)]
pub struct Reservation(PathBuf);

impl Reservation {
    pub fn take(name: &str) -> Option<Reservation> {
        let dir = Path::new("/run/runway-test");
        std::fs::create_dir_all(dir).ok()?;
        let path = dir.join(name);
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    write!(f, "{}", std::process::id()).ok()?;
                    return Some(Reservation(path));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path).unwrap_or_default();
                    let alive = owner.trim().parse::<u32>().is_ok_and(|pid| {
                        pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists()
                    });
                    if alive {
                        return None;
                    }
                    let _ = std::fs::remove_file(&path);
                }
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        // The last reservation takes the directory with it (a busy one stays).
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A bridge name (`rwt<4 hex>`) and /24 (in 10.203.0.0/16) no other test holds.
#[derive(Debug)]
pub struct TestNet {
    pub config: NetConfig,
    _bridge: Reservation,
    _subnet: Reservation,
}

/// Reserves a network for one test.
pub fn test_net() -> TestNet {
    static LOCK: Mutex<()> = Mutex::new(());
    let _held = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..200 {
        let r = uuid::Uuid::new_v4();
        let b = r.as_bytes();
        let bridge = format!("rwt{:02x}{:02x}", b[0], b[1]);
        let third = b[2];
        if Path::new("/sys/class/net").join(&bridge).exists() {
            continue;
        }
        let Some(bridge_res) = Reservation::take(&format!("bridge-{bridge}")) else {
            continue;
        };
        let Some(subnet_res) = Reservation::take(&format!("subnet-10.203.{third}")) else {
            continue;
        };
        let subnet = Subnet::new(Ipv4Addr::new(10, 203, third, 0), 24).expect("a valid /24");
        return TestNet {
            config: NetConfig {
                bridge,
                subnet,
                ipv6: None,
            },
            _bridge: bridge_res,
            _subnet: subnet_res,
        };
    }
    panic!("no free test network");
}

/// Runs `ip` with `args`; the error says what failed.
fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The "internet" for a test: a network namespace behind a veth pair from the host on a
/// /30 of its own (10.206.<third octet of the test's subnet>.0/30), with no route back to
/// the instances' subnet, so that only the runtime's NAT lets an answer return. An HTTP
/// server there answers every request with `outside` and records who asked. Removed when
/// dropped (and with the test's bridge by [`purge`], whose namespace prefix it uses).
#[derive(Debug)]
pub struct Outside {
    /// Where the server listens.
    pub addr: SocketAddr,
    /// The host's address on the link, which NAT makes the instances appear as.
    pub host_ip: Ipv4Addr,
    peers: std::sync::Arc<Mutex<Vec<std::net::IpAddr>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    veth: String,
    netns: String,
}

impl Outside {
    /// Creates the outside network for the test network `net`.
    pub fn new(net: &NetConfig) -> io::Result<Outside> {
        use std::os::fd::AsFd;
        use std::sync::atomic::{AtomicBool, Ordering};
        let third = net.subnet.network().octets()[2];
        let host_ip = Ipv4Addr::new(10, 206, third, 1);
        let far_ip = Ipv4Addr::new(10, 206, third, 2);
        let netns = runway_net::netns_name(&net.bridge, "outside");
        let veth = format!("{}o", net.bridge);
        let mut outside = Outside {
            addr: SocketAddr::from((far_ip, 80)),
            host_ip,
            peers: Default::default(),
            stop: std::sync::Arc::new(AtomicBool::new(false)),
            veth: veth.clone(),
            netns: netns.clone(),
        };
        ip(&["netns", "add", &netns])?;
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ])?;
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &veth])?;
        ip(&["link", "set", &veth, "up"])?;
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{far_ip}/30"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        let ns = std::fs::File::open(Path::new("/run/netns").join(&netns))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let peers = outside.peers.clone();
        let stop = outside.stop.clone();
        std::thread::spawn(move || {
            let bound = rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(io::Error::from)
            .and_then(|()| std::net::TcpListener::bind((far_ip, 0)));
            let listener = match bound {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let port = listener.local_addr().map(|a| a.port());
            let _ = tx.send(port);
            let _ = listener.set_nonblocking(true);
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        peers
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(peer.ip());
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 1024];
                        let _ = io::Read::read(&mut conn, &mut buf);
                        let _ = conn.write_all(
                            b"HTTP/1.0 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\noutside\n",
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| io::Error::other("the outside server did not start"))??;
        outside.addr.set_port(port);
        Ok(outside)
    }

    /// The source addresses of the connections the server accepted.
    pub fn peers(&self) -> Vec<std::net::IpAddr> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = ip(&["link", "del", &self.veth]);
        let _ = ip(&["netns", "del", &self.netns]);
    }
}

/// A runtime configuration for one test (its own root directory, bridge and subnet)
/// that removes everything of that runtime from the host when dropped.
#[derive(Debug)]
pub struct TestEnv {
    pub config: RuntimeConfig,
    _net: TestNet,
}

impl TestEnv {
    /// An environment whose instances run under `shim`.
    pub fn new(shim: ShimCommand) -> TestEnv {
        let net = test_net();
        let root = std::env::temp_dir().join(format!("runway-rt-{}", net.config.bridge));
        let _ = std::fs::remove_dir_all(&root);
        let mut config = RuntimeConfig::new(root, shim);
        config.net = net.config.clone();
        // Quick restarts, so crash tests need not wait for the production backoff.
        config.backoff.initial = Duration::from_millis(200);
        config.backoff.max = Duration::from_secs(5);
        TestEnv { config, _net: net }
    }

    /// Opens a runtime on this environment with its records in `store` and its images
    /// from `layout`.
    pub async fn open(
        &self,
        store: &Arc<runway_store::SqliteStore>,
        layout: &OciLayout,
    ) -> LocalRuntime {
        LocalRuntime::open(
            self.config.clone(),
            store.clone(),
            Arc::new(layout.clone()),
            &mut Default::default(),
        )
        .await
        .expect("the runtime opens")
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Err(e) = purge(&self.config) {
            eprintln!("cleanup of {} failed: {e}", self.config.root.display());
        }
    }
}

/// A spec for the test app: port 8080, 0.25 vCPU, 128 MB, HTTP health check of
/// `/healthz` every 200 ms.
pub fn testapp_spec(service: &str, image: &ImageRef) -> InstanceSpec {
    InstanceSpec {
        service_id: service.to_string(),
        revision_id: format!("{service}-rev1"),
        image: image.clone(),
        start_command: None,
        env: Vec::new(),
        secrets: Default::default(),
        port: 8080,
        cpu_units: 256,
        memory_mb: 128,
        health: HealthCheck {
            probe: Probe::Http {
                path: "/healthz".into(),
            },
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 3,
        },
        vpc_connector: None,
        ipv6: false,
    }
}

/// `GET path` on `addr`: the status and body, or an error (within `timeout`).
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> io::Result<(u16, String)> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not HTTP"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timed out"))?
}

/// Waits until `check` returns `Some`, polling every 20 ms; panics after `timeout`.
pub async fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next event matching `want` from `events`, within `timeout`.
pub async fn next_event(
    events: &mut tokio::sync::broadcast::Receiver<crate::InstanceEvent>,
    timeout: Duration,
    mut want: impl FnMut(&crate::InstanceEvent) -> bool,
) -> crate::InstanceEvent {
    tokio::time::timeout(timeout, async {
        loop {
            match events.recv().await {
                Ok(e) if want(&e) => return e,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("event channel closed: {e}"),
            }
        }
    })
    .await
    .expect("timed out waiting for an event")
}

/// The variable that tells a crash test's child process which runtime to run (JSON).
const CRASH_CHILD_ENV: &str = "RUNWAY_TEST_CRASH_CHILD";

/// A runtime in a child process, for tests that kill runway (SIGKILL) and check what a
/// new runtime finds: the test binary itself, running one of its ignored tests, which
/// opens a runtime with [`crash_child_setup`] and reports with [`crash_child_ready`].
/// Killed and reaped when dropped, so a failed test leaves no runtime running.
#[derive(Debug)]
pub struct CrashChild(std::process::Child);

impl CrashChild {
    /// Runs the ignored test `test` of this test binary with `env`'s runtime, the store
    /// `db` and the image layout `layout`; waits (up to two minutes) for it to report,
    /// and returns it with what it reported.
    pub fn start(test: &str, env: &TestEnv, db: &Path, layout: &Path) -> (CrashChild, String) {
        use std::io::BufRead;
        let config = json!({
            "root": env.config.root,
            "bridge": env.config.net.bridge,
            "subnet": env.config.net.subnet.to_string(),
            "db": db,
            "layout": layout,
        });
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                test,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD_ENV, config.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let child = CrashChild(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in io::BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest prints the test's name on the same line first.
                if let Some(report) = line.split("READY ").nth(1) {
                    let _ = tx.send(report.trim().to_string());
                }
            }
        });
        let report = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the child runtime reports");
        (child, report)
    }

    /// Kills the child with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for CrashChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// In a crash test's child: the runtime configuration (with `shim`), the store and the
/// image layout to open; `None` when the test runs on its own (it then does nothing).
pub fn crash_child_setup(
    shim: ShimCommand,
) -> Option<(RuntimeConfig, runway_store::SqliteStore, OciLayout)> {
    let spec = std::env::var(CRASH_CHILD_ENV).ok()?;
    let v: serde_json::Value = serde_json::from_str(&spec).unwrap();
    let s = |k: &str| v[k].as_str().unwrap().to_string();
    let mut config = RuntimeConfig::new(PathBuf::from(s("root")), shim);
    config.net.bridge = s("bridge");
    config.net.subnet = s("subnet").parse().unwrap();
    let store = runway_store::SqliteStore::open(Path::new(&s("db"))).unwrap();
    let layout = OciLayout::open(Path::new(&s("layout"))).unwrap();
    Some((config, store, layout))
}

/// In a crash test's child: reports `report` to the parent ([`CrashChild::start`]).
pub fn crash_child_ready(report: &str) {
    let mut out = io::stdout();
    writeln!(out, "READY {report}").unwrap();
    out.flush().unwrap();
}
