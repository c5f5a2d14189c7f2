//! A service's HTTP settings, a runway extension (App Runner has none): the protocol its
//! instances speak, how long a request may take, how long an upgraded connection or a
//! streaming response may stay silent, and the largest request body.
//!
//! Three places set them, per setting: runway's API (`Runway.UpdateServiceHttpConfiguration`,
//! stored in the service's spec), the source's `apprunner.yaml` (`run.network`, carried by
//! the revision a build made), and the defaults here. The API wins over `apprunner.yaml`,
//! which wins over the default: an operator's explicit choice overrides what the code
//! ships with, and a setting the API leaves unset follows the code.
//!
//! The CLI and `apprunner.yaml` write durations and sizes as text (`5m`, `32MiB`,
//! `unlimited`); [`parse_duration`] and [`parse_size`] read them for both.

use crate::shapes::HttpConfiguration;
use std::time::Duration;

/// App Runner's request timeout, the default.
pub const DEFAULT_REQUEST_TIMEOUT_SECONDS: i64 = 120;
/// The longest request timeout: 60 minutes.
pub const MAX_REQUEST_TIMEOUT_SECONDS: i64 = 60 * 60;
/// How long an upgraded connection or streaming response may be silent, by default.
pub const DEFAULT_IDLE_TIMEOUT_SECONDS: i64 = 15 * 60;
/// The longest idle timeout: 24 hours.
pub const MAX_IDLE_TIMEOUT_SECONDS: i64 = 24 * 60 * 60;
/// The largest request body by default: 32 MiB.
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: i64 = 32 * 1024 * 1024;
/// `MaxRequestBodyBytes` meaning no limit (bodies of any size stream through), as
/// nginx's `client_max_body_size 0`.
pub const UNLIMITED_REQUEST_BODY: i64 = 0;

/// The protocol a service's instances speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstanceProtocol {
    /// HTTP/1.1 (App Runner's only protocol).
    #[default]
    Http1,
    /// HTTP/2 over cleartext with prior knowledge: gRPC servers and other HTTP/2 apps.
    H2c,
}

impl InstanceProtocol {
    /// The values the API takes.
    pub const NAMES: &[&str] = &["HTTP1", "H2C"];

    /// The value as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceProtocol::Http1 => "HTTP1",
            InstanceProtocol::H2c => "H2C",
        }
    }

    /// Reads the API's spelling, or the CLI's and `apprunner.yaml`'s in any case
    /// (`h2c`, `http1`).
    pub fn parse(text: &str) -> Option<InstanceProtocol> {
        match text.to_ascii_uppercase().as_str() {
            "HTTP1" => Some(InstanceProtocol::Http1),
            "H2C" => Some(InstanceProtocol::H2c),
            _ => None,
        }
    }
}

/// The complete settings a revision is served with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    pub protocol: InstanceProtocol,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    /// The largest request body in bytes; `None` streams any size.
    pub max_request_body: Option<u64>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings::resolve(None, None)
    }
}

impl HttpSettings {
    /// The settings from what the API set, then what the source's `apprunner.yaml` set,
    /// then the defaults, member by member. Both inputs are validated already.
    pub fn resolve(
        api: Option<&HttpConfiguration>,
        source: Option<&HttpConfiguration>,
    ) -> HttpSettings {
        fn pick<T: Clone>(
            api: Option<&HttpConfiguration>,
            source: Option<&HttpConfiguration>,
            member: impl Fn(&HttpConfiguration) -> Option<T>,
        ) -> Option<T> {
            api.and_then(&member).or_else(|| source.and_then(&member))
        }
        let seconds = |v: i64| Duration::from_secs(v.max(1).unsigned_abs());
        let protocol = pick(api, source, |c| c.instance_protocol.clone())
            .and_then(|p| InstanceProtocol::parse(&p))
            .unwrap_or_default();
        let request = pick(api, source, |c| c.request_timeout_seconds)
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT_SECONDS);
        let idle =
            pick(api, source, |c| c.idle_timeout_seconds).unwrap_or(DEFAULT_IDLE_TIMEOUT_SECONDS);
        let body = pick(api, source, |c| c.max_request_body_bytes)
            .unwrap_or(DEFAULT_MAX_REQUEST_BODY_BYTES);
        HttpSettings {
            protocol,
            request_timeout: seconds(request),
            idle_timeout: seconds(idle),
            max_request_body: (body > UNLIMITED_REQUEST_BODY).then_some(body.unsigned_abs()),
        }
    }

    /// The settings as the API shows them, every member given.
    pub fn to_wire(&self) -> HttpConfiguration {
        HttpConfiguration {
            instance_protocol: Some(self.protocol.as_str().to_string()),
            request_timeout_seconds: Some(self.request_timeout.as_secs() as i64),
            idle_timeout_seconds: Some(self.idle_timeout.as_secs() as i64),
            max_request_body_bytes: Some(
                self.max_request_body
                    .map_or(UNLIMITED_REQUEST_BODY, |b| b as i64),
            ),
        }
    }
}

