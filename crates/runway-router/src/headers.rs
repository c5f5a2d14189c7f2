//! Header rewriting between client and instance: hop-by-hop headers removed,
//! X-Forwarded-*, X-Request-Id and X-Amzn-Trace-Id set. Input straight from the network:
//! no panic on any header map (fuzzed in `fuzz/`).

use crate::rand::next_u64;
use crate::text::{hex8, hex16, push_ip};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) static X_AMZN_TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");
pub(crate) static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
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
    if !headers.keys().any(is_hop_by_hop) {
        // An HTTP/2 WebSocket (extended CONNECT) has none, and needs one for HTTP/1.1.
        if upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
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

/// Whether [`strip_hop_by_hop`] removes a header named `name` whatever Connection says.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    ) || name.as_str().starts_with("proxy-")
}

/// What a request's header names say about the work its headers need, found in one pass
/// over them: most requests need none of it, and each lookup by name hashes the name.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RequestNames {
    /// A hop-by-hop header is present (see [`strip_hop_by_hop`]).
    pub hop_by_hop: bool,
    /// An Upgrade header is present.
    pub upgrade: bool,
    /// An Expect header is present.
    pub expect: bool,
}

impl RequestNames {
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let mut names = RequestNames::default();
        for name in headers.keys() {
            if is_hop_by_hop(name) {
                names.hop_by_hop = true;
                names.upgrade |= *name == header::UPGRADE;
            } else if *name == header::EXPECT {
                names.expect = true;
            }
        }
        names
    }
}

/// The client's address as header text (X-Forwarded-For's last element), made once per
/// connection.
pub(crate) fn client_value(client: IpAddr) -> HeaderValue {
    let mut text = Vec::with_capacity(15);
    push_ip(&mut text, client);
    // An address's text: always a valid value.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).unwrap_or(HeaderValue::from_static(""))
}

/// The length of a trace id the router makes: `Root=1-` and 8 + 1 + 24 hex digits.
const TRACE_ID_LEN: usize = 40;

/// What the router tells an instance about a request, in place of what the client said:
/// - Host: the host the request was routed by (its authority, if it had one, else its
///   Host header), whatever other Host the client sent;
/// - X-Forwarded-For: the client's address appended to what the client sent;
/// - X-Forwarded-Proto, X-Forwarded-Host, X-Real-IP (the client's address): replaced;
/// - X-Request-Id and X-Amzn-Trace-Id: the client's if sane, else new ones;
/// - Forwarded (RFC 7239): removed, since the router speaks X-Forwarded-* as App Runner
///   does and a client-written Forwarded would name whatever the client likes.
///
/// Worked out once from the client's headers without changing them, then either applied
/// to a header map ([`Forwarded::apply`]) or written straight into an HTTP/1.1 request
/// head ([`Forwarded::write`]), which saves the map's lookups, insertions and growth on
/// the pooled HTTP/1.1 path.
#[derive(Debug)]
pub(crate) struct Forwarded {
    /// X-Forwarded-For, which ends with the client's address.
    forwarded_for: HeaderValue,
    /// The length of the client's address at the end of `forwarded_for` (X-Real-IP).
    client_len: u8,
    proto: &'static str,
    host: HeaderValue,
    request_id: HeaderValue,
    /// Whether `request_id` replaces what the client sent (else it is the client's).
    new_request_id: bool,
    /// A new trace id, unless the client's is passed on.
    trace_id: Option<[u8; TRACE_ID_LEN]>,
    /// The request is gRPC (its content type says so), learnt in the same pass.
    pub grpc: bool,
}

impl Forwarded {
    /// Works out the headers for a request with `headers` from `client` (its address as
    /// [`client_value`] made it) over `proto`, for `host` as the client wrote it.
    pub(crate) fn new(
        headers: &HeaderMap,
        client: &HeaderValue,
        proto: &'static str,
        host: HeaderValue,
    ) -> Self {
        // One pass over the client's headers (a request has few) instead of a lookup,
        // with its hashing, for each of the four names.
        let mut xff: Vec<u8> = Vec::new();
        let mut ids = Seen::None;
        let mut traces = Seen::None;
        let mut grpc = false;
        for (name, value) in headers {
            if *name == header::CONTENT_TYPE {
                grpc = value.as_bytes().starts_with(b"application/grpc");
            } else if *name == X_FORWARDED_FOR {
                let text = value.as_bytes().trim_ascii();
                if !text.is_empty() {
                    xff.extend_from_slice(text);
                    xff.extend_from_slice(b", ");
                }
            } else if *name == X_REQUEST_ID {
                ids.see(value);
            } else if *name == X_AMZN_TRACE_ID {
                traces.see(value);
            }
        }
        let forwarded_for = if xff.is_empty() {
            client.clone()
        } else {
            xff.extend_from_slice(client.as_bytes());
            // Built from header values' bytes, separators and an address: valid.
            HeaderValue::from_maybe_shared(bytes::Bytes::from(xff))
                .unwrap_or_else(|_| client.clone())
        };
        let (request_id, new_request_id) = match ids {
            Seen::One(first) if valid_request_id(first) => (first.clone(), false),
            _ => (new_request_id(), true),
        };
        let trace_id = match traces {
            Seen::One(first) if valid_trace_id(first) => None,
            _ => Some(new_trace_id()),
        };
        Forwarded {
            client_len: client.len() as u8,
            forwarded_for,
            proto,
            host,
            request_id,
            new_request_id,
            trace_id,
            grpc,
        }
    }

