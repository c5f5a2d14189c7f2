//! Deployments from source end to end: a base image made from a Debian root filesystem
//! with `runway image import-rootfs`, the bundled Python example uploaded and built with
//! `runway deploy --source`, a git repository built through the App Runner API, and a failing build that leaves the running app alone.

use crate::deploy::{get, wait_status};
use crate::harness::{RawRequest, Server, assert_ok};
use std::path::Path;
use std::process::Command;

/// Imports the python3 base image (debootstrap, cached between runs) into `server`'s
/// registry as `runtimes/python3:latest` with the CLI, from a root filesystem directory.
fn import_python_base(server: &Server) {
    import_base(server, "python3");
}

/// Imports `runtime`'s base image made by `scripts/base-image` (cached between runs) into
/// `server`'s registry as `runtimes/<runtime>:latest` with `runway image import-rootfs`.
pub fn import_base(server: &Server, runtime: &str) {
    let layer = runway_build::test_util::base_layer(runtime)
        .unwrap_or_else(|e| panic!("the {runtime} base layer: {e}"));
    let rootfs = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&layer.path)
        .arg("-C")
        .arg(rootfs.path())
        .status()
        .unwrap();
    assert!(status.success());
    let out = server
        .runway()
        .args(["image", "import-rootfs"])
        .arg(rootfs.path())
        .args(["--name", &format!("runtimes/{runtime}")])
        .output()
        .unwrap();
    assert_ok(&out, "runway image import-rootfs");
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

pub fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert_ok(&out, &format!("git {args:?}"));
}

#[test]
fn sources_are_built_and_served_and_a_failing_build_leaves_the_app_serving() {
    let server = Server::start_with(&["--runtime-image", "python3=runtimes/python3:latest"]);
    import_python_base(&server);

    // `runway deploy --source DIR`: uploaded, built from its apprunner.yaml, served.
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("pyhello");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python-hello"),
        &app,
    );
    let out = server.deploy_source(&app);
    let stdout = assert_ok(&out, "runway deploy --source");
    assert!(stdout.contains("Building upload://sha256:"), "{stdout}");
    assert!(
        stdout.contains("| ") && stdout.contains("python3 -m compileall -q ."),
        "the build log is streamed:\n{stdout}"
    );
    assert!(stdout.contains("Service pyhello is running at"), "{stdout}");
    let services = server.aws(&["list-services"]).ok();
    let summary = services["ServiceSummaryList"][0].clone();
    let (arn, host) = (
        summary["ServiceArn"].as_str().unwrap().to_string(),
        summary["ServiceUrl"].as_str().unwrap().to_string(),
    );
    assert_eq!(
        get(&server, &host, "/"),
        (200, "Hello from runway\n".into())
    );

    // A build that fails: the operation fails naming the command; the app keeps serving.
    std::fs::write(app.join("app.py"), "def broken(:\n").unwrap();
    let out = server.deploy_source(&app);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("build command failed") && stdout.contains("compileall"),
        "{stdout}"
    );
    let service = wait_status(&server, &arn, "RUNNING");
    assert_eq!(service["ServiceName"], "pyhello");
    assert_eq!(
        get(&server, &host, "/"),
        (200, "Hello from runway\n".into())
    );
    // Its build log stays readable.
    let ops = server.aws(&["list-operations", "--service-arn", &arn]).ok();
    let failed = ops["OperationSummaryList"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["Status"] == "FAILED")
        .expect("a failed operation")["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = server
        .runway()
        .args(["operations", "log", &failed])
        .output()
        .unwrap();
    let log = assert_ok(&out, "runway operations log");
    assert!(
        log.contains("SyntaxError") || log.contains("invalid syntax"),
        "{log}"
    );

    // An invalid apprunner.yaml: the operation fails naming the line and column.
    std::fs::write(
        app.join("apprunner.yaml"),
        "version: 1.0\nruntime: python3\nrun:\n  command: python3 app.py\n  network:\n    port: eighty\n",
    )
    .unwrap();
    let out = server.deploy_source(&app);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("apprunner.yaml line 6, column"), "{stdout}");
    assert_eq!(
        get(&server, &host, "/"),
        (200, "Hello from runway\n".into())
    );

    // Deleting the service removes what runway made for it: its builds and sources.
    let tags = |repository: &str| {
        let out = server
            .runway()
            .args(["registry", "tags", repository, "--output", "json"])
            .output()
            .unwrap();
        assert_ok(&out, "runway registry tags")
    };
    assert!(tags("builds/pyhello").contains('"'), "a build is tagged");
    server.aws(&["delete-service", "--service-arn", &arn]).ok();
    wait_status(&server, &arn, "DELETED");
    for repository in ["builds/pyhello", "sources/pyhello"] {
        let left = tags(repository);
        assert!(!left.contains('"'), "{repository}: {left}");
    }

    // A git repository through the App Runner API, a monorepo's directory, configured by
    // API values.
    let repo = work.path().join("repo");
    let sub = repo.join("services/web");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python-hello"),
        &sub,
    );
    std::fs::remove_file(sub.join("apprunner.yaml")).unwrap();
    git(&repo, &["init", "-q", "-b", "release"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let source = serde_json::json!({
        "CodeRepository": {
            "RepositoryUrl": format!("file://{}", repo.display()),
            "SourceCodeVersion": {"Type": "BRANCH", "Value": "release"},
            "SourceDirectory": "services/web",
            "CodeConfiguration": {
                "ConfigurationSource": "API",
                "CodeConfigurationValues": {
                    "Runtime": "PYTHON_3",
                    "BuildCommand": "python3 -m compileall -q .",
                    "StartCommand": "python3 app.py",
                    "Port": "9000",
                    "RuntimeEnvironmentVariables": {"GREETING": "Hello from git"}
                }
            }
        },
        "AutoDeploymentsEnabled": false
    });
    // (Debian's AWS CLI predates SourceDirectory: the request is signed here instead.)
    let body = serde_json::json!({"ServiceName": "fromgit", "SourceConfiguration": source});
    let (status, created) = server.raw(RawRequest {
        operation: "CreateService",
        body: &body.to_string(),
        ..Default::default()
    });
    assert_eq!(status, 200, "{created}");
    let arn = created["Service"]["ServiceArn"].as_str().unwrap();
    let service = wait_status(&server, arn, "RUNNING");
    let host = service["ServiceUrl"].as_str().unwrap();
    assert_eq!(get(&server, host, "/"), (200, "Hello from git\n".into()));
}

/// `examples/python-hello` with greeting `greeting`, as a git repository's commit.
fn commit_greeting(repo: &Path, greeting: &str) {
    let yaml = std::fs::read_to_string(repo.join("apprunner.yaml")).unwrap();
    let line = yaml
        .lines()
        .find(|l| l.trim_start().starts_with("value: "))
        .unwrap()
        .to_string();
    let indent = &line[..line.len() - line.trim_start().len()];
    let yaml = yaml.replace(&line, &format!("{indent}value: {greeting}"));
    std::fs::write(repo.join("apprunner.yaml"), yaml).unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", greeting]);
}

/// A git repository of the Python example on branch `main`, greeting `greeting`.
fn example_repo(dir: &Path, greeting: &str) -> std::path::PathBuf {
    let repo = dir.join("repo");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python-hello"),
        &repo,
    );
    git(&repo, &["init", "-q", "-b", "main"]);
    commit_greeting(&repo, greeting);
    repo
}

