//! Links and namespaces, through the `ip` program: it creates network namespaces,
//! moves interfaces between them and configures them inside, so none of that needs this
//! process to enter a namespace. A batch of commands costs one process.

use crate::ipv6::{self, Ipv6Subnet};
use crate::program::{self, ProgramError};
use runway_model::Subnet;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// Where `ip netns` keeps its namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// The path of a named network namespace.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

#[derive(Deserialize)]
struct Link {
    ifname: String,
}

/// Whether a link called `name` exists in this namespace.
pub fn exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The bridge's own link address: fixed (locally administered, from its name). A bridge
/// left to choose takes the lowest address among its ports and changes it as instances
/// come and go, and instances that cached the gateway's old address cannot reach the
/// host until they resolve it again.
fn bridge_mac(name: &str) -> String {
    let digest = Sha256::digest(format!("runway bridge {name}"));
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        digest[0], digest[1], digest[2], digest[3], digest[4]
    )
}

/// Creates the bridge if it is missing, gives it a fixed link address and `subnet`'s
/// gateway address and brings it up. Safe to repeat, and to race with another process
/// doing the same.
pub fn ensure_bridge(name: &str, subnet: Subnet) -> Result<(), ProgramError> {
    if !exists(name) {
        match program::run("ip", &["link", "add", name, "type", "bridge"], None) {
            Err(e) if e.says("File exists") => {}
            other => {
                other?;
            }
        }
    }
    let addr = format!("{}/{}", subnet.gateway(), subnet.prefix());
    program::run(
        "ip",
        &["-batch", "-"],
        Some(&format!(
            "link set {name} address {mac}\naddr replace {addr} dev {name}\nlink set {name} up\n",
            mac = bridge_mac(name),
        )),
    )?;
    Ok(())
}

/// Deletes a link if it exists.
pub fn delete(name: &str) -> Result<(), ProgramError> {
    if !exists(name) {
        return Ok(());
    }
    match program::run("ip", &["link", "del", name], None) {
        // Gone before `ip` looked it up, or between its lookup and the delete.
        Err(e) if e.says("Cannot find device") || e.says("No such device") => Ok(()),
        other => other.map(drop),
    }
}

/// The names of the links enslaved to `bridge`.
pub fn ports(bridge: &str) -> Result<Vec<String>, ProgramError> {
    if !exists(bridge) {
        return Ok(Vec::new());
    }
    let out = program::run("ip", &["-j", "link", "show", "master", bridge], None)?;
    let links: Vec<Link> = serde_json::from_str(out.trim()).unwrap_or_default();
    Ok(links.into_iter().map(|l| l.ifname).collect())
}

