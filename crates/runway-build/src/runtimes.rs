//! Managed runtimes: every name App Runner has accepted (`PYTHON_3` in the API,
//! `python3`, `Python3` or `PYTHON3` in `apprunner.yaml`: names are case-insensitive),
//! the base image each builds and runs on, and the runtime-version policy.
//!
//! A runtime's base image is, in this order: the reference the server is configured with
//! for it (`--runtime-image`, `[runtime-images]`, or `runway runtimes set`); the
//! repository `runtimes/<name>` of runway's own registry when it exists (what
//! `scripts/base-image NAME` imports, tagged with the versions it holds); or, for the
//! runtimes App Runner still offers, the official image of the version
//! (`docker.io/library/python:{version}-slim`, ...), pulled into runway's registry once.
//! A reference may hold `{version}`, replaced by the version asked for or the runtime's
//! default.
//!
//! The runtimes App Runner retired (`python3` with Python 3.7 and 3.8, `nodejs12` to
//! `nodejs18`, `dotnet6`) and those this machine has no image for fall back to their
//! successor (`nodejs16` to `nodejs22`), which the build log and the service's events
//! say. A `run.runtime-version` is honoured: the base image chosen is one of that
//! version (a tag of `runtimes/<name>` equal to it or starting with it and a dot, or the
//! template filled with it), the build checks the interpreter it finds, and a version no
//! image has fails the build naming the versions there are and how to add one.

use std::collections::HashMap;

/// A managed runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Runtime {
    Python3,
    Python311,
    Nodejs12,
    Nodejs14,
    Nodejs16,
    Nodejs18,
    Nodejs22,
    Corretto8,
    Corretto11,
    Corretto17,
    Corretto21,
    Go1,
    Dotnet6,
    Dotnet8,
    Php81,
    Ruby31,
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
    /// The name in `apprunner.yaml` (`python3`), then other names runway has used.
    names: &'static [&'static str],
    api_name: &'static str,
    family: Family,
    /// The official image of a version (`{version}`), for the runtimes App Runner still
    /// offers; `None` for retired ones.
    image: Option<&'static str>,
    /// The version the template is filled with when none is asked for.
    default_version: &'static str,
    /// A runtime version must be this, or start with this and a dot.
    version_line: &'static str,
    /// The runtime used when this one has no image.
    successor: Option<Runtime>,
    /// Whether App Runner retired it.
    retired: bool,
}

const PYTHON: Option<&str> = Some("docker.io/library/python:{version}-slim");
const NODE: Option<&str> = Some("docker.io/library/node:{version}-slim");
const CORRETTO: Option<&str> = Some("docker.io/library/amazoncorretto:{version}");

use Family as F;
use Runtime as R;

