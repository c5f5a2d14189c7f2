//! The local runtime: instances as runc containers on this host.
//!
//! Each instance has a record in the store (kind `runtime-instance`, parented by the
//! bridge, named by its service) written before anything is created and updated at each
//! change of state, and a directory `<root>/instances/<id>/` holding its bundle
//! (`config.json`), overlay mount (`rootfs`, `upper`, `work`), generated `etc` files, the
//! shim's files and the logs. Everything an instance owns on the host is named after its
//! id, so whatever a crash leaves behind can be found and removed when the runtime opens.

use crate::cgroup::{Cgroups, Limits};
use crate::health::{self, Health, HealthCheck, Tracker};
use crate::image::{self, ImageRef, ImageStore};
use crate::layer::{LayerCache, UnpackOptions};
use crate::logs::{self, LogQuery, LogStream, Source};
use crate::metrics::{ReasonLabel, ResultLabel, RuntimeMetrics};
use crate::runc::OciRuntime;
use crate::shim::{self, Exit, ShimConfig};
use crate::spec::IdMap;
use crate::{
    BoxFuture, EventKind, InstanceEvent, InstanceId, InstanceSpec, InstanceState, InstanceStatus,
    Runtime, RuntimeError, rootfs, scratch, spec,
};
use runway_model::Timestamp;
use runway_net::{NetConfig, Network};
use runway_store::{Query, Record, Store, Typed};
use runway_telemetry::Registry;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{broadcast, watch};
use tokio::task::AbortHandle;

type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// How long the runtime waits for a shim to report that its container started.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stop waits for a container to die after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// The program the runtime runs as each instance's shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimCommand {
    pub program: PathBuf,
    /// Arguments before the instance directory (`["shim"]` for the runway binary).
    pub args: Vec<OsString>,
}

impl ShimCommand {
    /// The runway binary at `path`, as `runway shim DIR`.
    pub fn runway(path: &Path) -> ShimCommand {
        ShimCommand {
            program: path.to_path_buf(),
            args: vec!["shim".into()],
        }
    }
}

/// How crashed containers are restarted: after `initial`, doubling per consecutive crash
/// up to `max`; the count starts over once an instance stayed healthy for `reset_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// The delay before restarting after the `crashes`-th consecutive crash (0-based).
    pub fn delay(&self, crashes: u32) -> Duration {
        let factor = 2u32.saturating_pow(crashes.min(31));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// How the local runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where layers, instances and the OCI runtime's state live (`DATA_DIR/runtime`).
    pub root: PathBuf,
    /// The bridge and subnet.
    pub net: NetConfig,
    /// The OCI runtime program: `runc` (default), `crun`, `youki` or `runsc`, or a path.
    pub oci_runtime: PathBuf,
    pub shim: ShimCommand,
    /// Rotate an instance's log once it reaches this size...
    pub log_max_bytes: u64,
    /// ...keeping this many files in all.
    pub log_max_files: u32,
    /// The most processes an instance may run.
    pub pids_limit: i64,
    /// DNS servers for instances; empty: the host's (from `/etc/resolv.conf`, loopback
    /// ones excepted), or public resolvers if it has none other.
    pub dns_servers: Vec<IpAddr>,
    /// Keep setuid and setgid bits when unpacking layers.
    pub allow_setuid: bool,
    pub backoff: Backoff,
    /// How long the logs of a stopped instance are kept (its record and directory are
    /// removed after that, while runway runs).
    pub stopped_log_retention: Duration,
    /// Each instance's ephemeral storage (writable layer and `/tmp`) in bytes; 0: no
    /// limit of its own (it writes to the host's file system).
    pub ephemeral_storage: u64,
    /// What all instances and builds together may use.
    pub limits: Limits,
    /// Run instances in a user namespace with this map (root in an instance is not
    /// root on the host); `None`: every instance runs as the host's root.
    pub userns: Option<IdMap>,
    /// Image repositories whose instances may run as the host's root, without a user
    /// namespace (an image that needs it, allowed by the operator).
    pub host_root_repositories: Vec<String>,
}

/// App Runner's ephemeral storage per instance: 3 GB.
pub const DEFAULT_EPHEMERAL_STORAGE: u64 = 3 << 30;
/// The smallest ephemeral storage a file system can be made for.
pub const MIN_EPHEMERAL_STORAGE: u64 = 16 << 20;

impl RuntimeConfig {
    /// The defaults, with state under `root` and `shim` as the shim.
    pub fn new(root: PathBuf, shim: ShimCommand) -> RuntimeConfig {
        RuntimeConfig {
            root,
            net: NetConfig::default(),
            oci_runtime: PathBuf::from("runc"),
            shim,
            log_max_bytes: 10 * 1024 * 1024,
            log_max_files: 3,
            pids_limit: 4096,
            dns_servers: Vec::new(),
            allow_setuid: false,
            backoff: Backoff::default(),
            stopped_log_retention: Duration::from_secs(24 * 3600),
            ephemeral_storage: DEFAULT_EPHEMERAL_STORAGE,
            limits: Limits::host_defaults(),
            userns: Some(IdMap::DEFAULT),
            host_root_repositories: Vec::new(),
        }
    }

