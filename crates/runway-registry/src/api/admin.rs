//! runway's admin endpoints on the registry listener (access keys only):
//! `POST /runway/v1/gc` runs garbage collection and answers its report;
//! `GET`/`PUT /runway/v1/repositories/<name>/anonymous-pull` reads or sets
//! `{"enabled": bool}`.

use super::{Answer, Code, Fault};
use crate::Registry;
use axum::body::Body;
use axum::response::IntoResponse;
use http::header::CONTENT_TYPE;
use serde::Deserialize;

fn json(value: &impl serde::Serialize) -> Answer {
    let body = serde_json::to_string(value).map_err(Fault::internal)?;
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

pub(crate) async fn gc(registry: &Registry) -> Answer {
    let report = registry.gc().await?;
    json(&report)
}

fn setting(name: &str, enabled: bool) -> serde_json::Value {
    serde_json::json!({ "repository": name, "enabled": enabled })
}

pub(crate) async fn get_anonymous_pull(registry: &Registry, name: &str) -> Answer {
    let enabled = registry.anonymous_pull(name).await?;
    json(&setting(name, enabled))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnonymousPull {
    enabled: bool,
}

pub(crate) async fn put_anonymous_pull(registry: &Registry, name: &str, body: Body) -> Answer {
    let bytes = axum::body::to_bytes(body, 4096)
        .await
        .map_err(|_| Fault::new(Code::Unsupported, "the body must be at most 4096 bytes"))?;
    let input: AnonymousPull = serde_json::from_slice(&bytes).map_err(|e| {
        Fault::new(
            Code::Unsupported,
            format!("the body must be {{\"enabled\": true|false}}: {e}"),
        )
        .status(http::StatusCode::BAD_REQUEST)
    })?;
    registry.set_anonymous_pull(name, input.enabled).await?;
    json(&setting(name, input.enabled))
}
