//! Response bodies as the client gets them: the instance's (streamed, counted, held to
//! the request's deadline, carrying the lease until it ends) or the router's own.

use super::finish::Completion;
use crate::body::BodyError;
use crate::conn::Busy;
use crate::upstream::UpstreamBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::time::Sleep;

/// How a proxied response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Every byte was read from the instance.
    Complete,
    /// The client left, or the instance or the deadline cut it short.
    Cut,
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
    pub(super) fn new(inner: UpstreamBody, completion: Completion, deadline: Instant) -> Self {
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
