//! Layers unpacked from untrusted tarballs into a content-addressed cache
//! (`<cache>/sha256/<hex>/`), each once, into a temporary directory that is renamed into
//! place only when complete, so a crash never leaves a half-unpacked layer that looks
//! done.
//!
//! Every entry is created relative to a directory descriptor resolved with `openat2`
//! beneath the layer root, so nothing lands outside it: `..` components are refused,
//! leading `/` is dropped (tar's own rule), an entry whose parent resolves outside
//! through a symlink is refused, hard links must point at a file already unpacked in the
//! layer, device nodes are skipped, and setuid/setgid bits are cleared unless allowed.
//! OCI whiteouts become overlayfs whiteouts (`.wh.name` a 0/0 character device, an
//! opaque directory the `trusted.overlay.opaque` attribute), so the layers stack as
//! overlayfs lower directories.
//!
//! The other direction, an overlay upper directory written as a layer, is
//! [`from_upper`].

use crate::image::{ImageError, ImageStore, Layer, digest_hex};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The attribute that makes a directory opaque to the layers below it.
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// What can go wrong unpacking a layer. Nothing of a failed layer stays in the cache.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry would land outside the layer; the layer is refused.
    #[error("layer entry {path:?} refused: {reason}")]
    Escape { path: String, reason: String },
    /// An entry could not be created.
    #[error("layer entry {path:?}: {source}")]
    Entry { path: String, source: io::Error },
    /// The tar stream is malformed or truncated.
    #[error("malformed layer tar: {0}")]
    Tar(io::Error),
    /// The layer unpacks to more than the configured limit.
    #[error("layer unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The content does not match the digest the manifest gives.
    #[error("layer {digest}: {what} digest is {actual}, expected {expected}")]
    Digest {
        digest: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    /// The layer is compressed with zstd, which this runtime does not unpack.
    #[error("layer {0} is zstd-compressed, which is not supported")]
    Zstd(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

type Result<T, E = UnpackError> = std::result::Result<T, E>;

mod commit;

pub use commit::{CommitError, CommittedLayer, LAYER_MEDIA_TYPE, from_upper};

/// How layers are unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Keep setuid and setgid bits on files (off: they are cleared).
    pub allow_setuid: bool,
    /// The most bytes a layer may unpack to.
    pub max_bytes: u64,
    /// Own files by the host ids of this user namespace map (for instances run in one)
    /// instead of the ids the layer names.
    pub id_map: Option<crate::spec::IdMap>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            allow_setuid: false,
            max_bytes: 32 * 1024 * 1024 * 1024,
            id_map: None,
        }
    }
}

/// What unpacking a layer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Device nodes skipped.
    pub devices_skipped: u64,
    /// Files whose setuid or setgid bit was cleared.
    pub setuid_cleared: u64,
}

/// Counts and hashes what is read through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

impl<R> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

/// Fails reads once more than `limit` bytes went through: a small compressed layer must
/// not expand without bound.
struct Limited<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("more than {} bytes", self.limit),
            )
        })?;
        Ok(n)
    }
}

/// Unpacks a layer blob (gzip-compressed or plain tar, recognised by its first bytes)
/// into the empty directory `dest`, checking the blob against `digest` and the
/// uncompressed tar against `diff_id` when given.
pub fn unpack_blob(
    blob: impl Read,
    dest: &Path,
    digest: &str,
    diff_id: Option<&str>,
    opts: &UnpackOptions,
) -> Result<UnpackStats> {
    let mut raw = BufReader::new(Hashing::new(blob));
    let head = raw.fill_buf().map_err(UnpackError::Tar)?;
    let gzip = head.starts_with(&[0x1f, 0x8b]);
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(UnpackError::Zstd(digest.to_string()));
    }
    let tar: Box<dyn Read + '_> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(&mut raw))
    } else {
        Box::new(&mut raw)
    };
    let mut tar = Hashing::new(Limited {
        inner: tar,
        left: opts.max_bytes,
        limit: opts.max_bytes,
    });
    let stats = unpack(&mut tar, dest, opts)?;
    // Whatever follows the end-of-archive blocks still counts towards the digests.
    io::copy(&mut tar, &mut io::sink()).map_err(UnpackError::Tar)?;
    let diff = tar.digest();
    drop(tar);
    io::copy(&mut raw, &mut io::sink()).map_err(UnpackError::Tar)?;
    let actual = raw.get_ref().digest();
    let mismatch = |what, expected: &str, actual: String| UnpackError::Digest {
        digest: digest.to_string(),
        what,
        expected: expected.to_string(),
        actual,
    };
    if actual != digest {
        return Err(mismatch("blob", digest, actual));
    }
    if let Some(expected) = diff_id
        && diff != expected
    {
        return Err(mismatch("uncompressed", expected, diff));
    }
    Ok(stats)
}

