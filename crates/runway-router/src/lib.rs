//! runway's L7 request router (App Runner's request router and Knative's activator in
//! one): it terminates TLS (certificates by SNI), speaks HTTP/1.1 and HTTP/2 with
//! clients, finds the service by host and its revision by percent or tag, and sends each
//! request to the instance with the fewest requests in flight, never more than the
//! service's MaxConcurrency per instance. When every instance is full, or a revision
//! has none yet (scale from zero), requests wait in a bounded FIFO queue per revision and
//! the router publishes the demand. Bodies stream both ways, upgrades (WebSockets) and
//! gRPC (h2c to instances) pass through, and every revision's concurrency, requests,
//! latency and bytes are measured. A connection made to a private listener's address
//! reaches only the private services routed there; IPv6 clients reach only dual-stack
//! services.
//!
//! The router reads routes and publishes load; it must never call the controller, never
//! buffer a whole body, never block a request on logging, never put a host or path from
//! a request into a metric label, and never panic on anything a client sends.

#![forbid(unsafe_code)]

mod access_log;
mod balance;
mod body;
mod config;
mod error;
mod headers;
pub mod host;
pub mod metrics;
mod proxy;
mod rand;
mod routes;
mod server;
mod table;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
mod text;
mod upstream;

/// Entry points for the fuzz targets in `fuzz/` (not an API).
#[doc(hidden)]
pub mod fuzzing {
    use http::header::{HeaderMap, HeaderName, HeaderValue};

    /// Parses `data` as a Host header and as a request target, checking what every
    /// accepted host looks like.
    pub fn host(data: &[u8]) {
        if let Ok(host) = crate::host::parse_host(data) {
            assert!(!host.is_empty() && host.len() <= 253 + 2);
            assert!(!host.bytes().any(|b| b.is_ascii_uppercase()));
            assert!(host.starts_with('[') || !host.contains(':'));
        }
        if let Ok(uri) = http::Uri::try_from(data)
            && let Ok(req) = http::Request::get(uri).body(())
        {
            let _ = crate::host::request_host(&req);
        }
    }

    /// Builds a header map from `data` (one `name: value` a line) and runs every rewrite
    /// the router applies to it, checking that hop-by-hop headers are gone afterwards.
    pub fn headers(data: &[u8]) {
        let mut headers = HeaderMap::new();
        let mut host = String::new();
        for line in data.split(|&b| b == b'\n') {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                if name == http::header::HOST {
                    host = String::from_utf8_lossy(value.as_bytes()).into_owned();
                }
                headers.append(name, value);
            }
        }
        let upgrade = crate::headers::is_upgrade_request(&headers);
        let mut response = headers.clone();
        crate::headers::strip_hop_by_hop(&mut headers, upgrade);
        let client = crate::headers::client_value([127, 0, 0, 1].into());
        let host = HeaderValue::from_str(&host).unwrap_or(HeaderValue::from_static(""));
        let forwarded = crate::headers::Forwarded::new(&headers, &client, "https", host);
        // Written straight into a request head, the headers parse back.
        let mut written = Vec::new();
        forwarded.write(&mut written);
        written.extend_from_slice(b"\r\n");
        let mut parsed = [httparse::EMPTY_HEADER; 8];
        assert!(matches!(
            httparse::parse_headers(&written, &mut parsed),
            Ok(httparse::Status::Complete(_))
        ));
        forwarded.apply(&mut headers);
        assert_eq!(
            headers.get(&crate::headers::X_REQUEST_ID),
            Some(forwarded.request_id())
        );
        for name in [
            "keep-alive",
            "transfer-encoding",
            "trailer",
            "proxy-authorization",
        ] {
            assert!(!headers.contains_key(name), "{name} survived");
        }
        if !upgrade {
            assert!(!headers.contains_key(http::header::CONNECTION));
            assert!(!headers.contains_key(http::header::UPGRADE));
        }
        crate::headers::strip_hop_by_hop(&mut response, false);
        assert!(!response.contains_key(http::header::CONNECTION));
    }
}

pub use balance::{Demand, WaitingRevision};
pub use config::{AccessLogConfig, RouterConfig};
pub use error::{Origin, RouterError};
pub use proxy::{ACME_CHALLENGE_PREFIX, AcmeResponder};
pub use routes::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_REQUEST_BODY,
    DEFAULT_REQUEST_TIMEOUT, Endpoint, MAX_IDLE_TIMEOUT, MAX_REQUEST_TIMEOUT, QueueConfig,
    RevisionRoute, RouteTable, RoutesError, ServiceRoute, TAG_SEPARATOR, UNLIMITED_REQUEST_BODY,
    Upstream,
};
pub use server::Workers;

use arc_swap::{ArcSwap, ArcSwapOption};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use runway_telemetry::Registry;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;

/// The number of request headers hyper's HTTP/1.1 server accepts when no limit is set.
const HYPER_MAX_HEADERS: usize = 100;

