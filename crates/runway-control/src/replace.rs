//! Replacing instances that fail their health checks, and the service events of
//! instances' lives.
//!
//! The runtime restarts a container that exits; an instance that runs but fails its
//! health checks (a hung app) it only reports. The route table already leaves such an
//! instance out (it routes healthy instances only); the converger then replaces it: a
//! new instance is started at once, and the failing one is stopped after a grace period
//! in which the requests it still holds may finish. When the replacements fail too, each
//! next round waits longer (the revision's [`Replacements`]), and an instance that
//! recovers meanwhile simply serves again.
//!
//! Every crash, OOM kill, restart, failed health check and replacement is written to the
//! service's event log (`runway events`, `Runway.ListServiceEvents`).

use crate::{Controller, lock};
use runway_model::records::EventRecord;
use runway_model::{Timestamp, ids};
use runway_runtime::{EventKind, InstanceEvent, InstanceStatus};
use runway_store::Typed;
use std::time::Instant;
use tokio::sync::broadcast::error::RecvError;

/// A revision's recent replacements, for the backoff.
#[derive(Debug, Default)]
pub(crate) struct Replacements {
    /// Replacement rounds since the count last started over.
    count: u32,
    /// When the last round began.
    last: Option<Instant>,
}

/// How an instance is named in events: its first 12 digits, as its hostname.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// The event line for a change in an instance's life, if it is one users should see.
fn describe(event: &InstanceEvent) -> Option<String> {
    let instance = short(event.id.as_str());
    match &event.kind {
        EventKind::Unhealthy { reason } => Some(format!(
            "Instance {instance} failed its health checks ({reason}); it gets no requests"
        )),
        EventKind::Exited {
            oom_killed: true, ..
        } => Some(format!(
            "Instance {instance} was killed: it ran out of memory (OOM)"
        )),
        EventKind::Exited {
            signal: Some(signal),
            ..
        } => Some(format!("Instance {instance} was killed by signal {signal}")),
        EventKind::Exited { code, .. } => Some(match code {
            Some(code) => format!("Instance {instance} exited with code {code}"),
            None => format!("Instance {instance} exited"),
        }),
        EventKind::Restarting { attempt, delay } => Some(format!(
            "Instance {instance} restarts in {:.0?} (restart {attempt})",
            delay
        )),
        EventKind::Starting | EventKind::Healthy | EventKind::Stopped => None,
    }
}

impl Controller {
    /// Wakes the loops when an instance changes (healthy, unhealthy, exited, stopped),
    /// and writes what users should know of it to its service's event log.
    pub(crate) async fn runtime_events(&self) {
        let mut events = self.inner.runtime.subscribe();
        loop {
            match events.recv().await {
                Ok(event) => {
                    self.wake();
                    if let Some(message) = describe(&event) {
                        self.record_event(&event.service_id, message).await;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "instance events were missed");
                    self.wake();
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Appends `message` to the event log of the service with id `service_id`.
    async fn record_event(&self, service_id: &str, message: String) {
        let known = lock(&self.inner.service_arns).get(service_id).cloned();
        let arn = match known {
            Some(arn) => arn,
            None => match self.snapshot().await {
                Ok(snap) => match snap.services.iter().find(|s| s.id == service_id) {
                    Some(s) => s.arn.clone(),
                    None => return,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the services for an event");
                    return;
                }
            },
        };
        let written = self
            .tx(move |tx| {
                tx.create(&EventRecord {
                    id: ids::new_operation_id(),
                    service_arn: arn,
                    time: Timestamp::now(),
                    operation_id: None,
                    message,
                })?;
                Ok(())
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot record a service event");
        }
    }

    /// Starts replacing `unhealthy` instances of `revision` (which serves traffic), unless
    /// the revision's backoff says to wait: each is taken out of the instances the
    /// revision counts, so the converger starts its replacement at once, and stopped
    /// after the grace period. Whether they are being replaced.
    pub(crate) fn replace_unhealthy(&self, revision: &str, unhealthy: &[&InstanceStatus]) -> bool {
        let backoff = self.inner.config.replace_backoff;
        let now = Instant::now();
        {
            let mut replacing = lock(&self.inner.replacing);
            let round = replacing.entry(revision.to_string()).or_default();
            if let Some(last) = round.last {
                let since = now.duration_since(last);
                if since >= backoff.reset_after {
                    round.count = 0;
                } else if since < backoff.delay(round.count.saturating_sub(1)) {
                    return false;
                }
            }
            round.count += 1;
            round.last = Some(now);
        }
        for instance in unhealthy {
            self.replace(instance);
        }
        true
    }

    /// Replaces one instance that fails its health checks: out of the revision's count
    /// (and the route table) now, stopped after the grace period.
    fn replace(&self, instance: &InstanceStatus) {
        let id = instance.id.clone();
        {
            let mut draining = lock(&self.inner.draining);
            if draining.contains_key(id.as_str()) {
                return;
            }
            draining.insert(id.to_string(), Instant::now());
        }
        let service_id = instance.service_id.clone();
        let this = self.clone();
        tokio::spawn(async move {
            this.wake();
            let name = short(id.as_str()).to_string();
            this.record_event(
                &service_id,
                format!(
                    "Replacing instance {name}, which fails its health checks: a new instance is starting"
                ),
            )
            .await;
            this.drain(&id, this.inner.config.replace_grace).await;
            let stopped = this
                .inner
                .runtime
                .stop(&id, this.inner.config.stop_grace)
                .await;
            let message = match stopped {
                Ok(()) => format!("Instance {name} stopped: it was replaced"),
                Err(e) => {
                    tracing::warn!(instance = %id, error = %e, "stopping a replaced instance failed");
                    format!("Instance {name} was replaced but could not be stopped: {e}")
                }
            };
            this.record_event(&service_id, message).await;
            lock(&this.inner.draining).remove(id.as_str());
            this.wake();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runway_runtime::InstanceId;
    use std::time::Duration;

    fn event(kind: EventKind) -> InstanceEvent {
        InstanceEvent {
            id: InstanceId::parse("0123456789abcdef0123456789abcdef").unwrap(),
            service_id: "svc".into(),
            revision_id: "svc-00001".into(),
            kind,
        }
    }

    #[test]
    fn events_say_what_happened_to_which_instance() {
        let exited = |code, signal, oom_killed| EventKind::Exited {
            code,
            signal,
            oom_killed,
        };
        assert_eq!(
            describe(&event(exited(Some(137), Some(9), true))).unwrap(),
            "Instance 0123456789ab was killed: it ran out of memory (OOM)"
        );
        assert_eq!(
            describe(&event(exited(None, Some(9), false))).unwrap(),
            "Instance 0123456789ab was killed by signal 9"
        );
        assert_eq!(
            describe(&event(exited(Some(3), None, false))).unwrap(),
            "Instance 0123456789ab exited with code 3"
        );
        assert_eq!(
            describe(&event(EventKind::Restarting {
                attempt: 2,
                delay: Duration::from_secs(2)
            }))
            .unwrap(),
            "Instance 0123456789ab restarts in 2s (restart 2)"
        );
        assert!(
            describe(&event(EventKind::Unhealthy {
                reason: "no answer within 1s".into()
            }))
            .unwrap()
            .contains("failed its health checks (no answer within 1s)")
        );
        assert_eq!(describe(&event(EventKind::Healthy)), None);
    }
}
