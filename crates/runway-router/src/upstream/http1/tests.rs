use super::*;
use crate::headers::client_value;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A fake instance: accepts one connection and plays `script` on it.
async fn instance<F, Fut>(script: F) -> SocketAddr
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        script(stream).await;
    });
    addr
}

/// Reads one request head (requests here have no body).
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Answers each request with the next of `responses`, written a few bytes at a time so
/// that every parser state meets a partial buffer; then closes.
fn answers(responses: Vec<&'static [u8]>) -> impl FnOnce(TcpStream) -> BoxedScript {
    move |mut stream| {
        Box::pin(async move {
            for response in responses {
                read_head(&mut stream).await;
                for piece in response.chunks(7) {
                    stream.write_all(piece).await.unwrap();
                    stream.flush().await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
        })
    }
}

type BoxedScript = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

fn forwarded() -> Forwarded {
    Forwarded::new(
        &HeaderMap::new(),
        &client_value("192.0.2.1".parse().unwrap()),
        "http",
        HeaderValue::from_static("app.test"),
    )
}

fn get(path: &str) -> Request<ProxyRequestBody> {
    Request::get(path)
        .header("host", "app.test")
        .body(ProxyRequestBody::empty())
        .unwrap()
}

async fn connect(addr: SocketAddr) -> Conn {
    Conn::new(TcpStream::connect(addr).await.unwrap())
}

async fn send_ok(conn: Conn, req: Request<ProxyRequestBody>) -> Response<ResponseBody> {
    match send(conn, req, &forwarded()).await {
        Ok(response) => response,
        Err(SendFailure::NotSent(e, _) | SendFailure::Failed(e)) => panic!("send: {e}"),
        Err(SendFailure::Body(e)) => panic!("send: {e}"),
    }
}

/// The body's bytes and trailers, or its error.
async fn read_body(body: &mut ResponseBody) -> Result<(Vec<u8>, Option<HeaderMap>), Error> {
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = std::future::poll_fn(|cx| body.poll_frame(cx)).await {
        match frame?.into_data() {
            Ok(bytes) => data.extend_from_slice(&bytes),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    assert!(body.is_end_stream());
    Ok((data, trailers))
}

#[tokio::test]
async fn a_response_with_a_length_is_read_and_the_connection_reused() {
    let addr = instance(answers(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\nX-A: c\r\n\r\nhello",
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
    ]))
    .await;
    let mut response = send_ok(connect(addr).await, get("/one")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_11);
    let values: Vec<_> = response.headers().get_all("x-a").iter().collect();
    assert_eq!(values, ["b", "c"]);
    let (data, trailers) = read_body(response.body_mut()).await.unwrap();
    assert_eq!(data, b"hello");
    assert!(trailers.is_none());
    let conn = response.body_mut().take_reusable().expect("reusable");

    let mut response = send_ok(conn, get("/two")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.body().is_end_stream());
    assert!(response.body_mut().take_reusable().is_some());
}

#[tokio::test]
async fn chunked_bodies_with_extensions_and_trailers() {
    let addr = instance(answers(vec![
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5;name=value\r\nhello\r\n6 \r\n world\r\n0\r\nGrpc-Status: 0\r\nx-more: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    ]))
    .await;
    let mut response = send_ok(connect(addr).await, get("/")).await;
    // The coding is the instance's: the client's response says which.
    assert_eq!(response.headers()["transfer-encoding"], "gzip, chunked");
    let (data, trailers) = read_body(response.body_mut()).await.unwrap();
    assert_eq!(data, b"hello world");
    let trailers = trailers.expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["x-more"], "1");
    let conn = response.body_mut().take_reusable().expect("reusable");

    let mut response = send_ok(conn, get("/")).await;
    let (data, trailers) = read_body(response.body_mut()).await.unwrap();
    assert!(data.is_empty() && trailers.is_none());
    assert!(response.body_mut().take_reusable().is_some());
}

#[tokio::test]
async fn a_body_without_length_ends_with_the_connection() {
    let addr = instance(answers(vec![b"HTTP/1.1 200 OK\r\n\r\nuntil the end"])).await;
    let mut response = send_ok(connect(addr).await, get("/")).await;
    let (data, _) = read_body(response.body_mut()).await.unwrap();
    assert_eq!(data, b"until the end");
    assert!(response.body_mut().take_reusable().is_none());
}

#[tokio::test]
async fn responses_without_a_body() {
    let addr = instance(answers(vec![
        // HEAD: the length is the resource's, no body follows.
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ]))
    .await;
    let head = Request::head("/")
        .header("host", "app.test")
        .body(ProxyRequestBody::empty())
        .unwrap();
    let mut conn = connect(addr).await;
    for (req, status) in [
        (head, StatusCode::OK),
        (get("/"), StatusCode::NO_CONTENT),
        (get("/"), StatusCode::NOT_MODIFIED),
    ] {
        let mut response = send_ok(conn, req).await;
        assert_eq!(response.status(), status);
        assert!(response.body().is_end_stream());
        conn = response.body_mut().take_reusable().expect("reusable");
    }
    let mut response = send_ok(conn, get("/")).await;
    assert_eq!(read_body(response.body_mut()).await.unwrap().0, b"ok");
}

#[tokio::test]
async fn interim_responses_are_skipped() {
    let addr = instance(answers(vec![
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nnew",
    ]))
    .await;
    let mut response = send_ok(connect(addr).await, get("/")).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(!response.headers().contains_key("link"));
    assert_eq!(read_body(response.body_mut()).await.unwrap().0, b"new");
}

#[tokio::test]
async fn connections_the_instance_closes_are_not_reused() {
    for (response, reusable) in [
        (&b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx"[..], false),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", false),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx", true),
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Upgrade\r\nContent-Length: 1\r\n\r\nx", true),
        // Two responses to one request: the second belongs to nobody.
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\ny", false),
    ] {
        let text = String::from_utf8_lossy(response).into_owned();
        let addr = instance(move |mut stream: TcpStream| async move {
            read_head(&mut stream).await;
            stream.write_all(response).await.unwrap();
            // Stay open: only the response decides.
            let _ = stream.read(&mut [0u8; 1]).await;
        })
        .await;
        let mut response = send_ok(connect(addr).await, get("/")).await;
        assert_eq!(read_body(response.body_mut()).await.unwrap().0, b"x", "{text}");
        // Whatever came after the response is in the buffer by now, or never.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let reused = response.body_mut().take_reusable().is_some_and(|mut c| c.is_open());
        assert_eq!(reused, reusable, "{text}");
    }
}

#[tokio::test]
async fn transfer_encoding_wins_over_content_length_and_the_connection_closes() {
    let addr = instance(answers(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
    ]))
    .await;
    let mut response = send_ok(connect(addr).await, get("/")).await;
    assert!(!response.headers().contains_key("content-length"));
    assert_eq!(read_body(response.body_mut()).await.unwrap().0, b"abcd");
    assert!(response.body_mut().take_reusable().is_none());
}

#[tokio::test]
async fn malformed_responses_are_errors() {
    for response in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
        b"HTTP/1.1 99 Odd\r\n\r\n",
        b"HTTP/2.0 200 OK\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
        b"\x16\x03\x01 not http at all\r\n\r\n",
    ] {
        let text = String::from_utf8_lossy(response).into_owned();
        let addr = instance(move |mut stream: TcpStream| async move {
            read_head(&mut stream).await;
            let _ = stream.write_all(response).await;
        })
        .await;
        match send(connect(addr).await, get("/"), &forwarded()).await {
            Err(SendFailure::Failed(Error::Malformed(_))) => {}
            other => panic!("{text}: {:?}", other.map(|r| r.status())),
        }
    }
}

