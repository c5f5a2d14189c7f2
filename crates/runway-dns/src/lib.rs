//! runway's authoritative DNS server (its Route 53): it answers for the base domain
//! (every service host, the `*.<base-domain>` wildcard and the apex, all at the router's
//! public addresses, with SOA and NS records) and for the ACME validation zone
//! (`acme-validations.<base-domain>`, where the `_acme-challenge` CNAME records users add
//! for their custom domains point, and whose TXT records runway sets while a CA
//! validates). A registrar delegates the base domain to it (NS records and glue); then
//! runway proves control of the base domain and of delegated custom domains by DNS-01
//! itself.
//!
//! It must never recurse or forward (names outside its zones are REFUSED, and answers
//! never claim recursion), never transfer a zone (AXFR and IXFR are REFUSED), never
//! accept dynamic updates, and never answer one client network faster than its response
//! rate limit over UDP (where source addresses can be forged to reflect answers at a
//! victim; TCP is always answered).

#![forbid(unsafe_code)]

mod limit;
mod metrics;
mod zone;

pub use zone::{Host, Records, ZoneConfig};

use arc_swap::ArcSwap;
use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{Catalog, MessageResponseBuilder};
use runway_telemetry::Registry;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};

/// How long a TCP client may take to send its query.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 16;

/// What can go wrong when setting up the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A zone name or a record name is not a DNS name.
    #[error("invalid DNS name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    /// The DNS server stopped with an error.
    #[error("DNS server: {0}")]
    Serve(String),
}

/// The authoritative server: cheap to clone. Its records are replaced whole with
/// [`Dns::set_hosts`] and [`Dns::set_txt`]; queries in flight keep the zones they
/// started with.
#[derive(Clone, Debug)]
pub struct Dns {
    shared: Arc<Shared>,
}

struct Shared {
    config: ZoneConfig,
    records: Mutex<Records>,
    catalog: ArcSwap<Catalog>,
    /// Bumped with every change, for the SOA serial.
    serial: Mutex<u32>,
    limiter: limit::Limiter,
    metrics: metrics::DnsMetrics,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Dns {
    /// A server for `config`'s zones with no service host and no TXT record yet,
    /// registering its metrics in `registry`.
    pub fn new(config: ZoneConfig, registry: &mut Registry) -> Result<Self, DnsError> {
        let records = Records::default();
        let serial = initial_serial();
        let catalog = zone::catalog(&config, &records, serial)?;
        Ok(Dns {
            shared: Arc::new(Shared {
                limiter: limit::Limiter::new(config.rate_limit),
                metrics: metrics::DnsMetrics::register(registry),
                config,
                records: Mutex::new(records),
                catalog: ArcSwap::from_pointee(catalog),
                serial: Mutex::new(serial),
            }),
        })
    }

    /// The zones' configuration.
    pub fn config(&self) -> &ZoneConfig {
        &self.shared.config
    }

    /// Serves A records, and AAAA records for dual-stack ones, for `hosts` (names under
    /// the base domain; others are ignored) from now on, instead of the previous ones.
    pub fn set_hosts(&self, hosts: Vec<Host>) -> Result<(), DnsError> {
        self.update(|records| {
            if records.hosts == hosts {
                return false;
            }
            records.hosts = hosts;
            true
        })
    }

    /// Serves `txt` (full names, in the base domain or the validation zone, each with
    /// its values) from now on, instead of the previous TXT records. Answers carry them
    /// as soon as this returns.
    pub fn set_txt(
        &self,
        txt: std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<(), DnsError> {
        self.update(|records| {
            if records.txt == txt {
                return false;
            }
            records.txt = txt;
            true
        })
    }

    fn update(&self, change: impl FnOnce(&mut Records) -> bool) -> Result<(), DnsError> {
        let mut records = self
            .shared
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut next = records.clone();
        if !change(&mut next) {
            return Ok(());
        }
        let mut serial = self.shared.serial.lock().unwrap_or_else(|e| e.into_inner());
        let new_serial = serial.wrapping_add(1);
        let catalog = zone::catalog(&self.shared.config, &next, new_serial)?;
        self.shared.catalog.store(Arc::new(catalog));
        *serial = new_serial;
        *records = next;
        Ok(())
    }

    /// Answers queries on `udp` and `tcp` until `shutdown` completes.
    pub async fn serve(
        &self,
        udp: UdpSocket,
        tcp: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), DnsError> {
        let mut server = hickory_server::Server::new(Handler {
            shared: self.shared.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_TIMEOUT, TCP_RESPONSE_BUFFER);
        tokio::select! {
            result = server.block_until_done() => result.map_err(|e| DnsError::Serve(e.to_string())),
            _ = shutdown => server
                .shutdown_gracefully()
                .await
                .map_err(|e| DnsError::Serve(e.to_string())),
        }
    }
}

/// A serial that grows across restarts (seconds since 2020 fit in 32 bits until 2156),
/// so secondaries and caches never see an older zone with a larger serial.
fn initial_serial() -> u32 {
    let since_2020 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_sub(1_577_836_800);
    u32::try_from(since_2020).unwrap_or(u32::MAX)
}

/// The request handler: policy first (opcode, transfers, rate limit), then the zones.
struct Handler {
    shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let shared = &self.shared;
        if request.protocol() == Protocol::Udp && !shared.limiter.allow(request.src().ip()) {
            shared.metrics.rate_limited.inc();
            return dropped(request);
        }
        let query_type = request.queries.queries().first().map(|q| q.query_type());
        let refused = request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
            || matches!(query_type, Some(RecordType::AXFR | RecordType::IXFR));
        let info = if refused {
            refuse(request, response_handle).await
        } else {
            let catalog = shared.catalog.load_full();
            catalog
                .handle_request::<R, T>(request, response_handle)
                .await
        };
        shared.metrics.answered(info.response_code);
        info
    }
}

/// Answers REFUSED: zone transfers, updates and notifies are never served.
async fn refuse<R: ResponseHandler>(request: &Request, mut response_handle: R) -> ResponseInfo {
    let response = MessageResponseBuilder::new(&request.queries, None)
        .error_msg(&request.metadata, ResponseCode::Refused);
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "cannot send a DNS response");
            dropped(request)
        }
    }
}

/// What the server reports for a request it did not answer.
fn dropped(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    metadata.response_code = ResponseCode::Refused;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}
