//! What to do with a source that has no `apprunner.yaml` and no API values: the language
//! from the files (requirements.txt / pyproject.toml, package.json, go.mod, pom.xml /
//! build.gradle, Gemfile, composer.json, *.csproj), and each runtime family's default
//! build and start commands; a Procfile's `web:` line gives the start command.

use crate::runtimes::{Family, Runtime};
use crate::source::{self, SourceError};
use std::path::Path;

/// The largest manifest file (package.json, Procfile, ...) read.
const MAX_MANIFEST: u64 = 1024 * 1024;

/// What the files say about how to build and start an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    pub build: Vec<String>,
    /// `None` when nothing says how to start it.
    pub start: Option<String>,
}

/// The runtime the files in `dir` call for, if any.
pub fn detect_runtime(dir: &Path) -> Result<Option<Runtime>, SourceError> {
    let has = |name: &str| source::exists(dir, name);
    let runtime = if has("requirements.txt") || has("pyproject.toml") || has("Pipfile") {
        Some(Runtime::Python311)
    } else if has("package.json") {
        Some(node_runtime(dir)?)
    } else if has("go.mod") {
        Some(Runtime::Go1)
    } else if has("pom.xml") || has("build.gradle") || has("build.gradle.kts") {
        Some(Runtime::Corretto21)
    } else if has("Gemfile") {
        Some(Runtime::Ruby31)
    } else if has("composer.json") {
        Some(Runtime::Php81)
    } else if csproj(dir)?.is_some() {
        Some(Runtime::Dotnet8)
    } else {
        None
    };
    Ok(runtime)
}

/// The Node.js runtime package.json's `engines.node` asks for (`12`, `>=16`, `^18.0.0`):
/// the oldest runtime whose major version it names, else Node.js 22.
fn node_runtime(dir: &Path) -> Result<Runtime, SourceError> {
    let text = source::read_file(dir, "package.json", MAX_MANIFEST)?.unwrap_or_default();
    let engines = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("engines")?.get("node")?.as_str().map(str::to_string))
        .unwrap_or_default();
    let first_major = engines
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| !w.is_empty())
        .and_then(|w| w.parse::<u32>().ok());
    // A range open above (`>=18`) or with alternatives (`18 || 22`) is served by the
    // newest; a bounded one (`>=18 <19`, `18.x`, `^16.14`) by its first major.
    let open = (engines.contains('>') && !engines.contains('<')) || engines.contains("||");
    Ok(match first_major {
        Some(12) if !open => Runtime::Nodejs12,
        Some(14) if !open => Runtime::Nodejs14,
        Some(16) if !open => Runtime::Nodejs16,
        Some(18) if !open => Runtime::Nodejs18,
        _ => Runtime::Nodejs22,
    })
}

/// The files detection looks for, for error messages.
pub const DETECTED_FILES: &str = "requirements.txt, pyproject.toml, package.json, go.mod, \
     pom.xml, build.gradle, Gemfile, composer.json or a *.csproj";

/// The start command of a Procfile's `web:` process, if there is one.
pub fn procfile_web(dir: &Path) -> Result<Option<String>, SourceError> {
    let Some(text) = source::read_file(dir, "Procfile", MAX_MANIFEST)? else {
        return Ok(None);
    };
    Ok(text.lines().find_map(|line| {
        let (name, command) = line.split_once(':')?;
        (name.trim() == "web" && !command.trim().is_empty()).then(|| command.trim().to_string())
    }))
}

/// The default build and start commands of `family` for the files in `dir`.
pub fn defaults(family: Family, dir: &Path) -> Result<Defaults, SourceError> {
    let has = |name: &str| source::exists(dir, name);
    let procfile = procfile_web(dir)?;
    let (build, start) = match family {
        Family::Python => {
            let build = if has("requirements.txt") {
                vec!["python3 -m pip install -r requirements.txt".to_string()]
            } else if has("pyproject.toml") {
                vec!["python3 -m pip install .".to_string()]
            } else {
                Vec::new()
            };
            let start = if has("manage.py") {
                Some("python3 manage.py runserver 0.0.0.0:$PORT".to_string())
            } else {
                ["app.py", "main.py", "server.py", "application.py"]
                    .into_iter()
                    .find(|f| has(f))
                    .map(|f| format!("python3 {f}"))
            };
            (build, start)
        }
        Family::Node => node_defaults(dir)?,
        Family::Go => (
            vec!["go build -o /app/runway-app .".to_string()],
            Some("/app/runway-app".to_string()),
        ),
        Family::Java => {
            if has("pom.xml") {
                let mvn = if has("mvnw") { "./mvnw" } else { "mvn" };
                (
                    vec![format!("{mvn} -q -B -DskipTests package")],
                    Some(
                        "java -jar \"$(ls target/*.jar | grep -v -e '-sources' -e '-javadoc' -e '^original-' | head -n 1)\""
                            .to_string(),
                    ),
                )
            } else {
                let gradle = if has("gradlew") {
                    "./gradlew"
                } else {
                    "gradle"
                };
                (
                    vec![format!("{gradle} --no-daemon -q build -x test")],
                    Some(
                        "java -jar \"$(ls build/libs/*.jar | grep -v -e '-plain' | head -n 1)\""
                            .to_string(),
                    ),
                )
            }
        }
        Family::Ruby => {
            let build = if has("Gemfile") {
                vec!["bundle install".to_string()]
            } else {
                Vec::new()
            };
            let start = if has("config.ru") {
                Some("bundle exec rackup --host 0.0.0.0 --port $PORT".to_string())
            } else {
                ["app.rb", "main.rb", "server.rb"]
                    .into_iter()
                    .find(|f| has(f))
                    .map(|f| format!("ruby {f}"))
            };
            (build, start)
        }
        Family::Php => {
            let build = if has("composer.json") {
                vec!["composer install --no-dev --no-interaction --prefer-dist".to_string()]
            } else {
                Vec::new()
            };
            let docroot = if source::is_dir(dir, "public") {
                "public"
            } else {
                "."
            };
            (build, Some(format!("php -S 0.0.0.0:$PORT -t {docroot}")))
        }
        Family::Dotnet => {
            let start = csproj(dir)?.map(|name| format!("dotnet /app/out/{name}.dll"));
            (
                vec!["dotnet publish -c Release -o /app/out".to_string()],
                start,
            )
        }
    };
    Ok(Defaults {
        build,
        start: procfile.or(start),
    })
}