fn entry_err(path: &[u8]) -> impl Fn(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Entry {
        path: String::from_utf8_lossy(path).into_owned(),
        source,
    }
}

fn escape(path: &[u8], reason: impl Into<String>) -> UnpackError {
    UnpackError::Escape {
        path: String::from_utf8_lossy(path).into_owned(),
        reason: reason.into(),
    }
}

/// The components of an entry path, or why it is refused. A leading `/` is dropped and
/// `.` components are ignored; `..` anywhere is refused.
fn components(raw: &[u8]) -> Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(escape(raw, "a '..' component points outside the layer")),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

fn join(comps: &[&OsStr]) -> PathBuf {
    if comps.is_empty() {
        PathBuf::from(".")
    } else {
        comps.iter().collect()
    }
}

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC);
/// Symlinks are followed only while they stay beneath the layer root.
const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

fn io_err(e: Errno) -> io::Error {
    io::Error::from(e)
}

/// Opens the directory `comps` beneath `root`, creating missing directories (mode 0755,
/// owned by the given root of the layer's files) when `create` is set.
fn open_dir(
    root: &OwnedFd,
    comps: &[&OsStr],
    raw: &[u8],
    create: Option<(rustix::fs::Uid, rustix::fs::Gid)>,
) -> Result<OwnedFd> {
    let refuse = |e: Errno| match e {
        Errno::XDEV | Errno::LOOP => escape(
            raw,
            "its parent resolves outside the layer through a symlink",
        ),
        Errno::NOTDIR => escape(raw, "its parent is not a directory"),
        e => entry_err(raw)(io_err(e)),
    };
    match rustix::fs::openat2(root, join(comps), DIR_FLAGS, Mode::empty(), BENEATH) {
        Ok(fd) => return Ok(fd),
        Err(Errno::NOENT) if create.is_some() => {}
        Err(Errno::NOENT) => {
            return Err(escape(raw, "it refers to a path not (yet) in the layer"));
        }
        Err(e) => return Err(refuse(e)),
    }
    for i in 1..=comps.len() {
        let sub = join(&comps[..i]);
        match rustix::fs::openat2(root, &sub, DIR_FLAGS, Mode::empty(), BENEATH) {
            Ok(_) => continue,
            Err(Errno::NOENT) => {
                let parent = rustix::fs::openat2(
                    root,
                    join(&comps[..i - 1]),
                    DIR_FLAGS,
                    Mode::empty(),
                    BENEATH,
                )
                .map_err(refuse)?;
                match rustix::fs::mkdirat(&parent, comps[i - 1], Mode::from_raw_mode(0o755)) {
                    Ok(()) => {
                        if let Some((uid, gid)) = create {
                            rustix::fs::chownat(
                                &parent,
                                comps[i - 1],
                                Some(uid),
                                Some(gid),
                                AtFlags::SYMLINK_NOFOLLOW,
                            )
                            .map_err(refuse)?;
                        }
                    }
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(refuse(e)),
                }
            }
            Err(e) => return Err(refuse(e)),
        }
    }
    rustix::fs::openat2(root, join(comps), DIR_FLAGS, Mode::empty(), BENEATH).map_err(refuse)
}

