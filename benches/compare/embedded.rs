//! The embedded workloads on triplite (its Rust API, on a SQLite file) and on raw rusqlite (the
//! floor: the same rows as JSON documents in one table with the same index, queried with
//! hand-written SQL). benches/triplit-harness/db-bench.mjs runs the same workloads on
//! `@triplit/db`; the workload names below are the ones it prints.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use rusqlite::Connection;
use serde_json::{Value as Json, json};
use triplite::{Database, Direction, LiveResult, Query, Schema, Subscription};

use crate::common::{load_todos, raw_insert, raw_table, todo};
use crate::stats::timed;
use crate::{Plan, Sink};

pub const BULK: &str = "bulk insert, one transaction";
pub const LOOKUP: &str = "point lookup by id";
pub const FILTER: &str = "filter + order + limit 20";
pub const FILTER_AS_USER: &str = "filter + order + limit 20, as a user under a read rule";
pub const INCLUDE: &str = "relational include, limit 20";
pub const SCAN: &str = "unindexed scan (like), limit 20";
pub const SINGLE: &str = "single-entity transaction";
pub const LIVE: &str = "live query: write → callback, by subscriptions open";

pub fn schema_json() -> Json {
    serde_json::from_str(include_str!("schema.json")).expect("benches/compare/schema.json")
}

fn indexed() -> Query {
    Query::new("todos")
        .filter("owner", "=", "user-3")
        .filter("completed", "=", false)
        .order("created_at", Direction::Desc)
}

fn check(rows: &[impl Sized], wanted: usize) {
    assert_eq!(rows.len(), wanted, "a query answered the wrong number of rows");
}

/// Every embedded workload on triplite at `size` todos.
pub fn triplite(plan: &Plan, size: usize, dir: &std::path::Path, sink: &mut Sink) {
    let schema = Schema::from_json(&schema_json()).unwrap();
    let mut opened = 0;
    let mut open = || {
        opened += 1;
        Database::builder().schema(schema.clone()).open(dir.join(format!("triplite-{size}-{opened}.db"))).unwrap()
    };
    let mut db = None;
    let bulk = timed(plan.reps, |_| {
        let fresh = open();
        load_todos(&fresh, size);
        db = Some(fresh);
    });
    let db = db.unwrap();
    sink.add(BULK, size, "triplite", &bulk, "ms");
    let lookups =
        timed(plan.runs * 10, |k| assert!(db.fetch_by_id("todos", &id((k * 7919) % size)).unwrap().is_some()));
    sink.add(LOOKUP, size, "triplite", &lookups, "ms");
    let filter = indexed().limit(20);
    sink.add(FILTER, size, "triplite", &timed(plan.runs, |_| check(&db.fetch(&filter).unwrap(), 20)), "ms");
    let user = db.session_from_claims(json!({"sub": "user-3"})).unwrap();
    let own = Query::new("todos").filter("completed", "=", false).order("created_at", Direction::Desc).limit(20);
    sink.add(FILTER_AS_USER, size, "triplite", &timed(plan.runs, |_| check(&user.fetch(&own).unwrap(), 20)), "ms");
    let included = filter.clone().include("profile");
    let include = timed(plan.runs, |_| {
        let rows = db.fetch(&included).unwrap();
        check(&rows, 20);
        assert_eq!(rows[0]["profile"]["name"], "User 3");
    });
    sink.add(INCLUDE, size, "triplite", &include, "ms");
    let like = Query::new("todos").filter("text", "like", "%99%").order("created_at", Direction::Asc).limit(20);
    sink.add(SCAN, size, "triplite", &timed((plan.runs / 2).max(3), |_| check(&db.fetch(&like).unwrap(), 20)), "ms");
    let singles = timed(plan.runs * 10, |k| {
        db.insert("todos", todo(size + k)).unwrap();
    });
    sink.add(SINGLE, size, "triplite", &singles, "ms");
}

fn id(i: usize) -> String {
    todo(i)["id"].as_str().unwrap().to_owned()
}

