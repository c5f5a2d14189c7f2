//! runway's per-service HTTP settings (`Runway.UpdateServiceHttpConfiguration` and
//! `Runway.DescribeServiceHttpConfiguration`): the instances' protocol, the request and
//! idle timeouts and the request body limit. App Runner's shapes have no such members,
//! so they have operations of their own and App Runner's stay as the SDKs know them.
//!
//! An update replaces the service's whole HTTP configuration (a member left out is not
//! set: `apprunner.yaml`'s value or the default applies, see `runway_model::http`) and
//! records an UPDATE_SERVICE operation that deploys the serving revision again with it:
//! the same image and build output, nothing built or pulled, as a new revision (so a
//! rollback restores the settings an earlier revision had).

use super::shared::{load_service, new_operation, record, require_changeable};
use super::{Ctx, OpResult};
use runway_model::records::{OperationType, RevisionRecord, ServiceState, ServiceStatus};
use runway_model::shapes::*;
use runway_model::{ApiError, validate};
use runway_store::{Txn, Typed};

pub(crate) fn update(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: UpdateServiceHttpConfigurationRequest,
) -> OpResult<UpdateServiceHttpConfigurationResponse> {
    let mut service = load_service(&*tx, &req.service_arn)?;
    let field = "HttpConfiguration";
    let cfg =
        validate::http_configuration(field, validate::required(field, &req.http_configuration)?)?;
    require_changeable(&*tx, &service)?;
    if service.status == ServiceStatus::Paused {
        return Err(ApiError::invalid_state(format!(
            "Service {} is PAUSED; resume it to change its HTTP configuration",
            service.arn
        ))
        .into());
    }
    service.spec.http_configuration = (cfg != HttpConfiguration::default()).then_some(cfg);
    let mut op = new_operation(
        ctx,
        &service,
        OperationType::UpdateService,
        Some(service.spec.clone()),
    );
    op.settings_only = true;
    record(tx, ctx, &mut service, &op)?;
    Ok(UpdateServiceHttpConfigurationResponse {
        service_arn: Some(service.arn),
        http_configuration: Some(service.spec.http_configuration.unwrap_or_default()),
        operation_id: Some(op.id),
    })
}

pub(crate) fn describe(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: ServiceArnRequest,
) -> OpResult<DescribeServiceHttpConfigurationResponse> {
    let service = load_service(&*tx, &req.service_arn)?;
    let serving = match tx
        .load::<ServiceState>(&service.arn)?
        .as_ref()
        .and_then(ServiceState::primary_revision)
    {
        Some(id) => tx.load::<RevisionRecord>(id)?,
        None => None,
    };
    Ok(DescribeServiceHttpConfigurationResponse {
        service_arn: Some(service.arn),
        http_configuration: Some(service.spec.http_configuration.unwrap_or_default()),
        serving_revision_id: serving.as_ref().map(|r| r.id.clone()),
        serving_http_configuration: serving.map(|r| r.http_settings().to_wire()),
    })
}
