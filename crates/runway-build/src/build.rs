//! The build: source (git or upload) → plan → base image → source layer → build job in a
//! container of base + source → its changes committed as a layer → the image
//! `<repository>:<commit>` pushed to runway's registry. A failure names the failing
//! command with the last log lines, pushes nothing under `<repository>:<commit>`, and
//! removes the intermediate image and container.

use crate::detect;
use crate::git::GitEnv;
use crate::image::{self, ImageError, NewLayer, RunSettings};
use crate::job::{BuildJob, BuildJobs, JobError, JobMount, JobRequest};
use crate::layer;
use crate::log::BuildLog;
use crate::plan::{self, BuildPlan, PlanError};
use crate::runtimes::{self, ChosenImage, ImageChoice, ImageSource, Runtime, RuntimeImages};
use crate::script;
use crate::source::{self, Source, SourceError, UploadLimits, redact_url};
use crate::trust::{self, BuildTrust, TrustError, TrustMaterial};
use runway_model::shapes::CodeConfiguration;
use runway_registry::{Registry, names};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the source is inside build containers and images.
pub const APP_DIR: &str = "/app";

/// How builds are set up.
#[derive(Debug, Clone)]
pub struct BuilderConfig {
    /// Git caches and scratch space (runway passes `DATA_DIR/build`).
    pub work_dir: PathBuf,
    /// Dependency caches, one directory per service (`DATA_DIR/build-cache`).
    pub cache_dir: PathBuf,
    /// Base image per runtime (`apprunner.yaml` or API runtime name → reference, may
    /// hold `{version}`), over the defaults; from the server's `[runtime-images]` table.
    pub runtime_images: HashMap<String, String>,
    /// The names runway's registry is reached by (`127.0.0.1:5000`): references with
    /// these hosts are local.
    pub own_registry_hosts: Vec<String>,
    /// The longest a build's commands may run.
    pub build_timeout: Duration,
    /// The build container's memory limit.
    pub memory_mb: u32,
    /// The build container's CPU, in App Runner's units (1024 = one vCPU).
    pub cpu_units: u32,
    /// The longest one git command may run.
    pub git_timeout: Duration,
    pub upload_limits: UploadLimits,
    /// How many of the last log lines a failure reports.
    pub failure_lines: usize,
    /// The certificate authorities and proxy settings builds use.
    pub trust: BuildTrust,
}

impl BuilderConfig {
    /// The defaults: 20 minutes, 4 GiB and 2 vCPU per build, 5 minutes per git command;
    /// the host's certificate authorities and this process's proxy settings.
    pub fn new(work_dir: impl Into<PathBuf>, cache_dir: impl Into<PathBuf>) -> BuilderConfig {
        BuilderConfig {
            work_dir: work_dir.into(),
            cache_dir: cache_dir.into(),
            runtime_images: HashMap::new(),
            own_registry_hosts: Vec::new(),
            build_timeout: Duration::from_secs(20 * 60),
            memory_mb: 4096,
            cpu_units: 2048,
            git_timeout: Duration::from_secs(5 * 60),
            upload_limits: UploadLimits::default(),
            failure_lines: 30,
            trust: BuildTrust::from_host(None, false, std::env::vars()),
        }
    }
}

