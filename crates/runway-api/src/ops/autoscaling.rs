//! The auto scaling configuration operations, and the default configuration that services
//! without one use.

use super::revisions::{self, Revisioned};
use super::shared::{
    DEFAULT_AUTO_SCALING_KEY, auto_scaling, auto_scaling_summary, default_auto_scaling_arn,
    live_services, remove_tags, set_tags,
};
use super::{Ctx, OpResult, Setting, page};
use runway_model::records::{AutoScalingRecord, ConfigStatus};
use runway_model::shapes::*;
use runway_model::{ApiError, ResourceKind, ids, validate};
use runway_store::{Txn, Typed};
use std::collections::HashSet;

/// The name of the configuration App Runner (and runway) provides.
pub(crate) const DEFAULT_NAME: &str = "DefaultConfiguration";
const MAX_PAGE: i64 = 100;

/// Creates the default configuration (100 concurrent requests, 1 to 25 instances) if this
/// data directory has none yet.
pub fn ensure_default(tx: &mut dyn Txn, ctx: &Ctx<'_>) -> OpResult<()> {
    if tx.load::<Setting>(DEFAULT_AUTO_SCALING_KEY)?.is_some() {
        return Ok(());
    }
    let record = new_revision(ctx, DEFAULT_NAME, 1, (100, 1, validate::MAX_INSTANCES));
    tx.create(&record)?;
    tx.save(&Setting {
        key: DEFAULT_AUTO_SCALING_KEY.into(),
        value: record.arn,
    })?;
    Ok(())
}

fn new_revision(
    ctx: &Ctx<'_>,
    name: &str,
    revision: i64,
    (max_concurrency, min_size, max_size): (i64, i64, i64),
) -> AutoScalingRecord {
    AutoScalingRecord {
        arn: ctx.arn(
            ResourceKind::AutoScalingConfiguration,
            &[name, &revision.to_string(), &ids::new_resource_id()],
        ),
        name: name.to_string(),
        revision,
        max_concurrency,
        min_size,
        max_size,
        status: ConfigStatus::Active,
        created_at: ctx.now,
        deleted_at: None,
    }
}

/// What the answers derive: which revision is the default and which are in use.
struct Derived {
    all: Vec<(i64, AutoScalingRecord)>,
    default_arn: String,
    used: HashSet<String>,
}

impl Derived {
    fn load(tx: &dyn Txn) -> OpResult<Self> {
        Self::with(tx, revisions::all(tx)?)
    }

    fn with(tx: &dyn Txn, all: Vec<(i64, AutoScalingRecord)>) -> OpResult<Self> {
        let used = live_services(tx)?
            .into_iter()
            .map(|(_, s)| s.spec.auto_scaling_configuration_arn)
            .collect();
        Ok(Derived {
            all,
            default_arn: default_auto_scaling_arn(tx)?,
            used,
        })
    }

    fn wire(&self, r: &AutoScalingRecord) -> AutoScalingConfiguration {
        AutoScalingConfiguration {
            auto_scaling_configuration_arn: Some(r.arn.clone()),
            auto_scaling_configuration_name: Some(r.name.clone()),
            auto_scaling_configuration_revision: Some(r.revision),
            latest: Some(revisions::is_latest(&self.all, r)),
            status: Some(r.status.to_string()),
            max_concurrency: Some(r.max_concurrency),
            min_size: Some(r.min_size),
            max_size: Some(r.max_size),
            created_at: Some(r.created_at),
            deleted_at: r.deleted_at,
            has_associated_service: Some(self.used.contains(&r.arn)),
            is_default: Some(self.default_arn == r.arn),
        }
    }

    fn summary(&self, r: &AutoScalingRecord) -> AutoScalingConfigurationSummary {
        auto_scaling_summary(r, &self.default_arn, self.used.contains(&r.arn))
    }

    fn answer(&self, r: &AutoScalingRecord) -> AutoScalingConfigurationResponse {
        AutoScalingConfigurationResponse {
            auto_scaling_configuration: Some(self.wire(r)),
        }
    }
}

pub(crate) fn create(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: CreateAutoScalingConfigurationRequest,
) -> OpResult<AutoScalingConfigurationResponse> {
    let name = validate::resource_name(
        "AutoScalingConfigurationName",
        &req.auto_scaling_configuration_name,
        4,
        32,
    )?;
    if name == DEFAULT_NAME {
        return Err(ApiError::invalid(format!(
            "AutoScalingConfigurationName: {DEFAULT_NAME} is reserved"
        ))
        .into());
    }
    let limits = validate::auto_scaling(&req)?;
    let tag_list = validate::tags(&req.tags)?;
    let revision = revisions::next_revision::<AutoScalingRecord>(&*tx, &name, &[DEFAULT_NAME])?;
    let record = new_revision(ctx, &name, revision, limits);
    tx.create(&record)?;
    set_tags(tx, &record.arn, tag_list)?;
    Ok(Derived::load(&*tx)?.answer(&record))
}

