//! `runway server`: configuration (flags over a TOML file over defaults), the data
//! directory, the admin key, the listeners, and graceful shutdown. The API is served on
//! its own threads at a higher CPU priority than the rest, so that it answers while
//! instances starting and the controller take every CPU.

use crate::listeners::{self, PublicHost};
use anyhow::{Context, Result, bail};
use runway_api::{Api, ApiConfig};
use runway_build::{BuildJobs, Builder, BuilderConfig};
use runway_certs::CertStore;
use runway_control::{ControlConfig, Controller};
use runway_registry::{Registry, RegistryConfig};
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
/// The log of failed sign-ins on the API and the registry, in the data directory.
pub const AUTH_LOG: &str = "logs/auth.log";
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
    /// Serve the API and the registry over HTTPS: with --tls-cert and --tls-key if given,
    /// else with a certificate from runway's local CA (DATA_DIR/certs/ca.pem) for the
    /// --api-host and --registry-host names and the addresses they listen on (with
    /// --acme-base-domain, names one label under the base domain get its wildcard from the
    /// ACME CA). Needed to listen on an address other than loopback (unless
    /// --allow-insecure-http).
    #[arg(long)]
    #[serde(default)]
    tls: bool,
    /// The API and registry's certificate chain in PEM, leaf first (implies --tls); read
    /// again when the file changes, so a renewed certificate is served without a restart.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert in PEM.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A name or address clients on other machines reach the API by
    /// (`runway.example.com`, `203.0.113.7`, with `:PORT` if it differs from the listening
    /// port): in the local CA's certificate and the API's URL. Repeat for more.
    #[arg(long = "api-host", value_name = "HOST[:PORT]")]
    #[serde(default)]
    api_host: Vec<String>,
    /// A name or address clients reach the registry by, like --api-host; image references
    /// naming it (or loopback, or an address the registry had before) are runway's own.
    #[arg(long = "registry-host", value_name = "HOST[:PORT]")]
    #[serde(default)]
    registry_host: Vec<String>,
    /// Serve the API and the registry over plain HTTP even on an address other than
    /// loopback (behind a proxy that terminates TLS): access keys, secrets and images then
    /// cross the network in clear text up to that proxy.
    #[arg(long)]
    #[serde(default)]
    allow_insecure_http: bool,
    /// Seconds an instance that fails its health checks stays (out of the route table,
    /// for the requests it holds) after its replacement is started [default: 10].
    #[arg(long)]
    replace_grace: Option<u64>,
    /// Seconds the logs of a stopped instance are kept [default: 86400].
    #[arg(long)]
    stopped_instance_retention: Option<u64>,
    /// Each instance's ephemeral storage (writable layer and /tmp) in MiB; writes beyond
    /// it fail inside the instance. 0: no limit of its own [default: 3072].
    #[arg(long)]
    ephemeral_storage: Option<u64>,
    /// The memory all instances and builds together may use, in MiB [default: the
    /// host's memory less the larger of 1 GiB and a tenth].
    #[arg(long)]
    instances_memory: Option<u64>,
    /// The CPUs all instances and builds together may use, e.g. 1.5 [default: the
    /// host's CPUs less half of one].
    #[arg(long)]
    instances_cpus: Option<f64>,
    /// The processes all instances and builds together may run [default: half the
    /// kernel's limit].
    #[arg(long)]
    instances_pids: Option<u64>,
    /// An image repository (`runtimes/python3`, `docker.io/library/nginx`) whose
    /// instances may run as the host's root, without a user namespace; repeat for more.
    /// Every other instance's root is an unprivileged user on the host.
    #[arg(long = "host-root-image", value_name = "REPOSITORY")]
    #[serde(default, rename = "host-root-images")]
    host_root_image: Vec<String>,
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
    /// How long a stopped instance's logs are kept.
    pub stopped_instance_retention: std::time::Duration,
    /// Each instance's ephemeral storage in bytes (0: no limit of its own).
    pub ephemeral_storage: u64,
    /// What all instances and builds together may use.
    pub instance_limits: runway_runtime::Limits,
    /// Repositories whose images' instances run as the host's root.
    pub host_root_images: Vec<String>,
    /// How the API and the registry are served over TLS; plain HTTP if `None`.
    pub tls: Option<TlsSource>,
    /// Names and addresses clients reach the API by.
    pub api_hosts: Vec<PublicHost>,
    /// Names and addresses clients reach the registry by.
    pub registry_hosts: Vec<PublicHost>,
    /// Plain HTTP on a non-loopback address is allowed.
    pub allow_insecure_http: bool,
    /// Addresses VPC connectors may take as their static outbound address.
    pub egress_addresses: Vec<std::net::Ipv4Addr>,
}

