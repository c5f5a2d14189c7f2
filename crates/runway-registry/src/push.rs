//! The library API for content made on this machine (source builds, root filesystems
//! imported as base images): blobs and manifests stored through the same storage and
//! metadata code as the HTTP handlers, verified the same way, without an HTTP round trip.
//! Nothing here fires push hooks: whoever pushes decides what to deploy.

use crate::content::{PushError, Reference};
use crate::digest::{Algorithm, Digest};
use crate::{Registry, RegistryError, names};
use bytes::Bytes;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

fn repository_name(repository: &str) -> Result<(), RegistryError> {
    if names::is_repository(repository) {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "invalid repository name {repository:?}"
        )))
    }
}

fn parse_digest(digest: &str) -> Result<Digest, RegistryError> {
    Digest::parse(digest).map_err(|e| RegistryError::Invalid(e.to_string()))
}

impl Registry {
    /// Stores the file at `path` as a blob linked into `repository` and returns its
    /// digest (sha256, or `expected`'s algorithm). With `expected`, content that hashes
    /// otherwise is refused and nothing is stored. The file itself is left in place.
    pub async fn push_blob_file(
        &self,
        repository: &str,
        path: &Path,
        expected: Option<&str>,
    ) -> Result<String, RegistryError> {
        repository_name(repository)?;
        let expected = expected.map(parse_digest).transpose()?;
        let algorithm = expected
            .as_ref()
            .map_or(Algorithm::Sha256, Digest::algorithm);
        let tmp = self
            .inner
            .blobs
            .uploads_dir()
            .join(format!(".{}.tmp", uuid::Uuid::new_v4()));
        let (src, dest) = (path.to_path_buf(), tmp.clone());
        let copied = self
            .blocking(move |_| {
                copy_hashing(&src, &dest, algorithm).map_err(RegistryError::io(format!(
                    "cannot store {} as a blob",
                    src.display()
                )))
            })
            .await;
        let digest = match copied {
            Ok(d) => d,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        if let Some(expected) = expected
            && expected != digest
        {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(RegistryError::Invalid(format!(
                "{} hashes to {digest}, not {expected}",
                path.display()
            )));
        }
        if let Err(e) = self.commit_temp(repository, tmp.clone(), &digest).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        Ok(digest.to_string())
    }

    /// Stores `bytes` as a blob linked into `repository`; its sha256 digest.
    pub async fn push_blob(&self, repository: &str, bytes: Bytes) -> Result<String, RegistryError> {
        repository_name(repository)?;
        let digest = Digest::of(Algorithm::Sha256, &bytes);
        let _guard = self.inner.gc_lock.read().await;
        let (repo, d) = (repository.to_string(), digest.clone());
        self.blocking(move |inner| {
            inner
                .blobs
                .write(&d, &bytes)
                .map_err(RegistryError::io(format!("cannot write blob {d}")))?;
            let mut tx = inner.store.begin()?;
            crate::meta::link(
                &mut *tx,
                &repo,
                &d.to_string(),
                bytes.len() as u64,
                crate::now_ms(),
            )?;
            tx.commit()?;
            Ok(())
        })
        .await?;
        Ok(digest.to_string())
    }

    /// Links blob `digest`, stored in repository `from`, into repository `to` (a
    /// cross-repository mount); false if `from` does not have it.
    pub async fn mount_blob(
        &self,
        from: &str,
        to: &str,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        repository_name(to)?;
        let digest = parse_digest(digest)?;
        self.mount(from, to, &digest).await
    }

    /// Validates and stores a manifest in `repository` under `tag`, after checking that
    /// every blob it references is linked into `repository`; its sha256 digest. Push
    /// hooks are not called.
    pub async fn push_manifest(
        &self,
        repository: &str,
        tag: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<String, RegistryError> {
        repository_name(repository)?;
        if !names::is_tag(tag) {
            return Err(RegistryError::Invalid(format!("invalid tag {tag:?}")));
        }
        if bytes.len() > self.inner.config.max_manifest_size {
            return Err(RegistryError::Manifest(format!(
                "manifests are limited to {} bytes",
                self.inner.config.max_manifest_size
            )));
        }
        let stored = self
            .put_manifest(
                repository,
                vec![tag.to_string()],
                None,
                Some(media_type),
                bytes,
                false,
            )
            .await
            .map_err(|e| match e {
                PushError::Invalid(e) => RegistryError::Manifest(e.to_string()),
                PushError::DigestMismatch { expected, computed } => RegistryError::Manifest(
                    format!("the manifest's digest is {computed}, not {expected}"),
                ),
                PushError::Missing(missing) => RegistryError::Manifest(format!(
                    "it references content not in {repository}: {}",
                    missing.join(", ")
                )),
                PushError::Failed(e) => e,
            })?;
        Ok(stored.digest.to_string())
    }

    /// Removes manifest `digest` and its tags from `repository` (its blobs go at the next
    /// gc unless another image needs them); whether it existed.
    pub async fn delete_image(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<bool, RegistryError> {
        repository_name(repository)?;
        let digest = parse_digest(digest)?;
        self.delete_manifest(repository, &Reference::Digest(digest))
            .await
    }

    /// Removes `tag` from `repository` (the manifest stays until gc); whether it existed.
    pub async fn delete_tag(&self, repository: &str, tag: &str) -> Result<bool, RegistryError> {
        if !names::is_tag(tag) {
            return Err(RegistryError::Invalid(format!("invalid tag {tag:?}")));
        }
        self.delete_manifest(repository, &Reference::Tag(tag.to_string()))
            .await
    }
}

/// Copies `src` to `dest` (created), synced, hashing the content on the way; a hard
/// link would share the caller's inode, which the caller may later change.
fn copy_hashing(src: &Path, dest: &Path, algorithm: Algorithm) -> io::Result<Digest> {
    let mut input = File::open(src)?;
    if !input.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut output = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)?;
    let mut hasher = algorithm.hasher();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n])?;
    }
    output.sync_all()?;
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use crate::{Registry, RegistryConfig};
    use bytes::Bytes;
    use std::sync::Arc;

    #[tokio::test]
    async fn blobs_and_manifests_pushed_from_the_library_are_served() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(runway_store::SqliteStore::open(&dir.path().join("state.db")).unwrap());
        let master = Arc::new(
            runway_secrets::MasterKey::load_or_create(&dir.path().join("master.key")).unwrap(),
        );
        let registry = &Registry::open(
            RegistryConfig::new(dir.path().join("registry")),
            store,
            master,
            &mut runway_telemetry::Registry::default(),
        )
        .unwrap();
        let config = Bytes::from_static(
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        );
        let config_digest = registry.push_blob("app", config.clone()).await.unwrap();
        let layer = dir.path().join("layer");
        std::fs::write(&layer, b"layer bytes").unwrap();
        let wrong = format!("sha256:{}", "0".repeat(64));
        assert!(
            registry
                .push_blob_file("app", &layer, Some(&wrong))
                .await
                .is_err(),
            "content that does not match is refused"
        );
        let layer_digest = registry.push_blob_file("app", &layer, None).await.unwrap();
        assert!(layer.exists(), "the caller's file stays");
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::manifest::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": 11}],
        });
        let bytes = Bytes::from(serde_json::to_vec(&manifest).unwrap());
        // Not linked into `other`: refused until mounted.
        assert!(
            registry
                .push_manifest("other", "v1", crate::manifest::OCI_MANIFEST, bytes.clone())
                .await
                .is_err()
        );
        assert!(
            registry
                .mount_blob("app", "other", &config_digest)
                .await
                .unwrap()
        );
        assert!(
            registry
                .mount_blob("app", "other", &layer_digest)
                .await
                .unwrap()
        );
        assert!(
            !registry
                .mount_blob("nothing", "other", &layer_digest)
                .await
                .unwrap()
        );
        let digest = registry
            .push_manifest("other", "v1", crate::manifest::OCI_MANIFEST, bytes.clone())
            .await
            .unwrap();
        let resolved = registry.resolve_manifest("other", "v1").await.unwrap();
        assert_eq!(resolved.digest, digest);
        assert_eq!(resolved.bytes, bytes);
        assert_eq!(
            std::fs::read(registry.blob_path(&layer_digest).unwrap()).unwrap(),
            b"layer bytes"
        );
        assert!(registry.delete_tag("other", "v1").await.unwrap());
        assert!(!registry.delete_tag("other", "v1").await.unwrap());
        assert!(registry.resolve_manifest("other", "v1").await.is_err());
    }
}
