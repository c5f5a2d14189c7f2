use super::*;

fn config(protocol: Option<&str>, request: Option<i64>, body: Option<i64>) -> HttpConfiguration {
    HttpConfiguration {
        instance_protocol: protocol.map(str::to_string),
        request_timeout_seconds: request,
        idle_timeout_seconds: None,
        max_request_body_bytes: body,
    }
}

#[test]
fn defaults_are_app_runners_and_documented() {
    let d = HttpSettings::default();
    assert_eq!(d.protocol, InstanceProtocol::Http1);
    assert_eq!(d.request_timeout, Duration::from_secs(120));
    assert_eq!(d.idle_timeout, Duration::from_secs(15 * 60));
    assert_eq!(d.max_request_body, Some(32 * 1024 * 1024));
}

#[test]
fn the_api_wins_over_apprunner_yaml_member_by_member() {
    let api = config(None, Some(300), Some(UNLIMITED_REQUEST_BODY));
    let yaml = config(Some("H2C"), Some(60), Some(1024));
    let s = HttpSettings::resolve(Some(&api), Some(&yaml));
    assert_eq!(s.protocol, InstanceProtocol::H2c, "from apprunner.yaml");
    assert_eq!(s.request_timeout, Duration::from_secs(300), "from the API");
    assert_eq!(s.max_request_body, None, "the API's unlimited");
    assert_eq!(s.idle_timeout, Duration::from_secs(900), "the default");
    assert_eq!(
        HttpSettings::resolve(None, Some(&yaml)).request_timeout,
        Duration::from_secs(60)
    );
    let wire = s.to_wire();
    assert_eq!(wire.instance_protocol.as_deref(), Some("H2C"));
    assert_eq!(wire.max_request_body_bytes, Some(0));
    assert_eq!(
        HttpSettings::resolve(Some(&wire), None),
        s,
        "the wire form round-trips"
    );
}

#[test]
fn durations_and_sizes_read_as_people_write_them() {
    assert_eq!(parse_duration("300"), Ok(300));
    assert_eq!(parse_duration("90s"), Ok(90));
    assert_eq!(parse_duration("5m"), Ok(300));
    assert_eq!(parse_duration(" 24h "), Ok(86400));
    for bad in ["", "m", "5 minutes", "-5", "1.5h", "99999999999999999999h"] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
    assert_eq!(parse_size("1048576"), Ok(1 << 20));
    assert_eq!(parse_size("64KiB"), Ok(64 << 10));
    assert_eq!(parse_size("32mib"), Ok(32 << 20));
    assert_eq!(parse_size("1GiB"), Ok(1 << 30));
    assert_eq!(parse_size("2MB"), Ok(2_000_000));
    assert_eq!(parse_size("unlimited"), Ok(UNLIMITED_REQUEST_BODY));
    for bad in ["", "lots", "1.5GiB", "-1", "1PiB", "99999999999TiB"] {
        assert!(parse_size(bad).is_err(), "{bad:?}");
    }
    for (secs, text) in [(7200, "2h"), (300, "5m"), (90, "90s")] {
        assert_eq!(format_duration(secs), text);
        assert_eq!(parse_duration(text), Ok(secs));
    }
    for (bytes, text) in [(32 << 20, "32MiB"), (0, "unlimited"), (1000, "1000B")] {
        assert_eq!(format_size(bytes), text);
        assert_eq!(parse_size(text), Ok(bytes));
    }
}

#[test]
fn bounds_say_what_is_allowed() {
    assert!(check_request_timeout(3600).is_ok());
    let e = check_request_timeout(3601).unwrap_err();
    assert!(e.contains("1 second to 1h (3600 seconds)"), "{e}");
    assert!(check_request_timeout(0).is_err());
    assert!(check_idle_timeout(86400).is_ok());
    assert!(check_idle_timeout(86401).is_err());
    assert!(check_max_request_body(0).is_ok());
    assert!(
        check_max_request_body(-1)
            .unwrap_err()
            .contains("0 for unlimited")
    );
}
