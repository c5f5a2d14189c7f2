//! The listeners of the API, the registry and the metrics: the names and addresses
//! clients reach them by (their URLs, the local CA's certificate for them, the
//! registry's own hosts), the router's connection handling with caps that leave the
//! process enough descriptors, and the daily renewal of certificates.

use crate::server::{Config, TlsSource};
use runway_certs::CertStore;
use std::net::SocketAddr;
use std::sync::Arc;

/// A name or address clients reach a listener by, with the port they use if it is not the
/// listening port (a proxy or NAT in front).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicHost {
    /// A lowercase DNS name, an IPv4 address or an IPv6 address (without brackets).
    pub host: String,
    pub port: Option<u16>,
}

impl PublicHost {
    /// Parses `HOST`, `HOST:PORT`, an IP address, `[IPv6]:PORT`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(PublicHost {
                host: addr.ip().to_string(),
                port: Some(addr.port()),
            });
        }
        let bare = text.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
            return Ok(PublicHost {
                host: ip.to_string(),
                port: None,
            });
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => {
                let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    format!("{text:?}: the port must be a number from 1 to 65535")
                })?;
                (host, Some(port))
            }
            None => (text, None),
        };
        if !runway_certs::valid_domain(host) || host.starts_with("*.") {
            return Err(format!(
                "{text:?} is not a host name or an IP address (use lowercase letters, digits, '-' and '.')"
            ));
        }
        Ok(PublicHost {
            host: host.to_string(),
            port,
        })
    }

    /// The host as URLs write it (IPv6 in brackets).
    pub fn in_url(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// `host:port` as clients write it, with `listening` as the port unless another was
    /// given.
    pub fn authority(&self, listening: u16) -> String {
        format!("{}:{}", self.in_url(), self.port.unwrap_or(listening))
    }
}

/// The names clients reach the registry by now: its public names (`--registry-host`,
/// also without the port when it is 443), its address (or this machine's addresses when
/// it listens on all), and loopback names, with its port.
pub fn registry_hosts(config: &Config, addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut hosts = Vec::new();
    for host in &config.registry_hosts {
        hosts.push(host.authority(port));
        // Image references leave out the default port.
        if host.port.unwrap_or(port) == 443 {
            hosts.push(host.in_url());
        }
    }
    let ip = addr.ip();
    if !ip.is_unspecified() && !ip.is_loopback() {
        hosts.push(addr.to_string());
    }
    hosts.extend([
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ]);
    if ip.is_unspecified() {
        hosts.extend(
            local_addresses()
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port).to_string()),
        );
    }
    dedup(hosts)
}

/// The names and addresses in the local CA's certificate for the API and the registry:
/// their public names, the addresses they listen on (this machine's addresses for a
/// listener on all), and loopback.
pub fn endpoint_names(config: &Config, listening: &[SocketAddr]) -> Vec<String> {
    let mut names: Vec<String> = config
        .api_hosts
        .iter()
        .chain(&config.registry_hosts)
        .map(|h| h.host.clone())
        .collect();
    for addr in listening {
        if addr.ip().is_unspecified() {
            names.extend(local_addresses().iter().map(ToString::to_string));
        } else {
            names.push(addr.ip().to_string());
        }
    }
    names.extend(["localhost".into(), "127.0.0.1".into(), "::1".into()]);
    dedup(names)
}

/// The host and port to put in a listener's URL: its first public name, else the
/// address it listens on (loopback's for a listener on all addresses).
pub fn public_authority(public: &[PublicHost], addr: SocketAddr) -> String {
    if let Some(host) = public.first() {
        return host.authority(addr.port());
    }
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => format!("127.0.0.1:{}", addr.port()),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => format!("[::1]:{}", addr.port()),
        _ => addr.to_string(),
    }
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|i| !i.is_empty() && seen.insert(i.clone()))
        .collect()
}

/// This machine's addresses (`ip -j addr`), link-local IPv6 ones left out: a listener on
/// all addresses is reached by any of them.
fn local_addresses() -> Vec<std::net::IpAddr> {
    let output = match std::process::Command::new("ip")
        .args(["-j", "addr", "show"])
        .output()
    {
        Ok(out) if out.status.success() => out.stdout,
        _ => {
            tracing::warn!("cannot list this machine's addresses (ip -j addr show)");
            return Vec::new();
        }
    };
    let links: Vec<serde_json::Value> = serde_json::from_slice(&output).unwrap_or_default();
    links
        .iter()
        .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|info| info["local"].as_str()?.parse::<std::net::IpAddr>().ok())
        .filter(|ip| match ip {
            std::net::IpAddr::V6(v6) => !v6.is_unicast_link_local(),
            std::net::IpAddr::V4(_) => true,
        })
        .collect()
}

