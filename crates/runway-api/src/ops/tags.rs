//! TagResource, UntagResource and ListTagsForResource, on any App Runner resource.

use super::revisions::{self, Revisioned};
use super::shared::{load_connection, load_service};
use super::{Ctx, OpResult};
use runway_model::network::{
    EGRESS_ADDRESS_TAG, IngressConnectionRecord, IngressStatus, VpcConnectorRecord,
};
use runway_model::records::{AutoScalingRecord, ObservabilityRecord, ServiceStatus, TagsRecord};
use runway_model::shapes::*;
use runway_model::{ApiError, Arn, ResourceKind, validate};
use runway_store::{Txn, Typed};

/// Checks that `ResourceArn` names an existing resource and returns its ARN as stored.
fn taggable(tx: &dyn Txn, arn: &Option<String>, for_change: bool) -> OpResult<String> {
    let field = "ResourceArn";
    let s = validate::required(field, arn)?;
    let parsed = Arn::parse(s).ok_or_else(|| {
        ApiError::invalid(format!("{field} is not a valid App Runner ARN: {s:?}"))
    })?;
    match parsed.kind {
        ResourceKind::Service => {
            let service = load_service(tx, arn)?;
            if for_change && service.status == ServiceStatus::Deleted {
                return Err(ApiError::invalid_state(format!("Service {s} is deleted")).into());
            }
            Ok(service.arn)
        }
        ResourceKind::Connection => Ok(load_connection(tx, field, s)?.arn),
        ResourceKind::AutoScalingConfiguration => {
            full_revision::<AutoScalingRecord>(tx, &parsed, s)
        }
        ResourceKind::ObservabilityConfiguration => {
            full_revision::<ObservabilityRecord>(tx, &parsed, s)
        }
        ResourceKind::VpcConnector => full_revision::<VpcConnectorRecord>(tx, &parsed, s),
        ResourceKind::VpcIngressConnection => match tx.load::<IngressConnectionRecord>(s)? {
            Some(c) if c.status != IngressStatus::Deleted => Ok(c.arn),
            _ => Err(ApiError::not_found(format!("{s} does not exist")).into()),
        },
    }
}

/// Tags belong to one revision, so only a full ARN names something taggable.
fn full_revision<R: Revisioned>(tx: &dyn Txn, parsed: &Arn, s: &str) -> OpResult<String> {
    if parsed.path.len() != 3 {
        return Err(ApiError::invalid(format!(
            "ResourceArn must be the full ARN of a {} revision, got {s:?}",
            R::NOUN
        ))
        .into());
    }
    let r = revisions::resolve::<R>(tx, "ResourceArn", s)?;
    if !r.active() {
        return Err(ApiError::not_found(format!("{s} does not exist")).into());
    }
    Ok(r.arn().to_string())
}

/// A connector's egress address is set when the revision is made, and only then.
fn fixed_keys<'a>(arn: &str, mut keys: impl Iterator<Item = &'a str>) -> OpResult<()> {
    let connector = Arn::parse(arn).is_some_and(|a| a.kind == ResourceKind::VpcConnector);
    if connector && keys.any(|k| k == EGRESS_ADDRESS_TAG) {
        return Err(ApiError::invalid(format!(
            "Tags: {EGRESS_ADDRESS_TAG} is set when a VPC connector revision is created; create a new revision to change it"
        ))
        .into());
    }
    Ok(())
}

pub(crate) fn tag(tx: &mut dyn Txn, _ctx: &Ctx<'_>, req: TagResourceRequest) -> OpResult<Empty> {
    let arn = taggable(&*tx, &req.resource_arn, true)?;
    validate::required("Tags", &req.tags)?;
    let new = validate::tags(&req.tags)?;
    fixed_keys(&arn, new.iter().filter_map(|t| t.key.as_deref()))?;
    let mut record = tx.load::<TagsRecord>(&arn)?.unwrap_or(TagsRecord {
        arn: arn.clone(),
        tags: Vec::new(),
    });
    for tag in new {
        match record.tags.iter_mut().find(|t| t.key == tag.key) {
            Some(existing) => existing.value = tag.value,
            None => record.tags.push(tag),
        }
    }
    if record.tags.len() > validate::MAX_TAGS {
        return Err(ApiError::invalid(format!(
            "Tags: the resource would have {} tags; at most {} are allowed",
            record.tags.len(),
            validate::MAX_TAGS
        ))
        .into());
    }
    tx.save(&record)?;
    Ok(Empty {})
}

pub(crate) fn untag(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: UntagResourceRequest,
) -> OpResult<Empty> {
    let arn = taggable(&*tx, &req.resource_arn, true)?;
    let keys = validate::required("TagKeys", &req.tag_keys)?;
    for (i, key) in keys.iter().enumerate() {
        validate::tag_key(&format!("TagKeys[{i}]"), key)?;
    }
    fixed_keys(&arn, keys.iter().map(String::as_str))?;
    if let Some(mut record) = tx.load::<TagsRecord>(&arn)? {
        record
            .tags
            .retain(|t| !t.key.as_ref().is_some_and(|k| keys.contains(k)));
        if record.tags.is_empty() {
            tx.remove::<TagsRecord>(&arn)?;
        } else {
            tx.save(&record)?;
        }
    }
    Ok(Empty {})
}

pub(crate) fn list(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: ResourceArnRequest,
) -> OpResult<ListTagsForResourceResponse> {
    let arn = taggable(&*tx, &req.resource_arn, false)?;
    let tags = tx
        .load::<TagsRecord>(&arn)?
        .map(|r| r.tags)
        .unwrap_or_default();
    Ok(ListTagsForResourceResponse { tags: Some(tags) })
}
