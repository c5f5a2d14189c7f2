//! CreateVpcIngressConnection, DescribeVpcIngressConnection, ListVpcIngressConnections,
//! UpdateVpcIngressConnection and DeleteVpcIngressConnection.
//!
//! A connection serves one service through an interface endpoint of a VPC, at the
//! service's own host name (its DomainName) on the endpoint's addresses. It is created
//! PENDING_CREATION (PENDING_UPDATE after an update, PENDING_DELETION after a delete);
//! the network controller marks it AVAILABLE once the router serves it there, and
//! DELETED once it no longer does.

use super::shared::{load_service, remove_tags, set_tags};
use super::{Ctx, OpResult, page};
use runway_model::network::*;
use runway_model::records::ServiceStatus;
use runway_model::{ApiError, ResourceKind, ids, validate};
use runway_store::{Query, Txn, Typed};

const MAX_PAGE: i64 = 100;

fn wire(r: &IngressConnectionRecord) -> VpcIngressConnectionResponse {
    VpcIngressConnectionResponse {
        vpc_ingress_connection: Some(VpcIngressConnection {
            vpc_ingress_connection_arn: Some(r.arn.clone()),
            vpc_ingress_connection_name: Some(r.name.clone()),
            service_arn: Some(r.service_arn.clone()),
            status: Some(r.status.to_string()),
            account_id: Some(r.account_id.clone()),
            domain_name: Some(r.domain_name.clone()),
            ingress_vpc_configuration: Some(IngressVpcConfiguration {
                vpc_id: Some(r.vpc_id.clone()),
                vpc_endpoint_id: Some(r.vpc_endpoint_id.clone()),
            }),
            created_at: Some(r.created_at),
            deleted_at: r.deleted_at,
        }),
    }
}

fn load(tx: &dyn Txn, arn: &Option<String>) -> OpResult<IngressConnectionRecord> {
    let field = "VpcIngressConnectionArn";
    let arn = validate::arn(field, arn, ResourceKind::VpcIngressConnection)?.to_string();
    tx.load::<IngressConnectionRecord>(&arn)?.ok_or_else(|| {
        ApiError::not_found(format!("VPC ingress connection {arn} does not exist")).into()
    })
}

/// Checks `IngressVpcConfiguration`: a VPC and one of its App Runner endpoints.
fn configuration(
    tx: &dyn Txn,
    ctx: &Ctx<'_>,
    cfg: &Option<IngressVpcConfiguration>,
) -> OpResult<(String, String)> {
    let field = "IngressVpcConfiguration";
    let cfg = validate::required(field, cfg)?;
    let vpc_id = validate::required(&format!("{field}.VpcId"), &cfg.vpc_id)?;
    let endpoint_id = validate::required(&format!("{field}.VpcEndpointId"), &cfg.vpc_endpoint_id)?;
    if tx.load::<VpcRecord>(vpc_id)?.is_none() {
        return Err(
            ApiError::invalid(format!("{field}.VpcId: VPC {vpc_id:?} does not exist")).into(),
        );
    }
    let endpoint = tx.load::<VpcEndpointRecord>(endpoint_id)?.ok_or_else(|| {
        ApiError::invalid(format!(
            "{field}.VpcEndpointId: VPC endpoint {endpoint_id:?} does not exist"
        ))
    })?;
    if endpoint.vpc_id != *vpc_id {
        return Err(ApiError::invalid(format!(
            "{field}.VpcEndpointId: {endpoint_id} belongs to {}, not to {vpc_id}",
            endpoint.vpc_id
        ))
        .into());
    }
    if endpoint.service_name != endpoint_service_name(&ctx.config.region) {
        return Err(ApiError::invalid(format!(
            "{field}.VpcEndpointId: {endpoint_id} is not an endpoint of {}",
            endpoint_service_name(&ctx.config.region)
        ))
        .into());
    }
    Ok((vpc_id.clone(), endpoint_id.clone()))
}

/// The connections that are not deleted.
fn live(tx: &dyn Txn) -> OpResult<Vec<(i64, IngressConnectionRecord)>> {
    Ok(tx
        .load_all::<IngressConnectionRecord>(&Query::default())?
        .into_iter()
        .filter(|(_, c)| c.status != IngressStatus::Deleted)
        .collect())
}

