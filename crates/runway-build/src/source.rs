//! The source a build starts from: where it comes from ([`Source`]: a git repository, or
//! a directory uploaded as a tarball to runway's registry, `upload://sha256:<hex>`), the
//! source directory inside it, and reading its files without ever following a link out of
//! it. Uploaded tarballs are unpacked safely: no `..`, no absolute paths, no links
//! pointing out, no hard links or devices, bounded in size and entry count.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// The URL scheme of a source uploaded to runway's registry.
pub const UPLOAD_SCHEME: &str = "upload://";

/// What can go wrong getting or reading a source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The repository URL or branch is not one runway can fetch.
    #[error("invalid source: {0}")]
    InvalidSource(String),
    /// git failed; the message is git's, with credentials removed.
    #[error("git {action} failed: {message}")]
    Git { action: String, message: String },
    /// git took longer than allowed.
    #[error("git {action} did not finish within {seconds} s")]
    GitTimeout { action: String, seconds: u64 },
    /// The branch does not exist in the repository.
    #[error("branch {branch:?} not found in {url}")]
    NoBranch { url: String, branch: String },
    /// A path would lead out of the source (`..`, an absolute path, a link out).
    #[error("{path}: {reason}")]
    Escape { path: String, reason: String },
    /// A file of the source cannot be used.
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    /// The source directory does not exist.
    #[error("source directory {0:?} not found in the source")]
    NoSourceDirectory(String),
    /// An uploaded tarball was refused.
    #[error("uploaded source refused: {0}")]
    Upload(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> SourceError {
    let context = context.into();
    move |source| SourceError::Io { context, source }
}

/// Credentials for a git repository, from a connection. Never printed: `Debug` hides
/// them, and they reach git only through its environment and temporary files.
#[derive(Clone, PartialEq, Eq)]
pub enum GitCredentials {
    /// An access token for https: the password, with `username` (default
    /// `x-access-token`, which GitHub expects; GitLab and Gitea take any name).
    Token {
        username: Option<String>,
        token: String,
    },
    /// A private key (OpenSSH or PEM format) for ssh URLs.
    SshKey { private_key: String },
}

impl fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitCredentials::Token { username, .. } => f
                .debug_struct("Token")
                .field("username", username)
                .finish_non_exhaustive(),
            GitCredentials::SshKey { .. } => f.write_str("SshKey(..)"),
        }
    }
}

/// Where a build's source comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `https://`, `http://`, `ssh://`, `user@host:path`, `git://`, `file://`, or
    /// `upload://sha256:<hex>`.
    pub url: String,
    /// The branch (App Runner's `SourceCodeVersion` of type `BRANCH`); ignored for uploads.
    pub branch: String,
    /// A directory inside the repository to build (a monorepo's app); `None` or `/`:
    /// the top.
    pub source_directory: Option<String>,
    pub credentials: Option<GitCredentials>,
}

impl Source {
    /// The digest of an uploaded source (`upload://sha256:<hex>`), if this is one.
    pub fn upload_digest(&self) -> Option<&str> {
        self.url.strip_prefix(UPLOAD_SCHEME)
    }
}

/// `url` with any `user:password@` removed, for logs and messages.
pub fn redact_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => out.push_str(&authority[at + 1..]),
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Checks that `rel` is a relative path of normal components (a leading `/` or `./`
/// allowed and ignored) and returns it cleaned; `None` for the top.
pub fn clean_relative(rel: &str) -> Result<Option<PathBuf>, SourceError> {
    let escape = |reason: &str| SourceError::Escape {
        path: rel.to_string(),
        reason: reason.to_string(),
    };
    if rel.contains('\0') {
        return Err(escape("contains a NUL character"));
    }
    let mut out = PathBuf::new();
    for c in Path::new(rel.trim_start_matches('/')).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(escape("must not contain ..")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(escape("must be relative"));
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// The directory to build: `sub` inside `root`, which must exist and, links resolved,
/// stay inside `root`.
pub fn source_directory(root: &Path, sub: Option<&str>) -> Result<PathBuf, SourceError> {
    let Some(rel) = sub.map(clean_relative).transpose()?.flatten() else {
        return Ok(root.to_path_buf());
    };
    let shown = rel.display().to_string();
    let root_real =
        fs::canonicalize(root).map_err(io_err(format!("cannot open {}", root.display())))?;
    let real = match fs::canonicalize(root.join(&rel)) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SourceError::NoSourceDirectory(shown));
        }
        Err(e) => return Err(io_err(format!("cannot open {shown}"))(e)),
    };
    if !real.starts_with(&root_real) {
        return Err(SourceError::Escape {
            path: shown,
            reason: "leads out of the repository".into(),
        });
    }
    if !real.is_dir() {
        return Err(SourceError::NoSourceDirectory(shown));
    }
    Ok(real)
}

