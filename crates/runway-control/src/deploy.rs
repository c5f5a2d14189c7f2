//! The operation loop: each service's oldest unfinished operation moves one step at a
//! time. Every step is recorded (in the operation's `progress`) in the same transaction
//! that makes its decision, and every step is idempotent, so a restart resumes wherever
//! the last one stopped.

use crate::autoscaler::Bounds;
use crate::snapshot::Snapshot;
use crate::{ControlError, Controller, lock};
use runway_model::records::*;
use runway_model::shapes::{
    CodeRepository, HttpConfiguration, ImageConfiguration, ImageRepository,
};
use runway_model::{Timestamp, ids};
use runway_router::RevisionStats;
use runway_runtime::{InstanceState, InstanceStatus, LogQuery};
use runway_store::{Query, Txn, Typed};
use std::time::Duration;

/// What a step decided, written in one transaction.
#[derive(Debug, Default)]
struct Outcome {
    op: Option<OperationRecord>,
    service: Option<ServiceRecord>,
    state: Option<ServiceState>,
    revisions: Vec<RevisionRecord>,
    /// Revisions to forget.
    forget: Vec<String>,
    events: Vec<String>,
}

/// What a new revision is made of.
struct NewRevision {
    spec: ServiceSpec,
    image: ResolvedImage,
    /// The HTTP settings of the source's `apprunner.yaml`.
    source_http: Option<HttpConfiguration>,
    /// For the event log, before the revision's own.
    events: Vec<String>,
}

fn is_deployment(kind: OperationType) -> bool {
    matches!(
        kind,
        OperationType::CreateService
            | OperationType::UpdateService
            | OperationType::StartDeployment
    )
}

/// How many of a failed deployment's last log lines go into the event log.
const LOG_LINES: usize = 20;

/// The images of `service`'s revisions, with the identifier each came from, that no
/// revision of another service runs.
fn unshared_images(snap: &Snapshot, service: &ServiceRecord) -> Vec<(String, ResolvedImage)> {
    let mut mine = Vec::new();
    let mut others = std::collections::HashSet::new();
    for r in snap.revisions.values() {
        let Some(image) = &r.image else { continue };
        if r.service_arn == service.arn {
            let identifier = r
                .spec
                .source_configuration
                .image_repository
                .as_ref()
                .and_then(|i| i.image_identifier.clone())
                .unwrap_or_default();
            mine.push((identifier, image.clone()));
        } else if snap.service(&r.service_arn).is_some() {
            // (The snapshot holds services that are not deleted.)
            others.insert((image.repository.clone(), image.digest.clone()));
        }
    }
    mine.retain(|(_, i)| !others.contains(&(i.repository.clone(), i.digest.clone())));
    mine.sort_by(|a, b| (&a.1.repository, &a.1.digest).cmp(&(&b.1.repository, &b.1.digest)));
    mine.dedup_by(|a, b| a.1 == b.1);
    mine
}

/// Whether `code` is a source uploaded to runway's registry (it has no branch to show).
fn is_upload(code: &CodeRepository) -> bool {
    code.repository_url
        .as_deref()
        .is_some_and(|u| u.starts_with("upload://"))
}

/// Whether the router's `stats` show it sending requests to `revision`'s instances.
fn routes(stats: Option<&[RevisionStats]>, revision: &str) -> bool {
    stats.is_some_and(|stats| {
        stats
            .iter()
            .any(|s| s.revision_id == revision && !s.draining && s.endpoints > 0)
    })
}

fn later(now: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_millis(now.millis().saturating_add(d.as_millis() as i64))
}

impl Controller {
    pub(crate) async fn operation_loop(&self) {
        loop {
            if let Err(e) = self.operations_pass().await {
                tracing::warn!(error = %e, "the operation loop failed; retrying");
            }
            self.sleep_or_wake(self.inner.config.poll_interval).await;
        }
    }