    /// Checks the settings the runtime cannot work with.
    pub fn validate(&self) -> Result<()> {
        self.net.validate()?;
        if self.ephemeral_storage != 0 && self.ephemeral_storage < MIN_EPHEMERAL_STORAGE {
            return Err(RuntimeError::Config(format!(
                "ephemeral storage must be at least {} MiB (or 0 for no limit), got {} bytes",
                MIN_EPHEMERAL_STORAGE >> 20,
                self.ephemeral_storage
            )));
        }
        if let Some(map) = &self.userns {
            map.validate().map_err(RuntimeError::Config)?;
        }
        if self.limits.memory_bytes < 64 << 20
            || self.limits.cpu_units < 10
            || self.limits.pids < 16
        {
            return Err(RuntimeError::Config(format!(
                "the limits for all instances are too small to run one: {:?}",
                self.limits
            )));
        }
        Ok(())
    }

    /// The user namespace map instances of images from `repository` run with.
    pub fn id_map_for(&self, repository: &str) -> Option<IdMap> {
        self.userns
            .filter(|_| !self.host_root_repositories.iter().any(|r| r == repository))
    }

    /// The cgroup every instance's cgroup is under.
    pub fn cgroup_parent(&self) -> String {
        format!("/runway-{}", self.net.bridge)
    }

    /// The cgroup of instance `id` (the OCI `cgroupsPath`).
    pub fn cgroup_path(&self, id: &InstanceId) -> String {
        format!("{}/{id}", self.cgroup_parent())
    }

    /// The directory of instance `id`.
    pub fn instance_dir(&self, id: &InstanceId) -> PathBuf {
        self.root.join("instances").join(id.as_str())
    }

    /// The OCI runtime's state root.
    pub fn oci_root(&self) -> PathBuf {
        self.root.join("runc")
    }

    /// The tmpfs that holds the bundles of instances with secrets ([`crate::volatile`]).
    pub fn volatile_root(&self) -> PathBuf {
        PathBuf::from("/run/runway").join(&self.net.bridge)
    }

    /// Where instance `id`'s bundle is kept in memory, if it has secrets.
    pub fn volatile_dir(&self, id: &InstanceId) -> PathBuf {
        self.volatile_root().join(id.as_str())
    }
}

/// What the store keeps of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct InstanceRecord {
    id: InstanceId,
    bridge: String,
    service_id: String,
    revision_id: String,
    image: ImageRef,
    port: u16,
    cpu_units: u32,
    memory_mb: u32,
    health: HealthCheck,
    #[serde(default)]
    ip: Option<Ipv4Addr>,
    state: InstanceState,
    restarts: u32,
    /// Consecutive crashes, for the backoff.
    crashes: u32,
    #[serde(default)]
    last_exit: Option<Exit>,
    created_at: Timestamp,
    started_at: Timestamp,
    #[serde(default)]
    healthy_since: Option<Timestamp>,
    #[serde(default)]
    stopped_at: Option<Timestamp>,
    /// The user namespace it runs in, if any.
    #[serde(default)]
    id_map: Option<IdMap>,
}

impl Record for InstanceRecord {
    const KIND: &'static str = "runtime-instance";
    fn key(&self) -> &str {
        self.id.as_str()
    }
    fn name(&self) -> Option<&str> {
        Some(&self.service_id)
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.bridge)
    }
}

impl InstanceRecord {
    fn status(&self) -> Option<InstanceStatus> {
        Some(InstanceStatus {
            id: self.id.clone(),
            service_id: self.service_id.clone(),
            revision_id: self.revision_id.clone(),
            addr: SocketAddr::new(IpAddr::V4(self.ip?), self.port),
            state: self.state,
            restarts: self.restarts,
            last_exit: self.last_exit.clone(),
            started_at: self.started_at.into(),
        })
    }
}

/// The local runtime. Cloning it is cheap; every clone drives the same instances.
#[derive(Clone)]
pub struct LocalRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRuntime")
            .field("root", &self.inner.config.root)
            .field("bridge", &self.inner.config.net.bridge)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: RuntimeConfig,
    store: Arc<dyn Store>,
    images: Arc<dyn ImageStore>,
    net: Network,
    layers: LayerCache,
    /// Layers owned by the user namespace's ids, for instances that run in one.
    userns_layers: Option<(IdMap, LayerCache)>,
    oci: OciRuntime,
    /// The host's cgroup hierarchies, read once at start (each read is a whole mount
    /// table, which a teardown would otherwise read again).
    cgroups: Cgroups,
    instances: Mutex<HashMap<InstanceId, Arc<Instance>>>,
    events: broadcast::Sender<InstanceEvent>,
    /// Bounds the instances being created or torn down at once (programs, mounts,
    /// namespaces): twice the host's CPUs, so that a burst of starts finishes each start
    /// quickly rather than all of them slowly.
    host_work: tokio::sync::Semaphore,
    metrics: RuntimeMetrics,
    handle: tokio::runtime::Handle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The containers keep running (their shims own them); only watching them ends.
        for inst in self
            .instances
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            inst.abort_tasks();
        }
    }
}

