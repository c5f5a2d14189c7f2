//! The build plan: what to build a source into, decided from `apprunner.yaml`
//! (`ConfigurationSource` REPOSITORY), from the API's `CodeConfigurationValues`
//! (`ConfigurationSource` API), or, with neither, from the files (language detection and
//! each runtime's defaults).

use crate::config::{self, AppRunnerConfig, ConfigFileError, SecretRef};
use crate::detect;
use crate::runtimes::Runtime;
use crate::source::{self, SourceError};
use runway_model::shapes::CodeConfiguration;
use runway_model::shapes::HttpConfiguration;
use serde::Serialize;
use std::path::Path;

/// The port an application listens on when nothing says otherwise (App Runner's).
pub const DEFAULT_PORT: u16 = 8080;

/// Where a plan's settings came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanOrigin {
    /// `apprunner.yaml` in the source directory.
    ConfigFile,
    /// The API's `CodeConfigurationValues`.
    Api,
    /// Detected from the files.
    Detected,
}

/// Everything a build needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildPlan {
    pub runtime: Runtime,
    /// `run.runtime-version`, if given.
    pub runtime_version: Option<String>,
    pub pre_build: Vec<String>,
    pub build: Vec<String>,
    pub post_build: Vec<String>,
    /// The build's environment (runtime defaults, then `build.env`).
    pub build_env: Vec<(String, String)>,
    pub pre_run: Vec<String>,
    pub run_command: String,
    pub port: u16,
    /// The variable that also receives the port (`run.network.env`).
    pub port_env: Option<String>,
    /// The application's environment (runtime defaults, then the user's; `PORT` and
    /// `port_env` are added to the image on top).
    pub run_env: Vec<(String, String)>,
    /// Secrets for the application: resolved at deploy time, never put in the image.
    pub secrets: Vec<SecretRef>,
    /// runway's HTTP settings from `apprunner.yaml` (none from the API or detection).
    pub http: HttpConfiguration,
    pub origin: PlanOrigin,
    /// What the plan filled in that the user did not say (a detected start command), for
    /// the build log and the service's events.
    pub notes: Vec<String>,
}

impl BuildPlan {
    /// The build commands in order: pre-build, build, post-build, then `run.pre-run`,
    /// which App Runner runs while it makes the run image (in the build, with the
    /// build's environment), not when an instance starts.
    pub fn commands(&self) -> Vec<String> {
        self.pre_build
            .iter()
            .chain(&self.build)
            .chain(&self.post_build)
            .chain(&self.pre_run)
            .cloned()
            .collect()
    }

    /// The image's environment: `run_env`, then `PORT` and `port_env` (the port wins).
    pub fn image_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .run_env
            .iter()
            .filter(|(k, _)| k != "PORT" && Some(k) != self.port_env.as_ref())
            .cloned()
            .collect();
        env.push(("PORT".into(), self.port.to_string()));
        if let Some(name) = &self.port_env
            && name != "PORT"
        {
            env.push((name.clone(), self.port.to_string()));
        }
        env
    }
}

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `apprunner.yaml` is invalid.
    #[error(transparent)]
    ConfigFile(#[from] ConfigFileError),
    /// The source's files could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Nothing says which language the source is in.
    #[error(
        "cannot tell how to build this source: add an apprunner.yaml, give CodeConfigurationValues, \
         or include one of {}",
        detect::DETECTED_FILES
    )]
    NoLanguage,
    /// Nothing says how to start the application.
    #[error("no start command: {0}")]
    NoStartCommand(String),
    /// A setting is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// Checks an environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most 256
/// characters, not App Runner's reserved `AWSAPPRUNNER` prefix.
pub fn check_env_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(format!(
            "expected an environment variable name (letters, digits and '_', not starting with a digit), found {name:?}"
        ));
    }
    if name.to_ascii_uppercase().starts_with("AWSAPPRUNNER") {
        return Err(format!(
            "{name:?}: names starting with AWSAPPRUNNER are reserved"
        ));
    }
    Ok(())
}

/// `defaults` then `user`, a name in `user` replacing the same name in `defaults`.
fn merge_env(defaults: Vec<(String, String)>, user: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = defaults
        .into_iter()
        .filter(|(k, _)| !user.iter().any(|(u, _)| u == k))
        .collect();
    out.extend(user.iter().cloned());
    out
}

/// Makes the plan for the source directory `dir` with the service's code configuration
/// (`None`: `ConfigurationSource` REPOSITORY). Blocks (reads files).
pub fn plan(dir: &Path, configuration: Option<&CodeConfiguration>) -> Result<BuildPlan, PlanError> {
    let api = configuration
        .filter(|c| c.configuration_source.as_deref() == Some("API"))
        .map(|c| {
            c.code_configuration_values.clone().ok_or_else(|| {
                PlanError::Invalid(
                    "CodeConfigurationValues are required when ConfigurationSource is API".into(),
                )
            })
        })
        .transpose()?;
    if let Some(values) = api {
        return from_api(dir, &values);
    }
    match source::read_file(dir, config::FILE_NAME, config::MAX_FILE_SIZE as u64)? {
        Some(text) => from_file(dir, config::parse(&text)?),
        None => detected(dir),
    }
}

