//! The SSM Parameter Store: parameters (String, StringList, SecureString) in hierarchies,
//! their versions (up to 100), labels, and lookups by name, ARN, `name:version`,
//! `name:label` and path. A SecureString's value is sealed in a KMS envelope (its key,
//! `aws/ssm` by default) bound to the parameter's ARN, as AWS binds it; other values are
//! sealed with the master key, so no value is stored in plaintext.

use crate::kms::{EncryptionContext, Kms, KmsError, Sealed};
use crate::{MasterKey, SecretsError};
use runway_model::Timestamp;
use runway_store::{Query, Record, StoreError, Txn, Typed};
use serde::{Deserialize, Serialize};

/// The key SecureStrings are sealed with when they name none.
pub const DEFAULT_KEY: &str = "alias/aws/ssm";
/// Versions kept per parameter.
const MAX_VERSIONS: usize = 100;
const MAX_LABELS_PER_VERSION: usize = 10;
const MAX_LEVELS: usize = 15;
const MAX_NAME: usize = 1011;
const STANDARD_MAX: usize = 4096;
const ADVANCED_MAX: usize = 8192;
const MAX_TAGS: usize = 50;

/// What can go wrong; each variant is one SSM error type.
#[derive(Debug, thiserror::Error)]
pub enum ParameterError {
    /// ParameterNotFound.
    #[error("{0}")]
    NotFound(String),
    /// ParameterVersionNotFound.
    #[error("{0}")]
    VersionNotFound(String),
    /// ParameterAlreadyExists.
    #[error("{0}")]
    AlreadyExists(String),
    /// ValidationException.
    #[error("{0}")]
    Validation(String),
    /// HierarchyLevelLimitExceededException.
    #[error("{0}")]
    HierarchyLevelLimit(String),
    /// InvalidKeyId.
    #[error("{0}")]
    InvalidKeyId(String),
    /// InvalidAllowedPatternException.
    #[error("{0}")]
    InvalidAllowedPattern(String),
    /// ParameterPatternMismatchException.
    #[error("{0}")]
    PatternMismatch(String),
    /// ParameterMaxVersionLimitExceeded.
    #[error("{0}")]
    MaxVersionLimit(String),
    /// ParameterVersionLabelLimitExceeded.
    #[error("{0}")]
    LabelLimit(String),
    /// InvalidFilterKey.
    #[error("{0}")]
    InvalidFilterKey(String),
    /// InvalidFilterOption.
    #[error("{0}")]
    InvalidFilterOption(String),
    /// InvalidFilterValue.
    #[error("{0}")]
    InvalidFilterValue(String),
    /// TooManyTagsError.
    #[error("{0}")]
    TooManyTags(String),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

impl From<StoreError> for ParameterError {
    fn from(e: StoreError) -> Self {
        ParameterError::Secrets(SecretsError::Store(e))
    }
}

type Result<T, E = ParameterError> = std::result::Result<T, E>;

fn key_error(e: KmsError) -> ParameterError {
    match e {
        KmsError::Secrets(e) => ParameterError::Secrets(e),
        e => ParameterError::InvalidKeyId(format!("the parameter's KMS key cannot be used: {e}")),
    }
}

/// A parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParameterType {
    String,
    StringList,
    SecureString,
}

impl ParameterType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterType::String => "String",
            ParameterType::StringList => "StringList",
            ParameterType::SecureString => "SecureString",
        }
    }

    /// The type named `s`, as the API spells it.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "String" => Ok(ParameterType::String),
            "StringList" => Ok(ParameterType::StringList),
            "SecureString" => Ok(ParameterType::SecureString),
            _ => Err(ParameterError::Validation(format!(
                "Type {s:?} must be one of String, StringList, SecureString"
            ))),
        }
    }
}

/// A parameter's tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tier {
    Standard,
    Advanced,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "Standard",
            Tier::Advanced => "Advanced",
        }
    }
}

/// A tag on a parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// A parameter: its identity and latest version number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParameterRecord {
    pub name: String,
    pub arn: String,
    pub latest: i64,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl Record for ParameterRecord {
    const KIND: &'static str = "ssm_parameter";
    fn key(&self) -> &str {
        &self.name
    }
}

/// How a value is kept: a SecureString in a KMS envelope, others sealed by the master
/// key.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Stored {
    Kms(Sealed),
    Master(String),
}

