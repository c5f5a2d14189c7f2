//! Listeners: accepting connections, TLS with ALPN, HTTP/1.1 or HTTP/2 per connection,
//! and graceful shutdown (stop accepting, let requests in flight finish, close what is
//! left when the grace period ends).

mod linger;
pub(crate) mod preface;

use crate::Router;
use crate::conn::{ConnInfo, IdleClock, Stop, Tracker};
use crate::metrics::ProtocolLabels;
use crate::proxy;
use crate::shared::Shared;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use linger::Lingering;
use preface::{Rewind, read_preface};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// The ALPN protocol of ACME's TLS-ALPN-01 validations.
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// The number of request headers hyper's HTTP/1.1 server accepts when no limit is set.
const HYPER_MAX_HEADERS: usize = 100;
/// A deadline that never comes (a year).
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// The threads of [`Router::serve_on_threads`].
#[derive(Debug)]
pub struct Workers {
    done: Vec<tokio::sync::oneshot::Receiver<std::io::Result<()>>>,
}

impl Workers {
    /// Waits until every thread has shut down; the first error any of them had.
    pub async fn wait(self) -> std::io::Result<()> {
        let mut result = Ok(());
        for done in self.done {
            let outcome = done
                .await
                .unwrap_or_else(|_| Err(std::io::Error::other("a router thread panicked")));
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    }
}

/// Counts a client connection in the open connections gauge while it lives.
struct Open(prometheus_client::metrics::gauge::Gauge);

impl Open {
    fn new(gauge: &prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Open(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A connection hyper serves that can be asked to finish gracefully.
pub(crate) trait Graceful: Future {
    fn graceful(self: Pin<&mut Self>);
}

impl<I, S> Graceful for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S::ResBody: 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E> Graceful for hyper::server::conn::http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// How an idle connection is closed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IdleClose {
    /// Dropped (an HTTP/1.1 connection with no request, or one slow to send its
    /// headers).
    Drop,
    /// Told so first (HTTP/2's GOAWAY), then dropped if it lingers.
    Graceful,
}

/// How long a connection closed gracefully for idleness may linger.
const IDLE_LINGER: Duration = Duration::from_secs(1);

/// Drives a connection to its end, finishing gracefully when the listener stops and
/// dropping it when the grace period is over. With `idle`, the connection is also closed
/// once it has had no request in flight (or been slow to send a request's headers) for
/// that long, whatever else it sends (HTTP/2 PINGs, say).
pub(crate) async fn drive<C>(
    conn: C,
    mut stop: watch::Receiver<Stop>,
    idle: Option<(&IdleClock, Duration, IdleClose)>,
) where
    C: Graceful,
    C::Output: Into<Result<(), hyper::Error>>,
{
    let mut conn = std::pin::pin!(conn);
    let first = idle.map_or(Instant::now() + FOREVER, |(clock, timeout, _)| {
        clock.epoch + timeout
    });
    let watchdog = tokio::time::sleep_until(first.into());
    let mut watchdog = std::pin::pin!(watchdog);
    // When the watchdog last went off: a request deadline no later than that is one
    // whose request has not been polled since, and must not set it off again at once.
    let mut fired = Instant::now();
    let linger = loop {
        tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(e) = result.into() {
                    tracing::debug!(error = %e, "client connection ended");
                }
                return;
            }
            _ = stop.wait_for(|s| *s != Stop::Running) => break FOREVER,
            _ = watch(watchdog.as_mut(), idle, fired), if idle.is_some() => {
                if let Some((clock, timeout, close)) = idle {
                    let now = Instant::now();
                    fired = now;
                    match clock.deadline(timeout) {
                        Some(deadline) if deadline <= now => {
                            tracing::debug!("client connection idle too long: closed");
                            match close {
                                IdleClose::Drop => return,
                                IdleClose::Graceful => break IDLE_LINGER,
                            }
                        }
                        Some(deadline) => watchdog.as_mut().reset(deadline.into()),
                        // Serving a request: look again in a while.
                        None => watchdog.as_mut().reset((now + timeout).into()),
                    }
                }
            }
        }
    };
    conn.as_mut().graceful();
    let linger = tokio::time::sleep(linger);
    let mut linger = std::pin::pin!(linger);
    // Requests still waiting for their instances keep their deadlines.
    watchdog.as_mut().reset((Instant::now() + FOREVER).into());
    loop {
        tokio::select! {
            biased;
            _ = conn.as_mut() => return,
            _ = stop.wait_for(Stop::hard) => return,
            _ = linger.as_mut() => return,
            _ = watch(watchdog.as_mut(), idle, fired), if idle.is_some() => {
                fired = Instant::now();
                watchdog.as_mut().reset((fired + FOREVER).into());
            }
        }
    }
}

/// The watchdog of [`drive`], moved earlier first if the request the connection serves
/// has an earlier deadline (see [`crate::conn::timeout_at`]); the request, polled before
/// it in the same turn, has then registered it. Deadlines not after `fired` are ignored.
fn watch<'a>(
    mut watchdog: Pin<&'a mut tokio::time::Sleep>,
    idle: Option<(&'a IdleClock, Duration, IdleClose)>,
    fired: Instant,
) -> impl Future<Output = ()> + 'a {
    std::future::poll_fn(move |cx| {
        if let Some((clock, _, _)) = idle
            && let Some(deadline) = clock.request_deadline()
            && deadline > fired
            && deadline < watchdog.deadline().into_std()
        {
            watchdog.as_mut().reset(deadline.into());
        }
        watchdog.as_mut().poll(cx)
    })
}

