//! The hook through which an ACME client answers HTTP-01 challenges on the plain-HTTP
//! listener (set with [`crate::Router::set_acme_responder`]).

/// Requests under this path on plain HTTP are ACME HTTP-01 challenges: never redirected.
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Answers ACME HTTP-01 challenges on plain HTTP (set by the ACME client when it
/// exists).
pub trait AcmeResponder: Send + Sync + std::fmt::Debug + 'static {
    /// The key authorization for `token` on `host`, if a challenge is pending.
    fn respond(&self, host: &str, token: &str) -> Option<String>;
}
