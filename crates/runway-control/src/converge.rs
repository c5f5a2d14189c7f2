//! The converger: starts and stops instances until each revision runs its desired
//! count, and publishes the route table.

use crate::snapshot::Snapshot;
use crate::{Controller, Inner, lock, spec};
use runway_model::records::ServiceStatus;
use runway_runtime::{InstanceId, InstanceState, InstanceStatus};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

impl Inner {
    /// Swaps the router's table for one built from `snap` and what runs now.
    pub(crate) fn publish(&self, snap: &Snapshot) {
        let instances = self.runtime.list();
        let draining: HashSet<String> = lock(&self.draining).keys().cloned().collect();
        let table = spec::routes(snap, &instances, &draining, self.config.https_redirect);
        if let Err(e) = self.router.set_routes(table) {
            tracing::error!(error = %e, "the router refused the route table");
        }
    }
}

/// The instance count each revision should run: the stored desired counts, except that
/// paused and deleted services run nothing.
pub(crate) fn desired(snap: &Snapshot) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    for service in &snap.services {
        let state = snap.state(&service.arn);
        let stopped = state.paused || service.status == ServiceStatus::Deleted;
        for (revision, count) in &state.desired {
            out.insert(revision.clone(), if stopped { 0 } else { *count });
        }
    }
    out
}

/// The revisions that serve traffic (by percent or by tag) of services that run: their
/// instances that fail health checks are replaced. A revision still being deployed is
/// not: its deployment decides on its failures.
fn serving(snap: &Snapshot) -> HashSet<String> {
    snap.services
        .iter()
        .map(|s| snap.state(&s.arn))
        .filter(|state| !state.paused)
        .flat_map(|state| state.traffic)
        .filter(|t| t.percent > 0 || t.tag.is_some())
        .map(|t| t.revision)
        .collect()
}

/// Which instances to stop when a revision has more than it needs: the ones that serve
/// nothing first (unhealthy, restarting, starting), then the newest.
fn victims(mut candidates: Vec<&InstanceStatus>, excess: usize) -> Vec<InstanceId> {
    let rank = |s: InstanceState| match s {
        InstanceState::Unhealthy | InstanceState::Restarting => 0,
        InstanceState::Creating | InstanceState::Starting => 1,
        _ => 2,
    };
    candidates.sort_by(|a, b| {
        rank(a.state)
            .cmp(&rank(b.state))
            .then(b.started_at.cmp(&a.started_at))
    });
    candidates
        .into_iter()
        .take(excess)
        .map(|i| i.id.clone())
        .collect()
}

impl Controller {
    pub(crate) async fn converge_loop(&self) {
        loop {
            if let Err(e) = self.converge().await {
                tracing::warn!(error = %e, "converging failed; retrying");
            }
            self.sleep_or_wake(self.inner.config.poll_interval).await;
        }
    }

    /// One pass: start what is missing, stop what is extra, publish routes.
    pub(crate) async fn converge(&self) -> crate::Result<()> {
        let snap = self.snapshot().await?;
        *lock(&self.inner.service_arns) = snap
            .services
            .iter()
            .map(|s| (s.id.clone(), s.arn.clone()))
            .collect();
        let want = desired(&snap);
        // What is kept per revision goes with the revision.
        lock(&self.inner.replacing).retain(|r, _| want.contains_key(r));
        lock(&self.inner.starting).retain(|r, n| *n > 0 || want.contains_key(r));
        let serving = serving(&snap);
        // Starts in flight are read before the instances: a start that ends in between
        // is then counted twice (and the next pass corrects it), never not at all (which
        // started one instance too many).
        let starting = lock(&self.inner.starting).clone();
        let instances = self.inner.runtime.list();
        self.stop_again(&instances);
        let mut by_revision: HashMap<&str, Vec<&InstanceStatus>> = HashMap::new();
        for i in instances.iter().filter(|i| i.state.is_active()) {
            by_revision
                .entry(i.revision_id.as_str())
                .or_default()
                .push(i);
        }
        let revisions: HashSet<&str> = want
            .keys()
            .map(String::as_str)
            .chain(by_revision.keys().copied())
            .collect();
        for revision in revisions {
            let wanted = want.get(revision).copied().unwrap_or(0) as usize;
            if wanted > 0 && serving.contains(revision) {
                let draining = lock(&self.inner.draining);
                let unhealthy: Vec<&InstanceStatus> = by_revision
                    .get(revision)
                    .into_iter()
                    .flatten()
                    .filter(|i| {
                        i.state == InstanceState::Unhealthy && !draining.contains_key(i.id.as_str())
                    })
                    .copied()
                    .collect();
                drop(draining);
                if !unhealthy.is_empty() {
                    self.replace_unhealthy(revision, &unhealthy);
                }
            }
            let draining = lock(&self.inner.draining);
            let running: Vec<&InstanceStatus> = by_revision
                .get(revision)
                .map(|v| {
                    v.iter()
                        .filter(|i| !draining.contains_key(i.id.as_str()))
                        .copied()
                        .collect()
                })
                .unwrap_or_default();
            drop(draining);
            let pending = starting.get(revision).copied().unwrap_or(0) as usize;
            let have = running.len() + pending;
            if have < wanted {
                self.start_instances(&snap, revision, wanted - have);
            } else if running.len() > wanted {
                for id in victims(running, have - wanted) {
                    self.scale_in(id);
                }
            }
        }
        self.inner.publish(&snap);
        Ok(())
    }

