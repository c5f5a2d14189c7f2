//! The embedded store: one SQLite database in WAL mode (commits flushed to disk, or only
//! handed to the OS for relaxed ones), one writer connection and a pool of readers.

use crate::{Doc, Index, Query, Result, Store, StoreError, Txn};
use rusqlite::{Connection, OptionalExtension, params, types::Value};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
/// Never edit a migration that has shipped: append a new one.
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE docs (
        seq    INTEGER PRIMARY KEY AUTOINCREMENT,
        kind   TEXT NOT NULL,
        id     TEXT NOT NULL,
        name   TEXT,
        parent TEXT,
        body   TEXT NOT NULL,
        UNIQUE (kind, id)
    );
    CREATE INDEX docs_by_name ON docs (kind, name);
    CREATE INDEX docs_by_parent ON docs (kind, parent, seq);
",
    "
    -- A kind's documents in insertion order without sorting them (the rowid, seq, is the
    -- index's last column): listings of every service or revision read them in order
    -- instead of copying the kind's whole table into a sorter first.
    CREATE INDEX docs_by_kind ON docs (kind);
",
    "
    -- Documents kept for the record only (deleted services) are left out of listings of
    -- current ones without being read: a pass over what runs costs what runs, not
    -- everything that ever ran.
    ALTER TABLE docs ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
    UPDATE docs SET archived = 1
        WHERE kind = 'service' AND json_extract(body, '$.status') = 'DELETED';
    CREATE INDEX docs_current ON docs (kind, archived);
",
];

/// The SQLite store. Writes are serialised on one connection, each transaction
/// `IMMEDIATE`; reads run on a pool of other connections, each on its own snapshot, so
/// in WAL mode they never wait for a writer (nor a writer for them).
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// The database file readers open; `None` for an in-memory store, whose readers
    /// share the writer's connection (another connection would see another database).
    path: Option<PathBuf>,
    readers: Readers,
}

/// The reader connections: at most [`READERS`] open, reused.
#[derive(Debug, Default)]
struct Readers {
    pool: Mutex<Pool>,
    /// Signalled when a reader is given back.
    given_back: Condvar,
}

#[derive(Debug, Default)]
struct Pool {
    idle: Vec<Connection>,
    /// Connections open, idle or in use.
    open: usize,
}

impl Readers {
    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The most reader connections open at once. Reads use the CPU and the OS's cache of
/// the file, so more than a few at once on a small host gain nothing, and each extra
/// one opened and closed costs its schema parse and its caches: with one per reading
/// thread, 200 services created at once opened 12,000 connections in five minutes, most
/// of the server's peak heap.
const READERS: usize = 4;
/// How long a read waits for a reader when [`READERS`] are in use before it opens one
/// more (closed when it ends), so a read taken inside another never waits for itself.
const READER_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
/// The page cache of each reader, in KiB (SQLite's default is 2000): readers share the
/// operating system's cache of the file, and a full cache per reader made the server
/// hold several copies of the database after a burst of reads.
const READER_CACHE_KIB: i64 = 256;
/// How long a statement waits for a lock before failing (a checkpoint, a migration).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        Self::init(conn, Some(path.to_path_buf()))
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?, None)
    }

    fn init(mut conn: Connection, path: Option<PathBuf>) -> Result<Self> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL keeps readers and the writer apart; FULL makes each commit durable before
        // the API answers, so an acknowledged change survives a crash or power loss.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                found: version,
                known,
            });
        }
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tracing::info!(version = i + 1, "applied store migration");
        }
        tx.commit()?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path,
            readers: Readers::default(),
        })
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while a transaction was open rolled it back (see Drop); the connection
        // itself is still sound, so a poisoned lock is not a reason to stop serving.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle reader connection, or a new one if fewer than [`READERS`] are open or
    /// none was given back within [`READER_WAIT`].
    fn reader(&self, path: &Path) -> Result<Connection> {
        let readers = &self.readers;
        let mut pool = readers.pool();
        let until = std::time::Instant::now() + READER_WAIT;
        loop {
            if let Some(conn) = pool.idle.pop() {
                return Ok(conn);
            }
            let left = until.saturating_duration_since(std::time::Instant::now());
            if pool.open < READERS || left.is_zero() {
                break;
            }
            pool = readers
                .given_back
                .wait_timeout(pool, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        pool.open += 1;
        drop(pool);
        let opened = Connection::open(path).and_then(|conn| {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.pragma_update(None, "query_only", true)?;
            conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
            Ok(conn)
        });
        if opened.is_err() {
            readers.pool().open -= 1;
        }
        Ok(opened?)
    }
}

impl SqliteStore {
    /// A writing transaction whose commit is flushed to disk (`FULL`) or only handed to
    /// the OS (`NORMAL`, WAL: durable across crashes of the process, flushed by the
    /// next full commit or checkpoint).
    fn write(&self, synchronous: &str) -> Result<Box<dyn Txn + '_>> {
        let conn = self.writer();
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {synchronous}; BEGIN IMMEDIATE"
        ))?;
        Ok(Box::new(SqliteTxn {
            conn: Held::Writer(conn),
            open: true,
            writable: true,
            refused: false,
        }))
    }
}

