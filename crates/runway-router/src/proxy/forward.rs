//! The upstream peer: the revision (by percent or tag), a lease on its least-loaded
//! instance (waiting in the revision's queue while every instance is full), and what a
//! request sent there came to. A request of which nothing reached the instance goes to
//! another one, up to [`MAX_ATTEMPTS`] instances; one that went out, even in part, is
//! never sent again.

use super::admit::{Admitted, lookup};
use super::answer::fail;
use super::body::RouterBody;
use super::finish::RequestInfo;
use crate::balance::{AcquireError, Grant, Lease, RevisionState};
use crate::body::{ClientFailure, Flow, ProxyRequestBody};
use crate::conn::ConnInfo;
use crate::error::RouterError;
use crate::shared::Shared;
use crate::table::ServiceEntry;
use crate::upstream::SendError;
use http::{HeaderValue, Request, Response, Version};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;

/// How many instances one request may try when connections are refused.
const MAX_ATTEMPTS: usize = 3;

/// Where a request is being sent: its service and revision, the instances that refused
/// it, and its deadline.
#[derive(Debug)]
pub(super) struct Peer {
    service: Arc<ServiceEntry>,
    revision: Arc<RevisionState>,
    /// Instances that refused this request.
    exclude: Vec<SocketAddr>,
    /// When the request times out.
    pub deadline: Instant,
    /// About now: the request's arrival for the first attempt, then read again.
    pub now: Instant,
    /// The deadline is the service's request timeout, not a gRPC client's shorter one.
    service_deadline: bool,
    /// The last instance tried, and whether its failure with this request ejected it.
    tried: Option<(Arc<str>, bool)>,
}

impl Peer {
    /// The admitted request's peer: its tagged revision or one chosen by percent. Its
    /// deadline is the service's request timeout, or a gRPC client's shorter timeout.
    pub(super) fn new(
        admitted: &Admitted,
        grpc_timeout: Option<Duration>,
    ) -> Result<Self, RouterError> {
        let service = admitted.target.service.clone();
        let revision = (admitted.target.tagged.clone())
            .or_else(|| service.pick())
            .ok_or(RouterError::NoRevision)?;
        let timeout =
            grpc_timeout.map_or(service.request_timeout, |t| t.min(service.request_timeout));
        Ok(Peer {
            service_deadline: timeout == service.request_timeout,
            tried: None,
            deadline: admitted.started + timeout,
            service,
            revision,
            exclude: Vec::new(),
            now: admitted.started,
        })
    }

    /// One of `conn`'s upload slots, waiting for one (as long as a request may wait in
    /// the queue) when its other requests hold them all.
    pub(super) async fn upload_slot(
        &self,
        conn: &ConnInfo,
    ) -> Result<OwnedSemaphorePermit, RouterError> {
        if let Ok(slot) = conn.uploads.clone().try_acquire_owned() {
            return Ok(slot);
        }
        let wait = self.service.queue.max_wait;
        let until = self.deadline.min(Instant::now() + wait);
        match tokio::time::timeout_at(until.into(), conn.uploads.clone().acquire_owned()).await {
            Ok(Ok(slot)) => Ok(slot),
            _ => Err(RouterError::TooManyUploads),
        }
    }

    /// A lease on an instance of the revision with room now, if nobody is queued.
    pub(super) fn try_lease(&self) -> Option<Lease> {
        self.revision.try_lease_first(&self.exclude, self.now)
    }

    /// A lease on an instance of the revision, waiting in its queue up to the queue's
    /// maximum wait or the deadline. If the revision leaves the route table while the
    /// request waits, the peer becomes what the request's `host` leads to now.
    pub(super) async fn lease(
        &mut self,
        shared: &Shared,
        host: &HeaderValue,
    ) -> Result<Lease, (RouterError, bool)> {
        loop {
            let queue = self.service.queue;
            let wait = queue
                .max_wait
                .min(self.deadline.saturating_duration_since(self.now));
            let acquired = self
                .revision
                .acquire(&self.exclude, queue.capacity, wait, self.now);
            match acquired.await {
                Ok(Grant::Lease(lease)) => return Ok(lease),
                Ok(Grant::Reroute) => {
                    // The revision left the table while the request waited: choose again
                    // from what the host is now.
                    let target = lookup(shared, host);
                    let next = target.and_then(|t| {
                        self.service = t.service.clone();
                        t.tagged.or_else(|| t.service.pick())
                    });
                    // Not the revision's error: it has left.
                    self.revision = next.ok_or((RouterError::NoRevision, false))?;
                    self.now = Instant::now();
                }
                Err(AcquireError::QueueFull) => return Err((RouterError::QueueFull, true)),
                Err(AcquireError::Timeout) if Instant::now() >= self.deadline => {
                    return Err((RouterError::Timeout, true));
                }
                Err(AcquireError::Timeout) => return Err((RouterError::QueueTimeout, true)),
            }
        }
    }