/// Where the API and registry's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// Issued by the local CA for the endpoints' names and addresses.
    LocalCa,
    /// Files the operator provides, read again when they change.
    Files { cert: PathBuf, key: PathBuf },
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
        let tls = tls_source(&self, &file)?;
        let api_hosts = public_hosts("api-host", &self.api_host, &file.api_host)?;
        let registry_hosts =
            public_hosts("registry-host", &self.registry_host, &file.registry_host)?;
        let config = Config {
            tls,
            api_hosts,
            registry_hosts,
            allow_insecure_http: self.allow_insecure_http || file.allow_insecure_http,
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
            stopped_instance_retention: std::time::Duration::from_secs(
                self.stopped_instance_retention
                    .or(file.stopped_instance_retention)
                    .unwrap_or(24 * 3600),
            ),
            ephemeral_storage: self
                .ephemeral_storage
                .or(file.ephemeral_storage)
                .map_or(runway_runtime::DEFAULT_EPHEMERAL_STORAGE, |mb| mb << 20),
            instance_limits: {
                let d = runway_runtime::Limits::host_defaults();
                let cpus = self.instances_cpus.or(file.instances_cpus);
                if let Some(cpus) = cpus
                    && !(cpus.is_finite() && (0.01..=4096.0).contains(&cpus))
                {
                    bail!("instances-cpus must be a number of CPUs from 0.01 to 4096, got {cpus}");
                }
                runway_runtime::Limits {
                    memory_bytes: self
                        .instances_memory
                        .or(file.instances_memory)
                        .map_or(d.memory_bytes, |mb| mb << 20),
                    cpu_units: cpus.map_or(d.cpu_units, |c| (c * 1024.0).round() as u32),
                    pids: self
                        .instances_pids
                        .or(file.instances_pids)
                        .unwrap_or(d.pids),
                }
            },
            host_root_images: file
                .host_root_image
                .into_iter()
                .chain(self.host_root_image)
                .collect(),
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
                    replace_grace: secs(self.replace_grace, file.replace_grace, d.replace_grace),
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

/// `--tls`, `--tls-cert` and `--tls-key` from the flags, else the file.
fn tls_source(flags: &ServerArgs, file: &ServerArgs) -> Result<Option<TlsSource>> {
    let (cert, key) = match (&flags.tls_cert, &flags.tls_key) {
        (None, None) => (file.tls_cert.clone(), file.tls_key.clone()),
        (cert, key) => (cert.clone(), key.clone()),
    };
    Ok(match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsSource::Files { cert, key }),
        (None, None) if flags.tls || file.tls => Some(TlsSource::LocalCa),
        (None, None) => None,
        _ => bail!("tls-cert and tls-key go together: give both, or neither"),
    })
}

/// `--api-host` (or `--registry-host`) values from the flags, else the file.
fn public_hosts(what: &str, flags: &[String], file: &[String]) -> Result<Vec<PublicHost>> {
    let values = if flags.is_empty() { file } else { flags };
    values
        .iter()
        .map(|v| PublicHost::parse(v).map_err(|e| anyhow::anyhow!("{what}: {e}")))
        .collect()
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
        if self.tls.is_none() && !self.allow_insecure_http {
            for (what, flag, addr) in [
                ("API", "api-listen", self.api_listen),
                ("registry", "registry-listen", self.registry_listen),
            ] {
                if !addr.ip().is_loopback() {
                    bail!(
                        "refusing to serve the {what} over plain HTTP on {addr} ({flag}), which is not a loopback address: access keys, secrets and images would cross the network in clear text. Add --tls (a certificate from runway's local CA; clients trust {}/certs/ca.pem), or --tls-cert and --tls-key; behind a proxy that terminates TLS, --allow-insecure-http",
                        self.data_dir.display()
                    );
                }
            }
        }
        Ok(())
    }

    /// `https` with TLS, else `http`.
    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
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
    runway_telemetry::init_logging_with(
        config.log_format,
        &config.log_filter,
        Some(runway_telemetry::TargetLog {
            target: runway_secrets::AUTH_LOG_TARGET,
            path: config.data_dir.join(AUTH_LOG),
        }),
    )
    .map_err(anyhow::Error::msg)?;
    let files = listeners::raise_file_limit();
    let api_runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("runway-api")
        .on_thread_start(raise_priority)
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .enable_all()
        .build()
        .context("cannot start the API's async runtime")?;
    let served = tokio::runtime::Builder::new_multi_thread()
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(config, files, api_runtime.handle().clone()));
    api_runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    served
}