const TABLE: &[Info] = &[
    Info {
        runtime: R::Python3,
        names: &["python3"],
        api_name: "PYTHON_3",
        family: F::Python,
        image: None,
        default_version: "3.8",
        version_line: "3",
        successor: Some(R::Python311),
        retired: true,
    },
    Info {
        runtime: R::Python311,
        names: &["python311"],
        api_name: "PYTHON_311",
        family: F::Python,
        image: PYTHON,
        default_version: "3.11",
        version_line: "3.11",
        successor: None,
        retired: false,
    },
    Info {
        runtime: R::Nodejs12,
        names: &["nodejs12"],
        api_name: "NODEJS_12",
        family: F::Node,
        image: None,
        default_version: "12",
        version_line: "12",
        successor: Some(R::Nodejs22),
        retired: true,
    },
    Info {
        runtime: R::Nodejs14,
        names: &["nodejs14"],
        api_name: "NODEJS_14",
        family: F::Node,
        image: None,
        default_version: "14",
        version_line: "14",
        successor: Some(R::Nodejs22),
        retired: true,
    },
    Info {
        runtime: R::Nodejs16,
        names: &["nodejs16"],
        api_name: "NODEJS_16",
        family: F::Node,
        image: None,
        default_version: "16",
        version_line: "16",
        successor: Some(R::Nodejs22),
        retired: true,
    },
    Info {
        runtime: R::Nodejs18,
        names: &["nodejs18"],
        api_name: "NODEJS_18",
        family: F::Node,
        image: None,
        default_version: "18",
        version_line: "18",
        successor: Some(R::Nodejs22),
        retired: true,
    },
    Info {
        runtime: R::Nodejs22,
        names: &["nodejs22"],
        api_name: "NODEJS_22",
        family: F::Node,
        image: NODE,
        default_version: "22",
        version_line: "22",
        successor: None,
        retired: false,
    },
    Info {
        runtime: R::Corretto8,
        names: &["corretto8"],
        api_name: "CORRETTO_8",
        family: F::Java,
        image: CORRETTO,
        default_version: "8",
        version_line: "8",
        successor: Some(R::Corretto11),
        retired: false,
    },
    Info {
        runtime: R::Corretto11,
        names: &["corretto11"],
        api_name: "CORRETTO_11",
        family: F::Java,
        image: CORRETTO,
        default_version: "11",
        version_line: "11",
        successor: Some(R::Corretto17),
        retired: false,
    },
    Info {
        runtime: R::Corretto17,
        names: &["corretto17"],
        api_name: "CORRETTO_17",
        family: F::Java,
        image: CORRETTO,
        default_version: "17",
        version_line: "17",
        successor: Some(R::Corretto21),
        retired: false,
    },
    Info {
        runtime: R::Corretto21,
        names: &["corretto21"],
        api_name: "CORRETTO_21",
        family: F::Java,
        image: CORRETTO,
        default_version: "21",
        version_line: "21",
        successor: None,
        retired: false,
    },
    Info {
        runtime: R::Go1,
        names: &["go1"],
        api_name: "GO_1",
        family: F::Go,
        image: Some("docker.io/library/golang:{version}"),
        default_version: "1.23",
        version_line: "1",
        successor: None,
        retired: false,
    },
    Info {
        runtime: R::Dotnet6,
        names: &["dotnet6"],
        api_name: "DOTNET_6",
        family: F::Dotnet,
        image: None,
        default_version: "6.0",
        version_line: "6",
        successor: Some(R::Dotnet8),
        retired: true,
    },
    Info {
        runtime: R::Dotnet8,
        names: &["dotnet8"],
        api_name: "DOTNET_8",
        family: F::Dotnet,
        image: Some("mcr.microsoft.com/dotnet/sdk:{version}"),
        default_version: "8.0",
        version_line: "8",
        successor: None,
        retired: false,
    },
    Info {
        runtime: R::Php81,
        names: &["php81", "php8"],
        api_name: "PHP_81",
        family: F::Php,
        image: Some("docker.io/library/php:{version}-cli"),
        default_version: "8.1",
        version_line: "8",
        successor: None,
        retired: false,
    },
    Info {
        runtime: R::Ruby31,
        names: &["ruby31", "ruby3"],
        api_name: "RUBY_31",
        family: F::Ruby,
        image: Some("docker.io/library/ruby:{version}-slim"),
        default_version: "3.1",
        version_line: "3",
        successor: None,
        retired: false,
    },
];

impl Runtime {
    /// Every runtime, in the order of App Runner's documentation.
    pub const ALL: [Runtime; 16] = [
        R::Python3,
        R::Python311,
        R::Nodejs12,
        R::Nodejs14,
        R::Nodejs16,
        R::Nodejs18,
        R::Nodejs22,
        R::Corretto8,
        R::Corretto11,
        R::Corretto17,
        R::Corretto21,
        R::Go1,
        R::Dotnet6,
        R::Dotnet8,
        R::Php81,
        R::Ruby31,
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
        self.info().names[0]
    }

