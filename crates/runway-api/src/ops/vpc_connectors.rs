//! CreateVpcConnector, DescribeVpcConnector, ListVpcConnectors and DeleteVpcConnector.
//!
//! A connector names subnets of one VPC and security groups of the same VPC (none: the
//! VPC's default group). Each revision holds an address in each of its subnets, which its
//! services' outbound traffic into that subnet comes from; a deleted revision is INACTIVE
//! and gives its addresses back. A connector a live service uses cannot be deleted.

use super::revisions::{self, Revisioned};
use super::shared::{connector_of, live_services, remove_tags, set_tags};
use super::{Ctx, OpResult};
use crate::vpc;
use runway_model::network::*;
use runway_model::records::{ConfigStatus, RevisionRecord, ServiceState};
use runway_model::{ApiError, ResourceKind, ids, validate};
use runway_store::{Txn, Typed};

const MAX_PAGE: i64 = 100;
/// The most subnets and security groups a connector may name.
const MAX_SUBNETS: usize = 16;
const MAX_GROUPS: usize = 5;

fn wire(r: &VpcConnectorRecord) -> VpcConnectorResponse {
    VpcConnectorResponse {
        vpc_connector: Some(VpcConnector {
            vpc_connector_name: Some(r.name.clone()),
            vpc_connector_arn: Some(r.arn.clone()),
            vpc_connector_revision: Some(r.revision),
            subnets: Some(r.subnets.clone()),
            security_groups: Some(r.security_groups.clone()),
            status: Some(r.status.to_string()),
            created_at: Some(r.created_at),
            deleted_at: r.deleted_at,
        }),
    }
}

/// Checks the subnets and security groups a connector names; the subnets and the VPC.
fn check_network(
    tx: &dyn Txn,
    subnet_ids: &[String],
    group_ids: &[String],
) -> OpResult<(Vec<SubnetRecord>, String)> {
    if subnet_ids.is_empty() {
        return Err(ApiError::invalid("Subnets must name at least one subnet").into());
    }
    if subnet_ids.len() > MAX_SUBNETS || group_ids.len() > MAX_GROUPS {
        return Err(ApiError::invalid(format!(
            "a VPC connector names at most {MAX_SUBNETS} Subnets and {MAX_GROUPS} SecurityGroups"
        ))
        .into());
    }
    let mut subnets: Vec<SubnetRecord> = Vec::new();
    for id in subnet_ids {
        let subnet = tx
            .load::<SubnetRecord>(id)?
            .ok_or_else(|| ApiError::invalid(format!("Subnets: subnet {id:?} does not exist")))?;
        if subnets.iter().any(|s| s.id == subnet.id) {
            return Err(ApiError::invalid(format!("Subnets names {id} twice")).into());
        }
        if let Some(first) = subnets.first()
            && first.vpc_id != subnet.vpc_id
        {
            return Err(ApiError::invalid(format!(
                "Subnets must all be in one VPC: {} is in {}, {} in {}",
                first.id, first.vpc_id, subnet.id, subnet.vpc_id
            ))
            .into());
        }
        subnets.push(subnet);
    }
    let vpc_id = subnets[0].vpc_id.clone();
    for (i, id) in group_ids.iter().enumerate() {
        let group = tx.load::<SecurityGroupRecord>(id)?.ok_or_else(|| {
            ApiError::invalid(format!(
                "SecurityGroups: security group {id:?} does not exist"
            ))
        })?;
        if group.vpc_id != vpc_id {
            return Err(ApiError::invalid(format!(
                "SecurityGroups: security group {id} belongs to {}, not to {vpc_id} of the connector's subnets",
                group.vpc_id
            ))
            .into());
        }
        if group_ids[..i].contains(id) {
            return Err(ApiError::invalid(format!("SecurityGroups names {id} twice")).into());
        }
    }
    Ok((subnets, vpc_id))
}

/// The static outbound address the `runway:egress-address` tag asks for: one of the
/// server's egress addresses that no other active connector has.
fn egress_address(
    tx: &dyn Txn,
    ctx: &Ctx<'_>,
    tags: &[runway_model::shapes::Tag],
) -> OpResult<Option<std::net::Ipv4Addr>> {
    let Some(value) = tags
        .iter()
        .find(|t| t.key.as_deref() == Some(EGRESS_ADDRESS_TAG))
        .map(|t| t.value.clone().unwrap_or_default())
    else {
        return Ok(None);
    };
    let field = format!("Tags: {EGRESS_ADDRESS_TAG}");
    let ip: std::net::Ipv4Addr = value
        .parse()
        .map_err(|_| ApiError::invalid(format!("{field}: {value:?} is not an IPv4 address")))?;
    if !ctx.config.egress_addresses.contains(&ip) {
        let offered: Vec<String> = ctx
            .config
            .egress_addresses
            .iter()
            .map(|a| a.to_string())
            .collect();
        return Err(ApiError::invalid(format!(
            "{field}: {ip} is not one of this server's egress addresses ({}; see runway server --egress-address)",
            if offered.is_empty() { "none".to_string() } else { offered.join(", ") }
        ))
        .into());
    }
    if let Some((_, other)) = tx
        .load_all::<VpcConnectorRecord>(&Default::default())?
        .into_iter()
        .find(|(_, c)| c.status == ConfigStatus::Active && c.egress_address == Some(ip))
    {
        return Err(ApiError::invalid(format!(
            "{field}: {ip} is the egress address of {} already",
            other.arn
        ))
        .into());
    }
    Ok(Some(ip))
}