pub(crate) fn create(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: CreateVpcIngressConnectionRequest,
) -> OpResult<VpcIngressConnectionResponse> {
    let service = load_service(&*tx, &req.service_arn)?;
    if service.status == ServiceStatus::Deleted {
        return Err(ApiError::invalid_state(format!("Service {} is deleted", service.arn)).into());
    }
    let name = validate::resource_name(
        "VpcIngressConnectionName",
        &req.vpc_ingress_connection_name,
        4,
        40,
    )?;
    let (vpc_id, endpoint_id) = configuration(&*tx, ctx, &req.ingress_vpc_configuration)?;
    let tag_list = validate::tags(&req.tags)?;
    let existing = live(&*tx)?;
    if existing.iter().any(|(_, c)| c.name == name) {
        return Err(ApiError::invalid(format!(
            "VpcIngressConnectionName: a VPC ingress connection named {name:?} already exists"
        ))
        .into());
    }
    if let Some((_, other)) = existing.iter().find(|(_, c)| c.service_arn == service.arn) {
        return Err(ApiError::invalid_state(format!(
            "Service {} already has the VPC ingress connection {}",
            service.arn, other.arn
        ))
        .into());
    }
    let record = IngressConnectionRecord {
        arn: ctx.arn(
            ResourceKind::VpcIngressConnection,
            &[&name, &ids::new_resource_id()],
        ),
        name,
        service_arn: service.arn,
        vpc_id,
        vpc_endpoint_id: endpoint_id,
        status: IngressStatus::PendingCreation,
        domain_name: service.url,
        account_id: ctx.config.account_id.clone(),
        created_at: ctx.now,
        deleted_at: None,
    };
    tx.create(&record)?;
    set_tags(tx, &record.arn, tag_list)?;
    Ok(wire(&record))
}

pub(crate) fn describe(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: VpcIngressConnectionArnRequest,
) -> OpResult<VpcIngressConnectionResponse> {
    Ok(wire(&load(&*tx, &req.vpc_ingress_connection_arn)?))
}

pub(crate) fn list(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: ListVpcIngressConnectionsRequest,
) -> OpResult<ListVpcIngressConnectionsResponse> {
    let max = validate::max_results(req.max_results, MAX_PAGE)?;
    let filter = req.filter.unwrap_or_default();
    if let Some(arn) = &filter.service_arn {
        validate::parse_arn("Filter.ServiceArn", arn, ResourceKind::Service)?;
    }
    let chosen: Vec<(i64, IngressConnectionRecord)> = live(&*tx)?
        .into_iter()
        .filter(|(_, c)| {
            filter
                .service_arn
                .as_ref()
                .is_none_or(|a| *a == c.service_arn)
        })
        .filter(|(_, c)| {
            filter
                .vpc_endpoint_id
                .as_ref()
                .is_none_or(|e| *e == c.vpc_endpoint_id)
        })
        .collect();
    let (items, next) = page(chosen, req.next_token.as_deref(), max)?;
    Ok(ListVpcIngressConnectionsResponse {
        vpc_ingress_connection_summary_list: Some(
            items
                .into_iter()
                .map(|c| VpcIngressConnectionSummary {
                    vpc_ingress_connection_arn: Some(c.arn),
                    service_arn: Some(c.service_arn),
                })
                .collect(),
        ),
        next_token: next,
    })
}

/// Refuses a change unless the connection is in one of `allowed`.
fn require_status(
    r: &IngressConnectionRecord,
    allowed: &[IngressStatus],
    what: &str,
) -> OpResult<()> {
    if !allowed.contains(&r.status) {
        let names: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
        return Err(ApiError::invalid_state(format!(
            "VPC ingress connection {} is {}; it can be {what} only when {}",
            r.arn,
            r.status,
            names.join(", ")
        ))
        .into());
    }
    Ok(())
}

pub(crate) fn update(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: UpdateVpcIngressConnectionRequest,
) -> OpResult<VpcIngressConnectionResponse> {
    let mut record = load(&*tx, &req.vpc_ingress_connection_arn)?;
    let (vpc_id, endpoint_id) = configuration(&*tx, ctx, &req.ingress_vpc_configuration)?;
    require_status(
        &record,
        &[
            IngressStatus::Available,
            IngressStatus::FailedCreation,
            IngressStatus::FailedUpdate,
        ],
        "updated",
    )?;
    record.vpc_id = vpc_id;
    record.vpc_endpoint_id = endpoint_id;
    record.status = IngressStatus::PendingUpdate;
    tx.save(&record)?;
    Ok(wire(&record))
}

pub(crate) fn delete(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: VpcIngressConnectionArnRequest,
) -> OpResult<VpcIngressConnectionResponse> {
    let mut record = load(&*tx, &req.vpc_ingress_connection_arn)?;
    require_status(
        &record,
        &[
            IngressStatus::Available,
            IngressStatus::FailedCreation,
            IngressStatus::FailedUpdate,
            IngressStatus::FailedDeletion,
        ],
        "deleted",
    )?;
    record.status = IngressStatus::PendingDeletion;
    tx.save(&record)?;
    remove_tags(tx, &record.arn)?;
    Ok(wire(&record))
}
