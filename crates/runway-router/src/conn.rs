//! A client connection's state, shared by the listener that serves it and the requests
//! on it: who the client is, whether the listener is stopping, whether the connection is
//! busy (for its idle timeout), and where its last host led.

use crate::table::RouteCache;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
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
}

impl IdleClock {
    pub(crate) fn new() -> Self {
        IdleClock {
            epoch: Instant::now(),
            busy: AtomicU32::new(0),
            since: AtomicU64::new(0),
        }
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
