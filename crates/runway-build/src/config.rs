//! `apprunner.yaml`, all of it, parsed with serde-saphyr so that an invalid file gets an
//! error naming its line and column and what was expected; unknown keys are errors too.
//!
//! ```yaml
//! version: 1.0
//! runtime: python3
//! build:
//!   commands:
//!     pre-build: [...]
//!     build: [...]
//!     post-build: [...]
//!   env: [{name: N, value: V}]
//! run:
//!   runtime-version: 3.11.9
//!   pre-run: [...]
//!   command: python3 app.py
//!   network: {port: 8000, env: MY_PORT}
//!   env: [{name: N, value: V}]
//!   secrets: [{name: N, value-from: arn:...}]
//! ```
//!
//! runway also reads its HTTP settings (`runway_model::http`) under `run.network`, where
//! App Runner ignores them: `protocol` (`http1` or `h2c`), `request-timeout` and
//! `idle-timeout` (seconds, or `90s`, `5m`, `2h`) and `max-request-body` (bytes, or
//! `64KiB`, `32MiB`, `1GiB`, `unlimited`).

use crate::runtimes::{self, Runtime};
use runway_model::http::{self, InstanceProtocol};
use runway_model::shapes::HttpConfiguration;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The name of the configuration file in the source directory.
pub const FILE_NAME: &str = "apprunner.yaml";
/// The largest configuration file read.
pub const MAX_FILE_SIZE: usize = 256 * 1024;

/// Why `apprunner.yaml` was refused: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{FILE_NAME} line {line}, column {column}: {message}")]
pub struct ConfigFileError {
    /// 1-based; 0 when the error has no position (an empty file).
    pub line: u64,
    /// 1-based; 0 when the error has no position.
    pub column: u64,
    pub message: String,
}

/// A secret handed to the application as an environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    /// The environment variable.
    pub name: String,
    /// The secret or parameter ARN (`value-from`).
    pub value_from: String,
}

/// A parsed, checked `apprunner.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct AppRunnerConfig {
    pub runtime: Runtime,
    pub pre_build: Vec<String>,
    pub build: Vec<String>,
    pub post_build: Vec<String>,
    pub build_env: Vec<(String, String)>,
    pub runtime_version: Option<String>,
    pub pre_run: Vec<String>,
    pub command: Option<String>,
    pub port: Option<u16>,
    /// The environment variable that receives the port (`run.network.env`).
    pub port_env: Option<String>,
    pub run_env: Vec<(String, String)>,
    pub secrets: Vec<SecretRef>,
    /// runway's HTTP settings from `run.network` (members not given are `None`).
    pub http: HttpConfiguration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: Version,
    runtime: RuntimeName,
    #[serde(default)]
    build: Option<Mapping<Build>>,
    #[serde(default)]
    run: Option<Mapping<Run>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Build {
    #[serde(default)]
    commands: Option<Mapping<Commands>>,
    #[serde(default)]
    env: Option<Vec<EnvVar>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Commands {
    #[serde(default, rename = "pre-build")]
    pre_build: Option<Vec<Command>>,
    #[serde(default)]
    build: Option<Vec<Command>>,
    #[serde(default, rename = "post-build")]
    post_build: Option<Vec<Command>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Run {
    #[serde(default, rename = "runtime-version")]
    runtime_version: Option<RuntimeVersion>,
    #[serde(default, rename = "pre-run")]
    pre_run: Option<Vec<Command>>,
    #[serde(default)]
    command: Option<Command>,
    #[serde(default)]
    network: Option<Mapping<Network>>,
    #[serde(default)]
    env: Option<Vec<EnvVar>>,
    #[serde(default)]
    secrets: Option<Vec<Secret>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Network {
    #[serde(default)]
    port: Option<Port>,
    #[serde(default)]
    env: Option<EnvName>,
    #[serde(default)]
    protocol: Option<Protocol>,
    #[serde(default, rename = "request-timeout")]
    request_timeout: Option<RequestTimeout>,
    #[serde(default, rename = "idle-timeout")]
    idle_timeout: Option<IdleTimeout>,
    #[serde(default, rename = "max-request-body")]
    max_request_body: Option<MaxRequestBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvVar {
    name: EnvName,
    value: Scalar,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Secret {
    name: EnvName,
    #[serde(rename = "value-from")]
    value_from: NonEmpty,
}

/// What a section must be, said in the file's terms.
trait Expected {
    const EXPECTED: &'static str;
}

impl Expected for Build {
    const EXPECTED: &'static str = "build to be a mapping with commands and env";
}

impl Expected for Commands {
    const EXPECTED: &'static str = "build.commands to be a mapping of pre-build, build and post-build, each a list of commands";
}

impl Expected for Run {
    const EXPECTED: &'static str =
        "run to be a mapping with runtime-version, pre-run, command, network, env and secrets";
}

impl Expected for Network {
    const EXPECTED: &'static str = "run.network to be a mapping with port and env (and runway's protocol, request-timeout, idle-timeout and max-request-body)";
}

/// A section that must be a mapping; anything else is refused with [`Expected`]'s words
/// (`found a list, expected build.commands to be a mapping of ...`).
struct Mapping<T>(T);

impl<'de, T: Deserialize<'de> + Expected> Deserialize<'de> for Mapping<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Expected> Visitor<'de> for V<T> {
            type Value = Mapping<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(T::EXPECTED)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Mapping<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Mapping)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Mapping<T>, A::Error> {
                Err(de::Error::custom(format!(
                    "found a list, expected {}",
                    T::EXPECTED
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Mapping<T>, E> {
                Err(E::custom(format!("found {v:?}, expected {}", T::EXPECTED)))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A YAML scalar read as text: a string, or a number or boolean as written.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        // Asking for a string keeps `3.10` as written rather than the float 3.1.
        d.deserialize_str(V)
    }
}

/// Defines a scalar newtype checked by `check`, whose error says what was expected.
macro_rules! checked_scalar {
    ($name:ident, $ty:ty, $check:expr) => {
        struct $name($ty);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let Scalar(s) = Scalar::deserialize(d)?;
                let check: fn(&str) -> Result<$ty, String> = $check;
                check(&s).map($name).map_err(de::Error::custom)
            }
        }
    };
}

// 1.0, and the other 1.x a public repository wrote (`version: 1.10`; its history
// suggests App Runner took it): there has only ever been one version of the file.
checked_scalar!(Version, (), |s| {
    let minor = s
        .strip_prefix("1.")
        .unwrap_or(if s == "1" { "0" } else { "x" });
    if !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("expected version 1.0, found {s:?}"))
    }
});

checked_scalar!(RuntimeName, Runtime, |s| {
    Runtime::from_name(s).ok_or_else(|| {
        format!(
            "unknown runtime {s:?}, expected one of {}",
            runtimes::names()
        )
    })
});

checked_scalar!(RuntimeVersion, String, |s| {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "expected a version such as 3.11 or 3.11.9, found {s:?}"
        ))
    }
});

