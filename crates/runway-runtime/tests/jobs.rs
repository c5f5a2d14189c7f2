//! Jobs on the real kernel with real runc (run as root): output streamed with streams and
//! times, exit codes, timeouts, OOM kills, what a job changed written as a layer that
//! stacks on its image, cache mounts, network egress without reaching other services or
//! the host, and nothing left behind, even by a crash of runway.

use runway_runtime::layer::{UnpackOptions, unpack_blob};
use runway_runtime::runc::OciRuntime;
use runway_runtime::test_util::{
    CrashChild, Outside, TarBuilder, TestEnv, busybox_base, crash_child_ready, crash_child_setup,
    testapp_spec, wait_for, write_layout,
};
use runway_runtime::{
    ImageRef, InstanceState, Job, JobId, JobLine, JobMount, JobSpec, LocalRuntime, LogQuery,
    Runtime, RuntimeError, ShimCommand, Stream,
};
use runway_store::SqliteStore;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const T: Duration = Duration::from_secs(30);

fn shim() -> ShimCommand {
    ShimCommand {
        program: env!("CARGO_BIN_EXE_runway-shim").into(),
        args: Vec::new(),
    }
}

/// The layers of the job image, bottom first: busybox with a file to delete and a
/// directory to replace, and the test app.
fn image_layers() -> Vec<Vec<u8>> {
    vec![
        busybox_base()
            .file("gone.txt", 0o644, b"delete me")
            .dir("olddir", 0o755)
            .file("olddir/one", 0o644, b"1")
            .file("olddir/two", 0o644, b"2")
            .dir("srv", 0o755)
            .file("srv/keep", 0o644, b"kept")
            .finish(),
        TarBuilder::new()
            .file(
                "app",
                0o755,
                &std::fs::read(runway_runtime::test_util::testapp_binary()).unwrap(),
            )
            .finish(),
    ]
}

/// A test's environment, image and runtime. The runtime is dropped before the
/// environment, whose drop removes everything from the host.
struct Setup {
    rt: LocalRuntime,
    image: ImageRef,
    env: TestEnv,
    _images: tempfile::TempDir,
}

async fn setup() -> Setup {
    let env = TestEnv::new(shim());
    let images = tempfile::tempdir().unwrap();
    let (layout, image) = write_layout(
        &images.path().join("layout"),
        &image_layers(),
        serde_json::json!({
            "Entrypoint": ["/app"],
            "Env": [format!("PATH={}", runway_runtime::spec::DEFAULT_PATH), "FROM_IMAGE=yes"],
        }),
        "job",
    )
    .unwrap();
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let rt = env.open(&store, &layout).await;
    Setup {
        rt,
        image,
        env,
        _images: images,
    }
}

fn job(image: &ImageRef, script: &str) -> JobSpec {
    JobSpec {
        name: "build-svc-1".into(),
        service_id: "svc".into(),
        image: image.clone(),
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec![("GREETING".into(), "hi".into())],
        workdir: String::new(),
        user: None,
        mounts: Vec::new(),
        cpu_units: 1024,
        memory_mb: 256,
        timeout: Duration::from_secs(120),
    }
}

/// Every line of a job, until it ended.
async fn all_lines(job: &mut Job) -> Vec<JobLine> {
    let mut out = Vec::new();
    tokio::time::timeout(T, async {
        while let Some(line) = job.next_line().await {
            out.push(line);
        }
    })
    .await
    .expect("the job's lines end with the job");
    out
}

fn texts(lines: &[JobLine]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

/// The entry names of a gzipped layer.
fn entries(path: &Path) -> Vec<String> {
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap());
    tar::Archive::new(gz)
        .entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .collect()
}

