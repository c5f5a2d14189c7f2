//! runway's built-in OCI registry (its ECR). It owns the OCI Distribution API v1.1 served
//! on the registry listener ([`Registry::router`]), a content-addressed blob store on
//! disk (`<root>/blobs/<algorithm>/<xx>/<hex>`, digests verified while streaming, every
//! write temp file + fsync + rename), repository metadata in the state store, access-key
//! authentication (HTTP Basic and the Docker token flow, failed sign-ins limited per
//! client address), garbage collection ([`Registry::gc`]), pull-through imports from
//! upstream registries ([`Registry::import`]), and the hosts it is known by, past ones
//! included ([`Registry::remember_hosts`]), so references to it are recognised.
//!
//! This crate must never expose a blob that is not complete and verified, never delete
//! a blob that a stored manifest references, never store or log a secret, and never
//! start deployments itself: it reports pushes through [`Registry::on_push`] and the
//! caller decides.

#![forbid(unsafe_code)]

mod api;
mod auth;
mod content;
pub mod digest;
mod gc;
mod import;
pub mod manifest;
mod meta;
mod metrics;
pub mod names;
mod push;
mod storage;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
mod upload;

pub use gc::GcReport;
pub use import::{ImportedImage, UpstreamAuth, internal_repository};
pub use manifest::Platform;

use runway_secrets::MasterKey;
use runway_store::{Store, Typed};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How the registry is set up.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Where blobs and uploads live (runway passes `DATA_DIR/registry`).
    pub root: PathBuf,
    /// The largest blob one upload may carry.
    pub max_upload_size: u64,
    /// The largest manifest accepted (the spec asks for at least 4 MiB).
    pub max_manifest_size: usize,
    /// The registry's public base URL (`https://registry.example.com`), used in the
    /// token realm of `WWW-Authenticate`. `None`: `http://` (`https://` with `tls`) + the
    /// request's `Host`.
    pub public_url: Option<String>,
    /// How long a token from the token endpoint is valid.
    pub token_ttl: Duration,
    /// Unreferenced blobs younger than this survive gc, so a push whose manifest has
    /// not arrived yet keeps its blobs.
    pub gc_grace: Duration,
    /// Uploads with no activity for this long are removed by gc.
    pub upload_expiry: Duration,
    /// Upstream registries reached over plain HTTP (loopback hosts always are).
    pub insecure_registries: Vec<String>,
    /// The platform picked from a multi-platform image on import.
    pub platform: Platform,
    /// Whether clients reach the registry over HTTPS (the token realm's scheme when no
    /// `public_url` is set).
    pub tls: bool,
    /// Limits failed sign-ins per client address (shared with the API); the client's
    /// address comes from axum's `ConnectInfo<SocketAddr>`.
    pub auth_throttle: Option<Arc<runway_secrets::AuthThrottle>>,
}

impl RegistryConfig {
    /// The defaults, storing under `root`.
    pub fn new(root: impl Into<PathBuf>) -> RegistryConfig {
        RegistryConfig {
            root: root.into(),
            max_upload_size: 10 << 30,
            max_manifest_size: 4 << 20,
            public_url: None,
            token_ttl: Duration::from_secs(300),
            gc_grace: Duration::from_secs(3600),
            upload_expiry: Duration::from_secs(3600),
            insecure_registries: Vec::new(),
            platform: host_platform(),
            tls: false,
            auth_throttle: None,
        }
    }
}

/// The OCI platform of this machine (`linux/amd64`).
pub fn host_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    };
    Platform {
        architecture: architecture.to_string(),
        os: "linux".to_string(),
        variant: None,
    }
}

/// A manifest was stored by a push (not by an import).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEvent {
    pub repository: String,
    /// The tag pushed, if the manifest was pushed by tag (or with `?tag=`).
    pub tag: Option<String>,
    /// The manifest's digest.
    pub digest: String,
    pub media_type: String,
}

type PushHook = dyn Fn(&PushEvent) + Send + Sync + 'static;

/// A stored manifest, as the runtime reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedManifest {
    pub digest: String,
    pub media_type: String,
    /// The exact bytes pushed.
    pub bytes: bytes::Bytes,
}

