//! The connection operations. A connection names a source code provider account; the
//! credentials it will carry are added by the source-build feature and never returned.

use super::{Ctx, OpResult, page, services, tags};
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

pub(crate) fn load(tx: &dyn Txn, field: &str, arn: &str) -> OpResult<ConnectionRecord> {
    let arn = validate::parse_arn(field, arn, ResourceKind::Connection)?.to_string();
    tx.load::<ConnectionRecord>(&arn)?
        .ok_or_else(|| ApiError::not_found(format!("Connection {arn} does not exist")).into())
}

/// Checks that a service may use the connection `arn`.
pub(crate) fn require_usable(tx: &dyn Txn, field: &str, arn: &str) -> OpResult<()> {
    load(tx, field, arn).map_err(|e| match e {
        super::OpError::Api(e) => ApiError::invalid(format!("{field}: {}", e.message)).into(),
        other => other,
    })?;
    Ok(())
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
    tags::set(tx, &record.arn, tag_list)?;
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
    let mut record = load(&*tx, field, validate::required(field, &req.connection_arn)?)?;
    let user = services::live(&*tx)?.into_iter().find(|(_, s)| {
        s.spec
            .source_configuration
            .authentication_configuration
            .as_ref()
            .and_then(|a| a.connection_arn.as_deref())
            == Some(record.arn.as_str())
    });
    if let Some((_, service)) = user {
        return Err(ApiError::invalid(format!(
            "{} is used by service {}",
            record.arn, service.arn
        ))
        .into());
    }
    tx.remove::<ConnectionRecord>(&record.arn)?;
    tags::remove_all(tx, &record.arn)?;
    record.status = ConnectionStatus::Deleted;
    Ok(ConnectionResponse {
        connection: Some(wire(&record)),
    })
}
