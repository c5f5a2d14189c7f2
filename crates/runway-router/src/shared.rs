//! What every listener and request of one router shares: its settings, the route table,
//! the live revision state behind it, the measurements, the access log and the ACME
//! responder. Built once by [`crate::Router::new`].

use crate::access_log::AccessLog;
use crate::acme::AcmeResponder;
use crate::balance::{Demand, EjectionPolicy};
use crate::config::RouterConfig;
use crate::metrics::{LiveRevisions, RevisionStats, RouterMetrics};
use crate::table::{Live, Table};
use crate::upstream::UpstreamSettings;
use arc_swap::{ArcSwap, ArcSwapOption};
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::watch;

/// State shared by every request.
pub(crate) struct Shared {
    pub config: RouterConfig,
    pub table: ArcSwap<Table>,
    pub live: Arc<LiveState>,
    pub metrics: RouterMetrics,
    pub demand: Arc<watch::Sender<Demand>>,
    pub https_port: AtomicU16,
    pub acme: ArcSwapOption<Arc<dyn AcmeResponder>>,
    /// Pages for hosts that are not routed yet (custom domains being validated).
    pub notices: ArcSwap<std::collections::HashMap<String, String>>,
    /// Local addresses of private listeners, with their names.
    pub private: ArcSwap<std::collections::HashMap<std::net::IpAddr, Arc<str>>>,
    pub access_log: Option<AccessLog>,
    pub upstream: UpstreamSettings,
    pub ejection: EjectionPolicy,
    pub h1: hyper::server::conn::http1::Builder,
    pub h2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The public HTTPS port redirects point at (0 or 443: none in the URL).
    pub(crate) fn https_port(&self) -> u16 {
        self.https_port.load(Ordering::Relaxed)
    }
}

/// Live revision state, shared with the metrics collector.
#[derive(Debug, Default)]
pub(crate) struct LiveState {
    live: Mutex<Live>,
}

impl LiveState {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl LiveRevisions for LiveState {
    fn snapshot(&self) -> Vec<RevisionStats> {
        let live = self.lock();
        let now = Instant::now();
        let mut stats: Vec<RevisionStats> = live
            .revisions
            .values()
            .map(|r| r.stats(false, now))
            .chain(live.draining.iter().map(|r| r.stats(true, now)))
            .collect();
        stats.sort_by(|a, b| (&a.service_id, &a.revision_id).cmp(&(&b.service_id, &b.revision_id)));
        stats
    }
}
