//! The registry's metrics. Names are defined here and nowhere else.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use runway_telemetry::Registry;

/// `runway_registry_requests_total{route, method, status}`: requests by route (`base`,
/// `token`, `catalog`, `tags`, `manifest`, `blob`, `upload`, `referrers`, `admin`,
/// `unknown`), method and status class (`2xx`, `3xx`, `4xx`, `5xx`).
const REQUESTS: &str = "runway_registry_requests";
/// `runway_registry_request_duration_seconds{route}`: time to answer (to the end of the
/// request body; streamed response bodies continue after).
const DURATION: &str = "runway_registry_request_duration_seconds";
/// `runway_registry_received_bytes_total`: blob and manifest bytes received.
const RECEIVED: &str = "runway_registry_received_bytes";
/// `runway_registry_sent_bytes_total`: blob and manifest bytes sent.
const SENT: &str = "runway_registry_sent_bytes";
/// `runway_registry_gc_runs_total`: garbage collections completed.
const GC_RUNS: &str = "runway_registry_gc_runs";
/// `runway_registry_gc_removed_blobs_total`: blobs deleted by garbage collection.
const GC_BLOBS: &str = "runway_registry_gc_removed_blobs";
/// `runway_registry_gc_removed_bytes_total`: bytes freed by garbage collection.
const GC_BYTES: &str = "runway_registry_gc_removed_bytes";
/// `runway_registry_gc_removed_uploads_total`: abandoned uploads removed.
const GC_UPLOADS: &str = "runway_registry_gc_removed_uploads";
/// `runway_registry_imports_total{result}`: pull-through imports (`ok`, `error`).
const IMPORTS: &str = "runway_registry_imports";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub route: &'static str,
    pub method: &'static str,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabel {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabel {
    pub result: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<RouteLabel, Histogram>,
    pub received: Counter,
    pub sent: Counter,
    pub gc_runs: Counter,
    pub gc_blobs: Counter,
    pub gc_bytes: Counter,
    pub gc_uploads: Counter,
    pub imports: Family<ResultLabel, Counter>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            received: Counter::default(),
            sent: Counter::default(),
            gc_runs: Counter::default(),
            gc_blobs: Counter::default(),
            gc_bytes: Counter::default(),
            gc_uploads: Counter::default(),
            imports: Family::default(),
        };
        registry.register(
            REQUESTS,
            "Registry requests by route, method and status class",
            m.requests.clone(),
        );
        registry.register(
            DURATION,
            "Time to answer a registry request",
            m.duration.clone(),
        );
        registry.register(
            RECEIVED,
            "Blob and manifest bytes received",
            m.received.clone(),
        );
        registry.register(SENT, "Blob and manifest bytes sent", m.sent.clone());
        registry.register(
            GC_RUNS,
            "Registry garbage collections completed",
            m.gc_runs.clone(),
        );
        registry.register(
            GC_BLOBS,
            "Blobs deleted by registry garbage collection",
            m.gc_blobs.clone(),
        );
        registry.register(
            GC_BYTES,
            "Bytes freed by registry garbage collection",
            m.gc_bytes.clone(),
        );
        registry.register(
            GC_UPLOADS,
            "Abandoned uploads removed by garbage collection",
            m.gc_uploads.clone(),
        );
        registry.register(IMPORTS, "Pull-through imports by result", m.imports.clone());
        m
    }

    pub fn observe(&self, route: &'static str, method: &'static str, status: u16, seconds: f64) {
        let status = match status {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabel { route })
            .observe(seconds);
    }
}
