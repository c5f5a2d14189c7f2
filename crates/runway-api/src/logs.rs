//! `Runway.GetLogs` and `Runway.ListInstances`: instances' log lines and state, read
//! through an [`InstanceReader`] the binary provides over the instance runtime (the API
//! itself never touches instances).

use crate::Api;
use crate::ops::{OpError, shared};
use runway_model::records::ServiceRecord;
use runway_model::shapes::{
    GetLogsRequest, GetLogsResponse, Instance, ListInstancesResponse, LogLine, ServiceArnRequest,
};
use runway_model::{ApiError, validate};
use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

/// The most lines one call returns.
pub const MAX_LINES: i64 = 10_000;

/// A log line as the runtime reports it.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub time: SystemTime,
    pub instance_id: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub text: String,
}

/// An instance as the API shows it.
#[derive(Debug, Clone)]
pub struct InstanceEntry {
    pub instance_id: String,
    pub revision_id: String,
    /// `ip:port` on the instance network.
    pub address: String,
    /// `starting`, `healthy`, `unhealthy`, `restarting`, ...
    pub state: String,
    pub restarts: u32,
    pub started_at: SystemTime,
}

/// Reads instances for the API.
pub trait InstanceReader: Send + Sync + 'static {
    /// A service's log lines: since a time, at most `limit`, newest instance first.
    fn logs(
        &self,
        service_id: String,
        since: Option<SystemTime>,
        limit: usize,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<LogEntry>, String>> + Send + '_>>;

    /// A service's instances that are not stopped.
    fn instances(&self, service_id: &str) -> Vec<InstanceEntry>;
}

async fn service_and_reader(
    api: &Api,
    arn: Option<String>,
) -> Result<(ServiceRecord, &dyn InstanceReader), OpError> {
    let inner = api.inner.clone();
    let service = tokio::task::spawn_blocking(move || -> Result<_, OpError> {
        let tx = inner.store.read()?;
        shared::load_service(&*tx, &arn)
    })
    .await
    .map_err(|e| ApiError::internal(format!("reading the service failed to run: {e}")))??;
    let reader = api
        .inner
        .instances
        .as_deref()
        .ok_or_else(|| ApiError::internal("this server has no instance runtime"))?;
    Ok((service, reader))
}

pub(crate) async fn list_instances(
    api: &Api,
    req: ServiceArnRequest,
) -> Result<ListInstancesResponse, OpError> {
    let (service, reader) = service_and_reader(api, req.service_arn).await?;
    Ok(ListInstancesResponse {
        instances: Some(
            reader
                .instances(&service.id)
                .into_iter()
                .map(|i| Instance {
                    instance_id: Some(i.instance_id),
                    revision_id: Some(i.revision_id),
                    address: Some(i.address),
                    state: Some(i.state),
                    restarts: Some(i64::from(i.restarts)),
                    started_at: Some(i.started_at.into()),
                })
                .collect(),
        ),
    })
}

pub(crate) async fn get(api: &Api, req: GetLogsRequest) -> Result<GetLogsResponse, OpError> {
    let limit = validate::max_results(req.limit, MAX_LINES)?;
    let (service, reader) = service_and_reader(api, req.service_arn).await?;
    let entries = reader
        .logs(service.id, req.start_time.map(SystemTime::from), limit)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the logs: {e}")))?;
    Ok(GetLogsResponse {
        lines: Some(
            entries
                .into_iter()
                .map(|e| LogLine {
                    time: Some(e.time.into()),
                    instance_id: Some(e.instance_id),
                    stream: Some(e.stream),
                    message: Some(e.text),
                })
                .collect(),
        ),
    })
}
