//! The test app runway's tests run as an instance: an HTTP/1.1 server on `$PORT` (8080
//! when unset) whose routes exercise what the platform must handle — a greeting with the
//! host name (`/`), a health check that can be told to fail (`/healthz`, 500 when
//! `UNHEALTHY=1`), the environment as JSON (`/env`), slow requests (`/sleep?ms=N`), a crash
//! (`/crash`, exit code 3), memory pressure (`/alloc?mb=N`), outbound connections
//! (`/connect?to=IP:PORT`), log lines (`/log?stream=stderr&text=...`), its own process
//! status (`/status`: uid, groups, capabilities, seccomp), a file written
//! (`/write?path=P&mb=N`: 507 with the error when the disk refuses) or read
//! (`/read?path=P`), a WebSocket echo (`/ws`), server-sent events
//! (`/sse?count=N&interval_ms=M`) and an upload sink that counts a body of any size as
//! it streams by (`/upload`, Content-Length or chunked).
//!
//! It depends on nothing beyond std, so it links statically and runs in an image that
//! holds only this binary; it must never grow a dependency.

#![forbid(unsafe_code)]
// A program reports on its own stdout; the tests read it as the instance's log.
#![allow(clippy::print_stdout)]

mod ws;

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The longest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// The largest request body read (and discarded or echoed).
const MAX_BODY: usize = 1024 * 1024;

fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_string());
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("runway-testapp: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("runway-testapp starting, pid {}", std::process::id());
    // The bound port, which differs from $PORT when that is 0 (tests).
    let bound = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    println!("runway-testapp listening on 0.0.0.0:{bound}");
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                std::thread::spawn(move || {
                    if let Err(e) = serve(stream) {
                        eprintln!("runway-testapp: connection error: {e}");
                    }
                });
            }
            Err(e) => eprintln!("runway-testapp: accept failed: {e}"),
        }
    }
}

/// A parsed request head.
struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }
}

/// Serves requests on one connection until the client closes it or asks to.
fn serve(stream: TcpStream) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let Some(req) = read_head(&mut reader)? else {
            return Ok(());
        };
        let length = req
            .header("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if req.path == "/upload" {
            upload(&req, &mut reader, &mut out)?;
            continue;
        }
        if length > MAX_BODY {
            respond(&mut out, 413, "text/plain", b"body too large\n", true)?;
            return Ok(());
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if req.path == "/ws" {
            return ws::serve(&req.headers, reader, out);
        }
        let keep = route(&req, &body, &mut out, close)?;
        if close || !keep {
            return Ok(());
        }
    }
}

