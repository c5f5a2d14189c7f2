//! Instances (the reference architecture's Fargate tasks): OCI images run as isolated
//! containers. This crate owns the [`Runtime`] interface the controller drives (a
//! Kubernetes backend can implement it later) and its local implementation,
//! [`LocalRuntime`]: images turned into root filesystems from a content-addressed layer
//! cache and a per-instance overlayfs, OCI runtime configs with cgroup limits and a
//! reduced privilege set, containers run by runc (or crun, youki, runsc) under a shim
//! that keeps their logs and exit status while runway is down, health checks, crash
//! restarts with exponential backoff, and adoption of running containers when runway
//! restarts; the bundles of instances with secrets are kept in memory ([`volatile`]).
//! It also runs [jobs](job) (builds): one command to completion in a container
//! of the same kind, with what it changed written as an OCI layer. Networking is
//! [`runway_net`]'s.
//!
//! It must never depend on the API, the registry, the router or the binary; it never
//! forks from async code (programs are spawned on blocking threads), holds no unsafe code,
//! and keeps what must survive a crash in the store or in atomically written files.

#![forbid(unsafe_code)]

pub mod cgroup;
mod health;
pub mod image;
pub mod job;
pub mod layer;
mod local;
mod logs;
mod metrics;
pub mod rootfs;
pub mod runc;
pub mod scratch;
mod seccomp;
pub mod shim;
pub mod spec;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod volatile;

pub use cgroup::Limits;
pub use health::{HealthCheck, Probe};
pub use image::{Blob, ImageError, ImageRef, ImageStore, OciLayout};
pub use job::{JobId, JobMount, JobOutcome, JobSpec};
pub use layer::CommittedLayer;
pub use local::{
    Backoff, DEFAULT_EPHEMERAL_STORAGE, Job, JobLines, LocalRuntime, MIN_EPHEMERAL_STORAGE,
    RuntimeConfig, ShimCommand, purge,
};
pub use logs::{JobLine, LogLine, LogQuery, LogStream, Stream};
/// The network configuration a [`RuntimeConfig`] holds, re-exported so that callers need
/// not depend on `runway-net` themselves.
pub use runway_net::{NetConfig, Subnet};
pub use shim::Exit;
pub use spec::IdMap;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

/// A boxed future, so that [`Runtime`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An instance's id: 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceId(String);

impl InstanceId {
    /// A new random id.
    pub fn new() -> InstanceId {
        InstanceId(uuid::Uuid::new_v4().simple().to_string())
    }

    /// An id from its text form, if it is one.
    pub fn parse(s: &str) -> Option<InstanceId> {
        (s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| InstanceId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for InstanceId {
    fn default() -> Self {
        InstanceId::new()
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What to run: one instance of a revision of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    pub service_id: String,
    pub revision_id: String,
    pub image: ImageRef,
    /// App Runner's StartCommand: run with `/bin/sh -c` when the image has a shell,
    /// else split into words; replaces the image's entrypoint and command.
    pub start_command: Option<String>,
    /// Environment variables, after the image's; `PORT` is set by the runtime.
    pub env: Vec<(String, String)>,
    /// Environment variables resolved from secrets, after `env`. They are never written
    /// to a disk: the bundle of an instance that has any is kept in memory
    /// ([`volatile`]).
    pub secrets: SecretEnv,
    /// The port the application listens on (also its `PORT`).
    pub port: u16,
    /// CPU in App Runner's units: 1024 is one vCPU.
    pub cpu_units: u32,
    pub memory_mb: u32,
    pub health: HealthCheck,
    /// The VPC connector (its ARN) the instance's outbound traffic goes through; none:
    /// NAT to the internet.
    pub vpc_connector: Option<String>,
    /// An IPv6 address too (App Runner's IpAddressType DUAL_STACK), when the network
    /// has an IPv6 subnet and the instance no connector.
    pub ipv6: bool,
}

/// Secret environment variables; the Debug form shows their names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretEnv(pub Vec<(String, String)>);

impl SecretEnv {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| format!("{name}=..")))
            .finish()
    }
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Being created (image, network, container); not yet running.
    Creating,
    /// Running, not yet passing its health check.
    Starting,
    /// Running and passing its health check.
    Healthy,
    /// Running and failing its health check.
    Unhealthy,
    /// Its container exited; a restart is scheduled.
    Restarting,
    /// Being stopped.
    Stopping,
    /// Stopped and removed; only its logs remain.
    Stopped,
}

impl InstanceState {
    /// Whether a container of the instance is meant to run.
    pub fn is_active(self) -> bool {
        !matches!(self, InstanceState::Stopping | InstanceState::Stopped)
    }
}

/// What the controller and the router see of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    pub id: InstanceId,
    pub service_id: String,
    pub revision_id: String,
    /// The instance's address and port, for the router.
    pub addr: SocketAddr,
    pub state: InstanceState,
    /// How many times its container was restarted after exiting.
    pub restarts: u32,
    pub last_exit: Option<Exit>,
    /// When its current container started.
    pub started_at: SystemTime,
}

