//! The nftables rules of one bridge, as scripts for `nft -f -`. Each script is one
//! transaction: it applies whole or not at all.
//!
//! Two tables carry them. `inet runway_<bridge>` filters what the host routes: nothing
//! from the bridge reaches the host itself (so no instance reaches runway's listeners or
//! any other host port) except replies to connections the host opened (the router's),
//! nothing from elsewhere enters the bridge except replies, instances are masqueraded on
//! their way out, and routed traffic between two instances is checked like bridged
//! traffic. `bridge runway_<bridge>` filters frames switched between two ports of the
//! bridge, which never reach the inet hooks unless `br_netfilter` is told to pass them.
//!
//! Isolation: each service on the bridge has a tag, a set `members_<tag>` of its
//! instances' addresses and a chain `svc_<tag>` that accepts packets to those addresses
//! and drops the rest; the `service` verdict map sends a packet between instances to the
//! chain of its source's service. No packet is marked, so the rules never interfere with
//! other software's use of packet or connection marks.
//!
//! Private networks add to the inet table. An instance whose service sends its outbound
//! traffic through a VPC connector is in the connector's set (`connm_<id>`) and the
//! `egress` map sends what it sends out of the bridge to the connector's chain
//! (`conn_<id>`): the connector's security groups' egress rules, as accepts, to its own
//! subnets (where it leaves from the connector's address) and outside every user network
//! (masqueraded as usual), then a drop. Every other instance never reaches a user subnet
//! (`vpc_nets`). Interface endpoints' addresses take new connections only as their
//! groups' ingress rules say (`endpoint_in`), and the host is reachable from a bridge
//! runway made for a subnet (`user_bridges`) at those addresses only; nothing is
//! forwarded from such a bridge but replies.
//!
//! IPv6: dual-stack instances have an address in the bridge's IPv6 /64 and leave from it,
//! masqueraded, to anywhere but users' subnets' interfaces (`vpc_interfaces`); nothing
//! else on the bridge is forwarded over IPv6 (so never between instances), and the host
//! takes only neighbour discovery from it. Without an IPv6 subnet, no IPv6 packet leaves
//! the bridge.

use crate::ipv6::Ipv6Subnet;
use runway_model::Subnet;
use runway_model::network::SgRule;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::Ipv4Addr;

/// An instance as the rules know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub ip: Ipv4Addr,
    pub tag: u32,
    /// The host end of its veth pair.
    pub port: String,
    /// The VPC connector (its short id) its outbound traffic goes through, if any.
    pub connector: Option<String>,
}

/// What the rules of private networks need to know.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VpcRules {
    /// Every user subnet: instances without a connector never reach them.
    pub nets: Vec<Subnet>,
    /// The bridges runway made for subnets.
    pub bridges: Vec<String>,
    /// Every subnet's interface (made by runway or named by the user).
    pub interfaces: Vec<String>,
    pub connectors: Vec<ConnectorRules>,
    pub endpoints: Vec<EndpointRules>,
}

/// One VPC connector revision.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorRules {
    /// The short id (the ARN's last segment) that names its set and chain.
    pub id: String,
    /// Its subnets, each with its address there.
    pub nets: Vec<(Subnet, Ipv4Addr)>,
    /// Its security groups' egress rules.
    pub egress: Vec<SgRule>,
    /// What its traffic to the internet leaves from, instead of the host's address.
    pub egress_address: Option<Ipv4Addr>,
}

/// One interface endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRules {
    /// The hex digits of its id (`vpce-<hex>`), which name its chain.
    pub id: String,
    pub addrs: Vec<Ipv4Addr>,
    /// Its security groups' ingress rules.
    pub ingress: Vec<SgRule>,
}

/// The match part of a rule that lets `r` through, `peer` being `daddr` (egress) or
/// `saddr` (ingress).
fn permission(r: &SgRule, peer: &str) -> String {
    let addr = format!("ip {peer} {}", r.cidr);
    let ports = |from: i32, to: i32| {
        if from == to {
            from.to_string()
        } else {
            format!("{from}-{to}")
        }
    };
    match r.protocol.as_str() {
        "-1" => addr,
        p @ ("tcp" | "udp") => format!("{addr} {p} dport {}", ports(r.from_port, r.to_port)),
        "icmp" => match (r.from_port, r.to_port) {
            (-1, _) => format!("{addr} meta l4proto icmp"),
            (kind, -1) => format!("{addr} icmp type {kind}"),
            (kind, code) => format!("{addr} icmp type {kind} icmp code {code}"),
        },
        n => format!("{addr} meta l4proto {n}"),
    }
}