/// Removes `name` in `dir`, recursively, never following a symlink.
fn remove_all_at(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let sub = rustix::fs::openat(dir, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())?;
        let names: Vec<Vec<u8>> = rustix::fs::Dir::read_from(&sub)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_bytes().to_vec())
            .filter(|n| n != b"." && n != b"..")
            .collect();
        for n in names {
            remove_all_at(&sub, OsStr::from_bytes(&n))?;
        }
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(())
}

/// Makes room for a new entry `name` in `dir`: a later entry replaces an earlier one,
/// except that a directory over a directory merges. Whether a directory was kept.
fn make_room(dir: &OwnedFd, name: &OsStr, new_is_dir: bool) -> io::Result<bool> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(io_err(e)),
        Ok(st) => {
            if new_is_dir && FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                return Ok(true);
            }
            remove_all_at(dir, name)?;
            Ok(false)
        }
    }
}

fn times(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn owner(
    uid: u64,
    gid: u64,
    map: Option<crate::spec::IdMap>,
) -> io::Result<(rustix::fs::Uid, rustix::fs::Gid)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "owner id out of range");
    let uid = u32::try_from(uid)
        .ok()
        .filter(|u| *u != u32::MAX)
        .ok_or_else(bad)?;
    let gid = u32::try_from(gid)
        .ok()
        .filter(|g| *g != u32::MAX)
        .ok_or_else(bad)?;
    let (uid, gid) = match map {
        Some(map) => (map.to_host(uid), map.to_host(gid)),
        None => (uid, gid),
    };
    Ok((
        rustix::fs::Uid::from_raw(uid),
        rustix::fs::Gid::from_raw(gid),
    ))
}

