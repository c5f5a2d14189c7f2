//! The router process: runway's data plane for traffic, apart from the control plane.
//!
//! `runway server` does not serve apps itself. It starts `runway router-process` (a
//! hidden subcommand of the same binary) in its own process group, as the runtime starts
//! instance shims, and talks to it over a unix socket in the data directory
//! ([`SOCKET`]): one JSON message a line each way. The router process holds the public
//! HTTP and HTTPS listeners and the private ones (VPC interface endpoints: it stops one
//! as soon as the private addresses it is given leave its address out, so the listener
//! of an endpoint deleted while no server ran stops at the next server's first network
//! pass, and a new process that takes over closes such a listener), opens the
//! certificate store of the data directory itself (reading it again when told), and
//! serves from the last routes, host notices, private addresses and ACME answers it was
//! given, whether or not a control plane is connected. Load readings, instance loads and
//! metrics are answered on request; demand (requests waiting for capacity) is pushed.
//!
//! When `runway server` starts it adopts a router process that runs (same listen
//! addresses and base domain, same protocol), pushing everything it wants served again.
//! A restart (`runway restart-router`, or a server start that finds the router's binary
//! replaced or its settings changed) starts a new router process with `--take-over`: it
//! binds the addresses the running one does not hold, then takes the listening sockets
//! (SCM_RIGHTS on [`HANDOVER_SOCKET`]) and the last routes and settings from the running
//! one, keeps the sockets whose address is still wanted (an unchanged port-0 address
//! keeps its port), closes the others, and serves at once, while the old one stops
//! accepting, closes its listeners, drains and exits. Only a router process speaking
//! another protocol is asked to drain and exit before a new one binds. While the server
//! runs it reconnects to the router process, and starts it again if it has died. When the
//! server stops (SIGTERM, or kill -9), the router process runs on, as instances do, so
//! apps stay reachable; `runway purge` stops it.
//!
//! This is DESIGN.md's "data plane outlives the control plane" for traffic. Where it
//! falls short for now: the router's metrics are served by the server's metrics
//! listener, fetched from the router process per scrape (none while the server is
//! down); a router process speaking another protocol refuses connections for the moment
//! the new one takes to bind, and so does an address that is given up for an
//! overlapping one (`0.0.0.0:443` for `[::]:443`) until the old process has closed it.
//! Domains waiting
//! for their certificate get a placeholder from the local CA made by the router process
//! itself (one per name with a notice), not the issuer's; so do former base domains
//! (after a restart with another `--base-domain`, services created before keep their
//! host names): a wildcard for each that a route's default host still uses, unless a
//! saved certificate serves it.

use anyhow::{Context, Result, bail};
use runway_certs::{CertStore, Challenges, HttpAnswers};
use runway_control::{BoxFuture, RouterPort};
use runway_router::{
    AccessLogConfig, AcmeResponder, Demand, InstanceLoad, RevisionStats, RouteTable, Router,
    RouterConfig, RoutesError, WaitingRevision,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};

/// A connection to the router process: lines in, lines out.
type Conn = (BufReader<OwnedReadHalf>, OwnedWriteHalf);
use tokio::sync::{mpsc, oneshot, watch};

/// The router process's control socket, in the data directory.
pub const SOCKET: &str = "router.sock";
/// The router process's id, in the data directory (while it runs).
pub const PID_FILE: &str = "router.pid";
/// Held by the running router process: one per data directory.
const LOCK_FILE: &str = "router.lock";
/// Where a new router process takes the listening sockets from the running one.
const HANDOVER_SOCKET: &str = "router-handover.sock";
/// The router process's log, in the data directory.
pub const LOG_FILE: &str = "logs/router.log";
/// Bumped when a message changes meaning: a router process speaking another is replaced.
const PROTOCOL: u32 = 1;
/// How long an answer from the router process may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new router process may take to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `runway router-process` (started by `runway server`, not by people).
#[derive(Debug, clap::Args)]
pub struct RouterProcessArgs {
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long)]
    http_listen: SocketAddr,
    #[arg(long)]
    https_listen: SocketAddr,
    /// Where to listen instead of --http-listen (a router started again keeps the port
    /// its predecessor had been given for port 0).
    #[arg(long)]
    http_bind: Option<SocketAddr>,
    #[arg(long)]
    https_bind: Option<SocketAddr>,
    #[arg(long)]
    base_domain: String,
    /// Take the listening sockets and the state of the running router process, which
    /// then finishes its requests and exits (a restart or upgrade without refusing a
    /// connection).
    #[arg(long)]
    take_over: bool,
    #[arg(long, default_value = "info")]
    log_filter: String,
    #[arg(long, default_value = "human")]
    log_format: String,
}

/// A request to the router process; `id` 0 wants no reply.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    id: u64,
    request: Request,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Request {
    Hello,
    SetRoutes(RouteTable),
    SetHttpsPort(u16),
    SetNotices(HashMap<String, String>),
    SetPrivateAddresses(HashMap<IpAddr, String>),
    SetAnswers(HttpAnswers),
    ReloadCertificates,
    Listen(SocketAddr),
    Unlisten(SocketAddr),
    Stats,
    InstanceLoad(String),
    Metrics,
    Shutdown,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Ok,
    Error { message: String, in_use: bool },
    Hello(Hello),
    Stats(Vec<RevisionStats>),
    Load(InstanceLoad),
    Metrics(String),
}

/// What a router process says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    protocol: u32,
    pub pid: u32,
    http_listen: SocketAddr,
    https_listen: SocketAddr,
    base_domain: String,
    #[serde(default)]
    log_filter: String,
    #[serde(default)]
    log_format: String,
    /// Where it listens for plain HTTP.
    pub http: SocketAddr,
    /// Where it listens for HTTPS.
    pub https: SocketAddr,
}

/// A message from the router process.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Message {
    Reply { id: u64, reply: Reply },
    Demand(Vec<Waiting>),
}

/// A revision with requests waiting, as it crosses the socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Waiting {
    revision_id: String,
    service_id: String,
    endpoints: usize,
    waited_ms: u64,
}

fn line<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string(value).expect("messages serialize");
    s.push('\n');
    s
}

// ---------------------------------------------------------------------------------------
// The router process.

