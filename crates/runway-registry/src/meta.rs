//! Repository metadata in the state store: repositories, the blobs linked into each,
//! manifests, tags and referrers. A manifest push writes all of its documents in one
//! transaction. Every function here runs inside a store transaction, on a blocking
//! thread.

use runway_store::{Query, Record, Result, Txn, Typed};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A repository and its settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RepositoryRecord {
    pub name: String,
    /// Whether anyone may pull from it without credentials.
    #[serde(default)]
    pub anonymous_pull: bool,
    pub created_ms: i64,
}

impl Record for RepositoryRecord {
    const KIND: &'static str = "registry_repository";
    fn key(&self) -> &str {
        &self.name
    }
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

/// A blob made available in a repository (by upload or mount). Blobs are stored once;
/// links are what make them visible per repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BlobLinkRecord {
    /// `<repository>@<digest>`
    pub id: String,
    pub repository: String,
    pub digest: String,
    pub size: u64,
}

impl Record for BlobLinkRecord {
    const KIND: &'static str = "registry_blob";
    fn key(&self) -> &str {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        Some(&self.digest)
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.repository)
    }
}

/// A manifest stored in a repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ManifestRecord {
    /// `<repository>@<digest>`
    pub id: String,
    pub repository: String,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// Every digest this manifest needs: config, layers, or the manifests of an index.
    pub references: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub pushed_ms: i64,
}

impl Record for ManifestRecord {
    const KIND: &'static str = "registry_manifest";
    fn key(&self) -> &str {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        Some(&self.digest)
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.repository)
    }
}

/// A tag pointing at a manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TagRecord {
    /// `<repository>:<tag>`
    pub id: String,
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub updated_ms: i64,
}

impl Record for TagRecord {
    const KIND: &'static str = "registry_tag";
    fn key(&self) -> &str {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        Some(&self.digest)
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.repository)
    }
}

/// The descriptor the referrers API lists for a manifest with a `subject`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReferrerDescriptor {
    pub media_type: String,
    pub size: u64,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A manifest that refers to another (its `subject`), indexed by that subject.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReferrerRecord {
    /// `<repository>@<subject>@<digest>`
    pub id: String,
    /// `<repository>@<subject>`
    pub subject_key: String,
    pub descriptor: ReferrerDescriptor,
}

impl Record for ReferrerRecord {
    const KIND: &'static str = "registry_referrer";
    fn key(&self) -> &str {
        &self.id
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.subject_key)
    }
}

/// The key that signs registry tokens, sealed with the master key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TokenKeyRecord {
    pub id: String,
    pub sealed: String,
}

impl Record for TokenKeyRecord {
    const KIND: &'static str = "registry_token_key";
    fn key(&self) -> &str {
        &self.id
    }
}

/// A `host[:port]` the registry was served under: image references naming it are the
/// registry's own, also after it moved to another address.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HostRecord {
    pub host: String,
    pub last_served_ms: i64,
}

impl Record for HostRecord {
    const KIND: &'static str = "registry_host";
    fn key(&self) -> &str {
        &self.host
    }
}

pub(crate) fn link_id(repository: &str, digest: &str) -> String {
    format!("{repository}@{digest}")
}

pub(crate) fn tag_id(repository: &str, tag: &str) -> String {
    format!("{repository}:{tag}")
}

pub(crate) fn referrer_parent(repository: &str, subject: &str) -> String {
    format!("{repository}@{subject}")
}

pub(crate) fn repository(tx: &dyn Txn, name: &str) -> Result<Option<RepositoryRecord>> {
    tx.load(name)
}

/// Creates the repository record if it does not exist.
pub(crate) fn ensure_repository(tx: &mut dyn Txn, name: &str, now_ms: i64) -> Result<()> {
    if tx.load::<RepositoryRecord>(name)?.is_none() {
        tx.create(&RepositoryRecord {
            name: name.to_string(),
            anonymous_pull: false,
            created_ms: now_ms,
        })?;
    }
    Ok(())
}

