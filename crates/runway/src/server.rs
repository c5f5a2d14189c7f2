//! `runway server`: configuration (flags over a TOML file over defaults), the data
//! directory, the admin key, the listeners, and graceful shutdown.

use anyhow::{Context, Result, bail};
use runway_api::{Api, ApiConfig};
use runway_build::{BuildJobs, Builder, BuilderConfig};
use runway_certs::CertStore;
use runway_control::{ControlConfig, Controller};
use runway_registry::{Registry, RegistryConfig};
use runway_router::{AccessLogConfig, Router, RouterConfig};
use runway_runtime::{LocalRuntime, NetConfig, Runtime, RuntimeConfig, ShimCommand};
use runway_secrets::MasterKey;
use runway_store::{SqliteStore, Store};
use runway_telemetry::LogFormat;
use serde::{Deserialize, Serialize};
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/runway";
/// The profile the credentials file holds the admin key under.
pub const PROFILE: &str = "runway";

/// Options of `runway server`. Each may also be set in the TOML file given with
/// `--config`, under the same name (`api-listen = "127.0.0.1:8090"`); flags win.
#[derive(Debug, Default, clap::Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServerArgs {
    /// A TOML file with any of these options.
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Where runway keeps its state [default: /var/lib/runway].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The App Runner API's address [default: 127.0.0.1:8090].
    #[arg(long)]
    api_listen: Option<SocketAddr>,
    /// The image registry's address [default: 127.0.0.1:5000].
    #[arg(long)]
    registry_listen: Option<SocketAddr>,
    /// The router's plain HTTP address [default: 0.0.0.0:8080].
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// The router's HTTPS address [default: 0.0.0.0:8443].
    #[arg(long)]
    https_listen: Option<SocketAddr>,
    /// The Prometheus metrics address [default: 127.0.0.1:9090].
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// The OCI runtime program that runs instances: runc, crun, youki, runsc or a path
    /// [default: runc].
    #[arg(long)]
    oci_runtime: Option<PathBuf>,
    /// The bridge instances are attached to [default: runway0].
    #[arg(long)]
    bridge: Option<String>,
    /// The private IPv4 subnet instances get addresses from [default: 10.201.0.0/16].
    #[arg(long)]
    subnet: Option<String>,
    /// An IPv6 /64 (e.g. a unique local fdXX:XXXX:XXXX:1::/64) that gives instances of
    /// DUAL_STACK services an IPv6 address and a way out over IPv6 (masqueraded); this
    /// turns on the host's IPv6 forwarding [default: none, instances are IPv4 only].
    #[arg(long, value_name = "PREFIX/64")]
    ipv6_subnet: Option<String>,
    /// An address of this host (routed to it, on its uplink) that a VPC connector may
    /// take as its services' static outbound address with the tag
    /// runway:egress-address; repeat for more. In the config file: egress-addresses = [...].
    #[arg(long = "egress-address", value_name = "IPV4")]
    #[serde(default, rename = "egress-addresses")]
    egress_address: Vec<std::net::Ipv4Addr>,
    /// The domain service URLs are made under [default: runway.localhost].
    #[arg(long)]
    base_domain: Option<String>,
    /// The region in ARNs and SigV4 scopes [default: us-east-1].
    #[arg(long)]
    region: Option<String>,
    /// The 12-digit account id in ARNs [default: 000000000000].
    #[arg(long)]
    account_id: Option<String>,
    /// Seconds a new revision may take to become healthy before it is rolled back
    /// [default: 300].
    #[arg(long)]
    deploy_timeout: Option<u64>,
    /// Seconds a revision or instance leaving the route table may finish its requests
    /// (WebSockets included) before it is stopped [default: 30].
    #[arg(long)]
    drain_timeout: Option<u64>,
    /// The autoscaler's stable window in seconds [default: 60].
    #[arg(long)]
    autoscale_stable_window: Option<u64>,
    /// The autoscaler's panic window in seconds [default: 6].
    #[arg(long)]
    autoscale_panic_window: Option<u64>,
    /// Seconds an idle revision with MinSize 0 keeps one instance [default: 30].
    #[arg(long)]
    scale_to_zero_grace: Option<u64>,
    /// A managed runtime's base image, RUNTIME=REFERENCE (`python3=runtimes/python3:latest`;
    /// a reference without a registry host is in runway's registry, see `runway image
    /// import-rootfs`); repeat for more. In the config file: a `[runtime-images]` table.
    #[arg(long = "runtime-image", value_name = "RUNTIME=REFERENCE", value_parser = runtime_image)]
    #[serde(
        default,
        rename = "runtime-images",
        deserialize_with = "runtime_images_table"
    )]
    runtime_image: Vec<(String, String)>,
    /// Seconds a source build's commands may run [default: 1200].
    #[arg(long)]
    build_timeout: Option<u64>,
    /// A PEM bundle of certificate authorities builds trust besides the host's (which
    /// they always trust, with the server's HTTPS_PROXY, HTTP_PROXY and NO_PROXY).
    #[arg(long, value_name = "FILE")]
    build_ca_bundle: Option<PathBuf>,
    /// Let the instances of images built from source trust the same certificate
    /// authorities as their build (the host's and --build-ca-bundle's).
    #[arg(long)]
    #[serde(default)]
    build_ca_for_instances: bool,
    /// Seconds between polls of auto-deploying services' git branches, for hosts that
    /// send no push webhooks; 0: do not poll [default: 60].
    #[arg(long)]
    source_poll_interval: Option<u64>,
    /// Serve the API, registry and router but deploy nothing: operations stay PENDING.
    /// For a standby control plane, and for tests of the API alone.
    #[arg(long)]
    #[serde(default)]
    no_controller: bool,
    /// Where runway's authoritative DNS server answers (UDP and TCP) for the base domain
    /// and the ACME validation zone; off unless set (`0.0.0.0:53` for a delegated
    /// domain).
    #[arg(long)]
    dns_listen: Option<SocketAddr>,
    /// The router's public address: DNS answers with it and custom domains point at it;
    /// repeat for IPv4 and IPv6 [default: the HTTPS address, unless it is 0.0.0.0].
    #[arg(long = "public-address", value_name = "IP")]
    #[serde(default, rename = "public-address")]
    public_address: Vec<IpAddr>,
    /// UDP DNS answers per second to one client network (/24, /56) [default: 50].
    #[arg(long)]
    dns_rate_limit: Option<u32>,
    /// The ACME CA's directory URL [default: Let's Encrypt's].
    #[arg(long)]
    acme_directory: Option<String>,
    /// A contact email for the ACME account.
    #[arg(long)]
    acme_email: Option<String>,
    /// A PEM file with the root certificate the ACME directory's HTTPS chains to,
    /// trusted instead of the system's roots (a private or test CA).
    #[arg(long)]
    acme_ca_root: Option<PathBuf>,
    /// The ACME challenge types to use, in order of preference
    /// [default: dns-01,http-01,tls-alpn-01].
    #[arg(long)]
    acme_challenges: Option<String>,
    /// Seconds between DNS checks of a custom domain waiting for its records
    /// [default: 30].
    #[arg(long)]
    acme_check_interval: Option<u64>,
    /// The recursive DNS resolver (IP:PORT) those checks ask [default: the system's].
    #[arg(long)]
    dns_resolver: Option<SocketAddr>,
    /// Get the base domain's wildcard certificate from the ACME CA by DNS-01 instead of
    /// the local CA (needs --dns-listen, and the base domain delegated to it).
    #[arg(long)]
    #[serde(default)]
    acme_base_domain: bool,
    /// Log format: human or json [default: human].
    #[arg(long)]
    log_format: Option<String>,
    /// Log filter, e.g. `info` or `info,runway_api=debug` [default: info].
    #[arg(long)]
    log_filter: Option<String>,
}

