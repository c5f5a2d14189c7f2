//! The OCI runtime config (`config.json`) of an instance, generated from the image config
//! and the instance spec: the process (arguments, environment with `PORT`, working
//! directory, user), cgroup limits (CPU quota from CPU units, memory with swap equal to
//! it, pids), a reduced capability set, no new privileges, runc's masked and read-only
//! kernel paths, the default seccomp profile, the hostname, generated `/etc/hosts`,
//! `/etc/resolv.conf` and `/etc/hostname`, and the instance's network namespace.

use crate::image::RunConfig;
use crate::seccomp;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxIdMappingBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder,
    RootBuilder, Spec, UserBuilder, get_default_mounts, get_default_namespaces,
    get_default_readonly_paths,
};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::collections::{BTreeSet, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The CFS period the CPU quota is expressed in (100 ms, the kernel's default).
pub const CPU_PERIOD: u64 = 100_000;
/// `PATH` for images that set none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The most open files an instance may have (less if runway's own hard limit is lower:
/// raising it needs `CAP_SYS_RESOURCE`, which runway may not hold).
pub const MAX_NOFILE: u64 = 65536;

/// The open-files limit instances get: [`MAX_NOFILE`], or this process's hard limit if
/// that is lower.
pub fn nofile_limit() -> u64 {
    let current = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    current
        .maximum
        .map_or(MAX_NOFILE, |hard| hard.min(MAX_NOFILE))
}

/// Why a config cannot be generated.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The image and spec give nothing to run.
    #[error("the image has neither Entrypoint nor Cmd, and no StartCommand was given")]
    NoCommand,
    /// The start command cannot be split into words.
    #[error("invalid StartCommand: {0}")]
    StartCommand(String),
    /// The image's user does not exist in the image.
    #[error("the image's user {user:?}: {reason}")]
    User { user: String, reason: String },
    #[error("cannot build the runtime config: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
}

type Result<T, E = SpecError> = std::result::Result<T, E>;

/// The capabilities an instance keeps: Docker's default set without `NET_RAW` (raw
/// packets, spoofing), `MKNOD`, `SETFCAP`, `AUDIT_WRITE` and `SYS_CHROOT`.
pub const CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::NetBindService,
];

/// Kernel paths hidden from instances (runc's and Docker's defaults).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// What the process of an instance runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// A host directory or file bind-mounted into a container (a job's dependency cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    /// The absolute path inside the container.
    pub destination: String,
    pub read_only: bool,
}

/// How a user namespace maps an instance's user and group ids to the host's: id `n`
/// (below `size`) is the host's `host + n`, so root in an instance is an unprivileged
/// id on the host. Ids outside the range are the namespace's `nobody` (65534).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMap {
    pub host: u32,
    pub size: u32,
}

/// The id ids outside a map's range become (`nobody`).
const OVERFLOW_ID: u32 = 65534;

impl IdMap {
    /// Host ids 1,000,000,000 to 1,000,065,535: far above users' ids and the ranges
    /// `/etc/subuid` hands out (100,000 on, 65,536 per user).
    pub const DEFAULT: IdMap = IdMap {
        host: 1_000_000_000,
        size: 65536,
    };

    /// The host's id for the instance's `id`.
    pub fn to_host(&self, id: u32) -> u32 {
        let id = if id < self.size {
            id
        } else {
            OVERFLOW_ID.min(self.size.saturating_sub(1))
        };
        self.host.saturating_add(id)
    }

    /// Whether the range fits in the ids the kernel has (the last is reserved).
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.size == 0
            || self
                .host
                .checked_add(self.size)
                .is_none_or(|end| end == u32::MAX)
        {
            return Err(format!(
                "user namespace range {}+{} does not fit in 32-bit ids",
                self.host, self.size
            ));
        }
        if self.host == 0 {
            return Err("user namespace range must not start at host id 0 (root)".into());
        }
        Ok(())
    }
}

