//! runway's KMS: symmetric keys whose material is sealed by the master key, aliases,
//! encryption bound to an encryption context, data keys, rotation (old material stays, so
//! what it encrypted still decrypts) and scheduled deletion; and the envelopes that every
//! secret value and SecureString is stored in (a fresh data key per value, wrapped by a
//! KMS key).
//!
//! Ciphertexts are runway's own format: `rwk1`, the key id, the id of the key material
//! that encrypted, a nonce, then AES-256-GCM ciphertext and tag, with the key, material
//! and encryption context as associated data. They carry their key, so Decrypt needs no
//! KeyId, as with AWS's symmetric keys.
//!
//! Scheduled deletions and automatic rotations happen when a key is next used or listed
//! after they are due (every caller holds a write transaction), so no timer is needed and
//! a crash loses nothing.

use crate::{MasterKey, SecretsError, random};
use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use runway_model::Timestamp;
use runway_store::{Query, Record, StoreError, Txn, Typed};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An encryption context: non-secret pairs a ciphertext is bound to.
pub type EncryptionContext = BTreeMap<String, String>;

const DAY_MS: i64 = 24 * 3600 * 1000;
const KEY_LEN: usize = 32;
const MATERIAL_ID_LEN: usize = 32;
const KEY_ID_LEN: usize = 36;
const TAG_LEN: usize = 16;
const BLOB_MAGIC: &[u8; 4] = b"rwk1";
const ENVELOPE_MAGIC: &[u8; 4] = b"rwe1";
/// On-demand rotations allowed per key, as at AWS.
const MAX_ON_DEMAND_ROTATIONS: usize = 10;
/// The largest plaintext Encrypt takes.
pub const MAX_PLAINTEXT: usize = 4096;
/// AWS-managed keys and customer keys with rotation on rotate after this many days.
pub const DEFAULT_ROTATION_DAYS: u32 = 365;

/// What can go wrong in KMS; each variant is one AWS KMS error type.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// NotFoundException.
    #[error("{0}")]
    NotFound(String),
    /// DisabledException.
    #[error("{0}")]
    Disabled(String),
    /// KMSInvalidStateException.
    #[error("{0}")]
    InvalidState(String),
    /// InvalidCiphertextException.
    #[error(
        "the ciphertext is not a KMS ciphertext of this server, or its encryption context does not match"
    )]
    InvalidCiphertext,
    /// IncorrectKeyException.
    #[error("{0}")]
    IncorrectKey(String),
    /// AlreadyExistsException.
    #[error("{0}")]
    AlreadyExists(String),
    /// InvalidAliasNameException.
    #[error("{0}")]
    InvalidAliasName(String),
    /// UnsupportedOperationException.
    #[error("{0}")]
    Unsupported(String),
    /// ValidationException.
    #[error("{0}")]
    Validation(String),
    /// LimitExceededException.
    #[error("{0}")]
    LimitExceeded(String),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

impl From<StoreError> for KmsError {
    fn from(e: StoreError) -> Self {
        KmsError::Secrets(SecretsError::Store(e))
    }
}

type Result<T, E = KmsError> = std::result::Result<T, E>;

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    Enabled,
    Disabled,
    PendingDeletion,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
        }
    }
}

/// Who manages a key: AWS-managed keys (`alias/aws/<service>`) are made on first use and
/// rotate yearly; users manage their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyManager {
    #[serde(rename = "AWS")]
    Aws,
    #[serde(rename = "CUSTOMER")]
    Customer,
}

impl KeyManager {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyManager::Aws => "AWS",
            KeyManager::Customer => "CUSTOMER",
        }
    }
}

/// How a key material came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RotationType {
    #[serde(rename = "AUTOMATIC")]
    Automatic,
    #[serde(rename = "ON_DEMAND")]
    OnDemand,
}

/// One generation of a key's material, sealed by the master key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Material {
    /// 64 hex digits (AWS's KeyMaterialId).
    pub id: String,
    sealed: String,
    pub created_at: Timestamp,
    /// How it replaced the one before (none for the first).
    #[serde(default)]
    pub rotation: Option<RotationType>,
}