/// `runway router-process`: serves until SIGTERM, SIGINT or a shutdown request, then
/// finishes the requests in flight.
pub fn router_process(args: RouterProcessArgs) -> Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    runway_telemetry::init_logging_with(
        args.log_format.parse().map_err(anyhow::Error::msg)?,
        &args.log_filter,
        None,
    )
    .map_err(anyhow::Error::msg)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(args.data_dir.join(LOCK_FILE))
        .context("cannot open the router lock")?;
    if args.take_over {
        // The one taken over holds the lock until it has drained; ours after.
        std::thread::spawn(move || {
            if lock.lock().is_ok() {
                std::thread::park();
                drop(lock);
            }
        });
    } else if lock.try_lock().is_err() {
        bail!(
            "a router process already serves {}",
            args.data_dir.display()
        );
    }
    crate::listeners::raise_file_limit();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(args))
}

/// The certificates the router process serves, swapped whole on a reload.
#[derive(Debug)]
struct Certificates {
    dir: PathBuf,
    base_domain: String,
    master: Arc<runway_secrets::MasterKey>,
    challenges: Arc<Challenges>,
    current: RwLock<(CertStore, Fingerprint)>,
    /// Names of domains waiting for their certificate (those with a notice): served a
    /// placeholder from the local CA, as the issuer does in its own process.
    waiting: Mutex<Vec<String>>,
    /// Former base domains that routes' default hosts still use: served a wildcard from
    /// the local CA (see [`Certificates::former_domains`]).
    former: Mutex<BTreeSet<String>>,
}

impl Certificates {
    fn open(
        data_dir: &Path,
        base_domain: &str,
        challenges: Arc<Challenges>,
    ) -> Result<Arc<Certificates>> {
        let master = Arc::new(runway_secrets::MasterKey::load_or_create(
            &data_dir.join("master.key"),
        )?);
        let dir = data_dir.join("certs");
        let fingerprint = fingerprint(&dir);
        let store = CertStore::open(&dir, master.clone(), base_domain)
            .context("cannot open the certificates")?;
        store.resolver().set_challenges(challenges.clone());
        Ok(Arc::new(Certificates {
            dir,
            base_domain: base_domain.to_string(),
            master,
            challenges,
            current: RwLock::new((store, fingerprint)),
            waiting: Mutex::new(Vec::new()),
            former: Mutex::new(BTreeSet::new()),
        }))
    }

    fn store(&self) -> CertStore {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Serves placeholders for `names` where no certificate is served (blocking).
    fn placeholders(&self, names: Vec<String>) {
        serve_placeholders(&self.store(), &names);
        *lock(&self.waiting) = names;
    }

    /// The former base domains that `table`'s default hosts use.
    ///
    /// After a restart with another `--base-domain`, services created before keep their
    /// host names under the former one. The router process finds those domains in the
    /// routes it serves (each route's first host is the service's default host) rather
    /// than being told by the server: the routes are handed over with the listening
    /// sockets, so a router process that replaces one for a new base domain serves these
    /// certificates from its first handshake, before any server has connected to it.
    fn former_domains(&self, table: &RouteTable) -> BTreeSet<String> {
        runway_certs::former_base_domains(
            &self.base_domain,
            table
                .services
                .iter()
                .filter_map(|s| s.hosts.first())
                .map(String::as_str),
        )
    }

    /// Whether `former` differs from the former base domains served.
    fn former_changed(&self, former: &BTreeSet<String>) -> bool {
        *lock(&self.former) != *former
    }

    /// Serves a local-CA wildcard for each of the former base domains `former`, and
    /// stops serving those no longer in it (blocking: key generation).
    fn set_former(&self, former: BTreeSet<String>) {
        let mut current = lock(&self.former);
        if *current == former {
            return;
        }
        // Kept as it was on failure: the next routes try again.
        if serve_former(&self.store(), &former) {
            *current = former;
        }
    }

    /// Opens the store again if a certificate file changed.
    fn reload(&self) -> Result<()> {
        let now = fingerprint(&self.dir);
        if self.current.read().unwrap_or_else(|e| e.into_inner()).1 == now {
            return Ok(());
        }
        let store = CertStore::open(&self.dir, self.master.clone(), &self.base_domain)?;
        store.resolver().set_challenges(self.challenges.clone());
        // In memory only: served by the new store before it replaces the old one, so no
        // handshake misses them.
        serve_placeholders(&store, &lock(&self.waiting));
        let _ = serve_former(&store, &lock(&self.former));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (store, now);
        tracing::info!("certificates reloaded");
        Ok(())
    }

    fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>> {
        let mut config = rustls::ServerConfig::builder_with_provider(runway_certs::provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![
            b"h2".to_vec(),
            b"http/1.1".to_vec(),
            runway_certs::ACME_TLS_ALPN.to_vec(),
        ];
        Ok(Arc::new(config))
    }
}

/// Serves placeholders from the local CA for `names` where no certificate is served.
fn serve_placeholders(store: &CertStore, names: &[String]) {
    for name in names {
        if let Err(e) = store.serve_placeholder(std::slice::from_ref(name)) {
            tracing::warn!(%name, error = %e, "cannot serve a placeholder certificate");
        }
    }
}

/// See [`CertStore::serve_former_base_domains`]; whether it succeeded.
fn serve_former(store: &CertStore, domains: &BTreeSet<String>) -> bool {
    match store.serve_former_base_domains(domains) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot serve the certificates of former base domains");
            false
        }
    }
}

impl rustls::server::ResolvesServerCert for Certificates {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.store().resolver().resolve(hello)
    }
}

/// Every certificate file's name, size and time: a change means a reload.
type Fingerprint = Vec<(PathBuf, u64, std::time::SystemTime)>;

fn fingerprint(dir: &Path) -> Fingerprint {
    let mut out = Vec::new();
    for d in [dir.to_path_buf(), dir.join("domains")] {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(meta) = entry.metadata()
                && meta.is_file()
            {
                let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                out.push((entry.path(), meta.len(), modified));
            }
        }
    }
    out.sort();
    out
}

/// HTTP-01 answers from the challenges the control plane pushed.
#[derive(Debug)]
struct Answers(Arc<Challenges>);

