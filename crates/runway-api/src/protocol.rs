//! The AWS JSON 1.0 wire protocol: authentication, the target header, body parsing,
//! dispatch to the operations, and answers (`{"__type": ..., "Message": ...}` for errors).

use crate::ops::{self, Ctx, OpError};
use crate::{Api, sigv4};
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use runway_model::Timestamp;
use runway_store::Txn;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

/// The content type of requests and answers.
const JSON_1_0: &str = "application/x-amz-json-1.0";
/// The `X-Amz-Target` prefix of App Runner operations.
const TARGET_PREFIX: &str = "AppRunner.";
/// The prefix of runway's own operations, kept apart so App Runner's can never clash.
const EXTENSION_PREFIX: &str = "Runway.";
/// SigV4's allowed clock difference between client and server.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);
/// The largest request body accepted; App Runner's largest inputs are far smaller.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// Every operation this API implements; metrics use these names as labels.
const OPERATIONS: &[&str] = &[
    "CreateService",
    "DescribeService",
    "ListServices",
    "UpdateService",
    "DeleteService",
    "PauseService",
    "ResumeService",
    "StartDeployment",
    "ListOperations",
    "CreateAutoScalingConfiguration",
    "DescribeAutoScalingConfiguration",
    "ListAutoScalingConfigurations",
    "DeleteAutoScalingConfiguration",
    "UpdateDefaultAutoScalingConfiguration",
    "ListServicesForAutoScalingConfiguration",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
    "CreateConnection",
    "ListConnections",
    "DeleteConnection",
    "CreateObservabilityConfiguration",
    "DescribeObservabilityConfiguration",
    "ListObservabilityConfigurations",
    "DeleteObservabilityConfiguration",
    "AssociateCustomDomain",
    "DescribeCustomDomains",
    "DisassociateCustomDomain",
    "CreateVpcConnector",
    "DescribeVpcConnector",
    "ListVpcConnectors",
    "DeleteVpcConnector",
    "CreateVpcIngressConnection",
    "DescribeVpcIngressConnection",
    "ListVpcIngressConnections",
    "UpdateVpcIngressConnection",
    "DeleteVpcIngressConnection",
];

/// The operations that change something (the controller is woken after them).
const MUTATING: &[&str] = &[
    "CreateService",
    "UpdateService",
    "DeleteService",
    "PauseService",
    "ResumeService",
    "StartDeployment",
    "UpdateDefaultAutoScalingConfiguration",
    "RollbackService",
    "UpdateTraffic",
    "AssociateCustomDomain",
    "DisassociateCustomDomain",
    "UpdateServiceHttpConfiguration",
    "CreateVpcConnector",
    "DeleteVpcConnector",
    "CreateVpcIngressConnection",
    "UpdateVpcIngressConnection",
    "DeleteVpcIngressConnection",
];

/// runway's extension operations (`X-Amz-Target: Runway.<Operation>`).
const EXTENSIONS: &[&str] = &[
    "GetBuildLog",
    "GetLogs",
    "ListInstances",
    "ListRevisions",
    "RollbackService",
    "UpdateTraffic",
    "ListServiceEvents",
    "UpdateConnectionCredentials",
    "ListRuntimes",
    "UpdateRuntime",
    "CheckRuntime",
    "UpdateServiceHttpConfiguration",
    "DescribeServiceHttpConfiguration",
    "DescribeEndpoints",
];

pub(crate) fn router(api: Api) -> Router {
    Router::new().fallback(handle).with_state(api)
}

