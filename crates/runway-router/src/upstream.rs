//! Connections to instances: a pool of HTTP/1.1 keep-alive connections per instance, or
//! one multiplexed h2c connection, and sending a request over them. Pooled HTTP/1.1 is
//! spoken by [`http1`], inside the request's own task; upgrades (which take a fresh
//! connection over) and h2c go through hyper's client.
//!
//! A request is only ever sent once. What can be retried is told apart exactly: a
//! connection that could not be made, or a pooled connection that closed before the
//! request was written to it (the request comes back), versus a failure after the
//! request went out, which is never retried.

pub(crate) mod http1;

use crate::body::{BodyError, ClientFailure, ProxyRequestBody};
use crate::headers::Forwarded;
use crate::routes::Upstream;
use bytes::Bytes;
use http::header;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1 as hyper_http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;

/// How connections to instances are made and kept.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamSettings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle: usize,
    pub h2_keepalive: Duration,
}

type H1Sender = hyper_http1::SendRequest<ProxyRequestBody>;
type H2Sender = http2::SendRequest<ProxyRequestBody>;

/// Pools are split by thread, a power of two.
const SEGMENTS: usize = 8;

/// This thread's pool segment. A connection is registered with the runtime (and, with
/// `serve_on_threads`, the thread) that opened it, and an h2c connection's task runs
/// there; using it from the same thread keeps every wake-up local, where another thread
/// would cost a cross-thread wake-up (an eventfd write and a context switch) each way.
fn segment() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SLOT.with(|slot| {
        if slot.get() == usize::MAX {
            slot.set(NEXT.fetch_add(1, Ordering::Relaxed) % SEGMENTS);
        }
        slot.get()
    })
}

/// Idle HTTP/1.1 connections of one thread, with when they became idle.
type Idle = Mutex<Vec<(http1::Conn, Instant)>>;

/// One thread's h2c connection to an instance: made by the first request that needs it,
/// and awaited by the requests that arrive during its handshake instead of each dialing
/// its own (a burst of requests at start opened dozens). A connection that failed or
/// closed is replaced by a new cell.
type H2Cell = Arc<OnceCell<Result<H2Sender, String>>>;
type H2Slot = Mutex<H2Cell>;

/// An instance's connections, one segment per thread.
#[derive(Debug)]
pub(crate) enum Pool {
    Http1(Box<[Idle]>),
    H2c(Box<[H2Slot]>),
}

impl Pool {
    pub(crate) fn new(protocol: Upstream) -> Self {
        match protocol {
            Upstream::Http1 => Pool::Http1((0..SEGMENTS).map(|_| Mutex::new(Vec::new())).collect()),
            Upstream::H2c => Pool::H2c(
                (0..SEGMENTS)
                    .map(|_| Mutex::new(Arc::new(OnceCell::new())))
                    .collect(),
            ),
        }
    }
}

/// A pooled HTTP/1.1 connection, given back once its response has been read.
#[derive(Debug)]
pub(crate) struct Checkin {
    conn: http1::Conn,
    /// The segment of the thread whose runtime the connection is registered with.
    home: usize,
}

impl Checkin {
    /// Returns the connection to the instance's `pool` for the next request; it is `now`.
    pub(crate) fn give_back(self, pool: &Pool, settings: &UpstreamSettings, now: Instant) {
        if let Pool::Http1(segments) = pool {
            let mut idle = segments[self.home]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            // Checkouts take the most recently used connection, so the oldest ones would
            // never be looked at again: let them go when they are past their time.
            if idle.first().is_some_and(|(_, since)| {
                now.saturating_duration_since(*since) > settings.idle_timeout
            }) {
                idle.remove(0);
            }
            if idle.len() < settings.max_idle {
                idle.push((self.conn, now));
            }
        }
    }
}

/// A response body from an instance: read by the request's task from a pooled
/// HTTP/1.1 connection, or from hyper's client.
#[derive(Debug)]
pub(crate) enum UpstreamBody {
    Http1 {
        body: http1::ResponseBody,
        home: usize,
    },
    Hyper(Incoming),
}

