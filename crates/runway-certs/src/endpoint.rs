//! The certificate of runway's own endpoints, the App Runner API and the image registry,
//! which clients on other machines reach by a name or an address: either files the
//! operator provides (`--tls-cert`, `--tls-key`), read again whenever they change on disk,
//! or a certificate the local CA issues for the endpoints' names and addresses, stored
//! sealed like the wildcard and reissued before it expires. Names one label under the
//! base domain can be served the base domain's wildcard instead, which comes from the
//! ACME CA when the base domain's certificate does (`--acme-base-domain`), so that
//! clients need no CA of runway's.

use crate::{
    CertStore, CertsError, RENEW_BEFORE, Result, StoredCert, open_key, parse_pem, read_json,
    seal_context, write_json,
};
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The endpoints' certificate and sealed key, issued by the local CA.
const ENDPOINTS_STATE: &str = "endpoints.json";

/// The certificate served on the API and registry listeners; it resolves every
/// handshake (with or without SNI) to the one certificate, except names it shares with
/// the base domain ([`EndpointCert::share_base_domain`]).
#[derive(Debug)]
pub struct EndpointCert {
    source: Source,
    current: ArcSwap<CertifiedKey>,
    /// Names served with the base domain's wildcard certificate instead.
    base_domain: Option<BaseDomainNames>,
}

/// Endpoint names the base domain's wildcard covers, and where that certificate is.
#[derive(Debug)]
struct BaseDomainNames {
    store: CertStore,
    names: Vec<String>,
}

#[derive(Debug)]
enum Source {
    /// Files the operator provides, and what was last seen of them.
    Files {
        cert: PathBuf,
        key: PathBuf,
        seen: Mutex<Stamp>,
    },
    /// Issued by the local CA for these names (DNS names and IP addresses).
    LocalCa {
        store: CertStore,
        names: Vec<String>,
    },
}

/// The two files' contents as last read. Reading them at every handshake costs far
/// less than the handshake itself, and unlike a look at their sizes and times it cannot
/// miss a rewrite that keeps the size within the file system's clock tick (renewals from
/// one CA have nearly the same size, and tools write both files in a moment).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Stamp(Option<(Vec<u8>, Vec<u8>)>);

fn stamp(cert: &Path, key: &Path) -> Stamp {
    Stamp(std::fs::read(cert).ok().zip(std::fs::read(key).ok()))
}

impl EndpointCert {
    /// Serves the PEM chain in `cert` (leaf first) with the PEM private key in `key`,
    /// and again whenever either file changes: the next handshake after a change reads
    /// them. A change that does not make a usable pair (a half-written file, a key that
    /// does not match) is logged and the last good pair stays. Fails if the files are
    /// unusable now.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| CertsError::Io {
                context: format!("cannot read {}", path.display()),
                source: e,
            })
        };
        let seen = Stamp(Some((read(cert)?, read(key)?)));
        let certified = certified_pair(cert, &seen)?;
        Ok(EndpointCert {
            source: Source::Files {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                seen: Mutex::new(seen),
            },
            current: ArcSwap::from_pointee(certified),
            base_domain: None,
        })
    }

    /// Serves those of `names` that are one label under the base domain (which its
    /// wildcard covers) with the base domain's certificate as the router serves it now:
    /// the local CA's, or the ACME CA's once issued and after every renewal. Returns the
    /// names it applies to.
    pub fn share_base_domain(&mut self, store: &CertStore, names: &[String]) -> Vec<String> {
        let base = &store.inner.base_domain;
        let covered: Vec<String> = names
            .iter()
            .filter(|n| n.split_once('.').is_some_and(|(_, parent)| parent == base))
            .cloned()
            .collect();
        self.base_domain = (!covered.is_empty()).then(|| BaseDomainNames {
            store: store.clone(),
            names: covered.clone(),
        });
        covered
    }

    /// The certificate for a handshake naming `server_name`.
    fn for_name(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        if let (Some(name), Some(shared)) = (server_name, &self.base_domain)
            && shared.names.iter().any(|n| n.eq_ignore_ascii_case(name))
            && let Some(key) = shared.store.inner.resolver.lookup(Some(name))
        {
            return key;
        }
        self.current()
    }

    /// The files' certificate, read again first if they changed since they were last
    /// looked at.
    fn current(&self) -> Arc<CertifiedKey> {
        if let Source::Files { cert, key, seen } = &self.source {
            let now = stamp(cert, key);
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen != now {
                match certified_pair(cert, &now) {
                    Ok(certified) => {
                        self.current.store(Arc::new(certified));
                        tracing::info!(cert = %cert.display(), "serving the changed TLS certificate file");
                    }
                    Err(e) => {
                        tracing::warn!(cert = %cert.display(), error = %e, "the TLS certificate files changed but cannot be used; still serving the previous certificate");
                    }
                }
                *seen = now;
            }
        }
        self.current.load_full()
    }

    /// Reissues a local CA certificate that expires within 30 days (call it daily), or
    /// reads changed files. A no-op otherwise.
    pub fn refresh(&self) -> Result<()> {
        match &self.source {
            Source::Files { .. } => {
                self.current();
            }
            Source::LocalCa { store, names } => {
                self.current.store(Arc::new(store.endpoint_key(names)?));
            }
        }
        Ok(())
    }

    /// The leaf certificate served now, in DER.
    pub fn leaf(&self) -> Vec<u8> {
        self.current()
            .cert
            .first()
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default()
    }

    /// A rustls server configuration serving this certificate, with ALPN `h2` and
    /// `http/1.1`, TLS 1.3 and 1.2, on aws-lc-rs.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>> {
        let mut config = rustls::ServerConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for EndpointCert {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.for_name(hello.server_name()))
    }
}