impl Store for SqliteStore {
    fn begin(&self) -> Result<Box<dyn Txn + '_>> {
        self.write("FULL")
    }

    fn begin_relaxed(&self) -> Result<Box<dyn Txn + '_>> {
        self.write("NORMAL")
    }

    fn release_memory(&self) {
        // Idle readers are opened again when needed; the writer's cache is emptied but
        // its connection kept (an in-memory store's only copy of the data is there).
        let mut pool = self.readers.pool();
        pool.open -= pool.idle.len();
        pool.idle.clear();
        drop(pool);
        if let Err(e) = self.writer().execute_batch("PRAGMA shrink_memory") {
            tracing::debug!(error = %e, "the store's cache was not emptied");
        }
    }

    fn read(&self) -> Result<Box<dyn Txn + '_>> {
        let conn = match &self.path {
            Some(path) => Held::Reader {
                conn: Some(self.reader(path)?),
                readers: &self.readers,
            },
            None => Held::Writer(self.writer()),
        };
        // A deferred transaction: its first read fixes the snapshot every later read
        // of it sees.
        conn.get().execute_batch("BEGIN DEFERRED")?;
        Ok(Box::new(SqliteTxn {
            conn,
            open: true,
            writable: false,
            refused: false,
        }))
    }
}

/// The connection a transaction runs on.
enum Held<'a> {
    Writer(MutexGuard<'a, Connection>),
    /// A reader, given back to the pool when the transaction ends.
    Reader {
        conn: Option<Connection>,
        readers: &'a Readers,
    },
}

impl Held<'_> {
    fn get(&self) -> &Connection {
        match self {
            Held::Writer(conn) => conn,
            Held::Reader { conn, .. } => conn.as_ref().expect("a reader holds its connection"),
        }
    }
}

struct SqliteTxn<'a> {
    conn: Held<'a>,
    open: bool,
    writable: bool,
    /// Whether a write was refused (a read-only transaction).
    refused: bool,
}

impl SqliteTxn<'_> {
    fn writable(&mut self) -> Result<&Connection> {
        if self.writable {
            Ok(self.conn.get())
        } else {
            self.refused = true;
            Err(StoreError::ReadOnly)
        }
    }
}

impl Drop for SqliteTxn<'_> {
    fn drop(&mut self) {
        let ended = !self.open || self.conn.get().execute_batch("ROLLBACK").is_ok();
        if let Held::Reader { conn, readers } = &mut self.conn
            && let Some(conn) = conn.take()
        {
            let mut pool = readers.pool();
            // One opened beyond the bound, or one whose transaction did not end, is
            // closed.
            if ended && pool.open <= READERS {
                pool.idle.push(conn);
            } else {
                pool.open -= 1;
            }
            // Either way a waiting read may go on: with this one, or with one it opens.
            readers.given_back.notify_one();
            drop(pool);
        }
    }
}

