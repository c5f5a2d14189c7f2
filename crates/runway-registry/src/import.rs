//! Pull-through: copies an image from an upstream registry (docker.io, ghcr.io, quay.io,
//! public.ecr.aws, any v2 registry) into the internal store once, with oci-client, so
//! instances never depend on the upstream when they start. Content already here is not
//! fetched again; everything fetched is verified against its digest before it is
//! committed.

use crate::content::PushError;
use crate::digest::Digest;
use crate::manifest::{self, Descriptor, Manifest};
use crate::upload::Sink;
use crate::{Registry, RegistryError, names};
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use runway_model::reference::ImageReference;
use std::fmt;
use std::time::Duration;

/// Credentials for an upstream registry (from a runway connection or secret).
#[derive(Clone, PartialEq, Eq)]
pub enum UpstreamAuth {
    Basic { username: String, password: String },
    Bearer(String),
}

impl fmt::Debug for UpstreamAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
            UpstreamAuth::Bearer(_) => f.write_str("Bearer(..)"),
        }
    }
}

/// An image copied into the internal store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedImage {
    /// The internal repository (`<upstream host>/<repository>`, `:` in the host as `-`).
    pub repository: String,
    /// The image manifest's digest (for a multi-platform image, the one for
    /// [`crate::RegistryConfig::platform`]).
    pub digest: String,
    pub media_type: String,
    /// The digest of the multi-platform index the reference named, if it named one.
    pub index_digest: Option<String>,
    /// The upstream reference, normalised (`docker.io/library/nginx:latest`).
    pub source: String,
    /// Blobs downloaded by this import (0 when everything was here already).
    pub blobs_fetched: u64,
    /// Bytes downloaded by this import.
    pub bytes_fetched: u64,
}

/// The internal repository an upstream image is stored under.
pub fn internal_repository(reference: &ImageReference) -> Result<String, RegistryError> {
    let host: String = reference
        .registry
        .to_ascii_lowercase()
        .chars()
        .filter(|c| *c != '[' && *c != ']')
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let host = host.trim_matches(|c| c == '-' || c == '.');
    let name = format!("{host}/{}", reference.repository);
    if names::is_repository(&name) {
        Ok(name)
    } else {
        Err(RegistryError::Invalid(format!(
            "{reference} cannot be stored as repository {name:?}"
        )))
    }
}

fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => registry.split(':').next().unwrap_or(""),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An error and its causes on one line (reqwest hides the useful part in sources).
fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

impl Registry {
    /// Copies `reference` from its upstream registry into the internal store (unless it
    /// is there already) and tags it like the reference. Fails with an error naming the
    /// registry if the upstream cannot be reached or refuses. Does not fire push hooks.
    pub async fn import(
        &self,
        reference: &ImageReference,
        auth: Option<UpstreamAuth>,
    ) -> Result<ImportedImage, RegistryError> {
        let result = self.import_inner(reference, auth).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.inner
            .metrics
            .imports
            .get_or_create(&crate::metrics::ResultLabel { result: outcome })
            .inc();
        match &result {
            Ok(i) => tracing::info!(
                source = %i.source,
                repository = %i.repository,
                digest = %i.digest,
                blobs_fetched = i.blobs_fetched,
                bytes_fetched = i.bytes_fetched,
                "image imported"
            ),
            Err(e) => tracing::warn!(source = %reference, error = %e, "image import failed"),
        }
        result
    }

