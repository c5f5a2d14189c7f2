//! MaxConcurrency, the queue, scale from zero, timeouts, cancellation and retries.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use runway_router::test_util::{Backend, TestRouter, eventually, get, h1_client, send_h1, service};
use runway_router::{Endpoint, QueueConfig, RouterConfig};
use std::sync::atomic::Ordering;
use std::time::Duration;

const HOST: &str = "app-1.runway.localhost";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_per_instance_never_exceeds_max_concurrency_under_a_burst() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let mut svc = service("svc", HOST, "rev", vec![a.endpoint(), b.endpoint()]);
    svc.max_concurrency = 3;
    router.set_services(vec![svc]);
    let addr = router.addr;
    let burst: Vec<_> = (0..40)
        .map(|_| tokio::spawn(async move { get(addr, HOST, "/wait").await }))
        .collect();
    // Both instances fill up to their limit; the rest waits in the queue.
    a.wait_for_waiting(3).await;
    b.wait_for_waiting(3).await;
    eventually(|| router.router.stats()[0].queued == 34).await;
    let stats = router.router.stats();
    assert_eq!(stats[0].in_flight, 6);
    // Let everything through, a few at a time.
    for _ in 0..20 {
        a.release(2);
        b.release(2);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for r in burst {
        assert_eq!(r.await.unwrap().status, StatusCode::OK);
    }
    assert_eq!(a.stats.max_concurrent.load(Ordering::SeqCst), 3);
    assert_eq!(b.stats.max_concurrent.load(Ordering::SeqCst), 3);
    assert_eq!(a.requests() + b.requests(), 40);
    let stats = router.router.stats();
    assert_eq!((stats[0].in_flight, stats[0].queued), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_requests_complete_when_capacity_frees() {
    let a = Backend::start("a").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let mut svc = service("svc", HOST, "rev", vec![a.endpoint()]);
    svc.max_concurrency = 1;
    router.set_services(vec![svc]);
    let addr = router.addr;
    let first = tokio::spawn(async move { get(addr, HOST, "/wait").await });
    a.wait_for_waiting(1).await;
    let queued: Vec<_> = (0..3)
        .map(|_| tokio::spawn(async move { get(addr, HOST, "/").await }))
        .collect();
    eventually(|| router.router.stats()[0].queued == 3).await;
    assert_eq!(a.requests(), 1, "queued requests are not sent yet");
    a.release(1);
    assert_eq!(first.await.unwrap().status, StatusCode::OK);
    for q in queued {
        assert_eq!(q.await.unwrap().body, "hello from a");
    }
    assert_eq!(a.stats.max_concurrent.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_from_zero_signals_demand_and_serves_the_queue_when_an_instance_arrives() {
    let router = TestRouter::start(RouterConfig::default()).await;
    let svc = service("svc", HOST, "rev0", vec![]);
    router.set_services(vec![svc.clone()]);
    let mut demand = router.router.demand();
    let addr = router.addr;
    let waiting: Vec<_> = (0..3)
        .map(|_| tokio::spawn(async move { get(addr, HOST, "/").await }))
        .collect();
    demand
        .wait_for(|d| d.waiting.contains_key("rev0"))
        .await
        .unwrap();
    {
        let d = demand.borrow();
        assert_eq!(d.waiting["rev0"].service_id, "svc");
        assert_eq!(d.waiting["rev0"].endpoints, 0);
    }
    eventually(|| router.router.stats()[0].queued == 3).await;
    // The controller starts an instance and publishes it.
    let a = Backend::start("a").await;
    router.set_services(vec![service("svc", HOST, "rev0", vec![a.endpoint()])]);
    for w in waiting {
        assert_eq!(w.await.unwrap().body, "hello from a");
    }
    demand.wait_for(|d| d.waiting.is_empty()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_or_a_long_wait_gets_503_with_retry_after() {
    let a = Backend::start("a").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let mut svc = service("svc", HOST, "rev", vec![a.endpoint()]);
    svc.max_concurrency = 1;
    svc.queue = QueueConfig {
        capacity: 1,
        max_wait: Duration::from_secs(60),
    };
    router.set_services(vec![svc.clone()]);
    let addr = router.addr;
    let busy = tokio::spawn(async move { get(addr, HOST, "/wait").await });
    a.wait_for_waiting(1).await;
    let queued = tokio::spawn(async move { get(addr, HOST, "/").await });
    eventually(|| router.router.stats()[0].queued == 1).await;
    let reply = get(addr, HOST, "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers["retry-after"], "1");
    assert!(reply.body.contains("queue is full"), "{}", reply.body);

    // A short maximum wait: the queued request gives up with 503.
    svc.queue = QueueConfig {
        capacity: 10,
        max_wait: Duration::from_millis(100),
    };
    router.set_services(vec![svc]);
    let reply = get(addr, HOST, "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.headers.contains_key("retry-after"));
    assert!(reply.body.contains("in time"), "{}", reply.body);
    a.release(1);
    assert_eq!(busy.await.unwrap().status, StatusCode::OK);
    assert_eq!(queued.await.unwrap().status, StatusCode::OK);
    let text = router.metrics_text();
    assert!(
        text.contains(
            r#"runway_router_errors_total{service="svc",revision="rev",kind="queue_full"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"kind="queue_timeout"} 1"#), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_instance_gets_504_and_sees_the_request_cancelled() {
    let a = Backend::start("a").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let mut svc = service("svc", HOST, "rev", vec![a.endpoint()]);
    svc.request_timeout = Duration::from_secs(1);
    router.set_services(vec![svc]);
    let reply = get(router.addr, HOST, "/wait").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    eventually(|| a.stats.cancelled.load(Ordering::SeqCst) == 1).await;
    // The instance is free again.
    assert_eq!(router.router.stats()[0].in_flight, 0);
    assert_eq!(get(router.addr, HOST, "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_cancels_the_upstream_request() {
    let a = Backend::start("a").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    router.set_services(vec![service("svc", HOST, "rev", vec![a.endpoint()])]);
    // Waiting for the response headers.
    let addr = router.addr;
    let client = tokio::spawn(async move { get(addr, HOST, "/wait").await });
    a.wait_for_waiting(1).await;
    client.abort();
    eventually(|| a.stats.cancelled.load(Ordering::SeqCst) == 1).await;
    eventually(|| router.router.stats()[0].in_flight == 0).await;

    // In the middle of a streamed response.
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get("/sse/3")
        .header("host", HOST)
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    drop(response);
    drop(sender);
    conn.abort();
    eventually(|| a.stats.cancelled.load(Ordering::SeqCst) == 2).await;
    eventually(|| router.router.stats()[0].in_flight == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_on_another_instance() {
    let a = Backend::start("a").await;
    // An address where nothing listens.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let router = TestRouter::start(RouterConfig::default()).await;
    let dead = Endpoint {
        instance_id: "dead".into(),
        addr: dead,
    };
    router.set_services(vec![service("svc", HOST, "rev", vec![dead, a.endpoint()])]);
    for i in 0..20 {
        // A body that must arrive whole, even when the first instance refused.
        let req = Request::post("/echo")
            .header("host", HOST)
            .body(Full::new(Bytes::from(format!("payload {i}"))))
            .unwrap();
        let reply = send_h1(router.addr, req).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, format!("payload {i}"));
    }
    assert_eq!(a.requests(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_body_was_sent_is_never_retried() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    router.set_services(vec![service(
        "svc",
        HOST,
        "rev",
        vec![a.endpoint(), b.endpoint()],
    )]);
    // Both instances read the body, then drop the connection.
    for _ in 0..10 {
        let req = Request::post("/close")
            .header("host", HOST)
            .body(Full::new(Bytes::from_static(b"not idempotent")))
            .unwrap();
        let reply = send_h1(router.addr, req).await.unwrap();
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    }
    assert_eq!(
        a.requests() + b.requests(),
        10,
        "each request reached exactly one instance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let a = Backend::start("a").await;
    let mut router = TestRouter::start(RouterConfig::default()).await;
    router.set_services(vec![service("svc", HOST, "rev", vec![a.endpoint()])]);
    let addr = router.addr;
    let held = tokio::spawn(async move { get(addr, HOST, "/wait").await });
    a.wait_for_waiting(1).await;
    router.shutdown();
    let task = router.task.take().unwrap();
    // New connections are refused once the listener is closed.
    eventually(|| std::net::TcpStream::connect(addr).is_err()).await;
    assert!(!task.is_finished(), "waits for the request in flight");
    a.release(1);
    let reply = held.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_accepted_before_a_graceful_shutdown_gets_its_request_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = Backend::start("a").await;
    let mut router = TestRouter::start(RouterConfig::default()).await;
    router.set_services(vec![service("svc", HOST, "rev", vec![a.endpoint()])]);
    let registry = router.registry.clone();
    let open = move || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry.lock().unwrap()).unwrap();
        text.lines()
            .any(|l| l == "runway_router_open_connections 1")
    };
    // The client has connected (the router accepted) but not yet sent its request when
    // the listener stops, as when a new router process takes the socket over.
    let mut client = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    eventually(open).await;
    router.shutdown();
    let addr = router.addr;
    eventually(|| std::net::TcpStream::connect(addr).is_err()).await;
    client
        .write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    let _ = client.read_to_string(&mut text).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    assert!(text.ends_with("hello from a"), "{text:?}");
    router.task.take().unwrap().await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_queued_on_a_revision_that_leaves_go_to_its_successor() {
    let router = TestRouter::start(RouterConfig::default()).await;
    router.set_services(vec![service("svc", HOST, "old-rev", vec![])]);
    let addr = router.addr;
    let waiting: Vec<_> = (0..3)
        .map(|_| tokio::spawn(async move { get(addr, HOST, "/").await }))
        .collect();
    eventually(|| router.router.stats().first().is_some_and(|s| s.queued == 3)).await;
    // A deployment replaces the revision before it ever had an instance.
    let a = Backend::start("new").await;
    router.set_services(vec![service("svc", HOST, "new-rev", vec![a.endpoint()])]);
    for w in waiting {
        assert_eq!(w.await.unwrap().body, "hello from new");
    }
    let stats = router.router.stats();
    assert_eq!(stats.len(), 1, "the old revision is gone: {stats:?}");
    assert_eq!(stats[0].revision_id, "new-rev");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_out_of_the_table_reports_requests_it_still_serves() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let both = service("svc", HOST, "rev", vec![a.endpoint(), b.endpoint()]);
    let mut svc = both.clone();
    svc.revisions[0].endpoints = vec![a.endpoint()];
    router.set_services(vec![svc.clone()]);
    let addr = router.addr;
    let held = tokio::spawn(async move { get(addr, HOST, "/wait").await });
    a.wait_for_waiting(1).await;
    let load = router.router.instance_load("a");
    assert_eq!((load.routed, load.in_flight), (true, 1));
    assert_eq!(router.router.instance_load("b"), Default::default());
    // `a` leaves the table (scale-in): still one request on it, none new.
    let mut only_b = both.clone();
    only_b.revisions[0].endpoints = vec![b.endpoint()];
    router.set_services(vec![only_b]);
    let load = router.router.instance_load("a");
    assert_eq!((load.routed, load.in_flight), (false, 1));
    assert_eq!(get(addr, HOST, "/").await.status, StatusCode::OK);
    assert_eq!(router.router.instance_load("a").in_flight, 1);
    a.release(1);
    assert_eq!(held.await.unwrap().status, StatusCode::OK);
    eventually(|| router.router.instance_load("a") == Default::default()).await;
    // A revision that leaves altogether: its instances' requests are counted too.
    let held = tokio::spawn(async move { get(addr, HOST, "/wait").await });
    b.wait_for_waiting(1).await;
    let mut other = svc;
    other.revisions[0].revision_id = "rev-2".into();
    router.set_services(vec![other]);
    let load = router.router.instance_load("b");
    assert_eq!((load.routed, load.in_flight), (false, 1));
    b.release(1);
    assert_eq!(held.await.unwrap().status, StatusCode::OK);
    eventually(|| router.router.instance_load("b").in_flight == 0).await;
}

/// Sends `signal` (STOP, CONT) to process `pid`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_instance_whose_port_still_accepts_is_ejected_until_it_answers_again() {
    let app = crate::py::Server::start("http_server.py", &[]).await;
    let a = Backend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let config = RouterConfig {
        eject_after_failures: 3,
        endpoint_backoff: Duration::from_secs(2),
        access_log: Some(runway_router::AccessLogConfig::new(dir.path())),
        ..RouterConfig::default()
    };
    let router = TestRouter::start(config).await;
    let mut svc = service("svc", HOST, "rev", vec![app.endpoint("py"), a.endpoint()]);
    svc.request_timeout = Duration::from_secs(1);
    router.set_services(vec![svc]);
    let mut answered_by_py = 0;
    for _ in 0..20 {
        let reply = get(router.addr, HOST, "/").await;
        assert_eq!(reply.status, StatusCode::OK);
        answered_by_py += usize::from(reply.body == "hello from py");
    }
    assert!(answered_by_py > 0, "both instances serve");

    // The app hangs. Its port still accepts connections, so a TCP health check passes.
    signal(app.running.pid(), "STOP");
    assert!(tokio::net::TcpStream::connect(app.addr).await.is_ok());
    // Requests sent to it time out; after three in a row it gets no more.
    let mut timed_out = 0;
    for _ in 0..60 {
        if !router.router.ejected_instances().is_empty() {
            break;
        }
        let reply = get(router.addr, HOST, "/").await;
        match reply.status {
            StatusCode::OK => assert_eq!(reply.body, "hello from a"),
            StatusCode::GATEWAY_TIMEOUT => timed_out += 1,
            other => panic!("{other}: {}", reply.body),
        }
    }
    assert_eq!(timed_out, 3);
    let ejected = router.router.ejected_instances();
    assert_eq!(ejected.len(), 1, "{ejected:?}");
    assert_eq!(
        (ejected[0].instance_id.as_str(), ejected[0].ejections),
        ("py", 1)
    );
    assert!(router.router.instance_load("py").ejected);
    let started = std::time::Instant::now();
    for _ in 0..20 {
        assert_eq!(get(router.addr, HOST, "/").await.body, "hello from a");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let text = router.metrics_text();
    for series in [
        r#"runway_router_ejections_total{service="svc",revision="rev"} 1"#,
        r#"runway_router_ejected_instances{service="svc",revision="rev"} 1"#,
        r#"runway_router_errors_total{service="svc",revision="rev",kind="timeout"} 3"#,
    ] {
        assert!(text.contains(series), "{series}: {text}");
    }
    // The access log names the instance and the request that ejected it.
    let path = dir.path().join("svc.log");
    let ejecting = || {
        std::fs::read_to_string(&path).ok().and_then(|text| {
            text.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .find(|l| l["ejected"] == true)
        })
    };
    eventually(|| ejecting().is_some()).await;
    let line = ejecting().unwrap();
    assert_eq!(line["instance"], "py", "{line}");
    assert_eq!(line["error"], "timeout", "{line}");
    assert_eq!(line["status"], 504, "{line}");

    // The app resumes: once its ejection ends it gets requests again, answers, and is
    // forgiven.
    signal(app.running.pid(), "CONT");
    let mut back = false;
    for _ in 0..100 {
        if get(router.addr, HOST, "/").await.body == "hello from py" {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "the instance got requests again");
    assert!(router.router.ejected_instances().is_empty());
    assert!(!router.router.instance_load("py").ejected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_refuses_connections_is_ejected_and_its_requests_retried() {
    let a = Backend::start("a").await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let config = RouterConfig {
        eject_after_failures: 2,
        ..RouterConfig::default()
    };
    let router = TestRouter::start(config).await;
    let dead = Endpoint {
        instance_id: "dead".into(),
        addr: dead,
    };
    router.set_services(vec![service("svc", HOST, "rev", vec![dead, a.endpoint()])]);
    // Every request is answered (a refused one goes to the other instance), and the dead
    // one is soon left alone.
    for _ in 0..20 {
        assert_eq!(get(router.addr, HOST, "/").await.body, "hello from a");
    }
    let ejected = router.router.ejected_instances();
    assert_eq!(ejected.len(), 1, "{ejected:?}");
    assert_eq!(ejected[0].instance_id, "dead");
    let text = router.metrics_text();
    assert!(
        text.contains(r#"runway_router_retries_total{service="svc",revision="rev"} 2"#),
        "{text}"
    );
}

/// Request timeouts on HTTP/1.1 are kept by the connection's watchdog, not by a timer per
/// request: each request on a keep-alive connection gets its 504 at its own deadline,
/// whether that comes before the connection's header timeout or after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_on_a_keep_alive_connection_times_out_at_its_own_deadline() {
    for (request_timeout, header_timeout) in [(1, 30), (2, 1)] {
        let a = Backend::start("a").await;
        let config = RouterConfig {
            header_read_timeout: Duration::from_secs(header_timeout),
            ..RouterConfig::default()
        };
        let router = TestRouter::start(config).await;
        let mut svc = service("svc", HOST, "rev", vec![a.endpoint()]);
        svc.request_timeout = Duration::from_secs(request_timeout);
        router.set_services(vec![svc]);
        let mut sender = h1_client(router.addr).await;
        for (n, path) in ["/wait", "/", "/wait", "/wait", "/"]
            .into_iter()
            .enumerate()
        {
            let req = Request::get(path)
                .header(http::header::HOST, HOST)
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap();
            let started = std::time::Instant::now();
            sender.ready().await.unwrap();
            let response = sender.send_request(req).await.unwrap();
            let took = started.elapsed();
            if path == "/wait" {
                assert_eq!(
                    response.status(),
                    StatusCode::GATEWAY_TIMEOUT,
                    "request {n}"
                );
                let expected = Duration::from_secs(request_timeout);
                assert!(
                    took >= expected && took < expected + Duration::from_millis(900),
                    "request {n} ({request_timeout} s timeout, {header_timeout} s header timeout) took {took:?}"
                );
            } else {
                assert_eq!(response.status(), StatusCode::OK, "request {n}");
            }
            http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap();
        }
    }
}
