use super::*;
use crate::image::{RootfsOptions, import_rootfs};
use crate::test_util::{FakeJobs, FakeRun, TestRegistry, commit_all, git_repo, write_files};
use serde_json::Value;
use std::sync::Mutex;

const APPRUNNER: &str = "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    pre-build:\n      - echo pre\n    build:\n      - python3 -m compileall -q .\n  env:\n    - name: STAGE\n      value: test\nrun:\n  command: python3 app.py\n  network:\n    port: 8000\n  env:\n    - name: GREETING\n      value: hello\n";

struct Setup {
    t: TestRegistry,
    jobs: Arc<FakeJobs>,
    builder: Builder,
}

async fn setup() -> Setup {
    let t = TestRegistry::new();
    let root = t.path("rootfs");
    write_files(&root, &[("bin/sh", "#!fake\n")]);
    import_rootfs(
        &t.registry,
        &root,
        "runtimes/python3",
        &RootfsOptions::default(),
        &t.path("scratch"),
    )
    .await
    .unwrap();
    let jobs = FakeJobs::new();
    let mut config = BuilderConfig::new(t.path("work"), t.path("cache"));
    config
        .runtime_images
        .insert("python3".into(), "runtimes/python3:latest".into());
    let builder = Builder::new(t.registry.clone(), jobs.clone(), config)
        .await
        .unwrap();
    Setup { t, jobs, builder }
}

impl Setup {
    fn request(&self, url: &str, dir: Option<&str>) -> BuildRequest {
        BuildRequest {
            service_id: "svc1".into(),
            repository: "hello".into(),
            source: Source {
                url: url.into(),
                branch: "main".into(),
                source_directory: dir.map(str::to_string),
                credentials: None,
            },
            code_configuration: None,
            log_path: self.t.dir.path().join("logs").join("build.log"),
        }
    }

    async fn manifest(&self, repository: &str, tag: &str) -> Option<(Value, Value)> {
        let m = self
            .t
            .registry
            .resolve_manifest(repository, tag)
            .await
            .ok()?;
        let doc: Value = serde_json::from_slice(&m.bytes).unwrap();
        let config_digest = doc["config"]["digest"].as_str().unwrap();
        let config: Value = serde_json::from_slice(
            &std::fs::read(self.t.registry.blob_path(config_digest).unwrap()).unwrap(),
        )
        .unwrap();
        Some((doc, config))
    }
}

fn collect() -> (Arc<Mutex<Vec<String>>>, impl Fn(&str) + Send + Sync) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    (lines, move |l: &str| {
        sink.lock().unwrap().push(l.to_string())
    })
}

#[tokio::test]
async fn a_repository_with_apprunner_yaml_becomes_an_image() {
    let s = setup().await;
    let repo = s.t.path("upstream");
    let commit = git_repo(
        &repo,
        "main",
        &[("apprunner.yaml", APPRUNNER), ("app.py", "print('hi')\n")],
    );
    s.jobs.push(FakeRun {
        lines: vec![
            "--> [1/2] echo pre".into(),
            "pre".into(),
            "--> [2/2] python3 -m compileall -q .".into(),
        ],
        files: vec![("__pycache__/app.cpython-311.pyc".into(), b"pyc".to_vec())],
        ..FakeRun::default()
    });
    let (lines, on_log) = collect();
    let request = s.request(&format!("file://{}", repo.display()), None);
    let r = s.builder.build(&request, &on_log).await.unwrap();
    assert_eq!(
        (r.repository.as_str(), r.tag.as_str(), r.commit.as_str()),
        ("hello", commit.as_str(), commit.as_str())
    );
    assert_eq!(r.plan.port, 8000);

    let (doc, config) = s.manifest("hello", &commit).await.unwrap();
    assert_eq!(
        doc["layers"].as_array().unwrap().len(),
        3,
        "base, source, build"
    );
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(crate::script::with_bash("exec python3 app.py"))
    );
    assert_eq!(config["config"]["WorkingDir"], "/app");
    assert_eq!(
        config["config"]["ExposedPorts"],
        serde_json::json!({"8000/tcp": {}})
    );
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"PORT=8000") && env.contains(&"GREETING=hello"),
        "{env:?}"
    );
    assert!(
        env.iter().any(|e| e.starts_with("PATH=")),
        "the base's env is kept: {env:?}"
    );
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.revision"],
        commit
    );

    // The job: the build image, the script, the env, the caches.
    let requests = s.jobs.requests();
    assert_eq!(requests.len(), 1);
    let job = &requests[0];
    assert_eq!(job.image.repository, "hello-build");
    assert_eq!(job.workdir, "/app");
    assert_eq!(job.service_id, "build-svc1");
    assert!(job.command[4].contains("python3 -m compileall -q ."));
    assert!(job.env.contains(&("STAGE".to_string(), "test".to_string())));
    assert!(
        job.env
            .contains(&("PIP_BREAK_SYSTEM_PACKAGES".to_string(), "1".to_string()))
    );
    assert_eq!(job.mounts.len(), 2);
    let cache = &job.mounts[1];
    assert_eq!(cache.target, "/root/.cache/pip");
    assert_eq!(cache.source, s.t.dir.path().join("cache/svc1/pip"));
    assert!(cache.source.is_dir());
    // The host's certificate authorities, in a directory of the build's own.
    assert_eq!(job.mounts[0].target, crate::trust::CONTAINER_DIR);
    assert!(job.mounts[0].source.starts_with(s.t.path("work/scratch")));
    assert!(job.command[4].contains(&crate::trust::prelude()));
    assert!(job.env.contains(&(
        "SSL_CERT_FILE".to_string(),
        format!("{}/ca-certificates.crt", crate::trust::CONTAINER_DIR)
    )));
    assert_eq!(s.jobs.removals(), 1);
    // The intermediate image's tag is gone; the scratch space is empty.
    assert!(
        s.t.registry
            .resolve_manifest("hello-build", &commit)
            .await
            .is_err()
    );
    assert_eq!(
        std::fs::read_dir(s.t.path("work/scratch")).unwrap().count(),
        0
    );

    // The log: in the file and through the callback.
    let seen = lines.lock().unwrap().clone();
    assert!(seen.iter().any(|l| l == "pre"));
    assert!(seen.iter().any(|l| l.starts_with("==> Built hello:")));
    let file = std::fs::read_to_string(&request.log_path).unwrap();
    assert_eq!(file.lines().collect::<Vec<_>>(), seen);
}

