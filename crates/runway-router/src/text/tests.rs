use super::*;

fn written(f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = b"x=".to_vec();
    f(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn numbers_are_written_as_format_would() {
    for n in [0, 7, 10, 255, 65_535, 1_000_000, u64::MAX] {
        assert_eq!(written(|o| push_decimal(o, n)), format!("x={n}"));
        assert_eq!(written(|o| push_hex(o, n)), format!("x={n:x}"));
    }
}

#[test]
fn addresses_are_written_as_display_would_with_mapped_ones_as_ipv4() {
    let v4: IpAddr = "10.201.0.7".parse().unwrap();
    assert_eq!(written(|o| push_ip(o, v4)), "x=10.201.0.7");
    let mapped: IpAddr = "::ffff:192.168.0.1".parse().unwrap();
    assert_eq!(written(|o| push_ip(o, mapped)), "x=192.168.0.1");
    let v6: IpAddr = "2001:db8::1".parse().unwrap();
    assert_eq!(written(|o| push_ip(o, v6)), "x=2001:db8::1");
}
