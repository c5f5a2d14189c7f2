//! runway's certificates (its ACM): a local certificate authority created on first start,
//! a wildcard certificate for the base domain signed by it (and, in memory, one for each
//! former base domain that services created before a change of base domain still use),
//! certificates for custom domains, and the SNI resolver and rustls server configuration
//! the router serves them with; the ACME issuer ([`Issuer`], instant-acme) that takes custom domains (and,
//! when asked, the base domain) from association to a served and renewed certificate
//! from a public CA, answering DNS-01, HTTP-01 and TLS-ALPN-01 challenges
//! ([`Challenges`]), each domain a resumable state machine in the store; and the
//! certificate of runway's own API and registry endpoints ([`EndpointCert`]: files the
//! operator provides, read again when they change, or one from the local CA).
//!
//! Everything lives under one directory the caller gives (`DATA_DIR/certs`): the CA
//! certificate at a stable path ([`CA_FILE`]) that users can add to their trust store,
//! and one JSON file per certificate whose private key is sealed with the data
//! directory's [`MasterKey`]. This crate must never write a private key in plaintext,
//! never leave a half-written file visible (every file is written with
//! [`runway_store::fs::write_atomic`]), never install a process-wide crypto provider
//! (it passes aws-lc-rs explicitly; the binary installs the default), never send a CSR
//! before its key is recorded (sealed), and never ask a CA to validate before the DNS
//! records the challenge needs are visible to its own lookups.

#![forbid(unsafe_code)]

mod acme;
mod ca;
mod challenges;
mod endpoint;
mod issuer;
mod lookup;
mod metrics;
mod resolver;

pub use acme::AcmeConfig;
pub use challenges::{ACME_TLS_ALPN, Challenges, HttpAnswers, TxtPublisher, dns_value};
pub use endpoint::EndpointCert;
pub use issuer::Issuer;
pub use resolver::SniResolver;

use ca::{Issued, LocalCa};
use runway_secrets::{MasterKey, SecretsError};
use runway_store::StoreError;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The CA certificate users trust, relative to the certificate directory.
pub const CA_FILE: &str = "ca.pem";
/// The CA's certificate and sealed key.
const CA_STATE: &str = "ca.json";
/// The base domain's wildcard certificate and sealed key.
const WILDCARD_STATE: &str = "wildcard.json";
/// Certificates for custom domains, one JSON file each.
const DOMAINS_DIR: &str = "domains";
/// A certificate is renewed when it has less than this left.
const RENEW_BEFORE: time::Duration = time::Duration::days(30);

/// What can go wrong with certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// A certificate file or directory cannot be read or written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// Writing a file atomically failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A sealed key does not open, or sealing failed.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// rcgen could not make a key or a certificate.
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A stored certificate file cannot be understood.
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    /// A certificate or key given for a domain is unusable.
    #[error("invalid certificate for {domain}: {reason}")]
    InvalidCertificate { domain: String, reason: String },
    /// A name that is not a lowercase DNS name (optionally `*.` and a DNS name).
    #[error("invalid domain name {0:?}: use lowercase letters, digits, '-' and '.'")]
    InvalidDomain(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The ACME CA could not be reached or refused a request.
    #[error("{0}")]
    Acme(String),
}

type Result<T, E = CertsError> = std::result::Result<T, E>;

/// A certificate as stored on disk: the chain in PEM (leaf first) and the key sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredCert {
    /// The names the certificate was made for (for the CA: its common name).
    names: Vec<String>,
    /// PEM certificates, the leaf first.
    chain_pem: String,
    /// The PKCS#8 PEM private key, sealed with the master key.
    key_sealed: String,
    /// Expiry as Unix seconds, when known.
    not_after: Option<i64>,
}

/// The crypto provider runway's TLS uses: aws-lc-rs, passed explicitly.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The local CA, the wildcard certificate and custom domains' certificates; cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct CertStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    master: Arc<MasterKey>,
    ca: LocalCa,
    base_domain: String,
    created_ca: bool,
    resolver: Arc<SniResolver>,
    provider: Arc<CryptoProvider>,
    /// The names served for former base domains (see
    /// [`CertStore::serve_former_base_domains`]): the domain each is for, and the key
    /// inserted for it (so that only that one is ever removed).
    former: Mutex<HashMap<String, (String, Arc<CertifiedKey>)>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("dir", &self.dir)
            .field("base_domain", &self.base_domain)
            .finish_non_exhaustive()
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CertsError {
    let context = context.into();
    move |source| CertsError::Io { context, source }
}

