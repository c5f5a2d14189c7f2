//! Private networks, App Runner's VPC side: the EC2 resources users declare (VPCs,
//! subnets, security groups, interface endpoints, and the network interfaces runway places
//! in subnets for them), App Runner's VPC connectors and VPC ingress connections, and the
//! wire shapes of the App Runner operations on the last two.
//!
//! The API records these; `runway-net` makes them real on the host (a subnet is a bridge
//! runway creates or an interface the user names; a network interface is an address on
//! it) and reports back through the `state` fields.

use crate::cidr::Subnet;
use crate::records::ConfigStatus;
use crate::shapes::{Tag, shape};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// The subnet tag that names an existing bridge or interface to use as the subnet;
/// runway sets it on subnets whose bridge it creates, to the bridge's name.
pub const INTERFACE_TAG: &str = "runway:interface";

/// The VPC connector tag that gives its services a static outbound address to the
/// internet: one of the server's `--egress-address`es.
pub const EGRESS_ADDRESS_TAG: &str = "runway:egress-address";

/// The endpoint service name App Runner's private services are reached through.
pub fn endpoint_service_name(region: &str) -> String {
    format!("com.amazonaws.{region}.apprunner.requests")
}

/// A new EC2-style id: `<prefix>-` and 17 hex digits (`vpc-0a1b...`).
pub fn new_ec2_id(prefix: &str) -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &hex[..17])
}

/// Whether `id` has the form of an EC2 id with `prefix` (8 or 17 hex digits).
pub fn is_ec2_id(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| {
            matches!(hex.len(), 8 | 17)
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// A VPC: an address range that subnets are carved from, and the scope of security groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VpcRecord {
    pub id: String,
    pub cidr: Subnet,
    pub tags: Vec<Tag>,
    pub created_at: Timestamp,
}

/// Where a subnet or endpoint is in being made real on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkState {
    Pending,
    Available,
    Failed,
}

impl NetworkState {
    /// As EC2 spells a subnet's state.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkState::Pending => "pending",
            NetworkState::Available => "available",
            NetworkState::Failed => "failed",
        }
    }
}

/// A subnet: a private network on the host where the user's own resources live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubnetRecord {
    pub id: String,
    pub vpc_id: String,
    pub cidr: Subnet,
    /// The bridge or interface that carries it.
    pub interface: String,
    /// runway creates (and removes) the bridge; otherwise it is the user's and runway only
    /// adds and removes its own addresses on it.
    pub created: bool,
    pub state: NetworkState,
    /// Why it could not be made real.
    #[serde(default)]
    pub message: Option<String>,
    pub tags: Vec<Tag>,
    pub created_at: Timestamp,
}

/// What a security group rule lets through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SgRule {
    /// `sgr-...`.
    pub id: String,
    /// `-1` (every protocol), `tcp`, `udp`, `icmp`, or another IP protocol number.
    pub protocol: String,
    /// Ports for tcp and udp; ICMP type and code for icmp (-1: any); unused otherwise.
    pub from_port: i32,
    pub to_port: i32,
    /// The peer's addresses: destinations of egress rules, sources of ingress rules.
    pub cidr: Subnet,
    #[serde(default)]
    pub description: Option<String>,
}

impl SgRule {
    /// Whether two rules allow the same traffic (EC2 refuses such duplicates).
    pub fn same_permission(&self, other: &SgRule) -> bool {
        self.protocol == other.protocol
            && self.from_port == other.from_port
            && self.to_port == other.to_port
            && self.cidr == other.cidr
    }
}

/// A security group: stateful allow rules for what leaves (egress) and what may connect
/// (ingress).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroupRecord {
    pub id: String,
    pub vpc_id: String,
    pub name: String,
    pub description: String,
    pub ingress: Vec<SgRule>,
    pub egress: Vec<SgRule>,
    /// The VPC's default group, made with it; it cannot be deleted on its own.
    pub default: bool,
    pub tags: Vec<Tag>,
    pub created_at: Timestamp,
}