/// One version of a parameter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionRecord {
    /// `<name>#<version>`.
    key: String,
    pub name: String,
    pub version: i64,
    pub kind: ParameterType,
    #[serde(default)]
    pub description: Option<String>,
    /// The KMS key a SecureString names (as the user named it).
    #[serde(default)]
    pub key_id: Option<String>,
    #[serde(default)]
    pub allowed_pattern: Option<String>,
    pub tier: Tier,
    pub data_type: String,
    pub modified_at: Timestamp,
    #[serde(default)]
    pub labels: Vec<String>,
    value: Stored,
}

impl Record for VersionRecord {
    const KIND: &'static str = "ssm_parameter_version";
    fn key(&self) -> &str {
        &self.key
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.name)
    }
}

fn version_key(name: &str, version: i64) -> String {
    format!("{name}#{version}")
}

/// A parameter as read: a version's metadata and its value (decrypted, or the
/// ciphertext of a SecureString read without decryption).
#[derive(Clone)]
pub struct Parameter {
    pub arn: String,
    pub meta: VersionRecord,
    pub value: String,
    /// The `:version` or `:label` it was asked with.
    pub selector: Option<String>,
}

impl std::fmt::Debug for Parameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parameter")
            .field("arn", &self.arn)
            .field("version", &self.meta.version)
            .finish_non_exhaustive()
    }
}

/// What PutParameter is given.
#[derive(Clone, Default)]
pub struct Put {
    pub name: String,
    pub value: String,
    pub kind: Option<ParameterType>,
    pub description: Option<String>,
    pub key_id: Option<String>,
    pub overwrite: bool,
    pub allowed_pattern: Option<String>,
    pub tags: Vec<Tag>,
    /// `Standard`, `Advanced` or `Intelligent-Tiering`.
    pub tier: Option<String>,
    pub data_type: Option<String>,
}

impl std::fmt::Debug for Put {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Put")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A ParameterStringFilter (or a legacy ParametersFilter, as one).
#[derive(Debug, Clone)]
pub struct Filter {
    pub key: String,
    pub option: Option<String>,
    pub values: Vec<String>,
}

/// Which listing a filter is for: the keys and options allowed differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    ByPath,
    Describe,
}

/// Checks a parameter name (without selector) and returns it trimmed.
pub fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(ParameterError::Validation(format!(
            "Parameter name must be 1 to {MAX_NAME} characters long"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b))
    {
        return Err(ParameterError::Validation(format!(
            "Parameter name {name:?} may contain only letters, digits and the symbols _.-/ (no spaces)"
        )));
    }
    if name.contains('/') && !name.starts_with('/') {
        return Err(ParameterError::Validation(format!(
            "Parameter name {name:?}: a name with a hierarchy must begin with a forward slash (/)"
        )));
    }
    if name.contains("//") || (name.len() > 1 && name.ends_with('/')) || name == "/" {
        return Err(ParameterError::Validation(format!(
            "Parameter name {name:?} has an empty level of its hierarchy"
        )));
    }
    let first = name
        .trim_start_matches('/')
        .get(..3)
        .unwrap_or_default()
        .to_ascii_lowercase();
    if first == "aws" || first == "ssm" {
        return Err(ParameterError::Validation(format!(
            "Parameter name {name:?}: a parameter name can't be prefixed with \"aws\" or \"ssm\" (case-insensitive)"
        )));
    }
    if name.split('/').filter(|l| !l.is_empty()).count() > MAX_LEVELS {
        return Err(ParameterError::HierarchyLevelLimit(format!(
            "Parameter name {name:?} has more than {MAX_LEVELS} levels of hierarchy"
        )));
    }
    Ok(name.to_string())
}

/// Whether `label` is a valid label (it is reported in InvalidLabels otherwise).
fn valid_label(label: &str) -> bool {
    let lower = label.to_ascii_lowercase();
    !label.is_empty()
        && label.len() <= 100
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !label.as_bytes()[0].is_ascii_digit()
        && !lower.starts_with("aws")
        && !lower.starts_with("ssm")
}

fn check_tags(tags: &[Tag]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(ParameterError::TooManyTags(format!(
            "a parameter can have at most {MAX_TAGS} tags"
        )));
    }
    for t in tags {
        if t.key.is_empty() || t.key.len() > 128 || t.value.len() > 256 {
            return Err(ParameterError::Validation(
                "a tag Key must be 1 to 128 characters long and its Value at most 256".into(),
            ));
        }
    }
    Ok(())
}