/// An error answer.
#[derive(Debug)]
pub(crate) struct Fault {
    pub status: StatusCode,
    pub type_name: &'static str,
    pub message: String,
    /// Seconds to wait before trying again (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl Fault {
    pub(crate) fn new(
        status: StatusCode,
        type_name: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Fault {
            status,
            type_name,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Too many failed sign-ins from the client's address: try again after `wait`.
    fn throttled(wait: Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Fault {
            retry_after: Some(seconds.max(1)),
            ..Fault::new(
                StatusCode::TOO_MANY_REQUESTS,
                "ThrottlingException",
                format!(
                    "Rate exceeded: too many requests with invalid credentials from this address; retry in {} s",
                    seconds.max(1)
                ),
            )
        }
    }

    fn internal(message: impl Into<String>) -> Self {
        Fault::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            message,
        )
    }

    pub(crate) fn serialization(message: impl Into<String>) -> Self {
        Fault::new(StatusCode::BAD_REQUEST, "SerializationException", message)
    }
}

impl From<OpError> for Fault {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Api(e) => Fault::new(
                StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::BAD_REQUEST),
                e.kind.type_name(),
                e.message,
            ),
            OpError::Store(e) => {
                tracing::error!(error = %e, "store failed");
                Fault::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServiceErrorException",
                    "runway's state store failed; the request changed nothing and may be retried",
                )
            }
        }
    }
}

async fn handle(State(api): State<Api>, request: Request) -> Response {
    if let Some(service) = crate::aws::Service::of(request.headers()) {
        return crate::aws::handle(api, service, request).await;
    }
    if crate::ec2::is_query(request.headers()) {
        return crate::ec2::handle(&api, request).await;
    }
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = request.into_parts();
    let mut operation = "unknown";
    let result = async {
        let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
            Fault::serialization(format!("the request body is larger than {MAX_BODY} bytes"))
        })?;
        let access_key = authenticate(&api, &parts, body.clone(), "apprunner").await?;
        let target = target(&parts)?;
        let known = match (
            target.strip_prefix(TARGET_PREFIX),
            target.strip_prefix(EXTENSION_PREFIX),
        ) {
            (Some(name), _) => OPERATIONS.iter().find(|op| **op == name),
            (_, Some(name)) => EXTENSIONS.iter().find(|op| **op == name),
            _ => None,
        };
        operation = known.copied().ok_or_else(|| {
            Fault::new(
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                format!("runway does not implement the operation {target:?}"),
            )
        })?;
        content_type(&parts, JSON_1_0)?;
        tracing::debug!(%request_id, operation, %access_key, "api request");
        let output = dispatch(&api, operation, body).await?;
        if MUTATING.contains(&operation) {
            api.changed();
        }
        Ok(output)
    }
    .await;

    finish(&api, started, &request_id, operation, result, JSON_1_0)
}

/// The operation a request names (`X-Amz-Target`), once it is known to be a `POST /`.
pub(crate) fn target(parts: &axum::http::request::Parts) -> Result<&str, Fault> {
    if parts.method != Method::POST || parts.uri.path() != "/" {
        return Err(Fault::new(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "the API is served at POST /",
        ));
    }
    Ok(parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(""))
}

/// Checks that the request's body is of the `expected` content type.
pub(crate) fn content_type(
    parts: &axum::http::request::Parts,
    expected: &str,
) -> Result<(), Fault> {
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.split(';').next().map(str::trim) != Some(expected) {
        return Err(Fault::serialization(format!(
            "Content-Type must be {expected}, got {content_type:?}"
        )));
    }
    Ok(())
}

/// Answers a request with its output or its error (`{"__type", "Message"}`), counts it
/// and logs one line (never the body).
pub(crate) fn finish(
    api: &Api,
    started: Instant,
    request_id: &str,
    operation: &'static str,
    result: Result<Vec<u8>, Fault>,
    content_type: &'static str,
) -> Response {
    let elapsed = started.elapsed();
    let (status, outcome, body, retry_after) = match result {
        Ok(body) => (StatusCode::OK, "ok", body, None),
        Err(fault) => {
            let body = serde_json::json!({ "__type": fault.type_name, "Message": fault.message });
            (
                fault.status,
                fault.type_name,
                body.to_string().into_bytes(),
                fault.retry_after,
            )
        }
    };
    api.inner
        .metrics
        .observe(operation, outcome, elapsed.as_secs_f64());
    tracing::info!(
        %request_id,
        operation,
        status = status.as_u16(),
        result = outcome,
        elapsed_ms = elapsed.as_millis() as u64,
        "api"
    );
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", id);
    }
    if let Some(seconds) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A request that carries a signature, from a known client address, when failed
