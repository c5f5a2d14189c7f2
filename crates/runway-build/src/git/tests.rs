use super::*;
use crate::test_util::{commit_all, git as run_git, git_repo, write_files};

fn source(url: &str, branch: &str) -> Source {
    Source {
        url: url.to_string(),
        branch: branch.to_string(),
        source_directory: None,
        credentials: None,
    }
}

fn env(dir: &Path) -> GitEnv {
    GitEnv::open(&dir.join("git-env"), Duration::from_secs(60)).unwrap()
}

#[test]
fn fetches_a_branch_and_then_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = tmp.path().join("upstream");
    let first = git_repo(
        &upstream,
        "main",
        &[("app.py", "v1"), ("services/api/main.py", "api")],
    );
    run_git(&upstream, &["checkout", "--quiet", "-b", "feature"]);
    write_files(&upstream, &[("app.py", "feature")]);
    let feature = commit_all(&upstream, "feature");
    run_git(&upstream, &["checkout", "--quiet", "main"]);
    let url = format!("file://{}", upstream.display());
    let g = env(tmp.path());
    let repo = tmp.path().join("cache");

    let f = g.fetch(&source(&url, "main"), &repo).unwrap();
    assert_eq!(f.commit, first);
    assert_eq!(std::fs::read_to_string(f.dir.join("app.py")).unwrap(), "v1");
    assert_eq!(
        run_git(&repo, &["rev-parse", "--is-shallow-repository"]),
        "true"
    );

    let f = g.fetch(&source(&url, "feature"), &repo).unwrap();
    assert_eq!(f.commit, feature);
    assert_eq!(
        std::fs::read_to_string(f.dir.join("app.py")).unwrap(),
        "feature"
    );

    // A second commit on main; files left by a build are cleaned away.
    write_files(&upstream, &[("app.py", "v2")]);
    std::fs::remove_file(upstream.join("services/api/main.py")).unwrap();
    let second = commit_all(&upstream, "second");
    std::fs::write(repo.join("build-output.pyc"), b"x").unwrap();
    let f = g.fetch(&source(&url, "main"), &repo).unwrap();
    assert_eq!(f.commit, second);
    assert_eq!(std::fs::read_to_string(f.dir.join("app.py")).unwrap(), "v2");
    assert!(!repo.join("build-output.pyc").exists());
    assert!(!repo.join("services/api/main.py").exists());
    assert_eq!(
        run_git(&repo, &["rev-list", "--count", "HEAD"]),
        "1",
        "still shallow"
    );

    assert_eq!(
        g.ls_remote(&source(&url, "main")).unwrap().as_deref(),
        Some(second.as_str())
    );
    assert_eq!(g.ls_remote(&source(&url, "nope")).unwrap(), None);
    assert!(matches!(
        g.fetch(&source(&url, "nope"), &repo),
        Err(SourceError::NoBranch { .. })
    ));
}

#[test]
fn a_broken_cache_or_another_url_starts_over() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    git_repo(&a, "main", &[("x", "a")]);
    let b_commit = git_repo(&b, "main", &[("x", "b")]);
    let g = env(tmp.path());
    let repo = tmp.path().join("cache");
    g.fetch(&source(&format!("file://{}", a.display()), "main"), &repo)
        .unwrap();
    let f = g
        .fetch(&source(&format!("file://{}", b.display()), "main"), &repo)
        .unwrap();
    assert_eq!(f.commit, b_commit);
    assert_eq!(std::fs::read_to_string(repo.join("x")).unwrap(), "b");
    // A crash left the object store broken.
    std::fs::remove_dir_all(repo.join(".git/objects")).unwrap();
    let f = g
        .fetch(&source(&format!("file://{}", b.display()), "main"), &repo)
        .unwrap();
    assert_eq!(f.commit, b_commit);
}

#[test]
fn bad_sources_are_refused_before_git_runs() {
    for (url, branch) in [
        ("", "main"),
        ("-uhttps://x", "main"),
        ("ext::sh -c touch% /tmp/pwned", "main"),
        ("https://h/r.git", "-d"),
        ("https://h/r.git", "a..b"),
        ("https://h/r.git", "a b"),
        ("https://h/r.git", ""),
        ("ftp://h/r", "main"),
        ("/local/path", "main"),
    ] {
        assert!(
            check_source(&source(url, branch)).is_err(),
            "{url} {branch}"
        );
    }
    for (url, branch) in [
        ("https://github.com/o/r.git", "main"),
        ("git@github.com:o/r.git", "feature/x-1"),
        ("ssh://git@h:2222/o/r", "release-1.0"),
        ("file:///srv/r", "main"),
    ] {
        check_source(&source(url, branch)).unwrap();
    }
}

#[test]
fn errors_name_no_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let g = env(tmp.path());
    let mut s = source("http://user:pw@127.0.0.1:9/o/r.git", "main");
    s.credentials = Some(GitCredentials::Token {
        username: None,
        token: "tok-123".into(),
    });
    let e = g
        .fetch(&s, &tmp.path().join("cache"))
        .unwrap_err()
        .to_string();
    assert!(!e.contains("pw@") && !e.contains("tok-123"), "{e}");
}

#[test]
fn the_askpass_helper_answers_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    env(tmp.path());
    let ask = |prompt: &str| {
        let out = Command::new(tmp.path().join("git-env/askpass"))
            .arg(prompt)
            .env("RUNWAY_GIT_USERNAME", "x-access-token")
            .env("RUNWAY_GIT_PASSWORD", "t0ken")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        ask("Username for 'https://github.com': "),
        "x-access-token\n"
    );
    assert_eq!(
        ask("Password for 'https://x-access-token@github.com': "),
        "t0ken\n"
    );
}

