//! Security groups: CreateSecurityGroup, DescribeSecurityGroups, DeleteSecurityGroup,
//! Authorize/RevokeSecurityGroupEgress and Ingress, DescribeSecurityGroupRules.
//!
//! Rules name IPv4 ranges (`IpRanges`). Egress rules of a connector's groups decide what
//! its services' instances may reach; ingress rules of an endpoint's groups decide which
//! clients may reach private services through it. runway's groups have no members but its
//! own network interfaces, so rules that name other groups, IPv6 ranges or prefix lists
//! are refused rather than stored without effect.

use super::params::{self, Params};
use super::{Ec2Error, Result, Xml, tag_set, vpcs};
use crate::ops::Ctx;
use crate::vpc;
use runway_model::Subnet;
use runway_model::network::*;
use runway_model::records::ConfigStatus;
use runway_store::{Txn, Typed};

/// The rule every new group starts with, as in EC2: everything may leave.
pub(super) fn allow_all() -> SgRule {
    SgRule {
        id: new_ec2_id("sgr"),
        protocol: "-1".into(),
        from_port: -1,
        to_port: -1,
        cidr: Subnet::parse_range("0.0.0.0/0").expect("a valid range"),
        description: None,
    }
}

/// The group `id` names, or `InvalidGroup.NotFound`.
pub(crate) fn load(tx: &dyn Txn, id: &str) -> Result<SecurityGroupRecord> {
    tx.load::<SecurityGroupRecord>(id)?
        .ok_or_else(|| not_found(id))
}

pub(crate) fn not_found(id: &str) -> Ec2Error {
    Ec2Error::new(
        "InvalidGroup.NotFound",
        format!("The security group '{id}' does not exist"),
    )
}

fn group_id(p: &Params) -> Result<&str> {
    if p.get("GroupId").is_none() && p.get("GroupName").is_some() {
        return Err(Ec2Error::new(
            "MissingParameter",
            "The request must contain the parameter GroupId (runway has no default VPC to find GroupName in)",
        ));
    }
    p.required("GroupId")
}

/// A protocol as rules store it.
fn protocol(value: &str) -> Result<String> {
    Ok(match value.to_ascii_lowercase().as_str() {
        "-1" | "all" => "-1".into(),
        "tcp" | "6" => "tcp".into(),
        "udp" | "17" => "udp".into(),
        "icmp" | "1" => "icmp".into(),
        n => match n.parse::<u8>() {
            Ok(n) => n.to_string(),
            Err(_) => {
                return Err(Ec2Error::invalid(format!(
                    "Invalid value '{value}' for IP protocol. Unknown protocol."
                )));
            }
        },
    })
}

/// The rules one `IpPermissions` structure (or the top-level legacy form) asks for: one
/// per IPv4 range.
fn permission_rules(p: &Params, ranges: Vec<(String, Option<String>)>) -> Result<Vec<SgRule>> {
    let protocol = protocol(p.required("IpProtocol")?)?;
    let from = p.int("FromPort")?;
    let to = p.int("ToPort")?;
    let (from, to) = match protocol.as_str() {
        "tcp" | "udp" => {
            let (Some(from), Some(to)) = (from, to) else {
                return Err(Ec2Error::invalid(
                    "Invalid value 'Must specify both from and to ports with TCP/UDP.' for portRange.",
                ));
            };
            if !(0..=65535).contains(&from) || !(0..=65535).contains(&to) || from > to {
                return Err(Ec2Error::invalid(format!(
                    "Invalid value '{from}-{to}' for portRange: ports are 0 to 65535, from at most to"
                )));
            }
            (from, to)
        }
        "icmp" => {
            let (kind, code) = (from.unwrap_or(-1), to.unwrap_or(-1));
            if !(-1..=255).contains(&kind) || !(-1..=255).contains(&code) {
                return Err(Ec2Error::invalid(format!(
                    "Invalid value '{kind}/{code}' for ICMP type/code: -1 (any) or 0 to 255"
                )));
            }
            (kind, code)
        }
        _ => (-1, -1),
    };
    if ranges.is_empty() {
        return Err(Ec2Error::new(
            "MissingParameter",
            "The permission must name at least one IPv4 range (IpRanges.N.CidrIp or CidrIp)",
        ));
    }
    ranges
        .into_iter()
        .map(|(cidr, description)| {
            let range = Subnet::parse_range(&cidr)
                .map_err(|e| Ec2Error::invalid(format!("CIDR block {cidr} is malformed: {e}")))?;
            Ok(SgRule {
                id: new_ec2_id("sgr"),
                protocol: protocol.clone(),
                from_port: from as i32,
                to_port: to as i32,
                cidr: range,
                description,
            })
        })
        .collect()
}

