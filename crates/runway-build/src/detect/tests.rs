use super::*;
use crate::test_util::write_files;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write_files(d.path(), files);
    d
}

fn runtime_of(files: &[(&str, &str)]) -> Option<Runtime> {
    detect_runtime(dir_with(files).path()).unwrap()
}

#[test]
fn each_language_is_detected() {
    assert_eq!(
        runtime_of(&[("requirements.txt", "flask\n")]),
        Some(Runtime::Python311)
    );
    assert_eq!(
        runtime_of(&[("pyproject.toml", "[project]\n")]),
        Some(Runtime::Python311)
    );
    assert_eq!(
        runtime_of(&[("package.json", "{}")]),
        Some(Runtime::Nodejs22)
    );
    assert_eq!(
        runtime_of(&[("package.json", r#"{"engines": {"node": ">=18 <19"}}"#)]),
        Some(Runtime::Nodejs18)
    );
    for (engines, runtime) in [
        ("12.x", Runtime::Nodejs12),
        ("^16.14.0", Runtime::Nodejs16),
        (">=16", Runtime::Nodejs22),
        ("18 || 20", Runtime::Nodejs22),
        ("20", Runtime::Nodejs22),
    ] {
        let package = format!(r#"{{"engines": {{"node": "{engines}"}}}}"#);
        assert_eq!(
            runtime_of(&[("package.json", &package)]),
            Some(runtime),
            "{engines}"
        );
    }
    assert_eq!(runtime_of(&[("go.mod", "module x\n")]), Some(Runtime::Go1));
    assert_eq!(
        runtime_of(&[("pom.xml", "<project/>")]),
        Some(Runtime::Corretto21)
    );
    assert_eq!(
        runtime_of(&[("build.gradle", "")]),
        Some(Runtime::Corretto21)
    );
    assert_eq!(
        runtime_of(&[("Gemfile", "source 'x'\n")]),
        Some(Runtime::Ruby31)
    );
    assert_eq!(runtime_of(&[("composer.json", "{}")]), Some(Runtime::Php81));
    assert_eq!(
        runtime_of(&[("Web.csproj", "<Project/>")]),
        Some(Runtime::Dotnet8)
    );
    assert_eq!(
        runtime_of(&[("README.md", "hi"), ("Procfile", "web: ./run")]),
        None
    );
    assert_eq!(runtime_of(&[]), None);
}

#[test]
fn python_defaults() {
    let d = dir_with(&[("requirements.txt", ""), ("app.py", "")]);
    let x = defaults(Family::Python, d.path()).unwrap();
    assert_eq!(x.build, vec!["python3 -m pip install -r requirements.txt"]);
    assert_eq!(x.start.as_deref(), Some("python3 app.py"));
    let d = dir_with(&[
        ("pyproject.toml", ""),
        ("main.py", ""),
        ("Procfile", "worker: x\nweb: gunicorn app:app\n"),
    ]);
    let x = defaults(Family::Python, d.path()).unwrap();
    assert_eq!(x.build, vec!["python3 -m pip install ."]);
    assert_eq!(
        x.start.as_deref(),
        Some("gunicorn app:app"),
        "the Procfile wins"
    );
    let d = dir_with(&[("requirements.txt", "")]);
    assert_eq!(defaults(Family::Python, d.path()).unwrap().start, None);
}

#[test]
fn node_defaults() {
    let d = dir_with(&[
        ("package.json", r#"{"scripts": {"start": "node s.js"}}"#),
        ("package-lock.json", "{}"),
    ]);
    let x = defaults(Family::Node, d.path()).unwrap();
    assert_eq!(x.build, vec!["npm ci --omit=dev --no-audit --no-fund"]);
    assert_eq!(x.start.as_deref(), Some("npm start"));
    let d = dir_with(&[
        (
            "package.json",
            r#"{"main": "lib/main.js", "scripts": {"build": "tsc"}}"#,
        ),
        ("lib/main.js", ""),
    ]);
    let x = defaults(Family::Node, d.path()).unwrap();
    assert_eq!(
        x.build,
        vec![
            "npm install --no-audit --no-fund",
            "npm run build",
            "npm prune --omit=dev --no-audit --no-fund"
        ]
    );
    assert_eq!(x.start.as_deref(), Some("node lib/main.js"));
    let d = dir_with(&[("package.json", "{}"), ("server.js", "")]);
    assert_eq!(
        defaults(Family::Node, d.path()).unwrap().start.as_deref(),
        Some("node server.js")
    );
    let d = dir_with(&[("package.json", "{ not json")]);
    assert!(matches!(
        defaults(Family::Node, d.path()),
        Err(SourceError::Invalid { .. })
    ));
}

#[test]
fn other_families_have_defaults() {
    let d = dir_with(&[("go.mod", "")]);
    let x = defaults(Family::Go, d.path()).unwrap();
    assert!(x.build[0].starts_with("go build"));
    assert!(x.start.is_some());
    let d = dir_with(&[("pom.xml", ""), ("mvnw", "")]);
    assert!(defaults(Family::Java, d.path()).unwrap().build[0].starts_with("./mvnw"));
    let d = dir_with(&[("build.gradle", "")]);
    assert!(defaults(Family::Java, d.path()).unwrap().build[0].starts_with("gradle"));
    let d = dir_with(&[("Gemfile", ""), ("config.ru", "")]);
    let x = defaults(Family::Ruby, d.path()).unwrap();
    assert_eq!(x.build, vec!["bundle install"]);
    assert!(x.start.unwrap().contains("rackup"));
    let d = dir_with(&[("composer.json", "{}"), ("public/index.php", "")]);
    assert!(
        defaults(Family::Php, d.path())
            .unwrap()
            .start
            .unwrap()
            .ends_with("-t public")
    );
    let d = dir_with(&[("Shop.csproj", "")]);
    assert_eq!(
        defaults(Family::Dotnet, d.path()).unwrap().start.as_deref(),
        Some("dotnet /app/out/Shop.dll")
    );
}

#[test]
fn links_out_of_the_source_are_not_read() {
    let outside = dir_with(&[("secret", "web: cat /etc/shadow")]);
    let d = dir_with(&[("requirements.txt", "")]);
    std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("Procfile")).unwrap();
    assert!(matches!(
        procfile_web(d.path()),
        Err(SourceError::Escape { .. })
    ));
    // A link inside is fine.
    let d = dir_with(&[("procs/web", "web: python3 app.py\n")]);
    std::os::unix::fs::symlink("procs/web", d.path().join("Procfile")).unwrap();
    assert_eq!(
        procfile_web(d.path()).unwrap().as_deref(),
        Some("python3 app.py")
    );
}

#[test]
fn environments_and_caches() {
    assert!(
        build_env(Family::Python)
            .iter()
            .any(|(k, _)| k == "PIP_BREAK_SYSTEM_PACKAGES")
    );
    assert_eq!(run_env(Family::Dotnet, 9000)[0].1, "http://0.0.0.0:9000");
    for f in [
        Family::Python,
        Family::Node,
        Family::Go,
        Family::Java,
        Family::Ruby,
        Family::Php,
        Family::Dotnet,
    ] {
        assert!(!cache_dirs(f).is_empty());
        assert!(cache_dirs(f).iter().all(|(_, t)| t.starts_with("/root/")));
    }
    assert_eq!(cache_dirs(Family::Go).len(), 2);
}
