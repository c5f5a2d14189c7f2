//! KMS (`X-Amz-Target: TrentService.<Operation>`): shapes as in botocore's
//! `kms/2014-11-01/service-2.json`, errors as KMS names them. Keys are symmetric
//! (`SYMMETRIC_DEFAULT`, AES-256-GCM); key policies are accepted and not enforced (the
//! server's access keys may do everything). The rules are `runway_secrets::kms`'.

use super::{Fault, blob, client, internal, kms, page, range, required, run, to_blob, validation};
use crate::Api;
use crate::ops::Ctx;
use bytes::Bytes;
use runway_model::Timestamp;
use runway_secrets::kms::{EncryptionContext, KeyRecord, KeyState, KmsError, NewKey};
use runway_store::Txn;
use serde::{Deserialize, Serialize};

/// The operations served.
pub(super) const OPERATIONS: &[&str] = &[
    "TrentService.CreateKey",
    "TrentService.DescribeKey",
    "TrentService.ListKeys",
    "TrentService.EnableKey",
    "TrentService.DisableKey",
    "TrentService.CreateAlias",
    "TrentService.UpdateAlias",
    "TrentService.DeleteAlias",
    "TrentService.ListAliases",
    "TrentService.Encrypt",
    "TrentService.Decrypt",
    "TrentService.ReEncrypt",
    "TrentService.GenerateDataKey",
    "TrentService.GenerateDataKeyWithoutPlaintext",
    "TrentService.EnableKeyRotation",
    "TrentService.DisableKeyRotation",
    "TrentService.GetKeyRotationStatus",
    "TrentService.RotateKeyOnDemand",
    "TrentService.ListKeyRotations",
    "TrentService.ScheduleKeyDeletion",
    "TrentService.CancelKeyDeletion",
];

pub(super) async fn dispatch(api: &Api, operation: &str, body: Bytes) -> Result<Vec<u8>, Fault> {
    match operation {
        "CreateKey" => run(api, body, create_key).await,
        "DescribeKey" => run(api, body, describe_key).await,
        "ListKeys" => run(api, body, list_keys).await,
        "EnableKey" => run(api, body, enable_key).await,
        "DisableKey" => run(api, body, disable_key).await,
        "CreateAlias" => run(api, body, create_alias).await,
        "UpdateAlias" => run(api, body, update_alias).await,
        "DeleteAlias" => run(api, body, delete_alias).await,
        "ListAliases" => run(api, body, list_aliases).await,
        "Encrypt" => run(api, body, encrypt).await,
        "Decrypt" => run(api, body, decrypt).await,
        "ReEncrypt" => run(api, body, re_encrypt).await,
        "GenerateDataKey" => run(api, body, generate_data_key).await,
        "GenerateDataKeyWithoutPlaintext" => {
            run(api, body, generate_data_key_without_plaintext).await
        }
        "EnableKeyRotation" => run(api, body, enable_key_rotation).await,
        "DisableKeyRotation" => run(api, body, disable_key_rotation).await,
        "GetKeyRotationStatus" => run(api, body, get_key_rotation_status).await,
        "RotateKeyOnDemand" => run(api, body, rotate_key_on_demand).await,
        "ListKeyRotations" => run(api, body, list_key_rotations).await,
        "ScheduleKeyDeletion" => run(api, body, schedule_key_deletion).await,
        "CancelKeyDeletion" => run(api, body, cancel_key_deletion).await,
        other => Err(internal(format!("operation {other} has no handler"))),
    }
}

impl From<KmsError> for Fault {
    fn from(e: KmsError) -> Self {
        let kind = match &e {
            KmsError::NotFound(_) => "NotFoundException",
            KmsError::Disabled(_) => "DisabledException",
            KmsError::InvalidState(_) => "KMSInvalidStateException",
            KmsError::InvalidCiphertext => "InvalidCiphertextException",
            KmsError::IncorrectKey(_) => "IncorrectKeyException",
            KmsError::AlreadyExists(_) => "AlreadyExistsException",
            KmsError::InvalidAliasName(_) => "InvalidAliasNameException",
            KmsError::Unsupported(_) => "UnsupportedOperationException",
            KmsError::Validation(_) => "ValidationException",
            KmsError::LimitExceeded(_) => "LimitExceededException",
            KmsError::Secrets(e) => return internal(e),
        };
        client(kind, e.to_string())
    }
}

const SYMMETRIC: &str = "SYMMETRIC_DEFAULT";