/// An instance the runtime is driving.
struct Instance {
    id: InstanceId,
    dir: PathBuf,
    record: Mutex<InstanceRecord>,
    /// Bumped at each container start; watchers of an older container are ignored.
    generation: AtomicU64,
    stopping: AtomicBool,
    /// Whether a shim (and so a container) of this instance runs.
    running: watch::Sender<bool>,
    /// The health check and any pending restart.
    tasks: Mutex<Vec<AbortHandle>>,
    /// Serialises container starts with stops.
    op: tokio::sync::Mutex<()>,
    /// When the start call came, for the ready-time metric (not after a restart).
    created: Mutex<Option<Instant>>,
}

impl Instance {
    fn new(dir: PathBuf, record: InstanceRecord, running: bool) -> Arc<Instance> {
        Arc::new(Instance {
            id: record.id.clone(),
            dir,
            record: Mutex::new(record),
            generation: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            running: watch::Sender::new(running),
            tasks: Mutex::new(Vec::new()),
            op: tokio::sync::Mutex::new(()),
            created: Mutex::new(None),
        })
    }

    fn record(&self) -> InstanceRecord {
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn update<T>(&self, f: impl FnOnce(&mut InstanceRecord) -> T) -> (T, InstanceRecord) {
        let mut r = self.record.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(&mut r);
        (out, r.clone())
    }

    fn add_task(&self, task: AbortHandle) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    fn abort_tasks(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let context = context.into();
    move |source| RuntimeError::Io { context, source }
}

/// Runs blocking work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RuntimeError::Internal(format!("a blocking task failed: {e}")))?
}

/// Finds `program` on `PATH` unless it is a path already.
fn find_program(program: &Path) -> Result<PathBuf> {
    if program.components().count() > 1 {
        return if program.is_file() {
            Ok(program.to_path_buf())
        } else {
            Err(RuntimeError::Config(format!(
                "{} does not exist",
                program.display()
            )))
        };
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            RuntimeError::Config(format!(
                "OCI runtime {} is not installed (not found on PATH)",
                program.display()
            ))
        })
}

/// The DNS servers instances use when none are configured.
fn host_dns_servers() -> Vec<IpAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let servers: Vec<IpAddr> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|s| s.trim().parse().ok())
        .filter(|ip: &IpAddr| !ip.is_loopback())
        .collect();
    if servers.is_empty() {
        vec![
            IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)),
            IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
        ]
    } else {
        servers
    }
}

