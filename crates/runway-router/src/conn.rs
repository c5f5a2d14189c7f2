//! A client connection's state, shared by the listener that serves it and the requests
//! on it: who the client is, whether the listener is stopping, whether the connection is
//! busy (for its idle timeout), and where its last host led.

use crate::table::RouteCache;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

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

    pub(crate) async fn idle(&self) {
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

/// How long a connection has had no request in flight, for the header read timeout
/// (slowloris) and the idle timeout of keep-alive and HTTP/2 connections. hyper would arm, register and drop a timer for every request; here a
/// request costs two atomic updates, and one timer per connection looks now and then.
#[derive(Debug)]
pub(crate) struct IdleClock {
    pub(crate) epoch: Instant,
    /// Requests whose response has not ended.
    busy: AtomicU32,
    /// Milliseconds from `epoch` to when the last response ended (or the connection
    /// began).
    since: AtomicU64,
    /// Whether the connection's watchdog keeps its requests' deadlines (see
    /// [`timeout_at`]).
    keeps_deadlines: AtomicBool,
    /// The deadline of the request waiting for its instance, in milliseconds from
    /// `epoch` rounded up; `u64::MAX` when none waits.
    request_deadline: AtomicU64,
}

impl IdleClock {
    pub(crate) fn new() -> Self {
        IdleClock {
            epoch: Instant::now(),
            busy: AtomicU32::new(0),
            since: AtomicU64::new(0),
            keeps_deadlines: AtomicBool::new(false),
            request_deadline: AtomicU64::new(u64::MAX),
        }
    }

    /// From now on the connection's watchdog (`server::drive`) wakes its task at its
    /// requests' deadlines: only for a connection whose requests run in the task that
    /// drives it (HTTP/1.1; HTTP/2 runs each stream in a task of its own).
    pub(crate) fn keep_deadlines(&self) {
        self.keeps_deadlines.store(true, Ordering::Release);
    }

    /// The deadline of the request waiting for its instance, if one does.
    pub(crate) fn request_deadline(&self) -> Option<Instant> {
        match self.request_deadline.load(Ordering::Acquire) {
            u64::MAX => None,
            ms => Some(self.epoch + Duration::from_millis(ms)),
        }
    }

    fn set_request_deadline(&self, deadline: Option<Instant>) {
        let ms = deadline.map_or(u64::MAX, |d| {
            // Rounded up: the watchdog must not wake the request before its time.
            let after = d.saturating_duration_since(self.epoch);
            (after.as_millis() as u64 + u64::from(after.subsec_nanos() % 1_000_000 != 0))
                .min(u64::MAX - 1)
        });
        self.request_deadline.store(ms, Ordering::Release);
    }

    /// When the connection will have been idle for `timeout`, or None while it serves a
    /// request.
    pub(crate) fn deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.since.load(Ordering::Acquire);
        Some(self.epoch + Duration::from_millis(since) + timeout)
    }
}

/// `future`'s output, or None if `deadline` passes first; for a request on `conn`.
///
/// On an HTTP/1.1 connection ([`IdleClock::keep_deadlines`]) the deadline costs no timer
/// of its own: the request's future runs in the connection's task, whose watchdog
/// (`server::drive`) is moved earlier to the deadline if need be and wakes the task then,
/// and each time the future waits it reads the clock once. A timer of its own (tokio's:
/// registered, polled and removed) cost about 700 instructions per request, 3 % of the
/// router's. Elsewhere (HTTP/2 streams, which run in tasks of their own) tokio's timeout.
/// The future is pinned by the caller and only borrowed here: moving it in would copy
/// it whole (a request's is large; callgrind: about 400 instructions per request).
pub(crate) async fn timeout_at<F: Future>(
    conn: &ConnInfo,
    deadline: Instant,
    mut future: std::pin::Pin<&mut F>,
) -> Option<F::Output> {
    let clock = &conn.idle;
    if !clock.keeps_deadlines.load(Ordering::Acquire) {
        return tokio::time::timeout_at(deadline.into(), future).await.ok();
    }
    /// Clears the connection's request deadline however the wait ends.
    struct Clear<'a>(&'a IdleClock);
    impl Drop for Clear<'_> {
        fn drop(&mut self) {
            self.0.set_request_deadline(None);
        }
    }
    let _clear = Clear(clock);
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending if Instant::now() >= deadline => Poll::Ready(None),
        Poll::Pending => {
            clock.set_request_deadline(Some(deadline));
            Poll::Pending
        }
    })
    .await
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
    pub route: std::sync::Mutex<Option<RouteCache>>,
    /// Slots for requests that hold an instance while their body is still arriving.
    pub uploads: Arc<tokio::sync::Semaphore>,
}
