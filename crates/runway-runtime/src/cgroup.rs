//! Reading instances' cgroups, on cgroup v1 (including the hybrid layout, where the
//! controllers are v1 hierarchies and a v2 hierarchy sits at `/sys/fs/cgroup/unified`)
//! and on cgroup v2. runc creates and limits the cgroups; this module reads what the
//! kernel recorded (OOM kills, the CPU quota, the memory limit) and removes what is left.
//!
//! The layout is decided as runc decides it: v2 when `/sys/fs/cgroup` itself is a cgroup2
//! mount, v1 otherwise.
//!
//! The one cgroup this module writes is the parent of every instance's and job's: its
//! [`Limits`] cap what all of them use together, so that tenants can never take the
//! memory, CPU or process table the host and runway itself need.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What can go wrong reading cgroups.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup hierarchy that runc could use is mounted.
    #[error("no cgroup hierarchy is mounted at /sys/fs/cgroup")]
    NotMounted,
    /// A controller this runtime needs is not mounted (cgroup v1).
    #[error("the {0} cgroup controller is not mounted")]
    NoController(String),
    /// A cgroup file could not be read or did not hold what the kernel writes there.
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    /// A cgroup could not be made or limited.
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// What all instances (and builds) together may use: the limits of their parent cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    /// CPU in App Runner's units (1024 is one CPU).
    pub cpu_units: u32,
    pub pids: u64,
}

impl Limits {
    /// Limits that leave the host and runway room: memory but the larger of 1 GiB and a
    /// tenth of it, every CPU but half of one (at least half a CPU), and half of the
    /// processes the kernel allows.
    pub fn host_defaults() -> Limits {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let total = keyed(&meminfo, "MemTotal:").map_or(4 << 30, |kib| kib * 1024);
        let memory_bytes = total
            .saturating_sub((1u64 << 30).max(total / 10))
            .max(256 << 20);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        let cpu_units = (cpus * 1024).saturating_sub(512).max(512);
        let number = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
        };
        let threads = number("/proc/sys/kernel/threads-max")
            .into_iter()
            .chain(number("/proc/sys/kernel/pid_max"))
            .min()
            .unwrap_or(32768);
        Limits {
            memory_bytes,
            cpu_units,
            pids: (threads / 2).max(64),
        }
    }
}

type Result<T, E = CgroupError> = std::result::Result<T, E>;

/// The mounted cgroup hierarchies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// One hierarchy per controller (`memory` at `/sys/fs/cgroup/memory`, ...), and the
    /// v2 hierarchy if the layout is hybrid.
    V1 {
        controllers: BTreeMap<String, PathBuf>,
        unified: Option<PathBuf>,
    },
    /// The unified hierarchy.
    V2 { root: PathBuf },
}

/// A CPU limit: `quota` microseconds of CPU time per `period` (`None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuLimit {
    pub quota: Option<u64>,
    pub period: u64,
}

const ROOT: &str = "/sys/fs/cgroup";