fn node_defaults(dir: &Path) -> Result<(Vec<String>, Option<String>), SourceError> {
    let has = |name: &str| source::exists(dir, name);
    let package: serde_json::Value = match source::read_file(dir, "package.json", MAX_MANIFEST)? {
        Some(text) => serde_json::from_str(&text).map_err(|e| SourceError::Invalid {
            path: "package.json".into(),
            reason: e.to_string(),
        })?,
        None => serde_json::Value::Null,
    };
    let script = |name: &str| {
        package
            .get("scripts")
            .and_then(|s| s.get(name))
            .and_then(serde_json::Value::as_str)
            .is_some_and(|s| !s.trim().is_empty())
    };
    let locked = has("package-lock.json") || has("npm-shrinkwrap.json");
    let install = if locked { "npm ci" } else { "npm install" };
    let flags = "--no-audit --no-fund";
    let mut build = Vec::new();
    if script("build") {
        // The build script usually needs the dev dependencies; drop them afterwards.
        build.push(format!("{install} {flags}"));
        build.push("npm run build".to_string());
        build.push(format!("npm prune --omit=dev {flags}"));
    } else {
        build.push(format!("{install} --omit=dev {flags}"));
    }
    let start = if script("start") {
        Some("npm start".to_string())
    } else {
        let main = package
            .get("main")
            .and_then(serde_json::Value::as_str)
            .filter(|m| has(m))
            .map(str::to_string);
        main.or_else(|| {
            ["server.js", "index.js", "app.js", "main.js"]
                .into_iter()
                .find(|f| has(f))
                .map(str::to_string)
        })
        .map(|f| format!("node {}", crate::script::quote(&f)))
    };
    Ok((build, start))
}

/// The name of the first `*.csproj` at the top of `dir`, without its extension.
fn csproj(dir: &Path) -> Result<Option<String>, SourceError> {
    let mut names: Vec<String> = source::list_dir(dir)?
        .into_iter()
        .filter_map(|n| n.strip_suffix(".csproj").map(str::to_string))
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    Ok(names.into_iter().next())
}

/// Environment variables every build of `family` gets (the user's build env wins).
pub fn build_env(family: Family) -> Vec<(String, String)> {
    let pairs: &[(&str, &str)] = match family {
        // Debian's Python refuses system-wide installs (PEP 668); the build container
        // is the application's own system, so installing into it is what is meant.
        Family::Python => &[
            ("PIP_BREAK_SYSTEM_PACKAGES", "1"),
            ("PIP_ROOT_USER_ACTION", "ignore"),
            ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
        ],
        Family::Node => &[("npm_config_update_notifier", "false")],
        Family::Go => &[("CGO_ENABLED", "0")],
        Family::Dotnet => &[("DOTNET_CLI_TELEMETRY_OPTOUT", "1"), ("DOTNET_NOLOGO", "1")],
        Family::Php => &[("COMPOSER_ALLOW_SUPERUSER", "1")],
        Family::Java | Family::Ruby => &[],
    };
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Environment variables every application of `family` listening on `port` runs with
/// (the user's env wins).
pub fn run_env(family: Family, port: u16) -> Vec<(String, String)> {
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    match family {
        Family::Python => vec![pair("PYTHONUNBUFFERED", "1")],
        Family::Node => vec![pair("NODE_ENV", "production")],
        Family::Dotnet => vec![pair("ASPNETCORE_URLS", &format!("http://0.0.0.0:{port}"))],
        _ => Vec::new(),
    }
}

/// The container directories `family`'s package managers cache downloads in; each is
/// mounted from a per-service host directory during builds.
pub fn cache_dirs(family: Family) -> &'static [(&'static str, &'static str)] {
    match family {
        Family::Python => &[("pip", "/root/.cache/pip")],
        Family::Node => &[("npm", "/root/.npm")],
        Family::Go => &[
            ("go-mod", "/root/go/pkg/mod"),
            ("go-build", "/root/.cache/go-build"),
        ],
        Family::Java => &[("maven", "/root/.m2"), ("gradle", "/root/.gradle")],
        Family::Ruby => &[("bundle", "/root/.bundle/cache")],
        Family::Php => &[("composer", "/root/.cache/composer")],
        Family::Dotnet => &[("nuget", "/root/.nuget/packages")],
    }
}

#[cfg(test)]
mod tests;
