//! AWS Signature Version 4 *verification* of API requests signed in the `Authorization`
//! header (`AWS4-HMAC-SHA256`), as App Runner and other non-S3 services check them: the
//! credential scope must name our region and service, the request time must be close to
//! ours, every `x-amz-*` header must be signed, and the signature must match the one we
//! compute from the access key's secret.
//!
//! This module owns parsing the `Authorization` header, building the canonical request
//! and the string to sign, and comparing signatures in constant time. The HMAC key
//! derivation and the HMAC itself come from `aws-sigv4`, which only signs.
//!
//! It must never log, return or put into an error message the secret access key, the
//! signing key or the signature it expected: a caller who could read those could forge
//! requests. Errors say *what* is wrong in AWS's words, never what the right answer was.
//! It must never panic on any input either: every malformed request is an [`AuthError`].

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_sigv4::sign::v4::{calculate_signature, generate_signing_key};
use http::HeaderMap;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};
use sha2::{Digest, Sha256};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

/// The only signing algorithm runway accepts (SigV4a's `AWS4-ECDSA-P256-SHA256` is not).
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The last component of every SigV4 credential scope.
const TERMINATOR: &str = "aws4_request";
const SECURITY_TOKEN: &str = "x-amz-security-token";
const CONTENT_SHA256: &str = "x-amz-content-sha256";
const AMZ_DATE: &str = "x-amz-date";

/// RFC 3986's unreserved characters are the only ones SigV4 leaves unencoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// Path segments are encoded one by one, so the separators survive.
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// `X-Amz-Date` and the string to sign use ISO 8601 basic format.
const AMZ_DATE_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");
/// The credential scope's date.
const SCOPE_DATE_FORMAT: &[BorrowedFormatItem<'static>] = format_description!("[year][month][day]");
/// The HTTP `Date` header (RFC 1123 / IMF-fixdate), the fallback when `X-Amz-Date` is absent.
const HTTP_DATE_FORMAT: &[BorrowedFormatItem<'static>] = format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// Attacker-chosen text echoed in messages is cut to this many characters, so that an
/// error answer cannot be made arbitrarily large.
const MAX_ECHO: usize = 64;

/// What the verifier needs of an HTTP request.
///
/// `headers` must hold the request's `Host` header as received (over HTTP/2, the caller
/// puts `:authority` there), because every signature covers it.
#[derive(Clone, Copy)]
pub struct RequestParts<'a> {
    /// The method as received, e.g. `POST`.
    pub method: &'a str,
    /// The raw path as received, still percent-encoded, e.g. `/`.
    pub path: &'a str,
    /// The raw query string without the `?`.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

// Header values and bodies may hold tokens and secrets, so Debug shows only their shape.
impl fmt::Debug for RequestParts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestParts")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// What the server requires of a signature.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// The only region accepted in the credential scope.
    pub region: &'a str,
    /// The only service accepted in the credential scope: `apprunner` in production.
    pub service: &'a str,
    /// The server's current time.
    pub now: SystemTime,
    /// How far the request time may be from `now`, either way: 15 minutes at AWS.
    pub max_skew: Duration,
}

/// Why a request is not authenticated. Every variant is answered with HTTP 403 and the
/// AWS error type of [`AuthError::type_name`]; the Display form is the AWS-style message.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The request carries no `Authorization` header.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,
    /// The `Authorization` header, or the date it relies on, is malformed or incomplete.
    #[error("{0}")]
    IncompleteSignature(String),
    /// The access key is unknown, or the request carries a session token, which runway
    /// never issues. Clients are told the same either way; the reason is for logs.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient(UnrecognizedReason),
    /// The signature is well formed but does not authenticate this request here and now.
    #[error("{0}")]
    InvalidSignature(String),
}

/// Why a client was not recognised (never shown to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnrecognizedReason {
    /// No access key has this id.
    UnknownAccessKey,
    /// The request has an `X-Amz-Security-Token` header.
    SessionToken,
}

