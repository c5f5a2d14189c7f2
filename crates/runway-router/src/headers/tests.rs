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

#[test]
fn forwarded_headers_append_the_client() {
    let mut headers = map(&[
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "ftp"),
    ]);
    set_forwarded(
        &mut headers,
        "10.0.0.2".parse().unwrap(),
        "https",
        "app.example:8443",
    );
    assert_eq!(headers["x-forwarded-for"], "203.0.113.7, 10.0.0.2");
    assert_eq!(headers["x-forwarded-proto"], "https");
    assert_eq!(headers["x-forwarded-host"], "app.example:8443");

    let mut headers = HeaderMap::new();
    set_forwarded(
        &mut headers,
        "::ffff:127.0.0.1".parse().unwrap(),
        "http",
        "",
    );
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-host"], "");
}

#[test]
fn request_ids_are_kept_when_sane_and_made_otherwise() {
    let mut headers = map(&[("x-request-id", "abc-123_x.y:z")]);
    assert_eq!(set_request_id(&mut headers), "abc-123_x.y:z");
    for bad in ["", "has space", &"x".repeat(129), "quote\""] {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID.clone(), V::from_str(bad).unwrap());
        let id = set_request_id(&mut headers);
        assert_eq!(id.len(), 32, "{bad:?}");
        assert_eq!(headers[&X_REQUEST_ID], id);
    }
    let mut headers = map(&[("x-request-id", "a"), ("x-request-id", "b")]);
    assert_eq!(set_request_id(&mut headers).len(), 32);
    assert_eq!(headers.get_all(&X_REQUEST_ID).iter().count(), 1);
    assert_ne!(new_request_id(), new_request_id());
}

#[test]
fn trace_ids_are_passed_on_or_created_in_xray_format() {
    let mut headers = map(&[(
        "x-amzn-trace-id",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
    )]);
    set_trace_id(&mut headers);
    assert_eq!(
        headers[&X_AMZN_TRACE_ID],
        "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
    );
    let mut headers = map(&[("x-amzn-trace-id", "garbage")]);
    set_trace_id(&mut headers);
    let value = headers[&X_AMZN_TRACE_ID].to_str().unwrap().to_string();
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