fn runtime_image(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected RUNTIME=REFERENCE, got {s:?}"))
}

/// `[runtime-images]` in the config file: `python3 = "runtimes/python3:latest"`.
fn runtime_images_table<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, String)>, D::Error> {
    let table: std::collections::BTreeMap<String, String> =
        std::collections::BTreeMap::deserialize(d)?;
    Ok(table.into_iter().collect())
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub api_listen: SocketAddr,
    pub registry_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub https_listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub oci_runtime: PathBuf,
    pub net: NetConfig,
    pub base_domain: String,
    pub region: String,
    pub account_id: String,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub controller: bool,
    pub control: ControlConfig,
    /// Base image per managed runtime, over the defaults.
    pub runtime_images: std::collections::HashMap<String, String>,
    pub build_timeout: std::time::Duration,
    /// Certificate authorities builds trust besides the host's.
    pub build_ca_bundle: Option<PathBuf>,
    /// Whether built images' instances trust them too.
    pub build_ca_for_instances: bool,
    /// Between polls of source branches; zero: no polling.
    pub source_poll_interval: std::time::Duration,
    /// Custom domains, certificates and DNS.
    pub domains: crate::domains::DomainsConfig,
    /// Addresses VPC connectors may take as their static outbound address.
    pub egress_addresses: Vec<std::net::Ipv4Addr>,
}