impl AcmeResponder for Answers {
    fn respond(&self, host: &str, token: &str) -> Option<String> {
        self.0.http01(host, token)
    }
}

/// What every control connection of the router process shares.
struct Process {
    router: Router,
    registry: runway_telemetry::Registry,
    certs: Arc<Certificates>,
    tls: Arc<rustls::ServerConfig>,
    hello: Hello,
    /// Private listeners: their stop signal, task and socket. Each one's address is
    /// among the last private addresses set: setting them stops those left out.
    private: tokio::sync::Mutex<HashMap<SocketAddr, PrivateListener>>,
    /// The public listeners' sockets (HTTP, HTTPS), for a handover; closed after one.
    public: Mutex<Option<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>>,
    /// The last of what the control plane set, for a handover.
    state: Mutex<HandedState>,
    /// Handed over: the new process owns the socket and pid files.
    handed_over: std::sync::atomic::AtomicBool,
    stop: watch::Sender<bool>,
}

/// What a router process hands its successor besides the sockets.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct HandedState {
    routes: Option<RouteTable>,
    https_port: Option<u16>,
    notices: Option<HashMap<String, String>>,
    private_addresses: Option<HashMap<IpAddr, String>>,
    answers: Option<HttpAnswers>,
    /// The private listeners' addresses, in the order of their sockets after the two
    /// public ones.
    #[serde(default)]
    listeners: Vec<SocketAddr>,
}

struct PrivateListener {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    socket: std::os::fd::OwnedFd,
}

/// Serves HTTPS for private services on `listener` until told or until all stop (a
/// connection to it while its address is not among the private addresses is closed: see
/// [`Router::serve_private`]).
fn private_listener(
    process_stop: &watch::Sender<bool>,
    router: &Router,
    tls: &Arc<rustls::ServerConfig>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<PrivateListener> {
    let socket = std::os::fd::AsFd::as_fd(&listener).try_clone_to_owned()?;
    let (stop, mut stopping) = watch::channel(false);
    let (router, tls) = (router.clone(), tls.clone());
    let mut all = process_stop.subscribe();
    let task = tokio::spawn(async move {
        let stopped = async move {
            tokio::select! {
                _ = stopping.wait_for(|s| *s) => {}
                _ = all.wait_for(|s| *s) => {}
            }
        };
        router.serve_private(listener, Some(tls), stopped).await
    });
    Ok(PrivateListener { stop, task, socket })
}

/// Stops a private listener that is no longer wanted: it stops accepting and closes its
/// socket at once; its requests in flight finish in the background (up to the router's
/// grace period), so the control connection that stopped it is not held up.
fn stop_private(addr: SocketAddr, listener: PrivateListener, why: &'static str) {
    let PrivateListener { stop, task, socket } = listener;
    let _ = stop.send(true);
    drop(socket);
    tokio::spawn(async move {
        let _ = task.await;
        tracing::info!(%addr, reason = why, "private listener stopped");
    });
}

/// Takes the running router process's sockets and state (blocking).
fn take_over(dir: &Path) -> Result<(Vec<std::os::fd::OwnedFd>, HandedState)> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let stream = std::os::unix::net::UnixStream::connect(dir.join(HANDOVER_SOCKET))
        .context("cannot reach the running router process to take over")?;
    stream.set_read_timeout(Some(CALL_TIMEOUT))?;
    let mut data = Vec::new();
    let mut fds = Vec::new();
    loop {
        let mut buf = vec![0u8; 1 << 16];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(253))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = recvmsg(
            &stream,
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
        }
        if got.bytes == 0 {
            break;
        }
        data.extend_from_slice(&buf[..got.bytes]);
    }
    let state: HandedState =
        serde_json::from_slice(&data).context("the router process handed over no state")?;
    if fds.len() != 2 + state.listeners.len() {
        bail!("the router process handed over {} sockets", fds.len());
    }
    Ok((fds, state))
}

/// Hands the sockets and state to a successor on `stream` (blocking).
fn hand_over(process: &Process, stream: std::os::unix::net::UnixStream) -> Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    use std::os::fd::AsFd;
    let private = process.private.blocking_lock();
    let mut state = lock(&process.state).clone();
    state.listeners = private.keys().copied().collect();
    let public = lock(&process.public);
    let Some((http, https)) = public.as_ref() else {
        bail!("the listening sockets were handed over already");
    };
    let mut fds = vec![http.as_fd(), https.as_fd()];
    fds.extend(state.listeners.iter().map(|a| private[a].socket.as_fd()));
    let data = serde_json::to_vec(&state)?;
    let mut space =
        vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        bail!("too many sockets to hand over");
    }
    let (first, rest) = data.split_at(data.len().min(1024));
    sendmsg(
        &stream,
        &[std::io::IoSlice::new(first)],
        &mut control,
        SendFlags::empty(),
    )?;
    std::io::Write::write_all(&mut &stream, rest)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    Ok(())
}

/// Binds `addr` after a handover: the previous process closes the listeners it gave up
/// (one may overlap `addr`, as `0.0.0.0:443` does `[::]:443`) as soon as it has handed
/// over, so "in use" is waited out for a while.
async fn bind_after_handover(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => {
                tracing::info!(%addr, "listening on a new address");
                return Ok(l);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot listen for the router on {addr}"));
            }
        }
    }
}

