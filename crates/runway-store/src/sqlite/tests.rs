use super::*;
use crate::{Record, Typed};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Thing {
    id: String,
    name: String,
    owner: Option<String>,
    n: i64,
}

impl Record for Thing {
    const KIND: &'static str = "thing";
    fn key(&self) -> &str {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
    fn parent(&self) -> Option<&str> {
        self.owner.as_deref()
    }
    /// A negative count stands for a thing kept for the record only.
    fn archived(&self) -> bool {
        self.n < 0
    }
}

fn thing(id: &str, name: &str, owner: Option<&str>) -> Thing {
    Thing {
        id: id.into(),
        name: name.into(),
        owner: owner.map(str::to_string),
        n: 0,
    }
}

#[test]
fn committed_writes_survive_reopening_and_dropped_ones_vanish() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        let mut tx = store.begin().unwrap();
        tx.create(&thing("a", "alpha", None)).unwrap();
        tx.commit().unwrap();
        let mut tx = store.begin().unwrap();
        tx.create(&thing("b", "beta", None)).unwrap();
        drop(tx);
    }
    let store = SqliteStore::open(&path).unwrap();
    let tx = store.begin().unwrap();
    assert_eq!(
        tx.load::<Thing>("a").unwrap(),
        Some(thing("a", "alpha", None))
    );
    assert_eq!(tx.load::<Thing>("b").unwrap(), None);
}