impl UpstreamBody {
    /// The connection to give back to the pool, once the response has ended cleanly.
    pub(crate) fn take_checkin(&mut self) -> Option<Checkin> {
        match self {
            UpstreamBody::Http1 { body, home } => body
                .take_reusable()
                .map(|conn| Checkin { conn, home: *home }),
            UpstreamBody::Hyper(_) => None,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            UpstreamBody::Http1 { body, .. } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(|e| BodyError::Upstream(Box::new(e))))),
            UpstreamBody::Hyper(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(|e| BodyError::Upstream(Box::new(e))))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Http1 { body, .. } => body.is_end_stream(),
            UpstreamBody::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Http1 { body, .. } => body.size_hint(),
            UpstreamBody::Hyper(body) => body.size_hint(),
        }
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// Nothing was sent: the request comes back for another instance.
    NotSent {
        reason: String,
        request: Box<Request<ProxyRequestBody>>,
    },
    /// The client's request body failed (too large, malformed, stalled): not the
    /// instance's doing.
    Client(ClientFailure, String),
    /// The request (or part of it) was sent; it must not be sent again.
    Failed(String),
}

impl SendError {
    fn failed(error: hyper::Error) -> Self {
        match std::error::Error::source(&error).and_then(|s| s.downcast_ref::<BodyError>()) {
            Some(body) => SendError::from(body),
            None => SendError::Failed(error.to_string()),
        }
    }
}

impl From<&BodyError> for SendError {
    /// The request body failed while the request was sent.
    fn from(error: &BodyError) -> Self {
        let failure = match error {
            BodyError::TooLarge => ClientFailure::TooLarge,
            BodyError::Client(_) => ClientFailure::Broken,
            BodyError::Stalled(_) => ClientFailure::Stalled,
            BodyError::Upstream(_) | BodyError::Idle(_) => {
                return SendError::Failed(error.to_string());
            }
        };
        SendError::Client(failure, error.to_string())
    }
}

async fn connect(addr: SocketAddr, settings: &UpstreamSettings) -> Result<TcpStream, String> {
    let stream = tokio::time::timeout(settings.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn connect_h1(addr: SocketAddr, settings: &UpstreamSettings) -> Result<H1Sender, String> {
    let stream = connect(addr, settings).await?;
    let (sender, conn) = hyper_http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/1.1 handshake with {addr}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "instance connection ended");
        }
    });
    Ok(sender)
}

async fn connect_h2(addr: SocketAddr, settings: &UpstreamSettings) -> Result<H2Sender, String> {
    let stream = connect(addr, settings).await?;
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.h2_keepalive)
        .keep_alive_timeout(settings.h2_keepalive)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("h2c handshake with {addr}: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "instance h2c connection ended");
        }
    });
    Ok(sender)
}

/// Drops a failed or closed h2c connection from its `slot`, unless another request has
/// replaced it already, so that the next request makes a new one.
fn forget_h2(slot: &H2Slot, failed: &H2Cell) {
    let mut current = slot.lock().unwrap_or_else(|e| e.into_inner());
    if Arc::ptr_eq(&current, failed) {
        *current = Arc::new(OnceCell::new());
    }
}

/// An idle pooled connection of this thread that is still open, ready for a request
/// made at `now`.
fn checkout(
    segments: &[Idle],
    settings: &UpstreamSettings,
    now: Instant,
) -> Option<(http1::Conn, usize)> {
    // Only this thread's connections: another thread's would cost cross-thread wake-ups
    // for every request sent over it.
    let home = segment();
    let mut idle = segments[home].lock().unwrap_or_else(|e| e.into_inner());
    while let Some((mut conn, since)) = idle.pop() {
        if now.saturating_duration_since(since) <= settings.idle_timeout && conn.is_open() {
            return Some((conn, home));
        }
    }
    None
}

/// Shapes a request for HTTP/1.1: origin-form target (its Host header is the one
/// [`Forwarded::apply`] set).
fn for_h1(req: &mut Request<ProxyRequestBody>) {
    if req.uri().authority().is_some() || req.uri().scheme().is_some() {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
    }
    *req.version_mut() = Version::HTTP_11;
}

/// Shapes a request for HTTP/2: absolute target whose authority is the Host header
/// [`Forwarded::apply`] set.
fn for_h2(req: &mut Request<ProxyRequestBody>) {
    let host = req.headers_mut().remove(header::HOST);
    let authority = match (host, req.uri().authority()) {
        (Some(h), _) => Authority::try_from(h.as_bytes()).ok(),
        (None, a) => a.cloned(),
    };
    let mut parts = req.uri().clone().into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority.unwrap_or_else(|| Authority::from_static("localhost")));
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = Version::HTTP_2;
}