/// One build to run.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The service's id: its git and dependency caches are kept under it.
    pub service_id: String,
    /// The image repository the result is pushed to (tagged with the commit).
    pub repository: String,
    pub source: Source,
    /// The service's `CodeConfiguration` (`None`: `ConfigurationSource` REPOSITORY).
    pub code_configuration: Option<CodeConfiguration>,
    /// The file the build log is written to (appended to if it exists).
    pub log_path: PathBuf,
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The image: `repository:tag`, with manifest `digest`, in runway's registry.
    pub repository: String,
    pub tag: String,
    pub digest: String,
    /// The source commit (a git sha; for uploads, the tarball's sha256).
    pub commit: String,
    /// What was built: runtime, port, environment and secret references.
    pub plan: BuildPlan,
    /// The base image and the runtime whose image it is.
    pub base: ChosenImage,
    /// Things the service's events should say (a retired runtime built with its
    /// successor, a start command that was detected).
    pub notes: Vec<String>,
    pub log_path: PathBuf,
    pub duration: Duration,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The request itself is unusable.
    #[error("invalid build request: {0}")]
    InvalidRequest(String),
    /// The source could not be fetched or read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// `apprunner.yaml`, the API values or detection gave no usable plan.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// No base image fits the runtime and version asked for.
    #[error(transparent)]
    NoImage(#[from] runtimes::NoImage),
    /// The base image or the result could not be found, assembled or pushed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The certificate authorities for builds could not be read.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// A build command failed.
    #[error("build command failed ({outcome}): {command}{}", tail_text(.last_lines))]
    CommandFailed {
        command: String,
        /// `exit status 1`, `timed out after 1200 s`, `killed: out of memory`.
        outcome: String,
        last_lines: Vec<String>,
    },
    /// The build container could not be run.
    #[error(transparent)]
    Job(#[from] JobError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A blocking task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

fn tail_text(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("\nlast log lines:\n{}", lines.join("\n"))
    }
}

impl BuildError {
    /// The last log lines before a failing command ended (empty for other failures).
    pub fn last_lines(&self) -> &[String] {
        match self {
            BuildError::CommandFailed { last_lines, .. } => last_lines,
            _ => &[],
        }
    }

    /// Whether the user's source or configuration is at fault (not runway).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            BuildError::CommandFailed { .. }
                | BuildError::Plan(_)
                | BuildError::NoImage(_)
                | BuildError::InvalidRequest(_)
                | BuildError::Source(
                    SourceError::NoBranch { .. }
                        | SourceError::NoSourceDirectory(_)
                        | SourceError::Escape { .. }
                        | SourceError::Invalid { .. }
                        | SourceError::Upload(_)
                        | SourceError::InvalidSource(_)
                )
        )
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BuildError {
    let context = context.into();
    move |source| BuildError::Io { context, source }
}

async fn blocking<T: Send + 'static, E: Into<BuildError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, BuildError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BuildError::Internal(format!("blocking task failed: {e}")))?
        .map_err(Into::into)
}

impl From<std::io::Error> for BuildError {
    fn from(source: std::io::Error) -> Self {
        BuildError::Io {
            context: "build".into(),
            source,
        }
    }
}

/// Runs builds. Cheap to clone.
#[derive(Clone)]
pub struct Builder {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    jobs: Arc<dyn BuildJobs>,
    config: BuilderConfig,
    /// The configured base images; `runway runtimes set` changes them while running.
    images: std::sync::RwLock<RuntimeImages>,
    git: GitEnv,
    /// One build at a time per service: they share its caches.
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A name safe as one path component, for a service id.
fn cache_key(service_id: &str) -> Result<String, BuildError> {
    let ok = !service_id.is_empty()
        && service_id.len() <= 128
        && !service_id.starts_with('.')
        && service_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(service_id.to_string())
    } else {
        Err(BuildError::InvalidRequest(format!(
            "service id {service_id:?} must be letters, digits, '-', '_' and '.'"
        )))
    }
}

