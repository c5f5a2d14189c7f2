//! The OCI runtime program (runc by default; crun, youki or runsc where installed), with
//! its state in a root directory of runway's own. Every call spawns the program, so
//! callers are blocking threads, never async code.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The OCI runtime program failed.
#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {message}")]
    Failed { command: String, message: String },
    #[error("{program} printed unexpected state: {reason}")]
    Output { program: String, reason: String },
}

type Result<T, E = RuncError> = std::result::Result<T, E>;

/// A container as the OCI runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub pid: i32,
    /// `created`, `running`, `paused` or `stopped`.
    pub status: String,
}

/// The OCI runtime program and its state directory.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    program: PathBuf,
    root: PathBuf,
}

/// What runc says when a container it is asked about is gone.
fn is_gone(message: &str) -> bool {
    message.contains("does not exist")
        || message.contains("not running")
        || message.contains("no such")
}

impl OciRuntime {
    pub fn new(program: &Path, root: &Path) -> OciRuntime {
        OciRuntime {
            program: program.to_path_buf(),
            root: root.to_path_buf(),
        }
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A command for the program with runway's state root.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.arg("--root").arg(&self.root);
        c
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let command = format!("{} {}", self.program.display(), args.join(" "));
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| RuncError::Spawn {
                program: self.program.display().to_string(),
                source,
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // runc logs as `time=... level=error msg="..."`; the message is what matters.
            let message = stderr
                .split("msg=")
                .nth(1)
                .map(|m| m.trim().trim_matches('"').to_string())
                .unwrap_or_else(|| stderr.trim().to_string());
            return Err(RuncError::Failed { command, message });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The state of container `id`, or `None` if it does not exist.
    pub fn state(&self, id: &str) -> Result<Option<ContainerState>> {
        match self.run(&["state", id]) {
            Ok(out) => serde_json::from_str(&out)
                .map(Some)
                .map_err(|e| RuncError::Output {
                    program: self.program.display().to_string(),
                    reason: e.to_string(),
                }),
            Err(RuncError::Failed { message, .. }) if is_gone(&message) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends `signal` (`TERM`, `KILL`) to container `id`'s init process; a container
    /// that is gone or not running is not an error.
    pub fn kill(&self, id: &str, signal: &str) -> Result<()> {
        match self.run(&["kill", id, signal]) {
            Err(RuncError::Failed { message, .. }) if is_gone(&message) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Removes container `id` (killing it if it runs) and its cgroup; a missing one is
    /// not an error.
    pub fn delete(&self, id: &str) -> Result<()> {
        match self.run(&["delete", "--force", id]) {
            Err(RuncError::Failed { message, .. }) if is_gone(&message) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Every container in the state root.
    pub fn list(&self) -> Result<Vec<ContainerState>> {
        if !self.root.exists() {
            return Ok(Vec::new());
        }
        let out = self.run(&["list", "--format", "json"])?;
        let list: Option<Vec<ContainerState>> =
            serde_json::from_str(out.trim()).map_err(|e| RuncError::Output {
                program: self.program.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok(list.unwrap_or_default())
    }
}
