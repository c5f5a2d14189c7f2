//! A small App Runner API client that signs with SigV4 (aws-sigv4's signer), reading the
//! endpoint and the admin key from the server's data directory.

use crate::ClientArgs;
use crate::profile;
use crate::server::{Endpoints, PROFILE};
use anyhow::{Context, Result, anyhow, bail};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    registry: Option<String>,
    /// The router's HTTPS URL, for the URLs of apps.
    https: Option<String>,
    region: String,
    credentials: Credentials,
}

/// An error answer from the API.
#[derive(Debug, thiserror::Error)]
#[error("{type_name}: {message}")]
pub struct ApiFault {
    pub type_name: String,
    pub message: String,
}

/// Reads `aws_access_key_id` and `aws_secret_access_key` of `profile` from a shared
/// credentials file.
pub fn read_credentials(path: &Path, profile: &str) -> Result<Credentials> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!("cannot read the access key in {} (is this the server's data directory, and are you root?)", path.display())
    })?;
    let (mut id, mut secret, mut in_profile) = (None, None, false);
    for line in text.lines().map(str::trim) {
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = section.trim() == profile;
        } else if in_profile && let Some((key, value)) = line.split_once('=') {
            match key.trim() {
                "aws_access_key_id" => id = Some(value.trim().to_string()),
                "aws_secret_access_key" => secret = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    match (id, secret) {
        (Some(id), Some(secret)) => Ok(Credentials::new(id, secret, None, None, "runway")),
        _ => bail!("{} has no complete [{profile}] profile", path.display()),
    }
}

/// Which certificates the client trusts for the API and the registry.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The system's.
    System,
    /// The system's and this CA's (a server's data directory: its local CA).
    Also(PathBuf),
    /// Only this CA's (`--ca-file`, a profile's CA).
    Only(PathBuf),
}

/// Where the server is and how to sign in, from a profile or a data directory.
#[derive(Debug)]
pub struct Settings {
    pub endpoint: String,
    pub registry: Option<String>,
    pub https: Option<String>,
    pub region: String,
    pub credentials: Credentials,
    pub trust: Trust,
}

impl Settings {
    /// The settings `args` point at: `--profile`, else `--data-dir`, else the default
    /// profile if `runway login` saved one, else the default data directory; then
    /// `--endpoint-url` and `--ca-file` over them.
    pub fn resolve(args: &ClientArgs) -> Result<Self> {
        let mut settings = match (&args.profile, &args.data_dir) {
            (Some(name), _) => Self::from_profile(&profile::config_dir()?, name)?.ok_or_else(|| {
                anyhow!("there is no profile {name:?}: run `runway login --profile {name} --endpoint https://...`")
            })?,
            (None, Some(dir)) => Self::from_data_dir(dir, args.endpoint_url.is_some())?,
            (None, None) => {
                let saved = match profile::config_dir() {
                    Ok(dir) => Self::from_profile(&dir, profile::DEFAULT_PROFILE)?,
                    Err(_) => None,
                };
                match saved {
                    Some(settings) => settings,
                    None => Self::from_data_dir(
                        Path::new(crate::server::DEFAULT_DATA_DIR),
                        args.endpoint_url.is_some(),
                    )?,
                }
            }
        };
        if let Some(url) = &args.endpoint_url {
            settings.endpoint = url.trim_end_matches('/').to_string();
        }
        if let Some(ca) = &args.ca_file {
            settings.trust = Trust::Only(ca.clone());
        }
        Ok(settings)
    }

    /// A server's data directory, on the server's machine: `endpoints.json` and the admin
    /// key in `credentials`.
    fn from_data_dir(dir: &Path, endpoint_given: bool) -> Result<Self> {
        let endpoints_path = dir.join("endpoints.json");
        let endpoints: Option<Endpoints> = std::fs::read(&endpoints_path)
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok());
        let endpoint = match (&endpoints, endpoint_given) {
            (Some(e), _) => e.api.clone(),
            (None, true) => String::new(),
            (None, false) => bail!(
                "cannot find the runway API: {} is missing (start `runway server`, pass --endpoint-url, or `runway login` to a server on another machine)",
                endpoints_path.display()
            ),
        };
        let trust = match &endpoints {
            Some(e) if e.ca.is_file() => Trust::Also(e.ca.clone()),
            _ => Trust::System,
        };
        Ok(Settings {
            endpoint,
            registry: endpoints.as_ref().map(|e| e.registry.clone()),
            https: endpoints.as_ref().map(|e| e.https.clone()),
            region: endpoints
                .as_ref()
                .map_or_else(|| "us-east-1".to_string(), |e| e.region.clone()),
            credentials: read_credentials(&dir.join("credentials"), PROFILE)?,
            trust,
        })
    }

    /// Profile `name` of the config directory `dir`, if there is one.
    fn from_profile(dir: &Path, name: &str) -> Result<Option<Self>> {
        let Some(saved) = profile::load(dir, name)? else {
            return Ok(None);
        };
        Ok(Some(Settings {
            endpoint: saved.endpoint,
            registry: saved.registry,
            https: saved.https,
            region: saved.region,
            credentials: read_credentials(&profile::credentials_path(dir), name)?,
            trust: saved.ca_file.map_or(Trust::System, Trust::Only),
        }))
    }
}

