//! Response bodies as the client gets them: the instance's (streamed, counted, cut when
//! nothing moves either way for the service's idle timeout, carrying the lease until it
//! ends) or the router's own.

use super::finish::Completion;
use crate::body::BodyError;
use crate::conn::Busy;
use crate::upstream::UpstreamBody;
use bytes::Bytes;
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
    /// When response bytes last moved, in milliseconds after the request's arrival;
    /// kept once the timer is armed.
    moved: u64,
    /// Armed once the body has had to wait for the instance.
    timer: Option<Pin<Box<Sleep>>>,
    bytes: u64,
}

impl ProxiedBody {
    pub(super) fn new(inner: UpstreamBody, completion: Completion, idle: Duration) -> Self {
        let mut body = ProxiedBody {
            inner,
            completion: Some(completion),
            idle: u32::try_from(idle.as_millis()).unwrap_or(u32::MAX),
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

    /// Whether the exchange has moved no byte either way for the idle timeout; if not,
    /// the timer is set for when it would have (and polled, to be woken then).
    fn idle_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        let idle = self.idle();
        let Some(completion) = &self.completion else {
            return false;
        };
        let started = completion.info.started;
        let Some(timer) = self.timer.as_mut() else {
            self.moved = started.elapsed().as_millis() as u64;
            let timer = self.timer.insert(Box::pin(tokio::time::sleep(idle)));
            return timer.as_mut().poll(cx).is_ready();
        };
        while timer.as_mut().poll(cx).is_ready() {
            let moved = started + Duration::from_millis(self.moved);
            let last = completion
                .info
                .flow
                .as_ref()
                .map_or(moved, |f| f.last_moved().max(moved));
            let expiry = last + idle;
            if Instant::now() >= expiry {
                return true;
            }
            timer.as_mut().reset(expiry.into());
        }
        false
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
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish(Outcome::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.idle_too_long(cx) {
                    let idle = this.idle();
                    tracing::debug!(?idle, "response idle too long: cut");
                    this.finish(Outcome::Cut);
                    return Poll::Ready(Some(Err(BodyError::Idle(idle))));
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
