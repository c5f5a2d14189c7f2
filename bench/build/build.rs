//! Build benchmark: source → image for the bundled Python example
//! (`examples/python-hello`), first build and rebuilds after a one-line change with warm
//! caches, plus the time from the image to its first HTTP answer; against
//! `podman build` of an equivalent Containerfile on the same base image, measured in the
//! same run. Run as root:
//!
//!     cargo bench -p runway-build --bench build -- [--rebuilds N] [--storage-driver D] [--isolation I]
//!
//! See README.md next to this file for the method.

#![allow(clippy::print_stdout)]

use runway_build::test_util::{
    TestRegistry, base_layer, commit_all, git_repo, import_base, repo_root,
};
use runway_build::{BuildRequest, BuildResult, Builder, BuilderConfig, RegistryImages, Source};
use runway_runtime::test_util::{TestEnv, http_get, shim_command, testapp_spec, wait_for};
use runway_runtime::{ImageRef, InstanceState, LocalRuntime, Runtime};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const GREETING_LINE: &str = "value: Hello from runway";

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut rebuilds = 5usize;
    let mut driver = "vfs".to_string();
    let mut isolation = "oci".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rebuilds" => {
                rebuilds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--rebuilds N")
            }
            "--storage-driver" => driver = args.next().expect("--storage-driver D"),
            "--isolation" => isolation = args.next().expect("--isolation oci|chroot"),
            _ => {}
        }
    }

    // The base image: made by scripts/base-image (debootstrap) once and cached; not timed.
    let t = TestRegistry::new();
    let base = tokio::task::spawn_blocking(|| base_layer("python3"))
        .await
        .unwrap()
        .expect("the python3 base image");
    import_base(&t.registry, "python3", "runtimes/python3")
        .await
        .expect("the base image imports");
    let mut config = BuilderConfig::new(t.path("work"), t.path("cache"));
    config
        .runtime_images
        .insert("python3".into(), "runtimes/python3:latest".into());
    let env = TestEnv::new(shim_command());
    let store = Arc::new(
        runway_store::SqliteStore::open(&t.dir.path().join("state.db")).expect("the store"),
    );
    let images = Arc::new(RegistryImages {
        registry: t.registry.clone(),
        handle: tokio::runtime::Handle::current(),
    });
    let rt = LocalRuntime::open(env.config.clone(), store, images, &mut Default::default())
        .await
        .expect("the runtime opens");
    let builder = Builder::new(t.registry.clone(), Arc::new(rt.clone()), config)
        .await
        .expect("the builder");

    let repo = t.path("example");
    let example = repo_root().join("examples/python-hello");
    let mut files = Vec::new();
    for name in ["app.py", "apprunner.yaml"] {
        files.push((
            name,
            std::fs::read_to_string(example.join(name)).expect("the example"),
        ));
    }
    let files: Vec<(&str, &str)> = files.iter().map(|(n, s)| (*n, s.as_str())).collect();
    git_repo(&repo, "main", &files);
    let request = BuildRequest {
        service_id: "bench".into(),
        repository: "hello".into(),
        source: Source {
            url: format!("file://{}", repo.display()),
            branch: "main".into(),
            source_directory: None,
            credentials: None,
        },
        code_configuration: None,
        log_path: t.dir.path().join("build.log"),
    };

    println!(
        "runway: first build (cold git, dependency and layer caches), then {rebuilds} rebuilds after a one-line change"
    );
    let (first, built) = timed_build(&builder, &request).await;
    let first_serve = serve(&rt, &built).await;
    println!("  first build   {first:6.2} s   image → first answer {first_serve:5.2} s");
    let mut runway = Vec::new();
    for i in 1..=rebuilds {
        change_greeting(&repo, i);
        commit_all(&repo, &format!("greeting {i}"));
        let (secs, built) = timed_build(&builder, &request).await;
        let serve_secs = serve(&rt, &built).await;
        println!("  rebuild {i:<3}   {secs:6.2} s   image → first answer {serve_secs:5.2} s");
        runway.push(secs);
    }

    // The peer: podman build of the same source on the same base.
    let peer = podman(&base.path, &repo, rebuilds, &driver, &isolation);
    let runway_median = median(&mut runway);
    println!();
    println!("summary (seconds; ratio = podman / runway, > 1: runway faster)");
    println!("  runway first build {first:.2}, rebuild median {runway_median:.2} (goal ≤ 15)");
    match peer {
        Some((pfirst, mut prebuilds)) => {
            let pm = median(&mut prebuilds);
            println!("  podman ({driver}) first build {pfirst:.2}, rebuild median {pm:.2}");
            println!(
                "  ratio first {:.2}, rebuild {:.2}",
                pfirst / first,
                pm / runway_median
            );
        }
        None => println!("  podman: not measured (see above)"),
    }
    drop(builder);
    drop(rt);
    drop(env);
}

