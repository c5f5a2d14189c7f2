//! Test helpers: a registry in a temporary directory, a fake job runner, git
//! repositories made with the git CLI, and base images made by `scripts/base-image`
//! (debootstrap), cached between runs under `/var/cache/runway/test-base` (or
//! `$RUNWAY_TEST_BASE_DIR`) with a file lock, since debootstrap takes minutes.

use crate::image::{ImportedRootfs, RootfsOptions};
use crate::job::{BoxFuture, BuildJob, BuildJobs, JobError, JobExit, JobRequest};
use crate::layer::{self, LayerFile};
use runway_registry::{Registry, RegistryConfig};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A registry over a temporary directory.
pub struct TestRegistry {
    pub dir: tempfile::TempDir,
    pub registry: Registry,
}

impl std::fmt::Debug for TestRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRegistry")
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl TestRegistry {
    /// Opens a fresh registry (with its store and master key) in a temporary directory.
    pub fn new() -> TestRegistry {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Arc::new(
            runway_store::SqliteStore::open(&dir.path().join("state.db")).expect("a store"),
        );
        let master = Arc::new(
            runway_secrets::MasterKey::load_or_create(&dir.path().join("master.key"))
                .expect("a master key"),
        );
        let registry = Registry::open(
            RegistryConfig::new(dir.path().join("registry")),
            store,
            master,
            &mut runway_telemetry::Registry::default(),
        )
        .expect("a registry");
        TestRegistry { dir, registry }
    }

    /// A directory inside the temporary directory (created).
    pub fn path(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).expect("a directory");
        p
    }
}

impl Default for TestRegistry {
    fn default() -> Self {
        TestRegistry::new()
    }
}

/// What one fake job does.
#[derive(Debug, Clone, Default)]
pub struct FakeRun {
    /// The lines it writes.
    pub lines: Vec<String>,
    pub exit_code: i32,
    pub timed_out: bool,
    /// The files (paths under `/app`) its layer adds.
    pub files: Vec<(String, Vec<u8>)>,
}

/// A [`BuildJobs`] that runs nothing: each job plays the next [`FakeRun`] (or succeeds
/// silently), and the requests are kept for inspection.
#[derive(Debug, Default)]
pub struct FakeJobs {
    pub requests: Mutex<Vec<JobRequest>>,
    runs: Mutex<VecDeque<FakeRun>>,
    removed: Arc<AtomicUsize>,
}

impl FakeJobs {
    pub fn new() -> Arc<FakeJobs> {
        Arc::new(FakeJobs::default())
    }

    /// Queues what the next job does.
    pub fn push(&self, run: FakeRun) {
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(run);
    }

    pub fn requests(&self) -> Vec<JobRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl BuildJobs for FakeJobs {
    fn start(&self, request: JobRequest) -> BoxFuture<'_, Result<Box<dyn BuildJob>, JobError>> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request);
        let run = self
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
            .unwrap_or_default();
        let job = FakeJob {
            lines: run.lines.clone().into(),
            run,
            removed: self.removed.clone(),
        };
        Box::pin(async move { Ok(Box::new(job) as Box<dyn BuildJob>) })
    }
}

struct FakeJob {
    lines: VecDeque<String>,
    run: FakeRun,
    removed: Arc<AtomicUsize>,
}

impl BuildJob for FakeJob {
    fn next_line(&mut self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move { self.lines.pop_front() })
    }

    fn wait(&mut self) -> BoxFuture<'_, Result<JobExit, JobError>> {
        let exit = JobExit {
            code: Some(self.run.exit_code),
            signal: None,
            timed_out: self.run.timed_out,
            oom_killed: false,
            duration: Duration::from_millis(5),
        };
        Box::pin(async move { Ok(exit) })
    }

    fn commit_layer<'a>(
        &'a mut self,
        out_dir: &'a Path,
    ) -> BoxFuture<'a, Result<LayerFile, JobError>> {
        Box::pin(async move {
            let tmp = tempfile::tempdir().map_err(|e| JobError(e.to_string()))?;
            for (name, data) in &self.run.files {
                let path = tmp.path().join(name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| JobError(e.to_string()))?;
                }
                std::fs::write(&path, data).map_err(|e| JobError(e.to_string()))?;
            }
            let out = out_dir.join(format!("{}.tar.gz", uuid::Uuid::new_v4().simple()));
            layer::write_source_layer(tmp.path(), &out).map_err(|e| JobError(e.to_string()))
        })
    }

    fn remove(self: Box<Self>) -> BoxFuture<'static, Result<(), JobError>> {
        self.removed.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
}