/// One revision's load, as the autoscaler reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionStats {
    pub service_id: String,
    pub revision_id: String,
    /// Healthy instances in the route table.
    pub endpoints: usize,
    /// Requests in flight now (upgraded connections count as one each).
    pub in_flight: u32,
    /// Requests waiting for capacity now.
    pub queued: usize,
    /// Requests in flight, time-weighted over the last complete second.
    pub average_concurrency: f64,
    /// The integral of requests in flight since the revision appeared, in
    /// request-seconds; differences over any window give that window's average.
    pub concurrency_seconds: f64,
    /// Requests waiting for capacity, time-weighted over the last complete second.
    pub average_queued: f64,
    /// The integral of requests waiting since the revision appeared, in request-seconds.
    pub queued_seconds: f64,
    /// Requests answered so far.
    pub requests: u64,
    /// Left the route table; finishing the requests it has.
    pub draining: bool,
}

/// Where an instance stands in the router, for draining it before it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceLoad {
    /// The route table sends it new requests.
    pub routed: bool,
    /// Requests on it now (upgraded connections count as one each), also after it left
    /// the route table.
    pub in_flight: u32,
}

/// The request router: cheap to clone, shared by every listener and the controller.
#[derive(Clone, Debug)]
pub struct Router {
    inner: Arc<Inner>,
}

/// State shared by every request.
pub(crate) struct Inner {
    pub config: RouterConfig,
    pub table: ArcSwap<table::Table>,
    live: Arc<LiveState>,
    pub metrics: metrics::RouterMetrics,
    demand: Arc<watch::Sender<Demand>>,
    https_port: AtomicU16,
    pub acme: ArcSwapOption<Arc<dyn AcmeResponder>>,
    /// Pages for hosts that are not routed yet (custom domains being validated).
    pub notices: ArcSwap<std::collections::HashMap<String, String>>,
    /// Local addresses of private listeners, with their names.
    pub private: ArcSwap<HashMap<IpAddr, Arc<str>>>,
    pub access_log: Option<access_log::AccessLog>,
    pub upstream: upstream::UpstreamSettings,
    pub h1: hyper::server::conn::http1::Builder,
    pub h2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// The public HTTPS port redirects point at (0 or 443: none in the URL).
    pub(crate) fn https_port(&self) -> u16 {
        self.https_port.load(Ordering::Relaxed)
    }
}

/// Live revision state, shared with the metrics collector.
#[derive(Debug, Default)]
struct LiveState {
    live: Mutex<table::Live>,
}

impl LiveState {
    fn lock(&self) -> std::sync::MutexGuard<'_, table::Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn stats_of(revision: &balance::RevisionState, draining: bool, now: Instant) -> RevisionStats {
    let (average, total) = revision.meter.read(1, now);
    let (average_queued, queued_seconds) = revision.queue_meter.read(1, now);
    RevisionStats {
        service_id: revision.service_id.to_string(),
        revision_id: revision.id.to_string(),
        endpoints: revision.endpoints().len(),
        in_flight: revision.in_flight(),
        queued: revision.queued(),
        average_concurrency: average,
        concurrency_seconds: total,
        average_queued,
        queued_seconds,
        requests: revision.metrics.requests(),
        draining,
    }
}

impl metrics::LiveRevisions for LiveState {
    fn snapshot(&self) -> Vec<RevisionStats> {
        let live = self.lock();
        let now = Instant::now();
        let mut stats: Vec<RevisionStats> = live
            .revisions
            .values()
            .map(|r| stats_of(r, false, now))
            .chain(live.draining.iter().map(|r| stats_of(r, true, now)))
            .collect();
        stats.sort_by(|a, b| (&a.service_id, &a.revision_id).cmp(&(&b.service_id, &b.revision_id)));
        stats
    }
}

impl Router {
    /// A router with an empty route table (every host answers 404), registering its
    /// metrics in `registry`. Starts the access log writer thread if configured.
    pub fn new(config: RouterConfig, registry: &mut Registry) -> std::io::Result<Self> {
        let live = Arc::new(LiveState::default());
        let metrics = metrics::RouterMetrics::register(registry, live.clone());
        let access_log = match &config.access_log {
            Some(log) => Some(access_log::AccessLog::start(
                log.clone(),
                metrics.access_log_dropped.clone(),
            )?),
            None => None,
        };
        let mut h1 = hyper::server::conn::http1::Builder::new();
        // The header read timeout is the connection's (`server::IdleClock`): hyper's
        // costs a timer allocated, registered and dropped for every request.
        h1.header_read_timeout(None)
            .max_header_size(config.max_header_bytes.max(8192))
            .keep_alive(true);
        // hyper parses into a fixed array of its default size, but into a vector filled
        // element by element (about 4 % of the router's instructions per request) when
        // any limit is set, even the same one.
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
        let upstream = upstream::UpstreamSettings {
            connect_timeout: config.connect_timeout,
            idle_timeout: config.upstream_idle_timeout,
            max_idle: config.max_idle_per_endpoint,
            h2_keepalive: config.h2_keepalive,
        };
        let (demand, _) = watch::channel(Demand::default());
        Ok(Router {
            inner: Arc::new(Inner {
                config,
                table: ArcSwap::from_pointee(table::Table::default()),
                live,
                metrics,
                demand: Arc::new(demand),
                https_port: AtomicU16::new(0),
                acme: ArcSwapOption::empty(),
                notices: ArcSwap::from_pointee(Default::default()),
                private: ArcSwap::from_pointee(HashMap::new()),
                access_log,
                upstream,
                h1,
                h2,
            }),
        })
    }

