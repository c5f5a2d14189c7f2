//! Serving an application other than the proxy (runway's App Runner API and its image
//! registry) with the router's connection handling: the same TLS handshake timeout, HTTP/1.1
//! header read and keep-alive idle timeout ([`crate::conn::IdleClock`]), header limits,
//! HTTP/2 stream and keep-alive limits and graceful shutdown as the router's own
//! listeners ([`RouterConfig`] holds them), plus a cap on the connections held at once, in
//! all and per client address. A client that opens connections and sends nothing (or half
//! a request) is closed when its time is up, and can hold at most its share meanwhile, so
//! that it can neither exhaust the process's file descriptors (which the router and the
//! other listeners need) nor shut other clients out.

use crate::RouterConfig;
use crate::conn::{Busy, ConnInfo, IdleClock, Stop, Tracker};
use crate::server::{Negotiated, finish, negotiate, serve_connection};
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use runway_telemetry::Registry;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `runway_listener_connections{listener}`: connections an application listener holds
/// now.
pub const LISTENER_CONNECTIONS: &str = "runway_listener_connections";
/// `runway_listener_refused_total{listener, reason}`: connections closed as soon as they
/// were accepted, because the listener held its cap in all (`total`) or from the client's
/// address (`address`).
pub const LISTENER_REFUSED: &str = "runway_listener_refused";

/// How many connections an application listener holds at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub total: usize,
    /// Connections open at once from one client address (for IPv6, one /64 network).
    pub per_address: usize,
}

impl Default for ConnectionCaps {
    /// 2048 in all, 256 from one address: a CI farm behind one NAT address pushing in
    /// parallel stays well below; the process keeps most of its descriptors.
    fn default() -> Self {
        ConnectionCaps {
            total: 2048,
            per_address: 256,
        }
    }
}

/// The metrics every application listener shares, registered once.
#[derive(Debug, Clone)]
pub struct ListenerMetrics {
    connections: Family<ListenerLabels, Gauge>,
    refused: Family<RefusedLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    listener: &'static str,
    reason: &'static str,
}

impl ListenerMetrics {
    /// Registers the listener metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ListenerMetrics {
            connections: Family::default(),
            refused: Family::default(),
        };
        registry.register(
            LISTENER_CONNECTIONS,
            "Connections an application listener (api, registry) holds now",
            metrics.connections.clone(),
        );
        registry.register(
            LISTENER_REFUSED,
            "Connections closed at once because the listener held its cap, in all or from the client's address",
            metrics.refused.clone(),
        );
        metrics
    }
}

/// One application listener: its name (for metrics and logs), limits and caps.
#[derive(Debug)]
pub struct AppServer {
    name: &'static str,
    config: RouterConfig,
    caps: ConnectionCaps,
    metrics: ListenerMetrics,
    h1: hyper::server::conn::http1::Builder,
    h2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

/// Connections held now, in all and by address.
#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One held connection; dropping it releases its place.
#[derive(Debug)]
struct Place {
    held: Arc<Mutex<Held>>,
    address: IpAddr,
    gauge: Gauge,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.total -= 1;
        if let Some(n) = held.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                held.by_address.remove(&self.address);
            }
        }
        self.gauge.dec();
    }
}

/// The address connections are counted under: an IPv4 address (also when mapped into
/// IPv6), or an IPv6 address's /64, which one client usually holds whole.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

impl AppServer {
    /// A listener named `name` (`api`, `registry`) with `config`'s connection limits and
    /// timeouts (its header, TLS, HTTP/2 and shutdown settings; the upstream and
    /// access-log settings do not apply) and `caps`.
    pub fn new(
        name: &'static str,
        config: RouterConfig,
        caps: ConnectionCaps,
        metrics: ListenerMetrics,
    ) -> Self {
        let (h1, h2) = crate::server::http_builders(&config);
        AppServer {
            name,
            config,
            caps,
            metrics,
            h1,
            h2,
        }
    }

