//! Supervision of running instances: watching shims, health checks, crash restarts
//! with backoff.

use super::*;

impl Inner {
    /// Starts a container for an instance whose bundle exists (a restart). Boxed: a
    /// failed restart schedules the next one, which calls this again.
    pub(super) fn restart(self: Arc<Self>, inst: Arc<Instance>) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.restart_now(inst).await })
    }

    pub(super) async fn restart_now(self: &Arc<Self>, inst: Arc<Instance>) {
        let _op = inst.op.lock().await;
        if inst.stopping.load(Ordering::SeqCst) {
            return;
        }
        let generation = inst.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let record = inst.record();
        let inner = self.clone();
        let result = blocking(move || {
            let dir = inner.config.instance_dir(&record.id);
            let attachment = inner.net.attach(record.id.as_str(), &record.service_id)?;
            if !rootfs::is_mounted(&dir.join("rootfs")) {
                let (_, lowers) = inner.image_layers(&record.image, record.id_map)?;
                inner.mount_rootfs(&dir, &lowers, record.id_map)?;
            }
            if record.id_map.is_some() {
                super::mount_sysfs(&dir, &attachment.netns)?;
            }
            inner.spawn_shim(&dir, false)
        })
        .await;
        match result {
            Ok(child) => {
                let (_, record) = inst.update(|r| {
                    r.state = InstanceState::Starting;
                    r.started_at = Timestamp::now();
                });
                self.persist(&inst).await;
                self.metrics.restarts.inc();
                inst.running.send_replace(true);
                self.watch_child(inst.clone(), generation, child);
                self.start_health(inst.clone(), generation, Health::Starting);
                self.emit(&record, EventKind::Starting);
                tracing::info!(instance = %inst.id, "container restarted");
            }
            Err(e) => {
                tracing::warn!(instance = %inst.id, error = %e, "cannot restart the container");
                self.schedule_restart(&inst, None).await;
            }
        }
    }

    /// Records that an instance's container ended (with `exit`, if known) and schedules
    /// its restart with backoff.
    pub(super) async fn schedule_restart(
        self: &Arc<Self>,
        inst: &Arc<Instance>,
        exit: Option<Exit>,
    ) {
        let reset_after = self.config.backoff.reset_after;
        let ((delay, attempt), record) = inst.update(|r| {
            let steady = r.state == InstanceState::Healthy
                && r.healthy_since.is_some_and(|t| {
                    SystemTime::now()
                        .duration_since(t.into())
                        .is_ok_and(|d| d >= reset_after)
                });
            if steady {
                r.crashes = 0;
            }
            let delay = self.config.backoff.delay(r.crashes);
            r.crashes = r.crashes.saturating_add(1);
            r.restarts = r.restarts.saturating_add(1);
            if let Some(exit) = &exit {
                r.last_exit = Some(exit.clone());
            }
            r.state = InstanceState::Restarting;
            r.healthy_since = None;
            (delay, r.restarts)
        });
        self.persist(inst).await;
        if let Some(exit) = exit {
            let reason = if exit.oom_killed {
                "oom"
            } else if exit.signal.is_some() {
                "signal"
            } else if exit.code.is_some() {
                "exit"
            } else {
                "unknown"
            };
            self.metrics
                .exits
                .get_or_create(&ReasonLabel { reason })
                .inc();
            tracing::warn!(instance = %inst.id, reason = %exit.reason(), ?delay, attempt, "container exited; restarting");
            self.emit(
                &record,
                EventKind::Exited {
                    code: exit.code,
                    signal: exit.signal,
                    oom_killed: exit.oom_killed,
                },
            );
        }
        self.emit(&record, EventKind::Restarting { attempt, delay });
        self.restart_after(inst, delay);
    }

    /// Restarts an instance's container after `delay`. Only the wait can be cancelled
    /// (by a stop); a restart that began runs to its end on its own task, so no container
    /// is started behind a stop's back (the stop waits for it, and it checks `stopping`).
    pub(super) fn restart_after(self: &Arc<Self>, inst: &Arc<Instance>, delay: Duration) {
        let weak = Arc::downgrade(self);
        let inst2 = inst.clone();
        let handle = self.handle.clone();
        let task = self.handle.spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(inner) = weak.upgrade() {
                handle.spawn(inner.restart(inst2));
            }
        });
        inst.add_task(task.abort_handle());
    }

    /// Called when the shim of `generation` is gone.
    pub(super) async fn on_exit(self: &Arc<Self>, inst: Arc<Instance>, generation: u64) {
        if inst.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        let dir = inst.dir.clone();
        let oci = self.oci.clone();
        let id = inst.id.clone();
        let exit = blocking(move || Ok(exit_of(&dir, &oci, &id)))
            .await
            .ok()
            .flatten();
        inst.abort_tasks();
        inst.running.send_replace(false);
        if inst.stopping.load(Ordering::SeqCst) {
            return;
        }
        self.schedule_restart(
            &inst,
            Some(exit.unwrap_or(Exit {
                code: None,
                signal: None,
                oom_killed: false,
                at: Timestamp::now(),
            })),
        )
        .await;
    }

    /// Waits for a shim this process started to end, then reaps it. It waits on the
    /// shim's pidfd in the async runtime: a thread each held 200 threads for 200
    /// instances (bench/api). Only where pidfds are missing (Linux before 5.3) does a
    /// thread wait instead.
    pub(super) fn watch_child(
        self: &Arc<Self>,
        inst: Arc<Instance>,
        generation: u64,
        mut child: Child,
    ) {
        match process_end(&self.handle, rustix::process::Pid::from_child(&child)) {
            Ok(ended) => self.on_end(inst, generation, async move {
                ended.await;
                // The shim has ended: reaping it does not wait.
                let _ = child.wait();
            }),
            Err(e) => {
                tracing::debug!(instance = %inst.id, error = %e, "no pidfd for the shim; a thread waits for it");
                let (weak, handle) = (Arc::downgrade(self), self.handle.clone());
                std::thread::spawn(move || {
                    let _ = child.wait();
                    notify_exit(weak, handle, inst, generation);
                });
            }
        }
    }

    /// Waits for a shim another runway process started (not this one's child, so
    /// nothing to reap) to end, on its pidfd; one that is already gone counts as ended.
    pub(super) fn watch_pid(self: &Arc<Self>, inst: Arc<Instance>, generation: u64, pid: i32) {
        let watched = rustix::process::Pid::from_raw(pid)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))
            .and_then(|p| process_end(&self.handle, p));
        match watched {
            Ok(ended) => self.on_end(inst, generation, ended),
            Err(e) => {
                tracing::debug!(instance = %inst.id, %pid, error = %e, "the shim has ended or cannot be watched");
                self.on_end(inst, generation, std::future::ready(()));
            }
        }
    }

    /// Handles the end of `inst`'s shim once `ended` completes (in the async runtime, if
    /// the runtime still exists then).
    fn on_end(
        self: &Arc<Self>,
        inst: Arc<Instance>,
        generation: u64,
        ended: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let weak = Arc::downgrade(self);
        self.handle.spawn(async move {
            ended.await;
            if let Some(inner) = weak.upgrade() {
                inner.on_exit(inst, generation).await;
            }
        });
    }

    /// Probes an instance until its container ends or it is stopped.
    pub(super) fn start_health(
        self: &Arc<Self>,
        inst: Arc<Instance>,
        generation: u64,
        initial: Health,
    ) {
        let record = inst.record();
        let Some(ip) = record.ip else { return };
        let addr = SocketAddr::new(IpAddr::V4(ip), record.port);
        let check = record.health.clone();
        let weak = Arc::downgrade(self);
        let inst2 = inst.clone();
        let task = self.handle.spawn(async move {
            let mut tracker = Tracker::new(check.clone(), initial);
            loop {
                let probed = health::probe(addr, &check).await;
                let passed = probed.is_ok();
                let Some(inner) = weak.upgrade() else { return };
                if inst2.generation.load(Ordering::SeqCst) != generation
                    || inst2.stopping.load(Ordering::SeqCst)
                {
                    return;
                }
                let result = if passed { "pass" } else { "fail" };
                inner
                    .metrics
                    .health_checks
                    .get_or_create(&ResultLabel { result })
                    .inc();
                if let Some(health) = tracker.record(passed, Instant::now()) {
                    let why = probed.err().unwrap_or_default();
                    inner.on_health(&inst2, health, why).await;
                }
                drop(inner);
                tokio::time::sleep(tracker.next_delay()).await;
            }
        });
        inst.add_task(task.abort_handle());
    }

    /// Records a change of health; `why` is why the last probe failed, if it did.
    pub(super) async fn on_health(
        self: &Arc<Self>,
        inst: &Arc<Instance>,
        health: Health,
        why: String,
    ) {
        let (state, kind) = match health {
            Health::Healthy => (InstanceState::Healthy, EventKind::Healthy),
            Health::Unhealthy => (
                InstanceState::Unhealthy,
                EventKind::Unhealthy { reason: why },
            ),
            Health::Starting => return,
        };
        let (_, record) = inst.update(|r| {
            r.state = state;
            r.healthy_since = (state == InstanceState::Healthy).then(Timestamp::now);
        });
        if state == InstanceState::Healthy
            && let Some(created) = inst
                .created
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
        {
            self.metrics
                .ready_seconds
                .observe(created.elapsed().as_secs_f64());
        }
        tracing::info!(instance = %inst.id, state = ?state, "instance health changed");
        // Health is re-checked after a restart of runway, so the event need not wait
        // for the write.
        self.emit(&record, kind);
        self.persist(inst).await;
    }
}

