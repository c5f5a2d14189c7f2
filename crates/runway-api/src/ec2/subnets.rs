//! CreateSubnet, DescribeSubnets and DeleteSubnet. A subnet is a bridge runway creates
//! (named after the subnet), or the existing bridge or interface its `runway:interface`
//! tag names; runway-net makes it real and sets its state.

use super::params::{self, Params};
use super::{Ec2Error, Result, Xml, tag_set, vpcs, zone};
use crate::ops::Ctx;
use crate::vpc;
use runway_model::network::*;
use runway_model::shapes::Tag;
use runway_store::{Txn, Typed};

/// The subnet `id` names, or `InvalidSubnetID.NotFound`.
pub(crate) fn load(tx: &dyn Txn, id: &str) -> Result<SubnetRecord> {
    tx.load::<SubnetRecord>(id)?.ok_or_else(|| not_found(id))
}

pub(crate) fn not_found(id: &str) -> Ec2Error {
    Ec2Error::new(
        "InvalidSubnetID.NotFound",
        format!("The subnet ID '{id}' does not exist"),
    )
}

/// The name of the bridge runway creates for subnet `id`: interface names are at most
/// 15 bytes.
fn bridge_name(id: &str) -> String {
    let hex = id.trim_start_matches("subnet-");
    format!("rs{}", &hex[..hex.len().min(13)])
}

/// Whether `name` can be a Linux interface name.
fn interface_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The tags a subnet shows: the user's, its interface, and why it failed if it did.
fn shown_tags(s: &SubnetRecord) -> Vec<Tag> {
    let mut tags = s.tags.clone();
    tags.push(Tag {
        key: Some(INTERFACE_TAG.into()),
        value: Some(s.interface.clone()),
    });
    if let Some(message) = &s.message {
        tags.push(Tag {
            key: Some("runway:error".into()),
            value: Some(message.clone()),
        });
    }
    tags
}

fn write(x: &mut Xml, ctx: &Ctx<'_>, s: &SubnetRecord, used: usize) {
    x.text("subnetId", &s.id);
    x.text(
        "subnetArn",
        format!(
            "arn:aws:ec2:{}:{}:subnet/{}",
            ctx.config.region, ctx.config.account_id, s.id
        ),
    );
    x.text("state", s.state.as_str());
    x.text("vpcId", &s.vpc_id);
    x.text("ownerId", &ctx.config.account_id);
    x.text("cidrBlock", s.cidr);
    x.text("availableIpAddressCount", available_addresses(s.cidr, used));
    x.text("availabilityZone", zone(ctx));
    x.text("availabilityZoneId", format!("{}-az1", ctx.config.region));
    x.text("defaultForAz", false);
    x.text("mapPublicIpOnLaunch", false);
    x.text("assignIpv6AddressOnCreation", false);
    tag_set(x, &shown_tags(s));
}

