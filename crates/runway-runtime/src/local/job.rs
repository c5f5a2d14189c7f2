//! Jobs on the local runtime: a directory `<root>/jobs/<id>/` like an instance's
//! (bundle, overlay mount, generated `/etc` files, shim files, log), mounted with
//! [`rootfs::DIFF_OPTIONS`] so that its upper directory is exactly what the job changed,
//! a network attachment and a cgroup named by the job's id, and a shim whose standard
//! input is the job's lifeline. Jobs keep no record in the store: a job is never resumed,
//! so on open every job directory is a leftover, and whatever else a job holds (address,
//! namespace, container, cgroup) is swept with the instances' leftovers.

use super::*;
use crate::job::{JobId, JobMount, JobOutcome, JobSpec, RUNTIME_MOUNT_POINTS};
use crate::layer::{self, CommittedLayer};
use crate::logs::JobLine;
use std::process::ChildStdin;
use tokio::sync::mpsc;

impl RuntimeConfig {
    /// The directory of job `id`.
    pub fn job_dir(&self, id: &JobId) -> PathBuf {
        self.root.join("jobs").join(id.as_str())
    }

    /// The cgroup of job `id`.
    pub fn job_cgroup_path(&self, id: &JobId) -> String {
        format!("{}/{id}", self.cgroup_parent())
    }
}

/// A running or ended job. Read its output with [`Job::next_line`] (or take the stream
/// with [`Job::take_lines`]), wait for its end with [`Job::wait`], then write what it
/// changed as a layer with [`Job::commit_layer`] and [`Job::remove`] it. Dropping it
/// kills and removes it too (on a thread of its own).
pub struct Job {
    shared: Arc<Shared>,
    lines: Option<mpsc::Receiver<JobLine>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.shared.id)
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

/// What the job's handle, its watcher and its timer share.
struct Shared {
    inner: Arc<Inner>,
    id: JobId,
    name: String,
    /// The mount targets, left out of the layer.
    mount_targets: Vec<String>,
    /// The write end of the shim's lifeline; dropping it kills the container.
    lifeline: Mutex<Option<ChildStdin>>,
    outcome: watch::Sender<Option<JobOutcome>>,
    timed_out: AtomicBool,
    removed: AtomicBool,
    timer: Mutex<Option<AbortHandle>>,
}

/// The lines of a job, as they are written; ends after the job's last line.
#[derive(Debug)]
pub struct JobLines {
    rx: mpsc::Receiver<JobLine>,
}

impl JobLines {
    /// The next line, or `None` once the job ended and every line was read.
    pub async fn next(&mut self) -> Option<JobLine> {
        self.rx.recv().await
    }

    /// The underlying channel, for adapting into other stream types.
    pub fn into_receiver(self) -> mpsc::Receiver<JobLine> {
        self.rx
    }
}