/// Checks a request timeout in seconds; the error says what is allowed.
pub fn check_request_timeout(seconds: i64) -> Result<(), String> {
    check_seconds(seconds, MAX_REQUEST_TIMEOUT_SECONDS)
}

/// Checks an idle timeout in seconds; the error says what is allowed.
pub fn check_idle_timeout(seconds: i64) -> Result<(), String> {
    check_seconds(seconds, MAX_IDLE_TIMEOUT_SECONDS)
}

fn check_seconds(seconds: i64, max: i64) -> Result<(), String> {
    if (1..=max).contains(&seconds) {
        Ok(())
    } else {
        Err(format!(
            "must be from 1 second to {} ({max} seconds), got {seconds}",
            format_duration(max)
        ))
    }
}

/// Checks a request body limit in bytes; the error says what is allowed.
pub fn check_max_request_body(bytes: i64) -> Result<(), String> {
    if bytes >= 0 {
        Ok(())
    } else {
        Err(format!(
            "must be a number of bytes, or {UNLIMITED_REQUEST_BODY} for unlimited, got {bytes}"
        ))
    }
}

/// Reads a duration in seconds: `300`, `90s`, `5m`, `2h`.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    scaled(text, &[("", 1), ("s", 1), ("m", 60), ("h", 3600)])
        .ok_or_else(|| format!("expected a duration such as 300, 90s, 5m or 2h, found {text:?}"))
}

/// Reads a size in bytes: `1048576`, `64KiB`, `32MiB`, `1GiB` (or `KB`, `MB`, `GB` in
/// powers of ten), or `unlimited` (which is [`UNLIMITED_REQUEST_BODY`]).
pub fn parse_size(text: &str) -> Result<i64, String> {
    if text.trim().eq_ignore_ascii_case("unlimited") {
        return Ok(UNLIMITED_REQUEST_BODY);
    }
    let units = [
        ("", 1),
        ("b", 1),
        ("kib", 1 << 10),
        ("mib", 1 << 20),
        ("gib", 1 << 30),
        ("tib", 1 << 40),
        ("kb", 1_000),
        ("mb", 1_000_000),
        ("gb", 1_000_000_000),
        ("tb", 1_000_000_000_000),
    ];
    scaled(text, &units).ok_or_else(|| {
        format!(
            "expected a size such as 1048576, 64KiB, 32MiB or 1GiB, or unlimited, found {text:?}"
        )
    })
}

/// A whole number followed by one of `units` (in any case), times the unit's scale.
fn scaled(text: &str, units: &[(&str, i64)]) -> Option<i64> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let unit = unit.trim().to_ascii_lowercase();
    let (_, scale) = units.iter().find(|(name, _)| *name == unit)?;
    digits.parse::<i64>().ok()?.checked_mul(*scale)
}

/// Seconds as the shortest exact text [`parse_duration`] reads (`2h`, `90s`).
pub fn format_duration(seconds: i64) -> String {
    match seconds {
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Bytes as the shortest exact text [`parse_size`] reads (`32MiB`, `unlimited`).
pub fn format_size(bytes: i64) -> String {
    if bytes == UNLIMITED_REQUEST_BODY {
        return "unlimited".into();
    }
    for (unit, scale) in [
        ("TiB", 1i64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if bytes % scale == 0 {
            return format!("{}{unit}", bytes / scale);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests;