/// Creates service `name` from the git repository `repo` (branch main, its
/// apprunner.yaml, auto-deploying), through `connection` if given; its ARN and host.
fn create_git_service(
    server: &Server,
    name: &str,
    repo: &Path,
    connection: Option<&str>,
) -> (String, String) {
    let mut source = serde_json::json!({
        "CodeRepository": {
            "RepositoryUrl": format!("file://{}", repo.display()),
            "SourceCodeVersion": {"Type": "BRANCH", "Value": "main"},
            "CodeConfiguration": {"ConfigurationSource": "REPOSITORY"}
        },
        "AutoDeploymentsEnabled": true
    });
    if let Some(arn) = connection {
        source["AuthenticationConfiguration"] = serde_json::json!({"ConnectionArn": arn});
    }
    let created = server
        .aws(&[
            "create-service",
            "--service-name",
            name,
            "--source-configuration",
            &source.to_string(),
        ])
        .ok();
    let arn = created["Service"]["ServiceArn"]
        .as_str()
        .unwrap()
        .to_string();
    let service = wait_status(server, &arn, "RUNNING");
    (arn, service["ServiceUrl"].as_str().unwrap().to_string())
}

/// Waits until `host` answers `want` at `/`.
fn wait_for_answer(server: &Server, host: &str, want: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let got = get(server, host, "/");
        if got == (200, format!("{want}\n")) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{host} still answers {got:?}, not {want:?}\n{}",
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// POSTs a GitHub push event for `repo`'s branch main at `commit` to the webhook of
/// `connection`, signed with `secret`; the status and body.
fn github_push(
    server: &Server,
    connection: &str,
    repo: &Path,
    commit: &str,
    secret: &[u8],
) -> (u16, String) {
    let body = serde_json::json!({
        "ref": "refs/heads/main",
        "after": commit,
        "repository": {"clone_url": format!("file://{}", repo.display())},
    })
    .to_string();
    let signature = runway_build::webhook::sign_github(secret, body.as_bytes());
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "-X", "POST"])
        .args(["-H", "X-GitHub-Event: push", "-H"])
        .arg(format!("X-Hub-Signature-256: {signature}"))
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(&body)
        .arg(format!("{}/webhooks/{connection}", server.api))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_string())
}

