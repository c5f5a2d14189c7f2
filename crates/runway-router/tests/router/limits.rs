//! Defence: header and body limits, malformed input, slow clients.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{Full, StreamBody};
use runway_router::RouterConfig;
use runway_router::test_util::{Backend, TestRouter, eventually, get, send_h1, service};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "app-1.runway.localhost";

async fn router_with(config: RouterConfig, backend: &Backend) -> TestRouter {
    let router = TestRouter::start(config).await;
    let mut svc = service("svc", HOST, "rev", vec![backend.endpoint()]);
    svc.max_request_body = 1000;
    router.set_services(vec![svc]);
    router
}

/// Writes raw bytes and reads until the router closes the connection (10 s at most).
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "the router kept the connection open: {}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431() {
    let a = Backend::start("a").await;
    let config = RouterConfig {
        max_header_bytes: 16 * 1024,
        max_headers: 50,
        ..RouterConfig::default()
    };
    let router = router_with(config, &a).await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {}\r\n\r\n",
        "x".repeat(20 * 1024)
    );
    let reply = raw(router.addr, big.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    let mut many = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n");
    for i in 0..60 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let reply = raw(router.addr, many.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    assert_eq!(a.requests(), 0);
    // Within the limits, fine.
    assert_eq!(get(router.addr, HOST, "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_service_limit_get_413() {
    let a = Backend::start("a").await;
    let router = router_with(RouterConfig::default(), &a).await;
    // Declared too large: refused before anything is sent.
    let req = Request::post("/count")
        .header("host", HOST)
        .body(Full::new(Bytes::from(vec![b'x'; 1001])))
        .unwrap();
    let reply = send_h1(router.addr, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.requests(), 0);
    // Chunked, no length: cut when it goes past the limit.
    let chunks: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = (0..20)
        .map(|_| Ok(http_body::Frame::data(Bytes::from(vec![b'y'; 100]))))
        .collect();
    let body = StreamBody::new(futures_util::stream::iter(chunks));
    let req = Request::post("/count")
        .header("host", HOST)
        .body(body)
        .unwrap();
    let reply = send_h1(router.addr, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    // At the limit: accepted.
    let req = Request::post("/count")
        .header("host", HOST)
        .body(Full::new(Bytes::from(vec![b'x'; 1000])))
        .unwrap();
    let reply = send_h1(router.addr, req).await.unwrap();
    assert_eq!(reply.body, "1000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400_and_the_connection_is_closed() {
    let a = Backend::start("a").await;
    let router = router_with(RouterConfig::default(), &a).await;
    for request in [
        &b"GET / HTTP/1.1\r\nHost: a..b\r\n\r\nGET / HTTP/1.1\r\nHost: app-1.runway.localhost\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x:99999\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage",
        b"GET /\x00 HTTP/1.1\r\n\r\n",
    ] {
        let reply = raw(router.addr, request).await;
        assert!(reply.is_empty() || reply.starts_with("HTTP/1.1 400"), "{reply}");
        // The second, valid request on the same connection is never answered.
        assert!(reply.matches("HTTP/1.1 ").count() <= 1, "{reply}");
    }
    assert_eq!(a.requests(), 0);
    // Random bytes: no panic, the router keeps serving.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..50 {
        let junk: Vec<u8> = (0..200)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = raw(router.addr, &junk).await;
    }
    assert_eq!(get(router.addr, HOST, "/").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let a = Backend::start("a").await;
    let config = RouterConfig {
        header_read_timeout: Duration::from_millis(500),
        ..RouterConfig::default()
    };
    let router = router_with(config, &a).await;
    // Headers that never end: the router closes the connection (raw() fails the test if
    // it stays open).
    let reply = raw(
        router.addr,
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ").as_bytes(),
    )
    .await;
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
        "{reply}"
    );
    // A connection that never says anything is closed too.
    let reply = raw(router.addr, b"").await;
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
        "{reply}"
    );
    // A partial HTTP/2 preface.
    let reply = raw(router.addr, b"PRI * HTTP/2.0\r\n").await;
    assert!(reply.is_empty(), "{reply}");
    assert_eq!(a.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_refused() {
    let a = Backend::start("a").await;
    let router = router_with(RouterConfig::default(), &a).await;
    let reply = raw(
        router.addr,
        format!("CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert_eq!(a.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_but_slow_answers_are_not_cut() {
    let a = Backend::start("a").await;
    let config = RouterConfig {
        header_read_timeout: Duration::from_millis(300),
        ..RouterConfig::default()
    };
    let router = router_with(config, &a).await;
    // The answer takes three times the timeout; the keep-alive connection then idles
    // until the router closes it (raw() fails the test if it never does).
    let reply = raw(
        router.addr,
        format!("GET /sleep/900 HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("slept"), "{reply}");
    // Two requests in a row, each within the timeout of the last answer.
    let mut stream = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    for _ in 0..2 {
        stream
            .write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(a.requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunked_bodies_get_400_and_nothing_reaches_the_instance() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    router.set_services(vec![service(
        "svc",
        HOST,
        "rev",
        vec![a.endpoint(), b.endpoint()],
    )]);
    let head =
        format!("POST /count HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n");
    for body in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        // Larger than any size (2^72 - 1).
        "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        // Bare LF line ends.
        "5\nhello\n0\n\n",
    ] {
        // raw() fails the test if the router keeps the connection open.
        let reply = raw(router.addr, format!("{head}{body}").as_bytes()).await;
        assert!(reply.starts_with("HTTP/1.1 400"), "{body:?}: {reply}");
    }
    assert_eq!(a.requests() + b.requests(), 0, "nothing was forwarded");
    // A body that breaks after a good chunk: what went out is never completed, so the
    // instance cannot take it for a whole request.
    let reply = raw(
        router.addr,
        format!("{head}5\r\nhello\n0\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let completed = || {
        a.stats.completed.load(std::sync::atomic::Ordering::SeqCst)
            + b.stats.completed.load(std::sync::atomic::Ordering::SeqCst)
    };
    runway_router::test_util::eventually(|| a.requests() + b.requests() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        completed(),
        0,
        "the instance got an incomplete body, not a whole one"
    );
    // A client's broken body is the client's error: no instance is blamed, none retried.
    let text = router.metrics_text();
    assert!(
        text.contains(
            r#"runway_router_errors_total{service="svc",revision="rev",kind="bad_body"} 5"#
        ),
        "{text}"
    );
    assert!(!text.contains(r#"kind="upstream"#), "{text}");
    assert!(
        text.contains(r#"runway_router_retries_total{service="svc",revision="rev"} 0"#),
        "{text}"
    );
    // Both instances still take requests.
    for _ in 0..4 {
        assert_eq!(get(router.addr, HOST, "/").await.status, StatusCode::OK);
    }
}

/// CPU time (user + system) a thread of this process has used, in milliseconds (the
/// kernel counts it in ticks of 10 ms).
fn thread_cpu_ms(task: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{task}/stat")).unwrap();
    // Fields after the command's closing parenthesis; utime and stime are 14th and 15th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks * 10
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_http2_prefaces_cost_no_cpu_and_closed_ones_are_let_go() {
    let a = Backend::start("a").await;
    let mut registry = runway_telemetry::Registry::default();
    let router = runway_router::Router::new(RouterConfig::default(), &mut registry).unwrap();
    router
        .set_routes(runway_router::RouteTable {
            services: vec![service("svc", HOST, "rev", vec![a.endpoint()])],
        })
        .unwrap();
    // The router on a thread of its own, whose CPU time is then its alone.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (task_tx, task_rx) = std::sync::mpsc::channel();
    let serving = router.clone();
    let thread = std::thread::spawn(move || {
        let task = std::fs::read_link("/proc/thread-self").unwrap();
        task_tx
            .send(task.file_name().unwrap().to_string_lossy().into_owned())
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            serving
                .serve_http(listener, async move {
                    let _ = stopped.await;
                })
                .await
        })
    });
    let task = task_rx.recv().unwrap();
    // 200 clients send part of the HTTP/2 preface and wait (the header timeout is 30 s).
    let mut clients = Vec::new();
    for _ in 0..200 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        clients.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = thread_cpu_ms(&task);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waiting = thread_cpu_ms(&task) - before;
    assert!(
        waiting <= 50,
        "{waiting} ms of CPU in 1 s for 200 waiting prefaces"
    );
    // They give up: the router lets their connections go at once.
    drop(clients);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = thread_cpu_ms(&task);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let closed = thread_cpu_ms(&task) - before;
    assert!(
        closed <= 50,
        "{closed} ms of CPU in 1 s for 200 closed prefaces"
    );
    let open = || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text.lines()
            .find(|l| l.starts_with("runway_router_open_connections "))
            .map(str::to_string)
    };
    assert_eq!(open().as_deref(), Some("runway_router_open_connections 0"));
    // The whole preface still makes an HTTP/2 connection, a partial one that turns out to
    // be HTTP/1.1 is served as such.
    let mut client = runway_router::test_util::h2c_client(addr).await;
    let req = Request::get(format!("http://{HOST}/"))
        .body(runway_router::test_util::full(""))
        .unwrap();
    assert_eq!(
        client.send_request(req).await.unwrap().status(),
        StatusCode::OK
    );
    let reply = raw(
        addr,
        format!("PRI /x HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 "), "{reply}");
    let _ = stop.send(());
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed_even_when_they_answer_pings() {
    let a = Backend::start("a").await;
    let config = RouterConfig {
        header_read_timeout: Duration::from_secs(1),
        h2_keepalive: Duration::from_millis(200),
        ..RouterConfig::default()
    };
    let router = router_with(config, &a).await;
    // The h2 package answers the router's PINGs; the connection is closed all the same
    // once it has had no request for the idle timeout.
    let run = crate::py::run(
        "h2_client.py",
        &["idle", &router.addr.to_string(), HOST, "8"],
    )
    .await;
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    let pings: u32 = run
        .stdout
        .split("pings ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .expect(&run.stdout);
    assert!(pings >= 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("goaway True"),
        "closed gracefully: {}",
        run.stdout
    );
    // A WebSocket over HTTP/2 is a request in flight however quiet: its connection stays.
    let server = crate::py::Server::start("ws_echo_server.py", &[]).await;
    router.set_services(vec![service(
        "svc",
        HOST,
        "rev",
        vec![server.endpoint("ws")],
    )]);
    let args = ["websocket", &router.addr.to_string(), HOST, "/", "2", "2.5"];
    let run = crate::py::run("h2_client.py", &args).await;
    assert!(run.success, "{}{}", run.stdout, run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_bodies_cannot_take_a_service_capacity() {
    let a = Backend::start("a").await;
    let config = RouterConfig {
        body_read_timeout: Duration::from_secs(2),
        ..RouterConfig::default()
    };
    let router = TestRouter::start(config).await;
    let mut svc = service("svc", HOST, "rev", vec![a.endpoint()]);
    svc.max_concurrency = 100;
    router.set_services(vec![svc]);
    let demand = router.router.demand();
    // One HTTP/2 connection opens 150 uploads whose bodies never come.
    let addr = router.addr.to_string();
    let args = ["stall", &addr, HOST, "/count", "150", "20"];
    let mut stalled = crate::py::Running::start("h2_client.py", &args);
    assert_eq!(stalled.line().await.as_deref(), Some("opened 150"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Other users are served at once, from the capacity that is left; nothing waits, so
    // nothing asks for more instances.
    let started = std::time::Instant::now();
    for _ in 0..5 {
        assert_eq!(get(router.addr, HOST, "/").await.status, StatusCode::OK);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let stats = router.router.stats();
    assert!(stats[0].in_flight <= 16, "{stats:?}");
    assert_eq!(stats[0].queued, 0, "{stats:?}");
    assert!(demand.borrow().waiting.is_empty());
    // The uploads holding instances get 408 once their bodies have stalled for the body
    // read timeout, and the next take their slots.
    let mut timed_out = 0;
    while timed_out < 20 {
        match stalled.line().await.as_deref() {
            Some("status 408") => timed_out += 1,
            other => panic!("{other:?}"),
        }
    }
    drop(stalled);
    eventually(|| router.router.stats()[0].in_flight == 0).await;
    let text = router.metrics_text();
    assert!(text.contains(r#"kind="body_timeout"}"#), "{text}");
    assert!(!text.contains(r#"kind="upstream"#), "{text}");
}