impl Cgroups {
    /// The hierarchies mounted in this process's mount namespace.
    pub fn detect() -> Result<Cgroups> {
        let info =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| CgroupError::Read {
                path: "/proc/self/mountinfo".into(),
                reason: e.to_string(),
            })?;
        Cgroups::parse(&info)
    }

    /// The hierarchies described by a `/proc/self/mountinfo` text.
    pub fn parse(mountinfo: &str) -> Result<Cgroups> {
        let mut controllers = BTreeMap::new();
        let mut unified = None;
        for line in mountinfo.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(sep) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            let (Some(mount_point), Some(fstype), Some(options)) =
                (fields.get(4), fields.get(sep + 1), fields.get(sep + 3))
            else {
                continue;
            };
            match *fstype {
                "cgroup2" => {
                    if *mount_point == ROOT {
                        return Ok(Cgroups::V2 {
                            root: PathBuf::from(ROOT),
                        });
                    }
                    unified = Some(PathBuf::from(mount_point));
                }
                "cgroup" => {
                    for opt in options.split(',') {
                        // Mount options, not hierarchies; `name=systemd` is a hierarchy.
                        if matches!(
                            opt,
                            "rw" | "ro"
                                | "xattr"
                                | "noprefix"
                                | "clone_children"
                                | "cpuset_v2_mode"
                                | "none"
                                | "all"
                        ) || opt.starts_with("release_agent=")
                        {
                            continue;
                        }
                        controllers.insert(opt.to_string(), PathBuf::from(mount_point));
                    }
                }
                _ => {}
            }
        }
        if controllers.is_empty() {
            return Err(CgroupError::NotMounted);
        }
        Ok(Cgroups::V1 {
            controllers,
            unified,
        })
    }

    pub fn is_v2(&self) -> bool {
        matches!(self, Cgroups::V2 { .. })
    }

    /// The directory of cgroup `path` (as in the OCI `cgroupsPath`) for `controller`.
    pub fn dir(&self, controller: &str, path: &str) -> Result<PathBuf> {
        let rel = path.trim_start_matches('/');
        match self {
            Cgroups::V2 { root } => Ok(root.join(rel)),
            Cgroups::V1 { controllers, .. } => controllers
                .get(controller)
                .map(|m| m.join(rel))
                .ok_or_else(|| CgroupError::NoController(controller.to_string())),
        }
    }

    /// Every directory of cgroup `path`, one per hierarchy.
    pub fn dirs(&self, path: &str) -> Vec<PathBuf> {
        let rel = path.trim_start_matches('/');
        match self {
            Cgroups::V2 { root } => vec![root.join(rel)],
            Cgroups::V1 {
                controllers,
                unified,
            } => {
                let mut mounts: Vec<&PathBuf> = controllers.values().collect();
                mounts.extend(unified);
                mounts.sort();
                mounts.dedup();
                mounts.into_iter().map(|m| m.join(rel)).collect()
            }
        }
    }

    /// How many times the kernel's OOM killer killed a process of cgroup `path`.
    pub fn oom_kills(&self, path: &str) -> Result<u64> {
        let file = match self {
            Cgroups::V2 { .. } => self.dir("memory", path)?.join("memory.events"),
            Cgroups::V1 { .. } => self.dir("memory", path)?.join("memory.oom_control"),
        };
        let text = read(&file)?;
        keyed(&text, "oom_kill").ok_or_else(|| CgroupError::Read {
            path: file,
            reason: "no oom_kill counter".into(),
        })
    }

    /// The CPU limit of cgroup `path`.
    pub fn cpu_limit(&self, path: &str) -> Result<CpuLimit> {
        match self {
            Cgroups::V2 { .. } => {
                let file = self.dir("cpu", path)?.join("cpu.max");
                let text = read(&file)?;
                let mut parts = text.split_whitespace();
                let (Some(quota), Some(period)) = (parts.next(), parts.next()) else {
                    return Err(bad(&file, &text));
                };
                Ok(CpuLimit {
                    quota: if quota == "max" {
                        None
                    } else {
                        Some(quota.parse().map_err(|_| bad(&file, &text))?)
                    },
                    period: period.parse().map_err(|_| bad(&file, &text))?,
                })
            }
            Cgroups::V1 { .. } => {
                let dir = self.dir("cpu", path)?;
                let quota_file = dir.join("cpu.cfs_quota_us");
                let quota_text = read(&quota_file)?;
                let quota: i64 = quota_text
                    .trim()
                    .parse()
                    .map_err(|_| bad(&quota_file, &quota_text))?;
                let period_file = dir.join("cpu.cfs_period_us");
                let period_text = read(&period_file)?;
                Ok(CpuLimit {
                    quota: u64::try_from(quota).ok(),
                    period: period_text
                        .trim()
                        .parse()
                        .map_err(|_| bad(&period_file, &period_text))?,
                })
            }
        }
    }

    /// The memory limit of cgroup `path` in bytes (`None`: unlimited).
    pub fn memory_limit(&self, path: &str) -> Result<Option<u64>> {
        let file = match self {
            Cgroups::V2 { .. } => self.dir("memory", path)?.join("memory.max"),
            Cgroups::V1 { .. } => self.dir("memory", path)?.join("memory.limit_in_bytes"),
        };
        let text = read(&file)?;
        let text = text.trim();
        if text == "max" {
            return Ok(None);
        }
        let limit: u64 = text.parse().map_err(|_| bad(&file, text))?;
        // cgroup v1 writes "no limit" as the largest page-aligned i64.
        Ok((limit < (i64::MAX as u64 & !4095)).then_some(limit))
    }

    /// Makes cgroup `path` (if missing) and gives it `limits`. A limit the kernel refuses
    /// (lower than a running child's CPU quota on cgroup v1, lower than what is in use)
    /// is reported, and the others are still set.
    pub fn limit(&self, path: &str, limits: &Limits) -> Result<()> {
        let quota = crate::spec::cpu_quota(limits.cpu_units);
        let period = crate::spec::CPU_PERIOD;
        let files: Vec<(&str, &str, String)> = match self {
            Cgroups::V2 { .. } => vec![
                ("memory", "memory.max", limits.memory_bytes.to_string()),
                ("cpu", "cpu.max", format!("{quota} {period}")),
                ("pids", "pids.max", limits.pids.to_string()),
            ],
            Cgroups::V1 { .. } => vec![
                (
                    "memory",
                    "memory.limit_in_bytes",
                    limits.memory_bytes.to_string(),
                ),
                ("cpu", "cpu.cfs_period_us", period.to_string()),
                ("cpu", "cpu.cfs_quota_us", quota.to_string()),
                ("pids", "pids.max", limits.pids.to_string()),
            ],
        };
        if let Cgroups::V2 { root } = self {
            // The controllers must be enabled for the children of the root first.
            let control = root.join("cgroup.subtree_control");
            write(&control, "+memory +cpu +pids")?;
        }
        let mut refused = Vec::new();
        for (controller, file, value) in files {
            let dir = self.dir(controller, path)?;
            std::fs::create_dir_all(&dir).map_err(|e| CgroupError::Write {
                path: dir.clone(),
                reason: e.to_string(),
            })?;
            if let Err(e) = write(&dir.join(file), &value) {
                refused.push(e.to_string());
            }
        }
        if let Cgroups::V2 { .. } = self {
            // Instances' cgroups are made below it by the OCI runtime.
            let control = self.dir("cpu", path)?.join("cgroup.subtree_control");
            write(&control, "+memory +cpu +pids")?;
        }
        if refused.is_empty() {
            Ok(())
        } else {
            Err(CgroupError::Write {
                path: PathBuf::from(path),
                reason: refused.join("; "),
            })
        }
    }

    /// Whether cgroup `path` exists in any hierarchy.
    pub fn exists(&self, path: &str) -> bool {
        self.dirs(path).iter().any(|d| d.is_dir())
    }

    /// Removes cgroup `path` (which must hold no process) from every hierarchy.
    pub fn remove(&self, path: &str) {
        for dir in self.dirs(path) {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::debug!(dir = %dir.display(), error = %e, "cannot remove cgroup"),
            }
        }
    }

    /// The child cgroups of `path` (their names), in any hierarchy.
    pub fn children(&self, path: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .dirs(path)
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| CgroupError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| CgroupError::Write {
        path: path.to_path_buf(),
        reason: format!("{value:?}: {e}"),
    })
}

fn bad(path: &Path, text: &str) -> CgroupError {
    CgroupError::Read {
        path: path.to_path_buf(),
        reason: format!("unexpected content {:?}", text.trim()),
    }
}

/// The value of `key` in a flat keyed file (`key value` lines).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(key)).then(|| parts.next()?.parse().ok())?
    })
}

#[cfg(test)]
mod tests;
