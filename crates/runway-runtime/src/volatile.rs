//! Where the bundles of instances with secrets live: a tmpfs of the runtime's own
//! (`/run/runway/<bridge>`, mode 0700), so the OCI configuration that holds their secret
//! environment is in memory only, never on a disk. It outlives runway (restarts of
//! crashed containers and adoption after a restart of runway find it), but not the
//! host: after a reboot such an instance has no configuration left, and is given up so
//! that the controller starts a new one with its secrets read again.
//!
//! (Memory may still be swapped; on a host with swap, encrypt it.)

use crate::RuntimeError;
use std::path::Path;

/// `statfs` magic numbers of the file systems that keep files in memory only.
const TMPFS_MAGIC: u64 = 0x0102_1994;
const RAMFS_MAGIC: u64 = 0x8584_58f6;

type Result<T, E = RuntimeError> = std::result::Result<T, E>;

fn io(context: String) -> impl FnOnce(std::io::Error) -> RuntimeError {
    move |source| RuntimeError::Io { context, source }
}

/// Whether `path` is on a file system that keeps files in memory.
pub fn in_memory(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|s| {
        let kind = s.f_type as u64;
        kind == TMPFS_MAGIC || kind == RAMFS_MAGIC
    })
}

/// Makes `root` a directory (0700) on a tmpfs: mounts one unless it already is.
pub fn ensure(root: &Path) -> Result<()> {
    std::fs::create_dir_all(root).map_err(io(format!("cannot create {}", root.display())))?;
    let mounted = crate::rootfs::is_mounted(root);
    if !mounted || !in_memory(root) {
        rustix::mount::mount(
            "tmpfs",
            root,
            "tmpfs",
            rustix::mount::MountFlags::NOSUID
                | rustix::mount::MountFlags::NODEV
                | rustix::mount::MountFlags::NOEXEC,
            Some(c"mode=0700,size=64m"),
        )
        .map_err(|e| RuntimeError::Io {
            context: format!("cannot mount a tmpfs on {}", root.display()),
            source: e.into(),
        })?;
    }
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(io(format!("cannot restrict {}", root.display())))
}

/// Unmounts and removes `root` (nothing it held is kept). Safe when it is gone.
pub fn remove(root: &Path) -> Result<()> {
    crate::rootfs::unmount(root)?;
    match std::fs::remove_dir_all(root) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("cannot remove {}", root.display()))(e)),
    }
}
