//! Push webhooks from GitHub, GitLab and Gitea: the request verified against the
//! webhook's secret (GitHub's `X-Hub-Signature-256` and Gitea's `X-Gitea-Signature`, an
//! HMAC-SHA256 of the body; GitLab's `X-Gitlab-Token`, the secret itself, compared in
//! constant time), then the push parsed: the repository's URLs, the branch and the new
//! commit. Which services it concerns is the caller's to decide ([`same_repository`]).

use aws_lc_rs::{constant_time, hmac};
use http::HeaderMap;
use serde_json::Value;

/// The largest webhook body accepted (GitHub sends at most 25 MB).
pub const MAX_BODY: usize = 25 << 20;

/// The git host that sent a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
    Gitea,
}

/// A push to a branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEvent {
    pub provider: Provider,
    /// Every URL the repository is known by (clone, ssh and web URLs).
    pub repository_urls: Vec<String>,
    pub branch: String,
    /// The commit the branch now points at.
    pub commit: String,
}

/// What a verified webhook asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// A push to a branch.
    Push(PushEvent),
    /// Anything else (a ping, a tag push, a branch deleted, another event): nothing to do.
    Ignored { provider: Provider, reason: String },
}

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No header says which host sent it.
    #[error(
        "not a GitHub, GitLab or Gitea webhook (no X-GitHub-Event, X-Gitlab-Event or X-Gitea-Event header)"
    )]
    UnknownProvider,
    /// The signature or token is missing.
    #[error("the webhook has no {0} header")]
    MissingSignature(&'static str),
    /// The signature or token does not match the secret.
    #[error("the webhook's signature does not match the secret")]
    BadSignature,
    /// The body is larger than [`MAX_BODY`].
    #[error("the webhook body is larger than {MAX_BODY} bytes")]
    TooLarge,
    /// The body is not the push event's JSON.
    #[error("malformed push event: {0}")]
    Malformed(String),
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Which host sent the webhook, by its event header.
pub fn provider(headers: &HeaderMap) -> Option<Provider> {
    // Gitea also sends X-GitHub-Event for compatibility: ask for its own header first.
    if headers.contains_key("x-gitea-event") {
        Some(Provider::Gitea)
    } else if headers.contains_key("x-gitlab-event") {
        Some(Provider::GitLab)
    } else if headers.contains_key("x-github-event") {
        Some(Provider::GitHub)
    } else {
        None
    }
}

/// Checks the webhook's signature (or token) against `secret`, then parses the event.
/// Nothing is parsed before the signature is checked.
pub fn verify_and_parse(
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
) -> Result<WebhookEvent, WebhookError> {
    if body.len() > MAX_BODY {
        return Err(WebhookError::TooLarge);
    }
    let provider = provider(headers).ok_or(WebhookError::UnknownProvider)?;
    verify(provider, headers, body, secret)?;
    parse(provider, headers, body)
}

/// Checks the signature or token `provider` sends.
pub fn verify(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
) -> Result<(), WebhookError> {
    match provider {
        Provider::GitHub => {
            let value = header(headers, "x-hub-signature-256")
                .ok_or(WebhookError::MissingSignature("X-Hub-Signature-256"))?;
            let hex_sig = value
                .strip_prefix("sha256=")
                .ok_or(WebhookError::BadSignature)?;
            verify_hmac(secret, body, hex_sig)
        }
        Provider::Gitea => {
            let value = header(headers, "x-gitea-signature")
                .ok_or(WebhookError::MissingSignature("X-Gitea-Signature"))?;
            verify_hmac(secret, body, value.strip_prefix("sha256=").unwrap_or(value))
        }
        Provider::GitLab => {
            let token = header(headers, "x-gitlab-token")
                .ok_or(WebhookError::MissingSignature("X-Gitlab-Token"))?;
            if secret.is_empty() {
                return Err(WebhookError::BadSignature);
            }
            constant_time::verify_slices_are_equal(token.as_bytes(), secret)
                .map_err(|_| WebhookError::BadSignature)
        }
    }
}

fn verify_hmac(secret: &[u8], body: &[u8], hex_sig: &str) -> Result<(), WebhookError> {
    if secret.is_empty() {
        return Err(WebhookError::BadSignature);
    }
    let signature = hex::decode(hex_sig).map_err(|_| WebhookError::BadSignature)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, body, &signature).map_err(|_| WebhookError::BadSignature)
}