/// The name part and the selector (`3` or `label`) of `name:selector`.
fn split_selector(s: &str) -> (&str, Option<&str>) {
    match s.rsplit_once(':') {
        Some((name, sel)) => (name, Some(sel)),
        None => (s, None),
    }
}

/// The parameter store, for one call.
pub struct Store<'a> {
    pub kms: Kms<'a>,
}

impl std::fmt::Debug for Store<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("kms", &self.kms).finish()
    }
}

impl Store<'_> {
    fn master(&self) -> &MasterKey {
        self.kms.master
    }

    fn arn_prefix(&self) -> String {
        format!(
            "arn:aws:ssm:{}:{}:parameter",
            self.kms.region, self.kms.account
        )
    }

    /// A parameter's ARN.
    pub fn arn(&self, name: &str) -> String {
        if name.starts_with('/') {
            format!("{}{name}", self.arn_prefix())
        } else {
            format!("{}/{name}", self.arn_prefix())
        }
    }

    /// The parameter named by `name_or_arn` (without selector).
    fn lookup(&self, tx: &dyn Txn, name_or_arn: &str) -> Result<Option<ParameterRecord>> {
        if let Some(tail) = name_or_arn.strip_prefix(&self.arn_prefix()) {
            // `parameter/a/b` is `/a/b`; `parameter/a` is `/a` or `a`.
            if let Some(p) = tx.load::<ParameterRecord>(tail)? {
                return Ok(Some(p));
            }
            return Ok(match tail.strip_prefix('/') {
                Some(bare) if !bare.contains('/') => tx.load::<ParameterRecord>(bare)?,
                _ => None,
            });
        }
        if name_or_arn.starts_with("arn:") {
            return Ok(None);
        }
        Ok(tx.load::<ParameterRecord>(name_or_arn.trim())?)
    }

    fn not_found(name: &str) -> ParameterError {
        ParameterError::NotFound(format!("Parameter {name} not found."))
    }

    fn versions(&self, tx: &dyn Txn, name: &str) -> Result<Vec<VersionRecord>> {
        let mut all: Vec<VersionRecord> = tx
            .load_all::<VersionRecord>(&Query {
                parent: Some(name.to_string()),
                ..Query::default()
            })?
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        all.sort_by_key(|v| v.version);
        Ok(all)
    }

    fn version(&self, tx: &dyn Txn, name: &str, version: i64) -> Result<Option<VersionRecord>> {
        Ok(tx.load::<VersionRecord>(&version_key(name, version))?)
    }

    fn value_of(
        &self,
        tx: &mut dyn Txn,
        arn: &str,
        v: &VersionRecord,
        decrypt: bool,
    ) -> Result<String> {
        match &v.value {
            Stored::Master(sealed) => {
                let plain = self
                    .master()
                    .open(&version_key(&v.name, v.version), sealed)?;
                String::from_utf8(plain).map_err(|_| SecretsError::Unseal.into())
            }
            Stored::Kms(sealed) if !decrypt => Ok(sealed.as_str().to_string()),
            Stored::Kms(sealed) => {
                let context = EncryptionContext::from([("PARAMETER_ARN".into(), arn.into())]);
                let plain = self.kms.open(tx, sealed, &context).map_err(key_error)?;
                String::from_utf8(plain).map_err(|_| SecretsError::Unseal.into())
            }
        }
    }

    /// Creates a parameter or a new version of one; the version number and tier.
    pub fn put(&self, tx: &mut dyn Txn, put: Put) -> Result<(i64, Tier)> {
        let name = check_name(&put.name)?;
        check_tags(&put.tags)?;
        if put.value.is_empty() {
            return Err(ParameterError::Validation(
                "Value must be at least 1 character long".into(),
            ));
        }
        if let Some(d) = &put.description
            && d.len() > 1024
        {
            return Err(ParameterError::Validation(
                "Description must be at most 1024 characters long".into(),
            ));
        }
        if put.overwrite && !put.tags.is_empty() {
            return Err(ParameterError::Validation(
                "Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.".into(),
            ));
        }
        let existing = tx.load::<ParameterRecord>(&name)?;
        let previous = match &existing {
            Some(p) => self.version(tx, &name, p.latest)?,
            None => None,
        };
        if existing.is_some() && !put.overwrite {
            return Err(ParameterError::AlreadyExists(
                "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.".into(),
            ));
        }
        let kind = match (put.kind, &previous) {
            (Some(k), _) => k,
            (None, Some(p)) => p.kind,
            (None, None) => {
                return Err(ParameterError::Validation(
                    "A parameter type is required when you create a parameter.".into(),
                ));
            }
        };
        let key_id = match (&put.key_id, kind) {
            (Some(_), ParameterType::String | ParameterType::StringList) => {
                return Err(ParameterError::Validation(format!(
                    "KeyId can be given only for a SecureString, not a {}",
                    kind.as_str()
                )));
            }
            (Some(k), ParameterType::SecureString) => Some(k.clone()),
            (None, ParameterType::SecureString) => previous
                .as_ref()
                .filter(|p| p.kind == ParameterType::SecureString)
                .and_then(|p| p.key_id.clone()),
            (None, _) => None,
        };
        let data_type = put
            .data_type
            .clone()
            .or_else(|| previous.as_ref().map(|p| p.data_type.clone()))
            .unwrap_or_else(|| "text".into());
        match data_type.as_str() {
            "text" | "aws:ssm:integration" => {}
            "aws:ec2:image" => {
                if kind != ParameterType::String {
                    return Err(ParameterError::Validation(
                        "DataType aws:ec2:image is only for String parameters".into(),
                    ));
                }
                let ok = put.value.strip_prefix("ami-").is_some_and(|id| {
                    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())
                });
                if !ok {
                    return Err(ParameterError::Validation(
                        "A parameter of DataType aws:ec2:image must hold an AMI id (ami-...)"
                            .into(),
                    ));
                }
            }
            other => {
                return Err(ParameterError::Validation(format!(
                    "DataType {other:?} must be text, aws:ec2:image or aws:ssm:integration"
                )));
            }
        }
        let allowed_pattern = put
            .allowed_pattern
            .clone()
            .or_else(|| previous.as_ref().and_then(|p| p.allowed_pattern.clone()))
            .filter(|p| !p.is_empty());
        if let Some(pattern) = &allowed_pattern {
            if pattern.len() > 1024 {
                return Err(ParameterError::Validation(
                    "AllowedPattern must be at most 1024 characters long".into(),
                ));
            }
            let re = regex::Regex::new(pattern).map_err(|_| {
                ParameterError::InvalidAllowedPattern(format!(
                    "AllowedPattern {pattern:?} is not a valid regular expression"
                ))
            })?;
            if !re.is_match(&put.value) {
                // Never the value: it may be secret.
                return Err(ParameterError::PatternMismatch(format!(
                    "Parameter value, cannot be validated against allowedPattern: {pattern}"
                )));
            }
        }
        let chars = put.value.chars().count();
        let tier = match (put.tier.as_deref(), &previous) {
            (Some("Standard"), Some(p)) if p.tier == Tier::Advanced => {
                return Err(ParameterError::Validation(
                    "An advanced parameter can't be changed back to a standard one; delete it and create it again".into(),
                ));
            }
            (Some("Standard"), _) => Tier::Standard,
            (Some("Advanced"), _) => Tier::Advanced,
            (Some("Intelligent-Tiering"), p) => {
                if chars > STANDARD_MAX || p.as_ref().is_some_and(|p| p.tier == Tier::Advanced) {
                    Tier::Advanced
                } else {
                    Tier::Standard
                }
            }
            (Some(other), _) => {
                return Err(ParameterError::Validation(format!(
                    "Tier {other:?} must be Standard, Advanced or Intelligent-Tiering"
                )));
            }
            (None, Some(p)) => p.tier,
            (None, None) => Tier::Standard,
        };
        let limit = match tier {
            Tier::Standard => STANDARD_MAX,
            Tier::Advanced => ADVANCED_MAX,
        };
        if chars > limit {
            return Err(ParameterError::Validation(match tier {
                Tier::Standard => "Standard tier parameters support a maximum parameter value of 4096 characters. To create a larger parameter value, upgrade the parameter to use the advanced-parameter tier.".to_string(),
                Tier::Advanced => format!("Advanced tier parameters support a maximum parameter value of {ADVANCED_MAX} characters."),
            }));
        }
        let mut record = existing.unwrap_or_else(|| ParameterRecord {
            arn: self.arn(&name),
            name: name.clone(),
            latest: 0,
            tags: put.tags.clone(),
        });
        let version = record.latest + 1;
        let versions = self.versions(tx, &name)?;
        if versions.len() >= MAX_VERSIONS
            && let Some(oldest) = versions.first()
        {
            if !oldest.labels.is_empty() {
                return Err(ParameterError::MaxVersionLimit(format!(
                    "Parameter {name} already has {MAX_VERSIONS} versions and its oldest (version {}) has labels; move or remove them to add a version",
                    oldest.version
                )));
            }
            tx.remove::<VersionRecord>(&oldest.key)?;
        }
        let value = match kind {
            ParameterType::SecureString => {
                let context =
                    EncryptionContext::from([("PARAMETER_ARN".into(), record.arn.clone())]);
                let key = key_id.as_deref().unwrap_or(DEFAULT_KEY);
                Stored::Kms(
                    self.kms
                        .seal(tx, key, &context, put.value.as_bytes())
                        .map_err(key_error)?,
                )
            }
            _ => Stored::Master(
                self.master()
                    .seal(&version_key(&name, version), put.value.as_bytes())?,
            ),
        };
        tx.create(&VersionRecord {
            key: version_key(&name, version),
            name: name.clone(),
            version,
            kind,
            description: put
                .description
                .clone()
                .or_else(|| previous.as_ref().and_then(|p| p.description.clone())),
            key_id,
            allowed_pattern,
            tier,
            data_type,
            modified_at: self.kms.now,
            labels: Vec::new(),
            value,
        })?;
        record.latest = version;
        tx.save(&record)?;
        Ok((version, tier))
    }

    /// The parameter `name` names (a name or ARN, with an optional `:version` or
    /// `:label`).
    pub fn get(&self, tx: &mut dyn Txn, name: &str, decrypt: bool) -> Result<Parameter> {
        if name.is_empty() || name.len() > 2048 {
            return Err(ParameterError::Validation(
                "Name must be 1 to 2048 characters long".into(),
            ));
        }
        let (base, selector) = if let Some(tail) = name.strip_prefix(&self.arn_prefix()) {
            let (tail, sel) = split_selector(tail);
            (format!("{}{tail}", self.arn_prefix()), sel)
        } else {
            let (n, sel) = split_selector(name);
            (n.to_string(), sel)
        };
        let record = self
            .lookup(tx, &base)?
            .ok_or_else(|| Self::not_found(name))?;
        let meta = match selector {
            None => self.version(tx, &record.name, record.latest)?,
            Some(sel) if !sel.is_empty() && sel.bytes().all(|b| b.is_ascii_digit()) => {
                let n: i64 = sel.parse().map_err(|_| Self::version_missing(name))?;
                self.version(tx, &record.name, n)?
            }
            Some(label) => self
                .versions(tx, &record.name)?
                .into_iter()
                .find(|v| v.labels.iter().any(|l| l == label)),
        }
        .ok_or_else(|| Self::version_missing(name))?;
        let value = self.value_of(tx, &record.arn, &meta, decrypt)?;
        Ok(Parameter {
            arn: record.arn,
            meta,
            value,
            selector: selector.map(|s| format!(":{s}")),
        })
    }

    fn version_missing(name: &str) -> ParameterError {
        ParameterError::VersionNotFound(format!(
            "Systems Manager could not find version or label of parameter {name}."
        ))
    }

    /// Deletes a parameter and all its versions.
    pub fn delete(&self, tx: &mut dyn Txn, name: &str) -> Result<()> {
        let record = self
            .lookup(tx, name)?
            .ok_or_else(|| Self::not_found(name))?;
        for v in self.versions(tx, &record.name)? {
            tx.remove::<VersionRecord>(&v.key)?;
        }
        tx.remove::<ParameterRecord>(&record.name)?;
        Ok(())
    }

    /// Every parameter with its latest version, in name order.
    pub fn list(&self, tx: &dyn Txn) -> Result<Vec<(ParameterRecord, VersionRecord)>> {
        let mut out = Vec::new();
        for (_, p) in tx.load_all::<ParameterRecord>(&Query::default())? {
            if let Some(v) = self.version(tx, &p.name, p.latest)? {
                out.push((p, v));
            }
        }
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(out)
    }

    /// The parameters under `path` (one level down, or all levels), filtered, with
    /// values, in name order.
    pub fn by_path(
        &self,
        tx: &mut dyn Txn,
        path: &str,
        recursive: bool,
        filters: &[Filter],
        decrypt: bool,
    ) -> Result<Vec<Parameter>> {
        let path = path.trim();
        if !path.starts_with('/') || path.len() > 2048 {
            return Err(ParameterError::Validation(format!(
                "Path {path:?} must begin with a forward slash (/)"
            )));
        }
        check_filters(filters, Listing::ByPath)?;
        let prefix = if path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        let mut out = Vec::new();
        for (p, v) in self.list(tx)? {
            let Some(rest) = p.name.strip_prefix(&prefix) else {
                continue;
            };
            if (!recursive && rest.contains('/')) || !filters.iter().all(|f| matches(f, &p, &v)) {
                continue;
            }
            let value = self.value_of(tx, &p.arn, &v, decrypt)?;
            out.push(Parameter {
                arn: p.arn,
                meta: v,
                value,
                selector: None,
            });
        }
        Ok(out)
    }

    /// Every parameter's latest version's metadata, filtered, in name order.
    pub fn describe(
        &self,
        tx: &dyn Txn,
        filters: &[Filter],
    ) -> Result<Vec<(ParameterRecord, VersionRecord)>> {
        check_filters(filters, Listing::Describe)?;
        Ok(self
            .list(tx)?
            .into_iter()
            .filter(|(p, v)| filters.iter().all(|f| matches(f, p, v)))
            .collect())
    }

    /// Every version of a parameter, oldest first, with values.
    pub fn history(&self, tx: &mut dyn Txn, name: &str, decrypt: bool) -> Result<Vec<Parameter>> {
        let record = self
            .lookup(tx, name)?
            .ok_or_else(|| Self::not_found(name))?;
        let mut out = Vec::new();
        for v in self.versions(tx, &record.name)? {
            let value = self.value_of(tx, &record.arn, &v, decrypt)?;
            out.push(Parameter {
                arn: record.arn.clone(),
                meta: v,
                value,
                selector: None,
            });
        }
        Ok(out)
    }

    /// Attaches labels to a version (the latest if none is given), moving them from other
    /// versions; the labels that are not valid (not attached) and the version.
    pub fn label(
        &self,
        tx: &mut dyn Txn,
        name: &str,
        version: Option<i64>,
        labels: &[String],
    ) -> Result<(Vec<String>, i64)> {
        check_labels_arg(labels)?;
        let record = self
            .lookup(tx, name)?
            .ok_or_else(|| Self::not_found(name))?;
        let version = version.unwrap_or(record.latest);
        let mut versions = self.versions(tx, &record.name)?;
        let Some(target) = versions.iter().position(|v| v.version == version) else {
            return Err(ParameterError::VersionNotFound(format!(
                "Systems Manager could not find version {version} of {name}."
            )));
        };
        let (valid, invalid): (Vec<String>, Vec<String>) =
            labels.iter().cloned().partition(|l| valid_label(l));
        let mut changed = std::collections::BTreeSet::new();
        for label in &valid {
            for (i, v) in versions.iter_mut().enumerate() {
                if i == target {
                    if !v.labels.contains(label) {
                        v.labels.push(label.clone());
                        changed.insert(i);
                    }
                } else if v.labels.contains(label) {
                    v.labels.retain(|l| l != label);
                    changed.insert(i);
                }
            }
        }
        if versions[target].labels.len() > MAX_LABELS_PER_VERSION {
            return Err(ParameterError::LabelLimit(format!(
                "A parameter version can have at most {MAX_LABELS_PER_VERSION} labels"
            )));
        }
        for i in changed {
            tx.save(&versions[i])?;
        }
        Ok((invalid, version))
    }

    /// Removes labels from a version; the labels removed and those it did not have.
    pub fn unlabel(
        &self,
        tx: &mut dyn Txn,
        name: &str,
        version: i64,
        labels: &[String],
    ) -> Result<(Vec<String>, Vec<String>)> {
        check_labels_arg(labels)?;
        let record = self
            .lookup(tx, name)?
            .ok_or_else(|| Self::not_found(name))?;
        let mut v = self.version(tx, &record.name, version)?.ok_or_else(|| {
            ParameterError::VersionNotFound(format!(
                "Systems Manager could not find version {version} of {name}."
            ))
        })?;
        let (removed, invalid): (Vec<String>, Vec<String>) =
            labels.iter().cloned().partition(|l| v.labels.contains(l));
        v.labels.retain(|l| !removed.contains(l));
        tx.save(&v)?;
        Ok((removed, invalid))
    }
}