async fn serve(args: RouterProcessArgs) -> Result<()> {
    let dir = args.data_dir.clone();
    let challenges = Arc::new(Challenges::new(runway_certs::provider(), None));
    let certs = {
        let (dir, domain, challenges) = (dir.clone(), args.base_domain.clone(), challenges.clone());
        tokio::task::spawn_blocking(move || Certificates::open(&dir, &domain, challenges)).await??
    };
    let tls = certs.server_config()?;
    let mut registry = runway_telemetry::Registry::default();
    let router = Router::new(
        RouterConfig {
            access_log: Some(AccessLogConfig::new(dir.join("logs").join("access"))),
            ..Default::default()
        },
        &mut registry,
    )
    .context("cannot start the router")?;
    router.set_acme_responder(Some(Arc::new(Answers(challenges.clone()))));
    let http_addr = args.http_bind.unwrap_or(args.http_listen);
    let https_addr = args.https_bind.unwrap_or(args.https_listen);
    let (http, https, handed) = if args.take_over {
        // Addresses the running process does not hold are bound before it is asked for
        // its sockets: one that cannot be had fails this process while the old one
        // serves on. An address it holds (kept, or overlapping one it gives up) is
        // "in use" until the handover.
        let mut early = Vec::new();
        for addr in [http_addr, https_addr] {
            match std::net::TcpListener::bind(addr) {
                Ok(l) => early.push((addr, l)),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot listen for the router on {addr}"));
                }
            }
        }
        let dir = dir.clone();
        let (fds, state) = tokio::task::spawn_blocking(move || take_over(&dir)).await??;
        let mut pool = Vec::new();
        for fd in fds {
            let listener = std::net::TcpListener::from(fd);
            pool.push((listener.local_addr()?, listener));
        }
        let mut take = |addr: SocketAddr| {
            let i = pool.iter().position(|(a, _)| *a == addr)?;
            Some(pool.remove(i).1)
        };
        let http = take(http_addr);
        let https = take(https_addr);
        let private: Vec<_> = state
            .listeners
            .iter()
            .filter_map(|addr| Some((*addr, take(*addr)?)))
            .collect();
        // Listeners no longer wanted close (the old process finishes their requests).
        for (addr, _) in pool.drain(..) {
            tracing::info!(%addr, "closing a listener the new settings drop");
        }
        let https_kept = https.is_some();
        let mut bound = |addr: SocketAddr| {
            let i = early.iter().position(|(a, _)| *a == addr)?;
            Some(early.remove(i).1)
        };
        let (early_http, early_https) = (bound(http_addr), bound(https_addr));
        let http = match http.or(early_http) {
            Some(l) => l,
            None => bind_after_handover(http_addr).await?,
        };
        let https = match https.or(early_https) {
            Some(l) => l,
            None => bind_after_handover(https_addr).await?,
        };
        let tokio_listener = |l: std::net::TcpListener| {
            l.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(l)
        };
        let private = private
            .into_iter()
            .map(|(addr, l)| Ok::<_, std::io::Error>((addr, tokio_listener(l)?)))
            .collect::<Result<Vec<_>, _>>()?;
        (
            tokio_listener(http)?,
            tokio_listener(https)?,
            Some((state, private, https_kept)),
        )
    } else {
        let http = tokio::net::TcpListener::bind(http_addr)
            .await
            .with_context(|| format!("cannot listen for the router (HTTP) on {http_addr}"))?;
        let https = tokio::net::TcpListener::bind(https_addr)
            .await
            .with_context(|| format!("cannot listen for the router (HTTPS) on {https_addr}"))?;
        (http, https, None)
    };
    let public = (
        std::os::fd::AsFd::as_fd(&http).try_clone_to_owned()?,
        std::os::fd::AsFd::as_fd(&https).try_clone_to_owned()?,
    );
    let hello = Hello {
        protocol: PROTOCOL,
        pid: std::process::id(),
        http_listen: args.http_listen,
        https_listen: args.https_listen,
        base_domain: args.base_domain.clone(),
        log_filter: args.log_filter.clone(),
        log_format: args.log_format.clone(),
        http: http.local_addr()?,
        https: https.local_addr()?,
    };
    router.set_https_port(hello.https.port());
    let (stop, _) = watch::channel(false);
    // What the predecessor served, served from the first connection on.
    let mut private = HashMap::new();
    let mut state = HandedState::default();
    if let Some((handed, listeners, https_kept)) = handed {
        // The public HTTPS port the control plane gave, unless HTTPS moved.
        if let Some(port) = handed.https_port.filter(|_| https_kept) {
            router.set_https_port(port);
        }
        if let Some(p) = &handed.private_addresses {
            router.set_private_addresses(p.clone());
        }
        if let Some(n) = &handed.notices {
            router.set_host_notices(n.clone());
        }
        if let Some(a) = &handed.answers {
            let _ = certs.challenges.serve_answers(a.clone());
        }
        if let Some(r) = &handed.routes {
            match router.set_routes(r.clone()) {
                Ok(()) => {
                    // Before the first handshake: a new base domain leaves the services'
                    // host names under the former one.
                    let (certs, former) = (certs.clone(), certs.former_domains(r));
                    tokio::task::spawn_blocking(move || certs.set_former(former)).await?;
                }
                Err(e) => tracing::warn!(error = %e, "the handed-over routes are refused"),
            }
        }
        let named = |addr: &SocketAddr| {
            handed
                .private_addresses
                .as_ref()
                .is_some_and(|p| p.contains_key(&addr.ip()))
        };
        for (addr, listener) in listeners {
            if named(&addr) {
                private.insert(addr, private_listener(&stop, &router, &tls, listener)?);
            } else {
                // Not among the private addresses: the listener of an endpoint gone
                // while no server ran, kept by a predecessor from before router
                // processes stopped those themselves. Closed, not served.
                tracing::info!(%addr, "closing a private listener whose address is no longer private");
            }
        }
        state = handed;
        state.listeners.clear();
        tracing::info!("took over the listening sockets and routes of the previous router process");
    }
    let stopped = |stop: &watch::Sender<bool>| {
        let mut rx = stop.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let http_task = tokio::spawn({
        let (router, stopped) = (router.clone(), stopped(&stop));
        async move { router.serve_http(http, stopped).await }
    });
    let https_task = tokio::spawn({
        let (router, stopped, tls) = (router.clone(), stopped(&stop), tls.clone());
        async move { router.serve_https(https, tls, stopped).await }
    });
    let socket = dir.join(SOCKET);
    let _ = std::fs::remove_file(&socket);
    let control = UnixListener::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    let handover_path = dir.join(HANDOVER_SOCKET);
    let _ = std::fs::remove_file(&handover_path);
    let handover = UnixListener::bind(&handover_path)
        .with_context(|| format!("cannot listen on {}", handover_path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
        std::fs::set_permissions(&handover_path, std::fs::Permissions::from_mode(0o600))?;
    }
    runway_store::fs::write_atomic(
        &dir.join(PID_FILE),
        std::process::id().to_string().as_bytes(),
        0o644,
    )?;
    tracing::info!(http = %hello.http, https = %hello.https, pid = hello.pid, "router process started");
    let process = Arc::new(Process {
        router,
        registry,
        certs,
        tls,
        hello,
        private: tokio::sync::Mutex::new(private),
        public: Mutex::new(Some(public)),
        state: Mutex::new(state),
        handed_over: Default::default(),
        stop,
    });
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut stopping = process.stop.subscribe();
    loop {
        tokio::select! {
            accepted = control.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(process.clone(), stream));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            accepted = handover.accept() => match accepted {
                Ok((stream, _)) => {
                    let p = process.clone();
                    let handed = tokio::task::spawn_blocking(move || {
                        let stream = stream.into_std()?;
                        stream.set_nonblocking(false)?;
                        hand_over(&p, stream)
                    })
                    .await;
                    match handed {
                        Ok(Ok(())) => {
                            tracing::info!("handed the listening sockets over to a new router process");
                            process.handed_over.store(true, Ordering::Relaxed);
                            break;
                        }
                        Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "handover failed"),
                        Err(e) => tracing::error!(error = %e, "handover failed"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, "handover socket accept failed"),
            },
            _ = &mut signal => break,
            _ = stopping.wait_for(|s| *s) => break,
        }
    }
    tracing::info!("router process stopping: finishing requests in flight");
    if !process.handed_over.load(Ordering::Relaxed) {
        let _ = std::fs::remove_file(&socket);
        let _ = std::fs::remove_file(&handover_path);
        let _ = std::fs::remove_file(dir.join(PID_FILE));
    }
    let _ = process.stop.send(true);
    // Every listener stops accepting and closes now (a successor may bind an address
    // that overlaps one it gave up); the requests in flight finish.
    lock(&process.public).take();
    let private: Vec<_> = process.private.lock().await.drain().collect();
    let mut tasks = Vec::new();
    for (_, l) in private {
        let _ = l.stop.send(true);
        drop(l.socket);
        tasks.push(l.task);
    }
    for task in tasks {
        let _ = task.await;
    }
    http_task.await??;
    https_task.await??;
    tracing::info!("router process stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Serves one control connection until it closes.
async fn connection(process: Arc<Process>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        while let Some(l) = rx.recv().await {
            if write.write_all(l.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    // Demand goes out as it changes.
    let demand = tokio::spawn({
        let (mut demand, tx) = (process.router.demand(), tx.clone());
        async move {
            loop {
                let now = Instant::now();
                let waiting = demand
                    .borrow_and_update()
                    .waiting
                    .iter()
                    .map(|(id, w)| Waiting {
                        revision_id: id.clone(),
                        service_id: w.service_id.clone(),
                        endpoints: w.endpoints,
                        waited_ms: now.saturating_duration_since(w.since).as_millis() as u64,
                    })
                    .collect();
                if tx.send(line(&Message::Demand(waiting))).is_err()
                    || demand.changed().await.is_err()
                {
                    return;
                }
            }
        }
    });
    let mut lines = BufReader::new(read).lines();
    let mut stopping = process.stop.subscribe();
    loop {
        // A stopping router process (drained, or handed over) lets its controller go.
        let text = tokio::select! {
            next = lines.next_line() => match next {
                Ok(Some(text)) => text,
                _ => break,
            },
            _ = stopping.wait_for(|s| *s) => break,
        };
        let envelope: Envelope = match serde_json::from_str(&text) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable control message");
                continue;
            }
        };
        let reply = handle(&process, envelope.request).await;
        if envelope.id != 0 {
            let _ = tx.send(line(&Message::Reply {
                id: envelope.id,
                reply,
            }));
        } else if let Reply::Error { message, .. } = reply {
            tracing::warn!(error = %message, "control request failed");
        }
    }
    demand.abort();
    drop(tx);
    let _ = writer.await;
}

fn error(message: impl ToString) -> Reply {
    Reply::Error {
        message: message.to_string(),
        in_use: false,
    }
}

async fn handle(process: &Arc<Process>, request: Request) -> Reply {
    let router = &process.router;
    match request {
        Request::Hello => Reply::Hello(process.hello.clone()),
        Request::SetRoutes(table) => match router.set_routes(table.clone()) {
            Ok(()) => {
                let former = process.certs.former_domains(&table);
                lock(&process.state).routes = Some(table);
                if process.certs.former_changed(&former) {
                    let certs = process.certs.clone();
                    let _ = tokio::task::spawn_blocking(move || certs.set_former(former)).await;
                }
                Reply::Ok
            }
            Err(e) => error(e),
        },
        Request::SetHttpsPort(port) => {
            router.set_https_port(port);
            lock(&process.state).https_port = Some(port);
            Reply::Ok
        }
        Request::SetNotices(notices) => {
            lock(&process.state).notices = Some(notices.clone());
            let names: Vec<String> = notices.keys().cloned().collect();
            router.set_host_notices(notices);
            let certs = process.certs.clone();
            let _ = tokio::task::spawn_blocking(move || certs.placeholders(names)).await;
            Reply::Ok
        }
        Request::SetPrivateAddresses(addresses) => {
            lock(&process.state).private_addresses = Some(addresses.clone());
            let stale: Vec<(SocketAddr, PrivateListener)> = process
                .private
                .lock()
                .await
                .extract_if(|a, _| !addresses.contains_key(&a.ip()))
                .collect();
            router.set_private_addresses(addresses);
            for (addr, l) in stale {
                stop_private(addr, l, "its address is no longer private");
            }
            Reply::Ok
        }
        Request::SetAnswers(answers) => {
            lock(&process.state).answers = Some(answers.clone());
            let challenges = process.certs.challenges.clone();
            match tokio::task::spawn_blocking(move || challenges.serve_answers(answers)).await {
                Ok(Ok(())) => Reply::Ok,
                Ok(Err(e)) => error(e),
                Err(e) => error(e),
            }
        }
        Request::ReloadCertificates => {
            let certs = process.certs.clone();
            match tokio::task::spawn_blocking(move || certs.reload()).await {
                Ok(Ok(())) => Reply::Ok,
                Ok(Err(e)) => error(format!("{e:#}")),
                Err(e) => error(e),
            }
        }
        Request::Listen(addr) => {
            let mut private = process.private.lock().await;
            if private.contains_key(&addr) {
                return Reply::Ok;
            }
            match tokio::net::TcpListener::bind(addr)
                .await
                .and_then(|listener| {
                    private_listener(&process.stop, router, &process.tls, listener)
                }) {
                Ok(listener) => {
                    private.insert(addr, listener);
                    tracing::info!(%addr, "private listener started");
                    Reply::Ok
                }
                Err(e) => Reply::Error {
                    in_use: e.kind() == std::io::ErrorKind::AddrInUse,
                    message: e.to_string(),
                },
            }
        }
        Request::Unlisten(addr) => {
            let removed = process.private.lock().await.remove(&addr);
            if let Some(l) = removed {
                let _ = l.stop.send(true);
                let _ = l.task.await;
                tracing::info!(%addr, "private listener stopped");
            }
            Reply::Ok
        }
        Request::Stats => Reply::Stats(router.stats()),
        Request::InstanceLoad(id) => Reply::Load(router.instance_load(&id)),
        Request::Metrics => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, &process.registry) {
                Ok(()) => Reply::Metrics(text),
                Err(e) => error(e),
            }
        }
        Request::Shutdown => {
            let _ = process.stop.send(true);
            Reply::Ok
        }
    }
}

// ---------------------------------------------------------------------------------------
// The control plane's side.

/// How to start a router process.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub data_dir: PathBuf,
    pub http_listen: SocketAddr,
    pub https_listen: SocketAddr,
    pub base_domain: String,
    pub log_filter: String,
    pub log_format: String,
}

