//! The response filter: the instance's response on its way back (hop-by-hop headers
//! removed, the request id added, the body streamed by [`ProxiedBody`]), or, for an
//! upgrade the instance accepted, both connections joined.

use super::body::{ProxiedBody, RouterBody};
use super::finish::{Completion, RequestInfo};
use crate::balance::Lease;
use crate::conn::{Busy, ConnInfo};
use crate::headers::{self, X_REQUEST_ID};
use crate::shared::Shared;
use crate::upstream::UpstreamBody;
use http::header;
use http::{Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Instant;

/// The client's response for the instance's `response` to a request holding `lease`.
/// `client_upgrade` is the client's side of an upgrade it asked for; `h2_websocket`, that
/// it asked over HTTP/2.
#[allow(clippy::too_many_arguments)]
pub(super) fn respond(
    shared: &Arc<Shared>,
    conn: &Arc<ConnInfo>,
    mut response: Response<UpstreamBody>,
    lease: Lease,
    info: RequestInfo,
    deadline: Instant,
    client_upgrade: Option<OnUpgrade>,
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
        let completion = Completion {
            shared: shared.clone(),
            lease,
            status: 101,
            info,
        };
        tunnel(conn, completion, deadline, client_upgrade, upstream_upgrade);
        return Response::from_parts(parts, RouterBody::empty());
    }
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    if let http::header::Entry::Vacant(entry) = parts.headers.entry(&X_REQUEST_ID) {
        entry.insert(info.request_id.clone());
    }
    let completion = Completion {
        shared: shared.clone(),
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
/// until either closes, the request's deadline passes or the router stops. The lease
/// (in `completion`) is held all along: an upgraded connection counts as one request in
/// flight.
fn tunnel(
    conn: &Arc<ConnInfo>,
    completion: Completion,
    deadline: Instant,
    client: OnUpgrade,
    upstream: OnUpgrade,
) {
    let mut stop = conn.stop.clone();
    let guard = conn.tracker.enter();
    // An HTTP/2 client's tunnel is a stream of its connection, which is not idle then.
    let busy = Busy::new(conn);
    tokio::spawn(async move {
        let _guards = (guard, busy);
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
        completion.finish(bytes_out, None);
    });
}
