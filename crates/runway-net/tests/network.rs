//! The network on the real kernel (root): isolation between services, the host's ports
//! out of reach, the host reaching instances, idempotent attach and detach, and nothing
//! left behind.

use runway_model::Timestamp;
use runway_model::network::*;
use runway_model::records::ConfigStatus;
use runway_net::{NetConfig, Network, Outbound, Subnet, UserNetworks};
use runway_store::SqliteStore;
use runway_store::{Store, Typed};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Removes the test's bridge and everything on it when the test ends, even by a panic.
struct Guard(String);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = runway_net::purge(&self.0) {
            eprintln!("cleanup of {} failed: {e}", self.0);
        }
    }
}

/// A network on a bridge and /24 (in 10.204.0.0/16) no other test uses: names and
/// subnets already taken on the host are skipped.
fn network() -> (Network, Guard) {
    network_on(Arc::new(SqliteStore::in_memory().unwrap()))
}

/// Like [`network`], keeping its records in `store`.
fn network_on(store: Arc<SqliteStore>) -> (Network, Guard) {
    network_with(store, false)
}

/// Like [`network_on`], with an IPv6 subnet for dual-stack instances if `ipv6`
/// (`fd52:7e57:<n>::/64`).
fn network_with(store: Arc<SqliteStore>, ipv6: bool) -> (Network, Guard) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    for _ in 0..20 {
        let n = std::process::id()
            .wrapping_mul(31)
            .wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
            .wrapping_add(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos(),
            );
        let bridge = format!("rwn{:04x}", n & 0xffff);
        let subnet = Subnet::new(Ipv4Addr::new(10, 204, (n % 256) as u8, 0), 24).unwrap();
        if Path::new("/sys/class/net").join(&bridge).exists() {
            continue;
        }
        let guard = Guard(bridge.clone());
        let ipv6 = ipv6.then(|| format!("fd52:7e57:{:x}::/64", n & 0xffff).parse().unwrap());
        match Network::setup(
            NetConfig {
                bridge,
                subnet,
                ipv6,
            },
            store.clone(),
        ) {
            Ok(net) => return (net, guard),
            Err(runway_net::NetError::Conflict { .. }) => continue,
            Err(e) => panic!("setup failed: {e}"),
        }
    }
    panic!("no free bridge name and subnet");
}

/// Runs `f` on a thread inside the network namespace at `path`; sockets it creates stay
/// in that namespace.
fn in_netns<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = std::fs::File::open(path).unwrap();
    std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// Serves "hi" to every connection on `listener`.
fn serve(listener: TcpListener) {
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(b"hi");
        }
    });
}

fn reaches(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_millis(700)) {
        Ok(mut s) => {
            let mut buf = [0u8; 2];
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.read_exact(&mut buf).is_ok() && &buf == b"hi"
        }
        Err(_) => false,
    }
}

#[test]
fn services_are_isolated_the_host_is_out_of_reach_and_nothing_is_left() {
    let (net, guard) = network();
    let a1 = net.attach("a1", "svc-a").unwrap();
    let a2 = net.attach("a2", "svc-a").unwrap();
    let b1 = net.attach("b1", "svc-b").unwrap();
    assert_eq!(a1.gateway, net.config().subnet.gateway());
    assert_ne!(a1.ip, a2.ip);
    assert!(a1.netns.exists());

    let on = |ip: Ipv4Addr| SocketAddr::from((ip, 8000));
    for at in [&a2, &b1] {
        let listener = in_netns(&at.netns, || TcpListener::bind("0.0.0.0:8000").unwrap());
        serve(listener);
    }
    let host_any = TcpListener::bind("0.0.0.0:0").unwrap();
    let host_any_port = host_any.local_addr().unwrap().port();
    serve(host_any);
    let host_gw = TcpListener::bind((a1.gateway, 0)).unwrap();
    let host_gw_addr = host_gw.local_addr().unwrap();
    serve(host_gw);

    // The host (the router) reaches every instance.
    assert!(reaches(on(a2.ip)));
    assert!(reaches(on(b1.ip)));
    // From a1: its own service yes; another service, and any host port, no.
    let (a2_ip, b1_ip, gw) = (a2.ip, b1.ip, a1.gateway);
    let seen = in_netns(&a1.netns, move || {
        [
            reaches(on(a2_ip)),
            reaches(on(b1_ip)),
            reaches(host_gw_addr),
            reaches(SocketAddr::from((gw, host_any_port))),
        ]
    });
    assert_eq!(
        seen,
        [true, false, false, false],
        "a2, b1, host gateway, host any"
    );

    // Detaching is idempotent; a sweep removes what is not live; teardown the rest.
    net.detach("b1").unwrap();
    net.detach("b1").unwrap();
    assert!(!b1.netns.exists());
    let live: HashSet<String> = ["a1".to_string()].into();
    assert!(net.sweep(&live).unwrap() >= 1);
    assert!(!a2.netns.exists());
    assert!(a1.netns.exists());
    assert!(net.attachment("a2").unwrap().is_none());
    let bridge = net.config().bridge.clone();
    net.teardown().unwrap();
    assert_eq!(runway_net::leftovers(&bridge), Vec::<String>::new());
    drop(guard);
}