/// sign-ins are limited: the throttle is asked before the signature is checked and told
/// when it fails.
struct Signer<'a> {
    throttle: &'a runway_secrets::AuthThrottle,
    client: SocketAddr,
    key_id: Option<&'a str>,
}

impl<'a> Signer<'a> {
    fn of(api: &'a Api, parts: &'a axum::http::request::Parts) -> Option<Self> {
        let throttle = api.inner.throttle.as_deref()?;
        let ConnectInfo(client) = parts.extensions.get::<ConnectInfo<SocketAddr>>()?;
        // A request without credentials fails as anonymous, not as a wrong guess.
        let signed = parts.headers.contains_key(header::AUTHORIZATION)
            || parts
                .uri
                .query()
                .is_some_and(|q| q.contains("X-Amz-Signature") || q.contains("X-Amz-Credential"));
        signed.then(|| Signer {
            throttle,
            client: *client,
            key_id: sigv4::claimed_key_id(&parts.headers),
        })
    }

    fn failure<'r>(&self, reason: &'r str) -> runway_secrets::AuthFailure<'r>
    where
        'a: 'r,
    {
        runway_secrets::AuthFailure {
            listener: "api",
            client: self.client,
            key_id: self.key_id,
            reason,
        }
    }

    fn admit(&self) -> Result<(), Fault> {
        self.throttle
            .admit(&self.failure("throttled"))
            .map_err(Fault::throttled)
    }

    /// Counts `fault` if it says the credentials are wrong (not a failure on our side).
    fn failed(&self, fault: &Fault) {
        if fault.status == StatusCode::FORBIDDEN {
            self.throttle.failed(&self.failure(fault.type_name));
        }
    }
}

/// Verifies the request's SigV4 signature, scoped to `service`, against the stored
/// access keys, unless the client's address has failed too often lately (then
/// `ThrottlingException`); returns the access key id.
pub(crate) async fn authenticate(
    api: &Api,
    parts: &axum::http::request::Parts,
    body: Bytes,
    service: &'static str,
) -> Result<String, Fault> {
    let signer = Signer::of(api, parts);
    if let Some(signer) = &signer {
        signer.admit()?;
    }
    verify(api, parts, body, service)
        .await
        .inspect_err(|fault| {
            if let Some(signer) = &signer {
                signer.failed(fault);
            }
        })
}

/// Checks the request's signature against the stored access keys.
async fn verify(
    api: &Api,
    parts: &axum::http::request::Parts,
    body: Bytes,
    service: &'static str,
) -> Result<String, Fault> {
    let api = api.clone();
    let method = parts.method.clone();
    let uri = parts.uri.clone();
    let headers = parts.headers.clone();
    let verdict = tokio::task::spawn_blocking(move || {
        let inner = &api.inner;
        let request = sigv4::RequestParts {
            method: method.as_str(),
            path: uri.path(),
            query: uri.query(),
            headers: &headers,
            body: &body,
        };
        let policy = sigv4::Policy {
            region: &inner.config.region,
            service,
            now: SystemTime::now(),
            max_skew: MAX_SKEW,
        };
        let mut failure = None;
        let verdict = sigv4::verify(&request, &policy, |id| {
            let found = inner
                .store
                .read()
                .map_err(|e| e.to_string())
                .and_then(|tx| {
                    runway_secrets::secret_for(&*tx, &inner.master, id).map_err(|e| e.to_string())
                });
            match found {
                Ok(secret) => secret.map(|s| s.expose().to_string()),
                Err(e) => {
                    failure = Some(e);
                    None
                }
            }
        });
        (verdict, failure)
    })
    .await;
    match verdict {
        Ok((_, Some(failure))) => {
            tracing::error!(error = %failure, "cannot look up an access key");
            Err(Fault::internal(
                "runway could not look up the access key; retry",
            ))
        }
        Ok((Ok(id), None)) => Ok(id),
        Ok((Err(e), None)) => Err(Fault::new(
            StatusCode::FORBIDDEN,
            e.type_name(),
            e.to_string(),
        )),
        Err(e) => Err(Fault::internal(format!(
            "authentication failed to run: {e}"
        ))),
    }
}

