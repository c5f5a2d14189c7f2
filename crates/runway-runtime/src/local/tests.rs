use super::*;
use crate::test_util::testapp_spec;

#[test]
fn backoff_doubles_up_to_the_maximum() {
    let b = Backoff::default();
    assert_eq!(b.delay(0), Duration::from_secs(1));
    assert_eq!(b.delay(1), Duration::from_secs(2));
    assert_eq!(b.delay(5), Duration::from_secs(32));
    assert_eq!(b.delay(9), Duration::from_secs(300));
    assert_eq!(b.delay(u32::MAX), Duration::from_secs(300));
}

#[test]
fn etc_files_name_the_instance_and_the_resolvers() {
    let [hosts, resolv, hostname] = etc_files(
        Ipv4Addr::new(10, 201, 0, 7),
        "abc123",
        &[IpAddr::V4(Ipv4Addr::new(9, 9, 9, 9))],
    );
    assert_eq!(hosts.0, "hosts");
    assert!(hosts.1.contains("10.201.0.7\tabc123\n"));
    assert!(hosts.1.starts_with("127.0.0.1\tlocalhost\n"));
    assert_eq!(resolv.1, "nameserver 9.9.9.9\n");
    assert_eq!(hostname.1, "abc123\n");
}

#[test]
fn specs_are_validated_before_anything_is_created() {
    let image = ImageRef {
        repository: "r".into(),
        digest: format!("sha256:{}", "a".repeat(64)),
    };
    let good = testapp_spec("svc", &image);
    assert!(validate(&good).is_ok());
    type Change = Box<dyn Fn(&mut InstanceSpec)>;
    let bad: Vec<Change> = vec![
        Box::new(|s| s.port = 0),
        Box::new(|s| s.memory_mb = 1),
        Box::new(|s| s.cpu_units = 0),
        Box::new(|s| s.service_id = "a/b".into()),
        Box::new(|s| s.service_id = "x\nnft".into()),
        Box::new(|s| s.env = vec![("A=B".into(), "c".into())]),
        Box::new(|s| s.env = vec![("".into(), "c".into())]),
        Box::new(|s| s.image.digest = "latest".into()),
        Box::new(|s| s.health.interval = Duration::ZERO),
    ];
    for change in bad {
        let mut s = good.clone();
        change(&mut s);
        assert!(
            matches!(validate(&s), Err(RuntimeError::InvalidSpec(_))),
            "{s:?}"
        );
    }
}

#[test]
fn instance_ids_are_32_hex_digits() {
    let id = InstanceId::new();
    assert_eq!(InstanceId::parse(id.as_str()), Some(id.clone()));
    assert_eq!(hostname(&id), &id.as_str()[..12]);
    assert!(InstanceId::parse("../etc").is_none());
    assert!(InstanceId::parse(&"A".repeat(32)).is_none());
}

#[test]
fn dns_servers_skip_loopback_resolvers() {
    assert!(host_dns_servers().iter().all(|s| !s.is_loopback()));
}
