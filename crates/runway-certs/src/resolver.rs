//! Picks the certificate for a TLS handshake by its server name (SNI), lock-free: the map
//! is swapped whole when a certificate is added or removed, which is rare.

use crate::challenges::{ACME_TLS_ALPN, Challenges};
use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Certificates by name: exact names first, then `*.` + the name's parent for its
/// wildcard, then the default (the base domain's wildcard certificate), which is also
/// served to clients that send no server name.
#[derive(Debug)]
pub struct SniResolver {
    by_name: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    default: ArcSwapOption<CertifiedKey>,
    /// TLS-ALPN-01 answers, for handshakes that offer only `acme-tls/1`.
    challenges: ArcSwapOption<Challenges>,
    /// Serialises writers, so that two inserts never lose one another.
    write: Mutex<()>,
}

impl Default for SniResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl SniResolver {
    /// An empty resolver: every handshake fails until a certificate is added.
    pub fn new() -> Self {
        SniResolver {
            by_name: ArcSwap::from_pointee(HashMap::new()),
            default: ArcSwapOption::empty(),
            challenges: ArcSwapOption::empty(),
            write: Mutex::new(()),
        }
    }

    /// Serves `key` for `name` (exact, or `*.parent` for parent's subdomains).
    pub fn insert(&self, name: &str, key: Arc<CertifiedKey>) {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut map = HashMap::clone(&self.by_name.load());
        map.insert(name.to_ascii_lowercase(), key);
        self.by_name.store(Arc::new(map));
    }

    /// Stops serving `name`'s certificate; whether there was one.
    pub fn remove(&self, name: &str) -> bool {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut map = HashMap::clone(&self.by_name.load());
        let removed = map.remove(&name.to_ascii_lowercase()).is_some();
        self.by_name.store(Arc::new(map));
        removed
    }

    /// Stops serving `name`'s certificate if it is still `key` (not one set since);
    /// whether it was.
    pub fn remove_if_same(&self, name: &str, key: &Arc<CertifiedKey>) -> bool {
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let name = name.to_ascii_lowercase();
        if !self.is_same(&name, key) {
            return false;
        }
        let mut map = HashMap::clone(&self.by_name.load());
        map.remove(&name);
        self.by_name.store(Arc::new(map));
        true
    }

    /// Whether `key` is the certificate set for exactly `name`.
    pub fn is_same(&self, name: &str, key: &Arc<CertifiedKey>) -> bool {
        self.by_name
            .load()
            .get(&name.to_ascii_lowercase())
            .is_some_and(|k| Arc::ptr_eq(k, key))
    }

    /// Answers TLS-ALPN-01 validations from `challenges` from now on.
    pub fn set_challenges(&self, challenges: Arc<Challenges>) {
        self.challenges.store(Some(challenges));
    }

    /// Whether a certificate is set for exactly `name`.
    pub fn has(&self, name: &str) -> bool {
        self.by_name.load().contains_key(&name.to_ascii_lowercase())
    }

    /// Serves `key` when no other certificate matches.
    pub fn set_default(&self, key: Arc<CertifiedKey>) {
        self.default.store(Some(key));
    }

    /// The certificate for `server_name`, if any matches or there is a default.
    pub fn lookup(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = server_name {
            let map = self.by_name.load();
            let lower;
            let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
                lower = name.to_ascii_lowercase();
                lower.as_str()
            } else {
                name
            };
            if let Some(key) = map.get(name) {
                return Some(key.clone());
            }
            if let Some((_, parent)) = name.split_once('.')
                && let Some(key) = map.get(&format!("*.{parent}"))
            {
                return Some(key.clone());
            }
        }
        self.default.load_full()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A TLS-ALPN-01 validation offers `acme-tls/1` and nothing else (RFC 8737 3): it
        // gets the challenge certificate or no handshake, never a served certificate.
        let mut alpn = hello.alpn().into_iter().flatten();
        if let (Some(ACME_TLS_ALPN), None) = (alpn.next(), alpn.next()) {
            let challenges = self.challenges.load();
            return hello
                .server_name()
                .and_then(|name| challenges.as_ref()?.tls_alpn01(name));
        }
        self.lookup(hello.server_name())
    }
}
