//! Content operations shared by the HTTP API and pull-through imports: resolving
//! references, committing uploaded blobs, mounting, and storing manifests with their
//! tags and referrers in one transaction.

use crate::digest::{Algorithm, Digest};
use crate::manifest::{self, ManifestError};
use crate::meta::{self, ManifestRecord, ReferrerDescriptor, ReferrerRecord, TagRecord};
use crate::upload::Session;
use crate::{PushEvent, Registry, RegistryError, names, now_ms};
use bytes::Bytes;
use runway_store::Typed;
use std::fmt;
use std::path::PathBuf;

/// A manifest reference in a URL: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reference {
    Tag(String),
    Digest(Digest),
}

/// Why a reference is malformed: a bad digest or a bad tag.
#[derive(Debug, Clone)]
pub(crate) enum ReferenceError {
    Digest(String),
    Tag(String),
}

impl ReferenceError {
    pub fn message(&self) -> &str {
        match self {
            ReferenceError::Digest(m) | ReferenceError::Tag(m) => m,
        }
    }
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.contains(':') {
            return Digest::parse(s)
                .map(Reference::Digest)
                .map_err(|e| ReferenceError::Digest(e.to_string()));
        }
        if names::is_tag(s) {
            Ok(Reference::Tag(s.to_string()))
        } else {
            Err(ReferenceError::Tag(format!(
                "tag {:?} must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
                s.chars().take(160).collect::<String>()
            )))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// Why a manifest push failed.
#[derive(Debug)]
pub(crate) enum PushError {
    Invalid(ManifestError),
    /// The body does not hash to the digest in the URL.
    DigestMismatch {
        expected: Digest,
        computed: Digest,
    },
    /// Referenced blobs or manifests that are not in the repository.
    Missing(Vec<String>),
    Failed(RegistryError),
}

impl From<RegistryError> for PushError {
    fn from(e: RegistryError) -> Self {
        PushError::Failed(e)
    }
}

/// A manifest that was stored.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub digest: Digest,
    pub subject: Option<String>,
}

impl Registry {
    /// The manifest record `reference` names in `repository`, if any.
    pub(crate) async fn find_manifest(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>, RegistryError> {
        let repo = repository.to_string();
        let reference = reference.clone();
        self.blocking(move |inner| {
            let tx = inner.store.read()?;
            let digest = match &reference {
                Reference::Digest(d) => d.to_string(),
                Reference::Tag(t) => match meta::tag(&*tx, &repo, t)? {
                    Some(tag) => tag.digest,
                    None => return Ok(None),
                },
            };
            Ok(meta::manifest(&*tx, &repo, &digest)?)
        })
        .await
    }

    /// Moves a verified upload into the blob store and links it into its repository.
    pub(crate) async fn commit_upload(
        &self,
        session: &mut Session,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let src = self.inner.uploads.data_path(session.id);
        self.commit_temp(&session.repository, src, digest).await?;
        self.inner
            .uploads
            .remove(session)
            .await
            .map_err(RegistryError::io("cannot remove a finished upload"))
    }

    /// Moves `src`, a complete file verified to hash to `digest`, into the blob store
    /// and links it into `repository`.
    pub(crate) async fn commit_temp(
        &self,
        repository: &str,
        src: PathBuf,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let _guard = self.inner.gc_lock.read().await;
        let repo = repository.to_string();
        let d = digest.clone();
        self.blocking(move |inner| {
            inner
                .blobs
                .commit_file(&src, &d)
                .map_err(RegistryError::io(format!("cannot commit blob {d}")))?;
            let size = inner
                .blobs
                .size(&d)
                .map_err(RegistryError::io("cannot stat a blob"))?
                .unwrap_or(0);
            let mut tx = inner.store.begin()?;
            meta::link(&mut *tx, &repo, &d.to_string(), size, now_ms())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Links blob `digest` from `from` into `to` if `from` has it; whether it did.
    pub(crate) async fn mount(
        &self,
        from: &str,
        to: &str,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let _guard = self.inner.gc_lock.read().await;
        let (from, to, d) = (from.to_string(), to.to_string(), digest.clone());
        self.blocking(move |inner| {
            let mut tx = inner.store.begin()?;
            if !meta::linked(&*tx, &from, &d.to_string())? {
                return Ok(false);
            }
            if !inner
                .blobs
                .touch(&d)
                .map_err(RegistryError::io("cannot touch a blob"))?
            {
                return Ok(false);
            }
            let size = inner
                .blobs
                .size(&d)
                .map_err(RegistryError::io("cannot stat a blob"))?
                .unwrap_or(0);
            meta::link(&mut *tx, &to, &d.to_string(), size, now_ms())?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// Whether blob `digest` is linked into `repository` and present; its size.
    pub(crate) async fn linked_blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let (repo, d) = (repository.to_string(), digest.clone());
        self.blocking(move |inner| {
            let tx = inner.store.read()?;
            if !meta::linked(&*tx, &repo, &d.to_string())? {
                return Ok(None);
            }
            inner
                .blobs
                .size(&d)
                .map_err(RegistryError::io("cannot stat a blob"))
        })
        .await
    }

    /// Validates and stores a manifest in `repository`, under `tags`, after checking
    /// that everything it references is in the repository. `expected` is the digest
    /// the client named, if it pushed by digest. `fire_hooks` is false for imports.
    pub(crate) async fn put_manifest(
        &self,
        repository: &str,
        tags: Vec<String>,
        expected: Option<&Digest>,
        content_type: Option<&str>,
        bytes: Bytes,
        fire_hooks: bool,
    ) -> Result<Stored, PushError> {
        let parsed = manifest::parse(content_type, &bytes).map_err(PushError::Invalid)?;
        let algorithm = expected.map_or(Algorithm::Sha256, Digest::algorithm);
        let digest = Digest::of(algorithm, &bytes);
        if let Some(expected) = expected
            && expected != &digest
        {
            return Err(PushError::DigestMismatch {
                expected: expected.clone(),
                computed: digest,
            });
        }
        let media_type = parsed.kind.media_type();
        let references: Vec<String> = parsed
            .blobs()
            .chain(parsed.manifests.iter())
            .map(|d| d.digest.to_string())
            .collect();
        let subject = parsed.subject.as_ref().map(|s| s.digest.to_string());
        let referrer = ReferrerDescriptor {
            media_type: media_type.to_string(),
            size: bytes.len() as u64,
            digest: digest.to_string(),
            artifact_type: parsed.referrer_artifact_type().map(str::to_string),
            annotations: parsed.annotations.clone(),
        };

        let guard = self.inner.gc_lock.read().await;
        let (repo, d, subj, tags2) = (
            repository.to_string(),
            digest.clone(),
            subject.clone(),
            tags.clone(),
        );
        let missing = self
            .blocking(move |inner| {
                let mut tx = inner.store.begin()?;
                let mut missing = Vec::new();
                for r in &references {
                    let present = meta::linked(&*tx, &repo, r)?
                        && Digest::parse(r)
                            .ok()
                            .map(|rd| inner.blobs.size(&rd))
                            .transpose()
                            .map_err(RegistryError::io("cannot stat a blob"))?
                            .flatten()
                            .is_some();
                    if !present && !missing.contains(r) {
                        missing.push(r.clone());
                    }
                }
                if !missing.is_empty() {
                    return Ok(missing);
                }
                // The exact bytes, content-addressed: GET by digest returns what was pushed.
                inner
                    .blobs
                    .write(&d, &bytes)
                    .map_err(RegistryError::io("cannot write a manifest"))?;
                let now = now_ms();
                let digest = d.to_string();
                meta::link(&mut *tx, &repo, &digest, bytes.len() as u64, now)?;
                tx.save(&ManifestRecord {
                    id: meta::link_id(&repo, &digest),
                    repository: repo.clone(),
                    digest: digest.clone(),
                    media_type: media_type.to_string(),
                    size: bytes.len() as u64,
                    references,
                    subject: subj.clone(),
                    pushed_ms: now,
                })?;
                for tag in &tags2 {
                    tx.save(&TagRecord {
                        id: meta::tag_id(&repo, tag),
                        repository: repo.clone(),
                        tag: tag.clone(),
                        digest: digest.clone(),
                        updated_ms: now,
                    })?;
                }
                if let Some(subject) = &subj {
                    let parent = meta::referrer_parent(&repo, subject);
                    tx.save(&ReferrerRecord {
                        id: format!("{parent}@{digest}"),
                        subject_key: parent,
                        descriptor: referrer,
                    })?;
                }
                tx.commit()?;
                Ok(Vec::new())
            })
            .await?;
        drop(guard);
        if !missing.is_empty() {
            return Err(PushError::Missing(missing));
        }
        tracing::info!(
            repository,
            digest = %digest,
            media_type,
            tags = ?tags,
            "manifest stored"
        );
        if fire_hooks {
            let events: Vec<PushEvent> = if tags.is_empty() {
                vec![PushEvent {
                    repository: repository.to_string(),
                    tag: None,
                    digest: digest.to_string(),
                    media_type: media_type.to_string(),
                }]
            } else {
                tags.iter()
                    .map(|t| PushEvent {
                        repository: repository.to_string(),
                        tag: Some(t.clone()),
                        digest: digest.to_string(),
                        media_type: media_type.to_string(),
                    })
                    .collect()
            };
            self.fire(events).await;
        }
        Ok(Stored { digest, subject })
    }

    async fn fire(&self, events: Vec<PushEvent>) {
        let hooks = self
            .inner
            .hooks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for hook in hooks {
            let events = events.clone();
            let result = tokio::task::spawn_blocking(move || {
                for event in &events {
                    hook(event);
                }
            })
            .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "a push hook failed");
            }
        }
    }

    /// Deletes a tag (`Reference::Tag`) or a manifest with its tags (`Digest`); whether
    /// it existed.
    pub(crate) async fn delete_manifest(
        &self,
        repository: &str,
        reference: &Reference,
    ) -> Result<bool, RegistryError> {
        let (repo, reference) = (repository.to_string(), reference.clone());
        self.blocking(move |inner| {
            let mut tx = inner.store.begin()?;
            let existed = match &reference {
                Reference::Tag(t) => tx.remove::<TagRecord>(&meta::tag_id(&repo, t))?,
                Reference::Digest(d) => match meta::manifest(&*tx, &repo, &d.to_string())? {
                    Some(record) => {
                        meta::delete_manifest(&mut *tx, &record)?;
                        true
                    }
                    None => false,
                },
            };
            tx.commit()?;
            Ok(existed)
        })
        .await
    }

    /// Removes blob `digest` from `repository` (the file stays until gc); whether it
    /// was linked.
    pub(crate) async fn unlink_blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let (repo, d) = (repository.to_string(), digest.to_string());
        self.blocking(move |inner| {
            let mut tx = inner.store.begin()?;
            let existed = tx.remove::<meta::BlobLinkRecord>(&meta::link_id(&repo, &d))?;
            tx.commit()?;
            Ok(existed)
        })
        .await
    }
}
