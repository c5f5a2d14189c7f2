//! The logic of every App Runner operation. Each runs inside one store transaction: it
//! validates its input, checks state, and writes everything it changes at once, so a
//! failed call changes nothing.

pub(crate) mod autoscaling;
pub(crate) mod connections;
pub(crate) mod custom_domains;
pub(crate) mod extensions;
pub(crate) mod http;
pub(crate) mod observability;
mod revisions;
pub(crate) mod services;
pub(crate) mod shared;
pub(crate) mod tags;
pub(crate) mod vpc_connectors;
pub(crate) mod vpc_ingress;

use crate::ApiConfig;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use runway_model::{ApiError, Arn, ResourceKind, Timestamp};
use runway_secrets::MasterKey;
use runway_store::{Record, StoreError};
use serde::{Deserialize, Serialize};

/// Why an operation failed: an answer for the client, or a fault of ours.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) type OpResult<T> = Result<T, OpError>;

/// What every operation may know besides its input.
pub struct Ctx<'a> {
    pub config: &'a ApiConfig,
    /// Seals what the API stores secretly (connection credentials).
    pub master: &'a MasterKey,
    pub now: Timestamp,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("config", self.config)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl Ctx<'_> {
    /// An ARN in this server's region and account.
    pub fn arn(&self, kind: ResourceKind, path: &[&str]) -> String {
        Arn::new(&self.config.region, &self.config.account_id, kind, path).to_string()
    }
}

/// A setting stored beside the resources (the default auto scaling configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Setting {
    pub key: String,
    pub value: String,
}

impl Record for Setting {
    const KIND: &'static str = "setting";
    fn key(&self) -> &str {
        &self.key
    }
}

/// Cuts one page out of `items` (in store order, each with its position): the items
/// after the position `token` names, at most `max`, and the token of the next page.
pub(crate) fn page<T>(
    items: Vec<(i64, T)>,
    token: Option<&str>,
    max: usize,
) -> OpResult<(Vec<T>, Option<String>)> {
    let after = token.map(decode_token).transpose()?;
    let mut rest = items
        .into_iter()
        .filter(|(seq, _)| after.is_none_or(|a| *seq > a))
        .peekable();
    let mut out = Vec::new();
    let mut last = None;
    while out.len() < max {
        match rest.next() {
            Some((seq, item)) => {
                last = Some(seq);
                out.push(item);
            }
            None => break,
        }
    }
    let next = match (rest.peek(), last) {
        (Some(_), Some(seq)) => Some(encode_token(seq)),
        _ => None,
    };
    Ok((out, next))
}

/// Like [`page`], for items in descending store order.
pub(crate) fn page_desc<T>(
    items: Vec<(i64, T)>,
    token: Option<&str>,
    max: usize,
) -> OpResult<(Vec<T>, Option<String>)> {
    let negated = items.into_iter().map(|(seq, item)| (-seq, item)).collect();
    let token = token
        .map(|t| decode_token(t).map(|seq| encode_token(-seq)))
        .transpose()?;
    let (out, next) = page(negated, token.as_deref(), max)?;
    let next = next
        .map(|t| decode_token(&t).map(|seq| encode_token(-seq)))
        .transpose()?;
    Ok((out, next))
}

fn encode_token(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("rw1:{seq}"))
}

fn decode_token(token: &str) -> OpResult<i64> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| s.strip_prefix("rw1:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| ApiError::invalid("NextToken is not a token this API returned").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_every_item_once() {
        let items: Vec<(i64, i64)> = (1..=7).map(|i| (i * 10, i)).collect();
        let mut token = None;
        let mut seen = Vec::new();
        loop {
            let (items, next) = page(items.clone(), token.as_deref(), 3).unwrap();
            seen.extend(items);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, (1..=7).collect::<Vec<_>>());
        let desc: Vec<(i64, i64)> = items.iter().rev().cloned().collect();
        let (first, next) = page_desc(desc.clone(), None, 4).unwrap();
        assert_eq!(first, [7, 6, 5, 4]);
        let (second, next) = page_desc(desc, next.as_deref(), 4).unwrap();
        assert_eq!((second, next), (vec![3, 2, 1], None));
        assert!(page(items, Some("garbage"), 3).is_err());
    }
}