/// Lets the root of instances in user namespaces (host group `map.host`) reach their
/// bundles, as the OCI runtime does from inside the namespace: the runtime's root, its
/// `instances` directory and the data directory above (if it is runway's, mode 0700)
/// become searchable by that group only (0710), never by other users. Directories above
/// must be searchable by all.
fn open_to_user_namespace(root: &Path, map: IdMap) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let share = |dir: &Path| {
        std::os::unix::fs::chown(dir, Some(0), Some(map.host))
            .and_then(|()| std::fs::set_permissions(dir, PermissionsExt::from_mode(0o710)))
            .map_err(io(format!("cannot open {} to instances", dir.display())))
    };
    share(root)?;
    share(&root.join("instances"))?;
    let mut above = root.parent();
    if let Some(data) = above
        && let Ok(meta) = std::fs::metadata(data)
        && meta.uid() == 0
        && meta.mode() & 0o777 == 0o700
    {
        share(data)?;
        above = data.parent();
    }
    for dir in above.into_iter().flat_map(Path::ancestors) {
        let searchable = std::fs::metadata(dir).is_ok_and(|m| m.mode() & 0o001 != 0);
        if !searchable {
            return Err(RuntimeError::Config(format!(
                "{} must be searchable by all users (chmod o+x) for instances to run in \
                 user namespaces: their root reaches its files through it (or choose a data \
                 directory whose parents are, as /var/lib is)",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Creates a bundle directory (mode 0700) with the subdirectories of its root filesystem's
/// overlay (`rootfs`, `upper`, `work`, `empty`) and generated `/etc` files.
fn create_bundle_dirs(dir: &Path) -> Result<()> {
    for sub in ["", "rootfs", "upper", "work", "etc", "empty"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(io(format!("cannot create {}", d.display())))?;
    }
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(io(format!("cannot restrict {}", dir.display())))
}

/// The hostname of an instance: the first 12 digits of its id, as Docker shortens ids.
pub(crate) fn hostname(id: &InstanceId) -> &str {
    id.as_str().get(..12).unwrap_or(id.as_str())
}

/// The generated `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`.
fn etc_files(ip: Ipv4Addr, hostname: &str, dns: &[IpAddr]) -> [(&'static str, String); 3] {
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{hostname}\n"
    );
    let resolv: String = dns.iter().map(|s| format!("nameserver {s}\n")).collect();
    [
        ("hosts", hosts),
        ("resolv.conf", resolv),
        ("hostname", format!("{hostname}\n")),
    ]
}

fn validate(spec: &InstanceSpec) -> Result<()> {
    let bad = |m: String| Err(RuntimeError::InvalidSpec(m));
    let id_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    if !id_ok(&spec.service_id) {
        return bad(format!(
            "service id {:?} must be 1 to 64 letters, digits, '-', '_' or '.'",
            spec.service_id
        ));
    }
    if spec.revision_id.len() > 256 {
        return bad("revision id is longer than 256 characters".into());
    }
    if spec.port == 0 {
        return bad("port must be 1 to 65535".into());
    }
    if let Err(m) = crate::spec::check_limits(spec.cpu_units, spec.memory_mb) {
        return bad(m);
    }
    for (k, v) in spec.env.iter().chain(&spec.secrets.0) {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return bad(format!("environment variable name {k:?} is not valid"));
        }
    }
    if spec
        .start_command
        .as_deref()
        .is_some_and(|c| c.contains('\0'))
    {
        return bad("start command contains a NUL character".into());
    }
    image::digest_hex(&spec.image.digest).map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?;
    spec.health.validate().map_err(RuntimeError::InvalidSpec)
}

impl LocalRuntime {
    /// Opens the runtime: sets up the network, adopts the containers that still run
    /// (neither duplicated nor killed; their health checks and crash handling resume),
    /// restarts those that exited while runway was down, and removes what a crash left
    /// behind. Must be called within a tokio runtime, which the runtime's tasks use.
    pub async fn open(
        config: RuntimeConfig,
        store: Arc<dyn Store>,
        images: Arc<dyn ImageStore>,
        registry: &mut Registry,
    ) -> Result<LocalRuntime> {
        config.validate()?;
        let metrics = RuntimeMetrics::register(registry);
        let handle = tokio::runtime::Handle::current();
        let (config, net, cgroups, layers, records) = {
            let mut config = config;
            let store = store.clone();
            blocking(move || {
                config.oci_runtime = find_program(&config.oci_runtime)?;
                config.shim.program = find_program(&config.shim.program)?;
                if config.dns_servers.is_empty() {
                    config.dns_servers = host_dns_servers();
                }
                for dir in [
                    config.root.clone(),
                    config.root.join("instances"),
                    config.root.join("jobs"),
                    config.oci_root(),
                ] {
                    std::fs::create_dir_all(&dir)
                        .map_err(io(format!("cannot create {}", dir.display())))?;
                    std::fs::set_permissions(
                        &dir,
                        std::os::unix::fs::PermissionsExt::from_mode(0o700),
                    )
                    .map_err(io(format!("cannot restrict {}", dir.display())))?;
                }
                let unpack = UnpackOptions {
                    allow_setuid: config.allow_setuid,
                    ..UnpackOptions::default()
                };
                let layers = LayerCache::open(&config.root.join("layers"), unpack)?;
                let userns_layers = match config.userns {
                    Some(map) => {
                        open_to_user_namespace(&config.root, map)?;
                        let cache = LayerCache::open(
                            &config.root.join(format!("layers-{}", map.host)),
                            UnpackOptions {
                                id_map: Some(map),
                                ..unpack
                            },
                        )?;
                        Some((map, cache))
                    }
                    None => None,
                };
                let cgroups = Cgroups::detect()?;
                crate::volatile::ensure(&config.volatile_root())?;
                if let Err(e) = cgroups.limit(&config.cgroup_parent(), &config.limits) {
                    tracing::warn!(error = %e, "not every limit for all instances could be set");
                }
                let net = Network::setup(config.net.clone(), store.clone())?;
                let tx = store.read()?;
                let records: Vec<InstanceRecord> = tx
                    .load_all::<InstanceRecord>(&Query {
                        parent: Some(config.net.bridge.clone()),
                        ..Query::default()
                    })?
                    .into_iter()
                    .map(|(_, r)| r)
                    .collect();
                Ok((config, net, cgroups, (layers, userns_layers), records))
            })
            .await?
        };
        let (layers, userns_layers) = layers;
        let inner = Arc::new(Inner {
            oci: OciRuntime::new(&config.oci_runtime, &config.oci_root()),
            config,
            store,
            images,
            net,
            cgroups,
            layers,
            userns_layers,
            instances: Mutex::new(HashMap::new()),
            events: broadcast::channel(1024).0,
            host_work: tokio::sync::Semaphore::new(
                2 * std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            metrics,
            handle,
        });
        for record in records {
            let id = record.id.clone();
            if let Err(e) = inner.adopt(record).await {
                tracing::error!(instance = %id, error = %e, "cannot resume an instance");
            }
        }
        {
            let inner = inner.clone();
            blocking(move || {
                inner.sweep()?;
                inner.prune()
            })
            .await?;
        }
        inner.prune_regularly();
        tracing::info!(
            root = %inner.config.root.display(),
            bridge = %inner.config.net.bridge,
            oci_runtime = %inner.config.oci_runtime.display(),
            instances = inner.instances.lock().unwrap_or_else(|p| p.into_inner()).len(),
            "instance runtime ready"
        );
        Ok(LocalRuntime { inner })
    }

    /// The configuration in use (with programs resolved to paths).
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// The status of one instance.
    pub fn status(&self, id: &InstanceId) -> Option<InstanceStatus> {
        let inst = self.inner.get(id)?;
        inst.record().status()
    }

    /// Stops every instance (in parallel) and removes the whole runtime from the host:
    /// containers, mounts, cgroups, the network, the runtime's directory and its records
    /// in the store, logs included. For tests and uninstalling.
    pub async fn destroy(self) -> Result<()> {
        let ids: Vec<InstanceId> = self
            .inner
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for id in &ids {
            if let Some(inst) = self.inner.get(id) {
                inst.stopping.store(true, Ordering::SeqCst);
                inst.abort_tasks();
            }
        }
        let inner = self.inner.clone();
        blocking(move || {
            purge(&inner.config)?;
            runway_net::ipam::purge(inner.store.as_ref(), &inner.config.net.bridge)?;
            let mut tx = inner.store.begin_relaxed()?;
            for (_, r) in tx.load_all::<InstanceRecord>(&Query {
                parent: Some(inner.config.net.bridge.clone()),
                ..Query::default()
            })? {
                tx.remove::<InstanceRecord>(r.id.as_str())?;
            }
            tx.commit()?;
            Ok(())
        })
        .await?;
        self.inner
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }
}

impl Inner {
    fn get(&self, id: &InstanceId) -> Option<Arc<Instance>> {
        self.instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Prunes stopped instances while the runtime lives: a tenth of the retention
    /// apart, from a second to ten minutes.
    fn prune_regularly(self: &Arc<Self>) {
        let period = (self.config.stopped_log_retention / 10)
            .clamp(Duration::from_secs(1), Duration::from_secs(600));
        let weak = Arc::downgrade(self);
        self.handle.spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(inner) = weak.upgrade() else { return };
                if let Err(e) = blocking(move || inner.prune()).await {
                    tracing::warn!(error = %e, "cannot prune stopped instances");
                }
            }
        });
    }

    fn emit(&self, record: &InstanceRecord, kind: EventKind) {
        let _ = self.events.send(InstanceEvent {
            id: record.id.clone(),
            service_id: record.service_id.clone(),
            revision_id: record.revision_id.clone(),
            kind,
        });
    }

    fn save(&self, record: &InstanceRecord) -> Result<()> {
        let mut tx = self.store.begin_relaxed()?;
        tx.save(record)?;
        tx.commit()?;
        Ok(())
    }

    /// Saves an instance's record as it is in memory when the transaction runs, so that
    /// of two saves racing, the one that commits last also wrote the newer state.
    fn save_latest(&self, inst: &Instance) -> Result<()> {
        let mut tx = self.store.begin_relaxed()?;
        tx.save(&inst.record())?;
        tx.commit()?;
        Ok(())
    }

    async fn persist(self: &Arc<Self>, inst: &Arc<Instance>) {
        let inner = self.clone();
        let inst = inst.clone();
        if let Err(e) = blocking(move || inner.save_latest(&inst)).await {
            tracing::error!(error = %e, "cannot record an instance's state");
        }
    }

    /// `image` resolved, and its layers unpacked in the layer cache (the one owned by
    /// `id_map`'s ids, for an instance in a user namespace), topmost first (an overlay's
    /// lower directories).
    fn image_layers(
        &self,
        image: &ImageRef,
        id_map: Option<IdMap>,
    ) -> Result<(image::Image, Vec<PathBuf>)> {
        let cache = match id_map {
            None => &self.layers,
            Some(map) => match &self.userns_layers {
                Some((cached, cache)) if *cached == map => cache,
                _ => {
                    return Err(RuntimeError::Config(format!(
                        "no layer cache for user namespace {}+{} (the configured one changed)",
                        map.host, map.size
                    )));
                }
            },
        };
        let resolved = image::resolve(self.images.as_ref(), image)?;
        let mut lowers = Vec::with_capacity(resolved.layers.len());
        for layer in &resolved.layers {
            lowers.push(cache.ensure(self.images.as_ref(), &image.repository, layer)?);
        }
        lowers.reverse();
        Ok((resolved, lowers))
    }

    /// Writes the OCI runtime configuration of `bundle` into `bundle_dir` (the instance
    /// or job directory `dir`, or for an instance with secrets its directory in memory)
    /// and the shim's configuration for container `id` into `dir` (both 0600: the first
    /// holds the environment).
    fn write_bundle(
        &self,
        dir: &Path,
        bundle_dir: &Path,
        id: &str,
        bundle: &spec::BundleSpec<'_>,
        lifeline: bool,
    ) -> Result<()> {
        // No container may ask for more CPU than all of them have together (cgroup v1
        // refuses a child's quota above its parent's).
        let bundle = spec::BundleSpec {
            cpu_units: bundle.cpu_units.min(self.config.limits.cpu_units),
            ..bundle.clone()
        };
        let bundle = &bundle;
        let config = spec::runtime_config(bundle)?;
        let encode =
            |v: serde_json::Result<Vec<u8>>| v.map_err(|e| RuntimeError::Internal(e.to_string()));
        if bundle_dir != dir {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(bundle_dir)
                .or_else(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => Ok(()),
                    _ => Err(e),
                })
                .map_err(io(format!("cannot create {}", bundle_dir.display())))?;
        }
        runway_store::fs::write_atomic(
            &bundle_dir.join("config.json"),
            &encode(serde_json::to_vec_pretty(&config))?,
            0o600,
        )?;
        let shim_config = ShimConfig {
            id: id.to_string(),
            bundle: bundle_dir.to_path_buf(),
            oci_runtime: self.config.oci_runtime.clone(),
            oci_root: self.config.oci_root(),
            log_max_bytes: self.config.log_max_bytes,
            log_max_files: self.config.log_max_files,
            cgroups_path: bundle.cgroups_path.to_string(),
            lifeline,
        };
        runway_store::fs::write_atomic(
            &dir.join(shim::CONFIG_FILE),
            &encode(serde_json::to_vec_pretty(&shim_config))?,
            0o600,
        )?;
        Ok(())
    }

    /// Builds an instance's bundle and root filesystem and starts its shim.
    fn create(&self, record: &InstanceRecord, spec: &InstanceSpec) -> Result<(Child, Ipv4Addr)> {
        let id = &record.id;
        let t = Instant::now();
        let dir = self.config.instance_dir(id);
        let (image, lowers) = self.image_layers(&spec.image, record.id_map)?;
        let t_img = t.elapsed();
        let outbound = runway_net::Outbound {
            connector: spec.vpc_connector.as_deref(),
            ipv6: spec.ipv6,
        };
        let attachment = self
            .net
            .attach_with(id.as_str(), &spec.service_id, outbound)?;
        let t_net = t.elapsed();
        create_bundle_dirs(&dir)?;
        if let Some(map) = record.id_map {
            // Reached from inside the namespace: its root's group searches the bundle.
            std::os::unix::fs::chown(&dir, Some(0), Some(map.host))
                .and_then(|()| {
                    std::fs::set_permissions(
                        &dir,
                        std::os::unix::fs::PermissionsExt::from_mode(0o710),
                    )
                })
                .map_err(io(format!("cannot open {} to the instance", dir.display())))?;
        }
        self.mount_rootfs(&dir, &lowers, record.id_map)?;
        let rootfs = dir.join("rootfs");
        let sysfs = match record.id_map {
            Some(_) => Some(mount_sysfs(&dir, &attachment.netns)?),
            None => None,
        };
        let host = hostname(id);
        for (name, content) in etc_files(attachment.ip, host, &self.config.dns_servers) {
            runway_store::fs::write_atomic(&dir.join("etc").join(name), content.as_bytes(), 0o644)?;
        }
        let has_shell = spec::has_shell(&rootfs);
        let (uid, gid, additional_gids) =
            spec::resolve_user(image.config.user.as_deref(), &rootfs)?;
        let env: Vec<(String, String)> = spec.env.iter().chain(&spec.secrets.0).cloned().collect();
        let process = spec::ProcessSpec {
            args: spec::process_args(&image.config, spec.start_command.as_deref(), has_shell)?,
            env: spec::environment(
                image.config.env.as_deref().unwrap_or_default(),
                &env,
                host,
                spec.port,
            ),
            cwd: spec::working_dir(&image.config),
            uid,
            gid,
            additional_gids,
        };
        let cgroups_path = self.config.cgroup_path(id);
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
            mounts: &[],
            id_map: record.id_map,
            sysfs: sysfs.as_deref(),
        };
        // Secret values stay off the disk: their bundle is in memory.
        let bundle_dir = if spec.secrets.is_empty() {
            dir.clone()
        } else {
            self.config.volatile_dir(id)
        };
        self.write_bundle(&dir, &bundle_dir, id.as_str(), &bundle, false)?;
        let t_bundle = t.elapsed();
        let child = self.spawn_shim(&dir, false)?;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        tracing::debug!(
            instance = %id,
            image_ms = ms(t_img),
            network_ms = ms(t_net - t_img),
            bundle_ms = ms(t_bundle - t_net),
            shim_ms = ms(t.elapsed() - t_bundle),
            "instance created"
        );
        Ok((child, attachment.ip))
    }

    /// Mounts an instance's root file system at `dir/rootfs` unless it is mounted: the
    /// overlay of `lowers` over its ephemeral storage (of the configured size, owned by
    /// the instance's root as the host sees it).
    fn mount_rootfs(&self, dir: &Path, lowers: &[PathBuf], id_map: Option<IdMap>) -> Result<()> {
        let rootfs = dir.join("rootfs");
        if rootfs::is_mounted(&rootfs) {
            return Ok(());
        }
        let (upper, work) = if self.config.ephemeral_storage == 0 {
            (dir.join("upper"), dir.join("work"))
        } else {
            let root = id_map.map_or((0, 0), |m| (m.host, m.host));
            let s = scratch::ensure(dir, self.config.ephemeral_storage, root)?;
            (s.upper, s.work)
        };
        rootfs::mount_overlay(lowers, &dir.join("empty"), &upper, &work, &rootfs)?;
        Ok(())
    }

    /// Starts the shim for the bundle in `dir` and waits for it to report that the
    /// container runs. With `lifeline`, the shim's standard input is a pipe whose write
    /// end is left in the child (see [`ShimConfig::lifeline`]).
    fn spawn_shim(&self, dir: &Path, lifeline: bool) -> Result<Child> {
        let _ = std::fs::remove_file(dir.join(shim::EXIT_FILE));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("shim.log"))
            .map_err(io("cannot open shim.log"))?;
        let mut child = Command::new(&self.config.shim.program)
            .args(&self.config.shim.args)
            .arg(dir)
            .stdin(if lifeline {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            // Its own process group: a signal to runway's group (Ctrl-C) must not reach
            // the shims, which outlive runway.
            .process_group(0)
            .spawn()
            .map_err(io(format!(
                "cannot run the shim {}",
                self.config.shim.program.display()
            )))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| RuntimeError::Internal("no shim stdout".into()))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RuntimeError::Start(format!(
                    "the shim did not report within {START_TIMEOUT:?}"
                )));
            }
        };
        let line = line.trim();
        if line.starts_with("started ") {
            return Ok(child);
        }
        let _ = child.wait();
        let reason = line
            .strip_prefix("failed ")
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "the shim exited without starting the container (see {})",
                    dir.join("shim.log").display()
                )
            });
        Err(RuntimeError::Start(reason))
    }

    /// Kills the shim whose files are in `dir`, deletes container `id` and unmounts its
    /// root file system and whatever else is mounted in `dir` (ephemeral storage,
    /// sysfs): how removing an instance or a job begins. Safe to repeat.
    fn remove_container(&self, dir: &Path, id: &str) -> Result<()> {
        if let Some(pid) = shim::running_shim(dir)
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        self.oci.delete(id)?;
        rootfs::unmount_all(dir)?;
        if let Some(left) = rootfs::mount_points().iter().find(|m| m.starts_with(dir)) {
            return Err(RuntimeError::Internal(format!(
                "{} is still mounted",
                left.display()
            )));
        }
        Ok(())
    }

    /// Removes an instance's container, mount, scratch, network and cgroup, keeping its
    /// logs. Safe to repeat.
    fn teardown(&self, id: &InstanceId) -> Result<()> {
        let dir = self.config.instance_dir(id);
        self.remove_container(&dir, id.as_str())?;
        remove_all_but_logs(&dir)?;
        match std::fs::remove_dir_all(self.config.volatile_dir(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("cannot remove an instance's bundle in memory")(e));
            }
            _ => {}
        }
        self.net.detach(id.as_str())?;
        self.cgroups.remove(&self.config.cgroup_path(id));
        Ok(())
    }

    async fn start(self: &Arc<Self>, spec: InstanceSpec) -> Result<InstanceId> {
        let started = Instant::now();
        validate(&spec)?;
        let id = InstanceId::new();
        let now = Timestamp::now();
        let record = InstanceRecord {
            id: id.clone(),
            bridge: self.config.net.bridge.clone(),
            service_id: spec.service_id.clone(),
            revision_id: spec.revision_id.clone(),
            image: spec.image.clone(),
            port: spec.port,
            cpu_units: spec.cpu_units,
            memory_mb: spec.memory_mb,
            health: spec.health.clone(),
            ip: None,
            state: InstanceState::Creating,
            restarts: 0,
            crashes: 0,
            last_exit: None,
            created_at: now,
            started_at: now,
            healthy_since: None,
            stopped_at: None,
            id_map: self.config.id_map_for(&spec.image.repository),
        };
        // Starts beyond the host's parallelism only make every start slower.
        let permit = self.host_work.acquire().await;
        let inner = self.clone();
        let created = blocking(move || {
            {
                let mut tx = inner.store.begin_relaxed()?;
                tx.create(&record)?;
                tx.commit()?;
            }
            match inner.create(&record, &spec) {
                Ok((child, ip)) => {
                    let mut record = record;
                    record.ip = Some(ip);
                    record.state = InstanceState::Starting;
                    record.started_at = Timestamp::now();
                    inner.save(&record)?;
                    Ok((record, child))
                }
                Err(e) => {
                    if let Err(undo) = inner.teardown(&record.id) {
                        tracing::warn!(instance = %record.id, error = %undo, "cannot undo a failed start");
                    } else {
                        let _ = std::fs::remove_dir_all(inner.config.instance_dir(&record.id));
                        let mut tx = inner.store.begin_relaxed()?;
                        tx.remove::<InstanceRecord>(record.id.as_str())?;
                        tx.commit()?;
                    }
                    Err(e)
                }
            }
        })
        .await;
        drop(permit);
        let (record, child) = match created {
            Ok(c) => c,
            Err(e) => {
                self.metrics
                    .starts
                    .get_or_create(&ResultLabel { result: "error" })
                    .inc();
                return Err(e);
            }
        };
        self.metrics
            .starts
            .get_or_create(&ResultLabel { result: "ok" })
            .inc();
        self.metrics
            .start_seconds
            .observe(started.elapsed().as_secs_f64());
        let inst = Instance::new(self.config.instance_dir(&id), record.clone(), true);
        *inst.created.lock().unwrap_or_else(|p| p.into_inner()) = Some(started);
        let generation = inst.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), inst.clone());
        self.watch_child(inst.clone(), generation, child);
        self.start_health(inst, generation, Health::Starting);
        tracing::info!(instance = %id, service = %record.service_id, ip = ?record.ip, ms = started.elapsed().as_millis() as u64, "instance started");
        self.emit(&record, EventKind::Starting);
        Ok(id)
    }

    async fn stop(self: &Arc<Self>, id: &InstanceId, grace: Duration) -> Result<()> {
        let Some(inst) = self.get(id) else {
            let inner = self.clone();
            let key = id.to_string();
            let known = blocking(move || {
                let tx = inner.store.read()?;
                Ok(tx.load::<InstanceRecord>(&key)?)
            })
            .await?;
            return match known {
                Some(r) if r.state == InstanceState::Stopped => Ok(()),
                _ => Err(RuntimeError::NotFound(id.clone())),
            };
        };
        inst.stopping.store(true, Ordering::SeqCst);
        inst.abort_tasks();
        let _op = inst.op.lock().await;
        inst.update(|r| r.state = InstanceState::Stopping);
        self.persist(&inst).await;
        let mut running = inst.running.subscribe();
        if *running.borrow() {
            for (signal, wait) in [("TERM", grace), ("KILL", KILL_TIMEOUT)] {
                let oci = self.oci.clone();
                let key = id.to_string();
                if let Err(e) = blocking(move || Ok(oci.kill(&key, signal)?)).await {
                    tracing::warn!(instance = %id, signal, error = %e, "cannot signal the container");
                }
                if tokio::time::timeout(wait, running.wait_for(|r| !*r))
                    .await
                    .is_ok()
                {
                    break;
                }
            }
        }
        let inner = self.clone();
        let key = id.clone();
        let inst2 = inst.clone();
        let permit = self.host_work.acquire().await;
        let record = blocking(move || {
            inner.teardown(&key)?;
            let (_, record) = inst2.update(|r| {
                r.state = InstanceState::Stopped;
                r.stopped_at = Some(Timestamp::now());
            });
            inner.save_latest(&inst2)?;
            Ok(record)
        })
        .await;
        drop(permit);
        let record = record?;
        self.instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        tracing::info!(instance = %id, "instance stopped");
        self.emit(&record, EventKind::Stopped);
        Ok(())
    }

    fn sources(&self, service: &str, instance: Option<&InstanceId>) -> Result<Vec<Source>> {
        let tx = self.store.read()?;
        let mut records: Vec<InstanceRecord> = tx
            .load_all::<InstanceRecord>(&Query {
                name: Some(service.to_string()),
                parent: Some(self.config.net.bridge.clone()),
                ..Query::default()
            })?
            .into_iter()
            .map(|(_, r)| r)
            .filter(|r| instance.is_none_or(|i| *i == r.id))
            .filter(|r| r.state != InstanceState::Creating)
            .collect();
        records.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        Ok(records
            .into_iter()
            .map(|r| Source {
                dir: self.config.instance_dir(&r.id),
                live: r.state.is_active(),
                id: r.id,
            })
            .collect())
    }
}

