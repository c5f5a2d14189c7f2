//! Fetching sources with the `git` program: a shallow fetch of one branch into a
//! per-service repository kept between builds (so a rebuild fetches only what changed),
//! checked out at the fetched commit; and `git ls-remote` to see whether a branch moved.
//!
//! Credentials never appear on a command line, in a URL or in a log: a token reaches git
//! through an askpass helper reading it from git's environment (only when the server asks
//! for it), an ssh key through a temporary 0600 file named in `GIT_SSH_COMMAND`. git runs
//! with its own `HOME`, no system configuration, no terminal prompts and only the
//! `file`, `git`, `http`, `https` and `ssh` transports. Everything here blocks: callers
//! run it on blocking threads.

use crate::source::{GitCredentials, Source, SourceError, io_err, redact_url};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The ref the fetched branch is stored under in the cache repository.
const SOURCE_REF: &str = "refs/runway/source";
/// The most output of one git command kept (for errors and `ls-remote`).
const MAX_OUTPUT: usize = 1 << 20;

/// Where git keeps its state: the askpass helper, `HOME` and ssh's known hosts.
#[derive(Debug, Clone)]
pub struct GitEnv {
    dir: PathBuf,
    pub timeout: Duration,
}

/// A fetched commit, checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The repository's working tree, at `commit`.
    pub dir: PathBuf,
    /// The commit's full sha.
    pub commit: String,
}

const ASKPASS: &str = "#!/bin/sh\n\
case \"$1\" in\n\
  Username*) printf '%s\\n' \"$RUNWAY_GIT_USERNAME\" ;;\n\
  *) printf '%s\\n' \"$RUNWAY_GIT_PASSWORD\" ;;\n\
esac\n";