impl Job {
    pub fn id(&self) -> &JobId {
        &self.shared.id
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The next line the job wrote (stdout or stderr, timestamped when the shim read
    /// it), or `None` once it ended and every line was read (or the lines were taken).
    pub async fn next_line(&mut self) -> Option<JobLine> {
        self.lines.as_mut()?.recv().await
    }

    /// The job's lines as a stream of their own, to read on another task while this one
    /// waits; `None` if taken already.
    pub fn take_lines(&mut self) -> Option<JobLines> {
        self.lines.take().map(|rx| JobLines { rx })
    }

    /// Waits for the job to end.
    pub async fn wait(&self) -> Result<JobOutcome> {
        let mut rx = self.shared.outcome.subscribe();
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| RuntimeError::Internal("the job's watcher is gone".into()))?;
        outcome
            .clone()
            .ok_or_else(|| RuntimeError::Internal("the job has no outcome".into()))
    }

    /// How the job ended, if it did.
    pub fn outcome(&self) -> Option<JobOutcome> {
        self.shared.outcome.borrow().clone()
    }

    /// Kills the job now (SIGKILL), as when its build is cancelled; [`Job::wait`] then
    /// returns its end.
    pub async fn kill(&self) -> Result<()> {
        self.shared.kill().await
    }

    /// Writes what the ended job changed in its root filesystem as a gzipped OCI layer
    /// in `out_dir` (`<out_dir>/<job id>.tar.gz`), leaving out its mounts and the
    /// runtime's mount points. See [`layer::from_upper`] for the format.
    pub async fn commit_layer(&self, out_dir: &Path) -> Result<CommittedLayer> {
        if self.shared.outcome.borrow().is_none() {
            return Err(RuntimeError::JobNotEnded(self.shared.id.clone()));
        }
        let inner = self.shared.inner.clone();
        let upper = inner.config.job_dir(&self.shared.id).join("upper");
        let out = out_dir.join(format!("{}.tar.gz", self.shared.id));
        let mut exclude: Vec<String> = RUNTIME_MOUNT_POINTS.iter().map(|p| p.to_string()).collect();
        exclude.extend(self.shared.mount_targets.iter().cloned());
        let started = Instant::now();
        let layer = blocking(move || {
            let exclude: Vec<&str> = exclude.iter().map(String::as_str).collect();
            Ok(layer::from_upper(&upper, &exclude, &out)?)
        })
        .await?;
        self.shared
            .inner
            .metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(
            job = %self.shared.id,
            name = %self.shared.name,
            layer = %layer.digest,
            bytes = layer.size,
            entries = layer.entries,
            ms = started.elapsed().as_millis() as u64,
            "job committed as a layer"
        );
        Ok(layer)
    }

    /// Kills the job if it still runs and removes its container, root filesystem,
    /// network attachment, cgroup and directory (its log too).
    pub async fn remove(self) -> Result<()> {
        self.shared.removed.store(true, Ordering::SeqCst);
        let shared = self.shared.clone();
        drop(self);
        shared.abort_timer();
        let inner = shared.inner.clone();
        let id = shared.id.clone();
        blocking(move || {
            shared.let_go();
            inner.teardown_job(&id)
        })
        .await
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if self.shared.removed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shared.abort_timer();
        let shared = self.shared.clone();
        std::thread::spawn(move || {
            shared.let_go();
            if let Err(e) = shared.inner.teardown_job(&shared.id) {
                tracing::warn!(job = %shared.id, error = %e, "cannot remove a dropped job");
            }
        });
    }
}

impl Shared {
    fn abort_timer(&self) {
        if let Some(t) = self.timer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }

