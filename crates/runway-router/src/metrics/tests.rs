use super::*;
use std::time::Duration;

#[test]
fn concurrency_is_time_weighted_per_second() {
    let meter = ConcurrencyMeter::new();
    let t0 = meter.lock().origin;
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    // Second 0: one request for the whole second, a second one for half of it.
    meter.change(true, at(0));
    meter.change(true, at(500));
    meter.change(false, at(1000));
    // Second 1: one request all along.
    let (average, total) = meter.read(1, at(1000));
    assert!((average - 1.5).abs() < 1e-9, "{average}");
    assert!((total - 1.5).abs() < 1e-9, "{total}");
    let (average, _) = meter.read(1, at(2000));
    assert!((average - 1.0).abs() < 1e-9, "{average}");
    let (average, _) = meter.read(2, at(2000));
    assert!((average - 1.25).abs() < 1e-9, "{average}");
    // Idle for a long while, then read: windows at the constant level are filled in.
    meter.change(false, at(2250));
    let (average, total) = meter.read(1, at(100_000));
    assert_eq!(average, 0.0);
    assert!((total - 2.75).abs() < 1e-9, "{total}");
    // A clock reading from the past does not go backwards.
    meter.change(true, at(50_000));
    let (_, total_after) = meter.read(1, at(100_000));
    assert!((total_after - 2.75).abs() < 1e-9);
}

#[test]
fn status_classes_are_counted() {
    let mut registry = Registry::default();
    #[derive(Debug)]
    struct NoLive;
    impl LiveRevisions for NoLive {
        fn snapshot(&self) -> Vec<crate::RevisionStats> {
            Vec::new()
        }
    }
    let metrics = RouterMetrics::register(&mut registry, Arc::new(NoLive));
    let rev = metrics.revision("svc", "rev");
    for status in [101, 200, 204, 302, 404, 503, 999] {
        rev.response(status);
    }
    assert_eq!(rev.requests(), 7);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(
            r#"runway_router_requests_total{service="svc",revision="rev",class="2xx"} 2"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"class="5xx"} 2"#), "{text}");
}