impl AuthError {
    /// The AWS error type (`__type`) of this error.
    pub fn type_name(&self) -> &'static str {
        match self {
            AuthError::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            AuthError::IncompleteSignature(_) => "IncompleteSignatureException",
            AuthError::UnrecognizedClient(_) => "UnrecognizedClientException",
            AuthError::InvalidSignature(_) => "InvalidSignatureException",
        }
    }

    /// The HTTP status AWS answers every authentication failure with.
    pub fn status(&self) -> http::StatusCode {
        http::StatusCode::FORBIDDEN
    }
}

fn incomplete(message: impl Into<String>) -> AuthError {
    AuthError::IncompleteSignature(message.into())
}

fn invalid(message: impl Into<String>) -> AuthError {
    AuthError::InvalidSignature(message.into())
}

fn signature_mismatch() -> AuthError {
    invalid(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method.",
    )
}

/// Verifies the request's `Authorization: AWS4-HMAC-SHA256 ...` header. `secret_for` is
/// called (at most once, and only for a well-formed, timely request) with the access key
/// id and returns its secret access key, or `None` if the key is unknown. Returns the
/// access key id on success.
pub fn verify(
    req: &RequestParts<'_>,
    policy: &Policy<'_>,
    secret_for: impl FnOnce(&str) -> Option<String>,
) -> Result<String, AuthError> {
    let header = authorization_header(req)?;
    let auth = parse_authorization(header)?;
    check_scope(&auth, policy)?;
    // Checked before anything about the signature: runway issues no session tokens, so a
    // request with one comes from credentials we cannot know, whatever it signed.
    if req.headers.contains_key(SECURITY_TOKEN) {
        return Err(AuthError::UnrecognizedClient(
            UnrecognizedReason::SessionToken,
        ));
    }
    let time = request_time(req.headers)?;
    if time.amz_date.get(..8) != Some(auth.scope_date) {
        return Err(invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
             HTTP: '{}' != '{}', from '{}'.",
            auth.scope_date,
            time.amz_date.get(..8).unwrap_or_default(),
            time.amz_date
        )));
    }
    check_skew(&time, policy)?;
    check_signed_headers(&auth.signed_headers, req.headers, time.source)?;
    let payload_hash = hex_sha256(req.body);
    check_content_sha256(req.headers, &payload_hash)?;
    if !is_plausible_key_id(auth.access_key_id) {
        return Err(AuthError::UnrecognizedClient(
            UnrecognizedReason::UnknownAccessKey,
        ));
    }
    let creq = build_canonical_request(req, &auth.signed_headers, &payload_hash)?;
    let scope = format!(
        "{}/{}/{}/{TERMINATOR}",
        auth.scope_date, auth.region, auth.service
    );
    let sts = string_to_sign(&time.amz_date, &scope, &creq);
    let signing_day = scope_day(auth.scope_date)?;

    let Some(secret) = secret_for(auth.access_key_id) else {
        return Err(AuthError::UnrecognizedClient(
            UnrecognizedReason::UnknownAccessKey,
        ));
    };
    let signing_key = generate_signing_key(&secret, signing_day, auth.region, auth.service);
    let expected = calculate_signature(signing_key, sts.as_bytes());
    // Constant time, so that response timing tells nothing about how close a guess was.
    verify_slices_are_equal(expected.as_bytes(), auth.signature.as_bytes())
        .map_err(|_| signature_mismatch())?;
    Ok(auth.access_key_id.to_owned())
}

/// The SigV4 canonical request of `req` for a non-S3 service, covering the headers in
/// `signed_headers` (lowercase and sorted, as in the `Authorization` header): method,
/// normalised and double-encoded path, sorted query, canonical headers, signed header
/// list and the hex SHA-256 of the body.
///
/// Fails if a listed header is absent or has a value that is not UTF-8.
pub fn canonical_request(
    req: &RequestParts<'_>,
    signed_headers: &[&str],
) -> Result<String, AuthError> {
    build_canonical_request(req, signed_headers, &hex_sha256(req.body))
}

