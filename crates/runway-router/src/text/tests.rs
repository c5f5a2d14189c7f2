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

#[test]
fn fixed_width_hex_is_written_as_format_would() {
    let mut n: u64 = 0x0123_4567_89ab_cdef;
    for _ in 0..10_000 {
        assert_eq!(hex16(n).as_slice(), format!("{n:016x}").as_bytes());
        assert_eq!(
            hex8(n as u32).as_slice(),
            format!("{:08x}", n as u32).as_bytes()
        );
        n = n
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(0xBF58_476D_1CE4_E5B9);
    }
    for n in [
        0,
        9,
        10,
        15,
        16,
        0xa0a0_a0a0_a0a0_a0a0,
        0x9f9f_9f9f_9f9f_9f9f,
        u64::MAX,
    ] {
        assert_eq!(hex16(n).as_slice(), format!("{n:016x}").as_bytes());
    }
}
