//! What the router needs of gRPC over HTTP/2: telling gRPC requests apart, their
//! `grpc-timeout`, and the statuses and trailers-only responses the router answers them
//! with itself (a gRPC client reads the status from `grpc-status`, never from an HTML
//! page). Input straight from the network: no panic on any header (fuzzed in `fuzz/`).

use http::HeaderMap;
use http::header;

/// Whether a request (or response) with `headers` is gRPC: its content type is
/// `application/grpc` or one of its variants (`+proto`, `+json`, `-web`, ...).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

#[cfg(test)]
mod tests;
