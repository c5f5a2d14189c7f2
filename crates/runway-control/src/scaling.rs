//! The autoscale loop: every tick (and whenever the router reports requests waiting) it
//! feeds each serving revision's measured concurrency to that revision's [`Decider`] and
//! stores the instance count it decides; the converger does the rest. While the router
//! cannot say what it carries (its process down or starting again) nothing is decided,
//! and a router process started again, which counts from zero, is measured from its
//! first reading on: an unknown load never scales a revision in.

use crate::autoscaler::{Decider, ScalerConfig};
use crate::{Controller, lock};
use runway_model::records::ServiceState;
use runway_runtime::InstanceState;
use runway_store::Typed;
use std::collections::HashMap;
use std::time::Instant;

/// The deciders, and each revision's last concurrency reading, by revision.
#[derive(Debug)]
pub(crate) struct Scaling {
    config: ScalerConfig,
    deciders: HashMap<String, Decider>,
    /// (when, the router's cumulative request-seconds) at the previous tick.
    last: HashMap<String, (Instant, f64)>,
}

impl Scaling {
    pub fn new(config: ScalerConfig) -> Self {
        Scaling {
            config,
            deciders: HashMap::new(),
            last: HashMap::new(),
        }
    }
}

impl Controller {
    pub(crate) async fn scale_loop(&self) {
        let mut demand = self.inner.router.demand();
        let mut tick = tokio::time::interval(self.inner.config.scale_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let sample = tokio::select! {
                _ = tick.tick() => true,
                changed = demand.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    false
                }
            };
            if let Err(e) = self.scale(sample).await {
                tracing::warn!(error = %e, "autoscaling failed; retrying");
            }
        }
    }

    /// Decides every serving revision's instance count; `sample` records a new
    /// concurrency reading (a tick), otherwise only the router's demand is looked at.
    async fn scale(&self, sample: bool) -> crate::Result<()> {
        let snap = self.snapshot().await?;
        let now = Instant::now();
        let Some(stats) = self.inner.router.stats().await else {
            // The router process is down or starting again: what it would say is not
            // known, and no load is not the same as none. The counts stay as they are.
            tracing::debug!("the router's load is unknown: no autoscaling decision");
            return Ok(());
        };
        let waiting = self.inner.router.demand().borrow().waiting.clone();
        let instances = self.inner.runtime.list();
        let mut changes: Vec<(String, String, u32)> = Vec::new();
        {
            let mut scaling = lock(&self.inner.scaling);
            let Scaling {
                config,
                deciders,
                last,
            } = &mut *scaling;
            let mut live = Vec::new();
            for service in &snap.services {
                let state = snap.state(&service.arn);
                if state.paused {
                    continue;
                }
                let bounds = snap.bounds(service);
                for target in state
                    .traffic
                    .iter()
                    .filter(|t| t.percent > 0 || t.tag.is_some())
                {
                    let revision = &target.revision;
                    live.push(revision.clone());
                    let ready = instances
                        .iter()
                        .filter(|i| &i.revision_id == revision && i.state == InstanceState::Healthy)
                        .count() as u32;
                    let decider = deciders
                        .entry(revision.clone())
                        .or_insert_with(|| Decider::new(config.clone(), now, ready));
                    if sample && let Some(s) = stats.iter().find(|s| &s.revision_id == revision) {
                        // Requests waiting for capacity are demand too (as the activator
                        // counts them in Knative): without them a full revision would
                        // look exactly as busy as it can be. Both are time-weighted
                        // over the interval since the last sample.
                        let seconds = s.concurrency_seconds + s.queued_seconds;
                        let previous = last.insert(revision.clone(), (now, seconds));
                        // A router process started again counts from zero: its first
                        // reading is only where the next one is measured from.
                        if let Some((then, before)) = previous
                            && seconds >= before
                        {
                            let elapsed = now.duration_since(then).as_secs_f64();
                            if elapsed > 0.0 {
                                decider.record(now, (seconds - before) / elapsed);
                            }
                        }
                    }
                    if waiting.contains_key(revision) {
                        decider.poke(now);
                    }
                    let want = decider.decide(now, ready, bounds);
                    if state.desired.get(revision) != Some(&want) {
                        changes.push((service.arn.clone(), revision.clone(), want));
                    }
                }
            }
            deciders.retain(|r, _| live.contains(r));
            last.retain(|r, _| live.contains(r));
        }
        if changes.is_empty() {
            return Ok(());
        }
        for (_, revision, want) in &changes {
            tracing::info!(revision, instances = want, "autoscaling");
        }
        self.tx(move |tx| {
            for (arn, revision, want) in changes {
                let Some(mut state) = tx.load::<ServiceState>(&arn)? else {
                    continue;
                };
                // Only revisions that still serve: a deployment may have moved on meanwhile.
                if state.traffic.iter().any(|t| t.revision == revision) && !state.paused {
                    state.desired.insert(revision, want);
                    tx.save(&state)?;
                }
            }
            Ok(())
        })
        .await?;
        self.wake();
        Ok(())
    }
}
