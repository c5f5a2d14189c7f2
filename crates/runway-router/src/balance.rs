//! Load balancing and request buffering: each revision's instances, how many requests
//! each has in flight, and the bounded FIFO queue where requests wait for capacity (also
//! while a revision scales from zero, as Knative's activator does).
//!
//! An instance never has more than the service's MaxConcurrency in flight: a request
//! takes a [`Lease`] on an instance with a compare-and-swap on its counter and gives it
//! back when its response ends (an upgraded connection keeps it for its lifetime).
//! Requests queue in arrival order; whoever frees capacity hands it to the head of the
//! queue, so a queued request never loses its turn to a newcomer.

use crate::metrics::{ConcurrencyMeter, RevisionMetrics, RevisionStats};
use crate::rand;
use crate::routes::Upstream;
use crate::upstream::Pool;
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Revisions with requests waiting for capacity: the controller scales them up (or from
/// zero). Published through [`crate::Router::demand`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demand {
    /// Waiting revisions by revision id.
    pub waiting: BTreeMap<String, WaitingRevision>,
}

/// A revision with requests waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingRevision {
    pub service_id: String,
    /// Healthy instances it had when requests started waiting (0: scale from zero).
    pub endpoints: usize,
    /// When requests started waiting.
    pub since: Instant,
}

/// One instance of a revision, kept across route table swaps so that its in-flight count,
/// health and connection pool survive them.
#[derive(Debug)]
pub(crate) struct EndpointState {
    pub instance_id: Arc<str>,
    pub addr: SocketAddr,
    pub protocol: Upstream,
    in_flight: AtomicU32,
    health: Health,
    pub pool: Pool,
}

/// When to eject an instance that keeps failing (passive health checking, as Envoy's
/// outlier detection): after `after` failures in a row, for `base`, doubled each time
/// it fails again on its return, up to `max`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EjectionPolicy {
    pub after: u32,
    pub base: Duration,
    pub max: Duration,
}

/// An instance's passive health: failures of requests sent to it (connections refused,
/// reset, or no response in time) and whether it is ejected.
#[derive(Debug)]
struct Health {
    epoch: Instant,
    /// Failures since its last success.
    failures: AtomicU32,
    /// Milliseconds after `epoch` until which it is ejected; 0 if it never was.
    ejected_until: AtomicU64,
    /// Ejections since its last success; each doubles the next.
    ejections: AtomicU32,
}

impl EndpointState {
    pub(crate) fn new(instance_id: &str, addr: SocketAddr, protocol: Upstream, pool: Pool) -> Self {
        EndpointState {
            instance_id: instance_id.into(),
            addr,
            protocol,
            in_flight: AtomicU32::new(0),
            health: Health {
                epoch: Instant::now(),
                failures: AtomicU32::new(0),
                ejected_until: AtomicU64::new(0),
                ejections: AtomicU32::new(0),
            },
            pool,
        }
    }

    /// Requests in flight on this instance.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether the instance is ejected now, and until when.
    pub(crate) fn ejected_until(&self) -> Option<Instant> {
        let health = &self.health;
        // Costs no clock read for an instance never ejected.
        let until = health.ejected_until.load(Ordering::Acquire);
        if until == 0 {
            return None;
        }
        let until = health.epoch + Duration::from_millis(until);
        (Instant::now() < until).then_some(until)
    }

    fn is_ejected(&self) -> bool {
        self.ejected_until().is_some()
    }

    /// Ejections since its last success.
    pub(crate) fn ejections(&self) -> u32 {
        self.health.ejections.load(Ordering::Acquire)
    }

