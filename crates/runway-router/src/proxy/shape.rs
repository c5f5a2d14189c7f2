//! The upstream request filter: the request as the instance sees it. Hop-by-hop headers
//! go, the forwarded headers (worked out here, written when the request is sent) come,
//! and a WebSocket over HTTP/2 becomes an HTTP/1.1 upgrade.

use super::admit::Admitted;
use super::finish::RequestInfo;
use crate::body::{Flow, ProxyRequestBody, Upload};
use crate::conn::ConnInfo;
use crate::grpc;
use crate::headers::{self, Forwarded};
use crate::shared::Shared;
use http::header::{self, HeaderValue};
use http::{Method, Request, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use std::sync::Arc;

/// A request ready to be sent to an instance.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub request: Request<ProxyRequestBody>,
    pub forwarded: Forwarded,
    /// An upgrade (WebSocket): it goes over a connection of its own, which it keeps.
    pub upgrade: bool,
    /// The client's side of an upgrade, once the instance agrees.
    pub client_upgrade: Option<OnUpgrade>,
    pub info: RequestInfo,
}

/// Shapes `req`, admitted as `admitted`, for its instance.
// Inlined: the request is moved in and the outgoing one out, which a call copies
// (callgrind: about 100 instructions per request).
#[inline(always)]
pub(super) fn shape(
    shared: &Shared,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    admitted: &Admitted,
) -> Outgoing {
    let h2_websocket = admitted.h2_websocket;
    let names = headers::RequestNames::of(req.headers());
    // An HTTP/1.1 upgrade keeps Connection/Upgrade and takes over both connections.
    let upgrade = h2_websocket
        || (names.upgrade
            && req.version() < Version::HTTP_2
            && headers::is_upgrade_request(req.headers()));
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    {
        let headers = req.headers_mut();
        if names.hop_by_hop || upgrade {
            headers::strip_hop_by_hop(headers, upgrade);
        }
        if names.expect {
            headers.remove(header::EXPECT);
        }
        if h2_websocket {
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(header::SEC_WEBSOCKET_KEY, headers::new_websocket_key());
        }
    }
    let proto = if conn.tls { "https" } else { "http" };
    let forwarded = Forwarded::new(
        req.headers(),
        &conn.client_value,
        proto,
        admitted.host.clone(),
    );
    if h2_websocket {
        *req.method_mut() = Method::GET;
    }
    let flow = if req.body().is_end_stream() {
        None
    } else {
        Some(Arc::new(Flow::new(admitted.started)))
    };
    let mut info = RequestInfo::new(
        shared,
        conn,
        &req,
        admitted.started,
        forwarded.request_id().clone(),
        flow.clone(),
        forwarded.grpc,
    );
    if forwarded.grpc {
        info.grpc_timeout = grpc::timeout(req.headers());
    }
    let (parts, body) = req.into_parts();
    let body = if h2_websocket {
        // The client's stream is the tunnel, handed over once the instance agrees.
        ProxyRequestBody::empty()
    } else {
        let service = &admitted.target.service;
        let upload = flow.map(|flow| {
            // A gRPC client stream may pause as long as any stream; other bodies are
            // expected to keep coming while the instance waits for them.
            let stall_after = if forwarded.grpc {
                service.idle_timeout
            } else {
                shared.config.body_read_timeout
            };
            Upload::new(flow, stall_after)
        });
        ProxyRequestBody::new(body, service.max_request_body, upload)
    };
    Outgoing {
        request: Request::from_parts(parts, body),
        forwarded,
        upgrade,
        client_upgrade,
        info,
    }
}
