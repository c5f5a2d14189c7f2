//! Build jobs on runway's own instance runtime: [`BuildJobs`] for
//! [`runway_runtime::LocalRuntime`], whose jobs are runc containers with the instances'
//! isolation, an overlay whose upper directory is committed as the build's layer; and
//! [`RegistryImages`], the runtime's images from runway's registry (where builds put
//! theirs), for instances and build jobs alike.

use crate::job::{BoxFuture, BuildJob, BuildJobs, JobError, JobExit, JobRequest};
use crate::layer::LayerFile;
use runway_registry::Registry;
use runway_runtime::{Blob, ImageError, ImageStore, Job, LocalRuntime};
use std::path::Path;

/// Images for the runtime, from runway's registry. The runtime calls it from blocking
/// threads only, where waiting on the registry's async lookups is allowed.
pub struct RegistryImages {
    pub registry: Registry,
    pub handle: tokio::runtime::Handle,
}

impl std::fmt::Debug for RegistryImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryImages").finish_non_exhaustive()
    }
}

impl ImageStore for RegistryImages {
    fn manifest(&self, repository: &str, digest: &str) -> Result<Vec<u8>, ImageError> {
        self.handle
            .block_on(self.registry.resolve_manifest(repository, digest))
            .map(|m| m.bytes.to_vec())
            .map_err(|e| ImageError::NotFound {
                what: format!("{repository}@{digest}: {e}"),
            })
    }

    fn blob(&self, repository: &str, digest: &str) -> Result<Blob, ImageError> {
        self.registry
            .blob_path(digest)
            .map(Blob::Path)
            .ok_or_else(|| ImageError::NotFound {
                what: format!("{repository}@{digest}"),
            })
    }
}

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
