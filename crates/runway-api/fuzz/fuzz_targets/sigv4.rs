//! SigV4 verification sees every request before anything else: no request may make it
//! panic. The input is split into a request line, headers and a body, as on the wire.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runway_api::sigv4::{Policy, RequestParts, verify};
use std::time::{Duration, UNIX_EPOCH};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.splitn(2, ' ');
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut headers = http::HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.trim().as_bytes()),
                http::HeaderValue::from_str(value.trim()),
            ) {
                headers.append(name, value);
            }
        }
    }
    let request = RequestParts {
        method,
        path,
        query,
        headers: &headers,
        body: body.as_bytes(),
    };
    let policy = Policy {
        region: "us-east-1",
        service: "apprunner",
        now: UNIX_EPOCH + Duration::from_secs(1_440_938_160),
        max_skew: Duration::from_secs(15 * 60),
    };
    let _ = verify(&request, &policy, |id| {
        (id == "AKIDEXAMPLE").then(|| "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string())
    });
});