/// How long an idle blocking thread lives (tokio's default is 10 s). Tokio wakes its
/// idle blocking threads in turn, so the server's steady trickle of store reads kept
/// every thread a burst had started alive for good with 10 s, each holding its
/// allocator pages: after 200 services were created and deleted the server held 50
/// threads and five times its baseline memory (bench/api).
const BLOCKING_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(1);

/// The nice value of the API's threads where they cannot run in real time: when
/// instances starting (their shims, runc, mkfs, nft) and the controller take every CPU,
/// the API still gets most of one.
const API_NICE: i32 = -10;

/// Runs the calling thread (one of the API's) in real time (`SCHED_RR`, the lowest
/// real-time priority), or where that is not allowed at [`API_NICE`].
///
/// Why real time: while 200 services start on 2 CPUs, 40-60 ordinary threads want the
/// CPUs, and a thread at nice -10 still waited up to 320 ms for one after waking (perf
/// sched, bench/api); at nice -20, or with a short EEVDF slice, the API's p99 stayed
/// at 180-340 ms. Under `SCHED_RR` it waits microseconds. The API's work per call is
/// small and its listener's connections are capped; the kernel's real-time throttling
/// leaves ordinary threads 5 % of each second even if an API thread spins, and the
/// processes it starts run ordinarily.
fn raise_priority() {
    if let Err(e) = runway_sys::run_thread_realtime() {
        tracing::debug!(error = %e, "cannot run the API thread in real time");
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), API_NICE) {
            tracing::debug!(error = %e, "cannot raise the API thread's priority");
        }
    }
}

/// How often the server gives the heap's free memory back to the system. After a burst
/// (200 services created and deleted) glibc's malloc kept 2-3x the server's baseline in
/// the arenas of the threads that had allocated at once.
const RELEASE_MEMORY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Gives the store's caches and free heap memory back every [`RELEASE_MEMORY_INTERVAL`]
/// until `stopped`.
async fn release_memory(store: Arc<dyn Store>, stopped: impl std::future::Future<Output = ()>) {
    let mut every = tokio::time::interval(RELEASE_MEMORY_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            _ = every.tick() => {
                let store = store.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    store.release_memory();
                    runway_sys::release_free_memory();
                })
                .await;
            }
        }
    }
}

/// `runway purge`: stops the router process and every instance of the data directory
/// and removes runway's network, mounts and containers from the host (the data itself stays). For
/// uninstalling, and for benchmarks and tests that must leave the host clean.
pub fn purge(args: ServerArgs) -> Result<()> {
    let config = args.resolve()?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let runtime = runtime_config(&config)?;
    if crate::dataplane::stop(&config.data_dir)? {
        println!("Stopped the router process.");
    }
    runway_runtime::purge(&runtime).context("cannot remove runway's instances and network")?;
    println!(
        "Stopped every instance of {} and removed bridge {}.",
        config.data_dir.display(),
        config.net.bridge
    );
    Ok(())
}

/// `runway restart-router`: a new router process takes over the running one's sockets
/// and routes (see `dataplane`).
pub fn restart_router(args: ServerArgs) -> Result<()> {
    let config = args.resolve()?;
    let program = std::env::current_exe().context("cannot find the runway binary")?;
    let (old, new) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(crate::dataplane::restart(&config.data_dir, &program))?;
    println!("Router process {new} took over from {old}, which finishes its requests in flight.");
    Ok(())
}