/// An interface endpoint of App Runner's request service: where a VPC's clients reach
/// private services (runway's private listener on an address in each of its subnets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VpcEndpointRecord {
    pub id: String,
    pub vpc_id: String,
    pub service_name: String,
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    pub state: NetworkState,
    #[serde(default)]
    pub message: Option<String>,
    pub tags: Vec<Tag>,
    pub created_at: Timestamp,
}

/// What a network interface belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InterfaceOwner {
    /// A VPC connector revision (by ARN): its instances' traffic into the subnet leaves
    /// from this address.
    Connector { arn: String },
    /// An interface endpoint (by id): private services are served on this address.
    Endpoint { id: String },
}

impl InterfaceOwner {
    /// A key that identifies the owner among all owners.
    pub fn key(&self) -> String {
        match self {
            InterfaceOwner::Connector { arn } => format!("connector {arn}"),
            InterfaceOwner::Endpoint { id } => format!("endpoint {id}"),
        }
    }
}

/// An address runway holds in a subnet (AWS's elastic network interface).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkInterfaceRecord {
    /// `eni-...`.
    pub id: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub ip: Ipv4Addr,
    pub owner: InterfaceOwner,
    pub created_at: Timestamp,
}

/// The lowest host addresses of a subnet that runway never hands out: the network address,
/// the gateway, and two more, as in a VPC.
const RESERVED_LOW: u32 = 4;

/// The address a new network interface in `subnet` gets: the highest one that is neither
/// reserved nor in `used` (users' own resources usually take the lowest).
pub fn free_interface_address(subnet: Subnet, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let low = u32::from(subnet.network()) + RESERVED_LOW;
    let high = u32::from(subnet.last_host());
    (low..=high)
        .rev()
        .map(Ipv4Addr::from)
        .find(|ip| !used.contains(ip))
}

/// How many addresses of `subnet` runway could still hand out, with `used` taken.
pub fn available_addresses(subnet: Subnet, used: usize) -> i64 {
    let usable = subnet.size().saturating_sub(u64::from(RESERVED_LOW) + 1);
    i64::try_from(usable).unwrap_or(i64::MAX) - used as i64
}

/// One revision of a VPC connector: the subnets and security groups that carry its
/// services' outbound traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VpcConnectorRecord {
    pub arn: String,
    pub name: String,
    pub revision: i64,
    pub vpc_id: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub status: ConfigStatus,
    pub created_at: Timestamp,
    #[serde(default)]
    pub deleted_at: Option<Timestamp>,
    /// What its services' traffic to the internet leaves from (none: the host's address).
    #[serde(default)]
    pub egress_address: Option<Ipv4Addr>,
}

impl VpcConnectorRecord {
    /// The 32 hex digits that end the ARN: a short, unique name for the host's rules.
    pub fn short_id(&self) -> &str {
        self.arn.rsplit('/').next().unwrap_or(&self.arn)
    }
}

crate::records::wire_enum! {
    /// A VPC ingress connection's status.
    pub enum IngressStatus {
        Available => "AVAILABLE",
        PendingCreation => "PENDING_CREATION",
        PendingUpdate => "PENDING_UPDATE",
        PendingDeletion => "PENDING_DELETION",
        FailedCreation => "FAILED_CREATION",
        FailedUpdate => "FAILED_UPDATE",
        FailedDeletion => "FAILED_DELETION",
        Deleted => "DELETED",
    }
}

impl IngressStatus {
    /// Whether the router serves the service through the connection's endpoint (once that
    /// endpoint is available).
    pub fn routed(self) -> bool {
        matches!(
            self,
            IngressStatus::Available
                | IngressStatus::PendingCreation
                | IngressStatus::PendingUpdate
        )
    }
}

/// A VPC ingress connection: a service served through an interface endpoint of a VPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngressConnectionRecord {
    pub arn: String,
    pub name: String,
    pub service_arn: String,
    pub vpc_id: String,
    pub vpc_endpoint_id: String,
    pub status: IngressStatus,
    /// The host name clients inside the VPC use: the service's own.
    pub domain_name: String,
    pub account_id: String,
    pub created_at: Timestamp,
    #[serde(default)]
    pub deleted_at: Option<Timestamp>,
}

