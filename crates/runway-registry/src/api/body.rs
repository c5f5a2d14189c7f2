//! Response bodies read from blob files on a blocking thread and handed to hyper over a
//! bounded channel, so large pulls neither block the runtime nor sit in memory.

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Bytes read from the file per frame.
const CHUNK: usize = 256 << 10;
/// Frames read ahead of the client.
const AHEAD: usize = 4;

/// `len` bytes of a file from `start`.
#[derive(Debug)]
pub(crate) struct FileBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    remaining: u64,
}

impl FileBody {
    pub fn new(mut file: File, start: u64, len: u64, sent: Counter) -> FileBody {
        let (tx, rx) = mpsc::channel(AHEAD);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = file.seek(SeekFrom::Start(start)) {
                let _ = tx.blocking_send(Err(e));
                return;
            }
            let mut left = len;
            while left > 0 {
                let want = CHUNK.min(usize::try_from(left).unwrap_or(CHUNK));
                let mut buf = BytesMut::zeroed(want);
                let n = match file.read(&mut buf) {
                    Ok(0) => {
                        let _ = tx.blocking_send(Err(io::ErrorKind::UnexpectedEof.into()));
                        return;
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                buf.truncate(n);
                left -= n as u64;
                sent.inc_by(n as u64);
                if tx.blocking_send(Ok(buf.freeze())).is_err() {
                    // The client went away.
                    return;
                }
            }
        });
        FileBody { rx, remaining: len }
    }
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(data))) => {
                self.remaining = self.remaining.saturating_sub(data.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(Some(Err(io::ErrorKind::UnexpectedEof.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
