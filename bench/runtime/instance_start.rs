//! Instance start benchmark: create → healthy for the static test image, with a warm
//! layer cache, against peers measured in the same run: `runc run` of the same bundle
//! alone (the floor: no image, overlay, network setup, shim or store), and podman's
//! `podman run` of the same image when podman works here. Run as root:
//!
//!     cargo bench -p runway-runtime --bench instance_start -- [--runs N]
//!
//! See README.md next to this file for the method.

#![allow(clippy::print_stdout)]

use runway_runtime::test_util::{TestEnv, http_get, testapp_image, testapp_spec, wait_for};
use runway_runtime::{EventKind, HealthCheck, InstanceState, LocalRuntime, Runtime, ShimCommand};
use runway_store::SqliteStore;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut runs = 20usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--runs" {
            runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N");
        }
    }
    let shim = ShimCommand {
        program: env!("CARGO_BIN_EXE_runway-shim").into(),
        args: Vec::new(),
    };
    let env = TestEnv::new(shim);
    // Lower case: podman names an image imported from a layout after its path.
    let work = tempfile::Builder::new()
        .prefix(&format!("runway-bench-{}", std::process::id()))
        .rand_bytes(0)
        .tempdir()
        .expect("a temporary directory");
    let (layout, image) = testapp_image(&work.path().join("image"));
    // A file-backed store, as in production: every state change is an fsync'd commit.
    let store = Arc::new(SqliteStore::open(&work.path().join("state.db")).expect("the store"));
    let rt = LocalRuntime::open(
        env.config.clone(),
        store.clone(),
        Arc::new(layout.clone()),
        &mut Default::default(),
    )
    .await
    .expect("the runtime opens");
    let mut spec = testapp_spec("bench", &image);
    spec.health = HealthCheck::default(); // App Runner's default: TCP, threshold 1.
    let mut events = rt.subscribe();

    // Warm-up: unpacks the layer into the cache, and leaves a bundle to copy for the floor.
    let t0 = Instant::now();
    let id = rt.start(spec.clone()).await.expect("an instance starts");
    let status = wait_for("healthy", Duration::from_secs(30), || {
        rt.status(&id).filter(|s| s.state == InstanceState::Healthy)
    })
    .await;
    let cold = t0.elapsed();
    let floor_dir = work.path().join("floor");
    copy_bundle(&env.config.instance_dir(&id), &floor_dir);
    let floor_addr = status.addr;
    rt.stop(&id, Duration::ZERO).await.expect("it stops");

    let mut running = Vec::new();
    let mut healthy = Vec::new();
    for _ in 0..runs {
        while events.try_recv().is_ok() {}
        let t0 = Instant::now();
        let id = rt.start(spec.clone()).await.expect("an instance starts");
        running.push(t0.elapsed());
        loop {
            let e = events.recv().await.expect("events");
            if e.id == id && e.kind == EventKind::Healthy {
                break;
            }
        }
        healthy.push(t0.elapsed());
        rt.stop(&id, Duration::ZERO).await.expect("it stops");
    }

    let floor = floor_runs(&env, store.clone(), &floor_dir, floor_addr, runs).await;
    let podman = podman_runs(layout.dir(), runs).await;

    println!();
    println!("instance start, {runs} runs, warm layer cache (ms)");
    println!("{:<44} {:>8} {:>8}", "", "median", "p90");
    let row = |name: &str, v: &[Duration]| {
        println!("{name:<44} {:>8.1} {:>8.1}", pct(v, 50), pct(v, 90));
    };
    row("runway create -> running (start returns)", &running);
    row("runway create -> healthy", &healthy);
    row(
        "runway create -> healthy, cold layer cache (1 run)",
        &[cold],
    );
    row("runc run of the same bundle -> serving (floor)", &floor);
    match &podman {
        Ok(p) => row("podman run of the same image -> serving", p),
        Err(why) => println!("podman: not measured ({why})"),
    }
    println!(
        "ratio runway healthy / runc floor (median): {:.2}",
        pct(&healthy, 50) / pct(&floor, 50)
    );
    if let Ok(p) = &podman {
        println!(
            "ratio runway healthy / podman (median): {:.2}",
            pct(&healthy, 50) / pct(p, 50)
        );
    }
    println!("goal: runway create -> healthy <= 150 ms");
    rt.destroy().await.expect("the runtime is removed");
}