/// Whether `name` is a lowercase DNS name, optionally with a leading `*.` label.
pub fn valid_domain(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    !rest.is_empty()
        && name.len() <= 253
        && rest.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// The former base domains among services' default host names (`<name>-<id>.<domain>`):
/// each host's domain (what follows its first label) that is not `base_domain`. Services
/// keep the host name they were created with when the server is restarted with another
/// `--base-domain`, so these are the base domains the server had before that some service
/// still uses. Hosts that are not a label and a valid domain name are skipped.
pub fn former_base_domains<'a>(
    base_domain: &str,
    default_hosts: impl IntoIterator<Item = &'a str>,
) -> BTreeSet<String> {
    default_hosts
        .into_iter()
        .filter_map(|host| host.split_once('.').map(|(_, domain)| domain))
        .filter(|domain| is_former(base_domain, domain))
        .map(str::to_string)
        .collect()
}

/// Whether `domain` can be a former base domain while the base domain is `base_domain`:
/// a valid domain name, not a wildcard, and not the base domain itself.
fn is_former(base_domain: &str, domain: &str) -> bool {
    domain != base_domain && !domain.starts_with("*.") && valid_domain(domain)
}

impl CertStore {
    /// Opens the certificate directory `dir` (created with mode 0700 if missing): loads
    /// the local CA, creating it on first start, and the wildcard certificate for
    /// `*.<base_domain>` and `<base_domain>`, issuing it when it is missing, was made for
    /// another base domain or expires within 30 days; then loads saved custom domains.
    /// Blocking (file I/O and key generation): call it before serving, or from
    /// `spawn_blocking`.
    pub fn open(dir: &Path, master: Arc<MasterKey>, base_domain: &str) -> Result<Self> {
        if !valid_domain(base_domain) || base_domain.starts_with("*.") {
            return Err(CertsError::InvalidDomain(base_domain.to_string()));
        }
        create_private_dir(dir)?;
        create_private_dir(&dir.join(DOMAINS_DIR))?;
        let provider = provider();
        let (ca, created_ca) = LocalCa::load_or_create(dir, &master)?;
        let resolver = Arc::new(SniResolver::new());
        let store = CertStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                master,
                ca,
                base_domain: base_domain.to_string(),
                created_ca,
                resolver,
                provider,
                former: Mutex::new(HashMap::new()),
            }),
        };
        store.load_wildcard()?;
        store.load_domains()?;
        Ok(store)
    }

    /// Reissues the wildcard certificate if it expires within 30 days (or its file was
    /// lost or damaged); call it daily from a blocking task. A no-op otherwise.
    pub fn refresh(&self) -> Result<()> {
        self.load_wildcard()
    }

    /// Where the CA certificate is, for users to trust (`curl --cacert`, a browser).
    pub fn ca_path(&self) -> PathBuf {
        self.inner.dir.join(CA_FILE)
    }

    /// The CA certificate in PEM.
    pub fn ca_pem(&self) -> &str {
        self.inner.ca.cert_pem()
    }

    /// Whether [`CertStore::open`] created the CA just now (a first start), so the
    /// caller can tell users where it is.
    pub fn created_ca(&self) -> bool {
        self.inner.created_ca
    }

    /// The resolver that picks a certificate by SNI.
    pub fn resolver(&self) -> Arc<SniResolver> {
        self.inner.resolver.clone()
    }

    /// A rustls server configuration that serves these certificates, with ALPN `h2` and
    /// `http/1.1` (and `acme-tls/1`, chosen only by a TLS-ALPN-01 validation that offers
    /// nothing else: the caller must close such a connection after the handshake), TLS
    /// 1.3 and 1.2, on aws-lc-rs.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.inner.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.inner.resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
        Ok(Arc::new(config))
    }

    /// Serves `chain` (leaf first) and `key` for `domain` (`app.example.com`, or
    /// `*.example.com` for its subdomains) from now on, in memory only. The key must
    /// match the leaf certificate.
    pub fn insert(
        &self,
        domain: &str,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<()> {
        let certified = self.certified(domain, chain, key)?;
        self.inner.resolver.insert(domain, Arc::new(certified));
        Ok(())
    }

    /// Saves a PEM chain (leaf first) and PEM private key for `domain` under the
    /// certificate directory (the key sealed) and serves it from now on, also after a
    /// restart.
    pub fn save(&self, domain: &str, chain_pem: &str, key_pem: &str) -> Result<()> {
        self.save_certificate(&[domain.to_string()], chain_pem, key_pem)
            .map(|_| ())
    }

    /// Saves a certificate for `names` (the first names the file; `*.<base-domain>`
    /// replaces the local CA's wildcard, also as the default) and serves it for each of
    /// them from now on, also after a restart. This is where the ACME client hands its
    /// certificates. Returns the leaf's serial (hex), validity (Unix seconds) and ARI
    /// identifier (RFC 9773, when the leaf names its issuer's key).
    pub fn save_certificate(
        &self,
        names: &[String],
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<LeafInfo> {
        let Some(first) = names.first() else {
            return Err(CertsError::InvalidDomain(String::new()));
        };
        let (chain, key) = parse_pem(first, chain_pem, key_pem)?;
        let leaf = leaf_info(first, &chain)?;
        let certified = Arc::new(self.certified(first, chain, key)?);
        let path = self.domain_path(first);
        let stored = StoredCert {
            names: names.to_vec(),
            chain_pem: chain_pem.to_string(),
            key_sealed: self
                .inner
                .master
                .seal(&seal_context(&path), key_pem.as_bytes())?,
            not_after: Some(leaf.not_after),
        };
        write_json(&path, &stored)?;
        self.serve(names, certified);
        Ok(leaf)
    }

    fn serve(&self, names: &[String], certified: Arc<CertifiedKey>) {
        if names.first() == Some(&format!("*.{}", self.inner.base_domain)) {
            self.inner.resolver.set_default(certified.clone());
        }
        for name in names {
            self.inner.resolver.insert(name, certified.clone());
        }
    }

    /// Whether a certificate is served for exactly `name`.
    pub fn serves(&self, name: &str) -> bool {
        self.inner.resolver.has(name)
    }

    /// Serves a certificate from the local CA for `names`, in memory only, where none is
    /// served yet: a domain waiting for its ACME certificate then shows runway's page
    /// under its own name instead of another name's certificate.
    pub fn serve_placeholder(&self, names: &[String]) -> Result<()> {
        if names.iter().all(|n| self.serves(n)) {
            return Ok(());
        }
        let Some(first) = names.first() else {
            return Ok(());
        };
        let issued = self.inner.ca.issue(names)?;
        let (chain, key) = parse_pem(first, &issued.chain_pem, &issued.key_pem)?;
        let certified = Arc::new(self.certified(first, chain, key)?);
        for name in names.iter().filter(|n| !self.serves(n)) {
            self.inner.resolver.insert(name, certified.clone());
        }
        Ok(())
    }

    /// Serves, for each of `domains` (former base domains, see [`former_base_domains`]), a
    /// wildcard certificate from the local CA for `*.<domain>` (and `<domain>`), in memory
    /// only, so that services created under a former base domain keep a certificate that
    /// clients trusting the CA accept. A name is served only where nothing else serves
    /// it: a certificate saved for it (an ACME wildcard of the time it was the base
    /// domain, a custom domain) keeps winning, and the bare `<domain>` is left alone when
    /// a wildcard of its parent covers it, so the base domain's and custom domains'
    /// certificates never change. Names served by an earlier call for a domain no longer
    /// in `domains` stop being served. Blocking (key generation) when a domain is new.
    pub fn serve_former_base_domains(&self, domains: &BTreeSet<String>) -> Result<()> {
        let resolver = &self.inner.resolver;
        let mut served = self.inner.former.lock().unwrap_or_else(|e| e.into_inner());
        // Names no longer wanted go; so do records of names another certificate has
        // replaced since (that one stays).
        served.retain(|name, (domain, key)| {
            if domains.contains(domain.as_str()) && is_former(&self.inner.base_domain, domain) {
                return resolver.is_same(name, key);
            }
            resolver.remove_if_same(name, key);
            false
        });
        for domain in domains {
            if !is_former(&self.inner.base_domain, domain) {
                continue;
            }
            let wildcard = format!("*.{domain}");
            let parent_covered = domain
                .split_once('.')
                .is_some_and(|(_, parent)| self.serves(&format!("*.{parent}")));
            let mut names = Vec::new();
            if !self.serves(&wildcard) {
                names.push(wildcard.clone());
            }
            if !self.serves(domain) && !parent_covered {
                names.push(domain.clone());
            }
            if names.is_empty() {
                continue;
            }
            let issued = self.inner.ca.issue(&[wildcard.clone(), domain.clone()])?;
            let (chain, key) = parse_pem(&wildcard, &issued.chain_pem, &issued.key_pem)?;
            let certified = Arc::new(self.certified(&wildcard, chain, key)?);
            for name in names {
                resolver.insert(&name, certified.clone());
                served.insert(name, (domain.clone(), certified.clone()));
            }
            tracing::info!(%domain, "serving a local CA wildcard for a former base domain");
        }
        Ok(())
    }

    /// Stops serving `names` and forgets the saved certificate of the first (the base
    /// domain's names go back to the local CA's wildcard).
    pub fn remove_certificate(&self, names: &[String]) -> Result<()> {
        let Some(first) = names.first() else {
            return Ok(());
        };
        let path = self.domain_path(first);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("cannot remove {}", path.display()))(e)),
        }
        for name in names {
            self.inner.resolver.remove(name);
        }
        if *first == format!("*.{}", self.inner.base_domain) {
            self.load_wildcard()?;
        }
        Ok(())
    }

    /// Issues a certificate for `domain` from the local CA and saves it (for custom
    /// domains until a public CA has issued one, and for tests).
    pub fn issue_local(&self, domain: &str) -> Result<()> {
        if !valid_domain(domain) {
            return Err(CertsError::InvalidDomain(domain.to_string()));
        }
        let issued = self.inner.ca.issue(&[domain.to_string()])?;
        self.save(domain, &issued.chain_pem, &issued.key_pem)
    }

    /// Stops serving `domain`'s certificate and forgets the saved copy; whether there
    /// was one.
    pub fn remove(&self, domain: &str) -> Result<bool> {
        let path = self.domain_path(domain);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("cannot remove {}", path.display()))(e)),
        }
        Ok(self.inner.resolver.remove(domain))
    }

    fn certified(
        &self,
        domain: &str,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<CertifiedKey> {
        if !valid_domain(domain) {
            return Err(CertsError::InvalidDomain(domain.to_string()));
        }
        let invalid = |reason: String| CertsError::InvalidCertificate {
            domain: domain.to_string(),
            reason,
        };
        if chain.is_empty() {
            return Err(invalid("the chain holds no certificate".into()));
        }
        CertifiedKey::from_der(chain, key, &self.inner.provider).map_err(|e| invalid(e.to_string()))
    }

    fn domain_path(&self, domain: &str) -> PathBuf {
        // '*' is legal in file names but awkward in shells; '_' never occurs in a valid
        // domain, so the mapping cannot collide.
        let file = format!("{}.json", domain.replace('*', "_"));
        self.inner.dir.join(DOMAINS_DIR).join(file)
    }

    fn load_wildcard(&self) -> Result<()> {
        let base = &self.inner.base_domain;
        let names = vec![format!("*.{base}"), base.clone()];
        let path = self.inner.dir.join(WILDCARD_STATE);
        let now = time::OffsetDateTime::now_utc();
        let current = match read_json::<StoredCert>(&path)? {
            Some(stored)
                if stored.names == names
                    && stored
                        .not_after
                        .is_some_and(|t| t > (now + RENEW_BEFORE).unix_timestamp()) =>
            {
                let key_pem = open_key(&self.inner.master, &path, &stored.key_sealed)?;
                match parse_pem(base, &stored.chain_pem, &key_pem)
                    .and_then(|(chain, key)| self.certified(base, chain, key))
                {
                    Ok(certified) => Some(certified),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "reissuing an unusable wildcard certificate");
                        None
                    }
                }
            }
            _ => None,
        };
        let certified = match current {
            Some(certified) => certified,
            None => {
                let Issued {
                    chain_pem,
                    key_pem,
                    not_after,
                } = self.inner.ca.issue(&names)?;
                let stored = StoredCert {
                    names: names.clone(),
                    chain_pem: chain_pem.clone(),
                    key_sealed: self
                        .inner
                        .master
                        .seal(&seal_context(&path), key_pem.as_bytes())?,
                    not_after: Some(not_after),
                };
                write_json(&path, &stored)?;
                tracing::info!(domain = %base, "issued the wildcard certificate");
                let (chain, key) = parse_pem(base, &chain_pem, &key_pem)?;
                self.certified(base, chain, key)?
            }
        };
        // A wildcard from the ACME CA, when there is one, is served instead.
        if self.domain_path(&names[0]).exists() {
            return Ok(());
        }
        let certified = Arc::new(certified);
        self.inner.resolver.set_default(certified.clone());
        for name in &names {
            self.inner.resolver.insert(name, certified.clone());
        }
        Ok(())
    }

    fn load_domains(&self) -> Result<()> {
        let dir = self.inner.dir.join(DOMAINS_DIR);
        let entries =
            std::fs::read_dir(&dir).map_err(io(format!("cannot list {}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io(format!("cannot list {}", dir.display())))?;
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            // One bad file must not take the others (or the server) down.
            let loaded = (|| -> Result<()> {
                let Some(stored) = read_json::<StoredCert>(&path)? else {
                    return Ok(());
                };
                let domain = stored.names.first().cloned().unwrap_or_default();
                let key_pem = open_key(&self.inner.master, &path, &stored.key_sealed)?;
                let (chain, key) = parse_pem(&domain, &stored.chain_pem, &key_pem)?;
                let certified = Arc::new(self.certified(&domain, chain, key)?);
                self.serve(&stored.names, certified);
                Ok(())
            })();
            if let Err(e) = loaded {
                tracing::warn!(path = %path.display(), error = %e, "skipping a stored certificate");
            }
        }
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(format!("cannot create {}", dir.display())))
}

/// Binds a sealed key to the file it is stored in, so it cannot be moved to another.
fn seal_context(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("runway-certs:{name}")
}

fn open_key(master: &MasterKey, path: &Path, sealed: &str) -> Result<String> {
    let plain = master.open(&seal_context(path), sealed)?;
    String::from_utf8(plain).map_err(|_| CertsError::Corrupt {
        path: path.display().to_string(),
        reason: "the sealed key is not PEM text".into(),
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(format!("cannot read {}", path.display()))(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| CertsError::Corrupt {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| CertsError::Corrupt {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    runway_store::fs::write_atomic(path, &text, 0o600)?;
    Ok(())
}

fn parse_pem(
    domain: &str,
    chain_pem: &str,
    key_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let invalid = |reason: String| CertsError::InvalidCertificate {
        domain: domain.to_string(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("certificate PEM: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| invalid(format!("private key PEM: {e}")))?;
    Ok((chain, key))
}

/// What the issuer records of a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafInfo {
    /// The serial number in hex.
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    /// `base64url(AKI).base64url(serial)` (RFC 9773), when the leaf has an AKI.
    pub ari_id: Option<String>,
}

fn leaf_info(domain: &str, chain: &[CertificateDer<'static>]) -> Result<LeafInfo> {
    let invalid = |reason: String| CertsError::InvalidCertificate {
        domain: domain.to_string(),
        reason,
    };
    let leaf = chain
        .first()
        .ok_or_else(|| invalid("the chain holds no certificate".into()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| invalid(format!("cannot parse the leaf: {e}")))?;
    let ari_id = instant_acme::CertificateIdentifier::try_from(leaf)
        .ok()
        .map(|id| id.to_string());
    Ok(LeafInfo {
        serial: parsed.raw_serial_as_string().replace(':', ""),
        not_before: parsed.validity().not_before.timestamp(),
        not_after: parsed.validity().not_after.timestamp(),
        ari_id,
    })
}

#[cfg(test)]
mod tests;
