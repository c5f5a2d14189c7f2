//! The OCI Distribution API v1.1 over HTTP: routing (repository names contain slashes,
//! so paths are parsed from the end), authentication and authorization of every
//! request, the spec's JSON errors, and the headers clients rely on (`Location`,
//! `Docker-Content-Digest`, `Docker-Upload-UUID`, `Range`, `OCI-Subject`).

mod access;
mod admin;
mod blobs;
mod body;
mod discovery;
mod manifests;

use crate::{Registry, RegistryError, names};
use access::Need;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use std::time::Instant;

pub(crate) fn router(registry: Registry) -> Router {
    Router::new().fallback(handle).with_state(registry)
}

/// The spec's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    TooManyRequests,
    Unauthorized,
    Unsupported,
    /// Server-side failures (5xx bodies are not constrained by the spec).
    Unknown,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Unsupported => "UNSUPPORTED",
            Code::Unknown => "UNKNOWN",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => StatusCode::NOT_FOUND,
            Code::BlobUploadInvalid
            | Code::DigestInvalid
            | Code::ManifestBlobUnknown
            | Code::ManifestInvalid
            | Code::NameInvalid
            | Code::SizeInvalid => StatusCode::BAD_REQUEST,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error answer: `{"errors":[{"code", "message", "detail"}]}`. Boxed, so that
/// results carrying it stay small.
#[derive(Debug)]
pub(crate) struct Fault(Box<FaultInner>);

#[derive(Debug)]
struct FaultInner {
    status: StatusCode,
    code: Code,
    message: String,
    detail: Option<serde_json::Value>,
    headers: HeaderMap,
}

impl Fault {
    pub fn new(code: Code, message: impl Into<String>) -> Fault {
        Fault(Box::new(FaultInner {
            status: code.status(),
            code,
            message: message.into(),
            detail: None,
            headers: HeaderMap::new(),
        }))
    }

    pub fn status(mut self, status: StatusCode) -> Fault {
        self.0.status = status;
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Fault {
        self.0.detail = Some(detail);
        self
    }

    pub fn header(mut self, name: impl http::header::IntoHeaderName, value: &str) -> Fault {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.0.headers.append(name, v);
        }
        self
    }

    /// A failure on runway's side; logged here, answered without internals.
    pub fn internal(e: impl std::fmt::Display) -> Fault {
        tracing::error!(error = %e, "registry request failed");
        Fault::new(
            Code::Unknown,
            "the registry failed; the request may be retried",
        )
    }
}

impl From<RegistryError> for Fault {
    fn from(e: RegistryError) -> Fault {
        match e {
            RegistryError::NotFound(what) => {
                Fault::new(Code::NameUnknown, format!("{what} not found"))
            }
            RegistryError::Invalid(m) => Fault::new(Code::NameInvalid, m),
            other => Fault::internal(other),
        }
    }
}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        let f = *self.0;
        let mut error = serde_json::json!({ "code": f.code.as_str(), "message": f.message });
        if let Some(detail) = f.detail {
            error["detail"] = detail;
        }
        let body = serde_json::json!({ "errors": [error] }).to_string();
        let mut response = (f.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in f.headers.iter() {
            headers.append(name.clone(), value.clone());
        }
        response
    }
}

pub(crate) type Answer = Result<Response, Fault>;

/// What a request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Base,
    Token,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    Uploads(String),
    Upload(String, String),
    Referrers(String, String),
    Gc,
    AnonymousPull(String),
}

impl Route {
    fn label(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Token => "token",
            Route::Catalog => "catalog",
            Route::Tags(_) => "tags",
            Route::Manifest(..) => "manifest",
            Route::Blob(..) => "blob",
            Route::Uploads(_) | Route::Upload(..) => "upload",
            Route::Referrers(..) => "referrers",
            Route::Gc | Route::AnonymousPull(_) => "admin",
        }
    }
}

fn not_found() -> Fault {
    Fault::new(Code::NameUnknown, "no such endpoint").status(StatusCode::NOT_FOUND)
}

/// Parses a (percent-decoded) path into a route; names are checked against the
/// spec's grammar.
pub(crate) fn route(path: &str) -> Result<Route, Fault> {
    let named = |name: String, route: Route| {
        if names::is_repository(&name) {
            Ok(route)
        } else {
            Err(Fault::new(
                Code::NameInvalid,
                format!(
                    "invalid repository name {:?}",
                    name.chars().take(300).collect::<String>()
                ),
            ))
        }
    };
    if let Some(rest) = path.strip_prefix("/runway/v1/") {
        if rest == "gc" {
            return Ok(Route::Gc);
        }
        if let Some(name) = rest
            .strip_prefix("repositories/")
            .and_then(|r| r.strip_suffix("/anonymous-pull"))
        {
            return named(name.to_string(), Route::AnonymousPull(name.to_string()));
        }
        return Err(not_found());
    }
    match path {
        "/v2" | "/v2/" => return Ok(Route::Base),
        "/v2/token" => return Ok(Route::Token),
        "/v2/_catalog" => return Ok(Route::Catalog),
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Err(not_found());
    };
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let name = |k: usize| segs[..n - k].join("/");
    if n >= 3 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        let id = segs[n - 1];
        let repo = name(3);
        return if id.is_empty() {
            named(repo.clone(), Route::Uploads(repo))
        } else {
            named(repo.clone(), Route::Upload(repo, id.to_string()))
        };
    }
    if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        let repo = name(2);
        return named(repo.clone(), Route::Uploads(repo));
    }
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        let repo = name(2);
        return named(repo.clone(), Route::Tags(repo));
    }
    if n >= 3 {
        let last = segs[n - 1].to_string();
        let repo = name(2);
        match segs[n - 2] {
            "manifests" => return named(repo.clone(), Route::Manifest(repo, last)),
            "blobs" => return named(repo.clone(), Route::Blob(repo, last)),
            "referrers" => return named(repo.clone(), Route::Referrers(repo, last)),
            _ => {}
        }
    }
    Err(not_found())
}

