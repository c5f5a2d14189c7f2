//! Per-service HTTP settings end to end (issue 11 items 1 and 2): set through runway's
//! API (Python with botocore's signer), the `runway` CLI and `apprunner.yaml`, deployed,
//! and checked with real clients through the router over TLS: curl for timeouts, body
//! limits, a 1 GiB streamed upload and server-sent events, Python `websockets` (and `h2`
//! for RFC 8441) for WebSockets, grpcio for a gRPC service built from source.

use crate::deploy::{create_testapp, extension, push_testapp, wait_op, wait_status};
use crate::harness::{RawRequest, Server, assert_ok};
use crate::source::{copy_dir, import_base};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn https_port(server: &Server) -> String {
    server.https.rsplit(':').next().unwrap().to_string()
}

fn ca(server: &Server) -> PathBuf {
    server.data_dir().join("certs/ca.pem")
}

/// A curl command through the router's HTTPS listener for `host`, trusting runway's CA.
fn curl_command(server: &Server, host: &str) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "600", "--cacert"])
        .arg(ca(server))
        .args([
            "--resolve",
            &format!("{host}:{}:127.0.0.1", https_port(server)),
        ]);
    cmd
}

fn url(server: &Server, host: &str, path: &str) -> String {
    format!("https://{host}:{}{path}", https_port(server))
}

/// `curl ARGS URL`: (status, body, seconds taken).
fn curl(server: &Server, host: &str, path: &str, args: &[&str]) -> (u16, String, f64) {
    let out = curl_command(server, host)
        .args(["-w", "\n%{http_code} %{time_total}"])
        .args(args)
        .arg(url(server, host, path))
        .output()
        .unwrap();
    status_line(&out)
}

fn status_line(out: &Output) -> (u16, String, f64) {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut parts = last.split_whitespace();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let seconds = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let body = match status {
        0 => format!("curl failed: {}", String::from_utf8_lossy(&out.stderr)),
        _ => body.to_string(),
    };
    (status, body, seconds)
}

/// Runs a Python client in tests/e2e/py and returns the JSON it printed last.
fn python(script: &str, args: &[&str]) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e/py")
        .join(script);
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    let stdout = assert_ok(&out, &format!("{script} {args:?}"));
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{script} printed no JSON:\n{stdout}"));
    serde_json::from_str(line).unwrap()
}

fn describe_http(server: &Server, arn: &str) -> Value {
    extension(
        server,
        "DescribeServiceHttpConfiguration",
        json!({ "ServiceArn": arn }),
    )
}

/// The error (type, message) runway's `operation` answers `body` with.
fn extension_error(server: &Server, operation: &str, body: Value) -> (String, String) {
    let body = body.to_string();
    let (status, out) = server.raw(RawRequest {
        operation,
        prefix: "Runway",
        body: &body,
        ..Default::default()
    });
    assert_eq!(status, 400, "{operation} {body}: {out}");
    (
        out["__type"].as_str().unwrap_or_default().to_string(),
        out["Message"].as_str().unwrap_or_default().to_string(),
    )
}

fn operation_count(server: &Server, arn: &str) -> usize {
    server.aws(&["list-operations", "--service-arn", arn]).ok()["OperationSummaryList"]
        .as_array()
        .unwrap()
        .len()
}

