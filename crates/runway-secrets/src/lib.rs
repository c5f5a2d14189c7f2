//! Access keys, envelope encryption and the secret stores (runway's IAM, KMS, Secrets
//! Manager and SSM Parameter Store). A master key in the data directory (mode 0600) seals
//! every secret runway keeps in its store with AES-256-GCM: access keys, connection
//! credentials, and the material of [KMS keys](kms), which in turn wrap the data keys
//! that seal each [secret](secretsmanager) version and SecureString
//! [parameter](parameters). A copy of the database alone reveals nothing.
//! [`references`] resolves App Runner's secret references for instances. Failed sign-ins
//! are limited per client address ([`AuthThrottle`]).
//!
//! This crate must never log, print or return a secret except to the caller that asked
//! for that secret, and never store one unsealed. The API's wire shapes are not its
//! business (`runway-api` has them); the rules of the stores are.

#![forbid(unsafe_code)]

pub mod kms;
pub mod parameters;
pub mod references;
pub mod secretsmanager;
mod throttle;

pub use throttle::{AUTH_LOG_TARGET, AuthFailure, AuthThrottle, ThrottleConfig};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use runway_store::{Record, StoreError, Txn, Typed};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

const KEY_LEN: usize = 32;

/// What can go wrong with keys and secrets.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The master key file cannot be read or written.
    #[error("master key {path}: {reason}")]
    MasterKey { path: String, reason: String },
    /// A sealed value does not open with this master key (tampered, or another key).
    #[error("a sealed secret does not open with this data directory's master key")]
    Unseal,
    /// The system random generator failed.
    #[error("the system random number generator failed")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T> = std::result::Result<T, SecretsError>;

/// The key that seals every stored secret.
pub struct MasterKey {
    key: RandomizedNonceKey,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

fn random(out: &mut [u8]) -> Result<()> {
    aws_lc_rs::rand::fill(out).map_err(|_| SecretsError::Random)
}

impl MasterKey {
    /// Loads the master key from `path`, creating it (mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        let err = |reason: String| SecretsError::MasterKey {
            path: path.display().to_string(),
            reason,
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = vec![0u8; KEY_LEN];
                random(&mut bytes)?;
                runway_store::fs::write_atomic(path, &bytes, 0o600)?;
                bytes
            }
            Err(e) => return Err(err(e.to_string())),
        };
        if bytes.len() != KEY_LEN {
            return Err(err(format!(
                "must hold {KEY_LEN} bytes, holds {}",
                bytes.len()
            )));
        }
        Self::from_bytes(&bytes).ok_or_else(|| err("is not a valid AES-256 key".into()))
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        RandomizedNonceKey::new(&AES_256_GCM, bytes)
            .ok()
            .map(|key| MasterKey { key })
    }

    /// Encrypts `plaintext`, bound to `context` (say, the record's id) so that a sealed
    /// value cannot be moved to another record. Returns base64 of nonce + ciphertext + tag.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String> {
        let mut data = plaintext.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| SecretsError::Random)?;
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&data);
        Ok(BASE64.encode(out))
    }

    /// Decrypts what [`MasterKey::seal`] produced for the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>> {
        let raw = BASE64.decode(sealed).map_err(|_| SecretsError::Unseal)?;
        if raw.len() < NONCE_LEN {
            return Err(SecretsError::Unseal);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretsError::Unseal)?;
        let mut data = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| SecretsError::Unseal)?;
        Ok(plain.to_vec())
    }
}

/// A secret access key; its Debug form hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// A stored access key: the secret is sealed with the master key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AccessKeyRecord {
    id: String,
    sealed_secret: String,
    label: String,
    created_at_ms: i64,
}

impl Record for AccessKeyRecord {
    const KIND: &'static str = "access_key";
    fn key(&self) -> &str {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        Some(&self.label)
    }
}

/// The AWS-style alphabet of access key ids.
const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Access key ids start with this, so that they are recognisably runway's.
const ID_PREFIX: &str = "RWAY";

fn new_access_key_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    random(&mut bytes)?;
    let tail: String = bytes
        .iter()
        .map(|b| ID_ALPHABET[usize::from(*b) % ID_ALPHABET.len()] as char)
        .collect();
    Ok(format!("{ID_PREFIX}{tail}"))
}

