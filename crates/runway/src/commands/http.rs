//! A service's HTTP settings on the command line: the flags `runway deploy` and `runway
//! services update` share, and how `runway services describe` shows them.

use super::{Output, follow_operation, print_json, text};
use crate::ClientArgs;
use crate::client::Client;
use anyhow::{Result, anyhow, bail};
use runway_model::http::{self, InstanceProtocol};
use serde_json::{Value, json};

/// The HTTP settings a command may change; each flag also takes `default`, which unsets
/// the API's value (apprunner.yaml's or the default then applies).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HttpArgs {
    /// The protocol the app's instances speak: http1, or h2c for gRPC and other HTTP/2
    /// apps [default: http1].
    #[arg(long, value_name = "http1|h2c")]
    protocol: Option<String>,
    /// How long a request may take, e.g. 300, 90s, 5m; at most 1h [default: 120s].
    #[arg(long, value_name = "DURATION")]
    request_timeout: Option<String>,
    /// How long a WebSocket or a streaming response may pass no byte either way before it
    /// is closed; at most 24h [default: 15m].
    #[arg(long, value_name = "DURATION")]
    idle_timeout: Option<String>,
    /// The largest request body, e.g. 1048576, 64KiB, 1GiB, or unlimited; larger ones get
    /// 413 [default: 32MiB].
    #[arg(long, value_name = "SIZE")]
    max_request_body: Option<String>,
}

impl HttpArgs {
    /// Whether any flag was given.
    pub fn given(&self) -> bool {
        self.protocol.is_some()
            || self.request_timeout.is_some()
            || self.idle_timeout.is_some()
            || self.max_request_body.is_some()
    }

    /// The API's HttpConfiguration `current` with the flags given applied.
    pub fn apply(&self, current: &Value) -> Result<Value> {
        let mut out = current.as_object().cloned().unwrap_or_default();
        let mut set = |member: &str,
                       flag: &str,
                       given: &Option<String>,
                       read: &dyn Fn(&str) -> Result<Value, String>|
         -> Result<()> {
            match given.as_deref() {
                None => {}
                Some("default") => {
                    out.remove(member);
                }
                Some(text) => {
                    let value = read(text).map_err(|e| anyhow!("--{flag}: {e}"))?;
                    out.insert(member.to_string(), value);
                }
            }
            Ok(())
        };
        set("InstanceProtocol", "protocol", &self.protocol, &|t| {
            InstanceProtocol::parse(t)
                .map(|p| json!(p.as_str()))
                .ok_or_else(|| format!("expected http1 or h2c, got {t:?}"))
        })?;
        set(
            "RequestTimeoutSeconds",
            "request-timeout",
            &self.request_timeout,
            &|t| http::parse_duration(t).map(|s| json!(s)),
        )?;
        set(
            "IdleTimeoutSeconds",
            "idle-timeout",
            &self.idle_timeout,
            &|t| http::parse_duration(t).map(|s| json!(s)),
        )?;
        set(
            "MaxRequestBodyBytes",
            "max-request-body",
            &self.max_request_body,
            &|t| http::parse_size(t).map(|b| json!(b)),
        )?;
        Ok(Value::Object(out))
    }
}

/// Sets the HTTP settings of service `arn` from `args` over what the API holds now; the
/// operation's id. With `skip_unchanged`, nothing is sent (`None`) when the API holds
/// those settings already: a deployment that carries them is on its way.
pub async fn update(
    client: &Client,
    arn: &str,
    args: &HttpArgs,
    skip_unchanged: bool,
) -> Result<Option<String>> {
    let current = client
        .call_extension(
            "DescribeServiceHttpConfiguration",
            &json!({ "ServiceArn": arn }),
        )
        .await?;
    let wanted = args.apply(&current["HttpConfiguration"])?;
    if skip_unchanged && wanted == current["HttpConfiguration"] {
        return Ok(None);
    }
    let out = client
        .call_extension(
            "UpdateServiceHttpConfiguration",
            &json!({ "ServiceArn": arn, "HttpConfiguration": wanted }),
        )
        .await?;
    Ok(Some(text(&out["OperationId"])))
}

/// `runway services update NAME`: applies the flags (a deployment of the serving revision
/// again, nothing rebuilt) and waits for it unless `no_wait`.
pub async fn update_service(
    client: &Client,
    client_args: &ClientArgs,
    name: &str,
    args: &HttpArgs,
    no_wait: bool,
) -> Result<()> {
    if !args.given() {
        bail!(
            "nothing to update: give --protocol, --request-timeout, --idle-timeout or --max-request-body"
        );
    }
    let arn = super::service_arn(client, name).await?;
    // Sent even when unchanged: the serving revision may not have them (its deployment
    // was rolled back), and the command's promise is that it will.
    let op = update(client, &arn, args, false).await?.unwrap_or_default();
    let table = client_args.output == Output::Table;
    if no_wait {
        return match table {
            true => {
                println!("Updating {name}: operation {op} recorded.");
                Ok(())
            }
            false => print_json(&json!({ "OperationId": op })),
        };
    }
    let status = follow_operation(client, &arn, &op, table).await?;
    if !table {
        return print_json(&json!({ "OperationId": op, "Status": status }));
    }
    if status != "SUCCEEDED" {
        bail!("the deployment ended {status}; see `runway events {name}`");
    }
    println!("{name} serves with the new HTTP settings.");
    Ok(())
}

/// Lines for `runway services describe`: the settings the serving revision is served
/// with, each marked where the API sets it.
pub async fn describe_rows(client: &Client, arn: &str) -> Result<(Value, Vec<(String, String)>)> {
    let out = client
        .call_extension(
            "DescribeServiceHttpConfiguration",
            &json!({ "ServiceArn": arn }),
        )
        .await?;
    let set = &out["HttpConfiguration"];
    let serving = match &out["ServingHttpConfiguration"] {
        Value::Null => set,
        s => s,
    };
    let show = |member: &str, format: &dyn Fn(i64) -> String| -> String {
        let value = match &serving[member] {
            Value::Number(n) => n.as_i64().map_or_else(|| n.to_string(), format),
            Value::String(s) => s.to_lowercase(),
            _ => "default".into(),
        };
        if set[member].is_null() {
            value
        } else {
            format!("{value} (set by the API)")
        }
    };
    let mut rows = vec![
        (
            "Protocol".to_string(),
            show("InstanceProtocol", &|n| n.to_string()),
        ),
        (
            "Request timeout".to_string(),
            show("RequestTimeoutSeconds", &http::format_duration),
        ),
        (
            "Idle timeout".to_string(),
            show("IdleTimeoutSeconds", &http::format_duration),
        ),
        (
            "Max body".to_string(),
            show("MaxRequestBodyBytes", &http::format_size),
        ),
    ];
    if out["ServingRevisionId"].is_null() {
        rows.push(("HTTP".into(), "not deployed yet".into()));
    }
    Ok((out, rows))
}