/// Checks an enum member: a value KMS knows but runway's keys cannot do is
/// UnsupportedOperationException; anything else is a ValidationException.
fn only(field: &str, value: Option<&str>, supported: &str, known: &[&str]) -> Result<(), Fault> {
    match value {
        None => Ok(()),
        Some(v) if v == supported => Ok(()),
        Some(v) if known.contains(&v) => Err(client(
            "UnsupportedOperationException",
            format!(
                "{field} {v} is not supported: runway's KMS keys are symmetric encryption keys ({supported})"
            ),
        )),
        Some(v) => Err(validation(format!(
            "1 validation error detected: Value '{v}' at '{field}' failed to satisfy constraint: Member must satisfy enum value set: {}",
            known.join(", ")
        ))),
    }
}

const KEY_SPECS: &[&str] = &[
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "SYMMETRIC_DEFAULT",
    "HMAC_224",
    "HMAC_256",
    "HMAC_384",
    "HMAC_512",
    "SM2",
    "ML_DSA_44",
    "ML_DSA_65",
    "ML_DSA_87",
    "ECC_NIST_EDWARDS25519",
];

const ALGORITHMS: &[&str] = &[
    "SYMMETRIC_DEFAULT",
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "SM2PKE",
];

/// The encryption algorithm a call names: only SYMMETRIC_DEFAULT works with these keys.
fn algorithm(field: &str, value: Option<&str>) -> Result<(), Fault> {
    match value {
        Some(v) if v != SYMMETRIC && ALGORITHMS.contains(&v) => Err(client(
            "InvalidKeyUsageException",
            format!("{field} {v} cannot be used with a symmetric key; use SYMMETRIC_DEFAULT"),
        )),
        v => only(field, v, SYMMETRIC, ALGORITHMS),
    }
}

/// Refuses what needs a Nitro enclave.
fn no_recipient(recipient: &Option<serde_json::Value>) -> Result<(), Fault> {
    if recipient.is_some() {
        return Err(client(
            "UnsupportedOperationException",
            "Recipient (attested Nitro enclaves) is not supported by runway",
        ));
    }
    Ok(())
}

