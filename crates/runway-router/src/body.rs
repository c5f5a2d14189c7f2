//! Bodies in both directions, streamed frame by frame (never buffered whole): the request
//! body on its way to an instance, counted and held to the service's limit, and the
//! response body on its way back, counted, held to the request's deadline, and carrying
//! the request's lease so that capacity is freed exactly when the response ends.

use crate::Inner;
use crate::access_log::Entry;
use crate::balance::Lease;
use crate::upstream::{Checkin, UpstreamBody};
use bytes::Bytes;
use http::HeaderValue;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Instant, SystemTime};
use tokio::time::Sleep;

/// Why a body stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// The request body went past the service's limit.
    #[error("the request body is larger than the service accepts")]
    TooLarge,
    /// Reading from the client or the instance failed.
    #[error("{0}")]
    Io(#[from] hyper::Error),
    /// The instance's HTTP/1.1 response failed or broke its framing.
    #[error("{0}")]
    Upstream(Box<crate::upstream::http1::Error>),
    /// The request's deadline passed while the response was streaming.
    #[error("the request timed out")]
    Timeout,
}

/// A client's request body on its way to an instance.
#[derive(Debug)]
pub(crate) struct ProxyRequestBody {
    /// None for a request sent without a body (an HTTP/2 extended CONNECT turned into an
    /// HTTP/1.1 upgrade: the client's stream is the tunnel, not a body).
    inner: Option<Incoming>,
    limit: u64,
    seen: u64,
    counted: Option<Arc<AtomicU64>>,
}

impl ProxyRequestBody {
    pub(crate) fn new(inner: Incoming, limit: u64, counted: Option<Arc<AtomicU64>>) -> Self {
        ProxyRequestBody {
            inner: Some(inner),
            limit,
            seen: 0,
            counted,
        }
    }

    /// No body at all.
    pub(crate) fn empty() -> Self {
        ProxyRequestBody {
            inner: None,
            limit: 0,
            seen: 0,
            counted: None,
        }
    }
}

impl Body for ProxyRequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    this.seen += n;
                    if this.seen > this.limit {
                        return Poll::Ready(Some(Err(BodyError::TooLarge)));
                    }
                    if let Some(counted) = &this.counted {
                        counted.fetch_add(n, Ordering::Relaxed);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(BodyError::Io(e)))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}

/// What a request needs for its log line and measurements.
#[derive(Debug)]
pub(crate) struct RequestInfo {
    pub started: Instant,
    pub method: http::Method,
    /// Only kept when the access log is on.
    pub path: String,
    pub request_id: HeaderValue,
    pub client: SocketAddr,
    pub bytes_in: Option<Arc<AtomicU64>>,
}

impl RequestInfo {
    pub(crate) fn bytes_in(&self) -> u64 {
        self.bytes_in
            .as_ref()
            .map_or(0, |b| b.load(Ordering::Relaxed))
    }
}

/// How a proxied response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every byte was read from the instance.
    Complete,
    /// The client left, or the instance or the deadline cut it short.
    Cut,
}

/// Finishes a proxied request when its response ends: frees the lease, gives the
/// connection back, and records the measurements and the log line.
#[derive(Debug)]
pub(crate) struct Completion {
    pub router: Arc<Inner>,
    pub lease: Lease,
    pub status: u16,
    pub info: RequestInfo,
}

impl Completion {
    /// `checkin` is the connection the response came over, if it can serve another.
    pub(crate) fn finish(self, bytes_out: u64, checkin: Option<Checkin>) {
        let Completion {
            router,
            mut lease,
            status,
            info,
        } = self;
        // One clock read for the duration, the pool and the concurrency meter.
        let now = Instant::now();
        if let Some(checkin) = checkin {
            checkin.give_back(&lease.endpoint, &router.upstream, now);
        }
        lease.end_at(now);
        let duration = now.saturating_duration_since(info.started);
        let bytes_in = info.bytes_in();
        let metrics = &lease.revision.metrics;
        metrics.response(status);
        metrics.duration.observe(duration.as_secs_f64());
        metrics.response_bytes.inc_by(bytes_out);
        if bytes_in > 0 {
            metrics.request_bytes.inc_by(bytes_in);
        }
        if let Some(log) = &router.access_log {
            log.record(Entry {
                time: SystemTime::now()
                    .checked_sub(duration)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                service: lease.revision.service_id.clone(),
                revision: Some(lease.revision.id.clone()),
                instance: Some(lease.endpoint.instance_id.clone()),
                method: info.method,
                path: info.path,
                status,
                duration,
                bytes_in,
                bytes_out,
                request_id: info.request_id,
                client: info.client,
                error: None,
            });
        }
        drop(lease);
    }
}

/// A response body from an instance on its way to the client.
#[derive(Debug)]
pub(crate) struct ProxiedBody {
    inner: UpstreamBody,
    completion: Option<Completion>,
    deadline: tokio::time::Instant,
    sleep: Option<Pin<Box<Sleep>>>,
    bytes: u64,
}

impl ProxiedBody {
    pub(crate) fn new(inner: UpstreamBody, completion: Completion, deadline: Instant) -> Self {
        let mut body = ProxiedBody {
            inner,
            completion: Some(completion),
            deadline: deadline.into(),
            sleep: None,
            bytes: 0,
        };
        // An empty body is over before it starts: free the instance now.
        if body.inner.is_end_stream() {
            body.finish(Outcome::Complete);
        }
        body
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(completion) = self.completion.take() {
            let checkin = match outcome {
                Outcome::Complete => self.inner.take_checkin(),
                Outcome::Cut => None,
            };
            completion.finish(self.bytes, checkin);
        }
    }
}

impl Body for ProxiedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish(Outcome::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(Outcome::Cut);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish(Outcome::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => {
                // The timer is only armed for bodies that actually wait.
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.as_mut().poll(cx).is_ready() {
                    this.finish(Outcome::Cut);
                    return Poll::Ready(Some(Err(BodyError::Timeout)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ProxiedBody {
    fn drop(&mut self) {
        let outcome = if self.inner.is_end_stream() {
            Outcome::Complete
        } else {
            Outcome::Cut
        };
        self.finish(outcome);
    }
}

/// Every response body the router sends.
// Boxing the proxied variant would cost an allocation on every proxied response to save
// a few bytes on the router's own pages.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum RouterBody {
    /// A page the router wrote itself.
    Full(Option<Bytes>),
    /// An instance's response.
    Proxied(ProxiedBody),
}

impl RouterBody {
    pub(crate) fn empty() -> Self {
        RouterBody::Full(None)
    }
}

impl Body for RouterBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RouterBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            RouterBody::Proxied(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RouterBody::Full(data) => data.is_none(),
            RouterBody::Proxied(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RouterBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            RouterBody::Proxied(body) => body.size_hint(),
        }
    }
}

/// A response body as hyper serves it: the router's, with the connection marked busy
/// until it is dropped (see [`crate::server::IdleClock`]).
#[derive(Debug)]
pub(crate) struct ServedBody {
    pub body: RouterBody,
    pub _busy: crate::server::Busy,
}

impl Body for ServedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