pub(crate) fn create(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: CreateVpcConnectorRequest,
) -> OpResult<VpcConnectorResponse> {
    let name = validate::resource_name("VpcConnectorName", &req.vpc_connector_name, 4, 40)?;
    let subnet_ids = validate::required("Subnets", &req.subnets)?.clone();
    let group_ids = req.security_groups.clone().unwrap_or_default();
    let tag_list = validate::tags(&req.tags)?;
    let (subnets, vpc_id) = check_network(&*tx, &subnet_ids, &group_ids)?;
    let egress_address = egress_address(&*tx, ctx, &tag_list)?;
    let revision = revisions::next_revision::<VpcConnectorRecord>(&*tx, &name, &[])?;
    let record = VpcConnectorRecord {
        arn: ctx.arn(
            ResourceKind::VpcConnector,
            &[&name, &revision.to_string(), &ids::new_resource_id()],
        ),
        name,
        revision,
        vpc_id,
        subnets: subnet_ids,
        security_groups: group_ids,
        status: ConfigStatus::Active,
        created_at: ctx.now,
        deleted_at: None,
        egress_address,
    };
    let owner = InterfaceOwner::Connector {
        arn: record.arn.clone(),
    };
    vpc::allocate_interfaces(tx, &subnets, &owner, ctx.now)?.map_err(|full| {
        ApiError::invalid(format!(
            "Subnets: subnet {} has no free address left",
            full.0
        ))
    })?;
    tx.create(&record)?;
    set_tags(tx, &record.arn, tag_list)?;
    Ok(wire(&record))
}

pub(crate) fn describe(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: VpcConnectorArnRequest,
) -> OpResult<VpcConnectorResponse> {
    let field = "VpcConnectorArn";
    let arn = validate::required(field, &req.vpc_connector_arn)?;
    Ok(wire(&revisions::resolve::<VpcConnectorRecord>(
        &*tx, field, arn,
    )?))
}

pub(crate) fn list(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: ListVpcConnectorsRequest,
) -> OpResult<ListVpcConnectorsResponse> {
    let max = validate::max_results(req.max_results, MAX_PAGE)?;
    let listing =
        revisions::list::<VpcConnectorRecord>(&*tx, None, false, max, req.next_token.as_deref())?;
    Ok(ListVpcConnectorsResponse {
        vpc_connectors: Some(
            listing
                .items
                .iter()
                .filter_map(|r| wire(r).vpc_connector)
                .collect(),
        ),
        next_token: listing.next,
    })
}

pub(crate) fn delete(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: VpcConnectorArnRequest,
) -> OpResult<VpcConnectorResponse> {
    let field = "VpcConnectorArn";
    let arn = validate::required(field, &req.vpc_connector_arn)?;
    let mut record = revisions::to_delete::<VpcConnectorRecord>(&*tx, field, arn, false)?
        .pop()
        .ok_or_else(|| ApiError::internal("nothing to delete"))?;
    let users = users(&*tx, &record.arn)?;
    if !users.is_empty() {
        return Err(ApiError::invalid(format!(
            "{} is used by the service(s) {}; change their egress first",
            record.arn,
            users.join(", ")
        ))
        .into());
    }
    record.deactivate(ctx.now);
    tx.save(&record)?;
    vpc::release_interfaces(
        tx,
        &InterfaceOwner::Connector {
            arn: record.arn.clone(),
        },
    )?;
    remove_tags(tx, &record.arn)?;
    Ok(wire(&record))
}

/// The live services whose configuration, or a revision that still has traffic, sends
/// outbound traffic through connector `arn`.
fn users(tx: &dyn Txn, arn: &str) -> OpResult<Vec<String>> {
    let mut names = Vec::new();
    for (_, service) in live_services(tx)? {
        let mut uses = connector_of(&service.spec.network_configuration) == Some(arn);
        if let Some(state) = tx.load::<ServiceState>(&service.arn)? {
            for target in &state.traffic {
                if let Some(revision) = tx.load::<RevisionRecord>(&target.revision)? {
                    uses |= connector_of(&revision.spec.network_configuration) == Some(arn);
                }
            }
        }
        if uses {
            names.push(service.name);
        }
    }
    Ok(names)
}
