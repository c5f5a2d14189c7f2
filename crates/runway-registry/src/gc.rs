//! Garbage collection: deletes blobs that no stored manifest references and that are
//! older than the grace period, and uploads abandoned for longer than their expiry.
//! Mark and sweep hold the gc lock exclusively, so no push can make a blob referenced
//! between the mark and its deletion; a push after the sweep that names a deleted blob
//! gets MANIFEST_BLOB_UNKNOWN, never a manifest with a hole.

use crate::{Registry, RegistryError, meta};
use serde::Serialize;
use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

/// What a garbage collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Blobs deleted.
    pub blobs_removed: u64,
    /// Bytes those blobs held.
    pub bytes_removed: u64,
    /// Blobs kept because a manifest references them.
    pub blobs_referenced: u64,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub blobs_in_grace: u64,
    /// Abandoned uploads removed.
    pub uploads_removed: u64,
    /// How long the collection took.
    pub duration_ms: u64,
}

impl Registry {
    /// Collects garbage once.
    pub async fn gc(&self) -> Result<GcReport, RegistryError> {
        let started = Instant::now();
        let guard = self.inner.gc_lock.write().await;
        let mut report = self
            .blocking(|inner| {
                let referenced: HashSet<String> = {
                    let tx = inner.store.read()?;
                    meta::all_manifests(&*tx)?
                        .into_iter()
                        .flat_map(|m| std::iter::once(m.digest).chain(m.references))
                        .collect()
                };
                let cutoff = SystemTime::now()
                    .checked_sub(inner.config.gc_grace)
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                let mut report = GcReport::default();
                let mut doomed = Vec::new();
                for blob in inner
                    .blobs
                    .list()
                    .map_err(RegistryError::io("cannot list blobs"))?
                {
                    if referenced.contains(&blob.digest.to_string()) {
                        report.blobs_referenced += 1;
                    } else if blob.modified > cutoff {
                        report.blobs_in_grace += 1;
                    } else {
                        doomed.push(blob);
                    }
                }
                // Links go first: a crash after this leaves orphan files (removed next
                // time), never a link to a missing file.
                let mut tx = inner.store.begin()?;
                for blob in &doomed {
                    meta::unlink_everywhere(&mut *tx, &blob.digest.to_string())?;
                }
                tx.commit()?;
                for blob in &doomed {
                    if let Some(size) =
                        inner
                            .blobs
                            .remove(&blob.digest)
                            .map_err(RegistryError::io(format!(
                                "cannot remove blob {}",
                                blob.digest
                            )))?
                    {
                        report.blobs_removed += 1;
                        report.bytes_removed += size;
                    }
                }
                Ok(report)
            })
            .await?;
        drop(guard);
        let expiry = self.inner.config.upload_expiry;
        report.uploads_removed = self
            .blocking(move |inner| {
                inner
                    .uploads
                    .sweep(expiry)
                    .map_err(RegistryError::io("cannot sweep uploads"))
            })
            .await?;
        report.duration_ms = started.elapsed().as_millis() as u64;
        let m = &self.inner.metrics;
        m.gc_runs.inc();
        m.gc_blobs.inc_by(report.blobs_removed);
        m.gc_bytes.inc_by(report.bytes_removed);
        m.gc_uploads.inc_by(report.uploads_removed);
        tracing::info!(
            blobs_removed = report.blobs_removed,
            bytes_removed = report.bytes_removed,
            blobs_referenced = report.blobs_referenced,
            blobs_in_grace = report.blobs_in_grace,
            uploads_removed = report.uploads_removed,
            duration_ms = report.duration_ms,
            "registry gc"
        );
        Ok(report)
    }

    /// Runs [`Registry::gc`] every `interval` until `shutdown` completes. Failures are
    /// logged and retried at the next tick.
    pub fn spawn_gc(
        &self,
        interval: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let registry = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick fires at once; gc at start-up is not needed.
            ticks.tick().await;
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = ticks.tick() => {
                        if let Err(e) = registry.gc().await {
                            tracing::error!(error = %e, "registry gc failed");
                        }
                    }
                }
            }
        })
    }
}