/// Reads a request head; `None` when the client closed the connection between requests.
fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad request line",
        ));
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut headers = BTreeMap::new();
    let mut total = line.len();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        total += line.len();
        if total > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
        let trimmed = line.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), parse_query(q)),
        None => (target, BTreeMap::new()),
    };
    Ok(Some(Request {
        method,
        path,
        query,
        headers,
    }))
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Answers one request; whether the connection may serve another.
fn route(req: &Request, body: &[u8], out: &mut TcpStream, close: bool) -> io::Result<bool> {
    let text = "text/plain; charset=utf-8";
    match (req.method.as_str(), req.path.as_str()) {
        (_, "/") => {
            let msg = format!("hello from runway-testapp on {}\n", hostname());
            respond(out, 200, text, msg.as_bytes(), close)?;
        }
        (_, "/healthz") => {
            if std::env::var("UNHEALTHY").is_ok_and(|v| v == "1") {
                respond(out, 500, text, b"unhealthy\n", close)?;
            } else {
                respond(out, 200, text, b"ok\n", close)?;
            }
        }
        (_, "/env") => {
            let vars: BTreeMap<String, String> = std::env::vars().collect();
            respond(
                out,
                200,
                "application/json",
                json_object(&vars).as_bytes(),
                close,
            )?;
        }
        (_, "/sleep") => {
            let ms = req.param("ms").and_then(|v| v.parse().ok()).unwrap_or(0);
            std::thread::sleep(Duration::from_millis(ms));
            respond(out, 200, text, format!("slept {ms} ms\n").as_bytes(), close)?;
        }
        (_, "/crash") => {
            respond(out, 200, text, b"crashing\n", true)?;
            out.flush()?;
            eprintln!("runway-testapp: crashing on request");
            std::process::exit(3);
        }
        (_, "/exit") => {
            let code = req.param("code").and_then(|v| v.parse().ok()).unwrap_or(0);
            respond(out, 200, text, format!("exiting {code}\n").as_bytes(), true)?;
            out.flush()?;
            std::process::exit(code);
        }
        (_, "/alloc") => {
            let mb: usize = req.param("mb").and_then(|v| v.parse().ok()).unwrap_or(0);
            alloc(mb);
            respond(
                out,
                200,
                text,
                format!("allocated {mb} MiB\n").as_bytes(),
                close,
            )?;
        }
        (_, "/connect") => {
            let to = req.param("to").unwrap_or("");
            let timeout = req
                .param("timeout_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            match connect(to, Duration::from_millis(timeout)) {
                Ok(()) => respond(out, 200, text, b"connected\n", close)?,
                Err(e) => respond(out, 502, text, format!("error: {e}\n").as_bytes(), close)?,
            }
        }
        (_, "/log") => {
            let line = req.param("text").unwrap_or("");
            if req.param("stream") == Some("stderr") {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
            respond(out, 200, text, b"logged\n", close)?;
        }
        (_, "/status") => {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            respond(out, 200, text, status.as_bytes(), close)?;
        }
        (_, "/write") => {
            let path = req.param("path").unwrap_or("/tmp/written");
            let mb: usize = req.param("mb").and_then(|v| v.parse().ok()).unwrap_or(1);
            match write_file(path, mb) {
                Ok(()) => respond(
                    out,
                    200,
                    text,
                    format!("wrote {mb} MiB\n").as_bytes(),
                    close,
                )?,
                Err((done, e)) => respond(
                    out,
                    507,
                    text,
                    format!("error after {done} MiB: {e}\n").as_bytes(),
                    close,
                )?,
            }
        }
        (_, "/read") => match std::fs::read(req.param("path").unwrap_or("")) {
            Ok(data) => respond(out, 200, "application/octet-stream", &data, close)?,
            Err(e) => respond(out, 404, text, format!("error: {e}\n").as_bytes(), close)?,
        },
        (_, "/echo") => respond(out, 200, "application/octet-stream", body, close)?,
        (_, "/sse") => {
            let count = req
                .param("count")
                .and_then(|v| v.parse().ok())
                .unwrap_or(10);
            let interval = req
                .param("interval_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            sse(out, count, Duration::from_millis(interval))?;
        }
        _ => respond(out, 404, text, b"not found\n", close)?,
    }
    Ok(true)
}

/// Sends `count` server-sent events `interval` apart (the first at once) as a chunked
/// stream, each event a chunk written as soon as it is due.
fn sse(out: &mut TcpStream, count: u64, interval: Duration) -> io::Result<()> {
    out.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n",
    )?;
    out.flush()?;
    for n in 0..count {
        if n > 0 {
            std::thread::sleep(interval);
        }
        let event = format!("id: {n}\ndata: event {n}\n\n");
        write!(out, "{:x}\r\n{event}\r\n", event.len())?;
        out.flush()?;
    }
    out.write_all(b"0\r\n\r\n")?;
    out.flush()
}

/// Reads a request body of any size without keeping it (Content-Length or chunked) and
/// answers with the number of bytes read.
fn upload(req: &Request, reader: &mut BufReader<TcpStream>, out: &mut TcpStream) -> io::Result<()> {
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let received = if chunked {
        let mut total = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or("");
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                        break;
                    }
                }
                break total;
            }
            total += io::copy(&mut reader.by_ref().take(size), &mut io::sink())?;
            reader.read_line(&mut line)?;
        }
    } else {
        let length = req
            .header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        io::copy(&mut reader.by_ref().take(length), &mut io::sink())?
    };
    let text = format!("received {received} bytes\n");
    respond(
        out,
        200,
        "text/plain; charset=utf-8",
        text.as_bytes(),
        false,
    )
}

/// Allocates `mb` MiB and touches every page, keeping it for the life of the process so
/// that the memory stays charged to the instance's cgroup.
fn alloc(mb: usize) {
    let mut kept = Vec::new();
    for _ in 0..mb {
        let mut chunk = vec![0u8; 1024 * 1024];
        for page in chunk.chunks_mut(4096) {
            page[0] = 1;
        }
        kept.push(chunk);
    }
    std::mem::forget(kept);
}

/// Writes `mb` MiB to `path` and syncs them to disk; how many MiB were written before an
/// error, and the error.
fn write_file(path: &str, mb: usize) -> Result<(), (usize, io::Error)> {
    let mut file = std::fs::File::create(path).map_err(|e| (0, e))?;
    let chunk = vec![0x5au8; 1024 * 1024];
    for done in 0..mb {
        file.write_all(&chunk).map_err(|e| (done, e))?;
    }
    file.sync_all().map_err(|e| (mb, e))
}

fn connect(to: &str, timeout: Duration) -> io::Result<()> {
    let addr: SocketAddr = to
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
    TcpStream::connect_timeout(&addr, timeout).map(drop)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

fn respond(
    out: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    close: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        _ => "",
    };
    let connection = if close { "close" } else { "keep-alive" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}

/// A JSON object of string values, keys in order.
fn json_object(map: &BTreeMap<String, String>) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        json_string(&mut s, k);
        s.push(':');
        json_string(&mut s, v);
    }
    s.push('}');
    s
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_decoded() {
        let q = parse_query("text=a%20b+c&to=10.0.0.1%3A80&bad=%zz&tail=%4");
        assert_eq!(q["text"], "a b c");
        assert_eq!(q["to"], "10.0.0.1:80");
        assert_eq!(q["bad"], "%zz");
        assert_eq!(q["tail"], "%4");
    }

    #[test]
    fn json_escapes_strings() {
        let mut m = BTreeMap::new();
        m.insert("A".to_string(), "x\"y\\z\n\u{1}".to_string());
        assert_eq!(json_object(&m), r#"{"A":"x\"y\\z\n\u0001"}"#);
    }
}