    /// The name the API uses (`PYTHON_3`).
    pub fn api_name(self) -> &'static str {
        self.info().api_name
    }

    /// The runtime `apprunner.yaml` calls `name`, in any case (`Nodejs12`), with
    /// blanks and dots ignored (`python3.11`, `Nodejs 12`, which public apprunner.yaml
    /// files use); runway's earlier names `php8` and `ruby3` too.
    pub fn from_name(name: &str) -> Option<Runtime> {
        let name: String = name
            .chars()
            .filter(|c| *c != '.' && !c.is_whitespace())
            .collect();
        TABLE
            .iter()
            .find(|i| i.names.iter().any(|n| n.eq_ignore_ascii_case(&name)))
            .map(|i| i.runtime)
    }

    /// The runtime the API calls `name` (`NODEJS_16`).
    pub fn from_api_name(name: &str) -> Option<Runtime> {
        TABLE.iter().find(|i| i.api_name == name).map(|i| i.runtime)
    }

    pub fn family(self) -> Family {
        self.info().family
    }

    /// The official image reference of a version, with `{version}` to fill in; `None`
    /// for the runtimes App Runner retired.
    pub fn default_image(self) -> Option<&'static str> {
        self.info().image
    }

    /// The version a template is filled with when none is asked for.
    pub fn default_version(self) -> &'static str {
        self.info().default_version
    }

    /// The versions this runtime takes: this, or this and a dot and more (`3.11`).
    pub fn version_line(self) -> &'static str {
        self.info().version_line
    }

    /// The runtime builds fall back to when this one has no image.
    pub fn successor(self) -> Option<Runtime> {
        self.info().successor
    }

    /// Whether App Runner retired this runtime.
    pub fn retired(self) -> bool {
        self.info().retired
    }

    /// The repository of runway's registry `scripts/base-image` imports this runtime's
    /// images into (`runtimes/python311`).
    pub fn local_repository(self) -> String {
        format!("runtimes/{}", self.name())
    }

    /// The language and version line, for messages: `Node.js 16`, `Python 3.11`.
    pub fn describe(self) -> String {
        let language = match self.family() {
            Family::Python => "Python",
            Family::Node => "Node.js",
            Family::Java => "Java (Corretto)",
            Family::Go => "Go",
            Family::Dotnet => ".NET",
            Family::Php => "PHP",
            Family::Ruby => "Ruby",
        };
        format!("{language} {}", self.version_line())
    }

    /// Checks a `run.runtime-version` against this runtime's policy: digits and dots,
    /// equal to the runtime's version line or starting with it and a dot (`python311`
    /// takes `3.11` and `3.11.9`, `nodejs22` takes `22` and `22.4.1`).
    pub fn check_version(self, version: &str) -> Result<(), String> {
        let line = self.version_line();
        if is_version(version) && version_matches(version, line) {
            Ok(())
        } else {
            Err(format!(
                "runtime {} takes a runtime-version of {line} or {line}.<n>..., not {version:?}",
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
    TABLE
        .iter()
        .map(|i| i.names[0])
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `s` is a version: numbers separated by dots, at most 32 characters.
pub fn is_version(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `version` is `wanted` or starts with it and a dot (`3.11.2` is `3.11`).
pub fn version_matches(version: &str, wanted: &str) -> bool {
    version == wanted
        || version
            .strip_prefix(wanted)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The numbers of a version, for ordering.
fn version_key(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// The highest of `tags` that is a version matching `wanted` (any version when `None`).
pub fn best_version<'a>(tags: &'a [String], wanted: Option<&str>) -> Option<&'a str> {
    tags.iter()
        .map(String::as_str)
        .filter(|t| is_version(t))
        .filter(|t| wanted.is_none_or(|w| version_matches(t, w)))
        .max_by_key(|t| version_key(t))
}

/// The versions among `tags`, newest first.
pub fn versions(tags: &[String]) -> Vec<String> {
    let mut v: Vec<String> = tags.iter().filter(|t| is_version(t)).cloned().collect();
    v.sort_by_key(|t| std::cmp::Reverse(version_key(t)));
    v
}

/// The base image references runtimes are configured with, over the defaults: the
/// server's configuration (`[runtime-images] python3 = "runtimes/python3:latest"`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeImages {
    overrides: HashMap<Runtime, String>,
}

impl RuntimeImages {
    /// `overrides` keyed by `apprunner.yaml` runtime names or API names. Fails on an
    /// unknown runtime name or an empty reference.
    pub fn new(overrides: &HashMap<String, String>) -> Result<RuntimeImages, String> {
        let mut out = RuntimeImages::default();
        for (name, reference) in overrides {
            let runtime = Runtime::from_name(name)
                .or_else(|| Runtime::from_api_name(name))
                .ok_or_else(|| {
                    format!(
                        "unknown runtime {name:?} in the runtime images (one of: {})",
                        names()
                    )
                })?;
            out.set(runtime, reference)?;
        }
        Ok(out)
    }

    /// Sets `runtime`'s reference (checked: one word).
    pub fn set(&mut self, runtime: Runtime, reference: &str) -> Result<(), String> {
        let reference = reference.trim();
        if reference.is_empty() || reference.chars().any(char::is_whitespace) {
            return Err(format!(
                "the base image for {runtime} must be an image reference, not {reference:?}"
            ));
        }
        self.overrides.insert(runtime, reference.to_string());
        Ok(())
    }

    /// Removes `runtime`'s reference: it uses its imported or official image again.
    pub fn unset(&mut self, runtime: Runtime) {
        self.overrides.remove(&runtime);
    }

    /// Every runtime's configured reference.
    pub fn all(&self) -> impl Iterator<Item = (Runtime, &str)> {
        self.overrides.iter().map(|(r, s)| (*r, s.as_str()))
    }

    /// The reference `runtime` is configured with, if any.
    pub fn configured(&self, runtime: Runtime) -> Option<&str> {
        self.overrides.get(&runtime).map(String::as_str)
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

/// Where a runtime's base image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSource {
    /// The server's configuration or `runway runtimes set`.
    Configured,
    /// The repository `runtimes/<name>` of runway's registry.
    Imported,
    /// The runtime's official image.
    Official,
}

impl ImageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageSource::Configured => "configured",
            ImageSource::Imported => "imported",
            ImageSource::Official => "official",
        }
    }
}

/// What a runtime's image would be, before any version is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageChoice {
    /// The reference or template (`{version}`).
    pub reference: String,
    pub source: ImageSource,
    /// For a repository of runway's registry: its tags (empty when it has none).
    pub local_tags: Option<Vec<String>>,
}

/// The base image chosen for a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenImage {
    /// The runtime whose image it is (the successor, when the one asked for has none).
    pub runtime: Runtime,
    pub reference: String,
    pub source: ImageSource,
    /// The version the image holds, when its tag or the template says so.
    pub version: Option<String>,
    /// Set when the image is not of the runtime or version asked for: which one is
    /// used instead, and why (for the build log and the service's events).
    pub fallback: Option<String>,
}

