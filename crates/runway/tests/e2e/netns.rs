//! Other machines for tests: a network namespace joined to the host by a veth pair, on a
//! /30 of its own that no route of the machine overlaps. The host's end has an address
//! the server can listen on; the namespace's default route goes through it, so one
//! namespace reaches every address of the host (and so the addresses of other links).
//! Removed on drop, also when a test fails; links left by a test process that died are
//! removed by the next one.

use crate::harness::assert_ok;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A client machine on its own link to the host.
pub struct Link {
    /// The namespace's name (`ip netns exec <name>`).
    pub name: String,
    /// The host's end of the link: the server listens here.
    pub host_ip: Ipv4Addr,
    /// The namespace's address.
    pub client_ip: Ipv4Addr,
}

const PREFIX: &str = "rwns-";

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("run ip")
}

#[track_caller]
fn ip_ok(args: &[&str]) {
    assert_ok(&ip(args), &format!("ip {}", args.join(" ")));
}

/// Every IPv4 prefix the machine routes or holds an address in, as (network, length).
fn taken() -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for args in [
        &["-4", "-j", "route", "show", "table", "all"][..],
        &["-4", "-j", "addr", "show"][..],
    ] {
        let json: serde_json::Value =
            serde_json::from_slice(&ip(args).stdout).unwrap_or(serde_json::Value::Null);
        let mut prefixes = Vec::new();
        for entry in json.as_array().into_iter().flatten() {
            if let Some(dst) = entry["dst"].as_str() {
                prefixes.push(dst.to_string());
            }
            for info in entry["addr_info"].as_array().into_iter().flatten() {
                if let (Some(local), Some(len)) =
                    (info["local"].as_str(), info["prefixlen"].as_u64())
                {
                    prefixes.push(format!("{local}/{len}"));
                }
            }
        }
        for prefix in prefixes {
            let (addr, len) = prefix.split_once('/').unwrap_or((&prefix, "32"));
            if let (Ok(addr), Ok(len)) = (addr.parse::<Ipv4Addr>(), len.parse::<u32>()) {
                out.push((u32::from(addr), len));
            }
        }
    }
    out
}

fn overlaps((a, alen): (u32, u32), (b, blen): (u32, u32)) -> bool {
    let len = alen.min(blen);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    a & mask == b & mask
}

/// Whether process `pid` is alive.
fn alive(pid: &str) -> bool {
    std::path::Path::new("/proc").join(pid).exists()
}

/// Removes links whose test process has died.
fn remove_orphans() {
    let out = ip(&["netns", "list"]);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !alive(pid) {
            let _ = ip(&["netns", "del", name]);
            let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(name));
        }
    }
}

impl Link {
    /// A new namespace and link.
    pub fn new() -> Link {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        // Choosing a free /30 and taking it must not interleave with another test
        // process doing the same.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/run/runway-e2e-netns.lock")
            .expect("lock file");
        lock.lock().expect("lock");
        remove_orphans();
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{pid}-{n}");
        let taken = taken();
        // 10.254.0.0/16 in /30s, from a point that differs between processes.
        let start = (pid.wrapping_mul(2654435761) >> 8).wrapping_add(n * 7919) % 16384;
        let base = (0..16384)
            .map(|i| u32::from(Ipv4Addr::new(10, 254, 0, 0)) + ((start + i) % 16384) * 4)
            .find(|net| !taken.iter().any(|t| overlaps(*t, (*net, 30))))
            .expect("a free /30 in 10.254.0.0/16");
        let (host_ip, client_ip) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        let host_if = format!("rwv{:x}", (pid << 8) ^ n ^ base);
        let host_if = &host_if[..host_if.len().min(15)];
        ip_ok(&["netns", "add", &name]);
        let link = Link {
            name: name.clone(),
            host_ip,
            client_ip,
        };
        ip_ok(&[
            "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", &name,
        ]);
        ip_ok(&["addr", "add", &format!("{host_ip}/30"), "dev", host_if]);
        ip_ok(&["link", "set", host_if, "up"]);
        link.exec_ok(&[
            "ip",
            "addr",
            "add",
            &format!("{client_ip}/30"),
            "dev",
            "eth0",
        ]);
        link.exec_ok(&["ip", "link", "set", "eth0", "up"]);
        link.exec_ok(&["ip", "link", "set", "lo", "up"]);
        link.exec_ok(&["ip", "route", "add", "default", "via", &host_ip.to_string()]);
        drop(lock);
        link
    }

    /// `program` run in the namespace (`ip netns exec`), whose `/etc/hosts` is the one
    /// [`Link::hosts`] wrote.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    #[track_caller]
    fn exec_ok(&self, args: &[&str]) {
        let out = self
            .command(args[0])
            .args(&args[1..])
            .output()
            .expect("ip netns exec");
        assert_ok(&out, &args.join(" "));
    }

    /// Names resolved in the namespace, as a DNS server would for another machine.
    pub fn hosts(&self, names: &[(Ipv4Addr, &str)]) {
        let dir = PathBuf::from("/etc/netns").join(&self.name);
        std::fs::create_dir_all(&dir).expect("/etc/netns/<name>");
        let mut text = String::from("127.0.0.1 localhost\n");
        for (ip, name) in names {
            text.push_str(&format!("{ip} {name}\n"));
        }
        std::fs::write(dir.join("hosts"), text).expect("hosts");
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, and so the pair.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&self.name));
        // Only if no other namespace has a directory there.
        let _ = std::fs::remove_dir("/etc/netns");
    }
}