/// The query's parameters, decoded as HTML forms encode them (what Go clients send).
pub(crate) fn query(uri: &http::Uri) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

pub(crate) fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

pub(crate) fn header(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A response with no body (and `Content-Length: 0`) and the given headers.
pub(crate) fn empty(status: StatusCode, headers: &[(&'static str, String)]) -> Response {
    let mut response = status.into_response();
    let h = response.headers_mut();
    h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.append(*name, v);
        }
    }
    response
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}

fn unsupported(method: &Method) -> Fault {
    Fault::new(
        Code::Unsupported,
        format!("{method} is not supported on this endpoint"),
    )
}

async fn handle(State(registry): State<Registry>, request: Request) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = percent_encoding::percent_decode_str(request.uri().path())
        .decode_utf8_lossy()
        .into_owned();
    let parsed = route(&path);
    let label = parsed.as_ref().map_or("unknown", Route::label);
    let result = match parsed {
        Ok(route) => dispatch(&registry, route, request).await,
        Err(fault) => Err(fault),
    };
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    let status = response.status();
    let elapsed = started.elapsed();
    registry.inner.metrics.observe(
        label,
        method_label(&method),
        status.as_u16(),
        elapsed.as_secs_f64(),
    );
    tracing::debug!(
        method = %method,
        route = label,
        path = %path,
        status = status.as_u16(),
        elapsed_ms = elapsed.as_millis() as u64,
        "registry request"
    );
    response
}

async fn dispatch(registry: &Registry, route: Route, request: Request) -> Answer {
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    if route == Route::Token {
        return match method {
            Method::GET => access::token(registry, &parts).await,
            _ => Err(unsupported(&method)),
        };
    }
    let principal = access::authenticate(registry, &parts).await?;
    let need = match (&route, &method) {
        (Route::Base, _) => Need::Any,
        (Route::Catalog, _) => Need::Catalog,
        (Route::Gc | Route::AnonymousPull(_), _) => Need::Admin,
        (
            Route::Tags(n) | Route::Manifest(n, _) | Route::Blob(n, _) | Route::Referrers(n, _),
            &Method::GET | &Method::HEAD,
        ) => Need::Pull(n.clone()),
        (Route::Manifest(n, _) | Route::Blob(n, _), &Method::DELETE) => Need::Delete(n.clone()),
        (Route::Manifest(n, _) | Route::Uploads(n) | Route::Upload(n, _), _) => {
            Need::Push(n.clone())
        }
        _ => return Err(unsupported(&method)),
    };
    access::authorize(registry, &principal, &need, &parts.headers).await?;
    tracing::debug!(principal = principal.name(), need = ?need, "authorized");
    let head = method == Method::HEAD;
    match (route, method) {
        (Route::Base, Method::GET | Method::HEAD) => {
            Ok(([(CONTENT_TYPE, "application/json")], "{}").into_response())
        }
        (Route::Catalog, Method::GET) => discovery::catalog(registry, &parts.uri).await,
        (Route::Tags(name), Method::GET) => discovery::tags(registry, &name, &parts.uri).await,
        (Route::Referrers(name, digest), Method::GET) => {
            discovery::referrers(registry, &name, &digest, &parts.uri).await
        }
        (Route::Manifest(name, reference), Method::GET | Method::HEAD) => {
            manifests::get(registry, &name, &reference, head).await
        }
        (Route::Manifest(name, reference), Method::PUT) => {
            manifests::put(registry, &name, &reference, &parts, body).await
        }
        (Route::Manifest(name, reference), Method::DELETE) => {
            manifests::delete(registry, &name, &reference).await
        }
        (Route::Blob(name, digest), Method::GET | Method::HEAD) => {
            blobs::get(registry, &name, &digest, &parts.headers, head).await
        }
        (Route::Blob(name, digest), Method::DELETE) => {
            blobs::delete(registry, &name, &digest).await
        }
        (Route::Uploads(name), Method::POST) => {
            blobs::start(registry, &principal, &name, &parts, body).await
        }
        (Route::Upload(name, id), Method::GET) => blobs::status(registry, &name, &id).await,
        (Route::Upload(name, id), Method::PATCH) => {
            blobs::patch(registry, &name, &id, &parts, body).await
        }
        (Route::Upload(name, id), Method::PUT) => {
            blobs::finish(registry, &name, &id, &parts, body).await
        }
        (Route::Upload(name, id), Method::DELETE) => blobs::cancel(registry, &name, &id).await,
        (Route::Gc, Method::POST) => admin::gc(registry).await,
        (Route::AnonymousPull(name), Method::GET) => {
            admin::get_anonymous_pull(registry, &name).await
        }
        (Route::AnonymousPull(name), Method::PUT) => {
            admin::put_anonymous_pull(registry, &name, body).await
        }
        (_, method) => Err(unsupported(&method)),
    }
}

#[cfg(test)]
mod tests;