#[tokio::test]
async fn broken_bodies_are_errors() {
    for response in [
        // Shorter than its length.
        &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"[..],
        // Chunks: a size that is not hex, data without its CRLF, no last chunk.
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3 x\r\nabc\r\n0\r\n\r\n",
    ] {
        let text = String::from_utf8_lossy(response).into_owned();
        let addr = instance(move |mut stream: TcpStream| async move {
            read_head(&mut stream).await;
            let _ = stream.write_all(response).await;
        })
        .await;
        let mut response = send_ok(connect(addr).await, get("/")).await;
        assert!(read_body(response.body_mut()).await.is_err(), "{text}");
        assert!(response.body_mut().take_reusable().is_none(), "{text}");
    }
}

#[tokio::test]
async fn an_instance_that_closes_before_answering_is_an_error_after_sending() {
    let addr = instance(|mut stream: TcpStream| async move {
        read_head(&mut stream).await;
    })
    .await;
    match send(connect(addr).await, get("/"), &forwarded()).await {
        Err(SendFailure::Failed(Error::Closed)) => {}
        other => panic!("{:?}", other.map(|r| r.status())),
    }
}

#[tokio::test]
async fn idle_connections_closed_by_the_instance_are_seen_as_closed() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let addr = instance(move |mut stream: TcpStream| async move {
        read_head(&mut stream).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let _ = rx.await;
        drop(stream);
    })
    .await;
    let mut response = send_ok(connect(addr).await, get("/")).await;
    let mut conn = response.body_mut().take_reusable().expect("reusable");
    assert!(conn.is_open());
    tx.send(()).unwrap();
    // The reactor learns of the close when the runtime next polls it.
    let mut open = true;
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        open = conn.is_open();
        if !open {
            break;
        }
    }
    assert!(!open);
}