/// Removes a directory tree if it exists.
fn remove_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Builder {
    /// Sets up the work and cache directories (removing the scratch space a crash left)
    /// and checks the runtime images.
    pub async fn new(
        registry: Registry,
        jobs: Arc<dyn BuildJobs>,
        config: BuilderConfig,
    ) -> Result<Builder, BuildError> {
        let images =
            RuntimeImages::new(&config.runtime_images).map_err(BuildError::InvalidRequest)?;
        // An unusable extra bundle is the operator's mistake: say so at start.
        let t = config.trust.clone();
        blocking(move || t.load()).await?;
        let (work, cache, timeout) = (
            config.work_dir.clone(),
            config.cache_dir.clone(),
            config.git_timeout,
        );
        let git = blocking(move || {
            for dir in [work.clone(), work.join("git"), cache] {
                std::fs::create_dir_all(&dir)
                    .map_err(io(format!("cannot create {}", dir.display())))?;
            }
            remove_tree(&work.join("scratch"))
                .map_err(io("cannot clear the build scratch space"))?;
            std::fs::create_dir_all(work.join("scratch"))
                .map_err(io("cannot create the build scratch space"))?;
            GitEnv::open(&work.join("git-env"), timeout).map_err(BuildError::from)
        })
        .await?;
        Ok(Builder {
            inner: Arc::new(Inner {
                registry,
                jobs,
                config,
                images: std::sync::RwLock::new(images),
                git,
                locks: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &BuilderConfig {
        &self.inner.config
    }

    /// The commit `source`'s branch points at now (`git ls-remote`), for polling;
    /// `None` if the branch does not exist. Uploads have no branch: `None`.
    pub async fn latest_commit(&self, source: &Source) -> Result<Option<String>, BuildError> {
        if source.upload_digest().is_some() {
            return Ok(None);
        }
        let (git, source) = (self.inner.git.clone(), source.clone());
        blocking(move || git.ls_remote(&source)).await
    }

    /// Removes a service's git and dependency caches (when it is deleted).
    pub async fn forget_service(&self, service_id: &str) -> Result<(), BuildError> {
        let key = cache_key(service_id)?;
        let lock = self.lock(&key);
        let _held = lock.lock().await;
        let (git, cache) = (
            self.inner.config.work_dir.join("git").join(&key),
            self.inner.config.cache_dir.join(&key),
        );
        blocking(move || {
            remove_tree(&git).map_err(io("cannot remove the git cache"))?;
            remove_tree(&cache).map_err(io("cannot remove the dependency caches"))
        })
        .await
    }

    fn lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    /// Builds `request`'s source into `<repository>:<commit>`, writing the log to
    /// `request.log_path` and handing each line to `on_log` as it comes.
    pub async fn build(
        &self,
        request: &BuildRequest,
        on_log: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<BuildResult, BuildError> {
        let log = BuildLog::open(&request.log_path, on_log, self.inner.config.failure_lines)
            .map_err(io(format!(
                "cannot open the build log {}",
                request.log_path.display()
            )))?;
        let started = Instant::now();
        let scratch = self
            .inner
            .config
            .work_dir
            .join("scratch")
            .join(uuid::Uuid::new_v4().simple().to_string());
        let result = self.run(request, &log, &scratch, started).await;
        match &result {
            Ok(r) => log.line(&format!(
                "==> Built {}:{} ({}) in {:.1} s",
                r.repository,
                r.tag,
                r.digest,
                started.elapsed().as_secs_f64()
            )),
            Err(e) => {
                log.line(&format!("==> Build failed: {}", first_line(&e.to_string())));
                tracing::warn!(service = %request.service_id, error = %first_line(&e.to_string()), "build failed");
            }
        }
        let _ = blocking(move || remove_tree(&scratch)).await;
        log.close().await;
        result
    }

    async fn run(
        &self,
        request: &BuildRequest,
        log: &BuildLog<'_>,
        scratch: &Path,
        started: Instant,
    ) -> Result<BuildResult, BuildError> {
        let key = cache_key(&request.service_id)?;
        if !names::is_repository(&request.repository) {
            return Err(BuildError::InvalidRequest(format!(
                "{:?} is not a repository name",
                request.repository
            )));
        }
        let lock = self.lock(&key);
        let _held = match lock.try_lock() {
            Ok(held) => held,
            Err(_) => {
                log.line("==> Waiting for the service's previous build to finish");
                lock.lock().await
            }
        };
        let scratch_dir = scratch.to_path_buf();
        blocking(move || {
            std::fs::create_dir_all(&scratch_dir)
                .map_err(io("cannot create the build scratch space"))
        })
        .await?;

        // 1. The source.
        let (root, commit) = self.fetch(request, &key, log, scratch).await?;
        let sub = request.source.source_directory.clone();
        let dir = blocking(move || source::source_directory(&root, sub.as_deref())).await?;
        if let Some(sub) = request
            .source
            .source_directory
            .as_deref()
            .filter(|s| !s.trim_matches('/').is_empty())
        {
            log.line(&format!("==> Source directory {sub}"));
        }

        // 2. The plan.
        let (d, cfg) = (dir.clone(), request.code_configuration.clone());
        let plan = blocking(move || plan::plan(&d, cfg.as_ref())).await?;
        let mut notes = plan.notes.clone();

        // 3. The base image of the runtime (or its successor) and version, pulled into
        // runway's registry the first time.
        let chosen = self
            .choose_image(plan.runtime, plan.runtime_version.as_deref())
            .await?;
        log.line(&format!(
            "==> Runtime {} ({}){}, base image {} ({})",
            plan.runtime,
            match plan.origin {
                plan::PlanOrigin::ConfigFile => "from apprunner.yaml",
                plan::PlanOrigin::Api => "from the service's configuration",
                plan::PlanOrigin::Detected => "detected",
            },
            plan.runtime_version
                .as_deref()
                .map(|v| format!(", runtime-version {v}"))
                .unwrap_or_default(),
            chosen.reference,
            chosen.source.as_str(),
        ));
        for note in &plan.notes {
            log.line(&format!("==> Note: {note}"));
        }
        if let Some(note) = &chosen.fallback {
            log.line(&format!("==> Note: {note}"));
            notes.push(note.clone());
        }
        let base = image::resolve_base(
            &self.inner.registry,
            &chosen.reference,
            &self.inner.config.own_registry_hosts,
        )
        .await
        .map_err(|e| missing_image_hint(e, &chosen))?;

        // 4. The source layer.
        let (d, out) = (dir.clone(), scratch.join("source.tar.gz"));
        let source_layer = blocking(move || {
            layer::write_source_layer(&d, &out).map_err(io("cannot pack the source"))
        })
        .await?;
        log.line(&format!(
            "==> Source layer {} ({} bytes)",
            short(&source_layer.digest),
            source_layer.size
        ));
        let mut layers = vec![NewLayer {
            file: source_layer,
            created_by: format!(
                "COPY {} {APP_DIR} # {}",
                redact_url(&request.source.url),
                commit
            ),
        }];

        // 5. The build commands, in a container of base + source, trusting the host's
        // certificate authorities.
        let t = self.inner.config.trust.clone();
        let material = blocking(move || t.load()).await?;
        let commands = plan.commands();
        if commands.is_empty() {
            log.line("==> No build commands");
        } else {
            log.line(&self.inner.config.trust.describe(&material));
            let built = self
                .run_commands(
                    request, &key, &commit, &plan, &chosen, &base, &layers, &material, log, scratch,
                )
                .await?;
            layers.push(built);
        }
        let mut image_env = plan.image_env();
        if self.inner.config.trust.for_instances {
            layers.push(trust_layer(&material, scratch).await?);
            let user: Vec<String> = image_env.iter().map(|(k, _)| k.clone()).collect();
            image_env.extend(
                trust::ca_env(trust::IMAGE_BUNDLE)
                    .into_iter()
                    .filter(|(k, _)| !user.contains(k)),
            );
        }

        // 6. The image.
        let start = script::start_script(&plan.run_command);
        let run = RunSettings {
            cmd: Some(script::with_bash(&start)),
            env: image_env,
            working_dir: Some(APP_DIR.into()),
            exposed_port: Some(plan.port),
            labels: vec![
                ("org.opencontainers.image.revision".into(), commit.clone()),
                (
                    "org.opencontainers.image.source".into(),
                    redact_url(&request.source.url),
                ),
            ],
        };
        let config = image::derive_config(&base.config, &layers, &run, &image::now_rfc3339());
        let digest = image::push_image(
            &self.inner.registry,
            &request.repository,
            &commit,
            &base,
            &layers,
            &config,
        )
        .await?;
        Ok(BuildResult {
            repository: request.repository.clone(),
            tag: commit.clone(),
            digest,
            commit,
            plan,
            base: chosen,
            notes,
            log_path: request.log_path.clone(),
            duration: started.elapsed(),
        })
    }

    /// Sets (or with `None` removes) the base image `runtime` is configured with, for the
    /// builds that start from now on.
    pub fn set_runtime_image(
        &self,
        runtime: Runtime,
        reference: Option<&str>,
    ) -> Result<(), String> {
        let mut images = self.inner.images.write().unwrap_or_else(|p| p.into_inner());
        match reference {
            Some(r) => images.set(runtime, r),
            None => {
                images.unset(runtime);
                Ok(())
            }
        }
    }

    /// What `runtime` would build on now: its configured reference, its imported
    /// repository `runtimes/<name>` (with the tags there), or its official image.
    pub async fn image_choice(&self, runtime: Runtime) -> Option<ImageChoice> {
        let configured = self
            .inner
            .images
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .configured(runtime)
            .map(str::to_string);
        let own = &self.inner.config.own_registry_hosts;
        if let Some(reference) = configured {
            let local_tags = if runtimes::is_local_reference(&reference, own)
                && !reference.contains("{version}")
            {
                let (repository, _) = runtimes::split_local_reference(&reference, own);
                Some(
                    self.inner
                        .registry
                        .tags(&repository)
                        .await
                        .unwrap_or_default(),
                )
            } else {
                None
            };
            return Some(ImageChoice {
                reference,
                source: ImageSource::Configured,
                local_tags,
            });
        }
        let repository = runtime.local_repository();
        let tags = self
            .inner
            .registry
            .tags(&repository)
            .await
            .unwrap_or_default();
        if !tags.is_empty() {
            let tag = if tags.iter().any(|t| t == "latest") {
                "latest"
            } else {
                runtimes::best_version(&tags, None).unwrap_or(tags[0].as_str())
            };
            return Some(ImageChoice {
                reference: format!("{repository}:{tag}"),
                source: ImageSource::Imported,
                local_tags: Some(tags),
            });
        }
        runtime.default_image().map(|template| ImageChoice {
            reference: template.to_string(),
            source: ImageSource::Official,
            local_tags: None,
        })
    }

    /// The base image for `runtime` at `version` (see [`runtimes::choose`]).
    pub async fn choose_image(
        &self,
        runtime: Runtime,
        version: Option<&str>,
    ) -> Result<ChosenImage, BuildError> {
        let mut choices = HashMap::new();
        let mut current = Some(runtime);
        while let Some(rt) = current {
            choices.insert(rt, self.image_choice(rt).await);
            current = rt.successor();
        }
        Ok(runtimes::choose(runtime, version, |rt| {
            choices.get(&rt).cloned().flatten()
        })?)
    }

    /// Fetches the source: the checked-out directory and the commit.
    async fn fetch(
        &self,
        request: &BuildRequest,
        key: &str,
        log: &BuildLog<'_>,
        scratch: &Path,
    ) -> Result<(PathBuf, String), BuildError> {
        let source = request.source.clone();
        let t = Instant::now();
        if let Some(digest) = source.upload_digest() {
            let hex = digest
                .strip_prefix("sha256:")
                .filter(|h| {
                    h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                })
                .ok_or_else(|| {
                    BuildError::InvalidRequest(format!(
                        "{} is not upload://sha256:<64 hex digits>",
                        source.url
                    ))
                })?
                .to_string();
            let archive = self.inner.registry.blob_path(digest).ok_or_else(|| {
                SourceError::Upload(format!(
                    "{digest} is not in runway's registry (upload it first)"
                ))
            })?;
            log.line(&format!(
                "==> Unpacking the uploaded source {}",
                short(digest)
            ));
            let (dest, limits) = (scratch.join("upload"), self.inner.config.upload_limits);
            let d = dest.clone();
            blocking(move || {
                std::fs::create_dir(&d).map_err(io("cannot create the upload directory"))?;
                source::unpack_upload(&archive, &d, limits).map_err(BuildError::from)
            })
            .await?;
            return Ok((dest, hex));
        }
        log.line(&format!(
            "==> Fetching {} (branch {})",
            redact_url(&source.url),
            source.branch
        ));
        let (git, repo) = (
            self.inner.git.clone(),
            self.inner.config.work_dir.join("git").join(key),
        );
        let fetched = blocking(move || git.fetch(&source, &repo)).await?;
        log.line(&format!(
            "==> Commit {} ({:.1} s)",
            fetched.commit,
            t.elapsed().as_secs_f64()
        ));
        Ok((fetched.dir, fetched.commit))
    }

    /// Runs the plan's commands in a container of base + source; the layer of its changes.
    #[allow(clippy::too_many_arguments)]
    async fn run_commands(
        &self,
        request: &BuildRequest,
        key: &str,
        commit: &str,
        plan: &BuildPlan,
        chosen: &ChosenImage,
        base: &image::BaseImage,
        layers: &[NewLayer],
        trust: &TrustMaterial,
        log: &BuildLog<'_>,
        scratch: &Path,
    ) -> Result<NewLayer, BuildError> {
        let registry = &self.inner.registry;
        let build_repository = format!("{}-build", request.repository);
        if !names::is_repository(&build_repository) {
            return Err(BuildError::InvalidRequest(format!(
                "{build_repository:?} is not a repository name"
            )));
        }
        let config = image::derive_config(
            &base.config,
            layers,
            &RunSettings {
                working_dir: Some(APP_DIR.into()),
                ..RunSettings::default()
            },
            &image::now_rfc3339(),
        );
        let build_digest =
            image::push_image(registry, &build_repository, commit, base, layers, &config).await?;
        let result = self
            .run_job(
                key,
                commit,
                plan,
                // The version checked is the one chosen for what was asked (the nearest
                // one when the machine has no image of it, which the log has said).
                plan.runtime_version.as_ref().and(chosen.version.as_deref()),
                &build_repository,
                &build_digest,
                trust,
                log,
                scratch,
            )
            .await;
        if let Err(e) = registry.delete_tag(&build_repository, commit).await {
            tracing::warn!(repository = %build_repository, error = %e, "cannot remove the build image's tag");
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_job(
        &self,
        key: &str,
        commit: &str,
        plan: &BuildPlan,
        checked_version: Option<&str>,
        repository: &str,
        digest: &str,
        trust: &TrustMaterial,
        log: &BuildLog<'_>,
        scratch: &Path,
    ) -> Result<NewLayer, BuildError> {
        let config = &self.inner.config;
        let commands = plan.commands();
        let mut mounts = Vec::new();
        let (trust_dir, material) = (scratch.join("trust"), trust.clone());
        let d = trust_dir.clone();
        blocking(move || {
            trust::write_files(&d, &material)
                .map_err(io("cannot write the build's certificate authorities"))
        })
        .await?;
        mounts.push(JobMount {
            source: trust_dir,
            target: trust::CONTAINER_DIR.to_string(),
            read_only: false,
        });
        for (name, target) in detect::cache_dirs(plan.runtime.family()) {
            let source = config.cache_dir.join(key).join(name);
            let s = source.clone();
            blocking(move || {
                std::fs::create_dir_all(&s).map_err(io("cannot create a dependency cache"))
            })
            .await?;
            mounts.push(JobMount {
                source,
                target: target.to_string(),
                read_only: false,
            });
        }
        let mut env = config.trust.build_env();
        env.push(("HOME".to_string(), "/root".to_string()));
        env.extend(plan.build_env.iter().cloned());
        // The build's network group is its own: it reaches the internet, not the
        // service's running instances.
        let mut group = format!("build-{key}");
        group.truncate(64);
        let job_request = JobRequest {
            name: format!("build-{key}-{}", &commit[..commit.len().min(12)]),
            service_id: group,
            image: runway_runtime::ImageRef {
                repository: repository.to_string(),
                digest: digest.to_string(),
            },
            command: script::with_bash(&format!(
                "exec 2>&1\n{}{}{}",
                trust::prelude(),
                runtimes::version_probe(plan.runtime.family(), checked_version),
                script::build_script(APP_DIR, &commands)
            )),
            env,
            workdir: APP_DIR.into(),
            user: Some("0".into()),
            mounts,
            cpu_units: config.cpu_units,
            memory_mb: config.memory_mb,
            timeout: config.build_timeout,
        };
        log.line(&format!(
            "==> Running {} build command{} (limits: {} MiB, {} s)",
            commands.len(),
            if commands.len() == 1 { "" } else { "s" },
            config.memory_mb,
            config.build_timeout.as_secs()
        ));
        let t = Instant::now();
        let job = self.inner.jobs.start(job_request).await?;
        let mut job = JobGuard(Some(job));
        let mut current = None;
        let mut mismatch = None;
        // The job enforces its own deadline; this one only guards against a job that
        // never reports its end.
        let watched =
            tokio::time::timeout(config.build_timeout + Duration::from_secs(120), async {
                while let Some(line) = job.get().next_line().await {
                    if let Some(n) = script::parse_marker(&line) {
                        current = Some(n);
                    } else if current.is_none() && line.starts_with(runtimes::VERSION_MISMATCH) {
                        mismatch = Some(line.clone());
                    }
                    log.line(&line);
                }
                job.get().wait().await
            })
            .await;
        let exit = match watched {
            Ok(exit) => exit?,
            Err(_) => {
                job.remove().await;
                return Err(JobError(format!(
                    "the build container did not end within {} s",
                    config.build_timeout.as_secs() + 120
                ))
                .into());
            }
        };
        if !exit.success() {
            job.remove().await;
            if let Some(line) = mismatch
                && exit.code == Some(runtimes::VERSION_MISMATCH_STATUS)
            {
                return Err(runtimes::NoImage(line).into());
            }
            let command = current
                .and_then(|n| commands.get(n.saturating_sub(1)))
                .map_or_else(|| "the build script".to_string(), |c| script::summary(c));
            return Err(BuildError::CommandFailed {
                command,
                outcome: exit.describe(),
                last_lines: log.tail(),
            });
        }
        log.line(&format!(
            "==> Build commands done in {:.1} s",
            t.elapsed().as_secs_f64()
        ));
        let committed = job.get().commit_layer(scratch).await;
        job.remove().await;
        let committed = committed?;
        log.line(&format!(
            "==> Build layer {} ({} bytes)",
            short(&committed.digest),
            committed.size
        ));
        Ok(NewLayer {
            file: committed,
            created_by: format!(
                "RUN {}",
                commands
                    .iter()
                    .map(|c| script::summary(c))
                    .collect::<Vec<_>>()
                    .join(" && ")
            ),
        })
    }
}

/// A base image that cannot be found or pulled: the error, with what to do about it.
fn missing_image_hint(e: ImageError, chosen: &ChosenImage) -> BuildError {
    let runtime = chosen.runtime;
    let hint = match chosen.source {
        ImageSource::Official => format!(
            "; without a public registry, import the runtime's image with              `scripts/base-image {runtime}` or point it at another with              `runway runtimes set {runtime} REFERENCE`"
        ),
        ImageSource::Configured => format!(
            " (configured for runtime {runtime}: change it with `runway runtimes set {runtime}              REFERENCE`, or import one with `scripts/base-image {runtime}`)"
        ),
        ImageSource::Imported => String::new(),
    };
    match e {
        ImageError::Base { reference, message } => BuildError::Image(ImageError::Base {
            reference,
            message: format!("{message}{hint}"),
        }),
        other => BuildError::Image(other),
    }
}

/// The layer that lets instances trust the build's certificate authorities: the bundle
/// at [`trust::IMAGE_BUNDLE`].
async fn trust_layer(material: &TrustMaterial, scratch: &Path) -> Result<NewLayer, BuildError> {
    let (root, bundle) = (scratch.join("trust-layer"), material.bundle.clone());
    let out = scratch.join("trust-layer.tar.gz");
    let file = blocking(move || {
        let path = root.join(trust::IMAGE_BUNDLE.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bundle)?;
        layer::write_rootfs_layer(&root, &out)
            .map_err(io("cannot write the certificate authorities' layer"))
    })
    .await?;
    Ok(NewLayer {
        file,
        created_by: format!("COPY ca-certificates.crt {}", trust::IMAGE_BUNDLE),
    })
}

/// A job removed when the build is done with it, or dropped (a cancelled build).
struct JobGuard(Option<Box<dyn BuildJob>>);

impl JobGuard {
    fn get(&mut self) -> &mut Box<dyn BuildJob> {
        self.0.as_mut().expect("the job is there until removed")
    }

    async fn remove(&mut self) {
        if let Some(job) = self.0.take()
            && let Err(e) = job.remove().await
        {
            tracing::warn!(error = %e, "cannot remove a build container");
        }
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        if let Some(job) = self.0.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                if let Err(e) = job.remove().await {
                    tracing::warn!(error = %e, "cannot remove a build container");
                }
            });
        }
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests;
