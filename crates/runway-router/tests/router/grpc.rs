//! gRPC through the router with grpcio on both ends (a Python server over h2c, the Python
//! client), and frames from the h2 package where exact headers matter: every kind of
//! call, trailers, `grpc-timeout`, and the router's own errors as gRPC statuses.

use crate::py;
use runway_router::test_util::{TestRouter, eventually};
use runway_router::{QueueConfig, RouterConfig, ServiceRoute, Upstream};
use serde_json::Value;
use std::time::Duration;

const HOST: &str = "grpc-1.runway.localhost";

/// A service of `server` over h2c.
fn grpc_service(server: &py::Server) -> ServiceRoute {
    let mut svc = runway_router::test_util::service("svc", HOST, "rev", vec![server.endpoint("g")]);
    svc.upstream = Upstream::H2c;
    svc
}

/// Runs grpcio's client through the router with `calls`: their outcomes, by call.
async fn calls(router: &TestRouter, authority: &str, calls: &[&str]) -> Vec<Value> {
    let mut args = vec![router.addr.to_string(), authority.to_string()];
    args.extend(calls.iter().map(|c| c.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = py::run("grpc_client.py", &args).await;
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect()
}

/// One call from the h2 package with `headers`: what came back.
async fn h2_call(router: &TestRouter, path: &str, headers: &[&str]) -> Value {
    let addr = router.addr.to_string();
    let mut args = vec!["grpc", &addr, HOST, path];
    args.extend_from_slice(headers);
    let run = py::run("h2_client.py", &args).await;
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    serde_json::from_str(run.stdout.trim()).expect(&run.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_of_every_kind_pass_through_with_their_trailers() {
    let server = py::Server::start("grpc_server.py", &[]).await;
    let router = TestRouter::start(RouterConfig::default()).await;
    router.set_services(vec![grpc_service(&server)]);
    let out = calls(
        &router,
        HOST,
        &["unary", "server_stream", "client_stream", "bidi", "fail"],
    )
    .await;
    assert_eq!(out[0]["replies"], serde_json::json!(["ping"]), "{out:?}");
    assert_eq!(
        out[1]["replies"],
        serde_json::json!(["tick #0", "tick #1", "tick #2"])
    );
    assert_eq!(out[2]["replies"], serde_json::json!(["a+b+c"]));
    assert_eq!(
        out[3]["replies"],
        serde_json::json!(["one", "two", "three"])
    );
    for ok in &out[..4] {
        assert_eq!(ok["code"], "OK", "{ok}");
    }
    // The instance's status, message and trailing metadata reach the client.
    assert_eq!(out[4]["code"], "NOT_FOUND", "{:?}", out[4]);
    assert_eq!(out[4]["details"], "no such thing");
    assert_eq!(out[4]["trailers"]["x-why"], "because");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_timeouts_are_kept_within_the_request_timeout() {
    let server = py::Server::start("grpc_server.py", &[]).await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let mut svc = grpc_service(&server);
    svc.request_timeout = Duration::from_secs(2);
    router.set_services(vec![svc]);
    // The client's 500 ms, shorter than the service's 2 s: a trailers-only
    // DEADLINE_EXCEEDED from the router, sent as soon as it passes.
    let slow = ["grpc-timeout", "500m", "x-sleep-ms", "5000"];
    let reply = h2_call(&router, "/test.Echo/Slow", &slow).await;
    assert_eq!(reply["headers"][":status"], "200", "{reply}");
    assert_eq!(reply["headers"]["content-type"], "application/grpc");
    assert_eq!(reply["headers"]["grpc-status"], "4", "{reply}");
    let seconds = reply["seconds"].as_f64().unwrap();
    assert!((0.45..1.9).contains(&seconds), "{reply}");
    // A client's 10 s is cut to the service's 2 s.
    let long = ["grpc-timeout", "10S", "x-sleep-ms", "5000"];
    let reply = h2_call(&router, "/test.Echo/Slow", &long).await;
    assert_eq!(reply["headers"]["grpc-status"], "4", "{reply}");
    let seconds = reply["seconds"].as_f64().unwrap();
    assert!((1.9..4.5).contains(&seconds), "{reply}");
    // A stream that has begun ends at the client's deadline with DEADLINE_EXCEEDED in
    // its trailers (30 messages 100 ms apart would take 3 s).
    let stream = ["grpc-timeout", "1S", "x-count", "30"];
    let reply = h2_call(&router, "/test.Echo/ServerStream", &stream).await;
    assert_eq!(reply["headers"][":status"], "200", "{reply}");
    assert_eq!(reply["trailers"]["grpc-status"], "4", "{reply}");
    let messages = reply["messages"].as_u64().unwrap();
    assert!((3..25).contains(&messages), "{reply}");
    // grpcio's own deadline agrees.
    let out = calls(&router, HOST, &["deadline:500:3000", "unary"]).await;
    assert_eq!(out[0]["code"], "DEADLINE_EXCEEDED", "{out:?}");
    assert_eq!(out[1]["code"], "OK", "{out:?}");
    // Both h2 calls were cut by the router (grpcio's may be, or its client may give up
    // first).
    let text = router.metrics_text();
    let timeouts: u32 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                r#"runway_router_errors_total{service="svc",revision="rev",kind="timeout"} "#,
            )
        })
        .and_then(|n| n.parse().ok())
        .expect(&text);
    assert!((2..=3).contains(&timeouts), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_routers_own_errors_are_grpc_statuses_for_grpc_clients() {
    let server = py::Server::start("grpc_server.py", &[]).await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let serve = |change: &dyn Fn(&mut ServiceRoute)| {
        let mut svc = grpc_service(&server);
        change(&mut svc);
        router.set_services(vec![svc]);
    };
    // (What grpcio would say of an HTML 503 is "Received http2 header with status:
    // 503"; the router's own message shows the status came from grpc-status.)
    let expect = |out: &Value, code: &str, details: &str| {
        assert_eq!(out["code"], code, "{out}");
        assert_eq!(out["details"], details, "{out}");
    };

    serve(&|svc| svc.paused = true);
    let out = calls(&router, HOST, &["unary"]).await;
    expect(&out[0], "UNAVAILABLE", "this service is paused");
    // Trailers-only: 200, application/grpc, the status in the headers, no body.
    let reply = h2_call(&router, "/test.Echo/Unary", &[]).await;
    assert_eq!(reply["headers"][":status"], "200", "{reply}");
    assert_eq!(reply["headers"]["content-type"], "application/grpc");
    assert_eq!(reply["headers"]["grpc-status"], "14");
    assert_eq!(reply["headers"]["grpc-message"], "this service is paused");
    assert_eq!(reply["messages"], 0);

    // No instance in time (scale from zero that does not come).
    serve(&|svc| {
        svc.revisions[0].endpoints.clear();
        svc.queue.max_wait = Duration::from_millis(300);
    });
    let out = calls(&router, HOST, &["unary"]).await;
    expect(
        &out[0],
        "UNAVAILABLE",
        "no instance became available in time",
    );

    serve(&|svc| svc.max_request_body = 100);
    let out = calls(&router, HOST, &["big:1000", "big:50"]).await;
    expect(
        &out[0],
        "RESOURCE_EXHAUSTED",
        "the request body is larger than this service accepts",
    );
    assert_eq!(out[1]["replies"][0], "50", "{out:?}");

    serve(&|svc| svc.request_timeout = Duration::from_secs(1));
    let out = calls(&router, HOST, &["slow:3000"]).await;
    expect(&out[0], "DEADLINE_EXCEEDED", "the request timed out");

    // A full queue: one call in flight, one waiting, the next refused.
    serve(&|svc| {
        svc.max_concurrency = 1;
        svc.queue = QueueConfig {
            capacity: 1,
            max_wait: Duration::from_secs(30),
        };
    });
    let addr = router.addr.to_string();
    let _busy = py::Running::start("grpc_client.py", &[&addr, HOST, "slow:20000"]);
    eventually(|| router.router.stats()[0].in_flight == 1).await;
    let _waiting = py::Running::start("grpc_client.py", &[&addr, HOST, "slow:10"]);
    eventually(|| router.router.stats()[0].queued == 1).await;
    let out = calls(&router, HOST, &["unary"]).await;
    expect(
        &out[0],
        "RESOURCE_EXHAUSTED",
        "every instance is busy and the queue is full",
    );

    // A host no service has.
    let out = calls(&router, "nothing.runway.localhost", &["unary"]).await;
    expect(&out[0], "UNIMPLEMENTED", "no service at this address");
    // A host with a notice (a custom domain waiting for its certificate).
    router.router.set_host_notices(
        [(
            "api.example.org".to_string(),
            "api.example.org is waiting for its certificate".to_string(),
        )]
        .into(),
    );
    let out = calls(&router, "api.example.org", &["unary"]).await;
    expect(
        &out[0],
        "UNAVAILABLE",
        "api.example.org is waiting for its certificate",
    );
}
