//! `Runway.ListRuntimes`, `Runway.UpdateRuntime` and `Runway.CheckRuntime`: the managed
//! runtimes' base images, listed, set and checked while the server runs. What a runtime
//! is set to is stored (a setting per runtime, so it outlives restarts) and handed to
//! the builder through a [`RuntimeCatalog`] the binary provides; the API itself never
//! looks into the registry.

use crate::Api;
use crate::ops::{OpError, Setting};
use runway_model::ApiError;
use runway_model::shapes::{
    CheckRuntimeRequest, CheckRuntimeResponse, ListRuntimesResponse, RuntimeSummary,
    UpdateRuntimeRequest,
};
use runway_store::{Query, Typed};
use std::future::Future;
use std::pin::Pin;

/// The key prefix of the stored settings: `runtime-image/<runtime>`.
const PREFIX: &str = "runtime-image/";

/// A boxed future, for the trait below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The runtimes and their images, as the builder sees them.
pub trait RuntimeCatalog: Send + Sync + 'static {
    /// The runtime's name in `apprunner.yaml` for a name or API name, if it is one.
    fn canonical(&self, name: &str) -> Option<String>;

    /// Checks a reference and makes builds use it for `runtime` (`None`: back to its
    /// imported or official image). The message says what is wrong.
    fn apply(&self, runtime: &str, reference: Option<&str>) -> Result<(), String>;

    /// Every runtime and its image's state.
    fn list(&self) -> BoxFuture<'_, Vec<RuntimeSummary>>;

    /// The image a build of `runtime` at `version` would use, found (and pulled) now;
    /// the message says what is missing and how to add it.
    fn check<'a>(
        &'a self,
        runtime: &'a str,
        version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<CheckRuntimeResponse, String>>;
}

impl Api {
    /// Serves the runtime operations with `catalog`. Only before the API serves.
    pub fn with_runtimes(mut self, catalog: std::sync::Arc<dyn RuntimeCatalog>) -> Self {
        if let Some(inner) = std::sync::Arc::get_mut(&mut self.inner) {
            inner.runtimes = Some(catalog);
        }
        self
    }

    /// The base images stored with `Runway.UpdateRuntime`: (runtime, reference).
    pub fn stored_runtime_images(&self) -> Result<Vec<(String, String)>, OpError> {
        let tx = self.inner.store.begin()?;
        Ok(tx
            .load_all::<Setting>(&Query::default())?
            .into_iter()
            .filter_map(|(_, s)| {
                s.key
                    .strip_prefix(PREFIX)
                    .map(|rt| (rt.to_string(), s.value.clone()))
            })
            .collect())
    }

    fn catalog(&self) -> Result<&dyn RuntimeCatalog, OpError> {
        self.inner
            .runtimes
            .as_deref()
            .ok_or_else(|| ApiError::invalid("this server builds no sources").into())
    }
}

fn runtime_name(catalog: &dyn RuntimeCatalog, name: Option<&str>) -> Result<String, OpError> {
    let name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid("Runtime is required (python311, NODEJS_22, ...)"))?;
    catalog.canonical(name).ok_or_else(|| {
        ApiError::invalid(format!(
            "Runtime {name:?} is not a managed runtime; `runway runtimes ls` lists them"
        ))
        .into()
    })
}

pub(crate) async fn list(api: &Api) -> Result<ListRuntimesResponse, OpError> {
    let runtimes = api.catalog()?.list().await;
    Ok(ListRuntimesResponse {
        runtimes: Some(runtimes),
    })
}

pub(crate) async fn update(
    api: &Api,
    req: UpdateRuntimeRequest,
) -> Result<ListRuntimesResponse, OpError> {
    let catalog = api.catalog()?;
    let runtime = runtime_name(catalog, req.runtime.as_deref())?;
    let reference = req
        .image_reference
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    // Checked before anything is stored: a bad reference changes nothing.
    if let Some(r) = &reference
        && (r.len() > 1024 || r.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(
            ApiError::invalid(format!("ImageReference {r:?} is not an image reference")).into(),
        );
    }
    let inner = api.inner.clone();
    let (key, value) = (format!("{PREFIX}{runtime}"), reference.clone());
    tokio::task::spawn_blocking(move || -> Result<(), OpError> {
        let mut tx = inner.store.begin()?;
        match value {
            Some(value) => {
                tx.save(&Setting { key, value })?;
            }
            None => {
                tx.remove::<Setting>(&key)?;
            }
        }
        tx.commit()?;
        Ok(())
    })
    .await
    .map_err(|e| ApiError::internal(format!("storing the runtime failed to run: {e}")))??;
    catalog
        .apply(&runtime, reference.as_deref())
        .map_err(ApiError::invalid)?;
    let runtimes = catalog
        .list()
        .await
        .into_iter()
        .filter(|r| r.runtime.as_deref() == Some(runtime.as_str()))
        .collect();
    Ok(ListRuntimesResponse {
        runtimes: Some(runtimes),
    })
}

pub(crate) async fn check(
    api: &Api,
    req: CheckRuntimeRequest,
) -> Result<CheckRuntimeResponse, OpError> {
    let catalog = api.catalog()?;
    let runtime = runtime_name(catalog, req.runtime.as_deref())?;
    let version = req
        .runtime_version
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty());
    catalog
        .check(&runtime, version)
        .await
        .map_err(|e| ApiError::invalid(e).into())
}
