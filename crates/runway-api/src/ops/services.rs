//! CreateService, DescribeService, ListServices, UpdateService, DeleteService,
//! PauseService, ResumeService, StartDeployment and ListOperations.
//!
//! Every mutating call records an operation (PENDING) for the controller to carry out, in
//! order, and marks the service OPERATION_IN_PROGRESS; nothing here claims that anything
//! runs.

use super::shared::{
    auto_scaling, auto_scaling_summary_of, default_auto_scaling, live_services, load_service,
    new_operation, operations, record, release_ingress_connections, require_changeable,
    require_connection, require_observability, require_vpc_connector, set_tags, unfinished,
};
use super::{Ctx, OpResult, page, page_desc};
use runway_model::records::*;
use runway_model::shapes::*;
use runway_model::{ApiError, ResourceKind, ids, validate};
use runway_store::{Txn, Typed};

/// The most services ListServices and the most operations ListOperations answer at once.
const MAX_PAGE: i64 = 20;

/// The wire form of a service, with its auto scaling configuration's summary.
pub(crate) fn wire(tx: &dyn Txn, s: &ServiceRecord) -> OpResult<Service> {
    let spec = s.spec.clone();
    Ok(Service {
        service_name: Some(s.name.clone()),
        service_id: Some(s.id.clone()),
        service_arn: Some(s.arn.clone()),
        service_url: Some(s.url.clone()),
        created_at: Some(s.created_at),
        updated_at: Some(s.updated_at),
        deleted_at: s.deleted_at,
        status: Some(s.status.to_string()),
        source_configuration: Some(spec.source_configuration),
        instance_configuration: Some(spec.instance_configuration),
        encryption_configuration: spec.encryption_configuration,
        health_check_configuration: Some(spec.health_check_configuration),
        auto_scaling_configuration_summary: Some(auto_scaling_summary_of(
            tx,
            &spec.auto_scaling_configuration_arn,
        )?),
        network_configuration: Some(spec.network_configuration),
        observability_configuration: spec.observability_configuration,
    })
}

/// Checks that the resources a source names exist.
fn check_source_references(tx: &dyn Txn, source: &SourceConfiguration) -> OpResult<()> {
    if let Some(arn) = source.connection_arn() {
        require_connection(
            tx,
            "SourceConfiguration.AuthenticationConfiguration.ConnectionArn",
            arn,
        )?;
    }
    Ok(())
}

/// Checks that a VPC egress names an active connector, and stores its full ARN.
fn check_network(tx: &dyn Txn, network: &mut NetworkConfiguration) -> OpResult<()> {
    if let Some(egress) = network.egress_configuration.as_mut()
        && let Some(arn) = egress.vpc_connector_arn.as_mut()
    {
        let connector = require_vpc_connector(
            tx,
            "NetworkConfiguration.EgressConfiguration.VpcConnectorArn",
            arn,
        )?;
        *arn = connector.arn;
    }
    Ok(())
}

fn service_observability(
    tx: &dyn Txn,
    cfg: &ServiceObservabilityConfiguration,
) -> OpResult<ServiceObservabilityConfiguration> {
    let cfg = validate::service_observability(cfg)?;
    if let Some(arn) = &cfg.observability_configuration_arn {
        require_observability(
            tx,
            "ObservabilityConfiguration.ObservabilityConfigurationArn",
            arn,
        )?;
    }
    Ok(cfg)
}

/// Records an operation of `kind` on `service` and answers with the service as it is now.
fn record_and_answer(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    mut service: ServiceRecord,
    kind: OperationType,
    spec: Option<ServiceSpec>,
) -> OpResult<ServiceResponse> {
    let op = new_operation(ctx, &service, kind, spec);
    record(tx, ctx, &mut service, &op)?;
    Ok(ServiceResponse {
        service: Some(wire(&*tx, &service)?),
        operation_id: Some(op.id),
    })
}

