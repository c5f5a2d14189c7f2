//! The instance shim: a small process per running container (like conmon or
//! containerd-shim) that outlives the runway server. It starts the container with
//! `runc run --detach`, becomes its parent (as child subreaper), copies its stdout and
//! stderr into the instance's rotated log file with timestamps, and when the container
//! exits records the exit code or signal and whether the kernel OOM-killed it, removes
//! the container, and exits.
//!
//! The runtime starts it with the instance directory as its only argument (the shim
//! reads `shim.json` there) and reads one line from its stdout: `started <pid>` or
//! `failed <reason>`. The shim's own diagnostics go to its stderr (`shim.log`).
//!
//! A job's shim (`lifeline` set) also watches its standard input, a pipe whose other
//! end the runtime holds: when it closes (the runtime removed the job, or died) the
//! shim kills the container, so a job never outlives the process that wanted it.
//!
//! Run it as `runway shim DIR` (the runway binary) or `runway-shim DIR` (this crate's
//! binary, for tests). It must never depend on the runway server being alive.

use crate::cgroup::Cgroups;
use crate::logs::{LOG_FILE, LogWriter, Stream};
use crate::runc::OciRuntime;
use runway_model::Timestamp;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The shim's configuration, in the instance directory.
pub const CONFIG_FILE: &str = "shim.json";
/// The shim's pid, written when it starts.
pub const PID_FILE: &str = "shim.pid";
/// How the container ended, written when it exits.
pub const EXIT_FILE: &str = "exit.json";
/// The container's init pid, as runc wrote it.
pub const CONTAINER_PID_FILE: &str = "container.pid";
/// runc's own log.
pub const RUNC_LOG: &str = "runc.log";

/// How long the shim waits for the pipes to drain after the container's init exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What the shim needs to run one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimConfig {
    /// The container id (the instance id).
    pub id: String,
    pub bundle: PathBuf,
    pub oci_runtime: PathBuf,
    /// The OCI runtime's state root.
    pub oci_root: PathBuf,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    /// The container's cgroup, to read OOM kills from.
    pub cgroups_path: String,
    /// Kill the container when standard input reaches its end (jobs).
    #[serde(default)]
    pub lifeline: bool,
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// The exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Whether the kernel's OOM killer killed a process of the container.
    pub oom_killed: bool,
    pub at: Timestamp,
}

impl Exit {
    /// A one-line reason: `exit code 3`, `killed by signal 9 (OOM)`.
    pub fn reason(&self) -> String {
        let base = match (self.code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "ended, status unknown".to_string(),
        };
        if self.oom_killed {
            format!("{base} (out of memory)")
        } else {
            base
        }
    }
}

/// The shim's entry point; `args` are the arguments after the program (or subcommand)
/// name.
pub fn main(mut args: impl Iterator<Item = OsString>) -> ExitCode {
    let Some(dir) = args.next() else {
        eprintln!("usage: runway shim INSTANCE_DIR");
        return ExitCode::FAILURE;
    };
    let dir = PathBuf::from(dir);
    let mut stdout = std::io::stdout();
    match start(&dir) {
        Ok(started) => {
            let _ = writeln!(stdout, "started {}", started.pid);
            let _ = stdout.flush();
            if started.config.lifeline {
                watch_lifeline(started.pid);
            }
            supervise(&dir, started);
            ExitCode::SUCCESS
        }
        Err(reason) => {
            let reason = reason.replace('\n', " ");
            eprintln!("runway shim: {reason}");
            let _ = writeln!(stdout, "failed {reason}");
            let _ = stdout.flush();
            ExitCode::FAILURE
        }
    }
}

struct Started {
    config: ShimConfig,
    pid: i32,
    copiers: Vec<std::thread::JoinHandle<()>>,
}

