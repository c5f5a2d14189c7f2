//! Authentication and authorization of requests, and the token endpoint.

use super::{Answer, Code, Fault, header, query};
use crate::Registry;
use crate::auth::{self, Access, Claims, Credentials};
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use http::HeaderMap;
use http::header::{CONTENT_TYPE, HOST, RETRY_AFTER, WWW_AUTHENTICATE};

/// Who is asking.
#[derive(Debug)]
pub(crate) enum Principal {
    /// An access key, by HTTP Basic: everything is allowed.
    Key(String),
    /// A token from the token endpoint: what it grants.
    Token(Claims),
    /// No credentials.
    Anonymous,
}

impl Principal {
    /// For logs: the access key id, `token:<key id>`, or `anonymous`.
    pub fn name(&self) -> String {
        match self {
            Principal::Key(id) => id.clone(),
            Principal::Token(c) if c.sub.is_empty() => "token:anonymous".into(),
            Principal::Token(c) => format!("token:{}", c.sub),
            Principal::Anonymous => "anonymous".into(),
        }
    }
}

/// What a request needs.
#[derive(Debug)]
pub(crate) enum Need {
    /// Any valid credentials (`GET /v2/`).
    Any,
    Pull(String),
    Push(String),
    Delete(String),
    Catalog,
    /// An access key (by Basic, or a token issued to one).
    Admin,
}

impl Need {
    fn access(&self) -> Option<Access> {
        match self {
            Need::Pull(n) => Some(Access::repository(n, &["pull"])),
            Need::Push(n) => Some(Access::repository(n, &["pull", "push"])),
            Need::Delete(n) => Some(Access::repository(n, &["delete"])),
            Need::Catalog => Some(Access::catalog()),
            Need::Any | Need::Admin => None,
        }
    }
}

fn now_secs() -> i64 {
    crate::now_ms() / 1000
}

/// The token endpoint's URL: the configured public URL, else the request's host.
pub(crate) fn realm(registry: &Registry, headers: &HeaderMap) -> String {
    if let Some(url) = &registry.inner.config.public_url {
        return format!("{}/v2/token", url.trim_end_matches('/'));
    }
    let host = header(headers, HOST)
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = if registry.inner.config.tls {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}/v2/token")
}

/// A request that carries credentials, from a known client address, when failed
/// sign-ins are limited: the throttle is asked before the credentials are checked and
/// told when they fail.
struct Signer<'a> {
    throttle: &'a runway_secrets::AuthThrottle,
    client: std::net::SocketAddr,
    key_id: Option<String>,
}