    /// Moves every service's oldest unfinished operation one step, each service on its
    /// own task so that a slow step (an image pull) holds up no other service.
    async fn operations_pass(&self) -> crate::Result<()> {
        let snap = self.snapshot().await?;
        let mut seen = std::collections::HashSet::new();
        for op in &snap.unfinished {
            if !seen.insert(op.service_arn.clone()) {
                continue;
            }
            if !lock(&self.inner.busy).insert(op.service_arn.clone()) {
                continue;
            }
            let this = self.clone();
            let op = op.clone();
            tokio::spawn(async move {
                let arn = op.service_arn.clone();
                match this.step(op).await {
                    Ok(true) => this.wake(),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(service = %arn, error = %e, "an operation step failed; retrying")
                    }
                }
                lock(&this.inner.busy).remove(&arn);
            });
        }
        Ok(())
    }

    /// One step of `op`; whether anything changed.
    async fn step(&self, op: OperationRecord) -> crate::Result<bool> {
        // The pass that chose `op` read it before the service's previous step (if any)
        // committed: only the state read now, with the service marked busy, is current.
        // Deciding from the older one would repeat a step (a second revision). Only this
        // service is read.
        let arn = op.service_arn.clone();
        let snap = self
            .read(move |tx| Snapshot::load_service(tx, &arn))
            .await?;
        let Some(op) = snap.unfinished.iter().find(|o| o.id == op.id).cloned() else {
            return Ok(false);
        };
        let now = Timestamp::now();
        // The snapshot holds the unfinished operations of services that are not deleted
        // (the API takes none behind a deletion), so the service is there.
        let Some(service) = snap.service(&op.service_arn).cloned() else {
            return Ok(false);
        };
        let instances: Vec<InstanceStatus> = self
            .inner
            .runtime
            .list()
            .into_iter()
            // A stopping instance still holds its container: a pause or delete waits for it.
            .filter(|i| i.service_id == service.id && i.state != InstanceState::Stopped)
            .collect();
        let outcome = if op.status == OperationStatus::Pending {
            let mut op = op;
            op.status = OperationStatus::InProgress;
            let event = format!("{} started (operation {})", op.kind, op.id);
            Outcome {
                op: Some(op),
                events: vec![event],
                ..Default::default()
            }
        } else if is_deployment(op.kind) || op.kind == OperationType::ResumeService {
            // A deployment is over once the old revisions' instances are stopping: they
            // serve nothing, and their grace period is theirs.
            let active: Vec<InstanceStatus> = instances
                .into_iter()
                .filter(|i| i.state.is_active())
                .collect();
            self.deployment_step(&snap, service, op, &active, now).await
        } else {
            let outcome = self.stop_step(&snap, service, op, &instances, now);
            if let (Some(op), Some(service)) = (&outcome.op, &outcome.service)
                && op.kind == OperationType::DeleteService
                && op.status == OperationStatus::Succeeded
            {
                // Before the delete is recorded, so a crash in between repeats it. Which
                // images other services still run takes every service.
                let images = unshared_images(&self.snapshot().await?, service);
                if let Err(e) = self.inner.images.release(service, images).await {
                    tracing::warn!(service = %service.name, error = %e, "cannot remove the service's images; retrying");
                    return Ok(false);
                }
            }
            outcome
        };
        // A step may have taken long (a build, an image pull): what it records happened
        // when it ended.
        self.commit(outcome, Timestamp::now()).await
    }

    /// Pause and delete: stop every instance, then settle.
    fn stop_step(
        &self,
        snap: &Snapshot,
        mut service: ServiceRecord,
        mut op: OperationRecord,
        instances: &[InstanceStatus],
        now: Timestamp,
    ) -> Outcome {
        let mut state = snap.state(&service.arn);
        if op.progress.is_none() {
            state.paused = true;
            op.progress = Some(Progress::Stopping);
            let what = if op.kind == OperationType::DeleteService {
                "Deleting"
            } else {
                "Pausing"
            };
            return Outcome {
                op: Some(op),
                state: Some(state),
                events: vec![format!("{what} the service: stopping its instances")],
                ..Default::default()
            };
        }
        if !instances.is_empty() {
            return Outcome::default();
        }
        let mut outcome = Outcome::default();
        if op.kind == OperationType::DeleteService {
            service.status = ServiceStatus::Deleted;
            service.deleted_at = Some(now);
            state.traffic.clear();
            state.desired.clear();
            outcome.events.push("Service deleted".into());
        } else {
            service.status = ServiceStatus::Paused;
            outcome
                .events
                .push("Service paused: every instance is stopped".into());
        }
        op.status = OperationStatus::Succeeded;
        outcome.op = Some(finish(op, now));
        outcome.service = Some(service);
        outcome.state = Some(state);
        outcome
    }

    async fn deployment_step(
        &self,
        snap: &Snapshot,
        service: ServiceRecord,
        mut op: OperationRecord,
        instances: &[InstanceStatus],
        now: Timestamp,
    ) -> Outcome {
        let cfg = &self.inner.config;
        let mut state = snap.state(&service.arn);
        match op.progress.clone() {
            None => self.begin_deployment(snap, service, op, state, now).await,
            Some(Progress::Building) => {
                self.build_step(snap.bounds(&service), service, op, state, now)
                    .await
            }
            Some(Progress::Starting { revision, deadline }) => {
                let mine: Vec<&InstanceStatus> = instances
                    .iter()
                    .filter(|i| i.revision_id == revision)
                    .collect();
                let wanted = state.desired.get(&revision).copied().unwrap_or(1).max(1) as usize;
                let healthy = mine
                    .iter()
                    .filter(|i| i.state == InstanceState::Healthy)
                    .count();
                let failure = mine.iter().find_map(|i| match i.state {
                    InstanceState::Unhealthy => Some("its health check failed".to_string()),
                    _ if i.restarts > 0 || i.last_exit.is_some() => Some(format!(
                        "an instance exited ({})",
                        i.last_exit.as_ref().map(|e| e.reason()).unwrap_or_default()
                    )),
                    _ => None,
                });
                let start_failure = lock(&self.inner.failed_starts).get(&revision).cloned();
                // The deadline counts from when the revision's instances start: not before
                // a slow image unpack, and not while an instance is still being created.
                let first_start = mine
                    .iter()
                    .map(|i| Timestamp::from(i.started_at))
                    .min()
                    .map(|t| later(t, cfg.deploy_timeout));
                let deadline = first_start.map_or(deadline, |d| d.max(deadline));
                let creating = mine.is_empty()
                    && lock(&self.inner.starting)
                        .get(&revision)
                        .is_some_and(|n| *n > 0);
                if let Some(reason) = failure.or(start_failure).or_else(|| {
                    (now > deadline && !creating && healthy < wanted).then(|| {
                        format!(
                            "it was not healthy within {} s",
                            cfg.deploy_timeout.as_secs()
                        )
                    })
                }) {
                    let reason = format!("revision {revision} failed: {reason}");
                    op.progress = Some(Progress::RollingBack {
                        revision,
                        reason: reason.clone(),
                    });
                    let serving = snap
                        .state(&service.arn)
                        .traffic
                        .iter()
                        .any(|t| t.percent > 0);
                    // With nothing serving (a new service) there is nothing to go back to.
                    let event = if serving {
                        op.status = OperationStatus::RollbackInProgress;
                        format!("{reason}; rolling back")
                    } else {
                        format!("{reason}; stopping it")
                    };
                    return Outcome {
                        op: Some(op),
                        events: vec![event],
                        ..Default::default()
                    };
                }
                if healthy < wanted {
                    return Outcome::default();
                }
                let mut outcome = Outcome::default();
                if op.kind == OperationType::ResumeService {
                    // Running once the router sends it requests again (it may still hold
                    // the paused table), or past the deadline with a router that cannot
                    // tell.
                    if now <= deadline
                        && !routes(self.inner.router.stats().await.as_deref(), &revision)
                    {
                        return outcome;
                    }
                    outcome
                        .events
                        .push("Health check is successful. Service resumed".into());
                    op.status = OperationStatus::Succeeded;
                    outcome.op = Some(finish(op, now));
                    let mut service = service;
                    service.status = ServiceStatus::Running;
                    outcome.service = Some(service);
                    return outcome;
                }
                let port = snap
                    .revisions
                    .get(&revision)
                    .and_then(|r| r.spec.source_configuration.image_repository.as_ref())
                    .and_then(|i| i.image_configuration.as_ref())
                    .and_then(|c| c.port.clone())
                    .unwrap_or_else(|| "8080".into());
                outcome.events.push(format!(
                    "Health check is successful on port {port}. Routing traffic to revision {revision}"
                ));
                // Tags stay on the revisions that had them; the new one takes all traffic.
                let mut traffic: Vec<TrafficTarget> = state
                    .traffic
                    .iter()
                    .filter(|t| t.tag.is_some() && t.revision != revision)
                    .map(|t| TrafficTarget {
                        percent: 0,
                        ..t.clone()
                    })
                    .collect();
                traffic.insert(
                    0,
                    TrafficTarget {
                        revision: revision.clone(),
                        percent: 100,
                        tag: None,
                    },
                );
                for old in state
                    .traffic
                    .iter()
                    .filter(|t| t.revision != revision && t.percent > 0)
                {
                    if let Some(mut r) = snap.revisions.get(&old.revision).cloned() {
                        r.status = RevisionStatus::Retired;
                        outcome.revisions.push(r);
                    }
                }
                if let Some(mut r) = snap.revisions.get(&revision).cloned() {
                    r.status = RevisionStatus::Serving;
                    outcome.revisions.push(r);
                }
                state.traffic = traffic;
                op.progress = Some(Progress::Draining {
                    revision,
                    until: later(now, cfg.drain_timeout),
                });
                outcome.op = Some(op);
                outcome.state = Some(state);
                outcome
            }
            Some(Progress::Draining { revision, until }) => {
                let serves =
                    |r: &str| r == revision || state.traffic.iter().any(|t| t.revision == r);
                // Old revisions: still desired, or still running, and no longer in traffic.
                let old: Vec<String> = state
                    .desired
                    .keys()
                    .cloned()
                    .chain(instances.iter().map(|i| i.revision_id.clone()))
                    .filter(|r| !serves(r))
                    .collect();
                // A router that cannot tell (its process is down or starting again) may
                // still have requests for them, and may not route the new revision yet:
                // they get the whole drain timeout.
                let stats = self.inner.router.stats().await;
                let busy = stats.as_ref().is_none_or(|stats| {
                    stats
                        .iter()
                        .any(|s| old.contains(&s.revision_id) && (s.in_flight > 0 || s.queued > 0))
                });
                // The switch is committed, but the converger publishes it to the router
                // concurrently: the deployment is not over (nor the old revisions gone)
                // before the router sends requests to the new one.
                if (busy || !routes(stats.as_deref(), &revision)) && now < until {
                    return Outcome::default();
                }
                let mut outcome = Outcome::default();
                if old.iter().any(|r| state.desired.remove(r).is_some()) {
                    // The converger stops them now that they are no longer desired.
                    outcome.state = Some(state);
                    return outcome;
                }
                if !old.is_empty() {
                    return outcome;
                }
                outcome
                    .events
                    .push(format!("Deployment of revision {revision} completed"));
                op.status = OperationStatus::Succeeded;
                outcome.op = Some(finish(op, now));
                let mut service = service;
                service.status = ServiceStatus::Running;
                outcome.service = Some(service);
                outcome.forget = self.prunable(snap, &state);
                outcome.state = Some(state);
                outcome
            }
            Some(Progress::RollingBack { revision, reason }) => {
                state.desired.remove(&revision);
                let mut outcome = Outcome::default();
                if let Some(mut r) = snap.revisions.get(&revision).cloned()
                    && r.status != RevisionStatus::Failed
                {
                    r.status = RevisionStatus::Failed;
                    r.message = Some(reason.clone());
                    outcome.revisions.push(r);
                }
                if instances.iter().any(|i| i.revision_id == revision) {
                    outcome.state = Some(state);
                    return outcome;
                }
                let mut service = service;
                if op.kind == OperationType::ResumeService {
                    op.status = OperationStatus::Failed;
                    state.paused = true;
                    service.status = ServiceStatus::Paused;
                    outcome.events.push(format!(
                        "Resume failed; the service stays paused ({reason})"
                    ));
                } else if state.traffic.iter().any(|t| t.percent > 0) {
                    op.status = OperationStatus::RollbackSucceeded;
                    service.status = ServiceStatus::Running;
                    outcome.events.push(format!(
                        "Rolled back: the previous revision keeps serving ({reason})"
                    ));
                } else {
                    op.status = OperationStatus::Failed;
                    service.status = if op.kind == OperationType::CreateService {
                        ServiceStatus::CreateFailed
                    } else {
                        ServiceStatus::Running
                    };
                    outcome.events.push(format!("Deployment failed: {reason}"));
                }
                outcome
                    .events
                    .extend(self.last_log_lines(&service, op.started_at).await);
                lock(&self.inner.failed_starts).remove(&revision);
                op.message = Some(reason);
                outcome.op = Some(finish(op, now));
                outcome.service = Some(service);
                outcome.state = Some(state);
                outcome
            }
            Some(Progress::Stopping) => Outcome::default(),
        }
    }

    /// Resolves the image and creates the revision (or, to resume, restarts the serving
    /// revisions).
    async fn begin_deployment(
        &self,
        snap: &Snapshot,
        mut service: ServiceRecord,
        mut op: OperationRecord,
        mut state: ServiceState,
        now: Timestamp,
    ) -> Outcome {
        let cfg = &self.inner.config;
        let bounds = snap.bounds(&service);
        let deadline = later(now, cfg.deploy_timeout);
        if op.kind == OperationType::ResumeService {
            let Some(serving) = state
                .traffic
                .iter()
                .find(|t| t.percent > 0)
                .map(|t| t.revision.clone())
            else {
                return fail(
                    op,
                    service,
                    now,
                    "the service has no revision to resume".into(),
                );
            };
            state.paused = false;
            for t in state.traffic.iter().filter(|t| t.percent > 0) {
                state.desired.insert(t.revision.clone(), bounds.min.max(1));
            }
            op.progress = Some(Progress::Starting {
                revision: serving,
                deadline,
            });
            return Outcome {
                op: Some(op),
                state: Some(state),
                events: vec!["Resuming: provisioning instances".into()],
                ..Default::default()
            };
        }
        let mut spec = op.spec.clone().unwrap_or_else(|| service.spec.clone());
        let (mut source_http, mut events) = (None, Vec::new());
        // A revision whose image runs again: a rollback's target, or for new HTTP
        // settings the serving revision.
        let again = match (op.settings_only, state.primary_revision()) {
            (false, _) => op.redeploy.clone(),
            (true, Some(serving)) => Some(serving.to_string()),
            (true, None) => {
                let reason =
                    "the service has no serving revision to apply its HTTP configuration to";
                return fail(op, service, now, reason.into());
            }
        };
        let image = match again {
            Some(id) => match snap
                .revisions
                .get(&id)
                .and_then(|r| Some((r, r.image.clone()?)))
            {
                Some((r, image)) => {
                    if op.settings_only {
                        // What the serving revision runs, with the new settings.
                        let http = spec.http_configuration.take();
                        spec = r.spec.clone();
                        spec.http_configuration = http;
                        events.push(format!(
                            "Deploying the image of revision {id} with the new HTTP configuration"
                        ));
                    }
                    source_http = r.source_http_configuration.clone();
                    image
                }
                None => {
                    return fail(
                        op,
                        service,
                        now,
                        format!("revision {id} has no image to redeploy"),
                    );
                }
            },
            None => match spec
                .source_configuration
                .image_repository
                .as_ref()
                .and_then(|i| i.image_identifier.clone())
            {
                Some(identifier) => match self
                    .inner
                    .images
                    .resolve(&identifier, spec.source_configuration.connection_arn())
                    .await
                {
                    Ok(image) => image,
                    Err(e) => {
                        return fail(
                            op,
                            service,
                            now,
                            format!("cannot get image {identifier}: {e}"),
                        );
                    }
                },
                None => {
                    let Some(code) = &spec.source_configuration.code_repository else {
                        return fail(op, service, now, "the service has no source".into());
                    };
                    let event = format!(
                        "Building {}{} (build log: runway operations log {})",
                        code.repository_url.as_deref().unwrap_or_default(),
                        code.source_code_version
                            .as_ref()
                            .and_then(|v| v.value.as_deref())
                            .filter(|_| !is_upload(code))
                            .map(|b| format!(" branch {b}"))
                            .unwrap_or_default(),
                        op.id
                    );
                    op.progress = Some(Progress::Building);
                    if op.kind == OperationType::CreateService {
                        service.status = ServiceStatus::OperationInProgress;
                    }
                    return Outcome {
                        op: Some(op),
                        service: Some(service),
                        events: vec![event],
                        ..Default::default()
                    };
                }
            },
        };
        let revision = NewRevision {
            spec,
            image,
            source_http,
            events,
        };
        self.start_revision(bounds, service, op, state, revision, now)
            .await
    }

    /// Builds the operation's source; then starts a revision of what was built.
    async fn build_step(
        &self,
        bounds: Bounds,
        service: ServiceRecord,
        op: OperationRecord,
        state: ServiceState,
        now: Timestamp,
    ) -> Outcome {
        let mut spec = op.spec.clone().unwrap_or_else(|| service.spec.clone());
        let Some(code) = spec.source_configuration.code_repository.clone() else {
            return fail(
                op,
                service,
                now,
                "the service has no code repository".into(),
            );
        };
        let request = crate::SourceBuild {
            service: &service,
            code: &code,
            connection_arn: spec.source_configuration.connection_arn(),
            operation_id: &op.id,
        };
        let built = self.inner.images.build(request).await;
        // The build took its time: what follows happens at its end.
        let now = Timestamp::now();
        let built = match built {
            Ok(built) => built,
            Err(e) => return fail(op, service, now, format!("the build failed: {e}")),
        };
        // The revision runs what was built: its image and how it runs are part of it, so
        // a rollback to it needs no rebuild.
        spec.source_configuration.image_repository = Some(ImageRepository {
            image_identifier: Some(built.identifier.clone()),
            image_repository_type: Some("ECR".into()),
            image_configuration: Some(ImageConfiguration {
                port: Some(built.port.to_string()),
                runtime_environment_variables: Some(built.env.iter().cloned().collect()),
                runtime_environment_secrets: (!built.secrets.is_empty())
                    .then(|| built.secrets.iter().cloned().collect()),
                start_command: None,
            }),
        });
        let mut events = vec![format!("Build succeeded: {}", built.summary)];
        events.extend(built.notes.iter().cloned());
        let revision = NewRevision {
            spec,
            image: built.image,
            source_http: (built.http != HttpConfiguration::default()).then_some(built.http),
            events,
        };
        self.start_revision(bounds, service, op, state, revision, now)
            .await
    }

    /// Pins the secret references `spec` names (see [`crate::SecretResolver`]); the
    /// error is why the deployment fails.
    async fn pin_secrets(&self, spec: &ServiceSpec) -> Result<Vec<SecretPin>, String> {
        let references: Vec<(String, String)> = spec
            .source_configuration
            .image_repository
            .as_ref()
            .and_then(|i| i.image_configuration.as_ref())
            .and_then(|c| c.runtime_environment_secrets.clone())
            .unwrap_or_default()
            .into_iter()
            .collect();
        let kms_key = spec
            .encryption_configuration
            .as_ref()
            .and_then(|e| e.kms_key.as_deref());
        if references.is_empty() && kms_key.is_none() {
            return Ok(Vec::new());
        }
        match self.inner.secrets.get() {
            Some(resolver) => resolver.pin(&references, kms_key).await,
            None if references.is_empty() => Ok(Vec::new()),
            None => Err(format!(
                "secret {} cannot be resolved: this server has no secret store",
                references[0].0
            )),
        }
    }

    /// Records a new revision, with its secret references pinned, and starts its
    /// instances. A reference that does not resolve fails the deployment (naming it), and
    /// whatever runs keeps running.
    async fn start_revision(
        &self,
        bounds: Bounds,
        mut service: ServiceRecord,
        mut op: OperationRecord,
        mut state: ServiceState,
        new: NewRevision,
        now: Timestamp,
    ) -> Outcome {
        let NewRevision {
            spec,
            image,
            source_http,
            mut events,
        } = new;
        let secrets = match self.pin_secrets(&spec).await {
            Ok(pins) => pins,
            Err(reason) => return fail(op, service, now, reason),
        };
        // The revision starts now, after whatever the step waited for (a build, a pull).
        let now = now.max(Timestamp::now());
        let deadline = later(now, self.inner.config.deploy_timeout);
        let number = state.next_revision.max(1);
        state.next_revision = number + 1;
        let revision = RevisionRecord {
            id: format!("{}-{number:05}", service.id),
            service_arn: service.arn.clone(),
            number,
            created_at: now,
            spec,
            image: Some(image.clone()),
            status: RevisionStatus::Deploying,
            message: None,
            source_http_configuration: source_http,
            secrets,
        };
        // As many instances as the serving revision has now, within the new bounds.
        let current: u32 = state
            .traffic
            .iter()
            .filter(|t| t.percent > 0)
            .filter_map(|t| state.desired.get(&t.revision))
            .sum();
        let initial = current.clamp(bounds.min.max(1), bounds.max.max(1));
        state.desired.insert(revision.id.clone(), initial);
        op.progress = Some(Progress::Starting {
            revision: revision.id.clone(),
            deadline,
        });
        events.extend([
            format!("Image {} resolved to {}", image.repository, image.digest),
            format!(
                "Provisioning {initial} instance(s) of revision {}",
                revision.id
            ),
            format!(
                "Performing health check ({})",
                revision
                    .spec
                    .health_check_configuration
                    .protocol
                    .as_deref()
                    .unwrap_or("TCP")
            ),
        ]);
        if op.kind == OperationType::CreateService {
            service.status = ServiceStatus::OperationInProgress;
        }
        Outcome {
            op: Some(op),
            service: Some(service),
            state: Some(state),
            revisions: vec![revision],
            events,
            ..Default::default()
        }
    }

    /// Revisions beyond the newest `keep_revisions` that neither serve nor run.
    fn prunable(&self, snap: &Snapshot, state: &ServiceState) -> Vec<String> {
        let mut mine: Vec<&RevisionRecord> = snap
            .revisions
            .values()
            .filter(|r| r.service_arn == state.service_arn)
            .collect();
        mine.sort_by_key(|r| std::cmp::Reverse(r.number));
        mine.into_iter()
            .skip(self.inner.config.keep_revisions)
            .filter(|r| {
                !state.traffic.iter().any(|t| t.revision == r.id)
                    && !state.desired.contains_key(&r.id)
            })
            .map(|r| r.id.clone())
            .collect()
    }

    /// The last lines the service's instances wrote since `since`, for the event log.
    async fn last_log_lines(&self, service: &ServiceRecord, since: Timestamp) -> Vec<String> {
        let query = LogQuery {
            service: service.id.clone(),
            instance: None,
            since: Some(since.into()),
            follow: false,
        };
        let Ok(mut stream) = self.inner.runtime.logs(query).await else {
            return Vec::new();
        };
        let mut lines = std::collections::VecDeque::new();
        while let Some(line) = stream.next().await {
            lines.push_back(format!("log [{}] {}", line.instance_id, line.text));
            if lines.len() > LOG_LINES {
                lines.pop_front();
            }
        }
        lines.into()
    }

    /// Writes a step's outcome in one transaction; whether anything changed.
    async fn commit(&self, outcome: Outcome, now: Timestamp) -> crate::Result<bool> {
        let changed = outcome.op.is_some()
            || outcome.service.is_some()
            || outcome.state.is_some()
            || !outcome.revisions.is_empty()
            || !outcome.forget.is_empty()
            || !outcome.events.is_empty();
        if !changed {
            return Ok(false);
        }
        self.tx(move |tx| write(tx, outcome, now)).await?;
        Ok(true)
    }
}