#[test]
fn attach_is_idempotent_and_rebuilds_a_partial_attachment() {
    let (net, _guard) = network();
    let first = net.attach("i1", "svc").unwrap();
    assert_eq!(net.attach("i1", "svc").unwrap(), first);
    // A crash between steps can leave the namespace without its veth.
    let status = std::process::Command::new("ip")
        .args(["link", "del", &first.veth])
        .status()
        .unwrap();
    assert!(status.success());
    let again = net.attach("i1", "svc").unwrap();
    assert_eq!(again, first);
    assert!(Path::new("/sys/class/net").join(&again.veth).exists());
    assert!(net.attach("bad\nname", "svc").is_err());
}

#[test]
fn instances_may_listen_on_ports_below_1024() {
    // App Runner's apps run as root and may listen on port 80; runway's run as root of a
    // user namespace, which the host-owned network namespace must let bind any port.
    let (net, _guard) = network();
    let a = net.attach("i1", "svc").unwrap();
    let start = in_netns(&a.netns, || {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap()
    });
    assert_eq!(start.trim(), "0");
}

#[test]
fn an_address_given_again_is_reached_at_once() {
    let (net, _guard) = network();
    let on = |ip: Ipv4Addr| SocketAddr::from((ip, 8000));
    let bridge_mac = || {
        std::fs::read_to_string(
            Path::new("/sys/class/net")
                .join(&net.config().bridge)
                .join("address"),
        )
        .unwrap()
    };
    let gateway_mac = bridge_mac();
    // Another instance keeps the bridge's carrier up (without one the kernel forgets the
    // bridge's neighbours anyway).
    net.attach("other", "svc").unwrap();
    let first = net.attach("old", "svc").unwrap();
    serve(in_netns(&first.netns, || {
        TcpListener::bind("0.0.0.0:8000").unwrap()
    }));
    // The host learns the old instance's link address (a first connection to a new
    // veth may need a retry on a loaded host; the point of the test is the second).
    assert!(reaches_soon(on(first.ip)));
    net.detach("old").unwrap();
    // The next instance gets the same address behind a new veth: the host must not keep
    // sending to the old one's link address (it would until it probes again, seconds
    // later).
    let second = net.attach("new", "svc").unwrap();
    assert_eq!(second.ip, first.ip);
    serve(in_netns(&second.netns, || {
        TcpListener::bind("0.0.0.0:8000").unwrap()
    }));
    assert!(reaches(on(second.ip)));
    // The gateway's link address, which instances cache, stays what it was.
    assert_eq!(bridge_mac(), gateway_mac);
}

