//! The host a request is for, from its Host header or its authority. Input straight from
//! the network: every byte sequence gets an answer, never a panic (fuzzed in `fuzz/`).

use http::Request;
use std::borrow::Cow;

/// Longest host name accepted (a DNS name is at most 253 characters).
const MAX_HOST: usize = 253;

/// Why a host is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Neither a Host header nor an authority.
    #[error("no host")]
    Missing,
    /// More than one Host header.
    #[error("more than one Host header")]
    Duplicate,
    /// Characters or a shape a host name cannot have.
    #[error("malformed host")]
    Malformed,
    /// A port that is not a number from 0 to 65535.
    #[error("malformed port")]
    Port,
}

/// Parses a Host header value or an authority (`host[:port]`, `[v6]:port`) into the
/// host name routes are keyed by: lowercase, without port or trailing dot. IP literals
/// are returned as written (lowercased), brackets included for IPv6.
pub fn parse_host(value: &[u8]) -> Result<Cow<'_, str>, HostError> {
    if value.is_empty() {
        return Err(HostError::Missing);
    }
    let (host, port) = if value[0] == b'[' {
        let end = value
            .iter()
            .position(|&b| b == b']')
            .ok_or(HostError::Malformed)?;
        let inner = &value[1..end];
        // 45 characters is the longest IPv6 address text (with an IPv4 tail).
        if inner.is_empty()
            || inner.len() > 45
            || !inner
                .iter()
                .all(|b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.')
        {
            return Err(HostError::Malformed);
        }
        let rest = &value[end + 1..];
        let port = match rest {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return Err(HostError::Malformed),
        };
        (&value[..=end], port)
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(i) => (&value[..i], Some(&value[i + 1..])),
            None => (value, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
            return Err(HostError::Port);
        }
        let n = port.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
        if n > 65535 {
            return Err(HostError::Port);
        }
    }
    let host = if host.first() != Some(&b'[') {
        let host = host.strip_suffix(b".").unwrap_or(host);
        if host.is_empty() || host.len() > MAX_HOST {
            return Err(HostError::Malformed);
        }
        let mut prev = b'.';
        for &b in host {
            let ok = b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.';
            // Empty labels ("a..b", ".a") are not names.
            if !ok || (b == b'.' && prev == b'.') {
                return Err(HostError::Malformed);
            }
            prev = b;
        }
        host
    } else {
        host
    };
    // Validated as ASCII above, so this cannot fail; the error arm is for the type.
    let text = std::str::from_utf8(host).map_err(|_| HostError::Malformed)?;
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        Ok(Cow::Owned(text.to_ascii_lowercase()))
    } else {
        Ok(Cow::Borrowed(text))
    }
}

/// The host of a request: the URI's authority when it has one (HTTP/2, or an HTTP/1.1
/// request in absolute form), else the single Host header.
pub fn request_host<B>(req: &Request<B>) -> Result<Cow<'_, str>, HostError> {
    if let Some(authority) = req.uri().authority() {
        // An authority with user info ("user@host") is not a host a client may send.
        if authority.as_str().contains('@') {
            return Err(HostError::Malformed);
        }
        return parse_host(authority.as_str().as_bytes());
    }
    let mut values = req.headers().get_all(http::header::HOST).iter();
    let first = values.next().ok_or(HostError::Missing)?;
    if values.next().is_some() {
        return Err(HostError::Duplicate);
    }
    parse_host(first.as_bytes())
}

#[cfg(test)]
mod tests;
