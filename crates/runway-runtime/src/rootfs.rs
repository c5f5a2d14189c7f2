//! Each instance's root filesystem: an overlayfs mount whose lower directories are the
//! image's cached layers (shared, never written) and whose upper and work directories are
//! the instance's own scratch, removed when it stops.
//!
//! The overlay is given its directories as `/proc/self/fd/N` of descriptors opened for
//! the mount, not by their paths: the options stay in the mount table, which an instance
//! reads in `/proc/self/mountinfo`, and the host's layout (data directory, layer
//! digests) is none of its business.

use rustix::fd::{AsRawFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};
use std::path::{Path, PathBuf};

/// The longest mount data the kernel accepts is one page.
const MAX_MOUNT_DATA: usize = 4095;

/// What can go wrong with root filesystems.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A path cannot be used as a mount point.
    #[error("path {0} contains a NUL character")]
    BadPath(PathBuf),
    /// Too many layers (or too long paths) for one mount.
    #[error("the image has too many layers ({layers}) for one overlayfs mount")]
    TooManyLayers { layers: usize },
    #[error("cannot mount the root filesystem at {target}: {source}")]
    Mount {
        target: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot unmount {target}: {source}")]
    Unmount {
        target: PathBuf,
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// Overlay options under which every change lands in the upper directory as whole
/// entries, so that the upper directory alone is the container's diff: no redirects for
/// renamed directories (a rename of a lower directory copies it instead), no
/// metadata-only copies, no inode index.
pub const DIFF_OPTIONS: &[&str] = &["redirect_dir=off", "index=off", "metacopy=off"];

/// Mounts an overlay at `target` of `lower` (top layer first; an image without layers
/// gets `empty`), writing to `upper` through `work`. All directories must exist.
pub fn mount_overlay(
    lower: &[PathBuf],
    empty: &Path,
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), RootfsError> {
    mount_overlay_with(lower, empty, upper, work, target, &[])
}

/// [`mount_overlay`] with extra overlayfs `options` (such as [`DIFF_OPTIONS`]).
pub fn mount_overlay_with(
    lower: &[PathBuf],
    empty: &Path,
    upper: &Path,
    work: &Path,
    target: &Path,
    options: &[&str],
) -> Result<(), RootfsError> {
    let lower: Vec<&Path> = if lower.is_empty() {
        vec![empty]
    } else {
        lower.iter().map(PathBuf::as_path).collect()
    };
    let open = |p: &Path| {
        rustix::fs::open(
            p,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| RootfsError::Io {
            context: format!("cannot open {}", p.display()),
            source: e.into(),
        })
    };
    // Held until the mount is made: the kernel resolves the names while mounting.
    let lowers = lower
        .iter()
        .map(|p| open(p))
        .collect::<Result<Vec<_>, _>>()?;
    let (upper, work) = (open(upper)?, open(work)?);
    let name = |fd: &OwnedFd| format!("/proc/self/fd/{}", fd.as_raw_fd());
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.iter().map(name).collect::<Vec<_>>().join(":"),
        name(&upper),
        name(&work)
    );
    for option in options {
        data.push(',');
        data.push_str(option);
    }
    if data.len() > MAX_MOUNT_DATA {
        return Err(RootfsError::TooManyLayers {
            layers: lower.len(),
        });
    }
    let data =
        std::ffi::CString::new(data).map_err(|_| RootfsError::BadPath(target.to_path_buf()))?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .map_err(|e| RootfsError::Mount {
        target: target.to_path_buf(),
        source: e.into(),
    })
}

/// Unmounts everything mounted at or below `dir`, deepest first (an instance's root
/// file system, its ephemeral storage, its sysfs). Safe to repeat.
pub fn unmount_all(dir: &Path) -> Result<(), RootfsError> {
    let mut below: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect();
    below.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    below.dedup();
    // Each one was listed as mounted just now: reading the mount table again for each
    // (as `unmount` does) cost a fifth of the server's CPU while 200 instances were torn
    // down at once (the table then holds 600 mounts, and the kernel formats all of them
    // for every read).
    for m in below {
        unmount_mount_point(&m)?;
    }
    Ok(())
}

/// Unmounts `target` if something is mounted there. A mount still busy (a process that
/// outlived its container) is detached lazily rather than left behind.
pub fn unmount(target: &Path) -> Result<(), RootfsError> {
    if !is_mounted(target) {
        return Ok(());
    }
    unmount_mount_point(target)
}

/// Unmounts `target`, a path the mount table names (so no symbolic link leads the call
/// elsewhere); one no longer mounted is left as it is.
fn unmount_mount_point(target: &Path) -> Result<(), RootfsError> {
    match rustix::mount::unmount(target, UnmountFlags::empty()) {
        Ok(()) | Err(Errno::INVAL) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::BUSY) => {
            rustix::mount::unmount(target, UnmountFlags::DETACH).map_err(|e| RootfsError::Unmount {
                target: target.to_path_buf(),
                source: e.into(),
            })
        }
        Err(e) => Err(RootfsError::Unmount {
            target: target.to_path_buf(),
            source: e.into(),
        }),
    }
}

/// Whether something is mounted at `target` (per this process's mount table).
pub fn is_mounted(target: &Path) -> bool {
    mount_points().iter().any(|m| m == target)
}

/// Every mount point of this process's mount namespace.
pub fn mount_points() -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .collect()
}

/// Mount points in mountinfo escape space, tab, newline and backslash as octal.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo(r"/a\040b\134c"), "/a b\\c");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/end\04"), r"/end\04");
    }

    #[test]
    fn everything_below_a_directory_is_unmounted_deepest_first_and_again_harmlessly() {
        let dir = tempfile::tempdir().unwrap();
        // Whatever fails, nothing stays mounted (dropped before the directory).
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                for m in mount_points()
                    .iter()
                    .filter(|m| m.starts_with(self.0))
                    .rev()
                {
                    let _ = rustix::mount::unmount(m, UnmountFlags::DETACH);
                }
            }
        }
        let _unmount = Unmount(dir.path());
        let tmpfs = |at: &Path| {
            std::fs::create_dir_all(at).unwrap();
            rustix::mount::mount(
                "tmpfs",
                at,
                "tmpfs",
                rustix::mount::MountFlags::empty(),
                None,
            )
            .unwrap();
        };
        let (a, nested, c) = (
            dir.path().join("a"),
            dir.path().join("a/b"),
            dir.path().join("c"),
        );
        tmpfs(&a);
        tmpfs(&nested);
        tmpfs(&c);
        let below = || {
            mount_points()
                .into_iter()
                .filter(|m| m.starts_with(dir.path()))
                .count()
        };
        assert_eq!(below(), 3);
        unmount_all(dir.path()).unwrap();
        assert_eq!(below(), 0);
        unmount_all(dir.path()).unwrap();
        unmount(&a).unwrap();
    }
}
