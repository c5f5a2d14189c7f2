//! Blobs and blob uploads: `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>` (with Range),
//! and uploads: `POST .../blobs/uploads/` (new session, single-request monolithic push,
//! cross-repository mount), `PATCH` chunks (`Content-Range` checked: out of order is
//! 416), `PUT ?digest=` to close, `GET` for status, `DELETE` to cancel.

use super::access::{self, Principal};
use super::body::FileBody;
use super::{Answer, Code, Fault, empty, header, param, query};
use crate::digest::{Algorithm, Digest};
use crate::upload::{AppendError, Session};
use crate::{Registry, RegistryError};
use axum::body::Body;
use axum::response::Response;
use http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use http::{HeaderMap, HeaderValue, StatusCode};
use uuid::Uuid;

pub(crate) fn parse_digest(s: &str) -> Result<Digest, Fault> {
    Digest::parse(s).map_err(|e| Fault::new(Code::DigestInvalid, e.to_string()))
}

/// A byte range request: `bytes=a-b`, `bytes=a-`, `bytes=-n`. `Ok(None)` means serve
/// everything (no header, or a form we choose to ignore, such as several ranges).
fn range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = header(headers, RANGE) else {
        return Ok(None);
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (false, _) => {
            let start: u64 = a.parse().map_err(|_| ())?;
            let end = if b.is_empty() {
                size.saturating_sub(1)
            } else {
                b.parse::<u64>()
                    .map_err(|_| ())?
                    .min(size.saturating_sub(1))
            };
            (start, end)
        }
        (true, false) => {
            let n: u64 = b.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (true, true) => return Err(()),
    };
    if start >= size || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

pub(crate) async fn get(
    registry: &Registry,
    name: &str,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> Answer {
    let digest = parse_digest(digest)?;
    let unknown = || Fault::new(Code::BlobUnknown, format!("blob {digest} is not in {name}"));
    let Some(size) = registry.linked_blob(name, &digest).await? else {
        return Err(unknown());
    };
    let (status, start, len) = match range(headers, size) {
        Ok(None) => (StatusCode::OK, 0, size),
        Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
        Err(()) => {
            return Err(Fault::new(
                Code::BlobUnknown,
                format!("the requested range is not within the blob's {size} bytes"),
            )
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(CONTENT_RANGE, &format!("bytes */{size}")));
        }
    };
    let mut response = if head {
        Response::new(Body::empty())
    } else {
        let path = registry.inner.blobs.path(&digest);
        let file = match tokio::task::spawn_blocking(move || std::fs::File::open(path)).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return Err(unknown()),
            Ok(Err(e)) => return Err(Fault::internal(e)),
            Err(e) => return Err(Fault::internal(e)),
        };
        Response::new(Body::new(FileBody::new(
            file,
            start,
            len,
            registry.inner.metrics.sent.clone(),
        )))
    };
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
        h.insert("docker-content-digest", v.clone());
        h.insert(
            http::header::ETAG,
            HeaderValue::from_str(&format!("\"{digest}\"")).unwrap_or(v),
        );
    }
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{}/{size}", start + len - 1);
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

pub(crate) async fn delete(registry: &Registry, name: &str, digest: &str) -> Answer {
    let digest = parse_digest(digest)?;
    if registry.unlink_blob(name, &digest).await? {
        Ok(empty(StatusCode::ACCEPTED, &[]))
    } else {
        Err(Fault::new(
            Code::BlobUnknown,
            format!("blob {digest} is not in {name}"),
        ))
    }
}

fn upload_location(name: &str, id: Uuid) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// `0-<last byte>`, as distribution writes it (`0-0` when empty).
fn range_value(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn progress(status: StatusCode, name: &str, session: &Session) -> Response {
    empty(
        status,
        &[
            ("location", upload_location(name, session.id)),
            ("range", range_value(session.offset)),
            ("docker-upload-uuid", session.id.to_string()),
        ],
    )
}

fn created(name: &str, digest: &Digest) -> Response {
    empty(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/blobs/{digest}")),
            ("docker-content-digest", digest.to_string()),
        ],
    )
}

fn upload_unknown(id: &str) -> Fault {
    Fault::new(
        Code::BlobUploadUnknown,
        format!(
            "upload {:?} is unknown (finished, cancelled or expired)",
            id.chars().take(64).collect::<String>()
        ),
    )
}

fn io_fault(e: std::io::Error) -> Fault {
    Fault::internal(RegistryError::Io {
        context: "upload".into(),
        source: e,
    })
}

/// `POST /v2/<name>/blobs/uploads/`
pub(crate) async fn start(
    registry: &Registry,
    principal: &Principal,
    name: &str,
    parts: &http::request::Parts,
    body: Body,
) -> Answer {
    let q = query(&parts.uri);
    if let Some(mount) = param(&q, "mount") {
        let digest = parse_digest(mount)?;
        if let Some(from) = param(&q, "from")
            && crate::names::is_repository(from)
            && access::may_pull(registry, principal, from).await
            && registry.mount(from, name, &digest).await?
        {
            return Ok(created(name, &digest));
        }
        // Not mountable: the client uploads instead (202 below), as the spec says.
    }
    let monolithic = param(&q, "digest").map(parse_digest).transpose()?;
    let algorithm = match (&monolithic, param(&q, "digest-algorithm")) {
        (Some(d), _) => d.algorithm(),
        (None, Some(a)) => Algorithm::parse(a).ok_or_else(|| {
            Fault::new(
                Code::DigestInvalid,
                format!("digest algorithm {a:?} is not supported (use sha256 or sha512)"),
            )
        })?,
        (None, None) => Algorithm::Sha256,
    };
    let id = registry
        .inner
        .uploads
        .create(name, algorithm)
        .await
        .map_err(io_fault)?;
    let slot = registry
        .inner
        .uploads
        .session(id)
        .await
        .map_err(io_fault)?
        .ok_or_else(|| upload_unknown(&id.to_string()))?;
    let mut session = slot.lock().await;
    match monolithic {
        None => Ok(progress(StatusCode::ACCEPTED, name, &session)),
        Some(digest) => {
            let result = async {
                append(registry, &mut session, &parts.headers, body, None).await?;
                close(registry, name, &mut session, &digest).await
            }
            .await;
            if result.is_err() && !session.gone {
                let _ = registry.inner.uploads.remove(&mut session).await;
            }
            result
        }
    }
}

/// The session `id`; whether it belongs to the repository is checked under its lock
/// (see [`live`]).
async fn open(
    registry: &Registry,
    id: &str,
) -> Result<std::sync::Arc<tokio::sync::Mutex<Session>>, Fault> {
    let uuid = Uuid::parse_str(id).map_err(|_| upload_unknown(id))?;
    let slot = registry
        .inner
        .uploads
        .session(uuid)
        .await
        .map_err(io_fault)?
        .ok_or_else(|| upload_unknown(id))?;
    Ok(slot)
}

fn live(session: &Session, name: &str, id: &str) -> Result<(), Fault> {
    if session.gone || session.repository != name {
        return Err(upload_unknown(id));
    }
    Ok(())
}

/// `Content-Range: <start>-<end>` (the spec's form; `bytes ` prefixes and `/total`
/// suffixes are tolerated).
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, Fault> {
    let Some(value) = headers.get(CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        Fault::new(
            Code::BlobUploadInvalid,
            "Content-Range must be <start>-<end>, inclusive",
        )
    };
    let s = value.to_str().map_err(|_| bad())?.trim();
    let s = s.strip_prefix("bytes").map(str::trim_start).unwrap_or(s);
    let s = s.strip_prefix('=').unwrap_or(s).trim();
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end: u64 = b.trim().parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok(Some((start, end)))
}

/// The 416 for a chunk that does not start where the upload ends.
fn out_of_order(name: &str, session: &Session, start: u64) -> Fault {
    Fault::new(
        Code::BlobUploadInvalid,
        format!(
            "the chunk starts at byte {start} but the upload has {} bytes; send from byte {}",
            session.offset, session.offset
        ),
    )
    .status(StatusCode::RANGE_NOT_SATISFIABLE)
    .header(http::header::LOCATION, &upload_location(name, session.id))
    .header("range", &range_value(session.offset))
    .header("docker-upload-uuid", &session.id.to_string())
}

/// Streams `body` into the session; `exact` is the chunk length its Content-Range
/// announced.
async fn append(
    registry: &Registry,
    session: &mut Session,
    headers: &HeaderMap,
    body: Body,
    exact: Option<u64>,
) -> Result<(), Fault> {
    let received = registry.inner.metrics.received.clone();
    let limit = registry.inner.config.max_upload_size;
    let too_large = |limit: u64| {
        Fault::new(
            Code::SizeInvalid,
            format!("the blob exceeds the upload limit of {limit} bytes; the upload was cancelled"),
        )
        .status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    // Refused before a byte is read when the client says how much is coming.
    if header(headers, CONTENT_LENGTH)
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| session.offset.saturating_add(n) > limit)
    {
        let _ = registry.inner.uploads.remove(session).await;
        return Err(too_large(limit));
    }
    match registry
        .inner
        .uploads
        .append(session, body, exact, limit, &|n| {
            received.inc_by(n);
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(AppendError::Length { expected, got }) => Err(Fault::new(
            Code::SizeInvalid,
            format!("Content-Range announced {expected} bytes but the body had {got}"),
        )),
        Err(AppendError::TooLarge(limit)) => {
            let _ = registry.inner.uploads.remove(session).await;
            Err(too_large(limit))
        }
        Err(AppendError::Body(m)) => Err(Fault::new(Code::BlobUploadInvalid, m)),
        Err(AppendError::Io(e)) => Err(io_fault(e)),
    }
}

/// Verifies the whole upload against `digest` and commits it.
async fn close(registry: &Registry, name: &str, session: &mut Session, digest: &Digest) -> Answer {
    let ok = registry
        .inner
        .uploads
        .verify(session, digest)
        .await
        .map_err(io_fault)?;
    if !ok {
        // As distribution does: a failed close cancels the upload, so nothing of it
        // remains.
        let _ = registry.inner.uploads.remove(session).await;
        return Err(Fault::new(
            Code::DigestInvalid,
            format!("the uploaded content does not match digest {digest}"),
        )
        .detail(serde_json::json!({ "digest": digest.to_string() })));
    }
    registry.commit_upload(session, digest).await?;
    tracing::debug!(repository = name, digest = %digest, "blob committed");
    Ok(created(name, digest))
}

/// `GET <location>`: how far the upload got.
pub(crate) async fn status(registry: &Registry, name: &str, id: &str) -> Answer {
    let slot = open(registry, id).await?;
    let session = slot.lock().await;
    live(&session, name, id)?;
    Ok(progress(StatusCode::NO_CONTENT, name, &session))
}

/// `PATCH <location>`: one chunk (or the whole blob, streamed).
pub(crate) async fn patch(
    registry: &Registry,
    name: &str,
    id: &str,
    parts: &http::request::Parts,
    body: Body,
) -> Answer {
    let slot = open(registry, id).await?;
    let mut session = slot.lock().await;
    live(&session, name, id)?;
    let exact = match content_range(&parts.headers)? {
        Some((start, _)) if start != session.offset => {
            return Err(out_of_order(name, &session, start));
        }
        Some((start, end)) => Some(end - start + 1),
        None => None,
    };
    append(registry, &mut session, &parts.headers, body, exact).await?;
    Ok(progress(StatusCode::ACCEPTED, name, &session))
}

/// `PUT <location>?digest=`: the last chunk, if any, and the close.
pub(crate) async fn finish(
    registry: &Registry,
    name: &str,
    id: &str,
    parts: &http::request::Parts,
    body: Body,
) -> Answer {
    let q = query(&parts.uri);
    let digest = param(&q, "digest")
        .ok_or_else(|| Fault::new(Code::DigestInvalid, "the closing PUT needs ?digest="))
        .and_then(parse_digest)?;
    let slot = open(registry, id).await?;
    let mut session = slot.lock().await;
    live(&session, name, id)?;
    let exact = match content_range(&parts.headers)? {
        Some((start, _)) if start != session.offset => {
            return Err(out_of_order(name, &session, start));
        }
        Some((start, end)) => Some(end - start + 1),
        None => None,
    };
    let empty_body = header(&parts.headers, CONTENT_LENGTH) == Some("0");
    if !empty_body {
        append(registry, &mut session, &parts.headers, body, exact).await?;
    }
    close(registry, name, &mut session, &digest).await
}

/// `DELETE <location>`
pub(crate) async fn cancel(registry: &Registry, name: &str, id: &str) -> Answer {
    let slot = open(registry, id).await?;
    let mut session = slot.lock().await;
    live(&session, name, id)?;
    registry
        .inner
        .uploads
        .remove(&mut session)
        .await
        .map_err(io_fault)?;
    Ok(empty(StatusCode::NO_CONTENT, &[]))
}