pub(crate) fn describe(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: AutoScalingConfigurationArnRequest,
) -> OpResult<AutoScalingConfigurationResponse> {
    let arn = validate::required(
        "AutoScalingConfigurationArn",
        &req.auto_scaling_configuration_arn,
    )?;
    let record = revisions::resolve::<AutoScalingRecord>(&*tx, "AutoScalingConfigurationArn", arn)?;
    Ok(Derived::load(&*tx)?.answer(&record))
}

pub(crate) fn list(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: ListAutoScalingConfigurationsRequest,
) -> OpResult<ListAutoScalingConfigurationsResponse> {
    let name = match &req.auto_scaling_configuration_name {
        Some(_) => Some(validate::resource_name(
            "AutoScalingConfigurationName",
            &req.auto_scaling_configuration_name,
            4,
            32,
        )?),
        None => None,
    };
    let max = validate::max_results(req.max_results, MAX_PAGE)?;
    let listing = revisions::list::<AutoScalingRecord>(
        &*tx,
        name.as_deref(),
        req.latest_only.unwrap_or(false),
        max,
        req.next_token.as_deref(),
    )?;
    let derived = Derived::with(&*tx, listing.all)?;
    Ok(ListAutoScalingConfigurationsResponse {
        auto_scaling_configuration_summary_list: Some(
            listing.items.iter().map(|r| derived.summary(r)).collect(),
        ),
        next_token: listing.next,
    })
}

pub(crate) fn delete(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: DeleteAutoScalingConfigurationRequest,
) -> OpResult<AutoScalingConfigurationResponse> {
    let field = "AutoScalingConfigurationArn";
    let arn = validate::required(field, &req.auto_scaling_configuration_arn)?;
    let doomed = revisions::to_delete::<AutoScalingRecord>(
        &*tx,
        field,
        arn,
        req.delete_all_revisions.unwrap_or(false),
    )?;
    let derived = Derived::load(&*tx)?;
    for r in &doomed {
        if r.arn == derived.default_arn {
            return Err(ApiError::invalid(format!(
                "{} is the default auto scaling configuration; make another one the default first",
                r.arn
            ))
            .into());
        }
        if derived.used.contains(&r.arn) {
            return Err(
                ApiError::invalid(format!("{} is used by at least one service", r.arn)).into(),
            );
        }
    }
    let mut last = None;
    for mut r in doomed {
        r.deactivate(ctx.now);
        tx.save(&r)?;
        remove_tags(tx, &r.arn)?;
        last = Some(r);
    }
    let last = last.ok_or_else(|| ApiError::internal("nothing was deleted"))?;
    Ok(Derived::load(&*tx)?.answer(&last))
}

pub(crate) fn update_default(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: AutoScalingConfigurationArnRequest,
) -> OpResult<AutoScalingConfigurationResponse> {
    let field = "AutoScalingConfigurationArn";
    let arn = validate::required(field, &req.auto_scaling_configuration_arn)?;
    let record = auto_scaling(&*tx, field, arn)?;
    tx.save(&Setting {
        key: DEFAULT_AUTO_SCALING_KEY.into(),
        value: record.arn.clone(),
    })?;
    Ok(Derived::load(&*tx)?.answer(&record))
}

pub(crate) fn list_services(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: ListServicesForAutoScalingConfigurationRequest,
) -> OpResult<ListServicesForAutoScalingConfigurationResponse> {
    let field = "AutoScalingConfigurationArn";
    let arn = validate::required(field, &req.auto_scaling_configuration_arn)?;
    let record = revisions::resolve::<AutoScalingRecord>(&*tx, field, arn)?;
    let max = validate::max_results(req.max_results, MAX_PAGE)?;
    let users: Vec<(i64, String)> = live_services(&*tx)?
        .into_iter()
        .filter(|(_, s)| s.spec.auto_scaling_configuration_arn == record.arn)
        .map(|(seq, s)| (seq, s.arn))
        .collect();
    let (arns, next) = page(users, req.next_token.as_deref(), max)?;
    Ok(ListServicesForAutoScalingConfigurationResponse {
        service_arn_list: Some(arns),
        next_token: next,
    })
}
