//! Instances on the real kernel with real runc (run as root): serving on their own
//! address, environment, memory and CPU limits, isolation, crashes, health, logs,
//! surviving a kill -9 of the runtime, and cleaning up.

use runway_runtime::runc::OciRuntime;
use runway_runtime::test_util::{
    CrashChild, TestEnv, busybox_image, crash_child_ready, crash_child_setup, http_get, next_event,
    testapp_image, testapp_spec, wait_for, write_layout,
};
use runway_runtime::{
    EventKind, ImageRef, InstanceId, InstanceState, InstanceStatus, LocalRuntime, LogQuery,
    OciLayout, Runtime, ShimCommand, Stream,
};
use runway_store::SqliteStore;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const T: Duration = Duration::from_secs(20);

fn shim() -> ShimCommand {
    ShimCommand {
        program: env!("CARGO_BIN_EXE_runway-shim").into(),
        args: Vec::new(),
    }
}

/// A test's environment, image and runtime. The runtime is dropped before the
/// environment, whose drop removes everything from the host.
struct Setup {
    rt: LocalRuntime,
    image: ImageRef,
    layout: OciLayout,
    store: Arc<SqliteStore>,
    env: TestEnv,
    _images: tempfile::TempDir,
}

async fn setup() -> Setup {
    let env = TestEnv::new(shim());
    let images = tempfile::tempdir().unwrap();
    let (layout, image) = testapp_image(images.path());
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let rt = env.open(&store, &layout).await;
    Setup {
        rt,
        image,
        layout,
        store,
        env,
        _images: images,
    }
}