/// Live queries on triplite: `count` subscriptions on a database of `size` todos, each to its own
/// owner's window; a write into owner 0's window, until its callback has it.
pub fn triplite_live(plan: &Plan, size: usize, count: usize, dir: &std::path::Path, sink: &mut Sink) {
    let schema = Schema::from_json(&schema_json()).unwrap();
    let db = Database::builder().schema(schema).open(dir.join(format!("live-{count}.db"))).unwrap();
    load_todos(&db, size);
    let (tx, delivered) = crossbeam_channel::unbounded::<Vec<Arc<Json>>>();
    let subscriptions: Vec<Subscription> = (0..count)
        .map(|owner| {
            let tx = tx.clone();
            let query = Query::new("todos")
                .filter("owner", "=", format!("user-{owner}"))
                .filter("completed", "=", false)
                .order("created_at", Direction::Desc)
                .limit(20);
            db.subscribe_with(&query, move |result: LiveResult| {
                if owner == 0 {
                    let _ = tx.send(result.results);
                }
            })
            .unwrap()
        })
        .collect();
    db.flush_subscriptions();
    drain(&delivered);
    let samples = timed(plan.runs, |k| {
        let doc_id = format!("live-{k:06}");
        let doc = json!({"id": doc_id, "text": "live", "owner": "user-0", "completed": false,
                         "created_at": 2_000_000_000_000u64 + k as u64});
        db.insert("todos", doc).unwrap();
        loop {
            let results = delivered.recv_timeout(Duration::from_secs(60)).expect("the callback runs");
            if results.iter().any(|row| row["id"] == doc_id.as_str()) {
                break;
            }
        }
    });
    drop(subscriptions);
    sink.add(LIVE, count, "triplite", &samples, "ms");
}

fn drain(delivered: &Receiver<Vec<Arc<Json>>>) {
    while delivered.recv_timeout(Duration::from_millis(50)).is_ok() {}
}

/// The raw SQLite floor at `size` todos (no live queries, no permissions: it has neither).
pub fn sqlite(plan: &Plan, size: usize, dir: &std::path::Path, sink: &mut Sink) {
    let mut conn = None;
    let mut opened = 0;
    let bulk = timed(plan.reps, |_| {
        opened += 1;
        let fresh_dir = dir.join(format!("raw-{size}-{opened}"));
        std::fs::create_dir_all(&fresh_dir).unwrap();
        let mut fresh = raw_table(&fresh_dir);
        let tx = fresh.transaction().unwrap();
        tx.execute_batch("CREATE TABLE profiles (id TEXT PRIMARY KEY, doc TEXT) WITHOUT ROWID").unwrap();
        for i in 0..10 {
            let doc = json!({"id": format!("user-{i}"), "name": format!("User {i}")});
            tx.execute("INSERT INTO profiles VALUES (?1, ?2)", (doc["id"].as_str(), doc.to_string())).unwrap();
        }
        for i in 0..size {
            raw_insert(&tx, &todo(i));
        }
        tx.commit().unwrap();
        conn = Some(fresh);
    });
    let conn = conn.unwrap();
    sink.add(BULK, size, "sqlite", &bulk, "ms");
    let lookups = timed(plan.runs * 10, |k| {
        check(&docs(&conn, "SELECT doc FROM todos WHERE id = ?1", [id((k * 7919) % size)]), 1)
    });
    sink.add(LOOKUP, size, "sqlite", &lookups, "ms");
    const FILTERED: &str = "SELECT doc FROM todos WHERE owner = ?1 AND completed = 0 ORDER BY created_at DESC LIMIT 20";
    sink.add(FILTER, size, "sqlite", &timed(plan.runs, |_| check(&docs(&conn, FILTERED, ["user-3"]), 20)), "ms");
    let include = timed(plan.runs, |_| {
        let mut stmt = conn
            .prepare_cached(
                "SELECT t.doc, p.doc FROM (SELECT doc, owner FROM todos WHERE owner = ?1 AND completed = 0
                 ORDER BY created_at DESC LIMIT 20) t LEFT JOIN profiles p ON p.id = t.owner",
            )
            .unwrap();
        let rows: Vec<Json> = stmt
            .query_map(["user-3"], |row| Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?)))
            .unwrap()
            .map(|row| {
                let (todo, profile) = row.unwrap();
                let mut todo: Json = serde_json::from_str(&todo).unwrap();
                todo["profile"] = profile.map_or(Json::Null, |p| serde_json::from_str(&p).unwrap());
                todo
            })
            .collect();
        check(&rows, 20);
        assert_eq!(rows[0]["profile"]["name"], "User 3");
    });
    sink.add(INCLUDE, size, "sqlite", &include, "ms");
    const LIKE: &str =
        "SELECT doc FROM todos WHERE json_extract(doc, '$.text') LIKE '%99%' ORDER BY created_at LIMIT 20";
    sink.add(SCAN, size, "sqlite", &timed((plan.runs / 2).max(3), |_| check(&docs(&conn, LIKE, []), 20)), "ms");
    let singles = timed(plan.runs * 10, |k| {
        let tx = conn.unchecked_transaction().unwrap();
        raw_insert(&tx, &todo(size + k));
        tx.commit().unwrap();
    });
    sink.add(SINGLE, size, "sqlite", &singles, "ms");
}

fn docs(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Vec<Json> {
    let mut stmt = conn.prepare_cached(sql).unwrap();
    let rows = stmt.query_map(params, |row| row.get::<_, String>(0)).unwrap();
    rows.map(|text| serde_json::from_str(&text.unwrap()).unwrap()).collect()
}
