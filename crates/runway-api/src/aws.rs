//! The AWS services served beside App Runner's API on the same listener and with the same
//! SigV4 keys: Secrets Manager, SSM Parameter Store and KMS, each in its own module with
//! its own shapes and error types. They speak AWS JSON 1.1 (`POST /`,
//! `Content-Type: application/x-amz-json-1.1`) and are chosen by the `X-Amz-Target`
//! prefix (`secretsmanager.`, `AmazonSSM.`, `TrentService.`); the credential scope must
//! name the service's signing name (`secretsmanager`, `ssm`, `kms`).
//!
//! Request bodies hold secret values: nothing here logs a body, and a malformed member's
//! error names where it is, never what it holds.

mod kms;
mod secretsmanager;
mod ssm;

use crate::Api;
use crate::ops::Ctx;
use crate::protocol::{self, Fault, run};
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use std::time::Instant;

/// The content type of requests and answers.
const JSON_1_1: &str = "application/x-amz-json-1.1";

/// One of the JSON 1.1 services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    SecretsManager,
    Ssm,
    Kms,
}

impl Service {
    /// The service a request's `X-Amz-Target` names, if it is one of these.
    pub(crate) fn of(headers: &HeaderMap) -> Option<Service> {
        let target = headers.get("x-amz-target")?.to_str().ok()?;
        let (prefix, _) = target.split_once('.')?;
        match prefix {
            "secretsmanager" => Some(Service::SecretsManager),
            "AmazonSSM" => Some(Service::Ssm),
            "TrentService" => Some(Service::Kms),
            _ => None,
        }
    }

    /// The name SigV4 credential scopes use.
    fn signing_name(self) -> &'static str {
        match self {
            Service::SecretsManager => "secretsmanager",
            Service::Ssm => "ssm",
            Service::Kms => "kms",
        }
    }

    /// The operations served, as full targets (also the metric labels).
    fn operations(self) -> &'static [&'static str] {
        match self {
            Service::SecretsManager => secretsmanager::OPERATIONS,
            Service::Ssm => ssm::OPERATIONS,
            Service::Kms => kms::OPERATIONS,
        }
    }

    /// The error type of a fault of runway's own.
    fn internal_type(self) -> &'static str {
        match self {
            Service::SecretsManager => "InternalServiceError",
            Service::Ssm => "InternalServerError",
            Service::Kms => "KMSInternalException",
        }
    }
}

pub(crate) async fn handle(api: Api, service: Service, request: Request) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = request.into_parts();
    let mut operation = "unknown";
    let result = async {
        let body = axum::body::to_bytes(body, protocol::MAX_BODY)
            .await
            .map_err(|_| {
                Fault::serialization(format!(
                    "the request body is larger than {} bytes",
                    protocol::MAX_BODY
                ))
            })?;
        let access_key =
            protocol::authenticate(&api, &parts, body.clone(), service.signing_name()).await?;
        let target = protocol::target(&parts)?;
        operation = service
            .operations()
            .iter()
            .find(|op| **op == target)
            .copied()
            .ok_or_else(|| {
                Fault::new(
                    StatusCode::BAD_REQUEST,
                    "UnknownOperationException",
                    format!("runway does not implement the operation {target:?}"),
                )
            })?;
        protocol::content_type(&parts, JSON_1_1)?;
        tracing::debug!(%request_id, operation, %access_key, "api request");
        let name = operation.split_once('.').map_or(operation, |(_, n)| n);
        match service {
            Service::SecretsManager => secretsmanager::dispatch(&api, name, body).await,
            Service::Ssm => ssm::dispatch(&api, name, body).await,
            Service::Kms => kms::dispatch(&api, name, body).await,
        }
    }
    .await;

    let result = result.map_err(|mut fault| {
        if fault.status.is_server_error() {
            fault.type_name = service.internal_type();
        }
        fault
    });
    protocol::finish(&api, started, &request_id, operation, result, JSON_1_1)
}

