//! Manifests by tag and by digest: `GET`/`HEAD`/`PUT`/`DELETE
//! /v2/<name>/manifests/<reference>`.

use super::{Answer, Code, Fault, empty, header, query};
use crate::content::{PushError, Reference, ReferenceError};
use crate::digest::Digest;
use crate::{Registry, names};
use axum::body::Body;
use axum::response::Response;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};

fn reference(s: &str) -> Result<Reference, Fault> {
    Reference::parse(s).map_err(|e| match e {
        ReferenceError::Digest(m) => Fault::new(Code::DigestInvalid, m),
        ReferenceError::Tag(m) => Fault::new(Code::ManifestInvalid, m),
    })
}

async fn unknown(registry: &Registry, name: &str, reference: &Reference) -> Fault {
    if registry.repository_exists(name).await.unwrap_or(true) {
        Fault::new(
            Code::ManifestUnknown,
            format!("manifest {reference} is not in {name}"),
        )
    } else {
        Fault::new(
            Code::NameUnknown,
            format!("repository {name} does not exist"),
        )
    }
}

pub(crate) async fn get(registry: &Registry, name: &str, reference_: &str, head: bool) -> Answer {
    let reference = reference(reference_)?;
    let Some(record) = registry.find_manifest(name, &reference).await? else {
        return Err(unknown(registry, name, &reference).await);
    };
    let digest = Digest::parse(&record.digest).map_err(Fault::internal)?;
    let body = if head {
        Body::empty()
    } else {
        let d = digest.clone();
        let bytes = registry
            .blocking(move |inner| {
                inner
                    .blobs
                    .read(&d)
                    .map_err(crate::RegistryError::io("cannot read a manifest"))
            })
            .await?
            .ok_or_else(|| Fault::internal(format!("manifest blob {digest} is missing")))?;
        registry.inner.metrics.sent.inc_by(bytes.len() as u64);
        Body::from(bytes)
    };
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(CONTENT_LENGTH, HeaderValue::from(record.size));
    for (name, value) in [
        (CONTENT_TYPE, record.media_type.as_str()),
        (
            http::header::HeaderName::from_static("docker-content-digest"),
            record.digest.as_str(),
        ),
        (http::header::ETAG, &format!("\"{}\"", record.digest)),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    Ok(response)
}

pub(crate) async fn put(
    registry: &Registry,
    name: &str,
    reference_: &str,
    parts: &http::request::Parts,
    body: Body,
) -> Answer {
    let reference = reference(reference_)?;
    let max = registry.inner.config.max_manifest_size;
    let too_large = || {
        Fault::new(
            Code::SizeInvalid,
            format!("manifests are limited to {max} bytes"),
        )
        .status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    if header(&parts.headers, CONTENT_LENGTH)
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > max as u64)
    {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| too_large())?;
    registry.inner.metrics.received.inc_by(bytes.len() as u64);

    // Tags: the one in the URL, or `?tag=` parameters on a push by digest.
    let (expected, tags) = match &reference {
        Reference::Tag(t) => (None, vec![t.clone()]),
        Reference::Digest(d) => {
            let q = query(&parts.uri);
            let mut tags = Vec::new();
            for (k, v) in &q {
                if k == "tag" {
                    if !names::is_tag(v) {
                        return Err(Fault::new(
                            Code::ManifestInvalid,
                            format!("invalid tag {v:?}"),
                        ));
                    }
                    if !tags.contains(v) {
                        tags.push(v.clone());
                    }
                }
            }
            (Some(d.clone()), tags)
        }
    };
    let content_type = header(&parts.headers, CONTENT_TYPE);
    let stored = registry
        .put_manifest(
            name,
            tags.clone(),
            expected.as_ref(),
            content_type,
            bytes,
            true,
        )
        .await
        .map_err(|e| match e {
            PushError::Invalid(e) => Fault::new(Code::ManifestInvalid, e.to_string()),
            PushError::DigestMismatch { expected, computed } => Fault::new(
                Code::DigestInvalid,
                format!("the manifest's digest is {computed}, not {expected}"),
            ),
            PushError::Missing(missing) => Fault::new(
                Code::ManifestBlobUnknown,
                format!(
                    "the manifest references {} not pushed to {name}: {}",
                    if missing.len() == 1 {
                        "content"
                    } else {
                        "contents"
                    },
                    missing.join(", ")
                ),
            )
            .detail(serde_json::json!({ "digests": missing })),
            PushError::Failed(e) => Fault::from(e),
        })?;
    let mut headers = vec![
        (
            "location",
            format!("/v2/{name}/manifests/{}", stored.digest),
        ),
        ("docker-content-digest", stored.digest.to_string()),
    ];
    if let Some(subject) = &stored.subject {
        headers.push(("oci-subject", subject.clone()));
    }
    if matches!(reference, Reference::Digest(_)) && !tags.is_empty() {
        headers.push(("oci-tag", tags.join(", ")));
    }
    Ok(empty(StatusCode::CREATED, &headers))
}

pub(crate) async fn delete(registry: &Registry, name: &str, reference_: &str) -> Answer {
    let reference = reference(reference_)?;
    if registry.delete_manifest(name, &reference).await? {
        Ok(empty(StatusCode::ACCEPTED, &[]))
    } else {
        Err(unknown(registry, name, &reference).await)
    }
}

impl Registry {
    pub(crate) async fn repository_exists(&self, name: &str) -> Result<bool, crate::RegistryError> {
        let name = name.to_string();
        self.blocking(move |inner| {
            let tx = inner.store.read()?;
            Ok(crate::meta::repository(&*tx, &name)?.is_some())
        })
        .await
    }
}
