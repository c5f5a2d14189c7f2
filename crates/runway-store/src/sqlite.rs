//! The embedded store: one SQLite database in WAL mode, fully synchronous commits.

use crate::{Doc, Query, Result, Store, StoreError, Txn};
use rusqlite::{Connection, OptionalExtension, params, types::Value};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
/// Never edit a migration that has shipped: append a new one.
const MIGRATIONS: &[&str] = &["
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
"];

/// The SQLite store. Transactions are serialised on one connection: the control plane's
/// load is small, and this keeps every transaction `IMMEDIATE` and simple.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
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
        })
    }
}

impl Store for SqliteStore {
    fn begin(&self) -> Result<Box<dyn Txn + '_>> {
        // A panic while a transaction was open rolled it back (see Drop); the connection
        // itself is still sound, so a poisoned lock is not a reason to stop serving.
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(Box::new(SqliteTxn { conn, open: true }))
    }
}

struct SqliteTxn<'a> {
    conn: MutexGuard<'a, Connection>,
    open: bool,
}

impl Drop for SqliteTxn<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
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
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let docs = stmt
            .query_map(rusqlite::params_from_iter(args), row_to_doc)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(docs)
    }

    fn insert(
        &mut self,
        kind: &str,
        id: &str,
        name: Option<&str>,
        parent: Option<&str>,
        body: &str,
    ) -> Result<i64> {
        let inserted = self
            .conn
            .query_row(
                "INSERT INTO docs (kind, id, name, parent, body) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (kind, id) DO NOTHING RETURNING seq",
                params![kind, id, name, parent, body],
                |r| r.get(0),
            )
            .optional()?;
        inserted.ok_or_else(|| StoreError::Conflict {
            kind: kind.to_string(),
            id: id.to_string(),
        })
    }

    fn put(
        &mut self,
        kind: &str,
        id: &str,
        name: Option<&str>,
        parent: Option<&str>,
        body: &str,
    ) -> Result<i64> {
        Ok(self.conn.query_row(
            "INSERT INTO docs (kind, id, name, parent, body) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (kind, id) DO UPDATE
             SET name = excluded.name, parent = excluded.parent, body = excluded.body
             RETURNING seq",
            params![kind, id, name, parent, body],
            |r| r.get(0),
        )?)
    }

    fn delete(&mut self, kind: &str, id: &str) -> Result<bool> {
        let n = self.conn.execute(
            "DELETE FROM docs WHERE kind = ?1 AND id = ?2",
            params![kind, id],
        )?;
        Ok(n > 0)
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        self.conn.execute_batch("COMMIT")?;
        self.open = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
