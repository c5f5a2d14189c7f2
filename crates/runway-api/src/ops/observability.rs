//! The observability configuration operations.

use super::revisions::{self, Revisioned};
use super::shared::{live_services, remove_tags, set_tags};
use super::{Ctx, OpResult};
use runway_model::records::{ConfigStatus, ObservabilityRecord};
use runway_model::shapes::*;
use runway_model::{ApiError, ResourceKind, ids, validate};
use runway_store::{Txn, Typed};

const MAX_PAGE: i64 = 100;
/// Trace vendors App Runner offers.
const VENDORS: &[&str] = &["AWSXRAY"];

fn wire(
    all: &[(i64, ObservabilityRecord)],
    r: &ObservabilityRecord,
) -> ObservabilityConfigurationResponse {
    ObservabilityConfigurationResponse {
        observability_configuration: Some(ObservabilityConfiguration {
            observability_configuration_arn: Some(r.arn.clone()),
            observability_configuration_name: Some(r.name.clone()),
            trace_configuration: r.trace_configuration.clone(),
            observability_configuration_revision: Some(r.revision),
            latest: Some(revisions::is_latest(all, r)),
            status: Some(r.status.to_string()),
            created_at: Some(r.created_at),
            deleted_at: r.deleted_at,
        }),
    }
}

fn answer(tx: &dyn Txn, r: &ObservabilityRecord) -> OpResult<ObservabilityConfigurationResponse> {
    Ok(wire(&revisions::all(tx)?, r))
}

pub(crate) fn create(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: CreateObservabilityConfigurationRequest,
) -> OpResult<ObservabilityConfigurationResponse> {
    let name = validate::resource_name(
        "ObservabilityConfigurationName",
        &req.observability_configuration_name,
        4,
        32,
    )?;
    if let Some(trace) = &req.trace_configuration {
        let field = "TraceConfiguration.Vendor";
        validate::one_of(field, validate::required(field, &trace.vendor)?, VENDORS)?;
    }
    let tag_list = validate::tags(&req.tags)?;
    let revision = revisions::next_revision::<ObservabilityRecord>(&*tx, &name, &[])?;
    let record = ObservabilityRecord {
        arn: ctx.arn(
            ResourceKind::ObservabilityConfiguration,
            &[&name, &revision.to_string(), &ids::new_resource_id()],
        ),
        name,
        revision,
        trace_configuration: req.trace_configuration,
        status: ConfigStatus::Active,
        created_at: ctx.now,
        deleted_at: None,
    };
    tx.create(&record)?;
    set_tags(tx, &record.arn, tag_list)?;
    answer(&*tx, &record)
}

pub(crate) fn describe(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: ObservabilityConfigurationArnRequest,
) -> OpResult<ObservabilityConfigurationResponse> {
    let field = "ObservabilityConfigurationArn";
    let arn = validate::required(field, &req.observability_configuration_arn)?;
    let record = revisions::resolve::<ObservabilityRecord>(&*tx, field, arn)?;
    answer(&*tx, &record)
}

pub(crate) fn list(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: ListObservabilityConfigurationsRequest,
) -> OpResult<ListObservabilityConfigurationsResponse> {
    let name = validate::name_filter(
        "ObservabilityConfigurationName",
        &req.observability_configuration_name,
        32,
    )?;
    let max = validate::max_results(req.max_results, MAX_PAGE)?;
    let listing = revisions::list::<ObservabilityRecord>(
        &*tx,
        name.as_deref(),
        req.latest_only.unwrap_or(false),
        max,
        req.next_token.as_deref(),
    )?;
    Ok(ListObservabilityConfigurationsResponse {
        observability_configuration_summary_list: Some(
            listing
                .items
                .into_iter()
                .map(|r| ObservabilityConfigurationSummary {
                    observability_configuration_arn: Some(r.arn),
                    observability_configuration_name: Some(r.name),
                    observability_configuration_revision: Some(r.revision),
                })
                .collect(),
        ),
        next_token: listing.next,
    })
}

pub(crate) fn delete(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: ObservabilityConfigurationArnRequest,
) -> OpResult<ObservabilityConfigurationResponse> {
    let field = "ObservabilityConfigurationArn";
    let arn = validate::required(field, &req.observability_configuration_arn)?;
    let mut record = revisions::to_delete::<ObservabilityRecord>(&*tx, field, arn, false)?
        .pop()
        .ok_or_else(|| ApiError::internal("nothing to delete"))?;
    let used = live_services(&*tx)?.into_iter().any(|(_, s)| {
        s.spec
            .observability_configuration
            .and_then(|o| o.observability_configuration_arn)
            .is_some_and(|a| a == record.arn)
    });
    if used {
        return Err(
            ApiError::invalid(format!("{} is used by at least one service", record.arn)).into(),
        );
    }
    record.deactivate(ctx.now);
    tx.save(&record)?;
    remove_tags(tx, &record.arn)?;
    answer(&*tx, &record)
}