#[tokio::test]
async fn large_heads_grow_the_buffer_up_to_the_limit() {
    let big = format!(
        "HTTP/1.1 200 OK\r\nx-big: {}\r\nContent-Length: 2\r\n\r\nok",
        "a".repeat(40_000)
    );
    let too_big = format!("HTTP/1.1 200 OK\r\nx-big: {}\r\n\r\n", "a".repeat(70_000));
    let addr = instance(move |mut stream: TcpStream| async move {
        read_head(&mut stream).await;
        stream.write_all(big.as_bytes()).await.unwrap();
        read_head(&mut stream).await;
        let _ = stream.write_all(too_big.as_bytes()).await;
    })
    .await;
    let mut response = send_ok(connect(addr).await, get("/")).await;
    assert_eq!(response.headers()["x-big"].len(), 40_000);
    assert_eq!(read_body(response.body_mut()).await.unwrap().0, b"ok");
    let conn = response.body_mut().take_reusable().expect("reusable");
    match send(conn, get("/"), &forwarded()).await {
        Err(SendFailure::Failed(Error::HeadTooLarge)) => {}
        other => panic!("{:?}", other.map(|r| r.status())),
    }
}

/// The bytes of a large test body: a pattern that shows any byte out of place.
fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| (i % 251) as u8).collect()
}

/// Reads `response`'s body, checking it against [`pattern`] and that each frame fits
/// in one body read; the number of frames.
async fn read_pattern(response: &mut Response<ResponseBody>, size: usize) -> usize {
    let mut frames = 0;
    let mut seen = 0usize;
    while let Some(frame) = std::future::poll_fn(|cx| response.body_mut().poll_frame(cx)).await {
        let data = frame.unwrap().into_data().unwrap();
        assert!(data.len() <= BODY_READ);
        assert_eq!(&data[..], &pattern(seen, data.len())[..], "at {seen}");
        seen += data.len();
        frames += 1;
    }
    assert_eq!(seen, size);
    frames
}

#[tokio::test]
async fn large_bodies_stream_through_in_pieces() {
    const SIZE: usize = 3 * 1024 * 1024 + 17;
    // Two responses written at once, the second before it was asked for: the reads of
    // the first body must stop at its length and leave the second response alone.
    let addr = instance(|mut stream: TcpStream| async move {
        read_head(&mut stream).await;
        let mut both = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").into_bytes();
        both.extend_from_slice(&pattern(0, SIZE));
        both.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        stream.write_all(&both).await.unwrap();
        let _ = stream.read(&mut [0u8; 1]).await;
    })
    .await;
    let conn = connect(addr).await;
    let mut response = send_ok(conn, get("/")).await;
    assert_eq!(response.body().size_hint().exact(), Some(SIZE as u64));
    assert!(read_pattern(&mut response, SIZE).await > 1);
    let conn = response.body_mut().take_reusable().expect("reusable");
    let mut second = send_ok(conn, get("/")).await;
    assert_eq!(read_body(second.body_mut()).await.unwrap().0, b"ok");
}