/// Unpacks the tar stream `tar` into the empty directory `dest`.
pub fn unpack(tar: impl Read, dest: &Path, opts: &UnpackOptions) -> Result<UnpackStats> {
    let root = rustix::fs::open(dest, DIR_FLAGS, Mode::empty()).map_err(|e| UnpackError::Io {
        context: format!("cannot open {}", dest.display()),
        source: io_err(e),
    })?;
    let mut archive = tar::Archive::new(tar);
    let mut stats = UnpackStats::default();
    let mut dirs: Vec<(PathBuf, u64)> = Vec::new();
    // Directories a layer implies but does not list belong to its root.
    let implicit = Some(owner(0, 0, opts.id_map).map_err(|e| UnpackError::Io {
        context: "the user namespace's root".into(),
        source: e,
    })?);
    for entry in archive.entries().map_err(UnpackError::Tar)? {
        let mut entry = entry.map_err(UnpackError::Tar)?;
        let raw = entry.path_bytes().into_owned();
        let comps = components(&raw)?;
        let Some((&name, parent)) = comps.split_last() else {
            // The layer root itself keeps the mode it was created with.
            continue;
        };
        stats.entries += 1;
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().map_err(UnpackError::Tar)? & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let (uid, gid) = owner(
            header.uid().map_err(UnpackError::Tar)?,
            header.gid().map_err(UnpackError::Tar)?,
            opts.id_map,
        )
        .map_err(entry_err(&raw))?;
        let err = entry_err(&raw);

        let base = name.as_bytes();
        // `.wh..wh.*` names (other than the opaque marker) are aufs bookkeeping.
        let aufs = comps.iter().enumerate().any(|(i, c)| {
            let c = c.as_bytes();
            c.starts_with(b".wh..wh.") && !(i + 1 == comps.len() && c == OPAQUE_MARKER)
        });
        if aufs {
            continue;
        }
        if base == OPAQUE_MARKER {
            let dir = open_dir(&root, parent, &raw, implicit)?;
            rustix::fs::fsetxattr(&dir, OPAQUE_XATTR, b"y", rustix::fs::XattrFlags::empty())
                .map_err(|e| err(io_err(e)))?;
            continue;
        }
        if let Some(hidden) = base.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(escape(&raw, "a whiteout must name an entry"));
            }
            let hidden = OsStr::from_bytes(hidden);
            let dir = open_dir(&root, parent, &raw, implicit)?;
            make_room(&dir, hidden, false).map_err(&err)?;
            rustix::fs::mknodat(
                &dir,
                hidden,
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            )
            .map_err(|e| err(io_err(e)))?;
            continue;
        }

        let dir = open_dir(&root, parent, &raw, implicit)?;
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                make_room(&dir, name, false).map_err(&err)?;
                let fd = rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| err(io_err(e)))?;
                let mut file = File::from(fd);
                let left = opts.max_bytes.saturating_sub(stats.bytes);
                let written =
                    io::copy(&mut (&mut entry).take(left + 1), &mut file).map_err(|e| {
                        if e.kind() == io::ErrorKind::FileTooLarge {
                            UnpackError::TooLarge {
                                limit: opts.max_bytes,
                            }
                        } else {
                            UnpackError::Tar(e)
                        }
                    })?;
                if written > left {
                    return Err(UnpackError::TooLarge {
                        limit: opts.max_bytes,
                    });
                }
                stats.bytes += written;
                let mode = clear_setuid(mode, opts, &mut stats);
                rustix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|e| err(io_err(e)))?;
                rustix::fs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(|e| err(io_err(e)))?;
                rustix::fs::futimens(&file, &times(mtime)).map_err(|e| err(io_err(e)))?;
            }
            tar::EntryType::Directory => {
                if !make_room(&dir, name, true).map_err(&err)? {
                    rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700))
                        .map_err(|e| err(io_err(e)))?;
                }
                let sub =
                    rustix::fs::openat(&dir, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())
                        .map_err(|e| err(io_err(e)))?;
                rustix::fs::fchown(&sub, Some(uid), Some(gid)).map_err(|e| err(io_err(e)))?;
                rustix::fs::fchmod(&sub, Mode::from_raw_mode(mode & 0o3777))
                    .map_err(|e| err(io_err(e)))?;
                dirs.push((join(&comps), mtime));
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| escape(&raw, "a symlink without a target"))?
                    .into_owned();
                make_room(&dir, name, false).map_err(&err)?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &dir, name)
                    .map_err(|e| err(io_err(e)))?;
                rustix::fs::chownat(&dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| err(io_err(e)))?;
                rustix::fs::utimensat(&dir, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| err(io_err(e)))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| escape(&raw, "a hard link without a target"))?
                    .into_owned();
                let target_comps = components(&target)?;
                let Some((&target_name, target_parent)) = target_comps.split_last() else {
                    return Err(escape(&raw, "a hard link to the layer root"));
                };
                let target_dir = open_dir(&root, target_parent, &raw, None)?;
                match rustix::fs::statat(&target_dir, target_name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                        return Err(escape(&raw, "a hard link to a directory"));
                    }
                    Ok(_) => {}
                    Err(Errno::NOENT) => {
                        return Err(escape(&raw, "a hard link to a file not (yet) in the layer"));
                    }
                    Err(e) => return Err(err(io_err(e))),
                }
                make_room(&dir, name, false).map_err(&err)?;
                rustix::fs::linkat(&target_dir, target_name, &dir, name, AtFlags::empty())
                    .map_err(|e| err(io_err(e)))?;
            }
            tar::EntryType::Fifo => {
                make_room(&dir, name, false).map_err(&err)?;
                rustix::fs::mknodat(
                    &dir,
                    name,
                    FileType::Fifo,
                    Mode::from_raw_mode(mode & 0o777),
                    0,
                )
                .map_err(|e| err(io_err(e)))?;
                rustix::fs::chownat(&dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| err(io_err(e)))?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                // A container gets its devices from the runtime, never from an image.
                stats.devices_skipped += 1;
                tracing::debug!(path = %String::from_utf8_lossy(&raw), "skipped a device node");
            }
            other => {
                tracing::debug!(path = %String::from_utf8_lossy(&raw), kind = ?other, "skipped a tar entry");
            }
        }
    }
    // Directory times last, deepest first, since creating entries changes them.
    for (path, mtime) in dirs.iter().rev() {
        if let Ok(fd) = rustix::fs::openat2(
            &root,
            path,
            DIR_FLAGS,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
        ) {
            let _ = rustix::fs::futimens(&fd, &times(*mtime));
        }
    }
    Ok(stats)
}

