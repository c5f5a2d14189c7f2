use super::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn sha1_matches_fips_vectors() {
    assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(
        hex(&sha1(b"abc")),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
    assert_eq!(
        hex(&sha1(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
    );
    assert_eq!(
        hex(&sha1(&vec![b'a'; 1_000_000])),
        "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
    );
}

#[test]
fn base64_matches_rfc_4648_vectors() {
    for (input, want) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(input.as_bytes()), want);
    }
}

#[test]
fn accept_key_matches_rfc_6455_example() {
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn frames_round_trip_with_masks_and_long_lengths() {
    for len in [0usize, 5, 125, 126, 300, 70_000] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        write_frame(&mut wire, true, 2, &payload).unwrap();
        let frame = read_frame(&mut wire.as_slice()).unwrap();
        assert!(frame.fin);
        assert_eq!(frame.opcode, 2);
        assert_eq!(frame.payload, payload);
    }
    // A client frame, masked as clients must.
    let mask = [1u8, 2, 3, 4];
    let mut wire = vec![0x81, 0x80 | 5];
    wire.extend_from_slice(&mask);
    wire.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let frame = read_frame(&mut wire.as_slice()).unwrap();
    assert_eq!(frame.payload, b"hello");
}