/// Runs `ip` with `args`, panicking on failure.
fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An "internet" the host routes to: namespace `ns` behind the veth `veth`, with `host`
/// (address/prefix) on the host's end and `inside` on the other; no route back to the
/// instances, so only masquerading lets an answer return. Named after the test's bridge,
/// it goes when the bridge is purged. Returns its path.
fn outside(ns: &str, veth: &str, host: &str, inside: &str) -> std::path::PathBuf {
    ip(&["netns", "add", ns]);
    ip(&[
        "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
    ]);
    // IPv6 addresses without duplicate address detection, usable at once.
    let nodad: &[&str] = if host.contains(':') { &["nodad"] } else { &[] };
    ip(&[&["addr", "add", host, "dev", veth], nodad].concat());
    ip(&["link", "set", veth, "up"]);
    ip(&[&["-n", ns, "addr", "add", inside, "dev", "eth0"], nodad].concat());
    ip(&["-n", ns, "link", "set", "eth0", "up"]);
    Path::new("/run/netns").join(ns)
}

#[test]
fn instances_reach_the_outside_through_nat() {
    let (net, _guard) = network();
    let bridge = net.config().bridge.clone();
    let a1 = net.attach("a1", "svc-a").unwrap();
    let third = net.config().subnet.network().octets()[2];
    let (host_ip, wan_ip) = (
        format!("10.205.{third}.1"),
        Ipv4Addr::new(10, 205, third, 2),
    );
    let wan_ns = outside(
        &format!("runway-{bridge}-wan"),
        &format!("{bridge}w"),
        &format!("{host_ip}/30"),
        &format!("{wan_ip}/30"),
    );
    let listener = in_netns(&wan_ns, move || TcpListener::bind((wan_ip, 9000)).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Every try is answered; the listener (which keeps the namespace and its veth
        // alive) is closed once the test is over.
        listener.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            match listener.accept() {
                Ok((mut conn, peer)) => {
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.write_all(b"hi");
                    if tx.send(peer.ip()).is_err() {
                        return;
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    // A fresh link may drop the first SYN, and TCP resends it only after a second,
    // past `reaches`'s timeout: a few tries tell a blocked path from a slow start.
    let reached = in_netns(&a1.netns, move || {
        (0..5).any(|_| reaches(SocketAddr::from((wan_ip, 9000))))
    });
    assert!(reached, "the instance reaches the outside");
    let seen_from = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        seen_from.to_string(),
        host_ip,
        "the outside sees the host, not {}",
        a1.ip
    );
}

#[test]
fn parallel_attaches_and_detaches_leave_no_address_element_or_link() {
    let (net, _guard) = network();
    let net = Arc::new(net);
    let bridge = net.config().bridge.clone();
    // Eight services of five instances each, attached and detached at once: instances
    // of one service come and go beside each other, and every namespace's veth pair
    // disappears while other teardowns look at the bridge's links.
    let threads: Vec<_> = (0..40)
        .map(|i| {
            let net = net.clone();
            std::thread::spawn(move || {
                let (instance, service) = (format!("i{i}"), format!("svc{}", i % 8));
                net.attach(&instance, &service).unwrap();
                net.detach(&instance)
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    for i in 0..40 {
        assert_eq!(net.attachment(&format!("i{i}")).unwrap(), None, "i{i}");
    }
    let ruleset = std::process::Command::new("nft")
        .args(["list", "table", "inet", &format!("runway_{bridge}")])
        .output()
        .unwrap();
    let ruleset = String::from_utf8_lossy(&ruleset.stdout);
    assert!(!ruleset.contains("elements"), "{ruleset}");
    assert!(!ruleset.contains("svc_"), "{ruleset}");
    let ports = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", &bridge])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ports.stdout), "");
}

#[test]
fn dual_stack_instances_reach_the_outside_over_ipv6_and_nothing_else() {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let (net, _guard) = network_with(store.clone(), true);
    let bridge = net.config().bridge.clone();
    let ipv6 = net.config().ipv6.unwrap();
    let dual = Outbound {
        connector: None,
        ipv6: true,
    };
    let a1 = net.attach_with("a1", "svc-a", dual).unwrap();
    let b1 = net.attach_with("b1", "svc-b", dual).unwrap();
    let c1 = net.attach("c1", "svc-c").unwrap();
    assert_eq!(a1.ip6, Some(ipv6.address_of(a1.ip)));
    assert_eq!(c1.ip6, None, "IPv4 only unless asked");
    // A connector's instances stay IPv4 only.
    assert_eq!(
        net.attach_with(
            "d1",
            "svc-d",
            Outbound {
                connector: Some("arn:aws:apprunner:us-east-1:000000000000:vpcconnector/x/1/0f"),
                ipv6: true,
            },
        )
        .unwrap()
        .ip6,
        None
    );
    assert_eq!(net.attach_with("a1", "svc-a", dual).unwrap(), a1);

    // An IPv6 "internet".
    let wan_veth = format!("{bridge}v");
    let wan_net = format!("{:x}", ipv6.network().segments()[2]);
    let (host_ip, wan_ip): (Ipv6Addr, Ipv6Addr) = (
        format!("fd52:7e58:{wan_net}::1").parse().unwrap(),
        format!("fd52:7e58:{wan_net}::2").parse().unwrap(),
    );
    let wan_ns = outside(
        &format!("runway-{bridge}-wan6"),
        &wan_veth,
        &format!("{host_ip}/64"),
        &format!("{wan_ip}/64"),
    );
    let wan = SocketAddr::from((wan_ip, 9000));
    let seen = serve_in(&wan_ns, wan);

    // Other services' instances and the host's ports, over IPv6.
    serve(in_netns(&b1.netns, || {
        TcpListener::bind("[::]:8000").unwrap()
    }));
    let host_gw = TcpListener::bind((ipv6.gateway(), 0)).unwrap();
    let host_gw_addr = host_gw.local_addr().unwrap();
    serve(host_gw);
    let host_any = TcpListener::bind("[::]:0").unwrap();
    let host_any_port = host_any.local_addr().unwrap().port();
    serve(host_any);
    let b1_ip6 = b1.ip6.unwrap();
    assert!(reaches(SocketAddr::from((b1_ip6, 8000))), "the probe works");

    let from_a1 = in_netns(&a1.netns, move || {
        [
            reaches_soon(wan),
            reaches(SocketAddr::from((b1_ip6, 8000))),
            reaches(host_gw_addr),
            reaches(SocketAddr::from((ipv6.gateway(), host_any_port))),
            reaches(SocketAddr::from((host_ip, host_any_port))),
        ]
    });
    assert_eq!(
        from_a1,
        [true, false, false, false, false],
        "outside, b1, host gateway, host any, host's outer address"
    );
    assert_eq!(
        seen.recv_timeout(Duration::from_secs(5)).unwrap(),
        IpAddr::V6(host_ip),
        "the outside sees the host, not {}",
        a1.ip6.unwrap()
    );
    assert!(
        !in_netns(&c1.netns, move || reaches(wan)),
        "an IPv4-only instance has no way out over IPv6"
    );
    // Once that interface is a user's subnet, IPv6 does not go there either.
    let third = net.config().subnet.network().octets()[2];
    let user_subnet = SubnetRecord {
        id: new_ec2_id("subnet"),
        vpc_id: "vpc-12345678".into(),
        cidr: format!("10.210.{third}.0/24").parse().unwrap(),
        interface: wan_veth.clone(),
        created: false,
        state: NetworkState::Available,
        message: None,
        tags: vec![],
        created_at: Timestamp::now(),
    };
    save(&store, &[&user_subnet]);
    net.sync_rules().unwrap();
    assert!(
        !in_netns(&a1.netns, move || reaches(wan)),
        "a user's subnet's interface is out of reach over IPv6"
    );
}

/// Writes `records` into `store` in one transaction.
fn save<R: runway_store::Record>(store: &SqliteStore, records: &[&R]) {
    let mut tx = store.begin().unwrap();
    for r in records {
        tx.save(*r).unwrap();
    }
    tx.commit().unwrap();
}

fn rule(protocol: &str, from: i32, to: i32, cidr: &str) -> SgRule {
    SgRule {
        id: new_ec2_id("sgr"),
        protocol: protocol.into(),
        from_port: from,
        to_port: to,
        cidr: Subnet::parse_range(cidr).unwrap(),
        description: None,
    }
}

/// A namespace on `bridge` at `ip/24`, named so that purging the runtime's bridge removes
/// it; returns its path.
fn host_on(runtime: &str, bridge: &str, name: &str, addr: Ipv4Addr) -> std::path::PathBuf {
    let ns = format!("runway-{runtime}-{name}");
    let veth = format!("{runtime}{name}");
    ip(&["netns", "add", &ns]);
    ip(&[
        "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
    ]);
    ip(&["link", "set", &veth, "master", bridge, "up"]);
    ip(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{addr}/24"),
        "dev",
        "eth0",
    ]);
    ip(&["-n", &ns, "link", "set", "eth0", "up"]);
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    Path::new("/run/netns").join(ns)
}

/// Serves "hi" on `addr` inside the namespace at `ns`, and says who connected.
fn serve_in(ns: &Path, addr: SocketAddr) -> std::sync::mpsc::Receiver<std::net::IpAddr> {
    let listener = in_netns(ns, move || TcpListener::bind(addr).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(b"hi");
            if let Ok(peer) = conn.peer_addr() {
                let _ = tx.send(peer.ip());
            }
        }
    });
    rx
}

/// Outbound traffic through the connector `arn`.
fn via(arn: &str) -> Outbound<'_> {
    Outbound {
        connector: Some(arn),
        ipv6: false,
    }
}

/// A few tries, since a fresh link may drop the first SYN.
fn reaches_soon(addr: SocketAddr) -> bool {
    (0..3).any(|_| reaches(addr))
}

#[test]
fn connectors_follow_their_groups_endpoints_admit_by_ingress_rules_and_isolation_holds() {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let (net, _guard) = network_on(store.clone());
    let runtime = net.config().bridge.clone();
    let third = net.config().subnet.network().octets()[2];
    let cidr: Subnet = format!("10.206.{third}.0/24").parse().unwrap();
    let at = move |last: u8| Ipv4Addr::new(10, 206, third, last);
    let now = Timestamp::now();
    let vpc = VpcRecord {
        id: new_ec2_id("vpc"),
        cidr: "10.206.0.0/16".parse().unwrap(),
        tags: vec![],
        created_at: now,
    };
    let subnet = SubnetRecord {
        id: new_ec2_id("subnet"),
        vpc_id: vpc.id.clone(),
        cidr,
        interface: format!("rs{runtime}"),
        created: true,
        state: NetworkState::Pending,
        message: None,
        tags: vec![],
        created_at: now,
    };
    let mut group = SecurityGroupRecord {
        id: new_ec2_id("sg"),
        vpc_id: vpc.id.clone(),
        name: "db".into(),
        description: "db".into(),
        ingress: vec![rule("tcp", 7443, 7443, &cidr.to_string())],
        egress: vec![rule("tcp", 7000, 7000, &cidr.to_string())],
        default: false,
        tags: vec![],
        created_at: now,
    };
    let connector = VpcConnectorRecord {
        arn: format!(
            "arn:aws:apprunner:us-east-1:000000000000:vpcconnector/db/1/{}",
            "c".repeat(32)
        ),
        name: "db".into(),
        revision: 1,
        vpc_id: vpc.id.clone(),
        subnets: vec![subnet.id.clone()],
        security_groups: vec![group.id.clone()],
        status: ConfigStatus::Active,
        created_at: now,
        deleted_at: None,
        egress_address: None,
    };
    let endpoint = VpcEndpointRecord {
        id: new_ec2_id("vpce"),
        vpc_id: vpc.id.clone(),
        service_name: endpoint_service_name("us-east-1"),
        subnet_ids: vec![subnet.id.clone()],
        security_group_ids: vec![group.id.clone()],
        state: NetworkState::Pending,
        message: None,
        tags: vec![],
        created_at: now,
    };
    let interface = |ip, owner| NetworkInterfaceRecord {
        id: new_ec2_id("eni"),
        vpc_id: vpc.id.clone(),
        subnet_id: subnet.id.clone(),
        ip,
        owner,
        created_at: now,
    };
    let connector_eni = interface(
        at(254),
        InterfaceOwner::Connector {
            arn: connector.arn.clone(),
        },
    );
    let endpoint_eni = interface(
        at(253),
        InterfaceOwner::Endpoint {
            id: endpoint.id.clone(),
        },
    );
    save(&store, &[&vpc]);
    save(&store, &[&subnet]);
    save(&store, &[&group]);
    save(&store, &[&connector]);
    save(&store, &[&endpoint]);
    save(&store, &[&connector_eni, &endpoint_eni]);

    let user = UserNetworks::new(net.config().clone(), store.clone());
    let converged = user.converge(&Default::default()).unwrap();
    assert_eq!(converged.endpoints.len(), 1, "{converged:?}");
    assert_eq!(converged.endpoints[0].addrs, [at(253)]);
    {
        let tx = store.begin().unwrap();
        let s: SubnetRecord = tx.load(&subnet.id).unwrap().unwrap();
        assert_eq!((s.state, s.message), (NetworkState::Available, None));
    }

    // A database in the subnet; an instance through the connector, one with default egress.
    let db = host_on(&runtime, &subnet.interface, "db", at(10));
    let seen = serve_in(&db, SocketAddr::from((at(10), 7000)));
    let _other_port = serve_in(&db, SocketAddr::from((at(10), 7001)));
    let vpc_instance = net.attach_with("i1", "svc-a", via(&connector.arn)).unwrap();
    let plain = net.attach("i2", "svc-b").unwrap();
    serve(in_netns(&plain.netns, || {
        TcpListener::bind("0.0.0.0:8000").unwrap()
    }));
    // Another service through the same connector.
    let neighbour = net.attach_with("i3", "svc-c", via(&connector.arn)).unwrap();
    serve(in_netns(&neighbour.netns, || {
        TcpListener::bind("0.0.0.0:8000").unwrap()
    }));
    let host_gw = TcpListener::bind((at(1), 0)).unwrap();
    let host_gw_addr = host_gw.local_addr().unwrap();
    serve(host_gw);
    let endpoint_listener = TcpListener::bind((at(253), 7443)).unwrap();
    serve(endpoint_listener);
    let endpoint_other = TcpListener::bind((at(253), 7444)).unwrap();
    let endpoint_other_addr = endpoint_other.local_addr().unwrap();
    serve(endpoint_other);

    let (db_ok, db_other) = (
        SocketAddr::from((at(10), 7000)),
        SocketAddr::from((at(10), 7001)),
    );
    let (plain_ip, neighbour_ip) = (plain.ip, neighbour.ip);
    let from_vpc = in_netns(&vpc_instance.netns, move || {
        [
            reaches_soon(db_ok),
            reaches(db_other),
            reaches(SocketAddr::from((plain_ip, 8000))),
            reaches(SocketAddr::from((neighbour_ip, 8000))),
            reaches(host_gw_addr),
            reaches(SocketAddr::from((at(253), 7443))),
        ]
    });
    assert_eq!(
        from_vpc,
        [true, false, false, false, false, false],
        "through the connector: db 7000, db 7001, another service, another service on the \
         same connector, the host on the subnet, the endpoint"
    );
    assert_eq!(
        seen.recv_timeout(Duration::from_secs(5)).unwrap(),
        at(254),
        "the database sees the connector's address"
    );
    let from_plain = in_netns(&plain.netns, move || reaches(db_ok));
    assert!(!from_plain, "default egress does not reach the subnet");

    // Clients in the subnet: the endpoint as its group's ingress rules say; the host's
    // other addresses there not at all.
    let from_db = in_netns(&db, move || {
        [
            reaches_soon(SocketAddr::from((at(253), 7443))),
            reaches(endpoint_other_addr),
            reaches(host_gw_addr),
        ]
    });
    assert_eq!(
        from_db,
        [true, false, false],
        "endpoint 7443, endpoint 7444, host"
    );

    // Revoking the egress rule closes the way for new connections.
    group.egress.clear();
    save(&store, &[&group]);
    user.converge(&Default::default()).unwrap();
    let after = in_netns(&vpc_instance.netns, move || reaches(db_ok));
    assert!(
        !after,
        "the revoked rule no longer lets the connector through"
    );

    // A subnet that is gone takes its bridge along; purging takes everything else.
    net.detach("i1").unwrap();
    net.detach("i2").unwrap();
    net.detach("i3").unwrap();
    {
        let mut tx = store.begin().unwrap();
        tx.remove::<NetworkInterfaceRecord>(&connector_eni.id)
            .unwrap();
        tx.remove::<NetworkInterfaceRecord>(&endpoint_eni.id)
            .unwrap();
        tx.remove::<VpcEndpointRecord>(&endpoint.id).unwrap();
        tx.remove::<VpcConnectorRecord>(&connector.arn).unwrap();
        tx.remove::<SubnetRecord>(&subnet.id).unwrap();
        tx.commit().unwrap();
    }
    user.converge(&Default::default()).unwrap();
    assert!(!Path::new("/sys/class/net").join(&subnet.interface).exists());
}

/// Deletes a link when dropped.
struct LinkGuard(String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .status();
    }
}

fn addresses_of(link: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", link])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn subnets_on_existing_interfaces_get_runways_addresses_and_stay_and_purging_takes_only_runways_bridges()
 {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let (net, guard) = network_on(store.clone());
    let runtime = net.config().bridge.clone();
    let third = net.config().subnet.network().octets()[2];
    let now = Timestamp::now();
    let existing = format!("ex{runtime}");
    ip(&["link", "add", &existing, "type", "bridge"]);
    let _existing = LinkGuard(existing.clone());
    let subnet = |cidr: String, interface: &str, created: bool| SubnetRecord {
        id: new_ec2_id("subnet"),
        vpc_id: "vpc-12345678".into(),
        cidr: cidr.parse().unwrap(),
        interface: interface.into(),
        created,
        state: NetworkState::Pending,
        message: None,
        tags: vec![],
        created_at: now,
    };
    let theirs = subnet(format!("10.207.{third}.0/24"), &existing, false);
    let missing = subnet(format!("10.208.{third}.0/24"), "nosuch0", false);
    let ours = subnet(
        format!("10.209.{third}.0/24"),
        &format!("rs{runtime}"),
        true,
    );
    let eni = NetworkInterfaceRecord {
        id: new_ec2_id("eni"),
        vpc_id: "vpc-12345678".into(),
        subnet_id: theirs.id.clone(),
        ip: Ipv4Addr::new(10, 207, third, 254),
        owner: InterfaceOwner::Endpoint {
            id: "vpce-12345678".into(),
        },
        created_at: now,
    };
    save(&store, &[&theirs, &missing, &ours]);
    save(&store, &[&eni]);
    let user = UserNetworks::new(net.config().clone(), store.clone());
    user.converge(&Default::default()).unwrap();
    let state = |id: &str| {
        let tx = store.begin().unwrap();
        let s: SubnetRecord = tx.load(id).unwrap().unwrap();
        (s.state, s.message.unwrap_or_default())
    };
    assert_eq!(state(&theirs.id).0, NetworkState::Available);
    let (failed, message) = state(&missing.id);
    assert_eq!(failed, NetworkState::Failed);
    assert!(message.contains("nosuch0 does not exist"), "{message}");
    assert_eq!(state(&ours.id).0, NetworkState::Available);
    assert!(addresses_of(&existing).contains(&format!("10.207.{third}.254/24")));

    // The address goes with its owner; the user's bridge stays.
    {
        let mut tx = store.begin().unwrap();
        tx.remove::<NetworkInterfaceRecord>(&eni.id).unwrap();
        tx.commit().unwrap();
    }
    user.converge(&Default::default()).unwrap();
    assert!(!addresses_of(&existing).contains("10.207."));
    // Purging removes the bridges runway made for subnets, not the user's.
    drop(guard);
    assert!(!Path::new("/sys/class/net").join(&ours.interface).exists());
    assert!(Path::new("/sys/class/net").join(&existing).exists());
}