impl<'a> Signer<'a> {
    fn of(
        registry: &'a Registry,
        parts: &http::request::Parts,
        credentials: &Credentials,
    ) -> Option<Self> {
        let throttle = registry.inner.config.auth_throttle.as_deref()?;
        let ConnectInfo(client) = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()?;
        let key_id = match credentials {
            // No credentials: anonymous, not a wrong guess.
            Credentials::None => return None,
            Credentials::Basic { key_id, .. } => Some(key_id.clone()),
            Credentials::Bearer(_) | Credentials::Malformed => None,
        };
        let key_id = key_id.filter(|id| {
            (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        Some(Signer {
            throttle,
            client: *client,
            key_id,
        })
    }

    fn failure<'r>(&'r self, reason: &'r str) -> runway_secrets::AuthFailure<'r> {
        runway_secrets::AuthFailure {
            listener: "registry",
            client: self.client,
            key_id: self.key_id.as_deref(),
            reason,
        }
    }

    fn admit(&self) -> Result<(), Fault> {
        self.throttle
            .admit(&self.failure("throttled"))
            .map_err(|wait| {
                let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
                Fault::new(
                    Code::TooManyRequests,
                    format!("too many requests with invalid credentials from this address; retry in {seconds} s"),
                )
                .header(RETRY_AFTER, &seconds.to_string())
            })
    }

    fn failed(&self, reason: &str) {
        self.throttle.failed(&self.failure(reason));
    }
}

/// Asks the throttle, if any, before credentials are checked; the signer to tell of a
/// failure.
fn admit<'a>(
    registry: &'a Registry,
    parts: &http::request::Parts,
    credentials: &Credentials,
) -> Result<Option<Signer<'a>>, Fault> {
    let signer = Signer::of(registry, parts, credentials);
    if let Some(signer) = &signer {
        signer.admit()?;
    }
    Ok(signer)
}

/// Tells the throttle, if any, that credentials failed for `reason`.
fn failed(signer: &Option<Signer<'_>>, reason: &str) {
    if let Some(signer) = signer {
        signer.failed(reason);
    }
}

fn unauthorized(
    registry: &Registry,
    headers: &HeaderMap,
    need: Option<&Need>,
    error: Option<&str>,
    message: &str,
) -> Fault {
    let scope = need.and_then(Need::access).map(|a| a.scope());
    let value = auth::challenge(&realm(registry, headers), scope.as_deref(), error);
    Fault::new(Code::Unauthorized, message).header(WWW_AUTHENTICATE, &value)
}

async fn check_basic(registry: &Registry, key_id: String, secret: String) -> Result<bool, Fault> {
    registry
        .blocking(move |inner| {
            let tx = inner.store.read()?;
            Ok(auth::check_key(&*tx, &inner.master, &key_id, &secret)?)
        })
        .await
        .map_err(Fault::from)
}

/// Who sent the request; 401 with a challenge for credentials that do not check out.
pub(crate) async fn authenticate(
    registry: &Registry,
    parts: &http::request::Parts,
) -> Result<Principal, Fault> {
    let headers = &parts.headers;
    let credentials = auth::credentials(headers);
    let signer = admit(registry, parts, &credentials)?;
    let refuse = |error: Option<&str>, message: &str| {
        failed(&signer, message);
        Err(unauthorized(registry, headers, None, error, message))
    };
    match credentials {
        Credentials::None => Ok(Principal::Anonymous),
        Credentials::Basic { key_id, secret } => {
            if check_basic(registry, key_id.clone(), secret).await? {
                Ok(Principal::Key(key_id))
            } else {
                refuse(None, "invalid access key id or secret")
            }
        }
        Credentials::Bearer(token) => match registry.inner.signer.verify(&token, now_secs()) {
            Some(claims) => Ok(Principal::Token(claims)),
            None => refuse(Some("invalid_token"), "the token is invalid or has expired"),
        },
        Credentials::Malformed => refuse(
            None,
            "the Authorization header must be Basic (access key id and secret) or Bearer",
        ),
    }
}

async fn anonymous_pull(registry: &Registry, name: &str) -> Result<bool, Fault> {
    registry.anonymous_pull(name).await.map_err(Fault::from)
}

/// Whether `principal` may pull from `name` (for mounts, which need it quietly).
pub(crate) async fn may_pull(registry: &Registry, principal: &Principal, name: &str) -> bool {
    match principal {
        Principal::Key(_) => true,
        Principal::Token(c) => c.allows(&Access::repository(name, &["pull"])),
        Principal::Anonymous => anonymous_pull(registry, name).await.unwrap_or(false),
    }
}

/// Allows the request, or answers 401 with a challenge naming the scope it needs.
pub(crate) async fn authorize(
    registry: &Registry,
    principal: &Principal,
    need: &Need,
    headers: &HeaderMap,
) -> Result<(), Fault> {
    let allowed = match (principal, need) {
        (Principal::Key(_), _) => true,
        (Principal::Token(_), Need::Any) => true,
        (Principal::Token(c), Need::Admin) => !c.sub.is_empty(),
        (Principal::Token(c), need) => need.access().is_some_and(|a| c.allows(&a)),
        (Principal::Anonymous, Need::Pull(name)) => anonymous_pull(registry, name).await?,
        (Principal::Anonymous, _) => false,
    };
    if allowed {
        return Ok(());
    }
    let (error, message) = match principal {
        Principal::Anonymous => (None, "authentication required"),
        _ => (
            Some("insufficient_scope"),
            "the token does not grant access to this resource",
        ),
    };
    Err(unauthorized(registry, headers, Some(need), error, message))
}

/// `GET /v2/token?service=runway&scope=...`: trades Basic credentials (or none, for
/// repositories that allow anonymous pull) for a token.
pub(crate) async fn token(registry: &Registry, parts: &http::request::Parts) -> Answer {
    let q = query(&parts.uri);
    let requested: Vec<Access> = q
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| Access::parse_scopes(v))
        .collect();
    let basic_fault = || {
        Fault::new(Code::Unauthorized, "invalid access key id or secret").header(
            WWW_AUTHENTICATE,
            &format!("Basic realm=\"{}\"", auth::SERVICE),
        )
    };
    let credentials = auth::credentials(&parts.headers);
    let signer = admit(registry, parts, &credentials)?;
    let (sub, granted) = match credentials {
        Credentials::Basic { key_id, secret } => {
            if !check_basic(registry, key_id.clone(), secret).await? {
                failed(&signer, "invalid access key id or secret");
                return Err(basic_fault());
            }
            (key_id, requested)
        }
        Credentials::None => {
            let mut granted = Vec::new();
            for access in requested {
                let pull = access.kind == "repository"
                    && access.actions.iter().any(|a| a == "pull" || a == "*");
                if pull && anonymous_pull(registry, &access.name).await? {
                    granted.push(Access::repository(&access.name, &["pull"]));
                }
            }
            (String::new(), granted)
        }
        Credentials::Bearer(_) | Credentials::Malformed => {
            failed(&signer, "the token endpoint takes Basic credentials");
            return Err(basic_fault());
        }
    };
    let now = now_secs();
    let ttl = registry.inner.config.token_ttl.as_secs().max(60) as i64;
    let claims = Claims {
        iss: auth::SERVICE.into(),
        sub,
        aud: auth::SERVICE.into(),
        iat: now,
        exp: now + ttl,
        access: granted,
    };
    let token = registry.inner.signer.sign(&claims);
    let issued_at = time::OffsetDateTime::from_unix_timestamp(now)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": ttl,
        "issued_at": issued_at,
    });
    Ok(([(CONTENT_TYPE, "application/json")], body.to_string()).into_response())
}