#[test]
fn key_files_are_private_and_removed() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let key = KeyFile::write(
        tmp.path(),
        "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----",
    )
    .unwrap();
    let meta = std::fs::metadata(&key.0).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(&key.0)
            .unwrap()
            .ends_with("-----\n")
    );
    let path = key.0.clone();
    drop(key);
    assert!(!path.exists());
}

#[test]
fn branch_names() {
    for ok in ["main", "feature/x", "release-1.0", "a_b"] {
        assert!(is_branch_name(ok), "{ok}");
    }
    for bad in [
        "", "-x", "a..b", "a b", "x.lock", "a//b", "a/", ".hidden", "a/.b", "x@{1}", "a~1", "a^",
        "a:b", "a?", "a*", "a[", "a\\b",
    ] {
        assert!(!is_branch_name(bad), "{bad}");
    }
}

type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Serves `dir`'s files over HTTP/1.0 (git's dumb protocol) to requests carrying
/// `authorization`; others get 401. The thread lives as long as the test process.
fn serve_files(dir: PathBuf, authorization: String) -> (u16, Seen) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Default::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let mut auth = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line
                    .strip_prefix("Authorization: ")
                    .or_else(|| line.strip_prefix("authorization: "))
                {
                    auth = Some(v.trim().to_string());
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            log.lock()
                .unwrap()
                .push(format!("{path} auth={}", auth.is_some()));
            let file = dir.join(path.split('?').next().unwrap().trim_start_matches('/'));
            let response = if auth.as_deref() != Some(authorization.as_str()) {
                "HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\n\r\n".as_bytes().to_vec()
            } else if let Ok(body) = std::fs::read(&file) {
                let mut r = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                    .into_bytes();
                r.extend(body);
                r
            } else {
                b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
            };
            let _ = stream.write_all(&response);
        }
    });
    (port, seen)
}

#[test]
fn a_token_reaches_git_only_when_the_server_asks() {
    use base64::Engine;
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let commit = git_repo(&work, "main", &[("a", "1")]);
    let bare = tmp.path().join("repo.git");
    run_git(
        tmp.path(),
        &[
            "clone",
            "--quiet",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    run_git(&bare, &["update-server-info"]);
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("x-access-token:t0ken-xyz")
    );
    let (port, server) = serve_files(bare.clone(), expected);
    let g = env(tmp.path());
    let mut s = source(&format!("http://127.0.0.1:{port}/"), "main");
    s.credentials = Some(GitCredentials::Token {
        username: None,
        token: "t0ken-xyz".into(),
    });
    assert_eq!(g.ls_remote(&s).unwrap().as_deref(), Some(commit.as_str()));
    // Without the token: refused, and no prompt hangs.
    let (port, _server2) = serve_files(bare, "Basic nope".into());
    let e = g
        .ls_remote(&source(&format!("http://127.0.0.1:{port}/"), "main"))
        .unwrap_err();
    assert!(matches!(e, SourceError::Git { .. }), "{e}");
    let seen = server.lock().unwrap().clone();
    assert_eq!(
        seen.first().map(String::as_str),
        Some("/info/refs?service=git-upload-pack auth=false"),
        "{seen:?}"
    );
    assert!(seen.iter().any(|s| s.ends_with("auth=true")), "{seen:?}");
}

/// A real sshd on loopback (Debian's openssh-server) that lets in one key as root; killed
/// when dropped.
struct Sshd {
    child: std::process::Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (apt-get install openssh-client)");
    assert!(out.status.success(), "{out:?}");
}

fn sshd(dir: &Path, authorized_key: &Path) -> Sshd {
    std::fs::create_dir_all("/run/sshd").unwrap();
    let host_key = dir.join("host_key");
    keygen(&host_key);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\nPidFile none\n",
            host_key.display(),
            authorized_key.display()
        ),
    )
    .unwrap();
    let child = std::process::Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sshd (apt-get install openssh-server)");
    let server = Sshd { child, port };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("sshd did not start");
}

#[test]
fn an_ssh_key_reaches_a_real_sshd_and_a_wrong_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let commit = git_repo(&tmp.path().join("repo"), "main", &[("app.py", "v1")]);
    let (key, other) = (tmp.path().join("id"), tmp.path().join("other"));
    keygen(&key);
    keygen(&other);
    let server = sshd(tmp.path(), &key.with_extension("pub"));
    let url = format!(
        "ssh://root@127.0.0.1:{}{}",
        server.port,
        tmp.path().join("repo").display()
    );
    let g = env(tmp.path());
    let with = |path: &Path| {
        let mut s = source(&url, "main");
        s.credentials = Some(GitCredentials::SshKey {
            private_key: std::fs::read_to_string(path).unwrap(),
        });
        s
    };
    let f = g.fetch(&with(&key), &tmp.path().join("cache")).unwrap();
    assert_eq!(f.commit, commit);
    assert_eq!(std::fs::read_to_string(f.dir.join("app.py")).unwrap(), "v1");
    // Another key is refused, without a prompt, and its message names no secret.
    let e = g.ls_remote(&with(&other)).unwrap_err();
    assert!(matches!(e, SourceError::Git { .. }), "{e}");
    // No key file is left behind.
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("git-env"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("key"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
