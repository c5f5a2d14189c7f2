//! Hosts to services, revisions by percent and tag, redirects, forwarded headers, route
//! swaps, the access log and metrics.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use runway_router::test_util::{Backend, TestRouter, eventually, get, h1_client, send_h1, service};
use runway_router::{
    AccessLogConfig, AcmeResponder, RevisionRoute, RouteTable, RouterConfig, RoutesError, Upstream,
};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_route_to_their_service_and_unknown_hosts_get_404() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let mut svc_b = service("svcb", "b-2.runway.localhost", "revb", vec![b.endpoint()]);
    svc_b.hosts.push("www.example.com".into());
    router.set_services(vec![
        service("svca", "a-1.runway.localhost", "reva", vec![a.endpoint()]),
        svc_b,
    ]);
    let reply = get(router.addr, "a-1.runway.localhost", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "hello from a");
    let reply = get(router.addr, "B-2.Runway.Localhost:8080", "/").await;
    assert_eq!(reply.body, "hello from b");
    let reply = get(router.addr, "www.example.com.", "/").await;
    assert_eq!(reply.body, "hello from b");
    let reply = get(router.addr, "nope.runway.localhost", "/").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.body.contains("404"), "{}", reply.body);
    assert!(
        router
            .metrics_text()
            .contains(r#"runway_router_unrouted_requests_total{kind="unknown_host"} 1"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_services_answer_503_and_bad_tables_are_refused() {
    let a = Backend::start("a").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let mut svc = service("svc", "app-1.runway.localhost", "rev", vec![a.endpoint()]);
    svc.paused = true;
    router.set_services(vec![svc.clone()]);
    let reply = get(router.addr, "app-1.runway.localhost", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.body.contains("paused"));
    assert!(reply.headers.contains_key("retry-after"));
    assert_eq!(a.requests(), 0);

    // An invalid table changes nothing.
    let mut other = service("other", "app-1.runway.localhost", "rev2", vec![]);
    other.paused = false;
    let err = router
        .router
        .set_routes(RouteTable {
            services: vec![svc.clone(), other],
        })
        .unwrap_err();
    assert!(matches!(err, RoutesError::DuplicateHost { .. }), "{err}");
    let mut bad = svc.clone();
    bad.revisions[0].percent = 50;
    assert!(matches!(
        router.router.set_routes(RouteTable {
            services: vec![bad]
        }),
        Err(RoutesError::Percent { .. })
    ));
    let mut bad = svc.clone();
    bad.request_timeout = std::time::Duration::from_secs(3601);
    assert!(
        router
            .router
            .set_routes(RouteTable {
                services: vec![bad]
            })
            .is_err()
    );
    let mut bad = svc.clone();
    bad.hosts = vec!["UPPER.example".into()];
    assert!(
        router
            .router
            .set_routes(RouteTable {
                services: vec![bad]
            })
            .is_err()
    );
    let reply = get(router.addr, "app-1.runway.localhost", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);

    svc.paused = false;
    router.set_services(vec![svc]);
    let reply = get(router.addr, "app-1.runway.localhost", "/").await;
    assert_eq!(reply.body, "hello from a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_is_split_by_percent_and_tags_reach_their_revision() {
    let blue = Backend::start("blue").await;
    let green = Backend::start("green").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let mut svc = service(
        "svc",
        "app-1.runway.localhost",
        "blue",
        vec![blue.endpoint()],
    );
    svc.revisions[0].percent = 80;
    svc.revisions.push(RevisionRoute {
        revision_id: "green".into(),
        percent: 20,
        tag: Some("canary".into()),
        endpoints: vec![green.endpoint()],
    });
    router.set_services(vec![svc.clone()]);
    let n = 400;
    for _ in 0..n {
        let reply = get(router.addr, "app-1.runway.localhost", "/").await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let green_share = green.requests() as f64 / n as f64;
    assert_eq!(blue.requests() + green.requests(), n);
    // 20 % expected; the bounds are loose (binomial, n = 400: sd 2 %).
    assert!(
        (0.08..=0.35).contains(&green_share),
        "green got {green_share}"
    );
    let before = green.requests();
    for _ in 0..20 {
        let reply = get(router.addr, "canary---app-1.runway.localhost", "/").await;
        assert_eq!(reply.body, "hello from green");
    }
    assert_eq!(green.requests(), before + 20);

    // A tag with 0 percent: reachable only by its tagged host.
    svc.revisions[0].percent = 100;
    svc.revisions[1].percent = 0;
    router.set_services(vec![svc]);
    let before = green.requests();
    for _ in 0..20 {
        assert_eq!(
            get(router.addr, "app-1.runway.localhost", "/").await.body,
            "hello from blue"
        );
    }
    assert_eq!(green.requests(), before);
    assert_eq!(
        get(router.addr, "canary---app-1.runway.localhost", "/")
            .await
            .body,
        "hello from green"
    );
}

#[derive(Debug)]
struct Challenges;
impl AcmeResponder for Challenges {
    fn respond(&self, host: &str, token: &str) -> Option<String> {
        (token == "tok").then(|| format!("tok.key-for-{host}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_redirected_to_https_unless_switched_off_or_acme() {
    let a = Backend::start("a").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let mut svc = service("svc", "app-1.runway.localhost", "rev", vec![a.endpoint()]);
    svc.https_redirect = true;
    router.set_services(vec![svc.clone()]);
    router.router.set_https_port(8443);
    let reply = get(router.addr, "app-1.runway.localhost:8080", "/path?q=1").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        reply.headers["location"],
        "https://app-1.runway.localhost:8443/path?q=1"
    );
    router.router.set_https_port(443);
    let reply = get(router.addr, "app-1.runway.localhost", "/").await;
    assert_eq!(reply.headers["location"], "https://app-1.runway.localhost/");
    assert_eq!(a.requests(), 0);

    // ACME challenges are never redirected: answered by the hook, else by the service.
    let reply = get(
        router.addr,
        "app-1.runway.localhost",
        "/.well-known/acme-challenge/x",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "hello from a");
    router.router.set_acme_responder(Some(Arc::new(Challenges)));
    let reply = get(
        router.addr,
        "shop.example.com",
        "/.well-known/acme-challenge/tok",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "tok.key-for-shop.example.com");

    svc.https_redirect = false;
    router.set_services(vec![svc]);
    let reply = get(router.addr, "app-1.runway.localhost", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_are_set_and_hop_by_hop_headers_removed() {
    let a = Backend::start("a").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    router.set_services(vec![service(
        "svc",
        "app-1.runway.localhost",
        "rev",
        vec![a.endpoint()],
    )]);
    let req = Request::get("/headers")
        .header("host", "app-1.runway.localhost:8080")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic eA==")
        .header("x-request-id", "my-id-1")
        .header(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793",
        )
        .body(Empty::<Bytes>::new())
        .unwrap();
    let reply = send_h1(router.addr, req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["x-request-id"], "my-id-1");
    let seen: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let headers = &seen["headers"];
    assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "app-1.runway.localhost:8080");
    assert_eq!(headers["host"], "app-1.runway.localhost:8080");
    assert_eq!(headers["x-request-id"], "my-id-1");
    assert_eq!(
        headers["x-amzn-trace-id"],
        "Root=1-5759e988-bd862e3fe1be46a994272793"
    );
    for gone in ["x-hop", "keep-alive", "proxy-authorization"] {
        assert!(
            headers.get(gone).is_none(),
            "{gone} was forwarded: {headers}"
        );
    }
    assert_eq!(seen["version"], "HTTP/1.1");

    // Without ids, both are made.
    let reply = get(router.addr, "app-1.runway.localhost", "/headers").await;
    let seen: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let id = seen["headers"]["x-request-id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!(reply.headers["x-request-id"], id);
    assert!(
        seen["headers"]["x-amzn-trace-id"]
            .as_str()
            .unwrap()
            .starts_with("Root=1-")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_swaps_lose_no_request_in_flight() {
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let host = "app-1.runway.localhost";
    router.set_services(vec![service("svc", host, "rev1", vec![old.endpoint()])]);
    // Requests held in flight on the old revision.
    let addr = router.addr;
    let held: Vec<_> = (0..5)
        .map(|_| tokio::spawn(async move { get(addr, host, "/wait").await }))
        .collect();
    old.wait_for_waiting(5).await;
    // Swap to a new revision (a deployment), then keep swapping while traffic flows.
    router.set_services(vec![service("svc", host, "rev2", vec![new.endpoint()])]);
    let stats = router.router.stats();
    let draining = stats
        .iter()
        .find(|s| s.revision_id == "rev1")
        .expect("rev1 drains");
    assert!(draining.draining);
    assert_eq!(draining.in_flight, 5);
    let traffic: Vec<_> = (0..50)
        .map(|_| tokio::spawn(async move { get(addr, host, "/").await.status }))
        .collect();
    for i in 0..20 {
        let rev = if i % 2 == 0 { "rev2" } else { "rev3" };
        router.set_services(vec![service("svc", host, rev, vec![new.endpoint()])]);
        tokio::task::yield_now().await;
    }
    for t in traffic {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    old.release(5);
    for h in held {
        let reply = h.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "done by old");
    }
    assert_eq!(
        old.stats
            .cancelled
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    router.set_services(vec![service("svc", host, "rev2", vec![new.endpoint()])]);
    assert!(
        router
            .router
            .stats()
            .iter()
            .all(|s| s.revision_id == "rev2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_gets_a_json_line_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let a = Backend::start("inst-a").await;
    let config = RouterConfig {
        access_log: Some(AccessLogConfig::new(dir.path())),
        ..RouterConfig::default()
    };
    let router = TestRouter::start(config).await;
    router.set_services(vec![service(
        "svc-log",
        "app-1.runway.localhost",
        "rev-log",
        vec![a.endpoint()],
    )]);
    let reply = get(
        router.addr,
        "app-1.runway.localhost",
        "/status/201?secret=1",
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let path = dir.path().join("svc-log.log");
    eventually(|| std::fs::read_to_string(&path).is_ok_and(|t| t.lines().count() >= 1)).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["service"], "svc-log");
    assert_eq!(line["revision"], "rev-log");
    assert_eq!(line["instance"], "inst-a");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/status/201");
    assert_eq!(line["status"], 201);
    assert_eq!(line["bytes_out"], "status 201".len());
    assert_eq!(
        line["request_id"],
        reply.headers["x-request-id"].to_str().unwrap()
    );
    assert!(line["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(line["time"].as_str().unwrap().contains('T'));
    assert!(!text.contains("secret"), "queries are not logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_per_revision() {
    let a = Backend::start("a").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    router.set_services(vec![service(
        "svc-m",
        "app-1.runway.localhost",
        "rev-m",
        vec![a.endpoint()],
    )]);
    for path in ["/", "/", "/status/404", "/status/503"] {
        get(router.addr, "app-1.runway.localhost", path).await;
    }
    let text = router.metrics_text();
    for expected in [
        r#"runway_router_requests_total{service="svc-m",revision="rev-m",class="2xx"} 2"#,
        r#"runway_router_requests_total{service="svc-m",revision="rev-m",class="4xx"} 1"#,
        r#"runway_router_requests_total{service="svc-m",revision="rev-m",class="5xx"} 1"#,
        r#"runway_router_request_duration_seconds_count{service="svc-m",revision="rev-m"} 4"#,
        r#"runway_router_in_flight{service="svc-m",revision="rev-m"} 0"#,
        r#"runway_router_endpoints{service="svc-m",revision="rev-m"} 1"#,
        r#"runway_router_concurrency_average{service="svc-m",revision="rev-m"}"#,
        r#"runway_router_concurrency_seconds_total{service="svc-m",revision="rev-m"}"#,
        r#"runway_router_queued_average{service="svc-m",revision="rev-m"} 0"#,
        r#"runway_router_queued_seconds_total{service="svc-m",revision="rev-m"} 0"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    assert!(
        !text.contains("app-1.runway.localhost"),
        "no host in labels"
    );
    let stats = router.router.stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].requests, 4);
    assert_eq!(stats[0].in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_threads_serve_and_shut_down_gracefully() {
    let a = Backend::start("a").await;
    let mut registry = runway_telemetry::Registry::default();
    let router = runway_router::Router::new(RouterConfig::default(), &mut registry).unwrap();
    router
        .set_routes(RouteTable {
            services: vec![service(
                "svc",
                "app-1.runway.localhost",
                "rev",
                vec![a.endpoint()],
            )],
        })
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let workers = router
        .serve_on_threads(listener, None, 2, shutdown)
        .unwrap();
    for _ in 0..20 {
        assert_eq!(
            get(addr, "app-1.runway.localhost", "/").await.body,
            "hello from a"
        );
    }
    let held = tokio::spawn(async move { get(addr, "app-1.runway.localhost", "/wait").await });
    a.wait_for_waiting(1).await;
    stop.send(true).unwrap();
    let waiting = tokio::spawn(workers.wait());
    eventually(|| std::net::TcpStream::connect(addr).is_err()).await;
    assert!(!waiting.is_finished(), "waits for the request in flight");
    a.release(1);
    assert_eq!(held.await.unwrap().status, StatusCode::OK);
    waiting.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_follow_their_hosts_and_route_changes() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let (host_a, host_b) = ("a-1.runway.localhost", "b-2.runway.localhost");
    let table = |a_hosts: Vec<&str>, b_hosts: Vec<&str>| {
        let mut svc_a = service(
            "svca",
            "unused-a.runway.localhost",
            "reva",
            vec![a.endpoint()],
        );
        let mut svc_b = service(
            "svcb",
            "unused-b.runway.localhost",
            "revb",
            vec![b.endpoint()],
        );
        svc_a.hosts.extend(a_hosts.into_iter().map(String::from));
        svc_b.hosts.extend(b_hosts.into_iter().map(String::from));
        RouteTable {
            services: vec![svc_a, svc_b],
        }
    };
    router
        .router
        .set_routes(table(vec![host_a], vec![host_b]))
        .unwrap();

    // One connection per protocol, each request naming its host.
    let mut h1 = h1_client(router.addr).await;
    let mut h2 = runway_router::test_util::h2c_client(router.addr).await;
    let mut ask = async |host: &str| {
        let req = || {
            Request::get("/")
                .header("host", host)
                .body(Empty::<Bytes>::new())
                .unwrap()
        };
        h1.ready().await.unwrap();
        let one = runway_router::test_util::read(h1.send_request(req()).await.unwrap())
            .await
            .unwrap();
        let req = Request::get(format!("http://{host}/"))
            .body(runway_router::test_util::full(Bytes::new()))
            .unwrap();
        let two = runway_router::test_util::read(h2.send_request(req).await.unwrap())
            .await
            .unwrap();
        assert_eq!(one.status, two.status, "{host}");
        assert_eq!(one.body, two.body, "{host}");
        (one.status, one.body)
    };
    assert_eq!(ask(host_a).await.1, "hello from a");
    assert_eq!(ask(host_b).await.1, "hello from b");
    assert_eq!(ask("A-1.Runway.Localhost:8080").await.1, "hello from a");
    assert_eq!(
        ask("nobody.runway.localhost").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(ask(host_a).await.1, "hello from a");
    // A deployment moves the host to the other service: the same connections follow.
    router
        .router
        .set_routes(table(vec![], vec![host_a, host_b]))
        .unwrap();
    assert_eq!(ask(host_a).await.1, "hello from b");
    router
        .router
        .set_routes(table(vec![], vec![host_b]))
        .unwrap();
    assert_eq!(ask(host_a).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_custom_domains_route_below_exact_names_and_pending_domains_get_a_notice() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let mut svc_a = service("svca", "a-1.runway.localhost", "reva", vec![a.endpoint()]);
    svc_a.hosts.push("*.example.com".into());
    let mut svc_b = service("svcb", "b-2.runway.localhost", "revb", vec![b.endpoint()]);
    svc_b.hosts.push("shop.example.com".into());
    svc_a.https_redirect = false;
    svc_b.https_redirect = false;
    router.set_services(vec![svc_a, svc_b]);
    assert_eq!(
        get(router.addr, "blog.example.com", "/").await.body,
        "hello from a"
    );
    assert_eq!(
        get(router.addr, "Shop.Example.com", "/").await.body,
        "hello from b"
    );
    // A wildcard covers one label, and not the name itself.
    for host in ["a.b.example.com", "example.com"] {
        assert_eq!(
            get(router.addr, host, "/").await.status,
            StatusCode::NOT_FOUND
        );
    }
    let mut bad = service("svcc", "c-3.runway.localhost", "revc", vec![]);
    bad.hosts.push("shop.*.example.com".into());
    assert!(matches!(
        router.router.set_routes(RouteTable {
            services: vec![bad]
        }),
        Err(RoutesError::InvalidHost { .. })
    ));

    router.router.set_host_notices(
        [(
            "api.example.org".to_string(),
            "api.example.org is waiting for its certificate".to_string(),
        )]
        .into(),
    );
    let reply = get(router.addr, "api.example.org", "/").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply.body.contains("waiting for its certificate"),
        "{}",
        reply.body
    );
    assert_eq!(
        get(router.addr, "other.example.org", "/").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(a.requests() + b.requests(), 2);
}

/// `curl` with `args`: its output.
async fn curl(args: &[&str]) -> String {
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .await
        .expect("curl");
    assert!(output.status.success(), "curl {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_sees_the_host_it_was_routed_by_and_no_client_forwarded_or_real_ip() {
    let a = Backend::start("a").await;
    let router = TestRouter::start(RouterConfig::default()).await;
    let addr = router.addr.to_string();
    let host = "app-1.runway.localhost";
    for upstream in [Upstream::Http1, Upstream::H2c] {
        let mut svc = service("svc", host, "rev", vec![a.endpoint()]);
        svc.upstream = upstream;
        router.set_services(vec![svc]);
        // HTTP/1.1 in absolute form (curl as a proxy client) naming another Host:
        // routed by the target, which the instance sees too.
        let body = curl(&[
            "-x",
            &format!("http://{addr}"),
            "-H",
            "Host: evil.example",
            "-H",
            "Forwarded: for=198.51.100.7;host=evil.example;proto=https",
            "-H",
            "X-Real-IP: 198.51.100.7",
            &format!("http://{host}/headers"),
        ])
        .await;
        let seen: serde_json::Value = serde_json::from_str(&body).expect(&body);
        let headers = &seen["headers"];
        let routed = |seen: &serde_json::Value| match upstream {
            Upstream::Http1 => seen["headers"]["host"].clone(),
            // h2c: the authority, and no Host header besides.
            Upstream::H2c => {
                assert!(seen["headers"].get("host").is_none(), "{seen}");
                let uri: http::Uri = seen["uri"].as_str().unwrap().parse().unwrap();
                uri.authority().unwrap().as_str().into()
            }
        };
        assert_eq!(routed(&seen), host, "{upstream:?}: {seen}");
        assert_eq!(headers["x-forwarded-host"], host);
        // Forwarded is removed, X-Real-IP replaced with the client's address.
        assert!(headers.get("forwarded").is_none(), "{seen}");
        assert_eq!(headers["x-real-ip"], "127.0.0.1", "{seen}");

        // HTTP/2 with a Host header that differs from :authority.
        let run = crate::py::run(
            "h2_client.py",
            &[
                "get",
                &addr,
                host,
                "/headers",
                "host",
                "evil.example",
                "forwarded",
                "for=198.51.100.7",
                "x-real-ip",
                "198.51.100.7",
            ],
        )
        .await;
        assert!(run.success, "{}{}", run.stdout, run.stderr);
        let (status, body) = run.stdout.split_once('\n').unwrap();
        assert_eq!(status, "200", "{}", run.stdout);
        let seen: serde_json::Value = serde_json::from_str(body.trim()).expect(body);
        assert_eq!(routed(&seen), host, "{upstream:?}: {seen}");
        assert_eq!(seen["headers"]["x-forwarded-host"], host);
        assert!(seen["headers"].get("forwarded").is_none(), "{seen}");
        assert_eq!(seen["headers"]["x-real-ip"], "127.0.0.1", "{seen}");
    }
}