    /// The client's address, as X-Forwarded-For ends with it.
    fn client(&self) -> &[u8] {
        let all = self.forwarded_for.as_bytes();
        &all[all.len().saturating_sub(usize::from(self.client_len))..]
    }

    /// The request's id, as the instance and the access log see it.
    pub(crate) fn request_id(&self) -> &HeaderValue {
        &self.request_id
    }

    /// Sets the headers in `headers` (again and again, if a request is retried).
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(header::HOST, self.host.clone());
        headers.remove(header::FORWARDED);
        if let Ok(client) = HeaderValue::from_bytes(self.client()) {
            headers.insert(X_REAL_IP.clone(), client);
        }
        headers.insert(X_FORWARDED_FOR.clone(), self.forwarded_for.clone());
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(self.proto),
        );
        headers.insert(X_FORWARDED_HOST.clone(), self.host.clone());
        if self.new_request_id {
            headers.insert(X_REQUEST_ID.clone(), self.request_id.clone());
        }
        if let Some(trace) = &self.trace_id
            && let Ok(value) = HeaderValue::from_bytes(trace)
        {
            headers.insert(X_AMZN_TRACE_ID.clone(), value);
        }
    }

    /// Whether a header of the client's request is replaced by one of these (then it is
    /// not passed on as it is).
    pub(crate) fn replaces(&self, name: &HeaderName) -> bool {
        // Standard and custom names differ at the first comparison, custom ones of other
        // lengths at the second: cheap for every header a request has.
        *name == header::HOST
            || *name == header::FORWARDED
            || *name == X_FORWARDED_FOR
            || *name == X_FORWARDED_PROTO
            || *name == X_FORWARDED_HOST
            || *name == X_REAL_IP
            || (self.new_request_id && *name == X_REQUEST_ID)
            || (self.trace_id.is_some() && *name == X_AMZN_TRACE_ID)
    }

    /// Writes the Host header as an HTTP/1.1 header line (first in a head, by custom).
    pub(crate) fn write_host(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(self.host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// Writes the other headers as HTTP/1.1 header lines.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        let mut line = |name: &HeaderName, value: &[u8]| {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        };
        line(&X_REAL_IP, self.client());
        line(&X_FORWARDED_FOR, self.forwarded_for.as_bytes());
        line(&X_FORWARDED_PROTO, self.proto.as_bytes());
        line(&X_FORWARDED_HOST, self.host.as_bytes());
        if self.new_request_id {
            line(&X_REQUEST_ID, self.request_id.as_bytes());
        }
        if let Some(trace) = &self.trace_id {
            line(&X_AMZN_TRACE_ID, trace);
        }
    }
}

/// How often a request names a header: a value is passed on only when it is named once.
enum Seen<'a> {
    None,
    One(&'a HeaderValue),
    Many,
}

impl<'a> Seen<'a> {
    fn see(&mut self, value: &'a HeaderValue) {
        *self = match self {
            Seen::None => Seen::One(value),
            _ => Seen::Many,
        };
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

fn valid_trace_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    bytes.len() <= MAX_TRACE_ID
        && bytes.windows(5).any(|w| w == b"Root=")
        && bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
}

/// A new random request id: 32 hex digits.
pub(crate) fn new_request_id() -> HeaderValue {
    let mut id = [0u8; 32];
    id[..16].copy_from_slice(&hex16(next_u64()));
    id[16..].copy_from_slice(&hex16(next_u64()));
    // Owned by a shared allocation from the start: the id is cloned for the access log
    // and the response, and a copied buffer would be reallocated on its first clone.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(id))
        .unwrap_or(HeaderValue::from_static("0"))
}

/// A new trace id in AWS X-Ray's format: `Root=1-<8 hex epoch seconds>-<24 hex>`.
fn new_trace_id() -> [u8; TRACE_ID_LEN] {
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut id = [0u8; TRACE_ID_LEN];
    id[..7].copy_from_slice(b"Root=1-");
    // The low 32 bits of the epoch seconds, as X-Ray writes them.
    id[7..15].copy_from_slice(&hex8(epoch as u32));
    id[15] = b'-';
    id[16..24].copy_from_slice(&hex8(next_u64() as u32));
    id[24..].copy_from_slice(&hex16(next_u64()));
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

#[cfg(test)]
mod tests;