/// Whether anything of job `id` is left on the host.
fn leftovers(env: &TestEnv, id: &JobId) -> Vec<String> {
    let mut found = Vec::new();
    if env.config.job_dir(id).exists() {
        found.push("directory".to_string());
    }
    let netns = runway_net::netns_name(&env.config.net.bridge, id.as_str());
    if Path::new("/run/netns").join(netns).exists() {
        found.push("network namespace".into());
    }
    let oci = OciRuntime::new(Path::new("/usr/sbin/runc"), &env.config.oci_root());
    if oci.state(id.as_str()).unwrap().is_some() {
        found.push("container".into());
    }
    let cgroups = runway_runtime::cgroup::Cgroups::detect().unwrap();
    if cgroups.exists(&env.config.job_cgroup_path(id)) {
        found.push("cgroup".into());
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_streams_its_output_and_its_changes_become_a_layer() {
    let s = setup().await;
    let before = SystemTime::now();
    let script = r#"set -e
echo to-stdout
echo to-stderr >&2
echo "greeting=$GREETING image=$FROM_IMAGE id=$(id -u) pwd=$(pwd)"
mkdir -p /work/out
echo built > /work/out/result.txt
chown 1000:1000 /work/out/result.txt
chmod 640 /work/out/result.txt
ln /work/out/result.txt /work/out/hardlink.txt
rm /gone.txt
rm -rf /olddir
mkdir /olddir
echo fresh > /olddir/new.txt
"#;
    let mut spec = job(&s.image, script);
    spec.workdir = "/work".into();
    let mut job = s.rt.run_job(spec).await.unwrap();
    let lines = all_lines(&mut job).await;
    let outcome = job.wait().await.unwrap();
    assert!(outcome.succeeded(), "{}: {lines:?}", outcome.reason());
    assert_eq!(outcome.exit.code, Some(0));
    assert!(!outcome.timed_out);

    // Each stream keeps its order; the two are read apart, so they may interleave.
    let of = |stream| {
        lines
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of(Stream::Stdout),
        ["to-stdout", "greeting=hi image=yes id=0 pwd=/work"]
    );
    assert_eq!(of(Stream::Stderr), ["to-stderr"]);
    for l in &lines {
        assert!(l.time >= before && l.time <= SystemTime::now(), "{l:?}");
    }
    // A job is not an instance.
    assert!(s.rt.list().is_empty());
    let mut logs =
        s.rt.logs(LogQuery {
            service: "svc".into(),
            instance: None,
            since: None,
            follow: false,
        })
        .await
        .unwrap();
    assert!(logs.next().await.is_none(), "jobs are not in instance logs");

    let out = tempfile::tempdir().unwrap();
    let layer = job.commit_layer(out.path()).await.unwrap();
    assert!(layer.path.starts_with(out.path()));
    let names: BTreeSet<String> = entries(&layer.path).into_iter().collect();
    let expected: BTreeSet<String> = [
        ".wh.gone.txt",
        "olddir",
        "olddir/.wh..wh..opq",
        "olddir/new.txt",
        "work",
        "work/out",
        "work/out/hardlink.txt",
        "work/out/result.txt",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, expected, "exactly what the job changed");

    // Unpacked (digests checked) on top of the image's layers, it is the job's view.
    let stack = tempfile::tempdir().unwrap();
    let mut lowers = Vec::new();
    for (i, tar) in image_layers().iter().enumerate() {
        let dir = stack.path().join(format!("l{i}"));
        std::fs::create_dir(&dir).unwrap();
        runway_runtime::layer::unpack(tar.as_slice(), &dir, &UnpackOptions::default()).unwrap();
        lowers.push(dir);
    }
    let top = stack.path().join("top");
    std::fs::create_dir(&top).unwrap();
    unpack_blob(
        std::fs::File::open(&layer.path).unwrap(),
        &top,
        &layer.digest,
        Some(&layer.diff_id),
        &UnpackOptions::default(),
    )
    .unwrap();
    lowers.push(top);
    lowers.reverse();
    let view = stack.path().join("view");
    for d in ["view", "upper", "work", "empty"] {
        std::fs::create_dir_all(stack.path().join(d)).unwrap();
    }
    runway_runtime::rootfs::mount_overlay(
        &lowers,
        &stack.path().join("empty"),
        &stack.path().join("upper"),
        &stack.path().join("work"),
        &view,
    )
    .unwrap();
    let checked = std::panic::catch_unwind(|| {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert!(!view.join("gone.txt").exists());
        let olddir: Vec<String> = std::fs::read_dir(view.join("olddir"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(olddir, ["new.txt"]);
        assert_eq!(std::fs::read(view.join("srv/keep")).unwrap(), b"kept");
        let result = std::fs::metadata(view.join("work/out/result.txt")).unwrap();
        assert_eq!((result.uid(), result.gid()), (1000, 1000));
        assert_eq!(result.permissions().mode() & 0o777, 0o640);
        let link = std::fs::metadata(view.join("work/out/hardlink.txt")).unwrap();
        assert_eq!(link.ino(), result.ino(), "the hard link is kept");
        assert_eq!(
            std::fs::read(view.join("work/out/result.txt")).unwrap(),
            b"built\n"
        );
        for absent in ["etc/hosts", "proc", "dev", "sys"] {
            assert!(!view.join(absent).exists(), "{absent}");
        }
    });
    runway_runtime::rootfs::unmount(&view).unwrap();
    checked.unwrap();

    let id = job.id().clone();
    job.remove().await.unwrap();
    assert_eq!(leftovers(&s.env, &id), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_job_reports_its_code_and_a_dropped_job_is_removed() {
    let s = setup().await;
    let mut job =
        s.rt.run_job(job(&s.image, "echo before the failure; exit 3"))
            .await
            .unwrap();
    let lines = all_lines(&mut job).await;
    assert_eq!(texts(&lines), ["before the failure"]);
    let outcome = job.wait().await.unwrap();
    assert_eq!(outcome.exit.code, Some(3));
    assert!(!outcome.exit.oom_killed);
    assert!(!outcome.succeeded());
    assert_eq!(outcome.reason(), "exit code 3");
    let id = job.id().clone();
    drop(job);
    wait_for("the dropped job's removal", T, || {
        leftovers(&s.env, &id).is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_past_its_timeout_is_killed() {
    let s = setup().await;
    let mut spec = job(&s.image, "echo started; sleep 600; echo never");
    spec.timeout = Duration::from_secs(2);
    let mut job = s.rt.run_job(spec).await.unwrap();
    assert_eq!(
        job.next_line().await.map(|l| l.text).as_deref(),
        Some("started")
    );
    // What it changed is not final while it runs.
    let out = tempfile::tempdir().unwrap();
    assert!(matches!(
        job.commit_layer(out.path()).await,
        Err(RuntimeError::JobNotEnded(_))
    ));
    let outcome = tokio::time::timeout(T, job.wait())
        .await
        .expect("the job is killed at its timeout")
        .unwrap();
    assert!(outcome.timed_out);
    assert_eq!(outcome.exit.code, None);
    assert_eq!(outcome.exit.signal, Some(9));
    assert!(outcome.duration >= Duration::from_secs(2));
    assert!(!texts(&all_lines(&mut job).await).contains(&"never"));
    let id = job.id().clone();
    job.remove().await.unwrap();
    assert_eq!(leftovers(&s.env, &id), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_past_its_memory_limit_is_oom_killed() {
    let s = setup().await;
    let mut spec = job(
        &s.image,
        "set -e; echo allocating; dd if=/dev/zero of=/dev/null bs=256M count=1; echo survived",
    );
    spec.memory_mb = 32;
    let mut job = s.rt.run_job(spec).await.unwrap();
    let lines = all_lines(&mut job).await;
    let outcome = job.wait().await.unwrap();
    assert!(outcome.exit.oom_killed, "{}: {lines:?}", outcome.reason());
    assert!(!outcome.succeeded());
    assert_eq!(texts(&lines).first(), Some(&"allocating"));
    assert!(!texts(&lines).contains(&"survived"), "{lines:?}");
    assert!(
        outcome.reason().contains("out of memory"),
        "{}",
        outcome.reason()
    );
    assert!(!outcome.timed_out);
    job.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_mount_outlives_the_job_and_stays_out_of_its_layer() {
    let s = setup().await;
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(cache.path().join("from-before"), b"warm").unwrap();
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("input"), b"src").unwrap();
    let script = r#"set -e
cat /root/.cache/pip/from-before; echo
mkdir -p /root/.cache/pip/wheels
echo wheel > /root/.cache/pip/wheels/pkg.whl
cat /mnt/src/input; echo
if (echo x > /mnt/src/written) 2>/dev/null; then echo writable; else echo read-only; fi
mkdir -p /app-out && echo done > /app-out/marker
"#;
    let mut spec = job(&s.image, script);
    spec.mounts = vec![
        JobMount {
            source: cache.path().to_path_buf(),
            target: "/root/.cache/pip".into(),
            read_only: false,
        },
        JobMount {
            source: source.path().to_path_buf(),
            target: "/mnt/src".into(),
            read_only: true,
        },
    ];
    let mut job = s.rt.run_job(spec).await.unwrap();
    let lines = all_lines(&mut job).await;
    let outcome = job.wait().await.unwrap();
    assert!(outcome.succeeded(), "{}: {lines:?}", outcome.reason());
    assert_eq!(texts(&lines), ["warm", "src", "read-only"]);
    assert_eq!(
        std::fs::read(cache.path().join("wheels/pkg.whl")).unwrap(),
        b"wheel\n",
        "the cache keeps what the job wrote"
    );
    assert!(!source.path().join("written").exists());
    let out = tempfile::tempdir().unwrap();
    let layer = job.commit_layer(out.path()).await.unwrap();
    assert_eq!(
        entries(&layer.path),
        ["app-out", "app-out/marker"],
        "neither the mounts nor the directories made for them"
    );
    job.remove().await.unwrap();
    assert_eq!(
        std::fs::read(cache.path().join("wheels/pkg.whl")).unwrap(),
        b"wheel\n",
        "removing the job leaves the cache"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_reaches_the_outside_but_neither_other_services_nor_the_host() {
    let s = setup().await;
    let outside = Outside::new(&s.env.config.net).unwrap();
    // Another service's instance, and listeners on the host as runway's are.
    let other =
        s.rt.start(testapp_spec("svc-other", &s.image))
            .await
            .unwrap();
    let other = wait_for("the other service healthy", T, || {
        s.rt.status(&other)
            .filter(|st| st.state == InstanceState::Healthy)
    })
    .await;
    let gateway = s.env.config.net.subnet.gateway();
    let host_gw = std::net::TcpListener::bind((gateway, 0)).unwrap();
    let host_any = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let host_gw_addr = host_gw.local_addr().unwrap();
    let host_any_port = host_any.local_addr().unwrap().port();
    for l in [host_gw, host_any] {
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let _ = c.write_all(b"HTTP/1.0 200 OK\r\n\r\nhost\n");
            }
        });
    }
    // Busybox's static wget crashes on glibc's resolver in a container; nc does not.
    // The first packets on a fresh link can be lost, so the one path that must work gets
    // a few tries.
    let script = format!(
        r#"probe() {{ printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 "$1" "$2" 2>/dev/null | grep -q "200 OK"; }}
report() {{ if probe "$1" "$2"; then echo "$3=reached"; else echo "$3=unreachable"; fi; }}
for i in 1 2 3; do probe {outside_ip} {outside_port} && break; done
report {outside_ip} {outside_port} outside
report {other_ip} {other_port} other
report {gateway} {host_gw_port} host-gateway
report {gateway} {host_any_port} host-any
"#,
        outside_ip = outside.addr.ip(),
        outside_port = outside.addr.port(),
        other_ip = other.addr.ip(),
        other_port = other.addr.port(),
        host_gw_port = host_gw_addr.port(),
    );
    let mut job = s.rt.run_job(job(&s.image, &script)).await.unwrap();
    let lines = all_lines(&mut job).await;
    let outcome = job.wait().await.unwrap();
    assert!(outcome.succeeded(), "{}: {lines:?}", outcome.reason());
    assert_eq!(
        texts(&lines),
        [
            "outside=reached",
            "other=unreachable",
            "host-gateway=unreachable",
            "host-any=unreachable"
        ]
    );
    // Through NAT: the outside saw the host's address, not the job's.
    let peers = outside.peers();
    assert!(!peers.is_empty());
    assert!(
        peers
            .iter()
            .all(|p| *p == std::net::IpAddr::V4(outside.host_ip)),
        "{peers:?}"
    );
    // The host (the router) still reaches the other service.
    let (code, _) = runway_runtime::test_util::http_get(other.addr, "/", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(code, 200);
    job.remove().await.unwrap();
}

/// Runs a runtime in this process when started by the crash test (and does nothing
/// otherwise): starts two jobs that would run for ten minutes, prints `READY <id> <id>`,
/// and waits to be killed.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by the crash test in a child process"]
async fn child_job_runtime() {
    let Some((config, store, layout)) = crash_child_setup(shim()) else {
        return;
    };
    let image = layout.image("test/job", None).unwrap();
    let rt = LocalRuntime::open(
        config,
        Arc::new(store),
        Arc::new(layout),
        &mut Default::default(),
    )
    .await
    .unwrap();
    let a = rt.run_job(job(&image, "sleep 600")).await.unwrap();
    let b = rt.run_job(job(&image, "sleep 600")).await.unwrap();
    crash_child_ready(&format!("{} {}", a.id(), b.id()));
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_left_by_a_crash_are_killed_and_removed_when_the_runtime_opens() {
    let env = TestEnv::new(shim());
    let images = tempfile::tempdir().unwrap();
    let (layout, _) = write_layout(
        &images.path().join("layout"),
        &image_layers(),
        serde_json::json!({"Env": [format!("PATH={}", runway_runtime::spec::DEFAULT_PATH)]}),
        "job",
    )
    .unwrap();
    let db = images.path().join("state.db");
    let (mut child, ids) = CrashChild::start("child_job_runtime", &env, &db, layout.dir());
    let ids: Vec<JobId> = ids.split(' ').map(|i| JobId::parse(i).unwrap()).collect();
    let (a, b) = (&ids[0], &ids[1]);
    let oci = OciRuntime::new(Path::new("/usr/sbin/runc"), &env.config.oci_root());
    for id in [a, b] {
        assert_eq!(oci.state(id.as_str()).unwrap().unwrap().status, "running");
    }

    // Job b's shim is frozen, so only job a's shim sees runway die; then b's shim is
    // killed too: b's container is left with nobody watching it.
    let shim_of = |id: &JobId| {
        let pid: i32 = std::fs::read_to_string(env.config.job_dir(id).join("shim.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        rustix::process::Pid::from_raw(pid).unwrap()
    };
    let b_shim = shim_of(b);
    rustix::process::kill_process(b_shim, rustix::process::Signal::STOP).unwrap();
    child.kill(); // SIGKILL
    rustix::process::kill_process(b_shim, rustix::process::Signal::KILL).unwrap();

    wait_for("job a's container killed by its shim", T, || {
        oci.state(a.as_str()).unwrap().is_none().then_some(())
    })
    .await;
    // Nothing watched job b, so its container is left behind. (It is normally still
    // running; on a loaded machine it was once seen already stopped, which this test
    // does not depend on: the runtime must remove it either way.)
    assert!(
        oci.state(b.as_str()).unwrap().is_some(),
        "job b's container is left behind"
    );

    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let rt = env.open(&store, &layout).await;
    for id in [a, b] {
        assert_eq!(leftovers(&env, id), Vec::<String>::new(), "job {id}");
    }
    assert!(oci.list().unwrap().is_empty());
    assert!(
        runway_net::ipam::all(store.as_ref(), &env.config.net.bridge)
            .unwrap()
            .is_empty()
    );
    let jobs: Vec<_> = std::fs::read_dir(env.config.root.join("jobs"))
        .unwrap()
        .collect();
    assert!(jobs.is_empty());
    // The runtime runs jobs again.
    let image = layout.image("test/job", None).unwrap();
    let mut job = rt.run_job(job(&image, "echo again")).await.unwrap();
    assert_eq!(texts(&all_lines(&mut job).await), ["again"]);
    assert!(job.wait().await.unwrap().succeeded());
    job.remove().await.unwrap();
    rt.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_as_the_user_it_names_and_bad_specs_start_nothing() {
    let s = setup().await;
    let mut spec = job(
        &s.image,
        "id -u; id -g; touch /root-only 2>/dev/null || echo denied",
    );
    spec.user = Some("app".into());
    let mut job = s.rt.run_job(spec).await.unwrap();
    assert_eq!(
        texts(&all_lines(&mut job).await),
        ["1000", "1000", "denied"]
    );
    job.remove().await.unwrap();

    let mut spec = job_spec_with_missing_user(&s.image);
    let err = s.rt.run_job(spec.clone()).await.unwrap_err();
    assert!(err.to_string().contains("nobody-here"), "{err}");
    spec.command = Vec::new();
    assert!(matches!(
        s.rt.run_job(spec).await,
        Err(RuntimeError::InvalidSpec(_))
    ));
    // Nothing of the failed starts is left.
    let jobs: Vec<_> = std::fs::read_dir(s.env.config.root.join("jobs"))
        .unwrap()
        .collect();
    assert!(jobs.is_empty());
}

fn job_spec_with_missing_user(image: &ImageRef) -> JobSpec {
    let mut spec = job(image, "true");
    spec.user = Some("nobody-here".into());
    spec
}