/// The named network namespaces whose names start with `prefix`.
pub fn namespaces(prefix: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Deletes a named network namespace if it exists (and with it the interfaces inside).
pub fn delete_namespace(name: &str) -> Result<(), ProgramError> {
    if !netns_path(name).exists() {
        return Ok(());
    }
    match program::run("ip", &["netns", "del", name], None) {
        Err(e) if e.says("No such file") => Ok(()),
        other => other.map(drop),
    }
}

/// Creates namespace `netns` with `eth0` at `ip` in `subnet` (default route via its
/// gateway), and at `ip6` too if given (an address and the gateway to route through),
/// joined to `bridge` by a veth pair whose host end is `veth`, where any user may listen
/// on any port. The host forgets the link address it knew for the addresses first: an
/// earlier instance's, which it would go on sending to for seconds (health checks and
/// requests lost) while other ports keep the bridge up.
pub fn create_instance(
    netns: &str,
    veth: &str,
    bridge: &str,
    (ip, subnet): (Ipv4Addr, Subnet),
    ip6: Option<(Ipv6Addr, Ipv6Addr)>,
) -> Result<(), ProgramError> {
    let mut host = format!("neigh flush to {ip} dev {bridge}\n");
    if let Some((ip6, _)) = ip6 {
        let _ = writeln!(host, "neigh flush to {ip6} dev {bridge}");
    }
    let _ = write!(
        host,
        "netns add {netns}\n\
         link add {veth} type veth peer name eth0 netns {netns}\n\
         link set {veth} master {bridge} up\n"
    );
    program::run("ip", &["-batch", "-"], Some(&host))?;
    let mut inside = format!(
        "link set lo up\n\
         addr add {ip}/{prefix} dev eth0\n\
         link set eth0 up\n\
         route add default via {gateway}\n",
        prefix = subnet.prefix(),
        gateway = subnet.gateway(),
    );
    if let Some((ip6, gateway6)) = ip6 {
        // No duplicate address detection: the address is the instance's alone, and
        // detection would hold it unusable for a second.
        let _ = write!(
            inside,
            "addr add {ip6}/{prefix} dev eth0 nodad\n\
             route add default via {gateway6}\n",
            prefix = ipv6::PREFIX,
        );
    }
    program::run("ip", &["-n", netns, "-batch", "-"], Some(&inside))?;
    // Any port for the instance's processes: App Runner's apps run as root and may
    // listen on port 80, and runway's root is a user namespace's, which the host-owned
    // namespace would refuse ports below 1024 (as Docker does, since 20.10).
    program::run(
        "ip",
        &[
            "netns",
            "exec",
            netns,
            "sh",
            "-c",
            "echo 0 > /proc/sys/net/ipv4/ip_unprivileged_port_start",
        ],
        None,
    )?;
    Ok(())
}

#[derive(Deserialize)]
struct Route {
    dst: String,
    #[serde(default)]
    dev: Option<String>,
}

/// The IPv4 routes of the main table that overlap `subnet` and do not go to `bridge`:
/// another network already uses those addresses.
pub fn conflicting_routes(subnet: Subnet, bridge: &str) -> Result<Vec<String>, ProgramError> {
    let out = program::run("ip", &["-j", "-4", "route", "show", "table", "main"], None)?;
    let routes: Vec<Route> = serde_json::from_str(out.trim()).unwrap_or_default();
    Ok(routes
        .into_iter()
        .filter(|r| r.dev.as_deref() != Some(bridge))
        .filter_map(|r| {
            let (addr, prefix) = r.dst.split_once('/').unwrap_or((&r.dst, "32"));
            let net = Subnet::covering(addr.parse().ok()?, prefix.parse().ok()?)?;
            subnet
                .overlaps(&net)
                .then(|| format!("{} dev {}", r.dst, r.dev.unwrap_or_default()))
        })
        .collect())
}

/// The IPv6 routes of the main table that overlap `subnet` and do not go to `bridge`.
pub fn conflicting_routes6(subnet: Ipv6Subnet, bridge: &str) -> Result<Vec<String>, ProgramError> {
    let out = program::run("ip", &["-j", "-6", "route", "show", "table", "main"], None)?;
    let routes: Vec<Route> = serde_json::from_str(out.trim()).unwrap_or_default();
    Ok(routes
        .into_iter()
        .filter(|r| r.dev.as_deref() != Some(bridge))
        .filter_map(|r| {
            // `default` and link-local routes do not claim the subnet's addresses.
            let (addr, prefix) = r.dst.split_once('/').unwrap_or((&r.dst, "128"));
            let addr: Ipv6Addr = addr.parse().ok()?;
            (subnet.overlaps(addr, prefix.parse().ok()?) && prefix != "0")
                .then(|| format!("{} dev {}", r.dst, r.dev.unwrap_or_default()))
        })
        .collect())
}

/// Gives link `name` an alias (`ip link set NAME alias TEXT`), which marks whose it is.
pub fn set_alias(name: &str, alias: &str) -> Result<(), ProgramError> {
    program::run("ip", &["link", "set", "dev", name, "alias", alias], None).map(drop)
}

/// The links whose alias starts with `prefix`.
pub fn with_alias(prefix: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_to_string(e.path().join("ifalias"))
                .is_ok_and(|alias| alias.trim_end().starts_with(prefix))
        })
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// Puts `ip/prefix` on `name` (idempotent).
pub fn add_address(name: &str, ip: Ipv4Addr, prefix: u8) -> Result<(), ProgramError> {
    let addr = format!("{ip}/{prefix}");
    program::run("ip", &["addr", "replace", &addr, "dev", name], None).map(drop)
}

/// Puts the IPv6 address `ip` (of a /64, without duplicate address detection) on
/// `name` (idempotent).
pub fn add_address6(name: &str, ip: Ipv6Addr) -> Result<(), ProgramError> {
    let addr = format!("{ip}/{}", ipv6::PREFIX);
    program::run(
        "ip",
        &["addr", "replace", &addr, "dev", name, "nodad"],
        None,
    )
    .map(drop)
}

/// Takes `ip/prefix` off `name`, if it is there.
pub fn delete_address(name: &str, ip: Ipv4Addr, prefix: u8) -> Result<(), ProgramError> {
    if !exists(name) {
        return Ok(());
    }
    let addr = format!("{ip}/{prefix}");
    match program::run("ip", &["addr", "del", &addr, "dev", name], None) {
        Err(e) if e.says("Cannot assign requested address") => Ok(()),
        other => other.map(drop),
    }
}

/// Lets the addresses runway adds to a user's interface survive the removal of its
/// primary one (the kernel drops secondary addresses with their primary otherwise).
pub fn promote_secondaries(name: &str) -> std::io::Result<()> {
    let path = format!("/proc/sys/net/ipv4/conf/{name}/promote_secondaries");
    if std::fs::read_to_string(&path)?.trim() != "1" {
        std::fs::write(&path, "1")?;
    }
    Ok(())
}
