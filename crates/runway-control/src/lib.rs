//! The controller (App Runner's deployment engine and Application Auto Scaling): it
//! carries out the operations the API records, keeps each service's revisions, instances
//! and routes converged with what is stored, and sets instance counts from the router's
//! concurrency measurements.
//!
//! Three loops share the work, and the store is how they agree: the operation loop moves
//! each service's oldest unfinished operation one step at a time, recording every step
//! before acting on it; the autoscaler writes each serving revision's desired instance
//! count; the converger starts and stops instances until the runtime matches the desired
//! counts, and publishes the route table. Any of them can be killed at any point and
//! resume from the store.
//!
//! It reaches the router through [`RouterPort`]: the in-process [`Router`] or `runway
//! server`'s client of the router process; what it asks of it (loads, instance loads)
//! is answered after every route table it set before.
//!
//! It must never hold state that matters only in memory, never serve requests or sit in
//! their path, and never start an instance for a revision nobody asked for.

#![forbid(unsafe_code)]

pub mod autoscaler;
mod converge;
mod deploy;
mod replace;
mod scaling;
mod snapshot;
mod spec;

use autoscaler::ScalerConfig;
use runway_model::records::{ResolvedImage, SecretPin, ServiceRecord};
use runway_model::shapes::{CodeRepository, HttpConfiguration};
use runway_router::{Demand, InstanceLoad, RevisionStats, RouteTable, Router, RoutesError};
use runway_runtime::{Backoff, Runtime};
use runway_store::{Store, StoreError, Txn};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A boxed future, for the object-safe [`ImageResolver`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the controller needs of the request router: the in-process [`Router`] (tests,
/// embedders), or `runway server`'s client of the router process, which outlives it.
pub trait RouterPort: Send + Sync + 'static {
    /// Replaces the route table (see [`Router::set_routes`]).
    fn set_routes(&self, routes: RouteTable) -> Result<(), RoutesError>;
    /// Every revision's load (see [`Router::stats`]); `None` when the router cannot
    /// answer (its process is down or starting again), which is no load.
    fn stats(&self) -> BoxFuture<'_, Option<Vec<RevisionStats>>>;
    /// Where an instance stands, reflecting every table set before the call (see
    /// [`Router::instance_load`]). A router that cannot be asked answers routed.
    fn instance_load<'a>(&'a self, instance_id: &'a str) -> BoxFuture<'a, InstanceLoad>;
    /// Revisions with requests waiting (see [`Router::demand`]).
    fn demand(&self) -> tokio::sync::watch::Receiver<Demand>;
}

impl RouterPort for Router {
    fn set_routes(&self, routes: RouteTable) -> Result<(), RoutesError> {
        Router::set_routes(self, routes)
    }
    fn stats(&self) -> BoxFuture<'_, Option<Vec<RevisionStats>>> {
        Box::pin(std::future::ready(Some(Router::stats(self))))
    }
    fn instance_load<'a>(&'a self, instance_id: &'a str) -> BoxFuture<'a, InstanceLoad> {
        Box::pin(std::future::ready(Router::instance_load(self, instance_id)))
    }
    fn demand(&self) -> tokio::sync::watch::Receiver<Demand> {
        Router::demand(self)
    }
}

/// Where a revision's image comes from. The binary implements it over the registry and
/// the source builder.
pub trait ImageResolver: Send + Sync + 'static {
    /// Turns an `ImageIdentifier` into an image in runway's registry, pulling it through
    /// from an upstream registry if needed (with the credentials of the service's
    /// connection, if it names one).
    fn resolve<'a>(
        &'a self,
        identifier: &'a str,
        connection_arn: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ResolvedImage, String>>;

    /// Builds a service's code repository into an image in runway's registry, writing
    /// the build log to [`build_log_path`]`(operation)`. Repeating a build (after a
    /// restart) is harmless. The error is what the user needs to fix it: the failing
    /// command and the last lines of its log.
    fn build<'a>(&'a self, request: SourceBuild<'a>) -> BoxFuture<'a, Result<BuiltImage, String>>;

    /// Removes what runway made for a deleted service from the registry: its build
    /// outputs and uploaded sources, and the copies of `images` pulled through from
    /// upstream registries (`images` are the service's revisions' images that no other
    /// service uses, with the `ImageIdentifier` each came from). Images users pushed
    /// stay. Repeating it is harmless.
    fn release<'a>(
        &'a self,
        service: &'a ServiceRecord,
        images: Vec<(String, ResolvedImage)>,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Where a revision's secret values come from (`RuntimeEnvironmentSecrets`,