fn from_file(dir: &Path, file: AppRunnerConfig) -> Result<BuildPlan, PlanError> {
    let runtime = file.runtime;
    let family = runtime.family();
    if let Some(v) = &file.runtime_version {
        runtime.check_version(v).map_err(PlanError::Invalid)?;
    }
    let mut notes = Vec::new();
    let run_command = match file.command {
        Some(c) => c,
        None => {
            let c = detect::defaults(family, dir)?.start.ok_or_else(|| {
                PlanError::NoStartCommand(format!(
                    "{} has no run.command, and none could be detected for {runtime}: add one",
                    config::FILE_NAME
                ))
            })?;
            notes.push(format!(
                "{} has no run.command: starting the application with `{c}`, detected from its files",
                config::FILE_NAME
            ));
            c
        }
    };
    let port = file.port.unwrap_or(DEFAULT_PORT);
    Ok(BuildPlan {
        runtime,
        runtime_version: file.runtime_version,
        pre_build: file.pre_build,
        build: file.build,
        post_build: file.post_build,
        build_env: merge_env(detect::build_env(family), &file.build_env),
        pre_run: file.pre_run,
        run_command,
        port,
        port_env: file.port_env,
        run_env: merge_env(detect::run_env(family, port), &file.run_env),
        secrets: file.secrets,
        http: file.http,
        origin: PlanOrigin::ConfigFile,
        notes,
    })
}

fn from_api(
    dir: &Path,
    values: &runway_model::shapes::CodeConfigurationValues,
) -> Result<BuildPlan, PlanError> {
    let name = values
        .runtime
        .as_deref()
        .ok_or_else(|| PlanError::Invalid("CodeConfigurationValues.Runtime is required".into()))?;
    let runtime = Runtime::from_api_name(name).ok_or_else(|| {
        PlanError::Invalid(format!(
            "CodeConfigurationValues.Runtime {name:?} is not a runtime runway builds"
        ))
    })?;
    let family = runtime.family();
    let defaults = detect::defaults(family, dir)?;
    let nonempty = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let build = match nonempty(&values.build_command) {
        Some(c) => vec![c],
        None => defaults.build,
    };
    let mut notes = Vec::new();
    let run_command = match nonempty(&values.start_command) {
        Some(c) => c,
        None => {
            let c = defaults.start.ok_or_else(|| {
                PlanError::NoStartCommand("CodeConfigurationValues has no StartCommand".into())
            })?;
            notes.push(format!(
                "CodeConfigurationValues has no StartCommand: starting the application with `{c}`, detected from its files"
            ));
            c
        }
    };
    let port = match values.port.as_deref() {
        None | Some("") => DEFAULT_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
            PlanError::Invalid(format!("CodeConfigurationValues.Port {p:?} is not a port"))
        })?,
    };
    let user_env: Vec<(String, String)> = values
        .runtime_environment_variables
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, _) in &user_env {
        check_env_name(k)
            .map_err(|e| PlanError::Invalid(format!("RuntimeEnvironmentVariables: {e}")))?;
    }
    let secrets = values
        .runtime_environment_secrets
        .iter()
        .flatten()
        .map(|(k, v)| SecretRef {
            name: k.clone(),
            value_from: v.clone(),
        })
        .collect();
    Ok(BuildPlan {
        runtime,
        runtime_version: None,
        pre_build: Vec::new(),
        build,
        post_build: Vec::new(),
        build_env: detect::build_env(family),
        pre_run: Vec::new(),
        run_command,
        port,
        port_env: None,
        run_env: merge_env(detect::run_env(family, port), &user_env),
        secrets,
        http: HttpConfiguration::default(),
        origin: PlanOrigin::Api,
        notes,
    })
}

fn detected(dir: &Path) -> Result<BuildPlan, PlanError> {
    let runtime = detect::detect_runtime(dir)?.ok_or(PlanError::NoLanguage)?;
    let family = runtime.family();
    let defaults = detect::defaults(family, dir)?;
    let run_command = defaults.start.ok_or_else(|| {
        PlanError::NoStartCommand(format!(
            "detected {runtime}, but nothing says how to start the application: add a Procfile \
             with a web: line or an {} with run.command",
            config::FILE_NAME
        ))
    })?;
    let notes = vec![format!(
        "no {} or API configuration: built as {runtime} (detected from its files), started with `{run_command}`",
        config::FILE_NAME
    )];
    Ok(BuildPlan {
        runtime,
        runtime_version: None,
        pre_build: Vec::new(),
        build: defaults.build,
        post_build: Vec::new(),
        build_env: detect::build_env(family),
        pre_run: Vec::new(),
        run_command,
        port: DEFAULT_PORT,
        port_env: None,
        run_env: detect::run_env(family, DEFAULT_PORT),
        secrets: Vec::new(),
        http: HttpConfiguration::default(),
        origin: PlanOrigin::Detected,
        notes,
    })
}

#[cfg(test)]
mod tests;
