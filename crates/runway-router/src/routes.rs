//! What the controller tells the router: which hosts belong to which service, and which
//! instances serve each of its revisions. The router validates a table before it takes
//! it, and keeps the previous one if it is invalid.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

/// App Runner's request timeout, the default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest request timeout a service may set.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// How long a response body or an upgraded connection (WebSocket) may move no byte either
/// way before it is cut, by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The longest idle timeout a service may set.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
/// `max_request_body` for a service that streams request bodies of any size.
pub const UNLIMITED_REQUEST_BODY: u64 = u64::MAX;
/// App Runner's default MaxConcurrency.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 100;
/// The default limit on a request body.
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 32 * 1024 * 1024;
/// Separates a revision's tag from the service's default host in a tagged host name
/// (`<tag>---<name>-<id>.<base-domain>`, as Cloud Run spells tagged URLs).
pub const TAG_SEPARATOR: &str = "---";

/// Every service the router serves. Swapped whole with [`crate::Router::set_routes`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RouteTable {
    pub services: Vec<ServiceRoute>,
}

/// How to reach one service.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServiceRoute {
    /// The service's id; metrics and the access log are labelled with it.
    pub service_id: String,
    /// Host names, lowercase, without port: the default host `<name>-<id>.<base-domain>`
    /// first, then custom domains. A custom domain may be a wildcard (`*.example.com`:
    /// one more label; a name routed exactly wins over it). Tagged revisions are
    /// reachable at `<tag>---<default host>`.
    pub hosts: Vec<String>,
    /// A paused service answers 503.
    pub paused: bool,
    /// Plain-HTTP requests are redirected (308) to HTTPS.
    pub https_redirect: bool,
    /// How long the instance may take to begin its response: from the request's
    /// arrival (queueing, connecting, sending the request and as much of its body as
    /// the instance reads before answering) until the response head arrives; 504 then.
    /// A gRPC request's `grpc-timeout` shortens it. Once the head has arrived,
    /// `idle_timeout` governs.
    pub request_timeout: Duration,
    /// How long a response body, the rest of the request body sent alongside it, or an
    /// upgraded connection (WebSocket) may move no byte either way before it is cut.
    /// Streams (server-sent events, chunked and gRPC streams) and upgrades live as long
    /// as bytes keep moving, never bounded by `request_timeout`.
    pub idle_timeout: Duration,
    /// Requests in flight per instance, at most; 0 means no limit.
    pub max_concurrency: u32,
    /// The largest request body accepted, in bytes (413 beyond);
    /// [`UNLIMITED_REQUEST_BODY`] streams any size.
    pub max_request_body: u64,
    /// How the router speaks to instances.
    pub upstream: Upstream,
    /// Where requests wait when every instance is full.
    pub queue: QueueConfig,
    /// Revisions that receive traffic or have a tag.
    pub revisions: Vec<RevisionRoute>,
    /// Served on the public listeners (App Runner's IsPubliclyAccessible).
    pub public: bool,
    /// The private listeners (by name: the interface endpoints of its VPC ingress
    /// connections) that also serve it; see [`crate::Router::set_private_addresses`].
    pub private_listeners: Vec<String>,
    /// Clients connecting over IPv6 are served too (App Runner's IpAddressType
    /// DUAL_STACK); otherwise only IPv4 clients (IPv4-mapped addresses included).
    pub dual_stack: bool,
}

impl ServiceRoute {
    /// A route for `service_id` at `default_host` with App Runner's defaults and no
    /// revision.
    pub fn new(service_id: impl Into<String>, default_host: impl Into<String>) -> Self {
        ServiceRoute {
            service_id: service_id.into(),
            hosts: vec![default_host.into()],
            paused: false,
            https_redirect: true,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            upstream: Upstream::Http1,
            queue: QueueConfig::default(),
            revisions: Vec::new(),
            public: true,
            private_listeners: Vec::new(),
            dual_stack: false,
        }
    }
}

/// The protocol spoken to instances.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Upstream {
    /// HTTP/1.1 over pooled keep-alive connections.
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge over cleartext (gRPC servers); upgrades such as
    /// WebSockets still go over HTTP/1.1.
    H2c,
}

/// The bounded FIFO queue of a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueConfig {
    /// Requests that may wait at once; more get 503.
    pub capacity: usize,
    /// How long a request may wait for capacity; longer gets 503.
    pub max_wait: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 1000,
            max_wait: Duration::from_secs(60),
        }
    }
}

/// One revision of a service.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RevisionRoute {
    pub revision_id: String,
    /// Share of the service's untagged traffic; a service's percents add up to 100.
    pub percent: u8,
    /// Makes the revision reachable at `<tag>---<default host>`, whatever its percent.
    pub tag: Option<String>,
    /// The revision's healthy instances.
    pub endpoints: Vec<Endpoint>,
}

