//! The runtime's metrics. Names are defined here and nowhere else.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use runway_telemetry::Registry;

/// `runway_runtime_instance_starts_total{result}`: instance starts, `ok` or `error`.
const STARTS: &str = "runway_runtime_instance_starts";
/// `runway_runtime_instance_start_seconds`: from the start call until the container runs.
const START_SECONDS: &str = "runway_runtime_instance_start_seconds";
/// `runway_runtime_instance_ready_seconds`: from the start call until the instance is
/// first healthy.
const READY_SECONDS: &str = "runway_runtime_instance_ready_seconds";
/// `runway_runtime_instance_exits_total{reason}`: containers that exited on their own,
/// by `exit`, `signal`, `oom` or `unknown`.
const EXITS: &str = "runway_runtime_instance_exits";
/// `runway_runtime_instance_restarts_total`: containers restarted after an exit.
const RESTARTS: &str = "runway_runtime_instance_restarts";
/// `runway_runtime_health_checks_total{result}`: health probes, `pass` or `fail`.
const HEALTH_CHECKS: &str = "runway_runtime_health_checks";
/// `runway_runtime_jobs_total{result}`: jobs (builds) by how they ended: `succeeded`
/// (exit code 0), `failed` (another code or a signal), `timed_out`, `oom`, or `error`
/// (the container did not start).
const JOBS: &str = "runway_runtime_jobs";
/// `runway_runtime_job_seconds`: how long jobs' containers ran.
const JOB_SECONDS: &str = "runway_runtime_job_seconds";
/// `runway_runtime_layer_commit_seconds`: writing a job's changes as a layer.
const COMMIT_SECONDS: &str = "runway_runtime_layer_commit_seconds";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct RuntimeMetrics {
    pub starts: Family<ResultLabel, Counter>,
    pub start_seconds: Histogram,
    pub ready_seconds: Histogram,
    pub exits: Family<ReasonLabel, Counter>,
    pub restarts: Counter,
    pub health_checks: Family<ResultLabel, Counter>,
    pub jobs: Family<ResultLabel, Counter>,
    pub job_seconds: Histogram,
    pub commit_seconds: Histogram,
}

impl RuntimeMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = RuntimeMetrics {
            starts: Family::default(),
            start_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            ready_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            exits: Family::default(),
            restarts: Counter::default(),
            health_checks: Family::default(),
            jobs: Family::default(),
            job_seconds: Histogram::new(exponential_buckets(0.1, 2.0, 14)),
            commit_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
        };
        registry.register(STARTS, "Instance starts by result", m.starts.clone());
        registry.register(
            START_SECONDS,
            "Time from an instance start call until its container runs",
            m.start_seconds.clone(),
        );
        registry.register(
            READY_SECONDS,
            "Time from an instance start call until it is first healthy",
            m.ready_seconds.clone(),
        );
        registry.register(
            EXITS,
            "Containers that exited on their own, by reason",
            m.exits.clone(),
        );
        registry.register(
            RESTARTS,
            "Containers restarted after an exit",
            m.restarts.clone(),
        );
        registry.register(
            HEALTH_CHECKS,
            "Health probes by result",
            m.health_checks.clone(),
        );
        registry.register(JOBS, "Jobs by how they ended", m.jobs.clone());
        registry.register(
            JOB_SECONDS,
            "How long jobs' containers ran",
            m.job_seconds.clone(),
        );
        registry.register(
            COMMIT_SECONDS,
            "Time to write a job's changes as a layer",
            m.commit_seconds.clone(),
        );
        m
    }
}