pub(crate) fn create(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: CreateServiceRequest,
) -> OpResult<ServiceResponse> {
    let name = validate::service_name(&req.service_name)?;
    let source = validate::source_configuration(
        "SourceConfiguration",
        validate::required("SourceConfiguration", &req.source_configuration)?,
    )?;
    let instance = validate::instance_configuration(req.instance_configuration.as_ref())?;
    let health = validate::health_check(req.health_check_configuration.as_ref())?;
    let mut network = validate::network_configuration(req.network_configuration.as_ref())?;
    let encryption = req
        .encryption_configuration
        .as_ref()
        .map(validate::encryption_configuration)
        .transpose()?;
    if let Some(key) = encryption.as_ref().and_then(|e| e.kms_key.as_deref()) {
        crate::aws::check_service_key(tx, ctx, key)?;
    }
    let tag_list = validate::tags(&req.tags)?;
    check_source_references(&*tx, &source)?;
    check_network(&*tx, &mut network)?;
    let observability = req
        .observability_configuration
        .as_ref()
        .map(|o| service_observability(&*tx, o))
        .transpose()?;
    let asc = match &req.auto_scaling_configuration_arn {
        Some(arn) => auto_scaling(&*tx, "AutoScalingConfigurationArn", arn)?,
        None => default_auto_scaling(&*tx)?,
    };
    if live_services(&*tx)?.iter().any(|(_, s)| s.name == name) {
        return Err(ApiError::invalid(format!(
            "ServiceName: a service named {name} already exists"
        ))
        .into());
    }

    let id = ids::new_resource_id();
    let service = ServiceRecord {
        arn: ctx.arn(ResourceKind::Service, &[&name, &id]),
        url: validate::service_host(&name, &id, &ctx.config.base_domain),
        id,
        name,
        status: ServiceStatus::OperationInProgress,
        created_at: ctx.now,
        updated_at: ctx.now,
        deleted_at: None,
        spec: ServiceSpec {
            source_configuration: source,
            instance_configuration: instance,
            encryption_configuration: encryption,
            health_check_configuration: health,
            auto_scaling_configuration_arn: asc.arn,
            network_configuration: network,
            observability_configuration: observability,
            http_configuration: None,
        },
    };
    let op = new_operation(
        ctx,
        &service,
        OperationType::CreateService,
        Some(service.spec.clone()),
    );
    tx.create(&service)?;
    tx.create(&op)?;
    set_tags(tx, &service.arn, tag_list)?;
    Ok(ServiceResponse {
        service: Some(wire(&*tx, &service)?),
        operation_id: Some(op.id),
    })
}

pub(crate) fn describe(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: ServiceArnRequest,
) -> OpResult<DescribeServiceResponse> {
    let service = load_service(&*tx, &req.service_arn)?;
    Ok(DescribeServiceResponse {
        service: Some(wire(&*tx, &service)?),
    })
}

pub(crate) fn list(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: ListServicesRequest,
) -> OpResult<ListServicesResponse> {
    let max = validate::max_results(req.max_results, MAX_PAGE)?;
    let (services, next) = page(live_services(&*tx)?, req.next_token.as_deref(), max)?;
    Ok(ListServicesResponse {
        service_summary_list: Some(
            services
                .into_iter()
                .map(|s| ServiceSummary {
                    service_name: Some(s.name),
                    service_id: Some(s.id),
                    service_arn: Some(s.arn),
                    service_url: Some(s.url),
                    created_at: Some(s.created_at),
                    updated_at: Some(s.updated_at),
                    status: Some(s.status.to_string()),
                })
                .collect(),
        ),
        next_token: next,
    })
}

/// Refuses to pause or resume while another operation is pending or in progress.
fn require_settled(
    tx: &dyn Txn,
    service: &ServiceRecord,
    wanted: ServiceStatus,
    action: &str,
) -> OpResult<()> {
    require_changeable(tx, service)?;
    let busy = !unfinished(tx, &service.arn)?.is_empty();
    if busy || service.status != wanted {
        let state = if busy {
            "has an operation in progress".to_string()
        } else {
            format!("is {}", service.status)
        };
        return Err(ApiError::invalid_state(format!(
            "Service {} {state}; only a {wanted} service can be {action}",
            service.arn
        ))
        .into());
    }
    Ok(())
}

