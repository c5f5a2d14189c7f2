//! Recovery after a crash or a restart of runway: adopting the instances that still run,
//! finishing what was cut short, and removing what belongs to no instance.

use super::supervise::exit_of;
use super::*;

/// Removes everything of the runtime configured by `config` from the host, without the
/// store: shims and containers killed, overlays unmounted, cgroups, the network (bridge,
/// namespaces, veths, nftables tables) and the root directory removed. Blocking; safe to
/// call when nothing is left, and from a `Drop` after a failed test.
pub fn purge(config: &RuntimeConfig) -> Result<()> {
    let dirs: Vec<PathBuf> = ["instances", "jobs"]
        .iter()
        .filter_map(|d| std::fs::read_dir(config.root.join(d)).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    for dir in &dirs {
        if let Some(pid) = shim::running_shim(dir)
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    let program = find_program(&config.oci_runtime).unwrap_or_else(|_| config.oci_runtime.clone());
    let oci = OciRuntime::new(&program, &config.oci_root());
    for c in oci.list().unwrap_or_default() {
        let _ = oci.delete(&c.id);
    }
    for dir in &dirs {
        rootfs::unmount_all(dir)?;
    }
    if let Ok(cgroups) = Cgroups::detect() {
        let parent = config.cgroup_parent();
        for child in cgroups.children(&parent) {
            cgroups.remove(&format!("{parent}/{child}"));
        }
        cgroups.remove(&parent);
    }
    runway_net::purge(&config.net.bridge)?;
    crate::volatile::remove(&config.volatile_root())?;
    let mounted_inside = rootfs::mount_points()
        .iter()
        .any(|m| m.starts_with(&config.root));
    if mounted_inside {
        return Err(RuntimeError::Internal(format!(
            "something is still mounted under {}; not removing it",
            config.root.display()
        )));
    }
    match std::fs::remove_dir_all(&config.root) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("cannot remove {}", config.root.display()))(e)),
    }
}

/// Whether the instance in `dir` kept its bundle in memory and it is gone (the host
/// restarted), so its container cannot be started again.
fn bundle_lost(dir: &Path) -> bool {
    let Ok(text) = std::fs::read(dir.join(shim::CONFIG_FILE)) else {
        return false;
    };
    let Ok(config) = serde_json::from_slice::<ShimConfig>(&text) else {
        return false;
    };
    config.bundle != dir && !config.bundle.join("config.json").exists()
}

