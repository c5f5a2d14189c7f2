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

/// A loop of HTTPS requests (a new connection each) to `host` through the router until
/// stopped: the failures, with the count of successes kept in `ok`.
fn request_loop(
    server: &Server,
    host: &str,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Vec<String>> {
    let (host, https, ca) = (
        host.to_string(),
        server.https.clone(),
        server.data_dir().join("certs/ca.pem"),
    );
    std::thread::spawn(move || {
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
                    "--cacert",
                ])
                .arg(&ca)
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
    })
}

#[test]
fn a_killed_control_plane_fails_no_request_and_its_restart_adopts_the_router() {
    let mut server = Server::start();
    let (arn, host) = create_testapp(&server, "nonstop", json!({ "GREETING": "one" }), json!({}));
    assert_eq!(greeting(&server, &host), "one");
    let router = server.router_pid().expect("a router process runs");
    assert_ne!(router, server.pid(), "the router has a process of its own");

    let (stop, ok) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let looper = request_loop(&server, &host, stop.clone(), ok.clone());
    std::thread::sleep(Duration::from_secs(1));
    server.kill();
    let at_kill = ok.load(Ordering::Relaxed);
    // Several seconds without a control plane.
    std::thread::sleep(Duration::from_secs(5));
    let while_down = ok.load(Ordering::Relaxed) - at_kill;
    server.relaunch();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let failed = looper.join().unwrap();
    let total = ok.load(Ordering::Relaxed) + failed.len();
    assert!(
        failed.is_empty(),
        "{} of {total} requests failed across the kill and restart: {failed:?}",
        failed.len()
    );
    assert!(
        while_down >= 5,
        "requests were served while the server was down ({while_down})"
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
    let (stop, ok) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let looper = request_loop(&server, &host, stop.clone(), ok.clone());
    std::thread::sleep(Duration::from_millis(500));
    server.restart();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let failed = looper.join().unwrap();
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
