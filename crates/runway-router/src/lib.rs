//! runway's L7 request router (App Runner's request router and Knative's activator in
//! one): it terminates TLS (certificates by SNI), speaks HTTP/1.1 and HTTP/2 with
//! clients, finds the service by host and its revision by percent or tag, and sends each
//! request to the instance with the fewest requests in flight, never more than the
//! service's MaxConcurrency per instance. When every instance is full, or a revision
//! has none yet (scale from zero), requests wait in a bounded FIFO queue per revision and
//! the router publishes the demand. Bodies stream both ways, upgrades (WebSockets, also
//! over HTTP/2) and gRPC (h2c to instances) pass through; the request timeout ends where
//! the response begins, and streams live while bytes move (the idle timeout). Instances
//! whose requests keep failing are ejected from balancing (passive health checking).
//! Every revision's concurrency, requests, latency, bytes and ejections are measured.
//! Its connection handling (limits, timeouts, graceful shutdown) also serves runway's API
//! and registry listeners ([`AppServer`]), with a cap on connections in all and per
//! client address. A connection made to a private listener's address reaches only the
//! private services routed there, and one to a private listener whose address is no
//! longer named is closed; IPv6 clients reach only dual-stack services.
//!
//! The router reads routes and publishes load; it must never call the controller, never
//! buffer a whole body, never block a request on logging, never put a host or path from
//! a request into a metric label, and never panic on anything a client sends.

#![forbid(unsafe_code)]

// Layers, each using only those above it (no module imports another in a circle):
// Basics: settings, routes, errors, header and host parsing, measurements, the log.
mod access_log;
mod acme;
mod config;
mod error;
mod grpc;
mod headers;
pub mod host;
pub mod metrics;
mod rand;
mod routes;
mod text;

// Connections to instances and the request body sent over them.
mod body;
mod upstream;

// Balancing, queueing and the compiled route table.
mod balance;
mod table;

// The request path: a connection's and the router's shared state, then each request's
// steps from arrival to response.
mod conn;
mod shared;

mod proxy;

// Listeners (and `lib` itself, with the public API).
pub mod app;
mod server;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

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
        // The one pass over the names agrees with the lookups it saves.
        let names = crate::headers::RequestNames::of(&headers);
        assert_eq!(names.upgrade, headers.contains_key(http::header::UPGRADE));
        assert_eq!(names.expect, headers.contains_key(http::header::EXPECT));
        if !names.hop_by_hop {
            let mut stripped = headers.clone();
            crate::headers::strip_hop_by_hop(&mut stripped, false);
            assert_eq!(stripped, headers);
        }
        let mut response = headers.clone();
        crate::headers::strip_hop_by_hop(&mut headers, upgrade);
        let client = crate::headers::client_value([127, 0, 0, 1].into());
        let host = HeaderValue::from_str(&host).unwrap_or(HeaderValue::from_static(""));
        let forwarded = crate::headers::Forwarded::new(&headers, &client, "https", host.clone());
        // Written straight into a request head, the headers parse back.
        let mut written = Vec::new();
        forwarded.write_host(&mut written);
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
        // The instance sees the host the request was routed by, no client Forwarded, and
        // the client's own address as X-Real-IP.
        assert_eq!(headers.get(http::header::HOST), Some(&host));
        assert!(!headers.contains_key(http::header::FORWARDED));
        assert_eq!(headers.get("x-real-ip"), Some(&client));
    }

    /// Parses `data` as a chunk-size line of a chunked response, checking that what is
    /// accepted is a CRLF-ended line of hex digits (then, optionally, blanks and
    /// extensions) whose value is the size returned.
    pub fn chunk_line(data: &[u8]) {
        let Ok(Some((len, size))) = crate::upstream::http1::parse_chunk_line(data) else {
            return;
        };
        assert!(len >= 3 && len <= data.len());
        assert_eq!(&data[len - 2..len], b"\r\n");
        let line = &data[..len - 2];
        assert!(!line.contains(&b'\n') && !line.contains(&b'\r'));
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        assert!((1..=16).contains(&digits));
        let text = std::str::from_utf8(&line[..digits]).unwrap();
        assert_eq!(u64::from_str_radix(text, 16), Ok(size));
        let rest = line[digits..].trim_ascii_start();
        assert!(rest.is_empty() || rest[0] == b';');
    }

    /// Parses `data` as a `grpc-timeout` value, and percent-encodes it as a
    /// `grpc-message`: accepted timeouts are 1 to 8 digits and a unit, and a message
    /// decodes back to itself.
    pub fn grpc(data: &[u8]) {
        if let Some(timeout) = crate::grpc::parse_timeout(data) {
            assert!((2..=9).contains(&data.len()));
            assert!(b"HMSmun".contains(&data[data.len() - 1]));
            assert!(timeout <= std::time::Duration::from_secs(99_999_999 * 3600));
        }
        let message = String::from_utf8_lossy(data);
        let encoded = crate::grpc::encode_message(&message);
        let mut decoded = Vec::new();
        let mut bytes = encoded.as_bytes().iter();
        while let Some(&b) = bytes.next() {
            if b == b'%' {
                let hex = [*bytes.next().unwrap(), *bytes.next().unwrap()];
                let hex = std::str::from_utf8(&hex).unwrap();
                decoded.push(u8::from_str_radix(hex, 16).unwrap());
            } else {
                assert!((0x20..0x7f).contains(&b));
                decoded.push(b);
            }
        }
        assert_eq!(decoded, message.as_bytes());
    }
}

