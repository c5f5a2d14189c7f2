//! Blob upload sessions: `<root>/uploads/<uuid>/` holds `info.json` (the repository and
//! digest algorithm) and `data` (the bytes received so far). The running hash lives in
//! memory; after a restart it is recomputed from `data`, so an upload survives a crash
//! and resumes where its data ends. Bytes stream from the request to a blocking writer
//! thread that hashes and writes them, so the async runtime never waits on the disk.

use crate::digest::{Algorithm, Digest, Hasher};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use uuid::Uuid;

/// How many received chunks may wait for the writer thread.
const QUEUE: usize = 32;
/// Read size when rehashing an upload after a restart.
const READ_CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadInfo {
    repository: String,
    algorithm: String,
    created_ms: i64,
}

/// One upload in progress. Locked (async) by whichever request is using it.
#[derive(Debug)]
pub(crate) struct Session {
    pub id: Uuid,
    pub repository: String,
    algorithm: Algorithm,
    /// `None` until recomputed from `data` (after a restart).
    hasher: Option<Hasher>,
    /// Bytes received so far: the length of `data`.
    pub offset: u64,
    /// Removed (committed, cancelled or expired): requests that waited for the lock
    /// must treat it as unknown.
    pub gone: bool,
}

type Slot = Arc<tokio::sync::Mutex<Session>>;

/// Every upload session of one registry.
#[derive(Debug)]
pub(crate) struct Uploads {
    dir: PathBuf,
    /// Sessions in use since start. Always locked on a blocking thread, never across
    /// an await.
    open: Arc<Mutex<HashMap<Uuid, Slot>>>,
}

/// Why bytes could not be appended to an upload.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppendError {
    /// The client's body failed (disconnect, malformed chunked encoding).
    #[error("the request body could not be read: {0}")]
    Body(String),
    /// The upload would exceed the configured limit.
    #[error("the upload exceeds the limit of {0} bytes")]
    TooLarge(u64),
    /// The body's length differs from what its Content-Range announced.
    #[error("Content-Range announced {expected} bytes but the body had {got}")]
    Length { expected: u64, got: u64 },
    /// The disk failed.
    #[error("cannot write the upload: {0}")]
    Io(#[from] io::Error),
}