    /// The instance answered a request: its failures are forgiven.
    pub(crate) fn succeeded(&self) {
        let health = &self.health;
        if health.failures.load(Ordering::Relaxed) != 0 {
            health.failures.store(0, Ordering::Relaxed);
        }
        if health.ejections.load(Ordering::Relaxed) != 0 {
            health.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// A request to the instance failed (its connection was refused or reset, or it gave
    /// no response in time). Returns how long the instance is now ejected for, if this
    /// failure ejected it: after `policy.after` failures in a row, or at once when it
    /// fails again after an ejection (until it succeeds).
    pub(crate) fn failed(&self, policy: &EjectionPolicy) -> Option<Duration> {
        let health = &self.health;
        let failures = health.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let ejections = health.ejections.load(Ordering::Acquire);
        let threshold = if ejections > 0 {
            1
        } else {
            policy.after.max(1)
        };
        if failures < threshold || self.is_ejected() {
            return None;
        }
        // One of the requests failing together ejects it.
        if health
            .failures
            .compare_exchange(failures, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return None;
        }
        let ejections = health.ejections.fetch_add(1, Ordering::AcqRel) + 1;
        let factor = 1u32 << (ejections - 1).min(16);
        let duration = policy.base.saturating_mul(factor).min(policy.max);
        let until = (health.epoch.elapsed() + duration).as_millis() as u64;
        health.ejected_until.store(until.max(1), Ordering::Release);
        Some(duration)
    }
}

/// What a queued request is told.
#[derive(Debug)]
pub(crate) enum Grant {
    /// Capacity: go.
    Lease(Lease),
    /// The revision left the route table: choose again among the service's current
    /// revisions.
    Reroute,
}

#[derive(Debug)]
struct Waiter {
    tx: oneshot::Sender<Grant>,
}

/// A revision's live state, kept across route table swaps.
#[derive(Debug)]
pub(crate) struct RevisionState {
    pub id: Arc<str>,
    pub service_id: Arc<str>,
    endpoints: ArcSwap<Vec<Arc<EndpointState>>>,
    max_concurrency: AtomicU32,
    in_flight: AtomicU32,
    queue: Mutex<VecDeque<Waiter>>,
    queued: AtomicUsize,
    retired: AtomicBool,
    /// Whether this revision is in the published demand.
    demanding: AtomicBool,
    demand: Arc<watch::Sender<Demand>>,
    /// Requests in flight over time.
    pub meter: ConcurrencyMeter,
    /// Requests waiting over time.
    pub queue_meter: ConcurrencyMeter,
    pub metrics: RevisionMetrics,
}

/// The right to send one request to one instance; dropping it frees the capacity and
/// hands it to the next queued request.
#[derive(Debug)]
pub(crate) struct Lease {
    pub endpoint: Arc<EndpointState>,
    pub revision: Arc<RevisionState>,
    /// When the request ended, if the holder already read the clock.
    ended: Option<Instant>,
}

impl Lease {
    /// Records that the request ended at `now` (saves reading the clock again).
    pub(crate) fn end_at(&mut self, now: Instant) {
        self.ended = Some(now);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.revision
            .released(self.ended.unwrap_or_else(Instant::now));
    }
}

/// Why no lease was had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcquireError {
    /// The queue is at capacity.
    QueueFull,
    /// The wait ran out.
    Timeout,
}

/// Removes a waiter that gave up (timed out, or its client left) from the queue.
struct QueueSlot<'a> {
    revision: &'a RevisionState,
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.revision.prune();
    }
}