impl GitEnv {
    /// Prepares `dir` (created, mode 0700) for running git.
    pub fn open(dir: &Path, timeout: Duration) -> Result<GitEnv, SourceError> {
        use std::os::unix::fs::PermissionsExt;
        fs::create_dir_all(dir.join("home"))
            .map_err(io_err(format!("cannot create {}", dir.display())))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("cannot restrict {}", dir.display())))?;
        let askpass = dir.join("askpass");
        if fs::read(&askpass).ok().as_deref() != Some(ASKPASS.as_bytes()) {
            let tmp = dir.join(format!(".askpass.{}", uuid::Uuid::new_v4().simple()));
            fs::write(&tmp, ASKPASS).map_err(io_err("cannot write git's askpass helper"))?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o700))
                .map_err(io_err("cannot write git's askpass helper"))?;
            fs::rename(&tmp, &askpass).map_err(io_err("cannot write git's askpass helper"))?;
        }
        Ok(GitEnv {
            dir: dir.to_path_buf(),
            timeout,
        })
    }

    /// Fetches `source`'s branch into the repository at `repo` (created if needed, and
    /// made again from scratch if it is broken) and checks it out.
    pub fn fetch(&self, source: &Source, repo: &Path) -> Result<Fetched, SourceError> {
        check_source(source)?;
        let marker = repo.join(".git").join("runway-url");
        let url_id = url_id(&source.url);
        // Another repository's objects are of no use: start over when the URL changes.
        if repo.exists() && fs::read_to_string(&marker).ok().as_deref() != Some(url_id.as_str()) {
            fs::remove_dir_all(repo).map_err(io_err(format!("cannot clear {}", repo.display())))?;
        }
        match self.fetch_into(source, repo, &marker, &url_id) {
            Err(e @ (SourceError::Git { .. } | SourceError::Io { .. }))
                if repo.join(".git").exists() =>
            {
                // A cache broken by a crash mid-fetch: one more try from nothing.
                tracing::warn!(error = %e, repo = %repo.display(), "git cache unusable, fetching again");
                fs::remove_dir_all(repo)
                    .map_err(io_err(format!("cannot clear {}", repo.display())))?;
                self.fetch_into(source, repo, &marker, &url_id)
            }
            other => other,
        }
    }

    fn fetch_into(
        &self,
        source: &Source,
        repo: &Path,
        marker: &Path,
        url_id: &str,
    ) -> Result<Fetched, SourceError> {
        if !repo.join(".git").is_dir() {
            fs::create_dir_all(repo)
                .map_err(io_err(format!("cannot create {}", repo.display())))?;
            self.git(source, repo, "init", &["init", "--quiet"])?;
            fs::write(marker, url_id).map_err(io_err("cannot write the git cache's marker"))?;
        }
        let refspec = format!("+refs/heads/{}:{SOURCE_REF}", source.branch);
        let fetched = self.git(
            source,
            repo,
            "fetch",
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--no-recurse-submodules",
                "--depth",
                "1",
                "--",
                &source.url,
                &refspec,
            ],
        );
        if let Err(SourceError::Git { message, .. }) = &fetched
            && message.contains("couldn't find remote ref")
        {
            return Err(SourceError::NoBranch {
                url: redact_url(&source.url),
                branch: source.branch.clone(),
            });
        }
        fetched?;
        let commit = self
            .git(
                source,
                repo,
                "rev-parse",
                &["rev-parse", "--verify", &format!("{SOURCE_REF}^{{commit}}")],
            )?
            .trim()
            .to_string();
        if !is_sha(&commit) {
            return Err(SourceError::Git {
                action: "rev-parse".into(),
                message: format!("unexpected output {commit:?}"),
            });
        }
        self.git(
            source,
            repo,
            "checkout",
            &["checkout", "--quiet", "--force", "--detach", &commit],
        )?;
        self.git(source, repo, "clean", &["clean", "--quiet", "-ffdx"])?;
        Ok(Fetched {
            dir: repo.to_path_buf(),
            commit,
        })
    }

    /// The commit `source`'s branch points at now, or `None` if there is no such branch.
    pub fn ls_remote(&self, source: &Source) -> Result<Option<String>, SourceError> {
        check_source(source)?;
        let want = format!("refs/heads/{}", source.branch);
        let out = self.git(
            source,
            &self.dir,
            "ls-remote",
            &["ls-remote", "--heads", "--", &source.url, &want],
        )?;
        Ok(out.lines().find_map(|line| {
            let (sha, name) = line.split_once('\t')?;
            (name.trim() == want && is_sha(sha)).then(|| sha.to_string())
        }))
    }

    /// Runs git in `cwd` with the environment for `source`'s credentials; its stdout.
    fn git(
        &self,
        source: &Source,
        cwd: &Path,
        action: &str,
        args: &[&str],
    ) -> Result<String, SourceError> {
        let mut cmd = Command::new("git");
        cmd.args(args)
            .current_dir(cwd)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", self.dir.join("home"))
            .env("LC_ALL", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ALLOW_PROTOCOL", "file:git:http:https:ssh")
            .env("GIT_ASKPASS", self.dir.join("askpass"))
            .env("GIT_SSH_COMMAND", self.ssh_command(None))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut secret = None;
        let mut key_file = None;
        match &source.credentials {
            Some(GitCredentials::Token { username, token }) => {
                cmd.env(
                    "RUNWAY_GIT_USERNAME",
                    username.as_deref().unwrap_or("x-access-token"),
                )
                .env("RUNWAY_GIT_PASSWORD", token);
                secret = Some(token.clone());
            }
            Some(GitCredentials::SshKey { private_key }) => {
                let key = KeyFile::write(&self.dir, private_key)?;
                cmd.env("GIT_SSH_COMMAND", self.ssh_command(Some(&key.0)));
                key_file = Some(key);
            }
            None => {}
        }
        let result = run(cmd, self.timeout, action);
        drop(key_file);
        let redact = |s: &str| {
            let s = redact_url(s);
            match &secret {
                Some(t) if !t.is_empty() => s.replace(t.as_str(), "***"),
                _ => s,
            }
        };
        match result {
            Ok(Output {
                status: true,
                stdout,
                ..
            }) => Ok(stdout),
            Ok(Output { stderr, .. }) => {
                let message = stderr
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| redact(l.trim()))
                    .collect::<Vec<_>>();
                let tail = message[message.len().saturating_sub(8)..].join("; ");
                Err(SourceError::Git {
                    action: action.to_string(),
                    message: if tail.is_empty() {
                        "no output".into()
                    } else {
                        tail
                    },
                })
            }
            Err(e) => Err(e),
        }
    }

    fn ssh_command(&self, key: Option<&Path>) -> String {
        let known_hosts = self.dir.join("known_hosts");
        let mut s =
            String::from("ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=accept-new");
        s.push_str(&format!(
            " -o UserKnownHostsFile={}",
            crate::script::quote(&known_hosts.to_string_lossy())
        ));
        if let Some(key) = key {
            s.push_str(&format!(
                " -o IdentitiesOnly=yes -i {}",
                crate::script::quote(&key.to_string_lossy())
            ));
        }
        s
    }
}