// ---- the App Runner operations' wire shapes ----

shape! {
    pub struct VpcConnector {
        vpc_connector_name: String,
        vpc_connector_arn: String,
        vpc_connector_revision: i64,
        subnets: Vec<String>,
        security_groups: Vec<String>,
        status: String,
        created_at: Timestamp,
        deleted_at: Timestamp,
    }
}

shape! {
    pub struct CreateVpcConnectorRequest {
        vpc_connector_name: String,
        subnets: Vec<String>,
        security_groups: Vec<String>,
        tags: Vec<Tag>,
    }
}

shape! {
    pub struct VpcConnectorArnRequest { vpc_connector_arn: String }
}

shape! {
    pub struct VpcConnectorResponse { vpc_connector: VpcConnector }
}

shape! {
    pub struct ListVpcConnectorsRequest { max_results: i64, next_token: String }
}

shape! {
    pub struct ListVpcConnectorsResponse { vpc_connectors: Vec<VpcConnector>, next_token: String }
}

shape! {
    pub struct IngressVpcConfiguration { vpc_id: String, vpc_endpoint_id: String }
}

shape! {
    pub struct VpcIngressConnection {
        vpc_ingress_connection_arn: String,
        vpc_ingress_connection_name: String,
        service_arn: String,
        status: String,
        account_id: String,
        domain_name: String,
        ingress_vpc_configuration: IngressVpcConfiguration,
        created_at: Timestamp,
        deleted_at: Timestamp,
    }
}

shape! {
    pub struct CreateVpcIngressConnectionRequest {
        service_arn: String,
        vpc_ingress_connection_name: String,
        ingress_vpc_configuration: IngressVpcConfiguration,
        tags: Vec<Tag>,
    }
}

shape! {
    pub struct UpdateVpcIngressConnectionRequest {
        vpc_ingress_connection_arn: String,
        ingress_vpc_configuration: IngressVpcConfiguration,
    }
}

shape! {
    pub struct VpcIngressConnectionArnRequest { vpc_ingress_connection_arn: String }
}

shape! {
    pub struct VpcIngressConnectionResponse { vpc_ingress_connection: VpcIngressConnection }
}

shape! {
    pub struct ListVpcIngressConnectionsFilter { service_arn: String, vpc_endpoint_id: String }
}

shape! {
    pub struct ListVpcIngressConnectionsRequest {
        filter: ListVpcIngressConnectionsFilter,
        max_results: i64,
        next_token: String,
    }
}

shape! {
    pub struct VpcIngressConnectionSummary {
        vpc_ingress_connection_arn: String,
        service_arn: String,
    }
}

shape! {
    pub struct ListVpcIngressConnectionsResponse {
        vpc_ingress_connection_summary_list: Vec<VpcIngressConnectionSummary>,
        next_token: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_ec2_form() {
        let id = new_ec2_id("subnet");
        assert_eq!(id.len(), "subnet-".len() + 17);
        assert!(is_ec2_id("subnet", &id));
        assert!(is_ec2_id("sg", "sg-12345678"));
        assert!(!is_ec2_id("sg", &id));
        assert!(!is_ec2_id("subnet", "subnet-XYZ"));
    }

    #[test]
    fn interfaces_take_the_highest_free_address_and_never_the_reserved_ones() {
        let subnet: Subnet = "10.250.1.0/29".parse().unwrap();
        let mut used = BTreeSet::new();
        let mut got = Vec::new();
        while let Some(ip) = free_interface_address(subnet, &used) {
            used.insert(ip);
            got.push(ip.octets()[3]);
        }
        assert_eq!(got, [6, 5, 4]);
        assert_eq!(available_addresses(subnet, 0), 3);
        assert_eq!(
            available_addresses("10.250.1.0/24".parse().unwrap(), 1),
            250
        );
    }
}