/// Everything a config is generated from.
#[derive(Debug, Clone)]
pub struct BundleSpec<'a> {
    pub hostname: &'a str,
    pub process: ProcessSpec,
    /// The mounted root filesystem.
    pub rootfs: &'a Path,
    pub netns: &'a Path,
    /// The directory with the generated `hosts`, `resolv.conf` and `hostname`.
    pub etc: &'a Path,
    pub cgroups_path: &'a str,
    pub cpu_units: u32,
    pub memory_mb: u32,
    pub pids_limit: i64,
    /// The open-files limit (soft and hard).
    pub nofile: u64,
    /// Bind mounts besides the generated `/etc` files.
    pub mounts: &'a [BindMount],
    /// Run in a user namespace with this map; `None`: as the host's root.
    pub id_map: Option<IdMap>,
    /// A sysfs to bind at `/sys` instead of mounting one: a user namespace may not mount
    /// the sysfs of a network namespace it does not own (the instance's is the host's).
    pub sysfs: Option<&'a Path>,
}

/// The runtime config for `b`.
pub fn runtime_config(b: &BundleSpec<'_>) -> Result<Spec> {
    let caps: HashSet<Capability> = CAPABILITIES.iter().copied().collect();
    let capabilities = oci_spec::runtime::LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let p = &b.process;
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(p.args.clone())
        .env(p.env.clone())
        .cwd(p.cwd.clone())
        .user(
            UserBuilder::default()
                .uid(p.uid)
                .gid(p.gid)
                .additional_gids(p.additional_gids.clone())
                .build()?,
        )
        .no_new_privileges(true)
        .capabilities(capabilities)
        .rlimits(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(b.nofile)
                .hard(b.nofile)
                .build()?,
        ])
        .build()?;

    let mut mounts = get_default_mounts();
    if let Some(sysfs) = b.sysfs {
        for m in mounts
            .iter_mut()
            .filter(|m| m.destination() == Path::new("/sys"))
        {
            *m = MountBuilder::default()
                .destination("/sys")
                .typ("bind")
                .source(sysfs)
                .options(
                    ["rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"]
                        .map(String::from)
                        .to_vec(),
                )
                .build()?;
        }
    }
    for (file, dest) in [
        ("hosts", "/etc/hosts"),
        ("resolv.conf", "/etc/resolv.conf"),
        ("hostname", "/etc/hostname"),
    ] {
        mounts.push(
            MountBuilder::default()
                .destination(dest)
                .typ("bind")
                .source(b.etc.join(file))
                .options(
                    ["rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"]
                        .map(String::from)
                        .to_vec(),
                )
                .build()?,
        );
    }
    for m in b.mounts {
        let access = if m.read_only { "ro" } else { "rw" };
        mounts.push(
            MountBuilder::default()
                .destination(&m.destination)
                .typ("bind")
                .source(&m.source)
                .options(
                    ["rbind", "rprivate", access, "nosuid", "nodev"]
                        .map(String::from)
                        .to_vec(),
                )
                .build()?,
        );
    }

    let user = b
        .id_map
        .map(|_| {
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::User)
                .build()
        })
        .transpose()?;
    let namespaces = get_default_namespaces()
        .into_iter()
        .chain(user)
        .map(|ns| {
            if ns.typ() == LinuxNamespaceType::Network {
                LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::Network)
                    .path(b.netns.to_path_buf())
                    .build()
            } else {
                Ok(ns)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;

    let memory = i64::from(b.memory_mb) * 1024 * 1024;
    let resources = LinuxResourcesBuilder::default()
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()?,
        ])
        // Swap equal to the limit: an instance gets no swap, so exceeding its memory
        // is an OOM kill rather than a slow death.
        .memory(
            LinuxMemoryBuilder::default()
                .limit(memory)
                .swap(memory)
                .build()?,
        )
        .cpu(
            LinuxCpuBuilder::default()
                .quota(cpu_quota(b.cpu_units))
                .period(CPU_PERIOD)
                .shares(u64::from(b.cpu_units.max(2)))
                .build()?,
        )
        .pids(LinuxPidsBuilder::default().limit(b.pids_limit).build()?)
        .build()?;

    let mut linux = LinuxBuilder::default();
    if let Some(map) = b.id_map {
        let mapping = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(map.host)
            .size(map.size)
            .build()?;
        linux = linux
            .uid_mappings(vec![mapping])
            .gid_mappings(vec![mapping]);
    }
    let linux = linux
        .namespaces(namespaces)
        .resources(resources)
        .cgroups_path(PathBuf::from(b.cgroups_path))
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(get_default_readonly_paths())
        .seccomp(seccomp::profile()?)
        .build()?;

    let mut spec = Spec::default();
    spec.set_hostname(Some(b.hostname.to_string()))
        .set_process(Some(process))
        .set_root(Some(
            RootBuilder::default()
                .path(b.rootfs.to_path_buf())
                .readonly(false)
                .build()?,
        ))
        .set_mounts(Some(mounts))
        .set_linux(Some(linux));
    Ok(spec)
}

