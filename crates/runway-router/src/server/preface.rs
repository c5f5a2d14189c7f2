//! Telling HTTP/2 with prior knowledge (h2c) from HTTP/1.1 on a plain connection: the
//! first bytes are read (not peeked: a peek returns the same bytes again and again, and
//! cannot wait for more, nor see the client leave), and handed to the protocol's server
//! in front of the rest of the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The HTTP/2 client preface, which h2c prior-knowledge connections start with.
pub(crate) const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads the start of `io` until it is the whole HTTP/2 preface (true) or differs from
/// it (false), and returns the connection with those bytes put back. Fails if the client
/// closes the connection first.
pub(crate) async fn read_preface<T: AsyncRead + Unpin>(mut io: T) -> io::Result<(bool, Rewind<T>)> {
    let mut start = [0u8; H2_PREFACE.len()];
    let mut len = 0;
    loop {
        let n = io.read(&mut start[len..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        len += n;
        let h2 = start[..len] == H2_PREFACE[..len];
        if !h2 || len == H2_PREFACE.len() {
            return Ok((
                h2,
                Rewind {
                    start,
                    pos: 0,
                    len,
                    io,
                },
            ));
        }
    }
}

/// A connection whose first bytes were read already, reading them again first.
#[derive(Debug)]
pub(crate) struct Rewind<T> {
    start: [u8; H2_PREFACE.len()],
    pos: usize,
    len: usize,
    io: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.len {
            let n = (this.len - this.pos).min(buf.remaining());
            buf.put_slice(&this.start[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn sniff(sent: &[u8]) -> io::Result<(bool, Vec<u8>)> {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(sent).await.unwrap();
        drop(client);
        let (h2, mut io) = read_preface(server).await?;
        let mut all = Vec::new();
        io.read_to_end(&mut all).await.unwrap();
        Ok((h2, all))
    }

    #[tokio::test]
    async fn the_preface_makes_http2_and_every_byte_is_read_again() {
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04";
        assert_eq!(sniff(h2).await.unwrap(), (true, h2.to_vec()));
        let h1 = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(sniff(h1).await.unwrap(), (false, h1.to_vec()));
        let almost = b"PRI / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(sniff(almost).await.unwrap(), (false, almost.to_vec()));
        // A client that leaves in the middle of the preface, or says nothing.
        assert!(sniff(b"PRI * HTTP/2.0\r\n").await.is_err());
        assert!(sniff(b"").await.is_err());
    }
}
