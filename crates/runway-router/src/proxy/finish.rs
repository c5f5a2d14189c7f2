//! The logging step: a request's measurements and access log line, when its response has
//! ended or the router answered it itself.

use crate::access_log::Entry;
use crate::balance::{Lease, RevisionState};
use crate::body::Flow;
use crate::conn::ConnInfo;
use crate::error::RouterError;
use crate::shared::Shared;
use crate::table::ServiceEntry;
use crate::upstream::Checkin;
use http::{HeaderValue, Request};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What a request needs for its log line and measurements.
#[derive(Debug)]
pub(crate) struct RequestInfo {
    pub started: Instant,
    pub method: http::Method,
    /// Only kept when the access log is on.
    pub path: String,
    pub request_id: HeaderValue,
    pub client: SocketAddr,
    /// The request body's flow, if it has a body.
    pub flow: Option<Arc<Flow>>,
    /// A gRPC request: the router's own answers are gRPC statuses.
    pub grpc: bool,
    /// The gRPC request's `grpc-timeout`, if it has one.
    pub grpc_timeout: Option<Duration>,
}

impl RequestInfo {
    /// What to log of `req`, which arrived at `started` and is known as `request_id`;
    /// `flow` counts its body, if it has one. `grpc`: it is a gRPC request.
    pub(crate) fn new<B>(
        shared: &Shared,
        conn: &ConnInfo,
        req: &Request<B>,
        started: Instant,
        request_id: HeaderValue,
        flow: Option<Arc<Flow>>,
        grpc: bool,
    ) -> Self {
        RequestInfo {
            started,
            method: req.method().clone(),
            path: if shared.access_log.is_some() {
                req.uri().path().to_string()
            } else {
                String::new()
            },
            request_id,
            client: conn.client,
            flow,
            grpc,
            grpc_timeout: None,
        }
    }

    pub(crate) fn bytes_in(&self) -> u64 {
        self.flow.as_ref().map_or(0, |f| f.bytes())
    }
}

/// Records an error the router answered for a service (and revision, if one was chosen;
/// and the instance last tried, with whether this request's failure ejected it).
pub(super) fn failed(
    shared: &Shared,
    service: &ServiceEntry,
    revision: Option<&RevisionState>,
    tried: Option<(Arc<str>, bool)>,
    err: &RouterError,
    info: RequestInfo,
) {
    let status = err.status().as_u16();
    let duration = info.started.elapsed();
    match revision {
        Some(revision) => {
            revision.metrics.error(err.label());
            revision.metrics.response(status);
            revision.metrics.duration.observe(duration.as_secs_f64());
        }
        None => shared.metrics.service_error(&service.id, err.label()),
    }
    if let Some(log) = &shared.access_log {
        log.record(Entry {
            time: SystemTime::now()
                .checked_sub(duration)
                .unwrap_or(SystemTime::UNIX_EPOCH),
            service: service.id.clone(),
            revision: revision.map(|r| r.id.clone()),
            ejected: tried.as_ref().is_some_and(|(_, ejected)| *ejected),
            instance: tried.map(|(id, _)| id),
            bytes_in: info.bytes_in(),
            method: info.method,
            path: info.path,
            status,
            duration,
            bytes_out: 0,
            request_id: info.request_id,
            client: info.client,
            error: Some(err.label()),
        });
    }
}

/// Finishes a proxied request when its response ends: frees the lease, gives the
/// connection back, and records the measurements and the log line.
#[derive(Debug)]
pub(crate) struct Completion {
    pub shared: Arc<Shared>,
    pub lease: Lease,
    pub status: u16,
    pub info: RequestInfo,
}

impl Completion {
    /// `checkin` is the connection the response came over, if it can serve another.
    pub(crate) fn finish(self, bytes_out: u64, checkin: Option<Checkin>) {
        let Completion {
            shared,
            mut lease,
            status,
            info,
        } = self;
        // One clock read for the duration, the pool and the concurrency meter.
        let now = Instant::now();
        if let Some(checkin) = checkin {
            checkin.give_back(&lease.endpoint.pool, &shared.upstream, now);
        }
        lease.end_at(now);
        let duration = now.saturating_duration_since(info.started);
        let bytes_in = info.bytes_in();
        let metrics = &lease.revision.metrics;
        metrics.response(status);
        metrics.duration.observe(duration.as_secs_f64());
        metrics.response_bytes.inc_by(bytes_out);
        if bytes_in > 0 {
            metrics.request_bytes.inc_by(bytes_in);
        }
        if let Some(log) = &shared.access_log {
            log.record(Entry {
                time: SystemTime::now()
                    .checked_sub(duration)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                service: lease.revision.service_id.clone(),
                revision: Some(lease.revision.id.clone()),
                instance: Some(lease.endpoint.instance_id.clone()),
                ejected: false,
                method: info.method,
                path: info.path,
                status,
                duration,
                bytes_in,
                bytes_out,
                request_id: info.request_id,
                client: info.client,
                error: None,
            });
        }
        drop(lease);
    }
}
