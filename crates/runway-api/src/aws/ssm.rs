//! SSM Parameter Store (`X-Amz-Target: AmazonSSM.<Operation>`): shapes as in botocore's
//! `ssm/2014-11-06/service-2.json`, errors as SSM names them. The store's rules are
//! `runway_secrets::parameters`'.

use super::{Fault, client, internal, kms, page, range, required, run, validation};
use crate::Api;
use crate::ops::Ctx;
use bytes::Bytes;
use runway_model::Timestamp;
use runway_secrets::parameters::{
    DEFAULT_KEY, Filter, Parameter, ParameterError, ParameterRecord, ParameterType, Put, Store,
    Tag as StoreTag, VersionRecord,
};
use runway_store::Txn;
use serde::{Deserialize, Serialize};

/// The operations served.
pub(super) const OPERATIONS: &[&str] = &[
    "AmazonSSM.PutParameter",
    "AmazonSSM.GetParameter",
    "AmazonSSM.GetParameters",
    "AmazonSSM.GetParametersByPath",
    "AmazonSSM.DeleteParameter",
    "AmazonSSM.DeleteParameters",
    "AmazonSSM.DescribeParameters",
    "AmazonSSM.GetParameterHistory",
    "AmazonSSM.LabelParameterVersion",
    "AmazonSSM.UnlabelParameterVersion",
];

pub(super) async fn dispatch(api: &Api, operation: &str, body: Bytes) -> Result<Vec<u8>, Fault> {
    match operation {
        "PutParameter" => run(api, body, put_parameter).await,
        "GetParameter" => run(api, body, get_parameter).await,
        "GetParameters" => run(api, body, get_parameters).await,
        "GetParametersByPath" => run(api, body, get_parameters_by_path).await,
        "DeleteParameter" => run(api, body, delete_parameter).await,
        "DeleteParameters" => run(api, body, delete_parameters).await,
        "DescribeParameters" => run(api, body, describe_parameters).await,
        "GetParameterHistory" => run(api, body, get_parameter_history).await,
        "LabelParameterVersion" => run(api, body, label_parameter_version).await,
        "UnlabelParameterVersion" => run(api, body, unlabel_parameter_version).await,
        other => Err(internal(format!("operation {other} has no handler"))),
    }
}

impl From<ParameterError> for Fault {
    fn from(e: ParameterError) -> Self {
        let kind = match &e {
            ParameterError::NotFound(_) => "ParameterNotFound",
            ParameterError::VersionNotFound(_) => "ParameterVersionNotFound",
            ParameterError::AlreadyExists(_) => "ParameterAlreadyExists",
            ParameterError::Validation(_) => "ValidationException",
            ParameterError::HierarchyLevelLimit(_) => "HierarchyLevelLimitExceededException",
            ParameterError::InvalidKeyId(_) => "InvalidKeyId",
            ParameterError::InvalidAllowedPattern(_) => "InvalidAllowedPatternException",
            ParameterError::PatternMismatch(_) => "ParameterPatternMismatchException",
            ParameterError::MaxVersionLimit(_) => "ParameterMaxVersionLimitExceeded",
            ParameterError::LabelLimit(_) => "ParameterVersionLabelLimitExceeded",
            ParameterError::InvalidFilterKey(_) => "InvalidFilterKey",
            ParameterError::InvalidFilterOption(_) => "InvalidFilterOption",
            ParameterError::InvalidFilterValue(_) => "InvalidFilterValue",
            ParameterError::TooManyTags(_) => "TooManyTagsError",
            ParameterError::Secrets(e) => return internal(e),
        };
        client(kind, e.to_string())
    }
}

fn store<'a>(ctx: &'a Ctx<'_>) -> Store<'a> {
    Store { kms: kms(ctx) }
}