    /// Serves `listener` until `shutdown` completes, then stops accepting, lets requests
    /// in flight finish (up to the configured grace period) and returns. With `tls`,
    /// connections are HTTPS (ALPN picks HTTP/2 or HTTP/1.1); without, plain HTTP/1.1 or
    /// h2c with prior knowledge. `make` makes the service for a connection from the
    /// client's address.
    pub async fn serve<M, S, B>(
        &self,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        make: M,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()>
    where
        M: Fn(SocketAddr) -> S,
        S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
            + Send
            + Sync
            + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let tls = tls.map(TlsAcceptor::from);
        let (stop_tx, stop_rx) = watch::channel(Stop::Running);
        let tracker = Tracker::default();
        let held = Arc::new(Mutex::new(Held::default()));
        let shared = Arc::new(Shared {
            config: self.config.clone(),
            h1: self.h1.clone(),
            h2: self.h2.clone(),
        });
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, client)) => {
                        let Some(place) = self.take_place(&held, client.ip()) else {
                            // Dropping the stream closes it: the client sees the
                            // connection end before it has sent anything that counts.
                            continue;
                        };
                        let conn = Arc::new(ConnInfo {
                            client,
                            // Not a router listener: no private scope or family filter.
                            scope: None,
                            ipv6: false,
                            client_value: crate::headers::client_value(client.ip()),
                            tls: tls.is_some(),
                            stop: stop_rx.clone(),
                            tracker: tracker.clone(),
                            idle: IdleClock::new(),
                            route: Mutex::new(None),
                            // The application reads its own bodies: nothing to hold.
                            uploads: Arc::new(tokio::sync::Semaphore::new(1)),
                        });
                        let service = make(client);
                        let guard = tracker.enter();
                        let (tls, shared) = (tls.clone(), shared.clone());
                        tokio::spawn(async move {
                            let _guard = guard;
                            let _place = place;
                            connection(&shared, stream, tls, conn, service).await;
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(listener = self.name, error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        drop(listener);
        finish(&stop_tx, &tracker, self.config.shutdown_grace).await;
        Ok(())
    }

    /// A place for a connection from `ip`, unless the listener holds its cap.
    fn take_place(&self, held: &Arc<Mutex<Held>>, ip: IpAddr) -> Option<Place> {
        let address = address_key(ip);
        let refused = |reason: &'static str| {
            self.metrics
                .refused
                .get_or_create(&RefusedLabels {
                    listener: self.name,
                    reason,
                })
                .inc();
            tracing::debug!(listener = self.name, client = %ip, reason, "connection refused: cap reached");
            None
        };
        let mut h = held.lock().unwrap_or_else(|e| e.into_inner());
        if h.total >= self.caps.total {
            return refused("total");
        }
        let from_address = h.by_address.entry(address).or_insert(0);
        if *from_address >= self.caps.per_address {
            return refused("address");
        }
        *from_address += 1;
        h.total += 1;
        let gauge = self
            .metrics
            .connections
            .get_or_create(&ListenerLabels {
                listener: self.name,
            })
            .clone();
        gauge.inc();
        Some(Place {
            held: held.clone(),
            address,
            gauge,
        })
    }
}

/// What every connection of one `serve` shares.
struct Shared {
    config: RouterConfig,
    h1: hyper::server::conn::http1::Builder,
    h2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

async fn connection<S, B>(
    shared: &Shared,
    stream: tokio::net::TcpStream,
    tls: Option<TlsAcceptor>,
    conn: Arc<ConnInfo>,
    service: S,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let config = &shared.config;
    let negotiated = negotiate(stream, tls, &conn, config, |s| *s != Stop::Running).await;
    match negotiated {
        Ok(Negotiated::Tls(stream, h2)) => {
            serve_io(shared, TokioIo::new(stream), h2, conn, service).await
        }
        Ok(Negotiated::Plain(stream, h2)) => {
            serve_io(shared, TokioIo::new(stream), h2, conn, service).await
        }
        Err(_) => {}
    }
}

async fn serve_io<T, S, B>(
    shared: &Shared,
    io: TokioIo<T>,
    h2: bool,
    conn: Arc<ConnInfo>,
    service: S,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let service = Tracked {
        inner: service,
        conn: conn.clone(),
    };
    let builders = (&shared.h1, &shared.h2);
    let timeout = shared.config.header_read_timeout;
    serve_connection(builders, io, h2, &conn, service, timeout).await;
}

/// The application's service, marking the connection busy from a request's arrival to
/// the end of its response (so the idle timeout never cuts a request being served).
struct Tracked<S> {
    inner: S,
    conn: Arc<ConnInfo>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let busy = Busy::new(&self.conn);
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| TrackedBody { body, _busy: busy }))
        })
    }
}

/// A response body that keeps its connection marked busy until it is dropped.
struct TrackedBody<B> {
    body: B,
    _busy: Busy,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests;
