//! The ACME challenges runway answers right now: HTTP-01 tokens (the router serves
//! them on plain HTTP before any redirect), TLS-ALPN-01 certificates (served by the SNI
//! resolver to clients that offer only `acme-tls/1`), and DNS-01 TXT records (handed to
//! whatever serves runway's zones). Rebuilt from the store's orders after a restart.

use arc_swap::ArcSwap;
use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Publishes DNS-01 TXT records where the CA will look them up (runway's DNS server).
pub trait TxtPublisher: Send + Sync + std::fmt::Debug + 'static {
    /// Serves exactly `records` (full name to values) from now on; answers carry them
    /// once this returns.
    fn publish(&self, records: BTreeMap<String, Vec<String>>) -> Result<(), String>;
}

/// One set of answers, for one order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OrderAnswers {
    /// HTTP-01: (host, token) to key authorization.
    pub http: Vec<(String, String, String)>,
    /// TLS-ALPN-01: host to key authorization.
    pub alpn: Vec<(String, String)>,
    /// DNS-01: TXT name to value (the key authorization's digest).
    pub txt: Vec<(String, String)>,
}

/// The answers of every order in flight, keyed by the domain whose order it is.
#[derive(Debug)]
pub struct Challenges {
    provider: Arc<CryptoProvider>,
    orders: Mutex<HashMap<String, OrderAnswers>>,
    http: ArcSwap<HashMap<(String, String), String>>,
    alpn: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    txt: Option<Arc<dyn TxtPublisher>>,
    /// Counts rebuilds, for whoever copies the answers elsewhere (the router process).
    changed: tokio::sync::watch::Sender<u64>,
}

/// The HTTP-01 and TLS-ALPN-01 answers in force, as another process needs them to answer
/// the same challenges ([`Challenges::answers`], [`Challenges::serve_answers`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HttpAnswers {
    /// HTTP-01: (host, token, key authorization).
    pub http: Vec<(String, String, String)>,
    /// TLS-ALPN-01: (host, key authorization).
    pub alpn: Vec<(String, String)>,
}

/// DNS-01's TXT value: the base64url SHA-256 of the key authorization (RFC 8555 8.4).
pub fn dns_value(key_authorization: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(key_authorization))
}

impl Challenges {
    /// No answers yet; DNS-01 records go to `txt` (none: DNS-01 is not offered).
    pub fn new(provider: Arc<CryptoProvider>, txt: Option<Arc<dyn TxtPublisher>>) -> Self {
        Challenges {
            provider,
            orders: Mutex::new(HashMap::new()),
            http: ArcSwap::from_pointee(HashMap::new()),
            alpn: ArcSwap::from_pointee(HashMap::new()),
            txt,
            changed: tokio::sync::watch::channel(0).0,
        }
    }

    /// Every HTTP-01 and TLS-ALPN-01 answer of the orders in flight.
    pub fn answers(&self) -> HttpAnswers {
        let orders = self.orders.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = HttpAnswers::default();
        for answers in orders.values() {
            all.http.extend(answers.http.iter().cloned());
            all.alpn.extend(answers.alpn.iter().cloned());
        }
        all.http.sort();
        all.alpn.sort();
        all
    }

    /// Changes whenever the answers do.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Answers exactly `answers` from now on, in place of every order's (for a process
    /// that serves what another one's issuer decided: the router process).
    pub fn serve_answers(&self, answers: HttpAnswers) -> Result<(), String> {
        let mut orders = self.orders.lock().unwrap_or_else(|e| e.into_inner());
        orders.clear();
        orders.insert(
            String::new(),
            OrderAnswers {
                http: answers.http,
                alpn: answers.alpn,
                txt: Vec::new(),
            },
        );
        self.rebuild(&orders)
    }

    /// Whether DNS-01 records can be published.
    pub fn serves_dns(&self) -> bool {
        self.txt.is_some()
    }

    /// The key authorization for HTTP-01 `token` on `host`, if runway answers it.
    pub fn http01(&self, host: &str, token: &str) -> Option<String> {
        self.http
            .load()
            .get(&(host.to_ascii_lowercase(), token.to_string()))
            .cloned()
    }

    /// The TLS-ALPN-01 certificate for `host`, if runway answers one.
    pub fn tls_alpn01(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        self.alpn.load().get(&host.to_ascii_lowercase()).cloned()
    }

    /// Answers `answers` for `domain`'s order from now on (replacing its previous ones).
    pub(crate) fn set(&self, domain: &str, answers: OrderAnswers) -> Result<(), String> {
        let mut orders = self.orders.lock().unwrap_or_else(|e| e.into_inner());
        if orders.get(domain) == Some(&answers) {
            return Ok(());
        }
        orders.insert(domain.to_string(), answers);
        self.rebuild(&orders)
    }

    /// Stops answering `domain`'s order.
    pub(crate) fn clear(&self, domain: &str) -> Result<(), String> {
        let mut orders = self.orders.lock().unwrap_or_else(|e| e.into_inner());
        if orders.remove(domain).is_none() {
            return Ok(());
        }
        self.rebuild(&orders)
    }

    fn rebuild(&self, orders: &HashMap<String, OrderAnswers>) -> Result<(), String> {
        let mut http = HashMap::new();
        let mut alpn = HashMap::new();
        let mut txt: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for answers in orders.values() {
            for (host, token, key_authorization) in &answers.http {
                http.insert((host.clone(), token.clone()), key_authorization.clone());
            }
            for (host, key_authorization) in &answers.alpn {
                let key = alpn_certificate(host, key_authorization, &self.provider)?;
                alpn.insert(host.clone(), Arc::new(key));
            }
            for (name, value) in &answers.txt {
                txt.entry(name.clone()).or_default().push(value.clone());
            }
        }
        self.http.store(Arc::new(http));
        self.alpn.store(Arc::new(alpn));
        self.changed.send_modify(|n| *n += 1);
        if let Some(publisher) = &self.txt {
            publisher.publish(txt)?;
        }
        Ok(())
    }
}

/// The self-signed certificate TLS-ALPN-01 validates: `host` as its only name and the
/// SHA-256 of the key authorization in the critical acmeIdentifier extension (RFC 8737).
fn alpn_certificate(
    host: &str,
    key_authorization: &str,
    provider: &Arc<CryptoProvider>,
) -> Result<CertifiedKey, String> {
    let digest = Sha256::digest(key_authorization.as_bytes());
    let mut params =
        CertificateParams::new(vec![host.to_string()]).map_err(|e| format!("{host}: {e}"))?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(&digest)];
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| e.to_string())?;
    // Not `CertifiedKey::from_der`: its check that key and certificate match parses the
    // certificate with webpki, which refuses the critical acmeIdentifier extension.
    Ok(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_values_are_unpadded_base64url_digests() {
        // RFC 8555 section 8.4: 32 bytes, base64url without padding.
        let value = dns_value("token.thumbprint");
        assert_eq!(value.len(), 43);
        assert!(!value.contains(['=', '+', '/']));
    }
}