fn not_sent(reason: String, request: Request<ProxyRequestBody>) -> SendError {
    SendError::NotSent {
        reason,
        request: Box::new(request),
    }
}

/// Sends `req` with the `forwarded` headers to the instance at `addr` whose connections
/// are in `pool`, at about `now` (the request's arrival will do). Upgrades (WebSockets) always go over a fresh HTTP/1.1
/// connection, which the upgrade then owns; other requests reuse pooled connections.
/// A pooled HTTP/1.1 connection travels in the response body, which gives it back (see
/// [`UpstreamBody::take_checkin`]) once the response has been read.
pub(crate) async fn send(
    pool: &Pool,
    addr: SocketAddr,
    mut req: Request<ProxyRequestBody>,
    forwarded: &Forwarded,
    upgrade: bool,
    settings: &UpstreamSettings,
    now: Instant,
) -> Result<Response<UpstreamBody>, SendError> {
    match pool {
        Pool::Http1(_) | Pool::H2c(_) if upgrade => {
            forwarded.apply(req.headers_mut());
            for_h1(&mut req);
            let mut sender = match connect_h1(addr, settings).await {
                Ok(sender) => sender,
                Err(reason) => return Err(not_sent(reason, req)),
            };
            match sender.try_send_request(req).await {
                Ok(response) => Ok(response.map(UpstreamBody::Hyper)),
                Err(mut e) => match e.take_message() {
                    Some(req) => Err(not_sent(e.into_error().to_string(), req)),
                    None => Err(SendError::failed(e.into_error())),
                },
            }
        }
        Pool::Http1(segments) => loop {
            let (conn, home, fresh) = match checkout(segments, settings, now) {
                Some((conn, home)) => (conn, home, false),
                None => match connect(addr, settings).await {
                    Ok(stream) => (http1::Conn::new(stream), segment(), true),
                    Err(reason) => return Err(not_sent(reason, req)),
                },
            };
            match http1::send(conn, req, forwarded).await {
                Ok(response) => {
                    return Ok(response.map(|body| UpstreamBody::Http1 { body, home }));
                }
                // A pooled connection closed under us before the request was written:
                // try the next one, or a new one.
                Err(http1::SendFailure::NotSent(_, back)) if !fresh => req = *back,
                Err(http1::SendFailure::NotSent(e, back)) => {
                    return Err(SendError::NotSent {
                        reason: e.to_string(),
                        request: back,
                    });
                }
                Err(http1::SendFailure::Body(error)) => return Err(SendError::from(&error)),
                Err(http1::SendFailure::Failed(e)) => return Err(SendError::Failed(e.to_string())),
            }
        },
        Pool::H2c(segments) => {
            let slot = &segments[segment()];
            forwarded.apply(req.headers_mut());
            for_h2(&mut req);
            loop {
                let cell = slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
                // Made (or being made) for this request and the ones that came with it:
                // a failure is the instance's answer, not a stale connection's.
                let fresh = !cell.initialized();
                let made = cell.get_or_init(|| connect_h2(addr, settings)).await;
                let mut sender = match made {
                    Ok(sender) if !sender.is_closed() => sender.clone(),
                    Ok(_) if !fresh => {
                        forget_h2(slot, &cell);
                        continue;
                    }
                    Ok(_) => {
                        forget_h2(slot, &cell);
                        return Err(not_sent(format!("h2c connection to {addr} closed"), req));
                    }
                    Err(reason) => {
                        forget_h2(slot, &cell);
                        return Err(not_sent(reason.clone(), req));
                    }
                };
                if let Err(e) = sender.ready().await {
                    forget_h2(slot, &cell);
                    if fresh {
                        return Err(not_sent(e.to_string(), req));
                    }
                    continue;
                }
                match sender.try_send_request(req).await {
                    Ok(response) => return Ok(response.map(UpstreamBody::Hyper)),
                    Err(mut e) => match e.take_message() {
                        Some(back) if !fresh => {
                            forget_h2(slot, &cell);
                            req = back;
                        }
                        Some(back) => {
                            forget_h2(slot, &cell);
                            return Err(not_sent(e.into_error().to_string(), back));
                        }
                        None => return Err(SendError::failed(e.into_error())),
                    },
                }
            }
        }
    }
}