/// The `X-Hub-Signature-256` value for `body` (GitHub's format; tests and clients).
pub fn sign_github(secret: &[u8], body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

/// Parses a push event whose signature has been checked.
fn parse(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<WebhookEvent, WebhookError> {
    let ignored = |reason: String| Ok(WebhookEvent::Ignored { provider, reason });
    let event = match provider {
        Provider::GitHub => header(headers, "x-github-event"),
        Provider::GitLab => header(headers, "x-gitlab-event"),
        Provider::Gitea => header(headers, "x-gitea-event"),
    }
    .unwrap_or("");
    let is_push = match provider {
        Provider::GitHub | Provider::Gitea => event == "push",
        Provider::GitLab => event == "Push Hook",
    };
    if !is_push {
        return ignored(format!("event {event:?} is not a push"));
    }
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let text = |v: &Value, path: &str| v.pointer(path).and_then(Value::as_str).map(str::to_string);
    let reference = text(&doc, "/ref").ok_or_else(|| WebhookError::Malformed("no ref".into()))?;
    let Some(branch) = reference.strip_prefix("refs/heads/") else {
        return ignored(format!("{reference} is not a branch"));
    };
    let after = text(&doc, "/after").unwrap_or_default();
    let deleted = doc.get("deleted").and_then(Value::as_bool).unwrap_or(false)
        || (!after.is_empty() && after.bytes().all(|b| b == b'0'));
    if deleted {
        return ignored(format!("branch {branch} was deleted"));
    }
    let commit = match provider {
        Provider::GitLab => text(&doc, "/checkout_sha")
            .filter(|s| !s.is_empty())
            .unwrap_or(after),
        _ => after,
    };
    if !(commit.len() == 40 || commit.len() == 64) || !commit.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(WebhookError::Malformed(format!(
            "{commit:?} is not a commit id"
        )));
    }
    let paths: &[&str] = match provider {
        Provider::GitHub | Provider::Gitea => &[
            "/repository/clone_url",
            "/repository/ssh_url",
            "/repository/html_url",
            "/repository/git_url",
            "/repository/url",
        ],
        Provider::GitLab => &[
            "/project/git_http_url",
            "/project/git_ssh_url",
            "/project/web_url",
            "/repository/git_http_url",
            "/repository/git_ssh_url",
            "/repository/homepage",
            "/repository/url",
        ],
    };
    let mut repository_urls: Vec<String> = Vec::new();
    for p in paths {
        if let Some(url) = text(&doc, p).filter(|u| !u.is_empty())
            && !repository_urls.contains(&url)
        {
            repository_urls.push(url);
        }
    }
    if repository_urls.is_empty() {
        return Err(WebhookError::Malformed("no repository URL".into()));
    }
    Ok(WebhookEvent::Push(PushEvent {
        provider,
        repository_urls,
        branch: branch.to_string(),
        commit: commit.to_ascii_lowercase(),
    }))
}

/// A repository URL reduced to `host/path` (lowercase, no scheme, user, port, `.git` or
/// trailing `/`), so that `https://github.com/o/r.git`, `git@github.com:o/r.git` and
/// `https://github.com/o/r` compare equal.
pub fn normalize_repository_url(url: &str) -> String {
    let url = url.trim();
    let (rest, scp) = match url.split_once("://") {
        Some((_, rest)) => (rest, false),
        None => (url, true),
    };
    let (authority, path) = if scp {
        rest.split_once(':').unwrap_or((rest, ""))
    } else {
        rest.split_once('/').unwrap_or((rest, ""))
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    format!("{host}/{path}").to_ascii_lowercase()
}

/// Whether a service's `RepositoryUrl` is one of the pushed repository's URLs.
pub fn same_repository(event: &PushEvent, repository_url: &str) -> bool {
    let wanted = normalize_repository_url(repository_url);
    event
        .repository_urls
        .iter()
        .any(|u| normalize_repository_url(u) == wanted)
}

#[cfg(test)]
mod tests;
