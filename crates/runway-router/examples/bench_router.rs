//! runway's router as the benchmark runs it (bench/router): plain HTTP on ADDR, one
//! service at `127.0.0.1` and `bench.runway.localhost` whose one revision has one
//! instance, the backend at BACKEND, over HTTP/1.1; and a second service at
//! `grpc.runway.localhost` with the same backend over h2c (the instance protocol of gRPC
//! services). MaxConcurrency is set high enough never to queue; request bodies may have
//! any size (the 1 GiB upload) and the request timeout is 10 minutes.
//! The access log is off, as nginx's is in the same run, unless `BENCH_ACCESS_LOG` names
//! a directory for it. THREADS threads serve ([`Router::serve_on_threads`]);
//! `BENCH_MODE=multi` serves on one multi-threaded runtime instead
//! ([`Router::serve_http`]), as `runway server` does today.
//!
//! Usage: bench_router ADDR BACKEND [THREADS]

use runway_router::{
    AccessLogConfig, Endpoint, RevisionRoute, RouteTable, Router, RouterConfig, ServiceRoute,
    UNLIMITED_REQUEST_BODY, Upstream,
};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18081".into());
    let backend = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:18080".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(2);
    let mut registry = runway_telemetry::Registry::default();
    let mut config = RouterConfig::default();
    if let Ok(dir) = std::env::var("BENCH_ACCESS_LOG") {
        config.access_log = Some(AccessLogConfig::new(dir));
    }
    let router = Router::new(config, &mut registry)?;
    let mut service = ServiceRoute::new("bench", "bench.runway.localhost");
    service.hosts.push("127.0.0.1".into());
    service.https_redirect = false;
    service.max_concurrency = 10_000;
    service.max_request_body = UNLIMITED_REQUEST_BODY;
    service.request_timeout = std::time::Duration::from_secs(600);
    service.revisions.push(RevisionRoute {
        revision_id: "bench-1".into(),
        percent: 100,
        tag: None,
        endpoints: vec![Endpoint {
            instance_id: "backend".into(),
            addr: backend,
        }],
    });
    let mut grpc = service.clone();
    grpc.service_id = "bench-grpc".into();
    grpc.hosts = vec!["grpc.runway.localhost".into()];
    grpc.upstream = Upstream::H2c;
    grpc.revisions[0].revision_id = "bench-grpc-1".into();
    router
        .set_routes(RouteTable {
            services: vec![service, grpc],
        })
        .map_err(std::io::Error::other)?;
    let listener = std::net::TcpListener::bind(&addr)?;
    listener.set_nonblocking(true)?;
    let mode = std::env::var("BENCH_MODE").unwrap_or_default();
    if mode == "multi" {
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
            .block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                router.serve_http(listener, std::future::pending()).await
            });
    }
    // As runway's server does: one single-threaded runtime per thread.
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let workers = router.serve_on_threads(listener, None, threads, shutdown)?;
    tokio::runtime::Builder::new_current_thread()
        .build()?
        .block_on(workers.wait())
}
