//! Helpers for tests of the router (this crate's, and the integrator's): in-process
//! backends on loopback that count what they see, and small HTTP clients.
//!
//! A [`Backend`] speaks HTTP/1.1 and h2c (prior knowledge) on one port and answers:
//! - `/headers`: the request's method, target, version and headers as JSON;
//! - `/echo`: the request body, streamed back;
//! - `/wait`: waits for [`Backend::release`], then answers (for deterministic
//!   concurrency and queueing tests);
//! - `/sse/<n>`: `n` server-sent events, each after the first waiting for a release;
//! - `/sleep/<ms>`: answers after `ms` milliseconds;
//! - `/status/<code>`: that status;
//! - `/count`: reads the whole request body (keeping none of it), then answers its
//!   length;
//! - `/drain`: answers its head at once, then the request body's length once it has
//!   read it all;
//! - `/close`: reads the request body, then drops the connection without answering;
//! - `/grpc.Echo/Unary` and `/grpc.Echo/Stream`: gRPC-framed echo (unary, and
//!   server-streaming the message `n` times, `n` in the `x-count` header) with
//!   `grpc-status` trailers;
//! - anything else: `hello from <name>`.
//!
//! Every request is counted in [`BackendStats`]: in flight, the most in flight at once,
//! requests whose handling was cancelled (the router dropped them before the answer was
//! complete), and completed ones.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

/// Errors of test bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body test backends answer with.
pub type TestBody = BoxBody<Bytes, BoxError>;
/// A future answering a request.
pub type BoxResponse = Pin<Box<dyn Future<Output = Result<Response<TestBody>, BoxError>> + Send>>;
/// A custom route: answers the requests it wants, hands the others back.
pub type Extra =
    Arc<dyn Fn(Request<Incoming>) -> Result<BoxResponse, Box<Request<Incoming>>> + Send + Sync>;

/// A body of one chunk.
pub fn full(data: impl Into<Bytes>) -> TestBody {
    http_body_util::Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// What a backend has seen.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Requests received.
    pub requests: AtomicUsize,
    /// Requests being handled now.
    pub current: AtomicUsize,
    /// The most requests handled at once.
    pub max_concurrent: AtomicUsize,
    /// Requests whose handling was dropped before the answer was complete.
    pub cancelled: AtomicUsize,
    /// Requests answered completely.
    pub completed: AtomicUsize,
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Requests that reached `/wait` and are waiting for a release.
    pub waiting: AtomicUsize,
}

/// Counts one request in flight; whether it completed is decided by its drop.
struct InFlight {
    stats: Arc<BackendStats>,
    done: bool,
}

