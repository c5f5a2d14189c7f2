//! The router's measurements. Metric names are defined here and nowhere else; labels are
//! service and revision ids (and fixed words), never hosts or paths from requests.
//!
//! Concurrency is measured as Knative's queue-proxy does: the time spent at each level
//! of requests in flight, averaged over each second.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use runway_telemetry::Registry;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// `runway_router_requests_total{service, revision, class}`: requests answered, by status
/// class (`1xx` ... `5xx`), counted when the response ends.
pub const REQUESTS: &str = "runway_router_requests";
/// `runway_router_request_duration_seconds{service, revision}`: from the request's
/// arrival to the end of its response.
pub const DURATION: &str = "runway_router_request_duration_seconds";
/// `runway_router_request_bytes_total{service, revision}`: request body bytes forwarded.
pub const REQUEST_BYTES: &str = "runway_router_request_bytes";
/// `runway_router_response_bytes_total{service, revision}`: response body bytes returned.
pub const RESPONSE_BYTES: &str = "runway_router_response_bytes";
/// `runway_router_errors_total{service, revision, kind}`: requests the router answered
/// itself, by [`crate::RouterError::label`].
pub const ERRORS: &str = "runway_router_errors";
/// `runway_router_retries_total{service, revision}`: requests sent to another instance
/// after one refused the connection.
pub const RETRIES: &str = "runway_router_retries";
/// `runway_router_ejections_total{service, revision}`: instances ejected from balancing
/// after failures in a row (passive health checking).
pub const EJECTIONS: &str = "runway_router_ejections";
/// `runway_router_ejected_instances{service, revision}`: instances ejected now.
pub const EJECTED: &str = "runway_router_ejected_instances";
/// `runway_router_unrouted_requests_total{kind}`: requests that matched no service
/// (`unknown_host`, `bad_host`).
pub const UNROUTED: &str = "runway_router_unrouted_requests";
/// `runway_router_connections_total{protocol}`: client connections accepted, by protocol
/// (`http1`, `h2`, `tls_failed`).
pub const CONNECTIONS: &str = "runway_router_connections";
/// `runway_router_open_connections`: client connections open now (all listeners).
pub const OPEN_CONNECTIONS: &str = "runway_router_open_connections";
/// `runway_router_access_log_dropped_total`: access log lines dropped because the writer
/// fell behind.
pub const ACCESS_LOG_DROPPED: &str = "runway_router_access_log_dropped";
/// `runway_router_in_flight{service, revision}`: requests in flight now (upgraded
/// connections count as one each).
pub const IN_FLIGHT: &str = "runway_router_in_flight";
/// `runway_router_queued{service, revision}`: requests waiting for capacity now.
pub const QUEUED: &str = "runway_router_queued";
/// `runway_router_endpoints{service, revision}`: healthy instances in the route table.
pub const ENDPOINTS: &str = "runway_router_endpoints";
/// `runway_router_concurrency_average{service, revision}`: requests in flight,
/// time-weighted over the last complete second.
pub const CONCURRENCY_AVERAGE: &str = "runway_router_concurrency_average";
/// `runway_router_concurrency_seconds_total{service, revision}`: the integral of requests
/// in flight over time; its rate is the average concurrency over any window.
pub const CONCURRENCY_SECONDS: &str = "runway_router_concurrency_seconds";
/// `runway_router_queued_average{service, revision}`: requests waiting for capacity,
/// time-weighted over the last complete second.
pub const QUEUED_AVERAGE: &str = "runway_router_queued_average";
/// `runway_router_queued_seconds_total{service, revision}`: the integral of requests
/// waiting over time.
pub const QUEUED_SECONDS: &str = "runway_router_queued_seconds";

/// One revision's load, as the autoscaler reads it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RevisionStats {
    pub service_id: String,
    pub revision_id: String,
    /// Healthy instances in the route table.
    pub endpoints: usize,
    /// Of those, instances ejected from balancing now (passive health checking).
    pub ejected: usize,
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

