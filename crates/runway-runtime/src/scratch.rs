//! Each instance's ephemeral storage (App Runner gives an instance 3 GB): what it writes
//! to its root file system and `/tmp` lands in a file system of its own, as large as
//! the instance's limit, so a full disk fails the instance's writes (`ENOSPC`), never
//! the host's or another instance's.
//!
//! The file system is ext4 in a sparse file in the instance's directory, mounted through
//! a loop device (`mount -o loop`, which releases the device on unmount); the root file
//! system's overlay takes its upper and work directories from it. It costs the host
//! only what is written (mounted with `discard`, deleted files give their blocks back),
//! and about 60 ms to make. A size-limited directory is the nearest real thing to a
//! filesystem quota that works on every kernel: project quotas need XFS or ext4 quota
//! support built in, which not every kernel has (this project's machines lack both).
//!
//! Blocking: `mkfs.ext4` and `mount` are run from the caller's thread.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What can go wrong making or mounting the storage.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error("cannot run {program}: {source} (is it installed?)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {message}")]
    Failed { command: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

type Result<T, E = ScratchError> = std::result::Result<T, E>;

/// The file the storage lives in, in an instance's directory.
const IMAGE: &str = "scratch.img";
/// Where it is mounted, in an instance's directory.
const MOUNT: &str = "scratch";

/// The upper and work directories of an instance's overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scratch {
    pub upper: PathBuf,
    pub work: PathBuf,
}

fn run(program: &str, args: &[&std::ffi::OsStr]) -> Result<()> {
    let command = format!(
        "{program} {}",
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| ScratchError::Spawn {
            program: program.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(ScratchError::Failed {
            command,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> ScratchError {
    move |source| ScratchError::Io { context, source }
}

/// Makes (if missing) and mounts (if not mounted) the ephemeral storage of the instance
/// whose directory is `dir`, `bytes` large, with the overlay's directories in it owned
/// by `owner` (the instance's root as the host sees it). Safe to repeat, and after a
/// reboot of the host (the file is mounted again, with what was written in it).
pub fn ensure(dir: &Path, bytes: u64, owner: (u32, u32)) -> Result<Scratch> {
    let image = dir.join(IMAGE);
    let mount = dir.join(MOUNT);
    if !crate::rootfs::is_mounted(&mount) {
        if !image.exists() {
            make(&image, bytes)?;
        }
        std::fs::create_dir_all(&mount)
            .map_err(io(format!("cannot create {}", mount.display())))?;
        run(
            "mount",
            &[
                "-t".as_ref(),
                "ext4".as_ref(),
                "-o".as_ref(),
                "loop,discard,nosuid,nodev".as_ref(),
                image.as_os_str(),
                mount.as_os_str(),
            ],
        )?;
    }
    let scratch = Scratch {
        upper: mount.join("upper"),
        work: mount.join("work"),
    };
    for d in [&scratch.upper, &scratch.work] {
        std::fs::create_dir_all(d).map_err(io(format!("cannot create {}", d.display())))?;
    }
    // The overlay's root directory is the upper directory's: the instance's root owns
    // it, as it owns `/` in any image.
    let (uid, gid) = owner;
    std::os::unix::fs::chown(&scratch.upper, Some(uid), Some(gid))
        .map_err(io(format!("cannot chown {}", scratch.upper.display())))?;
    std::fs::set_permissions(
        &scratch.upper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .map_err(io(format!(
        "cannot set the mode of {}",
        scratch.upper.display()
    )))?;
    Ok(scratch)
}

/// Makes the sparse file and its file system: no blocks reserved for root (the
/// instance gets the whole size), inode tables initialised lazily (fast to make).
fn make(image: &Path, bytes: u64) -> Result<()> {
    let tmp = image.with_extension("img.tmp");
    let file =
        std::fs::File::create(&tmp).map_err(io(format!("cannot create {}", tmp.display())))?;
    file.set_len(bytes)
        .map_err(io(format!("cannot size {}", tmp.display())))?;
    drop(file);
    run(
        "mkfs.ext4",
        &[
            "-q".as_ref(),
            "-F".as_ref(),
            "-m".as_ref(),
            "0".as_ref(),
            "-E".as_ref(),
            "lazy_itable_init=1,lazy_journal_init=1,nodiscard".as_ref(),
            tmp.as_os_str(),
        ],
    )?;
    // Only a whole file system is ever mounted.
    std::fs::rename(&tmp, image).map_err(io(format!("cannot rename {}", tmp.display())))
}