impl FakeJobs {
    /// How many of this runner's jobs were removed.
    pub fn removals(&self) -> usize {
        self.removed.load(Ordering::SeqCst)
    }
}

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository")
}

/// Runs git in `dir` with a fixed identity; its trimmed stdout. Panics on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "runway test")
        .env("GIT_AUTHOR_EMAIL", "test@runway.invalid")
        .env("GIT_COMMITTER_NAME", "runway test")
        .env("GIT_COMMITTER_EMAIL", "test@runway.invalid")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Makes `dir` a git repository on branch `branch` holding `files`, committed; the
/// commit's sha.
pub fn git_repo(dir: &Path, branch: &str, files: &[(&str, &str)]) -> String {
    std::fs::create_dir_all(dir).expect("a directory");
    git(dir, &["init", "--quiet", "-b", branch]);
    write_files(dir, files);
    commit_all(dir, "initial")
}

/// Writes `files` (relative paths) under `dir`.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("a directory");
        }
        std::fs::write(&path, text).expect("a file");
    }
}

/// Commits everything in `dir`; the new commit's sha.
pub fn commit_all(dir: &Path, message: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "--quiet", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

/// The base images' cache directory.
pub fn base_cache_dir() -> PathBuf {
    std::env::var_os("RUNWAY_TEST_BASE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/runway/test-base"))
}

/// The layer of `runtime`'s base root filesystem, made by `scripts/base-image` the first
/// time (minutes) and cached under [`base_cache_dir`], keyed by the script's recipe.
/// Blocks; safe to call from parallel tests and processes (a file lock).
pub fn base_layer(runtime: &str) -> Result<LayerFile, String> {
    let script = repo_root().join("scripts/base-image");
    let recipe = Command::new(&script)
        .args(["--recipe", runtime])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !recipe.status.success() {
        return Err(String::from_utf8_lossy(&recipe.stderr).into_owned());
    }
    let hash =
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &recipe.stdout).as_ref());
    let dir = base_cache_dir().join(format!("{runtime}-{}", &hash[..16]));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let lock = std::fs::File::create(dir.join(".lock")).map_err(|e| e.to_string())?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", dir.display()))?;
    let layer_path = dir.join("layer.tar.gz");
    let meta_path = dir.join("layer.json");
    if let Ok(text) = std::fs::read_to_string(&meta_path)
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        && layer_path.is_file()
    {
        let field = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_string()
        };
        return Ok(LayerFile {
            path: layer_path,
            digest: field("digest"),
            diff_id: field("diff_id"),
            size: v.get("size").and_then(|x| x.as_u64()).unwrap_or(0),
        });
    }
    let rootfs = dir.join("rootfs");
    if !rootfs.join(".complete").exists() {
        let _ = std::fs::remove_dir_all(&rootfs);
        let status = Command::new(&script)
            .args(["--rootfs-only", runtime])
            .arg(&rootfs)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !status.success() {
            let _ = std::fs::remove_dir_all(&rootfs);
            return Err(format!("scripts/base-image {runtime} failed ({status})"));
        }
        std::fs::write(rootfs.join(".complete"), b"").map_err(|e| e.to_string())?;
    }
    let tmp = dir.join("layer.tar.gz.tmp");
    let layer = layer::write_rootfs_layer(&rootfs, &tmp)
        .map_err(|e| format!("cannot pack {}: {e}", rootfs.display()))?;
    std::fs::rename(&tmp, &layer_path).map_err(|e| e.to_string())?;
    let meta =
        serde_json::json!({"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size});
    std::fs::write(&meta_path, meta.to_string()).map_err(|e| e.to_string())?;
    // The root filesystem is in the layer now; keep only the layer.
    let _ = std::fs::remove_dir_all(&rootfs);
    Ok(LayerFile {
        path: layer_path,
        ..layer
    })
}

/// Imports `runtime`'s cached base layer into `registry` as `name` (`runtimes/python3`).
pub async fn import_base(
    registry: &Registry,
    runtime: &str,
    name: &str,
) -> Result<ImportedRootfs, String> {
    let rt = runtime.to_string();
    let layer = tokio::task::spawn_blocking(move || base_layer(&rt))
        .await
        .map_err(|e| e.to_string())??;
    crate::image::import_layer(registry, &layer, name, &RootfsOptions::default())
        .await
        .map_err(|e| e.to_string())
}