    /// Replaces the route table atomically. Requests in flight are not disturbed:
    /// instances that stay keep their counts and connections; a revision that leaves
    /// finishes its requests in flight, and its queued requests choose again among the
    /// service's current revisions. An invalid table is refused whole and the current
    /// one stays.
    pub fn set_routes(&self, routes: RouteTable) -> Result<(), RoutesError> {
        routes.validate()?;
        let mut guard = self.inner.live.lock();
        let live = &mut *guard;
        let built = table::build(routes, live, &self.inner.metrics, &self.inner.demand);
        for (revision, endpoints, max_concurrency) in built.updates {
            for old in revision.endpoints().iter() {
                if !endpoints.iter().any(|e| Arc::ptr_eq(e, old)) {
                    live.left.push(Arc::downgrade(old));
                }
            }
            revision.update(endpoints, max_concurrency);
        }
        live.left.retain(|e| e.strong_count() > 0);
        self.inner.table.store(Arc::new(built.table));
        for revision in &built.retired {
            revision.retire();
        }
        live.revisions = built.revisions;
        live.draining.extend(built.retired);
        // Forget revisions that have finished draining (and were not brought back).
        let metrics = &self.inner.metrics;
        let revisions = &live.revisions;
        let mut draining = std::mem::take(&mut live.draining);
        draining.retain(|r| {
            if revisions.contains_key(&r.id) {
                return false;
            }
            let busy = r.in_flight() > 0 || r.queued() > 0;
            if !busy {
                metrics.forget(&r.metrics);
            }
            busy
        });
        live.draining = draining;
        Ok(())
    }

    /// Every revision's load (live ones, then those draining), sorted by service and
    /// revision id.
    pub fn stats(&self) -> Vec<RevisionStats> {
        use metrics::LiveRevisions as _;
        let mut stats = self.inner.live.snapshot();
        // Draining revisions that have finished are of no interest to the autoscaler.
        stats.retain(|s| !s.draining || s.in_flight > 0 || s.queued > 0);
        stats
    }

    /// Whether the route table sends `instance_id` requests, and how many it has in
    /// flight: the controller stops an instance once it is out of the table and idle.
    pub fn instance_load(&self, instance_id: &str) -> InstanceLoad {
        let live = self.inner.live.lock();
        let mut load = InstanceLoad::default();
        let mut count = |endpoint: &balance::EndpointState| {
            if *endpoint.instance_id == *instance_id {
                load.in_flight += endpoint.in_flight();
                true
            } else {
                false
            }
        };
        for revision in live.revisions.values() {
            for endpoint in revision.endpoints().iter() {
                load.routed |= count(endpoint);
            }
        }
        for revision in &live.draining {
            for endpoint in revision.endpoints().iter() {
                count(endpoint);
            }
        }
        for endpoint in live.left.iter().filter_map(std::sync::Weak::upgrade) {
            count(&endpoint);
        }
        load
    }

    /// Revisions with requests waiting for capacity, updated when one starts or stops
    /// waiting: the controller scales them (from zero, too).
    pub fn demand(&self) -> watch::Receiver<Demand> {
        self.inner.demand.subscribe()
    }

    /// The public HTTPS port, for HTTP to HTTPS redirects (443 or 0: none in the URL).
    pub fn set_https_port(&self, port: u16) {
        self.inner.https_port.store(port, Ordering::Relaxed);
    }

    /// Answers requests for these hosts (lowercase, without port), when the route table
    /// does not route them, with a 503 page that shows the message: a custom domain that
    /// is being validated or failed gets a page that says so, never another service.
    /// Replaces the previous notices.
    pub fn set_host_notices(&self, notices: std::collections::HashMap<String, String>) {
        self.inner.notices.store(Arc::new(notices));
    }

    /// Names the local addresses that are private listeners (App Runner's interface
    /// endpoints): a connection made to one of them, on any listener, reaches only the
    /// services whose route names that listener in `private_listeners`, and public
    /// services are not served there. Connections keep the scope they were accepted with.
    pub fn set_private_addresses(&self, addresses: HashMap<IpAddr, String>) {
        self.inner.private.store(Arc::new(
            addresses
                .into_iter()
                .map(|(ip, name)| (ip, Arc::from(name)))
                .collect(),
        ));
    }

    /// Answers ACME HTTP-01 challenges on plain HTTP with `responder` (or stops).
    pub fn set_acme_responder(&self, responder: Option<Arc<dyn AcmeResponder>>) {
        self.inner.acme.store(responder.map(Arc::new));
    }
}
