//! Content discovery: `_catalog` and tags lists (with `n`/`last` pagination and `Link`
//! headers), and the referrers API.

use super::blobs::parse_digest;
use super::{Answer, Code, Fault, param, query};
use crate::manifest::OCI_INDEX;
use crate::{Registry, RegistryError, meta};
use axum::response::IntoResponse;
use http::StatusCode;
use http::header::{CONTENT_TYPE, LINK};

/// The most entries one page holds, whatever `n` asks for; a `Link` header leads on.
const MAX_PAGE: usize = 1000;

/// The page of `items` (sorted) after `last`, at most `n` long, and whether more follow.
fn page(items: Vec<String>, n: Option<usize>, last: Option<&str>) -> (Vec<String>, bool) {
    let mut rest: Vec<String> = match last {
        Some(last) => items.into_iter().filter(|i| i.as_str() > last).collect(),
        None => items,
    };
    let n = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
    let more = rest.len() > n;
    rest.truncate(n);
    (rest, more)
}

fn pagination(q: &[(String, String)]) -> Result<(Option<usize>, Option<&str>), Fault> {
    let n = param(q, "n")
        .map(|v| {
            v.parse::<usize>().map_err(|_| {
                Fault::new(
                    Code::Unsupported,
                    format!("n must be a non-negative integer, got {v:?}"),
                )
                .status(StatusCode::BAD_REQUEST)
            })
        })
        .transpose()?;
    Ok((n, param(q, "last")))
}

fn listing(
    path: &str,
    body: serde_json::Value,
    page: &[String],
    more: bool,
    n: Option<usize>,
) -> axum::response::Response {
    let mut response = ([(CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if more && let Some(last) = page.last() {
        let n = n.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let value = format!("<{path}?n={n}&last={last}>; rel=\"next\"");
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(LINK, v);
        }
    }
    response
}

pub(crate) async fn catalog(registry: &Registry, uri: &http::Uri) -> Answer {
    let q = query(uri);
    let (n, last) = pagination(&q)?;
    let names = registry.repositories().await?;
    let (page, more) = page(names, n, last);
    let body = serde_json::json!({ "repositories": page });
    Ok(listing("/v2/_catalog", body, &page, more, n))
}

pub(crate) async fn tags(registry: &Registry, name: &str, uri: &http::Uri) -> Answer {
    let q = query(uri);
    let (n, last) = pagination(&q)?;
    let tags = registry.tags(name).await.map_err(|e| match e {
        RegistryError::NotFound(_) => Fault::new(
            Code::NameUnknown,
            format!("repository {name} does not exist"),
        ),
        other => Fault::from(other),
    })?;
    let (page, more) = page(tags, n, last);
    let body = serde_json::json!({ "name": name, "tags": page });
    Ok(listing(
        &format!("/v2/{name}/tags/list"),
        body,
        &page,
        more,
        n,
    ))
}

pub(crate) async fn referrers(
    registry: &Registry,
    name: &str,
    digest: &str,
    uri: &http::Uri,
) -> Answer {
    let digest = parse_digest(digest)?;
    let q = query(uri);
    let filters: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "artifactType")
        .map(|(_, v)| v.clone())
        .collect();
    let (repo, subject) = (name.to_string(), digest.to_string());
    let mut found = registry
        .blocking(move |inner| {
            let tx = inner.store.read()?;
            Ok(meta::referrers(&*tx, &repo, &subject)?)
        })
        .await?;
    if !filters.is_empty() {
        found.retain(|d| {
            d.artifact_type
                .as_ref()
                .is_some_and(|t| filters.contains(t))
        });
    }
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": found,
    });
    let mut response = ([(CONTENT_TYPE, OCI_INDEX)], body.to_string()).into_response();
    if !filters.is_empty() {
        response.headers_mut().insert(
            "oci-filters-applied",
            http::HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_last_and_n() {
        let items: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        assert_eq!(
            page(items.clone(), Some(2), None),
            (vec!["a".into(), "b".into()], true)
        );
        assert_eq!(
            page(items.clone(), Some(2), Some("b")),
            (vec!["c".into(), "d".into()], false)
        );
        assert_eq!(page(items.clone(), Some(0), None), (vec![], true));
        assert_eq!(page(items.clone(), None, Some("d")), (vec![], false));
        assert_eq!(page(items, Some(10), Some("bb")).0, vec!["c", "d"]);
    }
}
