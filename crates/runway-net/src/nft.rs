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

use runway_model::Subnet;
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

/// A script that (re)creates both tables of `bridge` with `members`, replacing whatever
/// was there.
pub fn ruleset(bridge: &str, subnet: Subnet, members: &[Member]) -> String {
    let t = table(bridge);
    let mut s = delete_tables(bridge);
    let services = services(members);
    let ports = list(members.iter().map(|m| format!("\"{}\"", m.port)));
    let _ = write!(
        s,
        r#"table inet {t} {{
{services}  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "{bridge}" ct state established,related accept
    iifname "{bridge}" drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "{bridge}" oifname "{bridge}" jump between
    oifname "{bridge}" ct state established,related accept
    oifname "{bridge}" drop
  }}
  chain between {{
    ip saddr vmap @service
    drop
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {subnet} oifname != "{bridge}" masquerade
  }}
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