async fn dispatch(api: &Api, operation: &str, body: Bytes) -> Result<Vec<u8>, Fault> {
    use ops::{
        autoscaling, connections, custom_domains, extensions, http, observability, services, tags,
        vpc_connectors, vpc_ingress,
    };
    match operation {
        "CreateService" => run(api, body, services::create).await,
        "DescribeService" => run(api, body, services::describe).await,
        "ListServices" => run(api, body, services::list).await,
        "UpdateService" => run(api, body, services::update).await,
        "DeleteService" => run(api, body, services::delete).await,
        "PauseService" => run(api, body, services::pause).await,
        "ResumeService" => run(api, body, services::resume).await,
        "StartDeployment" => run(api, body, services::start_deployment).await,
        "ListOperations" => run(api, body, services::list_operations).await,
        "CreateAutoScalingConfiguration" => run(api, body, autoscaling::create).await,
        "DescribeAutoScalingConfiguration" => run(api, body, autoscaling::describe).await,
        "ListAutoScalingConfigurations" => run(api, body, autoscaling::list).await,
        "DeleteAutoScalingConfiguration" => run(api, body, autoscaling::delete).await,
        "UpdateDefaultAutoScalingConfiguration" => {
            run(api, body, autoscaling::update_default).await
        }
        "ListServicesForAutoScalingConfiguration" => {
            run(api, body, autoscaling::list_services).await
        }
        "TagResource" => run(api, body, tags::tag).await,
        "UntagResource" => run(api, body, tags::untag).await,
        "ListTagsForResource" => run(api, body, tags::list).await,
        "CreateConnection" => run(api, body, connections::create).await,
        "ListConnections" => run(api, body, connections::list).await,
        "DeleteConnection" => run(api, body, connections::delete).await,
        "CreateObservabilityConfiguration" => run(api, body, observability::create).await,
        "DescribeObservabilityConfiguration" => run(api, body, observability::describe).await,
        "ListObservabilityConfigurations" => run(api, body, observability::list).await,
        "DeleteObservabilityConfiguration" => run(api, body, observability::delete).await,
        "AssociateCustomDomain" => run(api, body, custom_domains::associate).await,
        "DescribeCustomDomains" => run(api, body, custom_domains::describe).await,
        "DisassociateCustomDomain" => run(api, body, custom_domains::disassociate).await,
        "CreateVpcConnector" => run(api, body, vpc_connectors::create).await,
        "DescribeVpcConnector" => run(api, body, vpc_connectors::describe).await,
        "ListVpcConnectors" => run(api, body, vpc_connectors::list).await,
        "DeleteVpcConnector" => run(api, body, vpc_connectors::delete).await,
        "CreateVpcIngressConnection" => run(api, body, vpc_ingress::create).await,
        "DescribeVpcIngressConnection" => run(api, body, vpc_ingress::describe).await,
        "ListVpcIngressConnections" => run(api, body, vpc_ingress::list).await,
        "UpdateVpcIngressConnection" => run(api, body, vpc_ingress::update).await,
        "DeleteVpcIngressConnection" => run(api, body, vpc_ingress::delete).await,
        "GetLogs" => {
            let input = parse(&body)?;
            let output = crate::logs::get(api, input).await?;
            serde_json::to_vec(&output)
                .map_err(|e| Fault::internal(format!("cannot encode the answer: {e}")))
        }
        "ListInstances" => {
            let input = parse(&body)?;
            let output = crate::logs::list_instances(api, input).await?;
            serde_json::to_vec(&output)
                .map_err(|e| Fault::internal(format!("cannot encode the answer: {e}")))
        }
        "ListRevisions" => run(api, body, extensions::list_revisions).await,
        "RollbackService" => run(api, body, extensions::rollback).await,
        "UpdateTraffic" => run(api, body, extensions::update_traffic).await,
        "ListServiceEvents" => run(api, body, extensions::list_events).await,
        "GetBuildLog" => run(api, body, extensions::get_build_log).await,
        "UpdateConnectionCredentials" => run(api, body, connections::update_credentials).await,
        "ListRuntimes" => encode(&crate::runtimes::list(api).await?),
        "UpdateRuntime" => encode(&crate::runtimes::update(api, parse(&body)?).await?),
        "CheckRuntime" => encode(&crate::runtimes::check(api, parse(&body)?).await?),
        "UpdateServiceHttpConfiguration" => run(api, body, http::update).await,
        "DescribeServiceHttpConfiguration" => run(api, body, http::describe).await,
        "DescribeEndpoints" => {
            let inner = &api.inner;
            let mut output = serde_json::to_value(&inner.endpoints)
                .map_err(|e| Fault::internal(format!("cannot encode the answer: {e}")))?;
            if let Some(object) = output.as_object_mut() {
                object.insert("Region".into(), inner.config.region.clone().into());
            } else {
                output = serde_json::json!({ "Region": inner.config.region });
            }
            serde_json::to_vec(&output)
                .map_err(|e| Fault::internal(format!("cannot encode the answer: {e}")))
        }
        other => Err(Fault::internal(format!("operation {other} has no handler"))),
    }
}

