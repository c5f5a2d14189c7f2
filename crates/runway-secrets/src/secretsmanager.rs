//! The Secrets Manager store: secrets, their versions and staging labels, scheduled
//! deletion and restore. Every version's value is sealed in a KMS envelope (the secret's
//! key, `aws/secretsmanager` by default) bound to the secret's ARN and the version id,
//! as AWS binds them, and stored apart from the secret's metadata, which holds the
//! staging labels. A new version and the move of its labels are one transaction: a crash
//! leaves the old version or the new one current, never neither.
//!
//! A secret's ARN is `arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 random
//! characters>`; a secret is found by that ARN, by its name, or by the ARN without the
//! suffix (a partial ARN). Deletions that fell due are carried out when the secret is
//! next looked up or listed.

use crate::kms::{EncryptionContext, Kms, KmsError, Sealed};
use crate::{SecretsError, random};
use runway_model::Timestamp;
use runway_store::{Query, Record, StoreError, Txn, Typed};
use serde::{Deserialize, Serialize};

/// The label of the version that is current.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The label AWSCURRENT's previous holder gets.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";
/// The label of a version being rotated in.
pub const AWSPENDING: &str = "AWSPENDING";
/// The key secrets are sealed with when they name none.
pub const DEFAULT_KEY: &str = "alias/aws/secretsmanager";
/// The largest secret value, in bytes.
pub const MAX_VALUE: usize = 65536;
/// Versions kept per secret: those with labels, then the newest deprecated ones.
const MAX_VERSIONS: usize = 100;
const MAX_STAGES: usize = 20;
const MAX_TAGS: usize = 50;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// What can go wrong; each variant is one Secrets Manager error type.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// ResourceNotFoundException.
    #[error("{0}")]
    NotFound(String),
    /// ResourceExistsException.
    #[error("{0}")]
    Exists(String),
    /// InvalidParameterException.
    #[error("{0}")]
    InvalidParameter(String),
    /// InvalidRequestException.
    #[error("{0}")]
    InvalidRequest(String),
    /// ValidationException (a member outside its shape's constraints).
    #[error("{0}")]
    Validation(String),
    /// LimitExceededException.
    #[error("{0}")]
    LimitExceeded(String),
    /// EncryptionFailure.
    #[error("{0}")]
    Encryption(String),
    /// DecryptionFailure.
    #[error("{0}")]
    Decryption(String),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

impl From<StoreError> for SecretError {
    fn from(e: StoreError) -> Self {
        SecretError::Secrets(SecretsError::Store(e))
    }
}

type Result<T, E = SecretError> = std::result::Result<T, E>;

/// A kms failure while sealing a new value.
fn encryption(e: KmsError) -> SecretError {
    match e {
        KmsError::Secrets(e) => SecretError::Secrets(e),
        e => SecretError::Encryption(format!("the KMS key cannot encrypt: {e}")),
    }
}

/// A kms failure while opening a stored value.
fn decryption(e: KmsError) -> SecretError {
    match e {
        KmsError::Secrets(SecretsError::Store(e)) => SecretError::Secrets(SecretsError::Store(e)),
        e => SecretError::Decryption(format!("the secret's KMS key cannot decrypt it: {e}")),
    }
}

/// A secret's value: text or bytes. Its Debug form hides it.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretValue {
    String(String),
    Binary(Vec<u8>),
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretValue::String(_) => f.write_str("SecretValue::String(..)"),
            SecretValue::Binary(_) => f.write_str("SecretValue::Binary(..)"),
        }
    }
}

