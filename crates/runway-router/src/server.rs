//! Listeners: accepting connections, TLS with ALPN, HTTP/1.1 or HTTP/2 per connection,
//! and graceful shutdown (stop accepting, let requests in flight finish, close what is
//! left when the grace period ends).

use crate::proxy;
use crate::{Inner, Router, metrics::ProtocolLabels};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

/// The ALPN protocol of ACME's TLS-ALPN-01 validations.
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// The HTTP/2 client preface, which h2c prior-knowledge connections start with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A deadline that never comes (a year).
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// Where a listener is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Running,
    /// Stop taking requests; finish those in flight.
    Graceful,
    /// The grace period is over: close everything.
    Hard,
}

impl Stop {
    pub(crate) fn hard(&self) -> bool {
        *self == Stop::Hard
    }
}

/// Counts a listener's connections and tunnels, to wait for them at shutdown.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker {
    inner: Arc<TrackerInner>,
}

#[derive(Debug, Default)]
struct TrackerInner {
    active: AtomicUsize,
    idle: Notify,
}

/// One tracked task; dropping it ends it.
#[derive(Debug)]
pub(crate) struct TrackerGuard {
    inner: Arc<TrackerInner>,
}

impl Tracker {
    pub(crate) fn enter(&self) -> TrackerGuard {
        self.inner.active.fetch_add(1, Ordering::AcqRel);
        TrackerGuard {
            inner: self.inner.clone(),
        }
    }

    async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if self.inner.active.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        if self.inner.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

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

/// How long an HTTP/1.1 connection has had nothing to do, for the header read timeout
/// (slowloris). hyper would arm, register and drop a timer for every request; here a
/// request costs two atomic updates, and one timer per connection looks now and then.
#[derive(Debug)]
pub(crate) struct IdleClock {
    epoch: Instant,
    /// Requests whose response has not ended.
    busy: AtomicU32,
    /// Milliseconds from `epoch` to when the last response ended (or the connection
    /// began).
    since: AtomicU64,
}

impl IdleClock {
    fn new() -> Self {
        IdleClock {
            epoch: Instant::now(),
            busy: AtomicU32::new(0),
            since: AtomicU64::new(0),
        }
    }

    /// When the connection will have been idle for `timeout`, or None while it serves a
    /// request.
    fn deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.since.load(Ordering::Acquire);
        Some(self.epoch + Duration::from_millis(since) + timeout)
    }
}

/// Marks a connection busy while a request is served; dropped when its response ends.
#[derive(Debug)]
pub(crate) struct Busy {
    conn: Arc<ConnInfo>,
}

impl Busy {
    pub(crate) fn new(conn: &Arc<ConnInfo>) -> Self {
        conn.idle.busy.fetch_add(1, Ordering::AcqRel);
        Busy { conn: conn.clone() }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let idle = &self.conn.idle;
        let now = idle.epoch.elapsed().as_millis() as u64;
        // The time first, so that whoever sees the connection idle sees when it became so.
        idle.since.store(now, Ordering::Release);
        idle.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What every request on a connection shares.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub client: SocketAddr,
    /// The private listener the client connected to (by the local address), or `None`
    /// for a public one.
    pub scope: Option<Arc<str>>,
    /// The client came over IPv6 (not an IPv4-mapped address).
    pub ipv6: bool,
    /// The client's address as X-Forwarded-For text.
    pub client_value: http::HeaderValue,
    pub tls: bool,
    pub stop: watch::Receiver<Stop>,
    pub tracker: Tracker,
    pub idle: IdleClock,
    pub route: std::sync::Mutex<Option<proxy::RouteCache>>,
}

/// A connection hyper serves that can be asked to finish gracefully.
trait Graceful: Future {
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

/// Drives a connection to its end, finishing gracefully when the listener stops and
/// dropping it when the grace period is over. With `idle`, an HTTP/1.1 connection is
/// also dropped once it has been idle (or slow to send a request's headers) that long.
async fn drive<C>(conn: C, mut stop: watch::Receiver<Stop>, idle: Option<(&IdleClock, Duration)>)
where
    C: Graceful,
    C::Output: Into<Result<(), hyper::Error>>,
{
    let mut conn = std::pin::pin!(conn);
    let first = idle.map_or(Instant::now() + FOREVER, |(clock, timeout)| {
        clock.epoch + timeout
    });
    let watchdog = tokio::time::sleep_until(first.into());
    let mut watchdog = std::pin::pin!(watchdog);
    loop {
        tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(e) = result.into() {
                    tracing::debug!(error = %e, "client connection ended");
                }
                return;
            }
            _ = stop.wait_for(|s| *s != Stop::Running) => break,
            _ = watchdog.as_mut(), if idle.is_some() => {
                if let Some((clock, timeout)) = idle {
                    let now = Instant::now();
                    match clock.deadline(timeout) {
                        Some(deadline) if deadline <= now => {
                            tracing::debug!("client connection idle too long: closed");
                            return;
                        }
                        Some(deadline) => watchdog.as_mut().reset(deadline.into()),
                        // Serving a request: look again in a while.
                        None => watchdog.as_mut().reset((now + timeout).into()),
                    }
                }
            }
        }
    }
    conn.as_mut().graceful();
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.wait_for(Stop::hard) => {}
    }
}

