//! The request filter: which service a request's host leads to, and the requests the
//! router answers before choosing an instance (ACME challenges, unknown or malformed
//! hosts, notices for hosts not routed yet, CONNECT, paused services, redirects to HTTPS, bodies declared too large).

use super::answer::{self, fail};
use super::body::RouterBody;
use super::finish::RequestInfo;
use crate::acme::ACME_CHALLENGE_PREFIX;
use crate::conn::ConnInfo;
use crate::error::RouterError;
use crate::grpc;
use crate::headers;
use crate::host;
use crate::shared::Shared;
use crate::table::{HostTarget, RouteCache};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Instant;

/// A request on its way to a service.
#[derive(Debug)]
pub(super) struct Admitted {
    pub target: HostTarget,
    /// The host as the client wrote it (Host header or authority).
    pub host: HeaderValue,
    /// A WebSocket over HTTP/2 (RFC 8441 extended CONNECT).
    pub h2_websocket: bool,
    /// The client's HTTP version.
    pub version: Version,
    pub started: Instant,
}

/// Admits `req` for its service, or answers it (boxed: the answer is large and rare).
pub(super) fn admit(
    shared: &Shared,
    conn: &ConnInfo,
    req: &Request<Incoming>,
    started: Instant,
) -> Result<Admitted, Box<Response<RouterBody>>> {
    let version = req.version();
    if let Some(answer) = answer::acme_challenge(shared, conn, req) {
        return Err(Box::new(answer));
    }
    let unrouted = |err| {
        Box::new(answer::unrouted(
            shared,
            err,
            version,
            grpc::is_grpc(req.headers()),
        ))
    };
    let (target, host) = match route(shared, conn, req) {
        Ok(routed) => routed,
        Err(RouterError::UnknownHost) if let Some(answer) = answer::notice(shared, req) => {
            return Err(Box::new(answer));
        }
        Err(err) => return Err(unrouted(err)),
    };
    // WebSockets over HTTP/2 become HTTP/1.1 upgrades to the instance. Any other CONNECT
    // is refused: the router is not a forward proxy.
    let h2_websocket = version == Version::HTTP_2
        && req.method() == Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    if req.method() == Method::CONNECT && !h2_websocket {
        return Err(unrouted(RouterError::BadRequest(
            "CONNECT is not supported",
        )));
    }
    let service = &target.service;
    let refuse = |err| {
        let grpc = grpc::is_grpc(req.headers());
        let id = headers::new_request_id();
        let info = RequestInfo::new(shared, conn, req, started, id, None, grpc);
        Box::new(fail(shared, service, None, None, err, version, info))
    };
    if service.paused {
        return Err(refuse(RouterError::Paused));
    }
    if !conn.tls && service.https_redirect && !req.uri().path().starts_with(ACME_CHALLENGE_PREFIX) {
        return Err(Box::new(answer::redirect(&host, req, shared.https_port())));
    }
    // A request with no body to come declares none worth a lookup.
    let declared = if req.body().is_end_stream() {
        None
    } else {
        req.headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    if declared.is_some_and(|len| len > service.max_request_body) {
        return Err(refuse(RouterError::BodyTooLarge));
    }
    Ok(Admitted {
        target,
        host,
        h2_websocket,
        version,
        started,
    })
}

/// Where a request's host leads, and the host as the client wrote it.
fn route(
    shared: &Shared,
    conn: &ConnInfo,
    req: &Request<Incoming>,
) -> Result<(HostTarget, HeaderValue), RouterError> {
    // The bytes the host comes from; a request naming it twice is refused below.
    let authority = req.uri().authority();
    let raw = match authority {
        Some(authority) => authority.as_str().as_bytes(),
        None => {
            let mut values = req.headers().get_all(header::HOST).iter();
            match (values.next(), values.next()) {
                (Some(value), None) => value.as_bytes(),
                _ => return Err(RouterError::BadHost),
            }
        }
    };
    let table = shared.table.load();
    if let Ok(cache) = conn.route.try_lock()
        && let Some(cached) = cache.as_ref()
        && Arc::ptr_eq(&cached.table, &table)
        && cached.host.as_bytes() == raw
    {
        return Ok((cached.target.clone(), cached.host.clone()));
    }
    let host = host::request_host(req).map_err(|_| RouterError::BadHost)?;
    // A service not served on the connection's listener, or to its client's address
    // family, is as unknown as any other host.
    let target = table
        .find(&host)
        .filter(|t| t.service.serves(conn.scope.as_deref(), conn.ipv6))
        .cloned()
        .ok_or(RouterError::UnknownHost)?;
    let raw = match authority {
        Some(authority) => {
            HeaderValue::from_str(authority.as_str()).map_err(|_| RouterError::BadHost)?
        }
        None => req
            .headers()
            .get(header::HOST)
            .cloned()
            .ok_or(RouterError::BadHost)?,
    };
    if let Ok(mut cache) = conn.route.try_lock() {
        *cache = Some(RouteCache {
            table: Arc::clone(&table),
            host: raw.clone(),
            target: target.clone(),
        });
    }
    Ok((target, raw))
}

/// Where `host` leads in the current table (for a request whose revision left the table
/// while it waited).
pub(super) fn lookup(shared: &Shared, host: &HeaderValue) -> Option<HostTarget> {
    let name = host::parse_host(host.as_bytes()).ok()?;
    shared.table.load().find(&name).cloned()
}