fn addr(s: &str) -> SocketAddr {
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

impl ServerArgs {
    /// Flags, then the config file, then defaults.
    fn resolve(self) -> Result<Config> {
        let file = match &self.config {
            Some(path) => {
                let text = fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str::<ServerArgs>(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?
            }
            None => ServerArgs::default(),
        };
        let config = Config {
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            api_listen: self
                .api_listen
                .or(file.api_listen)
                .unwrap_or_else(|| addr("127.0.0.1:8090")),
            registry_listen: self
                .registry_listen
                .or(file.registry_listen)
                .unwrap_or_else(|| addr("127.0.0.1:5000")),
            http_listen: self
                .http_listen
                .or(file.http_listen)
                .unwrap_or_else(|| addr("0.0.0.0:8080")),
            https_listen: self
                .https_listen
                .or(file.https_listen)
                .unwrap_or_else(|| addr("0.0.0.0:8443")),
            metrics_listen: self
                .metrics_listen
                .or(file.metrics_listen)
                .unwrap_or_else(|| addr("127.0.0.1:9090")),
            oci_runtime: self
                .oci_runtime
                .or(file.oci_runtime)
                .unwrap_or_else(|| "runc".into()),
            net: NetConfig {
                bridge: self
                    .bridge
                    .or(file.bridge)
                    .unwrap_or_else(|| "runway0".into()),
                subnet: self
                    .subnet
                    .or(file.subnet)
                    .unwrap_or_else(|| "10.201.0.0/16".into())
                    .parse()
                    .map_err(|e| anyhow::anyhow!("subnet: {e}"))?,
                ipv6: self
                    .ipv6_subnet
                    .or(file.ipv6_subnet)
                    .map(|s| s.parse())
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("ipv6-subnet: {e}"))?,
            },
            base_domain: self
                .base_domain
                .or(file.base_domain)
                .unwrap_or_else(|| "runway.localhost".into()),
            region: self
                .region
                .or(file.region)
                .unwrap_or_else(|| "us-east-1".into()),
            account_id: self
                .account_id
                .or(file.account_id)
                .unwrap_or_else(|| "000000000000".into()),
            log_format: self
                .log_format
                .or(file.log_format)
                .map(|f| f.parse())
                .transpose()
                .map_err(anyhow::Error::msg)?
                .unwrap_or_default(),
            log_filter: self
                .log_filter
                .or(file.log_filter)
                .unwrap_or_else(|| "info".into()),
            controller: !(self.no_controller || file.no_controller),
            runtime_images: file
                .runtime_image
                .into_iter()
                .chain(self.runtime_image)
                .collect(),
            build_timeout: std::time::Duration::from_secs(
                self.build_timeout.or(file.build_timeout).unwrap_or(1200),
            ),
            build_ca_bundle: self.build_ca_bundle.or(file.build_ca_bundle),
            build_ca_for_instances: self.build_ca_for_instances || file.build_ca_for_instances,
            egress_addresses: file
                .egress_address
                .into_iter()
                .chain(self.egress_address)
                .collect(),
            source_poll_interval: std::time::Duration::from_secs(
                self.source_poll_interval
                    .or(file.source_poll_interval)
                    .unwrap_or(60),
            ),
            domains: crate::domains::DomainsConfig::resolve(
                crate::domains::DomainsArgs {
                    dns_listen: self.dns_listen.or(file.dns_listen),
                    public_addresses: if self.public_address.is_empty() {
                        file.public_address
                    } else {
                        self.public_address
                    },
                    dns_rate_limit: self.dns_rate_limit.or(file.dns_rate_limit),
                    acme_directory: self.acme_directory.or(file.acme_directory),
                    acme_email: self.acme_email.or(file.acme_email),
                    acme_ca_root: self.acme_ca_root.or(file.acme_ca_root),
                    acme_challenges: self.acme_challenges.or(file.acme_challenges),
                    acme_check_interval: self.acme_check_interval.or(file.acme_check_interval),
                    dns_resolver: self.dns_resolver.or(file.dns_resolver),
                    acme_base_domain: self.acme_base_domain || file.acme_base_domain,
                },
                self.https_listen.or(file.https_listen),
            )?,
            control: {
                let secs = |flag: Option<u64>, file: Option<u64>, default: std::time::Duration| {
                    flag.or(file)
                        .map_or(default, std::time::Duration::from_secs)
                };
                let d = ControlConfig::default();
                ControlConfig {
                    deploy_timeout: secs(
                        self.deploy_timeout,
                        file.deploy_timeout,
                        d.deploy_timeout,
                    ),
                    drain_timeout: secs(self.drain_timeout, file.drain_timeout, d.drain_timeout),
                    scaler: runway_control::autoscaler::ScalerConfig {
                        stable_window: secs(
                            self.autoscale_stable_window,
                            file.autoscale_stable_window,
                            d.scaler.stable_window,
                        ),
                        panic_window: secs(
                            self.autoscale_panic_window,
                            file.autoscale_panic_window,
                            d.scaler.panic_window,
                        ),
                        scale_to_zero_grace: secs(
                            self.scale_to_zero_grace,
                            file.scale_to_zero_grace,
                            d.scaler.scale_to_zero_grace,
                        ),
                        ..d.scaler.clone()
                    },
                    ..d
                }
            },
        };
        config.check()?;
        Ok(config)
    }
}

impl Config {
    fn check(&self) -> Result<()> {
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            bail!("account-id must be 12 digits, got {:?}", self.account_id);
        }
        let region_ok = !self.region.is_empty()
            && self.region.len() <= 63
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            bail!(
                "region must be lowercase letters, digits and '-', got {:?}",
                self.region
            );
        }
        let domain_ok = !self.base_domain.is_empty()
            && self.base_domain.len() <= 200
            && self.base_domain.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if !domain_ok {
            bail!(
                "base-domain must be a lowercase DNS name, got {:?}",
                self.base_domain
            );
        }
        Ok(())
    }
}

