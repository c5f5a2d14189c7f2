//! The client commands: `services`, `deploy` and `operations`, as tables or JSON.

mod http;

use crate::ClientArgs;
use crate::client::Client;
use anyhow::{Context, Result, anyhow, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

mod domains;
pub use domains::{DomainsCommand, domains};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ServicesCommand {
    /// List services.
    Ls,
    /// Show a service's configuration and status.
    Describe { name: String },
    /// Change a service's HTTP settings; its serving revision is deployed again with
    /// them (nothing is rebuilt).
    Update {
        name: String,
        #[command(flatten)]
        http: http::HttpArgs,
        /// Return once the deployment is recorded instead of waiting for it to finish.
        #[arg(long)]
        no_wait: bool,
    },
    /// Delete a service.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum OperationsCommand {
    /// List a service's operations, newest first.
    Ls { name: String },
    /// Print an operation's build log (deployments from source).
    Log { operation_id: String },
}

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The image to run, e.g. 127.0.0.1:5000/app:v1 or docker.io/library/nginx.
    #[arg(long, conflicts_with = "source")]
    image: Option<String>,
    /// A directory to upload, build (its apprunner.yaml, or its language detected) and
    /// run [default without --image: the current directory].
    #[arg(long)]
    source: Option<std::path::PathBuf>,
    /// The service's name [default with a source: the directory's name].
    #[arg(long)]
    name: Option<String>,
    /// The port the app listens on [default: 8080, or the service's current port].
    #[arg(long)]
    port: Option<u16>,
    /// An environment variable for the app, KEY=VALUE; repeat for more.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Return once the deployment is recorded instead of waiting for it to finish.
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    http: http::HttpArgs,
}

pub(crate) fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(f)
}

