//! App Runner's secret references (`RuntimeEnvironmentSecrets`, `run.secrets` in
//! `apprunner.yaml`): what they name, pinned to exact versions when a revision is made,
//! and read back when one of its instances starts.
//!
//! A reference is a Secrets Manager secret ARN (complete or partial, optionally followed
//! by `:json-key:version-stage:version-id`, as ECS takes them) or an SSM parameter ARN or
//! name (optionally `:version` or `:label`). Pinning resolves the stage or label to the
//! version it names now, so every instance of a revision (scale-out, a replacement after a
//! crash) gets the same values, and a new deployment picks up new ones. A pin names
//! versions only; values are never stored outside the stores themselves.

use crate::kms::Kms;
use crate::parameters::{self, ParameterError};
use crate::secretsmanager::{self, SecretError, SecretValue};
use runway_store::Txn;
use serde::{Deserialize, Serialize};

/// Why a reference cannot be used. The message names the reference, never a value.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The reference is not a form App Runner takes.
    #[error("{0}")]
    Invalid(String),
    /// It names nothing that exists, or its value cannot be used as an environment
    /// variable.
    #[error("{0}")]
    Unresolved(String),
    /// The store failed (worth retrying).
    #[error(transparent)]
    Secrets(#[from] crate::SecretsError),
}

type Result<T, E = ReferenceError> = std::result::Result<T, E>;

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Secret {
        /// The secret's ARN, complete or partial.
        arn: String,
        json_key: Option<String>,
        stage: Option<String>,
        version_id: Option<String>,
    },
    Parameter {
        /// A name or ARN, with its `:version` or `:label` if any.
        name: String,
    },
}

/// A reference pinned to the versions it named when the revision was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "store", rename_all = "snake_case")]
pub enum Pin {
    Secret {
        arn: String,
        version_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        json_key: Option<String>,
    },
    Parameter {
        name: String,
        version: i64,
    },
}

impl Pin {
    /// The pin as stored in a revision.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(s: &str) -> Result<Pin> {
        serde_json::from_str(s)
            .map_err(|_| ReferenceError::Invalid("a stored secret pin is not readable".into()))
    }
}

/// Parses `value_from`; `region` and `account` are this server's (a reference elsewhere
/// cannot resolve here).
pub fn parse(value_from: &str, region: &str, account: &str) -> Result<Reference> {
    let invalid = |why: &str| ReferenceError::Invalid(format!("{value_from}: {why}"));
    let Some(rest) = value_from.strip_prefix("arn:") else {
        // A parameter name, as App Runner takes one in the service's own region.
        if value_from.is_empty() {
            return Err(invalid("empty reference"));
        }
        return Ok(Reference::Parameter {
            name: value_from.to_string(),
        });
    };
    let parts: Vec<&str> = rest.splitn(5, ':').collect();
    let [partition, service, arn_region, arn_account, resource] = parts[..] else {
        return Err(invalid("not an ARN"));
    };
    if partition != "aws" && !partition.starts_with("aws-") {
        return Err(invalid("not an AWS ARN"));
    }
    if arn_region != region || arn_account != account {
        return Err(invalid(&format!(
            "it names region {arn_region} and account {arn_account}; this server is region {region}, account {account}"
        )));
    }
    match service {
        "secretsmanager" => {
            let mut fields = resource.split(':');
            let (Some("secret"), Some(name)) = (fields.next(), fields.next()) else {
                return Err(invalid("a Secrets Manager ARN must name secret:<name>"));
            };
            if name.is_empty() {
                return Err(invalid("the secret's name is empty"));
            }
            let opt = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
            let json_key = opt(fields.next());
            let stage = opt(fields.next());
            let version_id = opt(fields.next());
            if fields.next().is_some() {
                return Err(invalid(
                    "after the secret's name only :json-key:version-stage:version-id may follow",
                ));
            }
            if stage.is_some() && version_id.is_some() {
                return Err(invalid("give a version stage or a version id, not both"));
            }
            Ok(Reference::Secret {
                arn: format!(
                    "arn:{partition}:secretsmanager:{arn_region}:{arn_account}:secret:{name}"
                ),
                json_key,
                stage,
                version_id,
            })
        }
        "ssm" if resource.starts_with("parameter/") => Ok(Reference::Parameter {
            name: value_from.to_string(),
        }),
        _ => Err(invalid(
            "not a Secrets Manager secret or an SSM parameter ARN",
        )),
    }
}