fn start(dir: &Path) -> Result<Started, String> {
    let text = std::fs::read(dir.join(CONFIG_FILE))
        .map_err(|e| format!("cannot read {}: {e}", dir.join(CONFIG_FILE).display()))?;
    let config: ShimConfig =
        serde_json::from_slice(&text).map_err(|e| format!("invalid {CONFIG_FILE}: {e}"))?;
    // The container's init is reparented to the shim when runc exits.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(|e| format!("cannot become a child subreaper: {e}"))?;
    runway_store::fs::write_atomic(
        &dir.join(PID_FILE),
        std::process::id().to_string().as_bytes(),
        0o644,
    )
    .map_err(|e| e.to_string())?;
    for stale in [EXIT_FILE, CONTAINER_PID_FILE] {
        let _ = std::fs::remove_file(dir.join(stale));
    }

    let log = LogWriter::open(
        &dir.join(LOG_FILE),
        config.log_max_bytes,
        config.log_max_files,
    )
    .map_err(|e| format!("cannot open the log: {e}"))?;
    let log = Arc::new(Mutex::new(log));
    let pipe = || {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| format!("cannot create a pipe: {e}"))
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let copiers = vec![
        copy_lines(out_r, Stream::Stdout, log.clone()),
        copy_lines(err_r, Stream::Stderr, log),
    ];

    let runc = OciRuntime::new(&config.oci_runtime, &config.oci_root);
    // A leftover container of the same id (a crash before its shim removed it) would
    // make `run` fail.
    if config.oci_root.join(&config.id).exists() {
        let _ = runc.delete(&config.id);
    }
    let status = runc
        .command()
        .arg("--log")
        .arg(dir.join(RUNC_LOG))
        .arg("--log-format")
        .arg("json")
        .arg("run")
        // No session keyring per container: the seccomp profile denies the keyring calls
        // anyway, and in user namespaces every instance's root is one host user, whose
        // key quota (kernel.keys.maxkeys, 200) a keyring each used up at the 200th.
        .arg("--no-new-keyring")
        .arg("--detach")
        .arg("--pid-file")
        .arg(dir.join(CONTAINER_PID_FILE))
        .arg("--bundle")
        .arg(&config.bundle)
        .arg(&config.id)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .status()
        .map_err(|e| format!("cannot run {}: {e}", config.oci_runtime.display()))?;
    if !status.success() {
        let _ = runc.delete(&config.id);
        return Err(format!(
            "{} run failed ({status}): {}",
            config.oci_runtime.display(),
            last_runc_error(&dir.join(RUNC_LOG))
        ));
    }
    let pid: i32 = std::fs::read_to_string(dir.join(CONTAINER_PID_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| "runc did not write the container's pid".to_string())?;
    Ok(Started {
        config,
        pid,
        copiers,
    })
}

/// The last error message in runc's JSON log.
fn last_runc_error(path: &Path) -> String {
    #[derive(Deserialize)]
    struct Entry {
        level: String,
        msg: String,
    }
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
        .find(|e| e.level == "error" || e.level == "fatal")
        .map(|e| e.msg)
        .unwrap_or_else(|| "no error message".to_string())
}

/// Copies lines from `pipe` into the log until every writer closed it.
fn copy_lines(
    pipe: OwnedFd,
    stream: Stream,
    log: Arc<Mutex<LogWriter>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::with_capacity(64 * 1024, std::fs::File::from(pipe));
        let mut line = Vec::new();
        loop {
            line.clear();
            // Bounded, so a line without a newline cannot grow without limit.
            match (&mut reader).take(64 * 1024).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let now = SystemTime::now();
            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
            let result = match line.strip_suffix(b"\n") {
                Some(complete) => log.line(stream, complete, now),
                None => log.part(stream, &line, now),
            };
            if let Err(e) = result {
                eprintln!("runway shim: cannot write the log: {e}");
            }
        }
    })
}

/// Kills the container's init (and so, its PID namespace ending, every process of the
/// container) once standard input reaches its end. The pidfd is opened before the init
/// is reaped, so a recycled pid is never signalled.
fn watch_lifeline(pid: i32) {
    let Some(p) = rustix::process::Pid::from_raw(pid) else {
        return;
    };
    let pidfd = match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => Some(fd),
        // Gone already: nothing to kill.
        Err(rustix::io::Errno::SRCH) => return,
        // A kernel without pidfds (before 5.3): the pid, while the init is unreaped.
        Err(_) => None,
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin().lock();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        eprintln!("runway shim: the runtime let go of this job; killing its container");
        match &pidfd {
            Some(fd) => {
                let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
            }
            None => {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
        }
    });
}

/// Waits for the container's init to exit, then records how and removes the container.
fn supervise(dir: &Path, started: Started) {
    let Started {
        config,
        pid,
        copiers,
    } = started;
    let status = wait_for(pid);
    let cgroups = Cgroups::detect();
    let oom_killed = cgroups
        .as_ref()
        .ok()
        .and_then(|c| c.oom_kills(&config.cgroups_path).ok())
        .is_some_and(|n| n > 0);
    let exit = Exit {
        code: status.and_then(|s| s.exit_status()),
        signal: status.and_then(|s| s.terminating_signal()),
        oom_killed,
        at: Timestamp::now(),
    };
    // The pipes close when the container's last process is gone; a process that escaped
    // the container's namespace must not keep the shim forever.
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    for copier in copiers {
        while !copier.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if copier.is_finished() {
            let _ = copier.join();
        }
    }
    let runc = OciRuntime::new(&config.oci_runtime, &config.oci_root);
    if let Err(e) = runc.delete(&config.id) {
        eprintln!("runway shim: cannot delete container {}: {e}", config.id);
    }
    let body = serde_json::to_vec(&exit).unwrap_or_default();
    if let Err(e) = runway_store::fs::write_atomic(&dir.join(EXIT_FILE), &body, 0o644) {
        eprintln!("runway shim: cannot record the exit: {e}");
    }
}

/// Reaps children until `pid` exits; its wait status, or `None` if it was not this
/// process's child (then its end is only observed).
fn wait_for(pid: i32) -> Option<rustix::process::WaitStatus> {
    use rustix::io::Errno;
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(Some((reaped, status))) if reaped.as_raw_nonzero().get() == pid => {
                return Some(status);
            }
            Ok(_) | Err(Errno::INTR) => continue,
            Err(_) => {
                // Not our child (no subreaper?): watch for it to disappear.
                while Path::new(&format!("/proc/{pid}")).exists() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                return None;
            }
        }
    }
}

/// Whether process `pid` is a shim serving `dir` (guards against a recycled pid).
pub fn is_shim_of(pid: i32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let want = dir.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == want)
}

/// The pid of the shim serving `dir`, if one runs.
pub fn running_shim(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    is_shim_of(pid, dir).then_some(pid)
}

/// The exit the shim recorded in `dir`, if any.
pub fn recorded_exit(dir: &Path) -> Option<Exit> {
    serde_json::from_slice(&std::fs::read(dir.join(EXIT_FILE)).ok()?).ok()
}
