//! Layers written from directories, as gzipped tars with their digests: the source layer
//! (the source directory at `/app`, deterministic: sorted entries, owner root, fixed
//! times, so the same source always gives the same digest and the registry stores it
//! once), a root filesystem as a base image's single layer (owners, modes, times and hard
//! links kept), and the tarball `runway deploy --source` uploads: what a git checkout of
//! the directory would hold, leaving out what its `.gitignore` files and a
//! `.runwayignore` (same syntax) name, so `node_modules/` and `.env` stay home.
//!
//! The walk never follows a link and never crosses into another file system (a mount
//! point is kept as an empty directory). Device nodes, pipes and sockets are left out: the
//! runtime provides `/dev`.

use flate2::Compression;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The OCI media type of a gzipped layer.
pub const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A layer written to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFile {
    pub path: PathBuf,
    /// The digest of the gzipped file (`sha256:<hex>`).
    pub digest: String,
    /// The digest of the uncompressed tar (the image config's `diff_id`).
    pub diff_id: String,
    /// The gzipped file's size.
    pub size: u64,
}

/// How a directory is turned into tar entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Owner root, fixed times, modes without setuid bits, hard links as files, the top
    /// `.git` left out.
    Source,
    /// Everything as it is on disk.
    Rootfs,
}

/// A writer that hashes and counts what goes through it.
struct Hashing<W> {
    inner: W,
    context: aws_lc_rs::digest::Context,
    count: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            context: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
            count: 0,
        }
    }

    fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.context.finish().as_ref()));
        (self.inner, digest, self.count)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.context.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the source directory `dir` as a layer holding it at `/app` (its top `.git`
/// left out) to `out`.
pub fn write_source_layer(dir: &Path, out: &Path) -> io::Result<LayerFile> {
    write_layer(dir, out, Mode::Source, Some("app"), Compression::default())
}

/// The file that names more of a directory to leave out of an upload, in `.gitignore`'s
/// syntax.
pub const IGNORE_FILE: &str = ".runwayignore";

/// An uploaded source's tarball and what went into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedSource {
    pub layer: LayerFile,
    /// Regular files packed.
    pub files: u64,
    /// Their bytes, before compression.
    pub bytes: u64,
}

/// Writes the directory `dir` as a gzipped tar of its contents, as `runway deploy
/// --source` uploads it: its top `.git` and what `.gitignore` files (and
/// `.git/info/exclude`) and [`IGNORE_FILE`] name left out.
pub fn pack_source(dir: &Path, out: &Path) -> io::Result<PackedSource> {
    let keep = not_ignored(dir)?;
    let mut walker = Walker::new(Mode::Source, dir)?;
    walker.keep = Some(keep);
    let layer = write_layer_with(&mut walker, dir, out, None, Compression::default())?;
    Ok(PackedSource {
        layer,
        files: walker.files,
        bytes: walker.bytes,
    })
}

/// The paths under `dir` no ignore file names (`dir` itself excluded).
fn not_ignored(dir: &Path) -> io::Result<HashSet<PathBuf>> {
    let mut keep = HashSet::new();
    let walk = ignore::WalkBuilder::new(dir)
        .hidden(false)
        .ignore(false)
        .parents(false)
        .git_global(false)
        .git_ignore(true)
        .git_exclude(true)
        .require_git(false)
        .follow_links(false)
        .same_file_system(true)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry(|e| !(e.depth() == 1 && e.file_name() == ".git"))
        .build();
    for entry in walk {
        let entry = entry.map_err(|e| io::Error::other(e.to_string()))?;
        if entry.depth() > 0 {
            keep.insert(entry.into_path());
        }
    }
    Ok(keep)
}

/// Writes the root filesystem `dir` as a single layer to `out`, keeping owners, modes,
/// times and hard links.
pub fn write_rootfs_layer(dir: &Path, out: &Path) -> io::Result<LayerFile> {
    write_layer(dir, out, Mode::Rootfs, None, Compression::fast())
}

fn write_layer(
    dir: &Path,
    out: &Path,
    mode: Mode,
    prefix: Option<&str>,
    level: Compression,
) -> io::Result<LayerFile> {
    let mut walker = Walker::new(mode, dir)?;
    write_layer_with(&mut walker, dir, out, prefix, level)
}

