//! `runway secrets` and `runway parameters`: Secrets Manager and the Parameter Store from
//! the command line, following the AWS CLI's names. Secret values are read from a file or
//! standard input, never from the command line (shell history), and are printed only by
//! `get` with an explicit flag (`--show-value`, `--with-decryption`).

use crate::ClientArgs;
use crate::client::Client;
use crate::commands::{Output, block_on, print_json, print_table, read_secret, text, when};
use anyhow::{Result, bail};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum SecretsCommand {
    /// Create a secret; its value is read from --value-file (default: standard input).
    Create {
        name: String,
        /// A file holding the value ("-": standard input).
        #[arg(long, value_name = "FILE", default_value = "-")]
        value_file: PathBuf,
        #[arg(long)]
        description: Option<String>,
        /// The KMS key that seals it (id, ARN or alias; default: aws/secretsmanager).
        #[arg(long)]
        kms_key_id: Option<String>,
    },
    /// Store a new value (the new AWSCURRENT version; the old one becomes AWSPREVIOUS).
    Put {
        name: String,
        /// A file holding the value ("-": standard input).
        #[arg(long, value_name = "FILE", default_value = "-")]
        value_file: PathBuf,
    },
    /// Describe a secret; with --show-value, print its value instead.
    Get {
        name: String,
        /// Print the value (of AWSCURRENT, or the stage or version given).
        #[arg(long)]
        show_value: bool,
        #[arg(long)]
        version_stage: Option<String>,
        #[arg(long)]
        version_id: Option<String>,
    },
    /// List secrets.
    Ls {
        /// Also those scheduled for deletion.
        #[arg(long)]
        include_planned_deletion: bool,
    },
    /// Delete a secret after a recovery window (7 to 30 days, default 30), or at once.
    Rm {
        name: String,
        #[arg(long, conflicts_with = "force_delete_without_recovery")]
        recovery_window_in_days: Option<i64>,
        #[arg(long)]
        force_delete_without_recovery: bool,
    },
    /// Cancel a scheduled deletion.
    Restore { name: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum ParametersCommand {
    /// Create a parameter, or a new version of one with --overwrite.
    Put {
        name: String,
        /// The value, for a String or StringList (a SecureString's is read from a file).
        #[arg(long, conflicts_with = "value_file")]
        value: Option<String>,
        /// A file holding the value ("-": standard input).
        #[arg(long, value_name = "FILE")]
        value_file: Option<PathBuf>,
        /// String, StringList or SecureString.
        #[arg(long = "type", default_value = "String")]
        kind: String,
        #[arg(long)]
        overwrite: bool,
        /// The KMS key of a SecureString (default: aws/ssm).
        #[arg(long)]
        key_id: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Print a parameter's value (a SecureString's decrypted only with --with-decryption);
    /// NAME may end in :VERSION or :LABEL.
    Get {
        name: String,
        #[arg(long)]
        with_decryption: bool,
    },
    /// List parameters (metadata, no values), or those under --path.
    Ls {
        #[arg(long)]
        path: Option<String>,
        #[arg(long)]
        recursive: bool,
    },
    /// Delete a parameter and all its versions.
    Rm { name: String },
}

/// The service a command speaks to.
#[derive(Debug, Clone, Copy)]
enum Service {
    SecretsManager,
    Ssm,
}

impl Service {
    async fn call(self, client: &Client, operation: &str, input: Value) -> Result<Value> {
        let (prefix, signing_name) = match self {
            Service::SecretsManager => ("secretsmanager", "secretsmanager"),
            Service::Ssm => ("AmazonSSM", "ssm"),
        };
        client
            .call_service(&format!("{prefix}.{operation}"), signing_name, &input)
            .await
    }

    /// Every page of a listing: the items of `member`, following NextToken.
    async fn pages(
        self,
        client: &Client,
        operation: &str,
        mut input: Value,
        member: &str,
    ) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        loop {
            let page = self.call(client, operation, input.clone()).await?;
            out.extend(page[member].as_array().cloned().unwrap_or_default());
            match page["NextToken"].as_str() {
                Some(token) => input["NextToken"] = json!(token),
                None => return Ok(out),
            }
        }
    }
}

async fn secretsmanager(client: &Client, operation: &str, input: Value) -> Result<Value> {
    Service::SecretsManager.call(client, operation, input).await
}

async fn ssm(client: &Client, operation: &str, input: Value) -> Result<Value> {
    Service::Ssm.call(client, operation, input).await
}

pub fn secrets(command: SecretsCommand, args: &ClientArgs) -> Result<()> {
    let client = Client::new(args)?;
    let json_out = args.output == Output::Json;
    block_on(async {
        match command {
            SecretsCommand::Create {
                name,
                value_file,
                description,
                kms_key_id,
            } => {
                let mut input = json!({
                    "Name": name,
                    "SecretString": read_secret(&value_file)?,
                    "ClientRequestToken": uuid_token(),
                });
                if let Some(d) = description {
                    input["Description"] = json!(d);
                }
                if let Some(k) = kms_key_id {
                    input["KmsKeyId"] = json!(k);
                }
                let out = secretsmanager(&client, "CreateSecret", input).await?;
                if json_out {
                    return print_json(&out);
                }
                println!(
                    "Created {} (version {}).",
                    text(&out["ARN"]),
                    text(&out["VersionId"])
                );
                Ok(())
            }
            SecretsCommand::Put { name, value_file } => {
                let input = json!({
                    "SecretId": name,
                    "SecretString": read_secret(&value_file)?,
                    "ClientRequestToken": uuid_token(),
                });
                let out = secretsmanager(&client, "PutSecretValue", input).await?;
                if json_out {
                    return print_json(&out);
                }
                println!(
                    "Stored version {} of {} ({}).",
                    text(&out["VersionId"]),
                    text(&out["Name"]),
                    out["VersionStages"]
                        .as_array()
                        .map(|s| s.iter().map(text).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                );
                Ok(())
            }
            SecretsCommand::Get {
                name,
                show_value,
                version_stage,
                version_id,
            } => {
                if !show_value {
                    if version_stage.is_some() || version_id.is_some() {
                        bail!(
                            "--version-stage and --version-id choose the value --show-value prints"
                        );
                    }
                    let out =
                        secretsmanager(&client, "DescribeSecret", json!({ "SecretId": name }))
                            .await?;
                    if json_out {
                        return print_json(&out);
                    }
                    for (k, v) in [
                        ("Name", text(&out["Name"])),
                        ("ARN", text(&out["ARN"])),
                        ("Description", text(&out["Description"])),
                        ("KMS key", text(&out["KmsKeyId"])),
                        ("Created", when(&out["CreatedDate"])),
                        ("Changed", when(&out["LastChangedDate"])),
                        ("Deleted", when(&out["DeletedDate"])),
                    ] {
                        if !v.is_empty() && v != "-" {
                            println!("{:<13}{v}", format!("{k}:"));
                        }
                    }
                    println!("Versions:");
                    for (id, stages) in out["VersionIdsToStages"].as_object().into_iter().flatten()
                    {
                        let stages: Vec<String> =
                            stages.as_array().into_iter().flatten().map(text).collect();
                        println!("  {id}  {}", stages.join(", "));
                    }
                    return Ok(());
                }
                let mut input = json!({ "SecretId": name });
                if let Some(s) = version_stage {
                    input["VersionStage"] = json!(s);
                }
                if let Some(v) = version_id {
                    input["VersionId"] = json!(v);
                }
                let out = secretsmanager(&client, "GetSecretValue", input).await?;
                if json_out {
                    return print_json(&out);
                }
                let mut stdout = std::io::stdout();
                match (out["SecretString"].as_str(), out["SecretBinary"].as_str()) {
                    (Some(s), _) => writeln!(stdout, "{s}")?,
                    (None, Some(b)) => {
                        use base64::Engine as _;
                        let bytes = base64::engine::general_purpose::STANDARD.decode(b)?;
                        stdout.write_all(&bytes)?;
                    }
                    (None, None) => bail!("the secret version holds no value"),
                }
                Ok(())
            }
            SecretsCommand::Ls {
                include_planned_deletion,
            } => {
                let list = Service::SecretsManager
                    .pages(
                        &client,
                        "ListSecrets",
                        json!({
                            "IncludePlannedDeletion": include_planned_deletion,
                            "SortOrder": "asc",
                        }),
                        "SecretList",
                    )
                    .await?;
                if json_out {
                    return print_json(&json!(list));
                }
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|s| {
                        vec![
                            text(&s["Name"]),
                            when(&s["LastChangedDate"]),
                            if s["DeletedDate"].is_null() {
                                String::new()
                            } else {
                                "scheduled for deletion".into()
                            },
                            text(&s["ARN"]),
                        ]
                    })
                    .collect();
                print_table(&["NAME", "CHANGED", "STATE", "ARN"], &rows);
                Ok(())
            }
            SecretsCommand::Rm {
                name,
                recovery_window_in_days,
                force_delete_without_recovery,
            } => {
                let mut input = json!({ "SecretId": name });
                if let Some(d) = recovery_window_in_days {
                    input["RecoveryWindowInDays"] = json!(d);
                }
                if force_delete_without_recovery {
                    input["ForceDeleteWithoutRecovery"] = json!(true);
                }
                let out = secretsmanager(&client, "DeleteSecret", input).await?;
                if json_out {
                    return print_json(&out);
                }
                if force_delete_without_recovery {
                    println!("Deleted {}.", text(&out["Name"]));
                } else {
                    println!(
                        "{} will be deleted at {} (runway secrets restore {} cancels).",
                        text(&out["Name"]),
                        when(&out["DeletionDate"]),
                        text(&out["Name"])
                    );
                }
                Ok(())
            }
            SecretsCommand::Restore { name } => {
                let out =
                    secretsmanager(&client, "RestoreSecret", json!({ "SecretId": name })).await?;
                if json_out {
                    return print_json(&out);
                }
                println!("Restored {}.", text(&out["Name"]));
                Ok(())
            }
        }
    })
}

/// A version id for a new value, so that a retried call creates one version.
fn uuid_token() -> String {
    let mut bytes = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    hex::encode(bytes)
}

pub fn parameters(command: ParametersCommand, args: &ClientArgs) -> Result<()> {
    let client = Client::new(args)?;
    let json_out = args.output == Output::Json;
    block_on(async {
        match command {
            ParametersCommand::Put {
                name,
                value,
                value_file,
                kind,
                overwrite,
                key_id,
                description,
            } => {
                let value = match (value, value_file) {
                    (Some(_), _) if kind == "SecureString" => bail!(
                        "a SecureString's value is read from a file, not the command line: --value-file FILE (or - for standard input)"
                    ),
                    (Some(v), _) => v,
                    (None, Some(file)) => read_secret(&file)?,
                    (None, None) => bail!("give the value with --value or --value-file"),
                };
                let mut input = json!({
                    "Name": name,
                    "Value": value,
                    "Type": kind,
                    "Overwrite": overwrite,
                });
                if let Some(k) = key_id {
                    input["KeyId"] = json!(k);
                }
                if let Some(d) = description {
                    input["Description"] = json!(d);
                }
                let out = ssm(&client, "PutParameter", input).await?;
                if json_out {
                    return print_json(&out);
                }
                println!("Stored {name} version {}.", text(&out["Version"]));
                Ok(())
            }
            ParametersCommand::Get {
                name,
                with_decryption,
            } => {
                let out = ssm(
                    &client,
                    "GetParameter",
                    json!({ "Name": name, "WithDecryption": with_decryption }),
                )
                .await?;
                if json_out {
                    return print_json(&out);
                }
                let p = &out["Parameter"];
                if p["Type"] == "SecureString" && !with_decryption {
                    bail!("{name} is a SecureString: add --with-decryption to print its value");
                }
                println!("{}", text(&p["Value"]));
                Ok(())
            }
            ParametersCommand::Ls { path, recursive } => {
                let list = match path {
                    Some(path) => {
                        let input = json!({ "Path": path, "Recursive": recursive });
                        Service::Ssm
                            .pages(&client, "GetParametersByPath", input, "Parameters")
                            .await?
                    }
                    None => {
                        Service::Ssm
                            .pages(&client, "DescribeParameters", json!({}), "Parameters")
                            .await?
                    }
                };
                if json_out {
                    // Metadata only: values (even encrypted) stay out of listings.
                    let list: Vec<Value> = list
                        .into_iter()
                        .map(|mut p| {
                            if let Some(o) = p.as_object_mut() {
                                o.remove("Value");
                            }
                            p
                        })
                        .collect();
                    return print_json(&json!(list));
                }
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|p| {
                        vec![
                            text(&p["Name"]),
                            text(&p["Type"]),
                            text(&p["Version"]),
                            when(&p["LastModifiedDate"]),
                        ]
                    })
                    .collect();
                print_table(&["NAME", "TYPE", "VERSION", "MODIFIED"], &rows);
                Ok(())
            }
            ParametersCommand::Rm { name } => {
                let out = ssm(&client, "DeleteParameter", json!({ "Name": name })).await?;
                if json_out {
                    return print_json(&out);
                }
                println!("Deleted {name}.");
                Ok(())
            }
        }
    })
}