fn clear_setuid(mode: u32, opts: &UnpackOptions, stats: &mut UnpackStats) -> u32 {
    if !opts.allow_setuid && mode & 0o6000 != 0 {
        stats.setuid_cleared += 1;
        mode & !0o6000
    } else {
        mode
    }
}

/// The content-addressed cache of unpacked layers.
#[derive(Debug)]
pub struct LayerCache {
    dir: PathBuf,
    opts: UnpackOptions,
    /// One lock per digest being unpacked, so two instances of a new image unpack each
    /// layer once.
    busy: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl LayerCache {
    /// Opens (creating) the cache at `dir`, removing what a crash left half-unpacked.
    pub fn open(dir: &Path, opts: UnpackOptions) -> Result<LayerCache> {
        let io = |context: String| move |source| UnpackError::Io { context, source };
        let tmp = dir.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(format!("cannot clear {}", tmp.display())))?;
        }
        for d in [dir.join("sha256"), tmp] {
            std::fs::create_dir_all(&d).map_err(io(format!("cannot create {}", d.display())))?;
        }
        Ok(LayerCache {
            dir: dir.to_path_buf(),
            opts,
            busy: Mutex::new(HashMap::new()),
        })
    }

    /// Where the layer with `digest` is (or would be) unpacked.
    pub fn path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.dir.join("sha256").join(digest_hex(digest)?))
    }

    /// The unpacked directory of `layer`, unpacking it first if the cache lacks it.
    pub fn ensure(
        &self,
        images: &dyn ImageStore,
        repository: &str,
        layer: &Layer,
    ) -> Result<PathBuf> {
        let path = self.path(&layer.digest)?;
        if path.is_dir() {
            return Ok(path);
        }
        let lock = self
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(layer.digest.clone())
            .or_default()
            .clone();
        let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
        if path.is_dir() {
            return Ok(path);
        }
        let started = std::time::Instant::now();
        let tmp = self.dir.join("tmp").join(format!(
            "{}.{}",
            digest_hex(&layer.digest)?,
            uuid::Uuid::new_v4().simple()
        ));
        let result = (|| {
            std::fs::create_dir(&tmp).map_err(|source| UnpackError::Io {
                context: format!("cannot create {}", tmp.display()),
                source,
            })?;
            let blob = images.blob(repository, &layer.digest)?.open()?;
            let stats = unpack_blob(
                blob,
                &tmp,
                &layer.digest,
                layer.diff_id.as_deref(),
                &self.opts,
            )?;
            std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(|source| UnpackError::Io {
                    context: format!("cannot set mode of {}", tmp.display()),
                    source,
                })?;
            // Everything unpacked is on disk before the rename makes it visible.
            let fd =
                rustix::fs::open(&tmp, DIR_FLAGS, Mode::empty()).map_err(|e| UnpackError::Io {
                    context: format!("cannot open {}", tmp.display()),
                    source: io_err(e),
                })?;
            rustix::fs::syncfs(fd.as_fd()).map_err(|e| UnpackError::Io {
                context: "cannot sync the layer cache".into(),
                source: io_err(e),
            })?;
            match std::fs::rename(&tmp, &path) {
                Ok(()) => {}
                // Another process unpacked it first.
                Err(_) if path.is_dir() => {
                    let _ = std::fs::remove_dir_all(&tmp);
                }
                Err(source) => {
                    return Err(UnpackError::Io {
                        context: format!("cannot move the layer into {}", path.display()),
                        source,
                    });
                }
            }
            if let Ok(d) = File::open(self.dir.join("sha256")) {
                let _ = d.sync_all();
            }
            Ok(stats)
        })();
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&layer.digest);
        match result {
            Ok(stats) => {
                tracing::info!(
                    digest = %layer.digest,
                    entries = stats.entries,
                    bytes = stats.bytes,
                    devices_skipped = stats.devices_skipped,
                    setuid_cleared = stats.setuid_cleared,
                    ms = started.elapsed().as_millis() as u64,
                    "layer unpacked"
                );
                Ok(path)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests;
