use super::*;
use runway_store::SqliteStore;

fn subnet() -> Subnet {
    "10.201.3.0/29".parse().unwrap()
}

#[test]
fn addresses_are_unique_stable_and_reused_after_release() {
    let store = SqliteStore::in_memory().unwrap();
    let a = allocate(&store, "br0", subnet(), "i1", "svc-a", None, false).unwrap();
    let b = allocate(&store, "br0", subnet(), "i2", "svc-a", None, false).unwrap();
    assert_eq!(a.ip, Ipv4Addr::new(10, 201, 3, 2));
    assert_eq!(b.ip, Ipv4Addr::new(10, 201, 3, 3));
    assert_eq!(a.tag, b.tag, "instances of one service share a tag");
    assert_eq!(
        allocate(&store, "br0", subnet(), "i1", "svc-a", None, false).unwrap(),
        a
    );
    assert_eq!(lookup(&store, "br0", "i1").unwrap(), Some(a.clone()));

    assert_eq!(release(&store, "br0", "i1").unwrap(), Some(a.clone()));
    assert_eq!(release(&store, "br0", "i1").unwrap(), None);
    let c = allocate(&store, "br0", subnet(), "i3", "svc-b", None, false).unwrap();
    assert_eq!(c.ip, a.ip, "the lowest free address is reused");
    assert_ne!(c.tag, a.tag, "another service gets another tag");
}

#[test]
fn tags_are_released_with_the_last_address_of_a_service() {
    let store = SqliteStore::in_memory().unwrap();
    let a = allocate(&store, "br0", subnet(), "i1", "svc-a", None, false).unwrap();
    allocate(&store, "br0", subnet(), "i2", "svc-a", None, false).unwrap();
    let b = allocate(&store, "br0", subnet(), "i3", "svc-b", None, false).unwrap();
    release(&store, "br0", "i1").unwrap();
    let tx = store.begin().unwrap();
    assert!(
        tx.load::<TagRecord>(&format!("br0/{}", a.tag))
            .unwrap()
            .is_some()
    );
    drop(tx);
    release(&store, "br0", "i2").unwrap();
    let tx = store.begin().unwrap();
    assert!(
        tx.load::<TagRecord>(&format!("br0/{}", a.tag))
            .unwrap()
            .is_none()
    );
    assert!(
        tx.load::<TagRecord>(&format!("br0/{}", b.tag))
            .unwrap()
            .is_some()
    );
}

#[test]
fn a_full_subnet_is_a_clear_error_and_bridges_are_independent() {
    let store = SqliteStore::in_memory().unwrap();
    // A /29 has 8 addresses: network, gateway, broadcast and five for instances.
    for i in 0..5 {
        allocate(
            &store,
            "br0",
            subnet(),
            &format!("i{i}"),
            "svc",
            None,
            false,
        )
        .unwrap();
    }
    let err = allocate(&store, "br0", subnet(), "i9", "svc", None, false).unwrap_err();
    assert!(matches!(err, IpamError::Exhausted { .. }), "{err}");
    assert!(err.to_string().contains("10.201.3.0/29"));
    let other = allocate(&store, "br1", subnet(), "i9", "svc", None, false).unwrap();
    assert_eq!(other.ip, Ipv4Addr::new(10, 201, 3, 2));
    purge(&store, "br0").unwrap();
    assert!(all(&store, "br0").unwrap().is_empty());
    assert_eq!(all(&store, "br1").unwrap().len(), 1);
}