/// Every rule a request asks for, from `IpPermissions.N` or the legacy top-level form.
fn requested_rules(p: &Params) -> Result<Vec<SgRule>> {
    let mut rules = Vec::new();
    let permissions = p.items("IpPermissions");
    if permissions.is_empty() {
        if p.get("IpProtocol").is_none() {
            return Err(Ec2Error::new(
                "MissingParameter",
                "The request must contain the parameter IpPermissions",
            ));
        }
        if p.has("SourceSecurityGroupName") || p.has("DestinationSecurityGroupName") {
            return Err(Ec2Error::invalid(
                "rules that name another group are not supported by runway; name an IPv4 range (CidrIp)",
            ));
        }
        let ranges = p
            .get("CidrIp")
            .map(|c| (c.to_string(), None))
            .into_iter()
            .collect();
        return permission_rules(p, ranges);
    }
    for permission in permissions {
        for unsupported in ["Groups", "Ipv6Ranges", "PrefixListIds"] {
            if permission.has(unsupported) {
                return Err(Ec2Error::invalid(format!(
                    "IpPermissions.{unsupported}: runway's rules name IPv4 ranges (IpRanges) only"
                )));
            }
        }
        let ranges = permission
            .items("IpRanges")
            .into_iter()
            .map(|r| {
                Ok((
                    r.required("CidrIp")?.to_string(),
                    r.get("Description").map(str::to_string),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        rules.extend(permission_rules(&permission, ranges)?);
    }
    Ok(rules)
}

fn describe_permission(rule: &SgRule) -> String {
    let ports = match rule.protocol.as_str() {
        "-1" => "ALL".to_string(),
        _ => format!("from port: {}, to port: {}", rule.from_port, rule.to_port),
    };
    format!(
        "peer: {}, {}, {ports}, ALLOW",
        rule.cidr,
        rule.protocol.to_uppercase()
    )
}

fn write_permission(x: &mut Xml, rule: &SgRule) {
    x.text("ipProtocol", &rule.protocol);
    if rule.protocol != "-1" {
        x.text("fromPort", rule.from_port);
        x.text("toPort", rule.to_port);
    }
    x.list("groups", &[] as &[()], |_, _| {});
    x.list("ipRanges", &[rule], |x, r| {
        x.text("cidrIp", r.cidr);
        if let Some(d) = &r.description {
            x.text("description", d);
        }
    });
    x.list("ipv6Ranges", &[] as &[()], |_, _| {});
    x.list("prefixListIds", &[] as &[()], |_, _| {});
}

fn write_rule(
    x: &mut Xml,
    ctx: &Ctx<'_>,
    group: &SecurityGroupRecord,
    rule: &SgRule,
    egress: bool,
) {
    x.text("securityGroupRuleId", &rule.id);
    x.text("groupId", &group.id);
    x.text("groupOwnerId", &ctx.config.account_id);
    x.text("isEgress", egress);
    x.text("ipProtocol", &rule.protocol);
    x.text("fromPort", rule.from_port);
    x.text("toPort", rule.to_port);
    x.text("cidrIpv4", rule.cidr);
    if let Some(d) = &rule.description {
        x.text("description", d);
    }
    x.text(
        "securityGroupRuleArn",
        format!(
            "arn:aws:ec2:{}:{}:security-group-rule/{}",
            ctx.config.region, ctx.config.account_id, rule.id
        ),
    );
}

fn write_group(x: &mut Xml, ctx: &Ctx<'_>, g: &SecurityGroupRecord) {
    x.text("ownerId", &ctx.config.account_id);
    x.text("groupId", &g.id);
    x.text("groupName", &g.name);
    x.text("groupDescription", &g.description);
    x.text("vpcId", &g.vpc_id);
    x.text(
        "securityGroupArn",
        format!(
            "arn:aws:ec2:{}:{}:security-group/{}",
            ctx.config.region, ctx.config.account_id, g.id
        ),
    );
    x.list("ipPermissions", &g.ingress, write_permission);
    x.list("ipPermissionsEgress", &g.egress, write_permission);
    tag_set(x, &g.tags);
}

pub(super) fn create(tx: &mut dyn Txn, ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<()> {
    let name = p.required("GroupName")?;
    let description = p.required("GroupDescription")?;
    if name.chars().count() > 255 || name.to_ascii_lowercase().starts_with("sg-") {
        return Err(Ec2Error::invalid(format!(
            "Invalid value '{name}' for GroupName: at most 255 characters, not starting with sg-"
        )));
    }
    if description.chars().count() > 255 {
        return Err(Ec2Error::invalid(
            "Invalid value for GroupDescription: at most 255 characters",
        ));
    }
    let Some(vpc_id) = p.get("VpcId") else {
        return Err(Ec2Error::new(
            "VPCIdNotSpecified",
            "No default VPC for this user: name the group's VpcId",
        ));
    };
    let vpc = vpcs::load(&*tx, vpc_id)?;
    if vpc::children::<SecurityGroupRecord>(&*tx, &vpc.id)?
        .iter()
        .any(|g| g.name == name)
    {
        return Err(Ec2Error::new(
            "InvalidGroup.Duplicate",
            format!(
                "The security group '{name}' already exists for VPC '{}'",
                vpc.id
            ),
        ));
    }
    let group = SecurityGroupRecord {
        id: new_ec2_id("sg"),
        vpc_id: vpc.id,
        name: name.to_string(),
        description: description.to_string(),
        ingress: Vec::new(),
        egress: vec![allow_all()],
        default: false,
        tags: p.tag_specifications("security-group")?,
        created_at: ctx.now,
    };
    tx.create(&group)?;
    x.text("return", true);
    x.text("groupId", &group.id);
    x.text(
        "securityGroupArn",
        format!(
            "arn:aws:ec2:{}:{}:security-group/{}",
            ctx.config.region, ctx.config.account_id, group.id
        ),
    );
    tag_set(x, &group.tags);
    Ok(())
}

pub(super) fn describe(tx: &mut dyn Txn, ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<()> {
    let ids = p.list("GroupId");
    let names = p.list("GroupName");
    let groups = params::named(
        vpc::all::<SecurityGroupRecord>(&*tx)?,
        &ids,
        |g| &g.id,
        not_found,
    )?;
    let groups = params::named(
        groups,
        &names,
        |g| &g.name,
        |name| {
            Ec2Error::new(
                "InvalidGroup.NotFound",
                format!("The security group '{name}' does not exist"),
            )
        },
    )?;
    let groups = params::filter(
        groups,
        &p.filters()?,
        |g, name| match name {
            "group-id" => Some(vec![g.id.clone()]),
            "group-name" => Some(vec![g.name.clone()]),
            "vpc-id" => Some(vec![g.vpc_id.clone()]),
            "description" => Some(vec![g.description.clone()]),
            "owner-id" => Some(vec![ctx.config.account_id.clone()]),
            "egress.ip-permission.cidr" => {
                Some(g.egress.iter().map(|r| r.cidr.to_string()).collect())
            }
            "ip-permission.cidr" => Some(g.ingress.iter().map(|r| r.cidr.to_string()).collect()),
            _ => None,
        },
        |g| &g.tags,
    )?;
    let (groups, next) = params::page(groups, p)?;
    x.list("securityGroupInfo", &groups, |x, g| write_group(x, ctx, g));
    if let Some(next) = next {
        x.text("nextToken", next);
    }
    Ok(())
}

pub(super) fn delete(tx: &mut dyn Txn, _ctx: &Ctx<'_>, p: &Params, x: &mut Xml) -> Result<()> {
    let group = load(&*tx, group_id(p)?)?;
    if group.default {
        return Err(Ec2Error::new(
            "CannotDelete",
            format!(
                "the specified group: \"{}\" name: \"default\" cannot be deleted by a user",
                group.id
            ),
        ));
    }
    let mut users: Vec<String> = vpc::all::<VpcConnectorRecord>(&*tx)?
        .into_iter()
        .filter(|c| c.status == ConfigStatus::Active && c.security_groups.contains(&group.id))
        .map(|c| c.arn)
        .collect();
    users.extend(
        vpc::children::<VpcEndpointRecord>(&*tx, &group.vpc_id)?
            .into_iter()
            .filter(|e| e.security_group_ids.contains(&group.id))
            .map(|e| e.id),
    );
    if !users.is_empty() {
        return Err(Ec2Error::new(
            "DependencyViolation",
            format!(
                "resource {} has a dependent object: {}",
                group.id,
                users.join(", ")
            ),
        ));
    }
    tx.remove::<SecurityGroupRecord>(&group.id)?;
    x.text("return", true);
    Ok(())
}

fn authorize(tx: &mut dyn Txn, ctx: &Ctx<'_>, p: &Params, x: &mut Xml, egress: bool) -> Result<()> {
    let mut group = load(&*tx, group_id(p)?)?;
    let new = requested_rules(p)?;
    let rules = if egress {
        &mut group.egress
    } else {
        &mut group.ingress
    };
    for (i, rule) in new.iter().enumerate() {
        if rules
            .iter()
            .chain(&new[..i])
            .any(|r| r.same_permission(rule))
        {
            return Err(Ec2Error::new(
                "InvalidPermission.Duplicate",
                format!(
                    "the specified rule \"{}\" already exists",
                    describe_permission(rule)
                ),
            ));
        }
    }
    rules.extend(new.iter().cloned());
    tx.save(&group)?;
    x.text("return", true);
    x.list("securityGroupRuleSet", &new, |x, r| {
        write_rule(x, ctx, &group, r, egress)
    });
    Ok(())
}

fn revoke(tx: &mut dyn Txn, ctx: &Ctx<'_>, p: &Params, x: &mut Xml, egress: bool) -> Result<()> {
    let mut group = load(&*tx, group_id(p)?)?;
    let ids = p.list("SecurityGroupRuleId");
    let rules = if egress {
        &mut group.egress
    } else {
        &mut group.ingress
    };
    let mut revoked = Vec::new();
    if ids.is_empty() {
        for wanted in requested_rules(p)? {
            let Some(i) = rules.iter().position(|r| r.same_permission(&wanted)) else {
                return Err(Ec2Error::new(
                    "InvalidPermission.NotFound",
                    format!(
                        "The specified rule does not exist in this security group: \"{}\"",
                        describe_permission(&wanted)
                    ),
                ));
            };
            revoked.push(rules.remove(i));
        }
    } else {
        for id in &ids {
            let Some(i) = rules.iter().position(|r| &r.id == id) else {
                return Err(Ec2Error::new(
                    "InvalidSecurityGroupRuleId.NotFound",
                    format!(
                        "The security group rule ID '{id}' does not exist in the {} rules of {}",
                        if egress { "egress" } else { "ingress" },
                        group.id
                    ),
                ));
            };
            revoked.push(rules.remove(i));
        }
    }
    tx.save(&group)?;
    x.text("return", true);
    x.list("revokedSecurityGroupRuleSet", &revoked, |x, r| {
        write_rule(x, ctx, &group, r, egress)
    });
    Ok(())
}

pub(super) fn authorize_egress(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    p: &Params,
    x: &mut Xml,
) -> Result<()> {
    authorize(tx, ctx, p, x, true)
}

pub(super) fn authorize_ingress(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    p: &Params,
    x: &mut Xml,
) -> Result<()> {
    authorize(tx, ctx, p, x, false)
}

pub(super) fn revoke_egress(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    p: &Params,
    x: &mut Xml,
) -> Result<()> {
    revoke(tx, ctx, p, x, true)
}

pub(super) fn revoke_ingress(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    p: &Params,
    x: &mut Xml,
) -> Result<()> {
    revoke(tx, ctx, p, x, false)
}

pub(super) fn describe_rules(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    p: &Params,
    x: &mut Xml,
) -> Result<()> {
    let ids = p.list("SecurityGroupRuleId");
    let mut rules = Vec::new();
    for g in vpc::all::<SecurityGroupRecord>(&*tx)? {
        for (egress, list) in [(false, &g.ingress), (true, &g.egress)] {
            for r in list {
                rules.push((g.clone(), r.clone(), egress));
            }
        }
    }
    let rules = params::named(
        rules,
        &ids,
        |(_, r, _)| &r.id,
        |id| {
            Ec2Error::new(
                "InvalidSecurityGroupRuleId.NotFound",
                format!("The security group rule ID '{id}' does not exist"),
            )
        },
    )?;
    let rules = params::filter(
        rules,
        &p.filters()?,
        |(g, r, _), name| match name {
            "group-id" => Some(vec![g.id.clone()]),
            "security-group-rule-id" => Some(vec![r.id.clone()]),
            _ => None,
        },
        |_| &[],
    )?;
    let (rules, next) = params::page(rules, p)?;
    x.list("securityGroupRuleSet", &rules, |x, (g, r, egress)| {
        write_rule(x, ctx, g, r, *egress)
    });
    if let Some(next) = next {
        x.text("nextToken", next);
    }
    Ok(())
}
