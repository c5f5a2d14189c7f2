use super::*;

#[test]
fn timeouts_are_parsed_by_the_grpc_rules() {
    assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_timeout(b"2M"), Some(Duration::from_secs(120)));
    assert_eq!(parse_timeout(b"30S"), Some(Duration::from_secs(30)));
    assert_eq!(parse_timeout(b"250m"), Some(Duration::from_millis(250)));
    assert_eq!(
        parse_timeout(b"99999999u"),
        Some(Duration::from_micros(99_999_999))
    );
    assert_eq!(parse_timeout(b"5n"), Some(Duration::from_nanos(5)));
    assert_eq!(parse_timeout(b"0S"), Some(Duration::ZERO));
    for bad in [
        &b""[..],
        b"S",
        b"10",
        b"10s",
        b"-1S",
        b"1.5S",
        b" 1S",
        b"123456789S",
        b"99999999H9",
        b"\xff",
    ] {
        assert_eq!(
            parse_timeout(bad),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // The largest value there is fits easily.
    assert_eq!(
        parse_timeout(b"99999999H"),
        Some(Duration::from_secs(99_999_999 * 3600))
    );
}

#[test]
fn grpc_requests_are_told_by_their_content_type() {
    let with = |value: &'static str| {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        is_grpc(&headers)
    };
    assert!(with("application/grpc"));
    assert!(with("application/grpc+proto"));
    assert!(with("application/grpc-web"));
    assert!(!with("application/json"));
    assert!(!is_grpc(&HeaderMap::new()));
}

#[test]
fn messages_are_percent_encoded() {
    assert_eq!(encode_message("no instance: 100%"), "no instance: 100%25");
    assert_eq!(encode_message("é\n"), "%C3%A9%0A");
}
