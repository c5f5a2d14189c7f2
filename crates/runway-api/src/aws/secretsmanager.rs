//! Secrets Manager (`X-Amz-Target: secretsmanager.<Operation>`): shapes as in botocore's
//! `secretsmanager/2017-10-17/service-2.json`, errors as Secrets Manager names them. The
//! store's rules are `runway_secrets::secretsmanager`'s.

use super::{Fault, blob, client, internal, kms, page, range, required, run, to_blob};
use crate::Api;
use crate::ops::Ctx;
use bytes::Bytes;
use runway_model::Timestamp;
use runway_secrets::secretsmanager::{
    NewSecret, SecretError, SecretRecord, SecretValue, Store, Tag as StoreTag, VersionMeta,
};
use runway_store::Txn;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The operations served.
pub(super) const OPERATIONS: &[&str] = &[
    "secretsmanager.CreateSecret",
    "secretsmanager.GetSecretValue",
    "secretsmanager.BatchGetSecretValue",
    "secretsmanager.PutSecretValue",
    "secretsmanager.UpdateSecret",
    "secretsmanager.DescribeSecret",
    "secretsmanager.ListSecrets",
    "secretsmanager.ListSecretVersionIds",
    "secretsmanager.DeleteSecret",
    "secretsmanager.RestoreSecret",
    "secretsmanager.UpdateSecretVersionStage",
    "secretsmanager.TagResource",
    "secretsmanager.UntagResource",
];

pub(super) async fn dispatch(api: &Api, operation: &str, body: Bytes) -> Result<Vec<u8>, Fault> {
    match operation {
        "CreateSecret" => run(api, body, create_secret).await,
        "GetSecretValue" => run(api, body, get_secret_value).await,
        "BatchGetSecretValue" => run(api, body, batch_get_secret_value).await,
        "PutSecretValue" => run(api, body, put_secret_value).await,
        "UpdateSecret" => run(api, body, update_secret).await,
        "DescribeSecret" => run(api, body, describe_secret).await,
        "ListSecrets" => run(api, body, list_secrets).await,
        "ListSecretVersionIds" => run(api, body, list_secret_version_ids).await,
        "DeleteSecret" => run(api, body, delete_secret).await,
        "RestoreSecret" => run(api, body, restore_secret).await,
        "UpdateSecretVersionStage" => run(api, body, update_secret_version_stage).await,
        "TagResource" => run(api, body, tag_resource).await,
        "UntagResource" => run(api, body, untag_resource).await,
        other => Err(internal(format!("operation {other} has no handler"))),
    }
}

impl From<SecretError> for Fault {
    fn from(e: SecretError) -> Self {
        let kind = match &e {
            SecretError::NotFound(_) => "ResourceNotFoundException",
            SecretError::Exists(_) => "ResourceExistsException",
            SecretError::InvalidParameter(_) => "InvalidParameterException",
            SecretError::InvalidRequest(_) => "InvalidRequestException",
            SecretError::Validation(_) => "ValidationException",
            SecretError::LimitExceeded(_) => "LimitExceededException",
            SecretError::Encryption(_) => "EncryptionFailure",
            SecretError::Decryption(_) => "DecryptionFailure",
            SecretError::Secrets(e) => return internal(e),
        };
        client(kind, e.to_string())
    }
}