/// The server process's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Streams `bytes` zero bytes of unknown length (chunked, or HTTP/2 DATA frames) to
/// `path` with curl while sampling the server's resident memory: (status, body, the
/// largest growth in MiB).
fn upload(
    server: &Server,
    host: &str,
    path: &str,
    bytes: u64,
    args: &[&str],
) -> (u16, String, u64) {
    // The router process streams the body.
    let pid = server.router_pid().expect("the router process runs");
    let before = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        })
    };
    let mut source = Command::new("head")
        .args(["-c", &bytes.to_string(), "/dev/zero"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = curl_command(server, host)
        .args(["-w", "\n%{http_code} %{time_total}", "-T", "-"])
        .args(args)
        .arg(url(server, host, path))
        .stdin(source.stdout.take().unwrap())
        .output()
        .unwrap();
    let _ = source.wait();
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let (status, body, _) = status_line(&out);
    (status, body, peak.saturating_sub(before) / 1024)
}

#[test]
fn http_settings_from_the_api_and_the_cli_are_shown_and_applied_without_a_rebuild() {
    let server = Server::start();
    let (arn, host) = create_testapp(&server, "timeouts", json!({}), json!({}));
    let sleep = |ms: u32| curl(&server, &host, &format!("/sleep?ms={ms}"), &[]);

    // Nothing set: App Runner's 120 s, a 15 min idle timeout, 32 MiB.
    let shown = describe_http(&server, &arn);
    assert_eq!(shown["HttpConfiguration"], json!({}));
    assert_eq!(
        shown["ServingHttpConfiguration"],
        json!({ "InstanceProtocol": "HTTP1", "RequestTimeoutSeconds": 120, "IdleTimeoutSeconds": 900, "MaxRequestBodyBytes": 33554432 })
    );
    let (status, body, _) = sleep(3000);
    assert_eq!((status, body.as_str()), (200, "slept 3000 ms\n"));

    // Bad input: App Runner's error types, the member named, nothing changed.
    let ops = operation_count(&server, &arn);
    let update = |cfg: Value| json!({ "ServiceArn": arn, "HttpConfiguration": cfg });
    for (input, kind, words) in [
        (
            update(json!({ "InstanceProtocol": "HTTP3" })),
            "InvalidRequestException",
            "HttpConfiguration.InstanceProtocol must be one of HTTP1, H2C",
        ),
        (
            update(json!({ "RequestTimeoutSeconds": 3601 })),
            "InvalidRequestException",
            "HttpConfiguration.RequestTimeoutSeconds must be from 1 second to 1h",
        ),
        (
            update(json!({ "IdleTimeoutSeconds": 0 })),
            "InvalidRequestException",
            "HttpConfiguration.IdleTimeoutSeconds",
        ),
        (
            update(json!({ "MaxRequestBodyBytes": -1 })),
            "InvalidRequestException",
            "HttpConfiguration.MaxRequestBodyBytes",
        ),
        (
            update(json!({ "RequestTimeoutSeconds": "fast" })),
            "SerializationException",
            "RequestTimeoutSeconds",
        ),
        (
            json!({ "ServiceArn": arn }),
            "InvalidRequestException",
            "HttpConfiguration is required",
        ),
        (
            json!({ "ServiceArn": arn.replace("/timeouts/", "/nobody/"), "HttpConfiguration": {} }),
            "ResourceNotFoundException",
            "does not exist",
        ),
    ] {
        let (got_kind, message) =
            extension_error(&server, "UpdateServiceHttpConfiguration", input.clone());
        assert_eq!(got_kind, kind, "{input}: {message}");
        assert!(message.contains(words), "{input}: {message}");
    }
    assert_eq!(describe_http(&server, &arn), shown, "nothing changed");
    assert_eq!(operation_count(&server, &arn), ops, "no operation recorded");

    // Through the API from Python: a 2 s request timeout and a 1 KiB body limit, applied
    // by a deployment of the same image.
    let op = python_update(&server);
    assert_eq!(wait_op(&server, &arn, &op), "SUCCEEDED");
    let (status, _, seconds) = sleep(4000);
    assert_eq!(
        status, 504,
        "the configured request timeout cuts a slow request"
    );
    assert!(seconds < 3.9, "cut after {seconds} s");
    let body = "a".repeat(2000);
    let (status, answer, _) = curl(
        &server,
        &host,
        "/echo",
        &["--http1.1", "--data-binary", &body],
    );
    assert_eq!(status, 413, "a body over the limit: {answer}");
    let (status, echoed, _) = curl(&server, &host, "/echo", &["--data-binary", &body[..1000]]);
    assert_eq!((status, echoed.len()), (200, 1000));
    let shown = describe_http(&server, &arn);
    assert_eq!(
        shown["HttpConfiguration"],
        json!({ "RequestTimeoutSeconds": 2, "MaxRequestBodyBytes": 1024 })
    );
    assert_eq!(
        shown["ServingHttpConfiguration"],
        json!({ "InstanceProtocol": "HTTP1", "RequestTimeoutSeconds": 2, "IdleTimeoutSeconds": 900, "MaxRequestBodyBytes": 1024 })
    );
    let revisions = extension(&server, "ListRevisions", json!({ "ServiceArn": arn }))["Revisions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(revisions.len(), 2);
    assert_eq!(
        revisions[0]["ImageDigest"], revisions[1]["ImageDigest"],
        "the same image, not pulled or built again"
    );
    assert_eq!(
        revisions[0]["HttpConfiguration"],
        shown["ServingHttpConfiguration"]
    );
    assert_eq!(shown["ServingRevisionId"], revisions[0]["RevisionId"]);

    // Through the CLI: a longer timeout (the upload below must fit in it) and no body
    // limit.
    let out = server.runway_out(&[
        "services",
        "update",
        "timeouts",
        "--request-timeout",
        "10m",
        "--max-request-body",
        "unlimited",
    ]);
    assert!(out.contains("serves with the new HTTP settings"), "{out}");
    let described = server.runway_out(&["services", "describe", "timeouts"]);
    for line in [
        "Protocol:        http1\n",
        "Request timeout: 10m (set by the API)\n",
        "Idle timeout:    15m\n",
        "Max body:        unlimited (set by the API)\n",
    ] {
        assert!(described.contains(line), "{line:?} in:\n{described}");
    }
    assert_eq!(sleep(4000).0, 200);
    let json = server.runway_out(&["services", "describe", "timeouts", "-o", "json"]);
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["ServiceName"], "timeouts", "App Runner's shape");
    assert_eq!(
        json["ServingHttpConfiguration"]["RequestTimeoutSeconds"],
        600
    );
    assert_eq!(json["HttpConfiguration"]["MaxRequestBodyBytes"], 0);

    // 1 GiB streamed through, the server's memory flat.
    let (status, body, grown) = upload(&server, &host, "/upload", 1 << 30, &[]);
    assert_eq!(
        (status, body.as_str()),
        (200, "received 1073741824 bytes\n")
    );
    assert!(
        grown < 64,
        "the router process grew by {grown} MiB during the upload"
    );

    // A rollback restores the settings the earlier revision was deployed with.
    let out = server.runway_out(&["rollback", "timeouts", "-o", "json"]);
    let op = serde_json::from_str::<Value>(&out).unwrap()["OperationId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(wait_op(&server, &arn, &op), "SUCCEEDED");
    assert_eq!(sleep(4000).0, 504);
    assert_eq!(
        describe_http(&server, &arn)["HttpConfiguration"],
        json!({ "RequestTimeoutSeconds": 2, "MaxRequestBodyBytes": 1024 })
    );

    // `runway deploy` takes the same flags.
    push_testapp(&server, "quick:v1");
    let image = format!("{}/quick:v1", server.registry_host());
    let out = server.runway_out(&[
        "deploy",
        "--image",
        &image,
        "--name",
        "quick",
        "--request-timeout",
        "3",
        "--idle-timeout",
        "1m",
    ]);
    assert!(out.contains("Service quick is running at"), "{out}");
    let services = server.aws(&["list-services"]).ok();
    let quick = services["ServiceSummaryList"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["ServiceName"] == "quick")
        .unwrap()
        .clone();
    let serving = describe_http(&server, quick["ServiceArn"].as_str().unwrap());
    assert_eq!(
        serving["ServingHttpConfiguration"]["RequestTimeoutSeconds"],
        3
    );
    assert_eq!(
        serving["ServingHttpConfiguration"]["IdleTimeoutSeconds"],
        60
    );
    let quick_host = quick["ServiceUrl"].as_str().unwrap();
    assert_eq!(curl(&server, quick_host, "/sleep?ms=5000", &[]).0, 504);
    assert_eq!(curl(&server, quick_host, "/sleep?ms=1000", &[]).0, 200);
}

/// Runs py/http_settings.py (boto3 and a botocore-signed extension call); the operation
/// it recorded.
fn python_update(server: &Server) -> String {
    let out = server.boto3("http_settings.py");
    let line = out.lines().find(|l| l.starts_with('{')).unwrap();
    serde_json::from_str::<Value>(line).unwrap()["OperationId"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Counts the events curl received from `/sse` and how long the stream lasted.
fn sse(server: &Server, host: &str, count: u32, interval_ms: u32) -> (usize, f64) {
    let started = Instant::now();
    let out = curl_command(server, host)
        .arg("-N")
        .arg(url(
            server,
            host,
            &format!("/sse?count={count}&interval_ms={interval_ms}"),
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    (
        text.matches("data: event ").count(),
        started.elapsed().as_secs_f64(),
    )
}

#[test]
fn request_bodies_over_the_limit_get_413_over_http1_and_http2() {
    let server = Server::start();
    let (_, host) = create_testapp(&server, "limited", json!({}), json!({}));
    server.runway_out(&[
        "services",
        "update",
        "limited",
        "--max-request-body",
        "1KiB",
    ]);
    let (ca, port) = (ca(&server), https_port(&server));
    let body = "a".repeat(2000);
    let (status, echoed, _) = curl(&server, &host, "/echo", &["--data-binary", &body[..1024]]);
    assert_eq!((status, echoed.len()), (200, 1024), "at the limit");
    // Three times each: the answer must not depend on how the body's bytes and the
    // refusal cross.
    for _ in 0..3 {
        // HTTP/1.1 with curl: a Content-Length over the limit, and a chunked body.
        let (status, answer, _) = curl(
            &server,
            &host,
            "/echo",
            &["--http1.1", "--data-binary", &body],
        );
        assert_eq!(status, 413, "HTTP/1.1, Content-Length 2000: {answer}");
        for bytes in [5000, 200_000] {
            let (status, answer, _) = upload(&server, &host, "/upload", bytes, &["--http1.1"]);
            assert_eq!(
                status, 413,
                "HTTP/1.1, {bytes} bytes chunked (a status of 100 is curl's last before \
                 the connection was reset: the 413 was lost when the router closed with the \
                 client's bytes unread; nginx and Apache read on for a while, a lingering \
                 close): {answer}"
            );
        }
        // HTTP/2 with the h2 package (curl 7.88 sometimes reports the reset that may
        // follow an early answer as an error), with and without a content-length.
        for (bytes, length) in [(2000, "length"), (5000, ""), (200_000, "")] {
            let answer = python(
                "h2_upload.py",
                &[
                    ca.to_str().unwrap(),
                    &host,
                    &port,
                    "/upload",
                    &bytes.to_string(),
                    length,
                ],
            );
            assert_eq!(
                answer["status"], 413,
                "HTTP/2, {bytes} bytes {length}: {answer}"
            );
        }
    }
    let answer = python(
        "h2_upload.py",
        &[ca.to_str().unwrap(), &host, &port, "/upload", "1000"],
    );
    assert_eq!(answer["body"], "received 1000 bytes\n", "{answer}");
}

#[test]
fn websockets_and_event_streams_outlive_the_request_timeout_and_idle_ones_are_closed() {
    let server = Server::start();
    let (arn, host) = create_testapp(&server, "streams", json!({}), json!({}));
    let out = server.runway_out(&["services", "update", "streams", "--idle-timeout", "5"]);
    assert!(out.contains("serves with the new HTTP settings"), "{out}");
    assert_eq!(
        describe_http(&server, &arn)["ServingHttpConfiguration"]["RequestTimeoutSeconds"],
        120
    );
    let (ca, port) = (ca(&server), https_port(&server));
    let ws = |mode: &[&str]| {
        let mut args = vec![ca.to_str().unwrap(), host.as_str(), port.as_str()];
        args.extend(mode);
        python("ws_client.py", &args)
    };

    // Echo over HTTP/1.1 (Upgrade) and over HTTP/2 (extended CONNECT).
    assert_eq!(ws(&["echo"])["echoed"], 3);
    assert_eq!(ws(&["echo-h2"])["echoed_h2"], json!([13, 70000]));

    // For longer than App Runner's 120 s request timeout, with bytes flowing every 2 s
    // (the idle timeout is 5 s): an event stream and a WebSocket, side by side with ones
    // that fall silent.
    std::thread::scope(|s| {
        let stream = s.spawn(|| sse(&server, &host, 64, 2000));
        let socket = s.spawn(|| ws(&["hold", "125", "2"]));
        let silent_socket = ws(&["idle"]);
        let closed = silent_socket["closed_after"].as_f64().unwrap();
        assert!(
            (4.0..15.0).contains(&closed),
            "an idle WebSocket was closed after {closed} s: {silent_socket}"
        );
        let (events, seconds) = sse(&server, &host, 3, 10_000);
        assert_eq!(
            events, 1,
            "a silent event stream is cut after its first event"
        );
        assert!(seconds < 9.5, "cut after {seconds} s");

        let (events, seconds) = stream.join().unwrap();
        assert_eq!(events, 64, "every event arrived ({seconds} s)");
        assert!(seconds > 120.0, "{seconds}");
        let held = socket.join().unwrap();
        assert!(held["messages"].as_u64().unwrap() >= 60, "{held}");
    });
}

#[test]
fn grpc_from_source_with_apprunner_yaml_through_the_router() {
    let server = Server::start_with(&["--runtime-image", "python3=runtimes/python3:latest"]);
    import_base(&server, "python3");
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("grpc-echo");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/apps/grpc-echo"),
        &app,
    );
    let out = server.deploy_source(&app);
    let stdout = assert_ok(&out, "runway deploy --source (pip install grpcio)");
    assert!(
        stdout.contains("Service grpc-echo is running at"),
        "{stdout}"
    );
    let described = server.runway_out(&["services", "describe", "grpc-echo"]);
    assert!(
        described.contains("Protocol:        h2c\n"),
        "apprunner.yaml's protocol, not the API's:\n{described}"
    );
    let services = server.aws(&["list-services"]).ok();
    let summary = &services["ServiceSummaryList"][0];
    let (arn, host) = (
        summary["ServiceArn"].as_str().unwrap().to_string(),
        summary["ServiceUrl"].as_str().unwrap().to_string(),
    );
    let (ca, port) = (ca(&server), https_port(&server));
    let grpc = |mode: &[&str]| {
        let mut args = vec![ca.to_str().unwrap(), host.as_str(), port.as_str()];
        args.extend(mode);
        python("grpc_client.py", &args)
    };

    let calls = grpc(&["calls"]);
    assert_eq!(
        calls,
        json!({
            "unary": "echo:hi",
            "trailer": "unary",
            "error": ["INVALID_ARGUMENT", "asked to fail"],
            "server_stream": 200,
            "client_stream": "100 messages, 1000000 bytes",
            "bidi": 3,
        })
    );
    let deadline = grpc(&["deadline"]);
    let seen = deadline["app_saw_remaining"].as_f64().unwrap();
    assert!(
        (20.0..=30.0).contains(&seen),
        "the app saw the client's deadline: {deadline}"
    );
    assert_eq!(deadline["expired"], "DEADLINE_EXCEEDED", "{deadline}");

    // A rollback to the built revision restores its settings (and apprunner.yaml's
    // protocol, which no API call set), and the service stays one built from source.
    let out = server.runway_out(&["services", "update", "grpc-echo", "--request-timeout", "30"]);
    assert!(out.contains("serves with the new HTTP settings"), "{out}");
    let serving = &describe_http(&server, &arn)["ServingHttpConfiguration"];
    assert_eq!(
        (
            &serving["InstanceProtocol"],
            &serving["RequestTimeoutSeconds"]
        ),
        (&json!("H2C"), &json!(30)),
        "the API's timeout beside apprunner.yaml's protocol"
    );
    let out = server.runway_out(&["rollback", "grpc-echo", "-o", "json"]);
    let op = serde_json::from_str::<Value>(&out).unwrap()["OperationId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(wait_op(&server, &arn, &op), "SUCCEEDED");
    assert_eq!(
        describe_http(&server, &arn)["ServingHttpConfiguration"]["RequestTimeoutSeconds"],
        120
    );
    assert_eq!(grpc(&["calls"]), calls);
    let source = &server
        .aws(&["describe-service", "--service-arn", &arn])
        .ok()["Service"]["SourceConfiguration"];
    assert!(source["CodeRepository"].is_object(), "{source}");
    assert!(source["ImageRepository"].is_null(), "{source}");

    // The router's own answers are gRPC statuses: its request timeout...
    let out = server.runway_out(&["services", "update", "grpc-echo", "--request-timeout", "2"]);
    assert!(out.contains("serves with the new HTTP settings"), "{out}");
    let status = grpc(&["status", "10"]);
    assert_eq!(status["code"], "DEADLINE_EXCEEDED", "{status}");
    assert!(status["after"].as_f64().unwrap() < 5.0, "{status}");
    // ...and a paused service.
    let op = server.aws(&["pause-service", "--service-arn", &arn]).ok()["OperationId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(wait_op(&server, &arn, &op), "SUCCEEDED");
    wait_status(&server, &arn, "PAUSED");
    let status = grpc(&["status"]);
    assert_eq!(status["code"], "UNAVAILABLE", "{status}");
}