/// Why the runway `what` at `url` could not be reached: the whole chain of causes (a
/// certificate that is not trusted is deep in it), and what to check.
fn unreachable(what: &str, url: &str, e: &reqwest::Error) -> anyhow::Error {
    let mut causes = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        causes.push_str(": ");
        causes.push_str(&cause.to_string());
        source = cause.source();
    }
    let hint = if causes.contains("certificate") || causes.contains("UnknownIssuer") {
        "the server's certificate is not trusted: pass --ca-file with the server's CA certificate (DATA_DIR/certs/ca.pem for runway's local CA)"
    } else {
        "is `runway server` running?"
    };
    anyhow!("cannot reach the runway {what} at {url}: {causes} ({hint})")
}

/// An HTTP client that trusts what `trust` says.
fn http_client(trust: &Trust) -> Result<reqwest::Client> {
    let certificates = |path: &Path| -> Result<Vec<reqwest::Certificate>> {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
        if certs.is_empty() {
            bail!("{} holds no certificate", path.display());
        }
        Ok(certs)
    };
    let builder = reqwest::Client::builder();
    let builder = match trust {
        Trust::System => builder,
        Trust::Also(path) => builder.tls_certs_merge(certificates(path)?),
        Trust::Only(path) => builder.tls_certs_only(certificates(path)?),
    };
    builder.build().context("cannot set up the HTTP client")
}

impl Client {
    pub fn new(args: &ClientArgs) -> Result<Self> {
        Self::with(Settings::resolve(args)?)
    }

    pub fn with(settings: Settings) -> Result<Self> {
        Ok(Client {
            http: http_client(&settings.trust)?,
            endpoint: settings.endpoint,
            registry: settings.registry,
            https: settings.https,
            region: settings.region,
            credentials: settings.credentials,
        })
    }

    /// Calls App Runner's `operation` with `input` and returns its output.
    pub async fn call(&self, operation: &str, input: &Value) -> Result<Value> {
        self.call_target(&format!("AppRunner.{operation}"), input)
            .await
    }

    /// Calls one of runway's extension operations (`Runway.<operation>`).
    pub async fn call_extension(&self, operation: &str, input: &Value) -> Result<Value> {
        self.call_target(&format!("Runway.{operation}"), input)
            .await
    }

    /// Calls the operation `target` names (`AppRunner.X` or `Runway.X`).
    pub async fn call_target(&self, target: &str, input: &Value) -> Result<Value> {
        self.send_json(target, "apprunner", "application/x-amz-json-1.0", input)
            .await
    }

    /// Calls an operation of another AWS service runway serves (AWS JSON 1.1):
    /// `target` is its `X-Amz-Target` (`secretsmanager.GetSecretValue`), `signing_name`
    /// the service's SigV4 name (`secretsmanager`, `ssm`, `kms`).
    pub async fn call_service(
        &self,
        target: &str,
        signing_name: &str,
        input: &Value,
    ) -> Result<Value> {
        self.send_json(target, signing_name, "application/x-amz-json-1.1", input)
            .await
    }

    /// Sends `input` to the JSON operation `target` signed for `signing_name`; its
    /// answer, or its error as an [`ApiFault`].
    async fn send_json(
        &self,
        target: &str,
        signing_name: &str,
        content_type: &str,
        input: &Value,
    ) -> Result<Value> {
        let body = serde_json::to_vec(input)?;
        let request = http::Request::builder()
            .header("content-type", content_type)
            .header("x-amz-target", target);
        let (status, body) = self.send(request, body, signing_name).await?;
        let value: Value = serde_json::from_slice(&body).with_context(|| {
            format!(
                "the API at {} answered {status} with a body that is not JSON",
                self.endpoint
            )
        })?;
        if status.is_success() {
            return Ok(value);
        }
        let fault = ApiFault {
            type_name: value["__type"]
                .as_str()
                .unwrap_or("UnknownError")
                .rsplit('#')
                .next()
                .unwrap_or("")
                .to_string(),
            message: value["Message"]
                .as_str()
                .or(value["message"].as_str())
                .unwrap_or("")
                .to_string(),
        };
        if status == reqwest::StatusCode::FORBIDDEN {
            return Err(anyhow!(fault).context(format!(
                "the API refused the access key {}",
                self.credentials.access_key_id()
            )));
        }
        Err(fault.into())
    }