    /// The instance `lease` holds answered (its response head came): its failures are
    /// forgiven.
    pub(super) fn answered(&mut self, lease: &Lease) {
        lease.endpoint.succeeded();
    }

    /// After the instance `lease` holds gave no response (`failure`, or `None` when the
    /// deadline passed first) to a request whose body is `flow`: the request back, to
    /// send to another instance, or the error to answer with. A connection refused or
    /// reset, or no answer within the service's request timeout, counts against the
    /// instance (and may eject it); the client's own failures do not.
    pub(super) fn retry(
        &mut self,
        shared: &Shared,
        lease: &Lease,
        failure: Option<SendError>,
        flow: Option<&Flow>,
    ) -> Result<Box<Request<ProxyRequestBody>>, RouterError> {
        let endpoint = &lease.endpoint;
        self.tried = Some((endpoint.instance_id.clone(), false));
        let err = match failure {
            Some(SendError::NotSent { reason, request }) => {
                tracing::debug!(service = %self.service.id, instance = %endpoint.instance_id, error = %reason, attempt = self.exclude.len() + 1, "instance refused the connection");
                self.instance_failed(shared, lease, "connect");
                if self.exclude.len() + 1 < MAX_ATTEMPTS {
                    self.revision.metrics.retries.inc();
                    self.exclude.push(endpoint.addr);
                    self.now = Instant::now();
                    return Ok(request);
                }
                RouterError::Connect(reason)
            }
            // The client's doing: the instance is not to blame, nor the request retried.
            Some(SendError::Client(failure, reason)) => client_error(failure, reason),
            // The instance's side may only see a reset stream where the body failed.
            Some(SendError::Failed(reason)) => match flow.and_then(|f| f.failure()) {
                Some(failure) => client_error(failure, reason),
                None => {
                    self.instance_failed(shared, lease, "reset");
                    RouterError::Upstream(reason)
                }
            },
            None => {
                // A gRPC client's own shorter deadline says nothing of the instance.
                if self.service_deadline {
                    self.instance_failed(shared, lease, "timeout");
                }
                RouterError::Timeout
            }
        };
        Err(err)
    }

    /// Counts a failure (`kind`) against the instance `lease` holds, and ejects it if that
    /// was one too many.
    fn instance_failed(&mut self, shared: &Shared, lease: &Lease, kind: &'static str) {
        let endpoint = &lease.endpoint;
        let Some(duration) = endpoint.failed(&shared.ejection) else {
            return;
        };
        self.tried = Some((endpoint.instance_id.clone(), true));
        self.revision.metrics.ejections.inc();
        tracing::warn!(
            service = %self.service.id,
            revision = %self.revision.id,
            instance = %endpoint.instance_id,
            failure = kind,
            ejections = endpoint.ejections(),
            ?duration,
            "instance ejected from balancing"
        );
    }

    /// Answers the client with `err`, counted against the revision if `counted` (else
    /// against the service).
    pub(super) fn fail(
        &self,
        shared: &Shared,
        err: RouterError,
        counted: bool,
        version: Version,
        info: RequestInfo,
    ) -> Response<RouterBody> {
        let revision = counted.then_some(&*self.revision);
        let tried = self
            .tried
            .as_ref()
            .map(|(id, ejected)| (id.clone(), *ejected));
        fail(shared, &self.service, revision, tried, err, version, info)
    }
}

/// The error for a client's request body that failed.
fn client_error(failure: ClientFailure, reason: String) -> RouterError {
    match failure {
        ClientFailure::TooLarge => RouterError::BodyTooLarge,
        ClientFailure::Broken => RouterError::BadBody(reason),
        ClientFailure::Stalled => RouterError::BodyTimeout,
    }
}

/// Answers an admitted request whose service has no revision to send it to.
pub(super) fn no_revision(
    shared: &Shared,
    admitted: &Admitted,
    err: RouterError,
    info: RequestInfo,
) -> Response<RouterBody> {
    let service = &admitted.target.service;
    fail(shared, service, None, None, err, admitted.version, info)
}