    async fn import_inner(
        &self,
        reference: &ImageReference,
        auth: Option<UpstreamAuth>,
    ) -> Result<ImportedImage, RegistryError> {
        let repository = internal_repository(reference)?;
        let source = reference.to_string();
        let upstream = |message: String| RegistryError::Upstream {
            registry: reference.registry.clone(),
            reference: source.clone(),
            message,
        };
        let mut imported = ImportedImage {
            repository: repository.clone(),
            digest: String::new(),
            media_type: String::new(),
            index_digest: None,
            source: source.clone(),
            blobs_fetched: 0,
            bytes_fetched: 0,
        };

        // Pinned by digest and here already: no need to ask the upstream anything.
        if let Some(pinned) = &reference.digest {
            let digest =
                Digest::parse(pinned).map_err(|e| RegistryError::Invalid(e.to_string()))?;
            if let Some((digest, media_type)) = self.already_imported(&repository, &digest).await? {
                imported.digest = digest;
                imported.media_type = media_type;
                return Ok(imported);
            }
        }

        let client = self.upstream_client(&reference.registry);
        let oci_ref = match (&reference.digest, &reference.tag) {
            (Some(d), _) => oci_client::Reference::with_digest(
                reference.registry.clone(),
                reference.repository.clone(),
                d.clone(),
            ),
            (None, tag) => oci_client::Reference::with_tag(
                reference.registry.clone(),
                reference.repository.clone(),
                tag.clone().unwrap_or_else(|| "latest".into()),
            ),
        };
        let oci_auth = match &auth {
            None => RegistryAuth::Anonymous,
            Some(UpstreamAuth::Basic { username, password }) => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Some(UpstreamAuth::Bearer(t)) => RegistryAuth::Bearer(t.clone()),
        };

        let (top, top_digest) = self
            .fetch_manifest(&client, &oci_ref, &oci_auth, None)
            .await
            .map_err(&upstream)?;
        let (image, image_bytes, image_digest) = if top.0.kind.is_index() {
            let child = pick_platform(&top.0, &self.inner.config.platform).ok_or_else(|| {
                let p = &self.inner.config.platform;
                upstream(format!(
                    "the image has no manifest for {}/{}",
                    p.os, p.architecture
                ))
            })?;
            imported.index_digest = Some(top_digest.to_string());
            let child_ref = oci_ref.clone_with_digest(child.digest.to_string());
            let ((m, bytes), d) = self
                .fetch_manifest(&client, &child_ref, &oci_auth, Some(&child.digest))
                .await
                .map_err(&upstream)?;
            if m.kind.is_index() {
                return Err(upstream("the platform manifest is itself an index".into()));
            }
            (m, bytes, d)
        } else {
            let (m, bytes) = top;
            (m, bytes, top_digest)
        };

        let max = self.inner.config.max_upload_size;
        for blob in image.blobs() {
            if self.linked_blob(&repository, &blob.digest).await?.is_some() {
                continue;
            }
            // Stored for another repository: link it, once the upstream shows it has
            // the blob too (so an import can never reveal content the upstream lacks).
            let here = self.blob_path(&blob.digest.to_string()).is_some();
            if here {
                let exists = client
                    .blob_exists(&oci_ref, &blob.digest.to_string())
                    .await
                    .map_err(|e| upstream(chain(&e)))?;
                if exists && self.link_present(&repository, &blob.digest).await? {
                    continue;
                }
            }
            if blob.size > max {
                return Err(upstream(format!(
                    "blob {} is {} bytes, more than the limit of {max}",
                    blob.digest, blob.size
                )));
            }
            let n = self
                .fetch_blob(&client, &oci_ref, blob, &repository)
                .await
                .map_err(&upstream)?;
            imported.blobs_fetched += 1;
            imported.bytes_fetched += n;
        }

        let tags: Vec<String> = reference.tag.iter().cloned().collect();
        let media_type = image.kind.media_type();
        let stored = self
            .put_manifest(
                &repository,
                tags,
                Some(&image_digest),
                Some(media_type),
                image_bytes,
                false,
            )
            .await
            .map_err(|e| match e {
                PushError::Failed(e) => e,
                PushError::Invalid(e) => upstream(format!("invalid manifest: {e}")),
                PushError::DigestMismatch { expected, computed } => upstream(format!(
                    "manifest digest {computed} does not match {expected}"
                )),
                PushError::Missing(d) => {
                    RegistryError::Internal(format!("imported blobs went missing: {d:?}"))
                }
            })?;
        imported.digest = stored.digest.to_string();
        imported.media_type = media_type.to_string();
        Ok(imported)
    }