    /// Closes the lifeline: the shim kills the container.
    fn let_go(&self) {
        self.lifeline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    async fn kill(&self) -> Result<()> {
        if self.outcome.borrow().is_some() {
            return Ok(());
        }
        let oci = self.inner.oci.clone();
        let id = self.id.to_string();
        blocking(move || Ok(oci.kill(&id, "KILL")?)).await
    }
}

impl LocalRuntime {
    /// Starts a job and returns once its container runs. Its image is read from the
    /// runtime's [`ImageStore`]; see [`JobSpec`] for what the job gets.
    pub async fn run_job(&self, spec: JobSpec) -> Result<Job> {
        // On a task of its own, so that a caller that gives up waiting drops a whole job
        // (which removes it) rather than leaving one half made.
        let inner = self.inner.clone();
        self.inner
            .handle
            .spawn(async move { inner.run_job(spec).await })
            .await
            .map_err(|e| RuntimeError::Internal(format!("the job's start failed: {e}")))?
    }
}

impl Inner {
    async fn run_job(self: &Arc<Self>, spec: JobSpec) -> Result<Job> {
        spec.validate()?;
        let id = JobId::new();
        let inner = self.clone();
        let job = id.clone();
        let job_spec = spec.clone();
        let created = blocking(move || match inner.create_job(&job, &job_spec) {
            Ok(c) => Ok(c),
            Err(e) => {
                if let Err(undo) = inner.teardown_job(&job) {
                    tracing::warn!(job = %job, error = %undo, "cannot undo a failed job start");
                }
                Err(e)
            }
        })
        .await;
        let mut child = match created {
            Ok(child) => child,
            Err(e) => {
                self.metrics
                    .jobs
                    .get_or_create(&ResultLabel { result: "error" })
                    .inc();
                tracing::warn!(job = %id, name = %spec.name, error = %e, "job did not start");
                return Err(e);
            }
        };
        let started = Instant::now();
        let lifeline = child.stdin.take();
        let shared = Arc::new(Shared {
            inner: self.clone(),
            id: id.clone(),
            name: spec.name.clone(),
            mount_targets: spec.mounts.iter().map(|m| m.target.clone()).collect(),
            lifeline: Mutex::new(lifeline),
            outcome: watch::Sender::new(None),
            timed_out: AtomicBool::new(false),
            removed: AtomicBool::new(false),
            timer: Mutex::new(None),
        });
        let finished = Arc::new(AtomicBool::new(false));
        let dir = self.config.job_dir(&id);

        // Lines: followed from the job's log file, so a caller that reads them late or
        // never does not hold the job up.
        let (tx, rx) = mpsc::channel(1024);
        {
            let dir = dir.clone();
            let finished = finished.clone();
            std::thread::spawn(move || {
                logs::tail_job(&dir, tx, || finished.load(Ordering::SeqCst));
            });
        }

        // The end: the shim records it and exits.
        {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let _ = child.wait();
                finished.store(true, Ordering::SeqCst);
                let exit = shim::recorded_exit(&dir).unwrap_or_else(|| {
                    // The shim died without recording: make sure nothing of it runs.
                    let _ = shared.inner.oci.delete(shared.id.as_str());
                    Exit {
                        code: None,
                        signal: None,
                        oom_killed: false,
                        at: Timestamp::now(),
                    }
                });
                let outcome = JobOutcome {
                    timed_out: shared.timed_out.load(Ordering::SeqCst) && exit.code.is_none(),
                    duration: started.elapsed(),
                    exit,
                };
                let result = if outcome.timed_out {
                    "timed_out"
                } else if outcome.exit.oom_killed {
                    "oom"
                } else if outcome.exit.code == Some(0) {
                    "succeeded"
                } else {
                    "failed"
                };
                let metrics = &shared.inner.metrics;
                metrics.jobs.get_or_create(&ResultLabel { result }).inc();
                metrics.job_seconds.observe(outcome.duration.as_secs_f64());
                tracing::info!(
                    job = %shared.id,
                    name = %shared.name,
                    result,
                    reason = %outcome.reason(),
                    ms = outcome.duration.as_millis() as u64,
                    "job ended"
                );
                shared.abort_timer();
                shared.outcome.send_replace(Some(outcome));
            });
        }

        // The timeout.
        {
            let weak = Arc::downgrade(&shared);
            let timeout = spec.timeout;
            let task = self.handle.spawn(async move {
                tokio::time::sleep(timeout).await;
                let Some(shared) = weak.upgrade() else { return };
                if shared.outcome.borrow().is_some() {
                    return;
                }
                shared.timed_out.store(true, Ordering::SeqCst);
                tracing::warn!(job = %shared.id, name = %shared.name, ?timeout, "job timed out; killing it");
                if let Err(e) = shared.kill().await {
                    tracing::warn!(job = %shared.id, error = %e, "cannot kill a job that timed out");
                }
            });
            *shared.timer.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
        }

        tracing::info!(
            job = %id,
            name = %spec.name,
            service = %spec.service_id,
            image = %spec.image.digest,
            "job started"
        );
        Ok(Job {
            shared,
            lines: Some(rx),
        })
    }