/// A client error of type `type_name`.
fn client(type_name: &'static str, message: impl Into<String>) -> Fault {
    Fault::new(StatusCode::BAD_REQUEST, type_name, message)
}

/// A fault of runway's (the store); the message says nothing of the request.
fn internal(e: impl std::fmt::Display) -> Fault {
    tracing::error!(error = %e, "a secrets store operation failed");
    Fault::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalFailure",
        "runway's state store failed; the request changed nothing and may be retried",
    )
}

/// A ValidationException (a member outside its shape's constraints).
fn validation(message: impl Into<String>) -> Fault {
    client("ValidationException", message)
}

/// Decodes a blob member (base64 on the wire).
fn blob(field: &str, value: &str) -> Result<Vec<u8>, Fault> {
    BASE64
        .decode(value)
        .map_err(|_| Fault::serialization(format!("{field} is not valid base64")))
}

/// Encodes a blob member.
fn to_blob(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// A required member, or a ValidationException naming it.
fn required<'a, T>(field: &str, value: &'a Option<T>) -> Result<&'a T, Fault> {
    value.as_ref().ok_or_else(|| {
        validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

/// Checks that a number member lies in `min..=max`.
fn range(field: &str, value: Option<i64>, min: i64, max: i64) -> Result<(), Fault> {
    match value {
        Some(v) if v < min || v > max => Err(validation(format!(
            "1 validation error detected: Value '{v}' at '{field}' failed to satisfy constraint: Member must have value between {min} and {max}"
        ))),
        _ => Ok(()),
    }
}

/// One page of `items` (already in order): those after the position `token` names, at
/// most `max`, and the token of the next page. `bad_token` is the service's error for a
/// token it did not give.
fn page<T>(
    items: Vec<T>,
    token: Option<&str>,
    max: usize,
    bad_token: &'static str,
) -> Result<(Vec<T>, Option<String>), Fault> {
    let start = match token {
        None => 0,
        Some(t) => URL_SAFE_NO_PAD
            .decode(t)
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| {
                s.strip_prefix("rwp1:")
                    .and_then(|n| n.parse::<usize>().ok())
            })
            .ok_or_else(|| client(bad_token, "The pagination token is not one this API gave"))?,
    };
    let total = items.len();
    let out: Vec<T> = items.into_iter().skip(start).take(max).collect();
    let end = start + out.len();
    let next = (end < total).then(|| URL_SAFE_NO_PAD.encode(format!("rwp1:{end}")));
    Ok((out, next))
}

/// The KMS of a call.
fn kms<'a>(ctx: &'a Ctx<'_>) -> runway_secrets::kms::Kms<'a> {
    runway_secrets::kms::Kms {
        master: ctx.master,
        region: &ctx.config.region,
        account: &ctx.config.account_id,
        now: ctx.now,
    }
}

/// Checks that a service's `EncryptionConfiguration.KmsKey` names a key of this server's
/// KMS that can be used now (App Runner's InvalidRequestException otherwise).
pub(crate) fn check_service_key(
    tx: &mut dyn runway_store::Txn,
    ctx: &Ctx<'_>,
    key: &str,
) -> Result<(), crate::OpError> {
    use runway_model::ApiError;
    use runway_secrets::{SecretsError, kms::KmsError};
    match kms(ctx).usable(tx, key) {
        Ok(_) => Ok(()),
        Err(KmsError::Secrets(SecretsError::Store(e))) => Err(e.into()),
        Err(KmsError::Secrets(e)) => {
            Err(ApiError::internal(format!("the KMS key's material cannot be opened: {e}")).into())
        }
        Err(e) => Err(ApiError::invalid(format!(
            "EncryptionConfiguration.KmsKey cannot be used: {e}"
        ))
        .into()),
    }
}

#[cfg(test)]
mod tests;