/// A healthy instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    pub instance_id: String,
    pub addr: SocketAddr,
}

/// Why a route table was refused (the previous one stays in force).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutesError {
    /// A host name is not a lowercase DNS name.
    #[error("service {service}: invalid host {host:?}")]
    InvalidHost { service: String, host: String },
    /// Two services claim the same host.
    #[error("host {host} belongs to both {first} and {second}")]
    DuplicateHost {
        host: String,
        first: String,
        second: String,
    },
    /// A service id appears twice.
    #[error("service {0} appears twice")]
    DuplicateService(String),
    /// A service has no default host.
    #[error("service {0} has no host")]
    NoHost(String),
    /// A revision id appears twice in one table.
    #[error("revision {0} appears twice")]
    DuplicateRevision(String),
    /// Percents do not add up to 100.
    #[error("service {service}: revision percents add up to {sum}, not 100")]
    Percent { service: String, sum: u32 },
    /// The request timeout is zero or above 60 minutes.
    #[error("service {service}: request timeout {timeout:?} is not between 1 s and 60 min")]
    Timeout { service: String, timeout: Duration },
    /// The idle timeout is zero or above 24 hours.
    #[error("service {service}: idle timeout {timeout:?} is not between 1 s and 24 h")]
    IdleTimeout { service: String, timeout: Duration },
    /// A tag is not a lowercase DNS label.
    #[error("service {service}: invalid tag {tag:?}")]
    InvalidTag { service: String, tag: String },
    /// An id is empty, too long or has characters other than letters, digits, '-' and '_'.
    #[error("invalid id {0:?}")]
    InvalidId(String),
}

fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `host` is a lowercase DNS name (as stored in routes), or `*.` and one for
/// a custom domain's wildcard.
pub(crate) fn valid_route_host(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    !name.is_empty() && host.len() <= 253 && name.split('.').all(valid_label)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl RouteTable {
    /// Checks the table: valid and unique hosts and ids, percents adding up to 100,
    /// timeouts within 60 minutes.
    pub fn validate(&self) -> Result<(), RoutesError> {
        let mut hosts: std::collections::HashMap<String, &str> = Default::default();
        let mut services = HashSet::new();
        let mut revisions = HashSet::new();
        for service in &self.services {
            let sid = service.service_id.as_str();
            if !valid_id(sid) {
                return Err(RoutesError::InvalidId(sid.to_string()));
            }
            if !services.insert(sid) {
                return Err(RoutesError::DuplicateService(sid.to_string()));
            }
            let Some(default_host) = service.hosts.first() else {
                return Err(RoutesError::NoHost(sid.to_string()));
            };
            let mut names: Vec<String> = service.hosts.clone();
            for revision in &service.revisions {
                if let Some(tag) = &revision.tag {
                    if !valid_label(tag) || tag.contains(TAG_SEPARATOR) {
                        return Err(RoutesError::InvalidTag {
                            service: sid.to_string(),
                            tag: tag.clone(),
                        });
                    }
                    names.push(format!("{tag}{TAG_SEPARATOR}{default_host}"));
                }
            }
            for host in names {
                if !valid_route_host(&host) {
                    return Err(RoutesError::InvalidHost {
                        service: sid.to_string(),
                        host,
                    });
                }
                if let Some(first) = hosts.insert(host.clone(), sid) {
                    return Err(RoutesError::DuplicateHost {
                        host,
                        first: first.to_string(),
                        second: sid.to_string(),
                    });
                }
            }
            if service.request_timeout < Duration::from_secs(1)
                || service.request_timeout > MAX_REQUEST_TIMEOUT
            {
                return Err(RoutesError::Timeout {
                    service: sid.to_string(),
                    timeout: service.request_timeout,
                });
            }
            if service.idle_timeout < Duration::from_secs(1)
                || service.idle_timeout > MAX_IDLE_TIMEOUT
            {
                return Err(RoutesError::IdleTimeout {
                    service: sid.to_string(),
                    timeout: service.idle_timeout,
                });
            }
            let sum: u32 = service.revisions.iter().map(|r| u32::from(r.percent)).sum();
            if !service.revisions.is_empty() && sum != 100 {
                return Err(RoutesError::Percent {
                    service: sid.to_string(),
                    sum,
                });
            }
            for revision in &service.revisions {
                if !valid_id(&revision.revision_id) {
                    return Err(RoutesError::InvalidId(revision.revision_id.clone()));
                }
                if !revisions.insert(revision.revision_id.as_str()) {
                    return Err(RoutesError::DuplicateRevision(revision.revision_id.clone()));
                }
                for endpoint in &revision.endpoints {
                    if !valid_id(&endpoint.instance_id) {
                        return Err(RoutesError::InvalidId(endpoint.instance_id.clone()));
                    }
                }
            }
        }
        Ok(())
    }
}
