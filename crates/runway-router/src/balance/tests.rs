use super::*;
use crate::metrics::{LiveRevisions, RouterMetrics};
use runway_telemetry::Registry;

#[derive(Debug)]
struct NoLive;
impl LiveRevisions for NoLive {
    fn snapshot(&self) -> Vec<crate::RevisionStats> {
        Vec::new()
    }
}

fn revision(endpoints: usize, max: u32) -> (Arc<RevisionState>, watch::Receiver<Demand>) {
    let metrics = RouterMetrics::register(&mut Registry::default(), Arc::new(NoLive));
    let (demand, rx) = watch::channel(Demand::default());
    let rev = Arc::new(RevisionState::new(
        "rev",
        "svc",
        Arc::new(demand),
        metrics.revision("svc", "rev"),
    ));
    let eps = (0..endpoints)
        .map(|i| {
            Arc::new(EndpointState::new(
                &format!("i{i}"),
                SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16)),
                Upstream::Http1,
                Pool::new(Upstream::Http1),
            ))
        })
        .collect();
    rev.update(eps, max);
    (rev, rx)
}

#[test]
fn leases_go_to_the_least_loaded_instance_and_never_past_the_limit() {
    let (rev, _) = revision(3, 2);
    let leases: Vec<Lease> = (0..6)
        .map(|_| rev.try_lease(&[]).expect("capacity"))
        .collect();
    assert!(rev.try_lease(&[]).is_none(), "3 instances x 2 are full");
    for ep in rev.endpoints().iter() {
        assert_eq!(ep.in_flight(), 2);
    }
    assert_eq!(rev.in_flight(), 6);
    drop(leases);
    assert_eq!(rev.in_flight(), 0);
    // Spread: three leases land on three instances.
    let leases: Vec<Lease> = (0..3).map(|_| rev.try_lease(&[]).unwrap()).collect();
    for ep in rev.endpoints().iter() {
        assert_eq!(ep.in_flight(), 1);
    }
    drop(leases);
}

#[test]
fn excluded_and_down_instances_are_avoided() {
    let (rev, _) = revision(2, 10);
    let eps = rev.endpoints();
    let lease = rev.try_lease(&[eps[0].addr]).unwrap();
    assert_eq!(lease.endpoint.addr, eps[1].addr);
    drop(lease);
    let policy = EjectionPolicy {
        after: 1,
        base: Duration::from_secs(60),
        max: Duration::from_secs(60),
    };
    assert!(eps[1].failed(&policy).is_some());
    for _ in 0..10 {
        let lease = rev.try_lease(&[]).unwrap();
        assert_eq!(lease.endpoint.addr, eps[0].addr);
    }
    // When only an ejected instance is left, it is still used.
    let lease = rev.try_lease(&[eps[0].addr]).unwrap();
    assert_eq!(lease.endpoint.addr, eps[1].addr);
    drop(lease);
    // A full healthy instance is waited for rather than an ejected one used.
    let full: Vec<Lease> = (0..10).map(|_| rev.try_lease(&[]).unwrap()).collect();
    assert!(full.iter().all(|l| l.endpoint.addr == eps[0].addr));
    assert!(rev.try_lease(&[]).is_none());
}

#[test]
fn instances_are_ejected_after_failures_in_a_row_for_longer_each_time() {
    let (rev, _) = revision(1, 10);
    let ep = rev.endpoints()[0].clone();
    // Ejections are ended below by setting their end 1 ms after the endpoint appeared.
    std::thread::sleep(Duration::from_millis(5));
    let policy = EjectionPolicy {
        after: 3,
        base: Duration::from_secs(10),
        max: Duration::from_secs(35),
    };
    assert_eq!(ep.failed(&policy), None);
    assert_eq!(ep.failed(&policy), None);
    // A success in between starts the count again.
    ep.succeeded();
    assert_eq!(ep.failed(&policy), None);
    assert_eq!(ep.failed(&policy), None);
    assert_eq!(ep.failed(&policy), Some(Duration::from_secs(10)));
    assert!(ep.ejected_until().is_some());
    assert_eq!(ep.ejections(), 1);
    // Failures while ejected (requests already on their way) change nothing.
    assert_eq!(ep.failed(&policy), None);
    // Back from an ejection, one failure ejects it again, for twice as long, up to the
    // longest ejection.
    ep.health.ejected_until.store(1, Ordering::Release);
    assert!(ep.ejected_until().is_none());
    assert_eq!(ep.failed(&policy), Some(Duration::from_secs(20)));
    ep.health.ejected_until.store(1, Ordering::Release);
    assert_eq!(ep.failed(&policy), Some(Duration::from_secs(35)));
    // An answer forgives it all.
    ep.health.ejected_until.store(1, Ordering::Release);
    ep.succeeded();
    assert_eq!(ep.ejections(), 0);
    assert_eq!(ep.failed(&policy), None);
}

