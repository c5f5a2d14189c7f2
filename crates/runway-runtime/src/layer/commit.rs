//! Layers made from what a container changed: the upper directory of its overlay mount,
//! written as a gzipped OCI layer tarball. Overlay whiteouts (0/0 character devices)
//! become `.wh.<name>` entries and opaque directories (`trusted.overlay.opaque=y`) get a
//! `.wh..wh..opq` entry, written before their siblings as the OCI image spec asks.
//! Owners, modes and modification times are kept, hard links within the layer stay hard
//! links, and sockets, fifos and device nodes are left out (a container gets its devices
//! from the runtime; a fifo or socket is state of a process that is gone).
//!
//! The tarball is deterministic for a given directory: entries sorted by name, headers
//! carrying nothing but type, name, size, mode, owner ids and modification time (no user
//! or group names, no access or change times), gzip without a name or time. Modification
//! times are kept rather than fixed because tools compare them (Python's `.pyc` files
//! record their source's), so two builds of the same source give equal layers only if
//! they wrote their files at the same times.
//!
//! Paths given as excluded (bind-mount targets, the runtime's own mount points) are left
//! out with everything beneath them, and so are their ancestor directories that hold
//! nothing else: those exist in the upper directory only because a mount point was made
//! inside them.
//!
//! The result is written to a temporary file next to the destination, synced, and renamed
//! into place, so a crash never leaves a partial layer under the destination's name.

use flate2::{Compression, GzBuilder};
use rustix::io::Errno;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The media type of the layers this module writes.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What can go wrong writing a layer. Nothing is left under the destination's name.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// An excluded path is not a path inside the layer.
    #[error("excluded path {0:?} must name a path inside the layer (no '..')")]
    BadExclude(String),
    /// A file changed size while it was being written into the layer.
    #[error("{path} changed while the layer was written")]
    Changed { path: PathBuf },
    /// A name that layers reserve for whiteouts; stored, it would delete a file instead.
    #[error("{path}: names starting with .wh. cannot be stored in an OCI layer")]
    ReservedName { path: PathBuf },
    /// An entry of the directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// The layer could not be written.
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

type Result<T, E = CommitError> = std::result::Result<T, E>;

/// A layer written to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedLayer {
    /// The gzipped tarball.
    pub path: PathBuf,
    /// `sha256:<hex>` of the gzipped tarball (the blob's digest in a manifest).
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tarball (the image config's `diff_id`).
    pub diff_id: String,
    /// Bytes of the gzipped tarball.
    pub size: u64,
    /// How many entries the tarball holds (whiteouts included).
    pub entries: u64,
    /// Sockets, fifos and device nodes left out.
    pub skipped: u64,
}

/// Hashes and counts what is written through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.written)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Owner, mode and time of an entry.
#[derive(Debug, Clone, Copy)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
}

impl Meta {
    fn of(m: &std::fs::Metadata) -> Meta {
        Meta {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime: u64::try_from(m.mtime()).unwrap_or(0),
        }
    }
}

#[derive(Debug)]
enum Kind {
    Dir { opaque: bool, children: Vec<Node> },
    File { size: u64, key: Option<(u64, u64)> },
    Symlink(PathBuf),
    Whiteout,
}

#[derive(Debug)]
struct Node {
    name: OsString,
    meta: Meta,
    kind: Kind,
}

impl Node {
    /// Whiteouts sort before their siblings, so that a flattening unpacker applies them
    /// to the layers below before this layer's own entries.
    fn order_key(&self) -> (bool, &[u8]) {
        (
            !matches!(self.kind, Kind::Whiteout),
            self.name.as_os_str().as_bytes(),
        )
    }
}

/// The components of an excluded path, without a leading `/`.
fn exclude_components(path: &str) -> Result<Vec<OsString>> {
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(CommitError::BadExclude(path.to_string())),
            c => out.push(OsString::from(c)),
        }
    }
    if out.is_empty() {
        return Err(CommitError::BadExclude(path.to_string()));
    }
    Ok(out)
}