/// Whether `name` exists at the top of `dir` (a link counts, followed or not).
pub(crate) fn exists(dir: &Path, name: &str) -> bool {
    fs::symlink_metadata(dir.join(name)).is_ok()
}

/// Whether `name` is a directory (not a link) at the top of `dir`.
pub(crate) fn is_dir(dir: &Path, name: &str) -> bool {
    fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.is_dir())
}

/// The names at the top of `dir`.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<String>, SourceError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(format!("cannot list {}", dir.display())))? {
        let entry = entry.map_err(io_err(format!("cannot list {}", dir.display())))?;
        if let Some(name) = entry.file_name().to_str() {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// Reads the text file `name` of `dir` (at most `max` bytes); `None` if it does not
/// exist. A link is followed only if it stays inside `dir`.
pub(crate) fn read_file(dir: &Path, name: &str, max: u64) -> Result<Option<String>, SourceError> {
    let path = dir.join(name);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(format!("cannot read {name}"))(e)),
    };
    let path = if meta.file_type().is_symlink() {
        let root =
            fs::canonicalize(dir).map_err(io_err(format!("cannot open {}", dir.display())))?;
        let real = fs::canonicalize(&path).map_err(|_| SourceError::Invalid {
            path: name.to_string(),
            reason: "is a broken link".into(),
        })?;
        if !real.starts_with(&root) {
            return Err(SourceError::Escape {
                path: name.to_string(),
                reason: "is a link out of the source".into(),
            });
        }
        real
    } else {
        path
    };
    let file = File::open(&path).map_err(io_err(format!("cannot read {name}")))?;
    let meta = file
        .metadata()
        .map_err(io_err(format!("cannot read {name}")))?;
    if !meta.is_file() {
        return Err(SourceError::Invalid {
            path: name.to_string(),
            reason: "is not a regular file".into(),
        });
    }
    if meta.len() > max {
        return Err(SourceError::Invalid {
            path: name.to_string(),
            reason: format!("is larger than {max} bytes"),
        });
    }
    let mut text = String::new();
    file.take(max)
        .read_to_string(&mut text)
        .map_err(|e| SourceError::Invalid {
            path: name.to_string(),
            reason: format!("cannot be read as UTF-8 text: {e}"),
        })?;
    Ok(Some(text))
}

/// Limits on an uploaded source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// The most bytes of file content it may unpack to.
    pub max_bytes: u64,
    /// The most entries it may have.
    pub max_entries: u64,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            max_bytes: 2 << 30,
            max_entries: 200_000,
        }
    }
}