/// What `DATA_DIR/endpoints.json` holds: where each running part listens.
#[derive(Debug, Serialize, Deserialize)]
pub struct Endpoints {
    /// The App Runner API's URL.
    pub api: String,
    /// The image registry's URL.
    pub registry: String,
    /// The router's plain-HTTP URL.
    pub http: String,
    /// The router's HTTPS URL.
    pub https: String,
    /// The certificate authority that signs the router's certificates (trust it, or pass
    /// it to `curl --cacert`).
    pub ca: PathBuf,
    /// The Prometheus metrics URL.
    pub metrics: String,
    /// The region to sign API requests for.
    pub region: String,
    /// runway's DNS server (UDP and TCP), when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
}

pub fn run(args: ServerArgs) -> Result<()> {
    let config = args.resolve()?;
    // One TLS crypto provider for the whole process (DESIGN.md).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    runway_telemetry::init_logging(config.log_format, &config.log_filter)
        .map_err(anyhow::Error::msg)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(config))
}

/// `runway purge`: stops every instance of the data directory and removes runway's
/// network, mounts and containers from the host (the data itself stays). For
/// uninstalling, and for benchmarks and tests that must leave the host clean.
pub fn purge(args: ServerArgs) -> Result<()> {
    let config = args.resolve()?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let runtime = runtime_config(&config)?;
    runway_runtime::purge(&runtime).context("cannot remove runway's instances and network")?;
    println!(
        "Stopped every instance of {} and removed bridge {}.",
        config.data_dir.display(),
        config.net.bridge
    );
    Ok(())
}