async fn healthy(rt: &LocalRuntime, id: &InstanceId) -> InstanceStatus {
    wait_for("healthy", T, || {
        rt.status(id).filter(|s| s.state == InstanceState::Healthy)
    })
    .await
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get(addr, path, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_serves_http_on_its_own_address_with_port_and_env() {
    let s = setup().await;
    let mut spec = testapp_spec("svc-a", &s.image);
    spec.port = 9090;
    spec.env = vec![
        ("GREETING".into(), "hello there".into()),
        ("PORT".into(), "1".into()),
    ];
    let id = s.rt.start(spec).await.unwrap();
    let status = healthy(&s.rt, &id).await;
    let std::net::IpAddr::V4(ip) = status.addr.ip() else {
        panic!("an IPv4 address")
    };
    assert!(s.env.config.net.subnet.contains(ip));
    assert_ne!(ip, s.env.config.net.subnet.gateway());
    assert_eq!(status.addr.port(), 9090);
    assert_eq!(s.rt.list(), vec![status.clone()]);

    let (code, body) = get(status.addr, "/").await;
    assert_eq!(code, 200);
    assert!(body.contains(&id.as_str()[..12]), "{body}");

    let (code, body) = get(status.addr, "/env").await;
    assert_eq!(code, 200);
    let env: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(env["PORT"], "9090", "the runtime's PORT wins");
    assert_eq!(env["GREETING"], "hello there");
    assert_eq!(env["HOSTNAME"], &id.as_str()[..12]);
    assert!(env["PATH"].as_str().unwrap().contains("/usr/bin"));

    // Kernel paths are masked and capabilities reduced.
    let (_, status_text) = get(status.addr, "/status").await;
    let cap_eff = status_text
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    const CAP_NET_RAW: u64 = 1 << 13;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    assert_eq!(cap_eff & (CAP_NET_RAW | CAP_SYS_ADMIN), 0, "{cap_eff:x}");
    assert!(status_text.contains("NoNewPrivs:\t1"));
    assert!(status_text.contains("Seccomp:\t2"));

    s.rt.stop(&id, Duration::from_millis(200)).await.unwrap();
    assert!(s.rt.list().is_empty());
    assert!(
        get_fails(status.addr).await,
        "a stopped instance no longer serves"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_instance_is_listed_until_its_container_is_gone() {
    let s = setup().await;
    let id = s.rt.start(testapp_spec("svc-a", &s.image)).await.unwrap();
    let status = healthy(&s.rt, &id).await;
    // The test app is its container's first process and sets no handler for SIGTERM,
    // which then does not end it: it runs on for the whole grace period.
    let grace = Duration::from_secs(5);
    let stop = tokio::spawn({
        let rt = s.rt.clone();
        let id = id.clone();
        async move { rt.stop(&id, grace).await }
    });
    let stopping = wait_for("stopping", T, || {
        s.rt.list()
            .into_iter()
            .find(|i| i.id == id && i.state == InstanceState::Stopping)
    })
    .await;
    assert_eq!(stopping.addr, status.addr);
    assert_eq!(get(status.addr, "/").await.0, 200, "it still serves");
    stop.await.unwrap().unwrap();
    assert!(s.rt.list().is_empty());
    assert!(get_fails(status.addr).await);
}

async fn get_fails(addr: SocketAddr) -> bool {
    http_get(addr, "/", Duration::from_secs(1)).await.is_err()
}

#[tokio::test(flavor = "multi_thread")]
async fn exceeding_the_memory_limit_is_an_oom_kill_and_reported() {
    let s = setup().await;
    let mut events = s.rt.subscribe();
    let mut spec = testapp_spec("svc-oom", &s.image);
    spec.memory_mb = 48;
    let id = s.rt.start(spec).await.unwrap();
    let status = healthy(&s.rt, &id).await;
    // The allocation kills the app before it can answer.
    let _ = http_get(status.addr, "/alloc?mb=256", Duration::from_secs(10)).await;
    let exited = next_event(&mut events, T, |e| {
        e.id == id && matches!(e.kind, EventKind::Exited { .. })
    })
    .await;
    assert_eq!(
        exited.kind,
        EventKind::Exited {
            code: None,
            signal: Some(9),
            oom_killed: true
        }
    );
    let status = wait_for("the exit recorded", T, || {
        s.rt.status(&id).filter(|s| s.last_exit.is_some())
    })
    .await;
    let exit = status.last_exit.unwrap();
    assert!(exit.oom_killed);
    assert!(exit.reason().contains("out of memory"), "{}", exit.reason());
    // It is restarted and serves again.
    let status = healthy(&s.rt, &id).await;
    assert_eq!(status.restarts, 1);
    assert_eq!(get(status.addr, "/").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn cpu_quota_and_memory_limit_are_set_in_the_cgroup() {
    let s = setup().await;
    let mut spec = testapp_spec("svc-cpu", &s.image);
    spec.cpu_units = 512;
    spec.memory_mb = 96;
    let id = s.rt.start(spec).await.unwrap();
    healthy(&s.rt, &id).await;
    let cgroups = runway_runtime::cgroup::Cgroups::detect().unwrap();
    let path = s.env.config.cgroup_path(&id);
    let cpu = cgroups.cpu_limit(&path).unwrap();
    assert_eq!(cpu.quota, Some(50_000), "half a CPU per 100 ms period");
    assert_eq!(cpu.period, 100_000);
    assert_eq!(cgroups.memory_limit(&path).unwrap(), Some(96 << 20));
    s.rt.stop(&id, Duration::ZERO).await.unwrap();
    assert!(
        !cgroups.exists(&path),
        "the cgroup is removed with the instance"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn services_cannot_reach_each_other_nor_the_host() {
    let s = setup().await;
    let a1 = s.rt.start(testapp_spec("svc-a", &s.image)).await.unwrap();
    let a2 = s.rt.start(testapp_spec("svc-a", &s.image)).await.unwrap();
    let b1 = s.rt.start(testapp_spec("svc-b", &s.image)).await.unwrap();
    let a1 = healthy(&s.rt, &a1).await;
    let a2 = healthy(&s.rt, &a2).await;
    let b1 = healthy(&s.rt, &b1).await;

    // Listeners on the host, as runway's API and router are: on every address, and on
    // the bridge's own address.
    let any = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let any_port = any.local_addr().unwrap().port();
    let gateway = s.env.config.net.subnet.gateway();
    let gw = tokio::net::TcpListener::bind((gateway, 0)).await.unwrap();
    let gw_addr = gw.local_addr().unwrap();
    for l in [any, gw] {
        tokio::spawn(async move {
            while let Ok((c, _)) = l.accept().await {
                drop(c);
            }
        });
    }

    let connect = |to: String| {
        let from = a1.addr;
        async move {
            get(from, &format!("/connect?to={to}&timeout_ms=1500"))
                .await
                .0
        }
    };
    assert_eq!(connect(a2.addr.to_string()).await, 200, "same service");
    assert_eq!(connect(b1.addr.to_string()).await, 502, "another service");
    assert_eq!(
        connect(gw_addr.to_string()).await,
        502,
        "the host on the gateway"
    );
    assert_eq!(
        connect(format!("{gateway}:{any_port}")).await,
        502,
        "a host port bound on every address"
    );
    // The host (the router) reaches every instance.
    assert_eq!(get(b1.addr, "/").await.0, 200);
    assert_eq!(get(a2.addr, "/").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashing_app_is_restarted_with_backoff() {
    let s = setup().await;
    let mut events = s.rt.subscribe();
    let id =
        s.rt.start(testapp_spec("svc-crash", &s.image))
            .await
            .unwrap();
    let initial = s.env.config.backoff.initial;
    for attempt in 1..=3u32 {
        let status = healthy(&s.rt, &id).await;
        let _ = http_get(status.addr, "/crash", Duration::from_secs(5)).await;
        let exited = next_event(&mut events, T, |e| {
            e.id == id && matches!(e.kind, EventKind::Exited { .. })
        })
        .await;
        assert_eq!(
            exited.kind,
            EventKind::Exited {
                code: Some(3),
                signal: None,
                oom_killed: false
            }
        );
        let restarting = next_event(&mut events, T, |e| {
            e.id == id && matches!(e.kind, EventKind::Restarting { .. })
        })
        .await;
        assert_eq!(
            restarting.kind,
            EventKind::Restarting {
                attempt,
                delay: initial * 2u32.pow(attempt - 1)
            },
            "the delay doubles with each consecutive crash"
        );
    }
    let status = healthy(&s.rt, &id).await;
    assert_eq!(status.restarts, 3);
    assert_eq!(status.last_exit.unwrap().code, Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unhealthy_app_is_reported_unhealthy() {
    let s = setup().await;
    let mut events = s.rt.subscribe();
    let mut spec = testapp_spec("svc-sick", &s.image);
    spec.env = vec![("UNHEALTHY".into(), "1".into())];
    let id = s.rt.start(spec).await.unwrap();
    let event = next_event(&mut events, T, |e| {
        e.id == id && matches!(e.kind, EventKind::Unhealthy { .. } | EventKind::Healthy)
    })
    .await;
    assert!(
        matches!(&event.kind, EventKind::Unhealthy { reason } if reason.contains("500")),
        "{:?}",
        event.kind
    );
    let status = s.rt.status(&id).unwrap();
    assert_eq!(status.state, InstanceState::Unhealthy);
    assert_eq!(
        status.restarts, 0,
        "the runtime reports; the controller replaces"
    );
    // It still runs: the app answers, only its health check fails.
    assert_eq!(get(status.addr, "/healthz").await.0, 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_command_runs_through_the_shell_as_the_image_user() {
    let env = TestEnv::new(shim());
    let images = tempfile::tempdir().unwrap();
    let (layout, image) = busybox_image(images.path());
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let rt = env.open(&store, &layout).await;
    let mut spec = testapp_spec("svc-sh", &image);
    spec.start_command = Some("GREETING='from the shell' exec /app".into());
    let id = rt.start(spec).await.unwrap();
    let status = healthy(&rt, &id).await;
    let (_, body) = get(status.addr, "/env").await;
    let vars: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(vars["GREETING"], "from the shell");

    // The image's user, with its supplementary groups from /etc/group.
    let dir = images.path().join("user");
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let base = runway_runtime::test_util::TarBuilder::new()
        .file("bin/busybox", 0o755, &busybox)
        .symlink("bin/sh", "busybox")
        .file(
            "etc/passwd",
            0o644,
            b"root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
        )
        .file("etc/group", 0o644, b"app:x:1000:\nextra:x:2000:app\n")
        .file(
            "app",
            0o755,
            &std::fs::read(runway_runtime::test_util::testapp_binary()).unwrap(),
        )
        .finish();
    let (user_layout, user_image) = write_layout(
        &dir,
        &[base],
        serde_json::json!({"Entrypoint": ["/app"], "User": "app"}),
        "user",
    )
    .unwrap();
    drop(rt);
    let rt = env.open(&store, &user_layout).await;
    let id = rt
        .start(testapp_spec("svc-user", &user_image))
        .await
        .unwrap();
    let status = healthy(&rt, &id).await;
    let (_, text) = get(status.addr, "/status").await;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap()
    };
    assert_eq!(field("Uid:")[0], "1000");
    assert_eq!(field("Gid:")[0], "1000");
    assert_eq!(field("Groups:"), vec!["2000"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_carry_timestamps_follow_and_survive_the_runtime_being_gone() {
    let s = setup().await;
    let before = SystemTime::now();
    let id =
        s.rt.start(testapp_spec("svc-logs", &s.image))
            .await
            .unwrap();
    let status = healthy(&s.rt, &id).await;
    get(status.addr, "/log?text=first%20line").await;
    get(status.addr, "/log?stream=stderr&text=an%20error").await;

    let query = |follow| LogQuery {
        service: "svc-logs".into(),
        instance: None,
        since: None,
        follow,
    };
    // The shim writes what it reads from the app's pipes a moment later.
    let lines = collect_until(&s.rt, query(false), |ls| {
        ls.iter().any(|l| l.text == "first line") && ls.iter().any(|l| l.text == "an error")
    })
    .await;
    let first = lines
        .iter()
        .find(|l| l.text == "first line")
        .expect("the line");
    assert_eq!(first.stream, Stream::Stdout);
    assert_eq!(first.instance_id, id);
    assert!(first.time >= before && first.time <= SystemTime::now());
    let err = lines
        .iter()
        .find(|l| l.text == "an error")
        .expect("the stderr line");
    assert_eq!(err.stream, Stream::Stderr);
    assert!(
        lines
            .iter()
            .any(|l| l.text.contains("listening on 0.0.0.0:8080"))
    );

    // Following sees new lines.
    let mut follow = s.rt.logs(query(true)).await.unwrap();
    get(status.addr, "/log?text=followed").await;
    let seen = tokio::time::timeout(T, async {
        while let Some(l) = follow.next().await {
            if l.text == "followed" {
                return l;
            }
        }
        panic!("the stream ended")
    })
    .await
    .expect("the followed line arrives");
    assert_eq!(seen.instance_id, id);
    drop(follow);

    // With the runtime gone the instance keeps serving and its lines are still kept.
    let Setup {
        rt,
        env,
        store,
        layout,
        ..
    } = s;
    drop(rt);
    get(status.addr, "/log?text=while%20runway%20was%20down").await;
    let rt = env.open(&store, &layout).await;
    let lines = collect_until(&rt, query(false), |ls| {
        ls.iter().any(|l| l.text == "while runway was down")
    })
    .await;
    let since = lines
        .iter()
        .find(|l| l.text == "while runway was down")
        .unwrap()
        .time;
    let later = collect(
        &rt,
        LogQuery {
            since: Some(since),
            ..query(false)
        },
    )
    .await;
    assert!(later.iter().all(|l| l.time >= since));
    assert!(!later.iter().any(|l| l.text == "first line"));
}

/// Reads logs again until `done` holds for what was read.
async fn collect_until(
    rt: &LocalRuntime,
    query: LogQuery,
    done: impl Fn(&[runway_runtime::LogLine]) -> bool,
) -> Vec<runway_runtime::LogLine> {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let lines = collect(rt, query.clone()).await;
        if done(&lines) {
            return lines;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lines never arrived: {lines:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn collect(rt: &LocalRuntime, query: LogQuery) -> Vec<runway_runtime::LogLine> {
    let mut stream = rt.logs(query).await.unwrap();
    let mut out = Vec::new();
    while let Some(line) = stream.next().await {
        out.push(line);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_list_the_newest_instance_first() {
    let s = setup().await;
    let older = s.rt.start(testapp_spec("svc-two", &s.image)).await.unwrap();
    healthy(&s.rt, &older).await;
    let newer = s.rt.start(testapp_spec("svc-two", &s.image)).await.unwrap();
    healthy(&s.rt, &newer).await;
    let lines = collect_until(
        &s.rt,
        LogQuery {
            service: "svc-two".into(),
            instance: None,
            since: None,
            follow: false,
        },
        |ls| ls.iter().any(|l| l.instance_id == older) && ls.iter().any(|l| l.instance_id == newer),
    )
    .await;
    let order: Vec<&InstanceId> = lines.iter().map(|l| &l.instance_id).collect();
    let first_older = order.iter().position(|i| **i == older).unwrap();
    let last_newer = order.iter().rposition(|i| **i == newer).unwrap();
    assert!(
        last_newer < first_older,
        "every line of the newer instance comes first"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by the kill -9 test in a child process"]
async fn child_runtime() {
    let Some((config, store, layout)) = crash_child_setup(shim()) else {
        return;
    };
    let image = layout.image("test/testapp", None).unwrap();
    let rt = LocalRuntime::open(
        config,
        Arc::new(store),
        Arc::new(layout),
        &mut Default::default(),
    )
    .await
    .unwrap();
    let id = rt.start(testapp_spec("svc-kill", &image)).await.unwrap();
    healthy(&rt, &id).await;
    crash_child_ready(id.as_str());
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_kill_9_of_the_runtime_instances_keep_serving_and_are_adopted() {
    let env = TestEnv::new(shim());
    let images = tempfile::tempdir().unwrap();
    let (layout, _) = testapp_image(images.path());
    let db = images.path().join("state.db");
    let (mut child, id) = CrashChild::start("child_runtime", &env, &db, layout.dir());
    let id = InstanceId::parse(&id).unwrap();
    let oci = OciRuntime::new(Path::new("/usr/sbin/runc"), &env.config.oci_root());
    let pid_before = oci.state(id.as_str()).unwrap().unwrap().pid;

    child.kill(); // SIGKILL

    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let rt = env.open(&store, &layout).await;
    let status = healthy(&rt, &id).await;
    assert_eq!(get(status.addr, "/").await.0, 200, "it serves");
    assert_eq!(rt.list().len(), 1, "adopted, not duplicated");
    assert_eq!(status.restarts, 0, "adopted, not restarted");
    let after = oci.state(id.as_str()).unwrap().unwrap();
    assert_eq!(after.pid, pid_before, "the same container process");
    assert_eq!(after.status, "running");

    // Crash handling resumes for the adopted instance.
    let mut events = rt.subscribe();
    let _ = http_get(status.addr, "/crash", Duration::from_secs(5)).await;
    let e = next_event(&mut events, T, |e| {
        matches!(e.kind, EventKind::Exited { .. })
    })
    .await;
    assert_eq!(e.id, id);
    let status = healthy(&rt, &id).await;
    assert_eq!(status.restarts, 1);
    rt.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn opening_removes_what_a_crash_left_behind() {
    let s = setup().await;
    let id =
        s.rt.start(testapp_spec("svc-left", &s.image))
            .await
            .unwrap();
    let status = healthy(&s.rt, &id).await;
    // The runtime reports an instance healthy before it records that: wait for the
    // write, or it could land after the record is deleted below (seen under load).
    let recorded = || {
        use runway_store::Store;
        let tx = s.store.read().unwrap();
        let doc = tx.get("runtime-instance", id.as_str()).unwrap().unwrap();
        let record: serde_json::Value = serde_json::from_str(&doc.body).unwrap();
        !record["healthy_since"].is_null()
    };
    let deadline = std::time::Instant::now() + T;
    while !recorded() {
        assert!(
            std::time::Instant::now() < deadline,
            "the healthy state is never recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Setup {
        rt,
        env,
        store,
        layout,
        ..
    } = s;
    drop(rt);
    // A crash that lost the record: the container, its shim, its mount, namespace and
    // veth remain, unowned.
    {
        use runway_store::Store;
        let mut tx = store.begin().unwrap();
        tx.delete("runtime-instance", id.as_str()).unwrap();
        tx.commit().unwrap();
    }
    let dir = env.config.instance_dir(&id);
    assert!(runway_runtime::rootfs::is_mounted(&dir.join("rootfs")));
    let rt = env.open(&store, &layout).await;
    assert!(rt.list().is_empty());
    assert!(
        get_fails(status.addr).await,
        "the unowned container is gone"
    );
    assert!(!dir.exists());
    let oci = OciRuntime::new(Path::new("/usr/sbin/runc"), &env.config.oci_root());
    assert!(oci.list().unwrap().is_empty());
    let netns = runway_net::netns_name(&env.config.net.bridge, id.as_str());
    assert!(!Path::new("/run/netns").join(netns).exists());
    let veth = runway_net::veth_name(&env.config.net.bridge, id.as_str());
    assert!(!Path::new("/sys/class/net").join(veth).exists());
    assert!(
        runway_net::ipam::all(store.as_ref(), &env.config.net.bridge)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn destroying_the_runtime_leaves_nothing_on_the_host() {
    let s = setup().await;
    let mut ids = Vec::new();
    for svc in ["svc-x", "svc-y"] {
        ids.push(s.rt.start(testapp_spec(svc, &s.image)).await.unwrap());
    }
    for id in &ids {
        healthy(&s.rt, id).await;
    }
    let config = s.env.config.clone();
    let cgroups = runway_runtime::cgroup::Cgroups::detect().unwrap();
    s.rt.clone().destroy().await.unwrap();
    assert_eq!(
        runway_net::leftovers(&config.net.bridge),
        Vec::<String>::new()
    );
    assert!(!config.root.exists());
    assert!(!cgroups.exists(&config.cgroup_parent()));
    assert!(
        !runway_runtime::rootfs::mount_points()
            .iter()
            .any(|m| m.starts_with(&config.root))
    );
    let runc_dirs = std::fs::read_dir(config.oci_root())
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(runc_dirs, 0);
}

/// Rewrites the stored state of an instance, as a crash at that step would leave it.
fn set_stored_state(store: &SqliteStore, id: &InstanceId, state: &str) {
    use runway_store::Store;
    let mut tx = store.begin().unwrap();
    let doc = tx.get("runtime-instance", id.as_str()).unwrap().unwrap();
    let mut body: serde_json::Value = serde_json::from_str(&doc.body).unwrap();
    body["state"] = state.into();
    let index = runway_store::Index {
        name: doc.name.as_deref(),
        parent: doc.parent.as_deref(),
        archived: false,
    };
    tx.put(&doc.kind, &doc.id, index, &body.to_string())
        .unwrap();
    tx.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_or_a_start_cut_short_by_a_crash_is_finished_when_the_runtime_opens() {
    let s = setup().await;
    let stopping =
        s.rt.start(testapp_spec("svc-stop", &s.image))
            .await
            .unwrap();
    let creating =
        s.rt.start(testapp_spec("svc-create", &s.image))
            .await
            .unwrap();
    let stopping_addr = healthy(&s.rt, &stopping).await.addr;
    let creating_addr = healthy(&s.rt, &creating).await.addr;
    let Setup {
        rt,
        env,
        store,
        layout,
        ..
    } = s;
    drop(rt);
    // Killed during a stop: the record says Stopping, the container still runs.
    set_stored_state(&store, &stopping, "stopping");
    // Killed during a start, before its shim ran: no container, the rest half-made.
    let dir = env.config.instance_dir(&creating);
    let shim_pid: i32 = std::fs::read_to_string(dir.join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(shim_pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let oci = OciRuntime::new(Path::new("/usr/sbin/runc"), &env.config.oci_root());
    oci.delete(creating.as_str()).unwrap();
    set_stored_state(&store, &creating, "creating");

    let rt = env.open(&store, &layout).await;
    assert!(rt.list().is_empty(), "{:?}", rt.list());
    assert!(get_fails(stopping_addr).await);
    assert!(get_fails(creating_addr).await);
    assert!(oci.list().unwrap().is_empty());
    assert!(!env.config.instance_dir(&creating).exists());
    // The stopped one keeps its logs; the one that never started keeps nothing.
    collect_until(
        &rt,
        LogQuery {
            service: "svc-stop".into(),
            instance: None,
            since: None,
            follow: false,
        },
        |ls| ls.iter().any(|l| l.instance_id == stopping),
    )
    .await;
    assert!(
        rt.stop(&stopping, Duration::ZERO).await.is_ok(),
        "stopping twice is fine"
    );
    assert!(matches!(
        rt.stop(&creating, Duration::ZERO).await,
        Err(runway_runtime::RuntimeError::NotFound(_))
    ));
    assert!(
        runway_net::ipam::all(store.as_ref(), &env.config.net.bridge)
            .unwrap()
            .is_empty()
    );
}

/// Files under `dir` whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file()
                && std::fs::read(entry.path())
                    .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                found.push(entry.path());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_reach_the_environment_and_stay_off_the_disk() {
    let s = setup().await;
    let secret = "rt-secret-3f9a0c5d";
    let mut spec = testapp_spec("svc-secret", &s.image);
    spec.env = vec![("GREETING".into(), "hi".into())];
    spec.secrets = runway_runtime::SecretEnv(vec![("DB_PASSWORD".into(), secret.into())]);
    assert!(!format!("{spec:?}").contains(secret));
    let id = s.rt.start(spec).await.unwrap();
    let status = healthy(&s.rt, &id).await;
    let env = |body: String| serde_json::from_str::<serde_json::Value>(&body).unwrap();
    let seen = env(get(status.addr, "/env").await.1);
    assert_eq!(
        (seen["DB_PASSWORD"].as_str(), seen["GREETING"].as_str()),
        (Some(secret), Some("hi"))
    );

    // The bundle is in memory; nothing under the runtime's directory holds the value.
    let config = &s.env.config;
    let bundle = config.volatile_dir(&id);
    assert!(bundle.join("config.json").exists());
    assert!(runway_runtime::volatile::in_memory(&bundle));
    assert!(!config.instance_dir(&id).join("config.json").exists());
    assert_eq!(
        files_holding(&config.root, secret.as_bytes()),
        Vec::<std::path::PathBuf>::new()
    );

    // A crash restarts the container with its secrets.
    let mut events = s.rt.subscribe();
    let _ = http_get(status.addr, "/crash", Duration::from_secs(5)).await;
    next_event(&mut events, T, |e| {
        e.id == id && matches!(e.kind, EventKind::Exited { .. })
    })
    .await;
    let status = healthy(&s.rt, &id).await;
    assert_eq!(status.restarts, 1);
    assert_eq!(env(get(status.addr, "/env").await.1)["DB_PASSWORD"], secret);

    // As after a reboot: runway is gone, the container ended and memory was lost. The
    // instance cannot start again without its secrets, so it is given up (and the
    // controller starts a new one).
    let Setup {
        rt,
        env: test_env,
        store,
        layout,
        _images,
        ..
    } = s;
    drop(rt);
    let oci = OciRuntime::new(Path::new("/usr/sbin/runc"), &test_env.config.oci_root());
    oci.kill(id.as_str(), "KILL").unwrap();
    wait_for("the shim to record the exit", T, || {
        test_env
            .config
            .instance_dir(&id)
            .join("exit.json")
            .exists()
            .then_some(())
    })
    .await;
    std::fs::remove_dir_all(test_env.config.volatile_dir(&id)).unwrap();
    let rt = test_env.open(&store, &layout).await;
    assert!(rt.list().is_empty(), "{:?}", rt.list());
    assert!(!test_env.config.volatile_dir(&id).exists());
    rt.destroy().await.unwrap();
    assert!(!test_env.config.volatile_root().exists());
}

/// The test app's runtime with `change` made to its configuration.
async fn setup_with(change: impl FnOnce(&mut runway_runtime::RuntimeConfig)) -> Setup {
    let mut env = TestEnv::new(shim());
    change(&mut env.config);
    let images = tempfile::tempdir().unwrap();
    let (layout, image) = testapp_image(images.path());
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let rt = env.open(&store, &layout).await;
    Setup {
        rt,
        image,
        layout,
        store,
        env,
        _images: images,
    }
}

/// The host's view of the user an instance's process runs as: the `Uid:` line of its
/// `/proc/PID/status`.
fn host_uid(env: &TestEnv, id: &InstanceId) -> String {
    let oci = OciRuntime::new(Path::new("runc"), &env.config.oci_root());
    let pid = oci.state(id.as_str()).unwrap().unwrap().pid;
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn root_in_an_instance_is_not_root_on_the_host_and_sees_no_layer_paths() {
    let s = setup_with(|c| c.host_root_repositories = vec!["trusted/app".into()]).await;
    let id = s.rt.start(testapp_spec("svc-ns", &s.image)).await.unwrap();
    let status = healthy(&s.rt, &id).await;
    let (_, map) = get(status.addr, "/read?path=/proc/self/uid_map").await;
    let map: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(map, ["0", "1000000000", "65536"]);
    let (_, inside) = get(status.addr, "/status").await;
    assert!(inside.contains("Uid:\t0\t0\t0\t0"), "{inside}");
    assert_eq!(host_uid(&s.env, &id), "1000000000");
    // It owns its root file system, as root in any image does.
    assert_eq!(get(status.addr, "/write?path=/new-file&mb=1").await.0, 200);
    // Its mount table names none of the host's layer directories (nor their digests).
    let (_, mounts) = get(status.addr, "/read?path=/proc/self/mountinfo").await;
    let layers = s.env.config.root.join("layers").display().to_string();
    let root = mounts.lines().find(|l| l.contains(" / / ")).unwrap();
    assert!(root.contains("lowerdir=/proc/self/fd/"), "{root}");
    assert!(!mounts.contains(&layers), "{mounts}");
    assert!(!mounts.contains("sha256"), "{mounts}");
    // Its /sys shows its own network namespace.
    let (code, _) = get(status.addr, "/read?path=/sys/class/net/eth0/address").await;
    assert_eq!(code, 200);

    // An image the operator allows runs as the host's root.
    let trusted = ImageRef {
        repository: "trusted/app".into(),
        ..s.image.clone()
    };
    let id2 =
        s.rt.start(testapp_spec("svc-trusted", &trusted))
            .await
            .unwrap();
    let status2 = healthy(&s.rt, &id2).await;
    let (_, map) = get(status2.addr, "/read?path=/proc/self/uid_map").await;
    assert_eq!(map.split_whitespace().nth(1), Some("0"), "{map}");
    assert_eq!(host_uid(&s.env, &id2), "0");
    for id in [id, id2] {
        s.rt.stop(&id, Duration::ZERO).await.unwrap();
    }
}

/// The bytes the host's disk holds for the files under `dir` (the instances' storage
/// files, not what is mounted from them): unlike the disk's free space, not moved by
/// whatever else runs on the machine.
fn allocated(dir: &Path) -> u64 {
    let out = std::process::Command::new("du")
        .args(["-s", "-x", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_ephemeral_storage_fails_the_instances_writes_not_the_hosts() {
    let s = setup_with(|c| c.ephemeral_storage = 32 << 20).await;
    let a =
        s.rt.start(testapp_spec("svc-fill", &s.image))
            .await
            .unwrap();
    let b =
        s.rt.start(testapp_spec("svc-fill", &s.image))
            .await
            .unwrap();
    let a_status = healthy(&s.rt, &a).await;
    let b_status = healthy(&s.rt, &b).await;
    let before = allocated(&s.env.config.root);
    let (code, body) = get(a_status.addr, "/write?path=/fill&mb=64").await;
    assert_eq!(code, 507, "{body}");
    assert!(body.contains("No space left on device"), "{body}");
    let written: u64 = body
        .strip_prefix("error after ")
        .and_then(|r| r.split_once(' '))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap();
    assert!((16..=32).contains(&written), "{body}");
    // The host lost no more than the instance's limit, and the other instance writes on.
    let used = allocated(&s.env.config.root).saturating_sub(before);
    assert!(used <= 40 << 20, "the host lost {used} bytes");
    assert_eq!(get(b_status.addr, "/write?path=/x&mb=8").await.0, 200);
    assert_eq!(
        get(a_status.addr, "/").await.0,
        200,
        "the full one still serves"
    );
    // Stopping it frees the storage, and nothing stays mounted.
    let dir = s.env.config.instance_dir(&a);
    s.rt.stop(&a, Duration::ZERO).await.unwrap();
    assert!(!dir.join("scratch.img").exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&dir.display().to_string()), "{mounts}");
    s.rt.stop(&b, Duration::ZERO).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn all_instances_together_are_held_to_the_operators_limits() {
    let limits = runway_runtime::Limits {
        memory_bytes: 200 << 20,
        cpu_units: 1536,
        pids: 300,
    };
    let s = setup_with(|c| c.limits = limits).await;
    let cgroups = runway_runtime::cgroup::Cgroups::detect().unwrap();
    let parent = s.env.config.cgroup_parent();
    assert_eq!(cgroups.memory_limit(&parent).unwrap(), Some(200 << 20));
    assert_eq!(cgroups.cpu_limit(&parent).unwrap().quota, Some(150_000));
    let pids = std::fs::read_to_string(cgroups.dir("pids", &parent).unwrap().join("pids.max"));
    assert_eq!(pids.unwrap().trim(), "300");

    // An instance allowed 512 MB is killed at the 200 MB all of them may use.
    let mut events = s.rt.subscribe();
    let mut spec = testapp_spec("svc-big", &s.image);
    spec.memory_mb = 512;
    spec.cpu_units = 4096;
    let id = s.rt.start(spec).await.unwrap();
    let status = healthy(&s.rt, &id).await;
    let cpu = cgroups.cpu_limit(&s.env.config.cgroup_path(&id)).unwrap();
    assert_eq!(cpu.quota, Some(150_000), "no more CPU than all may use");
    let _ = http_get(status.addr, "/alloc?mb=300", Duration::from_secs(10)).await;
    let exited = next_event(&mut events, T, |e| {
        e.id == id && matches!(e.kind, EventKind::Exited { .. })
    })
    .await;
    assert!(
        matches!(
            exited.kind,
            EventKind::Exited {
                signal: Some(9),
                ..
            }
        ),
        "{:?}",
        exited.kind
    );
    s.rt.stop(&id, Duration::ZERO).await.unwrap();
}