fn runtime_config(config: &Config) -> Result<RuntimeConfig> {
    let mut runtime = RuntimeConfig::new(
        config.data_dir.join("runtime"),
        ShimCommand::runway(&std::env::current_exe().context("cannot find the runway binary")?),
    );
    runtime.net = config.net.clone();
    runtime.oci_runtime = config.oci_runtime.clone();
    runtime.stopped_log_retention = config.stopped_instance_retention;
    runtime.ephemeral_storage = config.ephemeral_storage;
    runtime.limits = config.instance_limits;
    runtime.host_root_repositories = config.host_root_images.clone();
    runtime.validate().map_err(anyhow::Error::from)?;
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

/// Runs the server until SIGTERM or SIGINT; the process may hold `files` open files.
/// The API is served on `api_runtime`: its own threads, at a higher priority than the
/// rest of the server (see [`raise_priority`]).
async fn serve(config: Config, files: u64, api_runtime: tokio::runtime::Handle) -> Result<()> {
    let dir = &config.data_dir;
    let _lock = lock_data_dir(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))?;
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.join("state.db")).context("cannot open the state store")?);
    let master = Arc::new(MasterKey::load_or_create(&dir.join("master.key"))?);
    let new_credentials = ensure_admin_key(&*store, &master, dir)?;

    let mut metrics = runway_telemetry::Registry::default();
    // One allowance of failed sign-ins per address for the API and the registry alike:
    // they take the same keys.
    let throttle = Arc::new(runway_secrets::AuthThrottle::default());
    let registry = Registry::open(
        RegistryConfig {
            tls: config.tls.is_some(),
            auth_throttle: Some(throttle.clone()),
            ..RegistryConfig::new(dir.join("registry"))
        },
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
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
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
    // The router runs in its own process, which outlives this one: adopt it, or start it.
    let (router, router_hello) = crate::dataplane::RouterClient::start(
        crate::dataplane::Launch {
            program: std::env::current_exe().context("cannot find the runway binary")?,
            data_dir: dir.clone(),
            http_listen: config.http_listen,
            https_listen: config.https_listen,
            base_domain: config.base_domain.clone(),
            log_filter: config.log_filter.clone(),
            log_format: match config.log_format {
                LogFormat::Json => "json".into(),
                _ => "human".into(),
            },
        },
        stopped(),
    )
    .await
    .context("cannot start the router process")?;
    let (http_addr, https_addr) = (router_hello.http, router_hello.https);
    router.set_https_port(https_addr.port());
    let (api_listener, api_addr) = bind("API", config.api_listen).await?;
    let (registry_listener, registry_addr) = bind("registry", config.registry_listen).await?;
    let endpoint_cert =
        listeners::endpoint_certificate(&config, &certs, &[api_addr, registry_addr]).await?;
    let endpoint_tls = endpoint_cert
        .as_ref()
        .map(|cert| cert.server_config())
        .transpose()
        .context("cannot build the API and registry TLS configuration")?;
    let (metrics_listener, metrics_addr) = bind("metrics", config.metrics_listen).await?;
    let registry_hosts = registry
        .remember_hosts(&listeners::registry_hosts(&config, registry_addr))
        .await
        .context("cannot record the registry's addresses")?;
    let builder = {
        let mut build = BuilderConfig::new(dir.join("build"), dir.join("build-cache"));
        build.runtime_images = config.runtime_images.clone();
        build.own_registry_hosts = registry_hosts.clone();
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
            hosts: registry_hosts.clone(),
            builder: builder.clone(),
            data_dir: dir.clone(),
            store: store.clone(),
            master: master.clone(),
        }),
        config.control.clone(),
    )
    .with_secrets(Arc::new(crate::adapters::StoreSecrets {
        store: store.clone(),
        master: master.clone(),
        region: config.region.clone(),
        account: config.account_id.clone(),
    }));
    let networks_wake = Arc::new(tokio::sync::Notify::new());
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
    let scheme = config.scheme();
    let endpoints = Endpoints {
        api: format!(
            "{scheme}://{}",
            listeners::public_authority(&config.api_hosts, api_addr)
        ),
        registry: format!(
            "{scheme}://{}",
            listeners::public_authority(&config.registry_hosts, registry_addr)
        ),
        http: format!("http://{http_addr}"),
        https: format!("https://{https_addr}"),
        ca: certs.ca_path(),
        metrics: format!("http://{metrics_addr}/metrics"),
        region: config.region.clone(),
        dns: domains.dns_addr().map(|a| a.to_string()),
    };
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
    )?
    .with_auth_throttle(throttle)
    .with_endpoints(runway_api::PublicEndpoints {
        api: endpoints.api.clone(),
        registry: endpoints.registry.clone(),
        https: endpoints.https.clone(),
        http: endpoints.http.clone(),
    });
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
            hosts: registry_hosts.clone(),
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
    // The router's limits on every other listener, so that none can starve another.
    let (api_server, registry_server, metrics_server) = {
        let listeners = runway_router::ListenerMetrics::register(&mut metrics);
        let caps = listeners::connection_caps(files);
        let limits = runway_router::RouterConfig::default();
        let server =
            |name| runway_router::AppServer::new(name, limits.clone(), caps, listeners.clone());
        (server("api"), server("registry"), server("metrics"))
    };
    let metrics = Arc::new(metrics);
    deploy_on_push(&registry, &api, registry_hosts);
    // Serve the last known routes at once, before the controller's loops run.
    controller
        .publish_routes()
        .await
        .context("cannot read the routes")?;
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
    let ca_bundle = match &config.tls {
        Some(TlsSource::LocalCa) => format!("AWS_CA_BUNDLE={} ", endpoints.ca.display()),
        _ => String::new(),
    };
    println!(
        "  {ca_bundle}AWS_SHARED_CREDENTIALS_FILE={} AWS_PROFILE={PROFILE} aws apprunner list-services --endpoint-url {} --region {}",
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
    let api_task = api_runtime.spawn({
        let app = crate::sources::webhook_router(sources).merge(api.router());
        let (server, tls, stopped) = (api_server, endpoint_tls.clone(), stopped());
        // Its connections' readiness comes from the API runtime's own I/O driver.
        let api_listener = api_listener.into_std()?;
        async move {
            server
                .serve(
                    TcpListener::from_std(api_listener)?,
                    tls,
                    move |client| listeners::with_client(&app, client),
                    stopped,
                )
                .await
        }
    });
    let registry_task = tokio::spawn({
        let app = registry.router();
        let (server, tls, stopped) = (registry_server, endpoint_tls, stopped());
        async move {
            server
                .serve(
                    registry_listener,
                    tls,
                    move |client| listeners::with_client(&app, client),
                    stopped,
                )
                .await
        }
    });
    let refresh_task = tokio::spawn(listeners::refresh_certificates(
        certs.clone(),
        endpoint_cert,
        stopped(),
    ));
    let gc_task = registry.spawn_gc(REGISTRY_GC_INTERVAL, stopped());
    let networks_task = config.controller.then(|| {
        let networks = crate::networks::Networks {
            user: Arc::new(runway_net::UserNetworks::new(
                config.net.clone(),
                store.clone(),
            )),
            router: router.clone(),
            controller: controller.clone(),
            store: store.clone(),
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
    let metrics_task = tokio::spawn({
        let app = metrics_app(metrics, router.clone());
        let (server, stopped) = (metrics_server, stopped());
        async move {
            server
                .serve(
                    metrics_listener,
                    None,
                    move |client| listeners::with_client(&app, client),
                    stopped,
                )
                .await
        }
    });

    let memory_task = tokio::spawn(release_memory(store.clone(), stopped()));

    shutdown_signal().await?;
    tracing::info!("shutting down: finishing requests in flight");
    let _ = stop_tx.send(true);
    api_task.await??;
    registry_task.await??;
    controller_task.await?;
    if let Some(task) = networks_task {
        task.await?;
    }
    metrics_task.await??;
    gc_task.await?;
    memory_task.await?;
    domains.stopped().await;
    refresh_task.await?;
    if let Some(task) = poll_task {
        task.await?;
    }
    tracing::info!(
        router_pid = router_hello.pid,
        "runway stopped (the router process serves on)"
    );
    Ok(())
}

/// The server's metrics, then the router process's.
fn metrics_app(
    registry: Arc<runway_telemetry::Registry>,
    router: crate::dataplane::RouterClient,
) -> axum::Router {
    use axum::response::IntoResponse;
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (registry, router) = (registry.clone(), router.clone());
            async move {
                let mut body = String::new();
                if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &registry) {
                    tracing::error!(error = %e, "cannot encode metrics");
                    return http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
                if let Some(more) = router.metrics().await
                    && let Some(mine) = body.strip_suffix("# EOF\n")
                {
                    body = format!("{mine}{more}");
                }
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    body,
                )
                    .into_response()
            }
        }),
    )
}