/// A change in an instance's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceEvent {
    pub id: InstanceId,
    pub service_id: String,
    pub revision_id: String,
    pub kind: EventKind,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A container started; health checks begin.
    Starting,
    /// The health check passed `healthy_threshold` times in a row.
    Healthy,
    /// The health check failed `unhealthy_threshold` times in a row; `reason` is why
    /// the last probe failed ("status 500", "no answer within 2s").
    Unhealthy { reason: String },
    /// The container exited.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        oom_killed: bool,
    },
    /// The container will be started again after `delay`.
    Restarting { attempt: u32, delay: Duration },
    /// The instance was stopped and removed.
    Stopped,
}

/// What can go wrong running instances.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The spec cannot be run as given.
    #[error("invalid instance spec: {0}")]
    InvalidSpec(String),
    /// No such instance.
    #[error("no instance {0}")]
    NotFound(InstanceId),
    /// The configuration cannot be used.
    #[error("invalid runtime configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Layer(#[from] layer::UnpackError),
    #[error(transparent)]
    Commit(#[from] layer::CommitError),
    /// The job still runs; what it changed is not final yet.
    #[error("job {0} has not ended")]
    JobNotEnded(job::JobId),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(transparent)]
    Scratch(#[from] scratch::ScratchError),
    #[error(transparent)]
    Net(#[from] runway_net::NetError),
    #[error(transparent)]
    Ipam(#[from] runway_net::IpamError),
    #[error(transparent)]
    Store(#[from] runway_store::StoreError),
    #[error(transparent)]
    Runc(#[from] runc::RuncError),
    /// The container did not start.
    #[error("the container did not start: {0}")]
    Start(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A blocking task panicked or was cancelled.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Runs instances. Held by the controller as `Arc<dyn Runtime>`.
pub trait Runtime: Send + Sync + 'static {
    /// Creates and starts one instance; returns once its container runs. It is healthy
    /// later, when its health check passes (see [`Runtime::subscribe`]).
    fn start(&self, spec: InstanceSpec) -> BoxFuture<'_, Result<InstanceId, RuntimeError>>;

    /// Stops an instance: SIGTERM, up to `grace` to exit, then SIGKILL; then removes its
    /// container, root filesystem scratch, network and address. Its logs remain.
    fn stop<'a>(
        &'a self,
        id: &'a InstanceId,
        grace: Duration,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;

    /// Every instance that is not stopped: stopping ones too, which still hold their
    /// container until their grace period and teardown are over.
    fn list(&self) -> Vec<InstanceStatus>;

    /// Changes in instances' lives, from now on.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<InstanceEvent>;

    /// A service's log lines, newest instance first.
    fn logs(&self, query: LogQuery) -> BoxFuture<'_, Result<LogStream, RuntimeError>>;
}
