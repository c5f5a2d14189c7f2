//! Serves runway's registry on its own, outside `runway server`: for the benchmark in
//! `bench/registry/` and for tests that kill the process (`kill -9`) mid-upload.
//!
//! Usage: `runway-registry-serve <data-dir> <listen-addr>`. The data directory gets
//! `state.db`, `master.key`, `registry/` and, on first start, an access key in
//! `credentials` (one line, `KEYID:SECRET`, mode 0600). Prints `listening <addr>` once
//! serving. `RUNWAY_LOG` sets the log filter (default `warn`).

use runway_registry::{Registry, RegistryConfig};
use runway_secrets::MasterKey;
use runway_store::{SqliteStore, Store};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

fn main() {
    if let Err(e) = run() {
        let _ = writeln!(std::io::stderr(), "runway-registry-serve: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(addr)) = (args.next(), args.next()) else {
        return Err("usage: runway-registry-serve <data-dir> <listen-addr>".into());
    };
    let dir = PathBuf::from(dir);
    let addr: SocketAddr = addr.parse()?;
    let filter = std::env::var("RUNWAY_LOG").unwrap_or_else(|_| "warn".into());
    runway_telemetry::init_logging(runway_telemetry::LogFormat::Human, &filter)?;

    std::fs::create_dir_all(&dir)?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("state.db"))?);
    let master = Arc::new(MasterKey::load_or_create(&dir.join("master.key"))?);
    {
        let mut tx = store.begin()?;
        if !runway_secrets::any_access_key(&*tx)? {
            let (id, secret) = runway_secrets::create_access_key(&mut *tx, &master, "admin")?;
            let line = format!("{id}:{}\n", secret.expose());
            runway_store::fs::write_atomic(&dir.join("credentials"), line.as_bytes(), 0o600)?;
            tx.commit()?;
        }
    }
    let mut metrics = runway_telemetry::Registry::default();
    let registry = Registry::open(
        RegistryConfig::new(dir.join("registry")),
        store,
        master,
        &mut metrics,
    )?;

    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            let local = listener.local_addr()?;
            let mut out = std::io::stdout();
            writeln!(out, "listening {local}")?;
            out.flush()?;
            let shutdown = async {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            };
            axum::serve(listener, registry.router())
                .with_graceful_shutdown(shutdown)
                .await?;
            Ok(())
        })
}
