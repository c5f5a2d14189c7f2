//! What auto scaling and observability configurations share: revisions under a name, the
//! Latest flag, and ARNs that may be full (`.../name/revision/id`) or partial
//! (`.../name/revision` or `.../name`, meaning the latest active revision).

use super::{OpResult, page};
use runway_model::{ApiError, Arn, ResourceKind, Timestamp, validate};
use runway_store::{Query, Record, Txn, Typed};

/// A configuration kept in numbered revisions.
pub(crate) trait Revisioned: Record + Clone {
    /// What the API calls it in messages.
    const NOUN: &'static str;
    const RESOURCE: ResourceKind;
    fn arn(&self) -> &str;
    fn config_name(&self) -> &str;
    fn revision(&self) -> i64;
    fn active(&self) -> bool;
    /// Marks the revision deleted.
    fn deactivate(&mut self, now: Timestamp);
}

/// Implements [`Revisioned`] for a record with `arn`, `name`, `revision`, `status` and
/// `deleted_at` fields.
macro_rules! revisioned {
    ($record:ty, $noun:literal, $kind:expr) => {
        impl $crate::ops::revisions::Revisioned for $record {
            const NOUN: &'static str = $noun;
            const RESOURCE: runway_model::ResourceKind = $kind;
            fn arn(&self) -> &str {
                &self.arn
            }
            fn config_name(&self) -> &str {
                &self.name
            }
            fn revision(&self) -> i64 {
                self.revision
            }
            fn active(&self) -> bool {
                self.status == runway_model::records::ConfigStatus::Active
            }
            fn deactivate(&mut self, now: runway_model::Timestamp) {
                self.status = runway_model::records::ConfigStatus::Inactive;
                self.deleted_at = Some(now);
            }
        }
    };
}
pub(crate) use revisioned;

/// The most active revisions one name may have, as in App Runner.
pub(crate) const MAX_REVISIONS: usize = 5;
/// The most distinct names, as in App Runner.
pub(crate) const MAX_NAMES: usize = 10;

/// Every revision, deleted ones included, in creation order.
pub(crate) fn all<R: Revisioned>(tx: &dyn Txn) -> OpResult<Vec<(i64, R)>> {
    Ok(tx.load_all::<R>(&Query::default())?)
}

