//! The data plane outlives the control plane: the router runs in its own process, which
//! serves through a kill -9 and a restart of `runway server` and is adopted by the next
//! one.

use crate::deploy::{create_testapp, greeting, update_env, wait_op};
use crate::harness::Server;
use serde_json::json;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Router processes serving `server`'s data directory, by their command lines.
fn router_processes(server: &Server) -> Vec<u32> {
    let dir = server.data_dir().to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "router-process") && args.contains(&dir) {
            found.push(pid);
        }
    }
    found
}

/// A loop of HTTPS requests (a new connection each) to a host through the router, on a
/// thread of its own until [`RequestLoop::finish`], counting its successes.
struct RequestLoop {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl RequestLoop {
    /// Requests to `host`, checking the router's certificate.
    fn start(server: &Server, host: &str) -> Self {
        Self::start_checking(server, host, true)
    }

    /// [`RequestLoop::start`], checking the router's certificate only if `verify`.
    fn start_checking(server: &Server, host: &str, verify: bool) -> Self {
        let (stop, ok) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (host, https, ca) = (
            host.to_string(),
            server.https.clone(),
            server.data_dir().join("certs/ca.pem"),
        );
        let thread = std::thread::spawn({
            let (stop, ok) = (stop.clone(), ok.clone());
            move || {
                let port = https.rsplit(':').next().unwrap().to_string();
                let mut failed = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let out = Command::new("curl")
                        .args([
                            "-sS",
                            "-w",
                            "\n%{http_code}",
                            "--max-time",
                            "10",
                            if verify { "--cacert" } else { "--insecure" },
                        ])
                        .args(verify.then_some(&ca))
                        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
                        .arg(format!("https://{host}:{port}/env"))
                        .output()
                        .unwrap();
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    if text.ends_with("\n200") {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.push(format!(
                            "{text} {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ));
                    }
                }
                failed
            }
        });
        RequestLoop { stop, ok, thread }
    }

    /// The requests answered 200 so far.
    fn successes(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `more` requests have succeeded after the first `from`.
    fn wait_for(&self, from: usize, more: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while self.successes() < from + more {
            assert!(
                std::time::Instant::now() < deadline,
                "the request loop stalled"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the loop: the requests that succeeded, and the failures.
    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failed = self.thread.join().unwrap();
        (self.ok.load(Ordering::Relaxed), failed)
    }
}

#[test]
fn a_killed_control_plane_fails_no_request_and_its_restart_adopts_the_router() {
    let mut server = Server::start();
    let (arn, host) = create_testapp(&server, "nonstop", json!({ "GREETING": "one" }), json!({}));
    assert_eq!(greeting(&server, &host), "one");
    let router = server.router_pid().expect("a router process runs");
    assert_ne!(router, server.pid(), "the router has a process of its own");

    let looper = RequestLoop::start(&server, &host);
    std::thread::sleep(Duration::from_secs(1));
    server.kill();
    let at_kill = looper.successes();
    // Several seconds, and many requests, without a control plane.
    std::thread::sleep(Duration::from_secs(5));
    looper.wait_for(at_kill, 20);
    server.relaunch();
    std::thread::sleep(Duration::from_secs(1));
    let (succeeded, failed) = looper.finish();
    let total = succeeded + failed.len();
    assert!(
        failed.is_empty(),
        "{} of {total} requests failed across the kill and restart: {failed:?}",
        failed.len()
    );

    // The restarted server adopted the router process rather than starting another.
    assert_eq!(server.router_pid(), Some(router));
    assert_eq!(router_processes(&server), vec![router]);
    assert!(
        server.log().contains("adopted the running router process"),
        "{}",
        server.log()
    );
    // And it drives it: a deployment after the restart is served.
    let op = update_env(&server, &arn, "nonstop", json!({ "GREETING": "two" }));
    assert_eq!(wait_op(&server, &arn, &op), "SUCCEEDED");
    assert_eq!(greeting(&server, &host), "two");

    // A graceful stop (SIGTERM) leaves the router serving too, and the next server
    // adopts it again.
    let looper = RequestLoop::start(&server, &host);
    std::thread::sleep(Duration::from_millis(500));
    server.restart();
    std::thread::sleep(Duration::from_millis(500));
    let (_, failed) = looper.finish();
    assert!(
        failed.is_empty(),
        "requests failed across a graceful restart: {failed:?}"
    );
    assert_eq!(router_processes(&server), vec![router]);
    assert_eq!(greeting(&server, &host), "two");
}

#[test]
fn a_router_process_that_dies_is_started_again_and_given_the_routes() {
    let server = Server::start();
    let (_, host) = create_testapp(&server, "phoenix", json!({ "GREETING": "back" }), json!({}));
    let router = server.router_pid().expect("a router process runs");
    let _ = Command::new("kill")
        .args(["-KILL", &router.to_string()])
        .status();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(pid) = server.router_pid()
            && pid != router
            && crate::deploy::get(&server, &host, "/env").0 == 200
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new router process served the app:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(greeting(&server, &host), "back");
    assert_eq!(router_processes(&server).len(), 1);
}

#[test]
fn a_router_restart_hands_its_sockets_over_and_drains_without_refusing_a_connection() {
    let server = Server::start();
    let (arn, host) = create_testapp(&server, "handover", json!({ "GREETING": "one" }), json!({}));
    let old = server.router_pid().expect("a router process runs");
    // A request in flight across the handover finishes on the old router process.
    let slow = {
        let (host, port, ca) = (
            host.clone(),
            server.https.rsplit(':').next().unwrap().to_string(),
            server.data_dir().join("certs/ca.pem"),
        );
        std::thread::spawn(move || {
            Command::new("curl")
                .args([
                    "-sS",
                    "-w",
                    "\n%{http_code}",
                    "--max-time",
                    "30",
                    "--cacert",
                ])
                .arg(&ca)
                .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
                .arg(format!("https://{host}:{port}/sleep?ms=3000"))
                .output()
                .unwrap()
        })
    };
    let looper = RequestLoop::start(&server, &host);
    std::thread::sleep(Duration::from_millis(1000));
    server.restart_router();
    let at_handover = looper.successes();
    looper.wait_for(at_handover, 20);
    let (_, failed) = looper.finish();
    assert!(
        failed.is_empty(),
        "{} requests failed across the handover: {failed:?}",
        failed.len()
    );
    let slow = slow.join().unwrap();
    let text = String::from_utf8_lossy(&slow.stdout);
    assert!(
        text.ends_with("\n200"),
        "the request in flight was cut: {text} {}",
        String::from_utf8_lossy(&slow.stderr)
    );

    let new = server.router_pid().expect("a router process runs");
    assert_ne!(new, old, "a new router process serves");
    // The old one drained and exited; the server drives the new one.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while router_processes(&server).len() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the old router process did not exit"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(router_processes(&server), vec![new]);
    let op = update_env(&server, &arn, "handover", json!({ "GREETING": "two" }));
    assert_eq!(wait_op(&server, &arn, &op), "SUCCEEDED");
    assert_eq!(greeting(&server, &host), "two");
}

#[test]
fn health_checking_and_replacement_resume_after_a_control_plane_restart() {
    use crate::reliability::{answered_by, app_pid, hang, instances, wait_events};
    let mut server = Server::start_with(&["--replace-grace", "1"]);
    let (arn, host) = create_testapp(&server, "revived", json!({}), json!({}));
    let first = instances(&server, &arn)[0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let short = first[..12].to_string();
    assert_eq!(answered_by(&server, &host).as_deref(), Some(short.as_str()));

    // The control plane dies; meanwhile the app hangs (its HTTP health check gets no
    // answer, and neither do requests).
    server.kill();
    let stopped = hang(app_pid(&server, &first));

    // The restarted server checks the adopted instance again, takes it out of the
    // routes and replaces it.
    server.relaunch();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let second = loop {
        if let Some(by) = answered_by(&server, &host)
            && by != short
        {
            break by;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the hung instance was not replaced after the restart:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    wait_events(
        &server,
        "revived",
        &[
            &format!("Instance {short} failed its health checks"),
            &format!("Replacing instance {short}, which fails its health checks"),
            &format!("Instance {short} stopped: it was replaced"),
        ],
    );
    drop(stopped);
    let now: Vec<String> = instances(&server, &arn)
        .iter()
        .map(|i| i["InstanceId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(now[0].starts_with(&second), "{now:?} {second}");
}

#[test]
fn a_restart_with_other_router_settings_keeps_the_unchanged_listeners_open() {
    let mut server = Server::start();
    let (arn, host) = create_testapp(&server, "keepopen", json!({ "GREETING": "one" }), json!({}));
    let old = server.router_pid().expect("a router process runs");
    let (https, old_http) = (server.https.clone(), server.http.clone());
    // Requests to the HTTPS listener, which the new settings keep.
    let looper = RequestLoop::start(&server, &host);
    looper.wait_for(0, 5);
    // An address the router cannot have fails the start and changes nothing.
    let log = server.restart_failing_with(&["--http-listen", "192.0.2.1:0"]);
    assert!(
        log.contains("cannot listen for the router on 192.0.2.1:0"),
        "{log}"
    );
    assert_eq!(server.router_pid(), Some(old));
    let at_failure = looper.successes();
    looper.wait_for(at_failure, 5);
    server.relaunch();
    assert_eq!(server.router_pid(), Some(old), "{}", server.log());
    // The operator moves the HTTP listener: the router process must be replaced.
    server.restart_with(&["--http-listen", "127.0.0.2:0"]);
    let at_restart = looper.successes();
    looper.wait_for(at_restart, 20);
    let (_, failed) = looper.finish();
    assert!(
        failed.is_empty(),
        "{} requests failed across the restart with other settings: {failed:?}",
        failed.len()
    );
    assert!(
        server
            .log()
            .contains("a new one takes over the sockets that stay"),
        "{}",
        server.log()
    );

    // A new router process serves, on the same HTTPS port and the new HTTP address.
    let new = server.router_pid().expect("a router process runs");
    assert_ne!(new, old, "the router process was replaced");
    assert_eq!(server.https, https);
    assert!(server.http.contains("127.0.0.2:"), "{}", server.http);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while router_processes(&server).len() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the old router process did not exit"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(router_processes(&server), vec![new]);
    let status_line = |url: &str| {
        let addr = url.trim_start_matches("http://").trim_end_matches('/');
        let mut stream = std::net::TcpStream::connect(addr).ok()?;
        use std::io::{Read, Write};
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(
                format!("GET /env HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .ok()?;
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text.lines().next().map(str::to_string)
    };
    let answered = status_line(&server.http);
    assert!(
        answered
            .as_deref()
            .is_some_and(|l| l.starts_with("HTTP/1.1 ")),
        "the new HTTP listener does not answer: {answered:?}"
    );
    // The dropped one is closed.
    assert_eq!(status_line(&old_http), None, "{old_http} still answers");

    // The server drives the new router process.
    let op = update_env(&server, &arn, "keepopen", json!({ "GREETING": "two" }));
    assert_eq!(wait_op(&server, &arn, &op), "SUCCEEDED");
    assert_eq!(greeting(&server, &host), "two");

    // Another base domain replaces the router process too, with every listener kept.
    // The service keeps the host name it was given, under the former base domain, whose
    // certificate (from the local CA) the new router process serves as well: this loop
    // checks the certificate across the restart.
    let looper = RequestLoop::start(&server, &host);
    looper.wait_for(0, 5);
    let (http, before) = (server.http.clone(), server.router_pid());
    server.restart_with(&[
        "--http-listen",
        "127.0.0.2:0",
        "--base-domain",
        "moved.localhost",
    ]);
    let at_restart = looper.successes();
    looper.wait_for(at_restart, 20);
    let (_, failed) = looper.finish();
    assert!(
        failed.is_empty(),
        "{} requests failed across the restart with another base domain: {failed:?}",
        failed.len()
    );
    assert_ne!(
        server.router_pid(),
        before,
        "the router process was replaced"
    );
    assert_eq!((&server.https, &server.http), (&https, &http));

    // A service created now is under the new base domain; both answer over HTTPS with
    // the certificate checked against the CA.
    let (_, moved) = create_testapp(&server, "moved", json!({ "GREETING": "new" }), json!({}));
    assert!(moved.ends_with(".moved.localhost"), "{moved}");
    assert!(!host.ends_with(".moved.localhost"), "{host}");
    assert_eq!(greeting(&server, &moved), "new");
    assert_eq!(greeting(&server, &host), "two");

    // Once no service uses the former base domain, its certificate is no longer served:
    // the old host name gets the new base domain's, which clients refuse.
    server.aws(&["delete-service", "--service-arn", &arn]).ok();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = crate::deploy::get(&server, &host, "/env");
        if status == 0 {
            assert!(body.contains("SSL"), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the former base domain's certificate is still served ({status} {body})"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(greeting(&server, &moved), "new");
}