fn new_secret() -> Result<SecretKey> {
    let mut bytes = [0u8; 30];
    random(&mut bytes)?;
    Ok(SecretKey(BASE64.encode(bytes)))
}

/// Creates an access key labelled `label` (say, `admin`) and returns its id and secret.
pub fn create_access_key(
    tx: &mut dyn Txn,
    master: &MasterKey,
    label: &str,
) -> Result<(String, SecretKey)> {
    let id = new_access_key_id()?;
    let secret = new_secret()?;
    let record = AccessKeyRecord {
        sealed_secret: master.seal(&id, secret.0.as_bytes())?,
        id: id.clone(),
        label: label.to_string(),
        created_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    };
    tx.create(&record)?;
    Ok((id, secret))
}

/// The secret of access key `id`, or `None` if there is no such key.
pub fn secret_for(tx: &dyn Txn, master: &MasterKey, id: &str) -> Result<Option<SecretKey>> {
    let Some(record) = tx.load::<AccessKeyRecord>(id)? else {
        return Ok(None);
    };
    let plain = master.open(id, &record.sealed_secret)?;
    let secret = String::from_utf8(plain).map_err(|_| SecretsError::Unseal)?;
    Ok(Some(SecretKey(secret)))
}

/// Whether any access key exists (false on a brand-new data directory).
pub fn any_access_key(tx: &dyn Txn) -> Result<bool> {
    let query = runway_store::Query {
        limit: Some(1),
        ..Default::default()
    };
    Ok(!tx.list(AccessKeyRecord::KIND, &query)?.is_empty())
}

/// What a connection carries to reach its provider: a token (with a user name) for git
/// over https and for registries, a private key for git over ssh, and the secret its push
/// webhooks are signed with. Stored sealed; never returned by the API.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionCredentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_private_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

impl fmt::Debug for ConnectionCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionCredentials")
            .field("username", &self.username)
            .field("token", &self.token.as_ref().map(|_| ".."))
            .field(
                "ssh_private_key",
                &self.ssh_private_key.as_ref().map(|_| ".."),
            )
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| ".."),
            )
            .finish()
    }
}

/// A connection's credentials, sealed, by connection ARN.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ConnectionSecretRecord {
    arn: String,
    sealed: String,
}

impl Record for ConnectionSecretRecord {
    const KIND: &'static str = "connection_secret";
    fn key(&self) -> &str {
        &self.arn
    }
}

/// Stores (replaces) the credentials of connection `arn`.
pub fn save_connection_credentials(
    tx: &mut dyn Txn,
    master: &MasterKey,
    arn: &str,
    credentials: &ConnectionCredentials,
) -> Result<()> {
    let plain = serde_json::to_vec(credentials).map_err(|_| SecretsError::Unseal)?;
    tx.save(&ConnectionSecretRecord {
        arn: arn.to_string(),
        sealed: master.seal(arn, &plain)?,
    })?;
    Ok(())
}

/// The credentials of connection `arn`, if it has any.
pub fn connection_credentials(
    tx: &dyn Txn,
    master: &MasterKey,
    arn: &str,
) -> Result<Option<ConnectionCredentials>> {
    let Some(record) = tx.load::<ConnectionSecretRecord>(arn)? else {
        return Ok(None);
    };
    let plain = master.open(arn, &record.sealed)?;
    serde_json::from_slice(&plain)
        .map(Some)
        .map_err(|_| SecretsError::Unseal)
}

