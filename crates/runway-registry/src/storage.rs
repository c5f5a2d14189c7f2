//! The content-addressed blob store on disk:
//! `<root>/blobs/<algorithm>/<first two hex>/<hex>`. A blob becomes visible only by a
//! rename of a complete, synced file from `<root>/uploads/`, so a crash never exposes a
//! partial blob. Everything here blocks: callers run it on blocking threads.

use crate::digest::{Algorithm, Digest};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The blob store under one root directory.
#[derive(Debug, Clone)]
pub(crate) struct BlobStore {
    root: PathBuf,
}

/// A blob file found by a walk of the store.
#[derive(Debug)]
pub(crate) struct StoredBlob {
    pub digest: Digest,
    pub modified: SystemTime,
}

impl BlobStore {
    /// Creates the directories if needed.
    pub fn open(root: &Path) -> io::Result<BlobStore> {
        let store = BlobStore {
            root: root.to_path_buf(),
        };
        for dir in [store.uploads_dir(), store.root.join("blobs")] {
            fs::create_dir_all(&dir)?;
        }
        for algorithm in Algorithm::ALL {
            fs::create_dir_all(store.root.join("blobs").join(algorithm.name()))?;
        }
        sync_dir(&store.root)?;
        Ok(store)
    }

    pub fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    /// Where the blob lives once committed.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(&hex[..2])
            .join(hex)
    }

    /// The size of a committed blob, or `None`.
    pub fn size(&self, digest: &Digest) -> io::Result<Option<u64>> {
        match fs::metadata(self.path(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Marks a blob as freshly used, so that gc's grace period starts again; whether
    /// it exists.
    pub fn touch(&self, digest: &Digest) -> io::Result<bool> {
        match OpenOptions::new().write(true).open(self.path(digest)) {
            Ok(f) => {
                f.set_modified(SystemTime::now())?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Moves the complete file `src` (in the uploads directory, content already
    /// verified to hash to `digest`) into the store: synced, then renamed, then the
    /// directory synced. If the blob exists already, `src` is removed and the existing
    /// blob touched instead. Callers hold gc's lock shared.
    pub fn commit_file(&self, src: &Path, digest: &Digest) -> io::Result<()> {
        if self.touch(digest)? {
            fs::remove_file(src)?;
            return Ok(());
        }
        let file = OpenOptions::new().write(true).open(src)?;
        file.sync_all()?;
        file.set_modified(SystemTime::now())?;
        drop(file);
        let dest = self.path(digest);
        let parent = dest.parent().unwrap_or(&self.root);
        if !parent.exists() {
            fs::create_dir_all(parent)?;
            if let Some(algorithm_dir) = parent.parent() {
                sync_dir(algorithm_dir)?;
            }
        }
        fs::rename(src, &dest)?;
        sync_dir(parent)
    }

    /// Writes `bytes` (already known to hash to `digest`) as a blob.
    pub fn write(&self, digest: &Digest, bytes: &[u8]) -> io::Result<()> {
        if self.touch(digest)? {
            return Ok(());
        }
        let tmp = self
            .uploads_dir()
            .join(format!(".{}.tmp", uuid::Uuid::new_v4()));
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            drop(f);
            self.commit_file(&tmp, digest)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Reads a whole (small) blob, such as a manifest.
    pub fn read(&self, digest: &Digest) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.path(digest)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes a blob; its size, or `None` if it was not there.
    pub fn remove(&self, digest: &Digest) -> io::Result<Option<u64>> {
        let path = self.path(digest);
        let size = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match fs::remove_file(&path) {
            Ok(()) => Ok(Some(size)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every committed blob. Files whose names are not digests (nothing runway writes)
    /// are skipped, never touched.
    pub fn list(&self) -> io::Result<Vec<StoredBlob>> {
        let mut out = Vec::new();
        for algorithm in Algorithm::ALL {
            let dir = self.root.join("blobs").join(algorithm.name());
            for prefix in read_dir_or_empty(&dir)? {
                let prefix = prefix?;
                if !prefix.file_type()?.is_dir() {
                    continue;
                }
                for entry in read_dir_or_empty(&prefix.path())? {
                    let entry = entry?;
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else { continue };
                    let Ok(digest) = Digest::parse(&format!("{}:{name}", algorithm.name())) else {
                        continue;
                    };
                    let meta = entry.metadata()?;
                    if !meta.is_file() {
                        continue;
                    }
                    out.push(StoredBlob {
                        digest,
                        modified: meta.modified()?,
                    });
                }
            }
        }
        Ok(out)
    }
}

fn read_dir_or_empty(dir: &Path) -> io::Result<Box<dyn Iterator<Item = io::Result<fs::DirEntry>>>> {
    match fs::read_dir(dir) {
        Ok(rd) => Ok(Box::new(rd)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Box::new(std::iter::empty())),
        Err(e) => Err(e),
    }
}

/// Makes a directory's entries (a rename, a new file) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_atomic_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let digest = Digest::of(Algorithm::Sha256, b"hello");
        assert_eq!(store.size(&digest).unwrap(), None);
        store.write(&digest, b"hello").unwrap();
        assert_eq!(store.read(&digest).unwrap().unwrap(), b"hello");
        let src = store.uploads_dir().join("again");
        fs::write(&src, b"hello").unwrap();
        store.commit_file(&src, &digest).unwrap();
        assert!(!src.exists(), "a duplicate upload is dropped");
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].digest, digest);
        assert_eq!(
            fs::read_dir(store.uploads_dir()).unwrap().count(),
            0,
            "no temporary file is left"
        );
        assert_eq!(store.remove(&digest).unwrap(), Some(5));
        assert_eq!(store.remove(&digest).unwrap(), None);
        assert!(!store.touch(&digest).unwrap());
    }
}
