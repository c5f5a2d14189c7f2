//! The DNS checks made before asking the CA (as cert-manager's "self check"): whether a
//! validation CNAME is in place, and whether a domain points at runway. The CA's attempts
//! are rate limited; runway's lookups are not, so the CA is asked only once the records a
//! challenge needs are visible.

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use std::net::{IpAddr, SocketAddr};

/// Looks names up through a recursive resolver, without caching.
#[derive(Clone)]
pub(crate) struct Lookup {
    resolver: TokioResolver,
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookup").finish_non_exhaustive()
    }
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

impl Lookup {
    /// Asks `server`, or the resolvers in `/etc/resolv.conf`.
    pub(crate) fn new(server: Option<SocketAddr>) -> Result<Self, String> {
        let mut builder = match server {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut ns.connections {
                    connection.port = addr.port();
                }
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?,
        };
        let options = builder.options_mut();
        options.cache_size = 0;
        options.attempts = 2;
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot set up the DNS resolver: {e}"))?;
        Ok(Lookup { resolver })
    }

    /// The CNAME targets of `name` (lowercase, with a trailing dot); empty when it has
    /// none.
    pub(crate) async fn cname(&self, name: &str) -> Vec<String> {
        match self.resolver.lookup(fqdn(name), RecordType::CNAME).await {
            Ok(found) => found
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::CNAME(target) => Some(target.0.to_ascii().to_ascii_lowercase()),
                    _ => None,
                })
                .map(|t| fqdn(&t))
                .collect(),
            Err(e) => {
                tracing::debug!(name, error = %e, "CNAME lookup found nothing");
                Vec::new()
            }
        }
    }

    /// The addresses `name` resolves to (following CNAMEs); empty when it has none.
    pub(crate) async fn addresses(&self, name: &str) -> Vec<IpAddr> {
        match self.resolver.lookup_ip(fqdn(name)).await {
            Ok(found) => found.iter().collect(),
            Err(e) => {
                tracing::debug!(name, error = %e, "address lookup found nothing");
                Vec::new()
            }
        }
    }
}