impl SecretValue {
    fn len(&self) -> usize {
        match self {
            SecretValue::String(s) => s.len(),
            SecretValue::Binary(b) => b.len(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let (kind, bytes) = match self {
            SecretValue::String(s) => (b's', s.as_bytes()),
            SecretValue::Binary(b) => (b'b', b.as_slice()),
        };
        let mut out = Vec::with_capacity(bytes.len() + 1);
        out.push(kind);
        out.extend_from_slice(bytes);
        out
    }

    fn decode(raw: &[u8]) -> Option<SecretValue> {
        let (kind, bytes) = raw.split_first()?;
        match kind {
            b's' => String::from_utf8(bytes.to_vec())
                .ok()
                .map(SecretValue::String),
            b'b' => Some(SecretValue::Binary(bytes.to_vec())),
            _ => None,
        }
    }
}

/// A tag on a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// What a secret keeps of each version besides its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    pub id: String,
    pub stages: Vec<String>,
    pub created_at: Timestamp,
    /// The KMS key that wraps its data key.
    pub key_arn: String,
    #[serde(default)]
    pub last_accessed: Option<Timestamp>,
}

/// A secret, without its values. Versions are oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretRecord {
    pub arn: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The key as the user named it; `None`: `aws/secretsmanager`.
    #[serde(default)]
    pub kms_key_id: Option<String>,
    pub created_at: Timestamp,
    pub last_changed_at: Timestamp,
    /// The day (midnight UTC) the value was last read.
    #[serde(default)]
    pub last_accessed_at: Option<Timestamp>,
    /// When DeleteSecret was called, for a secret scheduled for deletion.
    #[serde(default)]
    pub deleted_at: Option<Timestamp>,
    /// When it will be deleted for good.
    #[serde(default)]
    pub deletion_date: Option<Timestamp>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub versions: Vec<VersionMeta>,
}

