//! Live queries. (1) Write-to-callback latency, commit included, for a write that changes one
//! subscription while 1, 100 and 10,000 subscriptions on the same collection are open (each
//! on its own owner), on SQLite and in memory; criterion's median plus a printed p99 from a
//! separate run of timed writes. (2) A chat workload: 5,000 messages in 50 conversations, one
//! subscription per conversation (latest 50, newest first), then 1,000 operations (70%
//! inserts, 20% edits, 10% deletes) — against raw rusqlite re-running the affected
//! conversation's prepared query (and decoding its rows) after each operation.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_channel::Receiver;
use rusqlite::{Connection, params};
use serde_json::{Value as Json, json};
use triplite::{Database, Direction, LiveResult, Query, Schema, Subscription};

fn todo_schema() -> Schema {
    Schema::from_json(&json!({"collections": {"todos": {
        "schema": {"type": "record", "properties": {
            "id": {"type": "string"}, "text": {"type": "string"}, "owner": {"type": "string"},
            "completed": {"type": "boolean"}, "created_at": {"type": "number"}}},
        "indexes": [["owner", "completed", "created_at"]]
    }}}))
    .unwrap()
}

/// The query of triplit-measured.md 5c, one per owner.
fn owner_query(owner: usize) -> Query {
    Query::new("todos")
        .filter("owner", "=", format!("user-{owner}"))
        .filter("completed", "=", false)
        .order("created_at", Direction::Desc)
        .limit(20)
}

struct Latency {
    db: Database,
    _subs: Vec<Subscription>,
    delivered: Receiver<usize>,
    next: usize,
    _dir: tempfile::TempDir,
}

impl Latency {
    fn new(subscriptions: usize, sqlite: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let builder = Database::builder().schema(todo_schema()).client_id("bench");
        let db =
            if sqlite { builder.open(dir.path().join("live.db")).unwrap() } else { builder.open_in_memory().unwrap() };
        let (tx, delivered) = crossbeam_channel::unbounded();
        let mut subs = Vec::with_capacity(subscriptions);
        for owner in 0..subscriptions {
            let tx = tx.clone();
            subs.push(
                db.subscribe_with(&owner_query(owner), move |r: LiveResult| tx.send(r.results.len()).unwrap()).unwrap(),
            );
        }
        for _ in 0..subscriptions {
            delivered.recv().unwrap(); // the initial results
        }
        Latency { db, _subs: subs, delivered, next: 0, _dir: dir }
    }

    /// One write that enters owner 0's window, until its callback has run.
    fn write_and_wait(&mut self) -> Duration {
        self.next += 1;
        let doc = json!({"id": format!("t{:08}", self.next), "text": "new", "owner": "user-0", "completed": false, "created_at": self.next});
        let start = Instant::now();
        self.db.insert("todos", doc).unwrap();
        self.delivered.recv().unwrap();
        start.elapsed()
    }
}

fn latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("live/write_to_callback");
    group.measurement_time(Duration::from_secs(4));
    for sqlite in [false, true] {
        for subscriptions in [1, 100, 10_000] {
            let name = format!("{}/{subscriptions}_subscriptions", if sqlite { "sqlite" } else { "memory" });
            let mut bench = Latency::new(subscriptions, sqlite);
            // p99 needs single samples: 2,000 writes, timed one by one.
            let mut samples: Vec<Duration> = (0..2_000).map(|_| bench.write_and_wait()).collect();
            samples.sort();
            println!(
                "{name}: single writes median {:?}, p99 {:?}",
                samples[samples.len() / 2],
                samples[samples.len() * 99 / 100]
            );
            group.bench_function(BenchmarkId::from_parameter(&name), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| bench.write_and_wait()).sum())
            });
        }
    }
    group.finish();
}

// ---- The chat workload.

const CONVERSATIONS: usize = 50;
const MESSAGES: usize = 5_000;
const OPERATIONS: usize = 1_000;

fn message(i: usize) -> Json {
    json!({"id": format!("m{i:07}"), "conversation_id": format!("c{}", i % CONVERSATIONS), "text": format!("message {i}"), "created_at": i})
}

fn conversation_query(c: usize) -> Query {
    Query::new("messages")
        .filter("conversation_id", "=", format!("c{c}"))
        .order("created_at", Direction::Desc)
        .limit(50)
}

enum Operation {
    Insert(usize),
    Edit(usize),
    Delete(usize),
}

