//! Where the request timeout ends and the idle timeout begins: the request timeout
//! bounds the wait for the instance's response head; streams (server-sent events,
//! chunked bodies, uploads after the head) and upgraded connections (WebSockets over
//! HTTP/1.1 and HTTP/2) live as long as bytes move either way, and end after the idle
//! timeout of silence. And bodies of any size when the service allows them.

use crate::protocols::websocket_echo;
use crate::py;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use runway_router::test_util::{Backend, TestRouter, eventually, h1_client, service};
use runway_router::{RouterConfig, UNLIMITED_REQUEST_BODY};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const HOST: &str = "app-1.runway.localhost";
/// Well inside the idle timeout, and, a few at a time, past the request timeout.
const PAUSE: Duration = Duration::from_millis(600);

/// A router whose service has a 1 s request timeout and a 2 s idle timeout.
async fn router_for(backend: &Backend) -> TestRouter {
    let router = TestRouter::start(RouterConfig::default()).await;
    let mut svc = service("svc", HOST, "rev", vec![backend.endpoint()]);
    svc.request_timeout = Duration::from_secs(1);
    svc.idle_timeout = Duration::from_secs(2);
    router.set_services(vec![svc]);
    router
}

fn get(path: &str) -> Request<http_body_util::combinators::BoxBody<Bytes, std::io::Error>> {
    Request::get(path)
        .header("host", HOST)
        .body(Empty::new().map_err(|never| match never {}).boxed())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_upgrades_outlive_the_request_timeout_while_bytes_flow() {
    let a = Backend::start_with("a", Some(websocket_echo())).await;
    let router = router_for(&a).await;

    // Server-sent events, 3 s in all: the request timeout ended with the response head.
    let mut client = h1_client(router.addr).await;
    let response = client.send_request(get("/sse/5")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    for i in 0..5 {
        let data = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&data[..], format!("data: event {i}\n\n").as_bytes());
        tokio::time::sleep(PAUSE).await;
        a.release(1);
    }
    assert!(body.frame().await.is_none());

    // A WebSocket over HTTP/1.1, a message every 600 ms for 3 s.
    let stream = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{HOST}/ws"), stream)
        .await
        .unwrap();
    for i in 0..5 {
        tokio::time::sleep(PAUSE).await;
        ws.send(Message::text(format!("{i}"))).await.unwrap();
        let echo = ws.next().await.unwrap().unwrap();
        assert_eq!(echo.into_text().unwrap().as_str(), format!("{i}"));
    }
    ws.close(None).await.unwrap();

    // A WebSocket over HTTP/2 (RFC 8441), four messages 800 ms apart.
    let addr = router.addr.to_string();
    let run = py::run(
        "h2_client.py",
        &["websocket", &addr, HOST, "/ws", "4", "0.8"],
    )
    .await;
    assert!(run.success, "{}{}", run.stdout, run.stderr);

    // An upload answered with its head at once: the client's bytes alone keep the
    // exchange alive while the response sends nothing.
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(1);
    let upload = StreamBody::new(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let req = Request::post("/drain")
        .header("host", HOST)
        .body(BodyExt::boxed(upload))
        .unwrap();
    let mut client = h1_client(router.addr).await;
    let response = tokio::spawn(client.send_request(req));
    let sender = tokio::spawn(async move {
        for _ in 0..5 {
            let chunk = http_body::Frame::data(Bytes::from_static(b"0123456789"));
            tx.send(Ok(chunk)).await.unwrap();
            tokio::time::sleep(PAUSE).await;
        }
    });
    let response = response.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    sender.await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "50");
    eventually(|| router.router.stats()[0].in_flight == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_streams_and_upgrades_end_after_the_idle_timeout() {
    let a = Backend::start_with("a", Some(websocket_echo())).await;
    let router = router_for(&a).await;

    // An event, then silence: cut after the 2 s idle timeout, not the 1 s request one.
    let mut client = h1_client(router.addr).await;
    let response = client.send_request(get("/sse/2")).await.unwrap();
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    let silent = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), body.frame()).await;
    let waited = silent.elapsed();
    assert!(
        matches!(end, Ok(Some(Err(_)) | None)),
        "the stream was cut: {end:?}"
    );
    assert!(
        (Duration::from_millis(1900)..Duration::from_secs(5)).contains(&waited),
        "{waited:?}"
    );
    // The instance sees its response abandoned.
    eventually(|| a.stats.cancelled.load(std::sync::atomic::Ordering::SeqCst) == 1).await;

    // A WebSocket that goes quiet is closed after the idle timeout.
    let stream = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{HOST}/ws"), stream)
        .await
        .unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    ws.next().await.unwrap().unwrap();
    let silent = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
    let waited = silent.elapsed();
    assert!(matches!(end, Ok(None | Some(Err(_)))), "closed: {end:?}");
    assert!(
        (Duration::from_millis(1900)..Duration::from_secs(5)).contains(&waited),
        "{waited:?}"
    );
    eventually(|| router.router.stats()[0].in_flight == 0).await;
}

/// The resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlimited_bodies_stream_at_any_size_without_being_buffered() {
    let a = Backend::start("a").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let mut svc = service("svc", HOST, "rev", vec![a.endpoint()]);
    svc.max_request_body = UNLIMITED_REQUEST_BODY;
    router.set_services(vec![svc]);
    // 256 MiB from curl, chunked (no length known in advance), 8 times the default
    // limit; the backend counts it without keeping it. The process's memory stays flat.
    const SIZE: u64 = 256 << 20;
    let before = rss_kib();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let script = format!(
        "head -c {SIZE} /dev/zero | curl -sS --max-time 120 -T - -H 'Host: {HOST}' \
         -H 'Transfer-Encoding: chunked' http://{}/count",
        router.addr
    );
    let output = tokio::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .await
        .unwrap();
    sampling.abort();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), SIZE.to_string());
    let grew = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(before);
    assert!(grew < 64 * 1024, "resident memory grew by {grew} KiB");
}
