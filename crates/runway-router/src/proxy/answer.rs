//! What the router answers itself: error pages, notices for hosts not routed yet,
//! redirects to HTTPS and ACME challenges.

use super::body::RouterBody;
use super::finish::{RequestInfo, failed};
use crate::acme::ACME_CHALLENGE_PREFIX;
use crate::balance::RevisionState;
use crate::conn::ConnInfo;
use crate::error::RouterError;
use crate::grpc;
use crate::headers::X_REQUEST_ID;
use crate::host;
use crate::shared::Shared;
use crate::table::ServiceEntry;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use std::sync::Arc;

/// A page the router answers with.
fn page(status: StatusCode, message: &str) -> Bytes {
    let reason = status.canonical_reason().unwrap_or("");
    Bytes::from(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{code} {reason}</title></head>\n<body><h1>{code} {reason}</h1><p>{message}</p><p><small>runway</small></p></body></html>\n",
        code = status.as_u16(),
    ))
}

/// A response the router makes itself, saying `message`: a page with `status`, or for a
/// gRPC request a trailers-only response (200, `application/grpc`, `code` in
/// `grpc-status` and the message in `grpc-message`), which is how gRPC clients read
/// errors.
fn message_response(
    status: StatusCode,
    code: grpc::Code,
    message: &str,
    grpc: bool,
) -> Response<RouterBody> {
    let mut response = if grpc {
        let mut response = Response::new(RouterBody::empty());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        grpc::set_status(headers, code, message);
        response
    } else {
        let mut response = Response::new(RouterBody::Full(Some(page(status, message))));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The response for an error the router answers itself (`grpc`: to a gRPC request).
fn error_response(
    err: &RouterError,
    version: Version,
    request_id: Option<&HeaderValue>,
    grpc: bool,
) -> Response<RouterBody> {
    let mut response = message_response(err.status(), err.grpc_code(), &err.to_string(), grpc);
    let headers = response.headers_mut();
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
/// if one was chosen; and the instance last tried, with whether this request's failure
/// ejected it).
pub(super) fn fail(
    shared: &Shared,
    service: &ServiceEntry,
    revision: Option<&RevisionState>,
    tried: Option<(Arc<str>, bool)>,
    err: RouterError,
    version: Version,
    info: RequestInfo,
) -> Response<RouterBody> {
    tracing::debug!(service = %service.id, kind = err.label(), error = %err, "request answered by the router");
    let response = error_response(&err, version, Some(&info.request_id), info.grpc);
    failed(shared, service, revision, tried, &err, info);
    response
}

/// Answers a request that leads to no service (counted by kind, not by service);
/// `grpc`: it is a gRPC request.
pub(super) fn unrouted(
    shared: &Shared,
    err: RouterError,
    version: Version,
    grpc: bool,
) -> Response<RouterBody> {
    shared
        .metrics
        .unrouted
        .get_or_create(&crate::metrics::KindLabels { kind: err.label() })
        .inc();
    error_response(&err, version, None, grpc)
}

/// The answer for a host that is not routed yet but has a notice (a custom domain whose
/// certificate is being validated, or that failed): 503 with a page saying why, or
/// UNAVAILABLE with the notice as its message for a gRPC request.
pub(super) fn notice(shared: &Shared, req: &Request<Incoming>) -> Option<Response<RouterBody>> {
    let notices = shared.notices.load();
    if notices.is_empty() {
        return None;
    }
    let host = host::request_host(req).ok()?;
    let message = notices.get(&*host)?;
    let grpc = grpc::is_grpc(req.headers());
    let status = StatusCode::SERVICE_UNAVAILABLE;
    let mut response = message_response(status, grpc::Code::Unavailable, message, grpc);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(60));
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