/// Waits for operation `op` of service `arn` to end, printing the service's new events as
/// they come when `show`; returns the final status.
async fn follow_operation(client: &Client, arn: &str, op: &str, show: bool) -> Result<String> {
    let mut shown = std::collections::HashSet::new();
    let mut log_offset = 0;
    loop {
        let ops = client
            .call("ListOperations", &json!({ "ServiceArn": arn }))
            .await?;
        let status = ops["OperationSummaryList"]
            .as_array()
            .and_then(|list| list.iter().find(|o| o["Id"].as_str() == Some(op)))
            .map(|o| text(&o["Status"]))
            .unwrap_or_default();
        if show {
            let events = client
                .call_extension(
                    "ListServiceEvents",
                    &json!({ "ServiceArn": arn, "MaxResults": 20 }),
                )
                .await?;
            let mut events = events["Events"].as_array().cloned().unwrap_or_default();
            events.reverse();
            for e in events
                .iter()
                .filter(|e| e["OperationId"].as_str() == Some(op))
            {
                let message = text(&e["Message"]);
                if shown.insert((text(&e["Time"]), message.clone())) {
                    // A build's log is whole once its end is an event: show it first.
                    if message.starts_with("Build succeeded")
                        || message.starts_with("Deployment failed")
                    {
                        log_offset = print_build_log(client, op, "    | ", log_offset).await?;
                    }
                    // A failed build's message ends with the log's last lines: shown.
                    match message.split_once("\nlast log lines:") {
                        Some((head, _)) if log_offset > 0 => println!("  {head}"),
                        _ => println!("  {message}"),
                    }
                }
            }
            log_offset = print_build_log(client, op, "    | ", log_offset).await?;
        }
        if !matches!(
            status.as_str(),
            "PENDING" | "IN_PROGRESS" | "ROLLBACK_IN_PROGRESS" | ""
        ) {
            return Ok(status);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Prints operation `op`'s build log from byte `offset` on, each line after `prefix`;
/// the new offset.
async fn print_build_log(client: &Client, op: &str, prefix: &str, mut offset: i64) -> Result<i64> {
    loop {
        let log = client
            .call_extension(
                "GetBuildLog",
                &json!({ "OperationId": op, "Offset": offset }),
            )
            .await?;
        let chunk = text(&log["Log"]);
        for line in chunk.lines() {
            println!("{prefix}{line}");
        }
        offset = log["NextOffset"].as_i64().unwrap_or(offset);
        if chunk.is_empty() {
            return Ok(offset);
        }
    }
}

/// Every item of a list operation's `key` list, following NextToken; `target` is
/// `AppRunner.<Operation>` or `Runway.<Operation>`.
pub(crate) async fn all_pages(
    client: &Client,
    target: &str,
    mut input: Value,
    key: &str,
) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    loop {
        let page = client.call_target(target, &input).await?;
        out.extend(page[key].as_array().cloned().unwrap_or_default());
        match page["NextToken"].as_str() {
            Some(t) => input["NextToken"] = json!(t),
            None => return Ok(out),
        }
    }
}

async fn all_services(client: &Client) -> Result<Vec<Value>> {
    all_pages(
        client,
        "AppRunner.ListServices",
        json!({}),
        "ServiceSummaryList",
    )
    .await
}

async fn find_service(client: &Client, name: &str) -> Result<Option<Value>> {
    Ok(all_services(client)
        .await?
        .into_iter()
        .find(|s| s["ServiceName"].as_str() == Some(name)))
}

async fn service_arn(client: &Client, name: &str) -> Result<String> {
    let service = find_service(client, name)
        .await?
        .ok_or_else(|| anyhow!("there is no service named {name}"))?;
    Ok(service["ServiceArn"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Epoch seconds as an RFC 3339 time.
pub(crate) fn when(v: &Value) -> String {
    v.as_f64()
        .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs as i64).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into())
}

/// `1024` CPU units and `2048` MB as `1 vCPU / 2 GB`.
fn units(instance: &Value) -> String {
    let num = |k: &str| instance[k].as_str().and_then(|v| v.parse::<f64>().ok());
    match (num("Cpu"), num("Memory")) {
        (Some(cpu), Some(mem)) => format!("{} vCPU / {} GB", cpu / 1024.0, mem / 1024.0),
        _ => "-".into(),
    }
}

pub(crate) fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

pub(crate) fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub fn services(command: ServicesCommand, args: &ClientArgs) -> Result<()> {
    let client = Client::new(args)?;
    block_on(async {
        match command {
            ServicesCommand::Ls => {
                let services = all_services(&client).await?;
                if args.output == Output::Json {
                    return print_json(&json!(services));
                }
                let rows: Vec<Vec<String>> = services
                    .iter()
                    .map(|s| {
                        vec![
                            text(&s["ServiceName"]),
                            text(&s["Status"]),
                            client.app_url(&text(&s["ServiceUrl"])),
                            when(&s["CreatedAt"]),
                        ]
                    })
                    .collect();
                print_table(&["NAME", "STATUS", "URL", "CREATED"], &rows);
                Ok(())
            }
            ServicesCommand::Describe { name } => {
                let arn = service_arn(&client, &name).await?;
                let out = client
                    .call("DescribeService", &json!({ "ServiceArn": arn }))
                    .await?;
                let mut s = out["Service"].clone();
                let (settings, http_rows) = http::describe_rows(&client, &arn).await?;
                if args.output == Output::Json {
                    for key in ["HttpConfiguration", "ServingHttpConfiguration"] {
                        s[key] = settings[key].clone();
                    }
                    return print_json(&s);
                }
                let image = &s["SourceConfiguration"]["ImageRepository"];
                let code = &s["SourceConfiguration"]["CodeRepository"];
                let source = if image.is_object() {
                    text(&image["ImageIdentifier"])
                } else {
                    format!(
                        "{} ({})",
                        text(&code["RepositoryUrl"]),
                        text(&code["SourceCodeVersion"]["Value"])
                    )
                };
                let asc = &s["AutoScalingConfigurationSummary"];
                let health = &s["HealthCheckConfiguration"];
                let rows = [
                    ("Name", text(&s["ServiceName"])),
                    ("ARN", text(&s["ServiceArn"])),
                    ("Status", text(&s["Status"])),
                    ("URL", client.app_url(&text(&s["ServiceUrl"]))),
                    ("Source", source),
                    ("CPU / memory", units(&s["InstanceConfiguration"])),
                    (
                        "Auto scaling",
                        format!(
                            "{} (revision {})",
                            text(&asc["AutoScalingConfigurationName"]),
                            text(&asc["AutoScalingConfigurationRevision"])
                        ),
                    ),
                    (
                        "Health check",
                        format!(
                            "{} {} every {}s",
                            text(&health["Protocol"]),
                            text(&health["Path"]),
                            text(&health["Interval"])
                        ),
                    ),
                ];
                let rows = rows
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .chain(http_rows)
                    .chain([
                        ("Created".to_string(), when(&s["CreatedAt"])),
                        ("Updated".to_string(), when(&s["UpdatedAt"])),
                    ]);
                for (k, v) in rows {
                    println!("{:<17}{v}", format!("{k}:"));
                }
                // References only: the values stay in the secret stores.
                let secrets = image["ImageConfiguration"]["RuntimeEnvironmentSecrets"]
                    .as_object()
                    .or(code["CodeConfiguration"]["CodeConfigurationValues"]
                        ["RuntimeEnvironmentSecrets"]
                        .as_object())
                    .filter(|m| !m.is_empty());
                if let Some(secrets) = secrets {
                    println!("Secrets:");
                    for (name, reference) in secrets {
                        println!("  {name} from {}", text(reference));
                    }
                }
                Ok(())
            }
            ServicesCommand::Update {
                name,
                http,
                no_wait,
            } => http::update_service(&client, args, &name, &http, no_wait).await,
            ServicesCommand::Delete { name } => {
                let arn = service_arn(&client, &name).await?;
                let out = client
                    .call("DeleteService", &json!({ "ServiceArn": arn }))
                    .await?;
                if args.output == Output::Json {
                    return print_json(&out);
                }
                println!(
                    "Deleting {name}: operation {} recorded; the service is {}.",
                    text(&out["OperationId"]),
                    text(&out["Service"]["Status"])
                );
                Ok(())
            }
        }
    })
}

/// A service name from a directory's name: letters, digits, '-' and '_', 4 to 40
/// characters, starting with a letter or digit.
fn name_from_dir(dir: &std::path::Path) -> Result<String> {
    let full = std::fs::canonicalize(dir)
        .with_context(|| format!("cannot read the source directory {}", dir.display()))?;
    let base = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(40)
        .collect();
    while name.len() < 4 && !name.is_empty() {
        name.push_str("-app");
    }
    if name.is_empty() {
        bail!(
            "cannot make a service name from {}; pass --name",
            full.display()
        );
    }
    Ok(name)
}

/// `1.2 MiB`, `340 KiB`, `12 bytes`.
fn human_bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f >= KIB * KIB {
        format!("{:.1} MiB", f / (KIB * KIB))
    } else if f >= KIB {
        format!("{:.1} KiB", f / KIB)
    } else {
        format!("{n} bytes")
    }
}

/// Packs `dir` and uploads it to the registry as `sources/<name>`, an OCI artifact whose
/// one layer is the gzipped tar of the directory (so the registry's garbage collector
/// keeps it); its `upload://sha256:<hex>` URL.
async fn upload_source(client: &Client, dir: &std::path::Path, name: &str) -> Result<String> {
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    let out = scratch.path().join("source.tar.gz");
    let (d, o) = (dir.to_path_buf(), out.clone());
    let packed = tokio::task::spawn_blocking(move || runway_build::pack_source(&d, &o))
        .await?
        .with_context(|| format!("cannot pack {}", dir.display()))?;
    println!(
        "Uploading {}: {} files, {} ({} compressed, {}; .gitignore and {} honoured)",
        dir.display(),
        packed.files,
        human_bytes(packed.bytes),
        human_bytes(packed.layer.size),
        packed.layer.digest,
        runway_build::layer::IGNORE_FILE,
    );
    let packed = packed.layer;
    let hex = packed.digest.trim_start_matches("sha256:");
    client
        .push_single_layer(
            &crate::adapters::source_repository(name),
            &[&format!("src-{}", &hex[..12])],
            &packed,
            ("application/vnd.oci.empty.v1+json", b"{}".to_vec()),
            Some("application/vnd.runway.source.v1"),
        )
        .await?;
    Ok(format!("upload://{}", packed.digest))
}

pub fn deploy(args: DeployArgs, client_args: &ClientArgs) -> Result<()> {
    let mut env = serde_json::Map::new();
    for pair in &args.env {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("--env takes KEY=VALUE, got {pair:?}"))?;
        env.insert(k.to_string(), json!(v));
    }
    let source = match &args.image {
        Some(_) => None,
        None => Some(args.source.clone().unwrap_or_else(|| ".".into())),
    };
    if source.is_some() && (args.port.is_some() || !args.env.is_empty()) {
        bail!("--port and --env are for images; a source sets them in its apprunner.yaml");
    }
    let name = match (&args.name, &source) {
        (Some(name), _) => name.clone(),
        (None, Some(dir)) => name_from_dir(dir)?,
        (None, None) => bail!("--name is required with --image"),
    };
    // Before anything is uploaded: the name is the API's to refuse, but only after.
    runway_model::validate::service_name(&Some(name.clone())).map_err(|e| {
        anyhow!(
            "{}{}",
            e.message,
            if args.name.is_none() {
                " (made from the directory's name; pass --name)"
            } else {
                ""
            }
        )
    })?;
    let client = Client::new(client_args)?;
    block_on(async {
        let existing = find_service(&client, &name).await?;
        if let Some(dir) = &source {
            let url = upload_source(&client, dir, &name).await?;
            let code = json!({ "CodeRepository": {
                "RepositoryUrl": url,
                "SourceCodeVersion": { "Type": "BRANCH", "Value": "main" },
                "CodeConfiguration": { "ConfigurationSource": "REPOSITORY" },
            }});
            let out = match &existing {
                Some(summary) => {
                    let input = json!({
                        "ServiceArn": summary["ServiceArn"],
                        "SourceConfiguration": code,
                    });
                    client.call("UpdateService", &input).await?
                }
                None => {
                    let input = json!({ "ServiceName": name, "SourceConfiguration": code });
                    client.call("CreateService", &input).await?
                }
            };
            return finish_deploy(&client, client_args, &out, &args).await;
        }
        let image = args.image.clone().unwrap_or_default();
        let out = match existing {
            Some(summary) => {
                let arn = text(&summary["ServiceArn"]);
                let current = client
                    .call("DescribeService", &json!({ "ServiceArn": arn }))
                    .await?;
                // Keep what this command does not set: the port and the other variables.
                let mut config = current["Service"]["SourceConfiguration"]["ImageRepository"]["ImageConfiguration"].clone();
                if !config.is_object() {
                    config = json!({});
                }
                if let Some(port) = args.port {
                    config["Port"] = json!(port.to_string());
                }
                let mut vars = config["RuntimeEnvironmentVariables"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                vars.extend(env);
                config["RuntimeEnvironmentVariables"] = json!(vars);
                let input = json!({
                    "ServiceArn": arn,
                    "SourceConfiguration": { "ImageRepository": {
                        "ImageIdentifier": image,
                        "ImageRepositoryType": "ECR",
                        "ImageConfiguration": config,
                    }},
                });
                client.call("UpdateService", &input).await?
            }
            None => {
                let mut config = json!({ "RuntimeEnvironmentVariables": env });
                if let Some(port) = args.port {
                    config["Port"] = json!(port.to_string());
                }
                let input = json!({
                    "ServiceName": name,
                    "SourceConfiguration": { "ImageRepository": {
                        "ImageIdentifier": image,
                        "ImageRepositoryType": "ECR",
                        "ImageConfiguration": config,
                    }},
                });
                client.call("CreateService", &input).await?
            }
        };
        finish_deploy(&client, client_args, &out, &args).await
    })
}

/// After CreateService or UpdateService answered `out`: sets the HTTP settings given (a
/// second deployment, of what the first deployed, queued behind it), waits for the
/// deployments (unless `no_wait`), showing their events and build log, and prints where
/// the app is.
async fn finish_deploy(
    client: &Client,
    client_args: &ClientArgs,
    out: &Value,
    args: &DeployArgs,
) -> Result<()> {
    let s = &out["Service"];
    let (arn, op) = (text(&s["ServiceArn"]), text(&out["OperationId"]));
    let http_op = match args.http.given() {
        true => http::update(client, &arn, &args.http, true).await?,
        false => None,
    };
    let table = client_args.output == Output::Table;
    if args.no_wait {
        if !table {
            let mut out = out.clone();
            out["HttpOperationId"] = json!(http_op);
            return print_json(&out);
        }
        println!(
            "Service {}: operation {op} recorded.",
            text(&s["ServiceName"])
        );
        if let Some(http_op) = &http_op {
            println!("  HTTP settings: operation {http_op} recorded.");
        }
        println!("  Status: {}", text(&s["Status"]));
        println!("  URL:    {}", client.app_url(&text(&s["ServiceUrl"])));
        return Ok(());
    }
    let mut status = follow_operation(client, &arn, &op, table).await?;
    if let Some(http_op) = http_op.as_deref().filter(|_| status == "SUCCEEDED") {
        status = follow_operation(client, &arn, http_op, table).await?;
    }
    if !table {
        return print_json(&json!({
            "OperationId": op,
            "HttpOperationId": http_op,
            "Status": status,
            "ServiceUrl": s["ServiceUrl"],
        }));
    }
    if status == "SUCCEEDED" {
        println!(
            "Service {} is running at {}",
            text(&s["ServiceName"]),
            client.app_url(&text(&s["ServiceUrl"]))
        );
        Ok(())
    } else {
        Err(anyhow!(
            "the deployment ended {status}; see `runway events {}`",
            text(&s["ServiceName"])
        ))
    }
}

pub fn operations(command: OperationsCommand, args: &ClientArgs) -> Result<()> {
    let client = Client::new(args)?;
    block_on(async {
        let name = match command {
            OperationsCommand::Ls { name } => name,
            OperationsCommand::Log { operation_id } => {
                print_build_log(&client, &operation_id, "", 0).await?;
                return Ok(());
            }
        };
        let arn = service_arn(&client, &name).await?;
        let input = json!({ "ServiceArn": arn });
        let ops = all_pages(
            &client,
            "AppRunner.ListOperations",
            input,
            "OperationSummaryList",
        )
        .await?;
        if args.output == Output::Json {
            return print_json(&json!(ops));
        }
        let rows: Vec<Vec<String>> = ops
            .iter()
            .map(|o| {
                vec![
                    text(&o["Id"]),
                    text(&o["Type"]),
                    text(&o["Status"]),
                    when(&o["StartedAt"]),
                    when(&o["EndedAt"]),
                ]
            })
            .collect();
        print_table(&["ID", "TYPE", "STATUS", "STARTED", "ENDED"], &rows);
        Ok(())
    })
}

#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// List connections.
    Ls,
    /// Set what a connection signs in with; secrets are read from files ("-": standard
    /// input), never from the command line. The API never returns them.
    Credentials {
        name: String,
        /// The user name for the token (git over https; registries).
        #[arg(long)]
        username: Option<String>,
        /// A file holding an access token or password.
        #[arg(long, value_name = "FILE")]
        token_file: Option<std::path::PathBuf>,
        /// A file holding a private key for git over ssh.
        #[arg(long, value_name = "FILE")]
        ssh_key_file: Option<std::path::PathBuf>,
        /// A file holding the secret push webhooks are signed with; the git host then
        /// posts to <API URL>/webhooks/<connection name>.
        #[arg(long, value_name = "FILE")]
        webhook_secret_file: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RuntimesCommand {
    /// Each managed runtime: its base image, where it comes from, whether runway's
    /// registry has it, and the versions there.
    Ls,
    /// Make builds of RUNTIME use REFERENCE (`runtimes/python311:3.11.2`, a registry's
    /// image, or a template with `{version}`), from now on, without a restart.
    Set {
        runtime: String,
        /// The image; leave out with --reset.
        reference: Option<String>,
        /// Go back to the runtime's configured, imported or official image.
        #[arg(long, conflicts_with = "reference")]
        reset: bool,
    },
    /// Find (and pull, for an official image) the base image a build of RUNTIME would
    /// use now, or say what is missing and how to add it.
    Check {
        runtime: String,
        /// The runtime-version an apprunner.yaml asks for.
        #[arg(long)]
        version: Option<String>,
    },
}

pub fn runtimes(command: RuntimesCommand, args: &ClientArgs) -> Result<()> {
    let client = Client::new(args)?;
    block_on(async {
        let out = match &command {
            RuntimesCommand::Ls => client.call_extension("ListRuntimes", &json!({})).await?,
            RuntimesCommand::Set {
                runtime,
                reference,
                reset,
            } => {
                if reference.is_none() && !reset {
                    bail!("give the image reference, or --reset");
                }
                client
                    .call_extension(
                        "UpdateRuntime",
                        &json!({ "Runtime": runtime, "ImageReference": reference.clone().unwrap_or_default() }),
                    )
                    .await?
            }
            RuntimesCommand::Check { runtime, version } => {
                let out = client
                    .call_extension(
                        "CheckRuntime",
                        &json!({ "Runtime": runtime, "RuntimeVersion": version.clone().unwrap_or_default() }),
                    )
                    .await?;
                if args.output == Output::Json {
                    return print_json(&out);
                }
                println!(
                    "{runtime}{}: {} ({}), built with {}{}",
                    version
                        .as_deref()
                        .map(|v| format!(" {v}"))
                        .unwrap_or_default(),
                    text(&out["ImageReference"]),
                    text(&out["ImageDigest"]),
                    text(&out["BuiltWith"]),
                    out["Version"]
                        .as_str()
                        .map(|v| format!(", version {v}"))
                        .unwrap_or_default()
                );
                if let Some(note) = out["Note"].as_str() {
                    println!("  {note}");
                }
                return Ok(());
            }
        };
        if args.output == Output::Json {
            return print_json(&out);
        }
        let rows: Vec<Vec<String>> = out["Runtimes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let versions: Vec<String> = r["Versions"]
                    .as_array()
                    .map(|v| v.iter().map(text).collect())
                    .unwrap_or_default();
                vec![
                    format!(
                        "{}{}",
                        text(&r["Runtime"]),
                        if r["Retired"] == true {
                            " (retired)"
                        } else {
                            ""
                        }
                    ),
                    text(&r["State"]),
                    text(&r["Source"]),
                    text(&r["Image"]),
                    versions.join(" "),
                    text(&r["Detail"]),
                ]
            })
            .collect();
        print_table(
            &["RUNTIME", "STATE", "FROM", "IMAGE", "VERSIONS", "NOTE"],
            &rows,
        );
        Ok(())
    })
}

/// A secret from `path` ("-": standard input), without its trailing newline.
pub(crate) fn read_secret(path: &std::path::Path) -> Result<String> {
    let text = if path == std::path::Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

pub fn connections(command: ConnectionsCommand, args: &ClientArgs) -> Result<()> {
    let client = Client::new(args)?;
    block_on(async {
        let list = all_pages(
            &client,
            "AppRunner.ListConnections",
            json!({}),
            "ConnectionSummaryList",
        )
        .await?;
        match command {
            ConnectionsCommand::Ls => {
                if args.output == Output::Json {
                    return print_json(&json!(list));
                }
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|c| {
                        vec![
                            text(&c["ConnectionName"]),
                            text(&c["ProviderType"]),
                            text(&c["Status"]),
                            text(&c["ConnectionArn"]),
                        ]
                    })
                    .collect();
                print_table(&["NAME", "PROVIDER", "STATUS", "ARN"], &rows);
                Ok(())
            }
            ConnectionsCommand::Credentials {
                name,
                username,
                token_file,
                ssh_key_file,
                webhook_secret_file,
            } => {
                let arn = list
                    .iter()
                    .find(|c| c["ConnectionName"].as_str() == Some(name.as_str()))
                    .map(|c| text(&c["ConnectionArn"]))
                    .ok_or_else(|| anyhow!("no connection named {name}"))?;
                let mut input = json!({ "ConnectionArn": arn });
                if let Some(u) = username {
                    input["Username"] = json!(u);
                }
                for (key, file) in [
                    ("Token", token_file),
                    ("SshPrivateKey", ssh_key_file),
                    ("WebhookSecret", webhook_secret_file),
                ] {
                    if let Some(file) = file {
                        input[key] = json!(read_secret(&file)?);
                    }
                }
                let out = client
                    .call_extension("UpdateConnectionCredentials", &input)
                    .await?;
                println!(
                    "Connection {name} is {}.",
                    text(&out["Connection"]["Status"])
                );
                Ok(())
            }
        }
    })
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import a root filesystem (a directory, e.g. from debootstrap) into runway's
    /// registry as a single-layer image, to use as a managed runtime's base image
    /// (`--runtime-image python3=runtimes/python3:latest`). See scripts/base-image.
    ImportRootfs {
        /// The root filesystem.
        dir: std::path::PathBuf,
        /// The image's name, `REPOSITORY[:TAG]` (tag: latest).
        #[arg(long)]
        name: String,
        /// More tags for the same image (`--tag 3.11.2`); repeat for more.
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
    },
}

pub fn image(command: ImageCommand, args: &ClientArgs) -> Result<()> {
    let ImageCommand::ImportRootfs { dir, name, tags } = command;
    let (repository, tag) = runway_build::image::split_name(&name)?;
    let mut all_tags = vec![tag];
    for t in tags {
        let (_, t) = runway_build::image::split_name(&format!("{repository}:{t}"))?;
        if !all_tags.contains(&t) {
            all_tags.push(t);
        }
    }
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let client = Client::new(args)?;
    block_on(async {
        let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
        let out = scratch.path().join("rootfs.tar.gz");
        println!("Packing {}...", dir.display());
        let (d, o) = (dir.clone(), out.clone());
        let layer =
            tokio::task::spawn_blocking(move || runway_build::layer::write_rootfs_layer(&d, &o))
                .await?
                .with_context(|| format!("cannot pack {}", dir.display()))?;
        println!(
            "Uploading the layer ({:.1} MiB, {})",
            layer.size as f64 / (1024.0 * 1024.0),
            layer.digest
        );
        let config = runway_build::image::rootfs_config(&layer, &Default::default());
        let tags: Vec<&str> = all_tags.iter().map(String::as_str).collect();
        client
            .push_single_layer(
                &repository,
                &tags,
                &layer,
                (
                    "application/vnd.oci.image.config.v1+json",
                    serde_json::to_vec(&config)?,
                ),
                None,
            )
            .await?;
        println!(
            "Imported {} as {repository}:{}",
            dir.display(),
            all_tags.join(", :")
        );
        Ok(())
    })
}

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// List the repositories.
    Ls,
    /// List a repository's tags.
    Tags { repository: String },
    /// Remove blobs no image needs.
    Gc,
}

pub fn registry(command: RegistryCommand, args: &ClientArgs) -> Result<()> {
    let client = Client::new(args)?;
    block_on(async {
        let (key, path) = match &command {
            RegistryCommand::Ls => ("repositories", "/v2/_catalog".to_string()),
            RegistryCommand::Tags { repository } => ("tags", format!("/v2/{repository}/tags/list")),
            RegistryCommand::Gc => {
                let (report, _) = client
                    .registry(reqwest::Method::POST, "/runway/v1/gc")
                    .await?;
                if args.output == Output::Json {
                    return print_json(&report);
                }
                println!(
                    "Removed {} blobs ({} bytes) and {} abandoned uploads; {} blobs are in use.",
                    text(&report["blobs_removed"]),
                    text(&report["bytes_removed"]),
                    text(&report["uploads_removed"]),
                    text(&report["blobs_referenced"])
                );
                return Ok(());
            }
        };
        let mut items = Vec::new();
        let mut next = Some(path);
        while let Some(path) = next {
            let (page, more) = client.registry(reqwest::Method::GET, &path).await?;
            items.extend(page[key].as_array().cloned().unwrap_or_default());
            next = more;
        }
        if args.output == Output::Json {
            return print_json(&json!(items));
        }
        for item in items {
            println!("{}", text(&item));
        }
        Ok(())
    })
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The service's name.
    name: String,
    /// Keep printing lines as they are written.
    #[arg(long, short)]
    follow: bool,
    /// Only lines from this long ago (`90s`, `10m`, `2h`, `1d`) or since this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
}

/// `10m` ago, or an RFC 3339 time, as epoch seconds.
fn parse_since(s: &str) -> Result<f64> {
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t.unix_timestamp_nanos() as f64 / 1e9);
    }
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: f64 = number
        .parse()
        .map_err(|_| anyhow!("--since takes 10m, 2h, 1d or an RFC 3339 time, got {s:?}"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => {
            return Err(anyhow!(
                "--since takes 10m, 2h, 1d or an RFC 3339 time, got {s:?}"
            ));
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    Ok(now - secs)
}

pub fn logs(args: LogsArgs, client_args: &ClientArgs) -> Result<()> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let client = Client::new(client_args)?;
    block_on(async {
        let arn = service_arn(&client, &args.name).await?;
        let mut since = since;
        let mut seen = std::collections::HashSet::new();
        loop {
            let mut input = json!({ "ServiceArn": arn });
            if let Some(t) = since {
                input["StartTime"] = json!(t);
            }
            let out = client.call_extension("GetLogs", &input).await?;
            for line in out["Lines"].as_array().cloned().unwrap_or_default() {
                let key = (
                    text(&line["Time"]),
                    text(&line["InstanceId"]),
                    text(&line["Message"]),
                );
                if !seen.insert(key) {
                    continue;
                }
                if client_args.output == Output::Json {
                    println!("{line}");
                } else {
                    println!(
                        "{} {} {}",
                        when_precise(&line["Time"]),
                        text(&line["InstanceId"]),
                        text(&line["Message"])
                    );
                }
                if let Some(t) = line["Time"].as_f64() {
                    since = Some(since.map_or(t, |s: f64| s.max(t)));
                }
            }
            if !args.follow {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    })
}

/// Epoch seconds as an RFC 3339 time with milliseconds.
fn when_precise(v: &Value) -> String {
    v.as_f64()
        .and_then(|secs| {
            time::OffsetDateTime::from_unix_timestamp_nanos(
                (secs * 1e3).round() as i128 * 1_000_000,
            )
            .ok()
        })
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into())
}

#[derive(Debug, Subcommand)]
pub enum InstancesCommand {
    /// List a service's instances, newest first.
    Ls { name: String },
}

pub fn instances(command: InstancesCommand, args: &ClientArgs) -> Result<()> {
    let client = Client::new(args)?;
    block_on(async {
        let InstancesCommand::Ls { name } = command;
        let arn = service_arn(&client, &name).await?;
        let out = client
            .call_extension("ListInstances", &json!({ "ServiceArn": arn }))
            .await?;
        let instances = out["Instances"].as_array().cloned().unwrap_or_default();
        if args.output == Output::Json {
            return print_json(&json!(instances));
        }
        let rows: Vec<Vec<String>> = instances
            .iter()
            .map(|i| {
                vec![
                    text(&i["InstanceId"]),
                    text(&i["RevisionId"]),
                    text(&i["State"]),
                    text(&i["Address"]),
                    text(&i["Restarts"]),
                    when(&i["StartedAt"]),
                ]
            })
            .collect();
        print_table(
            &[
                "INSTANCE", "REVISION", "STATE", "ADDRESS", "RESTARTS", "STARTED",
            ],
            &rows,
        );
        Ok(())
    })
}

#[derive(Debug, Subcommand)]
pub enum RevisionsCommand {
    /// List a service's revisions, newest first, with their share of traffic.
    Ls { name: String },
}

/// `runway events NAME`: the service's event log, newest first.
pub fn events(name: String, args: &ClientArgs) -> Result<()> {
    let client = Client::new(args)?;
    block_on(async {
        let arn = service_arn(&client, &name).await?;
        let events = all_pages(
            &client,
            "Runway.ListServiceEvents",
            json!({ "ServiceArn": arn }),
            "Events",
        )
        .await?;
        if args.output == Output::Json {
            return print_json(&json!(events));
        }
        for e in events.iter().rev() {
            println!("{}  {}", when_precise(&e["Time"]), text(&e["Message"]));
        }
        Ok(())
    })
}

pub fn revisions(command: RevisionsCommand, args: &ClientArgs) -> Result<()> {
    let client = Client::new(args)?;
    block_on(async {
        let RevisionsCommand::Ls { name } = command;
        let arn = service_arn(&client, &name).await?;
        let revisions = all_pages(
            &client,
            "Runway.ListRevisions",
            json!({ "ServiceArn": arn }),
            "Revisions",
        )
        .await?;
        if args.output == Output::Json {
            return print_json(&json!(revisions));
        }
        let rows: Vec<Vec<String>> = revisions
            .iter()
            .map(|r| {
                vec![
                    text(&r["RevisionId"]),
                    text(&r["Status"]),
                    format!("{}%", text(&r["Percent"])),
                    text(&r["Tag"]),
                    text(&r["DesiredInstances"]),
                    text(&r["ImageIdentifier"]),
                    when(&r["CreatedAt"]),
                ]
            })
            .collect();
        print_table(
            &[
                "REVISION",
                "STATUS",
                "TRAFFIC",
                "TAG",
                "INSTANCES",
                "IMAGE",
                "CREATED",
            ],
            &rows,
        );
        Ok(())
    })
}

/// `runway rollback NAME [REVISION]`: redeploys an earlier revision as it was built.
pub fn rollback(name: String, revision: Option<String>, args: &ClientArgs) -> Result<()> {
    let client = Client::new(args)?;
    block_on(async {
        let arn = service_arn(&client, &name).await?;
        let mut input = json!({ "ServiceArn": arn });
        if let Some(r) = revision {
            input["RevisionId"] = json!(r);
        }
        let out = client.call_extension("RollbackService", &input).await?;
        if args.output == Output::Json {
            return print_json(&out);
        }
        println!(
            "Rolling back {name}: operation {} recorded.",
            text(&out["OperationId"])
        );
        Ok(())
    })
}

/// `runway traffic NAME REVISION=PERCENT[:TAG]...`: splits traffic and tags revisions.
pub fn traffic(name: String, targets: Vec<String>, args: &ClientArgs) -> Result<()> {
    let mut traffic = Vec::new();
    for t in &targets {
        let (revision, rest) = t
            .split_once('=')
            .ok_or_else(|| anyhow!("traffic targets are REVISION=PERCENT[:TAG], got {t:?}"))?;
        let (percent, tag) = match rest.split_once(':') {
            Some((p, tag)) => (p, Some(tag)),
            None => (rest, None),
        };
        let percent: u8 = percent
            .parse()
            .map_err(|_| anyhow!("traffic targets are REVISION=PERCENT[:TAG], got {t:?}"))?;
        let mut entry = json!({ "RevisionId": revision, "Percent": percent });
        if let Some(tag) = tag {
            entry["Tag"] = json!(tag);
        }
        traffic.push(entry);
    }
    let client = Client::new(args)?;
    block_on(async {
        let arn = service_arn(&client, &name).await?;
        let out = client
            .call_extension(
                "UpdateTraffic",
                &json!({ "ServiceArn": arn, "Traffic": traffic }),
            )
            .await?;
        if args.output == Output::Json {
            return print_json(&out);
        }
        for t in out["Traffic"].as_array().cloned().unwrap_or_default() {
            println!(
                "{} {}% {}",
                text(&t["RevisionId"]),
                text(&t["Percent"]),
                text(&t["Tag"])
            );
        }
        Ok(())
    })
}

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The API's URL, e.g. https://runway.example.com:8090.
    #[arg(long)]
    endpoint: String,
    /// The CA certificate (PEM) to check the server's certificate against: for runway's
    /// local CA, a copy of the server's DATA_DIR/certs/ca.pem [default: the system's CAs].
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// The region the server signs for (its --region).
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// The name to save the profile under.
    #[arg(long, env = "RUNWAY_PROFILE", default_value = crate::profile::DEFAULT_PROFILE)]
    profile: String,
    /// The registry's URL [default: what the server says, with the endpoint's host when
    /// the server names only a loopback address].
    #[arg(long)]
    registry: Option<String>,
    /// The access key id [default: AWS_ACCESS_KEY_ID, else asked].
    #[arg(long)]
    access_key_id: Option<String>,
    /// A file holding the secret access key, `-` for standard input [default:
    /// AWS_SECRET_ACCESS_KEY, else asked].
    #[arg(long)]
    secret_access_key_file: Option<std::path::PathBuf>,
}

/// Asks for a secret on the terminal without echoing it, or reads a line from standard
/// input when it is not a terminal.
fn ask_secret(prompt: &str) -> Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let saved = if stdin.is_terminal() {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let saved = tcgetattr(&stdin).context("cannot read the terminal's settings")?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        tcsetattr(&stdin, OptionalActions::Now, &quiet)
            .context("cannot turn the terminal's echo off")?;
        Some(saved)
    } else {
        None
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
        eprintln!();
    }
    read.context("cannot read standard input")?;
    Ok(line.trim().to_string())
}