pub(crate) fn update(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: UpdateServiceRequest,
) -> OpResult<ServiceResponse> {
    let mut service = load_service(&*tx, &req.service_arn)?;
    require_changeable(&*tx, &service)?;
    let nothing = req.source_configuration.is_none()
        && req.instance_configuration.is_none()
        && req.auto_scaling_configuration_arn.is_none()
        && req.health_check_configuration.is_none()
        && req.network_configuration.is_none()
        && req.observability_configuration.is_none();
    if nothing {
        return Err(ApiError::invalid(
            "UpdateService needs at least one of SourceConfiguration, InstanceConfiguration, \
             AutoScalingConfigurationArn, HealthCheckConfiguration, NetworkConfiguration, ObservabilityConfiguration",
        )
        .into());
    }
    let mut spec = service.spec.clone();
    if let Some(update) = &req.source_configuration {
        let merged = validate::merge_source(&spec.source_configuration, update)?;
        spec.source_configuration = validate::source_configuration("SourceConfiguration", &merged)?;
        check_source_references(&*tx, &spec.source_configuration)?;
    }
    if let Some(update) = &req.instance_configuration {
        let merged = validate::merge_instance(&spec.instance_configuration, update);
        spec.instance_configuration = validate::instance_configuration(Some(&merged))?;
    }
    if let Some(update) = &req.health_check_configuration {
        let merged = validate::merge_health(&spec.health_check_configuration, update);
        spec.health_check_configuration = validate::health_check(Some(&merged))?;
    }
    if let Some(network) = &req.network_configuration {
        spec.network_configuration = validate::network_configuration(Some(network))?;
        check_network(&*tx, &mut spec.network_configuration)?;
    }
    if let Some(o) = &req.observability_configuration {
        spec.observability_configuration = Some(service_observability(&*tx, o)?);
    }
    if let Some(arn) = &req.auto_scaling_configuration_arn {
        spec.auto_scaling_configuration_arn =
            auto_scaling(&*tx, "AutoScalingConfigurationArn", arn)?.arn;
    }
    service.spec = spec.clone();
    record_and_answer(tx, ctx, service, OperationType::UpdateService, Some(spec))
}

pub(crate) fn start_deployment(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: ServiceArnRequest,
) -> OpResult<StartDeploymentResponse> {
    let mut service = load_service(&*tx, &req.service_arn)?;
    require_changeable(&*tx, &service)?;
    if service.status == ServiceStatus::Paused {
        return Err(ApiError::invalid_state(format!(
            "Service {} is PAUSED; resume it to deploy",
            service.arn
        ))
        .into());
    }
    let op = new_operation(
        ctx,
        &service,
        OperationType::StartDeployment,
        Some(service.spec.clone()),
    );
    record(tx, ctx, &mut service, &op)?;
    Ok(StartDeploymentResponse {
        operation_id: Some(op.id),
    })
}

pub(crate) fn pause(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: ServiceArnRequest,
) -> OpResult<ServiceResponse> {
    let service = load_service(&*tx, &req.service_arn)?;
    require_settled(&*tx, &service, ServiceStatus::Running, "paused")?;
    record_and_answer(tx, ctx, service, OperationType::PauseService, None)
}

pub(crate) fn resume(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: ServiceArnRequest,
) -> OpResult<ServiceResponse> {
    let service = load_service(&*tx, &req.service_arn)?;
    require_settled(&*tx, &service, ServiceStatus::Paused, "resumed")?;
    let spec = Some(service.spec.clone());
    record_and_answer(tx, ctx, service, OperationType::ResumeService, spec)
}