/// Who changed a parameter: runway has one administrator.
fn modified_by(ctx: &Ctx<'_>) -> String {
    format!("arn:aws:iam::{}:root", ctx.config.account_id)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Tag {
    key: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PutParameterRequest {
    name: Option<String>,
    description: Option<String>,
    value: Option<String>,
    #[serde(rename = "Type")]
    kind: Option<String>,
    key_id: Option<String>,
    overwrite: Option<bool>,
    allowed_pattern: Option<String>,
    tags: Option<Vec<Tag>>,
    tier: Option<String>,
    policies: Option<String>,
    data_type: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutParameterResult {
    version: i64,
    tier: &'static str,
}

fn put_parameter(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: PutParameterRequest,
) -> Result<PutParameterResult, Fault> {
    let name = required("name", &req.name)?.clone();
    let value = required("value", &req.value)?.clone();
    if req
        .policies
        .as_deref()
        .is_some_and(|p| !p.trim().is_empty() && p.trim() != "[]")
    {
        return Err(validation(
            "Policies (parameter expiration and notification policies) are not supported by runway",
        ));
    }
    let tags = req
        .tags
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            Ok(StoreTag {
                key: required("Tags.member.Key", &t.key)?.clone(),
                value: required("Tags.member.Value", &t.value)?.clone(),
            })
        })
        .collect::<Result<Vec<_>, Fault>>()?;
    let (version, tier) = store(ctx).put(
        tx,
        Put {
            name,
            value,
            kind: req.kind.as_deref().map(ParameterType::parse).transpose()?,
            description: req.description,
            key_id: req.key_id,
            overwrite: req.overwrite.unwrap_or(false),
            allowed_pattern: req.allowed_pattern,
            tags,
            tier: req.tier,
            data_type: req.data_type,
        },
    )?;
    Ok(PutParameterResult {
        version,
        tier: tier.as_str(),
    })
}

/// A parameter as GetParameter(s) and GetParametersByPath show it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct WireParameter {
    name: String,
    #[serde(rename = "Type")]
    kind: &'static str,
    value: String,
    version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    selector: Option<String>,
    last_modified_date: Timestamp,
    #[serde(rename = "ARN")]
    arn: String,
    data_type: String,
}

