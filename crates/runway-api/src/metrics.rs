//! The API's metrics. Names are defined here and nowhere else.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use runway_telemetry::Registry;

/// `runway_api_requests_total{operation, type}`: requests by operation and outcome (`ok`
/// or the error type).
const REQUESTS: &str = "runway_api_requests";
/// `runway_api_request_duration_seconds{operation}`: time to answer.
const DURATION: &str = "runway_api_request_duration_seconds";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Outcome {
    pub operation: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Op {
    pub operation: &'static str,
}

#[derive(Debug)]
pub(crate) struct ApiMetrics {
    pub requests: Family<Outcome, Counter>,
    pub duration: Family<Op, Histogram>,
}

impl ApiMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<Outcome, Counter>::default();
        let duration = Family::<Op, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        registry.register(
            REQUESTS,
            "App Runner API requests by operation and result",
            requests.clone(),
        );
        registry.register(
            DURATION,
            "Time to answer an App Runner API request",
            duration.clone(),
        );
        ApiMetrics { requests, duration }
    }

    pub fn observe(&self, operation: &'static str, result: &'static str, seconds: f64) {
        self.requests
            .get_or_create(&Outcome { operation, result })
            .inc();
        self.duration
            .get_or_create(&Op { operation })
            .observe(seconds);
    }
}
