//! The connection operations. A connection names a source code provider (or registry)
//! account; the credentials it carries (`Runway.UpdateConnectionCredentials`: a token, an
//! SSH key, a webhook secret) are stored sealed and never returned.

use super::shared::{live_services, load_connection, remove_tags, set_tags};
use super::{Ctx, OpResult, page};
use runway_model::records::{ConnectionRecord, ConnectionStatus};
use runway_model::shapes::*;
use runway_model::{ApiError, ResourceKind, ids, validate};
use runway_store::{Query, Txn, Typed};

const MAX_PAGE: i64 = 100;

fn wire(r: &ConnectionRecord) -> Connection {
    Connection {
        connection_name: Some(r.name.clone()),
        connection_arn: Some(r.arn.clone()),
        provider_type: Some(r.provider_type.clone()),
        status: Some(r.status.to_string()),
        created_at: Some(r.created_at),
    }
}

pub(crate) fn create(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: CreateConnectionRequest,
) -> OpResult<ConnectionResponse> {
    let name = validate::resource_name("ConnectionName", &req.connection_name, 4, 32)?;
    let provider = validate::required("ProviderType", &req.provider_type)?;
    validate::one_of("ProviderType", provider, validate::PROVIDER_TYPES)?;
    let tag_list = validate::tags(&req.tags)?;
    let query = Query {
        name: Some(name.clone()),
        ..Default::default()
    };
    if !tx.load_all::<ConnectionRecord>(&query)?.is_empty() {
        return Err(ApiError::invalid(format!(
            "ConnectionName: a connection named {name} already exists"
        ))
        .into());
    }
    let record = ConnectionRecord {
        arn: ctx.arn(ResourceKind::Connection, &[&name, &ids::new_resource_id()]),
        name,
        provider_type: provider.clone(),
        status: ConnectionStatus::PendingHandshake,
        created_at: ctx.now,
    };
    tx.create(&record)?;
    set_tags(tx, &record.arn, tag_list)?;
    Ok(ConnectionResponse {
        connection: Some(wire(&record)),
    })
}

pub(crate) fn list(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: ListConnectionsRequest,
) -> OpResult<ListConnectionsResponse> {
    let name = validate::name_filter("ConnectionName", &req.connection_name, 32)?;
    let max = validate::max_results(req.max_results, MAX_PAGE)?;
    let query = Query {
        name,
        ..Default::default()
    };
    let (items, next) = page(
        tx.load_all::<ConnectionRecord>(&query)?,
        req.next_token.as_deref(),
        max,
    )?;
    Ok(ListConnectionsResponse {
        connection_summary_list: Some(items.iter().map(wire).collect()),
        next_token: next,
    })
}

pub(crate) fn delete(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: ConnectionArnRequest,
) -> OpResult<ConnectionResponse> {
    let field = "ConnectionArn";
    let mut record = load_connection(&*tx, field, validate::required(field, &req.connection_arn)?)?;
    let user = live_services(&*tx)?
        .into_iter()
        .find(|(_, s)| s.spec.source_configuration.connection_arn() == Some(record.arn.as_str()));
    if let Some((_, service)) = user {
        return Err(ApiError::invalid(format!(
            "{} is used by service {}",
            record.arn, service.arn
        ))
        .into());
    }
    tx.remove::<ConnectionRecord>(&record.arn)?;
    runway_secrets::remove_connection_credentials(tx, &record.arn).map_err(secrets_error)?;
    remove_tags(tx, &record.arn)?;
    record.status = ConnectionStatus::Deleted;
    Ok(ConnectionResponse {
        connection: Some(wire(&record)),
    })
}

fn secrets_error(e: runway_secrets::SecretsError) -> super::OpError {
    ApiError::internal(format!("cannot keep the connection's credentials: {e}")).into()
}

/// The longest credential accepted (an RSA private key in PEM is about 3.3 KB).
const MAX_CREDENTIAL: usize = 16 * 1024;

/// `Runway.UpdateConnectionCredentials`: sets what the connection authenticates with
/// (the fields given replace the stored ones; an empty string removes one). The
/// connection becomes AVAILABLE, App Runner's status after a handshake.
pub(crate) fn update_credentials(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: UpdateConnectionCredentialsRequest,
) -> OpResult<ConnectionResponse> {
    let field = "ConnectionArn";
    let mut record = load_connection(&*tx, field, validate::required(field, &req.connection_arn)?)?;
    let given = [
        ("Username", &req.username),
        ("Token", &req.token),
        ("SshPrivateKey", &req.ssh_private_key),
        ("WebhookSecret", &req.webhook_secret),
    ];
    if given.iter().all(|(_, v)| v.is_none()) {
        return Err(ApiError::invalid(
            "give at least one of Username, Token, SshPrivateKey and WebhookSecret",
        )
        .into());
    }
    for (name, value) in given {
        if let Some(v) = value {
            if v.len() > MAX_CREDENTIAL {
                return Err(ApiError::invalid(format!(
                    "{name} must be at most {MAX_CREDENTIAL} characters"
                ))
                .into());
            }
            if name != "SshPrivateKey" && v.chars().any(char::is_control) {
                return Err(ApiError::invalid(format!(
                    "{name} must not contain control characters"
                ))
                .into());
            }
        }
    }
    if let Some(key) = req.ssh_private_key.as_deref().filter(|k| !k.is_empty())
        && !key.trim_start().starts_with("-----BEGIN ")
    {
        return Err(ApiError::invalid(
            "SshPrivateKey must be a private key in OpenSSH or PEM format (-----BEGIN ...)",
        )
        .into());
    }
    let mut creds = runway_secrets::connection_credentials(&*tx, ctx.master, &record.arn)
        .map_err(secrets_error)?
        .unwrap_or_default();
    let set = |slot: &mut Option<String>, value: Option<String>| {
        if let Some(v) = value {
            *slot = (!v.is_empty()).then_some(v);
        }
    };
    set(&mut creds.username, req.username);
    set(&mut creds.token, req.token);
    set(&mut creds.ssh_private_key, req.ssh_private_key);
    set(&mut creds.webhook_secret, req.webhook_secret);
    runway_secrets::save_connection_credentials(tx, ctx.master, &record.arn, &creds)
        .map_err(secrets_error)?;
    record.status = ConnectionStatus::Available;
    tx.save(&record)?;
    Ok(ConnectionResponse {
        connection: Some(wire(&record)),
    })
}
