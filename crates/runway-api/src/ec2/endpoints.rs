//! Interface endpoints of App Runner's request service (CreateVpcEndpoint,
//! DescribeVpcEndpoints, DeleteVpcEndpoints) and the network interfaces runway holds in
//! subnets for endpoints and connectors (DescribeNetworkInterfaces).
//!
//! An endpoint gets an address in each of its subnets; runway's router serves the private
//! services connected to it (VPC ingress connections) there, to the clients its security
//! groups' ingress rules let in.

use super::params::{self, Params};
use super::{Ec2Error, Result, Xml, groups, subnets, tag_set, vpcs, zone};
use crate::ops::Ctx;
use crate::vpc;
use runway_model::network::*;
use runway_store::{Txn, Typed};

fn not_found(id: &str) -> Ec2Error {
    Ec2Error::new(
        "InvalidVpcEndpointId.NotFound",
        format!("The Vpc Endpoint Id '{id}' does not exist"),
    )
}

/// As EC2 writes times: `2026-12-03T10:00:00.000Z`.
fn iso_time(t: runway_model::Timestamp) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.millis()) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_default()
}

fn write(
    x: &mut Xml,
    ctx: &Ctx<'_>,
    e: &VpcEndpointRecord,
    groups: &[SecurityGroupRecord],
    interfaces: &[NetworkInterfaceRecord],
) {
    x.text("vpcEndpointId", &e.id);
    x.text("vpcEndpointType", "Interface");
    x.text("vpcId", &e.vpc_id);
    x.text("serviceName", &e.service_name);
    x.text("state", e.state.as_str());
    x.strings("subnetIdSet", &e.subnet_ids);
    x.list("groupSet", groups, |x, g| {
        x.text("groupId", &g.id);
        x.text("groupName", &g.name);
    });
    let ids: Vec<String> = interfaces.iter().map(|i| i.id.clone()).collect();
    x.strings("networkInterfaceIdSet", &ids);
    x.text("ipAddressType", "ipv4");
    x.text("privateDnsEnabled", false);
    x.text("requesterManaged", false);
    x.text("creationTimestamp", iso_time(e.created_at));
    x.text("ownerId", &ctx.config.account_id);
    if let Some(message) = &e.message {
        x.open("lastError");
        x.text("message", message);
        x.text("code", "runway");
        x.close("lastError");
    }
    tag_set(x, &e.tags);
}

/// The groups an endpoint uses: those it names, or its VPC's default group.
fn groups_of(tx: &dyn Txn, e: &VpcEndpointRecord) -> Result<Vec<SecurityGroupRecord>> {
    let mut groups = Vec::new();
    for id in &e.security_group_ids {
        if let Some(g) = tx.load::<SecurityGroupRecord>(id)? {
            groups.push(g);
        }
    }
    Ok(groups)
}

