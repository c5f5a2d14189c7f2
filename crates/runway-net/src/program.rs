//! Running the kernel's configuration programs (`ip`, `nft`). Callers are blocking
//! threads: a program is never spawned from async code.

use std::io::Write;
use std::process::{Command, Stdio};

/// A program that failed or could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// The program could not be started (not installed?).
    #[error("cannot run {program}: {source} (is it installed?)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// The program ran and reported a failure.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
}

impl ProgramError {
    /// Whether the failure's message contains `text` (the programs' only error channel).
    pub fn says(&self, text: &str) -> bool {
        matches!(self, ProgramError::Failed { stderr, .. } if stderr.contains(text))
    }
}

/// Runs `program args...`, feeding `stdin` if given, and returns its standard output.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, ProgramError> {
    let command = format!("{program} {}", args.join(" "));
    tracing::trace!(%command, "running");
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ProgramError::Spawn {
            program: program.to_string(),
            source,
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A program that exits early closes the pipe; its exit status says why.
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|source| ProgramError::Spawn {
            program: program.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(ProgramError::Failed {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