    /// Builds a job's bundle and root filesystem and starts its shim, whose standard
    /// input is the lifeline (left in the child).
    fn create_job(&self, id: &JobId, spec: &JobSpec) -> Result<Child> {
        let t = Instant::now();
        let dir = self.config.job_dir(id);
        let (image, lowers) = self.image_layers(&spec.image, None)?;
        let t_img = t.elapsed();
        create_bundle_dirs(&dir)?;
        let rootfs = dir.join("rootfs");
        rootfs::mount_overlay_with(
            &lowers,
            &dir.join("empty"),
            &dir.join("upper"),
            &dir.join("work"),
            &rootfs,
            rootfs::DIFF_OPTIONS,
        )?;
        let attachment = self.net.attach(id.as_str(), &spec.service_id)?;
        let host = &id.as_str()[..12];
        for (name, content) in etc_files(attachment.ip, host, &self.config.dns_servers) {
            runway_store::fs::write_atomic(&dir.join("etc").join(name), content.as_bytes(), 0o644)?;
        }
        let (uid, gid, additional_gids) = match spec.user.as_deref() {
            None => (0, 0, Vec::new()),
            Some(user) => spec::resolve_user(Some(user), &rootfs)?,
        };
        let cwd = if spec.workdir.is_empty() {
            spec::working_dir(&image.config)
        } else {
            spec.workdir.clone()
        };
        let process = spec::ProcessSpec {
            args: spec.command.clone(),
            env: spec::job_environment(
                image.config.env.as_deref().unwrap_or_default(),
                &spec.env,
                host,
            ),
            cwd,
            uid,
            gid,
            additional_gids,
        };
        let mounts: Vec<spec::BindMount> = spec
            .mounts
            .iter()
            .map(|m: &JobMount| spec::BindMount {
                source: m.source.clone(),
                destination: m.target.clone(),
                read_only: m.read_only,
            })
            .collect();
        let cgroups_path = self.config.job_cgroup_path(id);
        let bundle = spec::BundleSpec {
            hostname: host,
            process,
            rootfs: &rootfs,
            netns: &attachment.netns,
            etc: &dir.join("etc"),
            cgroups_path: &cgroups_path,
            cpu_units: spec.cpu_units,
            memory_mb: spec.memory_mb,
            pids_limit: self.config.pids_limit,
            nofile: spec::nofile_limit(),
            mounts: &mounts,
            id_map: None,
            sysfs: None,
        };
        self.write_bundle(&dir, &dir, id.as_str(), &bundle, true)?;
        let child = self.spawn_shim(&dir, true)?;
        tracing::debug!(
            job = %id,
            image_ms = t_img.as_millis() as u64,
            ms = t.elapsed().as_millis() as u64,
            "job created"
        );
        Ok(child)
    }

    /// Removes a job's container, mount, directory, network and cgroup. Safe to repeat.
    pub(super) fn teardown_job(&self, id: &JobId) -> Result<()> {
        let dir = self.config.job_dir(id);
        self.remove_container(&dir, id.as_str())?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("cannot remove {}", dir.display()))(e)),
        }
        self.net.detach(id.as_str())?;
        self.cgroups.remove(&self.config.job_cgroup_path(id));
        Ok(())
    }

    /// Removes every job directory (with its shim, container and mount): no job
    /// survives a restart of runway. Their addresses, namespaces and cgroups go with the
    /// rest of the sweep. How many there were.
    pub(super) fn sweep_jobs(&self) -> Result<usize> {
        let jobs = self.config.root.join("jobs");
        let mut removed = 0;
        for entry in
            std::fs::read_dir(&jobs).map_err(io(format!("cannot list {}", jobs.display())))?
        {
            let Ok(entry) = entry else { continue };
            let dir = entry.path();
            if let Some(pid) = shim::running_shim(&dir)
                && let Some(pid) = rustix::process::Pid::from_raw(pid)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = JobId::parse(&name) {
                self.oci.delete(id.as_str())?;
            }
            let rootfs = dir.join("rootfs");
            rootfs::unmount(&rootfs)?;
            if rootfs::is_mounted(&rootfs) {
                tracing::warn!(dir = %dir.display(), "a leftover job's root filesystem is still mounted");
                continue;
            }
            std::fs::remove_dir_all(&dir)
                .map_err(io(format!("cannot remove {}", dir.display())))?;
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(removed, "removed jobs that an earlier run left behind");
        }
        Ok(removed)
    }
}
