//! The App Runner API: the AWS JSON 1.0 protocol over HTTP (`POST /` with
//! `X-Amz-Target: AppRunner.<Operation>`), SigV4 authentication of every request (failed
//! sign-ins limited per client address), and the logic of every operation, so that the
//! AWS CLI, boto3 and the SDKs work unchanged. Beside it, on the same listener and keys,
//! the AWS services App Runner users script against (Secrets Manager, SSM Parameter
//! Store, KMS: AWS JSON 1.1, the `aws` module) and the EC2 subset users declare private
//! networks with (the query protocol: form-encoded `Action=` requests, XML answers).
//!
//! This crate records what users ask for; it must never start, stop or route anything
//! itself (the controller does, from what is recorded here), never answer a status that
//! claims more than has happened, and never log request bodies, which may hold secrets.

#![forbid(unsafe_code)]

mod aws;
mod ec2;
mod logs;
mod metrics;
mod ops;
mod protocol;
pub mod runtimes;
pub mod sigv4;
mod vpc;

pub use logs::{InstanceEntry, InstanceReader, LogEntry};

/// Entry points for the fuzz targets in `fuzz/` (not an API).
#[doc(hidden)]
pub mod fuzzing {
    /// Parses `data` as an EC2 query request's form and reads it the ways actions do.
    pub fn ec2_params(data: &[u8]) {
        crate::ec2::read_all(data);
    }
}
pub use ops::{Ctx, OpError};
pub use runtimes::RuntimeCatalog;

use runway_model::Timestamp;
use runway_secrets::MasterKey;
use runway_store::Store;
use runway_telemetry::Registry;
use std::sync::Arc;

/// Where this API lives: what its ARNs and URLs say.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub region: String,
    pub account_id: String,
    /// The domain service URLs are made under.
    pub base_domain: String,
    /// Where source builds' logs are, one `<operation id>.log` each, for
    /// `Runway.GetBuildLog` (`None`: this server builds nothing).
    pub build_logs: Option<std::path::PathBuf>,
    /// The host's addresses the operator lets VPC connectors take as their static
    /// outbound address to the internet (the `runway:egress-address` tag).
    pub egress_addresses: Vec<std::net::Ipv4Addr>,
}

/// Where clients reach this server's parts, as `Runway.DescribeEndpoints` answers (what
/// `runway login` saves in a profile).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PublicEndpoints {
    /// The API's URL.
    pub api: String,
    /// The image registry's URL.
    pub registry: String,
    /// The router's HTTPS URL (apps).
    pub https: String,
    /// The router's plain HTTP URL.
    pub http: String,
}

/// The API: cheap to clone, shared by every connection.
#[derive(Clone, Debug)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    master: Arc<MasterKey>,
    config: ApiConfig,
    metrics: metrics::ApiMetrics,
    instances: Option<Arc<dyn InstanceReader>>,
    /// The managed runtimes' images, for `Runway.ListRuntimes` and its kin.
    runtimes: Option<Arc<dyn RuntimeCatalog>>,
    /// Called after a call that changed something commits.
    on_change: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Limits failed sign-ins per client address (shared with the registry).
    throttle: Option<Arc<runway_secrets::AuthThrottle>>,
    /// What `Runway.DescribeEndpoints` answers.
    endpoints: Option<PublicEndpoints>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Api {
    /// Prepares the API over `store`: creates what every data directory needs (the
    /// default auto scaling configuration) and registers the API's metrics. `instances`
    /// reads instances and their logs for `Runway.ListInstances` and `Runway.GetLogs`.
    pub fn new(
        store: Arc<dyn Store>,
        master: Arc<MasterKey>,
        config: ApiConfig,
        instances: Option<Arc<dyn InstanceReader>>,
        registry: &mut Registry,
    ) -> Result<Self, OpError> {
        let mut tx = store.begin()?;
        let ctx = Ctx {
            config: &config,
            master: &master,
            now: Timestamp::now(),
        };
        ops::autoscaling::ensure_default(&mut *tx, &ctx)?;
        tx.commit()?;
        Ok(Api {
            inner: Arc::new(Inner {
                store,
                master,
                config,
                metrics: metrics::ApiMetrics::register(registry),
                instances,
                runtimes: None,
                on_change: None,
                throttle: None,
                endpoints: None,
            }),
        })
    }

    /// Records a START_DEPLOYMENT for each service with AutoDeploymentsEnabled that runs
    /// `repository:tag` from runway's own registry, which clients reach by the host names
    /// in `registry_hosts` (`127.0.0.1:5000`, `localhost:5000`, ...). Returns the
    /// operation ids. Blocking: call it from a blocking thread.
    pub fn record_image_push(
        &self,
        registry_hosts: &[String],
        repository: &str,
        tag: &str,
    ) -> Result<Vec<String>, OpError> {
        self.record_deployments(|tx, ctx| {
            ops::services::deploy_pushed(tx, ctx, registry_hosts, repository, tag)
        })
    }

    /// Records a START_DEPLOYMENT for each live service built from a code repository,
    /// with AutoDeploymentsEnabled, that `concerns` selects (its repository and branch got
    /// a push); the operations' ids. Blocking: call it from a blocking thread.
    pub fn record_source_change(
        &self,
        concerns: &dyn Fn(&runway_model::records::ServiceRecord) -> bool,
    ) -> Result<Vec<String>, OpError> {
        self.record_deployments(|tx, ctx| ops::services::deploy_source_change(tx, ctx, concerns))
    }

    /// Runs `deploy` in one transaction and wakes the controller if it recorded any.
    fn record_deployments(
        &self,
        deploy: impl FnOnce(&mut dyn runway_store::Txn, &Ctx<'_>) -> Result<Vec<String>, OpError>,
    ) -> Result<Vec<String>, OpError> {
        let inner = &self.inner;
        let mut tx = inner.store.begin()?;
        let ctx = Ctx {
            config: &inner.config,
            master: &inner.master,
            now: Timestamp::now(),
        };
        let ids = deploy(&mut *tx, &ctx)?;
        tx.commit()?;
        if !ids.is_empty() {
            self.changed();
        }
        Ok(ids)
    }

    /// Calls `f` after every call that changes something (the controller wakes on it).
    /// Only before the API serves: it takes the API's only handle.
    pub fn on_change(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.on_change = Some(Arc::new(f));
        }
        self
    }

    /// Limits failed sign-ins per client address with `throttle` (the client's address
    /// comes from axum's `ConnectInfo<SocketAddr>`). Only before the API serves.
    pub fn with_auth_throttle(mut self, throttle: Arc<runway_secrets::AuthThrottle>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.throttle = Some(throttle);
        }
        self
    }

    /// Tells clients where this server's parts are (`Runway.DescribeEndpoints`). Only
    /// before the API serves.
    pub fn with_endpoints(mut self, endpoints: PublicEndpoints) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.endpoints = Some(endpoints);
        }
        self
    }

    pub(crate) fn changed(&self) {
        if let Some(f) = &self.inner.on_change {
            f();
        }
    }

    /// The HTTP application that serves the API.
    pub fn router(&self) -> axum::Router {
        protocol::router(self.clone())
    }
}