/// A KMS key. Its materials are oldest first; the last encrypts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub arn: String,
    #[serde(default)]
    pub description: String,
    pub manager: KeyManager,
    pub state: KeyState,
    pub created_at: Timestamp,
    #[serde(default)]
    pub deletion_date: Option<Timestamp>,
    #[serde(default)]
    pub pending_window_days: Option<u32>,
    /// Days between automatic rotations, when they are on.
    #[serde(default)]
    pub rotation_period_days: Option<u32>,
    #[serde(default)]
    pub next_rotation: Option<Timestamp>,
    pub materials: Vec<Material>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

impl Record for KeyRecord {
    const KIND: &'static str = "kms_key";
    fn key(&self) -> &str {
        &self.id
    }
}

impl KeyRecord {
    /// The id of the material that encrypts now.
    pub fn current_material(&self) -> Option<&str> {
        self.materials.last().map(|m| m.id.as_str())
    }

    /// Days between automatic rotations and the next one, if they are on. While a key is
    /// pending deletion they are off (as GetKeyRotationStatus reports at AWS); cancelling
    /// the deletion turns them back on.
    pub fn automatic_rotation(&self) -> Option<(u32, Option<Timestamp>)> {
        if self.state == KeyState::PendingDeletion {
            return None;
        }
        self.rotation_period_days.map(|d| (d, self.next_rotation))
    }
}

/// An alias (`alias/<name>`) naming a key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AliasRecord {
    pub name: String,
    pub target: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Record for AliasRecord {
    const KIND: &'static str = "kms_alias";
    fn key(&self) -> &str {
        &self.name
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.target)
    }
}

/// What a new key is made with.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub description: String,
    pub tags: Vec<(String, String)>,
}

/// A data key: its plaintext (for the caller to use and forget) and the same key
/// encrypted under a KMS key.
pub struct DataKey {
    pub plaintext: Vec<u8>,
    pub ciphertext: Vec<u8>,
    pub key_arn: String,
    pub material_id: String,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("key_arn", &self.key_arn)
            .finish_non_exhaustive()
    }
}

/// A value sealed in an envelope: base64 of `rwe1`, the length of the wrapped data key
/// (two bytes, big-endian), the data key as a KMS ciphertext, then the value's nonce,
/// ciphertext and tag under the data key. This is the form stored, and the form shown
/// where AWS shows a ciphertext (a SecureString read without decryption).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(String);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealed(..)")
    }
}

impl Sealed {
    /// The envelope as base64 text (ciphertext only).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn parts(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        let raw = BASE64.decode(&self.0).ok()?;
        let rest = raw.strip_prefix(ENVELOPE_MAGIC.as_slice())?;
        let (len, rest) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len {
            return None;
        }
        let (wrapped, value) = rest.split_at(len);
        Some((wrapped.to_vec(), value.to_vec()))
    }

    /// The id of the KMS key that wraps the data key.
    pub fn key_id(&self) -> Option<String> {
        let (wrapped, _) = self.parts()?;
        parse_blob(&wrapped).map(|b| b.key_id.to_string())
    }
}

/// A KMS ciphertext, taken apart.
struct Blob<'a> {
    key_id: &'a str,
    material: &'a [u8],
    nonce: &'a [u8],
    sealed: &'a [u8],
}

fn parse_blob(blob: &[u8]) -> Option<Blob<'_>> {
    let rest = blob.strip_prefix(BLOB_MAGIC.as_slice())?;
    if rest.len() < KEY_ID_LEN + MATERIAL_ID_LEN + NONCE_LEN + TAG_LEN {
        return None;
    }
    let (key_id, rest) = rest.split_at(KEY_ID_LEN);
    let (material, rest) = rest.split_at(MATERIAL_ID_LEN);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    Some(Blob {
        key_id: std::str::from_utf8(key_id).ok()?,
        material,
        nonce,
        sealed,
    })
}

/// The associated data of a ciphertext: what it is bound to, unambiguously encoded.
fn associated_data(prefix: &[u8], context: &EncryptionContext) -> Vec<u8> {
    let mut out = prefix.to_vec();
    for (k, v) in context {
        for part in [k, v] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    out
}

fn aes_key(bytes: &[u8]) -> Result<RandomizedNonceKey> {
    RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| KmsError::InvalidCiphertext)
}