pub(crate) fn link(
    tx: &mut dyn Txn,
    repository: &str,
    digest: &str,
    size: u64,
    now_ms: i64,
) -> Result<()> {
    ensure_repository(tx, repository, now_ms)?;
    tx.save(&BlobLinkRecord {
        id: link_id(repository, digest),
        repository: repository.to_string(),
        digest: digest.to_string(),
        size,
    })?;
    Ok(())
}

pub(crate) fn linked(tx: &dyn Txn, repository: &str, digest: &str) -> Result<bool> {
    Ok(tx
        .load::<BlobLinkRecord>(&link_id(repository, digest))?
        .is_some())
}

/// Removes every repository's link to `digest` (the blob is being deleted).
pub(crate) fn unlink_everywhere(tx: &mut dyn Txn, digest: &str) -> Result<u64> {
    let query = Query {
        name: Some(digest.to_string()),
        ..Default::default()
    };
    let links = tx.load_all::<BlobLinkRecord>(&query)?;
    for (_, l) in &links {
        tx.remove::<BlobLinkRecord>(&l.id)?;
    }
    Ok(links.len() as u64)
}

pub(crate) fn manifest(
    tx: &dyn Txn,
    repository: &str,
    digest: &str,
) -> Result<Option<ManifestRecord>> {
    tx.load(&link_id(repository, digest))
}

pub(crate) fn tag(tx: &dyn Txn, repository: &str, tag: &str) -> Result<Option<TagRecord>> {
    tx.load(&tag_id(repository, tag))
}

fn children(repository: &str) -> Query {
    Query {
        parent: Some(repository.to_string()),
        ..Default::default()
    }
}

/// The repository's tags, in ASCII order.
pub(crate) fn tags(tx: &dyn Txn, repository: &str) -> Result<Vec<String>> {
    let mut tags: Vec<String> = tx
        .load_all::<TagRecord>(&children(repository))?
        .into_iter()
        .map(|(_, t)| t.tag)
        .collect();
    tags.sort();
    Ok(tags)
}

/// Every repository, in ASCII order of name.
pub(crate) fn repositories(tx: &dyn Txn) -> Result<Vec<RepositoryRecord>> {
    let mut repos: Vec<RepositoryRecord> = tx
        .load_all::<RepositoryRecord>(&Query::default())?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    repos.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(repos)
}

/// Every manifest of every repository (for gc's mark phase).
pub(crate) fn all_manifests(tx: &dyn Txn) -> Result<Vec<ManifestRecord>> {
    Ok(tx
        .load_all::<ManifestRecord>(&Query::default())?
        .into_iter()
        .map(|(_, m)| m)
        .collect())
}

pub(crate) fn referrers(
    tx: &dyn Txn,
    repository: &str,
    subject: &str,
) -> Result<Vec<ReferrerDescriptor>> {
    Ok(tx
        .load_all::<ReferrerRecord>(&Query {
            parent: Some(referrer_parent(repository, subject)),
            ..Default::default()
        })?
        .into_iter()
        .map(|(_, r)| r.descriptor)
        .collect())
}

/// Deletes a manifest with its tags, its referrer entry and its blob link.
pub(crate) fn delete_manifest(tx: &mut dyn Txn, record: &ManifestRecord) -> Result<()> {
    let repo = &record.repository;
    for (_, t) in tx.load_all::<TagRecord>(&Query {
        name: Some(record.digest.clone()),
        parent: Some(repo.clone()),
        ..Default::default()
    })? {
        tx.remove::<TagRecord>(&t.id)?;
    }
    if let Some(subject) = &record.subject {
        let parent = referrer_parent(repo, subject);
        tx.remove::<ReferrerRecord>(&format!("{parent}@{}", record.digest))?;
    }
    tx.remove::<BlobLinkRecord>(&link_id(repo, &record.digest))?;
    tx.remove::<ManifestRecord>(&record.id)?;
    Ok(())
}