impl RevisionState {
    pub(crate) fn new(
        id: &str,
        service_id: &str,
        demand: Arc<watch::Sender<Demand>>,
        metrics: RevisionMetrics,
    ) -> Self {
        RevisionState {
            id: id.into(),
            service_id: service_id.into(),
            endpoints: ArcSwap::from_pointee(Vec::new()),
            max_concurrency: AtomicU32::new(u32::MAX),
            in_flight: AtomicU32::new(0),
            queue: Mutex::new(VecDeque::new()),
            queued: AtomicUsize::new(0),
            retired: AtomicBool::new(false),
            demanding: AtomicBool::new(false),
            demand,
            meter: ConcurrencyMeter::new(),
            queue_meter: ConcurrencyMeter::new(),
            metrics,
        }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiter>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the queue's length after a change (called with the queue locked).
    fn queue_changed(&self, queue: &VecDeque<Waiter>) {
        self.queued.store(queue.len(), Ordering::Release);
        self.queue_meter.set(
            u32::try_from(queue.len()).unwrap_or(u32::MAX),
            Instant::now(),
        );
    }

    /// The instances, as of the last route table.
    pub(crate) fn endpoints(&self) -> Arc<Vec<Arc<EndpointState>>> {
        self.endpoints.load_full()
    }

    /// Takes a new set of instances and limit, then hands freed or new capacity to
    /// queued requests.
    pub(crate) fn update(
        self: &Arc<Self>,
        endpoints: Vec<Arc<EndpointState>>,
        max_concurrency: u32,
    ) {
        let max = if max_concurrency == 0 {
            u32::MAX
        } else {
            max_concurrency
        };
        self.max_concurrency.store(max, Ordering::Release);
        self.endpoints.store(Arc::new(endpoints));
        self.retired.store(false, Ordering::Release);
        self.dispatch();
    }

    /// The revision left the route table: its queued requests choose again; those in
    /// flight finish.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        let waiters: Vec<Waiter> = {
            let mut queue = self.lock_queue();
            let waiters = queue.drain(..).collect();
            self.queue_changed(&queue);
            waiters
        };
        for waiter in waiters {
            let _ = waiter.tx.send(Grant::Reroute);
        }
        self.set_demand(false);
    }

    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Requests in flight.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Requests waiting.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// A lease on the least-loaded instance below the limit, avoiding instances in
    /// `exclude` and ejected ones (unless every instance left is ejected).
    pub(crate) fn try_lease(self: &Arc<Self>, exclude: &[SocketAddr]) -> Option<Lease> {
        self.try_lease_at(exclude, Instant::now())
    }

    /// [`RevisionState::try_lease`], with the request counted in flight from `now`.
    fn try_lease_at(self: &Arc<Self>, exclude: &[SocketAddr], now: Instant) -> Option<Lease> {
        let endpoints = self.endpoints.load();
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        let max = self.max_concurrency.load(Ordering::Acquire);
        // Bounded: each failed compare-and-swap means another request took a slot.
        for _ in 0..64 {
            let start = if n > 1 { rand::below(n) } else { 0 };
            let mut best: Option<(&Arc<EndpointState>, u32, bool)> = None;
            // Whether a healthy instance (full or not) is there: ejected instances get
            // requests only when none is (a wrong ejection cannot stop a revision).
            let mut healthy = false;
            for i in 0..n {
                let endpoint = &endpoints[(start + i) % n];
                if exclude.contains(&endpoint.addr) {
                    continue;
                }
                let ejected = endpoint.is_ejected();
                healthy |= !ejected;
                let load = endpoint.in_flight.load(Ordering::Acquire);
                if load >= max {
                    continue;
                }
                let better = match best {
                    None => true,
                    Some((_, best_load, best_ejected)) => {
                        (best_ejected && !ejected) || (best_ejected == ejected && load < best_load)
                    }
                };
                if better {
                    best = Some((endpoint, load, ejected));
                    if load == 0 && !ejected {
                        break;
                    }
                }
            }
            let (endpoint, load, ejected) = best?;
            if ejected && healthy {
                return None;
            }
            if endpoint
                .in_flight
                .compare_exchange(load, load + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.in_flight.fetch_add(1, Ordering::AcqRel);
                self.meter.change(true, now);
                return Some(Lease {
                    endpoint: endpoint.clone(),
                    revision: self.clone(),
                    ended: None,
                });
            }
        }
        None
    }

    /// A lease at once, counted from `now`, if an instance has room and no request is
    /// waiting (newcomers never overtake the queue) and the revision is in the table.
    pub(crate) fn try_lease_first(
        self: &Arc<Self>,
        exclude: &[SocketAddr],
        now: Instant,
    ) -> Option<Lease> {
        if self.queued.load(Ordering::Acquire) != 0 || self.is_retired() {
            return None;
        }
        self.try_lease_at(exclude, now)
    }

    /// Waits in the queue for a lease, at most `max_wait`; `capacity` bounds the queue.
    /// `now` is about now (the request's arrival will do): a lease had at once counts
    /// from then.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        exclude: &[SocketAddr],
        capacity: usize,
        max_wait: Duration,
        now: Instant,
    ) -> Result<Grant, AcquireError> {
        if self.is_retired() {
            return Ok(Grant::Reroute);
        }
        if let Some(lease) = self.try_lease_first(exclude, now) {
            return Ok(Grant::Lease(lease));
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut queue = self.lock_queue();
            if self.is_retired() {
                return Ok(Grant::Reroute);
            }
            if queue.len() >= capacity {
                return Err(AcquireError::QueueFull);
            }
            queue.push_back(Waiter { tx });
            self.queue_changed(&queue);
        }
        let slot = QueueSlot { revision: self };
        self.set_demand(true);
        // Capacity may have freed between the try above and joining the queue.
        self.dispatch();
        match tokio::time::timeout(max_wait, rx).await {
            Ok(Ok(grant)) => {
                // Whoever granted it already took the waiter off the queue.
                std::mem::forget(slot);
                Ok(grant)
            }
            // The sender went away without a word: the queue was torn down.
            Ok(Err(_)) => Ok(Grant::Reroute),
            Err(_) => Err(AcquireError::Timeout),
        }
    }

    /// Hands capacity to queued requests, in order, while there is some.
    pub(crate) fn dispatch(self: &Arc<Self>) {
        let mut unclaimed = Vec::new();
        {
            let mut queue = self.lock_queue();
            while let Some(front) = queue.front() {
                if front.tx.is_closed() {
                    queue.pop_front();
                    self.queue_changed(&queue);
                    continue;
                }
                let Some(lease) = self.try_lease(&[]) else {
                    break;
                };
                let Some(waiter) = queue.pop_front() else {
                    unclaimed.push(lease);
                    break;
                };
                self.queue_changed(&queue);
                if let Err(Grant::Lease(lease)) = waiter.tx.send(Grant::Lease(lease)) {
                    // The waiter left between the check and the send.
                    unclaimed.push(lease);
                }
            }
            if queue.is_empty() {
                self.set_demand(false);
            }
        }
        // Dropped outside the lock: a lease's drop dispatches again.
        drop(unclaimed);
    }

    /// Drops waiters that gave up.
    fn prune(&self) {
        let mut queue = self.lock_queue();
        let before = queue.len();
        queue.retain(|w| !w.tx.is_closed());
        if queue.len() != before {
            self.queue_changed(&queue);
        }
        if queue.is_empty() {
            self.set_demand(false);
        }
    }

    fn released(self: &Arc<Self>, now: Instant) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.meter.change(false, now);
        if self.queued.load(Ordering::Acquire) > 0 {
            self.dispatch();
        }
    }

    /// The revision's load at `now`, as the autoscaler and the metrics read it.
    pub(crate) fn stats(&self, draining: bool, now: Instant) -> RevisionStats {
        let (average, total) = self.meter.read(1, now);
        let (average_queued, queued_seconds) = self.queue_meter.read(1, now);
        RevisionStats {
            service_id: self.service_id.to_string(),
            revision_id: self.id.to_string(),
            endpoints: self.endpoints().len(),
            ejected: self.endpoints().iter().filter(|e| e.is_ejected()).count(),
            in_flight: self.in_flight(),
            queued: self.queued(),
            average_concurrency: average,
            concurrency_seconds: total,
            average_queued,
            queued_seconds,
            requests: self.metrics.requests(),
            draining,
        }
    }

    /// Publishes (or withdraws) this revision's demand, only on a change.
    fn set_demand(&self, waiting: bool) {
        if self.demanding.swap(waiting, Ordering::AcqRel) == waiting {
            return;
        }
        let endpoints = self.endpoints.load().len();
        self.demand.send_modify(|demand| {
            if waiting {
                demand.waiting.insert(
                    self.id.to_string(),
                    WaitingRevision {
                        service_id: self.service_id.to_string(),
                        endpoints,
                        since: Instant::now(),
                    },
                );
            } else {
                demand.waiting.remove(&*self.id);
            }
        });
    }
}

#[cfg(test)]
mod tests;