/// `run.secrets`). The binary implements it over runway's Secrets Manager and Parameter
/// Store. Values pass through the controller to the runtime and are never stored.
pub trait SecretResolver: Send + Sync + 'static {
    /// Pins a revision's references (environment variable, reference) to the versions
    /// they name now, after checking that `kms_key` (the service's
    /// `EncryptionConfiguration.KmsKey`), if any, can be used. The error names what does
    /// not resolve, and never holds a value.
    fn pin<'a>(
        &'a self,
        references: &'a [(String, String)],
        kms_key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<SecretPin>, String>>;

    /// The values of pinned references, as (environment variable, value), for an
    /// instance's environment.
    fn values<'a>(
        &'a self,
        pins: &'a [SecretPin],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, String>>;
}

/// A source build the controller asks for.
#[derive(Debug, Clone, Copy)]
pub struct SourceBuild<'a> {
    pub service: &'a ServiceRecord,
    pub code: &'a CodeRepository,
    /// The service's connection (credentials for the repository), if it names one.
    pub connection_arn: Option<&'a str>,
    pub operation_id: &'a str,
}

/// What a build made: the image and how it runs (from `apprunner.yaml`, the API's code
/// configuration or the runtime's defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltImage {
    pub image: ResolvedImage,
    /// The image's reference with the tag pushed (the source commit), as clients name it:
    /// `127.0.0.1:5000/builds/app:<commit>`.
    pub identifier: String,
    pub port: u16,
    pub env: Vec<(String, String)>,
    pub secrets: Vec<(String, String)>,
    /// The HTTP settings `apprunner.yaml` sets (`run.network`); the API's win over them.
    pub http: HttpConfiguration,
    /// One line for the event log: runtime, commit, time taken.
    pub summary: String,
    /// More lines for the event log (a retired runtime built with its successor).
    pub notes: Vec<String>,
}

/// The file the build log of operation `operation_id` is kept in, under the server's
/// data directory.
pub fn build_log_path(data_dir: &std::path::Path, operation_id: &str) -> std::path::PathBuf {
    data_dir.join("builds").join(format!("{operation_id}.log"))
}

/// How the controller behaves.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub scaler: ScalerConfig,
    /// How often the autoscaler decides.
    pub scale_interval: Duration,
    /// How often the operation loop and the converger run when nothing wakes them.
    pub poll_interval: Duration,
    /// How long a new revision may take to become healthy before it is rolled back.
    pub deploy_timeout: Duration,
    /// How long a revision (or an instance being scaled in) that left the route table may
    /// finish its requests (WebSockets included) before it is stopped.
    pub drain_timeout: Duration,
    /// Between SIGTERM and SIGKILL when an instance stops.
    pub stop_grace: Duration,
    /// How long an instance that failed its health checks stays, out of the route table,
    /// after its replacement is started: its requests in flight may still finish.
    pub replace_grace: Duration,
    /// How soon a revision's instances are replaced again when replacements fail too:
    /// the first at once, each next one after `initial`, doubling up to `max`; the
    /// count starts over after `reset_after` without a replacement.
    pub replace_backoff: Backoff,
    /// Revisions kept per service for rollback (those serving are always kept).
    pub keep_revisions: usize,
    /// Whether plain-HTTP requests are redirected to HTTPS.
    pub https_redirect: bool,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            scaler: ScalerConfig::default(),
            scale_interval: Duration::from_secs(2),
            poll_interval: Duration::from_millis(500),
            deploy_timeout: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(10),
            replace_grace: Duration::from_secs(10),
            replace_backoff: Backoff {
                initial: Duration::from_secs(10),
                max: Duration::from_secs(300),
                reset_after: Duration::from_secs(600),
            },
            keep_revisions: 10,
            https_redirect: true,
        }
    }
}

/// What can go wrong in the controller (it retries on its next pass).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a blocking task failed: {0}")]
    Join(String),
}

type Result<T, E = ControlError> = std::result::Result<T, E>;

/// The controller; cheap to clone.
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").finish_non_exhaustive()
    }
}

