//! `runway networks`: users' private networks (VPCs, subnets, security groups, interface
//! endpoints) through runway's EC2 subset, and VPC connectors through App Runner's API.

use crate::ClientArgs;
use crate::client::Client;
use crate::commands::{Output, all_pages, block_on, print_json, print_table, text};
use anyhow::{Result, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Direction {
    /// Traffic a connector's services send (egress rules).
    Egress,
    /// Clients that connect to an endpoint (ingress rules).
    Ingress,
}

#[derive(Debug, Subcommand)]
pub enum NetworksCommand {
    /// List VPCs, subnets, security groups, interface endpoints and VPC connectors.
    Ls,
    /// Create a VPC: an address range (/16 to /28) for subnets, with a default security
    /// group that lets everything out.
    Create {
        cidr: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Add a subnet to a VPC: a bridge runway creates, or with --interface an existing
    /// bridge or interface (a VM network, a container network, a LAN port).
    Subnet {
        vpc: String,
        cidr: String,
        #[arg(long)]
        interface: Option<String>,
        #[arg(long)]
        name: Option<String>,
    },
    /// Create a security group in a VPC (it lets everything out until its rules change).
    Group {
        vpc: String,
        name: String,
        #[arg(long, default_value = "made with runway networks group")]
        description: String,
    },
    /// Let traffic through a security group: out to a range (egress) or in from one
    /// (ingress).
    Allow {
        group: String,
        direction: Direction,
        /// The peer's IPv4 range, e.g. 10.250.1.0/24 or 0.0.0.0/0.
        #[arg(long)]
        cidr: String,
        /// tcp, udp, icmp, or all.
        #[arg(long, default_value = "tcp")]
        protocol: String,
        /// A port or a range (FROM-TO) for tcp and udp.
        #[arg(long)]
        port: Option<String>,
    },
    /// Remove a rule (by its sgr- id, see `ls --output json`) from a security group.
    Revoke {
        group: String,
        direction: Direction,
        rule: String,
    },
    /// Create a VPC connector: services that name it send their outbound traffic into its
    /// subnets, as its security groups' egress rules allow.
    Connector {
        name: String,
        #[arg(long = "subnet", required = true)]
        subnets: Vec<String>,
        /// Security groups [default: the VPC's default group].
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Create an interface endpoint: private services connected to it (VPC ingress
    /// connections) answer at its address in each subnet, on port 443.
    Endpoint {
        vpc: String,
        #[arg(long = "subnet", required = true)]
        subnets: Vec<String>,
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Delete VPCs, subnets, security groups and endpoints (by id) or VPC connectors (by
    /// ARN).
    Rm {
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// `name.1=a&name.2=b...`.
fn numbered(name: &str, values: &[String]) -> Vec<(String, String)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("{name}.{}", i + 1), v.clone()))
        .collect()
}

fn name_tag(kind: &str, name: Option<String>) -> Vec<(String, String)> {
    name.map(|n| {
        vec![
            ("TagSpecification.1.ResourceType".into(), kind.into()),
            ("TagSpecification.1.Tag.1.Key".into(), "Name".into()),
            ("TagSpecification.1.Tag.1.Value".into(), n),
        ]
    })
    .unwrap_or_default()
}

/// The elements of an EC2 list (null when empty).
fn items(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

fn tag(v: &Value, key: &str) -> String {
    items(&v["tagSet"])
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| text(&t["value"]))
        .unwrap_or_else(|| "-".into())
}

/// A rule as one line: `tcp 5432 10.250.1.0/24`.
fn rule_line(r: &Value) -> String {
    let protocol = text(&r["ipProtocol"]);
    let ports = match (r["fromPort"].as_str(), r["toPort"].as_str()) {
        (Some(a), Some(b)) if a == b => format!(" {a}"),
        (Some(a), Some(b)) => format!(" {a}-{b}"),
        _ => String::new(),
    };
    let ranges: Vec<String> = items(&r["ipRanges"])
        .iter()
        .map(|x| text(&x["cidrIp"]))
        .collect();
    let protocol = if protocol == "-1" {
        "all".into()
    } else {
        protocol
    };
    format!("{protocol}{ports} {}", ranges.join(","))
}

pub fn networks(command: NetworksCommand, args: &ClientArgs) -> Result<()> {
    let client = Client::new(args)?;
    block_on(async {
        match command {
            NetworksCommand::Ls => ls(&client, args.output).await,
            NetworksCommand::Create { cidr, name } => {
                let mut params = vec![("CidrBlock".to_string(), cidr)];
                params.extend(name_tag("vpc", name));
                let out = client.call_ec2("CreateVpc", &params).await?;
                println!("{}", text(&out["vpc"]["vpcId"]));
                Ok(())
            }
            NetworksCommand::Subnet {
                vpc,
                cidr,
                interface,
                name,
            } => {
                let mut params = vec![("VpcId".to_string(), vpc), ("CidrBlock".to_string(), cidr)];
                let mut tags = Vec::new();
                if let Some(i) = interface {
                    tags.push(("runway:interface".to_string(), i));
                }
                if let Some(n) = name {
                    tags.push(("Name".to_string(), n));
                }
                if !tags.is_empty() {
                    params.push(("TagSpecification.1.ResourceType".into(), "subnet".into()));
                    for (i, (k, v)) in tags.into_iter().enumerate() {
                        params.push((format!("TagSpecification.1.Tag.{}.Key", i + 1), k));
                        params.push((format!("TagSpecification.1.Tag.{}.Value", i + 1), v));
                    }
                }
                let out = client.call_ec2("CreateSubnet", &params).await?;
                println!(
                    "{} on {} ({}; `runway networks ls` shows when it is available)",
                    text(&out["subnet"]["subnetId"]),
                    tag(&out["subnet"], "runway:interface"),
                    text(&out["subnet"]["state"])
                );
                Ok(())
            }
            NetworksCommand::Group {
                vpc,
                name,
                description,
            } => {
                let params = [
                    ("VpcId".to_string(), vpc),
                    ("GroupName".to_string(), name),
                    ("GroupDescription".to_string(), description),
                ];
                let out = client.call_ec2("CreateSecurityGroup", &params).await?;
                println!("{}", text(&out["groupId"]));
                Ok(())
            }
            NetworksCommand::Allow {
                group,
                direction,
                cidr,
                protocol,
                port,
            } => {
                let protocol = if protocol == "all" {
                    "-1".into()
                } else {
                    protocol
                };
                let mut params = vec![
                    ("GroupId".to_string(), group),
                    ("IpPermissions.1.IpProtocol".to_string(), protocol.clone()),
                    ("IpPermissions.1.IpRanges.1.CidrIp".to_string(), cidr),
                ];
                if let Some(port) = port {
                    let (from, to) = port.split_once('-').unwrap_or((&port, &port));
                    params.push(("IpPermissions.1.FromPort".into(), from.into()));
                    params.push(("IpPermissions.1.ToPort".into(), to.into()));
                } else if protocol == "tcp" || protocol == "udp" {
                    bail!("--port is needed for {protocol}");
                }
                let action = match direction {
                    Direction::Egress => "AuthorizeSecurityGroupEgress",
                    Direction::Ingress => "AuthorizeSecurityGroupIngress",
                };
                let out = client.call_ec2(action, &params).await?;
                for r in items(&out["securityGroupRuleSet"]) {
                    println!("{}", text(&r["securityGroupRuleId"]));
                }
                Ok(())
            }
            NetworksCommand::Revoke {
                group,
                direction,
                rule,
            } => {
                let action = match direction {
                    Direction::Egress => "RevokeSecurityGroupEgress",
                    Direction::Ingress => "RevokeSecurityGroupIngress",
                };
                let params = [
                    ("GroupId".to_string(), group),
                    ("SecurityGroupRuleId.1".to_string(), rule),
                ];
                client.call_ec2(action, &params).await?;
                Ok(())
            }
            NetworksCommand::Connector {
                name,
                subnets,
                groups,
            } => {
                let out = client
                    .call(
                        "CreateVpcConnector",
                        &json!({ "VpcConnectorName": name, "Subnets": subnets, "SecurityGroups": groups }),
                    )
                    .await?;
                println!("{}", text(&out["VpcConnector"]["VpcConnectorArn"]));
                Ok(())
            }
            NetworksCommand::Endpoint {
                vpc,
                subnets,
                groups,
            } => {
                let mut params = vec![
                    ("VpcId".to_string(), vpc),
                    ("VpcEndpointType".to_string(), "Interface".to_string()),
                    (
                        "ServiceName".to_string(),
                        format!("com.amazonaws.{}.apprunner.requests", client.region()),
                    ),
                ];
                params.extend(numbered("SubnetId", &subnets));
                params.extend(numbered("SecurityGroupId", &groups));
                let out = client.call_ec2("CreateVpcEndpoint", &params).await?;
                println!("{}", text(&out["vpcEndpoint"]["vpcEndpointId"]));
                Ok(())
            }
            NetworksCommand::Rm { ids } => {
                for id in ids {
                    let prefix = id.split_once('-').map_or("", |(p, _)| p);
                    match prefix {
                        "vpc" => {
                            client
                                .call_ec2("DeleteVpc", &[("VpcId".into(), id)])
                                .await?
                        }
                        "subnet" => {
                            client
                                .call_ec2("DeleteSubnet", &[("SubnetId".into(), id)])
                                .await?
                        }
                        "sg" => {
                            client
                                .call_ec2("DeleteSecurityGroup", &[("GroupId".into(), id)])
                                .await?
                        }
                        "vpce" => {
                            let out = client
                                .call_ec2("DeleteVpcEndpoints", &[("VpcEndpointId.1".into(), id)])
                                .await?;
                            if let Some(failed) = items(&out["unsuccessful"]).first() {
                                bail!(
                                    "{}: {}",
                                    text(&failed["error"]["code"]),
                                    text(&failed["error"]["message"])
                                );
                            }
                            out
                        }
                        _ if id.starts_with("arn:") => {
                            client
                                .call("DeleteVpcConnector", &json!({ "VpcConnectorArn": id }))
                                .await?
                        }
                        _ => bail!(
                            "{id} is not the id of a VPC, subnet, security group or endpoint, nor a connector's ARN"
                        ),
                    };
                }
                Ok(())
            }
        }
    })
}

async fn ls(client: &Client, output: Output) -> Result<()> {
    let vpcs = items(&client.call_ec2("DescribeVpcs", &[]).await?["vpcSet"]);
    let subnets = items(&client.call_ec2("DescribeSubnets", &[]).await?["subnetSet"]);
    let groups = items(&client.call_ec2("DescribeSecurityGroups", &[]).await?["securityGroupInfo"]);
    let endpoints = items(&client.call_ec2("DescribeVpcEndpoints", &[]).await?["vpcEndpointSet"]);
    let interfaces =
        items(&client.call_ec2("DescribeNetworkInterfaces", &[]).await?["networkInterfaceSet"]);
    let connectors = all_pages(
        client,
        "AppRunner.ListVpcConnectors",
        json!({}),
        "VpcConnectors",
    )
    .await?;
    if output == Output::Json {
        return print_json(&json!({
            "Vpcs": vpcs,
            "Subnets": subnets,
            "SecurityGroups": groups,
            "VpcEndpoints": endpoints,
            "NetworkInterfaces": interfaces,
            "VpcConnectors": connectors,
        }));
    }
    let address_of = |owner: &str| -> String {
        let found: Vec<String> = interfaces
            .iter()
            .filter(|i| text(&i["description"]).ends_with(owner))
            .map(|i| text(&i["privateIpAddress"]))
            .collect();
        found.join(",")
    };
    let rows: Vec<Vec<String>> = vpcs
        .iter()
        .map(|v| vec![text(&v["vpcId"]), text(&v["cidrBlock"]), tag(v, "Name")])
        .collect();
    print_table(&["VPC", "CIDR", "NAME"], &rows);
    println!();
    let rows: Vec<Vec<String>> = subnets
        .iter()
        .map(|s| {
            vec![
                text(&s["subnetId"]),
                text(&s["vpcId"]),
                text(&s["cidrBlock"]),
                tag(s, "runway:interface"),
                text(&s["state"]),
                text(&s["availableIpAddressCount"]),
                tag(s, "runway:error"),
            ]
        })
        .collect();
    print_table(
        &[
            "SUBNET",
            "VPC",
            "CIDR",
            "INTERFACE",
            "STATE",
            "FREE",
            "ERROR",
        ],
        &rows,
    );
    println!();
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let out: Vec<String> = items(&g["ipPermissionsEgress"])
                .iter()
                .map(rule_line)
                .collect();
            let inbound: Vec<String> = items(&g["ipPermissions"]).iter().map(rule_line).collect();
            vec![
                text(&g["groupId"]),
                text(&g["vpcId"]),
                text(&g["groupName"]),
                out.join("; "),
                inbound.join("; "),
            ]
        })
        .collect();
    print_table(&["GROUP", "VPC", "NAME", "EGRESS", "INGRESS"], &rows);
    println!();
    let rows: Vec<Vec<String>> = endpoints
        .iter()
        .map(|e| {
            let id = text(&e["vpcEndpointId"]);
            vec![
                id.clone(),
                text(&e["vpcId"]),
                text(&e["state"]),
                address_of(&id),
            ]
        })
        .collect();
    print_table(&["ENDPOINT", "VPC", "STATE", "ADDRESSES (port 443)"], &rows);
    println!();
    let rows: Vec<Vec<String>> = connectors
        .iter()
        .map(|c| {
            let arn = text(&c["VpcConnectorArn"]);
            let list = |k: &str| items(&c[k]).iter().map(text).collect::<Vec<_>>().join(",");
            vec![
                text(&c["VpcConnectorName"]),
                text(&c["VpcConnectorRevision"]),
                list("Subnets"),
                list("SecurityGroups"),
                address_of(&arn),
                arn,
            ]
        })
        .collect();
    print_table(
        &["CONNECTOR", "REV", "SUBNETS", "GROUPS", "ADDRESSES", "ARN"],
        &rows,
    );
    Ok(())
}