/// Labels of a revision's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RevisionLabels {
    pub service: String,
    pub revision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ClassLabels {
    pub service: String,
    pub revision: String,
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ErrorLabels {
    pub service: String,
    pub revision: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProtocolLabels {
    pub protocol: &'static str,
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The families every revision's handles come from.
#[derive(Debug, Clone)]
pub(crate) struct RouterMetrics {
    requests: Family<ClassLabels, Counter>,
    duration: Family<RevisionLabels, Histogram>,
    request_bytes: Family<RevisionLabels, Counter>,
    response_bytes: Family<RevisionLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    retries: Family<RevisionLabels, Counter>,
    ejections: Family<RevisionLabels, Counter>,
    pub unrouted: Family<KindLabels, Counter>,
    pub connections: Family<ProtocolLabels, Counter>,
    pub open_connections: Gauge,
    pub access_log_dropped: Counter,
}

fn duration_histogram() -> Histogram {
    // 0.5 ms to about 2 minutes.
    Histogram::new(exponential_buckets(0.0005, 2.0, 19))
}

impl RouterMetrics {
    pub(crate) fn register(registry: &mut Registry, live: Arc<dyn LiveRevisions>) -> Self {
        let metrics = RouterMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            request_bytes: Family::default(),
            response_bytes: Family::default(),
            errors: Family::default(),
            retries: Family::default(),
            ejections: Family::default(),
            unrouted: Family::default(),
            connections: Family::default(),
            open_connections: Gauge::default(),
            access_log_dropped: Counter::default(),
        };
        registry.register(
            REQUESTS,
            "Requests answered, by service, revision and status class",
            metrics.requests.clone(),
        );
        registry.register(
            DURATION,
            "Time from a request's arrival to the end of its response",
            metrics.duration.clone(),
        );
        registry.register(
            REQUEST_BYTES,
            "Request body bytes forwarded to instances",
            metrics.request_bytes.clone(),
        );
        registry.register(
            RESPONSE_BYTES,
            "Response body bytes returned to clients",
            metrics.response_bytes.clone(),
        );
        registry.register(
            ERRORS,
            "Requests the router answered itself, by kind",
            metrics.errors.clone(),
        );
        registry.register(
            RETRIES,
            "Requests sent to another instance after a refused connection",
            metrics.retries.clone(),
        );
        registry.register(
            EJECTIONS,
            "Instances ejected from balancing after failures in a row",
            metrics.ejections.clone(),
        );
        registry.register(
            UNROUTED,
            "Requests that matched no service",
            metrics.unrouted.clone(),
        );
        registry.register(
            CONNECTIONS,
            "Client connections accepted, by protocol",
            metrics.connections.clone(),
        );
        registry.register(
            OPEN_CONNECTIONS,
            "Client connections open now",
            metrics.open_connections.clone(),
        );
        registry.register(
            ACCESS_LOG_DROPPED,
            "Access log lines dropped because the writer fell behind",
            metrics.access_log_dropped.clone(),
        );
        registry.register_collector(Box::new(LiveCollector { live }));
        metrics
    }

    /// Handles for one revision, so the hot path touches only atomics.
    pub(crate) fn revision(&self, service: &str, revision: &str) -> RevisionMetrics {
        let labels = RevisionLabels {
            service: service.to_string(),
            revision: revision.to_string(),
        };
        let classes = CLASSES.map(|class| {
            self.requests
                .get_or_create(&ClassLabels {
                    service: service.to_string(),
                    revision: revision.to_string(),
                    class,
                })
                .clone()
        });
        RevisionMetrics {
            requests: classes,
            duration: self.duration.get_or_create(&labels).clone(),
            request_bytes: self.request_bytes.get_or_create(&labels).clone(),
            response_bytes: self.response_bytes.get_or_create(&labels).clone(),
            retries: self.retries.get_or_create(&labels).clone(),
            ejections: self.ejections.get_or_create(&labels).clone(),
            errors: self.errors.clone(),
            labels,
        }
    }

    /// Drops a retired revision's series.
    pub(crate) fn forget(&self, metrics: &RevisionMetrics) {
        let labels = &metrics.labels;
        for class in CLASSES {
            self.requests.remove(&ClassLabels {
                service: labels.service.clone(),
                revision: labels.revision.clone(),
                class,
            });
        }
        self.duration.remove(labels);
        self.request_bytes.remove(labels);
        self.response_bytes.remove(labels);
        self.retries.remove(labels);
        self.ejections.remove(labels);
    }

    /// Counts an error answered for a service before a revision was chosen.
    pub(crate) fn service_error(&self, service: &str, kind: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels {
                service: service.to_string(),
                revision: String::new(),
                kind,
            })
            .inc();
    }
}

/// One revision's counters.
#[derive(Debug, Clone)]
pub(crate) struct RevisionMetrics {
    labels: RevisionLabels,
    requests: [Counter; 5],
    pub duration: Histogram,
    pub request_bytes: Counter,
    pub response_bytes: Counter,
    pub retries: Counter,
    pub ejections: Counter,
    errors: Family<ErrorLabels, Counter>,
}

impl RevisionMetrics {
    /// Counts a response with `status`.
    pub(crate) fn response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[class].inc();
    }

    /// Requests answered so far.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.iter().map(Counter::get).sum()
    }

    /// Counts an error the router answered for this revision.
    pub(crate) fn error(&self, kind: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels {
                service: self.labels.service.clone(),
                revision: self.labels.revision.clone(),
                kind,
            })
            .inc();
    }
}

/// What the scrape-time collector reads: the live values of every revision.
pub(crate) trait LiveRevisions: Send + Sync + std::fmt::Debug + 'static {
    fn snapshot(&self) -> Vec<RevisionStats>;
}