struct Inner {
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    router: Arc<dyn RouterPort>,
    images: Arc<dyn ImageResolver>,
    /// Set once, before the loops run ([`Controller::with_secrets`]).
    secrets: std::sync::OnceLock<Arc<dyn SecretResolver>>,
    config: ControlConfig,
    wake: Notify,
    scaling: Mutex<scaling::Scaling>,
    /// Starts requested but not yet visible in the runtime's list, by revision.
    starting: Mutex<HashMap<String, u32>>,
    /// Instances taken out of the route table before being stopped, with when.
    draining: Mutex<HashMap<String, Instant>>,
    /// Services whose operation step is running.
    busy: Mutex<HashSet<String>>,
    /// Why the runtime could not start an instance of a revision, by revision: a
    /// deployment fails on it instead of retrying until its deadline.
    failed_starts: Mutex<HashMap<String, String>>,
    /// Replacements of instances that failed their health checks, by revision.
    replacing: Mutex<HashMap<String, replace::Replacements>>,
    /// Service ARNs by service id, from the last snapshot: instances name their
    /// service by id, events are kept under its ARN.
    service_arns: Mutex<HashMap<String, String>>,
    /// Lets [`WRITES_WAITING`] of the controller's write transactions at a time onto
    /// blocking threads. The store runs one write at a time anyway; without this gate
    /// every service's deployment step waited for the store's writer on a thread of its
    /// own: 200 services created at once held 120 threads in that wait, and the memory
    /// those threads took stayed after them (bench/api).
    writes: tokio::sync::Semaphore,
    /// Lets [`READS_AT_ONCE`] of the controller's read transactions at a time onto
    /// blocking threads; the others wait here, without a thread. Without it every
    /// operation step's read took a thread and waited there for one of the store's few
    /// readers, and past 250 ms opened a connection of its own: 200 services created
    /// and deleted at once opened and closed about 3,900 (bench/api).
    reads: tokio::sync::Semaphore,
}

/// How many of the controller's write transactions may wait for the store's writer on
/// blocking threads at once: more than one, so that the next is already on its thread
/// when a write ends (with one, each write waited for two thread wake-ups after the
/// last, and 200 deletes took twice as long on a busy host).
const WRITES_WAITING: usize = 4;

/// How many of the controller's read transactions run at once: as many as the store
/// keeps reader connections for.
const READS_AT_ONCE: usize = 4;

/// Stops a loop when whoever runs the controller stops (or is dropped).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Controller {
    pub fn new(
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        router: impl RouterPort,
        images: Arc<dyn ImageResolver>,
        config: ControlConfig,
    ) -> Controller {
        Controller {
            inner: Arc::new(Inner {
                scaling: Mutex::new(scaling::Scaling::new(config.scaler.clone())),
                store,
                runtime,
                router: Arc::new(router),
                images,
                secrets: std::sync::OnceLock::new(),
                config,
                wake: Notify::new(),
                starting: Mutex::new(HashMap::new()),
                draining: Mutex::new(HashMap::new()),
                busy: Mutex::new(HashSet::new()),
                failed_starts: Mutex::new(HashMap::new()),
                replacing: Mutex::new(HashMap::new()),
                service_arns: Mutex::new(HashMap::new()),
                writes: tokio::sync::Semaphore::new(WRITES_WAITING),
                reads: tokio::sync::Semaphore::new(READS_AT_ONCE),
            }),
        }
    }

    /// Resolves revisions' secret references with `resolver`. Without one, a deployment
    /// that references a secret fails.
    pub fn with_secrets(self, resolver: Arc<dyn SecretResolver>) -> Controller {
        let _ = self.inner.secrets.set(resolver);
        self
    }

    /// Asks the loops to run now (after the API records an operation, say).
    pub fn wake(&self) {
        self.inner.wake.notify_waiters();
    }

    /// Publishes the route table from what is stored and what runs, at once: after a
    /// restart, apps are served before any loop has run.
    pub async fn publish_routes(&self) -> Result<()> {
        let snap = self.snapshot().await?;
        self.inner.publish(&snap);
        Ok(())
    }

    /// Runs the controller's loops until `shutdown` completes. Instances keep running
    /// when it stops: the data plane outlives the control plane.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) {
        let this = self.clone();
        let ops = AbortOnDrop(tokio::spawn(async move { this.operation_loop().await }));
        let this = self.clone();
        let converge = AbortOnDrop(tokio::spawn(async move { this.converge_loop().await }));
        let this = self.clone();
        let scale = AbortOnDrop(tokio::spawn(async move { this.scale_loop().await }));
        let this = self.clone();
        let events = AbortOnDrop(tokio::spawn(async move { this.runtime_events().await }));
        shutdown.await;
        drop((ops, converge, scale, events));
    }

    /// Runs a store transaction on a blocking thread.
    async fn tx<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Txn) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _turn = self
            .inner
            .writes
            .acquire()
            .await
            .map_err(|e| ControlError::Join(e.to_string()))?;
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut tx = store.begin_relaxed()?;
            let out = f(&mut *tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
        .map_err(|e| ControlError::Join(e.to_string()))?
    }

    /// Runs a read-only store transaction on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Txn) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _turn = self
            .inner
            .reads
            .acquire()
            .await
            .map_err(|e| ControlError::Join(e.to_string()))?;
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || f(&*store.read()?))
            .await
            .map_err(|e| ControlError::Join(e.to_string()))?
    }

    async fn snapshot(&self) -> Result<snapshot::Snapshot> {
        self.read(snapshot::Snapshot::load).await
    }

    async fn sleep_or_wake(&self, period: Duration) {
        let _ = tokio::time::timeout(period, self.inner.wake.notified()).await;
    }
}