#[test]
fn insert_conflicts_and_put_keeps_position() {
    let store = SqliteStore::in_memory().unwrap();
    let mut tx = store.begin().unwrap();
    let seq_a = tx.create(&thing("a", "alpha", None)).unwrap();
    tx.create(&thing("b", "beta", None)).unwrap();
    assert!(matches!(
        tx.create(&thing("a", "again", None)),
        Err(StoreError::Conflict { .. })
    ));
    let mut a = thing("a", "alpha", None);
    a.n = 7;
    assert_eq!(tx.save(&a).unwrap(), seq_a);
    let all = tx.load_all::<Thing>(&Query::default()).unwrap();
    assert_eq!(
        all.iter().map(|(_, t)| t.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(all[0].1.n, 7);
    assert!(tx.remove::<Thing>("a").unwrap());
    assert!(!tx.remove::<Thing>("a").unwrap());
}

#[test]
fn queries_filter_order_and_page() {
    let store = SqliteStore::in_memory().unwrap();
    let mut tx = store.begin().unwrap();
    for i in 0..10 {
        let owner = if i % 2 == 0 { "even" } else { "odd" };
        tx.create(&thing(
            &format!("t{i}"),
            &format!("n{}", i % 3),
            Some(owner),
        ))
        .unwrap();
    }
    let ids = |q: Query| -> Vec<String> {
        tx.load_all::<Thing>(&q)
            .unwrap()
            .into_iter()
            .map(|(_, t)| t.id)
            .collect()
    };
    assert_eq!(
        ids(Query {
            name: Some("n0".into()),
            ..Default::default()
        }),
        ["t0", "t3", "t6", "t9"]
    );
    assert_eq!(
        ids(Query {
            parent: Some("odd".into()),
            limit: Some(2),
            ..Default::default()
        }),
        ["t1", "t3"]
    );
    let first = tx
        .load_all::<Thing>(&Query {
            limit: Some(3),
            ..Default::default()
        })
        .unwrap();
    let after = first.last().unwrap().0;
    assert_eq!(
        ids(Query {
            after: Some(after),
            limit: Some(2),
            ..Default::default()
        }),
        ["t3", "t4"]
    );
    assert_eq!(
        ids(Query {
            descending: true,
            limit: Some(3),
            ..Default::default()
        }),
        ["t9", "t8", "t7"]
    );
    let seq_t5 = tx.get("thing", "t5").unwrap().unwrap().seq;
    assert_eq!(
        ids(Query {
            descending: true,
            after: Some(seq_t5),
            limit: Some(2),
            ..Default::default()
        }),
        ["t4", "t3"]
    );
    // Sets of parents and ids, in insertion order whatever the set's order.
    assert_eq!(
        ids(Query {
            parents: Some(vec!["odd".into(), "nobody".into()]),
            limit: Some(3),
            ..Default::default()
        }),
        ["t1", "t3", "t5"]
    );
    assert_eq!(
        ids(Query {
            ids: Some(vec!["t7".into(), "t2".into(), "t42".into()]),
            ..Default::default()
        }),
        ["t2", "t7"]
    );
    assert_eq!(
        ids(Query {
            ids: Some(vec!["t7".into()]),
            parents: Some(vec!["even".into()]),
            ..Default::default()
        }),
        Vec::<String>::new()
    );
    assert!(
        ids(Query {
            parents: Some(Vec::new()),
            ..Default::default()
        })
        .is_empty()
    );
}

#[test]
fn listings_of_current_documents_skip_archived_ones_until_they_are_current_again() {
    let store = SqliteStore::in_memory().unwrap();
    let mut tx = store.begin().unwrap();
    let mut old = thing("a", "old", Some("o"));
    old.n = -1;
    tx.create(&old).unwrap();
    tx.create(&thing("b", "new", Some("o"))).unwrap();
    let current = Query {
        current: true,
        ..Query::default()
    };
    let ids = |tx: &dyn Txn, q: &Query| -> Vec<String> {
        tx.load_all::<Thing>(q)
            .unwrap()
            .into_iter()
            .map(|(_, t)| t.id)
            .collect()
    };
    assert_eq!(ids(&*tx, &current), ["b"]);
    assert_eq!(ids(&*tx, &Query::default()), ["a", "b"], "all are kept");
    let of_owner = Query {
        parent: Some("o".into()),
        ..current.clone()
    };
    assert_eq!(ids(&*tx, &of_owner), ["b"]);
    old.n = 1;
    tx.save(&old).unwrap();
    assert_eq!(ids(&*tx, &current), ["a", "b"]);
    let mut new = thing("b", "new", Some("o"));
    new.n = -2;
    tx.save(&new).unwrap();
    assert_eq!(ids(&*tx, &current), ["a"]);
    tx.commit().unwrap();
}

#[test]
fn services_deleted_before_the_archive_column_are_archived_by_its_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    // A database as the two migrations before it left it.
    let conn = Connection::open(&path).unwrap();
    for sql in &MIGRATIONS[..2] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 2).unwrap();
    for (id, status) in [("s1", "DELETED"), ("s2", "RUNNING"), ("s3", "PAUSED")] {
        conn.execute(
            "INSERT INTO docs (kind, id, name, body) VALUES ('service', ?1, ?1, ?2)",
            params![id, serde_json::json!({ "status": status }).to_string()],
        )
        .unwrap();
    }
    // Another kind's body with the same field is not a service.
    conn.execute(
        "INSERT INTO docs (kind, id, body) VALUES ('operation', 'o1', '{\"status\":\"DELETED\"}')",
        [],
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    let tx = store.read().unwrap();
    let current = Query {
        current: true,
        ..Query::default()
    };
    let ids: Vec<String> = tx
        .list("service", &current)
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["s2", "s3"]);
    assert_eq!(tx.list("service", &Query::default()).unwrap().len(), 3);
    assert_eq!(tx.list("operation", &current).unwrap().len(), 1);
}

#[test]
fn what_was_stored_is_read_the_same_after_the_caches_are_given_back() {
    let dir = tempfile::tempdir().unwrap();
    let on_disk = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let in_memory = SqliteStore::in_memory().unwrap();
    for store in [&on_disk, &in_memory] {
        let mut tx = store.begin().unwrap();
        tx.create(&thing("a", "one", None)).unwrap();
        tx.commit().unwrap();
        // An idle reader, with its cache filled.
        drop(store.read().unwrap().load::<Thing>("a").unwrap());
        store.release_memory();
        let tx = store.read().unwrap();
        assert_eq!(
            tx.load::<Thing>("a").unwrap(),
            Some(thing("a", "one", None))
        );
        drop(tx);
        let mut tx = store.begin().unwrap();
        tx.create(&thing("b", "two", None)).unwrap();
        tx.commit().unwrap();
        store.release_memory();
        assert_eq!(
            store
                .read()
                .unwrap()
                .load_all::<Thing>(&Query::default())
                .unwrap()
                .len(),
            2
        );
    }
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::TooNew { found: 99, .. })
    ));
}