/// Parses the input, runs the operation in one transaction on a blocking thread (it
/// commits only if the operation succeeds), and encodes its output.
pub(crate) async fn run<Req, Resp, E>(
    api: &Api,
    body: Bytes,
    op: fn(&mut dyn Txn, &Ctx<'_>, Req) -> Result<Resp, E>,
) -> Result<Vec<u8>, Fault>
where
    Req: DeserializeOwned + Clone + Send + 'static,
    Resp: Serialize + Send + 'static,
    E: 'static,
    Fault: From<E>,
{
    let input: Req = parse(&body)?;
    let api = api.clone();
    let joined = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, Fault> {
        let inner = &api.inner;
        let ctx = Ctx {
            config: &inner.config,
            master: &inner.master,
            now: Timestamp::now(),
        };
        // Read first: most calls only read, and a read neither waits for the writers
        // nor holds them up. An operation that writes finds its read transaction
        // refusing (whatever error it makes of that) and runs again, from the start,
        // in a writing one.
        let (read, refused) = {
            let mut tx = inner.store.read().map_err(OpError::from)?;
            let read = op(&mut *tx, &ctx, input.clone());
            (read, tx.refused_write())
        };
        let output = if refused {
            let mut tx = inner.store.begin().map_err(OpError::from)?;
            let output = op(&mut *tx, &ctx, input)?;
            tx.commit().map_err(OpError::from)?;
            output
        } else {
            read?
        };
        serde_json::to_vec(&output)
            .map_err(|e| Fault::internal(format!("cannot encode the answer: {e}")))
    })
    .await;
    joined.unwrap_or_else(|e| Err(Fault::internal(format!("the operation failed to run: {e}"))))
}

/// Encodes an operation's answer.
fn encode<T: Serialize>(output: &T) -> Result<Vec<u8>, Fault> {
    serde_json::to_vec(output)
        .map_err(|e| Fault::internal(format!("cannot encode the answer: {e}")))
}

/// Parses a JSON object into `T`. A mismatch names the member's path and what was
/// expected, never the value found: it may be a secret.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Fault> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Fault::serialization("the request body is not UTF-8"))?;
    let text = if text.trim().is_empty() { "{}" } else { text };
    if !text.trim_start().starts_with('{') {
        return Err(Fault::serialization(
            "the request body must be a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let what = if inner.is_data() {
            // "invalid type: string \"<value>\", expected a boolean at line 1 column 9"
            let message = inner.to_string();
            match message.split_once(", expected ") {
                Some((_, expected)) => format!(
                    "expected {}",
                    expected.split(" at line ").next().unwrap_or(expected)
                ),
                None => "the value does not fit the member's type".to_string(),
            }
        } else {
            format!(
                "malformed JSON at line {} column {}",
                inner.line(),
                inner.column()
            )
        };
        if path == "." || path.is_empty() {
            Fault::serialization(what)
        } else {
            Fault::serialization(format!("{path}: {what}"))
        }
    })?;
    de.end()
        .map_err(|e| Fault::serialization(format!("malformed JSON: {e}")))?;
    Ok(value)
}