impl From<Parameter> for WireParameter {
    fn from(p: Parameter) -> Self {
        WireParameter {
            name: p.meta.name,
            kind: p.meta.kind.as_str(),
            value: p.value,
            version: p.meta.version,
            selector: p.selector,
            last_modified_date: p.meta.modified_at,
            arn: p.arn,
            data_type: p.meta.data_type,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct GetParameterRequest {
    name: Option<String>,
    with_decryption: Option<bool>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetParameterResult {
    parameter: WireParameter,
}

fn get_parameter(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: GetParameterRequest,
) -> Result<GetParameterResult, Fault> {
    let name = required("name", &req.name)?;
    let p = store(ctx).get(tx, name, req.with_decryption.unwrap_or(false))?;
    Ok(GetParameterResult {
        parameter: p.into(),
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NamesRequest {
    names: Option<Vec<String>>,
    with_decryption: Option<bool>,
}

fn names(req: &NamesRequest) -> Result<&Vec<String>, Fault> {
    let names = required("names", &req.names)?;
    if names.is_empty() || names.len() > 10 {
        return Err(validation(
            "1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length between 1 and 10",
        ));
    }
    Ok(names)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetParametersResult {
    parameters: Vec<WireParameter>,
    invalid_parameters: Vec<String>,
}

fn get_parameters(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: NamesRequest,
) -> Result<GetParametersResult, Fault> {
    let store = store(ctx);
    let decrypt = req.with_decryption.unwrap_or(false);
    let mut out = GetParametersResult {
        parameters: Vec::new(),
        invalid_parameters: Vec::new(),
    };
    for name in names(&req)? {
        match store.get(tx, name, decrypt) {
            Ok(p) => out.parameters.push(p.into()),
            Err(
                ParameterError::NotFound(_)
                | ParameterError::VersionNotFound(_)
                | ParameterError::Validation(_),
            ) => out.invalid_parameters.push(name.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct StringFilter {
    key: Option<String>,
    option: Option<String>,
    values: Option<Vec<String>>,
}

fn filters(wire: Option<Vec<StringFilter>>) -> Result<Vec<Filter>, Fault> {
    wire.unwrap_or_default()
        .into_iter()
        .map(|f| {
            Ok(Filter {
                key: required("ParameterFilters.member.Key", &f.key)?.clone(),
                option: f.option,
                values: f.values.unwrap_or_default(),
            })
        })
        .collect()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct GetParametersByPathRequest {
    path: Option<String>,
    recursive: Option<bool>,
    parameter_filters: Option<Vec<StringFilter>>,
    with_decryption: Option<bool>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ParametersPage<T> {
    parameters: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

fn get_parameters_by_path(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: GetParametersByPathRequest,
) -> Result<ParametersPage<WireParameter>, Fault> {
    let path = required("path", &req.path)?;
    range("maxResults", req.max_results, 1, 10)?;
    let found = store(ctx).by_path(
        tx,
        path,
        req.recursive.unwrap_or(false),
        &filters(req.parameter_filters)?,
        req.with_decryption.unwrap_or(false),
    )?;
    let (found, next_token) = page(
        found,
        req.next_token.as_deref(),
        req.max_results.unwrap_or(10) as usize,
        "InvalidNextToken",
    )?;
    Ok(ParametersPage {
        parameters: found.into_iter().map(WireParameter::from).collect(),
        next_token,
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NameRequest {
    name: Option<String>,
}

#[derive(Debug, Serialize)]
struct Empty {}

fn delete_parameter(tx: &mut dyn Txn, ctx: &Ctx<'_>, req: NameRequest) -> Result<Empty, Fault> {
    let name = required("name", &req.name)?;
    store(ctx).delete(tx, name)?;
    Ok(Empty {})
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteParametersResult {
    deleted_parameters: Vec<String>,
    invalid_parameters: Vec<String>,
}

fn delete_parameters(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: NamesRequest,
) -> Result<DeleteParametersResult, Fault> {
    let store = store(ctx);
    let mut out = DeleteParametersResult {
        deleted_parameters: Vec::new(),
        invalid_parameters: Vec::new(),
    };
    for name in names(&req)? {
        match store.delete(tx, name) {
            Ok(()) => out.deleted_parameters.push(name.clone()),
            Err(ParameterError::NotFound(_)) => out.invalid_parameters.push(name.clone()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// A version's metadata, as DescribeParameters (and, with more, GetParameterHistory)
/// show it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Metadata {
    name: String,
    #[serde(rename = "ARN", skip_serializing_if = "Option::is_none")]
    arn: Option<String>,
    #[serde(rename = "Type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    last_modified_date: Timestamp,
    last_modified_user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_pattern: Option<String>,
    version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<Vec<String>>,
    tier: &'static str,
    policies: Vec<serde_json::Value>,
    data_type: String,
}

fn metadata(ctx: &Ctx<'_>, v: VersionRecord) -> Metadata {
    Metadata {
        key_id: match v.kind {
            ParameterType::SecureString => {
                Some(v.key_id.clone().unwrap_or_else(|| DEFAULT_KEY.into()))
            }
            _ => None,
        },
        name: v.name,
        arn: None,
        kind: v.kind.as_str(),
        last_modified_date: v.modified_at,
        last_modified_user: modified_by(ctx),
        description: v.description,
        value: None,
        allowed_pattern: v.allowed_pattern,
        version: v.version,
        labels: None,
        tier: v.tier.as_str(),
        policies: Vec::new(),
        data_type: v.data_type,
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct LegacyFilter {
    key: Option<String>,
    values: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DescribeParametersRequest {
    filters: Option<Vec<LegacyFilter>>,
    parameter_filters: Option<Vec<StringFilter>>,
    max_results: Option<i64>,
    next_token: Option<String>,
    shared: Option<bool>,
}

fn describe_parameters(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: DescribeParametersRequest,
) -> Result<ParametersPage<Metadata>, Fault> {
    range("maxResults", req.max_results, 1, 50)?;
    let all = match (req.filters, req.parameter_filters) {
        (Some(_), Some(_)) => {
            return Err(validation(
                "You can use either Filters or ParameterFilters in a single request, not both",
            ));
        }
        (Some(legacy), None) => legacy
            .into_iter()
            .map(|f| {
                let key = required("Filters.member.Key", &f.key)?.clone();
                let option = match key.as_str() {
                    "Name" => "BeginsWith",
                    "Type" | "KeyId" => "Equals",
                    _ => {
                        return Err(client(
                            "InvalidFilterKey",
                            format!("The filter key {key:?} must be Name, Type or KeyId"),
                        ));
                    }
                };
                Ok(Filter {
                    key,
                    option: Some(option.into()),
                    values: required("Filters.member.Values", &f.values)?.clone(),
                })
            })
            .collect::<Result<Vec<_>, Fault>>()?,
        (None, wire) => filters(wire)?,
    };
    // Parameters shared from other accounts: runway has one account, so none.
    let found: Vec<(ParameterRecord, VersionRecord)> = if req.shared == Some(true) {
        Vec::new()
    } else {
        store(ctx).describe(tx, &all)?
    };
    let (found, next_token) = page(
        found,
        req.next_token.as_deref(),
        req.max_results.unwrap_or(50) as usize,
        "InvalidNextToken",
    )?;
    Ok(ParametersPage {
        parameters: found
            .into_iter()
            .map(|(p, v)| Metadata {
                arn: Some(p.arn),
                ..metadata(ctx, v)
            })
            .collect(),
        next_token,
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct GetParameterHistoryRequest {
    name: Option<String>,
    with_decryption: Option<bool>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

fn get_parameter_history(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: GetParameterHistoryRequest,
) -> Result<ParametersPage<Metadata>, Fault> {
    let name = required("name", &req.name)?;
    range("maxResults", req.max_results, 1, 50)?;
    let history = store(ctx).history(tx, name, req.with_decryption.unwrap_or(false))?;
    let (history, next_token) = page(
        history,
        req.next_token.as_deref(),
        req.max_results.unwrap_or(50) as usize,
        "InvalidNextToken",
    )?;
    Ok(ParametersPage {
        parameters: history
            .into_iter()
            .map(|p| {
                let labels = p.meta.labels.clone();
                Metadata {
                    value: Some(p.value),
                    labels: Some(labels),
                    ..metadata(ctx, p.meta)
                }
            })
            .collect(),
        next_token,
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct LabelRequest {
    name: Option<String>,
    parameter_version: Option<i64>,
    labels: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct LabelResult {
    invalid_labels: Vec<String>,
    parameter_version: i64,
}

fn label_parameter_version(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: LabelRequest,
) -> Result<LabelResult, Fault> {
    let name = required("name", &req.name)?;
    let labels = required("labels", &req.labels)?;
    let (invalid_labels, parameter_version) =
        store(ctx).label(tx, name, req.parameter_version, labels)?;
    Ok(LabelResult {
        invalid_labels,
        parameter_version,
    })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct UnlabelResult {
    removed_labels: Vec<String>,
    invalid_labels: Vec<String>,
}

fn unlabel_parameter_version(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: LabelRequest,
) -> Result<UnlabelResult, Fault> {
    let name = required("name", &req.name)?;
    let version = *required("parameterVersion", &req.parameter_version)?;
    let labels = required("labels", &req.labels)?;
    let (removed_labels, invalid_labels) = store(ctx).unlabel(tx, name, version, labels)?;
    Ok(UnlabelResult {
        removed_labels,
        invalid_labels,
    })
}
