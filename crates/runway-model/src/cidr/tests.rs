use super::*;

#[test]
fn parses_and_reserves_network_gateway_and_broadcast() {
    let s: Subnet = "10.201.7.0/24".parse().unwrap();
    assert_eq!(s.to_string(), "10.201.7.0/24");
    assert_eq!(s.gateway(), Ipv4Addr::new(10, 201, 7, 1));
    let addrs: Vec<_> = s.instance_addresses().collect();
    assert_eq!(addrs.len(), 253);
    assert_eq!(addrs[0], Ipv4Addr::new(10, 201, 7, 2));
    assert_eq!(addrs[252], Ipv4Addr::new(10, 201, 7, 254));
    assert!(s.contains(Ipv4Addr::new(10, 201, 7, 255)));
    assert!(!s.contains(Ipv4Addr::new(10, 201, 8, 1)));
}

#[test]
fn rejects_bad_subnets_with_a_reason() {
    for bad in [
        "10.201.0.1/16",
        "10.201.0.0",
        "10.201.0.0/33",
        "10.201.0.0/30",
        "fe80::/64",
    ] {
        assert!(bad.parse::<Subnet>().is_err(), "{bad} was accepted");
    }
    let err = "10.201.0.1/16".parse::<Subnet>().unwrap_err();
    assert!(err.contains("10.201.0.0/16"), "{err}");
}

#[test]
fn overlap_is_symmetric() {
    let a: Subnet = "10.201.0.0/16".parse().unwrap();
    let b: Subnet = "10.201.9.0/24".parse().unwrap();
    let c: Subnet = "10.88.0.0/16".parse().unwrap();
    assert!(a.overlaps(&b) && b.overlaps(&a));
    assert!(!a.overlaps(&c) && !c.overlaps(&a));
}

#[test]
fn ranges_take_any_prefix_but_no_host_bits_and_round_trip_as_text() {
    let all = Subnet::parse_range("0.0.0.0/0").unwrap();
    assert!(all.contains(Ipv4Addr::new(192, 0, 2, 7)));
    assert_eq!(all.size(), 1 << 32);
    let one = Subnet::parse_range("192.0.2.7/32").unwrap();
    assert!(one.contains(Ipv4Addr::new(192, 0, 2, 7)));
    assert!(!one.contains(Ipv4Addr::new(192, 0, 2, 8)));
    assert!(Subnet::parse_range("192.0.2.7/24").is_err());
    assert!(Subnet::parse_range("192.0.2.0/33").is_err());
    let s: Subnet = "10.250.1.0/24".parse().unwrap();
    assert_eq!(s.last_host(), Ipv4Addr::new(10, 250, 1, 254));
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(json, "\"10.250.1.0/24\"");
    assert_eq!(serde_json::from_str::<Subnet>(&json).unwrap(), s);
}
