//! Write throughput: triplite against raw rusqlite in the same run.
//!
//! Data: five-attribute todos (id, text, completed, owner, created_at), owners cycling through 10
//! users, `completed = i % 3 == 0`, increasing `created_at`. The baseline inserts the same rows
//! as JSON documents into `todos(id PRIMARY KEY, doc, owner, completed, created_at) WITHOUT ROWID`
//! with an index on `(owner, completed, created_at)`, as in triplit-measured.md section 8;
//! triplite maintains the same index.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

mod common;
use common::{raw_insert, raw_table, todo, todo_properties};
use serde_json::{Value as Json, json};
use triplite::{Database, Schema};

const BULK: usize = 100_000;

fn schema() -> Schema {
    Schema::from_json(&json!({"collections": {"todos": {"schema": {"type": "record", "properties": todo_properties()},
        "indexes": [["owner", "completed", "created_at"]]}}}))
    .unwrap()
}

fn triplite_db(dir: &tempfile::TempDir) -> Database {
    Database::builder().schema(schema()).client_id("bench").open(dir.path().join("triplite.db")).unwrap()
}

fn bulk(c: &mut Criterion) {
    let docs: Vec<Json> = (0..BULK).map(todo).collect();
    let mut group = c.benchmark_group("insert_100k_one_transaction");
    group.throughput(Throughput::Elements(BULK as u64));
    group.sample_size(10).measurement_time(Duration::from_secs(20)).warm_up_time(Duration::from_secs(2));
    group.bench_function("triplite", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                (triplite_db(&dir), dir)
            },
            |(db, dir)| {
                db.transact(|tx| {
                    for doc in &docs {
                        tx.insert("todos", doc.clone())?;
                    }
                    Ok(())
                })
                .unwrap();
                (db, dir)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("raw_rusqlite", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                (raw_table(dir.path()), dir)
            },
            |(mut conn, dir)| {
                let tx = conn.transaction().unwrap();
                for doc in &docs {
                    raw_insert(&tx, doc);
                }
                tx.commit().unwrap();
                (conn, dir)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn single(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert_one_per_transaction");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    let dir = tempfile::tempdir().unwrap();
    let db = triplite_db(&dir);
    let mut i = 0;
    group.bench_function("triplite", |b| {
        b.iter(|| {
            i += 1;
            black_box(db.insert("todos", todo(i)).unwrap());
        })
    });
    let conn = raw_table(dir.path());
    let mut j = 0;
    group.bench_function("raw_rusqlite", |b| {
        b.iter(|| {
            j += 1;
            raw_insert(&conn, &todo(j));
        })
    });
    group.finish();
}

criterion_group!(benches, bulk, single);
criterion_main!(benches);
