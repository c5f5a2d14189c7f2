//! Custom domains in the server: runway's DNS server (when `--dns-listen` is set), the
//! ACME certificate issuer, and what ties them to the router: HTTP-01 answers, the
//! TLS-ALPN-01 certificates, DNS-01 TXT records, the service hosts DNS answers for, and
//! the page a domain shows while its certificate is on its way.

use crate::dataplane::RouterClient;
use anyhow::{Context, Result, bail};
use runway_certs::{AcmeConfig, CertStore, Challenges, Issuer, TxtPublisher};
use runway_control::Controller;
use runway_dns::{Dns, ZoneConfig};
use runway_model::domains::{ChallengeKind, DomainRecord, DomainStatus};
use runway_model::records::ServiceRecord;
use runway_secrets::MasterKey;
use runway_store::{Query, Store, Typed};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How often DNS hosts and domain pages are refreshed when nothing asks sooner.
const REFRESH: Duration = Duration::from_secs(2);

/// The domain options as given (flags over the config file).
#[derive(Debug, Default)]
pub struct DomainsArgs {
    pub dns_listen: Option<SocketAddr>,
    pub public_addresses: Vec<IpAddr>,
    pub dns_rate_limit: Option<u32>,
    pub acme_directory: Option<String>,
    pub acme_email: Option<String>,
    pub acme_ca_root: Option<PathBuf>,
    pub acme_challenges: Option<String>,
    pub acme_check_interval: Option<u64>,
    pub dns_resolver: Option<SocketAddr>,
    pub acme_base_domain: bool,
}

/// The domain options, resolved.
#[derive(Debug, Clone)]
pub struct DomainsConfig {
    pub dns_listen: Option<SocketAddr>,
    pub public_addresses: Vec<IpAddr>,
    pub dns_rate_limit: u32,
    pub acme: AcmeConfig,
}

impl DomainsConfig {
    /// Defaults and checks; `https_listen` gives the public address when none is set.
    pub fn resolve(args: DomainsArgs, https_listen: Option<SocketAddr>) -> Result<Self> {
        let mut public = args.public_addresses;
        if public.is_empty()
            && let Some(addr) = https_listen
            && !addr.ip().is_unspecified()
        {
            public.push(addr.ip());
        }
        if args.dns_listen.is_some() && public.is_empty() {
            bail!(
                "dns-listen needs the router's public address for its answers: set \
                 --public-address (the HTTPS address is 0.0.0.0)"
            );
        }
        let mut acme = AcmeConfig::new(public.clone());
        if let Some(url) = args.acme_directory {
            if !url.starts_with("https://") {
                bail!("acme-directory must be an https:// URL, got {url:?}");
            }
            acme.directory_url = url;
        }
        if let Some(email) = args.acme_email {
            if !email.contains('@') {
                bail!("acme-email must be an email address, got {email:?}");
            }
            acme.contact = vec![format!("mailto:{email}")];
        }
        acme.ca_root = args.acme_ca_root;
        if let Some(list) = args.acme_challenges {
            acme.challenges = list
                .split(',')
                .map(|k| k.trim().parse::<ChallengeKind>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("acme-challenges: {e}"))?;
            if acme.challenges.is_empty() {
                bail!("acme-challenges: name at least one challenge type");
            }
        }
        if let Some(secs) = args.acme_check_interval {
            if secs == 0 {
                bail!("acme-check-interval must be at least 1 second");
            }
            acme.check_interval = Duration::from_secs(secs);
        }
        acme.resolver = args.dns_resolver;
        acme.base_domain = args.acme_base_domain;
        if acme.base_domain && args.dns_listen.is_none() {
            bail!(
                "acme-base-domain needs --dns-listen: runway answers the DNS-01 challenge itself"
            );
        }
        Ok(DomainsConfig {
            dns_listen: args.dns_listen,
            public_addresses: public,
            dns_rate_limit: args.dns_rate_limit.unwrap_or(50),
            acme,
        })
    }
}

/// What the domain glue works with.
pub struct Parts {
    pub store: Arc<dyn Store>,
    pub master: Arc<MasterKey>,
    pub certs: CertStore,
    pub router: RouterClient,
    pub controller: Controller,
}

/// The running domain machinery: cheap to clone.
#[derive(Clone)]
pub struct Domains {
    issuer: Issuer,
    refresh: Arc<Notify>,
    dns_addr: Option<SocketAddr>,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Domains {
    /// Asks for a look at the domains now (after an API call changed one).
    pub fn wake(&self) {
        self.issuer.wake();
        self.refresh.notify_one();
    }

    /// Where the DNS server answers, if it runs.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns_addr
    }