#[tokio::test]
async fn queued_requests_get_capacity_in_order() {
    let (rev, _) = revision(1, 1);
    let first = rev.try_lease(&[]).unwrap();
    let r1 = rev.clone();
    let a = tokio::spawn(async move {
        r1.acquire(&[], 10, Duration::from_secs(30), Instant::now())
            .await
    });
    while rev.queued() < 1 {
        tokio::task::yield_now().await;
    }
    let r2 = rev.clone();
    let b = tokio::spawn(async move {
        r2.acquire(&[], 10, Duration::from_secs(30), Instant::now())
            .await
    });
    while rev.queued() < 2 {
        tokio::task::yield_now().await;
    }
    drop(first);
    let Ok(Grant::Lease(lease_a)) = a.await.unwrap() else {
        panic!("a")
    };
    assert_eq!(rev.queued(), 1);
    assert!(!b.is_finished());
    drop(lease_a);
    let Ok(Grant::Lease(_)) = b.await.unwrap() else {
        panic!("b")
    };
    assert_eq!(rev.queued(), 0);
}

#[tokio::test]
async fn time_spent_waiting_is_integrated() {
    let (rev, _) = revision(1, 1);
    let busy = rev.try_lease(&[]).unwrap();
    let (_, before) = rev.queue_meter.read(1, Instant::now());
    assert_eq!(before, 0.0);
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let r = rev.clone();
            tokio::spawn(async move {
                r.acquire(&[], 10, Duration::from_secs(30), Instant::now())
                    .await
            })
        })
        .collect();
    while rev.queued() < 2 {
        tokio::task::yield_now().await;
    }
    let queued_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(busy);
    for waiter in waiters {
        let Ok(Grant::Lease(lease)) = waiter.await.unwrap() else {
            panic!("no lease")
        };
        drop(lease);
    }
    let waited = queued_at.elapsed().as_secs_f64();
    let (_, seconds) = rev.queue_meter.read(1, Instant::now());
    // Two requests waited at least 200 ms each; the second no longer than all of it.
    assert!(seconds >= 0.4 - 1e-3, "{seconds}");
    assert!(seconds <= 2.0 * waited + 0.05, "{seconds} vs {waited}");
    let later = rev
        .queue_meter
        .read(1, Instant::now() + Duration::from_secs(1))
        .1;
    assert!((later - seconds).abs() < 1e-9, "nothing waits any more");
}

#[tokio::test]
async fn a_full_queue_and_a_long_wait_are_refused() {
    let (rev, _) = revision(1, 1);
    let _busy = rev.try_lease(&[]).unwrap();
    let r1 = rev.clone();
    let waiting = tokio::spawn(async move {
        r1.acquire(&[], 1, Duration::from_secs(30), Instant::now())
            .await
    });
    while rev.queued() < 1 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        rev.acquire(&[], 1, Duration::from_secs(30), Instant::now())
            .await
            .err(),
        Some(AcquireError::QueueFull)
    );
    waiting.abort();
    let _ = waiting.await;
    assert_eq!(rev.queued(), 0, "a waiter that left is removed");
    assert_eq!(
        rev.acquire(&[], 1, Duration::from_millis(1), Instant::now())
            .await
            .err(),
        Some(AcquireError::Timeout)
    );
    assert_eq!(rev.queued(), 0);
}

#[tokio::test]
async fn scale_from_zero_publishes_demand_and_new_instances_serve_the_queue() {
    let (rev, mut demand) = revision(0, 1);
    let r1 = rev.clone();
    let waiting = tokio::spawn(async move {
        r1.acquire(&[], 10, Duration::from_secs(30), Instant::now())
            .await
    });
    demand
        .wait_for(|d| d.waiting.contains_key("rev"))
        .await
        .unwrap();
    assert_eq!(demand.borrow().waiting["rev"].endpoints, 0);
    assert_eq!(demand.borrow().waiting["rev"].service_id, "svc");
    let ep = Arc::new(EndpointState::new(
        "new",
        SocketAddr::from(([127, 0, 0, 1], 9)),
        Upstream::Http1,
        Pool::new(Upstream::Http1),
    ));
    rev.update(vec![ep], 1);
    let Ok(Grant::Lease(lease)) = waiting.await.unwrap() else {
        panic!("lease")
    };
    assert_eq!(&*lease.endpoint.instance_id, "new");
    demand.wait_for(|d| d.waiting.is_empty()).await.unwrap();
}

#[tokio::test]
async fn a_retired_revision_sends_its_queue_elsewhere() {
    let (rev, _) = revision(0, 1);
    let r1 = rev.clone();
    let waiting = tokio::spawn(async move {
        r1.acquire(&[], 10, Duration::from_secs(30), Instant::now())
            .await
    });
    while rev.queued() < 1 {
        tokio::task::yield_now().await;
    }
    rev.retire();
    assert!(matches!(waiting.await.unwrap(), Ok(Grant::Reroute)));
    assert!(matches!(
        rev.acquire(&[], 10, Duration::from_secs(1), Instant::now())
            .await,
        Ok(Grant::Reroute)
    ));
}

#[test]
fn unlimited_concurrency_is_zero() {
    let (rev, _) = revision(1, 0);
    let leases: Vec<Lease> = (0..1000).map(|_| rev.try_lease(&[]).unwrap()).collect();
    assert_eq!(leases.len(), 1000);
}
