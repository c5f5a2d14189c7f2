use super::*;
use tokio::net::TcpListener;

fn check(probe: Probe, healthy: u32, unhealthy: u32) -> HealthCheck {
    HealthCheck {
        probe,
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        healthy_threshold: healthy,
        unhealthy_threshold: unhealthy,
    }
}

#[test]
fn a_starting_instance_is_healthy_at_its_first_pass_when_the_threshold_is_one() {
    let t0 = Instant::now();
    let mut t = Tracker::new(check(Probe::Tcp, 1, 3), Health::Starting);
    // Refused while it boots: probed quickly, but counted once per interval.
    assert_eq!(t.record(false, t0), None);
    assert_eq!(t.next_delay(), Duration::from_millis(5));
    assert_eq!(t.record(false, t0 + Duration::from_millis(5)), None);
    assert_eq!(t.next_delay(), Duration::from_millis(10));
    assert_eq!(
        t.record(true, t0 + Duration::from_millis(15)),
        Some(Health::Healthy)
    );
    assert_eq!(t.health, Health::Healthy);
    assert_eq!(t.next_delay(), Duration::from_secs(1));
}

#[test]
fn thresholds_count_consecutive_results() {
    let t0 = Instant::now();
    let s = Duration::from_secs(1);
    let mut t = Tracker::new(check(Probe::Tcp, 2, 3), Health::Starting);
    assert_eq!(t.record(true, t0), None);
    // A second pass within the interval does not count while starting.
    assert_eq!(t.record(true, t0 + Duration::from_millis(10)), None);
    assert_eq!(t.record(true, t0 + s), Some(Health::Healthy));
    assert_eq!(t.record(false, t0 + 2 * s), None);
    assert_eq!(t.record(false, t0 + 3 * s), None);
    assert_eq!(
        t.record(true, t0 + 4 * s),
        None,
        "a pass resets the failures"
    );
    assert_eq!(t.record(false, t0 + 5 * s), None);
    assert_eq!(t.record(false, t0 + 6 * s), None);
    assert_eq!(t.record(false, t0 + 7 * s), Some(Health::Unhealthy));
    assert_eq!(t.record(true, t0 + 8 * s), None);
    assert_eq!(t.record(true, t0 + 9 * s), Some(Health::Healthy));
}

#[test]
fn a_starting_instance_that_never_serves_turns_unhealthy_at_the_configured_cadence() {
    let t0 = Instant::now();
    let mut t = Tracker::new(check(Probe::Tcp, 1, 2), Health::Starting);
    assert_eq!(t.record(false, t0), None);
    for ms in [5, 10, 20, 500, 999] {
        assert_eq!(t.record(false, t0 + Duration::from_millis(ms)), None);
    }
    assert_eq!(
        t.record(false, t0 + Duration::from_millis(1000)),
        Some(Health::Unhealthy)
    );
}

#[test]
fn configurations_convert_with_app_runners_defaults_and_ranges() {
    let c = HealthCheck::from_config(&HealthCheckConfiguration::default()).unwrap();
    assert_eq!(c, HealthCheck::default());
    let c = HealthCheck::from_config(&HealthCheckConfiguration {
        protocol: Some("HTTP".into()),
        path: Some("/healthz".into()),
        interval: Some(10),
        timeout: Some(3),
        healthy_threshold: Some(2),
        unhealthy_threshold: Some(4),
    })
    .unwrap();
    assert_eq!(
        c.probe,
        Probe::Http {
            path: "/healthz".into()
        }
    );
    assert_eq!(c.interval, Duration::from_secs(10));
    assert_eq!(c.healthy_threshold, 2);
    for bad in [
        HealthCheckConfiguration {
            interval: Some(21),
            ..Default::default()
        },
        HealthCheckConfiguration {
            timeout: Some(0),
            ..Default::default()
        },
        HealthCheckConfiguration {
            protocol: Some("UDP".into()),
            ..Default::default()
        },
        HealthCheckConfiguration {
            protocol: Some("HTTP".into()),
            path: Some("/a b".into()),
            ..Default::default()
        },
    ] {
        assert!(HealthCheck::from_config(&bad).is_err(), "{bad:?}");
    }
}

/// Serves one fixed answer to every connection.
async fn server(answer: &'static [u8]) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf).await;
            let _ = c.write_all(answer).await;
        }
    });
    addr
}

#[tokio::test]
async fn probes_pass_on_connect_and_on_2xx_or_3xx() {
    let http = |p: &str| check(Probe::Http { path: p.into() }, 1, 1);
    let ok = server(b"HTTP/1.1 204 No Content\r\n\r\n").await;
    let redirect = server(b"HTTP/1.1 302 Found\r\nLocation: /\r\n\r\n").await;
    let error = server(b"HTTP/1.1 503 Unavailable\r\n\r\n").await;
    let garbage = server(b"hello\n").await;
    assert!(probe(ok, &check(Probe::Tcp, 1, 1)).await.is_ok());
    assert!(probe(ok, &http("/")).await.is_ok());
    assert!(probe(redirect, &http("/")).await.is_ok());
    assert_eq!(probe(error, &http("/")).await.unwrap_err(), "status 503");
    assert!(probe(garbage, &http("/")).await.is_err());
    // Nothing listening.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    assert!(probe(closed, &check(Probe::Tcp, 1, 1)).await.is_err());
    // Accepting but never answering: the timeout.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let err = probe(silent_addr, &http("/")).await.unwrap_err();
    assert!(err.contains("no answer"), "{err}");
    drop(silent);
}