fn write_layer_with(
    walker: &mut Walker,
    dir: &Path,
    out: &Path,
    prefix: Option<&str>,
    level: Compression,
) -> io::Result<LayerFile> {
    let root = fs::symlink_metadata(dir)?;
    let file = File::create(out)?;
    let compressed = Hashing::new(BufWriter::with_capacity(1 << 20, file));
    let gz = flate2::GzBuilder::new().mtime(0).write(compressed, level);
    let mut tar = tar::Builder::new(Hashing::new(gz));
    tar.follow_symlinks(false);
    let top = PathBuf::from(prefix.unwrap_or(""));
    if prefix.is_some() {
        walker.append(&mut tar, dir, &top, &root)?;
    }
    walker.walk(&mut tar, dir, &top, true)?;
    let uncompressed = tar.into_inner()?;
    let (gz, diff_id, _) = uncompressed.finish();
    let compressed = gz.finish()?;
    let (mut writer, digest, size) = compressed.finish();
    writer.flush()?;
    writer
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok(LayerFile {
        path: out.to_path_buf(),
        digest,
        diff_id,
        size,
    })
}

struct Walker {
    mode: Mode,
    device: u64,
    /// (device, inode) of files with more than one link, to the path first written.
    links: HashMap<(u64, u64), PathBuf>,
    /// When set, only these paths are written.
    keep: Option<HashSet<PathBuf>>,
    /// Regular files written, and their bytes.
    files: u64,
    bytes: u64,
}

impl Walker {
    fn new(mode: Mode, dir: &Path) -> io::Result<Walker> {
        let root = fs::symlink_metadata(dir)?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(Walker {
            mode,
            device: root.dev(),
            links: HashMap::new(),
            keep: None,
            files: 0,
            bytes: 0,
        })
    }

    fn walk<W: Write>(
        &mut self,
        tar: &mut tar::Builder<W>,
        dir: &Path,
        name: &Path,
        top: bool,
    ) -> io::Result<()> {
        let mut entries: Vec<(std::ffi::OsString, PathBuf)> = fs::read_dir(dir)?
            .map(|e| e.map(|e| (e.file_name(), e.path())))
            .collect::<io::Result<_>>()?;
        entries.sort_by(|a, b| {
            use std::os::unix::ffi::OsStrExt;
            a.0.as_bytes().cmp(b.0.as_bytes())
        });
        for (file_name, path) in entries {
            if top && self.mode == Mode::Source && file_name == ".git" {
                continue;
            }
            if self.keep.as_ref().is_some_and(|k| !k.contains(&path)) {
                continue;
            }
            let meta = fs::symlink_metadata(&path)?;
            let entry_name = name.join(&file_name);
            self.append(tar, &path, &entry_name, &meta)?;
            if meta.is_dir() && meta.dev() == self.device {
                self.walk(tar, &path, &entry_name, false)?;
            }
        }
        Ok(())
    }

    fn append<W: Write>(
        &mut self,
        tar: &mut tar::Builder<W>,
        path: &Path,
        name: &Path,
        meta: &fs::Metadata,
    ) -> io::Result<()> {
        let kind = meta.file_type();
        let mut header = tar::Header::new_gnu();
        match self.mode {
            Mode::Source => {
                header.set_uid(0);
                header.set_gid(0);
                header.set_mtime(0);
                header.set_mode(meta.mode() & 0o777);
            }
            Mode::Rootfs => {
                header.set_uid(meta.uid().into());
                header.set_gid(meta.gid().into());
                header.set_mtime(meta.mtime().max(0) as u64);
                header.set_mode(meta.mode() & 0o7777);
            }
        }
        header.set_size(0);
        if kind.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            let mut dir_name = name.as_os_str().to_os_string();
            dir_name.push("/");
            return tar.append_data(&mut header, Path::new(&dir_name), io::empty());
        }
        if kind.is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            let target = fs::read_link(path)?;
            return tar.append_link(&mut header, name, target);
        }
        if !kind.is_file() {
            // Devices, pipes and sockets: the runtime provides /dev.
            return Ok(());
        }
        if self.mode == Mode::Rootfs && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                header.set_entry_type(tar::EntryType::Link);
                return tar.append_link(&mut header, name, first);
            }
            self.links.insert(key, name.to_path_buf());
        }
        header.set_entry_type(tar::EntryType::Regular);
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        header.set_size(size);
        self.files += 1;
        self.bytes += size;
        // A file that shrinks while it is read would corrupt the tar; tar's builder
        // fails instead, and so does the layer.
        tar.append_data(&mut header, name, io::Read::take(file, size))
    }
}

#[cfg(test)]
mod tests;
