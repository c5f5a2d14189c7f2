//! Builds for real (run as root): git repositories made with the git CLI, base images made
//! from Debian's packages by `scripts/base-image` (debootstrap; cached between runs), the
//! build commands run in runc containers by the instance runtime, and the images started
//! as instances and asked over HTTP.

use runway_build::test_util::{
    TestRegistry, commit_all, git_repo, import_base, repo_root, write_files,
};
use runway_build::{
    BuildError, BuildRequest, BuildResult, Builder, BuilderConfig, RegistryImages, Source,
};
use runway_model::shapes::{CodeConfiguration, CodeConfigurationValues};
use runway_runtime::test_util::{TestEnv, http_get, shim_command, testapp_spec, wait_for};
use runway_runtime::{ImageRef, InstanceState, LocalRuntime, Runtime};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// A registry, a runtime and a builder; the runtime goes before the test environment,
/// whose drop removes everything from the host.
struct Setup {
    builder: Builder,
    rt: LocalRuntime,
    _env: TestEnv,
    t: TestRegistry,
}

/// `runtimes` are (runtime name, base image made by scripts/base-image) pairs, imported
/// as `runtimes/<image>` and configured for the runtime.
async fn setup(runtimes: &[(&str, &str)]) -> Setup {
    let t = TestRegistry::new();
    let mut config = BuilderConfig::new(t.path("work"), t.path("cache"));
    for (runtime, image) in runtimes {
        let name = format!("runtimes/{image}");
        import_base(&t.registry, image, &name)
            .await
            .unwrap_or_else(|e| panic!("base image {image}: {e}"));
        config
            .runtime_images
            .insert(runtime.to_string(), format!("{name}:latest"));
    }
    config.build_timeout = Duration::from_secs(300);
    config.memory_mb = 1024;
    let env = TestEnv::new(shim_command());
    let store = Arc::new(runway_store::SqliteStore::in_memory().unwrap());
    let images = Arc::new(RegistryImages {
        registry: t.registry.clone(),
        handle: tokio::runtime::Handle::current(),
    });
    let rt = LocalRuntime::open(env.config.clone(), store, images, &mut Default::default())
        .await
        .expect("the runtime opens");
    let builder = Builder::new(t.registry.clone(), Arc::new(rt.clone()), config)
        .await
        .unwrap();
    Setup {
        builder,
        rt,
        _env: env,
        t,
    }
}

impl Setup {
    fn request(&self, service: &str, repo: &Path) -> BuildRequest {
        BuildRequest {
            service_id: service.into(),
            repository: service.into(),
            source: Source {
                url: format!("file://{}", repo.display()),
                branch: "main".into(),
                source_directory: None,
                credentials: None,
            },
            code_configuration: None,
            log_path: self
                .t
                .dir
                .path()
                .join("logs")
                .join(format!("{service}.log")),
        }
    }

    async fn build(&self, request: &BuildRequest) -> Result<BuildResult, BuildError> {
        let lines = Mutex::new(Vec::<String>::new());
        let on_log = |l: &str| lines.lock().unwrap().push(l.to_string());
        let r = self.builder.build(request, &on_log).await;
        if let Err(e) = &r {
            eprintln!("build failed: {e}\n{}", lines.lock().unwrap().join("\n"));
        }
        r
    }

    /// Starts the built image as an instance and returns `GET /`'s status and body.
    async fn serve(&self, built: &BuildResult) -> (u16, String) {
        let image = ImageRef {
            repository: built.repository.clone(),
            digest: built.digest.clone(),
        };
        let mut spec = testapp_spec(&built.repository, &image);
        spec.port = built.plan.port;
        spec.memory_mb = 256;
        spec.revision_id = format!("{}-{}", built.repository, &built.commit[..12]);
        let id = self.rt.start(spec).await.expect("the built image starts");
        let addr = wait_for("the instance to be healthy", T, || {
            self.rt
                .list()
                .into_iter()
                .find(|i| i.id == id && i.state == InstanceState::Healthy)
                .map(|i| i.addr)
        })
        .await;
        let answer = http_get(addr, "/", Duration::from_secs(10)).await.unwrap();
        self.rt.stop(&id, Duration::from_secs(5)).await.unwrap();
        answer
    }

