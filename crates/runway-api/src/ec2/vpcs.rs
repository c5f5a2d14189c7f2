//! CreateVpc, DescribeVpcs, DeleteVpc, and CreateTags / DeleteTags on any EC2 resource.

use super::params::{self, Params, check_tags, merge_tags, tag_list};
use super::{Ec2Error, Result, Xml, tag_set};
use crate::ops::Ctx;
use crate::vpc;
use runway_model::Subnet;
use runway_model::network::*;
use runway_model::shapes::Tag;
use runway_store::{Txn, Typed};

/// The largest and smallest VPC and subnet ranges EC2 allows.
pub(super) const PREFIXES: std::ops::RangeInclusive<u8> = 16..=28;

/// Parses a VPC's or subnet's `CidrBlock`; `code` is the error's code
/// (`InvalidVpc.Range`, `InvalidSubnet.Range`).
pub(super) fn cidr_block(p: &Params, code: &'static str) -> Result<Subnet> {
    let text = p.required("CidrBlock")?;
    let cidr = Subnet::parse_range(text)
        .map_err(|e| Ec2Error::new(code, format!("The CIDR '{text}' is invalid: {e}")))?;
    if !PREFIXES.contains(&cidr.prefix()) {
        return Err(Ec2Error::new(
            code,
            format!(
                "The CIDR '{text}' is invalid: the prefix must be between /{} and /{}",
                PREFIXES.start(),
                PREFIXES.end()
            ),
        ));
    }
    Ok(cidr)
}

/// The VPC `id` names, or `InvalidVpcID.NotFound`.
pub(super) fn load(tx: &dyn Txn, id: &str) -> Result<VpcRecord> {
    tx.load::<VpcRecord>(id)?.ok_or_else(|| {
        Ec2Error::new(
            "InvalidVpcID.NotFound",
            format!("The vpc ID '{id}' does not exist"),
        )
    })
}

pub(super) fn write(x: &mut Xml, ctx: &Ctx<'_>, v: &VpcRecord) {
    x.text("vpcId", &v.id);
    x.text("ownerId", &ctx.config.account_id);
    x.text("state", "available");
    x.text("cidrBlock", v.cidr);
    x.list("cidrBlockAssociationSet", &[v], |x, v| {
        x.text("associationId", format!("vpc-cidr-assoc-{}", &v.id[4..]));
        x.text("cidrBlock", v.cidr);
        x.open("cidrBlockState");
        x.text("state", "associated");
        x.close("cidrBlockState");
    });
    x.text("dhcpOptionsId", "default");
    x.text("instanceTenancy", "default");
    x.text("isDefault", false);
    tag_set(x, &v.tags);
}

