//! The router's own settings (per-service settings are in the route table).

use std::path::PathBuf;
use std::time::Duration;

/// Limits and timeouts that protect the router, and where the access log goes.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// The largest request head (request line and headers) of HTTP/1.1, and header list
    /// of HTTP/2, in bytes; 431 beyond. At least 8 KiB.
    pub max_header_bytes: usize,
    /// The most request headers; 431 beyond.
    pub max_headers: usize,
    /// How long a client may take to send a request's headers, and how long a
    /// connection with no request in flight stays open (slowloris): an HTTP/1.1
    /// keep-alive connection is closed, an HTTP/2 one told so with GOAWAY, whatever
    /// PINGs it answers.
    pub header_read_timeout: Duration,
    /// How long a request body may send nothing while the instance waits for it (before
    /// its response begins); 408 then. gRPC client streams wait as long as the service's
    /// idle timeout instead.
    pub body_read_timeout: Duration,
    /// Requests per client connection that may hold an instance while their body is
    /// still arriving; more wait for one of them to finish sending (an HTTP/2 client's
    /// stalled uploads cannot take a service's capacity).
    pub max_uploads_per_connection: usize,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// Concurrent streams per HTTP/2 client connection.
    pub h2_max_concurrent_streams: u32,
    /// How often idle HTTP/2 connections are pinged, and how long a ping may go
    /// unanswered before the connection is closed.
    pub h2_keepalive: Duration,
    /// How long connecting to an instance may take before another is tried.
    pub connect_timeout: Duration,
    /// How long an idle pooled connection to an instance is kept.
    pub upstream_idle_timeout: Duration,
    /// Idle pooled connections kept per instance.
    pub max_idle_per_endpoint: usize,
    /// Failures in a row (connections refused or reset, no response within the
    /// request timeout) after which an instance is ejected from balancing (passive
    /// health checking).
    pub eject_after_failures: u32,
    /// How long an ejected instance gets no requests (unless its revision has no other);
    /// doubled each time it fails again on its return, until it answers a request.
    pub endpoint_backoff: Duration,
    /// The longest ejection.
    pub max_ejection: Duration,
    /// How long graceful shutdown waits for requests in flight before closing them.
    pub shutdown_grace: Duration,
    /// The per-service JSON access log; none if `None`.
    pub access_log: Option<AccessLogConfig>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            max_uploads_per_connection: 16,
            tls_handshake_timeout: Duration::from_secs(10),
            h2_max_concurrent_streams: 256,
            h2_keepalive: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            upstream_idle_timeout: Duration::from_secs(30),
            max_idle_per_endpoint: 256,
            eject_after_failures: 5,
            endpoint_backoff: Duration::from_secs(5),
            max_ejection: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(30),
            access_log: None,
        }
    }
}

/// Where and how the access log is written: `<dir>/<service id>.log`, one JSON object a
/// line, rotated to `.1`, `.2`, ... when it reaches `max_bytes`.
#[derive(Debug, Clone)]
pub struct AccessLogConfig {
    pub dir: PathBuf,
    /// Size at which a file is rotated.
    pub max_bytes: u64,
    /// Rotated files kept per service.
    pub keep: usize,
    /// Lines buffered for the writer; when full, lines are dropped (and counted) rather
    /// than slowing requests down.
    pub buffer: usize,
}

impl AccessLogConfig {
    /// Logs into `dir` with 10 MiB files, 3 rotated files kept, 8192 lines buffered.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        AccessLogConfig {
            dir: dir.into(),
            max_bytes: 10 * 1024 * 1024,
            keep: 3,
            buffer: 8192,
        }
    }
}