/// A DryRun that would have succeeded, as KMS answers it.
fn dry_run(requested: Option<bool>) -> Result<(), Fault> {
    if requested == Some(true) {
        return Err(client(
            "DryRunOperationException",
            "The request would have succeeded, but the DryRun option is set.",
        ));
    }
    Ok(())
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyMetadata {
    #[serde(rename = "AWSAccountId")]
    aws_account_id: String,
    key_id: String,
    arn: String,
    creation_date: Timestamp,
    enabled: bool,
    description: String,
    key_usage: &'static str,
    key_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion_date: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_deletion_window_in_days: Option<u32>,
    origin: &'static str,
    key_manager: &'static str,
    customer_master_key_spec: &'static str,
    key_spec: &'static str,
    encryption_algorithms: Vec<&'static str>,
    multi_region: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_key_material_id: Option<String>,
}

fn metadata(ctx: &Ctx<'_>, key: &KeyRecord) -> KeyMetadata {
    KeyMetadata {
        aws_account_id: ctx.config.account_id.clone(),
        key_id: key.id.clone(),
        arn: key.arn.clone(),
        creation_date: key.created_at,
        enabled: key.state == KeyState::Enabled,
        description: key.description.clone(),
        key_usage: "ENCRYPT_DECRYPT",
        key_state: key.state.as_str(),
        deletion_date: key.deletion_date,
        pending_deletion_window_in_days: key.pending_window_days,
        origin: "AWS_KMS",
        key_manager: key.manager.as_str(),
        customer_master_key_spec: SYMMETRIC,
        key_spec: SYMMETRIC,
        encryption_algorithms: vec![SYMMETRIC],
        multi_region: false,
        current_key_material_id: key.current_material().map(str::to_string),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyMetadataResponse {
    key_metadata: KeyMetadata,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Tag {
    tag_key: Option<String>,
    tag_value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateKeyRequest {
    policy: Option<String>,
    description: Option<String>,
    key_usage: Option<String>,
    customer_master_key_spec: Option<String>,
    key_spec: Option<String>,
    origin: Option<String>,
    custom_key_store_id: Option<String>,
    bypass_policy_lockout_safety_check: Option<bool>,
    tags: Option<Vec<Tag>>,
    multi_region: Option<bool>,
    xks_key_id: Option<String>,
}

fn create_key(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: CreateKeyRequest,
) -> Result<KeyMetadataResponse, Fault> {
    only(
        "keyUsage",
        req.key_usage.as_deref(),
        "ENCRYPT_DECRYPT",
        &[
            "SIGN_VERIFY",
            "ENCRYPT_DECRYPT",
            "GENERATE_VERIFY_MAC",
            "KEY_AGREEMENT",
        ],
    )?;
    only("keySpec", req.key_spec.as_deref(), SYMMETRIC, KEY_SPECS)?;
    only(
        "customerMasterKeySpec",
        req.customer_master_key_spec.as_deref(),
        SYMMETRIC,
        KEY_SPECS,
    )?;
    only(
        "origin",
        req.origin.as_deref(),
        "AWS_KMS",
        &["AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"],
    )?;
    if req.custom_key_store_id.is_some() || req.xks_key_id.is_some() {
        return Err(client(
            "UnsupportedOperationException",
            "custom key stores are not supported by runway",
        ));
    }
    if req.multi_region == Some(true) {
        return Err(client(
            "UnsupportedOperationException",
            "multi-Region keys are not supported by runway, which serves one region",
        ));
    }
    if let Some(p) = &req.policy
        && (p.is_empty() || p.len() > 131072)
    {
        return Err(validation("Policy must be 1 to 131072 characters long"));
    }
    let _ = req.bypass_policy_lockout_safety_check;
    let description = req.description.unwrap_or_default();
    if description.len() > 8192 {
        return Err(validation(
            "Description must be at most 8192 characters long",
        ));
    }
    let mut tags = Vec::new();
    for t in req.tags.unwrap_or_default() {
        let key = required("Tags.member.TagKey", &t.tag_key)?.clone();
        let value = required("Tags.member.TagValue", &t.tag_value)?.clone();
        if key.is_empty() || key.len() > 128 || value.len() > 256 {
            return Err(client(
                "TagException",
                "a TagKey must be 1 to 128 characters long and a TagValue at most 256",
            ));
        }
        tags.push((key, value));
    }
    let key = kms(ctx).create_key(tx, NewKey { description, tags })?;
    Ok(KeyMetadataResponse {
        key_metadata: metadata(ctx, &key),
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct KeyIdRequest {
    key_id: Option<String>,
    grant_tokens: Option<Vec<String>>,
}

fn describe_key(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: KeyIdRequest,
) -> Result<KeyMetadataResponse, Fault> {
    let key_id = required("keyId", &req.key_id)?;
    let _ = req.grant_tokens;
    let key = kms(ctx).find_key(tx, key_id, true)?;
    Ok(KeyMetadataResponse {
        key_metadata: metadata(ctx, &key),
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ListRequest {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
    include_key_material: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyListEntry {
    key_id: String,
    key_arn: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListKeysResponse {
    keys: Vec<KeyListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
    truncated: bool,
}

fn list_keys(tx: &mut dyn Txn, ctx: &Ctx<'_>, req: ListRequest) -> Result<ListKeysResponse, Fault> {
    range("limit", req.limit, 1, 1000)?;
    let keys: Vec<KeyRecord> = kms(ctx)
        .list_keys(tx)?
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    let (keys, next_marker) = page(
        keys,
        req.marker.as_deref(),
        req.limit.unwrap_or(100) as usize,
        "InvalidMarkerException",
    )?;
    Ok(ListKeysResponse {
        keys: keys
            .into_iter()
            .map(|k| KeyListEntry {
                key_id: k.id,
                key_arn: k.arn,
            })
            .collect(),
        truncated: next_marker.is_some(),
        next_marker,
    })
}

#[derive(Debug, Serialize)]
struct Empty {}

fn enable_key(tx: &mut dyn Txn, ctx: &Ctx<'_>, req: KeyIdRequest) -> Result<Empty, Fault> {
    kms(ctx).set_enabled(tx, required("keyId", &req.key_id)?, true)?;
    Ok(Empty {})
}

fn disable_key(tx: &mut dyn Txn, ctx: &Ctx<'_>, req: KeyIdRequest) -> Result<Empty, Fault> {
    kms(ctx).set_enabled(tx, required("keyId", &req.key_id)?, false)?;
    Ok(Empty {})
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct AliasRequest {
    alias_name: Option<String>,
    target_key_id: Option<String>,
}

fn create_alias(tx: &mut dyn Txn, ctx: &Ctx<'_>, req: AliasRequest) -> Result<Empty, Fault> {
    let name = required("aliasName", &req.alias_name)?;
    let target = required("targetKeyId", &req.target_key_id)?;
    kms(ctx).create_alias(tx, name, target)?;
    Ok(Empty {})
}

fn update_alias(tx: &mut dyn Txn, ctx: &Ctx<'_>, req: AliasRequest) -> Result<Empty, Fault> {
    let name = required("aliasName", &req.alias_name)?;
    let target = required("targetKeyId", &req.target_key_id)?;
    kms(ctx).update_alias(tx, name, target)?;
    Ok(Empty {})
}

fn delete_alias(tx: &mut dyn Txn, ctx: &Ctx<'_>, req: AliasRequest) -> Result<Empty, Fault> {
    let name = required("aliasName", &req.alias_name)?;
    kms(ctx).delete_alias(tx, name)?;
    Ok(Empty {})
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct AliasListEntry {
    alias_name: String,
    alias_arn: String,
    target_key_id: String,
    creation_date: Timestamp,
    last_updated_date: Timestamp,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListAliasesResponse {
    aliases: Vec<AliasListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
    truncated: bool,
}

fn list_aliases(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: ListRequest,
) -> Result<ListAliasesResponse, Fault> {
    range("limit", req.limit, 1, 100)?;
    let kms = kms(ctx);
    let aliases: Vec<_> = kms
        .list_aliases(tx, req.key_id.as_deref())?
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    let (aliases, next_marker) = page(
        aliases,
        req.marker.as_deref(),
        req.limit.unwrap_or(50) as usize,
        "InvalidMarkerException",
    )?;
    Ok(ListAliasesResponse {
        aliases: aliases
            .into_iter()
            .map(|a| AliasListEntry {
                alias_arn: kms.alias_arn(&a.name),
                alias_name: a.name,
                target_key_id: a.target,
                creation_date: a.created_at,
                last_updated_date: a.updated_at,
            })
            .collect(),
        truncated: next_marker.is_some(),
        next_marker,
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct EncryptRequest {
    key_id: Option<String>,
    plaintext: Option<String>,
    encryption_context: Option<EncryptionContext>,
    grant_tokens: Option<Vec<String>>,
    encryption_algorithm: Option<String>,
    dry_run: Option<bool>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptResponse {
    ciphertext_blob: String,
    key_id: String,
    encryption_algorithm: &'static str,
}

fn encrypt(tx: &mut dyn Txn, ctx: &Ctx<'_>, req: EncryptRequest) -> Result<EncryptResponse, Fault> {
    let key_id = required("keyId", &req.key_id)?;
    let plaintext = blob("Plaintext", required("plaintext", &req.plaintext)?)?;
    algorithm("encryptionAlgorithm", req.encryption_algorithm.as_deref())?;
    let _ = req.grant_tokens;
    let context = req.encryption_context.unwrap_or_default();
    let (ciphertext, key) = kms(ctx).encrypt(tx, key_id, &plaintext, &context)?;
    dry_run(req.dry_run)?;
    Ok(EncryptResponse {
        ciphertext_blob: to_blob(&ciphertext),
        key_id: key.arn,
        encryption_algorithm: SYMMETRIC,
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DecryptRequest {
    ciphertext_blob: Option<String>,
    encryption_context: Option<EncryptionContext>,
    grant_tokens: Option<Vec<String>>,
    key_id: Option<String>,
    encryption_algorithm: Option<String>,
    recipient: Option<serde_json::Value>,
    dry_run: Option<bool>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptResponse {
    key_id: String,
    plaintext: String,
    encryption_algorithm: &'static str,
    key_material_id: String,
}

fn decrypt(tx: &mut dyn Txn, ctx: &Ctx<'_>, req: DecryptRequest) -> Result<DecryptResponse, Fault> {
    let ciphertext = blob(
        "CiphertextBlob",
        required("ciphertextBlob", &req.ciphertext_blob)?,
    )?;
    algorithm("encryptionAlgorithm", req.encryption_algorithm.as_deref())?;
    no_recipient(&req.recipient)?;
    let _ = req.grant_tokens;
    let context = req.encryption_context.unwrap_or_default();
    let (plain, key, material) =
        kms(ctx).decrypt(tx, &ciphertext, &context, req.key_id.as_deref())?;
    dry_run(req.dry_run)?;
    Ok(DecryptResponse {
        key_id: key.arn,
        plaintext: to_blob(&plain),
        encryption_algorithm: SYMMETRIC,
        key_material_id: material,
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ReEncryptRequest {
    ciphertext_blob: Option<String>,
    source_encryption_context: Option<EncryptionContext>,
    source_key_id: Option<String>,
    destination_key_id: Option<String>,
    destination_encryption_context: Option<EncryptionContext>,
    source_encryption_algorithm: Option<String>,
    destination_encryption_algorithm: Option<String>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ReEncryptResponse {
    ciphertext_blob: String,
    source_key_id: String,
    key_id: String,
    source_encryption_algorithm: &'static str,
    destination_encryption_algorithm: &'static str,
    source_key_material_id: String,
    destination_key_material_id: String,
}

fn re_encrypt(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: ReEncryptRequest,
) -> Result<ReEncryptResponse, Fault> {
    let ciphertext = blob(
        "CiphertextBlob",
        required("ciphertextBlob", &req.ciphertext_blob)?,
    )?;
    let destination = required("destinationKeyId", &req.destination_key_id)?;
    algorithm(
        "sourceEncryptionAlgorithm",
        req.source_encryption_algorithm.as_deref(),
    )?;
    algorithm(
        "destinationEncryptionAlgorithm",
        req.destination_encryption_algorithm.as_deref(),
    )?;
    let _ = req.grant_tokens;
    let kms = kms(ctx);
    let (plain, source, source_material) = kms.decrypt(
        tx,
        &ciphertext,
        &req.source_encryption_context.unwrap_or_default(),
        req.source_key_id.as_deref(),
    )?;
    let (ciphertext, key) = kms.encrypt(
        tx,
        destination,
        &plain,
        &req.destination_encryption_context.unwrap_or_default(),
    )?;
    dry_run(req.dry_run)?;
    Ok(ReEncryptResponse {
        ciphertext_blob: to_blob(&ciphertext),
        source_key_id: source.arn,
        source_encryption_algorithm: SYMMETRIC,
        destination_encryption_algorithm: SYMMETRIC,
        source_key_material_id: source_material,
        destination_key_material_id: key.current_material().unwrap_or_default().to_string(),
        key_id: key.arn,
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct GenerateDataKeyRequest {
    key_id: Option<String>,
    encryption_context: Option<EncryptionContext>,
    number_of_bytes: Option<i64>,
    key_spec: Option<String>,
    grant_tokens: Option<Vec<String>>,
    recipient: Option<serde_json::Value>,
    dry_run: Option<bool>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateDataKeyResponse {
    ciphertext_blob: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext: Option<String>,
    key_id: String,
    key_material_id: String,
}

fn data_key(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: GenerateDataKeyRequest,
    with_plaintext: bool,
) -> Result<GenerateDataKeyResponse, Fault> {
    let key_id = required("keyId", &req.key_id)?;
    no_recipient(&req.recipient)?;
    let _ = req.grant_tokens;
    let len = match (req.number_of_bytes, req.key_spec.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(validation(
                "Please specify either number of bytes or key spec, not both.",
            ));
        }
        (None, None) => {
            return Err(validation(
                "Please specify either number of bytes or key spec.",
            ));
        }
        (Some(n), None) => {
            range("numberOfBytes", Some(n), 1, 1024)?;
            n as usize
        }
        (None, Some("AES_256")) => 32,
        (None, Some("AES_128")) => 16,
        (None, Some(other)) => {
            return Err(validation(format!(
                "1 validation error detected: Value '{other}' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]"
            )));
        }
    };
    let data =
        kms(ctx).generate_data_key(tx, key_id, len, &req.encryption_context.unwrap_or_default())?;
    dry_run(req.dry_run)?;
    Ok(GenerateDataKeyResponse {
        ciphertext_blob: to_blob(&data.ciphertext),
        plaintext: with_plaintext.then(|| to_blob(&data.plaintext)),
        key_id: data.key_arn.clone(),
        key_material_id: data.material_id.clone(),
    })
}

fn generate_data_key(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: GenerateDataKeyRequest,
) -> Result<GenerateDataKeyResponse, Fault> {
    data_key(tx, ctx, req, true)
}

fn generate_data_key_without_plaintext(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: GenerateDataKeyRequest,
) -> Result<GenerateDataKeyResponse, Fault> {
    data_key(tx, ctx, req, false)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct RotationRequest {
    key_id: Option<String>,
    rotation_period_in_days: Option<i64>,
}

fn enable_key_rotation(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: RotationRequest,
) -> Result<Empty, Fault> {
    let key_id = required("keyId", &req.key_id)?;
    range(
        "rotationPeriodInDays",
        req.rotation_period_in_days,
        90,
        2560,
    )?;
    let days = req
        .rotation_period_in_days
        .map_or(runway_secrets::kms::DEFAULT_ROTATION_DAYS, |d| d as u32);
    kms(ctx).set_rotation(tx, key_id, Some(days))?;
    Ok(Empty {})
}

fn disable_key_rotation(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: RotationRequest,
) -> Result<Empty, Fault> {
    let key_id = required("keyId", &req.key_id)?;
    kms(ctx).set_rotation(tx, key_id, None)?;
    Ok(Empty {})
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct RotationStatus {
    key_rotation_enabled: bool,
    key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_period_in_days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_rotation_date: Option<Timestamp>,
}

fn get_key_rotation_status(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: RotationRequest,
) -> Result<RotationStatus, Fault> {
    let key = kms(ctx).rotation_status(tx, required("keyId", &req.key_id)?)?;
    let rotation = key.automatic_rotation();
    Ok(RotationStatus {
        key_rotation_enabled: rotation.is_some(),
        key_id: key.arn,
        rotation_period_in_days: rotation.map(|(days, _)| days),
        next_rotation_date: rotation.and_then(|(_, next)| next),
    })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyIdResponse {
    key_id: String,
}

fn rotate_key_on_demand(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: KeyIdRequest,
) -> Result<KeyIdResponse, Fault> {
    let key = kms(ctx).rotate_now(tx, required("keyId", &req.key_id)?)?;
    Ok(KeyIdResponse { key_id: key.id })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct RotationEntry {
    key_id: String,
    key_material_id: String,
    key_material_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_date: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_type: Option<&'static str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListKeyRotationsResponse {
    rotations: Vec<RotationEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
    truncated: bool,
}

fn list_key_rotations(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: ListRequest,
) -> Result<ListKeyRotationsResponse, Fault> {
    let key_id = required("keyId", &req.key_id)?;
    range("limit", req.limit, 1, 1000)?;
    let all = match req.include_key_material.as_deref() {
        None | Some("ROTATIONS_ONLY") => false,
        Some("ALL_KEY_MATERIAL") => true,
        Some(other) => {
            return Err(validation(format!(
                "IncludeKeyMaterial {other:?} must be ALL_KEY_MATERIAL or ROTATIONS_ONLY"
            )));
        }
    };
    let key = kms(ctx).rotation_status(tx, key_id)?;
    let current = key.current_material().unwrap_or_default().to_string();
    let entries: Vec<RotationEntry> = key
        .materials
        .iter()
        .filter(|m| all || m.rotation.is_some())
        .map(|m| RotationEntry {
            key_id: key.arn.clone(),
            key_material_id: m.id.clone(),
            key_material_state: if m.id == current {
                "CURRENT"
            } else {
                "NON_CURRENT"
            },
            rotation_date: m.rotation.map(|_| m.created_at),
            rotation_type: m.rotation.map(|r| match r {
                runway_secrets::kms::RotationType::Automatic => "AUTOMATIC",
                runway_secrets::kms::RotationType::OnDemand => "ON_DEMAND",
            }),
        })
        .collect();
    let (rotations, next_marker) = page(
        entries,
        req.marker.as_deref(),
        req.limit.unwrap_or(100) as usize,
        "InvalidMarkerException",
    )?;
    Ok(ListKeyRotationsResponse {
        rotations,
        truncated: next_marker.is_some(),
        next_marker,
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ScheduleKeyDeletionRequest {
    key_id: Option<String>,
    pending_window_in_days: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ScheduleKeyDeletionResponse {
    key_id: String,
    deletion_date: Option<Timestamp>,
    key_state: &'static str,
    pending_window_in_days: Option<u32>,
}

fn schedule_key_deletion(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: ScheduleKeyDeletionRequest,
) -> Result<ScheduleKeyDeletionResponse, Fault> {
    let key_id = required("keyId", &req.key_id)?;
    range("pendingWindowInDays", req.pending_window_in_days, 1, 365)?;
    let days = req.pending_window_in_days.unwrap_or(30) as u32;
    let key = kms(ctx).schedule_deletion(tx, key_id, days)?;
    Ok(ScheduleKeyDeletionResponse {
        key_id: key.arn,
        deletion_date: key.deletion_date,
        key_state: key.state.as_str(),
        pending_window_in_days: key.pending_window_days,
    })
}

fn cancel_key_deletion(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: KeyIdRequest,
) -> Result<KeyIdResponse, Fault> {
    let key = kms(ctx).cancel_deletion(tx, required("keyId", &req.key_id)?)?;
    Ok(KeyIdResponse { key_id: key.arn })
}