impl Router {
    /// Serves plain HTTP on `listener` until `shutdown` completes, then stops accepting,
    /// lets requests in flight finish (up to the configured grace period) and returns.
    /// Clients may speak HTTP/1.1 or HTTP/2 with prior knowledge (h2c).
    pub async fn serve_http(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        self.serve(listener, None, false, shutdown).await
    }

    /// Serves HTTPS on `listener` with `tls` (see `runway_certs::CertStore::server_config`:
    /// certificates by SNI, ALPN `h2` and `http/1.1`) until `shutdown` completes, then
    /// shuts down gracefully like [`Router::serve_http`].
    pub async fn serve_https(
        &self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        self.serve(listener, Some(TlsAcceptor::from(tls)), false, shutdown)
            .await
    }

    /// Serves a private listener (App Runner's interface endpoint) like
    /// [`Router::serve_https`], or plain HTTP without `tls`: a connection reaches the
    /// services routed to the listener its local address is named for (see
    /// [`Router::set_private_addresses`]), and a connection to an address that is not
    /// (or no longer) named is closed at once, never served as public. Whatever the order
    /// in which addresses are named and listeners stopped, a private listener serves no
    /// public service.
    pub async fn serve_private(
        &self,
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        self.serve(listener, tls.map(TlsAcceptor::from), true, shutdown)
            .await
    }