/// Why no base image fits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoImage(pub String);

/// Chooses the base image of `runtime` at `version`, given what each runtime of its
/// chain (it, then its successors) would use ([`ImageChoice`], from the configuration
/// and runway's registry; `None`: no image at all).
///
/// A version is honoured exactly when an image holds it. Otherwise the nearest this
/// machine has is used, never silently ([`ChosenImage::fallback`] says so): the newest
/// of the same minor version (`3.11.9` asked, `3.11.2` here: patch releases keep the
/// ABI and the wheels), else the oldest newer one (`3.8.16` asked of the retired
/// `python3`, Python 3.9 here), first among the runtime's own images and then its
/// successors'. The registries a machine reaches offer only some versions (Debian has
/// no Python 3.8), and a repository that pinned one should still deploy. Only a version
/// newer than every image fails, naming what there is.
pub fn choose(
    runtime: Runtime,
    version: Option<&str>,
    choice: impl Fn(Runtime) -> Option<ImageChoice>,
) -> Result<ChosenImage, NoImage> {
    if let Some(v) = version {
        runtime.check_version(v).map_err(NoImage)?;
    }
    let mut seen: Vec<String> = Vec::new();
    let mut current = Some(runtime);
    while let Some(rt) = current {
        current = rt.successor();
        let Some(c) = choice(rt) else {
            seen.push(format!("{rt}: no image"));
            continue;
        };
        // A version must fit the line of the runtime whose image is used, or be older
        // than a successor's line (a retired version builds with its successor).
        let fits = |v: &str| {
            version_matches(v, rt.version_line()) || version_matches(rt.version_line(), v)
        };
        let older_than_line =
            |v: &str| rt != runtime && version_key(v) < version_key(rt.version_line());
        if let Some(v) = version
            && !fits(v)
            && !older_than_line(v)
        {
            seen.push(format!("{rt}: {} only", rt.describe()));
            continue;
        }
        let notes = |reference: &str, held: Option<&str>| {
            let mut notes = Vec::new();
            if rt != runtime {
                notes.push(fallback_note(runtime, rt, version));
            }
            if let (Some(asked), Some(held)) = (version, held)
                && !version_matches(held, asked)
                && !version_matches(asked, held)
            {
                notes.push(nearest_note(rt, asked, held, reference));
            }
            (!notes.is_empty()).then(|| notes.join("; "))
        };
        let chosen = |reference: String, held: Option<String>| ChosenImage {
            runtime: rt,
            fallback: notes(&reference, held.as_deref()),
            reference,
            source: c.source,
            version: held,
        };
        // `3` asked of a runtime of line `3.11` means `3.11`; a retired version asked
        // of a successor means the successor's own default.
        let version = version.map(|v| {
            if version_matches(rt.version_line(), v) {
                rt.version_line()
            } else if fits(v) {
                v
            } else {
                rt.default_version()
            }
        });
        if c.reference.contains("{version}") {
            let v = version.unwrap_or(rt.default_version()).to_string();
            return Ok(chosen(c.reference.replace("{version}", &v), Some(v)));
        }
        match &c.local_tags {
            Some(tags) if version.is_some() => {
                let wanted = version.unwrap_or_default();
                match best_version(tags, Some(wanted)).or_else(|| nearest_version(tags, wanted)) {
                    Some(tag) => {
                        let (repository, _) = split_local_reference(&c.reference, &[]);
                        return Ok(chosen(format!("{repository}:{tag}"), Some(tag.to_string())));
                    }
                    None => {
                        let have = versions(tags);
                        seen.push(format!(
                            "{rt}: {}",
                            if have.is_empty() {
                                "no versioned image".to_string()
                            } else {
                                have.join(", ")
                            }
                        ));
                    }
                }
            }
            Some(tags) => {
                let (_, tag) = split_local_reference(&c.reference, &[]);
                // `latest` is the newest version imported, when the tags say so.
                let version = if is_version(&tag) {
                    Some(tag)
                } else {
                    best_version(tags, None).map(str::to_string)
                };
                return Ok(chosen(c.reference.clone(), version));
            }
            // A reference elsewhere without `{version}`: its version is what it holds
            // (the build checks it).
            None => return Ok(chosen(c.reference.clone(), version.map(str::to_string))),
        }
    }
    let fix = match version {
        Some(v) => format!(
            "import one with `scripts/base-image {runtime} --version {v}`, or point the runtime \
             at an image of it with `runway runtimes set {runtime} REFERENCE`"
        ),
        None => format!(
            "import one with `scripts/base-image {runtime}`, or set one with \
             `runway runtimes set {runtime} REFERENCE`"
        ),
    };
    Err(NoImage(format!(
        "no base image for runtime {runtime}{} (available: {}); {fix}",
        version.map(|v| format!(" version {v}")).unwrap_or_default(),
        seen.join("; ")
    )))
}