fn runtime_config(config: &Config) -> Result<RuntimeConfig> {
    let mut runtime = RuntimeConfig::new(
        config.data_dir.join("runtime"),
        ShimCommand::runway(&std::env::current_exe().context("cannot find the runway binary")?),
    );
    runtime.net = config.net.clone();
    runtime.oci_runtime = config.oci_runtime.clone();
    Ok(runtime)
}

/// Takes the data directory's lock, so two servers never share one directory.
fn lock_data_dir(dir: &Path) -> Result<fs::File> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let path = dir.join("runway.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if file.try_lock().is_err() {
        bail!(
            "another runway server is using the data directory {}",
            dir.display()
        );
    }
    Ok(file)
}

/// Creates the admin access key on first start and saves it in DATA_DIR/credentials.
/// The file is written before the key is committed, so a crash in between leaves no
/// key without a file: the next start simply makes a new one.
fn ensure_admin_key(store: &dyn Store, master: &MasterKey, dir: &Path) -> Result<Option<PathBuf>> {
    let mut tx = store.begin()?;
    if runway_secrets::any_access_key(&*tx)? {
        return Ok(None);
    }
    let (id, secret) = runway_secrets::create_access_key(&mut *tx, master, "admin")?;
    let path = dir.join("credentials");
    let text = format!(
        "[{PROFILE}]\naws_access_key_id = {id}\naws_secret_access_key = {}\n",
        secret.expose()
    );
    runway_store::fs::write_atomic(&path, text.as_bytes(), 0o600)?;
    tx.commit()?;
    Ok(Some(path))
}