fn head(repo: &Path) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "HEAD"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_push_is_deployed_by_its_webhook_and_a_polled_branch_by_polling() {
    // Webhooks: a connection with a webhook secret, a service that uses it.
    let server = Server::start_with(&[
        "--runtime-image",
        "python3=runtimes/python3:latest",
        "--source-poll-interval",
        "0",
    ]);
    import_python_base(&server);
    let work = tempfile::tempdir().unwrap();
    let repo = example_repo(work.path(), "Hello v1");
    let created = server
        .aws(&[
            "create-connection",
            "--connection-name",
            "githost",
            "--provider-type",
            "GITHUB",
        ])
        .ok();
    let connection = created["Connection"]["ConnectionArn"].as_str().unwrap();
    let secret_file = work.path().join("hook-secret");
    std::fs::write(&secret_file, "s3cret-for-hooks\n").unwrap();
    let out = server
        .runway()
        .args([
            "connections",
            "credentials",
            "githost",
            "--webhook-secret-file",
        ])
        .arg(&secret_file)
        .output()
        .unwrap();
    assert!(assert_ok(&out, "runway connections credentials").contains("AVAILABLE"));
    // The API never shows the secret.
    let listed = server.aws(&["list-connections"]).ok().to_string();
    assert!(!listed.contains("s3cret"), "{listed}");
    let (arn, host) = create_git_service(&server, "hooked", &repo, Some(connection));
    assert_eq!(get(&server, &host, "/"), (200, "Hello v1\n".into()));

    commit_greeting(&repo, "Hello v2");
    let operations = || {
        server.aws(&["list-operations", "--service-arn", &arn]).ok()["OperationSummaryList"]
            .as_array()
            .unwrap()
            .len()
    };
    let before = operations();
    let (status, body) = github_push(&server, "githost", &repo, &head(&repo), b"wrong");
    assert_eq!(status, 401, "{body}");
    // Connection names cannot be probed: an unknown one is answered as a bad signature.
    let unknown = github_push(&server, "nohost", &repo, &head(&repo), b"s3cret-for-hooks");
    assert_eq!(unknown, (status, body));
    assert_eq!(
        operations(),
        before,
        "a badly signed webhook deploys nothing"
    );
    let (status, body) = github_push(&server, "githost", &repo, &head(&repo), b"s3cret-for-hooks");
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("operations"), "{body}");
    wait_for_answer(&server, &host, "Hello v2");
    drop(server);

    // Polling: no webhook, the branch is watched.
    let server = Server::start_with(&[
        "--runtime-image",
        "python3=runtimes/python3:latest",
        "--source-poll-interval",
        "1",
    ]);
    import_python_base(&server);
    let work = tempfile::tempdir().unwrap();
    let repo = example_repo(work.path(), "Hello polled v1");
    let (_, host) = create_git_service(&server, "polled", &repo, None);
    assert_eq!(get(&server, &host, "/"), (200, "Hello polled v1\n".into()));
    commit_greeting(&repo, "Hello polled v2");
    wait_for_answer(&server, &host, "Hello polled v2");
}

#[test]
fn a_build_longer_than_the_deploy_timeout_deploys_and_later_events_carry_their_times() {
    // The deploy timeout is for the revision's instances to get healthy: it starts when
    // they start, not before a build that takes longer than it.
    let server = Server::start_with(&[
        "--runtime-image",
        "python3=runtimes/python3:latest",
        "--deploy-timeout",
        "5",
    ]);
    import_python_base(&server);
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("slowbuild");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python-hello"),
        &app,
    );
    let yaml = std::fs::read_to_string(app.join("apprunner.yaml")).unwrap();
    let yaml = yaml.replace(
        "      - python3 -m compileall -q .",
        "      - sleep 8\n      - python3 -m compileall -q .",
    );
    assert!(yaml.contains("sleep 8"), "{yaml}");
    std::fs::write(app.join("apprunner.yaml"), yaml).unwrap();
    let out = server.deploy_source(&app);
    let stdout = assert_ok(&out, "runway deploy --source");
    assert!(
        stdout.contains("Service slowbuild is running at"),
        "{stdout}"
    );
    let arn = server.aws(&["list-services"]).ok()["ServiceSummaryList"][0]["ServiceArn"]
        .as_str()
        .unwrap()
        .to_string();
    let events = crate::deploy::extension(
        &server,
        "ListServiceEvents",
        serde_json::json!({ "ServiceArn": arn }),
    );
    let time_of = |prefix: &str| {
        events["Events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["Message"].as_str().unwrap().starts_with(prefix))
            .unwrap_or_else(|| panic!("no event {prefix:?}: {events}"))["Time"]
            .as_f64()
            .unwrap()
    };
    let took = time_of("Build succeeded") - time_of("Building ");
    assert!(
        took >= 8.0,
        "the build's events carry the times they happened at: {took} s apart\n{events}"
    );
}