/// The version among `tags` nearest to `wanted` when none is `wanted` itself: the
/// newest of the same minor version (`3.11.2` for `3.11.9`), else the oldest newer one
/// (`3.9.2` for `3.8.16`); `None` when every version is older.
pub fn nearest_version<'a>(tags: &'a [String], wanted: &str) -> Option<&'a str> {
    let minor: Vec<&str> = wanted.split('.').take(2).collect();
    let minor = minor.join(".");
    let wanted_key = version_key(wanted);
    (minor != wanted)
        .then(|| best_version(tags, Some(&minor)))
        .flatten()
        .or_else(|| {
            tags.iter()
                .map(String::as_str)
                .filter(|t| is_version(t) && version_key(t) > wanted_key)
                .min_by_key(|t| version_key(t))
        })
}

/// The note when an image holds `held` where `asked` was asked for.
fn nearest_note(rt: Runtime, asked: &str, held: &str, reference: &str) -> String {
    let language = rt.describe();
    let language = language
        .rsplit_once(' ')
        .map_or(language.as_str(), |(l, _)| l);
    format!(
        "runtime-version {asked} has no image here; the nearest, {language} {held} \
         ({reference}), builds and runs it instead"
    )
}

/// The first words of the line the build prints when the interpreter's version is not
/// the one asked for.
pub const VERSION_MISMATCH: &str = "runway: runtime-version";

