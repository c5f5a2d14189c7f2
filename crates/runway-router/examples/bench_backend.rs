//! The benchmark's backend (bench/router): a small, fast HTTP server answering every
//! request with 12 bytes, speaking HTTP/1.1 and h2c (prior knowledge) on one port, so
//! that the direct, nginx and runway runs all hit the same thing. Also, for the gRPC and
//! transfer runs:
//!
//! - a request with `content-type: application/grpc` is a unary gRPC call: its body
//!   (length-prefixed messages) is read and echoed back, with `grpc-status: 0` as a
//!   trailer, as a gRPC server does;
//! - `GET /bytes/N` answers N bytes (zeros, Content-Length, 64 KiB writes);
//! - `POST` or `PUT /upload` reads the whole body and answers its length.
//!
//! Usage: bench_backend ADDR [THREADS]

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::{TcpListener, TcpStream};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const CHUNK: usize = 64 * 1024;
static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// A response body: `zeros` bytes of zeros, then `data`, then `trailers`.
struct Out {
    zeros: u64,
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Out {
    fn full(data: Bytes) -> Self {
        Out {
            zeros: 0,
            data: Some(data),
            trailers: None,
        }
    }
}

impl Body for Out {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.zeros > 0 {
            let n = self.zeros.min(CHUNK as u64) as usize;
            self.zeros -= n as u64;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZEROS[..n])))));
        }
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.zeros == 0 && self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.trailers.is_some() {
            return SizeHint::default();
        }
        SizeHint::with_exact(self.zeros + self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// Reads the whole request body, keeping at most `keep` bytes of it; returns its length.
async fn read_body(body: &mut Incoming, keep: usize, kept: &mut Vec<u8>) -> u64 {
    let mut len = 0;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            len += data.len() as u64;
            if kept.len() < keep {
                let n = data.len().min(keep - kept.len());
                kept.extend_from_slice(&data[..n]);
            }
        }
    }
    len
}

async fn hello(req: Request<Incoming>) -> Result<Response<Out>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let grpc = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        // Unary: echo the request's message(s) back, then the status as a trailer.
        let mut message = Vec::new();
        read_body(&mut body, 1 << 20, &mut message).await;
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let mut response = Response::new(Out {
            zeros: 0,
            data: Some(Bytes::from(message)),
            trailers: Some(trailers),
        });
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        return Ok(response);
    }
    let path = parts.uri.path();
    if let Some(n) = path.strip_prefix("/bytes/").and_then(|n| n.parse().ok()) {
        return Ok(Response::new(Out {
            zeros: n,
            data: None,
            trailers: None,
        }));
    }
    if path == "/upload" {
        let len = read_body(&mut body, 0, &mut Vec::new()).await;
        return Ok(Response::new(Out::full(Bytes::from(format!("{len}\n")))));
    }
    let mut response = Response::new(Out::full(Bytes::from_static(b"hello world\n")));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    Ok(response)
}

async fn is_h2(stream: &TcpStream) -> bool {
    let mut buf = [0u8; PREFACE.len()];
    loop {
        match stream.peek(&mut buf).await {
            Ok(n) if n > 0 && buf[..n] == PREFACE[..n] => {
                if n == PREFACE.len() {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            _ => return false,
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18080".into());
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = TcpListener::bind(&addr).await?;
            loop {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let h2 = is_h2(&stream).await;
                    let io = TokioIo::new(stream);
                    if h2 {
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, service_fn(hello))
                            .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service_fn(hello))
                            .await;
                    }
                });
            }
        })
}