/// Whether `path` is an opaque directory.
fn is_opaque(path: &Path) -> Result<bool> {
    let mut value = [0u8; 8];
    match rustix::fs::lgetxattr(path, OPAQUE_XATTR, &mut value[..]) {
        Ok(n) => Ok(&value[..n] == b"y"),
        Err(Errno::NODATA) | Err(Errno::OPNOTSUPP) => Ok(false),
        Err(e) => Err(CommitError::Read {
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

/// Reads the tree under `dir`, leaving out `excludes` (component lists relative to
/// `dir`). Returns the entries and whether anything was left out (so that the caller
/// can drop `dir` itself if it holds nothing else).
fn walk(dir: &Path, excludes: &[&[OsString]], skipped: &mut u64) -> Result<(Vec<Node>, bool)> {
    let read = |source| CommitError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut names: Vec<OsString> = std::fs::read_dir(dir)
        .map_err(read)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(read)?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut nodes = Vec::with_capacity(names.len());
    let mut left_out = false;
    for name in names {
        let below: Vec<&[OsString]> = excludes
            .iter()
            .filter(|e| e.first() == Some(&name))
            .map(|e| &e[1..])
            .collect();
        if below.iter().any(|rest| rest.is_empty()) {
            left_out = true;
            continue;
        }
        let path = dir.join(&name);
        if name.as_bytes().starts_with(WHITEOUT_PREFIX) {
            return Err(CommitError::ReservedName { path });
        }
        let m = std::fs::symlink_metadata(&path).map_err(|source| CommitError::Read {
            path: path.clone(),
            source,
        })?;
        let meta = Meta::of(&m);
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            let opaque = is_opaque(&path)?;
            let (children, sub_left_out) = walk(&path, &below, skipped)?;
            if sub_left_out && children.is_empty() && !opaque {
                left_out = true;
                continue;
            }
            Kind::Dir { opaque, children }
        } else if ft.is_file() {
            Kind::File {
                size: m.len(),
                key: (m.nlink() > 1).then(|| (m.dev(), m.ino())),
            }
        } else if ft.is_symlink() {
            Kind::Symlink(
                std::fs::read_link(&path).map_err(|source| CommitError::Read {
                    path: path.clone(),
                    source,
                })?,
            )
        } else if ft.is_char_device() && m.rdev() == 0 {
            Kind::Whiteout
        } else {
            *skipped += 1;
            tracing::debug!(path = %path.display(), "left a special file out of the layer");
            continue;
        };
        nodes.push(Node { name, meta, kind });
    }
    nodes.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
    Ok((nodes, left_out))
}

fn header(kind: tar::EntryType, meta: &Meta, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode);
    h.set_uid(u64::from(meta.uid));
    h.set_gid(u64::from(meta.gid));
    h.set_mtime(meta.mtime);
    h.set_size(size);
    h
}

/// A reader that fails unless it yields exactly `size` bytes.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

struct Writer<W: Write> {
    tar: tar::Builder<W>,
    /// The first path written of each multiply-linked file.
    links: HashMap<(u64, u64), PathBuf>,
    entries: u64,
}

impl<W: Write> Writer<W> {
    fn write(&mut self, root: &Path, rel: &Path, nodes: &[Node]) -> Result<()> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CommitError::Io {
                context: format!("cannot write {} into the layer", path.display()),
                source,
            }
        };
        for node in nodes {
            let path = rel.join(&node.name);
            self.entries += 1;
            match &node.kind {
                Kind::Dir { opaque, children } => {
                    let mut h = header(tar::EntryType::Directory, &node.meta, 0);
                    self.tar
                        .append_data(&mut h, &path, io::empty())
                        .map_err(io(&path))?;
                    if *opaque {
                        let marker = path.join(OPAQUE_MARKER);
                        let meta = Meta {
                            mode: 0,
                            uid: 0,
                            gid: 0,
                            ..node.meta
                        };
                        let mut h = header(tar::EntryType::Regular, &meta, 0);
                        self.tar
                            .append_data(&mut h, &marker, io::empty())
                            .map_err(io(&marker))?;
                        self.entries += 1;
                    }
                    self.write(root, &path, children)?;
                }
                Kind::Whiteout => {
                    let mut name = WHITEOUT_PREFIX.to_vec();
                    name.extend_from_slice(node.name.as_bytes());
                    let marker = rel.join(OsStr::from_bytes(&name));
                    let meta = Meta {
                        mode: 0,
                        ..node.meta
                    };
                    let mut h = header(tar::EntryType::Regular, &meta, 0);
                    self.tar
                        .append_data(&mut h, &marker, io::empty())
                        .map_err(io(&marker))?;
                }
                Kind::Symlink(target) => {
                    let mut h = header(tar::EntryType::Symlink, &node.meta, 0);
                    self.tar
                        .append_link(&mut h, &path, target)
                        .map_err(io(&path))?;
                }
                Kind::File { size, key } => {
                    if let Some(first) = key.and_then(|k| self.links.get(&k)) {
                        let mut h = header(tar::EntryType::Link, &node.meta, 0);
                        let first = first.clone();
                        self.tar
                            .append_link(&mut h, &path, &first)
                            .map_err(io(&path))?;
                        continue;
                    }
                    let full = root.join(&path);
                    let file = std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                        .open(&full)
                        .map_err(|source| CommitError::Read {
                            path: full.clone(),
                            source,
                        })?;
                    let mut h = header(tar::EntryType::Regular, &node.meta, *size);
                    let data = Exact {
                        inner: file,
                        left: *size,
                    };
                    match self.tar.append_data(&mut h, &path, data) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                            return Err(CommitError::Changed { path: full });
                        }
                        Err(e) => return Err(io(&path)(e)),
                    }
                    if let Some(k) = key {
                        self.links.insert(*k, path);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Writes the overlay upper directory `upper` as a gzipped layer tarball at `out` (its
/// directory must exist), leaving out the paths in `exclude` (relative to `upper`; a
/// leading `/` is ignored) and what is under them.
pub fn from_upper(upper: &Path, exclude: &[&str], out: &Path) -> Result<CommittedLayer> {
    let started = std::time::Instant::now();
    let excludes: Vec<Vec<OsString>> = exclude
        .iter()
        .map(|e| exclude_components(e))
        .collect::<Result<_>>()?;
    let refs: Vec<&[OsString]> = excludes.iter().map(Vec::as_slice).collect();
    let mut skipped = 0;
    let (nodes, _) = walk(upper, &refs, &mut skipped)?;

    let dir = out.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        uuid::Uuid::new_v4().simple()
    ));
    let io = |context: String| move |source| CommitError::Io { context, source };
    let written = (|| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(io(format!("cannot create {}", tmp.display())))?;
        let blob = Hashing::new(BufWriter::with_capacity(256 * 1024, file));
        let gz = GzBuilder::new().mtime(0).write(blob, Compression::fast());
        let mut writer = Writer {
            tar: tar::Builder::new(Hashing::new(gz)),
            links: HashMap::new(),
            entries: 0,
        };
        writer.write(upper, Path::new(""), &nodes)?;
        let entries = writer.entries;
        let write_err = || io(format!("cannot write {}", tmp.display()));
        let (gz, diff_id, _) = writer.tar.into_inner().map_err(write_err())?.finish();
        let (buffered, digest, size) = gz.finish().map_err(write_err())?.finish();
        let file = buffered
            .into_inner()
            .map_err(|e| write_err()(e.into_error()))?;
        file.sync_all().map_err(write_err())?;
        Ok::<_, CommitError>((digest, diff_id, size, entries))
    })();
    let (digest, diff_id, size, entries) = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Err(source) = std::fs::rename(&tmp, out) {
        let _ = std::fs::remove_file(&tmp);
        return Err(CommitError::Io {
            context: format!("cannot move the layer to {}", out.display()),
            source,
        });
    }
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    tracing::debug!(
        layer = %digest,
        entries,
        skipped,
        bytes = size,
        ms = started.elapsed().as_millis() as u64,
        "layer committed"
    );
    Ok(CommittedLayer {
        path: out.to_path_buf(),
        digest,
        diff_id,
        size,
        entries,
        skipped,
    })
}

#[cfg(test)]
mod tests;