    fn start_instances(&self, snap: &Snapshot, revision: &str, count: usize) {
        let Some(rev) = snap.revisions.get(revision) else {
            return;
        };
        let Some(service) = snap.service(&rev.service_arn) else {
            return;
        };
        let Some(spec) = spec::instance_spec(service, rev) else {
            return;
        };
        *lock(&self.inner.starting)
            .entry(revision.to_string())
            .or_default() += count as u32;
        for _ in 0..count {
            let this = self.clone();
            let mut spec = spec.clone();
            let pins = rev.secrets.clone();
            let revision = revision.to_string();
            tokio::spawn(async move {
                let result = async {
                    if !pins.is_empty() {
                        let resolver = this.inner.secrets.get().ok_or_else(|| {
                            "its secrets cannot be read: this server has no secret store"
                                .to_string()
                        })?;
                        let values = resolver.values(&pins).await?;
                        spec.secrets = runway_runtime::SecretEnv(values);
                    }
                    this.inner
                        .runtime
                        .start(spec)
                        .await
                        .map_err(|e| e.to_string())
                }
                .await;
                if let Some(n) = lock(&this.inner.starting).get_mut(&revision) {
                    *n = n.saturating_sub(1);
                }
                match result {
                    Ok(id) => tracing::info!(instance = %id, revision, "instance started"),
                    Err(e) => {
                        tracing::warn!(error = %e, revision, "instance failed to start");
                        lock(&this.inner.failed_starts).insert(
                            revision.clone(),
                            format!("an instance could not start: {e}"),
                        );
                    }
                }
                this.wake();
            });
        }
    }

    /// Takes an instance out of the route table, lets its requests finish, then stops it.
    fn scale_in(&self, id: InstanceId) {
        {
            let mut draining = lock(&self.inner.draining);
            if draining.contains_key(id.as_str()) {
                return;
            }
            draining.insert(id.to_string(), Instant::now());
        }
        let this = self.clone();
        tokio::spawn(async move {
            // Republish without it, then let the requests it has (WebSockets too) finish.
            this.wake();
            let routed = this
                .inner
                .runtime
                .list()
                .iter()
                .any(|i| i.id == id && i.state == InstanceState::Healthy);
            if routed {
                this.drain(&id, this.inner.config.drain_timeout).await;
            }
            let stopped = this
                .inner
                .runtime
                .stop(&id, this.inner.config.stop_grace)
                .await;
            lock(&this.inner.draining).remove(id.as_str());
            match stopped {
                Ok(()) => this.wake(),
                // The next pass tries again (`stop_again`), not at once.
                Err(e) => tracing::warn!(instance = %id, error = %e, "stopping an instance failed"),
            }
        });
    }

    /// Stops again the instances left stopping by a stop that failed (its teardown did):
    /// nothing else would, and a pause or delete of their service waits for them.
    fn stop_again(&self, instances: &[InstanceStatus]) {
        let left: Vec<InstanceId> = {
            let draining = lock(&self.inner.draining);
            instances
                .iter()
                .filter(|i| {
                    i.state == InstanceState::Stopping && !draining.contains_key(i.id.as_str())
                })
                .map(|i| i.id.clone())
                .collect()
        };
        for id in left {
            self.scale_in(id);
        }
    }

    /// Waits, up to `limit`, until the route table no longer sends the instance requests
    /// and those it has (WebSockets too) have finished. Idle is believed on the second
    /// reading in a row, so that a request that chose the instance just before the
    /// table changed is seen.
    pub(crate) async fn drain(&self, id: &InstanceId, limit: std::time::Duration) {
        const POLL: std::time::Duration = std::time::Duration::from_millis(100);
        let deadline = Instant::now() + limit;
        let mut quiet = 0;
        while quiet < 2 && Instant::now() < deadline {
            let load = self.inner.router.instance_load(id.as_str()).await;
            if load.routed || load.in_flight > 0 {
                quiet = 0;
            } else {
                quiet += 1;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
