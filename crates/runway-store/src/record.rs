//! Typed access: a [`Record`] is a serde type stored as one document.

use crate::{Doc, Index, Query, Result, StoreError, Txn};
use serde::{Serialize, de::DeserializeOwned};

/// A type stored as documents of one kind.
pub trait Record: Serialize + DeserializeOwned {
    /// The document kind.
    const KIND: &'static str;
    /// The id the record is stored under.
    fn key(&self) -> &str;
    fn name(&self) -> Option<&str> {
        None
    }
    fn parent(&self) -> Option<&str> {
        None
    }
    /// Whether the record is kept for the record only ([`Index::archived`]).
    fn archived(&self) -> bool {
        false
    }
}

fn index<R: Record>(record: &R) -> Index<'_> {
    Index {
        name: record.name(),
        parent: record.parent(),
        archived: record.archived(),
    }
}

/// Typed reads and writes on any transaction.
pub trait Typed {
    fn load<R: Record>(&self, id: &str) -> Result<Option<R>>;
    /// Lists records with their positions, for pagination.
    fn load_all<R: Record>(&self, query: &Query) -> Result<Vec<(i64, R)>>;
    fn create<R: Record>(&mut self, record: &R) -> Result<i64>;
    fn save<R: Record>(&mut self, record: &R) -> Result<i64>;
    fn remove<R: Record>(&mut self, id: &str) -> Result<bool>;
}

fn decode<R: Record>(doc: &Doc) -> Result<R> {
    serde_json::from_str(&doc.body).map_err(|source| StoreError::Corrupt {
        kind: doc.kind.clone(),
        id: doc.id.clone(),
        source,
    })
}

fn encode<R: Record>(record: &R) -> Result<String> {
    serde_json::to_string(record).map_err(|e| StoreError::Encode(e, R::KIND.to_string()))
}

impl<T: Txn + ?Sized> Typed for T {
    fn load<R: Record>(&self, id: &str) -> Result<Option<R>> {
        self.get(R::KIND, id)?.as_ref().map(decode).transpose()
    }

    fn load_all<R: Record>(&self, query: &Query) -> Result<Vec<(i64, R)>> {
        self.list(R::KIND, query)?
            .iter()
            .map(|d| Ok((d.seq, decode(d)?)))
            .collect()
    }

    fn create<R: Record>(&mut self, record: &R) -> Result<i64> {
        let body = encode(record)?;
        self.insert(R::KIND, record.key(), index(record), &body)
    }

    fn save<R: Record>(&mut self, record: &R) -> Result<i64> {
        let body = encode(record)?;
        self.put(R::KIND, record.key(), index(record), &body)
    }

    fn remove<R: Record>(&mut self, id: &str) -> Result<bool> {
        self.delete(R::KIND, id)
    }
}