    /// Calls the EC2 action `action` (the query protocol) with `params`; its answer as
    /// JSON (see [`xml_to_json`]).
    pub async fn call_ec2(&self, action: &str, params: &[(String, String)]) -> Result<Value> {
        let mut form = format!("Action={action}&Version=2016-11-15");
        for (k, v) in params {
            let enc = |s: &str| {
                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            };
            form.push_str(&format!("&{}={}", enc(k), enc(v)));
        }
        let request = http::Request::builder().header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        );
        let (status, body) = self.send(request, form.into_bytes(), "ec2").await?;
        let text = String::from_utf8_lossy(&body);
        let value = xml_to_json(&text).with_context(|| {
            format!(
                "the API at {} answered {status} with a body that is not XML",
                self.endpoint
            )
        })?;
        if status.is_success() {
            return Ok(value);
        }
        let error = &value["Errors"]["Error"];
        let fault = ApiFault {
            type_name: error["Code"].as_str().unwrap_or("UnknownError").to_string(),
            message: error["Message"].as_str().unwrap_or("").to_string(),
        };
        Err(fault.into())
    }

    /// Signs `request` (POST / with `body`) for `service` and sends it; the status and
    /// body of the answer.
    async fn send(
        &self,
        request: http::request::Builder,
        body: Vec<u8>,
        service: &str,
    ) -> Result<(reqwest::StatusCode, Vec<u8>)> {
        let url = format!("{}/", self.endpoint);
        let mut request = request.method("POST").uri(&url).body(body.clone())?;
        let host = request
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        request.headers_mut().insert("host", host.parse()?);
        let identity = self.credentials.clone().into();
        let params = SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()?
            .into();
        let signable = SignableRequest::new(
            "POST",
            url.as_str(),
            request
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))),
            SignableBody::Bytes(&body),
        )?;
        let (instructions, _) = sign(signable, &params)?.into_parts();
        instructions.apply_to_request_http1x(&mut request);
        let request = reqwest::Request::try_from(request.map(reqwest::Body::from))?;
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| unreachable("API", &self.endpoint, &e))?;
        let status = response.status();
        let body = response.bytes().await.with_context(|| {
            format!(
                "cannot read the answer of the runway API at {}",
                self.endpoint
            )
        })?;
        Ok((status, body.to_vec()))
    }
}

