//! podman (vfs storage in a temporary root) logs in, pushes and pulls.

use crate::harness::*;
use runway_registry::test_util::build_layout;
use std::path::Path;

struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        Podman {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn authfile(&self) -> String {
        self.dir.path().join("auth.json").display().to_string()
    }

    async fn run(&self, args: &[&str]) -> std::process::Output {
        let root = self.dir.path().join("root");
        let runroot = self.dir.path().join("runroot");
        let tmp = self.dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let mut all = vec![
            "--root".to_string(),
            root.display().to_string(),
            "--runroot".into(),
            runroot.display().to_string(),
            "--storage-driver".into(),
            "vfs".into(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "none".into(),
            "--tmpdir".into(),
            tmp.display().to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        run("podman", &refs).await
    }
}

/// A scratch directory whose path is all lowercase: podman names an image pulled from
/// `oci:<dir>` after the path, and image names must be lowercase.
struct LowercaseDir(std::path::PathBuf);

impl LowercaseDir {
    fn new() -> LowercaseDir {
        let dir = std::env::temp_dir().join(format!("runway-registry-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        LowercaseDir(dir)
    }
}

impl Drop for LowercaseDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_logs_in_pushes_and_pulls() {
    let s = Server::start().await;
    let work = LowercaseDir::new();
    let layout = build_layout(&work.0.join("src"), "v1", 2, 200_000).unwrap();
    let podman = Podman::new();
    let image = format!("{}/team/app:v1", s.host());
    let authfile = podman.authfile();

    let out = podman.run(&["pull", "-q", &layout.reference()]).await;
    let id = success("podman pull oci", &out).trim().to_string();
    success("podman tag", &podman.run(&["tag", &id, &image]).await);

    // A wrong password is refused; the right one logs in.
    let out = podman
        .run(&[
            "login",
            "--tls-verify=false",
            "--authfile",
            &authfile,
            "-u",
            &s.key_id,
            "-p",
            "wrong",
            &s.host(),
        ])
        .await;
    assert!(!out.status.success(), "login with a wrong secret must fail");
    let out = podman
        .run(&[
            "login",
            "--tls-verify=false",
            "--authfile",
            &authfile,
            "-u",
            &s.key_id,
            "-p",
            &s.secret,
            &s.host(),
        ])
        .await;
    success("podman login", &out);

    let digestfile = work.0.join("digest");
    let out = podman
        .run(&[
            "push",
            "--tls-verify=false",
            "--authfile",
            &authfile,
            "--digestfile",
            &digestfile.display().to_string(),
            &image,
        ])
        .await;
    success("podman push", &out);
    let pushed = read(&digestfile);
    let stored = s.registry.resolve_manifest("team/app", "v1").await.unwrap();
    assert_eq!(stored.digest, pushed);

    // Pull it back into an empty storage, with --creds instead of a login.
    let fresh = Podman::new();
    let out = fresh
        .run(&["pull", "--tls-verify=false", "--creds", &s.creds(), &image])
        .await;
    let pulled_id = success("podman pull", &out)
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_string();
    assert_eq!(pulled_id, id, "the same image (config digest) comes back");
    let out = fresh
        .run(&["image", "inspect", "--format", "{{.Digest}}", &image])
        .await;
    assert_eq!(success("podman inspect", &out).trim(), pushed);

    // Without credentials: refused.
    let anon = Podman::new();
    std::fs::write(anon.authfile(), "{}").unwrap();
    let out = anon
        .run(&[
            "pull",
            "--tls-verify=false",
            "--authfile",
            &anon.authfile(),
            &image,
        ])
        .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unauthorized") || stderr.contains("authentication required"),
        "{stderr}"
    );
}