/// What can go wrong in the registry's library API.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A file or directory of the blob store failed.
    #[error("registry storage: {context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// The state store failed.
    #[error("registry metadata: {0}")]
    Store(#[from] runway_store::StoreError),
    /// The token key could not be sealed or opened with the master key.
    #[error(transparent)]
    Secrets(#[from] runway_secrets::SecretsError),
    /// A repository name, tag, digest or reference is malformed.
    #[error("{0}")]
    Invalid(String),
    /// No such repository, tag, manifest or blob.
    #[error("{0} not found")]
    NotFound(String),
    /// A manifest was refused (invalid, or it references content that is missing).
    #[error("manifest refused: {0}")]
    Manifest(String),
    /// An upstream registry could not be reached, or refused the import.
    #[error("cannot import {reference} from registry {registry}: {message}")]
    Upstream {
        registry: String,
        reference: String,
        message: String,
    },
    /// A background task failed.
    #[error("registry internal error: {0}")]
    Internal(String),
}

impl RegistryError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RegistryError {
        let context = context.into();
        move |source| RegistryError::Io { context, source }
    }
}

/// The registry: cheap to clone, shared by every connection.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    config: RegistryConfig,
    store: Arc<dyn Store>,
    master: Arc<MasterKey>,
    blobs: storage::BlobStore,
    uploads: upload::Uploads,
    signer: auth::TokenSigner,
    metrics: metrics::Metrics,
    /// Shared by everything that makes a blob referenced or linked (blob commits,
    /// mounts, manifest pushes, imports); exclusive for gc's mark and sweep, so gc never
    /// deletes a blob between a push's check and its commit.
    gc_lock: tokio::sync::RwLock<()>,
    hooks: std::sync::RwLock<Vec<Arc<PushHook>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