async fn timed_build(builder: &Builder, request: &BuildRequest) -> (f64, BuildResult) {
    let t = Instant::now();
    let built = builder
        .build(request, &|_: &str| {})
        .await
        .unwrap_or_else(|e| panic!("the build failed: {e}"));
    (t.elapsed().as_secs_f64(), built)
}

/// Starts the image and waits for its first `GET /`; the seconds that took.
async fn serve(rt: &LocalRuntime, built: &BuildResult) -> f64 {
    let image = ImageRef {
        repository: built.repository.clone(),
        digest: built.digest.clone(),
    };
    let mut spec = testapp_spec("bench", &image);
    spec.port = built.plan.port;
    spec.memory_mb = 256;
    spec.revision_id = format!("bench-{}", &built.commit[..12]);
    let t = Instant::now();
    let id = rt.start(spec).await.expect("the image starts");
    let addr = wait_for("healthy", Duration::from_secs(60), || {
        rt.list()
            .into_iter()
            .find(|i| i.id == id && i.state == InstanceState::Healthy)
            .map(|i| i.addr)
    })
    .await;
    let (status, _) = http_get(addr, "/", Duration::from_secs(10))
        .await
        .expect("an answer");
    assert_eq!(status, 200);
    let secs = t.elapsed().as_secs_f64();
    rt.stop(&id, Duration::from_secs(5)).await.expect("stops");
    secs
}

/// The one-line change: a new greeting in apprunner.yaml.
fn change_greeting(repo: &Path, i: usize) {
    let path = repo.join("apprunner.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let line = lines
        .iter_mut()
        .find(|l| l.trim_start().starts_with("value: Hello"))
        .unwrap_or_else(|| panic!("apprunner.yaml has no `{GREETING_LINE}` line"));
    let indent = &line[..line.len() - line.trim_start().len()];
    *line = format!("{indent}value: Hello {i}");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `podman build` of a Containerfile equivalent to the example's apprunner.yaml, on the
/// same base layer (imported with `podman import`, not timed), in a storage root of its
/// own: the first build, then `rebuilds` builds after the same one-line change.
fn podman(
    base: &Path,
    repo: &Path,
    rebuilds: usize,
    driver: &str,
    isolation: &str,
) -> Option<(f64, Vec<f64>)> {
    let root = tempfile::tempdir().ok()?;
    let podman = |args: &[&str]| {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(root.path().join("storage"))
            .arg("--runroot")
            .arg(root.path().join("run"))
            .arg("--storage-driver")
            .arg(driver)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    };
    let run = |mut c: Command| -> Result<(), String> {
        let out = c.output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    };
    let base_s = base.to_string_lossy().into_owned();
    if let Err(e) = run(podman(&["import", &base_s, "localhost/bench-base:latest"])) {
        println!("podman import failed: {e}");
        return None;
    }
    std::fs::write(repo.join(".containerignore"), ".git\n").ok()?;
    let containerfile = root.path().join("Containerfile");
    std::fs::write(
        &containerfile,
        "FROM localhost/bench-base:latest\n\
         ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 PIP_BREAK_SYSTEM_PACKAGES=1\n\
         COPY . /app\n\
         WORKDIR /app\n\
         RUN python3 -m compileall -q .\n\
         ENV PORT=8080 GREETING=\"Hello from runway\" PYTHONUNBUFFERED=1\n\
         EXPOSE 8080\n\
         CMD [\"python3\", \"app.py\"]\n",
    )
    .ok()?;
    let cf = containerfile.to_string_lossy().into_owned();
    let ctx = repo.to_string_lossy().into_owned();
    let build = |tag: &str| -> Result<f64, String> {
        let t = Instant::now();
        run(podman(&[
            "build",
            "--isolation",
            isolation,
            "-q",
            "-t",
            tag,
            "-f",
            &cf,
            &ctx,
        ]))?;
        Ok(t.elapsed().as_secs_f64())
    };
    println!(
        "podman ({driver} storage, {isolation} isolation): first build, then {rebuilds} rebuilds after the same change"
    );
    let first = match build("localhost/bench:0") {
        Ok(s) => s,
        Err(e) => {
            println!("podman build failed: {e}");
            return None;
        }
    };
    println!("  first build   {first:6.2} s");
    let mut times = Vec::new();
    for i in 1..=rebuilds {
        change_greeting(repo, 100 + i);
        let secs = build(&format!("localhost/bench:{i}")).ok()?;
        println!("  rebuild {i:<3}   {secs:6.2} s");
        times.push(secs);
    }
    let _ = run(podman(&["system", "reset", "--force"]));
    Some((first, times))
}