impl InFlight {
    fn new(stats: &Arc<BackendStats>) -> Self {
        stats.requests.fetch_add(1, Ordering::SeqCst);
        let now = stats.current.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_concurrent.fetch_max(now, Ordering::SeqCst);
        InFlight {
            stats: stats.clone(),
            done: false,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.stats.current.fetch_sub(1, Ordering::SeqCst);
        if self.done {
            self.stats.completed.fetch_add(1, Ordering::SeqCst);
        } else {
            self.stats.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A body fed from a channel, with the request's [`InFlight`] until its end.
struct ChannelBody {
    rx: mpsc::Receiver<Frame<Bytes>>,
    in_flight: Option<InFlight>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(frame)) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(None) => {
                if let Some(mut in_flight) = self.in_flight.take() {
                    in_flight.done = true;
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A body that marks its request complete when it has been read to the end.
struct Tracked<B> {
    inner: B,
    in_flight: Option<InFlight>,
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B>
where
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Ready(None) => {
                if let Some(mut in_flight) = self.in_flight.take() {
                    in_flight.done = true;
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(r)) => Poll::Ready(Some(r.map_err(Into::into))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// An in-process backend on loopback; stops when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    pub stats: Arc<BackendStats>,
    gate: Arc<Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("addr", &self.addr)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    /// Starts a backend called `name` on 127.0.0.1 with the standard routes.
    pub async fn start(name: &str) -> Backend {
        Self::start_with(name, None).await
    }

    /// Starts a backend whose `extra` routes come before the standard ones.
    pub async fn start_with(name: &str, extra: Option<Extra>) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let stats = Arc::new(BackendStats::default());
        let gate = Arc::new(Semaphore::new(0));
        let ctx = Arc::new(Ctx {
            name: name.to_string(),
            stats: stats.clone(),
            gate: gate.clone(),
            extra,
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                ctx.stats.connections.fetch_add(1, Ordering::SeqCst);
                let ctx = ctx.clone();
                tokio::spawn(serve_backend_conn(stream, ctx));
            }
        });
        Backend {
            addr,
            name: name.to_string(),
            stats,
            gate,
            task,
        }
    }

    /// Lets `n` waiting (or future) `/wait` and `/sse` steps go on.
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }

    /// Waits until `n` requests are held at `/wait` (a few seconds at most).
    pub async fn wait_for_waiting(&self, n: usize) {
        eventually(|| self.stats.waiting.load(Ordering::SeqCst) >= n).await;
    }

    /// This backend as a route endpoint.
    pub fn endpoint(&self) -> crate::Endpoint {
        crate::Endpoint {
            instance_id: self.name.clone(),
            addr: self.addr,
        }
    }
}

/// Polls `check` until it holds, for up to 10 seconds; panics if it never does.
pub async fn eventually(mut check: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 10 s");
}

struct Ctx {
    name: String,
    stats: Arc<BackendStats>,
    gate: Arc<Semaphore>,
    extra: Option<Extra>,
}

async fn serve_backend_conn(stream: TcpStream, ctx: Arc<Ctx>) {
    let _ = stream.set_nodelay(true);
    let Ok((h2, io)) = crate::server::preface::read_preface(stream).await else {
        return;
    };
    let io = TokioIo::new(io);
    let service = service_fn(move |req| handle(ctx.clone(), req));
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .with_upgrades()
            .await;
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<TestBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
}

/// Frames a gRPC message: compression flag, big-endian length, bytes.
pub fn grpc_frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out.freeze()
}

/// Splits gRPC frames out of `data`.
pub fn grpc_messages(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while data.len() >= 5 {
        let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
        if data.len() < 5 + len {
            break;
        }
        out.push(data[5..5 + len].to_vec());
        data.advance(5 + len);
    }
    out
}

async fn handle(ctx: Arc<Ctx>, req: Request<Incoming>) -> Result<Response<TestBody>, BoxError> {
    let req = match &ctx.extra {
        Some(extra) => match extra(req) {
            Ok(future) => {
                let mut in_flight = InFlight::new(&ctx.stats);
                let response = future.await;
                in_flight.done = true;
                return response;
            }
            Err(req) => *req,
        },
        None => req,
    };
    let mut in_flight = InFlight::new(&ctx.stats);
    let path = req.uri().path().to_string();
    let response = match path.as_str() {
        "/headers" => {
            let mut headers = serde_json::Map::new();
            for (name, value) in req.headers() {
                headers.insert(
                    name.as_str().to_string(),
                    serde_json::Value::String(String::from_utf8_lossy(value.as_bytes()).into()),
                );
            }
            let body = serde_json::json!({
                "backend": ctx.name,
                "method": req.method().as_str(),
                "uri": req.uri().to_string(),
                "version": format!("{:?}", req.version()),
                "headers": headers,
            });
            text(StatusCode::OK, body.to_string())
        }
        "/echo" => {
            let body = Tracked {
                inner: req.into_body(),
                in_flight: Some(in_flight),
            };
            return Ok(Response::new(BoxBody::new(body)));
        }
        "/wait" => {
            ctx.stats.waiting.fetch_add(1, Ordering::SeqCst);
            let permit = ctx.gate.acquire().await;
            ctx.stats.waiting.fetch_sub(1, Ordering::SeqCst);
            if let Ok(permit) = permit {
                permit.forget();
            }
            text(StatusCode::OK, format!("done by {}", ctx.name))
        }
        "/count" => {
            let mut body = req.into_body();
            let mut count = 0;
            while let Some(frame) = body.frame().await {
                count += frame?.data_ref().map_or(0, |d| d.len());
            }
            text(StatusCode::OK, count.to_string())
        }
        "/drain" => {
            // The head at once, the length once the whole body is in.
            let (tx, rx) = mpsc::channel(1);
            let mut body = req.into_body();
            tokio::spawn(async move {
                let mut count = 0;
                while let Some(Ok(frame)) = body.frame().await {
                    count += frame.data_ref().map_or(0, |d| d.len());
                }
                let _ = tx.send(Frame::data(Bytes::from(count.to_string()))).await;
            });
            let body = ChannelBody {
                rx,
                in_flight: Some(in_flight),
            };
            return Ok(Response::new(BoxBody::new(body)));
        }
        "/close" => {
            let _ = req.into_body().collect().await;
            in_flight.done = true;
            return Err("closing without an answer".into());
        }
        "/grpc.Echo/Unary" | "/grpc.Echo/Stream" => {
            let count: usize = req
                .headers()
                .get("x-count")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let body = req.into_body().collect().await?.to_bytes();
            let messages = grpc_messages(&body);
            let message = messages.first().cloned().unwrap_or_default();
            let (tx, rx) = mpsc::channel(16);
            let times = if path.ends_with("Unary") { 1 } else { count };
            let gate = ctx.gate.clone();
            let streaming = path.ends_with("Stream");
            tokio::spawn(async move {
                for i in 0..times {
                    // Streamed messages after the first wait for a release, so a test
                    // can see them arrive one by one.
                    if streaming
                        && i > 0
                        && let Ok(permit) = gate.acquire().await
                    {
                        permit.forget();
                    }
                    let mut reply = message.clone();
                    reply.extend_from_slice(format!(" #{i}").as_bytes());
                    if tx.send(Frame::data(grpc_frame(&reply))).await.is_err() {
                        return;
                    }
                }
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from_static("0"));
                trailers.insert("grpc-message", HeaderValue::from_static("ok"));
                let _ = tx.send(Frame::trailers(trailers)).await;
            });
            let body = ChannelBody {
                rx,
                in_flight: Some(in_flight),
            };
            let mut response = Response::new(BoxBody::new(body));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            return Ok(response);
        }
        p if p.starts_with("/sse/") => {
            let n: usize = p[5..].parse().unwrap_or(1);
            let (tx, rx) = mpsc::channel(16);
            let gate = ctx.gate.clone();
            tokio::spawn(async move {
                for i in 0..n {
                    if i > 0
                        && let Ok(permit) = gate.acquire().await
                    {
                        permit.forget();
                    }
                    let event = Bytes::from(format!("data: event {i}\n\n"));
                    if tx.send(Frame::data(event)).await.is_err() {
                        return;
                    }
                }
            });
            let body = ChannelBody {
                rx,
                in_flight: Some(in_flight),
            };
            let mut response = Response::new(BoxBody::new(body));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            return Ok(response);
        }
        p if p.starts_with("/sleep/") => {
            let ms: u64 = p[7..].parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(StatusCode::OK, "slept")
        }
        p if p.starts_with("/status/") => {
            let code = p[8..]
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::OK);
            text(code, format!("status {}", code.as_u16()))
        }
        _ => {
            let mut response = text(StatusCode::OK, format!("hello from {}", ctx.name));
            if let Ok(value) = HeaderValue::from_str(&ctx.name) {
                response.headers_mut().insert("x-backend", value);
            }
            response
        }
    };
    in_flight.done = true;
    Ok(response)
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// Sends `req` over a new HTTP/1.1 connection to `addr` and reads the whole response.
pub async fn send_h1<B>(addr: SocketAddr, req: Request<B>) -> Result<Reply, BoxError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let response = h1_client(addr).await.send_request(req).await?;
    read(response).await
}

/// An HTTP/1.1 client connection to `addr`, driven by a task of its own.
pub async fn h1_client<B>(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    sender
}

/// Reads a whole response.
pub async fn read(response: Response<Incoming>) -> Result<Reply, BoxError> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// `GET path` with `Host: host` over a new HTTP/1.1 connection.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Reply {
    let req = Request::get(path)
        .header(http::header::HOST, host)
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    send_h1(addr, req).await.expect("response")
}

/// An HTTP/2 (h2c, prior knowledge) client connection to `addr`.
pub async fn h2c_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<TestBody> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

/// A router on loopback with one plain-HTTP listener, stopped when dropped.
pub struct TestRouter {
    pub router: crate::Router,
    pub addr: SocketAddr,
    pub registry: Arc<Mutex<runway_telemetry::Registry>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for TestRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRouter")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TestRouter {
    /// Starts a router with `config` serving plain HTTP on 127.0.0.1.
    pub async fn start(config: crate::RouterConfig) -> TestRouter {
        let mut registry = runway_telemetry::Registry::default();
        let router = crate::Router::new(config, &mut registry).expect("router");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = router.clone();
        let task = tokio::spawn(async move {
            serving
                .serve_http(listener, async move {
                    let _ = stopped.await;
                })
                .await
        });
        TestRouter {
            router,
            addr,
            registry: Arc::new(Mutex::new(registry)),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Asks the listener to shut down gracefully; await [`TestRouter::task`] to see it
    /// finish.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Routes to exactly `services` (a valid table, or the test fails).
    pub fn set_services(&self, services: Vec<crate::ServiceRoute>) {
        self.router
            .set_routes(crate::RouteTable { services })
            .expect("a valid route table");
    }

    /// The Prometheus text of the router's metrics.
    pub fn metrics_text(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
        out
    }
}

impl Drop for TestRouter {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A service route to `endpoints` at `host`, one revision `rev` with 100 percent, plain
/// HTTP allowed (no redirect).
pub fn service(
    id: &str,
    host: &str,
    rev: &str,
    endpoints: Vec<crate::Endpoint>,
) -> crate::ServiceRoute {
    let mut route = crate::ServiceRoute::new(id, host);
    route.https_redirect = false;
    route.revisions.push(crate::RevisionRoute {
        revision_id: rev.to_string(),
        percent: 100,
        tag: None,
        endpoints,
    });
    route
}