/// Forgets the credentials of connection `arn` (when it is deleted).
pub fn remove_connection_credentials(tx: &mut dyn Txn, arn: &str) -> Result<()> {
    tx.remove::<ConnectionSecretRecord>(arn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use runway_store::{SqliteStore, Store};

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let key = MasterKey::load_or_create(&path).unwrap();
        let sealed = key.seal("ctx", b"hunter2").unwrap();
        assert!(!sealed.contains("hunter2"));
        let again = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(again.open("ctx", &sealed).unwrap(), b"hunter2");
        assert!(matches!(
            again.open("other", &sealed),
            Err(SecretsError::Unseal)
        ));
        let other = MasterKey::load_or_create(&dir.path().join("other.key")).unwrap();
        assert!(matches!(
            other.open("ctx", &sealed),
            Err(SecretsError::Unseal)
        ));
        assert!(matches!(key.open("ctx", "!!"), Err(SecretsError::Unseal)));
        std::fs::write(&path, b"short").unwrap();
        assert!(MasterKey::load_or_create(&path).is_err());
    }

    #[test]
    fn access_keys_are_stored_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::load_or_create(&dir.path().join("master.key")).unwrap();
        let store = SqliteStore::in_memory().unwrap();
        let mut tx = store.begin().unwrap();
        assert!(!any_access_key(&*tx).unwrap());
        let (id, secret) = create_access_key(&mut *tx, &master, "admin").unwrap();
        assert!(id.starts_with(ID_PREFIX) && id.len() == 20);
        assert_eq!(secret.expose().len(), 40);
        let doc = tx.get("access_key", &id).unwrap().unwrap();
        assert!(!doc.body.contains(secret.expose()));
        assert_eq!(
            secret_for(&*tx, &master, &id).unwrap(),
            Some(secret.clone())
        );
        assert_eq!(secret_for(&*tx, &master, "RWAYNOPE").unwrap(), None);
        assert!(any_access_key(&*tx).unwrap());
        assert_eq!(format!("{secret:?}"), "SecretKey(..)");
    }

    #[test]
    fn connection_credentials_are_sealed_and_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::load_or_create(&dir.path().join("master.key")).unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        let arn = "arn:aws:apprunner:us-east-1:000000000000:connection/gh/abc";
        let creds = ConnectionCredentials {
            username: Some("bot".into()),
            token: Some("ghp_very_secret".into()),
            ssh_private_key: None,
            webhook_secret: Some("hook-secret".into()),
        };
        let mut tx = store.begin().unwrap();
        assert!(
            connection_credentials(&*tx, &master, arn)
                .unwrap()
                .is_none()
        );
        save_connection_credentials(&mut *tx, &master, arn, &creds).unwrap();
        tx.commit().unwrap();
        let tx = store.begin().unwrap();
        let raw = tx
            .list(ConnectionSecretRecord::KIND, &Default::default())
            .unwrap();
        let stored = format!("{raw:?}");
        assert!(!stored.contains("ghp_very_secret") && !stored.contains("hook-secret"));
        assert!(!format!("{creds:?}").contains("ghp_very_secret"));
        assert_eq!(
            connection_credentials(&*tx, &master, arn).unwrap(),
            Some(creds)
        );
        drop(tx);
        let mut tx = store.begin().unwrap();
        remove_connection_credentials(&mut *tx, arn).unwrap();
        assert!(
            connection_credentials(&*tx, &master, arn)
                .unwrap()
                .is_none()
        );
    }
}

/// What the crate's unit tests share: a master key and a store.
#[cfg(test)]
pub(crate) mod test_env {
    use super::*;
    use runway_store::{SqliteStore, Store};

    pub const REGION: &str = "us-east-1";
    pub const ACCOUNT: &str = "000000000000";

    pub struct Env {
        _dir: tempfile::TempDir,
        pub master: MasterKey,
        pub store: SqliteStore,
    }

    impl Env {
        pub fn new() -> Env {
            let dir = tempfile::tempdir().unwrap();
            let master = MasterKey::load_or_create(&dir.path().join("master.key")).unwrap();
            let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
            Env {
                _dir: dir,
                master,
                store,
            }
        }

        /// KMS as a call at `now` sees it.
        pub fn kms(&self, now: runway_model::Timestamp) -> kms::Kms<'_> {
            kms::Kms {
                master: &self.master,
                region: REGION,
                account: ACCOUNT,
                now,
            }
        }

        pub fn begin(&self) -> Box<dyn Txn + '_> {
            self.store.begin().unwrap()
        }

        /// Every stored document's body, for checks that nothing is in plaintext.
        pub fn dump(&self) -> String {
            let tx = self.begin();
            let mut out = String::new();
            for kind in [
                "kms_key",
                "kms_alias",
                "sm_secret",
                "sm_version",
                "ssm_parameter",
                "ssm_parameter_version",
            ] {
                for doc in tx.list(kind, &Default::default()).unwrap() {
                    out.push_str(&doc.body);
                    out.push('\n');
                }
            }
            out
        }
    }
}