    /// Job directories the runtime still has.
    fn jobs_left(&self) -> usize {
        std::fs::read_dir(self.rt.config().root.join("jobs"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// A git repository holding the bundled example.
fn example_repo(dir: &Path) -> String {
    let example = repo_root().join("examples/python-hello");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&example).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            files.push((name, std::fs::read_to_string(entry.path()).unwrap()));
        }
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    git_repo(dir, "main", &files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_python_example_builds_runs_and_rebuilds_after_a_one_line_change() {
    let s = setup(&[("python3", "python3")]).await;
    let repo = s.t.path("example");
    let first = example_repo(&repo);
    let request = s.request("hello", &repo);
    let built = s.build(&request).await.unwrap();
    assert_eq!(built.commit, first);
    assert_eq!(built.tag, first);
    let (status, body) = s.serve(&built).await;
    assert_eq!((status, body.as_str()), (200, "Hello from runway\n"));

    // One line changed: a new commit, rebuilt with warm caches.
    let yaml = std::fs::read_to_string(repo.join("apprunner.yaml")).unwrap();
    write_files(
        &repo,
        &[(
            "apprunner.yaml",
            &yaml.replace("value: Hello from runway", "value: Hello again"),
        )],
    );
    let second = commit_all(&repo, "a new greeting");
    let rebuilt = s.build(&request).await.unwrap();
    assert_eq!(rebuilt.commit, second);
    assert_ne!(rebuilt.digest, built.digest);
    let (status, body) = s.serve(&rebuilt).await;
    assert_eq!((status, body.as_str()), (200, "Hello again\n"));
    // The first image is still there, untouched.
    let old =
        s.t.registry
            .resolve_manifest("hello", &first)
            .await
            .unwrap();
    assert_eq!(old.digest, built.digest);
    assert_eq!(s.jobs_left(), 0);
    let log = std::fs::read_to_string(&request.log_path).unwrap();
    assert!(
        log.contains("--> [1/1] python3 -m compileall -q ."),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_build_names_the_command_and_pushes_nothing() {
    let s = setup(&[("python3", "python3")]).await;
    let repo = s.t.path("broken");
    let commit = git_repo(
        &repo,
        "main",
        &[
            (
                "apprunner.yaml",
                "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    build:\n      - echo starting\n      - python3 -c 'import sys; print(\"boom, the build broke\"); sys.exit(3)'\n      - echo never\nrun:\n  command: python3 app.py\n",
            ),
            ("app.py", "print('x')\n"),
        ],
    );
    let e = s.build(&s.request("broken", &repo)).await.unwrap_err();
    match &e {
        BuildError::CommandFailed {
            command,
            outcome,
            last_lines,
        } => {
            assert!(command.starts_with("python3 -c"), "{command}");
            assert_eq!(outcome, "exit status 3");
            assert!(
                last_lines.iter().any(|l| l == "boom, the build broke"),
                "{last_lines:?}"
            );
            assert!(!last_lines.iter().any(|l| l == "never"));
        }
        other => panic!("{other}"),
    }
    assert!(
        s.t.registry
            .resolve_manifest("broken", &commit)
            .await
            .is_err()
    );
    assert!(
        s.t.registry
            .resolve_manifest("broken-build", &commit)
            .await
            .is_err()
    );
    assert_eq!(s.jobs_left(), 0, "the build container is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dependency_caches_are_kept_per_service_between_builds() {
    let s = setup(&[("python3", "python3")]).await;
    let repo = s.t.path("cached");
    git_repo(&repo, "main", &[("app.py", "print('x')\n")]);
    let mut request = s.request("cached", &repo);
    request.code_configuration = Some(CodeConfiguration {
        configuration_source: Some("API".into()),
        code_configuration_values: Some(CodeConfigurationValues {
            runtime: Some("PYTHON_3".into()),
            build_command: Some(
                "echo built >> /root/.cache/pip/builds.txt && wc -l < /root/.cache/pip/builds.txt"
                    .into(),
            ),
            start_command: Some("python3 app.py".into()),
            ..Default::default()
        }),
    });
    s.build(&request).await.unwrap();
    write_files(&repo, &[("app.py", "print('y')\n")]);
    commit_all(&repo, "change");
    let rebuilt = s.build(&request).await.unwrap();
    let cache = s.t.dir.path().join("cache/cached/pip/builds.txt");
    assert_eq!(std::fs::read_to_string(cache).unwrap(), "built\nbuilt\n");
    // What the caches hold stays out of the image's layers.
    let m =
        s.t.registry
            .resolve_manifest("cached", &rebuilt.tag)
            .await
            .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
    let build_layer = doc["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let names = layer_entries(&s.t.registry.blob_path(&build_layer).unwrap());
    assert!(!names.iter().any(|n| n.contains("builds.txt")), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nodejs_app_without_apprunner_yaml_is_built_by_detection() {
    let s = setup(&[("nodejs22", "nodejs22")]).await;
    let repo = s.t.path("node");
    git_repo(
        &repo,
        "main",
        &[
            (
                "package.json",
                r#"{"name": "hello-node", "version": "1.0.0", "scripts": {"start": "node server.js"}}"#,
            ),
            (
                "server.js",
                "const http = require('http');\n\
                 const port = process.env.PORT || 3000;\n\
                 http.createServer((req, res) => {\n\
                 \x20 res.end(req.url === '/healthz' ? 'ok\\n' : `hello from node ${process.env.NODE_ENV}\\n`);\n\
                 }).listen(port);\n",
            ),
        ],
    );
    let built = s.build(&s.request("node", &repo)).await.unwrap();
    assert_eq!(built.plan.runtime, runway_build::Runtime::Nodejs22);
    assert_eq!(built.plan.origin, runway_build::PlanOrigin::Detected);
    let (status, body) = s.serve(&built).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "hello from node production\n")
    );
    // npm wrote to its cache, which outlives the build.
    let npm = s.t.dir.path().join("cache/node/npm");
    assert!(
        std::fs::read_dir(&npm).unwrap().count() > 0,
        "{}",
        npm.display()
    );
}

/// What App Runner's Amazon Linux build images have and build commands use: Python's
/// own `ensurepip` (Debian's refuses to run for the system Python), and `free` and `ps`
/// (procps), which public apprunner.yaml files run to watch a build's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn build_commands_may_run_ensurepip_free_and_ps_as_on_amazon_linux() {
    let s = setup(&[("python311", "python311")]).await;
    let repo = s.t.path("tools");
    git_repo(
        &repo,
        "main",
        &[
            (
                "apprunner.yaml",
                "version: 1.0\n\
                 runtime: python311\n\
                 build:\n\
                 \x20 commands:\n\
                 \x20   pre-build:\n\
                 \x20     - python3 -m ensurepip --upgrade\n\
                 \x20     - free -m\n\
                 \x20     - ps aux | head -n 3\n\
                 \x20   build:\n\
                 \x20     - python3 -m pip --version > pip-version.txt\n\
                 run:\n\
                 \x20 command: python3 server.py\n",
            ),
            (
                "server.py",
                "import http.server\n\
                 class H(http.server.BaseHTTPRequestHandler):\n\
                 \x20   def do_GET(self):\n\
                 \x20       body = open('pip-version.txt', 'rb').read().split(b' ')[0] + b'\\n'\n\
                 \x20       self.send_response(200)\n\
                 \x20       self.end_headers()\n\
                 \x20       self.wfile.write(body)\n\
                 http.server.HTTPServer(('0.0.0.0', 8080), H).serve_forever()\n",
            ),
        ],
    );
    let request = s.request("tools", &repo);
    let built = s.build(&request).await.unwrap();
    let (status, body) = s.serve(&built).await;
    assert_eq!((status, body.as_str()), (200, "pip\n"));
    let log = std::fs::read_to_string(&request.log_path).unwrap();
    assert!(log.contains("Mem:"), "{log}");
    assert!(log.contains("PID"), "{log}");
}

fn layer_entries(path: &PathBuf) -> Vec<String> {
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap());
    tar::Archive::new(gz)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}