pub(super) fn create(tx: &mut dyn Txn, ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<()> {
    let vpc = vpcs::load(&*tx, p.required("VpcId")?)?;
    let service = p.required("ServiceName")?;
    let expected = endpoint_service_name(&ctx.config.region);
    if service != expected {
        return Err(Ec2Error::new(
            "InvalidServiceName",
            format!(
                "The Vpc Endpoint Service '{service}' does not exist (runway offers {expected})"
            ),
        ));
    }
    let kind = p.get("VpcEndpointType").unwrap_or("Gateway");
    if kind != "Interface" {
        return Err(Ec2Error::invalid(format!(
            "VpcEndpointType: the endpoint service {expected} takes Interface endpoints, got '{kind}'"
        )));
    }
    if p.bool("PrivateDnsEnabled")? == Some(true) {
        return Err(Ec2Error::invalid(
            "PrivateDnsEnabled: runway has no private DNS; clients use the VPC ingress connection's DomainName at the endpoint's addresses",
        ));
    }
    if p.has("PolicyDocument") || p.has("RouteTableId") {
        return Err(Ec2Error::invalid(
            "PolicyDocument and RouteTableId do not apply to App Runner's interface endpoints",
        ));
    }
    let subnet_ids = p.list("SubnetId");
    if subnet_ids.is_empty() {
        return Err(Ec2Error::new(
            "MissingParameter",
            "The request must contain the parameter SubnetId (an interface endpoint needs a subnet)",
        ));
    }
    let mut subnets = Vec::new();
    for id in &subnet_ids {
        let s = subnets::load(&*tx, id)?;
        if s.vpc_id != vpc.id {
            return Err(Ec2Error::invalid(format!(
                "The subnet '{id}' belongs to {}, not to the endpoint's VPC {}",
                s.vpc_id, vpc.id
            )));
        }
        if subnets.iter().any(|o: &SubnetRecord| o.id == s.id) {
            return Err(Ec2Error::invalid(format!(
                "The subnet '{id}' is named twice"
            )));
        }
        subnets.push(s);
    }
    let mut group_ids = p.list("SecurityGroupId");
    if group_ids.is_empty() {
        let default = vpc::default_group(&*tx, &vpc.id)?
            .ok_or_else(|| Ec2Error::internal(format!("{} has no default group", vpc.id)))?;
        group_ids.push(default.id);
    }
    for id in &group_ids {
        let g = groups::load(&*tx, id)?;
        if g.vpc_id != vpc.id {
            return Err(Ec2Error::invalid(format!(
                "The security group '{id}' belongs to {}, not to the endpoint's VPC {}",
                g.vpc_id, vpc.id
            )));
        }
    }
    let endpoint = VpcEndpointRecord {
        id: new_ec2_id("vpce"),
        vpc_id: vpc.id,
        service_name: service.to_string(),
        subnet_ids,
        security_group_ids: group_ids,
        state: NetworkState::Pending,
        message: None,
        tags: p.tag_specifications("vpc-endpoint")?,
        created_at: ctx.now,
    };
    let owner = InterfaceOwner::Endpoint {
        id: endpoint.id.clone(),
    };
    let interfaces = vpc::allocate_interfaces(tx, &subnets, &owner, ctx.now)?.map_err(|full| {
        Ec2Error::new(
            "InsufficientFreeAddressesInSubnet",
            format!("The subnet '{}' has no free address left", full.0),
        )
    })?;
    tx.create(&endpoint)?;
    x.open("vpcEndpoint");
    write(x, ctx, &endpoint, &groups_of(&*tx, &endpoint)?, &interfaces);
    x.close("vpcEndpoint");
    Ok(())
}

pub(super) fn describe(tx: &mut dyn Txn, ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<()> {
    let ids = p.list("VpcEndpointId");
    let endpoints = params::named(
        vpc::all::<VpcEndpointRecord>(&*tx)?,
        &ids,
        |e| &e.id,
        not_found,
    )?;
    let endpoints = params::filter(
        endpoints,
        &p.filters()?,
        |e, name| match name {
            "vpc-endpoint-id" => Some(vec![e.id.clone()]),
            "vpc-id" => Some(vec![e.vpc_id.clone()]),
            "service-name" => Some(vec![e.service_name.clone()]),
            "vpc-endpoint-state" => Some(vec![e.state.as_str().into()]),
            "vpc-endpoint-type" => Some(vec!["Interface".into()]),
            _ => None,
        },
        |e| &e.tags,
    )?;
    let (endpoints, next) = params::page(endpoints, p)?;
    let mut details = Vec::new();
    for e in endpoints {
        let groups = groups_of(&*tx, &e)?;
        let interfaces = vpc::interfaces_of(&*tx, &InterfaceOwner::Endpoint { id: e.id.clone() })?;
        details.push((e, groups, interfaces));
    }
    x.list("vpcEndpointSet", &details, |x, (e, g, i)| {
        write(x, ctx, e, g, i)
    });
    if let Some(next) = next {
        x.text("nextToken", next);
    }
    Ok(())
}

pub(super) fn delete(tx: &mut dyn Txn, _ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<()> {
    let ids = p.list("VpcEndpointId");
    if ids.is_empty() {
        p.required("VpcEndpointId.1")?;
    }
    let mut failed = Vec::new();
    for id in ids {
        let Some(endpoint) = tx.load::<VpcEndpointRecord>(&id)? else {
            failed.push((id.clone(), not_found(&id)));
            continue;
        };
        let connections: Vec<String> = vpc::all::<IngressConnectionRecord>(&*tx)?
            .into_iter()
            .filter(|c| c.vpc_endpoint_id == id && c.status != IngressStatus::Deleted)
            .map(|c| c.arn)
            .collect();
        if !connections.is_empty() {
            failed.push((
                id.clone(),
                Ec2Error::new(
                    "DependencyViolation",
                    format!(
                        "The Vpc Endpoint '{id}' serves VPC ingress connections; delete them first: {}",
                        connections.join(", ")
                    ),
                ),
            ));
            continue;
        }
        vpc::release_interfaces(tx, &InterfaceOwner::Endpoint { id: id.clone() })?;
        tx.remove::<VpcEndpointRecord>(&endpoint.id)?;
    }
    x.list("unsuccessful", &failed, |x, (id, e)| {
        x.open("error");
        x.text("code", e.code);
        x.text("message", &e.message);
        x.close("error");
        x.text("resourceId", id);
    });
    Ok(())
}

pub(super) fn describe_interfaces(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    p: &Params,
    x: &mut Xml,
) -> Result<()> {
    let ids = p.list("NetworkInterfaceId");
    let interfaces = params::named(
        vpc::all::<NetworkInterfaceRecord>(&*tx)?,
        &ids,
        |i| &i.id,
        |id| {
            Ec2Error::new(
                "InvalidNetworkInterfaceID.NotFound",
                format!("The networkInterface ID '{id}' does not exist"),
            )
        },
    )?;
    let interfaces = params::filter(
        interfaces,
        &p.filters()?,
        |i, name| match name {
            "network-interface-id" => Some(vec![i.id.clone()]),
            "subnet-id" => Some(vec![i.subnet_id.clone()]),
            "vpc-id" => Some(vec![i.vpc_id.clone()]),
            "private-ip-address" | "addresses.private-ip-address" => Some(vec![i.ip.to_string()]),
            _ => None,
        },
        |_| &[],
    )?;
    let (interfaces, next) = params::page(interfaces, p)?;
    let zone = zone(ctx);
    x.list("networkInterfaceSet", &interfaces, |x, i| {
        x.text("networkInterfaceId", &i.id);
        x.text("subnetId", &i.subnet_id);
        x.text("vpcId", &i.vpc_id);
        x.text("availabilityZone", &zone);
        let (description, kind) = match &i.owner {
            InterfaceOwner::Connector { arn } => {
                (format!("AppRunner VPC connector {arn}"), "interface")
            }
            InterfaceOwner::Endpoint { id } => {
                (format!("VPC Endpoint Interface {id}"), "vpc_endpoint")
            }
        };
        x.text("description", description);
        x.text("interfaceType", kind);
        x.text("ownerId", &ctx.config.account_id);
        x.text("requesterManaged", true);
        x.text("status", "in-use");
        x.text("privateIpAddress", i.ip);
        x.list("privateIpAddressesSet", &[i.ip], |x, ip| {
            x.text("privateIpAddress", ip);
            x.text("primary", true);
        });
        x.text("sourceDestCheck", true);
    });
    if let Some(next) = next {
        x.text("nextToken", next);
    }
    Ok(())
}