fn seal_with(key: &RandomizedNonceKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut data = plaintext.to_vec();
    let nonce = key
        .seal_in_place_append_tag(Aad::from(aad), &mut data)
        .map_err(|_| SecretsError::Random)?;
    let mut out = nonce.as_ref().to_vec();
    out.extend_from_slice(&data);
    Ok(out)
}

fn open_with(key: &RandomizedNonceKey, aad: &[u8], nonce: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KmsError::InvalidCiphertext)?;
    let mut data = sealed.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(aad), &mut data)
        .map_err(|_| KmsError::InvalidCiphertext)?;
    Ok(plain.to_vec())
}

fn later(t: Timestamp, days: u32) -> Timestamp {
    Timestamp::from_millis(t.millis().saturating_add(i64::from(days) * DAY_MS))
}

fn is_key_id(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok_and(|u| u.hyphenated().to_string() == s)
}

/// Checks an alias name as CreateAlias and UpdateAlias take it.
fn check_alias_name(name: &str, creating: bool) -> Result<()> {
    let valid = name.len() <= 256
        && name
            .strip_prefix("alias/")
            .is_some_and(|rest| !rest.is_empty())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'_' | b'-'));
    if !valid {
        return Err(KmsError::Validation(format!(
            "AliasName {name:?} must begin with alias/ and hold only letters, digits, ':', '/', '_' and '-' (at most 256 characters)"
        )));
    }
    if creating && name.starts_with("alias/aws/") {
        return Err(KmsError::InvalidAliasName(
            "Alias must not begin with 'alias/aws/': those names are reserved for AWS managed keys"
                .into(),
        ));
    }
    Ok(())
}

/// KMSInvalidStateException for a key pending deletion.
fn not_pending(key: &KeyRecord) -> Result<()> {
    if key.state == KeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{} is pending deletion.",
            key.arn
        )));
    }
    Ok(())
}

/// DisabledException or KMSInvalidStateException unless the key is enabled.
fn enabled(key: &KeyRecord) -> Result<()> {
    not_pending(key)?;
    if key.state == KeyState::Disabled {
        return Err(KmsError::Disabled(format!("{} is disabled.", key.arn)));
    }
    Ok(())
}

/// KMS as one caller sees it: the master key that seals key material, the region and
/// account of ARNs, and the time of the call.
pub struct Kms<'a> {
    pub master: &'a MasterKey,
    pub region: &'a str,
    pub account: &'a str,
    pub now: Timestamp,
}

