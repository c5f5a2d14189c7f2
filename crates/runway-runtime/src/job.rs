//! Jobs: one command run to completion in a container of an image, the way a build runs
//! (the reference architecture's CodeBuild). A job gets what an instance gets (its own
//! network namespace on the bridge with egress through NAT and nothing else, cgroup
//! limits, the reduced capability set, no new privileges, seccomp, masked kernel paths)
//! but runs as root in the container unless told otherwise, may have host directories
//! bind-mounted (dependency caches), is killed when its time is up, and leaves behind
//! what it changed, which [`Job::commit_layer`](crate::Job::commit_layer) writes as an
//! OCI layer.
//!
//! Jobs are not instances: they are in neither [`Runtime::list`](crate::Runtime::list)
//! nor the instance logs, and they do not survive runway: a job's shim kills its
//! container as soon as the runway process that started it is gone, and
//! [`LocalRuntime::open`](crate::LocalRuntime::open) removes whatever jobs left behind
//! (the caller runs the job again).

use crate::RuntimeError;
use crate::image::{self, ImageRef};
use crate::shim::Exit;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Paths (relative to the root filesystem) where the runtime mounts something in every
/// container; what a job leaves there is not its own and stays out of its layer.
pub const RUNTIME_MOUNT_POINTS: &[&str] = &[
    "proc",
    "sys",
    "dev",
    "etc/hosts",
    "etc/resolv.conf",
    "etc/hostname",
];

/// A job's id: 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// A new random id.
    pub fn new() -> JobId {
        JobId(uuid::Uuid::new_v4().simple().to_string())
    }

    /// An id from its text form, if it is one.
    pub fn parse(s: &str) -> Option<JobId> {
        (s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| JobId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for JobId {
    fn default() -> Self {
        JobId::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host path bind-mounted into a job's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobMount {
    /// An existing directory (or file) on the host.
    pub source: PathBuf,
    /// The absolute path in the container. It is created if the image lacks it, and
    /// left out of the job's layer either way.
    pub target: String,
    pub read_only: bool,
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// A name for logs and metrics (`build-<service>-<n>`).
    pub name: String,
    /// The network isolation group, as an instance's service id: the job reaches the
    /// internet and the instances of this group, nothing else (no other service, not the
    /// host). Pass the service's id, or a group of its own (`build-<service>`) to keep
    /// the build away from the running service too.
    pub service_id: String,
    /// The image to run; it holds the source already.
    pub image: ImageRef,
    /// The program and its arguments (`["/bin/sh", "-c", script]`); the image's
    /// entrypoint and command are not used.
    pub command: Vec<String>,
    /// Environment variables, after the image's.
    pub env: Vec<(String, String)>,
    /// The working directory (absolute); empty: the image's, or `/`. Created if missing.
    pub workdir: String,
    /// The user to run as (`name`, `uid`, `uid:gid`, as an image's `User`), looked up in
    /// the image; `None`: root, whatever the image says, since builds install packages.
    pub user: Option<String>,
    pub mounts: Vec<JobMount>,
    /// CPU in App Runner's units: 1024 is one vCPU.
    pub cpu_units: u32,
    /// Memory, without swap: a job that needs more is OOM-killed.
    pub memory_mb: u32,
    /// How long the job may run (from the start of its container, so not counting the
    /// unpacking of its image) before it is killed.
    pub timeout: Duration,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutcome {
    /// The exit code or signal, and whether the OOM killer struck.
    pub exit: Exit,
    /// Whether it was killed for running past its timeout.
    pub timed_out: bool,
    /// From the start of its container to its end.
    pub duration: Duration,
}

impl JobOutcome {
    /// Whether the job did what it was asked: exit code 0, in time.
    pub fn succeeded(&self) -> bool {
        !self.timed_out && self.exit.code == Some(0)
    }

    /// A one-line reason: `exit code 3`, `timed out after 600s`, ...
    pub fn reason(&self) -> String {
        if self.timed_out {
            format!("timed out after {}s", self.duration.as_secs())
        } else {
            self.exit.reason()
        }
    }
}

fn valid_container_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.contains('\0')
        && !p.split('/').any(|c| c == ".." || c == ".")
        && p.len() <= 4096
}

impl JobSpec {
    /// Checks the spec before anything is created.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let bad = |m: String| Err(RuntimeError::InvalidSpec(m));
        if self.name.is_empty()
            || self.name.len() > 256
            || self.name.chars().any(|c| c.is_control())
        {
            return bad("job name must be 1 to 256 printable characters".into());
        }
        let id_ok = !self.service_id.is_empty()
            && self.service_id.len() <= 64
            && self
                .service_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !id_ok {
            return bad(format!(
                "service id {:?} must be 1 to 64 letters, digits, '-', '_' or '.'",
                self.service_id
            ));
        }
        image::digest_hex(&self.image.digest)
            .map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?;
        if self.command.is_empty() || self.command[0].is_empty() {
            return bad("the job's command is empty".into());
        }
        if self.command.iter().any(|a| a.contains('\0')) {
            return bad("the job's command contains a NUL character".into());
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return bad(format!("environment variable name {k:?} is not valid"));
            }
        }
        if !self.workdir.is_empty() && !valid_container_path(&self.workdir) {
            return bad(format!(
                "working directory {:?} must be an absolute path without '..'",
                self.workdir
            ));
        }
        if self
            .user
            .as_deref()
            .is_some_and(|u| u.trim().is_empty() || u.contains('\0'))
        {
            return bad("the job's user is empty".into());
        }
        for m in &self.mounts {
            if !valid_container_path(&m.target) || m.target.trim_matches('/').is_empty() {
                return bad(format!(
                    "mount target {:?} must be an absolute path other than / without '..'",
                    m.target
                ));
            }
            let rel = m.target.trim_matches('/');
            if RUNTIME_MOUNT_POINTS
                .iter()
                .any(|p| rel == *p || rel.starts_with(&format!("{p}/")))
            {
                return bad(format!(
                    "mount target {:?} is where the runtime mounts its own",
                    m.target
                ));
            }
            if !m.source.is_absolute() || !m.source.exists() {
                return bad(format!(
                    "mount source {} must be an existing absolute path",
                    m.source.display()
                ));
            }
        }
        if let Err(m) = crate::spec::check_limits(self.cpu_units, self.memory_mb) {
            return bad(m);
        }
        if self.timeout.is_zero() {
            return bad("the job's timeout must be more than zero".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
