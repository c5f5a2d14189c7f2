//! runway's logs and metrics (its CloudWatch): the tracing subscriber, the Prometheus
//! registry every part registers its metrics in, and the listener that serves them.
//!
//! This crate must never hold request data (bodies, headers, secrets) in labels or log
//! fields, and never block the caller: metric updates are lock-free atomics.

#![forbid(unsafe_code)]

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
pub use prometheus_client::registry::Registry;
use std::io::IsTerminal;
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("log format must be human or json, got {s:?}")),
        }
    }
}

/// Installs the global tracing subscriber, writing to stderr. `filter` is a list of
/// `target=level` directives such as `info,runway_api=debug`.
pub fn init_logging(format: LogFormat, filter: &str) -> Result<(), String> {
    init_logging_with(format, filter, None)
}

/// A log of its own for the events of one `tracing` target (the auth-failure log):
/// JSON lines appended to `path`, whatever the main filter says.
#[derive(Debug, Clone)]
pub struct TargetLog {
    pub target: &'static str,
    pub path: std::path::PathBuf,
}

/// Like [`init_logging`], and also writes the events of `extra`'s target at level INFO
/// and above to its file, rotated at [`ROTATE_BYTES`] to `.1` and `.2`.
pub fn init_logging_with(
    format: LogFormat,
    filter: &str,
    extra: Option<TargetLog>,
) -> Result<(), String> {
    let targets: Targets = filter
        .parse()
        .map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
    let extra = match extra {
        Some(log) => {
            let file = RotatingFile::open(log.path)?;
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(file)
                    .with_filter(Targets::new().with_target(log.target, tracing::Level::INFO)),
            )
        }
        None => None,
    };
    let registry = tracing_subscriber::registry().with(extra);
    let result = match format {
        LogFormat::Human => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr)
                    .with_filter(targets),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr)
                    .with_filter(targets),
            )
            .try_init(),
    };
    result.map_err(|e| e.to_string())
}

/// The size at which a [`TargetLog`] file is rotated.
pub const ROTATE_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated files kept (`.1`, `.2`).
const ROTATED_KEPT: u32 = 2;

/// A file that lines are appended to, renamed to `.1` (and `.1` to `.2`) when it reaches
/// [`ROTATE_BYTES`], so a flood of events cannot fill the disk.
#[derive(Debug, Clone)]
struct RotatingFile {
    inner: Arc<std::sync::Mutex<Rotating>>,
}

#[derive(Debug)]
struct Rotating {
    path: std::path::PathBuf,
    file: std::fs::File,
    size: u64,
}

fn append(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl RotatingFile {
    fn open(path: std::path::PathBuf) -> Result<Self, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let file = append(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let size = file.metadata().map_or(0, |m| m.len());
        Ok(RotatingFile {
            inner: Arc::new(std::sync::Mutex::new(Rotating { path, file, size })),
        })
    }
}

impl Rotating {
    fn rotate(&mut self) -> std::io::Result<()> {
        let rotated = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            std::path::PathBuf::from(name)
        };
        for n in (1..ROTATED_KEPT).rev() {
            let _ = std::fs::rename(rotated(n), rotated(n + 1));
        }
        std::fs::rename(&self.path, rotated(1))?;
        self.file = append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

impl std::io::Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.size + buf.len() as u64 > ROTATE_BYTES && inner.size > 0 {
            inner.rotate()?;
        }
        // One write per event: with O_APPEND each line lands whole.
        inner.file.write_all(buf)?;
        inner.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingFile {
    type Writer = RotatingFile;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The content type of the Prometheus text exposition format.
const TEXT_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /metrics` from `registry` until `shutdown` completes.
pub async fn serve_metrics(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, metrics_app(registry))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The application that answers `GET /metrics` from `registry`, for a listener of the
/// caller's.
pub fn metrics_app(registry: Arc<Registry>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut body = String::new();
                match prometheus_client::encoding::text::encode(&mut body, &registry) {
                    Ok(()) => ([(header::CONTENT_TYPE, TEXT_FORMAT)], body).into_response(),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode metrics");
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
                    }
                }
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_target_log_rotates_instead_of_growing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs").join("auth.log");
        let mut file = RotatingFile::open(path.clone()).unwrap();
        let line = vec![b'x'; 1024 * 1024];
        for _ in 0..25 {
            file.write_all(&line).unwrap();
        }
        let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
        assert!(size(&path) <= ROTATE_BYTES);
        assert!(size(&dir.path().join("logs/auth.log.1")) > 0);
        assert!(size(&dir.path().join("logs/auth.log.2")) > 0);
        assert!(!dir.path().join("logs/auth.log.3").exists());
    }
}