/// The SigV4 string to sign: the algorithm, the request time in ISO 8601 basic format
/// (`20150830T123600Z`), the credential scope (`20150830/us-east-1/service/aws4_request`)
/// and the hex SHA-256 of the canonical request, one per line.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex_sha256(canonical_request.as_bytes())
    )
}

fn build_canonical_request(
    req: &RequestParts<'_>,
    signed_headers: &[&str],
    payload_hash: &str,
) -> Result<String, AuthError> {
    let mut out = String::with_capacity(256 + req.path.len() + req.query.map_or(0, str::len));
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_uri(req.path));
    out.push('\n');
    out.push_str(&canonical_query(req.query));
    out.push('\n');
    for name in signed_headers {
        out.push_str(name);
        out.push(':');
        let mut values = req.headers.get_all(*name).iter().peekable();
        if values.peek().is_none() {
            return Err(invalid(format!(
                "SignedHeaders lists '{}', which is not a header of this request.",
                echo(name)
            )));
        }
        for (i, value) in values.enumerate() {
            let Ok(value) = std::str::from_utf8(value.as_bytes()) else {
                return Err(invalid(format!(
                    "The signed header '{}' has a value that is not valid UTF-8.",
                    echo(name)
                )));
            };
            if i > 0 {
                out.push(',');
            }
            push_trimmed(&mut out, value);
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    Ok(out)
}

/// Appends `value` without leading and trailing spaces and with each run of spaces
/// collapsed to one, as SigV4 canonical header values are. Obsolete line folding needs no
/// handling here: `HeaderValue` cannot hold line breaks, so the HTTP layer has already
/// either rejected or unfolded such values.
fn push_trimmed(out: &mut String, value: &str) {
    let mut after_space = false;
    for c in value.trim_matches(' ').chars() {
        if c == ' ' {
            if after_space {
                continue;
            }
            after_space = true;
        } else {
            after_space = false;
        }
        out.push(c);
    }
}

/// The canonical URI of a non-S3 request: the path with `.`/`..` segments removed and
/// duplicate slashes collapsed, then percent-encoded *again*, so that the `%` of an
/// already-encoded character becomes `%25` (AWS's "double encoding" for all services but
/// S3, which the SDKs sign and the test vectors expect).
fn canonical_uri(path: &str) -> String {
    percent_encode(normalize_path(path).as_bytes(), PATH).to_string()
}

/// RFC 3986 section 5.2.4 dot-segment removal plus empty-segment removal, keeping a
/// trailing slash (also the one implied by a final `.` or `..`).
fn normalize_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    let trailing_slash = path.ends_with('/')
        || path.ends_with("/.")
        || path.ends_with("/..")
        || path == "."
        || path == "..";
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

/// The canonical query string: each parameter decoded and re-encoded with only the
/// unreserved set left bare, `key=` for a parameter without a value, sorted by encoded key
/// then value.
fn canonical_query(query: Option<&str>) -> String {
    let Some(query) = query else {
        return String::new();
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                reencode_query_component(key),
                reencode_query_component(value),
            )
        })
        .collect();
    pairs.sort_unstable();
    let mut out = String::with_capacity(query.len() + 16);
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Decodes a query component the way the SDKs' signers do (form encoding: `+` is a
/// space, `%2B` a plus) and encodes it canonically, so `%7E`, `~` and `%7e` sign alike.
fn reencode_query_component(component: &str) -> String {
    let plus_as_space = component.replace('+', " ");
    let bytes: Vec<u8> = percent_decode(plus_as_space.as_bytes()).collect();
    percent_encode(&bytes, UNRESERVED).to_string()
}

fn decoded_query_keys(query: &str) -> impl Iterator<Item = Vec<u8>> + '_ {
    query
        .split('&')
        .map(|pair| pair.split_once('=').map_or(pair, |(key, _)| key))
        .map(|key| percent_decode(key.as_bytes()).collect())
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `text` as echoed back in an error message: cut short, since it comes from the client.
fn echo(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The value of header `name` if the request has exactly one, as text.
fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &str,
    display: &str,
) -> Result<Option<&'h str>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(incomplete(format!(
            "The request has more than one '{display}' header."
        )));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| incomplete(format!("The '{display}' header must be printable ASCII.")))
}

