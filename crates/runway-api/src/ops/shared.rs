//! What the operation modules look up and record for each other: services and their
//! operations, tags, the auto scaling configurations services use, connections,
//! observability configurations, VPC connectors and VPC ingress connections. Every operation module depends on this one (and on
//! `revisions`), never on a sibling.

use super::revisions;
use super::{Ctx, OpError, OpResult, Setting};
use runway_model::network::{IngressConnectionRecord, IngressStatus, VpcConnectorRecord};
use runway_model::records::*;
use runway_model::shapes::{AutoScalingConfigurationSummary, NetworkConfiguration, Tag};
use runway_model::{ApiError, ResourceKind, ids, validate};
use runway_store::{Query, Txn, Typed};

revisions::revisioned!(
    AutoScalingRecord,
    "Auto scaling configuration",
    ResourceKind::AutoScalingConfiguration
);

revisions::revisioned!(
    ObservabilityRecord,
    "Observability configuration",
    ResourceKind::ObservabilityConfiguration
);

revisions::revisioned!(
    VpcConnectorRecord,
    "VPC connector",
    ResourceKind::VpcConnector
);

// Services and their operations.

/// The service `ServiceArn` names.
pub(crate) fn load_service(tx: &dyn Txn, arn: &Option<String>) -> OpResult<ServiceRecord> {
    let arn = validate::arn("ServiceArn", arn, ResourceKind::Service)?.to_string();
    tx.load::<ServiceRecord>(&arn)?
        .ok_or_else(|| ApiError::not_found(format!("Service {arn} does not exist")).into())
}

/// The services that are not deleted, in creation order.
pub(crate) fn live_services(tx: &dyn Txn) -> OpResult<Vec<(i64, ServiceRecord)>> {
    Ok(tx.load_all::<ServiceRecord>(&Query {
        current: true,
        ..Query::default()
    })?)
}

/// A service's operations, newest first.
pub(crate) fn operations(tx: &dyn Txn, service_arn: &str) -> OpResult<Vec<(i64, OperationRecord)>> {
    let query = Query {
        parent: Some(service_arn.to_string()),
        descending: true,
        ..Default::default()
    };
    Ok(tx.load_all::<OperationRecord>(&query)?)
}

/// A service's operations that are pending or in progress.
pub(crate) fn unfinished(tx: &dyn Txn, service_arn: &str) -> OpResult<Vec<OperationRecord>> {
    Ok(operations(tx, service_arn)?
        .into_iter()
        .map(|(_, op)| op)
        .filter(|op| !op.status.is_final())
        .collect())
}

/// A PENDING operation of `kind` on `service` (not yet recorded: see [`record`]).
pub(crate) fn new_operation(
    ctx: &Ctx<'_>,
    service: &ServiceRecord,
    kind: OperationType,
    spec: Option<ServiceSpec>,
) -> OperationRecord {
    OperationRecord {
        id: ids::new_operation_id(),
        service_arn: service.arn.clone(),
        kind,
        status: OperationStatus::Pending,
        started_at: ctx.now,
        ended_at: None,
        updated_at: ctx.now,
        spec,
        message: None,
        redeploy: None,
        progress: None,
        settings_only: false,
    }
}

/// Records `op` and marks its service as having an operation in progress.
pub(crate) fn record(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    service: &mut ServiceRecord,
    op: &OperationRecord,
) -> OpResult<()> {
    service.status = ServiceStatus::OperationInProgress;
    service.updated_at = ctx.now;
    tx.save(&*service)?;
    tx.create(op)?;
    Ok(())
}

/// Refuses changes to a service that is gone, failed to be created, or is being deleted.
pub(crate) fn require_changeable(tx: &dyn Txn, service: &ServiceRecord) -> OpResult<()> {
    match service.status {
        ServiceStatus::Deleted | ServiceStatus::DeleteFailed | ServiceStatus::CreateFailed => {
            return Err(ApiError::invalid_state(format!(
                "Service {} is {}; it can only be deleted",
                service.arn, service.status
            ))
            .into());
        }
        _ => {}
    }
    if unfinished(tx, &service.arn)?
        .iter()
        .any(|op| op.kind == OperationType::DeleteService)
    {
        return Err(
            ApiError::invalid_state(format!("Service {} is being deleted", service.arn)).into(),
        );
    }
    Ok(())
}

// Tags.

/// Replaces the tags of `arn` (at creation).
pub(crate) fn set_tags(tx: &mut dyn Txn, arn: &str, tags: Vec<Tag>) -> OpResult<()> {
    if !tags.is_empty() {
        tx.save(&TagsRecord {
            arn: arn.to_string(),
            tags,
        })?;
    }
    Ok(())
}

/// Forgets the tags of a deleted resource.
pub(crate) fn remove_tags(tx: &mut dyn Txn, arn: &str) -> OpResult<()> {
    tx.remove::<TagsRecord>(arn)?;
    Ok(())
}

// Auto scaling configurations.

/// The setting that names the default auto scaling configuration.
pub(crate) const DEFAULT_AUTO_SCALING_KEY: &str = "default_auto_scaling_configuration";