pub(super) fn create(tx: &mut dyn Txn, ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<()> {
    let cidr = cidr_block(p, "InvalidVpc.Range")?;
    let tags = p.tag_specifications("vpc")?;
    for unsupported in [
        "Ipv6CidrBlock",
        "AmazonProvidedIpv6CidrBlock",
        "Ipv4IpamPoolId",
    ] {
        if p.has(unsupported) {
            return Err(Ec2Error::new(
                "UnsupportedOperation",
                format!("{unsupported}: runway's VPCs are IPv4 ranges given as CidrBlock"),
            ));
        }
    }
    let vpc = VpcRecord {
        id: new_ec2_id("vpc"),
        cidr,
        tags,
        created_at: ctx.now,
    };
    tx.create(&vpc)?;
    // Like EC2, every VPC comes with a default security group that lets everything out.
    tx.create(&SecurityGroupRecord {
        id: new_ec2_id("sg"),
        vpc_id: vpc.id.clone(),
        name: "default".into(),
        description: "default VPC security group".into(),
        ingress: Vec::new(),
        egress: vec![super::groups::allow_all()],
        default: true,
        tags: Vec::new(),
        created_at: ctx.now,
    })?;
    x.open("vpc");
    write(x, ctx, &vpc);
    x.close("vpc");
    Ok(())
}

pub(super) fn describe(tx: &mut dyn Txn, ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<()> {
    let ids = p.list("VpcId");
    let vpcs = params::named(
        vpc::all::<VpcRecord>(&*tx)?,
        &ids,
        |v| &v.id,
        |id| {
            Ec2Error::new(
                "InvalidVpcID.NotFound",
                format!("The vpc ID '{id}' does not exist"),
            )
        },
    )?;
    let vpcs = params::filter(
        vpcs,
        &p.filters()?,
        |v, name| match name {
            "vpc-id" => Some(vec![v.id.clone()]),
            "cidr" | "cidr-block" | "cidr-block-association.cidr-block" => {
                Some(vec![v.cidr.to_string()])
            }
            "state" => Some(vec!["available".into()]),
            "is-default" => Some(vec!["false".into()]),
            "owner-id" => Some(vec![ctx.config.account_id.clone()]),
            _ => None,
        },
        |v| &v.tags,
    )?;
    let (vpcs, next) = params::page(vpcs, p)?;
    x.list("vpcSet", &vpcs, |x, v| write(x, ctx, v));
    if let Some(next) = next {
        x.text("nextToken", next);
    }
    Ok(())
}

pub(super) fn delete(tx: &mut dyn Txn, _ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<()> {
    let vpc = load(&*tx, p.required("VpcId")?)?;
    let subnets = vpc::children::<SubnetRecord>(&*tx, &vpc.id)?;
    let groups = vpc::children::<SecurityGroupRecord>(&*tx, &vpc.id)?;
    let endpoints = vpc::children::<VpcEndpointRecord>(&*tx, &vpc.id)?;
    let mut dependents: Vec<String> = subnets.iter().map(|s| s.id.clone()).collect();
    dependents.extend(groups.iter().filter(|g| !g.default).map(|g| g.id.clone()));
    dependents.extend(endpoints.iter().map(|e| e.id.clone()));
    if !dependents.is_empty() {
        return Err(Ec2Error::new(
            "DependencyViolation",
            format!(
                "The vpc '{}' has dependencies and cannot be deleted: {}",
                vpc.id,
                dependents.join(", ")
            ),
        ));
    }
    for g in groups {
        tx.remove::<SecurityGroupRecord>(&g.id)?;
    }
    tx.remove::<VpcRecord>(&vpc.id)?;
    x.text("return", true);
    Ok(())
}

/// The tags of the resource `id`, for reading and writing back.
enum Tagged {
    Vpc(VpcRecord),
    Subnet(SubnetRecord),
    Group(SecurityGroupRecord),
    Endpoint(VpcEndpointRecord),
}

impl Tagged {
    fn load(tx: &dyn Txn, id: &str) -> Result<Tagged> {
        let missing = || {
            Ec2Error::new(
                "InvalidID",
                format!("The ID '{id}' is not valid or does not exist"),
            )
        };
        let prefix = id.split_once('-').map_or("", |(p, _)| p);
        Ok(match prefix {
            "vpc" => Tagged::Vpc(tx.load(id)?.ok_or_else(missing)?),
            "subnet" => Tagged::Subnet(tx.load(id)?.ok_or_else(missing)?),
            "sg" => Tagged::Group(tx.load(id)?.ok_or_else(missing)?),
            "vpce" => Tagged::Endpoint(tx.load(id)?.ok_or_else(missing)?),
            _ => return Err(missing()),
        })
    }

    fn tags(&mut self) -> &mut Vec<Tag> {
        match self {
            Tagged::Vpc(r) => &mut r.tags,
            Tagged::Subnet(r) => &mut r.tags,
            Tagged::Group(r) => &mut r.tags,
            Tagged::Endpoint(r) => &mut r.tags,
        }
    }

    fn save(&self, tx: &mut dyn Txn) -> Result<()> {
        match self {
            Tagged::Vpc(r) => tx.save(r)?,
            Tagged::Subnet(r) => tx.save(r)?,
            Tagged::Group(r) => tx.save(r)?,
            Tagged::Endpoint(r) => tx.save(r)?,
        };
        Ok(())
    }
}

/// A subnet's interface tag says which interface it uses; it cannot change afterwards.
fn check_interface_tag(resource: &Tagged, tags: &[Tag]) -> Result<()> {
    if matches!(resource, Tagged::Subnet(_))
        && tags.iter().any(|t| t.key.as_deref() == Some(INTERFACE_TAG))
    {
        return Err(Ec2Error::invalid(format!(
            "the tag {INTERFACE_TAG} names a subnet's interface and is set only when the subnet is created"
        )));
    }
    Ok(())
}

pub(super) fn create_tags(tx: &mut dyn Txn, _ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<()> {
    let ids = p.list("ResourceId");
    if ids.is_empty() {
        p.required("ResourceId.1")?;
    }
    let tags = tag_list(p, "Tag")?;
    for id in ids {
        let mut resource = Tagged::load(&*tx, &id)?;
        check_interface_tag(&resource, &tags)?;
        merge_tags(resource.tags(), tags.clone());
        check_tags(resource.tags())?;
        resource.save(tx)?;
    }
    x.text("return", true);
    Ok(())
}

pub(super) fn delete_tags(tx: &mut dyn Txn, _ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<()> {
    let ids = p.list("ResourceId");
    if ids.is_empty() {
        p.required("ResourceId.1")?;
    }
    let gone: Vec<(String, Option<String>)> = p
        .items("Tag")
        .into_iter()
        .map(|t| {
            Ok((
                t.required("Key")?.to_string(),
                t.get("Value").map(str::to_string),
            ))
        })
        .collect::<Result<_>>()?;
    for id in ids {
        let mut resource = Tagged::load(&*tx, &id)?;
        let keys: Vec<Tag> = gone
            .iter()
            .map(|(k, _)| Tag {
                key: Some(k.clone()),
                value: None,
            })
            .collect();
        check_interface_tag(&resource, &keys)?;
        resource.tags().retain(|t| {
            // Without keys every tag goes; a value given must match too.
            !gone.is_empty()
                && !gone.iter().any(|(k, v)| {
                    t.key.as_deref() == Some(k)
                        && v.as_ref().is_none_or(|v| t.value.as_ref() == Some(v))
                })
        });
        resource.save(tx)?;
    }
    x.text("return", true);
    Ok(())
}