fn authorization_header<'h>(req: &RequestParts<'h>) -> Result<&'h str, AuthError> {
    match single_header(req.headers, "authorization", "Authorization")? {
        Some(value) => Ok(value),
        None => {
            let presigned = req.query.is_some_and(|query| {
                decoded_query_keys(query).any(|key| {
                    key.eq_ignore_ascii_case(b"X-Amz-Signature")
                        || key.eq_ignore_ascii_case(b"X-Amz-Credential")
                })
            });
            if presigned {
                Err(incomplete(
                    "Query string (presigned URL) authentication is not supported; sign the request \
                     with an 'Authorization: AWS4-HMAC-SHA256 ...' header instead.",
                ))
            } else {
                Err(AuthError::MissingAuthenticationToken)
            }
        }
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug)]
struct Authorization<'h> {
    access_key_id: &'h str,
    /// `YYYYMMDD`, checked to be a real date.
    scope_date: &'h str,
    region: &'h str,
    service: &'h str,
    /// As listed, each a valid header name; `check_signed_headers` checks the rest.
    signed_headers: Vec<&'h str>,
    /// 64 lowercase hexadecimal digits.
    signature: String,
}

fn parse_authorization(header: &str) -> Result<Authorization<'_>, AuthError> {
    let header = header.trim_matches([' ', '\t']);
    let (algorithm, rest) = header.split_once([' ', '\t']).unwrap_or((header, ""));
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "Unsupported Authorization algorithm '{}': only {ALGORITHM} is accepted.",
            echo(algorithm)
        )));
    }

    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for component in rest.split(',').map(|c| c.trim_matches([' ', '\t'])) {
        if component.is_empty() {
            continue;
        }
        let Some((name, value)) = component.split_once('=') else {
            return Err(incomplete(format!(
                "Authorization header component '{}' is not of the form name=value.",
                echo(component)
            )));
        };
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            other => {
                return Err(incomplete(format!(
                    "Authorization header has an unknown component '{}'; expected Credential, \
                     SignedHeaders and Signature.",
                    echo(other)
                )));
            }
        };
        if slot.replace(value).is_some() {
            return Err(incomplete(format!(
                "Authorization header has more than one '{name}' component."
            )));
        }
    }
    let missing: Vec<String> = [
        ("Credential", credential.is_none()),
        ("Signature", signature.is_none()),
        ("SignedHeaders", signed_headers.is_none()),
    ]
    .iter()
    .filter(|(_, absent)| *absent)
    .map(|(name, _)| format!("Authorization header requires '{name}' parameter."))
    .collect();
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(incomplete(missing.join(" ")));
    };

    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, scope_date, region, service, terminator] = parts[..] else {
        return Err(incomplete(format!(
            "Credential must have the form AccessKeyId/YYYYMMDD/region/service/{TERMINATOR}, \
             not '{}'.",
            echo(credential)
        )));
    };
    if access_key_id.is_empty() {
        return Err(incomplete("Credential has an empty access key id."));
    }
    if scope_date.len() != 8
        || !scope_date.bytes().all(|b| b.is_ascii_digit())
        || Date::parse(scope_date, SCOPE_DATE_FORMAT).is_err()
    {
        return Err(incomplete(format!(
            "Invalid credential date '{}'. Date is not the required format: yyyyMMdd.",
            echo(scope_date)
        )));
    }
    if terminator != TERMINATOR {
        return Err(incomplete(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{}'.",
            echo(terminator)
        )));
    }

    let signed_headers: Vec<&str> = signed_headers.split(';').collect();
    for name in &signed_headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(incomplete(format!(
                "SignedHeaders must be a ';'-separated list of header names; '{}' is not one.",
                echo(name)
            )));
        }
    }

    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(incomplete("Signature must be 64 hexadecimal digits."));
    }

    Ok(Authorization {
        access_key_id,
        scope_date,
        region,
        service,
        signed_headers,
        signature: signature.to_ascii_lowercase(),
    })
}