    /// Serves `listener` on `threads` dedicated threads, each running its own
    /// single-threaded runtime, plain HTTP or HTTPS with `tls`: a client connection, its
    /// requests and the connections to instances they use all stay on one thread, so
    /// requests cost no cross-thread wake-ups (thread-per-core, as nginx's workers). This
    /// is the fastest way to serve; [`Router::serve_http`] on a shared multi-threaded
    /// runtime is simpler. When `shutdown` turns true, every thread shuts down gracefully
    /// like [`Router::serve_http`]; [`Workers::wait`] waits for them.
    pub fn serve_on_threads(
        &self,
        listener: std::net::TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        threads: usize,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<Workers> {
        listener.set_nonblocking(true)?;
        let mut done = Vec::new();
        for i in 0..threads.max(1) {
            let listener = listener.try_clone()?;
            let router = self.clone();
            let tls = tls.clone().map(TlsAcceptor::from);
            let mut shutdown = shutdown.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name(format!("runway-router-{i}"))
                .spawn(move || {
                    let result = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .and_then(|runtime| {
                            runtime.block_on(async move {
                                let listener = TcpListener::from_std(listener)?;
                                let stop = async move {
                                    let _ = shutdown.wait_for(|stop| *stop).await;
                                };
                                router.serve(listener, tls, false, stop).await
                            })
                        });
                    let _ = tx.send(result);
                })?;
            done.push(rx);
        }
        Ok(Workers { done })
    }

    async fn serve(
        &self,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        private: bool,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(Stop::Running);
        let tracker = Tracker::default();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, client)) => {
                        let inner = self.inner.clone();
                        let scope = stream
                            .local_addr()
                            .ok()
                            .and_then(|local| inner.private.load().get(&local.ip()).cloned());
                        if private && scope.is_none() {
                            // A private listener whose address is no longer named: it
                            // is being stopped, and serves nobody meanwhile.
                            tracing::debug!(%client, "connection to an unnamed private address closed");
                            drop(stream);
                            continue;
                        }
                        let ipv6 = match client.ip() {
                            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().is_none(),
                            std::net::IpAddr::V4(_) => false,
                        };
                        let conn = Arc::new(ConnInfo {
                            client,
                            scope,
                            ipv6,
                            client_value: crate::headers::client_value(client.ip()),
                            tls: tls.is_some(),
                            stop: stop_rx.clone(),
                            tracker: tracker.clone(),
                            idle: IdleClock::new(),
                            route: std::sync::Mutex::new(None),
                            uploads: Arc::new(tokio::sync::Semaphore::new(
                                inner.config.max_uploads_per_connection.max(1),
                            )),
                        });
                        let guard = tracker.enter();
                        let open = Open::new(&inner.metrics.open_connections);
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            let _guards = (guard, open);
                            connection(inner, stream, tls, conn).await;
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        drop(listener);
        finish(&stop_tx, &tracker, self.inner.config.shutdown_grace).await;
        Ok(())
    }
}

/// After a listener stopped accepting: asks its connections to finish gracefully, waits
/// for them up to `grace`, then closes what is left.
pub(crate) async fn finish(stop_tx: &watch::Sender<Stop>, tracker: &Tracker, grace: Duration) {
    let _ = stop_tx.send(Stop::Graceful);
    if tokio::time::timeout(grace, tracker.idle()).await.is_err() {
        tracing::warn!("grace period over: closing connections still open");
        let _ = stop_tx.send(Stop::Hard);
        let _ = tokio::time::timeout(Duration::from_secs(1), tracker.idle()).await;
    }
}

async fn connection(
    inner: Arc<Shared>,
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    conn: Arc<ConnInfo>,
) {
    let config = &inner.config;
    let negotiated = negotiate(stream, tls, &conn, config, Stop::hard).await;
    match negotiated {
        // A TLS-ALPN-01 validation (RFC 8737) ends with its handshake: the CA has seen the
        // challenge certificate and sends no request.
        Ok(Negotiated::Tls(stream, _))
            if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) =>
        {
            count(&inner, "acme_tls_alpn")
        }
        Ok(Negotiated::Tls(stream, h2)) => serve_io(inner, TokioIo::new(stream), h2, conn).await,
        Ok(Negotiated::Plain(stream, h2)) => serve_io(inner, TokioIo::new(stream), h2, conn).await,
        Err(NegotiationFailed::Tls) => count(&inner, "tls_failed"),
        Err(NegotiationFailed::Other) => {}
    }
}

/// A connection ready for HTTP: over TLS or not, and whether it speaks HTTP/2.
pub(crate) enum Negotiated {
    Tls(Box<tokio_rustls::server::TlsStream<Lingering>>, bool),
    Plain(Rewind<Lingering>, bool),
}

/// Why a connection never got to HTTP.
pub(crate) enum NegotiationFailed {
    /// The TLS handshake failed or took too long.
    Tls,
    /// The client sent too little in time, left, or the listener is stopping.
    Other,
}

