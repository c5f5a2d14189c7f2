//! What the router needs of gRPC over HTTP/2: telling gRPC requests apart, their
//! `grpc-timeout`, and the statuses and trailers-only responses the router answers them
//! with itself (a gRPC client reads the status from `grpc-status`, never from an HTML
//! page). Input straight from the network: no panic on any header (fuzzed in `fuzz/`).

use http::HeaderMap;
use http::header::{self, HeaderValue};
use std::time::Duration;

/// The `grpc-timeout` header.
pub(crate) static GRPC_TIMEOUT: header::HeaderName =
    header::HeaderName::from_static("grpc-timeout");
/// The `grpc-status` header or trailer.
pub(crate) static GRPC_STATUS: header::HeaderName = header::HeaderName::from_static("grpc-status");
/// The `grpc-message` header or trailer.
pub(crate) static GRPC_MESSAGE: header::HeaderName =
    header::HeaderName::from_static("grpc-message");

/// gRPC status codes the router answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Code {
    Internal = 13,
    Unavailable = 14,
    DeadlineExceeded = 4,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Cancelled = 1,
}

/// Whether a request (or response) with `headers` is gRPC: its content type is
/// `application/grpc` or one of its variants (`+proto`, `+json`, `-web`, ...).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
/// None for anything else, which gRPC says to treat as no timeout.
pub fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The timeout a gRPC request's client set, if any.
pub(crate) fn timeout(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(&GRPC_TIMEOUT)
        .and_then(|v| parse_timeout(v.as_bytes()))
}

/// `message` percent-encoded as `grpc-message` wants it (printable ASCII but `%` as is).
pub(crate) fn encode_message(message: &str) -> HeaderValue {
    let mut out = Vec::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.push(b'%');
            out.push(crate::text::HEX[usize::from(b >> 4)].to_ascii_uppercase());
            out.push(crate::text::HEX[usize::from(b & 0xf)].to_ascii_uppercase());
        }
    }
    HeaderValue::from_maybe_shared(bytes::Bytes::from(out)).unwrap_or(HeaderValue::from_static(""))
}

/// Sets `grpc-status` and `grpc-message` in `headers` (trailers, or the headers of a
/// trailers-only response).
pub(crate) fn set_status(headers: &mut HeaderMap, code: Code, message: &str) {
    headers.insert(
        GRPC_STATUS.clone(),
        HeaderValue::from(u16::from(code as u8)),
    );
    headers.insert(GRPC_MESSAGE.clone(), encode_message(message));
}

#[cfg(test)]
mod tests;
