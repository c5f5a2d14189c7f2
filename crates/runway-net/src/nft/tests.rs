use super::*;
use runway_model::network::SgRule;

fn members() -> Vec<Member> {
    vec![
        Member {
            ip: Ipv4Addr::new(10, 201, 3, 2),
            tag: 1,
            port: "rwaaaa".into(),
            connector: None,
        },
        Member {
            ip: Ipv4Addr::new(10, 201, 3, 3),
            tag: 2,
            port: "rwbbbb".into(),
            connector: None,
        },
        Member {
            ip: Ipv4Addr::new(10, 201, 3, 4),
            tag: 1,
            port: "rwcccc".into(),
            connector: None,
        },
    ]
}

#[test]
fn ruleset_replaces_both_tables_with_a_chain_per_service() {
    let subnet: Subnet = "10.201.3.0/24".parse().unwrap();
    let s = ruleset("rwt1", subnet, None, &members(), &VpcRules::default());
    assert!(s.starts_with(&delete_tables("rwt1")));
    assert!(s.contains("table inet runway_rwt1 {"));
    assert!(s.contains("table bridge runway_rwt1 {"));
    assert_eq!(
        s.matches("set members_1 { type ipv4_addr; elements = { 10.201.3.2, 10.201.3.4 }; }")
            .count(),
        2,
        "one per table"
    );
    assert_eq!(s.matches("chain svc_2 {").count(), 2);
    assert!(s.contains(
        "elements = { 10.201.3.2 : jump svc_1, 10.201.3.3 : jump svc_2, 10.201.3.4 : jump svc_1 }"
    ));
    assert!(s.contains(r#"elements = { "rwaaaa", "rwbbbb", "rwcccc" }"#));
    assert!(s.contains("ip saddr 10.201.3.0/24 oifname != \"rwt1\" masquerade"));
    assert!(!s.contains("mark"), "no packet is marked");
}

#[test]
fn empty_sets_have_no_elements_clause() {
    let subnet: Subnet = "10.201.3.0/24".parse().unwrap();
    let s = ruleset("rwt1", subnet, None, &[], &VpcRules::default());
    assert!(!s.contains("elements"));
    assert!(s.contains("set port { type ifname; }"));
    assert!(!s.contains("svc_"));
}

#[test]
fn removal_adds_before_deleting_and_drops_the_service_with_its_last_instance() {
    let m = &members()[0];
    let s = remove_member("rwt1", m, false);
    let add = s
        .find("add element bridge runway_rwt1 port { \"rwaaaa\" }")
        .unwrap();
    let delete = s
        .find("delete element bridge runway_rwt1 port { \"rwaaaa\" }")
        .unwrap();
    assert!(add < delete);
    assert!(!s.contains("delete chain"));
    let s = remove_member("rwt1", m, true);
    for family in ["inet", "bridge"] {
        let element = s
            .find(&format!(
                "delete element {family} runway_rwt1 service {{ 10.201.3.2 }}"
            ))
            .unwrap();
        let chain = s
            .find(&format!("delete chain {family} runway_rwt1 svc_1"))
            .unwrap();
        let set = s
            .find(&format!("delete set {family} runway_rwt1 members_1"))
            .unwrap();
        assert!(
            element < chain && chain < set,
            "references go before what they name"
        );
    }
}

fn rule(protocol: &str, from: i32, to: i32, cidr: &str) -> SgRule {
    SgRule {
        id: "sgr-1".into(),
        protocol: protocol.into(),
        from_port: from,
        to_port: to,
        cidr: Subnet::parse_range(cidr).unwrap(),
        description: None,
    }
}

#[test]
fn connectors_and_endpoints_get_chains_from_their_groups_rules() {
    let subnet: Subnet = "10.201.3.0/24".parse().unwrap();
    let mut ms = members();
    ms[1].connector = Some("c0ffee".into());
    ms[2].connector = Some("gone".into());
    let net: Subnet = "10.250.1.0/24".parse().unwrap();
    let vpc = VpcRules {
        nets: vec![net, "10.250.2.0/24".parse().unwrap()],
        bridges: vec!["rsabc".into()],
        interfaces: vec!["rsabc".into()],
        connectors: vec![ConnectorRules {
            id: "c0ffee".into(),
            nets: vec![(net, Ipv4Addr::new(10, 250, 1, 254))],
            egress: vec![
                rule("tcp", 5432, 5432, "10.250.1.0/24"),
                rule("-1", -1, -1, "0.0.0.0/0"),
                rule("icmp", 8, -1, "10.250.1.0/24"),
            ],
            egress_address: Some(Ipv4Addr::new(198, 18, 0, 7)),
        }],
        endpoints: vec![EndpointRules {
            id: "0123abc".into(),
            addrs: vec![Ipv4Addr::new(10, 250, 1, 253)],
            ingress: vec![rule("tcp", 443, 444, "10.250.1.0/24")],
        }],
    };
    let s = ruleset("rwt1", subnet, None, &ms, &vpc);
    for expected in [
        "set vpc_nets { type ipv4_addr; flags interval; elements = { 10.250.1.0/24, 10.250.2.0/24 }; }",
        "set user_bridges { type ifname; elements = { \"rsabc\" }; }",
        "set connm_c0ffee { type ipv4_addr; elements = { 10.201.3.3 }; }",
        "ip daddr @vpc_nets ip daddr != @connn_c0ffee drop",
        "ip daddr 10.250.1.0/24 tcp dport 5432 accept",
        "ip daddr 0.0.0.0/0 accept",
        "ip daddr 10.250.1.0/24 icmp type 8 accept",
        "map egress { type ipv4_addr : verdict; elements = { 10.201.3.3 : jump conn_c0ffee, 10.201.3.4 : drop }; }",
        "ip saddr 10.250.1.0/24 tcp dport 443-444 accept",
        "elements = { 10.250.1.253 : jump vpce_0123abc }",
        "iifname \"rsabc\" oifname \"rsabc\" accept",
        "ip saddr @connm_c0ffee ip daddr 10.250.1.0/24 snat to 10.250.1.254",
        "ip saddr @connm_c0ffee ip daddr != @vpc_nets oifname != \"rwt1\" snat to 198.18.0.7",
    ] {
        assert!(s.contains(expected), "missing {expected:?} in\n{s}");
    }
    // The connector's address takes precedence over masquerading.
    assert!(s.find("snat to").unwrap() < s.find("masquerade").unwrap());
    let add = add_member("rwt1", &ms[1]);
    assert!(add.contains("add element inet runway_rwt1 egress { 10.201.3.3 : jump conn_c0ffee }"));
}

#[test]
fn ipv6_leaves_only_from_the_instances_network_and_never_into_user_subnets() {
    let subnet: Subnet = "10.201.3.0/24".parse().unwrap();
    let vpc = VpcRules {
        interfaces: vec!["rsabc".into(), "lan0".into()],
        ..VpcRules::default()
    };
    let ipv6: Ipv6Subnet = "fd42:7:7:1::/64".parse().unwrap();
    let s = ruleset("rwt1", subnet, Some(ipv6), &members(), &vpc);
    for expected in [
        "set vpc_interfaces { type ifname; elements = { \"rsabc\", \"lan0\" }; }",
        "iifname \"rwt1\" icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept",
        "meta nfproto ipv6 ip6 saddr != fd42:7:7:1::/64 drop",
        "meta nfproto ipv6 oifname @vpc_interfaces drop",
        "ip6 saddr fd42:7:7:1::/64 oifname != \"rwt1\" masquerade",
    ] {
        assert!(s.contains(expected), "missing {expected:?} in\n{s}");
    }
    // Neighbour discovery is let in before everything else from the bridge is dropped.
    assert!(s.find("nd-neighbor-solicit").unwrap() < s.find("iifname \"rwt1\" drop").unwrap());
    let without = ruleset("rwt1", subnet, None, &members(), &vpc);
    assert!(without.contains("meta nfproto ipv6 drop"));
    assert!(!without.contains("icmpv6") && !without.contains("ip6 saddr"));
}
