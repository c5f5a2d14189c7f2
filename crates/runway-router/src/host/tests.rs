use super::*;

fn ok(input: &str) -> String {
    parse_host(input.as_bytes()).unwrap().into_owned()
}

fn err(input: &[u8]) -> HostError {
    parse_host(input).unwrap_err()
}

#[test]
fn hosts_are_normalised() {
    assert_eq!(
        ok("hello-1234.runway.localhost"),
        "hello-1234.runway.localhost"
    );
    assert_eq!(
        ok("Hello-1234.Runway.LOCALHOST:8080"),
        "hello-1234.runway.localhost"
    );
    assert_eq!(ok("example.com."), "example.com");
    assert_eq!(ok("example.com.:443"), "example.com");
    assert_eq!(ok("127.0.0.1:80"), "127.0.0.1");
    assert_eq!(ok("[::1]:8443"), "[::1]");
    assert_eq!(ok("[FE80::1]"), "[fe80::1]");
    assert_eq!(ok("under_score.example"), "under_score.example");
    assert!(matches!(
        parse_host(b"already.lower"),
        Ok(Cow::Borrowed("already.lower"))
    ));
}

#[test]
fn malformed_hosts_are_refused() {
    assert_eq!(err(b""), HostError::Missing);
    for bad in [
        &b"a..b"[..],
        b".a",
        b".",
        b"..",
        b":80",
        b"exa mple.com",
        b"example.com/",
        b"ex\x00ample",
        b"\xff\xfe",
        b"caf\xc3\xa9.fr",
        b"[::1",
        b"[]",
        b"[zz::1]",
        b"[::1]x",
        b"[::1]:",
        b"a@b",
    ] {
        assert!(parse_host(bad).is_err(), "{bad:?}");
    }
    assert_eq!(err(b"example.com:"), HostError::Port);
    assert_eq!(err(b"example.com:65536"), HostError::Port);
    assert_eq!(err(b"example.com:123456"), HostError::Port);
    assert_eq!(err(b"example.com:8o"), HostError::Port);
    assert_eq!(err(b"a:b:c"), HostError::Port);
    let long = "a".repeat(254);
    assert_eq!(err(long.as_bytes()), HostError::Malformed);
    assert_eq!(ok("example.com:65535"), "example.com");
}

#[test]
fn the_request_host_comes_from_the_authority_or_one_host_header() {
    let req = Request::get("http://Authority.example:81/x")
        .header("host", "header.example")
        .body(())
        .unwrap();
    assert_eq!(request_host(&req).unwrap(), "authority.example");
    let req = Request::get("/x")
        .header("host", "header.example")
        .body(())
        .unwrap();
    assert_eq!(request_host(&req).unwrap(), "header.example");
    let req = Request::get("/x").body(()).unwrap();
    assert_eq!(request_host(&req).unwrap_err(), HostError::Missing);
    let req = Request::get("/x")
        .header("host", "a.example")
        .header("host", "b.example")
        .body(())
        .unwrap();
    assert_eq!(request_host(&req).unwrap_err(), HostError::Duplicate);
    let req = Request::get("http://user@a.example/").body(()).unwrap();
    assert_eq!(request_host(&req).unwrap_err(), HostError::Malformed);
}