/// Unpacks the gzipped tarball `archive` into the empty directory `dest`: regular files,
/// directories and links that stay inside; anything else is refused, and `dest` is then
/// left for the caller to remove.
pub fn unpack_upload(
    archive: &Path,
    dest: &Path,
    limits: UploadLimits,
) -> Result<u64, SourceError> {
    let file = File::open(archive).map_err(io_err("cannot open the uploaded source"))?;
    let gz = flate2::read::GzDecoder::new(io::BufReader::new(file));
    // Decompressed input is bounded: file content by max_bytes, headers by entries.
    let bound = limits
        .max_bytes
        .saturating_add(limits.max_entries.saturating_mul(8192));
    let mut tar = tar::Archive::new(gz.take(bound));
    let bad = |m: String| SourceError::Upload(m);
    let mut entries = 0u64;
    let mut bytes = 0u64;
    for entry in tar
        .entries()
        .map_err(|e| bad(format!("not a gzipped tar: {e}")))?
    {
        let mut entry = entry.map_err(|e| bad(format!("malformed tar: {e}")))?;
        entries += 1;
        if entries > limits.max_entries {
            return Err(bad(format!("more than {} entries", limits.max_entries)));
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName
        ) {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| bad(format!("{name}: {e}")))?
            .into_owned();
        let rel = match clean_relative(&path.to_string_lossy())? {
            Some(rel) => rel,
            None if kind.is_dir() => continue,
            None => return Err(bad(format!("{name:?}: an entry needs a name"))),
        };
        let target = dest.join(&rel);
        make_parents(dest, &rel)?;
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Err(bad(format!("{name}: a directory replaces a file"))),
                    Err(_) => {
                        fs::create_dir(&target).map_err(io_err(format!("cannot create {name}")))?
                    }
                }
                set_mode(&target, mode | 0o700)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                remove_non_dir(&target, &name)?;
                let size = entry.header().size().unwrap_or(0);
                bytes = bytes.saturating_add(size);
                if bytes > limits.max_bytes {
                    return Err(bad(format!(
                        "unpacks to more than {} bytes",
                        limits.max_bytes
                    )));
                }
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(io_err(format!("cannot create {name}")))?;
                io::copy(&mut (&mut entry).take(size), &mut out)
                    .map_err(|e| bad(format!("{name}: {e}")))?;
                set_mode(&target, mode | 0o600)?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| bad(format!("{name}: {e}")))?
                    .ok_or_else(|| bad(format!("{name}: a link without a target")))?
                    .into_owned();
                if !link_stays_inside(&rel, &link) {
                    return Err(SourceError::Escape {
                        path: name,
                        reason: format!("links out of the source (to {})", link.display()),
                    });
                }
                remove_non_dir(&target, &name)?;
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(io_err(format!("cannot create {name}")))?;
            }
            tar::EntryType::Link => {
                return Err(bad(format!("{name}: hard links are not accepted")));
            }
            other => {
                return Err(bad(format!(
                    "{name}: entries of type {other:?} (devices, pipes) are not accepted"
                )));
            }
        }
    }
    Ok(bytes)
}

/// Creates the directories above `rel` in `root`, refusing to go through anything that
/// is not a real directory (a link could lead out).
fn make_parents(root: &Path, rel: &Path) -> Result<(), SourceError> {
    let mut dir = root.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for c in parent.components() {
        dir.push(c);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(SourceError::Escape {
                    path: rel.display().to_string(),
                    reason: "is below something that is not a directory".into(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
            }
            Err(e) => return Err(io_err(format!("cannot open {}", dir.display()))(e)),
        }
    }
    Ok(())
}

/// Removes a file or link at `path` (a later entry replaces an earlier one); a directory
/// there is an error.
fn remove_non_dir(path: &Path, name: &str) -> Result<(), SourceError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(SourceError::Upload(format!(
            "{name}: a file replaces a directory"
        ))),
        Ok(_) => fs::remove_file(path).map_err(io_err(format!("cannot replace {name}"))),
        Err(_) => Ok(()),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), SourceError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io_err(format!("cannot set the mode of {}", path.display())))
}

/// Whether a link at `rel` pointing to `target` stays inside the root: relative, with
/// `..` only at its start (after a name, `..` could climb out of a linked directory) and
/// no more of them than `rel` is deep.
fn link_stays_inside(rel: &Path, target: &Path) -> bool {
    let mut up_allowed = rel.components().count().saturating_sub(1);
    let mut seen_name = false;
    for c in target.components() {
        match c {
            Component::Normal(_) => seen_name = true,
            Component::CurDir => {}
            Component::ParentDir if !seen_name && up_allowed > 0 => up_allowed -= 1,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests;