/// Why a private listener could not start.
#[derive(Debug, Clone)]
pub struct ListenError {
    /// Another socket holds the address.
    pub in_use: bool,
    pub message: String,
}

impl std::fmt::Display for ListenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What the control plane wants the router process to serve: pushed again whole on
/// every (re)connection.
#[derive(Default)]
struct Desired {
    routes: Option<RouteTable>,
    https_port: Option<u16>,
    notices: Option<HashMap<String, String>>,
    private: Option<HashMap<IpAddr, String>>,
    answers: Option<HttpAnswers>,
    listens: BTreeSet<SocketAddr>,
    /// The current connection's outgoing lines.
    tx: Option<mpsc::UnboundedSender<String>>,
}

struct Inner {
    launch: Launch,
    /// Where the router process listens: one started again listens there too.
    bound: (SocketAddr, SocketAddr),
    desired: Mutex<Desired>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next: AtomicU64,
    demand: watch::Sender<Demand>,
}

/// The control plane's handle on the router process: stands in for [`Router`] in the
/// controller, the domain and network loops. Cheap to clone.
#[derive(Clone)]
pub struct RouterClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RouterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterClient").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RouterClient {
    /// Adopts the router process of the data directory if it runs with the same
    /// settings, else replaces it or starts one; then keeps connected to it (starting it
    /// again should it die) until `stopped` completes.
    pub async fn start(
        launch: Launch,
        stopped: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(RouterClient, Hello)> {
        let socket = launch.data_dir.join(SOCKET);
        let mut adopted = None;
        if let Ok(stream) = UnixStream::connect(&socket).await {
            let (conn, hello) = hello(stream).await?;
            let same = hello.protocol == PROTOCOL
                && hello.http_listen == launch.http_listen
                && hello.https_listen == launch.https_listen
                && hello.base_domain == launch.base_domain;
            if same && exe_replaced(hello.pid) {
                tracing::info!(
                    pid = hello.pid,
                    "the running router process's binary was replaced: a new one takes over its sockets"
                );
                drop(conn);
                adopted = Some(spawn(&launch, Some((hello.http, hello.https)), true).await?);
            } else if same {
                tracing::info!(pid = hello.pid, http = %hello.http, https = %hello.https, "adopted the running router process");
                adopted = Some((conn, hello));
            } else if hello.protocol == PROTOCOL {
                // Other addresses or another base domain: a new router process takes the
                // listening sockets it keeps (where an address is unchanged, it keeps
                // the port a port 0 was given), binds the new ones, and the old one
                // closes those dropped, finishes its requests and exits.
                tracing::info!(
                    pid = hello.pid,
                    "the running router process has other settings: a new one takes over the sockets that stay"
                );
                drop(conn);
                let keep = |wanted: SocketAddr, was: SocketAddr, bound: SocketAddr| {
                    if wanted == was { bound } else { wanted }
                };
                let bind = (
                    keep(launch.http_listen, hello.http_listen, hello.http),
                    keep(launch.https_listen, hello.https_listen, hello.https),
                );
                adopted = Some(spawn(&launch, Some(bind), true).await?);
            } else {
                tracing::warn!(
                    pid = hello.pid,
                    "the running router process speaks another protocol: replacing it"
                );
                let (_, mut write) = conn;
                write
                    .write_all(
                        line(&Envelope {
                            id: 0,
                            request: Request::Shutdown,
                        })
                        .as_bytes(),
                    )
                    .await?;
                wait_gone(&launch.data_dir).await?;
            }
        }
        let (conn, hello) = match adopted {
            Some(a) => a,
            None => spawn(&launch, None, false).await?,
        };
        let client = RouterClient {
            inner: Arc::new(Inner {
                launch,
                bound: (hello.http, hello.https),
                desired: Mutex::new(Desired::default()),
                pending: Mutex::new(HashMap::new()),
                next: AtomicU64::new(1),
                demand: watch::channel(Demand::default()).0,
            }),
        };
        tokio::spawn(client.clone().keep_connected(conn, stopped));
        Ok((client, hello))
    }

    /// Serves `stream` until it closes, then reconnects (or starts the router process
    /// again), until `stopped`.
    async fn keep_connected(
        self,
        conn: Conn,
        stopped: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        tokio::pin!(stopped);
        let mut conn = Some(conn);
        loop {
            if let Some(c) = conn.take() {
                tokio::select! {
                    _ = self.serve_connection(c) => {}
                    _ = &mut stopped => return,
                }
                tracing::warn!("lost the router process's control connection; reconnecting");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = &mut stopped => return,
            }
            let socket = self.inner.launch.data_dir.join(SOCKET);
            conn = match UnixStream::connect(&socket).await {
                Ok(s) => match hello(s).await {
                    Ok((c, _)) => Some(c),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "the router process does not answer");
                        None
                    }
                },
                Err(_) if !router_running(&self.inner.launch.data_dir) => {
                    tracing::warn!("the router process is gone: starting it again");
                    match spawn(&self.inner.launch, Some(self.inner.bound), false).await {
                        Ok((c, hello)) => {
                            tracing::info!(pid = hello.pid, "router process started again");
                            Some(c)
                        }
                        Err(e) => {
                            tracing::error!(error = %format!("{e:#}"), "cannot start the router process");
                            None
                        }
                    }
                }
                Err(_) => None,
            };
        }
    }

    /// Pushes everything wanted, then reads the router process's messages until the
    /// connection closes.
    async fn serve_connection(&self, (read, mut write): Conn) {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        {
            let mut d = lock(&self.inner.desired);
            let push = |request: Request| {
                let _ = tx.send(line(&Envelope { id: 0, request }));
            };
            if let Some(port) = d.https_port {
                push(Request::SetHttpsPort(port));
            }
            if let Some(p) = &d.private {
                push(Request::SetPrivateAddresses(p.clone()));
            }
            for addr in &d.listens {
                push(Request::Listen(*addr));
            }
            if let Some(n) = &d.notices {
                push(Request::SetNotices(n.clone()));
            }
            if let Some(a) = &d.answers {
                push(Request::SetAnswers(a.clone()));
            }
            push(Request::ReloadCertificates);
            if let Some(r) = &d.routes {
                push(Request::SetRoutes(r.clone()));
            }
            d.tx = Some(tx);
        }
        let writer = async move {
            while let Some(l) = rx.recv().await {
                if write.write_all(l.as_bytes()).await.is_err() {
                    break;
                }
            }
        };
        let reader = async {
            let mut lines = read.lines();
            while let Ok(Some(text)) = lines.next_line().await {
                match serde_json::from_str::<Message>(&text) {
                    Ok(Message::Reply { id, reply }) => {
                        if let Some(waiter) = lock(&self.inner.pending).remove(&id) {
                            let _ = waiter.send(reply);
                        }
                    }
                    Ok(Message::Demand(waiting)) => self.demand(waiting),
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable message from the router process")
                    }
                }
            }
        };
        tokio::select! {
            _ = writer => {}
            _ = reader => {}
        }
        lock(&self.inner.desired).tx = None;
        lock(&self.inner.pending).clear();
    }

    fn demand(&self, waiting: Vec<Waiting>) {
        let now = Instant::now();
        let waiting: BTreeMap<String, WaitingRevision> = waiting
            .into_iter()
            .map(|w| {
                (
                    w.revision_id,
                    WaitingRevision {
                        service_id: w.service_id,
                        endpoints: w.endpoints,
                        since: now
                            .checked_sub(Duration::from_millis(w.waited_ms))
                            .unwrap_or(now),
                    },
                )
            })
            .collect();
        self.inner.demand.send_if_modified(|d| {
            let same = d.waiting.len() == waiting.len()
                && d.waiting.iter().zip(&waiting).all(|((a, x), (b, y))| {
                    a == b && x.service_id == y.service_id && x.endpoints == y.endpoints
                });
            if !same {
                d.waiting = waiting;
            }
            !same
        });
    }

    /// Records `change` in what is wanted and sends `request` if connected.
    fn push(&self, change: impl FnOnce(&mut Desired), request: Request) {
        let mut d = lock(&self.inner.desired);
        change(&mut d);
        if let Some(tx) = &d.tx {
            let _ = tx.send(line(&Envelope { id: 0, request }));
        }
    }

    /// Asks the router process and waits for its answer; `None` if it cannot answer.
    async fn call(&self, request: Request) -> Option<Reply> {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        {
            let d = lock(&self.inner.desired);
            let tx = d.tx.as_ref()?;
            lock(&self.inner.pending).insert(id, reply);
            if tx.send(line(&Envelope { id, request })).is_err() {
                lock(&self.inner.pending).remove(&id);
                return None;
            }
        }
        let answer = tokio::time::timeout(CALL_TIMEOUT, answer).await;
        lock(&self.inner.pending).remove(&id);
        answer.ok()?.ok()
    }

    /// The public HTTPS port, for HTTP to HTTPS redirects.
    pub fn set_https_port(&self, port: u16) {
        self.push(|d| d.https_port = Some(port), Request::SetHttpsPort(port));
    }

    /// See [`Router::set_host_notices`].
    pub fn set_host_notices(&self, notices: HashMap<String, String>) {
        let copy = notices.clone();
        self.push(|d| d.notices = Some(copy), Request::SetNotices(notices));
    }

    /// Names the private addresses (see [`Router::set_private_addresses`]); the router
    /// process stops its private listeners on any address left out.
    pub fn set_private_addresses(&self, addresses: HashMap<IpAddr, String>) {
        let copy = addresses.clone();
        self.push(
            |d| d.private = Some(copy),
            Request::SetPrivateAddresses(addresses),
        );
    }

    /// Has the router process read the certificate store again (if a file changed).
    pub fn reload_certificates(&self) {
        self.push(|_| {}, Request::ReloadCertificates);
    }

    /// Answers the HTTP-01 and TLS-ALPN-01 challenges of `challenges` in the router
    /// process, following them as they change, until `stopped`.
    pub fn follow_challenges(
        &self,
        challenges: Arc<Challenges>,
        stopped: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let mut changes = challenges.subscribe();
        tokio::spawn(async move {
            tokio::pin!(stopped);
            loop {
                let answers = challenges.answers();
                let copy = answers.clone();
                this.push(|d| d.answers = Some(copy), Request::SetAnswers(answers));
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = &mut stopped => return,
                }
            }
        })
    }

    /// Serves HTTPS (private services) on `addr` in the router process.
    pub async fn listen(&self, addr: SocketAddr) -> Result<(), ListenError> {
        match self.call(Request::Listen(addr)).await {
            Some(Reply::Ok) => {
                lock(&self.inner.desired).listens.insert(addr);
                Ok(())
            }
            Some(Reply::Error { message, in_use }) => Err(ListenError { in_use, message }),
            _ => Err(ListenError {
                in_use: false,
                message: "the router process does not answer".into(),
            }),
        }
    }

    /// Stops serving `addr` (gracefully).
    pub async fn unlisten(&self, addr: SocketAddr) {
        lock(&self.inner.desired).listens.remove(&addr);
        let _ = self.call(Request::Unlisten(addr)).await;
    }

    /// The router process's metrics (OpenMetrics text), if it answers.
    pub async fn metrics(&self) -> Option<String> {
        match self.call(Request::Metrics).await? {
            Reply::Metrics(text) => Some(text),
            _ => None,
        }
    }
}

