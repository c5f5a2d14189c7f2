//! Build jobs on runway's own instance runtime: [`BuildJobs`] for
//! [`runway_runtime::LocalRuntime`], whose jobs are runc containers with the instances'
//! isolation, an overlay whose upper directory is committed as the build's layer.

use crate::job::{BoxFuture, BuildJob, BuildJobs, JobError, JobExit, JobRequest};
use crate::layer::LayerFile;
use runway_runtime::{Job, LocalRuntime};
use std::path::Path;

impl BuildJobs for LocalRuntime {
    fn start(&self, request: JobRequest) -> BoxFuture<'_, Result<Box<dyn BuildJob>, JobError>> {
        Box::pin(async move {
            let job = self
                .run_job(request)
                .await
                .map_err(|e| JobError(e.to_string()))?;
            Ok(Box::new(RuntimeJob(job)) as Box<dyn BuildJob>)
        })
    }
}

/// A job of the local runtime.
struct RuntimeJob(Job);

impl BuildJob for RuntimeJob {
    fn next_line(&mut self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move { self.0.next_line().await.map(|l| l.text) })
    }

    fn wait(&mut self) -> BoxFuture<'_, Result<JobExit, JobError>> {
        Box::pin(async move {
            let outcome = self.0.wait().await.map_err(|e| JobError(e.to_string()))?;
            Ok(JobExit {
                code: outcome.exit.code,
                signal: outcome.exit.signal,
                timed_out: outcome.timed_out,
                oom_killed: outcome.exit.oom_killed,
                duration: outcome.duration,
            })
        })
    }

    fn commit_layer<'a>(
        &'a mut self,
        out_dir: &'a Path,
    ) -> BoxFuture<'a, Result<LayerFile, JobError>> {
        Box::pin(async move {
            let layer = self
                .0
                .commit_layer(out_dir)
                .await
                .map_err(|e| JobError(e.to_string()))?;
            Ok(LayerFile {
                path: layer.path,
                digest: layer.digest,
                diff_id: layer.diff_id,
                size: layer.size,
            })
        })
    }

    fn remove(self: Box<Self>) -> BoxFuture<'static, Result<(), JobError>> {
        Box::pin(async move { self.0.remove().await.map_err(|e| JobError(e.to_string())) })
    }
}