/// The exit status of a build whose interpreter is not of the version asked for.
pub const VERSION_MISMATCH_STATUS: i32 = 97;

/// Shell lines that print the interpreter's version in the build log (`==> Python
/// 3.11.2`) and, when `wanted` is given, stop the build if it is not that version.
pub fn version_probe(family: Family, wanted: Option<&str>) -> String {
    let (language, probe) = match family {
        Family::Python => (
            "Python",
            "python3 -c 'import platform; print(platform.python_version())'",
        ),
        Family::Node => ("Node.js", "node -p process.versions.node"),
        // `openjdk version "17.0.9"`, `"1.8.0_392"` for Java 8.
        Family::Java => (
            "Java",
            r#"java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*//p' | sed 's/^1\.\([0-9]\)//' | head -n 1"#,
        ),
        Family::Go => ("Go", "go env GOVERSION | sed 's/^go//'"),
        Family::Dotnet => (".NET SDK", "dotnet --version"),
        Family::Php => ("PHP", "php -r 'echo PHP_VERSION;'"),
        Family::Ruby => ("Ruby", "ruby -e 'print RUBY_VERSION'"),
    };
    let mut s = format!(
        r#"__runway_version=$( ({probe}) 2>/dev/null | tr -d '\r' | head -n 1) || true
if [ -n "$__runway_version" ]; then echo "==> {language} $__runway_version"; else echo "==> {language}: not found in the base image"; fi
"#
    );
    if let Some(w) = wanted {
        // Checked by the caller: digits and dots only.
        s.push_str(&format!(
            r#"case "$__runway_version" in
  {w} | {w}.* | {w}_*) ;;
  *) echo "{VERSION_MISMATCH} {w} was asked for, but the base image has {language} ${{__runway_version:-none}}"; exit {VERSION_MISMATCH_STATUS} ;;
esac
"#
        ));
    }
    s
}

/// The note when `used` builds what `asked` was asked for (at `version`, when one was):
/// the import it names is of that version, since an image of another would not be used.
fn fallback_note(asked: Runtime, used: Runtime, version: Option<&str>) -> String {
    let why = if asked.retired() {
        "App Runner retired it"
    } else {
        "runway has no base image for it here"
    };
    let version = version
        .map(|v| format!(" --version {v}"))
        .unwrap_or_default();
    format!(
        "runtime {asked} ({}) is built with {used} ({}): {why}; import its image with \
         `scripts/base-image {asked}{version}` to use it",
        asked.describe(),
        used.describe()
    )
}

#[cfg(test)]
mod tests;
