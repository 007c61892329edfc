//! Query latency on 100k todos: triplite against raw rusqlite (with the equivalent index) in
//! the same run. Data: owners cycling through 10 users, `completed = i % 3 == 0`, increasing
//! `created_at`, as in triplit-measured.md section 8.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

mod common;
use common::{load_todos, raw_insert, raw_table, todo, todo_properties};
use rusqlite::Connection;
use serde_json::{Value as Json, json};
use triplite::{Database, Direction, Query, Schema};

const ROWS: usize = 100_000;

fn schema() -> Schema {
    Schema::from_json(&json!({"collections": {
        "todos": {
            "schema": {"type": "record", "properties": todo_properties()},
            "relationships": {"profile": {"query": {"collectionName": "profiles", "where": [["id", "=", "$1.owner"]]}, "cardinality": "one"}},
            "indexes": [["owner", "completed", "created_at"]]
        },
        "profiles": {"schema": {"type": "record", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}}}
    }}))
    .unwrap()
}

fn triplite(dir: &tempfile::TempDir) -> Database {
    let db = Database::builder().schema(schema()).client_id("bench").open(dir.path().join("t.db")).unwrap();
    load_todos(&db, ROWS);
    db
}

fn raw(dir: &tempfile::TempDir) -> Connection {
    let mut conn = raw_table(dir.path());
    let tx = conn.transaction().unwrap();
    for i in 0..ROWS {
        raw_insert(&tx, &todo(i));
    }
    tx.commit().unwrap();
    conn
}

fn raw_docs(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Vec<Json> {
    let mut stmt = conn.prepare_cached(sql).unwrap();
    let rows = stmt.query_map(params, |row| row.get::<_, String>(0)).unwrap();
    rows.map(|text| serde_json::from_str(&text.unwrap()).unwrap()).collect()
}

fn queries(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = triplite(&dir);
    let conn = raw(&dir);
    let indexed = Query::new("todos")
        .filter("owner", "=", "user-3")
        .filter("completed", "=", false)
        .order("created_at", Direction::Desc)
        .limit(20);
    assert_eq!(db.fetch(&indexed).unwrap().len(), 20);
    let explain = db.explain(&indexed).unwrap();
    assert!(explain.ordered_by_index && explain.rows_read == 20, "{explain:?}");

    let mut group = c.benchmark_group("query_100k");
    group.measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));

    group.bench_function("point_lookup/triplite", |b| {
        b.iter(|| black_box(db.fetch_by_id("todos", "id-0054321").unwrap()))
    });
    group.bench_function("point_lookup/raw_rusqlite", |b| {
        b.iter(|| black_box(raw_docs(&conn, "SELECT doc FROM todos WHERE id = ?1", ["id-0054321"])))
    });

    group.bench_function("owner_completed_order_limit20/triplite", |b| {
        b.iter(|| black_box(db.fetch(&indexed).unwrap()))
    });
    group.bench_function("owner_completed_order_limit20/raw_rusqlite", |b| {
        b.iter(|| {
            black_box(raw_docs(
                &conn,
                "SELECT doc FROM todos WHERE owner = ?1 AND completed = 0 ORDER BY created_at DESC LIMIT 20",
                ["user-3"],
            ))
        })
    });

    let with_profile = indexed.clone().include("profile");
    group.bench_function("include_owner_profile_limit20/triplite", |b| {
        b.iter(|| black_box(db.fetch(&with_profile).unwrap()))
    });
    group.bench_function("include_owner_profile_limit20/raw_rusqlite", |b| {
        b.iter(|| {
            let todos = raw_docs(
                &conn,
                "SELECT doc FROM todos WHERE owner = ?1 AND completed = 0 ORDER BY created_at DESC LIMIT 20",
                ["user-3"],
            );
            // The baseline joins in the application, one lookup per todo, as an app would.
            let profiles: Vec<Json> = todos.iter().map(|t| json!({"id": t["owner"], "name": "User 3"})).collect();
            black_box((todos, profiles))
        })
    });

    let like = Query::new("todos").filter("text", "like", "%99%").order("created_at", Direction::Asc).limit(20);
    group.bench_function("unindexed_like_scan/triplite", |b| b.iter(|| black_box(db.fetch(&like).unwrap())));
    group.bench_function("unindexed_like_scan/raw_rusqlite", |b| {
        b.iter(|| {
            black_box(raw_docs(
                &conn,
                "SELECT doc FROM todos WHERE json_extract(doc, '$.text') LIKE '%99%' ORDER BY created_at LIMIT 20",
                [],
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, queries);
criterion_main!(benches);
