//! Response bodies as the client gets them: the instance's (streamed, counted, cut when
//! nothing moves either way for the service's idle timeout, carrying the lease until it
//! ends) or the router's own.

use super::finish::Completion;
use crate::body::BodyError;
use crate::conn::Busy;
use crate::grpc;
use crate::upstream::UpstreamBody;
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::time::Sleep;

/// How a proxied response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Every byte was read from the instance.
    Complete,
    /// The client left, or the instance or the idle timeout cut it short.
    Cut,
}

/// A response body from an instance on its way to the client.
#[derive(Debug)]
pub(crate) struct ProxiedBody {
    inner: UpstreamBody,
    completion: Option<Completion>,
    /// How long the exchange may move no byte either way, in milliseconds. (This and
    /// `moved` are small on purpose: the body is moved a few times per request.)
    idle: u32,
    /// A gRPC response: it ends with `grpc-status` trailers whatever cuts it short.
    grpc: bool,
    /// Ended by the router (with gRPC trailers), not by the instance.
    stopped: bool,
    /// When response bytes last moved, in milliseconds after the request's arrival;
    /// kept once the timer is armed.
    moved: u64,
    /// Armed once the body has had to wait for the instance.
    timer: Option<Pin<Box<Sleep>>>,
    bytes: u64,
}

/// Why a response that waits for the instance is cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// No byte moved either way for the idle timeout.
    Idle,
    /// The gRPC client's `grpc-timeout` passed.
    Deadline,
}

impl ProxiedBody {
    /// The instance's response body `inner` for the request of `completion`, cut after
    /// `idle` with no byte either way; `grpc`: a gRPC response.
    pub(super) fn new(
        inner: UpstreamBody,
        completion: Completion,
        idle: Duration,
        grpc: bool,
    ) -> Self {
        let mut body = ProxiedBody {
            inner,
            completion: Some(completion),
            idle: u32::try_from(idle.as_millis()).unwrap_or(u32::MAX),
            grpc,
            stopped: false,
            moved: 0,
            timer: None,
            bytes: 0,
        };
        // An empty body is over before it starts: free the instance now.
        if body.inner.is_end_stream() {
            body.finish(Outcome::Complete);
        }
        body
    }

    fn idle(&self) -> Duration {
        Duration::from_millis(u64::from(self.idle))
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

    /// Notes that response bytes moved (only once the body is timed).
    fn moved(&mut self) {
        if self.timer.is_some()
            && let Some(completion) = &self.completion
        {
            self.moved = completion.info.started.elapsed().as_millis() as u64;
        }
    }

    /// Whether the exchange has moved no byte either way for the idle timeout, or the
    /// gRPC call's deadline has passed; if neither, the timer is set for the first of
    /// them (and polled, to be woken then).
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<Expiry> {
        let idle = self.idle();
        let completion = self.completion.as_ref()?;
        let started = completion.info.started;
        let deadline = completion.info.grpc_timeout.map(|t| started + t);
        let timer = match self.timer.as_mut() {
            Some(timer) => timer,
            None => {
                self.moved = started.elapsed().as_millis() as u64;
                let first =
                    deadline.map_or(Instant::now() + idle, |d| d.min(Instant::now() + idle));
                self.timer
                    .insert(Box::pin(tokio::time::sleep_until(first.into())))
            }
        };
        while timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Some(Expiry::Deadline);
            }
            let moved = started + Duration::from_millis(self.moved);
            let flow = completion.info.flow.as_ref();
            let last = flow.map_or(moved, |f| f.last_moved().max(moved));
            let expiry = last + idle;
            if now >= expiry {
                return Some(Expiry::Idle);
            }
            let next = deadline.map_or(expiry, |d| d.min(expiry));
            timer.as_mut().reset(next.into());
        }
        None
    }

    /// Ends a gRPC response cut short by the router with the status that says why.
    fn grpc_end(
        &mut self,
        code: grpc::Code,
        message: &str,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.stopped = true;
        let mut trailers = HeaderMap::new();
        grpc::set_status(&mut trailers, code, message);
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
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
        if this.stopped {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                    // Only a body that has waited is timed (one clock read a frame).
                    this.moved();
                }
                if this.inner.is_end_stream() {
                    this.finish(Outcome::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(Outcome::Cut);
                if this.grpc {
                    let message = format!("the instance failed: {e}");
                    return this.grpc_end(grpc::Code::Unavailable, &message);
                }
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish(Outcome::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let Some(expiry) = this.expired(cx) else {
                    return Poll::Pending;
                };
                this.finish(Outcome::Cut);
                let idle = this.idle();
                tracing::debug!(?expiry, "response cut short");
                match (expiry, this.grpc) {
                    (Expiry::Deadline, _) => this.grpc_end(
                        grpc::Code::DeadlineExceeded,
                        "the call's grpc-timeout passed",
                    ),
                    (Expiry::Idle, true) => {
                        let message = format!("nothing was sent either way for {idle:?}");
                        this.grpc_end(grpc::Code::Unavailable, &message)
                    }
                    (Expiry::Idle, false) => Poll::Ready(Some(Err(BodyError::Idle(idle)))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stopped || self.inner.is_end_stream()
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
/// until it is dropped (see [`crate::conn::IdleClock`]).
#[derive(Debug)]
pub(crate) struct ServedBody {
    pub body: RouterBody,
    pub _busy: Busy,
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