fn read_line(prompt: &str) -> Result<String> {
    use std::io::{BufRead, Write};
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read standard input")?;
    Ok(line.trim().to_string())
}

/// The registry URL to save: `stated` by the server, with `endpoint`'s host if the
/// server named a loopback or unspecified address (it was not told its public name).
fn registry_url(stated: &str, endpoint: &reqwest::Url) -> String {
    let Ok(mut url) = reqwest::Url::parse(stated) else {
        return stated.to_string();
    };
    let host = url.host_str().unwrap_or("");
    let local = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    if local && let Some(host) = endpoint.host_str() {
        let _ = url.set_host(Some(host));
    }
    url.as_str().trim_end_matches('/').to_string()
}

/// `runway login`: checks the key against the server (`Runway.DescribeEndpoints`) and saves
/// the profile.
pub fn login(args: LoginArgs) -> Result<()> {
    use crate::client::{Settings, Trust};
    use crate::profile;
    let endpoint_url = reqwest::Url::parse(&args.endpoint)
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
        .ok_or_else(|| {
            anyhow!(
                "--endpoint must be the API's URL, e.g. https://runway.example.com:8090, got {:?}",
                args.endpoint
            )
        })?;
    if endpoint_url.scheme() == "http" {
        eprintln!(
            "warning: {} is plain HTTP: the key's signatures and every answer cross the network unencrypted",
            args.endpoint
        );
    }
    let dir = profile::config_dir()?;
    let key_id = match args.access_key_id.clone() {
        Some(id) => id,
        None => match std::env::var("AWS_ACCESS_KEY_ID") {
            Ok(id) if !id.is_empty() => id,
            _ => read_line("Access key id: ")?,
        },
    };
    let secret = match &args.secret_access_key_file {
        Some(path) => read_secret(path)?.trim().to_string(),
        None => match std::env::var("AWS_SECRET_ACCESS_KEY") {
            Ok(secret) if !secret.is_empty() => secret,
            _ => ask_secret("Secret access key: ")?,
        },
    };
    if key_id.is_empty() || secret.is_empty() {
        bail!("an access key id and its secret are needed to log in");
    }
    let endpoint = endpoint_url.as_str().trim_end_matches('/').to_string();
    let client = Client::with(Settings {
        endpoint: endpoint.clone(),
        registry: None,
        https: None,
        region: args.region.clone(),
        credentials: aws_credential_types::Credentials::new(&key_id, &secret, None, None, "runway"),
        trust: args.ca_file.clone().map_or(Trust::System, Trust::Only),
    })?;
    let described = block_on(client.call_extension("DescribeEndpoints", &json!({})))
        .with_context(|| format!("cannot log in to {endpoint}"))?;
    let registry = match &args.registry {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => registry_url(&text(&described["Registry"]), &endpoint_url),
    };
    // The profile keeps its own copy of the CA, so it does not depend on where the file
    // was when logging in.
    let ca_file = match &args.ca_file {
        Some(path) => {
            let pem =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let copy = dir.join(format!("{}-ca.pem", args.profile));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            runway_store::fs::write_atomic(&copy, &pem, 0o644)?;
            Some(copy)
        }
        None => None,
    };
    let saved = profile::Profile {
        endpoint: endpoint.clone(),
        registry: Some(registry.clone()).filter(|r| !r.is_empty()),
        https: described["Https"].as_str().map(str::to_string),
        region: args.region.clone(),
        ca_file: ca_file.clone(),
    };
    profile::save(&dir, &args.profile, &saved, &key_id, &secret)?;
    println!(
        "Logged in to {endpoint} as {key_id}; saved as profile {} in {}.",
        args.profile,
        dir.display()
    );
    if !registry.is_empty() {
        println!("Registry: {registry}");
        if let (Some(ca), Ok(url)) = (&ca_file, reqwest::Url::parse(&registry)) {
            let host = match url.port() {
                Some(port) => format!("{}:{port}", url.host_str().unwrap_or("")),
                None => url.host_str().unwrap_or("").to_string(),
            };
            println!(
                "  podman, skopeo, docker: trust the CA with  mkdir -p /etc/containers/certs.d/{host} && cp {} /etc/containers/certs.d/{host}/ca.crt",
                ca.display()
            );
        }
    }
    println!(
        "AWS CLI: {}AWS_SHARED_CREDENTIALS_FILE={} AWS_PROFILE={} aws apprunner list-services --endpoint-url {endpoint} --region {}",
        ca_file
            .as_ref()
            .map(|ca| format!("AWS_CA_BUNDLE={} ", ca.display()))
            .unwrap_or_default(),
        profile::credentials_path(&dir).display(),
        args.profile,
        args.region
    );
    Ok(())
}