fn write(tx: &mut dyn Txn, outcome: Outcome, now: Timestamp) -> Result<(), ControlError> {
    let arn = outcome
        .op
        .as_ref()
        .map(|o| o.service_arn.clone())
        .or_else(|| outcome.service.as_ref().map(|s| s.arn.clone()))
        .or_else(|| outcome.state.as_ref().map(|s| s.service_arn.clone()));
    let op_id = outcome.op.as_ref().map(|o| o.id.clone());
    if let Some(mut op) = outcome.op {
        op.updated_at = now;
        tx.save(&op)?;
    }
    if let Some(state) = &outcome.state {
        tx.save(state)?;
    }
    for r in &outcome.revisions {
        tx.save(r)?;
    }
    for id in &outcome.forget {
        tx.remove::<RevisionRecord>(id)?;
    }
    if let Some(mut service) = outcome.service {
        // Another operation may already wait behind this one: the service stays busy.
        let queued = tx
            .load_all::<OperationRecord>(&Query {
                parent: Some(service.arn.clone()),
                ..Default::default()
            })?
            .into_iter()
            .any(|(_, o)| !o.status.is_final() && Some(&o.id) != op_id.as_ref());
        if queued && service.status != ServiceStatus::Deleted {
            service.status = ServiceStatus::OperationInProgress;
        }
        service.updated_at = now;
        tx.save(&service)?;
    }
    if let Some(arn) = arn {
        for message in outcome.events {
            tx.create(&EventRecord {
                id: ids::new_operation_id(),
                service_arn: arn.clone(),
                time: now,
                operation_id: op_id.clone(),
                message,
            })?;
        }
    }
    Ok(())
}

/// The operation, ended now.
fn finish(mut op: OperationRecord, now: Timestamp) -> OperationRecord {
    op.ended_at = Some(now);
    op.progress = None;
    op
}

/// Ends a deployment that never started an instance: the service keeps what it had.
fn fail(
    mut op: OperationRecord,
    mut service: ServiceRecord,
    now: Timestamp,
    reason: String,
) -> Outcome {
    op.status = OperationStatus::Failed;
    op.message = Some(reason.clone());
    op.ended_at = Some(now);
    op.progress = None;
    if op.kind == OperationType::CreateService {
        service.status = ServiceStatus::CreateFailed;
    } else {
        service.status = ServiceStatus::Running;
    }
    Outcome {
        op: Some(op),
        service: Some(service),
        events: vec![format!("Deployment failed: {reason}")],
        ..Default::default()
    }
}
