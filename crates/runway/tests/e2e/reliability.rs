//! Faults and hostile tenants, through deployed services: a hung app is replaced, its
//! crashes and OOM kills are service events, an instance that fills its disk or takes
//! more memory than all instances may use is stopped at its own bounds, root in an
//! instance is not root on the host, and many services created and deleted at once
//! leave nothing behind.

use crate::deploy::{create_testapp, extension, get, push_testapp, wait_status};
use crate::harness::{RawRequest, Server, assert_ok};
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

/// The instances of service `arn`, as `Runway.ListInstances` reports them.
pub(crate) fn instances(server: &Server, arn: &str) -> Vec<Value> {
    extension(server, "ListInstances", json!({ "ServiceArn": arn }))["Instances"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The host pid of instance `id`'s app, from runc.
pub(crate) fn app_pid(server: &Server, id: &str) -> u32 {
    let out = Command::new("runc")
        .arg("--root")
        .arg(server.data_dir().join("runtime/runc"))
        .args(["state", id])
        .output()
        .unwrap();
    let state: Value = serde_json::from_str(&assert_ok(&out, "runc state")).unwrap();
    state["pid"].as_u64().unwrap() as u32
}

/// Stops `pid` (SIGSTOP): the app hangs, accepting no request and answering no health
/// check. The guard sends SIGCONT when dropped, so that a failing test leaves no stopped
/// process behind.
pub(crate) fn hang(pid: u32) -> impl Drop {
    struct Cont(u32);
    impl Drop for Cont {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-CONT", &self.0.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    let status = Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    Cont(pid)
}

/// The service's event log, as `runway events` prints it.
pub(crate) fn events(server: &Server, name: &str) -> String {
    server.runway_out(&["events", name])
}

/// Waits until the event log of `name` has a line containing each of `want`.
pub(crate) fn wait_events(server: &Server, name: &str, want: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let log = events(server, name);
        if want.iter().all(|w| log.contains(w)) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "events of {name} lack one of {want:?}:\n{log}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The instance (first 12 digits of its id) that answered `/` at `host` within 3 s.
pub(crate) fn answered_by(server: &Server, host: &str) -> Option<String> {
    let port = server.https.rsplit(':').next().unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "3", "--cacert"])
        .arg(server.data_dir().join("certs/ca.pem"))
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .arg(format!("https://{host}:{port}/"))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    out.status
        .success()
        .then(|| body.trim().rsplit(' ').next().map(str::to_string))
        .flatten()
}

#[test]
fn a_hung_app_is_replaced_and_crashes_and_oom_kills_are_service_events() {
    let server = Server::start_with(&["--replace-grace", "1"]);
    let (arn, host) = create_testapp(
        &server,
        "sturdy",
        json!({}),
        json!({ "InstanceConfiguration": { "Cpu": "0.25 vCPU", "Memory": "0.5 GB" } }),
    );
    let first = instances(&server, &arn)[0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(answered_by(&server, &host).as_deref(), Some(&first[..12]));

    // The app hangs: it accepts no request and answers no health check.
    let _hung = hang(app_pid(&server, &first));
    let hung = Instant::now();
    let second = loop {
        if let Some(by) = answered_by(&server, &host)
            && by != first[..12]
        {
            break by;
        }
        assert!(
            hung.elapsed() < Duration::from_secs(90),
            "the service does not answer again:\n{}",
            events(&server, "sturdy")
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let short = &first[..12];
    wait_events(
        &server,
        "sturdy",
        &[
            &format!("Instance {short} failed its health checks"),
            &format!("Replacing instance {short}, which fails its health checks"),
            &format!("Instance {short} stopped: it was replaced"),
        ],
    );
    let now: Vec<String> = instances(&server, &arn)
        .iter()
        .map(|i| i["InstanceId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(now[0].starts_with(&second));

    // A crash and an OOM kill: restarted by the runtime, told in the events.
    let _ = get(&server, &host, "/crash");
    wait_events(
        &server,
        "sturdy",
        &[
            &format!("Instance {second} exited with code 3"),
            &format!("Instance {second} restarts in"),
        ],
    );
    wait_for_answer(&server, &host);
    let _ = get(&server, &host, "/alloc?mb=700");
    let log = wait_events(
        &server,
        "sturdy",
        &[&format!(
            "Instance {second} was killed: it ran out of memory (OOM)"
        )],
    );
    // The API's ListServiceEvents extension carries the same lines.
    let listed = extension(&server, "ListServiceEvents", json!({ "ServiceArn": arn }));
    assert!(
        listed.to_string().contains("ran out of memory (OOM)"),
        "{listed}\n{log}"
    );
    wait_for_answer(&server, &host);
}

/// Waits until `host` answers `/` with 200.
fn wait_for_answer(server: &Server, host: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered_by(server, host).is_none() {
        assert!(Instant::now() < deadline, "{host} does not answer");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The bytes the host's disk holds for the files under `dir` (instances' storage files,
/// not what is mounted from them): unlike the disk's free space, not moved by whatever
/// else runs on the machine.
fn allocated(dir: &std::path::Path) -> u64 {
    let out = Command::new("du")
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

#[test]
fn tenants_are_held_to_their_disk_memory_and_user_bounds() {
    let server = Server::start_with(&[
        "--ephemeral-storage",
        "64",
        "--instances-memory",
        "400",
        "--instances-cpus",
        "1.5",
        "--instances-pids",
        "3000",
    ]);
    let (_, filler) = create_testapp(&server, "filler", json!({}), json!({}));
    let (_, neighbour) = create_testapp(
        &server,
        "neighbour",
        json!({}),
        json!({ "InstanceConfiguration": { "Cpu": "0.25 vCPU", "Memory": "1 GB" } }),
    );

    // A disk fill from inside an instance: its own write fails at its limit.
    let before = allocated(server.data_dir());
    let (status, body) = get(&server, &filler, "/write?path=/fill&mb=128");
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("No space left on device"), "{body}");
    let lost = allocated(server.data_dir()).saturating_sub(before);
    assert!(lost < 100 << 20, "the host lost {lost} bytes to the fill");
    assert_eq!(
        get(&server, &filler, "/").0,
        200,
        "the full instance serves on"
    );
    let (status, body) = get(&server, &neighbour, "/write?path=/data&mb=16");
    assert_eq!(status, 200, "another instance writes on: {body}");

    // Root in an instance is an unprivileged user on the host, and the instance's mount
    // table shows none of the host's layer paths.
    let (_, map) = get(&server, &filler, "/read?path=/proc/self/uid_map");
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", "1000000000", "65536"]
    );
    let (_, mounts) = get(&server, &filler, "/read?path=/proc/self/mountinfo");
    assert!(!mounts.contains("/runtime/layers"), "{mounts}");
    assert!(!mounts.contains("sha256"), "{mounts}");

    // All instances together get the operator's bounds: an instance allowed 1 GB is
    // stopped at the 400 MiB all of them may use.
    let parent = |controller: &str, file: &str| {
        std::fs::read_to_string(format!(
            "/sys/fs/cgroup/{controller}/runway-{}/{file}",
            server.bridge
        ))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
    };
    if std::path::Path::new("/sys/fs/cgroup/memory").is_dir() {
        assert_eq!(
            parent("memory", "memory.limit_in_bytes"),
            (400u64 << 20).to_string()
        );
        assert_eq!(parent("cpu", "cpu.cfs_quota_us"), "150000");
        assert_eq!(parent("pids", "pids.max"), "3000");
    }
    let _ = get(&server, &neighbour, "/alloc?mb=600");
    wait_events(&server, "neighbour", &["was killed"]);
    wait_for_answer(&server, &neighbour);
}

/// Signs and sends `operation` with `body` to the API; the answer's JSON.
fn call(server: &Server, operation: &str, body: &Value) -> Value {
    let body = body.to_string();
    let (status, out) = server.raw(RawRequest {
        operation,
        body: &body,
        ..Default::default()
    });
    assert_eq!(status, 200, "{operation}: {out}");
    out
}

/// Runs `f` on `n` threads at once (for `0..n`) and collects what each returned.
fn at_once<T: Send + 'static>(n: usize, f: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let f = std::sync::Arc::new(f);
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let f = f.clone();
            std::thread::spawn(move || f(i))
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// How many services are in each status.
fn statuses(server: &Server) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({ "MaxResults": 20 });
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let page = call(server, "ListServices", &body);
        for s in page["ServiceSummaryList"].as_array().unwrap() {
            *counts
                .entry(s["Status"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        match page["NextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => return counts,
        }
    }
}

/// Waits until all `n` services are `want`.
fn wait_all(server: &Server, n: usize, want: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let counts = statuses(server);
        if counts.get(want) == Some(&n) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not all {n} services are {want}: {counts:?}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn two_hundred_services_created_and_deleted_at_once_leave_nothing_behind() {
    const N: usize = 200;
    let server = std::sync::Arc::new(Server::start_with(&["--stopped-instance-retention", "1"]));
    push_testapp(&server, "crowd:v1");
    let image = format!("{}/crowd:v1", server.registry_host());
    let arns = {
        let server = server.clone();
        at_once(N, move |i| {
            let input = json!({
                "ServiceName": format!("crowd-{i:03}"),
                "SourceConfiguration": { "ImageRepository": {
                    "ImageIdentifier": image,
                    "ImageRepositoryType": "ECR",
                    "ImageConfiguration": { "Port": "8080" }
                }},
                "HealthCheckConfiguration": { "Protocol": "HTTP", "Path": "/healthz", "Interval": 1 }
            });
            call(&server, "CreateService", &input)["Service"]["ServiceArn"]
                .as_str()
                .unwrap()
                .to_string()
        })
    };
    wait_all(&server, N, "RUNNING", Duration::from_secs(900));
    // Each serves.
    let one = call(
        &server,
        "DescribeService",
        &json!({ "ServiceArn": arns[N / 2] }),
    );
    let host = one["Service"]["ServiceUrl"].as_str().unwrap();
    assert_eq!(get(&server, host, "/healthz").0, 200);

    {
        let server = server.clone();
        let arns = arns.clone();
        at_once(N, move |i| {
            call(&server, "DeleteService", &json!({ "ServiceArn": arns[i] }));
        });
    }
    // Deleted services are no longer listed.
    let deadline = Instant::now() + Duration::from_secs(900);
    while !statuses(&server).is_empty() {
        assert!(Instant::now() < deadline, "{:?}", statuses(&server));
        std::thread::sleep(Duration::from_secs(1));
    }
    let leftovers = || left_behind(&server);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut left = leftovers();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        left = leftovers();
    }
    assert_eq!(left, Vec::<String>::new(), "{}", server.log());
    let wait = wait_status(&server, &arns[0], "DELETED");
    assert_eq!(wait["Status"], "DELETED");
}

/// What instances of `server` left on the host or in its store: addresses and instance
/// records, firewall elements, namespaces and links, cgroups, mounts, directories.
fn left_behind(server: &Server) -> Vec<String> {
    let mut left = Vec::new();
    let store = runway_store::SqliteStore::open(&server.data_dir().join("state.db")).unwrap();
    {
        use runway_store::{Query, Store};
        let tx = store.read().unwrap();
        for kind in ["net-address", "net-service-tag", "runtime-instance"] {
            for doc in tx.list(kind, &Query::default()).unwrap() {
                left.push(format!("{kind} {}", doc.id));
            }
        }
    }
    let table = format!("runway_{}", server.bridge);
    for family in ["inet", "bridge"] {
        let out = Command::new("nft")
            .args(["list", "table", family, &table])
            .output()
            .unwrap();
        let rules = String::from_utf8_lossy(&out.stdout);
        if rules.contains("elements") || rules.contains("svc_") {
            left.push(format!("nft {family} {table}:\n{rules}"));
        }
    }
    let prefix = format!("runway-{}-", server.bridge);
    for ns in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = ns.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) {
            left.push(format!("netns {name}"));
        }
    }
    let ports = Command::new("ip")
        .args(["-o", "link", "show", "master", &server.bridge])
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&ports.stdout).lines() {
        left.push(format!("link {line}"));
    }
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let parent = hierarchy.path().join(format!("runway-{}", server.bridge));
        for child in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                left.push(format!("cgroup {}", child.path().display()));
            }
        }
    }
    let runtime = server.data_dir().join("runtime");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mounts.lines() {
        if line.contains(&runtime.display().to_string()) {
            left.push(format!("mount {line}"));
        }
    }
    for dir in std::fs::read_dir(runtime.join("instances"))
        .into_iter()
        .flatten()
        .flatten()
    {
        left.push(format!("directory {}", dir.path().display()));
    }
    left
}