impl RouterPort for RouterClient {
    fn set_routes(&self, routes: RouteTable) -> Result<(), RoutesError> {
        routes.validate()?;
        let copy = routes.clone();
        self.push(|d| d.routes = Some(copy), Request::SetRoutes(routes));
        Ok(())
    }

    fn stats(&self) -> BoxFuture<'_, Option<Vec<RevisionStats>>> {
        Box::pin(async move {
            match self.call(Request::Stats).await {
                Some(Reply::Stats(stats)) => Some(stats),
                _ => None,
            }
        })
    }

    fn instance_load<'a>(&'a self, instance_id: &'a str) -> BoxFuture<'a, InstanceLoad> {
        Box::pin(async move {
            match self
                .call(Request::InstanceLoad(instance_id.to_string()))
                .await
            {
                Some(Reply::Load(load)) => load,
                // Unknown: not idle.
                _ => InstanceLoad {
                    routed: true,
                    ..Default::default()
                },
            }
        })
    }

    fn demand(&self) -> watch::Receiver<Demand> {
        self.inner.demand.subscribe()
    }
}

/// Says hello on a fresh connection.
async fn hello(stream: UnixStream) -> Result<(Conn, Hello)> {
    let (read, mut write) = stream.into_split();
    write
        .write_all(
            line(&Envelope {
                id: u64::MAX,
                request: Request::Hello,
            })
            .as_bytes(),
        )
        .await?;
    let mut reader = BufReader::new(read);
    let answer = tokio::time::timeout(CALL_TIMEOUT, async {
        loop {
            let mut text = String::new();
            if reader.read_line(&mut text).await? == 0 {
                bail!("the router process closed its socket");
            }
            if let Ok(Message::Reply {
                id: u64::MAX,
                reply: Reply::Hello(hello),
            }) = serde_json::from_str(&text)
            {
                return Ok(hello);
            }
        }
    })
    .await
    .context("the router process does not answer")??;
    Ok(((reader, write), answer))
}

