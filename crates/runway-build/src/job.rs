//! What a build needs of the instance runtime: run one command in an isolated container
//! of an image (with mounts, limits and a deadline), read its output as it comes, learn
//! how it ended, commit the container's changes as a layer, and remove it. [`BuildJobs`]
//! is that interface, so that the build's orchestration is tested with a fake; the
//! runtime's implementation is in [`crate::runtime_jobs`].

use crate::layer::LayerFile;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

/// A boxed future, so that the traits below can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One build job and its mounts: the runtime's own job spec.
pub use runway_runtime::{JobMount, JobSpec as JobRequest};

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub oom_killed: bool,
    pub duration: Duration,
}

impl JobExit {
    /// Whether the command succeeded.
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out && !self.oom_killed
    }

    /// How it ended, for messages: `exit status 2`, `timed out after 600 s`, ...
    pub fn describe(&self) -> String {
        if self.timed_out {
            format!("timed out after {} s", self.duration.as_secs())
        } else if self.oom_killed {
            "killed: out of memory".to_string()
        } else if let Some(code) = self.code {
            format!("exit status {code}")
        } else if let Some(signal) = self.signal {
            format!("killed by signal {signal}")
        } else {
            "ended for an unknown reason".to_string()
        }
    }
}

/// Why a job could not be run, committed or removed (not a failing command: that is a
/// [`JobExit`]).
#[derive(Debug, thiserror::Error)]
#[error("build container: {0}")]
pub struct JobError(pub String);

/// Starts build jobs.
pub trait BuildJobs: Send + Sync + 'static {
    /// Creates and starts the job's container.
    fn start(&self, request: JobRequest) -> BoxFuture<'_, Result<Box<dyn BuildJob>, JobError>>;
}

/// A started build job.
pub trait BuildJob: Send {
    /// The next line of output (stdout and stderr, in order of arrival); `None` once the
    /// output has ended.
    fn next_line(&mut self) -> BoxFuture<'_, Option<String>>;

    /// Waits for the job to end (or be killed at its deadline).
    fn wait(&mut self) -> BoxFuture<'_, Result<JobExit, JobError>>;

    /// Writes the container's changes as a gzipped layer (with whiteouts for what it
    /// removed) into the directory `out_dir`.
    fn commit_layer<'a>(
        &'a mut self,
        out_dir: &'a Path,
    ) -> BoxFuture<'a, Result<LayerFile, JobError>>;

    /// Removes the container and its scratch space.
    fn remove(self: Box<Self>) -> BoxFuture<'static, Result<(), JobError>>;
}