checked_scalar!(Port, u16, |s| {
    s.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("expected a port from 1 to 65535, found {s:?}"))
});

checked_scalar!(EnvName, String, |s| {
    crate::plan::check_env_name(s).map(|()| s.to_string())
});

checked_scalar!(NonEmpty, String, |s| {
    if s.trim().is_empty() {
        Err("expected a non-empty string".to_string())
    } else {
        Ok(s.to_string())
    }
});

checked_scalar!(Protocol, String, |s| {
    InstanceProtocol::parse(s)
        .map(|p| p.as_str().to_string())
        .ok_or_else(|| format!("expected protocol http1 or h2c, found {s:?}"))
});

checked_scalar!(RequestTimeout, i64, |s| {
    let secs = http::parse_duration(s)?;
    http::check_request_timeout(secs).map_err(|e| format!("request-timeout {e}"))?;
    Ok(secs)
});

checked_scalar!(IdleTimeout, i64, |s| {
    let secs = http::parse_duration(s)?;
    http::check_idle_timeout(secs).map_err(|e| format!("idle-timeout {e}"))?;
    Ok(secs)
});

checked_scalar!(MaxRequestBody, i64, http::parse_size);

/// A command: a non-empty string.
struct Command(String);

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().is_empty() {
            return Err(de::Error::custom(
                "expected a command, found an empty string",
            ));
        }
        if s.contains('\0') {
            return Err(de::Error::custom(
                "a command must not contain NUL characters",
            ));
        }
        Ok(Command(s))
    }
}

fn commands(list: Option<Vec<Command>>) -> Vec<String> {
    list.unwrap_or_default().into_iter().map(|c| c.0).collect()
}

fn env(list: Option<Vec<EnvVar>>) -> Vec<(String, String)> {
    list.unwrap_or_default()
        .into_iter()
        .map(|e| (e.name.0, e.value.0))
        .collect()
}

/// Parses and checks the text of an `apprunner.yaml`.
pub fn parse(text: &str) -> Result<AppRunnerConfig, ConfigFileError> {
    if text.len() > MAX_FILE_SIZE {
        return Err(ConfigFileError {
            line: 0,
            column: 0,
            message: format!("the file is larger than {MAX_FILE_SIZE} bytes"),
        });
    }
    if text.trim().is_empty() {
        return Err(ConfigFileError {
            line: 0,
            column: 0,
            message: "the file is empty; expected version, runtime and run".to_string(),
        });
    }
    let file: File = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let mut message = e.without_snippet().to_string();
        // The position is reported in fields; keep only what went wrong.
        if let Some(i) = message.rfind(" at line ") {
            message.truncate(i);
        }
        ConfigFileError {
            line,
            column,
            message,
        }
    })?;
    let _ = file.version;
    let build = file.build.map(|b| b.0).unwrap_or(Build {
        commands: None,
        env: None,
    });
    let cmds = build.commands.map(|c| c.0).unwrap_or(Commands {
        pre_build: None,
        build: None,
        post_build: None,
    });
    let run = file.run.map(|r| r.0).unwrap_or(Run {
        runtime_version: None,
        pre_run: None,
        command: None,
        network: None,
        env: None,
        secrets: None,
    });
    let network = run.network.map(|n| n.0).unwrap_or(Network {
        port: None,
        env: None,
        protocol: None,
        request_timeout: None,
        idle_timeout: None,
        max_request_body: None,
    });
    Ok(AppRunnerConfig {
        runtime: file.runtime.0,
        pre_build: commands(cmds.pre_build),
        build: commands(cmds.build),
        post_build: commands(cmds.post_build),
        build_env: env(build.env),
        runtime_version: run.runtime_version.map(|v| v.0),
        pre_run: commands(run.pre_run),
        command: run.command.map(|c| c.0),
        port: network.port.map(|p| p.0),
        port_env: network.env.map(|e| e.0),
        http: HttpConfiguration {
            instance_protocol: network.protocol.map(|p| p.0),
            request_timeout_seconds: network.request_timeout.map(|t| t.0),
            idle_timeout_seconds: network.idle_timeout.map(|t| t.0),
            max_request_body_bytes: network.max_request_body.map(|b| b.0),
        },
        run_env: env(run.env),
        secrets: run
            .secrets
            .unwrap_or_default()
            .into_iter()
            .map(|s| SecretRef {
                name: s.name.0,
                value_from: s.value_from.0,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests;
