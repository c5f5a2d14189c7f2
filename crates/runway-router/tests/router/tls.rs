//! HTTPS: certificates from runway-certs chosen by SNI, ALPN, curl and a rustls client.

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use runway_certs::CertStore;
use runway_router::test_util::{Backend, get, service};
use runway_router::{RouteTable, Router, RouterConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

struct Https {
    router: Router,
    http: SocketAddr,
    https: SocketAddr,
    certs: CertStore,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

async fn start(a: &Backend, b: &Backend) -> Https {
    let dir = tempfile::tempdir().unwrap();
    let master = Arc::new(
        runway_secrets::MasterKey::load_or_create(&dir.path().join("master.key")).unwrap(),
    );
    let certs = CertStore::open(&dir.path().join("certs"), master, "runway.localhost").unwrap();
    certs.issue_local("shop.example.com").unwrap();
    let mut registry = runway_telemetry::Registry::default();
    let router = Router::new(RouterConfig::default(), &mut registry).unwrap();
    let mut svc_a = service("svca", "a-1.runway.localhost", "reva", vec![a.endpoint()]);
    svc_a.https_redirect = true;
    let mut svc_b = service("svcb", "b-2.runway.localhost", "revb", vec![b.endpoint()]);
    svc_b.hosts.push("shop.example.com".into());
    router
        .set_routes(RouteTable {
            services: vec![svc_a, svc_b],
        })
        .unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http_addr, https_addr) = (http.local_addr().unwrap(), https.local_addr().unwrap());
    router.set_https_port(https_addr.port());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let r = router.clone();
    let s = stopped.clone();
    tokio::spawn(async move { r.serve_http(http, wait(s)).await });
    let r = router.clone();
    let tls = certs.server_config().unwrap();
    tokio::spawn(async move { r.serve_https(https, tls, wait(stopped)).await });
    Https {
        router,
        http: http_addr,
        https: https_addr,
        certs,
        _dir: dir,
        _stop: stop,
    }
}

fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(runway_certs::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(config);
    connector
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_routes_by_sni_and_host_over_h1_and_h2() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let server = start(&a, &b).await;
    let ca = server.certs.ca_pem().to_string();

    for (name, expected) in [
        ("a-1.runway.localhost", "hello from a"),
        ("b-2.runway.localhost", "hello from b"),
        ("shop.example.com", "hello from b"),
    ] {
        // HTTP/1.1 over TLS.
        let tls = tls_connect(server.https, client_config(&ca, &[b"http/1.1"]), name)
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get("/headers")
            .header("host", name)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(seen["headers"]["x-forwarded-proto"], "https");

        // HTTP/2 by ALPN.
        let tls = tls_connect(
            server.https,
            client_config(&ca, &[b"h2", b"http/1.1"]),
            name,
        )
        .await
        .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::get(format!("https://{name}/"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        assert_eq!(response.version(), Version::HTTP_2);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, expected, "{name}");
    }
    // A client that trusts another CA refuses the handshake.
    let other = tempfile::tempdir().unwrap();
    let other_master =
        Arc::new(runway_secrets::MasterKey::load_or_create(&other.path().join("k")).unwrap());
    let other_ca = CertStore::open(other.path(), other_master, "runway.localhost").unwrap();
    assert!(
        tls_connect(
            server.https,
            client_config(other_ca.ca_pem(), &[]),
            "a-1.runway.localhost"
        )
        .await
        .is_err()
    );
    drop(server.router);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_trusts_the_local_ca_and_follows_the_https_redirect() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let server = start(&a, &b).await;
    // The plain listener redirects svca (redirect on) to the HTTPS port.
    let reply = get(server.http, "a-1.runway.localhost", "/x?y=1").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    let location = format!("https://a-1.runway.localhost:{}/x?y=1", server.https.port());
    assert_eq!(reply.headers["location"], location.as_str());

    let ca_path = server.certs.ca_path();
    let http = server.http;
    let https = server.https;
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--fail",
                "--location",
                "--http2",
            ])
            .arg("--cacert")
            .arg(&ca_path)
            .args([
                "--resolve",
                &format!("a-1.runway.localhost:{}:127.0.0.1", http.port()),
            ])
            .args([
                "--resolve",
                &format!("a-1.runway.localhost:{}:127.0.0.1", https.port()),
            ])
            .args(["--write-out", "\n%{http_version} %{url_effective}"])
            .arg(format!("http://a-1.runway.localhost:{}/", http.port()))
            .output()
    })
    .await
    .unwrap()
    .expect("curl (scripts/deps test installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("hello from a"));
    assert_eq!(
        lines.next(),
        Some(format!("2 https://a-1.runway.localhost:{}/", https.port()).as_str())
    );
}
