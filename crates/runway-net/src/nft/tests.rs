use super::*;

fn members() -> Vec<Member> {
    vec![
        Member {
            ip: Ipv4Addr::new(10, 201, 3, 2),
            tag: 1,
            port: "rwaaaa".into(),
        },
        Member {
            ip: Ipv4Addr::new(10, 201, 3, 3),
            tag: 2,
            port: "rwbbbb".into(),
        },
        Member {
            ip: Ipv4Addr::new(10, 201, 3, 4),
            tag: 1,
            port: "rwcccc".into(),
        },
    ]
}

#[test]
fn ruleset_replaces_both_tables_with_a_chain_per_service() {
    let subnet: Subnet = "10.201.3.0/24".parse().unwrap();
    let s = ruleset("rwt1", subnet, &members());
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
    let s = ruleset("rwt1", subnet, &[]);
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
