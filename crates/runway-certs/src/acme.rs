//! The ACME client's setup (instant-acme): which CA, how to reach it, and runway's account
//! there, whose key is stored sealed in the store so every restart uses the same account.

use crate::{CertsError, Result};
use instant_acme::{Account, AccountCredentials, NewAccount};
use runway_model::domains::ChallengeKind;
use runway_secrets::MasterKey;
use runway_store::{Record, Store, Typed};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Let's Encrypt's production directory, the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// How runway gets certificates from an ACME CA.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// The CA's directory URL.
    pub directory_url: String,
    /// Contact addresses for the account (`mailto:ops@example.com`).
    pub contact: Vec<String>,
    /// A PEM file with the root the directory's TLS certificate chains to, instead of
    /// the system's roots (a private or test CA such as pebble).
    pub ca_root: Option<PathBuf>,
    /// The challenge types runway may use, in order of preference.
    pub challenges: Vec<ChallengeKind>,
    /// How often a domain waiting for its DNS records is looked up again.
    pub check_interval: Duration,
    /// Where the router is reached publicly: a domain whose addresses are among these
    /// points at runway (HTTP-01 and TLS-ALPN-01 are possible).
    pub public_addresses: Vec<IpAddr>,
    /// The recursive resolver the DNS checks ask (the system's when `None`).
    pub resolver: Option<SocketAddr>,
    /// Whether the base domain's wildcard certificate comes from the CA (DNS-01, with
    /// runway's DNS server authoritative for the base domain) instead of the local CA.
    pub base_domain: bool,
}

impl AcmeConfig {
    /// Let's Encrypt, every challenge type (DNS-01 first), checks every 30 seconds.
    pub fn new(public_addresses: Vec<IpAddr>) -> Self {
        AcmeConfig {
            directory_url: LETS_ENCRYPT.to_string(),
            contact: Vec::new(),
            ca_root: None,
            challenges: vec![
                ChallengeKind::Dns01,
                ChallengeKind::Http01,
                ChallengeKind::TlsAlpn01,
            ],
            check_interval: Duration::from_secs(30),
            public_addresses,
            resolver: None,
            base_domain: false,
        }
    }
}

/// runway's account at a CA, kept in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AcmeAccountRecord {
    /// The directory URL: one account per CA.
    pub directory: String,
    /// The account's credentials (its URL and private key) as JSON, sealed.
    pub credentials_sealed: String,
}

impl Record for AcmeAccountRecord {
    const KIND: &'static str = "acme_account";
    fn key(&self) -> &str {
        &self.directory
    }
}

fn seal_context(directory: &str) -> String {
    format!("runway-certs:acme-account:{directory}")
}

fn acme_error(context: &str) -> impl FnOnce(instant_acme::Error) -> CertsError + '_ {
    move |e| CertsError::Acme(format!("{context}: {e}"))
}

fn builder(config: &AcmeConfig) -> Result<instant_acme::AccountBuilder> {
    match &config.ca_root {
        Some(root) => Account::builder_with_root(root).map_err(acme_error(&format!(
            "cannot trust the ACME CA root {}",
            root.display()
        ))),
        None => Account::builder().map_err(acme_error("cannot set up the ACME client")),
    }
}

/// The account at `config`'s CA: the stored one, or a new one (stored before use).
pub(crate) async fn account(
    config: &AcmeConfig,
    store: &dyn Store,
    master: &MasterKey,
) -> Result<Account> {
    let directory = config.directory_url.clone();
    let stored = {
        let tx = store.begin()?;
        tx.load::<AcmeAccountRecord>(&directory)?
    };
    if let Some(record) = stored {
        let plain = master.open(&seal_context(&directory), &record.credentials_sealed)?;
        let credentials: AccountCredentials =
            serde_json::from_slice(&plain).map_err(|e| CertsError::Corrupt {
                path: format!("acme_account {directory}"),
                reason: e.to_string(),
            })?;
        return builder(config)?
            .from_credentials(credentials)
            .await
            .map_err(acme_error(&format!(
                "cannot reach the ACME CA at {directory}"
            )));
    }
    let contact: Vec<&str> = config.contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder(config)?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.clone(),
            None,
        )
        .await
        .map_err(acme_error(&format!(
            "cannot create an account at the ACME CA {directory}"
        )))?;
    let json = serde_json::to_vec(&credentials).map_err(|e| CertsError::Corrupt {
        path: format!("acme_account {directory}"),
        reason: e.to_string(),
    })?;
    let record = AcmeAccountRecord {
        credentials_sealed: master.seal(&seal_context(&directory), &json)?,
        directory: directory.clone(),
    };
    let mut tx = store.begin()?;
    tx.save(&record)?;
    tx.commit()?;
    tracing::info!(directory = %directory, account = account.id(), "created an ACME account");
    Ok(account)
}