pub(super) fn create(tx: &mut dyn Txn, ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<()> {
    let vpc = vpcs::load(&*tx, p.required("VpcId")?)?;
    let cidr = vpcs::cidr_block(p, "InvalidSubnet.Range")?;
    if !vpc.cidr.contains(cidr.network()) || cidr.prefix() < vpc.cidr.prefix() {
        return Err(Ec2Error::new(
            "InvalidSubnet.Range",
            format!(
                "The CIDR '{cidr}' is invalid: it is not inside the VPC's {}",
                vpc.cidr
            ),
        ));
    }
    // Subnets of every VPC share the host's routing table, so none may overlap.
    if let Some(other) = vpc::all::<SubnetRecord>(&*tx)?
        .into_iter()
        .find(|s| s.cidr.overlaps(&cidr))
    {
        return Err(Ec2Error::new(
            "InvalidSubnet.Conflict",
            format!(
                "The CIDR '{cidr}' conflicts with another subnet: {} ({})",
                other.id, other.cidr
            ),
        ));
    }
    for unsupported in [
        "Ipv6CidrBlock",
        "Ipv6Native",
        "OutpostArn",
        "Ipv4IpamPoolId",
    ] {
        if p.has(unsupported) {
            return Err(Ec2Error::new(
                "UnsupportedOperation",
                format!("{unsupported}: runway's subnets are IPv4 ranges given as CidrBlock"),
            ));
        }
    }
    let mut tags = p.tag_specifications("subnet")?;
    let named = tags
        .iter()
        .find(|t| t.key.as_deref() == Some(INTERFACE_TAG))
        .and_then(|t| t.value.clone());
    tags.retain(|t| t.key.as_deref() != Some(INTERFACE_TAG));
    let id = new_ec2_id("subnet");
    let (interface, created) = match named {
        Some(name) => {
            if !interface_name_ok(&name) {
                return Err(Ec2Error::invalid(format!(
                    "Tag {INTERFACE_TAG}: '{name}' is not an interface name (1 to 15 letters, digits, '-', '_' and '.')"
                )));
            }
            if let Some(other) = vpc::all::<SubnetRecord>(&*tx)?
                .into_iter()
                .find(|s| s.interface == name)
            {
                return Err(Ec2Error::invalid(format!(
                    "Tag {INTERFACE_TAG}: interface '{name}' already carries subnet {}",
                    other.id
                )));
            }
            (name, false)
        }
        None => (bridge_name(&id), true),
    };
    let subnet = SubnetRecord {
        id,
        vpc_id: vpc.id,
        cidr,
        interface,
        created,
        state: NetworkState::Pending,
        message: None,
        tags,
        created_at: ctx.now,
    };
    tx.create(&subnet)?;
    x.open("subnet");
    write(x, ctx, &subnet, 0);
    x.close("subnet");
    Ok(())
}

pub(super) fn describe(tx: &mut dyn Txn, ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<()> {
    let ids = p.list("SubnetId");
    let subnets = params::named(vpc::all::<SubnetRecord>(&*tx)?, &ids, |s| &s.id, not_found)?;
    let zone = zone(ctx);
    let subnets = params::filter(
        subnets,
        &p.filters()?,
        |s, name| match name {
            "subnet-id" => Some(vec![s.id.clone()]),
            "vpc-id" => Some(vec![s.vpc_id.clone()]),
            "cidr" | "cidr-block" | "cidrBlock" => Some(vec![s.cidr.to_string()]),
            "state" => Some(vec![s.state.as_str().into()]),
            "availability-zone" | "availabilityZone" => Some(vec![zone.clone()]),
            "default-for-az" | "defaultForAz" => Some(vec!["false".into()]),
            "owner-id" => Some(vec![ctx.config.account_id.clone()]),
            _ => None,
        },
        |s| &s.tags,
    )?;
    let (subnets, next) = params::page(subnets, p)?;
    let mut used = Vec::with_capacity(subnets.len());
    for s in &subnets {
        used.push(vpc::children::<NetworkInterfaceRecord>(&*tx, &s.id)?.len());
    }
    let pairs: Vec<_> = subnets.iter().zip(used).collect();
    x.list("subnetSet", &pairs, |x, (s, used)| write(x, ctx, s, *used));
    if let Some(next) = next {
        x.text("nextToken", next);
    }
    Ok(())
}

pub(super) fn delete(tx: &mut dyn Txn, _ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<()> {
    let subnet = load(&*tx, p.required("SubnetId")?)?;
    let held = vpc::children::<NetworkInterfaceRecord>(&*tx, &subnet.id)?;
    if !held.is_empty() {
        let owners: Vec<String> = held.iter().map(|i| i.owner.key()).collect();
        return Err(Ec2Error::new(
            "DependencyViolation",
            format!(
                "The subnet '{}' has dependencies and cannot be deleted: {}",
                subnet.id,
                owners.join(", ")
            ),
        ));
    }
    tx.remove::<SubnetRecord>(&subnet.id)?;
    x.text("return", true);
    Ok(())
}
