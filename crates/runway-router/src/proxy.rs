//! One request, from arrival to response, as named steps (pingora's `ProxyHttp` phases):
//! - [`admit`]: the host leads to a service, or the router answers itself (ACME
//!   challenges, unknown hosts, redirects to HTTPS, paused services, refusals);
//! - [`shape`]: the request as the instance sees it (hop-by-hop headers removed,
//!   forwarded headers set, WebSockets over HTTP/2 turned into HTTP/1.1 upgrades);
//! - [`forward`]: a revision by percent or tag, a lease on one of its instances
//!   (queueing while every instance is full), and what sending the request came to;
//!   a request of which nothing reached the instance goes to another;
//! - [`respond`]: the response streamed back, or the upgraded connections joined;
//! - [`finish`]: measurements and the access log line, once the response has ended.
//!
//! [`answer`] writes what the router answers itself. The steps that wait (a lease, the
//! instance's answer) are awaited here, in one future, so that the request is not moved
//! from one future into another on its way.

mod admit;
mod answer;
mod body;
mod finish;
mod forward;
mod respond;
mod shape;

use crate::conn::{Busy, ConnInfo};
use crate::shared::Shared;
use crate::upstream;
use body::{RouterBody, ServedBody};
use forward::Peer;
use http::{Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

/// The service the hyper connection calls for every request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ServedBody>, Infallible> {
    let started = Instant::now();
    let busy = Busy::new(&conn);
    let response = proxy(&shared, &conn, req, started).await;
    Ok(response.map(|body| ServedBody { body, _busy: busy }))
}

async fn proxy(
    shared: &Arc<Shared>,
    conn: &Arc<ConnInfo>,
    req: Request<Incoming>,
    started: Instant,
) -> Response<RouterBody> {
    let admitted = match admit::admit(shared, conn, &req, started) {
        Ok(admitted) => admitted,
        Err(answer) => return *answer,
    };
    let mut outgoing = shape::shape(shared, conn, req, &admitted);
    let mut peer = match Peer::new(&admitted, outgoing.info.grpc_timeout) {
        Ok(peer) => peer,
        Err(err) => return forward::no_revision(shared, &admitted, err, outgoing.info),
    };
    let version = admitted.version;
    // A body still to come holds one of the connection's upload slots until it ends.
    if !outgoing.request.body().is_end_stream() {
        match peer.upload_slot(conn).await {
            Ok(slot) => outgoing.request.body_mut().hold(slot),
            Err(err) => return peer.fail(shared, err, false, version, outgoing.info),
        }
    }
    loop {
        // Nearly always an instance has room: no future for the queue then.
        let lease = match peer.try_lease() {
            Some(lease) => lease,
            None => match peer.lease(shared, &admitted.host).await {
                Ok(lease) => lease,
                Err((err, counted)) => {
                    return peer.fail(shared, err, counted, version, outgoing.info);
                }
            },
        };
        let sent = {
            // Pinned where it is made; the timeout only borrows it (a move would copy it).
            let send = std::pin::pin!(upstream::send(
                &lease.endpoint.pool,
                lease.endpoint.addr,
                outgoing.request,
                &outgoing.forwarded,
                outgoing.upgrade,
                &shared.upstream,
                peer.now,
            ));
            crate::conn::timeout_at(conn, peer.deadline, send).await
        };
        let failure = match sent {
            Some(Ok(response)) => {
                peer.answered(&lease);
                if let Some(flow) = &outgoing.info.flow {
                    flow.responding();
                }
                let idle = admitted.target.service.idle_timeout;
                let h2_websocket = admitted.h2_websocket;
                return respond::respond(
                    shared,
                    conn,
                    response,
                    lease,
                    outgoing.info,
                    idle,
                    outgoing.client_upgrade,
                    h2_websocket,
                );
            }
            Some(Err(failure)) => Some(failure),
            None => None,
        };
        match peer.retry(shared, &lease, failure, outgoing.info.flow.as_deref()) {
            Ok(request) => outgoing.request = *request,
            Err(err) => {
                drop(lease);
                return peer.fail(shared, err, true, version, outgoing.info);
            }
        }
    }
}