fn unresolved(value_from: &str, why: impl std::fmt::Display) -> ReferenceError {
    ReferenceError::Unresolved(format!("{value_from}: {why}"))
}

fn from_secret(value_from: &str, e: SecretError) -> ReferenceError {
    match e {
        SecretError::Secrets(e) => ReferenceError::Secrets(e),
        e => unresolved(value_from, e),
    }
}

fn from_parameter(value_from: &str, e: ParameterError) -> ReferenceError {
    match e {
        ParameterError::Secrets(e) => ReferenceError::Secrets(e),
        e => unresolved(value_from, e),
    }
}

/// The text an environment variable gets from a secret value, through `json_key`.
fn env_text(value_from: &str, value: SecretValue, json_key: Option<&str>) -> Result<String> {
    let SecretValue::String(text) = value else {
        return Err(unresolved(
            value_from,
            "the secret holds SecretBinary, which cannot be an environment variable",
        ));
    };
    let text = match json_key {
        None => text,
        Some(key) => {
            let parsed: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
                unresolved(
                    value_from,
                    format!("the secret is not a JSON object, so its key {key:?} cannot be read"),
                )
            })?;
            match parsed.get(key) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => {
                    return Err(unresolved(
                        value_from,
                        format!("the secret's JSON has no key {key:?}"),
                    ));
                }
            }
        }
    };
    if text.contains('\0') {
        return Err(unresolved(
            value_from,
            "the value holds a NUL character, which an environment variable cannot",
        ));
    }
    Ok(text)
}

/// Resolves `value_from` to the versions it names now, and checks that their value can
/// be an environment variable.
pub fn pin(tx: &mut dyn Txn, kms: Kms<'_>, value_from: &str) -> Result<Pin> {
    let (region, account) = (kms.region, kms.account);
    match parse(value_from, region, account)? {
        Reference::Secret {
            arn,
            json_key,
            stage,
            version_id,
        } => {
            let store = secretsmanager::Store { kms };
            let read = store
                .get_value(tx, &arn, version_id.as_deref(), stage.as_deref())
                .map_err(|e| from_secret(value_from, e))?;
            env_text(value_from, read.value, json_key.as_deref())?;
            Ok(Pin::Secret {
                arn: read.secret.arn,
                version_id: read.version.id,
                json_key,
            })
        }
        Reference::Parameter { name } => {
            let store = parameters::Store { kms };
            let p = store
                .get(tx, &name, true)
                .map_err(|e| from_parameter(value_from, e))?;
            Ok(Pin::Parameter {
                name: p.meta.name,
                version: p.meta.version,
            })
        }
    }
}

/// The value a pin names, for an instance's environment. `value_from` is the reference
/// it was pinned from, for messages.
pub fn read(tx: &mut dyn Txn, kms: Kms<'_>, value_from: &str, pin: &Pin) -> Result<String> {
    match pin {
        Pin::Secret {
            arn,
            version_id,
            json_key,
        } => {
            let store = secretsmanager::Store { kms };
            let read = store
                .get_value(tx, arn, Some(version_id), None)
                .map_err(|e| from_secret(value_from, e))?;
            env_text(value_from, read.value, json_key.as_deref())
        }
        Pin::Parameter { name, version } => {
            let store = parameters::Store { kms };
            let p = store
                .get(tx, &format!("{name}:{version}"), true)
                .map_err(|e| from_parameter(value_from, e))?;
            if p.value.contains('\0') {
                return Err(unresolved(
                    value_from,
                    "the value holds a NUL character, which an environment variable cannot",
                ));
            }
            Ok(p.value)
        }
    }
}

#[cfg(test)]
mod tests;
