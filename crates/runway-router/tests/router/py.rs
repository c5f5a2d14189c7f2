//! Real clients and servers written in Python (`h2`, `websockets`, `grpcio`), run by the
//! tests as child processes: scripts in `tests/router/py/`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// A script of `tests/router/py/`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/router/py")
        .join(name)
}

/// What a script printed and whether it succeeded.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `name` with `args` to its end (60 s at most).
pub async fn run(name: &str, args: &[&str]) -> Run {
    let child = Command::new("python3")
        .arg(script(name))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the script finished within 60 s")
        .expect("the script's output");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A script running in the background, read line by line; killed when dropped.
pub struct Running {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Running {
    /// Starts `name` with `args`.
    pub fn start(name: &str, args: &[&str]) -> Running {
        let mut child = Command::new("python3")
            .arg(script(name))
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3");
        let stdout = child.stdout.take().expect("stdout");
        Running {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// The next line it prints (30 s at most), or None at its end.
    pub async fn line(&mut self) -> Option<String> {
        tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .expect("a line within 30 s")
            .expect("stdout")
    }
}

/// A server script that prints `port N` once it listens on 127.0.0.1.
pub struct Server {
    pub running: Running,
    pub addr: SocketAddr,
}

impl Server {
    pub async fn start(name: &str, args: &[&str]) -> Server {
        let mut running = Running::start(name, args);
        let line = running.line().await.expect("the server's port");
        let port: u16 = line
            .strip_prefix("port ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("expected `port N`, got {line:?}"));
        Server {
            running,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// This server as a route endpoint called `instance_id`.
    pub fn endpoint(&self, instance_id: &str) -> runway_router::Endpoint {
        runway_router::Endpoint {
            instance_id: instance_id.to_string(),
            addr: self.addr,
        }
    }
}
