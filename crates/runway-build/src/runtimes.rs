//! Managed runtimes: App Runner's names (`PYTHON_3` in the API, `python3` in
//! `apprunner.yaml`), the base image each builds and runs on, and the runtime-version
//! policy (which `run.runtime-version` values a runtime takes, and how one picks the
//! image's tag).
//!
//! A base image reference may hold `{version}`, replaced by the runtime version (the one
//! `apprunner.yaml` asks for, or the runtime's default). A reference without a registry
//! host (`runtimes/python3:latest`) names a repository of runway's own registry; one with
//! a host (`docker.io/library/python:{version}-slim`) is pulled into runway's registry the
//! first time a build needs it.

use std::collections::HashMap;

/// A managed runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    Python3,
    Python311,
    Nodejs18,
    Nodejs22,
    Corretto11,
    Corretto17,
    Corretto21,
    Go1,
    Dotnet8,
    Php8,
    Ruby3,
}

/// The language a runtime builds, which decides the default commands and caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Python,
    Node,
    Java,
    Go,
    Dotnet,
    Php,
    Ruby,
}

/// Facts about one runtime.
struct Info {
    runtime: Runtime,
    name: &'static str,
    api_names: &'static [&'static str],
    family: Family,
    /// The default base image; `{version}` is the runtime version.
    image: &'static str,
    /// The version used when `apprunner.yaml` names none.
    default_version: &'static str,
    /// A runtime version must be this, or start with this and a dot.
    version_key: &'static str,
}

const TABLE: &[Info] = &[
    Info {
        runtime: Runtime::Python3,
        name: "python3",
        api_names: &["PYTHON_3"],
        family: Family::Python,
        image: "docker.io/library/python:{version}-slim",
        default_version: "3.11",
        version_key: "3",
    },
    Info {
        runtime: Runtime::Python311,
        name: "python311",
        api_names: &["PYTHON_311"],
        family: Family::Python,
        image: "docker.io/library/python:{version}-slim",
        default_version: "3.11",
        version_key: "3.11",
    },
    Info {
        runtime: Runtime::Nodejs18,
        name: "nodejs18",
        // The retired Node.js runtimes build on the oldest one still offered.
        api_names: &["NODEJS_18", "NODEJS_12", "NODEJS_14", "NODEJS_16"],
        family: Family::Node,
        image: "docker.io/library/node:{version}-slim",
        default_version: "18",
        version_key: "18",
    },
    Info {
        runtime: Runtime::Nodejs22,
        name: "nodejs22",
        api_names: &["NODEJS_22"],
        family: Family::Node,
        image: "docker.io/library/node:{version}-slim",
        default_version: "22",
        version_key: "22",
    },
    Info {
        runtime: Runtime::Corretto11,
        name: "corretto11",
        api_names: &["CORRETTO_11", "CORRETTO_8"],
        family: Family::Java,
        image: "docker.io/library/amazoncorretto:{version}",
        default_version: "11",
        version_key: "11",
    },
    Info {
        runtime: Runtime::Corretto17,
        name: "corretto17",
        api_names: &["CORRETTO_17"],
        family: Family::Java,
        image: "docker.io/library/amazoncorretto:{version}",
        default_version: "17",
        version_key: "17",
    },
    Info {
        runtime: Runtime::Corretto21,
        name: "corretto21",
        api_names: &["CORRETTO_21"],
        family: Family::Java,
        image: "docker.io/library/amazoncorretto:{version}",
        default_version: "21",
        version_key: "21",
    },
    Info {
        runtime: Runtime::Go1,
        name: "go1",
        api_names: &["GO_1"],
        family: Family::Go,
        image: "docker.io/library/golang:{version}",
        default_version: "1.23",
        version_key: "1",
    },
    Info {
        runtime: Runtime::Dotnet8,
        name: "dotnet8",
        api_names: &["DOTNET_8", "DOTNET_6"],
        family: Family::Dotnet,
        image: "mcr.microsoft.com/dotnet/sdk:{version}",
        default_version: "8.0",
        version_key: "8",
    },
    Info {
        runtime: Runtime::Php8,
        name: "php8",
        api_names: &["PHP_81"],
        family: Family::Php,
        image: "docker.io/library/php:{version}-cli",
        default_version: "8.3",
        version_key: "8",
    },
    Info {
        runtime: Runtime::Ruby3,
        name: "ruby3",
        api_names: &["RUBY_31"],
        family: Family::Ruby,
        image: "docker.io/library/ruby:{version}-slim",
        default_version: "3.3",
        version_key: "3",
    },
];

impl Runtime {
    /// Every runtime, in the order of App Runner's documentation.
    pub const ALL: [Runtime; 11] = [
        Runtime::Python3,
        Runtime::Python311,
        Runtime::Nodejs18,
        Runtime::Nodejs22,
        Runtime::Corretto11,
        Runtime::Corretto17,
        Runtime::Corretto21,
        Runtime::Go1,
        Runtime::Dotnet8,
        Runtime::Php8,
        Runtime::Ruby3,
    ];