impl Record for SecretRecord {
    const KIND: &'static str = "sm_secret";
    fn key(&self) -> &str {
        &self.arn
    }
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl SecretRecord {
    /// The version holding `stage`.
    pub fn version_with(&self, stage: &str) -> Option<&VersionMeta> {
        self.versions
            .iter()
            .find(|v| v.stages.iter().any(|s| s == stage))
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

/// One version's sealed value.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VersionRecord {
    /// `<secret ARN>#<version id>`.
    key: String,
    secret_arn: String,
    value: Sealed,
}

impl Record for VersionRecord {
    const KIND: &'static str = "sm_version";
    fn key(&self) -> &str {
        &self.key
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.secret_arn)
    }
}

fn version_key(arn: &str, version: &str) -> String {
    format!("{arn}#{version}")
}

/// What AWS binds a secret version's data key to.
fn context(arn: &str, version: &str) -> EncryptionContext {
    EncryptionContext::from([
        ("SecretARN".to_string(), arn.to_string()),
        ("SecretVersionId".to_string(), version.to_string()),
    ])
}

/// Checks a secret name: 1 to 512 letters, digits and `/_+=.@-`.
pub fn check_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 512 {
        return Err(SecretError::Validation(format!(
            "{field} must be 1 to 512 characters long"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
    {
        return Err(SecretError::Validation(format!(
            "{field} {name:?} may contain only ASCII letters, digits and the characters /_+=.@-"
        )));
    }
    Ok(())
}

/// Checks a version id given as ClientRequestToken or VersionId (32 to 64 characters).
pub fn check_version_id(field: &str, id: &str) -> Result<()> {
    if !(32..=64).contains(&id.len()) {
        return Err(SecretError::Validation(format!(
            "{field} must be 32 to 64 characters long"
        )));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(SecretError::Validation(format!(
            "{field} may contain only letters, digits, '-' and '_'"
        )));
    }
    Ok(())
}

fn check_stages(stages: &[String]) -> Result<()> {
    if stages.is_empty() || stages.len() > MAX_STAGES {
        return Err(SecretError::Validation(format!(
            "VersionStages must hold 1 to {MAX_STAGES} labels"
        )));
    }
    for s in stages {
        if s.is_empty() || s.len() > 256 {
            return Err(SecretError::Validation(
                "a staging label must be 1 to 256 characters long".into(),
            ));
        }
    }
    Ok(())
}

/// Checks tags as TagResource and CreateSecret take them.
pub fn check_tags(tags: &[Tag]) -> Result<()> {
    for t in tags {
        if t.key.is_empty() || t.key.len() > 128 {
            return Err(SecretError::Validation(
                "a tag Key must be 1 to 128 characters long".into(),
            ));
        }
        if t.value.len() > 256 {
            return Err(SecretError::Validation(format!(
                "the value of tag {:?} is longer than 256 characters",
                t.key
            )));
        }
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(SecretError::InvalidParameter(format!(
                "tag key {:?} uses the reserved prefix aws:",
                t.key
            )));
        }
    }
    Ok(())
}

const SUFFIX_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

fn suffix() -> Result<String> {
    let mut bytes = [0u8; 6];
    random(&mut bytes)?;
    Ok(bytes
        .iter()
        .map(|b| SUFFIX_ALPHABET[usize::from(*b) % SUFFIX_ALPHABET.len()] as char)
        .collect())
}

fn day_of(t: Timestamp) -> Timestamp {
    Timestamp::from_millis(t.millis().div_euclid(DAY_MS) * DAY_MS)
}

/// A new secret.
#[derive(Debug, Clone, Default)]
pub struct NewSecret {
    pub name: String,
    pub description: Option<String>,
    pub kms_key_id: Option<String>,
    pub value: Option<SecretValue>,
    /// The first version's id (ClientRequestToken); a new UUID if absent.
    pub token: Option<String>,
    pub tags: Vec<Tag>,
}

/// A secret's value as read: the secret, the version read and the value.
#[derive(Debug, Clone)]
pub struct Read {
    pub secret: SecretRecord,
    pub version: VersionMeta,
    pub value: SecretValue,
}

/// The Secrets Manager store, for one call.
#[derive(Debug)]
pub struct Store<'a> {
    pub kms: Kms<'a>,
}

impl Store<'_> {
    fn now(&self) -> Timestamp {
        self.kms.now
    }

    fn arn_prefix(&self) -> String {
        format!(
            "arn:aws:secretsmanager:{}:{}:secret:",
            self.kms.region, self.kms.account
        )
    }

    /// Deletes a secret whose recovery window ended; whether it did.
    fn purge_if_due(&self, tx: &mut dyn Txn, secret: &SecretRecord) -> Result<bool> {
        if secret.deletion_date.is_some_and(|d| d <= self.now()) {
            self.purge(tx, &secret.arn)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn purge(&self, tx: &mut dyn Txn, arn: &str) -> Result<()> {
        for (_, v) in tx.load_all::<VersionRecord>(&Query {
            parent: Some(arn.to_string()),
            ..Query::default()
        })? {
            tx.remove::<VersionRecord>(&v.key)?;
        }
        tx.remove::<SecretRecord>(arn)?;
        Ok(())
    }

    fn by_name(&self, tx: &mut dyn Txn, name: &str) -> Result<Option<SecretRecord>> {
        let found = tx.load_all::<SecretRecord>(&Query {
            name: Some(name.to_string()),
            ..Query::default()
        })?;
        for (_, secret) in found {
            if !self.purge_if_due(tx, &secret)? {
                return Ok(Some(secret));
            }
        }
        Ok(None)
    }

    /// The secret `id` names (its ARN, its name, or its ARN without the random suffix),
    /// if there is one.
    pub fn lookup(&self, tx: &mut dyn Txn, id: &str) -> Result<Option<SecretRecord>> {
        if id.starts_with("arn:") {
            if let Some(secret) = tx.load::<SecretRecord>(id)?
                && !self.purge_if_due(tx, &secret)?
            {
                return Ok(Some(secret));
            }
            return match id.strip_prefix(&self.arn_prefix()) {
                Some(name) if !name.is_empty() => self.by_name(tx, name),
                _ => Ok(None),
            };
        }
        self.by_name(tx, id)
    }

    /// Like [`Store::lookup`], failing with ResourceNotFoundException.
    pub fn find(&self, tx: &mut dyn Txn, id: &str) -> Result<SecretRecord> {
        if id.is_empty() || id.len() > 2048 {
            return Err(SecretError::Validation(
                "SecretId must be 1 to 2048 characters long".into(),
            ));
        }
        self.lookup(tx, id)?.ok_or_else(|| {
            SecretError::NotFound("Secrets Manager can't find the specified secret.".into())
        })
    }

    /// Like [`Store::find`], for operations a secret scheduled for deletion refuses.
    fn find_live(&self, tx: &mut dyn Txn, id: &str) -> Result<SecretRecord> {
        let secret = self.find(tx, id)?;
        if secret.is_deleted() {
            return Err(SecretError::InvalidRequest(
                "You can't perform this operation on the secret because it was marked for deletion."
                    .into(),
            ));
        }
        Ok(secret)
    }

    /// Every secret (those scheduled for deletion too), in creation order.
    pub fn list(&self, tx: &mut dyn Txn) -> Result<Vec<SecretRecord>> {
        let mut out = Vec::new();
        for (_, secret) in tx.load_all::<SecretRecord>(&Query::default())? {
            if !self.purge_if_due(tx, &secret)? {
                out.push(secret);
            }
        }
        Ok(out)
    }

    fn key_ref(secret: &SecretRecord) -> &str {
        secret.kms_key_id.as_deref().unwrap_or(DEFAULT_KEY)
    }

    /// Creates a secret, with a first version if a value is given; the secret and that
    /// version's id. A retry with the same ClientRequestToken and value is answered
    /// again instead of failing.
    pub fn create(
        &self,
        tx: &mut dyn Txn,
        new: NewSecret,
    ) -> Result<(SecretRecord, Option<String>)> {
        check_name("Name", &new.name)?;
        if let Some(d) = &new.description
            && d.len() > 2048
        {
            return Err(SecretError::Validation(
                "Description must be at most 2048 characters long".into(),
            ));
        }
        if let Some(t) = &new.token {
            check_version_id("ClientRequestToken", t)?;
        }
        check_value(new.value.as_ref())?;
        check_tags(&new.tags)?;
        if new.tags.len() > MAX_TAGS {
            return Err(SecretError::Validation(format!(
                "a secret can have at most {MAX_TAGS} tags"
            )));
        }
        if let Some(existing) = self.by_name(tx, &new.name)? {
            if existing.is_deleted() {
                return Err(SecretError::InvalidRequest(format!(
                    "You can't create this secret because a secret with this name ({}) is already scheduled for deletion.",
                    new.name
                )));
            }
            if let (Some(token), Some(value)) = (&new.token, &new.value)
                && existing.versions.iter().any(|v| &v.id == token)
                && self.read_version(tx, &existing, token)? == *value
            {
                return Ok((existing, Some(token.clone())));
            }
            return Err(SecretError::Exists(format!(
                "The operation failed because the secret {} already exists.",
                new.name
            )));
        }
        // The key must be usable even for a secret without a value yet.
        if let Some(key) = &new.kms_key_id {
            self.check_key(tx, key)?;
        }
        let arn = format!("{}{}-{}", self.arn_prefix(), new.name, suffix()?);
        let mut secret = SecretRecord {
            arn,
            name: new.name,
            description: new.description,
            kms_key_id: new.kms_key_id.filter(|k| !k.is_empty()),
            created_at: self.now(),
            last_changed_at: self.now(),
            last_accessed_at: None,
            deleted_at: None,
            deletion_date: None,
            tags: new.tags,
            versions: Vec::new(),
        };
        let version = match new.value {
            Some(value) => {
                let id = new
                    .token
                    .unwrap_or_else(|| uuid::Uuid::new_v4().hyphenated().to_string());
                self.add_version(tx, &mut secret, &id, &value, None)?;
                Some(id)
            }
            None => None,
        };
        tx.create(&secret)?;
        Ok((secret, version))
    }

    fn check_key(&self, tx: &mut dyn Txn, key_ref: &str) -> Result<()> {
        // Sealing nothing would be refused; a one-byte probe shows the key can encrypt.
        self.kms
            .encrypt(tx, key_ref, b"?", &EncryptionContext::new())
            .map(|_| ())
            .map_err(encryption)
    }

    /// Seals `value` as version `id` of `secret` and attaches its labels (AWSCURRENT if
    /// `stages` is `None`, and always for a secret's first version). Updates `secret` in
    /// memory; the caller saves it.
    fn add_version(
        &self,
        tx: &mut dyn Txn,
        secret: &mut SecretRecord,
        id: &str,
        value: &SecretValue,
        stages: Option<Vec<String>>,
    ) -> Result<Vec<String>> {
        let mut stages = stages.unwrap_or_else(|| vec![AWSCURRENT.to_string()]);
        if secret.version_with(AWSCURRENT).is_none() && !stages.iter().any(|s| s == AWSCURRENT) {
            stages.push(AWSCURRENT.to_string());
        }
        let mut seen = std::collections::HashSet::new();
        stages.retain(|s| seen.insert(s.clone()));
        let sealed = self
            .kms
            .seal(
                tx,
                Self::key_ref(secret),
                &context(&secret.arn, id),
                &value.encode(),
            )
            .map_err(encryption)?;
        let key_arn = sealed
            .key_id()
            .map(|k| self.kms.key_arn(&k))
            .unwrap_or_default();
        tx.create(&VersionRecord {
            key: version_key(&secret.arn, id),
            secret_arn: secret.arn.clone(),
            value: sealed,
        })?;
        secret.versions.push(VersionMeta {
            id: id.to_string(),
            stages: Vec::new(),
            created_at: self.now(),
            key_arn,
            last_accessed: None,
        });
        for stage in &stages {
            move_stage(secret, stage, id);
        }
        secret.last_changed_at = self.now();
        self.prune(tx, secret)?;
        Ok(stages)
    }

    /// Forgets the oldest deprecated versions (without labels) beyond the number kept.
    fn prune(&self, tx: &mut dyn Txn, secret: &mut SecretRecord) -> Result<()> {
        while secret.versions.len() > MAX_VERSIONS {
            let Some(pos) = secret.versions.iter().position(|v| v.stages.is_empty()) else {
                break;
            };
            let gone = secret.versions.remove(pos);
            tx.remove::<VersionRecord>(&version_key(&secret.arn, &gone.id))?;
        }
        Ok(())
    }

    fn read_version(
        &self,
        tx: &mut dyn Txn,
        secret: &SecretRecord,
        id: &str,
    ) -> Result<SecretValue> {
        let record = tx
            .load::<VersionRecord>(&version_key(&secret.arn, id))?
            .ok_or_else(|| {
                SecretError::NotFound(format!(
                    "Secrets Manager can't find the specified secret value for VersionId: {id}"
                ))
            })?;
        let plain = self
            .kms
            .open(tx, &record.value, &context(&secret.arn, id))
            .map_err(decryption)?;
        SecretValue::decode(&plain).ok_or_else(|| {
            SecretError::Decryption("a stored secret value is not in runway's format".into())
        })
    }

    /// The value of a version of secret `id`: the one with `version_id` and/or `stage`
    /// (AWSCURRENT if neither is given).
    pub fn get_value(
        &self,
        tx: &mut dyn Txn,
        id: &str,
        version_id: Option<&str>,
        stage: Option<&str>,
    ) -> Result<Read> {
        if let Some(v) = version_id {
            check_version_id("VersionId", v)?;
        }
        if let Some(s) = stage
            && (s.is_empty() || s.len() > 256)
        {
            return Err(SecretError::Validation(
                "VersionStage must be 1 to 256 characters long".into(),
            ));
        }
        let mut secret = self.find_live(tx, id)?;
        let stage = match (version_id, stage) {
            (None, None) => Some(AWSCURRENT),
            (_, s) => s,
        };
        let version = secret
            .versions
            .iter()
            .find(|v| {
                version_id.is_none_or(|id| v.id == id)
                    && stage.is_none_or(|s| v.stages.iter().any(|x| x == s))
            })
            .cloned()
            .ok_or_else(|| {
                let what = match (version_id, stage) {
                    (Some(v), Some(s)) => format!("VersionId: {v} and staging label: {s}"),
                    (Some(v), None) => format!("VersionId: {v}"),
                    (None, Some(s)) => format!("staging label: {s}"),
                    (None, None) => String::new(),
                };
                SecretError::NotFound(format!(
                    "Secrets Manager can't find the specified secret value for {what}"
                ))
            })?;
        let value = self.read_version(tx, &secret, &version.id)?;
        let today = day_of(self.now());
        if secret.last_accessed_at != Some(today) {
            secret.last_accessed_at = Some(today);
            if let Some(v) = secret.versions.iter_mut().find(|v| v.id == version.id) {
                v.last_accessed = Some(today);
            }
            tx.save(&secret)?;
        }
        Ok(Read {
            secret,
            version,
            value,
        })
    }

    /// Adds a version to secret `id`; the secret, the version id and its labels.
    pub fn put_value(
        &self,
        tx: &mut dyn Txn,
        id: &str,
        token: Option<String>,
        value: SecretValue,
        stages: Option<Vec<String>>,
    ) -> Result<(SecretRecord, String, Vec<String>)> {
        if let Some(t) = &token {
            check_version_id("ClientRequestToken", t)?;
        }
        if let Some(s) = &stages {
            check_stages(s)?;
        }
        check_value(Some(&value))?;
        let mut secret = self.find_live(tx, id)?;
        let version = token.unwrap_or_else(|| uuid::Uuid::new_v4().hyphenated().to_string());
        if let Some(existing) = secret.versions.iter().find(|v| v.id == version).cloned() {
            if self.read_version(tx, &secret, &version)? == value {
                return Ok((secret, version, existing.stages));
            }
            return Err(SecretError::Exists(format!(
                "A version with VersionId {version} already exists with a different value; versions cannot change."
            )));
        }
        let stages = self.add_version(tx, &mut secret, &version, &value, stages)?;
        tx.save(&secret)?;
        Ok((secret, version, stages))
    }

    /// Changes a secret's description, key, or value (a new AWSCURRENT version); the
    /// secret and the new version's id.
    pub fn update(
        &self,
        tx: &mut dyn Txn,
        id: &str,
        description: Option<String>,
        kms_key_id: Option<String>,
        value: Option<SecretValue>,
        token: Option<String>,
    ) -> Result<(SecretRecord, Option<String>)> {
        if let Some(d) = &description
            && d.len() > 2048
        {
            return Err(SecretError::Validation(
                "Description must be at most 2048 characters long".into(),
            ));
        }
        if let Some(t) = &token {
            check_version_id("ClientRequestToken", t)?;
        }
        check_value(value.as_ref())?;
        let mut secret = self.find_live(tx, id)?;
        if let Some(key) = kms_key_id {
            if key.is_empty() {
                secret.kms_key_id = None;
            } else {
                self.check_key(tx, &key)?;
                secret.kms_key_id = Some(key);
            }
        }
        if let Some(d) = description {
            secret.description = Some(d);
        }
        secret.last_changed_at = self.now();
        let version = match value {
            Some(value) => {
                let version =
                    token.unwrap_or_else(|| uuid::Uuid::new_v4().hyphenated().to_string());
                if secret.versions.iter().any(|v| v.id == version) {
                    if self.read_version(tx, &secret, &version)? != value {
                        return Err(SecretError::Exists(format!(
                            "A version with VersionId {version} already exists with a different value; versions cannot change."
                        )));
                    }
                } else {
                    self.add_version(tx, &mut secret, &version, &value, None)?;
                }
                Some(version)
            }
            None => None,
        };
        tx.save(&secret)?;
        Ok((secret, version))
    }

    /// Moves staging label `stage`: off `remove_from`, onto `move_to` (AWSCURRENT's
    /// previous holder gets AWSPREVIOUS).
    pub fn update_stage(
        &self,
        tx: &mut dyn Txn,
        id: &str,
        stage: &str,
        remove_from: Option<&str>,
        move_to: Option<&str>,
    ) -> Result<SecretRecord> {
        check_stages(&[stage.to_string()])?;
        let mut secret = self.find_live(tx, id)?;
        let holder = secret.version_with(stage).map(|v| v.id.clone());
        if let Some(from) = remove_from {
            check_version_id("RemoveFromVersionId", from)?;
            if holder.as_deref() != Some(from) {
                return Err(SecretError::InvalidParameter(format!(
                    "The staging label {stage} is not attached to version {from}."
                )));
            }
        } else if holder.is_some() && holder.as_deref() != move_to {
            return Err(SecretError::InvalidParameter(format!(
                "The staging label {stage} is attached to version {}; name it in RemoveFromVersionId to move the label.",
                holder.unwrap_or_default()
            )));
        }
        match move_to {
            Some(to) => {
                check_version_id("MoveToVersionId", to)?;
                if !secret.versions.iter().any(|v| v.id == to) {
                    return Err(SecretError::NotFound(format!(
                        "Secrets Manager can't find the specified secret value for VersionId: {to}"
                    )));
                }
                move_stage(&mut secret, stage, to);
            }
            None => {
                if stage == AWSCURRENT {
                    return Err(SecretError::InvalidParameter(
                        "AWSCURRENT cannot be removed without moving it to another version".into(),
                    ));
                }
                for v in &mut secret.versions {
                    v.stages.retain(|s| s != stage);
                }
            }
        }
        secret.last_changed_at = self.now();
        self.prune(tx, &mut secret)?;
        tx.save(&secret)?;
        Ok(secret)
    }

    /// Schedules secret `id` for deletion after `window_days` (7 to 30, default 30), or
    /// deletes it now (`force`); the secret and when it is (or was) deleted.
    pub fn delete(
        &self,
        tx: &mut dyn Txn,
        id: &str,
        window_days: Option<i64>,
        force: bool,
    ) -> Result<(SecretRecord, Timestamp)> {
        if force && window_days.is_some() {
            return Err(SecretError::InvalidParameter(
                "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays."
                    .into(),
            ));
        }
        if let Some(d) = window_days
            && !(7..=30).contains(&d)
        {
            return Err(SecretError::InvalidParameter(format!(
                "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive), got {d}."
            )));
        }
        let mut secret = self.find(tx, id)?;
        if force {
            self.purge(tx, &secret.arn)?;
            secret.deleted_at = Some(self.now());
            secret.deletion_date = Some(self.now());
            return Ok((secret, self.now()));
        }
        if secret.is_deleted() {
            return Err(SecretError::InvalidRequest(
                "You can't perform this operation on the secret because it was already scheduled for deletion."
                    .into(),
            ));
        }
        let days = window_days.unwrap_or(30);
        let date = Timestamp::from_millis(self.now().millis() + days * DAY_MS);
        secret.deleted_at = Some(self.now());
        secret.deletion_date = Some(date);
        tx.save(&secret)?;
        Ok((secret, date))
    }

    /// Cancels a scheduled deletion.
    pub fn restore(&self, tx: &mut dyn Txn, id: &str) -> Result<SecretRecord> {
        let mut secret = self.find(tx, id)?;
        secret.deleted_at = None;
        secret.deletion_date = None;
        tx.save(&secret)?;
        Ok(secret)
    }

    /// Adds or replaces tags.
    pub fn tag(&self, tx: &mut dyn Txn, id: &str, tags: Vec<Tag>) -> Result<()> {
        check_tags(&tags)?;
        let mut secret = self.find(tx, id)?;
        for tag in tags {
            match secret.tags.iter_mut().find(|t| t.key == tag.key) {
                Some(t) => t.value = tag.value,
                None => secret.tags.push(tag),
            }
        }
        if secret.tags.len() > MAX_TAGS {
            return Err(SecretError::LimitExceeded(format!(
                "a secret can have at most {MAX_TAGS} tags"
            )));
        }
        tx.save(&secret)?;
        Ok(())
    }

    /// Removes tags by key.
    pub fn untag(&self, tx: &mut dyn Txn, id: &str, keys: &[String]) -> Result<()> {
        let mut secret = self.find(tx, id)?;
        secret.tags.retain(|t| !keys.contains(&t.key));
        tx.save(&secret)?;
        Ok(())
    }
}

fn check_value(value: Option<&SecretValue>) -> Result<()> {
    match value {
        Some(v) if v.len() == 0 || v.len() > MAX_VALUE => Err(SecretError::Validation(format!(
            "SecretString or SecretBinary must hold 1 to {MAX_VALUE} bytes"
        ))),
        _ => Ok(()),
    }
}

/// Attaches `stage` to version `to` and takes it off every other version; moving
/// AWSCURRENT gives its previous holder AWSPREVIOUS.
fn move_stage(secret: &mut SecretRecord, stage: &str, to: &str) {
    let previous = secret.version_with(stage).map(|v| v.id.clone());
    if previous.as_deref() == Some(to) {
        return;
    }
    for v in &mut secret.versions {
        if v.id == to {
            v.stages.push(stage.to_string());
        } else {
            v.stages.retain(|s| s != stage);
        }
    }
    if stage == AWSCURRENT
        && let Some(previous) = previous
    {
        move_stage(secret, AWSPREVIOUS, &previous);
    }
}

#[cfg(test)]
mod tests;
