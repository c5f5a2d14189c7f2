//! runway's durable state. It owns the [`Store`] interface every other crate writes
//! through, its embedded SQLite implementation ([`SqliteStore`]: WAL, migrations,
//! transactions), the typed [`Record`] layer on top of it, and atomic file writes for
//! state that lives in files ([`fs::write_atomic`]).
//!
//! Documents are JSON bodies with a kind, an id and three indexed columns (name, parent,
//! and whether the document is archived: kept for the record only, as a deleted
//! service's is), in insertion order. The interface is small enough that a PostgreSQL
//! implementation can satisfy it with the same schema (`jsonb` bodies).
//!
//! This crate must never interpret what it stores (that is the model's and the API's
//! business; the records' own indexed values come from their [`Record`] impls, and the
//! one migration that set them for documents stored before names the field it read) and
//! never leave a half-written document or file visible after a crash.

#![forbid(unsafe_code)]

pub mod fs;
mod model;
mod record;
mod sqlite;

pub use record::{Record, Typed};
pub use sqlite::SqliteStore;

/// A stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    pub kind: String,
    pub id: String,
    /// Indexed name, for lookups by name.
    pub name: Option<String>,
    /// Indexed parent id, for listing children (a service's operations).
    pub parent: Option<String>,
    /// Position in insertion order; assigned by the store, unchanged by updates.
    pub seq: i64,
    /// The JSON body.
    pub body: String,
}

/// Which documents of a kind to list. Results are in insertion order (`seq`), oldest
/// first unless `descending`.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub name: Option<String>,
    pub parent: Option<String>,
    /// Only documents under one of these parents (none if empty).
    pub parents: Option<Vec<String>>,
    /// Only documents with one of these ids (none if empty).
    pub ids: Option<Vec<String>>,
    /// Only current documents: not those kept for the record only ([`Index::archived`]).
    pub current: bool,
    /// Only documents after this position (before it when descending).
    pub after: Option<i64>,
    pub limit: Option<usize>,
    pub descending: bool,
}

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A document of this kind and id already exists.
    #[error("{kind} {id} already exists")]
    Conflict { kind: String, id: String },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// A stored body is not what its record type expects.
    #[error("stored {kind} {id} is corrupt: {source}")]
    Corrupt {
        kind: String,
        id: String,
        source: serde_json::Error,
    },
    /// A record could not be encoded.
    #[error("cannot encode {kind}: {0}", kind = .1)]
    Encode(serde_json::Error, String),
    /// The data directory could not be used.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A read transaction was asked to write.
    #[error("a read-only transaction cannot write")]
    ReadOnly,
    /// The database was written by a newer runway.
    #[error("the database schema is version {found}, newer than this runway understands ({known})")]
    TooNew { found: i64, known: i64 },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The state store. Every change happens inside a transaction; a transaction that is
/// dropped without [`Txn::commit`] changes nothing.
pub trait Store: Send + Sync + 'static {
    /// Starts a transaction that may write. Writing transactions are serialised: keep
    /// them short, and read with [`Store::read`] what needs no write.
    fn begin(&self) -> Result<Box<dyn Txn + '_>>;

    /// Starts a transaction that may write, whose commit survives a crash of runway but
    /// not necessarily a power loss (it is not flushed to disk on its own; the next
    /// [`Store::begin`] commit or checkpoint flushes it). For state that a restart of
    /// the host rebuilds or repeats anyway (instances, addresses, the controller's
    /// steps), so that it costs no disk flush per change. What a client was told is
    /// stored goes through [`Store::begin`].
    fn begin_relaxed(&self) -> Result<Box<dyn Txn + '_>> {
        self.begin()
    }

    /// Starts a read-only transaction: every read in it sees the same committed state,
    /// and it runs alongside a writing transaction without waiting for it. Its writes
    /// fail with [`StoreError::ReadOnly`].
    fn read(&self) -> Result<Box<dyn Txn + '_>>;

    /// Gives back the memory the store keeps to read faster (page caches, idle
    /// connections); what it reads next comes from the operating system's file cache.
    /// For a server that has gone quiet after a burst.
    fn release_memory(&self) {}
}

/// What the store indexes of a document besides its kind and id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Index<'a> {
    /// For lookups by name.
    pub name: Option<&'a str>,
    /// For listing children (a service's operations).
    pub parent: Option<&'a str>,
    /// Kept for the record only (a deleted service): listings of current documents
    /// ([`Query::current`]) skip it without reading it.
    pub archived: bool,
}

/// A transaction over the store.
pub trait Txn {
    fn get(&self, kind: &str, id: &str) -> Result<Option<Doc>>;
    fn list(&self, kind: &str, query: &Query) -> Result<Vec<Doc>>;
    /// Inserts a new document and returns its position; [`StoreError::Conflict`] if the
    /// kind and id exist.
    fn insert(&mut self, kind: &str, id: &str, index: Index<'_>, body: &str) -> Result<i64>;
    /// Inserts or replaces a document, keeping its position if it existed.
    fn put(&mut self, kind: &str, id: &str, index: Index<'_>, body: &str) -> Result<i64>;
    /// Deletes a document; whether it existed.
    fn delete(&mut self, kind: &str, id: &str) -> Result<bool>;
    /// Whether this transaction refused a write because it is read-only
    /// ([`Store::read`]): work tried in a read transaction first runs again in a writing
    /// one when this says so, whatever the work made of the refusal (an operation may
    /// wrap the error in its own).
    fn refused_write(&self) -> bool {
        false
    }
    /// Makes every change of this transaction durable at once.
    fn commit(self: Box<Self>) -> Result<()>;
}