fn check_labels_arg(labels: &[String]) -> Result<()> {
    if labels.is_empty() || labels.len() > MAX_LABELS_PER_VERSION {
        return Err(ParameterError::Validation(format!(
            "Labels must hold 1 to {MAX_LABELS_PER_VERSION} labels"
        )));
    }
    Ok(())
}

/// Checks filters' keys and options for `listing`.
pub fn check_filters(filters: &[Filter], listing: Listing) -> Result<()> {
    for f in filters {
        let key = f.key.as_str();
        let tag = key.strip_prefix("tag:");
        let options: &[&str] = match (key, listing) {
            ("Type" | "KeyId", _) => &["Equals", "BeginsWith"],
            ("Label", Listing::ByPath) => &["Equals"],
            ("Name", Listing::Describe) => &["Equals", "BeginsWith", "Contains"],
            ("Path", Listing::Describe) => &["Recursive", "OneLevel"],
            ("Tier" | "DataType", Listing::Describe) => &["Equals", "BeginsWith"],
            (_, Listing::Describe) if tag.is_some_and(|t| !t.is_empty()) => {
                &["Equals", "BeginsWith"]
            }
            _ => {
                return Err(ParameterError::InvalidFilterKey(format!(
                    "The filter key {key:?} is not valid here"
                )));
            }
        };
        if let Some(o) = &f.option
            && !options.contains(&o.as_str())
        {
            return Err(ParameterError::InvalidFilterOption(format!(
                "The filter option {o:?} is not valid for key {key:?}; valid options: {}",
                options.join(", ")
            )));
        }
        if f.values.is_empty() && tag.is_none() {
            return Err(ParameterError::InvalidFilterValue(format!(
                "The filter {key:?} needs at least one value"
            )));
        }
        if f.values.len() > 50 || f.values.iter().any(|v| v.is_empty() || v.len() > 1024) {
            return Err(ParameterError::InvalidFilterValue(format!(
                "The values of filter {key:?} must be 1 to 50 strings of 1 to 1024 characters"
            )));
        }
        if key == "Type"
            && f.values.iter().any(|v| {
                ParameterType::parse(v).is_err() && f.option.as_deref() != Some("BeginsWith")
            })
        {
            return Err(ParameterError::InvalidFilterValue(
                "The Type filter takes String, StringList or SecureString".into(),
            ));
        }
    }
    Ok(())
}