fn row_to_doc(row: &rusqlite::Row<'_>) -> rusqlite::Result<Doc> {
    Ok(Doc {
        seq: row.get(0)?,
        kind: row.get(1)?,
        id: row.get(2)?,
        name: row.get(3)?,
        parent: row.get(4)?,
        body: row.get(5)?,
    })
}

const COLUMNS: &str = "seq, kind, id, name, parent, body";

impl Txn for SqliteTxn<'_> {
    fn get(&self, kind: &str, id: &str) -> Result<Option<Doc>> {
        let sql = format!("SELECT {COLUMNS} FROM docs WHERE kind = ?1 AND id = ?2");
        Ok(self
            .conn
            .get()
            .query_row(&sql, params![kind, id], row_to_doc)
            .optional()?)
    }

    fn list(&self, kind: &str, q: &Query) -> Result<Vec<Doc>> {
        let mut sql = format!("SELECT {COLUMNS} FROM docs WHERE kind = ?");
        let mut args: Vec<Value> = vec![kind.to_string().into()];
        if let Some(name) = &q.name {
            sql.push_str(" AND name = ?");
            args.push(name.clone().into());
        }
        if let Some(parent) = &q.parent {
            sql.push_str(" AND parent = ?");
            args.push(parent.clone().into());
        }
        if q.current {
            sql.push_str(" AND archived = 0");
        }
        // One parameter holds the whole set, so that the statement is the same (and
        // cached) whatever its size, and no set exceeds SQLite's parameter limit.
        for (column, set) in [("parent", &q.parents), ("id", &q.ids)] {
            if let Some(set) = set {
                sql.push_str(&format!(
                    " AND {column} IN (SELECT value FROM json_each(?))"
                ));
                args.push(serde_json::json!(set).to_string().into());
            }
        }
        if let Some(after) = q.after {
            sql.push_str(if q.descending {
                " AND seq < ?"
            } else {
                " AND seq > ?"
            });
            args.push(after.into());
        }
        sql.push_str(if q.descending {
            " ORDER BY seq DESC"
        } else {
            " ORDER BY seq"
        });
        if let Some(limit) = q.limit {
            sql.push_str(" LIMIT ?");
            args.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
        }
        let mut stmt = self.conn.get().prepare_cached(&sql)?;
        let docs = stmt
            .query_map(rusqlite::params_from_iter(args), row_to_doc)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(docs)
    }

    fn insert(&mut self, kind: &str, id: &str, index: Index<'_>, body: &str) -> Result<i64> {
        let inserted = self
            .writable()?
            .query_row(
                "INSERT INTO docs (kind, id, name, parent, archived, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (kind, id) DO NOTHING RETURNING seq",
                params![kind, id, index.name, index.parent, index.archived, body],
                |r| r.get(0),
            )
            .optional()?;
        inserted.ok_or_else(|| StoreError::Conflict {
            kind: kind.to_string(),
            id: id.to_string(),
        })
    }

    fn put(&mut self, kind: &str, id: &str, index: Index<'_>, body: &str) -> Result<i64> {
        Ok(self.writable()?.query_row(
            "INSERT INTO docs (kind, id, name, parent, archived, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (kind, id) DO UPDATE
             SET name = excluded.name, parent = excluded.parent,
                 archived = excluded.archived, body = excluded.body
             RETURNING seq",
            params![kind, id, index.name, index.parent, index.archived, body],
            |r| r.get(0),
        )?)
    }

    fn delete(&mut self, kind: &str, id: &str) -> Result<bool> {
        let n = self.writable()?.execute(
            "DELETE FROM docs WHERE kind = ?1 AND id = ?2",
            params![kind, id],
        )?;
        Ok(n > 0)
    }

    fn refused_write(&self) -> bool {
        self.refused
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        self.conn.get().execute_batch("COMMIT")?;
        self.open = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