/// The certificate and key of `stamp`, read from `cert` and its key file.
fn certified_pair(cert: &Path, stamp: &Stamp) -> Result<CertifiedKey> {
    let what = cert.display().to_string();
    let invalid = |reason: String| CertsError::InvalidCertificate {
        domain: what.clone(),
        reason,
    };
    let Some((cert_pem, key_pem)) = &stamp.0 else {
        return Err(invalid("the certificate or key file cannot be read".into()));
    };
    let text = |bytes: &[u8]| {
        String::from_utf8(bytes.to_vec()).map_err(|_| invalid("not PEM text".into()))
    };
    let (chain, key) = parse_pem(&what, &text(cert_pem)?, &text(key_pem)?)?;
    if chain.is_empty() {
        return Err(invalid("the file holds no certificate".into()));
    }
    CertifiedKey::from_der(chain, key, &crate::provider()).map_err(|e| invalid(e.to_string()))
}

/// Whether `name` may go in an endpoint certificate: a DNS name or an IP address.
fn valid_endpoint_name(name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_ok() || crate::valid_domain(name)
}

impl CertStore {
    /// The endpoints' certificate from the local CA for `names` (DNS names and IP
    /// addresses; the first is the subject's common name): the stored one if it was made
    /// for exactly these names and has more than 30 days left, else a new one, saved with
    /// its key sealed. Blocking.
    pub fn endpoint_certificate(&self, names: &[String]) -> Result<EndpointCert> {
        if let Some(bad) = names.iter().find(|n| !valid_endpoint_name(n)) {
            return Err(CertsError::InvalidDomain(bad.clone()));
        }
        let certified = self.endpoint_key(names)?;
        Ok(EndpointCert {
            source: Source::LocalCa {
                store: self.clone(),
                names: names.to_vec(),
            },
            current: ArcSwap::from_pointee(certified),
            base_domain: None,
        })
    }

    fn endpoint_key(&self, names: &[String]) -> Result<CertifiedKey> {
        let inner = &self.inner;
        let path = inner.dir.join(ENDPOINTS_STATE);
        let what = names.first().cloned().unwrap_or_default();
        let now = time::OffsetDateTime::now_utc();
        if let Some(stored) = read_json::<StoredCert>(&path)?
            && stored.names == names
            && stored
                .not_after
                .is_some_and(|t| t > (now + RENEW_BEFORE).unix_timestamp())
        {
            let key_pem = open_key(&inner.master, &path, &stored.key_sealed)?;
            let (chain, key) = parse_pem(&what, &stored.chain_pem, &key_pem)?;
            match CertifiedKey::from_der(chain, key, &inner.provider) {
                Ok(certified) => return Ok(certified),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "reissuing an unusable endpoint certificate")
                }
            }
        }
        let issued = inner.ca.issue(names)?;
        let stored = StoredCert {
            names: names.to_vec(),
            chain_pem: issued.chain_pem.clone(),
            key_sealed: inner
                .master
                .seal(&seal_context(&path), issued.key_pem.as_bytes())?,
            not_after: Some(issued.not_after),
        };
        write_json(&path, &stored)?;
        tracing::info!(names = ?names, "issued the API and registry certificate");
        let (chain, key) = parse_pem(&what, &issued.chain_pem, &issued.key_pem)?;
        CertifiedKey::from_der(chain, key, &inner.provider).map_err(|e| {
            CertsError::InvalidCertificate {
                domain: what,
                reason: e.to_string(),
            }
        })
    }
}

#[cfg(test)]
mod tests;