/// Takes a new connection to where HTTP starts: the TLS handshake (at most `config`'s
/// handshake timeout) and ALPN with `tls`, or else a look for the HTTP/2 preface (h2c
/// with prior knowledge, at most its header read timeout). The connection lingers when
/// it is closed ([`Lingering`]). It is given up when the listener's stop is `given_up`:
/// the router's listeners wait for a hard stop, since a client that connected before its
/// listener stopped (a handover to another process, say) is owed an answer to its first
/// request; the application listeners give up at once (their clients retry).
pub(crate) async fn negotiate(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    conn: &ConnInfo,
    config: &crate::RouterConfig,
    given_up: fn(&Stop) -> bool,
) -> Result<Negotiated, NegotiationFailed> {
    let (handshake_timeout, header_timeout) =
        (config.tls_handshake_timeout, config.header_read_timeout);
    let _ = stream.set_nodelay(true);
    let stream = Lingering::new(stream);
    let mut stop = conn.stop.clone();
    match tls {
        Some(acceptor) => {
            let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
            let stream = tokio::select! {
                result = handshake => match result {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(client = %conn.client, error = %e, "TLS handshake failed");
                        return Err(NegotiationFailed::Tls);
                    }
                    Err(_) => return Err(NegotiationFailed::Tls),
                },
                _ = stop.wait_for(given_up) => return Err(NegotiationFailed::Other),
            };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            Ok(Negotiated::Tls(Box::new(stream), h2))
        }
        None => {
            let detect = tokio::time::timeout(header_timeout, read_preface(stream));
            tokio::select! {
                result = detect => match result {
                    Ok(Ok((h2, io))) => Ok(Negotiated::Plain(io, h2)),
                    // The client left, or sent too little in time.
                    _ => Err(NegotiationFailed::Other),
                },
                _ = stop.wait_for(given_up) => Err(NegotiationFailed::Other),
            }
        }
    }
}

/// hyper's HTTP/1.1 and HTTP/2 connection settings for `config`'s limits.
pub(crate) fn http_builders(
    config: &crate::RouterConfig,
) -> (
    hyper::server::conn::http1::Builder,
    hyper::server::conn::http2::Builder<TokioExecutor>,
) {
    let mut h1 = hyper::server::conn::http1::Builder::new();
    // The header read timeout is the connection's (`IdleClock`): hyper's costs a timer
    // allocated, registered and dropped for every request.
    h1.header_read_timeout(None)
        .max_header_size(config.max_header_bytes.max(8192))
        .keep_alive(true);
    // hyper parses into a fixed array of its default size, but into a vector filled
    // element by element (about 4 % of the router's instructions per request) when any
    // limit is set, even the same one.
    if config.max_headers != HYPER_MAX_HEADERS {
        h1.max_headers(config.max_headers);
    }
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(config.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(config.h2_keepalive)
        .keep_alive_timeout(config.h2_keepalive)
        .enable_connect_protocol();
    (h1, h2)
}

fn count(inner: &Shared, protocol: &'static str) {
    inner
        .metrics
        .connections
        .get_or_create(&ProtocolLabels { protocol })
        .inc();
}

async fn serve_io<T>(inner: Arc<Shared>, io: TokioIo<T>, h2: bool, conn: Arc<ConnInfo>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let (inner, conn) = (inner.clone(), conn.clone());
        service_fn(move |req| proxy::handle(inner.clone(), conn.clone(), req))
    };
    count(&inner, if h2 { "h2" } else { "http1" });
    let builders = (&inner.h1, &inner.h2);
    let timeout = inner.config.header_read_timeout;
    serve_connection(builders, io, h2, &conn, service, timeout).await;
}

/// Serves `service` on `io` with HTTP/2 (`h2`) or HTTP/1.1 (upgrades allowed) until the
/// connection ends or the listener stops. `header_timeout` is also how long a connection
/// may stay open with no request (keep-alive): an HTTP/1.1 connection is then dropped,
/// an HTTP/2 one told so (GOAWAY) first.
pub(crate) async fn serve_connection<T, S, B>(
    (h1, h2b): (
        &hyper::server::conn::http1::Builder,
        &hyper::server::conn::http2::Builder<TokioExecutor>,
    ),
    io: TokioIo<T>,
    h2: bool,
    conn: &ConnInfo,
    service: S,
    header_timeout: Duration,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stop = conn.stop.clone();
    if h2 {
        let idle = Some((&conn.idle, header_timeout, IdleClose::Graceful));
        drive(h2b.serve_connection(io, service), stop, idle).await;
    } else {
        // A request runs in the connection's task: its deadline is the watchdog's to keep.
        conn.idle.keep_deadlines();
        let idle = Some((&conn.idle, header_timeout, IdleClose::Drop));
        drive(h1.serve_connection(io, service).with_upgrades(), stop, idle).await;
    }
}