const TOKEN_KEY_ID: &str = "registry-token-key";
/// The most hosts [`Registry::remember_hosts`] keeps.
pub const REMEMBERED_HOSTS: usize = 64;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Registry {
    /// Opens the registry over `config.root` (created if needed) and the state store,
    /// creating the token-signing key on first use, and registers its metrics.
    pub fn open(
        config: RegistryConfig,
        store: Arc<dyn Store>,
        master: Arc<MasterKey>,
        metrics: &mut runway_telemetry::Registry,
    ) -> Result<Registry, RegistryError> {
        let blobs = storage::BlobStore::open(&config.root).map_err(RegistryError::io(format!(
            "cannot prepare {}",
            config.root.display()
        )))?;
        let key = token_key(&*store, &master)?;
        Ok(Registry {
            inner: Arc::new(Inner {
                uploads: upload::Uploads::new(blobs.uploads_dir()),
                blobs,
                signer: auth::TokenSigner::new(&key),
                metrics: metrics::Metrics::register(metrics),
                config,
                store,
                master,
                gc_lock: tokio::sync::RwLock::new(()),
                hooks: std::sync::RwLock::new(Vec::new()),
            }),
        })
    }

    /// The HTTP application serving the distribution API (`/v2/...`), the token
    /// endpoint (`/v2/token`) and the admin endpoints (`/runway/v1/...`).
    pub fn router(&self) -> axum::Router {
        api::router(self.clone())
    }

    /// Calls `hook` after each manifest push is committed, before the client gets its
    /// 201, on a blocking thread (it may use the store). Imports do not call it.
    pub fn on_push(&self, hook: impl Fn(&PushEvent) + Send + Sync + 'static) {
        self.inner
            .hooks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(hook));
    }

    /// The manifest `reference` (a tag or a digest) of `repository`.
    pub async fn resolve_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<ResolvedManifest, RegistryError> {
        let reference = content::Reference::parse(reference)
            .map_err(|e| RegistryError::Invalid(e.message().to_string()))?;
        let repo = repository.to_string();
        let record = self
            .find_manifest(repository, &reference)
            .await?
            .ok_or_else(|| RegistryError::NotFound(format!("manifest {repo}:{reference}")))?;
        let digest = digest::Digest::parse(&record.digest)
            .map_err(|e| RegistryError::Internal(e.to_string()))?;
        let bytes = self
            .blocking(move |inner| {
                inner
                    .blobs
                    .read(&digest)
                    .map_err(RegistryError::io("cannot read a manifest"))
            })
            .await?
            .ok_or_else(|| RegistryError::NotFound(format!("manifest blob {}", record.digest)))?;
        Ok(ResolvedManifest {
            digest: record.digest,
            media_type: record.media_type,
            bytes: bytes.into(),
        })
    }

    /// The committed file of blob `digest`, if present; layers are read from it
    /// directly. The file is never modified, only removed by gc once unreferenced.
    pub fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        let digest = digest::Digest::parse(digest).ok()?;
        let path = self.inner.blobs.path(&digest);
        path.is_file().then_some(path)
    }

    /// Allows or refuses pulls without credentials from `repository` (created if it
    /// does not exist yet).
    pub async fn set_anonymous_pull(
        &self,
        repository: &str,
        enabled: bool,
    ) -> Result<(), RegistryError> {
        if !names::is_repository(repository) {
            return Err(RegistryError::Invalid(format!(
                "invalid repository name {repository:?}"
            )));
        }
        let name = repository.to_string();
        self.blocking(move |inner| {
            let mut tx = inner.store.begin()?;
            meta::ensure_repository(&mut *tx, &name, now_ms())?;
            let mut record = meta::repository(&*tx, &name)?
                .ok_or_else(|| RegistryError::NotFound(format!("repository {name}")))?;
            record.anonymous_pull = enabled;
            tx.save(&record)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Whether `repository` allows pulls without credentials.
    pub async fn anonymous_pull(&self, repository: &str) -> Result<bool, RegistryError> {
        let name = repository.to_string();
        self.blocking(move |inner| {
            let tx = inner.store.read()?;
            Ok(meta::repository(&*tx, &name)?.is_some_and(|r| r.anonymous_pull))
        })
        .await
    }

    /// Every repository, in ASCII order.
    pub async fn repositories(&self) -> Result<Vec<String>, RegistryError> {
        self.blocking(|inner| {
            let tx = inner.store.read()?;
            Ok(meta::repositories(&*tx)?
                .into_iter()
                .map(|r| r.name)
                .collect())
        })
        .await
    }

    /// The tags of `repository`, in ASCII order.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        let name = repository.to_string();
        self.blocking(move |inner| {
            let tx = inner.store.read()?;
            if meta::repository(&*tx, &name)?.is_none() {
                return Err(RegistryError::NotFound(format!("repository {name}")));
            }
            Ok(meta::tags(&*tx, &name)?)
        })
        .await
    }

    /// Records that clients reach the registry as `hosts` now (`registry.example.com`,
    /// `10.0.0.5:5000`, `127.0.0.1:5000`, ...) and returns every host it is known by:
    /// `hosts` first, then those it was served under before (most recent first, at most
    /// [`REMEMBERED_HOSTS`] in all), so that image references naming an old address
    /// stay the registry's own.
    pub async fn remember_hosts(&self, hosts: &[String]) -> Result<Vec<String>, RegistryError> {
        let hosts = hosts.to_vec();
        self.blocking(move |inner| {
            let mut tx = inner.store.begin()?;
            let now = now_ms();
            for host in &hosts {
                tx.save(&meta::HostRecord {
                    host: host.clone(),
                    last_served_ms: now,
                })?;
            }
            let mut known: Vec<meta::HostRecord> = tx
                .load_all::<meta::HostRecord>(&runway_store::Query::default())?
                .into_iter()
                .map(|(_, r)| r)
                .filter(|r| !hosts.contains(&r.host))
                .collect();
            known.sort_by_key(|r| std::cmp::Reverse(r.last_served_ms));
            let keep = REMEMBERED_HOSTS.saturating_sub(hosts.len());
            for old in known.iter().skip(keep) {
                tx.remove::<meta::HostRecord>(&old.host)?;
            }
            tx.commit()?;
            Ok(hosts
                .iter()
                .cloned()
                .chain(known.into_iter().take(keep).map(|r| r.host))
                .collect())
        })
        .await
    }

    /// Runs `f` on a blocking thread (store transactions, file system work).
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| RegistryError::Internal(format!("blocking task failed: {e}")))?
    }
}

/// Loads the token-signing key, creating and sealing one on first use.
fn token_key(store: &dyn Store, master: &MasterKey) -> Result<Vec<u8>, RegistryError> {
    let mut tx = store.begin()?;
    if let Some(record) = tx.load::<meta::TokenKeyRecord>(TOKEN_KEY_ID)? {
        return Ok(master.open(TOKEN_KEY_ID, &record.sealed)?);
    }
    let mut key = vec![0u8; 32];
    aws_lc_rs::rand::fill(&mut key)
        .map_err(|_| RegistryError::Internal("the random number generator failed".into()))?;
    tx.create(&meta::TokenKeyRecord {
        id: TOKEN_KEY_ID.to_string(),
        sealed: master.seal(TOKEN_KEY_ID, &key)?,
    })?;
    tx.commit()?;
    Ok(key)
}