/// Whether a plain connection starts with the HTTP/2 preface, read without consuming.
pub(crate) async fn starts_with_h2_preface(stream: &TcpStream) -> bool {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        if buf[..n] != H2_PREFACE[..n] {
            return false;
        }
        if n == H2_PREFACE.len() {
            return true;
        }
        // A prefix of the preface so far. Peeking again at once would spin while the
        // bytes already there keep the socket readable, so wait a little.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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
        self.serve(listener, None, shutdown).await
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
        self.serve(listener, Some(TlsAcceptor::from(tls)), shutdown)
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
                                router.serve(listener, tls, stop).await
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
                        });
                        let guard = tracker.enter();
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            let _guard = guard;
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
        let _ = stop_tx.send(Stop::Graceful);
        let grace = self.inner.config.shutdown_grace;
        if tokio::time::timeout(grace, tracker.idle()).await.is_err() {
            tracing::warn!("grace period over: closing connections still open");
            let _ = stop_tx.send(Stop::Hard);
            let _ = tokio::time::timeout(Duration::from_secs(1), tracker.idle()).await;
        }
        Ok(())
    }
}

async fn connection(
    inner: Arc<Inner>,
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    conn: Arc<ConnInfo>,
) {
    let _ = stream.set_nodelay(true);
    let mut stop = conn.stop.clone();
    match tls {
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(inner.config.tls_handshake_timeout, acceptor.accept(stream));
            let stream = tokio::select! {
                result = handshake => match result {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(client = %conn.client, error = %e, "TLS handshake failed");
                        count(&inner, "tls_failed");
                        return;
                    }
                    Err(_) => {
                        count(&inner, "tls_failed");
                        return;
                    }
                },
                _ = stop.wait_for(|s| *s != Stop::Running) => return,
            };
            // A TLS-ALPN-01 validation (RFC 8737) ends with its handshake: the CA has
            // seen the challenge certificate and sends no request.
            if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
                count(&inner, "acme_tls_alpn");
                return;
            }
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            serve_io(inner, TokioIo::new(stream), h2, conn).await;
        }
        None => {
            let detect = tokio::time::timeout(
                inner.config.header_read_timeout,
                starts_with_h2_preface(&stream),
            );
            let h2 = tokio::select! {
                result = detect => match result {
                    Ok(h2) => h2,
                    Err(_) => return,
                },
                _ = stop.wait_for(|s| *s != Stop::Running) => return,
            };
            serve_io(inner, TokioIo::new(stream), h2, conn).await;
        }
    }
}

fn count(inner: &Inner, protocol: &'static str) {
    inner
        .metrics
        .connections
        .get_or_create(&ProtocolLabels { protocol })
        .inc();
}

async fn serve_io<T>(inner: Arc<Inner>, io: TokioIo<T>, h2: bool, conn: Arc<ConnInfo>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stop = conn.stop.clone();
    let service = {
        let (inner, conn) = (inner.clone(), conn.clone());
        service_fn(move |req| proxy::handle(inner.clone(), conn.clone(), req))
    };
    if h2 {
        count(&inner, "h2");
        drive(inner.h2.serve_connection(io, service), stop, None).await;
    } else {
        count(&inner, "http1");
        let idle = Some((&conn.idle, inner.config.header_read_timeout));
        drive(
            inner.h1.serve_connection(io, service).with_upgrades(),
            stop,
            idle,
        )
        .await;
    }
}
