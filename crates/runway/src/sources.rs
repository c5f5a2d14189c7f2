//! Auto-deployments of services built from a code repository: push webhooks from the
//! git host (`POST /webhooks/<connection name>` on the API's listener, signed with the
//! connection's webhook secret), and polling of the branch for hosts that cannot send
//! them. Either records a START_DEPLOYMENT; the controller builds and deploys.

use crate::adapters::{connection_credentials, git_source};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use runway_api::Api;
use runway_build::Builder;
use runway_build::webhook::{self, WebhookError, WebhookEvent};
use runway_model::records::{ConnectionRecord, OperationRecord, RevisionRecord, ServiceRecord};
use runway_secrets::MasterKey;
use runway_store::{Query, Store, Typed};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What the webhook endpoint and the poller need.
#[derive(Clone)]
pub struct Sources {
    pub api: Api,
    pub store: Arc<dyn Store>,
    pub master: Arc<MasterKey>,
    pub builder: Builder,
}

/// The webhook endpoint, to merge into the API's application.
pub fn webhook_router(sources: Sources) -> axum::Router {
    axum::Router::new()
        .route("/webhooks/{connection}", post(receive))
        .layer(DefaultBodyLimit::max(webhook::MAX_BODY))
        .with_state(sources)
}

/// A JSON answer.
type Answer = (
    StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    String,
);

fn answer(status: StatusCode, body: Value) -> Answer {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

fn code_url(service: &ServiceRecord) -> Option<(&str, &str)> {
    let code = service.spec.source_configuration.code_repository.as_ref()?;
    let url = code.repository_url.as_deref()?;
    let branch = code.source_code_version.as_ref()?.value.as_deref()?;
    Some((url, branch))
}

/// A push webhook: verified with the named connection's webhook secret, then a deployment
/// of each service that uses the connection, builds the pushed repository and branch, and
/// deploys automatically.
async fn receive(
    State(sources): State<Sources>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let store = sources.store.clone();
    let wanted = name.clone();
    let lookup = tokio::task::spawn_blocking(move || {
        let tx = store.read().map_err(|e| e.to_string())?;
        let query = Query {
            name: Some(wanted),
            ..Default::default()
        };
        Ok::<_, String>(
            tx.load_all::<ConnectionRecord>(&query)
                .map_err(|e| e.to_string())?
                .into_iter()
                .next()
                .map(|(_, c)| c),
        )
    })
    .await;
    // An unknown connection, one without a webhook secret and a bad signature get the
    // same answer, so that a caller cannot probe which connection names exist; the log
    // says which it was.
    let refuse = |name: &str, why: &str| {
        tracing::warn!(connection = %name, reason = why, "a webhook was refused");
        answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "the webhook's signature does not verify"}),
        )
    };
    let connection = match lookup {
        Ok(Ok(Some(c))) => c,
        Ok(Ok(None)) => return refuse(&name, "no such connection"),
        Ok(Err(e)) => return answer(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": e})),
        Err(e) => {
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": e.to_string()}),
            );
        }
    };
    let secret = match connection_credentials(
        &sources.store,
        &sources.master,
        Some(&connection.arn),
    )
    .await
    {
        Ok(Some(c)) => c.webhook_secret,
        Ok(None) => None,
        Err(e) => return answer(StatusCode::INTERNAL_SERVER_ERROR, json!({"error": e})),
    };
    let Some(secret) = secret else {
        return refuse(
            &name,
            "the connection has no webhook secret (runway connections credentials NAME --webhook-secret-file F)",
        );
    };
    let event = match webhook::verify_and_parse(&headers, &body, secret.as_bytes()) {
        Ok(event) => event,
        Err(e @ (WebhookError::MissingSignature(_) | WebhookError::BadSignature)) => {
            return refuse(&name, &e.to_string());
        }
        Err(e) => return answer(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
    };
    let push = match event {
        WebhookEvent::Push(push) => push,
        WebhookEvent::Ignored { reason, .. } => {
            return answer(StatusCode::OK, json!({"ignored": reason}));
        }
    };
    let (api, arn) = (sources.api.clone(), connection.arn.clone());
    let concerns = move |service: &ServiceRecord| {
        service.spec.source_configuration.connection_arn() == Some(arn.as_str())
            && code_url(service).is_some_and(|(url, branch)| {
                branch == push.branch && webhook::same_repository(&push, url)
            })
    };
    match tokio::task::spawn_blocking(move || api.record_source_change(&concerns)).await {
        Ok(Ok(ids)) => {
            tracing::info!(connection = %connection.name, operations = ?ids, "push webhook");
            answer(StatusCode::ACCEPTED, json!({"operations": ids}))
        }
        Ok(Err(e)) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": format!("{e:?}")}),
        ),
        Err(e) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": e.to_string()}),
        ),
    }
}