/// Empties an instance directory except its logs.
fn remove_all_but_logs(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(logs::LOG_FILE) {
            continue;
        }
        let path = entry.path();
        let result = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        result.map_err(io(format!("cannot remove {}", path.display())))?;
    }
    Ok(())
}

impl Runtime for LocalRuntime {
    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<InstanceId>> {
        Box::pin(async move { self.inner.start(spec).await })
    }

    fn stop<'a>(&'a self, id: &'a InstanceId, grace: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.inner.stop(id, grace).await })
    }

    fn list(&self) -> Vec<InstanceStatus> {
        let mut out: Vec<InstanceStatus> = self
            .inner
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(|i| i.record().status())
            .filter(|s| s.state != InstanceState::Stopped)
            .collect();
        out.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        out
    }

    fn subscribe(&self) -> broadcast::Receiver<InstanceEvent> {
        self.inner.events.subscribe()
    }

    fn logs(&self, query: LogQuery) -> BoxFuture<'_, Result<LogStream>> {
        Box::pin(async move {
            let inner = self.inner.clone();
            let q = query.clone();
            let sources = blocking(move || inner.sources(&q.service, q.instance.as_ref())).await?;
            let (tx, rx) = tokio::sync::mpsc::channel(1024);
            let weak = Arc::downgrade(&self.inner);
            let LogQuery {
                service,
                instance,
                since,
                follow,
            } = query;
            std::thread::spawn(move || {
                let more = move || {
                    if instance.is_some() {
                        return Vec::new();
                    }
                    weak.upgrade()
                        .and_then(|inner| inner.sources(&service, None).ok())
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|s| s.live)
                        .collect()
                };
                logs::pump(sources, since, follow, tx, more);
            });
            Ok(LogStream::new(rx))
        })
    }
}

mod job;
mod recovery;
mod supervise;

/// Mounts the sysfs of network namespace `netns` (as the host's root) at `dir/sys` for
/// an instance in a user namespace to bind at `/sys`; its path.
fn mount_sysfs(dir: &Path, netns: &Path) -> Result<PathBuf> {
    let target = dir.join("sys");
    if !rootfs::is_mounted(&target) {
        std::fs::create_dir_all(&target)
            .map_err(io(format!("cannot create {}", target.display())))?;
        let out = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args([
                "mount",
                "-t",
                "sysfs",
                "-o",
                "ro,nosuid,nodev,noexec",
                "sysfs",
            ])
            .arg(&target)
            .output()
            .map_err(io("cannot run nsenter (util-linux)"))?;
        if !out.status.success() {
            return Err(RuntimeError::Start(format!(
                "cannot mount the instance's sysfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(target)
}

pub use job::{Job, JobLines};
pub use recovery::purge;

#[cfg(test)]
mod tests;