/// Whether `cpu_units` (1 to 65536: up to 64 CPUs) and `memory_mb` (at least 8) are
/// limits a container can be given; the message names the one that is not.
pub fn check_limits(cpu_units: u32, memory_mb: u32) -> Result<(), String> {
    if cpu_units == 0 || cpu_units > 64 * 1024 {
        return Err(format!("cpu units must be 1 to 65536, got {cpu_units}"));
    }
    if memory_mb < 8 {
        return Err(format!("memory must be at least 8 MB, got {memory_mb}"));
    }
    Ok(())
}

/// The CFS quota for `cpu_units` (1024 units = one CPU).
pub fn cpu_quota(cpu_units: u32) -> i64 {
    (i64::from(cpu_units) * CPU_PERIOD as i64 / 1024).max(1000)
}

/// The process arguments: the start command (through `/bin/sh -c` when the image has a
/// shell, split into words when it has not), else the image's entrypoint and command.
pub fn process_args(
    config: &RunConfig,
    start_command: Option<&str>,
    has_shell: bool,
) -> Result<Vec<String>> {
    if let Some(cmd) = start_command.filter(|c| !c.trim().is_empty()) {
        if has_shell {
            return Ok(vec!["/bin/sh".into(), "-c".into(), cmd.to_string()]);
        }
        let words = split_words(cmd).map_err(SpecError::StartCommand)?;
        return if words.is_empty() {
            Err(SpecError::NoCommand)
        } else {
            Ok(words)
        };
    }
    let args: Vec<String> = config
        .entrypoint
        .iter()
        .flatten()
        .chain(config.cmd.iter().flatten())
        .cloned()
        .collect();
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(args)
}

/// Splits a command line into words as a POSIX shell would, without expansions: single
/// quotes are literal, double quotes and backslashes escape.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(c) => word.push(c),
                    None => return Err("trailing backslash".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// The environment: the image's, then `HOSTNAME`, then the service's, then `PORT`; a
/// later value of a name replaces an earlier one, and `PATH` is set if nothing set it.
pub fn environment(
    image_env: &[String],
    env: &[(String, String)],
    hostname: &str,
    port: u16,
) -> Vec<String> {
    merged_environment(image_env, env, hostname, Some(port))
}

/// A job's environment: `HOSTNAME`, then the image's, then the job's; `PATH` is set if
/// nothing set it. No `PORT`: a job serves nothing.
pub fn job_environment(
    image_env: &[String],
    env: &[(String, String)],
    hostname: &str,
) -> Vec<String> {
    merged_environment(image_env, env, hostname, None)
}

fn merged_environment(
    image_env: &[String],
    env: &[(String, String)],
    hostname: &str,
    port: Option<u16>,
) -> Vec<String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        if let Some(slot) = out.iter_mut().find(|(name, _)| name == k) {
            slot.1 = v.to_string();
        } else {
            out.push((k.to_string(), v.to_string()));
        }
    };
    set("HOSTNAME", hostname);
    for e in image_env {
        if let Some((k, v)) = e.split_once('=') {
            set(k, v);
        }
    }
    for (k, v) in env {
        set(k, v);
    }
    if let Some(port) = port {
        set("PORT", &port.to_string());
    }
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.insert(0, ("PATH".to_string(), DEFAULT_PATH.to_string()));
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The working directory: the image's, made absolute, or `/`.
pub fn working_dir(config: &RunConfig) -> String {
    match config.working_dir.as_deref().map(str::trim) {
        Some(d) if d.starts_with('/') => d.to_string(),
        Some(d) if !d.is_empty() => format!("/{d}"),
        _ => "/".to_string(),
    }
}

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