/// A private key in a 0600 file, removed when dropped.
struct KeyFile(PathBuf);

impl KeyFile {
    fn write(dir: &Path, key: &str) -> Result<KeyFile, SourceError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(format!("key-{}", uuid::Uuid::new_v4().simple()));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("cannot write the ssh key file"))?;
        let guard = KeyFile(path);
        let mut text = key.trim_end().to_string();
        // ssh refuses a key file without its final newline.
        text.push('\n');
        f.write_all(text.as_bytes())
            .map_err(io_err("cannot write the ssh key file"))?;
        Ok(guard)
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

struct Output {
    status: bool,
    stdout: String,
    stderr: String,
}

/// Runs `cmd`, killing it after `timeout`.
fn run(mut cmd: Command, timeout: Duration, action: &str) -> Result<Output, SourceError> {
    let mut child = cmd.spawn().map_err(|e| SourceError::Git {
        action: action.to_string(),
        message: format!("cannot run git: {e}"),
    })?;
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = (&mut r).take(MAX_OUTPUT as u64).read_to_end(&mut buf);
                // Keep draining so git never blocks on a full pipe.
                let _ = std::io::copy(&mut r, &mut std::io::sink());
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SourceError::GitTimeout {
                    action: action.to_string(),
                    seconds: timeout.as_secs(),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                return Err(SourceError::Git {
                    action: action.to_string(),
                    message: format!("cannot wait for git: {e}"),
                });
            }
        }
    };
    Ok(Output {
        status: status.success(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A stable name for a repository URL (its sha256), kept in the cache.
fn url_id(url: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        url.as_bytes(),
    ))
}

/// Checks the URL's form and the branch name before anything is run.
pub fn check_source(source: &Source) -> Result<(), SourceError> {
    let url = &source.url;
    let invalid = |m: String| Err(SourceError::InvalidSource(m));
    if url.is_empty()
        || url.starts_with('-')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return invalid(format!(
            "repository URL {:?} is not a git URL",
            redact_url(url)
        ));
    }
    let scheme_ok = match url.split_once("://") {
        Some((scheme, rest)) => {
            matches!(scheme, "https" | "http" | "ssh" | "git" | "file") && !rest.is_empty()
        }
        // scp-like `user@host:path`
        None => url.split_once(':').is_some_and(|(host, path)| {
            !host.is_empty() && !host.contains('/') && !path.is_empty()
        }),
    };
    if !scheme_ok {
        return invalid(format!(
            "repository URL {} must be https://, http://, ssh://, git://, file:// or user@host:path",
            redact_url(url)
        ));
    }
    if !is_branch_name(&source.branch) {
        return invalid(format!("{:?} is not a valid branch name", source.branch));
    }
    Ok(())
}

/// git's rules for a branch name (`git check-ref-format --branch`), kept strict.
pub fn is_branch_name(b: &str) -> bool {
    !b.is_empty()
        && b.len() <= 255
        && !b.starts_with(['-', '/', '.'])
        && !b.ends_with(['/', '.'])
        && !b.ends_with(".lock")
        && !b.contains("..")
        && !b.contains("//")
        && !b.contains("@{")
        && !b
            .split('/')
            .any(|c| c.starts_with('.') || c.ends_with(".lock"))
        && b.chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && !"~^:?*[\\".contains(c))
}

#[cfg(test)]
mod tests;