#[tokio::test]
async fn large_chunks_and_close_delimited_bodies_stream_through() {
    const CHUNK: usize = 700 * 1024 + 3;
    let addr = instance(|mut stream: TcpStream| async move {
        read_head(&mut stream).await;
        let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for (offset, len) in [(0, CHUNK), (CHUNK, 5), (CHUNK + 5, CHUNK)] {
            out.extend_from_slice(format!("{len:x}\r\n").as_bytes());
            out.extend_from_slice(&pattern(offset, len));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\nx-t: 1\r\n\r\n");
        stream.write_all(&out).await.unwrap();
        let _ = stream.read(&mut [0u8; 1]).await;
    })
    .await;
    let mut response = send_ok(connect(addr).await, get("/")).await;
    let (data, trailers) = read_body(response.body_mut()).await.unwrap();
    assert_eq!(data, pattern(0, 2 * CHUNK + 5));
    assert_eq!(trailers.unwrap()["x-t"], "1");
    assert!(response.body_mut().take_reusable().is_some());

    let addr = instance(|mut stream: TcpStream| async move {
        read_head(&mut stream).await;
        stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        stream.write_all(&pattern(0, 2 * CHUNK)).await.unwrap();
    })
    .await;
    let mut response = send_ok(connect(addr).await, get("/")).await;
    read_pattern(&mut response, 2 * CHUNK).await;
    assert!(response.body_mut().take_reusable().is_none());

    // A large body cut short is an error, not a shorter body.
    let addr = instance(|mut stream: TcpStream| async move {
        read_head(&mut stream).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n")
            .await
            .unwrap();
        stream.write_all(&pattern(0, CHUNK)).await.unwrap();
    })
    .await;
    let mut response = send_ok(connect(addr).await, get("/")).await;
    assert!(matches!(
        read_body(response.body_mut()).await,
        Err(Error::Incomplete)
    ));
}

#[tokio::test]
async fn request_heads_carry_the_forwarded_headers_and_their_own_framing() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let addr = instance(move |mut stream: TcpStream| async move {
        let head = read_head(&mut stream).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let _ = tx.send(head);
    })
    .await;
    let client_headers = {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.5"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("gopher"));
        headers.insert("x-request-id", HeaderValue::from_static("client-id"));
        headers
    };
    let forwarded = Forwarded::new(
        &client_headers,
        &client_value("192.0.2.1".parse().unwrap()),
        "https",
        HeaderValue::from_static("app.test:8443"),
    );
    // An HTTP/2 request: the host is in the target's authority, and the length a
    // client declared for an empty body is kept.
    let mut req = Request::post("https://app.test:8443/path?q=1")
        .header("content-length", "0")
        .header("transfer-encoding", "chunked")
        .header("x-other", "kept")
        .body(ProxyRequestBody::empty())
        .unwrap();
    req.headers_mut().extend(client_headers);
    let response = match send(connect(addr).await, req, &forwarded).await {
        Ok(response) => response,
        Err(_) => panic!("send failed"),
    };
    assert_eq!(response.status(), StatusCode::OK);
    let head = rx.await.unwrap();
    let lines: Vec<&str> = head.trim_end().split("\r\n").collect();
    assert_eq!(lines[0], "POST /path?q=1 HTTP/1.1");
    let mut fields: Vec<&str> = lines[1..].to_vec();
    fields.sort_unstable();
    let trace = fields
        .iter()
        .position(|f| f.starts_with("x-amzn-trace-id: Root=1-"))
        .expect("a new trace id");
    fields.remove(trace);
    assert_eq!(
        fields,
        [
            "content-length: 0",
            "host: app.test:8443",
            "x-forwarded-for: 203.0.113.5, 192.0.2.1",
            "x-forwarded-host: app.test:8443",
            "x-forwarded-proto: https",
            "x-other: kept",
            "x-real-ip: 192.0.2.1",
            "x-request-id: client-id",
        ]
    );
}

#[test]
fn chunk_size_lines() {
    assert_eq!(parse_chunk_line(b"1a\r\n").unwrap(), Some((4, 0x1a)));
    assert_eq!(
        parse_chunk_line(b"FF;a=b;c\r\nrest").unwrap(),
        Some((10, 255))
    );
    assert_eq!(parse_chunk_line(b"0 \t;x\r\n").unwrap(), Some((7, 0)));
    assert_eq!(parse_chunk_line(b"10").unwrap(), None);
    assert_eq!(parse_chunk_line(b"10\r").unwrap(), None);
    for bad in [
        &b"\r\n"[..],
        b"x\r\n",
        b"1x\r\n",
        b"1\n",
        b"-1\r\n",
        b"11111111111111111\r\n",
        b"1;\x00\r\n",
    ] {
        assert!(
            parse_chunk_line(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(parse_chunk_line(&vec![b'1'; MAX_CHUNK_LINE + 1]).is_err());
}

#[test]
fn content_lengths() {
    assert_eq!(parse_length(b"0"), Some(0));
    assert_eq!(parse_length(b" 42 "), Some(42));
    assert_eq!(
        parse_length(b"9999999999999999999"),
        Some(9_999_999_999_999_999_999)
    );
    for bad in [
        &b""[..],
        b"-1",
        b"+1",
        b"1 2",
        b"0x10",
        b"99999999999999999999",
    ] {
        assert_eq!(
            parse_length(bad),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}