/// The private networks' sets, maps and chains of the inet table.
fn vpc_declarations(vpc: &VpcRules, members: &[Member]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "  set vpc_nets {{ type ipv4_addr; flags interval;{} }}",
        list(vpc.nets.iter().map(|n| n.to_string()))
    );
    let _ = writeln!(
        s,
        "  set user_bridges {{ type ifname;{} }}",
        list(vpc.bridges.iter().map(|b| format!("\"{b}\"")))
    );
    let _ = writeln!(
        s,
        "  set vpc_interfaces {{ type ifname;{} }}",
        list(vpc.interfaces.iter().map(|b| format!("\"{b}\"")))
    );
    for c in &vpc.connectors {
        let id = &c.id;
        let _ = writeln!(
            s,
            "  set connm_{id} {{ type ipv4_addr;{} }}",
            list(
                members
                    .iter()
                    .filter(|m| m.connector.as_deref() == Some(id))
                    .map(|m| m.ip.to_string())
            )
        );
        let own = list(c.nets.iter().map(|(n, _)| n.to_string()));
        let _ = writeln!(
            s,
            "  set connn_{id} {{ type ipv4_addr; flags interval;{own} }}"
        );
        let _ = writeln!(s, "  chain conn_{id} {{");
        let _ = writeln!(s, "    ct state established,related accept");
        let _ = writeln!(s, "    ip daddr @vpc_nets ip daddr != @connn_{id} drop");
        for r in &c.egress {
            let _ = writeln!(s, "    {} accept", permission(r, "daddr"));
        }
        let _ = writeln!(s, "    drop\n  }}");
    }
    let known: Vec<&String> = vpc.connectors.iter().map(|c| &c.id).collect();
    let _ = writeln!(
        s,
        "  map egress {{ type ipv4_addr : verdict;{} }}",
        // An instance of a connector that is gone reaches nothing rather than the internet.
        list(members.iter().filter_map(|m| {
            let id = m.connector.as_ref()?;
            Some(if known.contains(&id) {
                format!("{} : jump conn_{id}", m.ip)
            } else {
                format!("{} : drop", m.ip)
            })
        }))
    );
    for e in &vpc.endpoints {
        let _ = writeln!(s, "  chain vpce_{} {{", e.id);
        let _ = writeln!(s, "    ct state established,related accept");
        for r in &e.ingress {
            let _ = writeln!(s, "    {} accept", permission(r, "saddr"));
        }
        let _ = writeln!(s, "    drop\n  }}");
    }
    let _ = writeln!(
        s,
        "  map endpoint_in {{ type ipv4_addr : verdict;{} }}",
        list(vpc.endpoints.iter().flat_map(|e| {
            e.addrs
                .iter()
                .map(move |a| format!("{a} : jump vpce_{}", e.id))
        }))
    );
    s
}

/// The postrouting rules that make a connector's traffic into its subnets leave from its
/// address there, and its traffic elsewhere from its static egress address if it has one.
fn connector_snat(bridge: &str, vpc: &VpcRules) -> String {
    let mut s = String::new();
    for c in &vpc.connectors {
        for (net, addr) in &c.nets {
            let _ = writeln!(
                s,
                "    ip saddr @connm_{} ip daddr {net} snat to {addr}",
                c.id
            );
        }
        if let Some(addr) = c.egress_address {
            let _ = writeln!(
                s,
                "    ip saddr @connm_{} ip daddr != @vpc_nets oifname != \"{bridge}\" snat to {addr}",
                c.id
            );
        }
    }
    s
}

/// The name of both tables of `bridge`.
pub fn table(bridge: &str) -> String {
    format!("runway_{bridge}")
}

const FAMILIES: [&str; 2] = ["inet", "bridge"];

fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        String::new()
    } else {
        format!(" elements = {{ {} }};", items.join(", "))
    }
}

/// The per-service sets and chains of one table, and its `service` map.
fn services(members: &[Member]) -> String {
    let mut by_tag: BTreeMap<u32, Vec<&Member>> = BTreeMap::new();
    for m in members {
        by_tag.entry(m.tag).or_default().push(m);
    }
    let mut s = String::new();
    for (tag, ms) in &by_tag {
        let _ = write!(
            s,
            "  set members_{tag} {{ type ipv4_addr;{} }}\n  chain svc_{tag} {{\n    ip daddr @members_{tag} accept\n    drop\n  }}\n",
            list(ms.iter().map(|m| m.ip.to_string()))
        );
    }
    let _ = writeln!(
        s,
        "  map service {{ type ipv4_addr : verdict;{} }}",
        list(
            members
                .iter()
                .map(|m| format!("{} : jump svc_{}", m.ip, m.tag))
        )
    );
    s
}

