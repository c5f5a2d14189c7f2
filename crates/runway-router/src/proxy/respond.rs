//! The response filter: the instance's response on its way back (hop-by-hop headers
//! removed, the request id added, the body streamed by [`ProxiedBody`]), or, for an
//! upgrade the instance accepted, both connections joined.

use super::body::{ProxiedBody, RouterBody};
use super::finish::{Completion, RequestInfo};
use crate::balance::Lease;
use crate::conn::{Busy, ConnInfo};
use crate::grpc;
use crate::headers::{self, X_REQUEST_ID};
use crate::shared::Shared;
use crate::upstream::UpstreamBody;
use http::header;
use http::{Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client's response for the instance's `response` to a request holding `lease`,
/// whose body (or upgraded connection) may move no byte either way for `idle`.
/// `client_upgrade` is the client's side of an upgrade it asked for; `h2_websocket`, that
/// it asked over HTTP/2.
#[allow(clippy::too_many_arguments)]
pub(super) fn respond(
    shared: &Arc<Shared>,
    conn: &Arc<ConnInfo>,
    mut response: Response<UpstreamBody>,
    lease: Lease,
    info: RequestInfo,
    idle: Duration,
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
        tunnel(conn, completion, idle, client_upgrade, upstream_upgrade);
        return Response::from_parts(parts, RouterBody::empty());
    }
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    if let http::header::Entry::Vacant(entry) = parts.headers.entry(&X_REQUEST_ID) {
        entry.insert(info.request_id.clone());
    }
    let grpc = info.grpc && grpc::is_grpc(&parts.headers);
    let completion = Completion {
        shared: shared.clone(),
        lease,
        status: status.as_u16(),
        info,
    };
    let body = ProxiedBody::new(body, completion, idle, grpc);
    Response::from_parts(parts, RouterBody::Proxied(body))
}

/// Joins the client's and the instance's upgraded connections and copies bytes both ways
/// until either closes, no byte moves either way for `idle`, or the router stops. The
/// lease (in `completion`) is held all along: an upgraded connection counts as one
/// request in flight.
fn tunnel(
    conn: &Arc<ConnInfo>,
    completion: Completion,
    idle: Duration,
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
            let activity = Activity::new();
            let mut client = Watched::new(TokioIo::new(client), &activity);
            let mut upstream = Watched::new(TokioIo::new(upstream), &activity);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                _ = activity.idle(idle) => {
                    tracing::debug!(?idle, "upgraded connection idle too long: closed");
                }
                _ = stop.wait_for(|s| s.hard()) => {}
            }
            bytes_out = upstream.read;
        }
        completion.finish(bytes_out, None);
    });
}

/// When bytes last moved through a tunnel, either way.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    moved: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            moved: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.moved.store(ms, Ordering::Relaxed);
    }

    /// Completes once nothing has moved for `idle`.
    async fn idle(&self, idle: Duration) {
        loop {
            let moved = Duration::from_millis(self.moved.load(Ordering::Relaxed));
            let expiry = self.start + moved + idle;
            if Instant::now() >= expiry {
                return;
            }
            tokio::time::sleep_until(expiry.into()).await;
        }
    }
}

/// One side of a tunnel, telling [`Activity`] whenever bytes come from it.
struct Watched<'a, T> {
    io: T,
    activity: &'a Activity,
    /// Bytes read from this side.
    read: u64,
}

impl<'a, T> Watched<'a, T> {
    fn new(io: T, activity: &'a Activity) -> Self {
        Watched {
            io,
            activity,
            read: 0,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.read += n as u64;
            this.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
