//! Header rewriting between client and instance: hop-by-hop headers removed,
//! X-Forwarded-*, X-Request-Id and X-Amzn-Trace-Id set. Input straight from the network:
//! no panic on any header map (fuzzed in `fuzz/`).

use crate::rand::next_u64;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::fmt::Write as _;
use std::net::IpAddr;

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) static X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Longest X-Request-Id kept from a client.
const MAX_REQUEST_ID: usize = 128;
/// Longest X-Amzn-Trace-Id kept from a client.
const MAX_TRACE_ID: usize = 256;

/// Whether a header's comma-separated tokens include `token` (case-insensitive).
pub(crate) fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// Whether a request asks to switch protocols (HTTP/1.1 Upgrade, e.g. WebSockets).
pub(crate) fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && has_token(headers, &header::CONNECTION, "upgrade")
}

/// Removes hop-by-hop headers: Connection and the headers it names, Keep-Alive,
/// Proxy-*, TE (except `trailers`, which gRPC needs), Trailer, Transfer-Encoding, and
/// Upgrade unless `upgrade` (then `Connection: upgrade` is kept).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most requests and responses carry none: one pass over the names, no lookups.
    let any = headers.keys().any(|name| {
        matches!(
            name.as_str(),
            "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade"
        ) || name.as_str().starts_with("proxy-")
    });
    if !any {
        return;
    }
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(text) = value.to_str() else { continue };
        for token in text.split(',') {
            let token = token.trim();
            if token.is_empty() || (upgrade && token.eq_ignore_ascii_case("upgrade")) {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                named.push(name);
            }
        }
    }
    for name in named {
        // Never let Connection strip what the router itself sets or relies on.
        if name != header::HOST && name != X_REQUEST_ID && name != X_AMZN_TRACE_ID {
            headers.remove(name);
        }
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
    headers.remove(header::CONNECTION);
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TRAILER);
    headers.remove(header::TRANSFER_ENCODING);
    if headers.contains_key(header::TE) {
        let trailers = has_token(headers, &header::TE, "trailers");
        headers.remove(header::TE);
        if trailers {
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Writes an IP address as text into `out` without the formatting machinery for the
/// common IPv4 case.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                let o = *octet;
                if o >= 100 {
                    out.push(b'0' + o / 100);
                }
                if o >= 10 {
                    out.push(b'0' + (o / 10) % 10);
                }
                out.push(b'0' + o % 10);
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(VecWriter(out), "{v6}");
        }
    }
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Sets X-Forwarded-For (the client appended), X-Forwarded-Proto and X-Forwarded-Host.
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    proto: &'static str,
    host: &str,
) {
    let mut xff: Vec<u8> = Vec::with_capacity(48);
    for value in headers.get_all(&X_FORWARDED_FOR) {
        let text = value.as_bytes().trim_ascii();
        if !text.is_empty() {
            xff.extend_from_slice(text);
            xff.extend_from_slice(b", ");
        }
    }
    push_ip(&mut xff, client);
    // Built from a header value's bytes, separators and an address: always valid.
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(xff)) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    match HeaderValue::from_str(host) {
        Ok(value) => {
            headers.insert(X_FORWARDED_HOST.clone(), value);
        }
        Err(_) => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends the low `digits` hex digits of `n`.
fn push_hex(out: &mut Vec<u8>, n: u64, digits: u32) {
    for i in (0..digits).rev() {
        out.push(HEX[((n >> (i * 4)) & 0xf) as usize]);
    }
}

fn valid_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new random request id: 32 hex digits.
pub(crate) fn new_request_id() -> HeaderValue {
    let mut id = Vec::with_capacity(32);
    push_hex(&mut id, next_u64(), 16);
    push_hex(&mut id, next_u64(), 16);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(id)).unwrap_or(HeaderValue::from_static("0"))
}

/// Keeps the client's X-Request-Id if it is a sane token, else sets a new one; returns
/// the id the request carries.
pub(crate) fn set_request_id(headers: &mut HeaderMap) -> HeaderValue {
    let mut values = headers.get_all(&X_REQUEST_ID).iter();
    if let (Some(first), None) = (values.next(), values.next())
        && valid_request_id(first)
    {
        return first.clone();
    }
    let id = new_request_id();
    headers.insert(X_REQUEST_ID.clone(), id.clone());
    id
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64, as an HTTP/1.1 WebSocket
/// handshake needs (HTTP/2's extended CONNECT has none).
pub(crate) fn new_websocket_key() -> HeaderValue {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut raw = [0u8; 18];
    raw[..8].copy_from_slice(&next_u64().to_le_bytes());
    raw[8..16].copy_from_slice(&next_u64().to_le_bytes());
    let mut key = Vec::with_capacity(24);
    for chunk in raw.chunks(3) {
        let n = (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]);
        for shift in [18, 12, 6, 0] {
            key.push(ALPHABET[((n >> shift) & 63) as usize]);
        }
    }
    // 16 bytes are 22 characters and "==" of padding.
    key.truncate(22);
    key.extend_from_slice(b"==");
    HeaderValue::from_maybe_shared(bytes::Bytes::from(key))
        .unwrap_or(HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="))
}

/// A new trace id in AWS X-Ray's format: `Root=1-<8 hex epoch seconds>-<24 hex>`.
pub(crate) fn new_trace_id() -> HeaderValue {
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut id = Vec::with_capacity(40);
    id.extend_from_slice(b"Root=1-");
    push_hex(&mut id, epoch, 8);
    id.push(b'-');
    push_hex(&mut id, next_u64(), 8);
    push_hex(&mut id, next_u64(), 16);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(id)).unwrap_or(HeaderValue::from_static(
        "Root=1-00000000-000000000000000000000000",
    ))
}

/// Passes the client's X-Amzn-Trace-Id on if it is sane, else creates one.
pub(crate) fn set_trace_id(headers: &mut HeaderMap) {
    let mut values = headers.get_all(&X_AMZN_TRACE_ID).iter();
    if let (Some(first), None) = (values.next(), values.next()) {
        let bytes = first.as_bytes();
        if bytes.len() <= MAX_TRACE_ID
            && first.to_str().is_ok_and(|s| s.contains("Root="))
            && bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
        {
            return;
        }
    }
    headers.insert(X_AMZN_TRACE_ID.clone(), new_trace_id());
}

#[cfg(test)]
mod tests;
