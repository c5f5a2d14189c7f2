//! Connections to instances: a pool of HTTP/1.1 keep-alive connections per instance, or
//! one multiplexed h2c connection, and sending a request over them.
//!
//! A request is only ever sent once. What can be retried is told apart exactly: a
//! connection that could not be made, or a pooled connection that closed before the
//! request was written to it (hyper hands the request back), versus a failure after the
//! request went out, which is never retried.

use crate::balance::EndpointState;
use crate::body::ProxyRequestBody;
use crate::routes::Upstream;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How connections to instances are made and kept.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamSettings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle: usize,
    pub h2_keepalive: Duration,
}

type H1Sender = http1::SendRequest<ProxyRequestBody>;
type H2Sender = http2::SendRequest<ProxyRequestBody>;

/// Pools are split by thread, a power of two.
const SEGMENTS: usize = 8;

/// This thread's pool segment. A connection's task runs where it was spawned; handing
/// it requests from the same thread keeps every wake-up local, where a request from
/// another thread would cost a cross-thread wake-up (an eventfd write and a context
/// switch) each way.
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
type Idle = Mutex<Vec<(H1Sender, Instant)>>;

/// An instance's connections, one segment per thread.
#[derive(Debug)]
pub(crate) enum Pool {
    Http1(Box<[Idle]>),
    H2c(Box<[Mutex<Option<H2Sender>>]>),
}

impl Pool {
    pub(crate) fn new(protocol: Upstream) -> Self {
        match protocol {
            Upstream::Http1 => Pool::Http1((0..SEGMENTS).map(|_| Mutex::new(Vec::new())).collect()),
            Upstream::H2c => Pool::H2c((0..SEGMENTS).map(|_| Mutex::new(None)).collect()),
        }
    }
}

/// A pooled HTTP/1.1 connection, given back once its response has been read.
#[derive(Debug)]
pub(crate) struct Checkin {
    sender: H1Sender,
    /// The segment of the thread whose runtime drives the connection.
    home: usize,
}

impl Checkin {
    /// Returns the connection to `endpoint`'s pool for the next request.
    pub(crate) fn give_back(self, endpoint: &EndpointState, settings: &UpstreamSettings) {
        if self.sender.is_closed() {
            return;
        }
        if let Pool::Http1(segments) = &endpoint.pool {
            let mut idle = segments[self.home]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if idle.len() < settings.max_idle {
                idle.push((self.sender, Instant::now()));
            }
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
    /// The request (or part of it) was sent; it must not be sent again.
    Failed(hyper::Error),
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
    let (sender, conn) = http1::Builder::new()
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

/// An idle pooled connection that is still open, ready for a request.
async fn checkout(segments: &[Idle], settings: &UpstreamSettings) -> Option<(H1Sender, usize)> {
    // Only this thread's connections: taking another thread's idle one would save a
    // connection but cost cross-thread wake-ups for every request sent over it.
    let home = segment();
    loop {
        let (mut sender, since) = segments[home]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()?;
        if sender.is_closed() || since.elapsed() > settings.idle_timeout {
            continue;
        }
        // Returned to the pool as its response ended, the connection becomes ready as
        // soon as its task has seen that; a closed one errors at once.
        if sender.ready().await.is_ok() {
            return Some((sender, home));
        }
    }
}

/// Shapes a request for HTTP/1.1: origin-form target and a Host header.
fn for_h1(req: &mut Request<ProxyRequestBody>) {
    if req.uri().authority().is_some() || req.uri().scheme().is_some() {
        let authority = req.uri().authority().map(|a| a.as_str().to_string());
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
        if !req.headers().contains_key(header::HOST)
            && let Some(value) = authority.and_then(|a| HeaderValue::from_str(&a).ok())
        {
            req.headers_mut().insert(header::HOST, value);
        }
    }
    *req.version_mut() = Version::HTTP_11;
}

/// Shapes a request for HTTP/2: absolute target whose authority is the Host.
fn for_h2(req: &mut Request<ProxyRequestBody>) {
    let host = req.headers_mut().remove(header::HOST);
    let authority = match (req.uri().authority(), host) {
        (Some(a), _) => Some(a.clone()),
        (None, Some(h)) => Authority::try_from(h.as_bytes()).ok(),
        (None, None) => None,
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

/// Sends `req` to `endpoint`. Upgrades (WebSockets) always go over a fresh HTTP/1.1
/// connection, which the upgrade then owns; other requests reuse pooled connections.
/// Returns the response and, for pooled HTTP/1.1, the connection to give back once the
/// response body has been read.
pub(crate) async fn send(
    endpoint: &EndpointState,
    mut req: Request<ProxyRequestBody>,
    upgrade: bool,
    settings: &UpstreamSettings,
) -> Result<(Response<Incoming>, Option<Checkin>), SendError> {
    match &endpoint.pool {
        Pool::Http1(_) | Pool::H2c(_) if upgrade => {
            for_h1(&mut req);
            let mut sender = match connect_h1(endpoint.addr, settings).await {
                Ok(sender) => sender,
                Err(reason) => return Err(not_sent(reason, req)),
            };
            match sender.try_send_request(req).await {
                Ok(response) => Ok((response, None)),
                Err(mut e) => match e.take_message() {
                    Some(req) => Err(not_sent(e.into_error().to_string(), req)),
                    None => Err(SendError::Failed(e.into_error())),
                },
            }
        }
        Pool::Http1(segments) => {
            for_h1(&mut req);
            loop {
                let (mut sender, home, fresh) = match checkout(segments, settings).await {
                    Some((sender, home)) => (sender, home, false),
                    None => match connect_h1(endpoint.addr, settings).await {
                        Ok(sender) => (sender, segment(), true),
                        Err(reason) => return Err(not_sent(reason, req)),
                    },
                };
                match sender.try_send_request(req).await {
                    Ok(response) => return Ok((response, Some(Checkin { sender, home }))),
                    Err(mut e) => match e.take_message() {
                        // A pooled connection closed under us before the request was
                        // written: try the next one, or a new one.
                        Some(back) if !fresh => req = back,
                        Some(back) => return Err(not_sent(e.into_error().to_string(), back)),
                        None => return Err(SendError::Failed(e.into_error())),
                    },
                }
            }
        }
        Pool::H2c(segments) => {
            let shared = &segments[segment()];
            for_h2(&mut req);
            let mut fresh = false;
            loop {
                let current = shared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .filter(|s| !s.is_closed())
                    .cloned();
                let mut sender = match current {
                    Some(sender) => sender,
                    None => {
                        let sender = match connect_h2(endpoint.addr, settings).await {
                            Ok(sender) => sender,
                            Err(reason) => return Err(not_sent(reason, req)),
                        };
                        fresh = true;
                        *shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender.clone());
                        sender
                    }
                };
                if let Err(e) = sender.ready().await {
                    if fresh {
                        return Err(not_sent(e.to_string(), req));
                    }
                    shared.lock().unwrap_or_else(|e| e.into_inner()).take();
                    continue;
                }
                match sender.try_send_request(req).await {
                    Ok(response) => return Ok((response, None)),
                    Err(mut e) => match e.take_message() {
                        Some(back) if !fresh => {
                            shared.lock().unwrap_or_else(|e| e.into_inner()).take();
                            req = back;
                        }
                        Some(back) => return Err(not_sent(e.into_error().to_string(), back)),
                        None => return Err(SendError::Failed(e.into_error())),
                    },
                }
            }
        }
    }
}