fn store<'a>(ctx: &'a Ctx<'_>) -> Store<'a> {
    Store { kms: kms(ctx) }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Tag {
    key: Option<String>,
    value: Option<String>,
}

fn store_tags(tags: Option<Vec<Tag>>) -> Result<Vec<StoreTag>, Fault> {
    tags.unwrap_or_default()
        .into_iter()
        .map(|t| {
            Ok(StoreTag {
                key: required("Tags.member.Key", &t.key)?.clone(),
                value: t.value.unwrap_or_default(),
            })
        })
        .collect()
}

fn wire_tags(tags: &[StoreTag]) -> Option<Vec<Tag>> {
    (!tags.is_empty()).then(|| {
        tags.iter()
            .map(|t| Tag {
                key: Some(t.key.clone()),
                value: Some(t.value.clone()),
            })
            .collect()
    })
}

/// A value from SecretString or SecretBinary (not both).
fn value(string: Option<String>, binary: Option<String>) -> Result<Option<SecretValue>, Fault> {
    match (string, binary) {
        (Some(_), Some(_)) => Err(client(
            "InvalidParameterException",
            "You can't specify both a binary secret value and a string secret value in the same secret.",
        )),
        (Some(s), None) => Ok(Some(SecretValue::String(s))),
        (None, Some(b)) => Ok(Some(SecretValue::Binary(blob("SecretBinary", &b)?))),
        (None, None) => Ok(None),
    }
}

/// Labelled versions, as DescribeSecret and ListSecrets show them.
fn stages_map(secret: &SecretRecord) -> Option<BTreeMap<String, Vec<String>>> {
    let map: BTreeMap<String, Vec<String>> = secret
        .versions
        .iter()
        .filter(|v| !v.stages.is_empty())
        .map(|v| (v.id.clone(), v.stages.clone()))
        .collect();
    (!map.is_empty()).then_some(map)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateSecretRequest {
    name: Option<String>,
    client_request_token: Option<String>,
    description: Option<String>,
    kms_key_id: Option<String>,
    secret_binary: Option<String>,
    secret_string: Option<String>,
    tags: Option<Vec<Tag>>,
    add_replica_regions: Option<Vec<serde_json::Value>>,
    force_overwrite_replica_secret: Option<bool>,
    #[serde(rename = "Type")]
    kind: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct CreateSecretResponse {
    #[serde(rename = "ARN")]
    arn: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_id: Option<String>,
    replication_status: Vec<serde_json::Value>,
}

fn create_secret(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: CreateSecretRequest,
) -> Result<CreateSecretResponse, Fault> {
    if req.add_replica_regions.is_some_and(|r| !r.is_empty())
        || req.force_overwrite_replica_secret == Some(true)
    {
        return Err(client(
            "InvalidRequestException",
            "runway keeps secrets in one region: AddReplicaRegions is not supported",
        ));
    }
    if req.kind.is_some_and(|t| !t.is_empty()) {
        return Err(client(
            "InvalidParameterException",
            "Type (secrets managed by a partner) is not supported by runway",
        ));
    }
    let name = required("name", &req.name)?.clone();
    let (secret, version_id) = store(ctx).create(
        tx,
        NewSecret {
            name,
            description: req.description,
            kms_key_id: req.kms_key_id,
            value: value(req.secret_string, req.secret_binary)?,
            token: req.client_request_token,
            tags: store_tags(req.tags)?,
        },
    )?;
    Ok(CreateSecretResponse {
        arn: secret.arn,
        name: secret.name,
        version_id,
        replication_status: Vec::new(),
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct GetSecretValueRequest {
    secret_id: Option<String>,
    version_id: Option<String>,
    version_stage: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct SecretValueEntry {
    #[serde(rename = "ARN")]
    arn: String,
    name: String,
    version_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_binary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_string: Option<String>,
    version_stages: Vec<String>,
    created_date: Timestamp,
}

fn entry(read: runway_secrets::secretsmanager::Read) -> SecretValueEntry {
    let (secret_string, secret_binary) = match read.value {
        SecretValue::String(s) => (Some(s), None),
        SecretValue::Binary(b) => (None, Some(to_blob(&b))),
    };
    SecretValueEntry {
        arn: read.secret.arn,
        name: read.secret.name,
        version_id: read.version.id,
        secret_binary,
        secret_string,
        version_stages: read.version.stages,
        created_date: read.version.created_at,
    }
}

fn get_secret_value(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: GetSecretValueRequest,
) -> Result<SecretValueEntry, Fault> {
    let id = required("secretId", &req.secret_id)?;
    let read = store(ctx).get_value(
        tx,
        id,
        req.version_id.as_deref(),
        req.version_stage.as_deref(),
    )?;
    Ok(entry(read))
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Filter {
    key: Option<String>,
    values: Option<Vec<String>>,
}

const FILTER_KEYS: &[&str] = &[
    "description",
    "name",
    "tag-key",
    "tag-value",
    "primary-region",
    "owning-service",
    "all",
];

fn check_filters(filters: &[Filter]) -> Result<(), Fault> {
    if filters.len() > 10 {
        return Err(super::validation("Filters may hold at most 10 filters"));
    }
    for f in filters {
        let key = required("Filters.member.Key", &f.key)?;
        if !FILTER_KEYS.contains(&key.as_str()) {
            return Err(super::validation(format!(
                "Filter key {key:?} must be one of {}",
                FILTER_KEYS.join(", ")
            )));
        }
        let values = required("Filters.member.Values", &f.values)?;
        if values.is_empty() || values.len() > 10 {
            return Err(super::validation(format!(
                "Filter {key:?} must have 1 to 10 values"
            )));
        }
        for v in values {
            let ok = v.len() <= 512
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || " :_@/+=.-!".contains(c));
            if !ok {
                return Err(super::validation(format!(
                    "Filter {key:?} value {v:?} may hold only letters, digits, spaces and :_@/+=.-!"
                )));
            }
        }
    }
    Ok(())
}

/// Whether `secret` passes every filter (a filter passes if any of its values does; a
/// value starting with `!` passes where its rest does not).
fn passes(secret: &SecretRecord, filters: &[Filter]) -> bool {
    filters.iter().all(|f| {
        let key = f.key.as_deref().unwrap_or_default();
        f.values.iter().flatten().any(|raw| {
            let (negate, want) = match raw.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, raw.as_str()),
            };
            let prefix = |field: &str| field.starts_with(want);
            let lower = want.to_lowercase();
            let found = match key {
                "name" => prefix(&secret.name),
                "description" => secret
                    .description
                    .as_deref()
                    .is_some_and(|d| d.to_lowercase().starts_with(&lower)),
                "tag-key" => secret.tags.iter().any(|t| prefix(&t.key)),
                "tag-value" => secret.tags.iter().any(|t| prefix(&t.value)),
                "all" => want.split_whitespace().all(|word| {
                    let word = word.to_lowercase();
                    let fields = std::iter::once(secret.name.as_str())
                        .chain(secret.description.as_deref())
                        .chain(secret.tags.iter().map(|t| t.key.as_str()))
                        .chain(secret.tags.iter().map(|t| t.value.as_str()));
                    fields
                        .flat_map(|f| f.split(|c: char| c.is_whitespace() || "/_-.".contains(c)))
                        .chain(std::iter::once(secret.name.as_str()))
                        .any(|w| w.to_lowercase().starts_with(&word))
                }),
                // Secrets are not replicated nor owned by another service here.
                _ => false,
            };
            found != negate
        })
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct BatchGetSecretValueRequest {
    secret_id_list: Option<Vec<String>>,
    filters: Option<Vec<Filter>>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ApiErrorEntry {
    secret_id: String,
    error_code: String,
    message: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchGetSecretValueResponse {
    secret_values: Vec<SecretValueEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
    errors: Vec<ApiErrorEntry>,
}

fn batch_get_secret_value(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: BatchGetSecretValueRequest,
) -> Result<BatchGetSecretValueResponse, Fault> {
    let store = store(ctx);
    let (ids, next_token) = match (req.secret_id_list, req.filters) {
        (Some(_), Some(_)) => {
            return Err(client(
                "InvalidParameterException",
                "Either 'SecretIdList' or 'Filters' must be provided, but not both.",
            ));
        }
        (None, None) => {
            return Err(client(
                "InvalidParameterException",
                "Either 'SecretIdList' or 'Filters' must be provided.",
            ));
        }
        (Some(ids), None) => {
            if req.max_results.is_some() || req.next_token.is_some() {
                return Err(client(
                    "InvalidParameterException",
                    "'MaxResults' and 'NextToken' can only be used with 'Filters'.",
                ));
            }
            if ids.is_empty() || ids.len() > 20 {
                return Err(super::validation(
                    "SecretIdList must hold 1 to 20 secret ids",
                ));
            }
            (ids, None)
        }
        (None, Some(filters)) => {
            check_filters(&filters)?;
            range("maxResults", req.max_results, 1, 20)?;
            let matching: Vec<String> = store
                .list(tx)?
                .into_iter()
                .filter(|s| !s.is_deleted() && passes(s, &filters))
                .map(|s| s.arn)
                .collect();
            page(
                matching,
                req.next_token.as_deref(),
                req.max_results.unwrap_or(20) as usize,
                "InvalidNextTokenException",
            )?
        }
    };
    let mut secret_values = Vec::new();
    let mut errors = Vec::new();
    for id in ids {
        match store.get_value(tx, &id, None, None) {
            Ok(read) => secret_values.push(entry(read)),
            Err(SecretError::Secrets(e)) => return Err(internal(e)),
            Err(e) => {
                let fault = Fault::from(e);
                errors.push(ApiErrorEntry {
                    secret_id: id,
                    error_code: fault.type_name.to_string(),
                    message: fault.message,
                });
            }
        }
    }
    Ok(BatchGetSecretValueResponse {
        secret_values,
        next_token,
        errors,
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PutSecretValueRequest {
    secret_id: Option<String>,
    client_request_token: Option<String>,
    secret_binary: Option<String>,
    secret_string: Option<String>,
    version_stages: Option<Vec<String>>,
    rotation_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutSecretValueResponse {
    #[serde(rename = "ARN")]
    arn: String,
    name: String,
    version_id: String,
    version_stages: Vec<String>,
}

fn put_secret_value(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: PutSecretValueRequest,
) -> Result<PutSecretValueResponse, Fault> {
    let id = required("secretId", &req.secret_id)?;
    // RotationToken identifies a rotation function's caller; runway has no such callers.
    let _ = req.rotation_token;
    let value = value(req.secret_string, req.secret_binary)?.ok_or_else(|| {
        client(
            "InvalidRequestException",
            "You must provide either SecretString or SecretBinary.",
        )
    })?;
    let (secret, version_id, version_stages) =
        store(ctx).put_value(tx, id, req.client_request_token, value, req.version_stages)?;
    Ok(PutSecretValueResponse {
        arn: secret.arn,
        name: secret.name,
        version_id,
        version_stages,
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct UpdateSecretRequest {
    secret_id: Option<String>,
    client_request_token: Option<String>,
    description: Option<String>,
    kms_key_id: Option<String>,
    secret_binary: Option<String>,
    secret_string: Option<String>,
    #[serde(rename = "Type")]
    kind: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateSecretResponse {
    #[serde(rename = "ARN")]
    arn: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_id: Option<String>,
}

fn update_secret(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: UpdateSecretRequest,
) -> Result<UpdateSecretResponse, Fault> {
    let id = required("secretId", &req.secret_id)?;
    if req.kind.is_some_and(|t| !t.is_empty()) {
        return Err(client(
            "InvalidParameterException",
            "Type (secrets managed by a partner) is not supported by runway",
        ));
    }
    let (secret, version_id) = store(ctx).update(
        tx,
        id,
        req.description,
        req.kms_key_id,
        value(req.secret_string, req.secret_binary)?,
        req.client_request_token,
    )?;
    Ok(UpdateSecretResponse {
        arn: secret.arn,
        name: secret.name,
        version_id,
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct SecretIdRequest {
    secret_id: Option<String>,
}

/// A secret as DescribeSecret and ListSecrets show it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct SecretDescription {
    #[serde(rename = "ARN")]
    arn: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kms_key_id: Option<String>,
    rotation_enabled: bool,
    last_changed_date: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_accessed_date: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted_date: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<Vec<Tag>>,
    /// DescribeSecret's name for the map; ListSecrets calls it SecretVersionsToStages.
    #[serde(skip_serializing_if = "Option::is_none")]
    version_ids_to_stages: Option<BTreeMap<String, Vec<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_versions_to_stages: Option<BTreeMap<String, Vec<String>>>,
    created_date: Timestamp,
}

fn describe(secret: &SecretRecord, listing: bool) -> SecretDescription {
    let stages = stages_map(secret);
    SecretDescription {
        arn: secret.arn.clone(),
        name: secret.name.clone(),
        description: secret.description.clone(),
        kms_key_id: secret.kms_key_id.clone(),
        rotation_enabled: false,
        last_changed_date: secret.last_changed_at,
        last_accessed_date: secret.last_accessed_at,
        deleted_date: secret.deleted_at,
        tags: wire_tags(&secret.tags),
        version_ids_to_stages: if listing { None } else { stages.clone() },
        secret_versions_to_stages: if listing { stages } else { None },
        created_date: secret.created_at,
    }
}

fn describe_secret(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: SecretIdRequest,
) -> Result<SecretDescription, Fault> {
    let id = required("secretId", &req.secret_id)?;
    Ok(describe(&store(ctx).find(tx, id)?, false))
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ListSecretsRequest {
    include_planned_deletion: Option<bool>,
    max_results: Option<i64>,
    next_token: Option<String>,
    filters: Option<Vec<Filter>>,
    sort_order: Option<String>,
    sort_by: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListSecretsResponse {
    secret_list: Vec<SecretDescription>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

fn list_secrets(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: ListSecretsRequest,
) -> Result<ListSecretsResponse, Fault> {
    range("maxResults", req.max_results, 1, 100)?;
    let filters = req.filters.unwrap_or_default();
    check_filters(&filters)?;
    let descending = match req.sort_order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(super::validation(format!(
                "SortOrder {other:?} must be asc or desc"
            )));
        }
    };
    let include_deleted = req.include_planned_deletion.unwrap_or(false);
    let mut secrets: Vec<SecretRecord> = store(ctx)
        .list(tx)?
        .into_iter()
        .filter(|s| (include_deleted || !s.is_deleted()) && passes(s, &filters))
        .collect();
    match req.sort_by.as_deref() {
        None | Some("created-date") => secrets.sort_by_key(|s| s.created_at),
        Some("last-changed-date") => secrets.sort_by_key(|s| s.last_changed_at),
        Some("last-accessed-date") => secrets.sort_by_key(|s| s.last_accessed_at),
        Some("name") => secrets.sort_by(|a, b| a.name.cmp(&b.name)),
        Some(other) => {
            return Err(super::validation(format!(
                "SortBy {other:?} must be created-date, last-accessed-date, last-changed-date or name"
            )));
        }
    }
    if descending {
        secrets.reverse();
    }
    let (secrets, next_token) = page(
        secrets,
        req.next_token.as_deref(),
        req.max_results.unwrap_or(100) as usize,
        "InvalidNextTokenException",
    )?;
    Ok(ListSecretsResponse {
        secret_list: secrets.iter().map(|s| describe(s, true)).collect(),
        next_token,
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ListSecretVersionIdsRequest {
    secret_id: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
    include_deprecated: Option<bool>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct VersionEntry {
    version_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    version_stages: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_accessed_date: Option<Timestamp>,
    created_date: Timestamp,
    kms_key_ids: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListSecretVersionIdsResponse {
    versions: Vec<VersionEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
    #[serde(rename = "ARN")]
    arn: String,
    name: String,
}

fn list_secret_version_ids(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: ListSecretVersionIdsRequest,
) -> Result<ListSecretVersionIdsResponse, Fault> {
    let id = required("secretId", &req.secret_id)?;
    range("maxResults", req.max_results, 1, 100)?;
    let secret = store(ctx).find(tx, id)?;
    let deprecated = req.include_deprecated.unwrap_or(false);
    let versions: Vec<&VersionMeta> = secret
        .versions
        .iter()
        .rev()
        .filter(|v| deprecated || !v.stages.is_empty())
        .collect();
    let (versions, next_token) = page(
        versions,
        req.next_token.as_deref(),
        req.max_results.unwrap_or(100) as usize,
        "InvalidNextTokenException",
    )?;
    Ok(ListSecretVersionIdsResponse {
        versions: versions
            .into_iter()
            .map(|v| VersionEntry {
                version_id: v.id.clone(),
                version_stages: v.stages.clone(),
                last_accessed_date: v.last_accessed,
                created_date: v.created_at,
                kms_key_ids: vec![v.key_arn.clone()],
            })
            .collect(),
        next_token,
        arn: secret.arn.clone(),
        name: secret.name.clone(),
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DeleteSecretRequest {
    secret_id: Option<String>,
    recovery_window_in_days: Option<i64>,
    force_delete_without_recovery: Option<bool>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteSecretResponse {
    #[serde(rename = "ARN")]
    arn: String,
    name: String,
    deletion_date: Timestamp,
}

fn delete_secret(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: DeleteSecretRequest,
) -> Result<DeleteSecretResponse, Fault> {
    let id = required("secretId", &req.secret_id)?;
    let (secret, deletion_date) = store(ctx).delete(
        tx,
        id,
        req.recovery_window_in_days,
        req.force_delete_without_recovery.unwrap_or(false),
    )?;
    Ok(DeleteSecretResponse {
        arn: secret.arn,
        name: secret.name,
        deletion_date,
    })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ArnAndName {
    #[serde(rename = "ARN")]
    arn: String,
    name: String,
}

fn restore_secret(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: SecretIdRequest,
) -> Result<ArnAndName, Fault> {
    let id = required("secretId", &req.secret_id)?;
    let secret = store(ctx).restore(tx, id)?;
    Ok(ArnAndName {
        arn: secret.arn,
        name: secret.name,
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct UpdateSecretVersionStageRequest {
    secret_id: Option<String>,
    version_stage: Option<String>,
    remove_from_version_id: Option<String>,
    move_to_version_id: Option<String>,
}

fn update_secret_version_stage(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: UpdateSecretVersionStageRequest,
) -> Result<ArnAndName, Fault> {
    let id = required("secretId", &req.secret_id)?;
    let stage = required("versionStage", &req.version_stage)?;
    let secret = store(ctx).update_stage(
        tx,
        id,
        stage,
        req.remove_from_version_id.as_deref(),
        req.move_to_version_id.as_deref(),
    )?;
    Ok(ArnAndName {
        arn: secret.arn,
        name: secret.name,
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct TagResourceRequest {
    secret_id: Option<String>,
    tags: Option<Vec<Tag>>,
}

#[derive(Debug, Serialize)]
struct Empty {}

fn tag_resource(tx: &mut dyn Txn, ctx: &Ctx<'_>, req: TagResourceRequest) -> Result<Empty, Fault> {
    let id = required("secretId", &req.secret_id)?;
    required("tags", &req.tags)?;
    store(ctx).tag(tx, id, store_tags(req.tags)?)?;
    Ok(Empty {})
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct UntagResourceRequest {
    secret_id: Option<String>,
    tag_keys: Option<Vec<String>>,
}

fn untag_resource(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: UntagResourceRequest,
) -> Result<Empty, Fault> {
    let id = required("secretId", &req.secret_id)?;
    let keys = required("tagKeys", &req.tag_keys)?;
    store(ctx).untag(tx, id, keys)?;
    Ok(Empty {})
}