/// EC2's XML answer as JSON: an element holding text is a string, one whose children are
/// all `<item>`s an array, any other an object by child name (an empty element is null).
pub fn xml_to_json(text: &str) -> Result<Value> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().trim_text(true);
    // Each open element: its name, its children so far, its text.
    type Open = (String, Vec<(String, Value)>, String);
    let mut stack: Vec<Open> = vec![(String::new(), Vec::new(), String::new())];
    loop {
        match reader.read_event()? {
            Event::Start(e) => {
                let name = AsRef::<str>::as_ref(&e.local_name()).to_string();
                stack.push((name, Vec::new(), String::new()));
            }
            Event::Empty(e) => {
                let name = AsRef::<str>::as_ref(&e.local_name()).to_string();
                if let Some(parent) = stack.last_mut() {
                    parent.1.push((name, Value::Null));
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.2.push_str(&t);
                }
            }
            Event::GeneralRef(r) => {
                let resolved = quick_xml::escape::unescape(&format!("&{};", &*r))?.into_owned();
                if let Some(top) = stack.last_mut() {
                    top.2.push_str(&resolved);
                }
            }
            Event::End(_) => {
                let (name, children, text) = stack.pop().context("unbalanced XML")?;
                let value = if children.is_empty() {
                    if text.is_empty() {
                        Value::Null
                    } else {
                        Value::String(text)
                    }
                } else if children.iter().all(|(n, _)| n == "item") {
                    Value::Array(children.into_iter().map(|(_, v)| v).collect())
                } else {
                    Value::Object(children.into_iter().collect())
                };
                stack
                    .last_mut()
                    .context("unbalanced XML")?
                    .1
                    .push((name, value));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let (_, mut root, _) = stack.pop().context("no XML")?;
    root.pop().map(|(_, v)| v).context("no XML element")
}

impl Client {
    /// The region the client signs for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// An app's URL: `https://<host>[:<router port>]/`.
    pub fn app_url(&self, host: &str) -> String {
        let port = self
            .https
            .as_deref()
            .and_then(|u| u.rsplit_once(':'))
            .map(|(_, p)| p)
            .filter(|p| *p != "443");
        match port {
            Some(p) => format!("https://{host}:{p}/"),
            None => format!("https://{host}/"),
        }
    }

    fn registry_base(&self) -> Result<&str> {
        self.registry
            .as_deref()
            .ok_or_else(|| anyhow!("endpoints.json names no registry: is the server up to date?"))
    }

    async fn registry_send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let response = request
            .basic_auth(
                self.credentials.access_key_id(),
                Some(self.credentials.secret_access_key()),
            )
            .send()
            .await
            .map_err(|e| unreachable("registry", self.registry.as_deref().unwrap_or("?"), &e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        let error = &value["errors"][0];
        bail!(
            "the registry answered {status}: {} {}",
            error["code"].as_str().unwrap_or(""),
            error["message"].as_str().unwrap_or("")
        )
    }

    /// Uploads `bytes` as blob `digest` of `repository` (one POST, one PUT), unless the
    /// registry has it already.
    pub async fn push_blob(&self, repository: &str, digest: &str, bytes: Vec<u8>) -> Result<()> {
        let base = self.registry_base()?;
        let head = self
            .http
            .head(format!("{base}/v2/{repository}/blobs/{digest}"))
            .basic_auth(
                self.credentials.access_key_id(),
                Some(self.credentials.secret_access_key()),
            )
            .send()
            .await;
        if head.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        let started = self
            .registry_send(
                self.http
                    .post(format!("{base}/v2/{repository}/blobs/uploads/")),
            )
            .await?;
        let location = started
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("the registry started an upload without a Location"))?;
        let url = if location.starts_with('/') {
            format!("{base}{location}")
        } else {
            location.to_string()
        };
        let separator = if url.contains('?') { '&' } else { '?' };
        self.registry_send(
            self.http
                .put(format!("{url}{separator}digest={digest}"))
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes),
        )
        .await?;
        Ok(())
    }

    /// Puts `manifest` (of `media_type`) as `repository:tag`.
    pub async fn push_manifest(
        &self,
        repository: &str,
        tag: &str,
        media_type: &str,
        manifest: Vec<u8>,
    ) -> Result<()> {
        let base = self.registry_base()?;
        self.registry_send(
            self.http
                .put(format!("{base}/v2/{repository}/manifests/{tag}"))
                .header(reqwest::header::CONTENT_TYPE, media_type)
                .body(manifest),
        )
        .await?;
        Ok(())
    }

    /// Pushes a one-layer OCI manifest as `repository:tag`: the gzipped tar `layer`, the
    /// config blob `config` of media type `config_type`, and `artifact_type` for an
    /// artifact that is not an image.
    pub async fn push_single_layer(
        &self,
        repository: &str,
        tags: &[&str],
        layer: &runway_build::LayerFile,
        (config_type, config): (&str, Vec<u8>),
        artifact_type: Option<&str>,
    ) -> Result<()> {
        let bytes = tokio::fs::read(&layer.path)
            .await
            .with_context(|| format!("cannot read {}", layer.path.display()))?;
        self.push_blob(repository, &layer.digest, bytes).await?;
        let config_digest = sha256_digest(&config);
        let config_size = config.len();
        self.push_blob(repository, &config_digest, config).await?;
        let mut manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": config_type,
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer.digest,
                "size": layer.size,
            }],
        });
        if let Some(t) = artifact_type {
            manifest["artifactType"] = serde_json::json!(t);
        }
        let manifest = serde_json::to_vec(&manifest)?;
        for tag in tags {
            self.push_manifest(repository, tag, OCI_MANIFEST, manifest.clone())
                .await?;
        }
        Ok(())
    }

    /// Calls the registry at `path` (`/v2/_catalog`, ...) with the access key as Basic
    /// credentials; returns the JSON body and the next page's path from a `Link` header.
    pub async fn registry(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<(Value, Option<String>)> {
        let base = self.registry_base()?;
        let response = self
            .registry_send(self.http.request(method, format!("{base}{path}")))
            .await?;
        let next = response
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once('<').and_then(|(_, rest)| rest.split_once('>')))
            .map(|(path, _)| path.to_string());
        let value: Value = response.json().await.unwrap_or(Value::Null);
        Ok((value, next))
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// `sha256:<hex>` of `bytes`.
fn sha256_digest(bytes: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    format!("sha256:{}", hex::encode(d.as_ref()))
}