#[tokio::test]
async fn a_failing_command_is_named_and_nothing_is_pushed() {
    let s = setup().await;
    let repo = s.t.path("upstream");
    let commit = git_repo(
        &repo,
        "main",
        &[("apprunner.yaml", APPRUNNER), ("app.py", "")],
    );
    s.jobs.push(FakeRun {
        lines: vec![
            "--> [1/2] echo pre".into(),
            "pre".into(),
            "--> [2/2] python3 -m compileall -q .".into(),
            "SyntaxError: invalid syntax".into(),
        ],
        exit_code: 1,
        ..FakeRun::default()
    });
    let (_, on_log) = collect();
    let e = s
        .builder
        .build(
            &s.request(&format!("file://{}", repo.display()), None),
            &on_log,
        )
        .await
        .unwrap_err();
    match &e {
        BuildError::CommandFailed {
            command,
            outcome,
            last_lines,
        } => {
            assert_eq!(command, "python3 -m compileall -q .");
            assert_eq!(outcome, "exit status 1");
            assert!(
                last_lines
                    .iter()
                    .any(|l| l == "SyntaxError: invalid syntax")
            );
        }
        other => panic!("{other}"),
    }
    assert!(e.is_user_error());
    let shown = e.to_string();
    assert!(
        shown.contains("python3 -m compileall") && shown.contains("SyntaxError"),
        "{shown}"
    );
    assert!(
        s.t.registry
            .resolve_manifest("hello", &commit)
            .await
            .is_err(),
        "nothing under hello:<commit>"
    );
    assert!(
        s.t.registry
            .resolve_manifest("hello-build", &commit)
            .await
            .is_err()
    );
    assert_eq!(s.jobs.removals(), 1);

    // A timeout names the command that was running.
    s.jobs.push(FakeRun {
        lines: vec!["--> [1/2] echo pre".into()],
        exit_code: 137,
        timed_out: true,
        ..FakeRun::default()
    });
    let e = s
        .builder
        .build(
            &s.request(&format!("file://{}", repo.display()), None),
            &on_log,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, BuildError::CommandFailed { command, outcome, .. } if command == "echo pre" && outcome.starts_with("timed out")),
        "{e}"
    );
}

#[tokio::test]
async fn an_invalid_apprunner_yaml_fails_before_anything_runs() {
    let s = setup().await;
    let repo = s.t.path("upstream");
    git_repo(
        &repo,
        "main",
        &[(
            "apprunner.yaml",
            "version: 1.0\nruntime: python3\nrun:\n  command: [a]\n",
        )],
    );
    let (_, on_log) = collect();
    let e = s
        .builder
        .build(
            &s.request(&format!("file://{}", repo.display()), None),
            &on_log,
        )
        .await
        .unwrap_err();
    match &e {
        BuildError::Plan(PlanError::ConfigFile(c)) => assert_eq!((c.line, c.column), (4, 12)),
        other => panic!("{other}"),
    }
    assert!(
        e.to_string()
            .starts_with("apprunner.yaml line 4, column 12"),
        "{e}"
    );
    assert!(s.jobs.requests().is_empty());
}