impl std::fmt::Debug for Kms<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kms")
            .field("region", &self.region)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl Kms<'_> {
    fn arn_prefix(&self) -> String {
        format!("arn:aws:kms:{}:{}:", self.region, self.account)
    }

    /// The ARN of the key with id `id`.
    pub fn key_arn(&self, id: &str) -> String {
        format!("{}key/{id}", self.arn_prefix())
    }

    /// The ARN of alias `name` (`alias/...`).
    pub fn alias_arn(&self, name: &str) -> String {
        format!("{}{name}", self.arn_prefix())
    }

    fn new_material(&self, key_id: &str, rotation: Option<RotationType>) -> Result<Material> {
        let mut id = [0u8; MATERIAL_ID_LEN];
        random(&mut id)?;
        let id = hex::encode(id);
        let mut bytes = [0u8; KEY_LEN];
        random(&mut bytes)?;
        Ok(Material {
            sealed: self
                .master
                .seal(&format!("kms:{key_id}:{id}"), &bytes)
                .map_err(KmsError::from)?,
            id,
            created_at: self.now,
            rotation,
        })
    }

    fn material_key(&self, key: &KeyRecord, material: &Material) -> Result<RandomizedNonceKey> {
        let bytes = self
            .master
            .open(&format!("kms:{}:{}", key.id, material.id), &material.sealed)?;
        aes_key(&bytes)
    }

    /// Creates a customer managed symmetric key.
    pub fn create_key(&self, tx: &mut dyn Txn, new: NewKey) -> Result<KeyRecord> {
        self.make_key(tx, new, KeyManager::Customer)
    }

    fn make_key(&self, tx: &mut dyn Txn, new: NewKey, manager: KeyManager) -> Result<KeyRecord> {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let material = self.new_material(&id, None)?;
        let rotation = (manager == KeyManager::Aws).then_some(DEFAULT_ROTATION_DAYS);
        let key = KeyRecord {
            arn: self.key_arn(&id),
            id,
            description: new.description,
            manager,
            state: KeyState::Enabled,
            created_at: self.now,
            deletion_date: None,
            pending_window_days: None,
            rotation_period_days: rotation,
            next_rotation: rotation.map(|d| later(self.now, d)),
            materials: vec![material],
            tags: new.tags,
        };
        tx.create(&key)?;
        Ok(key)
    }

    /// Loads a key, carrying out a deletion or an automatic rotation that fell due.
    fn load_live(&self, tx: &mut dyn Txn, id: &str) -> Result<Option<KeyRecord>> {
        let Some(mut key) = tx.load::<KeyRecord>(id)? else {
            return Ok(None);
        };
        if key.state == KeyState::PendingDeletion
            && key.deletion_date.is_some_and(|d| d <= self.now)
        {
            for (_, alias) in tx.load_all::<AliasRecord>(&Query {
                parent: Some(key.id.clone()),
                ..Query::default()
            })? {
                tx.remove::<AliasRecord>(&alias.name)?;
            }
            tx.remove::<KeyRecord>(&key.id)?;
            return Ok(None);
        }
        if key.state == KeyState::Enabled
            && let (Some(days), Some(due)) = (key.rotation_period_days, key.next_rotation)
            && due <= self.now
        {
            let material = self.new_material(&key.id, Some(RotationType::Automatic))?;
            key.materials.push(material);
            key.next_rotation = Some(later(self.now, days));
            tx.save(&key)?;
        }
        Ok(Some(key))
    }

    /// The key `key_ref` names: a key id, a key ARN, or (when `aliases` is set) an alias
    /// name or alias ARN. An AWS managed key's alias (`alias/aws/secretsmanager`) makes
    /// the key on first use, as AWS does.
    pub fn find_key(&self, tx: &mut dyn Txn, key_ref: &str, aliases: bool) -> Result<KeyRecord> {
        let not_found = || KmsError::NotFound(format!("Invalid keyId '{key_ref}'"));
        let local = key_ref.strip_prefix(&self.arn_prefix()).unwrap_or(key_ref);
        if key_ref.starts_with("arn:") && local == key_ref {
            // Another region or account, or not a KMS ARN.
            return Err(not_found());
        }
        if let Some(id) = local
            .strip_prefix("key/")
            .or(Some(local))
            .filter(|s| is_key_id(s))
        {
            return self.load_live(tx, id)?.ok_or_else(|| {
                KmsError::NotFound(format!("Key '{}' does not exist", self.key_arn(id)))
            });
        }
        if !local.starts_with("alias/") || !aliases {
            return Err(not_found());
        }
        match tx.load::<AliasRecord>(local)? {
            Some(alias) => self
                .load_live(tx, &alias.target)?
                .ok_or_else(|| KmsError::NotFound(format!("Alias {local} is not found."))),
            None => match local.strip_prefix("alias/aws/") {
                Some(service)
                    if !service.is_empty()
                        && service
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
                {
                    let key = self.make_key(
                        tx,
                        NewKey {
                            description: format!(
                                "Default key that protects my {service} data when no other key is defined"
                            ),
                            tags: Vec::new(),
                        },
                        KeyManager::Aws,
                    )?;
                    tx.create(&AliasRecord {
                        name: local.to_string(),
                        target: key.id.clone(),
                        created_at: self.now,
                        updated_at: self.now,
                    })?;
                    Ok(key)
                }
                _ => Err(KmsError::NotFound(format!(
                    "Alias {} is not found.",
                    self.alias_arn(local)
                ))),
            },
        }
    }

    /// The key `key_ref` names (id, ARN or alias), if it may encrypt and decrypt now:
    /// Disabled and KMSInvalidState otherwise.
    pub fn usable(&self, tx: &mut dyn Txn, key_ref: &str) -> Result<KeyRecord> {
        let key = self.find_key(tx, key_ref, true)?;
        enabled(&key)?;
        Ok(key)
    }

    /// A customer managed key named by id or ARN, for the operations that manage keys.
    fn managed(&self, tx: &mut dyn Txn, key_ref: &str, what: &str) -> Result<KeyRecord> {
        let key = self.find_key(tx, key_ref, false)?;
        if key.manager == KeyManager::Aws {
            return Err(KmsError::Unsupported(format!(
                "{} is an AWS managed key: {what} is not allowed on it",
                key.arn
            )));
        }
        Ok(key)
    }

    /// Every key, in creation order, with its position (for pagination).
    pub fn list_keys(&self, tx: &mut dyn Txn) -> Result<Vec<(i64, KeyRecord)>> {
        let all = tx.load_all::<KeyRecord>(&Query::default())?;
        let mut out = Vec::with_capacity(all.len());
        for (seq, key) in all {
            if let Some(key) = self.load_live(tx, &key.id)? {
                out.push((seq, key));
            }
        }
        Ok(out)
    }

    /// Aliases, in creation order, of one key or of all.
    pub fn list_aliases(
        &self,
        tx: &mut dyn Txn,
        key_ref: Option<&str>,
    ) -> Result<Vec<(i64, AliasRecord)>> {
        let parent = match key_ref {
            Some(r) => Some(self.find_key(tx, r, false)?.id),
            None => None,
        };
        let aliases = tx.load_all::<AliasRecord>(&Query {
            parent,
            ..Query::default()
        })?;
        let mut out = Vec::new();
        for (seq, alias) in aliases {
            // (Loading the target carries out a deletion that fell due, aliases too.)
            if self.load_live(tx, &alias.target)?.is_some() {
                out.push((seq, alias));
            }
        }
        Ok(out)
    }

    /// Creates alias `name` for a customer managed key.
    pub fn create_alias(&self, tx: &mut dyn Txn, name: &str, target: &str) -> Result<()> {
        check_alias_name(name, true)?;
        let key = self.alias_target(tx, target)?;
        if tx.load::<AliasRecord>(name)?.is_some() {
            return Err(KmsError::AlreadyExists(format!(
                "An alias with the name {} already exists",
                self.alias_arn(name)
            )));
        }
        tx.create(&AliasRecord {
            name: name.to_string(),
            target: key.id,
            created_at: self.now,
            updated_at: self.now,
        })?;
        Ok(())
    }

    /// Points alias `name` at another key.
    pub fn update_alias(&self, tx: &mut dyn Txn, name: &str, target: &str) -> Result<()> {
        check_alias_name(name, true)?;
        let key = self.alias_target(tx, target)?;
        let Some(mut alias) = tx.load::<AliasRecord>(name)? else {
            return Err(KmsError::NotFound(format!(
                "Alias {} is not found.",
                self.alias_arn(name)
            )));
        };
        alias.target = key.id;
        alias.updated_at = self.now;
        tx.save(&alias)?;
        Ok(())
    }

    /// Removes alias `name`.
    pub fn delete_alias(&self, tx: &mut dyn Txn, name: &str) -> Result<()> {
        check_alias_name(name, true)?;
        if !tx.remove::<AliasRecord>(name)? {
            return Err(KmsError::NotFound(format!(
                "Alias {} is not found.",
                self.alias_arn(name)
            )));
        }
        Ok(())
    }

    fn alias_target(&self, tx: &mut dyn Txn, target: &str) -> Result<KeyRecord> {
        let key = self.managed(tx, target, "an alias")?;
        not_pending(&key)?;
        Ok(key)
    }

    /// Encrypts `plaintext` (1 to 4096 bytes) under the key `key_ref` names, bound to
    /// `context`; the ciphertext and the key's ARN.
    pub fn encrypt(
        &self,
        tx: &mut dyn Txn,
        key_ref: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<(Vec<u8>, KeyRecord)> {
        if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
            return Err(KmsError::Validation(format!(
                "Plaintext must hold 1 to {MAX_PLAINTEXT} bytes"
            )));
        }
        let key = self.usable(tx, key_ref)?;
        let blob = self.encrypt_with(&key, plaintext, context)?;
        Ok((blob, key))
    }

    fn encrypt_with(
        &self,
        key: &KeyRecord,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        let material = key
            .materials
            .last()
            .ok_or_else(|| KmsError::InvalidState(format!("{} has no key material", key.arn)))?;
        let material_id = hex::decode(&material.id).map_err(|_| KmsError::InvalidCiphertext)?;
        let mut prefix = BLOB_MAGIC.to_vec();
        prefix.extend_from_slice(key.id.as_bytes());
        prefix.extend_from_slice(&material_id);
        let aad = associated_data(&prefix, context);
        let sealed = seal_with(&self.material_key(key, material)?, &aad, plaintext)?;
        prefix.extend_from_slice(&sealed);
        Ok(prefix)
    }

    /// Decrypts a ciphertext of [`Kms::encrypt`] given the same `context`. With
    /// `key_ref`, the ciphertext must be of that key.
    pub fn decrypt(
        &self,
        tx: &mut dyn Txn,
        blob: &[u8],
        context: &EncryptionContext,
        key_ref: Option<&str>,
    ) -> Result<(Vec<u8>, KeyRecord, String)> {
        let parsed = parse_blob(blob).ok_or(KmsError::InvalidCiphertext)?;
        if !is_key_id(parsed.key_id) {
            return Err(KmsError::InvalidCiphertext);
        }
        if let Some(r) = key_ref {
            let wanted = self.find_key(tx, r, true)?;
            if wanted.id != parsed.key_id {
                return Err(KmsError::IncorrectKey(format!(
                    "The key ID in the request does not identify a CMK that can perform this operation: the ciphertext is of {}",
                    self.key_arn(parsed.key_id)
                )));
            }
        }
        let key = self.usable(tx, parsed.key_id)?;
        let material_id = hex::encode(parsed.material);
        let material = key
            .materials
            .iter()
            .find(|m| m.id == material_id)
            .ok_or(KmsError::InvalidCiphertext)?;
        let header = &blob[..BLOB_MAGIC.len() + KEY_ID_LEN + MATERIAL_ID_LEN];
        let aad = associated_data(header, context);
        let plain = open_with(
            &self.material_key(&key, material)?,
            &aad,
            parsed.nonce,
            parsed.sealed,
        )?;
        Ok((plain, key, material_id))
    }

    /// A new data key of `len` bytes (1 to 1024), with its ciphertext under `key_ref`.
    pub fn generate_data_key(
        &self,
        tx: &mut dyn Txn,
        key_ref: &str,
        len: usize,
        context: &EncryptionContext,
    ) -> Result<DataKey> {
        if len == 0 || len > 1024 {
            return Err(KmsError::Validation(
                "NumberOfBytes must be from 1 to 1024".into(),
            ));
        }
        let key = self.usable(tx, key_ref)?;
        let mut plaintext = vec![0u8; len];
        random(&mut plaintext)?;
        let ciphertext = self.encrypt_with(&key, &plaintext, context)?;
        Ok(DataKey {
            plaintext,
            ciphertext,
            material_id: key.current_material().unwrap_or_default().to_string(),
            key_arn: key.arn,
        })
    }

    /// Sets a customer managed key's state to Enabled or Disabled.
    pub fn set_enabled(&self, tx: &mut dyn Txn, key_ref: &str, enabled: bool) -> Result<()> {
        let what = if enabled { "EnableKey" } else { "DisableKey" };
        let mut key = self.managed(tx, key_ref, what)?;
        not_pending(&key)?;
        key.state = if enabled {
            KeyState::Enabled
        } else {
            KeyState::Disabled
        };
        tx.save(&key)?;
        Ok(())
    }

    /// Turns automatic rotation on (every `days`, 90 to 2560) or off.
    pub fn set_rotation(&self, tx: &mut dyn Txn, key_ref: &str, days: Option<u32>) -> Result<()> {
        let mut key = self.managed(tx, key_ref, "changing automatic rotation")?;
        enabled(&key)?;
        if let Some(d) = days
            && !(90..=2560).contains(&d)
        {
            return Err(KmsError::Validation(format!(
                "RotationPeriodInDays must be from 90 to 2560, got {d}"
            )));
        }
        key.rotation_period_days = days;
        key.next_rotation = days.map(|d| later(self.now, d));
        tx.save(&key)?;
        Ok(())
    }

    /// The key, for GetKeyRotationStatus (any key, by id or ARN).
    pub fn rotation_status(&self, tx: &mut dyn Txn, key_ref: &str) -> Result<KeyRecord> {
        self.find_key(tx, key_ref, false)
    }

    /// Rotates a customer managed key's material now; the old material keeps decrypting.
    pub fn rotate_now(&self, tx: &mut dyn Txn, key_ref: &str) -> Result<KeyRecord> {
        let mut key = self.managed(tx, key_ref, "RotateKeyOnDemand")?;
        enabled(&key)?;
        let on_demand = key
            .materials
            .iter()
            .filter(|m| m.rotation == Some(RotationType::OnDemand))
            .count();
        if on_demand >= MAX_ON_DEMAND_ROTATIONS {
            return Err(KmsError::LimitExceeded(format!(
                "{} was already rotated on demand {MAX_ON_DEMAND_ROTATIONS} times",
                key.arn
            )));
        }
        let material = self.new_material(&key.id, Some(RotationType::OnDemand))?;
        key.materials.push(material);
        tx.save(&key)?;
        Ok(key)
    }

    /// Schedules a customer managed key's deletion in `days` (7 to 30) days.
    pub fn schedule_deletion(
        &self,
        tx: &mut dyn Txn,
        key_ref: &str,
        days: u32,
    ) -> Result<KeyRecord> {
        if !(7..=30).contains(&days) {
            return Err(KmsError::Validation(format!(
                "PendingWindowInDays must be from 7 to 30, got {days}"
            )));
        }
        let mut key = self.managed(tx, key_ref, "ScheduleKeyDeletion")?;
        not_pending(&key)?;
        key.state = KeyState::PendingDeletion;
        key.deletion_date = Some(later(self.now, days));
        key.pending_window_days = Some(days);
        tx.save(&key)?;
        Ok(key)
    }

    /// Cancels a scheduled deletion; the key is then Disabled, as at AWS.
    pub fn cancel_deletion(&self, tx: &mut dyn Txn, key_ref: &str) -> Result<KeyRecord> {
        let mut key = self.managed(tx, key_ref, "CancelKeyDeletion")?;
        if key.state != KeyState::PendingDeletion {
            return Err(KmsError::InvalidState(format!(
                "{} is not pending deletion.",
                key.arn
            )));
        }
        key.state = KeyState::Disabled;
        key.deletion_date = None;
        key.pending_window_days = None;
        tx.save(&key)?;
        Ok(key)
    }

    /// Seals `plaintext` (any length) in an envelope: a fresh 256-bit data key encrypts
    /// it, and the KMS key `key_ref` names wraps the data key, both bound to `context`.
    pub fn seal(
        &self,
        tx: &mut dyn Txn,
        key_ref: &str,
        context: &EncryptionContext,
        plaintext: &[u8],
    ) -> Result<Sealed> {
        let data_key = self.generate_data_key(tx, key_ref, KEY_LEN, context)?;
        let aad = associated_data(ENVELOPE_MAGIC, context);
        let value = seal_with(&aes_key(&data_key.plaintext)?, &aad, plaintext)?;
        let len =
            u16::try_from(data_key.ciphertext.len()).map_err(|_| KmsError::InvalidCiphertext)?;
        let mut out = ENVELOPE_MAGIC.to_vec();
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&data_key.ciphertext);
        out.extend_from_slice(&value);
        Ok(Sealed(BASE64.encode(out)))
    }

    /// Opens what [`Kms::seal`] sealed with the same `context`.
    pub fn open(
        &self,
        tx: &mut dyn Txn,
        sealed: &Sealed,
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        let (wrapped, value) = sealed.parts().ok_or(KmsError::InvalidCiphertext)?;
        let (data_key, _, _) = self.decrypt(tx, &wrapped, context, None)?;
        if value.len() < NONCE_LEN {
            return Err(KmsError::InvalidCiphertext);
        }
        let (nonce, ciphertext) = value.split_at(NONCE_LEN);
        let aad = associated_data(ENVELOPE_MAGIC, context);
        open_with(&aes_key(&data_key)?, &aad, nonce, ciphertext)
    }
}

#[cfg(test)]
mod tests;
