use super::*;

const BOUNDS: Bounds = Bounds {
    min: 1,
    max: 25,
    max_concurrency: 10,
};

/// Feeds `concurrency` every 2 s for `secs` seconds, deciding at each tick the way the
/// controller does, with the decided count becoming ready at once; returns the last
/// decision and the time reached.
fn run(
    d: &mut Decider,
    start: Instant,
    secs: u64,
    concurrency: f64,
    mut ready: u32,
    bounds: Bounds,
) -> (u32, Instant) {
    let mut now = start;
    for _ in 0..secs / 2 {
        now += Duration::from_secs(2);
        d.record(now, concurrency);
        ready = d.decide(now, ready, bounds);
    }
    (ready, now)
}

#[test]
fn steady_load_is_served_at_the_target_utilisation() {
    let t0 = Instant::now();
    let mut d = Decider::new(ScalerConfig::default(), t0, 1);
    // 35 concurrent requests, target 10 x 0.7 = 7 per instance: 5 instances.
    let (n, _) = run(&mut d, t0, 120, 35.0, 1, BOUNDS);
    assert_eq!(n, 5);
}

#[test]
fn a_burst_panics_and_scales_up_at_once_then_down_slowly() {
    let t0 = Instant::now();
    let mut d = Decider::new(ScalerConfig::default(), t0, 1);
    let (n, t) = run(&mut d, t0, 60, 5.0, 1, BOUNDS);
    assert_eq!(n, 1);
    // Twenty times the load: the 6 s panic window sees it long before the 60 s window.
    let mut now = t + Duration::from_secs(2);
    d.record(now, 100.0);
    let mut ready = d.decide(now, 1, BOUNDS);
    assert!(d.panicking());
    assert!(
        ready > 1,
        "the first burst sample already scales up: {ready}"
    );
    for _ in 0..2 {
        now += Duration::from_secs(2);
        d.record(now, 100.0);
        ready = d.decide(now, ready, BOUNDS);
    }
    assert_eq!(
        ready, 15,
        "ceil(100 / 7) once the panic window is full of the burst"
    );
    // Load drops: panic mode never scales down...
    for _ in 0..10 {
        now += Duration::from_secs(2);
        d.record(now, 5.0);
        ready = d.decide(now, ready, BOUNDS);
        assert_eq!(ready, 15);
    }
    // ...until the stable window has passed; then at most halving per step.
    for _ in 0..60 {
        now += Duration::from_secs(2);
        d.record(now, 5.0);
        let next = d.decide(now, ready, BOUNDS);
        assert!(
            next >= ready / 2,
            "scale-down is rate limited: {ready} -> {next}"
        );
        ready = next;
    }
    assert!(!d.panicking());
    assert_eq!(ready, 1);
}

#[test]
fn bounds_are_respected() {
    let t0 = Instant::now();
    let bounds = Bounds {
        min: 2,
        max: 4,
        max_concurrency: 1,
    };
    let mut d = Decider::new(ScalerConfig::default(), t0, 2);
    let (n, t) = run(&mut d, t0, 120, 100.0, 2, bounds);
    assert_eq!(n, 4);
    let mut d = Decider::new(ScalerConfig::default(), t, 2);
    let (n, _) = run(&mut d, t, 200, 0.0, 2, bounds);
    assert_eq!(n, 2);
}

#[test]
fn idle_revisions_scale_to_zero_after_the_grace_period_and_wake_on_demand() {
    let t0 = Instant::now();
    let bounds = Bounds { min: 0, ..BOUNDS };
    let mut d = Decider::new(ScalerConfig::default(), t0, 1);
    let (n, t) = run(&mut d, t0, 20, 0.0, 1, bounds);
    assert_eq!(n, 1, "within the grace period one instance stays");
    let (n, t) = run(&mut d, t, 60, 0.0, n, bounds);
    assert_eq!(n, 0);
    // A request arrives while at zero: the router's demand signal brings one back.
    d.poke(t);
    assert_eq!(d.decide(t, 0, bounds), 1);
}

#[test]
fn no_data_keeps_the_current_count() {
    let t0 = Instant::now();
    let mut d = Decider::new(ScalerConfig::default(), t0, 3);
    assert_eq!(d.decide(t0, 3, BOUNDS), 3);
    let mut d = Decider::new(ScalerConfig::default(), t0, 0);
    assert_eq!(
        d.decide(t0, 0, Bounds { min: 0, ..BOUNDS }),
        1,
        "a new revision gets its first instance"
    );
}

#[test]
fn nonsense_samples_are_ignored() {
    let t0 = Instant::now();
    let mut d = Decider::new(ScalerConfig::default(), t0, 1);
    d.record(t0 + Duration::from_secs(1), f64::NAN);
    d.record(t0 + Duration::from_secs(2), -4.0);
    assert_eq!(d.decide(t0 + Duration::from_secs(2), 1, BOUNDS), 1);
}
