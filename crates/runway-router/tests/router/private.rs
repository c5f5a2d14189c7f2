//! Private listeners: a connection made to a private address reaches only the services
//! whose route names that listener, and private services are not served publicly. IPv6
//! clients reach only dual-stack services.

use http::StatusCode;
use runway_router::RouterConfig;
use runway_router::test_util::{Backend, TestRouter, get, service};
use std::collections::HashMap;
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_services_answer_only_on_their_private_listeners() {
    let public = Backend::start("public").await;
    let private = Backend::start("private").await;
    let elsewhere = Backend::start("elsewhere").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let mut both = service(
        "both",
        "both-1.runway.localhost",
        "r0",
        vec![public.endpoint()],
    );
    both.private_listeners = vec!["vpce-a".into()];
    let mut only_a = service("a", "a-1.runway.localhost", "r1", vec![private.endpoint()]);
    only_a.public = false;
    only_a.private_listeners = vec!["vpce-a".into()];
    let mut only_b = service(
        "b",
        "b-1.runway.localhost",
        "r2",
        vec![elsewhere.endpoint()],
    );
    only_b.public = false;
    only_b.private_listeners = vec!["vpce-b".into()];
    let open = service(
        "open",
        "open-1.runway.localhost",
        "r3",
        vec![public.endpoint()],
    );
    router.set_services(vec![both, only_a, only_b, open]);

    // A private listener: another local address, named before connections arrive.
    let listener = TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let private_addr = listener.local_addr().unwrap();
    router
        .router
        .set_private_addresses(HashMap::from([(private_addr.ip(), "vpce-a".to_string())]));
    let serving = router.router.clone();
    tokio::spawn(async move { serving.serve_http(listener, std::future::pending()).await });

    let status = |reply: runway_router::test_util::Reply| reply.status;
    for (host, on_public, on_private) in [
        ("both-1.runway.localhost", StatusCode::OK, StatusCode::OK),
        (
            "a-1.runway.localhost",
            StatusCode::NOT_FOUND,
            StatusCode::OK,
        ),
        (
            "b-1.runway.localhost",
            StatusCode::NOT_FOUND,
            StatusCode::NOT_FOUND,
        ),
        (
            "open-1.runway.localhost",
            StatusCode::OK,
            StatusCode::NOT_FOUND,
        ),
    ] {
        assert_eq!(
            status(get(router.addr, host, "/").await),
            on_public,
            "{host} publicly"
        );
        assert_eq!(
            status(get(private_addr, host, "/").await),
            on_private,
            "{host} privately"
        );
    }
    assert_eq!(elsewhere.requests(), 0);
    assert_eq!(
        get(private_addr, "a-1.runway.localhost", "/").await.body,
        "hello from private"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_reach_only_dual_stack_services() {
    let backend = Backend::start("b").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let v4_only = service(
        "v4",
        "v4-1.runway.localhost",
        "r1",
        vec![backend.endpoint()],
    );
    let mut dual = service(
        "dual",
        "dual-1.runway.localhost",
        "r2",
        vec![backend.endpoint()],
    );
    dual.dual_stack = true;
    router.set_services(vec![v4_only, dual]);
    let listener = TcpListener::bind("[::1]:0").await.expect("bind [::1]");
    let v6_addr = listener.local_addr().unwrap();
    let serving = router.router.clone();
    tokio::spawn(async move { serving.serve_http(listener, std::future::pending()).await });
    for (host, over_v4, over_v6) in [
        (
            "v4-1.runway.localhost",
            StatusCode::OK,
            StatusCode::NOT_FOUND,
        ),
        ("dual-1.runway.localhost", StatusCode::OK, StatusCode::OK),
    ] {
        assert_eq!(
            get(router.addr, host, "/").await.status,
            over_v4,
            "{host} over IPv4"
        );
        assert_eq!(
            get(v6_addr, host, "/").await.status,
            over_v6,
            "{host} over IPv6"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_listener_whose_address_is_no_longer_named_serves_nothing() {
    let public = Backend::start("public").await;
    let private = Backend::start("private").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let mut hidden = service("a", "a-1.runway.localhost", "r1", vec![private.endpoint()]);
    hidden.public = false;
    hidden.private_listeners = vec!["vpce-a".into()];
    let open = service(
        "open",
        "open-1.runway.localhost",
        "r2",
        vec![public.endpoint()],
    );
    router.set_services(vec![hidden, open]);
    let listener = TcpListener::bind("127.0.0.3:0")
        .await
        .expect("bind 127.0.0.3");
    let private_addr = listener.local_addr().unwrap();
    router
        .router
        .set_private_addresses(HashMap::from([(private_addr.ip(), "vpce-a".to_string())]));
    let serving = router.router.clone();
    tokio::spawn(async move {
        serving
            .serve_private(listener, None, std::future::pending())
            .await
    });
    assert_eq!(
        get(private_addr, "a-1.runway.localhost", "/").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(private_addr, "open-1.runway.localhost", "/")
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // The endpoint is gone (its listener not yet stopped): its address is not named.
    router.router.set_private_addresses(HashMap::new());
    for host in ["a-1.runway.localhost", "open-1.runway.localhost"] {
        let req = http::Request::get("/")
            .header(http::header::HOST, host)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let reply = runway_router::test_util::send_h1(private_addr, req).await;
        assert!(
            reply.is_err(),
            "{host} on a private listener no longer named: {:?}",
            reply.map(|r| r.status)
        );
    }
    assert_eq!(public.requests(), 0, "no public service was served there");
    assert_eq!(
        get(router.addr, "open-1.runway.localhost", "/")
            .await
            .status,
        StatusCode::OK,
        "the public listener serves on"
    );
}
