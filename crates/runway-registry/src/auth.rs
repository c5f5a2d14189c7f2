//! Who is asking, and may they: HTTP Basic with an access key id and secret, and the
//! Docker token flow (`WWW-Authenticate: Bearer realm=...`, a token endpoint that trades
//! Basic credentials for a short-lived token). Tokens are HS256 JWTs over their claims,
//! signed with a registry key that is stored sealed with the master key, so they are
//! verified without being stored.

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as B64URL};
use http::HeaderMap;
use runway_secrets::{MasterKey, SecretsError};
use runway_store::Txn;
use serde::{Deserialize, Serialize};

/// The `service` in challenges and tokens.
pub(crate) const SERVICE: &str = "runway";
/// The actions a repository scope may grant.
const ACTIONS: [&str; 4] = ["pull", "push", "delete", "*"];

/// One entry of a token's grants: `repository:<name>:<actions>` or
/// `registry:catalog:*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    pub fn repository(name: &str, actions: &[&str]) -> Access {
        Access {
            kind: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    pub fn catalog() -> Access {
        Access {
            kind: "registry".into(),
            name: "catalog".into(),
            actions: vec!["*".into()],
        }
    }

    /// Parses one `scope` parameter (which may hold several scopes separated by
    /// spaces); scopes that are malformed or name nothing runway grants are dropped.
    pub fn parse_scopes(param: &str) -> Vec<Access> {
        param
            .split(' ')
            .filter_map(|scope| {
                let (kind, rest) = scope.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                let actions: Vec<String> = actions
                    .split(',')
                    .filter(|a| ACTIONS.contains(a))
                    .map(str::to_string)
                    .collect();
                match kind {
                    "repository" if crate::names::is_repository(name) && !actions.is_empty() => {
                        Some(Access {
                            kind: kind.into(),
                            name: name.into(),
                            actions,
                        })
                    }
                    "registry" if name == "catalog" && actions.iter().any(|a| a == "*") => {
                        Some(Access::catalog())
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// The scope string (`repository:app:pull,push`).
    pub fn scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }

    fn allows(&self, need: &Access) -> bool {
        self.kind == need.kind
            && self.name == need.name
            && need
                .actions
                .iter()
                .all(|a| self.actions.iter().any(|g| g == a || g == "*"))
    }
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub iss: String,
    /// The access key id, or empty for an anonymous token.
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub access: Vec<Access>,
}

impl Claims {
    /// Whether every action of `need` is granted.
    pub fn allows(&self, need: &Access) -> bool {
        self.access.iter().any(|a| a.allows(need))
    }
}

/// Signs and verifies tokens.
pub(crate) struct TokenSigner {
    key: hmac::Key,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

const JWT_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

impl TokenSigner {
    pub fn new(raw_key: &[u8]) -> TokenSigner {
        TokenSigner {
            key: hmac::Key::new(hmac::HMAC_SHA256, raw_key),
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let payload = serde_json::to_vec(claims).unwrap_or_default();
        let signing_input = format!("{}.{}", B64URL.encode(JWT_HEADER), B64URL.encode(payload));
        let tag = hmac::sign(&self.key, signing_input.as_bytes());
        format!("{signing_input}.{}", B64URL.encode(tag.as_ref()))
    }

    /// The claims of a token this registry signed that has not expired at `now`
    /// (seconds since the epoch).
    pub fn verify(&self, token: &str, now: i64) -> Option<Claims> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        let signature = B64URL.decode(signature).ok()?;
        hmac::verify(&self.key, signing_input.as_bytes(), &signature).ok()?;
        let (header, payload) = signing_input.split_once('.')?;
        if B64URL.decode(header).ok()? != JWT_HEADER.as_bytes() {
            return None;
        }
        let claims: Claims = serde_json::from_slice(&B64URL.decode(payload).ok()?).ok()?;
        (claims.aud == SERVICE && claims.exp > now).then_some(claims)
    }
}

/// The credentials a request carries.
#[derive(Debug)]
pub(crate) enum Credentials {
    None,
    Basic {
        key_id: String,
        secret: String,
    },
    Bearer(String),
    /// An `Authorization` header that cannot be understood.
    Malformed,
}

pub(crate) fn credentials(headers: &HeaderMap) -> Credentials {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Credentials::None;
    };
    let Ok(value) = value.to_str() else {
        return Credentials::Malformed;
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = BASE64
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        match decoded.as_deref().and_then(|s| s.split_once(':')) {
            Some((id, secret)) => Credentials::Basic {
                key_id: id.to_string(),
                secret: secret.to_string(),
            },
            None => Credentials::Malformed,
        }
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Credentials::Bearer(rest.to_string())
    } else {
        Credentials::Malformed
    }
}

/// Whether `secret` is access key `key_id`'s secret (compared in constant time).
pub(crate) fn check_key(
    tx: &dyn Txn,
    master: &MasterKey,
    key_id: &str,
    secret: &str,
) -> Result<bool, SecretsError> {
    // Ids are short ASCII; refusing odd ones early keeps junk out of store lookups.
    if key_id.is_empty() || key_id.len() > 128 {
        return Ok(false);
    }
    let Some(expected) = runway_secrets::secret_for(tx, master, key_id)? else {
        return Ok(false);
    };
    Ok(aws_lc_rs::constant_time::verify_slices_are_equal(
        expected.expose().as_bytes(),
        secret.as_bytes(),
    )
    .is_ok())
}

/// A `WWW-Authenticate` value asking for a token.
pub(crate) fn challenge(realm: &str, scope: Option<&str>, error: Option<&str>) -> String {
    let mut value = format!("Bearer realm=\"{realm}\",service=\"{SERVICE}\"");
    if let Some(scope) = scope {
        value.push_str(&format!(",scope=\"{scope}\""));
    }
    if let Some(error) = error {
        value.push_str(&format!(",error=\"{error}\""));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            iss: SERVICE.into(),
            sub: "RWAYKEY".into(),
            aud: SERVICE.into(),
            iat: 0,
            exp,
            access: vec![Access::repository("team/app", &["pull", "push"])],
        }
    }

    #[test]
    fn tokens_verify_only_untampered_and_unexpired() {
        let signer = TokenSigner::new(&[7; 32]);
        let token = signer.sign(&claims(100));
        assert_eq!(token.split('.').count(), 3, "JWT-shaped: clients read exp");
        let got = signer.verify(&token, 99).unwrap();
        assert!(got.allows(&Access::repository("team/app", &["push"])));
        assert!(!got.allows(&Access::repository("team/app", &["delete"])));
        assert!(!got.allows(&Access::repository("team/other", &["pull"])));
        assert!(signer.verify(&token, 100).is_none(), "expired");
        assert!(TokenSigner::new(&[8; 32]).verify(&token, 0).is_none());
        let (head, _) = token.rsplit_once('.').unwrap();
        let forged = format!("{head}.{}", B64URL.encode([0u8; 32]));
        assert!(signer.verify(&forged, 0).is_none());
        for junk in ["", ".", "a.b.c", "...."] {
            assert!(signer.verify(junk, 0).is_none());
        }
    }

    #[test]
    fn scopes_parse_leniently_and_grant_only_known_actions() {
        let scopes = Access::parse_scopes(
            "repository:team/app:pull,push repository:BAD:pull registry:catalog:* repository:x:fly",
        );
        assert_eq!(
            scopes,
            vec![
                Access::repository("team/app", &["pull", "push"]),
                Access::catalog()
            ]
        );
        assert_eq!(scopes[0].scope(), "repository:team/app:pull,push");
        let all = Access::repository("a", &["*"]);
        assert!(all.allows(&Access::repository("a", &["delete"])));
    }

    #[test]
    fn authorization_headers() {
        let mut h = HeaderMap::new();
        assert!(matches!(credentials(&h), Credentials::None));
        h.insert(
            "authorization",
            "Basic QUtJRDpzM2NyZXQ6eA==".parse().unwrap(),
        );
        match credentials(&h) {
            Credentials::Basic { key_id, secret } => {
                assert_eq!((key_id.as_str(), secret.as_str()), ("AKID", "s3cret:x"))
            }
            other => panic!("{other:?}"),
        }
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert!(matches!(credentials(&h), Credentials::Bearer(t) if t == "abc"));
        for bad in ["Basic !!!", "Digest x", "Bearer", "Basic bm9jb2xvbg=="] {
            h.insert("authorization", bad.parse().unwrap());
            assert!(matches!(credentials(&h), Credentials::Malformed), "{bad}");
        }
    }
}