async fn bind(what: &str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for the {what} on {addr}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

async fn serve(config: Config) -> Result<()> {
    let dir = &config.data_dir;
    let _lock = lock_data_dir(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))?;
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.join("state.db")).context("cannot open the state store")?);
    let master = Arc::new(MasterKey::load_or_create(&dir.join("master.key"))?);
    let new_credentials = ensure_admin_key(&*store, &master, dir)?;

    let mut metrics = runway_telemetry::Registry::default();
    let registry = Registry::open(
        RegistryConfig::new(dir.join("registry")),
        store.clone(),
        master.clone(),
        &mut metrics,
    )
    .context("cannot open the image registry")?;
    let runtime_config = runtime_config(&config)?;
    let images = Arc::new(runway_build::RegistryImages {
        registry: registry.clone(),
        handle: tokio::runtime::Handle::current(),
    });
    // Instances that run on are adopted, not restarted: the data plane outlives us.
    let runtime = LocalRuntime::open(runtime_config, store.clone(), images, &mut metrics)
        .await
        .context("cannot start the instance runtime (runway server runs as root)")?;
    let certs = {
        let (dir, master, domain) = (
            dir.join("certs"),
            master.clone(),
            config.base_domain.clone(),
        );
        tokio::task::spawn_blocking(move || CertStore::open(&dir, master, &domain))
            .await?
            .context("cannot prepare the TLS certificates")?
    };
    let router = Router::new(
        RouterConfig {
            access_log: Some(AccessLogConfig::new(dir.join("logs").join("access"))),
            ..Default::default()
        },
        &mut metrics,
    )
    .context("cannot start the router")?;
    let (api_listener, api_addr) = bind("API", config.api_listen).await?;
    let (registry_listener, registry_addr) = bind("registry", config.registry_listen).await?;
    let (http_listener, http_addr) = bind("router (HTTP)", config.http_listen).await?;
    let (https_listener, https_addr) = bind("router (HTTPS)", config.https_listen).await?;
    let (metrics_listener, metrics_addr) = bind("metrics", config.metrics_listen).await?;
    router.set_https_port(https_addr.port());
    let builder = {
        let mut build = BuilderConfig::new(dir.join("build"), dir.join("build-cache"));
        build.runtime_images = config.runtime_images.clone();
        build.own_registry_hosts = registry_hosts(registry_addr);
        build.build_timeout = config.build_timeout;
        build.trust = runway_build::BuildTrust::from_host(
            config.build_ca_bundle.clone(),
            config.build_ca_for_instances,
            std::env::vars(),
        );
        Builder::new(
            registry.clone(),
            Arc::new(runtime.clone()) as Arc<dyn BuildJobs>,
            build,
        )
        .await
        .context("cannot prepare source builds")?
    };
    let controller = Controller::new(
        store.clone(),
        Arc::new(runtime.clone()) as Arc<dyn Runtime>,
        router.clone(),
        Arc::new(crate::adapters::RegistryResolver {
            registry: registry.clone(),
            hosts: registry_hosts(registry_addr),
            builder: builder.clone(),
            data_dir: dir.clone(),
            store: store.clone(),
            master: master.clone(),
        }),
        config.control.clone(),
    );
    let networks_wake = Arc::new(tokio::sync::Notify::new());
    let api = Api::new(
        store.clone(),
        master.clone(),
        ApiConfig {
            region: config.region.clone(),
            account_id: config.account_id.clone(),
            base_domain: config.base_domain.clone(),
            build_logs: Some(dir.join("builds")),
            egress_addresses: config.egress_addresses.clone(),
        },
        Some(Arc::new(crate::adapters::RuntimeInstances(runtime.clone()))),
        &mut metrics,
    )?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let domains = crate::domains::start(
        &config,
        crate::domains::Parts {
            store: store.clone(),
            master: master.clone(),
            certs: certs.clone(),
            router: router.clone(),
            controller: controller.clone(),
        },
        &mut metrics,
        stopped.clone(),
    )
    .await?;
    let api = api.on_change({
        let (controller, domains, networks) =
            (controller.clone(), domains.clone(), networks_wake.clone());
        move || {
            controller.wake();
            domains.wake();
            networks.notify_one();
        }
    });
    let api = {
        // Runtimes set with `runway runtimes set` win over the flags and the file.
        let configured = runway_build::RuntimeImages::new(&config.runtime_images)
            .map_err(anyhow::Error::msg)?
            .all()
            .map(|(r, s)| (r, s.to_string()))
            .collect();
        let catalog = crate::runtime_catalog::Catalog {
            builder: builder.clone(),
            registry: registry.clone(),
            hosts: registry_hosts(registry_addr),
            configured,
            set: Default::default(),
        };
        for (runtime, reference) in api.stored_runtime_images()? {
            if let Err(e) = runway_api::RuntimeCatalog::apply(&catalog, &runtime, Some(&reference))
            {
                tracing::warn!(%runtime, error = %e, "ignoring a stored runtime image");
            }
        }
        api.with_runtimes(Arc::new(catalog))
    };
    let metrics = Arc::new(metrics);
    deploy_on_push(&registry, &api, registry_addr);
    // Serve the last known routes at once, before the controller's loops run.
    controller
        .publish_routes()
        .await
        .context("cannot read the routes")?;
    let endpoints = Endpoints {
        api: format!("http://{api_addr}"),
        registry: format!("http://{registry_addr}"),
        http: format!("http://{http_addr}"),
        https: format!("https://{https_addr}"),
        ca: certs.ca_path(),
        metrics: format!("http://{metrics_addr}/metrics"),
        region: config.region.clone(),
        dns: domains.dns_addr().map(|a| a.to_string()),
    };
    runway_store::fs::write_atomic(
        &dir.join("endpoints.json"),
        serde_json::to_string_pretty(&endpoints)?.as_bytes(),
        0o644,
    )?;

    let credentials = dir.join("credentials");
    println!("runway is running (data in {})", dir.display());
    println!("  App Runner API  {}", endpoints.api);
    println!("  registry        {}", endpoints.registry);
    println!(
        "  apps            {} and {}",
        endpoints.https, endpoints.http
    );
    println!(
        "  CA certificate  {} (trust it, or curl --cacert it)",
        endpoints.ca.display()
    );
    println!("  metrics         {}", endpoints.metrics);
    if let Some(dns) = &endpoints.dns {
        println!("  DNS             {dns} (UDP and TCP)");
    }
    if let Some(path) = &new_credentials {
        println!(
            "Created the admin access key in {} (profile {PROFILE}).",
            path.display()
        );
    }
    println!("Use it with the AWS CLI:");
    println!(
        "  AWS_SHARED_CREDENTIALS_FILE={} AWS_PROFILE={PROFILE} aws apprunner list-services --endpoint-url {} --region {}",
        credentials.display(),
        endpoints.api,
        config.region
    );
    tracing::info!(api = %api_addr, registry = %registry_addr, metrics = %metrics_addr, data_dir = %dir.display(), "runway started");

    let sources = crate::sources::Sources {
        api: api.clone(),
        store: store.clone(),
        master: master.clone(),
        builder: builder.clone(),
    };
    let poll_task = (!config.source_poll_interval.is_zero()).then(|| {
        tokio::spawn(crate::sources::poll(
            sources.clone(),
            config.source_poll_interval,
            stopped(),
        ))
    });
    let api_task = tokio::spawn({
        let router = crate::sources::webhook_router(sources).merge(api.router());
        let stopped = stopped();
        async move {
            axum::serve(api_listener, router)
                .with_graceful_shutdown(stopped)
                .await
        }
    });
    let registry_task = tokio::spawn({
        let router = registry.router();
        let stopped = stopped();
        async move {
            axum::serve(registry_listener, router)
                .with_graceful_shutdown(stopped)
                .await
        }
    });
    let gc_task = registry.spawn_gc(REGISTRY_GC_INTERVAL, stopped());
    let http_task = tokio::spawn({
        let (router, stopped) = (router.clone(), stopped());
        async move { router.serve_http(http_listener, stopped).await }
    });
    let tls = certs
        .server_config()
        .context("cannot build the TLS configuration")?;
    let https_task = tokio::spawn({
        let (router, stopped, tls) = (router.clone(), stopped(), tls.clone());
        async move { router.serve_https(https_listener, tls, stopped).await }
    });
    let networks_task = config.controller.then(|| {
        let networks = crate::networks::Networks {
            user: Arc::new(runway_net::UserNetworks::new(
                config.net.clone(),
                store.clone(),
            )),
            router: router.clone(),
            controller: controller.clone(),
            store: store.clone(),
            tls: tls.clone(),
            wake: networks_wake.clone(),
            public_https: https_addr,
        };
        tokio::spawn(networks.run(stopped()))
    });
    let controller_task = tokio::spawn({
        let (controller, stopped, enabled) = (controller.clone(), stopped(), config.controller);
        async move {
            if enabled {
                controller.run(stopped).await
            } else {
                tracing::warn!("the controller is off (--no-controller): nothing will be deployed");
                stopped.await
            }
        }
    });
    let metrics_task = tokio::spawn(runway_telemetry::serve_metrics(
        metrics_listener,
        metrics,
        stopped(),
    ));

    shutdown_signal().await?;
    tracing::info!("shutting down: finishing requests in flight");
    let _ = stop_tx.send(true);
    api_task.await??;
    registry_task.await??;
    http_task.await??;
    https_task.await??;
    controller_task.await?;
    if let Some(task) = networks_task {
        task.await?;
    }
    metrics_task.await??;
    gc_task.await?;
    domains.stopped().await;
    if let Some(task) = poll_task {
        task.await?;
    }
    tracing::info!("runway stopped");
    Ok(())
}