/// Whether a router process holds the data directory's router lock.
fn router_running(dir: &Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
    else {
        return false;
    };
    file.try_lock().is_err()
}

/// Waits until no router process serves the data directory.
async fn wait_gone(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    while router_running(dir) {
        if Instant::now() > deadline {
            bail!("the old router process does not stop");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Starts a router process (in its own process group: it outlives the server) and
/// connects to it.
async fn spawn(
    launch: &Launch,
    bind: Option<(SocketAddr, SocketAddr)>,
    take_over: bool,
) -> Result<(Conn, Hello)> {
    let log_path = launch.data_dir.join(LOG_FILE);
    if let Some(parent) = log_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let socket = launch.data_dir.join(SOCKET);
    let mut child = {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(&launch.program)
            .arg("router-process")
            .arg("--data-dir")
            .arg(&launch.data_dir)
            .args(["--http-listen", &launch.http_listen.to_string()])
            .args(["--https-listen", &launch.https_listen.to_string()])
            .args(bind.iter().flat_map(|(http, https)| {
                [
                    "--http-bind".to_string(),
                    http.to_string(),
                    "--https-bind".to_string(),
                    https.to_string(),
                ]
            }))
            .args(["--base-domain", &launch.base_domain])
            .args(take_over.then_some("--take-over"))
            .args(["--log-filter", &launch.log_filter])
            .args(["--log-format", &launch.log_format])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("cannot start the router process")?
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!(
                "the router process exited with {status}: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if let Ok(stream) = UnixStream::connect(&socket).await
            && let Ok((conn, hello)) = hello(stream).await
            && hello.pid == child.id()
        {
            // Reap it when it exits while we run; it is re-parented when we exit first.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
            return Ok((conn, hello));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the router process did not start within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether process `pid` runs a binary that has since been replaced (an upgrade).
fn exe_replaced(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|p| p.to_string_lossy().ends_with(" (deleted)"))
}

/// Replaces the data directory's router process with one of `program` that takes over
/// its listening sockets and state, while the old one finishes its requests in flight:
/// no connection is refused. Returns the old and the new process's ids.
pub async fn restart(dir: &Path, program: &Path) -> Result<(u32, u32)> {
    let stream = UnixStream::connect(dir.join(SOCKET))
        .await
        .with_context(|| format!("no router process serves {}", dir.display()))?;
    let (_, old) = hello(stream).await?;
    let launch = Launch {
        program: program.to_path_buf(),
        data_dir: dir.to_path_buf(),
        http_listen: old.http_listen,
        https_listen: old.https_listen,
        base_domain: old.base_domain.clone(),
        log_filter: Some(old.log_filter.clone())
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| "info".into()),
        log_format: Some(old.log_format.clone())
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| "human".into()),
    };
    let (_, new) = spawn(&launch, Some((old.http, old.https)), true).await?;
    Ok((old.pid, new.pid))
}

/// Stops the data directory's router process, if one runs (for `runway purge`): it
/// finishes the requests in flight first, for up to 30 s.
pub fn stop(dir: &Path) -> Result<bool> {
    if !router_running(dir) {
        return Ok(false);
    }
    let pid: i32 = std::fs::read_to_string(dir.join(PID_FILE))
        .context("cannot read the router process's pid")?
        .trim()
        .parse()
        .context("the router pid file is corrupt")?;
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    // Requests in flight get half a minute; then it is killed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut killed = false;
    while router_running(dir) {
        if Instant::now() > deadline && !killed {
            tracing::warn!(pid, "the router process does not stop: killing it");
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            killed = true;
        }
        if Instant::now() > deadline + Duration::from_secs(10) {
            bail!("the router process (pid {pid}) does not stop");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(true)
}