/// The ARN of the default auto scaling configuration.
pub(crate) fn default_auto_scaling_arn(tx: &dyn Txn) -> OpResult<String> {
    tx.load::<Setting>(DEFAULT_AUTO_SCALING_KEY)?
        .map(|s| s.value)
        .ok_or_else(|| {
            ApiError::internal("the default auto scaling configuration is missing").into()
        })
}

/// The auto scaling configuration a service gets when it names none.
pub(crate) fn default_auto_scaling(tx: &dyn Txn) -> OpResult<AutoScalingRecord> {
    let arn = default_auto_scaling_arn(tx)?;
    tx.load::<AutoScalingRecord>(&arn)?.ok_or_else(|| {
        ApiError::internal(format!(
            "the default auto scaling configuration {arn} is missing"
        ))
        .into()
    })
}

/// The active auto scaling configuration a full or partial ARN in `field` names.
pub(crate) fn auto_scaling(tx: &dyn Txn, field: &str, arn: &str) -> OpResult<AutoScalingRecord> {
    revisions::resolve_active(tx, field, arn)
}

/// The summary of an auto scaling configuration, given which is the default and whether
/// a service uses it.
pub(crate) fn auto_scaling_summary(
    r: &AutoScalingRecord,
    default_arn: &str,
    used: bool,
) -> AutoScalingConfigurationSummary {
    AutoScalingConfigurationSummary {
        auto_scaling_configuration_arn: Some(r.arn.clone()),
        auto_scaling_configuration_name: Some(r.name.clone()),
        auto_scaling_configuration_revision: Some(r.revision),
        status: Some(r.status.to_string()),
        created_at: Some(r.created_at),
        has_associated_service: Some(used),
        is_default: Some(default_arn == r.arn),
    }
}

/// The summary of the auto scaling configuration `arn`, as a service's description
/// carries it.
pub(crate) fn auto_scaling_summary_of(
    tx: &dyn Txn,
    arn: &str,
) -> OpResult<AutoScalingConfigurationSummary> {
    let record = tx.load::<AutoScalingRecord>(arn)?.ok_or_else(|| {
        ApiError::internal(format!("auto scaling configuration {arn} is missing"))
    })?;
    let used = live_services(tx)?
        .iter()
        .any(|(_, s)| s.spec.auto_scaling_configuration_arn == record.arn);
    Ok(auto_scaling_summary(
        &record,
        &default_auto_scaling_arn(tx)?,
        used,
    ))
}

// Connections and observability configurations.

/// The connection `arn` (given in `field`) names.
pub(crate) fn load_connection(tx: &dyn Txn, field: &str, arn: &str) -> OpResult<ConnectionRecord> {
    let arn = validate::parse_arn(field, arn, ResourceKind::Connection)?.to_string();
    tx.load::<ConnectionRecord>(&arn)?
        .ok_or_else(|| ApiError::not_found(format!("Connection {arn} does not exist")).into())
}

/// Checks that a service may use the connection `arn`.
pub(crate) fn require_connection(tx: &dyn Txn, field: &str, arn: &str) -> OpResult<()> {
    load_connection(tx, field, arn).map_err(|e| match e {
        OpError::Api(e) => ApiError::invalid(format!("{field}: {}", e.message)).into(),
        other => other,
    })?;
    Ok(())
}

/// Checks that `arn` names an active observability configuration, for a service to use.
pub(crate) fn require_observability(tx: &dyn Txn, field: &str, arn: &str) -> OpResult<()> {
    revisions::resolve_active::<ObservabilityRecord>(tx, field, arn).map(drop)
}

// VPC connectors and VPC ingress connections.

/// The active connector revision `arn` names (full or partial), for a service to use.
pub(crate) fn require_vpc_connector(
    tx: &dyn Txn,
    field: &str,
    arn: &str,
) -> OpResult<VpcConnectorRecord> {
    revisions::resolve_active::<VpcConnectorRecord>(tx, field, arn).map_err(|e| match e {
        OpError::Api(e) if !e.message.starts_with(field) => {
            ApiError::invalid(format!("{field}: {}", e.message)).into()
        }
        other => other,
    })
}

/// The connector a network configuration sends outbound traffic through, if any.
pub(crate) fn connector_of(network: &NetworkConfiguration) -> Option<&str> {
    network
        .egress_configuration
        .as_ref()
        .filter(|e| e.egress_type.as_deref() == Some("VPC"))
        .and_then(|e| e.vpc_connector_arn.as_deref())
}

/// Marks the VPC ingress connections of a service being deleted PENDING_DELETION.
pub(crate) fn release_ingress_connections(tx: &mut dyn Txn, service_arn: &str) -> OpResult<()> {
    let query = Query {
        parent: Some(service_arn.to_string()),
        ..Query::default()
    };
    for (_, mut c) in tx.load_all::<IngressConnectionRecord>(&query)? {
        if c.status != IngressStatus::Deleted && c.status != IngressStatus::PendingDeletion {
            c.status = IngressStatus::PendingDeletion;
            tx.save(&c)?;
            remove_tags(tx, &c.arn)?;
        }
    }
    Ok(())
}