/// The same 1,000 operations for both sides: 70% inserts, 20% edits, 10% deletes, on messages
/// chosen by a fixed pseudo-random sequence (never a deleted one).
fn operations() -> Vec<Operation> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut live: Vec<usize> = (0..MESSAGES).collect();
    let mut next = MESSAGES;
    (0..OPERATIONS)
        .map(|_| match random(10) {
            0..7 => {
                live.push(next);
                next += 1;
                Operation::Insert(next - 1)
            }
            7..9 => Operation::Edit(live[random(live.len())]),
            _ => Operation::Delete(live.swap_remove(random(live.len()))),
        })
        .collect()
}

fn chat_triplite(dir: &std::path::Path, ops: &[Operation]) -> Duration {
    let schema = Schema::from_json(&json!({"collections": {"messages": {
        "schema": {"type": "record", "properties": {
            "id": {"type": "string"}, "conversation_id": {"type": "string"}, "text": {"type": "string"}, "created_at": {"type": "number"}}},
        "indexes": [["conversation_id", "created_at"]]
    }}}))
    .unwrap();
    let db = Database::builder().schema(schema).client_id("bench").open(dir.join("chat.db")).unwrap();
    db.transact(|tx| (0..MESSAGES).try_for_each(|i| tx.insert("messages", message(i)).map(drop))).unwrap();
    let subs: Vec<Subscription> = (0..CONVERSATIONS).map(|c| db.subscribe(&conversation_query(c)).unwrap()).collect();
    for sub in &subs {
        sub.recv().unwrap();
    }
    let start = Instant::now();
    for op in ops {
        let i = match op {
            Operation::Insert(i) => {
                db.insert("messages", message(*i)).unwrap();
                i
            }
            Operation::Edit(i) => {
                db.update("messages", &format!("m{i:07}"), json!({"text": "edited"})).unwrap();
                i
            }
            Operation::Delete(i) => {
                db.delete("messages", &format!("m{i:07}")).unwrap();
                i
            }
        };
        // Results are computed as part of the commit; the consumer takes the new one (an edit
        // or delete outside the latest 50 leaves nothing to take).
        std::hint::black_box(subs[i % CONVERSATIONS].try_recv());
    }
    start.elapsed()
}

fn chat_raw(dir: &std::path::Path, ops: &[Operation]) -> Duration {
    let mut conn = Connection::open(dir.join("raw.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute_batch(
        "CREATE TABLE messages (id TEXT PRIMARY KEY, doc TEXT, conversation_id TEXT, created_at INTEGER) WITHOUT ROWID;
         CREATE INDEX messages_conversation ON messages (conversation_id, created_at);",
    )
    .unwrap();
    let insert = |conn: &Connection, m: &Json| {
        conn.prepare_cached("INSERT INTO messages VALUES (?1, ?2, ?3, ?4)")
            .unwrap()
            .execute(params![m["id"].as_str(), m.to_string(), m["conversation_id"].as_str(), m["created_at"].as_i64()])
            .unwrap();
    };
    let tx = conn.transaction().unwrap();
    (0..MESSAGES).for_each(|i| insert(&tx, &message(i)));
    tx.commit().unwrap();
    let start = Instant::now();
    for op in ops {
        let i = match op {
            Operation::Insert(i) => {
                insert(&conn, &message(*i));
                i
            }
            Operation::Edit(i) => {
                conn.prepare_cached("UPDATE messages SET doc = json_set(doc, '$.text', 'edited') WHERE id = ?1")
                    .unwrap()
                    .execute([format!("m{i:07}")])
                    .unwrap();
                i
            }
            Operation::Delete(i) => {
                conn.prepare_cached("DELETE FROM messages WHERE id = ?1")
                    .unwrap()
                    .execute([format!("m{i:07}")])
                    .unwrap();
                i
            }
        };
        let mut stmt = conn
            .prepare_cached("SELECT doc FROM messages WHERE conversation_id = ?1 ORDER BY created_at DESC LIMIT 50")
            .unwrap();
        let docs: Vec<Json> = stmt
            .query_map([format!("c{}", i % CONVERSATIONS)], |row| row.get::<_, String>(0))
            .unwrap()
            .map(|text| serde_json::from_str(&text.unwrap()).unwrap())
            .collect();
        std::hint::black_box(docs);
    }
    start.elapsed()
}

fn chat(c: &mut Criterion) {
    let ops = operations();
    let mut group = c.benchmark_group("live/chat_1000_operations");
    group.sample_size(10).throughput(Throughput::Elements(OPERATIONS as u64));
    group.bench_function("triplite", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| chat_triplite(tempfile::tempdir().unwrap().path(), &ops)).sum())
    });
    group.bench_function("raw_rusqlite_requery", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| chat_raw(tempfile::tempdir().unwrap().path(), &ops)).sum())
    });
    group.finish();
}

criterion_group!(benches, latency, chat);
criterion_main!(benches);
