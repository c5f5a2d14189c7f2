//! One request, from arrival to response: host to service, redirect or refusal, revision
//! by percent or tag, an instance lease (queueing if every instance is full), the
//! forwarded request, and the streamed response or upgraded connection.

use crate::access_log::Entry;
use crate::balance::{AcquireError, Grant, Lease, RevisionState};
use crate::body::{Completion, ProxiedBody, ProxyRequestBody, RequestInfo, RouterBody, ServedBody};
use crate::error::RouterError;
use crate::headers::{self, Forwarded, X_REQUEST_ID};
use crate::host;
use crate::server::{Busy, ConnInfo};
use crate::table::{HostTarget, ServiceEntry, Table};
use crate::upstream::{self, SendError, UpstreamBody};
use crate::{Inner, metrics::KindLabels};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Instant, SystemTime};

/// Requests under this path on plain HTTP are ACME HTTP-01 challenges: never redirected.
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";
/// How many instances one request may try when connections are refused.
const MAX_ATTEMPTS: usize = 3;

/// Answers ACME HTTP-01 challenges on plain HTTP (set by the ACME client when it
/// exists).
pub trait AcmeResponder: Send + Sync + std::fmt::Debug + 'static {
    /// The key authorization for `token` on `host`, if a challenge is pending.
    fn respond(&self, host: &str, token: &str) -> Option<String>;
}

/// The service the hyper connection calls for every request.
pub(crate) async fn handle(
    router: Arc<Inner>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ServedBody>, Infallible> {
    let started = Instant::now();
    let busy = Busy::new(&conn);
    let response = proxy(&router, &conn, req, started).await;
    Ok(response.map(|body| ServedBody { body, _busy: busy }))
}

/// A page the router answers with.
fn page(status: StatusCode, message: &str) -> Bytes {
    let reason = status.canonical_reason().unwrap_or("");
    Bytes::from(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{code} {reason}</title></head>\n<body><h1>{code} {reason}</h1><p>{message}</p><p><small>runway</small></p></body></html>\n",
        code = status.as_u16(),
    ))
}

