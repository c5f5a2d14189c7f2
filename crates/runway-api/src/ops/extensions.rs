//! runway's extension operations, beyond App Runner (target prefix `Runway.`): revisions,
//! rollback without rebuilding, traffic split with tagged URLs, and the service event log.

use super::shared::{load_service, new_operation, record, require_changeable};
use super::{Ctx, OpResult, page_desc};
use runway_model::records::*;
use runway_model::shapes::*;
use runway_model::{ApiError, validate};
use runway_store::{Query, Txn, Typed};
use std::collections::HashSet;

const MAX_PAGE: i64 = 100;
/// Tags become a DNS label in front of the service's host: `<tag>---<host>`.
const MAX_TAG_LEN: usize = 20;

/// A service's revisions, newest first.
fn revisions(tx: &dyn Txn, service_arn: &str) -> OpResult<Vec<(i64, RevisionRecord)>> {
    let query = Query {
        parent: Some(service_arn.to_string()),
        descending: true,
        ..Default::default()
    };
    Ok(tx.load_all::<RevisionRecord>(&query)?)
}

fn state(tx: &dyn Txn, service_arn: &str) -> OpResult<ServiceState> {
    Ok(tx
        .load::<ServiceState>(service_arn)?
        .unwrap_or_else(|| ServiceState {
            service_arn: service_arn.to_string(),
            ..Default::default()
        }))
}

pub(crate) fn list_revisions(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: ServicePageRequest,
) -> OpResult<ListRevisionsResponse> {
    let service = load_service(&*tx, &req.service_arn)?;
    let max = validate::max_results(req.max_results, MAX_PAGE)?;
    let st = state(&*tx, &service.arn)?;
    let traffic = st.traffic;
    let (items, next) = page_desc(
        revisions(&*tx, &service.arn)?,
        req.next_token.as_deref(),
        max,
    )?;
    let summaries = items
        .into_iter()
        .map(|r| {
            let target = traffic.iter().find(|t| t.revision == r.id);
            let desired = st.desired.get(&r.id).copied().unwrap_or(0);
            RevisionSummary {
                http_configuration: Some(r.http_settings().to_wire()),
                image_identifier: r
                    .spec
                    .source_configuration
                    .image_repository
                    .as_ref()
                    .and_then(|i| i.image_identifier.clone()),
                image_digest: r.image.as_ref().map(|i| i.digest.clone()),
                percent: Some(target.map_or(0, |t| i64::from(t.percent))),
                tag: target.and_then(|t| t.tag.clone()),
                revision_id: Some(r.id),
                number: Some(i64::from(r.number)),
                status: Some(r.status.to_string()),
                created_at: Some(r.created_at),
                desired_instances: Some(i64::from(desired)),
                message: r.message,
            }
        })
        .collect();
    Ok(ListRevisionsResponse {
        revisions: Some(summaries),
        next_token: next,
    })
}

/// Redeploys an earlier revision (by default the one before the latest that served),
/// with its exact image: nothing is rebuilt or pulled again.
pub(crate) fn rollback(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: RollbackServiceRequest,
) -> OpResult<StartDeploymentResponse> {
    let mut service = load_service(&*tx, &req.service_arn)?;
    require_changeable(&*tx, &service)?;
    if service.status == ServiceStatus::Paused {
        return Err(ApiError::invalid_state(format!(
            "Service {} is PAUSED; resume it first",
            service.arn
        ))
        .into());
    }
    let all: Vec<RevisionRecord> = revisions(&*tx, &service.arn)?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    let usable = |r: &&RevisionRecord| r.image.is_some() && r.status != RevisionStatus::Failed;
    let target = match &req.revision_id {
        Some(id) => all.iter().find(|r| &r.id == id).ok_or_else(|| {
            ApiError::not_found(format!(
                "RevisionId: service {} has no revision {id}",
                service.arn
            ))
        })?,
        None => {
            let serving: Vec<&RevisionRecord> = all.iter().filter(usable).collect();
            let current = state(&*tx, &service.arn)?.traffic;
            serving
                .iter()
                .find(|r| !current.iter().any(|t| t.revision == r.id && t.percent > 0))
                .copied()
                .ok_or_else(|| {
                    ApiError::invalid(
                        "RevisionId: the service has no earlier revision to roll back to",
                    )
                })?
        }
    };
    if !usable(&target) {
        return Err(ApiError::invalid(format!(
            "RevisionId: revision {} {} and cannot be redeployed",
            target.id,
            if target.image.is_none() {
                "never had an image"
            } else {
                "failed"
            }
        ))
        .into());
    }
    service.spec = target.spec.clone();
    if service.spec.source_configuration.code_repository.is_some() {
        // The image a build made is the revision's, not the service's: the service keeps
        // building its repository on later deployments, and describes as it was created.
        service.spec.source_configuration.image_repository = None;
    }
    let mut op = new_operation(
        ctx,
        &service,
        OperationType::StartDeployment,
        Some(target.spec.clone()),
    );
    op.redeploy = Some(target.id.clone());
    record(tx, ctx, &mut service, &op)?;
    Ok(StartDeploymentResponse {
        operation_id: Some(op.id),
    })
}