/// A script that (re)creates both tables of `bridge` with `members` and the rules of
/// private networks, replacing whatever was there; dual-stack instances' IPv6 traffic
/// leaves from `ipv6`.
pub fn ruleset(
    bridge: &str,
    subnet: Subnet,
    ipv6: Option<Ipv6Subnet>,
    members: &[Member],
    vpc: &VpcRules,
) -> String {
    let t = table(bridge);
    let (neighbours, ipv6_out, ipv6_nat) = match ipv6 {
        Some(net) => (
            format!(
                "    iifname \"{bridge}\" icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept\n"
            ),
            format!(
                "    meta nfproto ipv6 ip6 saddr != {net} drop\n    meta nfproto ipv6 oifname @vpc_interfaces drop\n"
            ),
            format!("    ip6 saddr {net} oifname != \"{bridge}\" masquerade\n"),
        ),
        None => (
            String::new(),
            "    meta nfproto ipv6 drop\n".to_string(),
            String::new(),
        ),
    };
    let mut s = delete_tables(bridge);
    let services = services(members);
    let declarations = vpc_declarations(vpc, members);
    let snat = connector_snat(bridge, vpc);
    let same_bridge: String = vpc
        .bridges
        .iter()
        .map(|b| format!("    iifname \"{b}\" oifname \"{b}\" accept\n"))
        .collect();
    let ports = list(members.iter().map(|m| format!("\"{}\"", m.port)));
    let _ = write!(
        s,
        r#"table inet {t} {{
{services}{declarations}  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "{bridge}" ct state established,related accept
{neighbours}    iifname "{bridge}" drop
    ip daddr vmap @endpoint_in
    iifname @user_bridges ct state established,related accept
    iifname @user_bridges drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "{bridge}" oifname "{bridge}" jump between
    oifname "{bridge}" ct state established,related accept
    oifname "{bridge}" drop
    iifname "{bridge}" jump egress
{same_bridge}    iifname @user_bridges ct state established,related accept
    iifname @user_bridges drop
  }}
  chain between {{
    ip saddr vmap @service
    drop
  }}
  chain egress {{
{ipv6_out}    ip saddr vmap @egress
    ip daddr @vpc_nets drop
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
{snat}    ip saddr {subnet} oifname != "{bridge}" masquerade
{ipv6_nat}  }}
}}
table bridge {t} {{
{services}  set port {{ type ifname;{ports} }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname != @port accept
    ether type arp accept
    ether type != ip drop
    ip saddr vmap @service
    drop
  }}
}}
"#
    );
    s
}

/// Declares a service's set and chain (idempotently: the chain is flushed and refilled).
fn declare_service(s: &mut String, family: &str, t: &str, tag: u32) {
    let _ = writeln!(
        s,
        "add set {family} {t} members_{tag} {{ type ipv4_addr; }}"
    );
    let _ = writeln!(s, "add chain {family} {t} svc_{tag}");
    let _ = writeln!(s, "flush chain {family} {t} svc_{tag}");
    let _ = writeln!(
        s,
        "add rule {family} {t} svc_{tag} ip daddr @members_{tag} accept"
    );
    let _ = writeln!(s, "add rule {family} {t} svc_{tag} drop");
}

/// A script that adds `member` to the rules (adding one that is there is no error).
pub fn add_member(bridge: &str, m: &Member) -> String {
    let t = table(bridge);
    let mut s = String::new();
    for family in FAMILIES {
        declare_service(&mut s, family, &t, m.tag);
        let _ = writeln!(
            s,
            "add element {family} {t} members_{} {{ {} }}",
            m.tag, m.ip
        );
        let _ = writeln!(
            s,
            "add element {family} {t} service {{ {} : jump svc_{} }}",
            m.ip, m.tag
        );
    }
    let _ = writeln!(s, "add element bridge {t} port {{ \"{}\" }}", m.port);
    if let Some(id) = &m.connector {
        let _ = writeln!(s, "add element inet {t} connm_{id} {{ {} }}", m.ip);
        let _ = writeln!(
            s,
            "add element inet {t} egress {{ {} : jump conn_{id} }}",
            m.ip
        );
    }
    s
}

/// A script that removes `member` from the rules whether or not it is there (each
/// element is added before it is deleted, since deleting a missing one fails the script),
/// and its service's set and chain when it was the service's `last` instance.
pub fn remove_member(bridge: &str, m: &Member, last: bool) -> String {
    let t = table(bridge);
    let mut s = add_member(bridge, m);
    for family in FAMILIES {
        let _ = writeln!(s, "delete element {family} {t} service {{ {} }}", m.ip);
        let _ = writeln!(
            s,
            "delete element {family} {t} members_{} {{ {} }}",
            m.tag, m.ip
        );
        if last {
            let _ = writeln!(s, "flush chain {family} {t} svc_{}", m.tag);
            let _ = writeln!(s, "delete chain {family} {t} svc_{}", m.tag);
            let _ = writeln!(s, "delete set {family} {t} members_{}", m.tag);
        }
    }
    let _ = writeln!(s, "delete element bridge {t} port {{ \"{}\" }}", m.port);
    if let Some(id) = &m.connector {
        let _ = writeln!(s, "delete element inet {t} egress {{ {} }}", m.ip);
        let _ = writeln!(s, "delete element inet {t} connm_{id} {{ {} }}", m.ip);
    }
    s
}

/// A script that removes both tables of `bridge`, whether or not they exist (declaring
/// an existing table changes nothing; deleting a missing one would fail the script).
pub fn delete_tables(bridge: &str) -> String {
    let t = table(bridge);
    format!(
        "table inet {t} {{}}\ndelete table inet {t}\ntable bridge {t} {{}}\ndelete table bridge {t}\n"
    )
}

#[cfg(test)]
mod tests;