/// Region and service are checked against the policy; answered as AWS does, with
/// InvalidSignature (the header is well formed, it just is not for us).
fn check_scope(auth: &Authorization<'_>, policy: &Policy<'_>) -> Result<(), AuthError> {
    if auth.region != policy.region {
        return Err(invalid(format!(
            "Credential should be scoped to a valid region, not '{}'.",
            echo(auth.region)
        )));
    }
    if auth.service != policy.service {
        return Err(invalid(format!(
            "Credential should be scoped to correct service: '{}'.",
            policy.service
        )));
    }
    Ok(())
}

/// Which header the request time came from: that header must be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateSource {
    AmzDate,
    HttpDate,
}

#[derive(Debug)]
struct RequestTime {
    at: OffsetDateTime,
    /// `at` in ISO 8601 basic format, as the string to sign has it.
    amz_date: String,
    source: DateSource,
}

fn request_time(headers: &HeaderMap) -> Result<RequestTime, AuthError> {
    if let Some(value) = single_header(headers, AMZ_DATE, "X-Amz-Date")? {
        let well_formed = value.len() == 16
            && value.bytes().enumerate().all(|(i, b)| match i {
                8 => b == b'T',
                15 => b == b'Z',
                _ => b.is_ascii_digit(),
            });
        let at = well_formed
            .then(|| PrimitiveDateTime::parse(value, AMZ_DATE_FORMAT).ok())
            .flatten()
            .ok_or_else(|| {
                incomplete(format!(
                    "X-Amz-Date must be in ISO-8601 basic format (YYYYMMDD'T'HHMMSS'Z'). Got '{}'.",
                    echo(value)
                ))
            })?;
        return Ok(RequestTime {
            at: at.assume_utc(),
            amz_date: value.to_owned(),
            source: DateSource::AmzDate,
        });
    }
    if let Some(value) = single_header(headers, "date", "Date")? {
        let at = PrimitiveDateTime::parse(value.trim(), HTTP_DATE_FORMAT)
            .map_err(|_| {
                incomplete(format!(
                    "The Date header must be an RFC 1123 date such as 'Sun, 30 Aug 2015 12:36:00 GMT'. \
                     Got '{}'.",
                    echo(value)
                ))
            })?
            .assume_utc();
        let amz_date = at
            .format(AMZ_DATE_FORMAT)
            .map_err(|_| incomplete("The Date header is out of range."))?;
        return Ok(RequestTime {
            at,
            amz_date,
            source: DateSource::HttpDate,
        });
    }
    Err(incomplete(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    ))
}

fn check_skew(time: &RequestTime, policy: &Policy<'_>) -> Result<(), AuthError> {
    let Some(now) = offset_date_time(policy.now) else {
        return Err(invalid(
            "The server clock is out of range; the signature cannot be checked.",
        ));
    };
    let skew = time::Duration::try_from(policy.max_skew).unwrap_or(time::Duration::MAX);
    let behind = now - time.at;
    let fmt = |t: Option<OffsetDateTime>| {
        t.and_then(|t| t.format(AMZ_DATE_FORMAT).ok())
            .unwrap_or_else(|| "?".to_owned())
    };
    if behind > skew {
        return Err(invalid(format!(
            "Signature expired: {} is now earlier than {} ({} - {}).",
            time.amz_date,
            fmt(now.checked_sub(skew)),
            fmt(Some(now)),
            describe(policy.max_skew)
        )));
    }
    if behind < -skew {
        return Err(invalid(format!(
            "Signature not yet current: {} is still later than {} ({} + {}).",
            time.amz_date,
            fmt(now.checked_add(skew)),
            fmt(Some(now)),
            describe(policy.max_skew)
        )));
    }
    Ok(())
}

