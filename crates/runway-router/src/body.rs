//! The client's request body on its way to an instance, streamed frame by frame (never
//! buffered whole), counted and held to the service's limit; and why a body (either
//! way) stopped.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

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
    /// The instance's response failed or broke its framing.
    #[error("{0}")]
    Upstream(Box<dyn std::error::Error + Send + Sync>),
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
            Some(Err(e)) => Poll::Ready(Some(Err(BodyError::Client(e)))),
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