/// Whether parameter `p` at version `v` passes `f`.
fn matches(f: &Filter, p: &ParameterRecord, v: &VersionRecord) -> bool {
    let option = f.option.as_deref();
    let test = |field: &str| {
        f.values.iter().any(|want| match option {
            Some("BeginsWith") => field.starts_with(want.as_str()),
            Some("Contains") => field.contains(want.as_str()),
            _ => field == want,
        })
    };
    match f.key.as_str() {
        "Type" => test(v.kind.as_str()),
        "KeyId" => v
            .key_id
            .as_deref()
            .or((v.kind == ParameterType::SecureString).then_some(DEFAULT_KEY))
            .is_some_and(test),
        "Label" => v.labels.iter().any(|l| f.values.contains(l)),
        "Name" => {
            let bare = p.name.trim_start_matches('/');
            f.values.iter().any(|want| {
                let want = want.trim_start_matches('/');
                match option {
                    Some("BeginsWith") => bare.starts_with(want),
                    Some("Contains") => bare.contains(want),
                    _ => bare == want,
                }
            })
        }
        "Path" => f.values.iter().any(|path| {
            let prefix = if path.ends_with('/') {
                path.clone()
            } else {
                format!("{path}/")
            };
            p.name
                .strip_prefix(&prefix)
                .is_some_and(|rest| option == Some("Recursive") || !rest.contains('/'))
        }),
        "Tier" => test(v.tier.as_str()),
        "DataType" => test(&v.data_type),
        key => match key.strip_prefix("tag:") {
            Some(tag) => p
                .tags
                .iter()
                .find(|t| t.key == tag)
                .is_some_and(|t| f.values.is_empty() || test(&t.value)),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests;