/// Raises the soft limit on open files to the hard limit (servers hold a descriptor per
/// connection; the default soft limit is often 1024) and returns the limit in force.
pub fn raise_file_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let mut raised = limit;
    raised.current = limit.maximum;
    if raised.current != limit.current
        && let Err(e) = setrlimit(Resource::Nofile, raised)
    {
        tracing::warn!(error = %e, "cannot raise the limit on open files");
        return limit.current.unwrap_or(u64::MAX);
    }
    raised.current.unwrap_or(u64::MAX)
}

/// Each application listener's (API, registry, metrics) connection caps for a process
/// allowed `files` open files: at most an eighth each, so that together they can never
/// take the descriptors the router, the instances' logs and the store need.
pub fn connection_caps(files: u64) -> runway_router::ConnectionCaps {
    let default = runway_router::ConnectionCaps::default();
    let total = usize::try_from(files / 8)
        .unwrap_or(usize::MAX)
        .clamp(16, default.total);
    let caps = runway_router::ConnectionCaps {
        total,
        per_address: default.per_address.min(total),
    };
    tracing::debug!(
        files,
        total = caps.total,
        per_address = caps.per_address,
        "API and registry connection caps"
    );
    caps
}

/// The hyper service for one connection of an axum application, which sees the client's
/// address as axum's `ConnectInfo` (failed sign-ins are counted by it).
pub fn with_client(
    app: &axum::Router,
    client: SocketAddr,
) -> hyper_util::service::TowerToHyperService<axum::Router> {
    let app = app
        .clone()
        .layer(axum::Extension(axum::extract::ConnectInfo(client)));
    hyper_util::service::TowerToHyperService::new(app)
}

/// The API and registry's certificate as `config` says (none without TLS): the
/// operator's files, or the local CA's for the names and addresses they are reached by
/// (`listening`: where they listen). With the base domain's certificate from the ACME CA
/// (`--acme-base-domain`), public names one label under the base domain are served that
/// certificate instead, so that clients need no CA of runway's for them.
pub async fn endpoint_certificate(
    config: &Config,
    certs: &CertStore,
    listening: &[SocketAddr],
) -> anyhow::Result<Option<Arc<runway_certs::EndpointCert>>> {
    use anyhow::Context;
    let Some(source) = config.tls.clone() else {
        return Ok(None);
    };
    let names = endpoint_names(config, listening);
    let public: Vec<String> = config
        .api_hosts
        .iter()
        .chain(&config.registry_hosts)
        .map(|h| h.host.clone())
        .collect();
    let acme_base_domain = config.domains.acme.base_domain;
    let certs = certs.clone();
    let cert = tokio::task::spawn_blocking(move || match source {
        TlsSource::Files { cert, key } => runway_certs::EndpointCert::from_files(&cert, &key)
            .with_context(|| format!("cannot use the certificate {}", cert.display())),
        TlsSource::LocalCa => {
            let mut cert = certs
                .endpoint_certificate(&names)
                .context("cannot issue the API and registry certificate")?;
            if acme_base_domain {
                let shared = cert.share_base_domain(&certs, &public);
                if !shared.is_empty() {
                    tracing::info!(names = ?shared, "the API and registry serve the base domain's certificate for these names");
                }
            }
            Ok(cert)
        }
    })
    .await??;
    Ok(Some(Arc::new(cert)))
}

/// Once a day: reissues the router's wildcard and the API and registry certificate from
/// the local CA when they have less than 30 days left, and reads changed certificate
/// files.
pub async fn refresh_certificates(
    certs: CertStore,
    endpoint: Option<Arc<runway_certs::EndpointCert>>,
    stopped: impl std::future::Future<Output = ()>,
) {
    let mut stopped = std::pin::pin!(stopped);
    let mut daily = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
    daily.tick().await;
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = daily.tick() => {}
        }
        let (certs, endpoint) = (certs.clone(), endpoint.clone());
        let refreshed = tokio::task::spawn_blocking(move || {
            certs.refresh()?;
            endpoint.map_or(Ok(()), |e| e.refresh())
        })
        .await;
        match refreshed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot renew a certificate"),
            Err(e) => tracing::error!(error = %e, "certificate renewal failed to run"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_caps_take_at_most_an_eighth_of_the_file_limit() {
        assert_eq!(connection_caps(1024).total, 128);
        assert_eq!(connection_caps(1024).per_address, 128);
        assert_eq!(
            connection_caps(1 << 20),
            runway_router::ConnectionCaps::default()
        );
    }
}