/// How often the registry removes blobs that no image needs.
const REGISTRY_GC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// The names clients reach the registry by: its address, and loopback names for its port.
fn registry_hosts(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![format!("localhost:{port}"), format!("127.0.0.1:{port}")];
    if !addr.ip().is_unspecified() && !addr.ip().is_loopback() {
        hosts.push(addr.to_string());
    }
    hosts
}

/// A push to a tag that a service deploys with AutoDeploymentsEnabled records a
/// deployment of that service.
fn deploy_on_push(registry: &Registry, api: &Api, registry_addr: SocketAddr) {
    let api = api.clone();
    let hosts = registry_hosts(registry_addr);
    registry.on_push(move |event| {
        let Some(tag) = event.tag.clone() else {
            return;
        };
        let (api, hosts, repository) = (api.clone(), hosts.clone(), event.repository.clone());
        tokio::task::spawn_blocking(move || match api.record_image_push(&hosts, &repository, &tag) {
            Ok(ids) if !ids.is_empty() => {
                tracing::info!(repository, tag, operations = ?ids, "image pushed: deployments recorded")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(repository, tag, error = %e, "cannot record deployments for a pushed image"),
        });
    });
}

async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ServerArgs,
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("runway.toml");
        fs::write(&file, "api-listen = \"127.0.0.1:7000\"\nbase-domain = \"apps.example.com\"\nregion = \"eu-west-1\"\n[runtime-images]\npython3 = \"runtimes/python3:latest\"\ngo1 = \"runtimes/go:1\"\n").unwrap();
        let args = Wrapper::parse_from([
            "x",
            "--config",
            file.to_str().unwrap(),
            "--region",
            "us-west-2",
            "--runtime-image",
            "go1=runtimes/go:2",
        ])
        .args;
        let config = args.resolve().unwrap();
        assert_eq!(config.api_listen, addr("127.0.0.1:7000"));
        assert_eq!(config.base_domain, "apps.example.com");
        assert_eq!(config.region, "us-west-2");
        assert_eq!(config.metrics_listen, addr("127.0.0.1:9090"));
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(config.runtime_images["python3"], "runtimes/python3:latest");
        assert_eq!(config.runtime_images["go1"], "runtimes/go:2");
    }

    #[test]
    fn bad_config_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("runway.toml");
        fs::write(&file, "api-lisen = \"127.0.0.1:7000\"\n").unwrap();
        let err = Wrapper::parse_from(["x", "--config", file.to_str().unwrap()])
            .args
            .resolve()
            .unwrap_err();
        assert!(format!("{err:#}").contains("api-lisen"), "{err:#}");
        let err = Wrapper::parse_from(["x", "--account-id", "12"])
            .args
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("account-id"));
        let err = Wrapper::parse_from(["x", "--base-domain", "Bad_Domain"])
            .args
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("base-domain"));
    }
}
