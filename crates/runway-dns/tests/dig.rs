//! The DNS server as resolvers see it, checked with `dig` (Debian's dnsutils).

use runway_dns::{Dns, Host, ZoneConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};

const BASE: &str = "runway.test";

struct Server {
    dns: Dns,
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Binds UDP and TCP on one free loopback port and serves `config` on them.
async fn start(rate_limit: u32) -> Server {
    let config = ZoneConfig {
        base_domain: BASE.into(),
        addresses: vec![
            "203.0.113.10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        ],
        nameserver_addresses: vec!["203.0.113.53".parse().unwrap()],
        rate_limit,
    };
    let dns = Dns::new(config, &mut Default::default()).unwrap();
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = dns.clone();
    tokio::spawn(async move {
        server
            .serve(udp, tcp, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Server {
        dns,
        addr,
        _stop: stop,
    }
}

impl Server {
    /// Runs `dig @server -p port ARGS` and returns its output.
    async fn dig(&self, args: &[&str]) -> String {
        let mut command = Command::new("dig");
        command
            .arg(format!("@{}", self.addr.ip()))
            .args(["-p", &self.addr.port().to_string(), "+time=2", "+tries=1"])
            .args(args);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .expect("dig (apt-get install dnsutils)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    async fn short(&self, args: &[&str]) -> Vec<String> {
        let mut args = args.to_vec();
        args.push("+short");
        let mut lines: Vec<String> = self.dig(&args).await.lines().map(String::from).collect();
        lines.sort();
        lines
    }
}

fn status(output: &str) -> &str {
    output
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("(no answer)")
}

fn flags(output: &str) -> Vec<&str> {
    output
        .split("flags: ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .map(|f| f.split_whitespace().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn answers_its_zones_authoritatively_and_nothing_else() {
    let server = start(0).await;
    let host = format!("hello-1a2b3c4d.{BASE}");
    let ipv4_host = format!("old-5e6f7a8b.{BASE}");
    server
        .dns
        .set_hosts(vec![
            Host {
                name: host.clone(),
                ipv6: true,
            },
            Host {
                name: ipv4_host.clone(),
                ipv6: false,
            },
        ])
        .unwrap();
    let challenge = format!("_0f3e.acme-validations.{BASE}");
    server
        .dns
        .set_txt(BTreeMap::from([(
            challenge.clone(),
            vec!["tok-value".into()],
        )]))
        .unwrap();

    // A service host: its addresses, answered with authority and without recursion.
    let full = server.dig(&[&host, "A"]).await;
    assert_eq!(status(&full), "NOERROR", "{full}");
    let flags = flags(&full);
    assert!(flags.contains(&"aa"), "authoritative: {full}");
    assert!(!flags.contains(&"ra"), "no recursion offered: {full}");
    assert_eq!(server.short(&[&host, "A"]).await, ["203.0.113.10"]);
    assert_eq!(server.short(&[&host, "AAAA"]).await, ["2001:db8::10"]);
    // An IPv4 service's host has no AAAA record, as the router serves it to IPv4 clients
    // only; nor has the wildcard.
    assert_eq!(server.short(&[&ipv4_host, "A"]).await, ["203.0.113.10"]);
    let none = server.dig(&[&ipv4_host, "AAAA"]).await;
    assert_eq!(status(&none), "NOERROR", "{none}");
    assert!(none.contains("ANSWER: 0"), "{none}");
    let wildcard_v6 = server.dig(&[&format!("other.{BASE}"), "AAAA"]).await;
    assert!(wildcard_v6.contains("ANSWER: 0"), "{wildcard_v6}");
    // The wildcard, the apex, and the name server's own address.
    assert_eq!(
        server.short(&[&format!("*.{BASE}"), "A"]).await,
        ["203.0.113.10"]
    );
    assert_eq!(
        server
            .short(&[&format!("tag---hello-1a2b3c4d.{BASE}"), "A"])
            .await,
        ["203.0.113.10"]
    );
    assert_eq!(server.short(&[BASE, "A"]).await, ["203.0.113.10"]);
    assert_eq!(
        server.short(&[&format!("ns1.{BASE}"), "A"]).await,
        ["203.0.113.53"]
    );
    // SOA and NS of both zones.
    assert_eq!(server.short(&[BASE, "NS"]).await, [format!("ns1.{BASE}.")]);
    let soa = server.short(&[BASE, "SOA"]).await;
    assert!(
        soa[0].starts_with(&format!("ns1.{BASE}. hostmaster.{BASE}. ")),
        "{soa:?}"
    );
    let validation = format!("acme-validations.{BASE}");
    assert_eq!(
        server.short(&[&validation, "NS"]).await,
        [format!("ns1.{BASE}.")]
    );
    // The challenge's TXT record, and its changes.
    assert_eq!(server.short(&[&challenge, "TXT"]).await, ["\"tok-value\""]);
    server.dns.set_txt(BTreeMap::new()).unwrap();
    let gone = server.dig(&[&challenge, "TXT"]).await;
    assert_eq!(status(&gone), "NXDOMAIN", "{gone}");
    assert!(
        gone.contains(&format!("{validation}.")) && gone.contains("SOA"),
        "a negative answer carries the SOA: {gone}"
    );
    // Names that do not exist: the validation zone has no wildcard. (Under the base
    // domain the wildcard answers every name.)
    let missing = server.dig(&[&format!("nothing.{validation}"), "A"]).await;
    assert_eq!(status(&missing), "NXDOMAIN", "{missing}");
    // A type the name lacks: no data, no error.
    let mx = server.dig(&[&host, "MX"]).await;
    assert_eq!(status(&mx), "NOERROR", "{mx}");
    assert!(mx.contains("ANSWER: 0"), "{mx}");
    // Names of other zones: refused, never resolved for the client.
    let other = server.dig(&["example.com", "A"]).await;
    assert_eq!(status(&other), "REFUSED", "{other}");
    // No zone transfer, over TCP as AXFR goes.
    let axfr = server.dig(&[BASE, "AXFR"]).await;
    assert!(
        !axfr.contains("hello-1a2b3c4d") && axfr.contains("Transfer failed"),
        "{axfr}"
    );
    // A host that leaves stops resolving by name but the wildcard still answers.
    server.dns.set_hosts(Vec::new()).unwrap();
    let soa_after = server.short(&[BASE, "SOA"]).await;
    assert_ne!(soa, soa_after, "every change bumps the serial");
}

/// One UDP query for `name` A, with id `id`.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut packet = Vec::new();
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]);
    packet
}

#[tokio::test]
async fn udp_answers_are_rate_limited_per_client_network_but_tcp_is_not() {
    let server = start(5).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server.addr).await.unwrap();
    for id in 0..50u16 {
        socket.send(&query(id, BASE)).await.unwrap();
    }
    let mut answered = 0;
    let mut buf = [0u8; 512];
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf)).await
    {
        answered += 1;
    }
    // A burst of two seconds at 5 per second, plus what refilled while sending.
    assert!((10..=13).contains(&answered), "{answered} of 50 answered");
    // The same client over TCP, as a resolver retries after a truncated or lost answer.
    assert_eq!(server.short(&[BASE, "A", "+tcp"]).await, ["203.0.113.10"]);
}