fn pct(v: &[Duration], p: usize) -> f64 {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let i = ((ms.len() * p).div_ceil(100)).clamp(1, ms.len()) - 1;
    ms[i]
}

/// Copies an instance's config and etc files; the floor's root filesystem is a plain
/// directory with the test app (no overlay).
fn copy_bundle(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("etc")).unwrap();
    std::fs::create_dir_all(to.join("rootfs")).unwrap();
    for f in ["hosts", "resolv.conf", "hostname"] {
        std::fs::copy(from.join("etc").join(f), to.join("etc").join(f)).unwrap();
    }
    std::fs::copy(
        runway_runtime::test_util::testapp_binary(),
        to.join("rootfs/app"),
    )
    .unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(from.join("config.json")).unwrap()).unwrap();
    config["root"]["path"] = to.join("rootfs").display().to_string().into();
    for m in config["mounts"].as_array_mut().unwrap() {
        if let Some(dest) = m["destination"].as_str()
            && let Some(name) = dest.strip_prefix("/etc/")
        {
            m["source"] = to.join("etc").join(name).display().to_string().into();
        }
    }
    std::fs::write(to.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
}

/// `runc run --detach` of the copied bundle in the warm-up instance's network namespace
/// (re-created for the floor), timed until the app accepts a connection.
async fn floor_runs(
    env: &TestEnv,
    store: Arc<SqliteStore>,
    dir: &Path,
    addr: SocketAddr,
    runs: usize,
) -> Vec<Duration> {
    let net = runway_net::Network::setup(env.config.net.clone(), store).unwrap();
    // The floor's own namespace on the bridge, with the address the config's hosts
    // file names (the first one of the subnet, which the warm-up instance held).
    let attachment = net.attach("floor", "floor").unwrap();
    assert_eq!(SocketAddr::new(attachment.ip.into(), addr.port()), addr);
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    for ns in config["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns["type"] == "network" {
            ns["path"] = attachment.netns.display().to_string().into();
        }
    }
    config["linux"]["cgroupsPath"] = format!("{}/floor", env.config.cgroup_parent()).into();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let root = dir.join("runc");
    let runc = |args: &[&str]| {
        Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    let mut out = Vec::new();
    for i in 0..runs {
        let id = format!("floor{i}");
        let t0 = Instant::now();
        let bundle = dir.display().to_string();
        let ok =
            tokio::task::block_in_place(|| runc(&["run", "--detach", "--bundle", &bundle, &id]));
        assert!(ok.success(), "runc run of the floor bundle");
        serving(addr).await;
        out.push(t0.elapsed());
        tokio::task::block_in_place(|| runc(&["delete", "--force", &id]));
    }
    net.detach("floor").unwrap();
    out
}

/// Waits until `addr` accepts a connection (the default TCP health check), polling
/// every millisecond.
async fn serving(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "{addr} never served");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// `podman run -d` of the same image (imported from the OCI layout) with a published
/// port, timed until the app answers through it; why not, if podman cannot run here.
async fn podman_runs(layout: &Path, runs: usize) -> Result<Vec<Duration>, String> {
    let tag = "localhost/runway-bench-testapp:latest";
    let podman = |args: &[&str]| -> Result<String, String> {
        let out = Command::new("podman")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run podman: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "podman {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let image_id = podman(&["pull", "-q", &format!("oci:{}:testapp", layout.display())])?;
    podman(&["tag", &image_id, tag])?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let publish = format!("127.0.0.1:{port}:8080");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut out = Vec::new();
    let mut result = Ok(());
    for i in 0..runs {
        let name = format!("runway-bench-{i}");
        let t0 = Instant::now();
        // Limits this host allows: runway's host may lack CAP_SYS_RESOURCE, which
        // podman's defaults need.
        let started = tokio::task::block_in_place(|| {
            podman(&[
                "run",
                "-d",
                "--rm",
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=4096:4096",
                "-p",
                &publish,
                "--name",
                &name,
                tag,
            ])
        });
        if let Err(e) = started {
            result = Err(e);
            break;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(addr, "/", Duration::from_secs(1)).await.is_err() {
            assert!(Instant::now() < deadline, "podman's container never served");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        out.push(t0.elapsed());
        let _ = tokio::task::block_in_place(|| podman(&["rm", "-f", "-t", "0", &name]));
    }
    // By id: the import also named the image after the layout's path.
    let _ = podman(&["rmi", "-f", &image_id]);
    result.map(|()| out)
}
