//! A registry that dies mid-upload (its runtime dropped in-process, or the process
//! killed with SIGKILL) exposes no partial blob, and the push can be resumed or redone.

use crate::harness::*;
use base64::Engine as _;
use reqwest::Method;
use runway_registry::RegistryConfig;
use runway_registry::test_util::random_bytes;
use runway_secrets::MasterKey;
use runway_store::{SqliteStore, Store};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// Starts a PATCH announcing `total` bytes and sends only `part`; the connection stays
/// open, so the server is mid-request.
async fn partial_patch(
    addr: SocketAddr,
    location: &str,
    creds: (&str, &str),
    total: usize,
    part: &[u8],
) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", creds.0, creds.1));
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(part).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

/// Waits (bounded, to never hang) until the upload's data file holds `at_least` bytes.
async fn wait_for_data(root: &Path, location: &str, at_least: u64) -> u64 {
    let id = location.rsplit('/').next().unwrap();
    let data = root.join("uploads").join(id).join("data");
    for _ in 0..600 {
        let len = std::fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
        if len >= at_least {
            return len;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the server never wrote {at_least} bytes to {}",
        data.display()
    );
}

/// After the restart: nothing of the blob is visible; the upload resumes from what was
/// written; a fresh push works too.
async fn check_recovery(http: &Http, root: &Path, location: &str, data: &[u8]) {
    let digest = sha256(data);
    let r = http
        .req(Method::HEAD, &format!("/v2/app/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "no partial blob is visible");
    assert!(
        walk(&root.join("blobs")).is_empty(),
        "{:?}",
        walk(&root.join("blobs"))
    );

    let r = http.req(Method::GET, location).send().await.unwrap();
    assert_eq!(r.status(), 204, "the upload survived the crash");
    let range = header(&r, "range");
    let offset: usize = range.trim_start_matches("0-").parse::<usize>().unwrap() + 1;
    assert!(offset >= 1 << 20 && offset <= data.len(), "{range}");

    // Resume where the data ends, then close with the digest: verified end to end.
    let r = http
        .req(Method::PATCH, location)
        .header("content-range", format!("{offset}-{}", data.len() - 1))
        .body(data[offset..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let r = http
        .req(Method::PUT, &format!("{location}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = http
        .req(Method::GET, &format!("/v2/app/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert!(
        r.bytes().await.unwrap().as_ref() == data,
        "the resumed blob is intact"
    );

    // Redone from scratch in another repository: also fine.
    let again = http.push_blob("again", data).await;
    assert_eq!(again, digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_dropped_mid_upload_recovers_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let master = Arc::new(MasterKey::load_or_create(&dir.path().join("master.key")).unwrap());
    let (key, secret) = {
        let mut tx = store.begin().unwrap();
        let (id, s) = runway_secrets::create_access_key(&mut *tx, &master, "t").unwrap();
        tx.commit().unwrap();
        (id, s.expose().to_string())
    };
    let root = dir.path().join("registry");

    // The first registry runs on a runtime of its own, which is dropped mid-request:
    // every task of it stops where it is, as in a crash.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (crash_tx, crash_rx) = std::sync::mpsc::channel::<()>();
    let thread = {
        let (store, master, root) = (store.clone(), master.clone(), root.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let (_registry, addr, _m, stop, _task) =
                rt.block_on(serve(RegistryConfig::new(&root), store, master, |r| r));
            addr_tx.send(addr).unwrap();
            let _ = crash_rx.recv();
            // Not a graceful stop: the runtime goes away with the request in flight.
            rt.shutdown_timeout(Duration::from_secs(10));
            drop(stop);
        })
    };
    let addr = addr_rx.recv().unwrap();
    let http = Http {
        client: reqwest::Client::new(),
        base: format!("http://{addr}"),
        auth: Some((key.clone(), secret.clone())),
    };
    let data = random_bytes(6 << 20);
    let r = http
        .req(Method::POST, "/v2/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let location = header(&r, "location");
    let r = http
        .req(Method::PATCH, &location)
        .header("content-range", format!("0-{}", (1 << 20) - 1))
        .body(data[..1 << 20].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let _conn = partial_patch(
        addr,
        &location,
        (&key, &secret),
        (5 << 20) as usize,
        &data[1 << 20..3 << 20],
    )
    .await;
    wait_for_data(&root, &location, 2 << 20).await;
    crash_tx.send(()).unwrap();
    thread.join().unwrap();

    let (_registry, addr2, _m, _stop, _task) = serve(
        RegistryConfig::new(&root),
        store.clone(),
        master.clone(),
        |r| r,
    )
    .await;
    let http = Http {
        base: format!("http://{addr2}"),
        ..http
    };
    let location = location.clone();
    check_recovery(&http, &root, &location, &data).await;
}

/// The standalone server binary, killed on drop.
struct Process {
    child: tokio::process::Child,
    addr: SocketAddr,
}

impl Process {
    async fn start(dir: &Path) -> Process {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_runway-registry-serve"))
            .arg(dir)
            .arg("127.0.0.1:0")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the server printed its address");
        let addr = line.strip_prefix("listening ").unwrap().parse().unwrap();
        Process { child, addr }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_killed_with_sigkill_mid_upload_recovers_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Process::start(dir.path()).await;
    let creds = std::fs::read_to_string(dir.path().join("credentials")).unwrap();
    let (key, secret) = creds.trim().split_once(':').unwrap();
    let http = Http {
        client: reqwest::Client::new(),
        base: format!("http://{}", first.addr),
        auth: Some((key.to_string(), secret.to_string())),
    };
    let root = dir.path().join("registry");
    let data = random_bytes(6 << 20);
    let r = http
        .req(Method::POST, "/v2/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = header(&r, "location");
    let _conn = partial_patch(
        first.addr,
        &location,
        (key, secret),
        data.len(),
        &data[..3 << 20],
    )
    .await;
    wait_for_data(&root, &location, 2 << 20).await;
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();

    let second = Process::start(dir.path()).await;
    let http = Http {
        base: format!("http://{}", second.addr),
        ..http
    };
    check_recovery(&http, &root, &location, &data).await;
}