impl Inner {
    /// Resumes an instance found in the store when the runtime opens.
    pub(super) async fn adopt(self: &Arc<Self>, record: InstanceRecord) -> Result<()> {
        let dir = self.config.instance_dir(&record.id);
        let shim_pid = shim::running_shim(&dir);
        match record.state {
            // Removed by the first prune, with the others that expire later.
            InstanceState::Stopped => Ok(()),
            InstanceState::Creating if shim_pid.is_none() => {
                // Its start never returned: nothing of it may stay.
                let inner = self.clone();
                blocking(move || {
                    inner.teardown(&record.id)?;
                    let _ = std::fs::remove_dir_all(&dir);
                    let mut tx = inner.store.begin_relaxed()?;
                    tx.remove::<InstanceRecord>(record.id.as_str())?;
                    tx.commit()?;
                    Ok(())
                })
                .await
            }
            InstanceState::Stopping => {
                let id = record.id.clone();
                let inst = Instance::new(dir, record, shim_pid.is_some());
                self.instances
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.clone(), inst.clone());
                if let Some(pid) = shim_pid {
                    self.watch_pid(inst.clone(), 0, pid);
                }
                self.stop(&id, Duration::ZERO).await
            }
            _ => {
                let id = record.id.clone();
                let state = record.state;
                let inst = Instance::new(dir, record, shim_pid.is_some());
                self.instances
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.clone(), inst.clone());
                match shim_pid {
                    Some(pid) => {
                        let health = match state {
                            InstanceState::Healthy => Health::Healthy,
                            InstanceState::Unhealthy => Health::Unhealthy,
                            _ => Health::Starting,
                        };
                        if !matches!(state, InstanceState::Healthy | InstanceState::Unhealthy) {
                            inst.update(|r| r.state = InstanceState::Starting);
                            self.persist(&inst).await;
                        }
                        self.watch_pid(inst.clone(), 0, pid);
                        self.start_health(inst, 0, health);
                        tracing::info!(instance = %id, shim = pid, "adopted a running instance");
                    }
                    None if bundle_lost(&inst.dir) => {
                        // Its secrets' bundle was in memory, and the host restarted.
                        tracing::warn!(instance = %id, "the instance's bundle with its secrets is gone (the host restarted); giving it up so that a new one is started");
                        self.stop(&id, Duration::ZERO).await?;
                    }
                    None if state == InstanceState::Restarting => {
                        // Its exit was recorded; only the restart is still due.
                        self.restart_after(&inst, self.config.backoff.initial);
                    }
                    None => {
                        // It ended while runway was down.
                        let dir = inst.dir.clone();
                        let oci = self.oci.clone();
                        let exit = blocking(move || Ok(exit_of(&dir, &oci, &id))).await?;
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
                }
                Ok(())
            }
        }
    }

    /// Removes the records and directories (logs) of instances stopped longer ago than
    /// the retention. How many.
    pub(super) fn prune(&self) -> Result<usize> {
        let retention = self.config.stopped_log_retention;
        let expired: Vec<InstanceRecord> = {
            let tx = self.store.read()?;
            tx.load_all::<InstanceRecord>(&Query {
                parent: Some(self.config.net.bridge.clone()),
                ..Query::default()
            })?
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| r.state == InstanceState::Stopped)
            .filter(|r| {
                r.stopped_at.is_none_or(|t| {
                    SystemTime::now()
                        .duration_since(t.into())
                        .is_ok_and(|d| d > retention)
                })
            })
            .collect()
        };
        for record in &expired {
            let dir = self.config.instance_dir(&record.id);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(format!("cannot remove {}", dir.display()))(e)),
            }
            let mut tx = self.store.begin_relaxed()?;
            tx.remove::<InstanceRecord>(record.id.as_str())?;
            tx.commit()?;
        }
        if !expired.is_empty() {
            tracing::info!(
                count = expired.len(),
                "removed the logs of instances stopped long ago"
            );
        }
        Ok(expired.len())
    }

    /// Removes what belongs to no instance the runtime drives: containers, shims,
    /// mounts, directories, cgroups and network leftovers.
    pub(super) fn sweep(&self) -> Result<()> {
        let live: HashSet<InstanceId> = self
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let kept: HashSet<String> = {
            let tx = self.store.read()?;
            tx.load_all::<InstanceRecord>(&Query {
                parent: Some(self.config.net.bridge.clone()),
                ..Query::default()
            })?
            .into_iter()
            .map(|(_, r)| r.id.to_string())
            .collect()
        };
        let mut removed = self.sweep_jobs()?;
        for c in self.oci.list()? {
            if InstanceId::parse(&c.id).is_none_or(|id| !live.contains(&id)) {
                self.oci.delete(&c.id)?;
                removed += 1;
            }
        }
        let instances = self.config.root.join("instances");
        for entry in std::fs::read_dir(&instances)
            .map_err(io(format!("cannot list {}", instances.display())))?
        {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if InstanceId::parse(&name).is_some_and(|id| live.contains(&id)) {
                continue;
            }
            let dir = entry.path();
            if let Some(pid) = shim::running_shim(&dir)
                && let Some(pid) = rustix::process::Pid::from_raw(pid)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            rootfs::unmount_all(&dir)?;
            if rootfs::mount_points().iter().any(|m| m.starts_with(&dir)) {
                continue;
            }
            if kept.contains(&name) {
                remove_all_but_logs(&dir)?;
            } else {
                std::fs::remove_dir_all(&dir)
                    .map_err(io(format!("cannot remove {}", dir.display())))?;
                removed += 1;
            }
        }
        let volatile = self.config.volatile_root();
        for entry in std::fs::read_dir(&volatile)
            .map_err(io(format!("cannot list {}", volatile.display())))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if InstanceId::parse(&name).is_none_or(|id| !live.contains(&id)) {
                std::fs::remove_dir_all(entry.path())
                    .map_err(io(format!("cannot remove {}", entry.path().display())))?;
                removed += 1;
            }
        }
        let net_live: HashSet<String> = live.iter().map(|i| i.to_string()).collect();
        removed += self.net.sweep(&net_live)?;
        let parent = self.config.cgroup_parent();
        for child in self.cgroups.children(&parent) {
            if InstanceId::parse(&child).is_none_or(|id| !live.contains(&id)) {
                self.cgroups.remove(&format!("{parent}/{child}"));
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed leftovers of earlier runs");
        }
        Ok(())
    }
}