pub(crate) fn delete(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: ServiceArnRequest,
) -> OpResult<ServiceResponse> {
    let service = load_service(&*tx, &req.service_arn)?;
    if service.status == ServiceStatus::Deleted {
        return Err(
            ApiError::invalid_state(format!("Service {} is already deleted", service.arn)).into(),
        );
    }
    if unfinished(&*tx, &service.arn)?
        .iter()
        .any(|op| op.kind == OperationType::DeleteService)
    {
        return Err(ApiError::invalid_state(format!(
            "Service {} is already being deleted",
            service.arn
        ))
        .into());
    }
    release_ingress_connections(tx, &service.arn)?;
    record_and_answer(tx, ctx, service, OperationType::DeleteService, None)
}

pub(crate) fn list_operations(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: ListOperationsRequest,
) -> OpResult<ListOperationsResponse> {
    let service = load_service(&*tx, &req.service_arn)?;
    let max = validate::max_results(req.max_results, MAX_PAGE)?;
    let (ops, next) = page_desc(
        operations(&*tx, &service.arn)?,
        req.next_token.as_deref(),
        max,
    )?;
    Ok(ListOperationsResponse {
        operation_summary_list: Some(
            ops.into_iter()
                .map(|op| OperationSummary {
                    id: Some(op.id),
                    kind: Some(op.kind.to_string()),
                    status: Some(op.status.to_string()),
                    target_arn: Some(op.service_arn),
                    started_at: Some(op.started_at),
                    ended_at: op.ended_at,
                    updated_at: Some(op.updated_at),
                })
                .collect(),
        ),
        next_token: next,
    })
}

/// Records a START_DEPLOYMENT for every service that deploys `repository:tag` from
/// runway's registry (known by the names in `registry_hosts`) with AutoDeploymentsEnabled;
/// returns the operation ids. Services that cannot deploy now (paused, failed, being
/// deleted) are skipped.
/// Records a deployment of every live service with AutoDeploymentsEnabled that
/// `selects`; the operations' ids. `what` names the change for the log.
fn deploy_where(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    what: &str,
    selects: &dyn Fn(&ServiceRecord) -> bool,
) -> OpResult<Vec<String>> {
    let mut ids = Vec::new();
    for (_, mut service) in live_services(&*tx)? {
        if service.spec.source_configuration.auto_deployments_enabled != Some(true)
            || !selects(&service)
        {
            continue;
        }
        if service.status == ServiceStatus::Paused || require_changeable(&*tx, &service).is_err() {
            tracing::info!(service = %service.arn, "{what} was not deployed: the service cannot deploy now");
            continue;
        }
        let op = new_operation(
            ctx,
            &service,
            OperationType::StartDeployment,
            Some(service.spec.clone()),
        );
        record(tx, ctx, &mut service, &op)?;
        ids.push(op.id);
    }
    Ok(ids)
}

/// Deploys the services built from a code repository that `concerns` selects (a push
/// webhook's repository and branch, a polled branch that moved).
pub(crate) fn deploy_source_change(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    concerns: &dyn Fn(&ServiceRecord) -> bool,
) -> OpResult<Vec<String>> {
    deploy_where(tx, ctx, "a source change", &|service| {
        service.spec.source_configuration.code_repository.is_some() && concerns(service)
    })
}

/// Deploys the services whose image is `repository:tag` in runway's registry.
pub(crate) fn deploy_pushed(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    registry_hosts: &[String],
    repository: &str,
    tag: &str,
) -> OpResult<Vec<String>> {
    deploy_where(tx, ctx, "a push of its image", &|service| {
        service
            .spec
            .source_configuration
            .image_repository
            .as_ref()
            .and_then(|i| i.image_identifier.as_deref())
            .and_then(|id| runway_model::reference::ImageReference::parse(id).ok())
            .is_some_and(|image| {
                registry_hosts.iter().any(|h| h == &image.registry)
                    && image.repository == repository
                    && image.tag.as_deref() == Some(tag)
            })
    })
}