fn check_tag(i: usize, tag: &str) -> OpResult<()> {
    let ok = !tag.is_empty()
        && tag.len() <= MAX_TAG_LEN
        && tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !tag.starts_with('-')
        && !tag.ends_with('-')
        && !tag.contains("--");
    if !ok {
        return Err(ApiError::invalid(format!(
            "Traffic[{i}].Tag must be 1 to {MAX_TAG_LEN} lowercase letters, digits and single '-', got {tag:?}"
        ))
        .into());
    }
    Ok(())
}

/// Splits traffic between revisions by percent and names revisions with tags.
pub(crate) fn update_traffic(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: UpdateTrafficRequest,
) -> OpResult<UpdateTrafficResponse> {
    let service = load_service(&*tx, &req.service_arn)?;
    require_changeable(&*tx, &service)?;
    let entries = validate::required("Traffic", &req.traffic)?;
    if entries.is_empty() {
        return Err(ApiError::invalid("Traffic must name at least one revision").into());
    }
    let known: Vec<RevisionRecord> = revisions(&*tx, &service.arn)?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    let (mut total, mut seen, mut tags) = (0i64, HashSet::new(), HashSet::new());
    let mut traffic = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let id = validate::required(&format!("Traffic[{i}].RevisionId"), &entry.revision_id)?;
        let revision = known.iter().find(|r| &r.id == id).ok_or_else(|| {
            ApiError::not_found(format!(
                "Traffic[{i}].RevisionId: service {} has no revision {id}",
                service.arn
            ))
        })?;
        if revision.status == RevisionStatus::Failed || revision.image.is_none() {
            return Err(ApiError::invalid(format!(
                "Traffic[{i}].RevisionId: revision {id} cannot serve"
            ))
            .into());
        }
        if !seen.insert(id.clone()) {
            return Err(
                ApiError::invalid(format!("Traffic names revision {id} more than once")).into(),
            );
        }
        let percent = entry.percent.unwrap_or(0);
        validate::range(&format!("Traffic[{i}].Percent"), percent, 0, 100)?;
        total += percent;
        if let Some(tag) = &entry.tag {
            check_tag(i, tag)?;
            if !tags.insert(tag.clone()) {
                return Err(ApiError::invalid(format!(
                    "Traffic uses the tag {tag} more than once"
                ))
                .into());
            }
        }
        traffic.push(TrafficTarget {
            revision: id.clone(),
            percent: percent as u8,
            tag: entry.tag.clone(),
        });
    }
    if total != 100 {
        return Err(
            ApiError::invalid(format!("Traffic percents must add up to 100, got {total}")).into(),
        );
    }
    let chosen: Vec<&RevisionRecord> = traffic
        .iter()
        .filter_map(|t| known.iter().find(|r| r.id == t.revision))
        .collect();
    one_protocol(&chosen)?;
    let mut st = state(&*tx, &service.arn)?;
    st.traffic = traffic.clone();
    tx.save(&st)?;
    let summary: Vec<String> = traffic
        .iter()
        .map(|t| format!("{} {}%", t.revision, t.percent))
        .collect();
    add_event(
        tx,
        ctx,
        &service.arn,
        None,
        &format!("Traffic set to {}", summary.join(", ")),
    )?;
    Ok(UpdateTrafficResponse {
        traffic: Some(
            traffic
                .into_iter()
                .map(|t| TrafficEntry {
                    revision_id: Some(t.revision),
                    percent: Some(i64::from(t.percent)),
                    tag: t.tag,
                })
                .collect(),
        ),
    })
}