fn open_root(rootfs: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    Ok(rustix::fs::open(
        rootfs,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Whether the image has `/bin/sh` (symlinks resolved inside the root filesystem).
pub fn has_shell(rootfs: &Path) -> bool {
    let Ok(root) = open_root(rootfs) else {
        return false;
    };
    rustix::fs::openat2(
        &root,
        "bin/sh",
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        IN_ROOT,
    )
    .is_ok()
}

/// Reads a small file of the root filesystem, symlinks resolved inside it.
fn read_in_root(rootfs: &Path, path: &str) -> Option<String> {
    let root = open_root(rootfs).ok()?;
    let fd = rustix::fs::openat2(
        &root,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        IN_ROOT,
    )
    .ok()?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(4 * 1024 * 1024)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The uid, gid and supplementary groups of the image's `User` (`name`, `uid`,
/// `name:group`, `uid:gid`, ...), with names looked up in the image's `/etc/passwd` and
/// `/etc/group`. An image that names no user runs as root.
pub fn resolve_user(user: Option<&str>, rootfs: &Path) -> Result<(u32, u32, Vec<u32>)> {
    let spec = user.map(str::trim).unwrap_or("");
    if spec.is_empty() {
        return Ok((0, 0, Vec::new()));
    }
    let err = |reason: &str| SpecError::User {
        user: spec.to_string(),
        reason: reason.to_string(),
    };
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_in_root(rootfs, "etc/passwd").unwrap_or_default();
    let group = read_in_root(rootfs, "etc/group").unwrap_or_default();
    // name:x:uid:gid:...
    let users: Vec<Vec<&str>> = passwd.lines().map(|l| l.split(':').collect()).collect();
    let groups: Vec<Vec<&str>> = group.lines().map(|l| l.split(':').collect()).collect();
    let entry = users
        .iter()
        .find(|f| f.len() >= 4 && (f[0] == u || f[2] == u));
    let (uid, name, primary) = match (u.parse::<u32>(), entry) {
        (Ok(uid), e) => (uid, e.map(|f| f[0]), e.and_then(|f| f[3].parse().ok())),
        (Err(_), Some(f)) => (
            f[2].parse()
                .map_err(|_| err("its passwd entry has no numeric uid"))?,
            Some(f[0]),
            f[3].parse().ok(),
        ),
        (Err(_), None) => return Err(err("no such user in the image's /etc/passwd")),
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| err("no such group in the image's /etc/group"))?,
        },
        None => primary.unwrap_or(0),
    };
    let mut extra = BTreeSet::new();
    if let (Some(name), None) = (name, g) {
        for f in &groups {
            if f.len() >= 4
                && f[3].split(',').any(|m| m == name)
                && let Ok(id) = f[2].parse::<u32>()
                && id != gid
            {
                extra.insert(id);
            }
        }
    }
    Ok((uid, gid, extra.into_iter().collect()))
}

#[cfg(test)]
mod tests;