    /// Waits for every task to end (after the server's stop signal).
    pub async fn stopped(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// DNS-01 records go to runway's DNS server.
#[derive(Debug)]
struct DnsTxt(Dns);

impl TxtPublisher for DnsTxt {
    fn publish(&self, records: BTreeMap<String, Vec<String>>) -> Result<(), String> {
        self.0.set_txt(records).map_err(|e| e.to_string())
    }
}

/// Starts the DNS server (if configured), the issuer and the refresh loop.
pub async fn start<F, Fut>(
    config: &crate::server::Config,
    parts: Parts,
    metrics: &mut runway_telemetry::Registry,
    stopped: F,
) -> Result<Domains>
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let domains = &config.domains;
    let mut tasks = Vec::new();
    let (dns, dns_addr) = match domains.dns_listen {
        Some(addr) => {
            let dns = Dns::new(
                ZoneConfig {
                    base_domain: config.base_domain.clone(),
                    addresses: domains.public_addresses.clone(),
                    nameserver_addresses: domains.public_addresses.clone(),
                    rate_limit: domains.dns_rate_limit,
                },
                metrics,
            )?;
            let udp = tokio::net::UdpSocket::bind(addr)
                .await
                .with_context(|| format!("cannot listen for DNS (UDP) on {addr}"))?;
            let local = udp.local_addr()?;
            // Port 0 picks UDP's port; TCP takes the same one.
            let tcp = tokio::net::TcpListener::bind(local)
                .await
                .with_context(|| format!("cannot listen for DNS (TCP) on {local}"))?;
            (Some((dns, udp, tcp)), Some(local))
        }
        None => (None, None),
    };
    let (dns, dns_sockets) = match dns {
        Some((dns, udp, tcp)) => (Some(dns.clone()), Some((dns, udp, tcp))),
        None => (None, None),
    };
    let challenges = Arc::new(Challenges::new(
        runway_certs::provider(),
        dns.clone()
            .map(|d| Arc::new(DnsTxt(d)) as Arc<dyn TxtPublisher>),
    ));
    parts.certs.resolver().set_challenges(challenges.clone());
    // The router process answers HTTP-01 and TLS-ALPN-01 challenges as they change.
    tasks.push(
        parts
            .router
            .follow_challenges(challenges.clone(), stopped()),
    );
    let refresh = Arc::new(Notify::new());
    let issuer = Issuer::new(
        domains.acme.clone(),
        parts.store.clone(),
        parts.master.clone(),
        parts.certs.clone(),
        challenges,
        metrics,
    )?
    .on_change({
        let (controller, refresh) = (parts.controller.clone(), refresh.clone());
        move || {
            // An ACTIVE domain joins its service's routes; the others' pages change.
            controller.wake();
            refresh.notify_one();
        }
    });
    // The answers of orders in flight before the DNS server answers anything (queries
    // that come meanwhile wait in the sockets).
    if let Err(e) = issuer.restore().await {
        tracing::error!(error = %e, "the certificate issuer cannot restore its orders");
    }
    if let Some((server, udp, tcp)) = dns_sockets {
        let stop = stopped();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = server.serve(udp, tcp, stop).await {
                tracing::error!(error = %e, "the DNS server stopped");
            }
        }));
    }
    {
        let (issuer, stop) = (issuer.clone(), stopped());
        tasks.push(tokio::spawn(async move { issuer.run(stop).await }));
    }
    {
        let (store, router, refresh, stop) = (
            parts.store.clone(),
            parts.router.clone(),
            refresh.clone(),
            stopped(),
        );
        tasks.push(tokio::spawn(async move {
            let mut stop = std::pin::pin!(stop);
            loop {
                match publish(&*store, dns.as_ref(), &router).await {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot publish DNS hosts and domain pages")
                    }
                }
                tokio::select! {
                    _ = &mut stop => return,
                    _ = refresh.notified() => {}
                    _ = tokio::time::sleep(REFRESH) => {}
                }
            }
        }));
    }
    Ok(Domains {
        issuer,
        refresh,
        dns_addr,
        tasks: Arc::new(std::sync::Mutex::new(tasks)),
    })
}

/// Serves every live service's host in DNS, and gives each domain that is not ACTIVE
/// its page.
async fn publish(store: &dyn Store, dns: Option<&Dns>, router: &RouterClient) -> Result<()> {
    let (services, records) = {
        let tx = store.begin()?;
        let services: Vec<ServiceRecord> = tx
            .load_all::<ServiceRecord>(&Query {
                current: true,
                ..Query::default()
            })?
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        let records: Vec<DomainRecord> = tx
            .load_all::<DomainRecord>(&Query::default())?
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        (services, records)
    };
    if let Some(dns) = dns {
        dns.set_hosts(
            services
                .iter()
                .map(|s| runway_dns::Host {
                    name: s.url.clone(),
                    ipv6: s.spec.network_configuration.ip_address_type.as_deref()
                        == Some("DUAL_STACK"),
                })
                .collect(),
        )?;
    }
    let mut notices = HashMap::new();
    for record in records.iter().filter(|r| r.service_arn.is_some()) {
        let message = match record.status {
            DomainStatus::Active | DomainStatus::Deleting | DomainStatus::DeleteFailed => continue,
            DomainStatus::CreateFailed => format!(
                "{} could not be validated: {}. Disassociate it and associate it again.",
                record.domain,
                record
                    .message
                    .as_deref()
                    .unwrap_or("the certificate was refused")
            ),
            DomainStatus::BindingCertificate => format!(
                "{} is validated; its certificate is being issued. This page is replaced by \
                 the app in a moment.",
                record.domain
            ),
            _ => format!(
                "{} is waiting for its certificate ({}): add its validation records, or \
                 point it at this service's DNS target.{}",
                record.domain,
                record.status,
                record
                    .message
                    .as_deref()
                    .map(|m| format!(" Last: {m}."))
                    .unwrap_or_default()
            ),
        };
        for name in record.names() {
            notices.insert(name, escape(&message));
        }
    }
    router.set_host_notices(notices);
    // Certificates issued or removed since: the router process reads them again.
    router.reload_certificates();
    Ok(())
}

/// HTML-escapes text for the router's page.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}
