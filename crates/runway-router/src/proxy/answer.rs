//! What the router answers itself: error pages, notices for hosts not routed yet,
//! redirects to HTTPS and ACME challenges.

use super::body::RouterBody;
use super::finish::{RequestInfo, failed};
use crate::acme::ACME_CHALLENGE_PREFIX;
use crate::balance::RevisionState;
use crate::conn::ConnInfo;
use crate::error::RouterError;
use crate::headers::X_REQUEST_ID;
use crate::host;
use crate::shared::Shared;
use crate::table::ServiceEntry;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;

/// A page the router answers with.
fn page(status: StatusCode, message: &str) -> Bytes {
    let reason = status.canonical_reason().unwrap_or("");
    Bytes::from(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{code} {reason}</title></head>\n<body><h1>{code} {reason}</h1><p>{message}</p><p><small>runway</small></p></body></html>\n",
        code = status.as_u16(),
    ))
}

/// The response for an error the router answers itself.
fn error_response(
    err: &RouterError,
    version: Version,
    request_id: Option<&HeaderValue>,
) -> Response<RouterBody> {
    let status = err.status();
    let mut response = Response::new(RouterBody::Full(Some(page(status, &err.to_string()))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(seconds) = err.retry_after() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let Some(id) = request_id {
        headers.insert(X_REQUEST_ID.clone(), id.clone());
    }
    // HTTP/2 has no Connection header; hyper closes HTTP/1.x connections with it.
    if err.closes_connection() && version < Version::HTTP_2 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Answers a request for a service with `err`, recorded for the service (and revision,
/// if one was chosen).
pub(super) fn fail(
    shared: &Shared,
    service: &ServiceEntry,
    revision: Option<&RevisionState>,
    err: RouterError,
    version: Version,
    info: RequestInfo,
) -> Response<RouterBody> {
    tracing::debug!(service = %service.id, kind = err.label(), error = %err, "request answered by the router");
    let response = error_response(&err, version, Some(&info.request_id));
    failed(shared, service, revision, &err, info);
    response
}

/// Answers a request that leads to no service (counted by kind, not by service).
pub(super) fn unrouted(
    shared: &Shared,
    err: RouterError,
    version: Version,
) -> Response<RouterBody> {
    shared
        .metrics
        .unrouted
        .get_or_create(&crate::metrics::KindLabels { kind: err.label() })
        .inc();
    error_response(&err, version, None)
}

/// The page for a host that is not routed yet but has a notice (a custom domain whose
/// certificate is being validated, or that failed): 503, saying why.
pub(super) fn notice(shared: &Shared, req: &Request<Incoming>) -> Option<Response<RouterBody>> {
    let notices = shared.notices.load();
    if notices.is_empty() {
        return None;
    }
    let host = host::request_host(req).ok()?;
    let message = notices.get(&*host)?;
    let status = StatusCode::SERVICE_UNAVAILABLE;
    let mut response = Response::new(RouterBody::Full(Some(page(status, message))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::RETRY_AFTER, HeaderValue::from(60));
    Some(response)
}

/// A permanent redirect to the same host and path over HTTPS.
pub(super) fn redirect(
    host: &HeaderValue,
    req: &Request<Incoming>,
    https_port: u16,
) -> Response<RouterBody> {
    let name = host::parse_host(host.as_bytes()).unwrap_or_default();
    let port = match https_port {
        0 | 443 => String::new(),
        p => format!(":{p}"),
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{name}{port}{path}");
    let mut response = Response::new(RouterBody::empty());
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The key authorization, if `req` is an ACME HTTP-01 challenge on plain HTTP that the
/// ACME client is waiting for.
pub(super) fn acme_challenge(
    shared: &Shared,
    conn: &ConnInfo,
    req: &Request<Incoming>,
) -> Option<Response<RouterBody>> {
    if conn.tls || !req.uri().path().starts_with(ACME_CHALLENGE_PREFIX) {
        return None;
    }
    let responder = shared.acme.load_full()?;
    let host = host::request_host(req).ok()?;
    let token = &req.uri().path()[ACME_CHALLENGE_PREFIX.len()..];
    let answer = responder.respond(&host, token)?;
    let mut response = Response::new(RouterBody::Full(Some(answer.into())));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Some(response)
}