/// The response for an error the router answers itself.
pub(crate) fn error_response(
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

/// Records an error answered for a service (and revision, if one was chosen).
fn fail(
    router: &Inner,
    service: &ServiceEntry,
    revision: Option<&RevisionState>,
    err: RouterError,
    version: Version,
    info: RequestInfo,
) -> Response<RouterBody> {
    let status = err.status().as_u16();
    let duration = info.started.elapsed();
    match revision {
        Some(revision) => {
            revision.metrics.error(err.label());
            revision.metrics.response(status);
            revision.metrics.duration.observe(duration.as_secs_f64());
        }
        None => router.metrics.service_error(&service.id, err.label()),
    }
    tracing::debug!(service = %service.id, kind = err.label(), error = %err, "request answered by the router");
    let response = error_response(&err, version, Some(&info.request_id));
    if let Some(log) = &router.access_log {
        log.record(Entry {
            time: SystemTime::now()
                .checked_sub(duration)
                .unwrap_or(SystemTime::UNIX_EPOCH),
            service: service.id.clone(),
            revision: revision.map(|r| r.id.clone()),
            instance: None,
            bytes_in: info.bytes_in(),
            method: info.method,
            path: info.path,
            status,
            duration,
            bytes_out: 0,
            request_id: info.request_id,
            client: info.client,
            error: Some(err.label()),
        });
    }
    response
}

fn unrouted(router: &Inner, err: RouterError, version: Version) -> Response<RouterBody> {
    router
        .metrics
        .unrouted
        .get_or_create(&KindLabels { kind: err.label() })
        .inc();
    error_response(&err, version, None)
}

/// The page for a host that is not routed yet but has a notice (a custom domain whose
/// certificate is being validated, or that failed): 503, saying why.
fn notice(router: &Inner, req: &Request<Incoming>) -> Option<Response<RouterBody>> {
    let notices = router.notices.load();
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

fn lookup(router: &Inner, host: &str) -> Option<HostTarget> {
    router.table.load().find(host).cloned()
}

/// The last host a connection's requests named and where it led, while the route table
/// stays the same: a keep-alive connection (or an HTTP/2 connection's streams) nearly
/// always names one host, and its requests then skip parsing it and looking it up.
#[derive(Debug)]
pub(crate) struct RouteCache {
    /// The table the target is from, held so that its address stays unique.
    table: Arc<Table>,
    /// The host as the client wrote it.
    host: HeaderValue,
    target: HostTarget,
}

/// Where a request's host leads, and the host as the client wrote it.
fn route(
    router: &Inner,
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
    let table = router.table.load();
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

fn redirect(host: &HeaderValue, req: &Request<Incoming>, https_port: u16) -> Response<RouterBody> {
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

async fn proxy(
    router: &Arc<Inner>,
    conn: &Arc<ConnInfo>,
    mut req: Request<Incoming>,
    started: Instant,
) -> Response<RouterBody> {
    let version = req.version();
    if !conn.tls
        && req.uri().path().starts_with(ACME_CHALLENGE_PREFIX)
        && let Some(responder) = router.acme.load().as_ref()
        && let Ok(host) = host::request_host(&req)
    {
        let token = &req.uri().path()[ACME_CHALLENGE_PREFIX.len()..];
        if let Some(answer) = responder.respond(&host, token) {
            let mut response = Response::new(RouterBody::Full(Some(answer.into())));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            return response;
        }
    }
    let (target, raw_host) = match route(router, conn, &req) {
        Ok(routed) => routed,
        Err(RouterError::UnknownHost) if let Some(page) = notice(router, &req) => return page,
        Err(err) => return unrouted(router, err, version),
    };
    // WebSockets over HTTP/2 (RFC 8441 extended CONNECT) become HTTP/1.1 upgrades to the
    // instance. Any other CONNECT is refused: the router is not a forward proxy.
    let h2_websocket = version == Version::HTTP_2
        && req.method() == http::Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    if req.method() == http::Method::CONNECT && !h2_websocket {
        return unrouted(
            router,
            RouterError::BadRequest("CONNECT is not supported"),
            version,
        );
    }
    let mut service = target.service.clone();

    let info = |req: &Request<Incoming>, request_id: HeaderValue, bytes_in| RequestInfo {
        started,
        method: req.method().clone(),
        path: if router.access_log.is_some() {
            req.uri().path().to_string()
        } else {
            String::new()
        },
        request_id,
        client: conn.client,
        bytes_in,
    };

    if service.paused {
        let id = headers::new_request_id();
        return fail(
            router,
            &service,
            None,
            RouterError::Paused,
            version,
            info(&req, id, None),
        );
    }
    if !conn.tls && service.https_redirect && !req.uri().path().starts_with(ACME_CHALLENGE_PREFIX) {
        return redirect(&raw_host, &req, router.https_port());
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > service.max_request_body) {
        let id = headers::new_request_id();
        return fail(
            router,
            &service,
            None,
            RouterError::BodyTooLarge,
            version,
            info(&req, id, None),
        );
    }
    let deadline = started + service.request_timeout;

    // An HTTP/1.1 upgrade keeps Connection/Upgrade and takes over both connections.
    let upgrade =
        h2_websocket || (version < Version::HTTP_2 && headers::is_upgrade_request(req.headers()));
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

    {
        let headers = req.headers_mut();
        headers::strip_hop_by_hop(headers, upgrade);
        headers.remove(header::EXPECT);
        if h2_websocket {
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(header::SEC_WEBSOCKET_KEY, headers::new_websocket_key());
        }
    }
    let proto = if conn.tls { "https" } else { "http" };
    let forwarded = Forwarded::new(req.headers(), &conn.client_value, proto, raw_host.clone());
    if h2_websocket {
        *req.method_mut() = http::Method::GET;
    }
    let bytes_in = if req.body().is_end_stream() {
        None
    } else {
        Some(Arc::new(AtomicU64::new(0)))
    };
    let info = info(&req, forwarded.request_id().clone(), bytes_in.clone());
    let (parts, body) = req.into_parts();
    let body = if h2_websocket {
        // The client's stream is the tunnel, handed over once the instance agrees.
        ProxyRequestBody::empty()
    } else {
        ProxyRequestBody::new(body, service.max_request_body, bytes_in)
    };
    let mut outgoing = Request::from_parts(parts, body);

    let mut revision = match target.tagged.clone().or_else(|| service.pick()) {
        Some(revision) => revision,
        None => {
            return fail(
                router,
                &service,
                None,
                RouterError::NoRevision,
                version,
                info,
            );
        }
    };
    let mut exclude: Vec<SocketAddr> = Vec::new();
    let mut attempts = 0;
    // The first attempt starts as the request arrives; later ones read the clock.
    let mut now = started;
    loop {
        let remaining = deadline.saturating_duration_since(now);
        let wait = service.queue.max_wait.min(remaining);
        let lease = match revision
            .acquire(&exclude, service.queue.capacity, wait, now)
            .await
        {
            Ok(Grant::Lease(lease)) => lease,
            Ok(Grant::Reroute) => {
                // The revision left the table while the request waited: choose again
                // from what the host is now.
                let host = host::parse_host(raw_host.as_bytes()).ok();
                let target = host.and_then(|h| lookup(router, &h));
                let next = target.and_then(|t| {
                    service = t.service.clone();
                    t.tagged.or_else(|| t.service.pick())
                });
                match next {
                    Some(next) => {
                        revision = next;
                        now = Instant::now();
                        continue;
                    }
                    None => {
                        return fail(
                            router,
                            &service,
                            None,
                            RouterError::NoRevision,
                            version,
                            info,
                        );
                    }
                }
            }
            Err(AcquireError::QueueFull) => {
                return fail(
                    router,
                    &service,
                    Some(&revision),
                    RouterError::QueueFull,
                    version,
                    info,
                );
            }
            Err(AcquireError::Timeout) => {
                let err = if Instant::now() >= deadline {
                    RouterError::Timeout
                } else {
                    RouterError::QueueTimeout
                };
                return fail(router, &service, Some(&revision), err, version, info);
            }
        };
        let endpoint = lease.endpoint.clone();
        let sent = tokio::time::timeout_at(
            deadline.into(),
            upstream::send(
                &endpoint,
                outgoing,
                &forwarded,
                upgrade,
                &router.upstream,
                now,
            ),
        )
        .await;
        match sent {
            Err(_) => {
                drop(lease);
                return fail(
                    router,
                    &service,
                    Some(&revision),
                    RouterError::Timeout,
                    version,
                    info,
                );
            }
            Ok(Ok(response)) => {
                return respond(
                    router,
                    conn,
                    response,
                    lease,
                    info,
                    deadline,
                    client_upgrade,
                    h2_websocket,
                );
            }
            Ok(Err(SendError::NotSent { reason, request })) => {
                endpoint.mark_down(router.config.endpoint_backoff);
                drop(lease);
                attempts += 1;
                tracing::debug!(service = %service.id, instance = %endpoint.instance_id, error = %reason, attempt = attempts, "instance refused the connection");
                if attempts >= MAX_ATTEMPTS {
                    return fail(
                        router,
                        &service,
                        Some(&revision),
                        RouterError::Connect(reason),
                        version,
                        info,
                    );
                }
                revision.metrics.retries.inc();
                exclude.push(endpoint.addr);
                outgoing = *request;
                now = Instant::now();
            }
            Ok(Err(SendError::BodyTooLarge)) => {
                drop(lease);
                let err = RouterError::BodyTooLarge;
                return fail(router, &service, Some(&revision), err, version, info);
            }
            Ok(Err(SendError::Failed(reason))) => {
                drop(lease);
                let err = RouterError::Upstream(reason);
                return fail(router, &service, Some(&revision), err, version, info);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn respond(
    router: &Arc<Inner>,
    conn: &Arc<ConnInfo>,
    mut response: Response<UpstreamBody>,
    lease: Lease,
    info: RequestInfo,
    deadline: Instant,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    h2_websocket: bool,
) -> Response<RouterBody> {
    let status = response.status();
    if status == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let (mut parts, _) = response.into_parts();
        if h2_websocket {
            // HTTP/2 accepts an extended CONNECT with 200 and no handshake headers.
            headers::strip_hop_by_hop(&mut parts.headers, false);
            parts.headers.remove(header::SEC_WEBSOCKET_ACCEPT);
            parts.status = StatusCode::OK;
        } else {
            headers::strip_hop_by_hop(&mut parts.headers, true);
        }
        tunnel(
            router,
            conn,
            lease,
            info,
            deadline,
            client_upgrade,
            upstream_upgrade,
        );
        return Response::from_parts(parts, RouterBody::empty());
    }
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    if let http::header::Entry::Vacant(entry) = parts.headers.entry(&X_REQUEST_ID) {
        entry.insert(info.request_id.clone());
    }
    let completion = Completion {
        router: router.clone(),
        lease,
        status: status.as_u16(),
        info,
    };
    Response::from_parts(
        parts,
        RouterBody::Proxied(ProxiedBody::new(body, completion, deadline)),
    )
}

/// Joins the client's and the instance's upgraded connections and copies bytes both ways
/// until either closes, the request's deadline passes or the router stops. The lease is
/// held all along: an upgraded connection counts as one request in flight.
fn tunnel(
    router: &Arc<Inner>,
    conn: &Arc<ConnInfo>,
    lease: Lease,
    info: RequestInfo,
    deadline: Instant,
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
) {
    let router = router.clone();
    let mut stop = conn.stop.clone();
    let guard = conn.tracker.enter();
    tokio::spawn(async move {
        let _guard = guard;
        let mut bytes_out = 0;
        if let (Ok(client), Ok(upstream)) = tokio::join!(client, upstream) {
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            tokio::select! {
                copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                    if let Ok((_, down)) = copied {
                        bytes_out = down;
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = stop.wait_for(|s| s.hard()) => {}
            }
        }
        Completion {
            router,
            lease,
            status: 101,
            info,
        }
        .finish(bytes_out, None);
    });
}
