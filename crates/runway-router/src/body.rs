//! The client's request body on its way to an instance, streamed frame by frame (never
//! buffered whole), counted and held to the service's limit, and cut when the client
//! stalls before the response begins; what a request's body shares with the rest of the
//! exchange ([`Flow`]); and why a body (either way) stopped.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

/// Why a body stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// The request body went past the service's limit.
    #[error("the request body is larger than the service accepts")]
    TooLarge,
    /// Reading the client's request body failed: it is malformed (a bad chunk size, for
    /// one), or the client stopped sending it.
    #[error("the request body is malformed or incomplete: {0}")]
    Client(hyper::Error),
    /// The client sent nothing of its body for this long while the instance waited.
    #[error("the client sent no request body for {0:?}")]
    Stalled(Duration),
    /// The instance's response failed or broke its framing.
    #[error("{0}")]
    Upstream(Box<dyn std::error::Error + Send + Sync>),
    /// No byte moved either way for the service's idle timeout.
    #[error("nothing was sent either way for {0:?}")]
    Idle(Duration),
}

/// How the client's request body failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ClientFailure {
    TooLarge = 1,
    Broken = 2,
    Stalled = 3,
}

/// What a request's body shares with the rest of its exchange (made only for requests
/// with a body): how much of it came, when it last moved, whether the response has
/// begun, and how it failed, which the instance's side may only see as a reset stream.
#[derive(Debug)]
pub(crate) struct Flow {
    epoch: Instant,
    bytes: AtomicU64,
    /// Milliseconds after `epoch` when body bytes last came.
    moved: AtomicU64,
    responding: AtomicBool,
    /// A [`ClientFailure`], or 0.
    failed: AtomicU8,
}

impl Flow {
    /// The flow of a request that arrived at `epoch`.
    pub(crate) fn new(epoch: Instant) -> Self {
        Flow {
            epoch,
            bytes: AtomicU64::new(0),
            moved: AtomicU64::new(0),
            responding: AtomicBool::new(false),
            failed: AtomicU8::new(0),
        }
    }

    /// Body bytes received so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// When body bytes last came (the request's arrival if none has).
    pub(crate) fn last_moved(&self) -> Instant {
        self.epoch + Duration::from_millis(self.moved.load(Ordering::Relaxed))
    }

    fn received(&self, n: u64, now: Instant) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        self.moved.store(ms, Ordering::Relaxed);
    }

    /// The instance's response has begun: the body may pause as long as the exchange's
    /// idle timeout allows.
    pub(crate) fn responding(&self) {
        self.responding.store(true, Ordering::Relaxed);
    }

    /// How the client's body failed, if it did.
    pub(crate) fn failure(&self) -> Option<ClientFailure> {
        match self.failed.load(Ordering::Relaxed) {
            1 => Some(ClientFailure::TooLarge),
            2 => Some(ClientFailure::Broken),
            3 => Some(ClientFailure::Stalled),
            _ => None,
        }
    }
}

/// A client's request body on its way to an instance.
#[derive(Debug)]
pub(crate) struct ProxyRequestBody {
    /// None for a request sent without a body (an HTTP/2 extended CONNECT turned into an
    /// HTTP/1.1 upgrade: the client's stream is the tunnel, not a body).
    inner: Option<Incoming>,
    limit: u64,
    seen: u64,
    /// For a body still to come (boxed: most requests have none).
    upload: Option<Box<Upload>>,
}

/// What a body still to come carries besides its bytes.
#[derive(Debug)]
pub(crate) struct Upload {
    flow: Arc<Flow>,
    /// How long the client may send nothing before the response begins.
    stall_after: Duration,
    /// Armed once the body has had to wait for the client.
    stall: Option<Pin<Box<Sleep>>>,
    /// The client connection's upload slot, held until the body ends.
    slot: Option<OwnedSemaphorePermit>,
}

impl Upload {
    /// A body with `flow`, cut when the client sends nothing for `stall_after` before
    /// the response begins.
    pub(crate) fn new(flow: Arc<Flow>, stall_after: Duration) -> Box<Self> {
        Box::new(Upload {
            flow,
            stall_after,
            stall: None,
            slot: None,
        })
    }

    /// The body has ended: its slot and timer go.
    fn ended(&mut self) {
        self.slot = None;
        self.stall = None;
    }
}

impl ProxyRequestBody {
    /// The body `inner`, held to `limit` bytes, with `upload` if it is still to come.
    pub(crate) fn new(inner: Incoming, limit: u64, upload: Option<Box<Upload>>) -> Self {
        ProxyRequestBody {
            inner: Some(inner),
            limit,
            seen: 0,
            upload,
        }
    }

    /// No body at all.
    pub(crate) fn empty() -> Self {
        ProxyRequestBody {
            inner: None,
            limit: 0,
            seen: 0,
            upload: None,
        }
    }

    /// Holds the connection's upload `slot` until the body ends.
    pub(crate) fn hold(&mut self, slot: OwnedSemaphorePermit) {
        if let Some(upload) = &mut self.upload {
            upload.slot = Some(slot);
        }
    }

    fn fail(
        &mut self,
        failure: ClientFailure,
        error: BodyError,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(upload) = &mut self.upload {
            upload.flow.failed.store(failure as u8, Ordering::Relaxed);
            upload.ended();
        }
        Poll::Ready(Some(Err(error)))
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
        match Pin::new(&mut *inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    this.seen += n;
                    if this.seen > this.limit {
                        return this.fail(ClientFailure::TooLarge, BodyError::TooLarge);
                    }
                    if let Some(upload) = &mut this.upload {
                        let now = Instant::now();
                        upload.flow.received(n, now);
                        if let Some(stall) = &mut upload.stall {
                            stall.as_mut().reset((now + upload.stall_after).into());
                        }
                    }
                }
                if inner.is_end_stream()
                    && let Some(upload) = &mut this.upload
                {
                    upload.ended();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(ClientFailure::Broken, BodyError::Client(e)),
            Poll::Ready(None) => {
                if let Some(upload) = &mut this.upload {
                    upload.ended();
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                let Some(upload) = &mut this.upload else {
                    return Poll::Pending;
                };
                // Once the response has begun, the exchange's idle timeout decides.
                if upload.flow.responding.load(Ordering::Relaxed) {
                    return Poll::Pending;
                }
                let after = upload.stall_after;
                let stall = upload
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
                if stall.as_mut().poll(cx).is_ready() {
                    return this.fail(ClientFailure::Stalled, BodyError::Stalled(after));
                }
                Poll::Pending
            }
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