#[derive(Debug)]
struct LiveCollector {
    live: Arc<dyn LiveRevisions>,
}

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.live.snapshot();
        let labels = |s: &RevisionStats| RevisionLabels {
            service: s.service_id.clone(),
            revision: s.revision_id.clone(),
        };
        type Value = fn(&RevisionStats) -> f64;
        let gauges: [(&str, &str, Value); 6] = [
            (IN_FLIGHT, "Requests in flight now", |s| {
                f64::from(s.in_flight)
            }),
            (QUEUED, "Requests waiting for capacity now", |s| {
                s.queued as f64
            }),
            (ENDPOINTS, "Healthy instances in the route table", |s| {
                s.endpoints as f64
            }),
            (EJECTED, "Instances ejected from balancing now", |s| {
                s.ejected as f64
            }),
            (
                CONCURRENCY_AVERAGE,
                "Requests in flight, time-weighted over the last complete second",
                |s| s.average_concurrency,
            ),
            (
                QUEUED_AVERAGE,
                "Requests waiting for capacity, time-weighted over the last complete second",
                |s| s.average_queued,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(0.0);
            let mut family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            for s in &stats {
                let labels = labels(s);
                ConstGauge::new(value(s)).encode(family.encode_family(&labels)?)?;
            }
        }
        let counters: [(&str, &str, Value); 2] = [
            (
                CONCURRENCY_SECONDS,
                "Integral of requests in flight over time, in request-seconds",
                |s| s.concurrency_seconds,
            ),
            (
                QUEUED_SECONDS,
                "Integral of requests waiting for capacity over time, in request-seconds",
                |s| s.queued_seconds,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(0.0);
            let mut family = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            for s in &stats {
                let labels = labels(s);
                ConstCounter::new(value(s)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Seconds of history kept.
const HISTORY: usize = 60;

/// Requests in flight over time: the time spent at each concurrency level is summed and
/// closed into one-second windows, so the average over the last second is exact however
/// requests start and end (Knative's queue-proxy reports the same quantity).
#[derive(Debug)]
pub(crate) struct ConcurrencyMeter {
    state: Mutex<MeterState>,
}

#[derive(Debug)]
struct MeterState {
    origin: Instant,
    /// Index of the open window (seconds since `origin`).
    window: u64,
    /// Request-seconds accumulated in the open window.
    open: f64,
    /// Request-seconds since `origin`.
    total: f64,
    level: u32,
    /// When the meter last advanced, in nanoseconds after `origin` (a u64 lasts 584
    /// years): every reading costs one clock subtraction, the rest is integer work.
    last: u64,
    /// Request-seconds of the most recent closed windows, newest last.
    closed: std::collections::VecDeque<f64>,
}

/// Nanoseconds in a second.
const NANOS: u64 = 1_000_000_000;

/// `ns` nanoseconds in seconds.
fn seconds(ns: u64) -> f64 {
    ns as f64 / NANOS as f64
}

impl MeterState {
    fn advance(&mut self, now: Instant) {
        // A reading from before the last one counts as the last one.
        let now = (now.saturating_duration_since(self.origin).as_nanos() as u64).max(self.last);
        let target = now / NANOS;
        if target > self.window {
            let level = f64::from(self.level);
            let boundary = (self.window + 1) * NANOS;
            let part = level * seconds(boundary - self.last);
            self.open += part;
            self.total += part;
            self.closed.push_back(self.open);
            // Windows closed entirely at a constant level, capped at the history kept.
            let full = (target - self.window - 1).min(HISTORY as u64);
            for _ in 0..full {
                self.closed.push_back(level);
            }
            self.total += level * (target - self.window - 1) as f64;
            while self.closed.len() > HISTORY {
                self.closed.pop_front();
            }
            self.window = target;
            self.open = 0.0;
            self.last = target * NANOS;
        }
        let part = f64::from(self.level) * seconds(now - self.last);
        self.open += part;
        self.total += part;
        self.last = now;
    }
}

impl ConcurrencyMeter {
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        ConcurrencyMeter {
            state: Mutex::new(MeterState {
                origin: now,
                window: 0,
                open: 0.0,
                total: 0.0,
                level: 0,
                last: 0,
                closed: std::collections::VecDeque::with_capacity(HISTORY + 1),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MeterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The level is `level` from `now` on (a queue's length).
    pub(crate) fn set(&self, level: u32, now: Instant) {
        let mut s = self.lock();
        s.advance(now);
        s.level = level;
    }

    /// A request started (`up`) or ended.
    pub(crate) fn change(&self, up: bool, now: Instant) {
        let mut s = self.lock();
        s.advance(now);
        s.level = if up {
            s.level.saturating_add(1)
        } else {
            s.level.saturating_sub(1)
        };
    }

    /// The time-weighted average over the last `seconds` complete seconds, and the
    /// integral since the meter started.
    pub(crate) fn read(&self, seconds: usize, now: Instant) -> (f64, f64) {
        let mut s = self.lock();
        s.advance(now);
        let n = seconds.clamp(1, HISTORY).min(s.closed.len());
        let average = if n == 0 {
            0.0
        } else {
            s.closed.iter().rev().take(n).sum::<f64>() / n as f64
        };
        (average, s.total)
    }
}

#[cfg(test)]
mod tests;
