//! The data set and raw-SQLite baseline the benchmarks share: the todos of
//! `triplit-measured.md` section 8 — owners cycling through 10 users, `completed = i % 3 == 0`,
//! increasing `created_at` — and the baseline table `todos(id PRIMARY KEY, doc, owner,
//! completed, created_at) WITHOUT ROWID` with an index on `(owner, completed, created_at)`.
#![allow(dead_code)] // Each bench uses a different part.

use rusqlite::{Connection, params};
use serde_json::{Value as Json, json};

/// Ten profiles (`user-0` … `user-9`, the todos' owners) and todos `0..size`, in one
/// transaction.
pub fn load_todos(db: &triplite::Database, size: usize) {
    db.transact(|tx| {
        for i in 0..10 {
            tx.insert("profiles", json!({"id": format!("user-{i}"), "name": format!("User {i}")}))?;
        }
        for i in 0..size {
            tx.insert("todos", todo(i))?;
        }
        Ok(())
    })
    .unwrap();
}

/// Todo number `i`.
pub fn todo(i: usize) -> Json {
    json!({
        "id": format!("id-{i:07}"),
        "text": format!("todo number {i}"),
        "completed": i % 3 == 0,
        "owner": format!("user-{}", i % 10),
        "created_at": 1_700_000_000_000u64 + i as u64,
    })
}

/// The todo attributes in Triplit's schema form.
pub fn todo_properties() -> Json {
    json!({
        "id": {"type": "string"}, "text": {"type": "string"}, "completed": {"type": "boolean"},
        "owner": {"type": "string"}, "created_at": {"type": "date"}
    })
}

/// The baseline: an empty raw SQLite table in `dir`, configured as triplite configures its own.
pub fn raw_table(dir: &std::path::Path) -> Connection {
    let conn = Connection::open(dir.join("raw.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute_batch(
        "CREATE TABLE todos (id TEXT PRIMARY KEY, doc TEXT, owner TEXT, completed INTEGER, created_at INTEGER) WITHOUT ROWID;
         CREATE INDEX todos_owner ON todos (owner, completed, created_at);",
    )
    .unwrap();
    conn
}

/// Inserts one todo into the baseline table.
pub fn raw_insert(conn: &Connection, doc: &Json) {
    let mut stmt = conn
        .prepare_cached("INSERT INTO todos (id, doc, owner, completed, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
        .unwrap();
    stmt.execute(params![
        doc["id"].as_str(),
        doc.to_string(),
        doc["owner"].as_str(),
        doc["completed"].as_bool(),
        doc["created_at"].as_i64()
    ])
    .unwrap();
}