/// Refuses traffic for revisions whose instances speak different protocols: the router
/// serves a service with one HTTP configuration (its primary revision's), so the others
/// would get requests in a protocol they do not speak.
fn one_protocol(revisions: &[&RevisionRecord]) -> OpResult<()> {
    let mut protocols = revisions.iter().map(|r| (r, r.http_settings().protocol));
    let Some((first, protocol)) = protocols.next() else {
        return Ok(());
    };
    match protocols.find(|(_, p)| *p != protocol) {
        Some((other, p)) => Err(ApiError::invalid(format!(
            "Traffic: revision {} speaks {} and revision {} speaks {}; a service's revisions \
             get traffic in one protocol (see HttpConfiguration.InstanceProtocol)",
            first.id,
            protocol.as_str(),
            other.id,
            p.as_str()
        ))
        .into()),
        None => Ok(()),
    }
}

/// Appends a line to a service's event log.
pub fn add_event(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    service_arn: &str,
    operation_id: Option<&str>,
    message: &str,
) -> OpResult<()> {
    tx.create(&EventRecord {
        id: runway_model::ids::new_operation_id(),
        service_arn: service_arn.to_string(),
        time: ctx.now,
        operation_id: operation_id.map(str::to_string),
        message: message.to_string(),
    })?;
    Ok(())
}

pub(crate) fn list_events(
    tx: &mut dyn Txn,
    _ctx: &Ctx<'_>,
    req: ServicePageRequest,
) -> OpResult<ListServiceEventsResponse> {
    let service = load_service(&*tx, &req.service_arn)?;
    let max = validate::max_results(req.max_results, MAX_PAGE)?;
    let query = Query {
        parent: Some(service.arn.clone()),
        descending: true,
        ..Default::default()
    };
    let events = tx.load_all::<EventRecord>(&query)?;
    let (items, next) = page_desc(events, req.next_token.as_deref(), max)?;
    Ok(ListServiceEventsResponse {
        events: Some(
            items
                .into_iter()
                .map(|e| ServiceEvent {
                    time: Some(e.time),
                    message: Some(e.message),
                    operation_id: e.operation_id,
                })
                .collect(),
        ),
        next_token: next,
    })
}

/// The most bytes of a build log one call returns.
const BUILD_LOG_CHUNK: u64 = 1 << 20;

/// `Runway.GetBuildLog`: an operation's build log from byte `Offset` on, and the
/// operation's status (the log is complete once it is final).
pub(crate) fn get_build_log(
    tx: &mut dyn Txn,
    ctx: &Ctx<'_>,
    req: GetBuildLogRequest,
) -> OpResult<GetBuildLogResponse> {
    use std::io::{Read, Seek};
    let id = validate::required("OperationId", &req.operation_id)?;
    // Only a recorded operation's id names a file.
    let op = tx
        .load::<OperationRecord>(id)?
        .ok_or_else(|| ApiError::not_found(format!("Operation {id} does not exist")))?;
    let offset = u64::try_from(req.offset.unwrap_or(0))
        .map_err(|_| ApiError::invalid("Offset must not be negative"))?;
    let mut log = Vec::new();
    if let Some(dir) = &ctx.config.build_logs {
        match std::fs::File::open(dir.join(format!("{}.log", op.id))) {
            Ok(mut file) => {
                file.seek(std::io::SeekFrom::Start(offset))
                    .and_then(|_| file.take(BUILD_LOG_CHUNK).read_to_end(&mut log))
                    .map_err(|e| ApiError::internal(format!("cannot read the build log: {e}")))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ApiError::internal(format!("cannot read the build log: {e}")).into());
            }
        }
    }
    // Whole lines only, so a line is never split between calls (unless it alone is
    // larger than a chunk).
    if log.len() as u64 == BUILD_LOG_CHUNK
        && let Some(end) = log.iter().rposition(|&b| b == b'\n')
    {
        log.truncate(end + 1);
    }
    Ok(GetBuildLogResponse {
        next_offset: Some((offset + log.len() as u64) as i64),
        log: Some(String::from_utf8_lossy(&log).into_owned()),
        operation_status: Some(op.status.to_string()),
    })
}

#[cfg(test)]
mod tests;