/// Ends when process `pid` has ended (its pidfd turns readable), without a thread.
fn process_end(
    handle: &tokio::runtime::Handle,
    pid: rustix::process::Pid,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::NONBLOCK)?;
    let _entered = handle.enter();
    runway_sys::readable(fd)
}

/// Tells the runtime (if it still exists) that a shim ended, from a thread that waited
/// for it.
fn notify_exit(
    weak: Weak<Inner>,
    handle: tokio::runtime::Handle,
    inst: Arc<Instance>,
    generation: u64,
) {
    if let Some(inner) = weak.upgrade() {
        handle.spawn(async move {
            inner.on_exit(inst, generation).await;
        });
    }
}

/// How the container of the instance in `dir` ended, as its shim recorded it. A shim
/// that died without recording (killed) may have left its container running: it is
/// killed, since nothing would collect its logs.
pub(super) fn exit_of(dir: &Path, oci: &OciRuntime, id: &InstanceId) -> Option<Exit> {
    if let Some(exit) = shim::recorded_exit(dir) {
        return Some(exit);
    }
    if let Ok(Some(state)) = oci.state(id.as_str()) {
        tracing::warn!(instance = %id, status = %state.status, "the shim died before its container; removing it");
    }
    let _ = oci.delete(id.as_str());
    None
}