#[test]
fn corrupt_bodies_are_reported_not_panicked_on() {
    let store = SqliteStore::in_memory().unwrap();
    let mut tx = store.begin().unwrap();
    tx.put("thing", "x", Index::default(), "{not json").unwrap();
    assert!(matches!(
        tx.load::<Thing>("x"),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn reads_run_beside_an_open_write_and_see_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let mut tx = store.begin().unwrap();
    tx.create(&thing("a", "alpha", None)).unwrap();
    tx.commit().unwrap();

    let before = store.read().unwrap();
    assert_eq!(before.load::<Thing>("a").unwrap().unwrap().name, "alpha");
    // A writer holds its transaction open; a reader neither waits for it nor sees it.
    let mut writer = store.begin().unwrap();
    writer.create(&thing("b", "beta", None)).unwrap();
    let during = std::thread::scope(|s| {
        s.spawn(|| {
            let tx = store.read().unwrap();
            tx.load::<Thing>("b").unwrap()
        })
        .join()
        .unwrap()
    });
    assert_eq!(during, None, "an uncommitted write is not seen");
    writer.commit().unwrap();
    assert_eq!(
        before.load::<Thing>("b").unwrap(),
        None,
        "a read transaction keeps the snapshot it started with"
    );
    drop(before);
    let after = store.read().unwrap();
    assert!(after.load::<Thing>("b").unwrap().is_some());
}

#[test]
fn a_read_transaction_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    for store in [
        SqliteStore::open(&dir.path().join("state.db")).unwrap(),
        SqliteStore::in_memory().unwrap(),
    ] {
        let mut tx = store.read().unwrap();
        assert!(!tx.refused_write());
        let err = tx.create(&thing("a", "alpha", None)).unwrap_err();
        assert!(matches!(err, StoreError::ReadOnly), "{err}");
        // Said by the transaction too, whatever the caller made of the error.
        assert!(tx.refused_write());
        assert!(matches!(
            tx.remove::<Thing>("a").unwrap_err(),
            StoreError::ReadOnly
        ));
        drop(tx);
        // The connection is sound afterwards, for reads and writes.
        let mut tx = store.begin().unwrap();
        tx.create(&thing("a", "alpha", None)).unwrap();
        tx.commit().unwrap();
        assert!(store.read().unwrap().load::<Thing>("a").unwrap().is_some());
    }
}

#[test]
fn relaxed_commits_are_seen_and_kept_like_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        let mut tx = store.begin_relaxed().unwrap();
        tx.create(&thing("a", "alpha", None)).unwrap();
        tx.commit().unwrap();
        assert!(store.read().unwrap().load::<Thing>("a").unwrap().is_some());
        let mut tx = store.begin().unwrap();
        tx.create(&thing("b", "beta", None)).unwrap();
        tx.commit().unwrap();
    }
    // A closed (or killed) process keeps both: the OS holds what was not flushed.
    let store = SqliteStore::open(&path).unwrap();
    let tx = store.read().unwrap();
    assert!(tx.load::<Thing>("a").unwrap().is_some());
    assert!(tx.load::<Thing>("b").unwrap().is_some());
}

#[test]
fn many_reads_at_once_share_a_few_connections_and_reads_within_reads_do_not_wait_forever() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    let mut tx = store.begin().unwrap();
    tx.create(&thing("a", "one", None)).unwrap();
    tx.commit().unwrap();
    let most = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                for _ in 0..50 {
                    let tx = store.read().unwrap();
                    assert!(tx.load::<Thing>("a").unwrap().is_some());
                    most.fetch_max(
                        store.readers.pool().open,
                        std::sync::atomic::Ordering::SeqCst,
                    );
                }
            });
        }
    });
    assert!(
        most.load(std::sync::atomic::Ordering::SeqCst) <= READERS,
        "{} readers open at once",
        most.load(std::sync::atomic::Ordering::SeqCst)
    );
    // Every reader in use, and one more read: it gets a connection of its own.
    let held: Vec<_> = (0..READERS).map(|_| store.read().unwrap()).collect();
    let extra = store.read().unwrap();
    assert!(extra.load::<Thing>("a").unwrap().is_some());
    drop(extra);
    drop(held);
    let pool = store.readers.pool();
    assert_eq!((pool.open, pool.idle.len()), (READERS, READERS));
}