/// Every `interval`, asks each auto-deploying service's git branch where it points, and
/// records a deployment when it moved past the commit the service last built (once per
/// commit, so a commit whose build fails is not rebuilt on every poll).
pub async fn poll(sources: Sources, interval: Duration, stopped: impl Future<Output = ()>) {
    let mut tried: HashMap<String, String> = HashMap::new();
    let poll_all = async {
        loop {
            tokio::time::sleep(interval).await;
            if let Err(e) = poll_once(&sources, &mut tried).await {
                tracing::warn!(error = %e, "polling source repositories failed");
            }
        }
    };
    tokio::select! {
        _ = poll_all => {}
        _ = stopped => {}
    }
}

/// The services to poll, with the commit each last built and whether it is busy.
struct Watched {
    service: ServiceRecord,
    built: Option<String>,
    busy: bool,
}

fn watched(store: &Arc<dyn Store>) -> Result<Vec<Watched>, String> {
    let tx = store.read().map_err(|e| e.to_string())?;
    let current = Query {
        current: true,
        ..Query::default()
    };
    let services: Vec<ServiceRecord> = tx
        .load_all::<ServiceRecord>(&current)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| {
            s.spec.source_configuration.auto_deployments_enabled == Some(true)
                && code_url(s).is_some_and(|(url, _)| !url.starts_with("upload://"))
        })
        .collect();
    // The revisions and operations of the watched services only: not those of every
    // service that ever ran.
    let of_watched = Query {
        parents: Some(services.iter().map(|s| s.arn.clone()).collect()),
        ..Query::default()
    };
    let revisions = tx
        .load_all::<RevisionRecord>(&of_watched)
        .map_err(|e| e.to_string())?;
    let ops = tx
        .load_all::<OperationRecord>(&of_watched)
        .map_err(|e| e.to_string())?;
    Ok(services
        .into_iter()
        .map(|service| {
            let built = revisions
                .iter()
                .map(|(_, r)| r)
                .filter(|r| r.service_arn == service.arn)
                .max_by_key(|r| r.number)
                .and_then(|r| r.spec.source_configuration.image_repository.as_ref())
                .and_then(|i| i.image_identifier.as_deref())
                .and_then(|id| id.rsplit_once(':'))
                .map(|(_, tag)| tag.to_string());
            let busy = ops
                .iter()
                .any(|(_, o)| o.service_arn == service.arn && !o.status.is_final());
            Watched {
                service,
                built,
                busy,
            }
        })
        .collect())
}

async fn poll_once(sources: &Sources, tried: &mut HashMap<String, String>) -> Result<(), String> {
    let store = sources.store.clone();
    let services = tokio::task::spawn_blocking(move || watched(&store))
        .await
        .map_err(|e| e.to_string())??;
    for w in services {
        let Some(code) = &w.service.spec.source_configuration.code_repository else {
            continue;
        };
        if w.busy {
            continue;
        }
        let credentials = connection_credentials(
            &sources.store,
            &sources.master,
            w.service.spec.source_configuration.connection_arn(),
        )
        .await?;
        let source = git_source(code, credentials);
        let latest = match sources.builder.latest_commit(&source).await {
            Ok(Some(commit)) => commit,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(service = %w.service.name, error = %e, "cannot poll the repository");
                continue;
            }
        };
        if w.built.as_deref() == Some(latest.as_str()) || tried.get(&w.service.arn) == Some(&latest)
        {
            continue;
        }
        tried.insert(w.service.arn.clone(), latest.clone());
        let (api, arn) = (sources.api.clone(), w.service.arn.clone());
        let concerns = move |s: &ServiceRecord| s.arn == arn;
        let ids = tokio::task::spawn_blocking(move || api.record_source_change(&concerns))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{e:?}"))?;
        tracing::info!(service = %w.service.name, commit = %latest, operations = ?ids, "the branch moved: deploying");
    }
    Ok(())
}