#[tokio::test]
async fn a_monorepo_directory_and_no_build_commands() {
    let s = setup().await;
    let repo = s.t.path("upstream");
    let commit = git_repo(
        &repo,
        "main",
        &[
            ("README.md", "top"),
            (
                "services/web/apprunner.yaml",
                "version: 1.0\nruntime: python3\nrun:\n  command: python3 web.py\n",
            ),
            ("services/web/web.py", ""),
        ],
    );
    let (_, on_log) = collect();
    let r = s
        .builder
        .build(
            &s.request(&format!("file://{}", repo.display()), Some("services/web")),
            &on_log,
        )
        .await
        .unwrap();
    assert!(
        s.jobs.requests().is_empty(),
        "no build commands: no container"
    );
    let (doc, config) = s.manifest("hello", &commit).await.unwrap();
    assert_eq!(
        doc["layers"].as_array().unwrap().len(),
        2,
        "base and source"
    );
    assert_eq!(config["config"]["Cmd"][4], "exec python3 web.py");
    assert_eq!(r.plan.port, 8080);
    // The source layer holds the directory only.
    let source = doc["layers"][1]["digest"].as_str().unwrap();
    let bytes = std::fs::read(s.t.registry.blob_path(source).unwrap()).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["app/", "app/apprunner.yaml", "app/web.py"]);
    // A directory that is not there.
    let e = s
        .builder
        .build(
            &s.request(&format!("file://{}", repo.display()), Some("services/nope")),
            &on_log,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, BuildError::Source(SourceError::NoSourceDirectory(_))),
        "{e}"
    );
}

#[tokio::test]
async fn an_uploaded_directory_is_built() {
    let s = setup().await;
    let src = s.t.path("local-src");
    write_files(
        &src,
        &[("apprunner.yaml", APPRUNNER), ("app.py", "print('up')\n")],
    );
    let packed = crate::layer::pack_source(&src, &s.t.path("tmp").join("up.tar.gz"))
        .unwrap()
        .layer;
    let digest =
        s.t.registry
            .push_blob_file("uploads", &packed.path, None)
            .await
            .unwrap();
    let (_, on_log) = collect();
    let r = s
        .builder
        .build(&s.request(&format!("upload://{digest}"), None), &on_log)
        .await
        .unwrap();
    assert_eq!(format!("sha256:{}", r.commit), digest);
    assert!(s.manifest("hello", &r.tag).await.is_some());
    let missing = format!("upload://sha256:{}", "0".repeat(64));
    let e = s
        .builder
        .build(&s.request(&missing, None), &on_log)
        .await
        .unwrap_err();
    assert!(
        matches!(e, BuildError::Source(SourceError::Upload(_))),
        "{e}"
    );
    let e = s
        .builder
        .build(&s.request("upload://sha256:zz", None), &on_log)
        .await
        .unwrap_err();
    assert!(matches!(e, BuildError::InvalidRequest(_)), "{e}");
}

#[tokio::test]
async fn polling_and_forgetting() {
    let s = setup().await;
    let repo = s.t.path("upstream");
    let first = git_repo(
        &repo,
        "main",
        &[("apprunner.yaml", APPRUNNER), ("app.py", "")],
    );
    let request = s.request(&format!("file://{}", repo.display()), None);
    assert_eq!(
        s.builder.latest_commit(&request.source).await.unwrap(),
        Some(first)
    );
    write_files(&repo, &[("app.py", "changed")]);
    let second = commit_all(&repo, "second");
    assert_eq!(
        s.builder.latest_commit(&request.source).await.unwrap(),
        Some(second)
    );
    let (_, on_log) = collect();
    s.builder.build(&request, &on_log).await.unwrap();
    assert!(s.t.path("work/git").join("svc1").exists());
    s.builder.forget_service("svc1").await.unwrap();
    assert!(!s.t.dir.path().join("work/git/svc1").exists());
    assert!(!s.t.dir.path().join("cache/svc1").exists());
    assert!(s.builder.forget_service("../x").await.is_err());
}

#[tokio::test]
async fn bad_requests_are_refused() {
    let s = setup().await;
    let (_, on_log) = collect();
    let mut r = s.request("file:///nonexistent", None);
    r.repository = "Not A Repo".into();
    assert!(matches!(
        s.builder.build(&r, &on_log).await,
        Err(BuildError::InvalidRequest(_))
    ));
    let mut r = s.request("file:///nonexistent", None);
    r.service_id = "../../etc".into();
    assert!(matches!(
        s.builder.build(&r, &on_log).await,
        Err(BuildError::InvalidRequest(_))
    ));
    let r = s.request("file:///nonexistent/repo", None);
    assert!(matches!(
        s.builder.build(&r, &on_log).await,
        Err(BuildError::Source(SourceError::Git { .. }))
    ));
}