/// How often the registry removes blobs that no image needs.
const REGISTRY_GC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// A push to a tag that a service deploys with AutoDeploymentsEnabled records a
/// deployment of that service.
fn deploy_on_push(registry: &Registry, api: &Api, hosts: Vec<String>) {
    let api = api.clone();
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
    use crate::listeners::{endpoint_names, public_authority, registry_hosts};
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
    fn plain_http_beyond_loopback_is_refused_unless_insisted_on() {
        let parse = |args: &[&str]| {
            let mut all = vec!["x"];
            all.extend_from_slice(args);
            Wrapper::parse_from(all).args.resolve()
        };
        let config = parse(&[]).unwrap();
        assert_eq!(config.tls, None);
        assert_eq!(config.scheme(), "http");
        for listen in ["--api-listen", "--registry-listen"] {
            let err = parse(&[listen, "0.0.0.0:8090"]).unwrap_err().to_string();
            assert!(err.contains("plain HTTP") && err.contains("--tls"), "{err}");
        }
        let err = parse(&["--api-listen", "192.0.2.7:8090"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("192.0.2.7:8090"), "{err}");
        assert!(parse(&["--api-listen", "[::1]:8090"]).is_ok());
        let insisted = parse(&["--api-listen", "0.0.0.0:8090", "--allow-insecure-http"]).unwrap();
        assert_eq!(insisted.tls, None);
        let tls = parse(&["--api-listen", "0.0.0.0:8090", "--tls"]).unwrap();
        assert_eq!(tls.tls, Some(TlsSource::LocalCa));
        assert_eq!(tls.scheme(), "https");
        let files = parse(&[
            "--registry-listen",
            "0.0.0.0:5000",
            "--tls-cert",
            "/etc/runway/tls.crt",
            "--tls-key",
            "/etc/runway/tls.key",
        ])
        .unwrap();
        assert_eq!(
            files.tls,
            Some(TlsSource::Files {
                cert: "/etc/runway/tls.crt".into(),
                key: "/etc/runway/tls.key".into()
            })
        );
    }

    #[test]
    fn public_hosts_are_names_or_addresses_with_an_optional_port() {
        let host = |s: &str| PublicHost::parse(s);
        assert_eq!(
            host("runway.example.com").unwrap().authority(8090),
            "runway.example.com:8090"
        );
        assert_eq!(
            host("runway.example.com:443").unwrap().authority(8090),
            "runway.example.com:443"
        );
        assert_eq!(
            host("203.0.113.7").unwrap().authority(5000),
            "203.0.113.7:5000"
        );
        assert_eq!(
            host("2001:db8::7").unwrap().authority(5000),
            "[2001:db8::7]:5000"
        );
        assert_eq!(
            host("[2001:db8::7]:8443").unwrap().authority(5000),
            "[2001:db8::7]:8443"
        );
        for bad in [
            "Runway.example.com",
            "a b",
            "host:0",
            "host:http",
            "*.example.com",
            "",
        ] {
            assert!(host(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("runway.toml");
        fs::write(&file, "tls = true\napi-host = [\"runway.example.com\", \"203.0.113.7\"]\nregistry-host = [\"registry.example.com:443\"]\n").unwrap();
        let config = Wrapper::parse_from(["x", "--config", file.to_str().unwrap()])
            .args
            .resolve()
            .unwrap();
        assert_eq!(config.tls, Some(TlsSource::LocalCa));
        assert_eq!(config.api_hosts.len(), 2);
        let registry = "127.0.0.1:443".parse().unwrap();
        let hosts = registry_hosts(&config, registry);
        assert_eq!(
            &hosts[..2],
            ["registry.example.com:443", "registry.example.com"]
        );
        assert!(hosts.contains(&"localhost:443".to_string()));
        let names = endpoint_names(&config, &["127.0.0.1:8090".parse().unwrap(), registry]);
        assert_eq!(
            names,
            [
                "runway.example.com",
                "203.0.113.7",
                "registry.example.com",
                "127.0.0.1",
                "localhost",
                "::1"
            ]
        );
        assert_eq!(
            public_authority(&config.api_hosts, "0.0.0.0:8090".parse().unwrap()),
            "runway.example.com:8090"
        );
        assert_eq!(
            public_authority(&[], "0.0.0.0:8090".parse().unwrap()),
            "127.0.0.1:8090"
        );
        let err = Wrapper::parse_from(["x", "--api-host", "Bad"])
            .args
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("api-host"), "{err}");
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
