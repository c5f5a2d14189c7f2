use super::*;
use http::HeaderValue as V;

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            V::from_str(value).unwrap(),
        );
    }
    headers
}

#[test]
fn hop_by_hop_headers_are_removed() {
    let mut headers = map(&[
        ("connection", "keep-alive, X-Secret-Hop"),
        ("x-secret-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-authorization", "Basic abc"),
        ("proxy-foo", "1"),
        ("te", "gzip, trailers"),
        ("trailer", "grpc-status"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("x-keep", "yes"),
        ("host", "a.example"),
    ]);
    strip_hop_by_hop(&mut headers, false);
    let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(headers["x-keep"], "yes");
    assert_eq!(headers["te"], "trailers");
    assert_eq!(headers["host"], "a.example");

    let mut headers = map(&[("te", "gzip")]);
    strip_hop_by_hop(&mut headers, false);
    assert!(headers.is_empty());
}

#[test]
fn upgrades_keep_upgrade_and_connection() {
    let mut headers = map(&[
        ("connection", "Upgrade, keep-alive"),
        ("upgrade", "websocket"),
        ("sec-websocket-key", "abc"),
    ]);
    assert!(is_upgrade_request(&headers));
    strip_hop_by_hop(&mut headers, true);
    assert_eq!(headers["upgrade"], "websocket");
    assert_eq!(headers["connection"], "upgrade");
    assert_eq!(headers["sec-websocket-key"], "abc");
    assert!(!is_upgrade_request(&map(&[("upgrade", "websocket")])));
    assert!(!is_upgrade_request(&map(&[("connection", "upgrade")])));
    // An HTTP/2 WebSocket's headers have no hop-by-hop header at all.
    let mut headers = map(&[("sec-websocket-version", "13")]);
    strip_hop_by_hop(&mut headers, true);
    assert_eq!(headers["connection"], "upgrade");
}

#[test]
fn connection_cannot_strip_what_the_router_sets() {
    let mut headers = map(&[
        ("connection", "host, x-request-id, x-amzn-trace-id"),
        ("host", "a.example"),
        ("x-request-id", "abc"),
        ("x-amzn-trace-id", "Root=1-2-3"),
    ]);
    strip_hop_by_hop(&mut headers, false);
    assert_eq!(headers.len(), 3);
}

/// The headers `forwarded` sets, applied to a copy of `headers` and written as an
/// HTTP/1.1 head; both ways must agree.
fn both_ways(headers: &HeaderMap, forwarded: &Forwarded) -> HeaderMap {
    let mut applied = headers.clone();
    forwarded.apply(&mut applied);
    let mut written = Vec::new();
    forwarded.write_host(&mut written);
    for (name, value) in headers {
        if !forwarded.replaces(name) {
            written.extend_from_slice(name.as_str().as_bytes());
            written.extend_from_slice(b": ");
            written.extend_from_slice(value.as_bytes());
            written.extend_from_slice(b"\r\n");
        }
    }
    forwarded.write(&mut written);
    written.extend_from_slice(b"\r\n");
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let Ok(httparse::Status::Complete((_, fields))) =
        httparse::parse_headers(&written, &mut fields)
    else {
        panic!("unparsable: {}", String::from_utf8_lossy(&written));
    };
    let parsed = map(&fields
        .iter()
        .map(|f| (f.name, std::str::from_utf8(f.value).unwrap()))
        .collect::<Vec<_>>());
    let mut a: Vec<_> = applied.iter().collect();
    let mut b: Vec<_> = parsed.iter().collect();
    a.sort_by_key(|(n, v)| (n.as_str(), v.as_bytes()));
    b.sort_by_key(|(n, v)| (n.as_str(), v.as_bytes()));
    assert_eq!(a, b);
    applied
}

fn client(ip: &str) -> HeaderValue {
    client_value(ip.parse().unwrap())
}

#[test]
fn forwarded_headers_append_the_client() {
    let headers = map(&[
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-for", " 198.51.100.1 "),
        ("x-forwarded-proto", "ftp"),
        ("x-forwarded-host", "elsewhere"),
        ("host", "evil.example"),
        ("forwarded", "for=192.0.2.66;host=evil.example"),
        ("x-real-ip", "192.0.2.66"),
    ]);
    let forwarded = Forwarded::new(
        &headers,
        &client("10.0.0.2"),
        "https",
        V::from_static("app.example:8443"),
    );
    let headers = both_ways(&headers, &forwarded);
    // The host the request was routed by, whatever Host the client sent besides.
    assert_eq!(headers["host"], "app.example:8443");
    assert!(!headers.contains_key("forwarded"));
    assert_eq!(headers["x-real-ip"], "10.0.0.2");
    assert_eq!(
        headers["x-forwarded-for"],
        "203.0.113.7, 198.51.100.1, 10.0.0.2"
    );
    assert_eq!(headers.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(headers["x-forwarded-host"], "app.example:8443");

    let headers = HeaderMap::new();
    let forwarded = Forwarded::new(
        &headers,
        &client("::ffff:127.0.0.1"),
        "http",
        V::from_static(""),
    );
    let headers = both_ways(&headers, &forwarded);
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-host"], "");
    assert_eq!(client("2001:db8::1"), "2001:db8::1");
    assert_eq!(client("192.168.10.200"), "192.168.10.200");
}

#[test]
fn request_ids_are_kept_when_sane_and_made_otherwise() {
    let id = |headers: &HeaderMap| {
        let forwarded = Forwarded::new(headers, &client("10.0.0.1"), "http", V::from_static("h"));
        let applied = both_ways(headers, &forwarded);
        assert_eq!(applied.get_all(&X_REQUEST_ID).iter().count(), 1);
        assert_eq!(applied[&X_REQUEST_ID], forwarded.request_id());
        forwarded.request_id().clone()
    };
    assert_eq!(
        id(&map(&[("x-request-id", "abc-123_x.y:z")])),
        "abc-123_x.y:z"
    );
    for bad in ["", "has space", &"x".repeat(129), "quote\""] {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID.clone(), V::from_str(bad).unwrap());
        let made = id(&headers);
        assert_eq!(made.len(), 32, "{bad:?}");
        assert!(made.as_bytes().iter().all(u8::is_ascii_hexdigit));
    }
    assert_eq!(
        id(&map(&[("x-request-id", "a"), ("x-request-id", "b")])).len(),
        32
    );
    assert_eq!(id(&HeaderMap::new()).len(), 32);
    assert_ne!(new_request_id(), new_request_id());
}

#[test]
fn trace_ids_are_passed_on_or_created_in_xray_format() {
    let trace = |headers: &HeaderMap| {
        let forwarded = Forwarded::new(headers, &client("10.0.0.1"), "http", V::from_static("h"));
        let applied = both_ways(headers, &forwarded);
        assert_eq!(applied.get_all(&X_AMZN_TRACE_ID).iter().count(), 1);
        applied[&X_AMZN_TRACE_ID].to_str().unwrap().to_string()
    };
    let sane = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1";
    assert_eq!(trace(&map(&[("x-amzn-trace-id", sane)])), sane);
    for headers in [
        map(&[("x-amzn-trace-id", "garbage")]),
        map(&[("x-amzn-trace-id", sane), ("x-amzn-trace-id", sane)]),
        HeaderMap::new(),
    ] {
        let value = trace(&headers);
        let parts: Vec<&str> = value.strip_prefix("Root=1-").unwrap().split('-').collect();
        assert_eq!(parts.len(), 2, "{value}");
        assert_eq!(parts[0].len(), 8);
        assert_eq!(parts[1].len(), 24);
        assert!(
            parts
                .iter()
                .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }
}

#[test]
fn websocket_keys_are_16_random_bytes_in_base64() {
    let key = new_websocket_key();
    let text = key.to_str().unwrap();
    assert_eq!(text.len(), 24);
    assert!(text.ends_with("=="));
    assert!(
        text[..22]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    );
    assert_ne!(new_websocket_key(), key);
}

#[test]
fn request_names_say_which_work_the_headers_need() {
    let plain = RequestNames::of(&map(&[("host", "a"), ("accept", "*/*")]));
    assert!(!plain.hop_by_hop && !plain.upgrade && !plain.expect);
    let upgrade = RequestNames::of(&map(&[("connection", "upgrade"), ("upgrade", "websocket")]));
    assert!(upgrade.hop_by_hop && upgrade.upgrade && !upgrade.expect);
    let proxy = RequestNames::of(&map(&[
        ("proxy-authorization", "x"),
        ("expect", "100-continue"),
    ]));
    assert!(proxy.hop_by_hop && !proxy.upgrade && proxy.expect);
}

#[test]
fn the_fuzz_target_for_headers_holds_on_samples() {
    for sample in [
        &b"host: a.example\naccept: */*"[..],
        b"host: a\nconnection: upgrade\nupgrade: websocket\nexpect: 100-continue",
        b"proxy-foo: 1\nconnection: x-a, close\nx-a: 1\nte: trailers",
        b"x-forwarded-for: 10.0.0.1\nx-request-id: abc\nx-amzn-trace-id: Root=1-x",
    ] {
        crate::fuzzing::headers(sample);
    }
}