pub use acme::{ACME_CHALLENGE_PREFIX, AcmeResponder};
pub use app::{AppServer, ConnectionCaps, ListenerMetrics};
pub use balance::{Demand, WaitingRevision};
pub use config::{AccessLogConfig, RouterConfig};
pub use error::{Origin, RouterError};
pub use metrics::RevisionStats;
pub use routes::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_REQUEST_BODY,
    DEFAULT_REQUEST_TIMEOUT, Endpoint, MAX_IDLE_TIMEOUT, MAX_REQUEST_TIMEOUT, QueueConfig,
    RevisionRoute, RouteTable, RoutesError, ServiceRoute, TAG_SEPARATOR, UNLIMITED_REQUEST_BODY,
    Upstream,
};
pub use server::Workers;

use arc_swap::{ArcSwap, ArcSwapOption};
use runway_telemetry::Registry;
use shared::{LiveState, Shared};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use tokio::sync::watch;

/// Where an instance stands in the router, for draining it before it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstanceLoad {
    /// The route table sends it new requests.
    pub routed: bool,
    /// Requests on it now (upgraded connections count as one each), also after it left
    /// the route table.
    pub in_flight: u32,
    /// Ejected from balancing now (see [`Router::ejected_instances`]).
    pub ejected: bool,
}

/// An instance ejected from balancing because requests to it failed in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EjectedInstance {
    pub service_id: String,
    pub revision_id: String,
    pub instance_id: String,
    /// Times ejected since it last answered a request (each ejection twice as long).
    pub ejections: u32,
    /// When its ejection ends (it gets requests again, and is ejected again at its
    /// first failure).
    pub until: std::time::Instant,
}

/// The request router: cheap to clone, shared by every listener and the controller.
#[derive(Clone, Debug)]
pub struct Router {
    inner: Arc<Shared>,
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
        let (h1, h2) = server::http_builders(&config);
        let upstream = upstream::UpstreamSettings {
            connect_timeout: config.connect_timeout,
            idle_timeout: config.upstream_idle_timeout,
            max_idle: config.max_idle_per_endpoint,
            h2_keepalive: config.h2_keepalive,
        };
        let ejection = balance::EjectionPolicy {
            after: config.eject_after_failures,
            base: config.endpoint_backoff,
            max: config.max_ejection,
        };
        let (demand, _) = watch::channel(Demand::default());
        Ok(Router {
            inner: Arc::new(Shared {
                config,
                table: ArcSwap::from_pointee(table::Table::default()),
                live,
                metrics,
                demand: Arc::new(demand),
                https_port: AtomicU16::new(0),
                acme: ArcSwapOption::empty(),
                notices: ArcSwap::from_pointee(Default::default()),
                private: ArcSwap::from_pointee(Default::default()),
                access_log,
                upstream,
                ejection,
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
                load.ejected |= endpoint.ejected_until().is_some();
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

    /// Instances ejected from balancing now (passive health checking): requests to them
    /// failed [`RouterConfig::eject_after_failures`] times in a row, their connections
    /// refused or reset or no response within the request timeout. A hung app whose
    /// TCP health check still passes ends up here. The router sends an ejected instance
    /// no request while its revision has another, sends it requests again when its
    /// ejection ends, and ejects it again, for twice as long, at its next failure.
    ///
    /// For the controller: an instance listed here should be replaced (a new one
    /// started, this one drained with [`Router::instance_load`] and stopped); its
    /// ejection only protects traffic in the meantime.
    pub fn ejected_instances(&self) -> Vec<EjectedInstance> {
        let live = self.inner.live.lock();
        let mut ejected = Vec::new();
        for revision in live.revisions.values() {
            for endpoint in revision.endpoints().iter() {
                if let Some(until) = endpoint.ejected_until() {
                    ejected.push(EjectedInstance {
                        service_id: revision.service_id.to_string(),
                        revision_id: revision.id.to_string(),
                        instance_id: endpoint.instance_id.to_string(),
                        ejections: endpoint.ejections(),
                        until,
                    });
                }
            }
        }
        ejected.sort_by(|a, b| {
            (&a.service_id, &a.revision_id, &a.instance_id).cmp(&(
                &b.service_id,
                &b.revision_id,
                &b.instance_id,
            ))
        });
        ejected
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
    /// A listener served with [`Router::serve_private`] closes the connections made to
    /// an address this leaves out.
    pub fn set_private_addresses(
        &self,
        addresses: std::collections::HashMap<std::net::IpAddr, String>,
    ) {
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