fn describe(skew: Duration) -> String {
    let secs = skew.as_secs();
    if secs.is_multiple_of(60) && skew.subsec_nanos() == 0 {
        format!("{} min.", secs / 60)
    } else {
        format!("{secs} sec.")
    }
}

fn offset_date_time(t: SystemTime) -> Option<OffsetDateTime> {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => OffsetDateTime::UNIX_EPOCH.checked_add(time::Duration::try_from(after).ok()?),
        Err(before) => OffsetDateTime::UNIX_EPOCH
            .checked_sub(time::Duration::try_from(before.duration()).ok()?),
    }
}

/// Midnight UTC of the scope date, which is all `generate_signing_key` reads of its time.
fn scope_day(scope_date: &str) -> Result<SystemTime, AuthError> {
    let day = Date::parse(scope_date, SCOPE_DATE_FORMAT)
        .map_err(|_| incomplete("Invalid credential date."))?;
    let secs = day.midnight().assume_utc().unix_timestamp();
    let t = match u64::try_from(secs) {
        Ok(after) => SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(after)),
        Err(_) => SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs())),
    };
    t.ok_or_else(|| incomplete("Invalid credential date."))
}

/// What the signature must cover for the request to mean what it says: `host`, every
/// `x-amz-*` header (they steer the operation and the date), the `Date` header when it is
/// the request time; and nothing that is not there.
fn check_signed_headers(
    signed: &[&str],
    headers: &HeaderMap,
    source: DateSource,
) -> Result<(), AuthError> {
    for name in signed {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid(format!(
                "SignedHeaders must be lowercase; '{}' is not.",
                echo(name)
            )));
        }
    }
    for pair in signed.windows(2) {
        if pair[0] >= pair[1] {
            return Err(invalid(format!(
                "SignedHeaders must be sorted and without duplicates; '{}' comes after '{}'.",
                echo(pair[1]),
                echo(pair[0])
            )));
        }
    }
    let is_signed = |name: &str| signed.binary_search(&name).is_ok();
    if !is_signed("host") {
        return Err(invalid(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    let mut unsigned: Vec<&str> = headers
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|name| name.starts_with("x-amz-") && !is_signed(name))
        .collect();
    if source == DateSource::HttpDate && !is_signed("date") {
        unsigned.push("date");
    }
    if !unsigned.is_empty() {
        unsigned.sort_unstable();
        let messages: Vec<String> = unsigned
            .iter()
            .map(|name| format!("'{name}' must be a 'SignedHeader' in the AWS Authorization."))
            .collect();
        return Err(invalid(messages.join(" ")));
    }
    if let Some(absent) = signed.iter().find(|name| !headers.contains_key(**name)) {
        return Err(invalid(format!(
            "SignedHeaders lists '{}', which is not a header of this request.",
            echo(absent)
        )));
    }
    Ok(())
}

/// The body hash is always ours; a client's `x-amz-content-sha256` (which it signs) must
/// agree with it, so that no request claims a body it does not have (or `UNSIGNED-PAYLOAD`).
fn check_content_sha256(headers: &HeaderMap, payload_hash: &str) -> Result<(), AuthError> {
    let agrees = headers.get_all(CONTENT_SHA256).iter().all(|value| {
        value
            .as_bytes()
            .eq_ignore_ascii_case(payload_hash.as_bytes())
    });
    if agrees {
        Ok(())
    } else {
        Err(invalid(
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ))
    }
}

/// Access key ids are upper-case letters and digits at AWS and at runway; anything else
/// cannot name a key, so it is not worth a lookup.
/// The access key id a request's `Authorization` header names, if it names a plausible
/// one (for logs of failed requests: never a secret, never arbitrary text).
pub fn claimed_key_id(headers: &HeaderMap) -> Option<&str> {
    let header = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let auth = parse_authorization(header).ok()?;
    is_plausible_key_id(auth.access_key_id).then_some(auth.access_key_id)
}

fn is_plausible_key_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests;