    fn info(self) -> &'static Info {
        // The table has one row per variant (checked by a test).
        TABLE
            .iter()
            .find(|i| i.runtime == self)
            .unwrap_or(&TABLE[0])
    }

    /// The name `apprunner.yaml` uses (`python3`).
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The name the API uses (`PYTHON_3`).
    pub fn api_name(self) -> &'static str {
        self.info().api_names[0]
    }

    /// The runtime `apprunner.yaml` calls `name`.
    pub fn from_name(name: &str) -> Option<Runtime> {
        TABLE.iter().find(|i| i.name == name).map(|i| i.runtime)
    }

    /// The runtime the API calls `name` (retired App Runner runtimes map to the nearest
    /// one offered: `NODEJS_12`..`16` to `nodejs18`, `CORRETTO_8` to `corretto11`,
    /// `DOTNET_6` to `dotnet8`).
    pub fn from_api_name(name: &str) -> Option<Runtime> {
        TABLE
            .iter()
            .find(|i| i.api_names.contains(&name))
            .map(|i| i.runtime)
    }

    pub fn family(self) -> Family {
        self.info().family
    }

    /// The default base image reference, with `{version}` to fill in.
    pub fn default_image(self) -> &'static str {
        self.info().image
    }

    /// The runtime version used when none is asked for.
    pub fn default_version(self) -> &'static str {
        self.info().default_version
    }

    /// Checks a `run.runtime-version` against this runtime's policy: digits and dots,
    /// equal to the runtime's major (or major.minor) version or starting with it and a
    /// dot (`python311` takes `3.11` and `3.11.9`, `nodejs22` takes `22` and `22.4.1`).
    pub fn check_version(self, version: &str) -> Result<(), String> {
        let key = self.info().version_key;
        let well_formed = !version.is_empty()
            && version.len() <= 32
            && version
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let matches = version == key
            || version
                .strip_prefix(key)
                .is_some_and(|rest| rest.starts_with('.'));
        if well_formed && matches {
            Ok(())
        } else {
            Err(format!(
                "runtime {} takes a runtime-version of {key} or {key}.<n>..., not {version:?}",
                self.name()
            ))
        }
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every runtime's name, for error messages.
pub fn names() -> String {
    TABLE.iter().map(|i| i.name).collect::<Vec<_>>().join(", ")
}

/// The base image each runtime uses: the defaults, overridden per runtime by the server's
/// configuration (`[runtime-images] python3 = "runtimes/python3:latest"`).
#[derive(Debug, Clone, Default)]
pub struct RuntimeImages {
    overrides: HashMap<Runtime, String>,
}

impl RuntimeImages {
    /// The defaults, with `overrides` (keyed by `apprunner.yaml` runtime names, or API
    /// names) taking precedence. Fails on an unknown runtime name or an empty reference.
    pub fn new(overrides: &HashMap<String, String>) -> Result<RuntimeImages, String> {
        let mut out = HashMap::new();
        for (name, reference) in overrides {
            let runtime = Runtime::from_name(name)
                .or_else(|| Runtime::from_api_name(name))
                .ok_or_else(|| {
                    format!(
                        "unknown runtime {name:?} in the runtime images (one of: {})",
                        names()
                    )
                })?;
            let reference = reference.trim();
            if reference.is_empty() || reference.chars().any(char::is_whitespace) {
                return Err(format!(
                    "the base image for {name} must be an image reference"
                ));
            }
            out.insert(runtime, reference.to_string());
        }
        Ok(RuntimeImages { overrides: out })
    }

    /// The base image reference for `runtime` at `version` (checked against the policy;
    /// the runtime's default when `None`).
    pub fn reference(&self, runtime: Runtime, version: Option<&str>) -> Result<String, String> {
        if let Some(v) = version {
            runtime.check_version(v)?;
        }
        let version = version.unwrap_or(runtime.default_version());
        let template = self
            .overrides
            .get(&runtime)
            .map_or(runtime.default_image(), String::as_str);
        Ok(template.replace("{version}", version))
    }
}

/// Whether `reference` names runway's own registry: no registry host in its first
/// component (no `.` or `:` and not `localhost`), or one of `own_hosts`.
pub fn is_local_reference(reference: &str, own_hosts: &[String]) -> bool {
    let Some((first, _)) = reference.split_once('/') else {
        return true;
    };
    let is_host = first.contains('.') || first.contains(':') || first == "localhost";
    !is_host || own_hosts.iter().any(|h| h == first)
}

/// A local reference split into repository and tag (`latest` when none); a digest is
/// kept as the reference (`repo@sha256:...` gives `("repo", "sha256:...")`).
pub fn split_local_reference(reference: &str, own_hosts: &[String]) -> (String, String) {
    let mut rest = reference;
    if let Some((first, tail)) = reference.split_once('/')
        && own_hosts.iter().any(|h| h == first)
    {
        rest = tail;
    }
    if let Some((name, digest)) = rest.split_once('@') {
        return (name.to_string(), digest.to_string());
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].find(':') {
        Some(i) => (
            rest[..last_slash + i].to_string(),
            rest[last_slash + i + 1..].to_string(),
        ),
        None => (rest.to_string(), "latest".to_string()),
    }
}

#[cfg(test)]
mod tests;