    fn upstream_client(&self, registry: &str) -> oci_client::Client {
        let insecure = is_loopback(registry)
            || self
                .inner
                .config
                .insecure_registries
                .iter()
                .any(|r| r == registry);
        oci_client::Client::new(ClientConfig {
            protocol: if insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(120)),
            platform_resolver: None,
            ..Default::default()
        })
    }

    /// Fetches and validates a manifest; checks it against `expected` when given.
    async fn fetch_manifest(
        &self,
        client: &oci_client::Client,
        reference: &oci_client::Reference,
        auth: &RegistryAuth,
        expected: Option<&Digest>,
    ) -> Result<((Manifest, bytes::Bytes), Digest), String> {
        let (bytes, _) = client
            .pull_manifest_raw(reference, auth, &manifest::MEDIA_TYPES)
            .await
            .map_err(|e| chain(&e))?;
        if bytes.len() > self.inner.config.max_manifest_size {
            return Err(format!(
                "the manifest is larger than {} bytes",
                self.inner.config.max_manifest_size
            ));
        }
        let algorithm = expected
            .map(Digest::algorithm)
            .or_else(|| {
                reference
                    .digest()
                    .and_then(|d| Digest::parse(d).ok())
                    .map(|d| d.algorithm())
            })
            .unwrap_or(crate::digest::Algorithm::Sha256);
        let digest = Digest::of(algorithm, &bytes);
        let pinned = expected
            .cloned()
            .or_else(|| reference.digest().and_then(|d| Digest::parse(d).ok()));
        if let Some(pinned) = pinned
            && pinned != digest
        {
            return Err(format!("manifest digest {digest} does not match {pinned}"));
        }
        let parsed = manifest::parse(None, &bytes).map_err(|e| format!("invalid manifest: {e}"))?;
        Ok(((parsed, bytes), digest))
    }

    /// Downloads one blob into a temporary file, verifies it and commits it into
    /// `repository`; the bytes downloaded.
    async fn fetch_blob(
        &self,
        client: &oci_client::Client,
        reference: &oci_client::Reference,
        blob: &Descriptor,
        repository: &str,
    ) -> Result<u64, String> {
        let digest = blob.digest.to_string();
        let mut stream = client
            .pull_blob_stream(reference, digest.as_str())
            .await
            .map_err(|e| chain(&e))?;
        let tmp = self
            .inner
            .blobs
            .uploads_dir()
            .join(format!(".{}.tmp", uuid::Uuid::new_v4()));
        let mut sink = Sink::start(tmp.clone(), 0, blob.digest.algorithm().hasher());
        let max = self.inner.config.max_upload_size;
        let mut received = 0u64;
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    received += chunk.len() as u64;
                    if received > max {
                        failure = Some(format!("blob {digest} is larger than {max} bytes"));
                        break;
                    }
                    if !sink.send(chunk).await {
                        break;
                    }
                }
                Err(e) => {
                    failure = Some(format!("download of {digest} failed: {}", chain(&e)));
                    break;
                }
            }
        }
        let written = sink.finish().await;
        let result = match (failure, written) {
            (Some(f), _) => Err(f),
            (None, Err(e)) => Err(format!("cannot write {digest}: {e}")),
            (None, Ok((hasher, _))) if hasher.clone().finish() != blob.digest => Err(format!(
                "blob {digest} does not match its digest (got {})",
                hasher.finish()
            )),
            (None, Ok(_)) => self
                .commit_temp(repository, tmp.clone(), &blob.digest)
                .await
                .map(|()| received)
                .map_err(|e| e.to_string()),
        };
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// The digest and media type of an image manifest already imported with all its
    /// blobs, if it was. (An index is stored only as its platform's manifest, so a
    /// pinned index digest is resolved upstream each time.)
    async fn already_imported(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<Option<(String, String)>, RegistryError> {
        let reference = crate::content::Reference::Digest(digest.clone());
        let Some(record) = self.find_manifest(repository, &reference).await? else {
            return Ok(None);
        };
        for r in &record.references {
            let Ok(d) = Digest::parse(r) else {
                return Ok(None);
            };
            if self.linked_blob(repository, &d).await?.is_none() {
                return Ok(None);
            }
        }
        Ok(Some((record.digest, record.media_type)))
    }

    /// Links a blob that is already in the store into `repository`; whether it was
    /// there to link.
    async fn link_present(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let _guard = self.inner.gc_lock.read().await;
        let (repo, d) = (repository.to_string(), digest.clone());
        self.blocking(move |inner| {
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
            let mut tx = inner.store.begin()?;
            crate::meta::link(&mut *tx, &repo, &d.to_string(), size, crate::now_ms())?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }
}

/// The manifest of `index` for `platform` (variant compared only if the platform
/// names one).
fn pick_platform<'a>(index: &'a Manifest, platform: &manifest::Platform) -> Option<&'a Descriptor> {
    index.manifests.iter().find(|m| {
        m.platform.as_ref().is_some_and(|p| {
            p.os == platform.os
                && p.architecture == platform.architecture
                && (platform.variant.is_none() || p.variant == platform.variant)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_repository_names() {
        let name = |s: &str| internal_repository(&ImageReference::parse(s).unwrap()).unwrap();
        assert_eq!(name("nginx"), "docker.io/library/nginx");
        assert_eq!(name("ghcr.io/o/app:v1"), "ghcr.io/o/app");
        assert_eq!(name("127.0.0.1:5000/team/app"), "127.0.0.1-5000/team/app");
        assert_eq!(name("[::1]:5000/app"), "1-5000/app");
        assert_eq!(name("Registry.Example.com/app"), "registry.example.com/app");
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("ghcr.io"));
    }
}