fn of_name<R: Revisioned>(tx: &dyn Txn, name: &str) -> OpResult<Vec<R>> {
    let query = Query {
        name: Some(name.to_string()),
        ..Default::default()
    };
    Ok(tx
        .load_all::<R>(&query)?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

/// Whether `r` is the highest active revision of its name.
pub(crate) fn is_latest<R: Revisioned>(all: &[(i64, R)], r: &R) -> bool {
    r.active()
        && !all.iter().any(|(_, o)| {
            o.active() && o.config_name() == r.config_name() && o.revision() > r.revision()
        })
}

fn not_found<R: Revisioned>(arn: &str) -> ApiError {
    ApiError::not_found(format!("{} {arn} does not exist", R::NOUN))
}

/// Finds the revision a full or partial ARN names.
pub(crate) fn resolve<R: Revisioned>(tx: &dyn Txn, field: &str, arn: &str) -> OpResult<R> {
    let parsed: Arn = validate::parse_arn(field, arn, R::RESOURCE)?;
    let revisions = of_name::<R>(tx, parsed.name())?;
    let revision = |r: &str| -> OpResult<i64> {
        r.parse().map_err(|_| {
            ApiError::invalid(format!("{field}: revision {r:?} is not a number")).into()
        })
    };
    let found = match parsed.path.as_slice() {
        [_] => revisions
            .into_iter()
            .filter(R::active)
            .max_by_key(R::revision),
        [_, rev] => {
            let rev = revision(rev)?;
            revisions.into_iter().find(|r| r.revision() == rev)
        }
        [_, rev, _] => {
            revision(rev)?;
            let full = parsed.to_string();
            revisions.into_iter().find(|r| r.arn() == full)
        }
        _ => {
            return Err(ApiError::invalid(format!(
                "{field} must end with .../name, .../name/revision or .../name/revision/id, got {arn:?}"
            ))
            .into());
        }
    };
    found.ok_or_else(|| not_found::<R>(arn).into())
}

/// Like [`resolve`], refusing a deleted revision.
pub(crate) fn resolve_active<R: Revisioned>(tx: &dyn Txn, field: &str, arn: &str) -> OpResult<R> {
    let r = resolve::<R>(tx, field, arn)?;
    if !r.active() {
        return Err(
            ApiError::invalid(format!("{field}: {} {} is deleted", R::NOUN, r.arn())).into(),
        );
    }
    Ok(r)
}

/// The revision number a new configuration named `name` gets, after checking quotas.
pub(crate) fn next_revision<R: Revisioned>(
    tx: &dyn Txn,
    name: &str,
    exempt: &[&str],
) -> OpResult<i64> {
    let revisions = of_name::<R>(tx, name)?;
    let active = revisions.iter().filter(|r| r.active()).count();
    if active >= MAX_REVISIONS {
        return Err(ApiError::quota(format!(
            "{} {name} already has {MAX_REVISIONS} active revisions; delete one first",
            R::NOUN
        ))
        .into());
    }
    if active == 0 {
        let mut names: Vec<String> = all::<R>(tx)?
            .into_iter()
            .filter(|(_, r)| r.active() && !exempt.contains(&r.config_name()))
            .map(|(_, r)| r.config_name().to_string())
            .collect();
        names.sort();
        names.dedup();
        if names.len() >= MAX_NAMES {
            return Err(ApiError::quota(format!(
                "there are already {MAX_NAMES} {} names; delete one first",
                R::NOUN
            ))
            .into());
        }
    }
    Ok(revisions.iter().map(R::revision).max().unwrap_or(0) + 1)
}

/// One page of a listing, with every revision it was chosen from (to derive Latest).
pub(crate) struct Listing<R> {
    pub items: Vec<R>,
    pub next: Option<String>,
    pub all: Vec<(i64, R)>,
}

/// The active revisions, optionally of one name and only the latest of each, one page.
pub(crate) fn list<R: Revisioned>(
    tx: &dyn Txn,
    name: Option<&str>,
    latest_only: bool,
    max: usize,
    token: Option<&str>,
) -> OpResult<Listing<R>> {
    let all = all::<R>(tx)?;
    let chosen: Vec<(i64, R)> = all
        .iter()
        .filter(|(_, r)| r.active() && name.is_none_or(|n| r.config_name() == n))
        .filter(|(_, r)| !latest_only || is_latest(&all, r))
        .cloned()
        .collect();
    let (items, next) = page(chosen, token, max)?;
    Ok(Listing { items, next, all })
}

/// The revisions a Delete call removes: the one the ARN names, or with `all_revisions`
/// every active revision of the name (the ARN must then end with the name).
pub(crate) fn to_delete<R: Revisioned>(
    tx: &dyn Txn,
    field: &str,
    arn: &str,
    all_revisions: bool,
) -> OpResult<Vec<R>> {
    if !all_revisions {
        let r = resolve::<R>(tx, field, arn)?;
        if !r.active() {
            return Err(
                ApiError::invalid(format!("{} {} is already deleted", R::NOUN, r.arn())).into(),
            );
        }
        return Ok(vec![r]);
    }
    let parsed = validate::parse_arn(field, arn, R::RESOURCE)?;
    if parsed.path.len() != 1 {
        return Err(ApiError::invalid(format!(
            "{field} must be a partial ARN ending with .../name when DeleteAllRevisions is true, got {arn:?}"
        ))
        .into());
    }
    let active: Vec<R> = of_name::<R>(tx, parsed.name())?
        .into_iter()
        .filter(R::active)
        .collect();
    if active.is_empty() {
        return Err(not_found::<R>(arn).into());
    }
    Ok(active)
}