fn join_error(e: tokio::task::JoinError) -> io::Error {
    io::Error::other(format!("blocking task failed: {e}"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Uploads {
    pub fn new(dir: PathBuf) -> Uploads {
        Uploads {
            dir,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn session_dir(dir: &Path, id: Uuid) -> PathBuf {
        dir.join(id.to_string())
    }

    /// The file holding an upload's bytes.
    pub fn data_path(&self, id: Uuid) -> PathBuf {
        Self::session_dir(&self.dir, id).join("data")
    }

    /// Starts an upload into `repository`, hashing with `algorithm`.
    pub async fn create(&self, repository: &str, algorithm: Algorithm) -> io::Result<Uuid> {
        let id = Uuid::new_v4();
        let dir = Self::session_dir(&self.dir, id);
        let info = UploadInfo {
            repository: repository.to_string(),
            algorithm: algorithm.name().to_string(),
            created_ms: now_ms(),
        };
        let open = self.open.clone();
        let session = Session {
            id,
            repository: repository.to_string(),
            algorithm,
            hasher: Some(algorithm.hasher()),
            offset: 0,
            gone: false,
        };
        tokio::task::spawn_blocking(move || {
            fs::create_dir(&dir)?;
            File::create(dir.join("data"))?;
            let body = serde_json::to_vec(&info).map_err(io::Error::other)?;
            runway_store::fs::write_atomic(&dir.join("info.json"), &body, 0o600)
                .map_err(io::Error::other)?;
            open.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, Arc::new(tokio::sync::Mutex::new(session)));
            Ok(id)
        })
        .await
        .map_err(join_error)?
    }

    /// The session `id`, loaded from disk if this process has not seen it (after a
    /// restart); `None` if there is no such upload.
    pub async fn session(&self, id: Uuid) -> io::Result<Option<Slot>> {
        let open = self.open.clone();
        let dir = Self::session_dir(&self.dir, id);
        tokio::task::spawn_blocking(move || {
            let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(slot) = open.get(&id) {
                return Ok(Some(slot.clone()));
            }
            let info: UploadInfo = match fs::read(dir.join("info.json")) {
                Ok(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(info) => info,
                    Err(_) => return Ok(None),
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let Some(algorithm) = Algorithm::parse(&info.algorithm) else {
                return Ok(None);
            };
            let offset = match fs::metadata(dir.join("data")) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let slot = Arc::new(tokio::sync::Mutex::new(Session {
                id,
                repository: info.repository,
                algorithm,
                hasher: None,
                offset,
                gone: false,
            }));
            open.insert(id, slot.clone());
            Ok(Some(slot))
        })
        .await
        .map_err(join_error)?
    }

    /// Removes a session and its files (after commit or cancel).
    pub async fn remove(&self, session: &mut Session) -> io::Result<()> {
        session.gone = true;
        let open = self.open.clone();
        let dir = Self::session_dir(&self.dir, session.id);
        let id = session.id;
        tokio::task::spawn_blocking(move || {
            open.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            match fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        })
        .await
        .map_err(join_error)?
    }

    /// Recomputes the running hash from the data file if this process does not have it.
    async fn ensure_hasher(&self, session: &mut Session) -> io::Result<()> {
        if session.hasher.is_some() {
            return Ok(());
        }
        let (hasher, len) = rehash(self.data_path(session.id), session.algorithm).await?;
        session.hasher = Some(hasher);
        session.offset = len;
        Ok(())
    }

    /// Streams `body` onto the end of the upload; `exact` is the length the body must
    /// have, if one was announced. On any failure the upload is left as it was before
    /// this call (data truncated back, hash unchanged). `on_bytes` sees the size of
    /// every chunk received.
    pub async fn append(
        &self,
        session: &mut Session,
        body: axum::body::Body,
        exact: Option<u64>,
        limit: u64,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, AppendError> {
        use http_body_util::BodyExt;
        self.ensure_hasher(session).await?;
        let start = session.offset;
        let hasher = session
            .hasher
            .clone()
            .unwrap_or_else(|| session.algorithm.hasher());
        let mut sink = Sink::start(self.data_path(session.id), start, hasher);
        let mut body = body;
        let mut received = 0u64;
        let mut failure = None;
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    failure = Some(AppendError::Body(e.to_string()));
                    break;
                }
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            received += data.len() as u64;
            on_bytes(data.len() as u64);
            if start.saturating_add(received) > limit {
                failure = Some(AppendError::TooLarge(limit));
                break;
            }
            if let Some(expected) = exact
                && received > expected
            {
                failure = Some(AppendError::Length {
                    expected,
                    got: received,
                });
                break;
            }
            if !sink.send(data).await {
                break;
            }
        }
        if failure.is_none()
            && let Some(expected) = exact
            && received != expected
        {
            failure = Some(AppendError::Length {
                expected,
                got: received,
            });
        }
        let written = sink.finish().await;
        let outcome = match (failure, written) {
            (Some(f), _) => Err(f),
            (None, Err(e)) => Err(AppendError::Io(e)),
            (None, Ok((hasher, n))) => {
                session.hasher = Some(hasher);
                session.offset = start + n;
                Ok(n)
            }
        };
        if outcome.is_err() {
            let path = self.data_path(session.id);
            let _ = tokio::task::spawn_blocking(move || {
                OpenOptions::new().write(true).open(path)?.set_len(start)
            })
            .await;
        }
        outcome
    }

    /// Whether the bytes received hash to `digest` (rehashing with `digest`'s algorithm
    /// if the upload was started with another).
    pub async fn verify(&self, session: &mut Session, digest: &Digest) -> io::Result<bool> {
        self.ensure_hasher(session).await?;
        let computed = match &session.hasher {
            Some(h) if h.algorithm() == digest.algorithm() => h.clone().finish(),
            _ => rehash(self.data_path(session.id), digest.algorithm())
                .await?
                .0
                .finish(),
        };
        Ok(&computed == digest)
    }

    /// Removes uploads with no activity for `expiry` (and stray temporary files), except
    /// any a request holds right now; how many were removed. Runs on a blocking thread.
    pub fn sweep(&self, expiry: Duration) -> io::Result<u64> {
        let cutoff = SystemTime::now()
            .checked_sub(expiry)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            // An upload that finished meanwhile took its directory with it: nothing to do.
            let meta = match entry.metadata() {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                other => other?,
            };
            if meta.is_file() {
                if name.ends_with(".tmp") && meta.modified()? < cutoff {
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            let Ok(id) = Uuid::parse_str(&name) else {
                continue;
            };
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let guard = match open.get(&id) {
                Some(slot) => match slot.clone().try_lock_owned() {
                    Ok(guard) => Some(guard),
                    Err(_) => continue,
                },
                None => None,
            };
            let active = match last_activity(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                other => other?,
            };
            if active >= cutoff {
                continue;
            }
            if let Some(mut guard) = guard {
                guard.gone = true;
            }
            open.remove(&id);
            match fs::remove_dir_all(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => removed += 1,
            }
        }
        Ok(removed)
    }
}

fn last_activity(dir: &Path) -> io::Result<SystemTime> {
    let mut latest = fs::metadata(dir)?.modified()?;
    for name in ["data", "info.json"] {
        if let Ok(m) = fs::metadata(dir.join(name)) {
            latest = latest.max(m.modified()?);
        }
    }
    Ok(latest)
}

async fn rehash(path: PathBuf, algorithm: Algorithm) -> io::Result<(Hasher, u64)> {
    tokio::task::spawn_blocking(move || {
        let mut file = File::open(path)?;
        let mut hasher = algorithm.hasher();
        let mut buf = vec![0u8; READ_CHUNK];
        let mut len = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok((hasher, len));
            }
            hasher.update(&buf[..n]);
            len += n as u64;
        }
    })
    .await
    .map_err(join_error)?
}

/// A blocking writer thread fed over a bounded channel: it writes each chunk at the end
/// of a file, from `offset` on, and hashes it.
pub(crate) struct Sink {
    tx: mpsc::Sender<Bytes>,
    task: tokio::task::JoinHandle<io::Result<(Hasher, u64)>>,
}

impl Sink {
    /// Starts writing `path` (created if missing, cut to `offset` first).
    pub fn start(path: PathBuf, offset: u64, hasher: Hasher) -> Sink {
        let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
        let task = tokio::task::spawn_blocking(move || {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?;
            file.set_len(offset)?;
            file.seek(SeekFrom::Start(offset))?;
            let mut hasher = hasher;
            let mut written = 0u64;
            while let Some(chunk) = rx.blocking_recv() {
                file.write_all(&chunk)?;
                hasher.update(&chunk);
                written += chunk.len() as u64;
            }
            Ok((hasher, written))
        });
        Sink { tx, task }
    }

    /// Queues a chunk; false if the writer has failed (see [`Sink::finish`]).
    pub async fn send(&mut self, chunk: Bytes) -> bool {
        self.tx.send(chunk).await.is_ok()
    }

    /// Waits for every queued chunk to be written; the hash and the bytes written.
    pub async fn finish(self) -> io::Result<(Hasher, u64)> {
        drop(self.tx);
        self.task.await.map_err(join_error)?
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failed_appends_change_nothing_and_state_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let uploads = Uploads::new(dir.path().to_path_buf());
        let id = uploads.create("app", Algorithm::Sha256).await.unwrap();
        let slot = uploads.session(id).await.unwrap().unwrap();
        let mut s = slot.lock().await;
        let n = uploads
            .append(&mut s, axum::body::Body::from("hello "), None, 100, &|_| {})
            .await
            .unwrap();
        assert_eq!((n, s.offset), (6, 6));
        let err = uploads
            .append(
                &mut s,
                axum::body::Body::from("x".repeat(200)),
                None,
                100,
                &|_| {},
            )
            .await
            .unwrap_err();
        assert!(matches!(err, AppendError::TooLarge(100)));
        assert_eq!(s.offset, 6);
        assert_eq!(fs::metadata(uploads.data_path(id)).unwrap().len(), 6);
        drop(s);

        // A new process sees the upload from its files and recomputes the hash.
        let again = Uploads::new(dir.path().to_path_buf());
        let slot = again.session(id).await.unwrap().unwrap();
        let mut s = slot.lock().await;
        assert_eq!((s.repository.as_str(), s.offset), ("app", 6));
        again
            .append(&mut s, axum::body::Body::from("wor"), Some(5), 100, &|_| {})
            .await
            .unwrap_err();
        assert_eq!(s.offset, 6, "a short chunk is undone");
        again
            .append(
                &mut s,
                axum::body::Body::from("world"),
                Some(5),
                100,
                &|_| {},
            )
            .await
            .unwrap();
        let digest = Digest::of(Algorithm::Sha256, b"hello world");
        assert!(again.verify(&mut s, &digest).await.unwrap());
        let sha512 = Digest::of(Algorithm::Sha512, b"hello world");
        assert!(again.verify(&mut s, &sha512).await.unwrap());
        assert!(
            !again
                .verify(&mut s, &Digest::of(Algorithm::Sha256, b"x"))
                .await
                .unwrap()
        );
        again.remove(&mut s).await.unwrap();
        drop(s);
        assert!(again.session(id).await.unwrap().is_none());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn sweep_removes_only_idle_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let uploads = Uploads::new(dir.path().to_path_buf());
        let idle = uploads.create("app", Algorithm::Sha256).await.unwrap();
        let busy = uploads.create("app", Algorithm::Sha256).await.unwrap();
        let busy_slot = uploads.session(busy).await.unwrap().unwrap();
        let _held = busy_slot.lock().await;
        let fresh = uploads.create("app", Algorithm::Sha256).await.unwrap();
        let old = SystemTime::now() - Duration::from_secs(7200);
        for id in [idle, busy] {
            let d = dir.path().join(id.to_string());
            for f in ["data", "info.json"] {
                File::options()
                    .write(true)
                    .open(d.join(f))
                    .unwrap()
                    .set_modified(old)
                    .unwrap();
            }
            File::open(&d).unwrap().set_modified(old).unwrap();
        }
        assert_eq!(uploads.sweep(Duration::from_secs(3600)).unwrap(), 1);
        assert!(uploads.session(idle).await.unwrap().is_none());
        assert!(dir.path().join(busy.to_string()).exists());
        assert!(dir.path().join(fresh.to_string()).exists());
    }
}
