//! HTTP/1.1 to instances over pooled keep-alive connections, driven by the request's own
//! task: the request is written and its response read by whoever polls the request's
//! future and then its response body, with no connection task, no channel between them
//! and no wake-up of another task. (hyper's client, kept for upgrades and h2c, costs a
//! task hand-off, a dispatch channel, a body channel and about a third of the router's
//! instructions per request.)
//!
//! Responses come from instances, not from the open internet, but are still untrusted:
//! framing follows RFC 9112 strictly, and a connection is only reused when its response
//! ended exactly where its framing said, nothing else arrived, and the request was sent
//! whole. Anything unusual closes the connection instead of guessing.

use crate::body::{BodyError, ProxyRequestBody};
use crate::headers::Forwarded;
use crate::text::{push_decimal, push_hex};
use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body as _, Frame, SizeHint};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes read at once for heads, framing and small bodies (and the read buffer's size
/// unless a head needs more).
const READ_SIZE: usize = 16 * 1024;
/// A body (or the rest of a chunk) at least this long is read straight into
/// [`ConnState::body_buf`], up to [`BODY_READ`] bytes at a time.
const BODY_DIRECT: u64 = READ_SIZE as u64;
/// How much a body read into [`ConnState::body_buf`] may take at once: each read is
/// handed out as it is (`split().freeze()`, no copy), and the buffer is reused once all
/// the pieces handed out are dropped. One 1 GiB download is 4 096 reads rather than
/// 65 536, each no longer copied.
const BODY_READ: usize = 256 * 1024;
/// Below this much room left, `body_buf` gets a new block (or takes its old one back).
const BODY_READ_MIN: usize = 32 * 1024;
/// The largest response head (status line and headers) or trailer section accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The most headers in a response head (hyper's client has the same limit).
const MAX_HEADERS: usize = 100;
/// The most fields in a trailer section.
const MAX_TRAILERS: usize = 32;
/// The longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4096;
/// Request body chunks up to this size are copied next to the head and framing, so that
/// they go out in one write; larger ones are written from where they are.
const COPY_LIMIT: usize = 8 * 1024;
/// A response body up to this size that arrived with its head is copied with the head in
/// one allocation.
const INLINE_BODY: usize = 4 * 1024;

/// What went wrong talking to an instance.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Reading or writing the connection failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The instance closed the connection before its response began.
    #[error("the instance closed the connection before answering")]
    Closed,
    /// The instance closed the connection in the middle of its response.
    #[error("the instance closed the connection in the middle of its response")]
    Incomplete,
    /// The response is not valid HTTP/1.1.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// The response head or trailers are larger than the router accepts.
    #[error("the response head is larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The request body did not match its declared length.
    #[error("the request body does not match its length")]
    BodyLength,
    /// Reading the request body from the client failed.
    #[error(transparent)]
    Body(#[from] BodyError),
}

/// A connection to an instance with its buffers; idle between exchanges. Boxed once
/// per connection: it travels from the pool into the request, the response body and
/// back, and each move would otherwise copy it whole.
#[derive(Debug)]
pub(crate) struct Conn(Box<ConnState>);

impl std::ops::Deref for Conn {
    type Target = ConnState;

    fn deref(&self) -> &ConnState {
        &self.0
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut ConnState {
        &mut self.0
    }
}

impl Conn {
    pub(crate) fn new(io: TcpStream) -> Self {
        Conn(Box::new(ConnState {
            io,
            buf: vec![0; READ_SIZE],
            body_buf: BytesMut::new(),
            start: 0,
            end: 0,
            out: Vec::with_capacity(1024),
            out_pos: 0,
            data: None,
            data_pos: 0,
            after_data: b"",
            sent_any: false,
        }))
    }
}

/// A connection's socket, buffers and write progress.
#[derive(Debug)]
pub(crate) struct ConnState {
    io: TcpStream,
    /// Bytes read: `buf[start..end]` is not consumed yet. Always initialized, so that
    /// reads need neither zeroing nor unsafe code.
    buf: Vec<u8>,
    /// Large bodies are read here, past `buf` (which they only use once it is empty):
    /// empty between reads, its spare capacity the room for the next one. Released
    /// when the connection goes back to the pool.
    body_buf: BytesMut,
    start: usize,
    end: usize,
    /// Bytes to write: `out[out_pos..]`, then `data[data_pos..]`.
    out: Vec<u8>,
    out_pos: usize,
    data: Option<Bytes>,
    data_pos: usize,
    /// Framing to append once `data` is written: a chunk's CRLF, and the last chunk
    /// when the body ended with this one.
    after_data: &'static [u8],
    /// Whether any byte of the current request reached the socket.
    sent_any: bool,
}

impl ConnState {
    /// Whether an idle connection can take a request: the instance has neither closed it
    /// nor sent anything unasked. Costs no system call unless the socket became readable
    /// while the connection was idle.
    pub(crate) fn is_open(&mut self) -> bool {
        if self.start != self.end {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    fn pending_output(&self) -> bool {
        self.out_pos < self.out.len() || self.data.is_some()
    }

    /// Writes what is queued; ready when it all went out.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending_output() {
            let io = Pin::new(&mut self.io);
            let n = match &self.data {
                Some(data) if self.out_pos < self.out.len() => {
                    let slices = [
                        IoSlice::new(&self.out[self.out_pos..]),
                        IoSlice::new(&data[self.data_pos..]),
                    ];
                    ready!(io.poll_write_vectored(cx, &slices))?
                }
                Some(data) => ready!(io.poll_write(cx, &data[self.data_pos..]))?,
                None => ready!(io.poll_write(cx, &self.out[self.out_pos..]))?,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent_any = true;
            let in_out = n.min(self.out.len() - self.out_pos);
            self.out_pos += in_out;
            if self.out_pos == self.out.len() {
                self.out.clear();
                self.out_pos = 0;
            }
            let rest = n - in_out;
            if let Some(data) = &self.data {
                self.data_pos += rest;
                if self.data_pos == data.len() {
                    self.data = None;
                    self.data_pos = 0;
                    self.out
                        .extend_from_slice(std::mem::take(&mut self.after_data));
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads more into the buffer, growing it up to `limit` if it is full of unconsumed
    /// bytes. Ready with the number of bytes read, 0 at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>, limit: usize) -> Poll<Result<usize, Error>> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= limit {
                return Poll::Ready(Err(Error::HeadTooLarge));
            }
            let grown = (self.buf.len() * 2).min(limit);
            self.buf.resize(grown, 0);
        }
        let mut read = ReadBuf::new(&mut self.buf[self.end..]);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        self.end += n;
        Poll::Ready(Ok(n))
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Reads at most `max` bytes (more than 0) of a body straight into `body_buf` and
    /// hands them out without a copy; empty at the end of the stream. Only called when
    /// `buf` holds nothing unconsumed.
    fn poll_read_body(&mut self, cx: &mut Context<'_>, max: u64) -> Poll<Result<Bytes, Error>> {
        debug_assert_eq!(self.start, self.end);
        if self.body_buf.capacity() < BODY_READ_MIN {
            // Takes back the block of earlier reads when all of them have been dropped.
            self.body_buf.reserve(BODY_READ);
        }
        let room = usize::try_from(max)
            .unwrap_or(usize::MAX)
            .min(self.body_buf.capacity());
        loop {
            ready!(self.io.poll_read_ready(cx))?;
            match self.io.try_read_buf(&mut (&mut self.body_buf).limit(room)) {
                Ok(_) => return Poll::Ready(Ok(self.body_buf.split().freeze())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }
}

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestFraming {
    /// Content-Length: what is left to send.
    Length(u64),
    Chunked,
}

/// How the response body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseFraming {
    /// Content-Length: what is left to read.
    Length(u64),
    Chunked(Chunk),
    /// Until the instance closes the connection (never reused).
    Close,
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// A request being sent over a connection: the connection and what is left of the
/// request body.
#[derive(Debug)]
struct Exchange {
    conn: Conn,
    /// None once the body has been sent whole (or there was none).
    body: Option<ProxyRequestBody>,
    framing: RequestFraming,
    /// Whether any body data was taken from the client (then the request cannot be
    /// handed back for another attempt).
    body_touched: bool,
}

/// Why [`send`] failed.
#[derive(Debug)]
pub(crate) enum SendFailure {
    /// Nothing of the request reached the instance: it comes back whole.
    NotSent(Error, Box<Request<ProxyRequestBody>>),
    /// Some or all of the request was sent; it must not be sent again.
    Failed(Error),
    /// The client's request body failed (malformed, too large, or the client left):
    /// not the instance's doing, and the request must not be sent again.
    Body(BodyError),
}

/// Sends `req` (in origin form or absolute form) with the `forwarded` headers over
/// `conn` and waits for the response head. The response body reads the rest of the response from the connection and keeps
/// sending the request body if the instance answered before it had it all.
pub(crate) async fn send(
    mut conn: Conn,
    req: Request<ProxyRequestBody>,
    forwarded: &Forwarded,
) -> Result<Response<ResponseBody>, SendFailure> {
    let (parts, body) = req.into_parts();
    let framing = encode_head(&mut conn.out, &parts, &body, forwarded);
    conn.sent_any = false;
    let head_request = parts.method == Method::HEAD;
    let mut exchange = Exchange {
        conn,
        body: (!body.is_end_stream()).then_some(body),
        framing,
        body_touched: false,
    };
    let result = std::future::poll_fn(|cx| exchange.poll_response(cx, head_request)).await;
    match result {
        Ok(head) => Ok(head.into_response(exchange)),
        Err(Error::Body(error)) => Err(SendFailure::Body(error)),
        Err(error) if !exchange.conn.sent_any && !exchange.body_touched => {
            let body = exchange.body.take().unwrap_or_else(ProxyRequestBody::empty);
            Err(SendFailure::NotSent(
                error,
                Box::new(Request::from_parts(parts, body)),
            ))
        }
        Err(error) => Err(SendFailure::Failed(error)),
    }
}

/// Writes the request line and headers, with framing chosen from the body (any
/// Content-Length or Transfer-Encoding the request had is replaced).
fn encode_head(
    out: &mut Vec<u8>,
    parts: &http::request::Parts,
    body: &ProxyRequestBody,
    forwarded: &Forwarded,
) -> RequestFraming {
    out.clear();
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    forwarded.write_host(out);
    let mut had_length = false;
    for (name, value) in &parts.headers {
        if *name == header::CONTENT_LENGTH {
            had_length = true;
            continue;
        }
        if *name == header::TRANSFER_ENCODING || forwarded.replaces(name) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    forwarded.write(out);
    let framing = if body.is_end_stream() {
        if had_length {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        RequestFraming::Length(0)
    } else if let Some(len) = body.size_hint().exact() {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, len);
        out.extend_from_slice(b"\r\n");
        RequestFraming::Length(len)
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        RequestFraming::Chunked
    };
    out.extend_from_slice(b"\r\n");
    framing
}

impl Exchange {
    /// Sends what it can of the request: queued bytes first, then body frames as the
    /// client provides them. Ready once the whole request is out.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            // Body data already here goes out with what is queued, in one write.
            while self.body.is_some()
                && self.conn.data.is_none()
                && self.conn.out.len() < COPY_LIMIT
            {
                match self.poll_body(cx) {
                    Poll::Ready(result) => result?,
                    Poll::Pending => break,
                }
            }
            if self.conn.pending_output() {
                ready!(self.conn.poll_flush(cx))?;
                continue;
            }
            return if self.body.is_none() {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            };
        }
    }

    /// Takes one frame from the request body and queues it with its framing.
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let frame = match ready!(Pin::new(&mut *body).poll_frame(cx)) {
            None => return Poll::Ready(self.end_body()),
            Some(Err(e)) => return Poll::Ready(Err(Error::Body(e))),
            Some(Ok(frame)) => frame,
        };
        let conn = &mut self.conn;
        match frame.into_data() {
            Ok(data) if data.is_empty() => {}
            Ok(data) => {
                self.body_touched = true;
                let len = data.len() as u64;
                match &mut self.framing {
                    RequestFraming::Length(left) => {
                        if len > *left {
                            return Poll::Ready(Err(Error::BodyLength));
                        }
                        *left -= len;
                        if data.len() <= COPY_LIMIT {
                            conn.out.extend_from_slice(&data);
                        } else {
                            conn.data = Some(data);
                        }
                    }
                    RequestFraming::Chunked => {
                        push_hex(&mut conn.out, len);
                        conn.out.extend_from_slice(b"\r\n");
                        if data.len() <= COPY_LIMIT {
                            conn.out.extend_from_slice(&data);
                            conn.out.extend_from_slice(b"\r\n");
                        } else {
                            conn.data = Some(data);
                            conn.after_data = b"\r\n";
                        }
                    }
                }
            }
            Err(frame) => {
                // Trailers only exist in chunked framing; with a length they are dropped,
                // as hyper does.
                if let (Ok(trailers), RequestFraming::Chunked) =
                    (frame.into_trailers(), self.framing)
                {
                    self.body = None;
                    conn.out.extend_from_slice(b"0\r\n");
                    for (name, value) in &trailers {
                        conn.out.extend_from_slice(name.as_str().as_bytes());
                        conn.out.extend_from_slice(b": ");
                        conn.out.extend_from_slice(value.as_bytes());
                        conn.out.extend_from_slice(b"\r\n");
                    }
                    conn.out.extend_from_slice(b"\r\n");
                    return Poll::Ready(Ok(()));
                }
            }
        }
        if self.body.as_ref().is_some_and(|b| b.is_end_stream()) {
            return Poll::Ready(self.end_body());
        }
        Poll::Ready(Ok(()))
    }

    fn end_body(&mut self) -> Result<(), Error> {
        self.body = None;
        match self.framing {
            RequestFraming::Length(0) => Ok(()),
            RequestFraming::Length(_) => Err(Error::BodyLength),
            // The last chunk goes after a chunk still waiting to be written, not before.
            RequestFraming::Chunked if self.conn.data.is_some() => {
                self.conn.after_data = b"\r\n0\r\n\r\n";
                Ok(())
            }
            RequestFraming::Chunked => {
                self.conn.out.extend_from_slice(b"0\r\n\r\n");
                Ok(())
            }
        }
    }

    fn request_sent(&self) -> bool {
        self.body.is_none() && !self.conn.pending_output()
    }

    /// Sends the request and reads until a final response head (interim 1xx responses
    /// are skipped).
    fn poll_response(
        &mut self,
        cx: &mut Context<'_>,
        head_request: bool,
    ) -> Poll<Result<Head, Error>> {
        loop {
            if !self.request_sent()
                && let Poll::Ready(Err(e)) = self.poll_send(cx)
            {
                return Poll::Ready(Err(e));
            }
            if self.conn.start != self.conn.end
                && let Some(head) = parse_head(&mut self.conn, head_request)?
            {
                if head.status.is_informational() {
                    continue;
                }
                return Poll::Ready(Ok(head));
            }
            let n = ready!(self.conn.poll_fill(cx, MAX_HEAD))?;
            if n == 0 {
                return Poll::Ready(Err(if self.conn.start == self.conn.end {
                    Error::Closed
                } else {
                    Error::Incomplete
                }));
            }
        }
    }
}

/// A response head and how its body is framed.
#[derive(Debug)]
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    framing: Option<ResponseFraming>,
    keep_alive: bool,
    /// The whole body, when it was small and arrived with the head.
    body: Option<Bytes>,
}

impl Head {
    fn into_response(self, exchange: Exchange) -> Response<ResponseBody> {
        let done = self.framing.is_none() && self.body.is_none();
        let body = ResponseBody {
            exchange: Some(exchange),
            framing: self.framing,
            ready: self.body,
            keep_alive: self.keep_alive,
            done,
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.version_mut() = self.version;
        *response.headers_mut() = self.headers;
        response
    }
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
fn lists(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// A Content-Length value: digits only.
fn parse_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Parses a response head from the connection's buffer, consuming it if complete.
fn parse_head(conn: &mut ConnState, head_request: bool) -> Result<Option<Head>, Error> {
    let available = &conn.buf[conn.start..conn.end];
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        available,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if available.len() >= MAX_HEAD {
                Err(Error::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Error::HeadTooLarge),
        Err(_) => return Err(Error::Malformed("invalid status line or header")),
    };
    let status = response
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(Error::Malformed("invalid status code"))?;
    let version = match response.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(Error::Malformed("unsupported version")),
    };
    if status.is_informational() {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            // Upgrades never go over pooled connections.
            return Err(Error::Malformed("unexpected 101 Switching Protocols"));
        }
        conn.start += len;
        return Ok(Some(Head {
            status,
            version,
            headers: HeaderMap::new(),
            framing: None,
            keep_alive: false,
            body: None,
        }));
    }

    let fields = &*response.headers;
    // One allocation for the head and what may be a small body that came with it.
    let extra = (available.len() - len).min(INLINE_BODY);
    let block = Bytes::copy_from_slice(&available[..len + extra]);
    let base = available.as_ptr() as usize;
    // One more for the X-Request-Id the router adds when the instance sets none.
    let mut headers = HeaderMap::with_capacity(fields.len() + 1);
    let mut length: Option<u64> = None;
    let mut bad_length = false;
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive_token = false;
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| Error::Malformed("invalid header name"))?;
        if name == header::CONTENT_LENGTH {
            match (parse_length(field.value), length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => bad_length = true,
            }
        } else if name == header::TRANSFER_ENCODING {
            transfer_encoding = true;
            // Only the last coding matters: chunked must be the final one.
            chunked = field
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == header::CONNECTION {
            close |= lists(field.value, b"close");
            keep_alive_token |= lists(field.value, b"keep-alive");
        }
        let offset = field.value.as_ptr() as usize - base;
        let value = HeaderValue::from_maybe_shared(block.slice(offset..offset + field.value.len()))
            .map_err(|_| Error::Malformed("invalid header value"))?;
        headers.append(name, value);
    }
    let no_body =
        head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let framing = if no_body {
        None
    } else if transfer_encoding {
        if chunked {
            Some(ResponseFraming::Chunked(Chunk::Size))
        } else {
            Some(ResponseFraming::Close)
        }
    } else if bad_length {
        return Err(Error::Malformed("invalid Content-Length"));
    } else {
        match length {
            Some(0) => None,
            Some(n) => Some(ResponseFraming::Length(n)),
            None => Some(ResponseFraming::Close),
        }
    };
    if transfer_encoding && length.is_some() {
        // A proxy must not pass Content-Length on when Transfer-Encoding decides.
        headers.remove(header::CONTENT_LENGTH);
    }
    // Transfer-Encoding with Content-Length is how messages get smuggled: the response
    // is served (Transfer-Encoding wins), then the connection closed. So is one that
    // has Transfer-Encoding where no body may be.
    let ambiguous = transfer_encoding && (length.is_some() || no_body);
    let close_delimited = matches!(framing, Some(ResponseFraming::Close));
    let keep_alive = !(close || close_delimited || ambiguous)
        && (version == Version::HTTP_11 || keep_alive_token);
    let (framing, body, consumed) = match framing {
        Some(ResponseFraming::Length(n)) if n <= extra as u64 => {
            let n = n as usize;
            (None, Some(block.slice(len..len + n)), len + n)
        }
        framing => (framing, None, len),
    };
    conn.start += consumed;
    Ok(Some(Head {
        status,
        version,
        headers,
        framing,
        keep_alive,
        body,
    }))
}

/// A chunk-size line at the start of `buf`: the line's length (CRLF included) and the
/// size, or None if the line is not complete yet.
pub(crate) fn parse_chunk_line(buf: &[u8]) -> Result<Option<(usize, u64)>, Error> {
    let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_CHUNK_LINE {
            Err(Error::Malformed("chunk size line too long"))
        } else {
            Ok(None)
        };
    };
    if lf == 0 || buf[lf - 1] != b'\r' || lf > MAX_CHUNK_LINE {
        return Err(Error::Malformed("invalid chunk size line"));
    }
    let line = &buf[..lf - 1];
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(Error::Malformed("invalid chunk size"));
    }
    let size = line[..digits].iter().fold(0u64, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => d - b'A' + 10,
        };
        (n << 4) | u64::from(v)
    });
    // Whitespace, then extensions (ignored) after ';'.
    let rest = &line[digits..];
    let rest = &rest[rest
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count()..];
    if !rest.is_empty()
        && (rest[0] != b';' || rest.iter().any(|&b| b == b'\r' || b == 0 || b == 0x7f))
    {
        return Err(Error::Malformed("invalid chunk extension"));
    }
    Ok(Some((lf + 1, size)))
}

/// A response body read from the connection as the client takes it. Also finishes
/// sending the request body when the instance answered before it had it all.
#[derive(Debug)]
pub(crate) struct ResponseBody {
    /// None once the connection is gone (an error, or the body ended without reuse).
    exchange: Option<Exchange>,
    /// None when nothing (more) is to be read.
    framing: Option<ResponseFraming>,
    /// The body (or its rest), already read.
    ready: Option<Bytes>,
    keep_alive: bool,
    done: bool,
}

impl ResponseBody {
    /// The connection, if the response ended exactly as framed, the request went out
    /// whole and the instance keeps the connection open: ready for the next request.
    pub(crate) fn take_reusable(&mut self) -> Option<Conn> {
        if !self.done || !self.keep_alive {
            return None;
        }
        let exchange = self.exchange.take()?;
        if !exchange.request_sent() || exchange.conn.start != exchange.conn.end {
            return None;
        }
        let mut conn = exchange.conn;
        // An idle connection keeps no body block.
        conn.body_buf = BytesMut::new();
        Some(conn)
    }

    fn finish(&mut self) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.done = true;
        self.framing = None;
        Poll::Ready(None)
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.exchange = None;
        self.framing = None;
        self.done = true;
        self.keep_alive = false;
        Poll::Ready(Some(Err(error)))
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let Some(exchange) = self.exchange.as_mut() else {
            self.done = true;
            return Poll::Ready(self.ready.take().map(|d| Ok(Frame::data(d))));
        };
        // The instance answered early: keep sending the request body alongside.
        if !exchange.request_sent()
            && let Poll::Ready(Err(e)) = exchange.poll_send(cx)
        {
            return self.fail(e);
        }
        if let Some(data) = self.ready.take() {
            if self.framing.is_none() {
                self.done = true;
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        loop {
            let Some(framing) = self.framing else {
                return self.finish();
            };
            let conn = &mut exchange.conn;
            let available = conn.end - conn.start;
            match framing {
                ResponseFraming::Length(left) => {
                    let data = if available > 0 {
                        let n = (available as u64).min(left) as usize;
                        let data = Bytes::copy_from_slice(&conn.available()[..n]);
                        conn.start += n;
                        data
                    } else if left >= BODY_DIRECT {
                        match ready!(conn.poll_read_body(cx, left)) {
                            Ok(data) if data.is_empty() => return self.fail(Error::Incomplete),
                            Ok(data) => data,
                            Err(e) => return self.fail(e),
                        }
                    } else {
                        match ready!(conn.poll_fill(cx, READ_SIZE)) {
                            Ok(0) => return self.fail(Error::Incomplete),
                            Ok(_) => continue,
                            Err(e) => return self.fail(e),
                        }
                    };
                    let left = left - data.len() as u64;
                    if left == 0 {
                        self.framing = None;
                        self.done = true;
                    } else {
                        self.framing = Some(ResponseFraming::Length(left));
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                ResponseFraming::Close => {
                    // What came with the head first, then straight reads.
                    if available == 0 {
                        match ready!(conn.poll_read_body(cx, u64::MAX)) {
                            Ok(data) if data.is_empty() => {
                                self.keep_alive = false;
                                return self.finish();
                            }
                            Ok(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                            Err(e) => return self.fail(e),
                        }
                    }
                    let data = Bytes::copy_from_slice(conn.available());
                    conn.start = conn.end;
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                ResponseFraming::Chunked(state) => match decode_chunk(conn, state, cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return self.fail(e),
                    Poll::Ready(Ok((next, frame))) => {
                        self.framing = next.map(ResponseFraming::Chunked);
                        match frame {
                            Some(frame) => {
                                if next.is_none() {
                                    self.done = true;
                                }
                                return Poll::Ready(Some(Ok(frame)));
                            }
                            None if next.is_none() => return self.finish(),
                            None => continue,
                        }
                    }
                },
            }
        }
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.ready.is_none() && self.framing.is_none()
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match (&self.ready, self.framing) {
            (Some(data), None) => SizeHint::with_exact(data.len() as u64),
            (None, None) => SizeHint::with_exact(0),
            (None, Some(ResponseFraming::Length(n))) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// One step of the chunked decoder: the next state (None at the end) and a frame, if
/// this step produced one.
#[allow(clippy::type_complexity)]
fn decode_chunk(
    conn: &mut ConnState,
    state: Chunk,
    cx: &mut Context<'_>,
) -> Poll<Result<(Option<Chunk>, Option<Frame<Bytes>>), Error>> {
    loop {
        let available = conn.available();
        match state {
            Chunk::Size => {
                if let Some((line, size)) = parse_chunk_line(available)? {
                    conn.start += line;
                    let next = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                    return Poll::Ready(Ok((Some(next), None)));
                }
            }
            Chunk::Data(left) => {
                let data = if !available.is_empty() {
                    let n = (available.len() as u64).min(left) as usize;
                    let data = Bytes::copy_from_slice(&available[..n]);
                    conn.start += n;
                    Some(data)
                } else if left >= BODY_DIRECT {
                    let data = ready!(conn.poll_read_body(cx, left))?;
                    if data.is_empty() {
                        return Poll::Ready(Err(Error::Incomplete));
                    }
                    Some(data)
                } else {
                    None
                };
                if let Some(data) = data {
                    let next = if data.len() as u64 == left {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - data.len() as u64)
                    };
                    return Poll::Ready(Ok((Some(next), Some(Frame::data(data)))));
                }
            }
            Chunk::DataEnd => {
                if available.len() >= 2 {
                    if &available[..2] != b"\r\n" {
                        return Poll::Ready(Err(Error::Malformed("chunk without CRLF")));
                    }
                    conn.start += 2;
                    return Poll::Ready(Ok((Some(Chunk::Size), None)));
                }
            }
            Chunk::Trailers => {
                if available.starts_with(b"\r\n") {
                    conn.start += 2;
                    return Poll::Ready(Ok((None, None)));
                }
                let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILERS];
                match httparse::parse_headers(available, &mut fields) {
                    Ok(httparse::Status::Complete((len, fields))) => {
                        let mut trailers = HeaderMap::with_capacity(fields.len());
                        for field in fields {
                            let name = HeaderName::from_bytes(field.name.as_bytes())
                                .map_err(|_| Error::Malformed("invalid trailer name"))?;
                            let value = HeaderValue::from_bytes(field.value)
                                .map_err(|_| Error::Malformed("invalid trailer value"))?;
                            trailers.append(name, value);
                        }
                        conn.start += len;
                        return Poll::Ready(Ok((None, Some(Frame::trailers(trailers)))));
                    }
                    Ok(httparse::Status::Partial) => {
                        if available.len() >= MAX_HEAD {
                            return Poll::Ready(Err(Error::HeadTooLarge));
                        }
                    }
                    Err(httparse::Error::TooManyHeaders) => {
                        return Poll::Ready(Err(Error::HeadTooLarge));
                    }
                    Err(_) => return Poll::Ready(Err(Error::Malformed("invalid trailers"))),
                }
            }
        }
        let limit = if matches!(state, Chunk::Trailers) {
            MAX_HEAD
        } else {
            READ_SIZE
        };
        if ready!(conn.poll_fill(cx, limit))? == 0 {
            return Poll::Ready(Err(Error::Incomplete));
        }
    }
}

#[cfg(test)]
mod tests;
