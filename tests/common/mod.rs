//! Helpers shared by the integration tests.
#![allow(dead_code)] // Each test file uses a different subset.

pub mod engine;
pub mod load;
pub mod proxy;
pub mod triplit;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value as Json, json};
use triplite::{Clock, Database, Schema};

/// A wall clock the test moves by hand.
#[derive(Default)]
pub struct ManualClock(pub AtomicU64);

impl Clock for ManualClock {
    fn now_millis(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The todo schema used across tests.
pub fn todo_schema_json() -> Json {
    json!({
        "collections": {
            "todos": {
                "schema": {"type": "record", "config": {}, "properties": {
                    "id": {"type": "string", "config": {"nullable": false, "default": {"func": "nanoid", "args": null}}},
                    "text": {"type": "string", "config": {}},
                    "completed": {"type": "boolean", "config": {"default": false}},
                    "owner": {"type": "string", "config": {"optional": true}},
                    "priority": {"type": "string", "config": {"enum": ["low", "high"], "default": "low"}},
                    "created_at": {"type": "date", "config": {"default": {"func": "now", "args": null}}},
                    "tags": {"type": "set", "items": {"type": "string", "config": {}}, "config": {"default": {"func": "Set.empty", "args": null}}},
                    "scores": {"type": "set", "items": {"type": "number", "config": {}}, "config": {"optional": true}},
                    "meta": {"type": "json", "config": {"optional": true}},
                    "address": {"type": "record", "config": {"optional": true}, "properties": {
                        "city": {"type": "string", "config": {}},
                        "zip": {"type": "string", "config": {"optional": true}}
                    }}
                }}
            }
        }
    })
}

pub fn todo_schema() -> Schema {
    Schema::from_json(&todo_schema_json()).expect("the test schema is valid")
}

/// A backend under test: a name and a way to open a database with an optional schema.
pub struct Backend {
    pub name: &'static str,
    open: fn(Option<Schema>, &str) -> Database,
}

impl Backend {
    pub fn open(&self, schema: Option<Schema>) -> Database {
        (self.open)(schema, "test-client")
    }

    pub fn open_as(&self, schema: Option<Schema>, client: &str) -> Database {
        (self.open)(schema, client)
    }
}

fn builder(schema: Option<Schema>, client: &str) -> triplite::DatabaseBuilder {
    let builder = Database::builder().client_id(client);
    match schema {
        Some(s) => builder.schema(s),
        None => builder,
    }
}

/// Both backends: in memory, and SQLite in a fresh temporary file.
pub fn backends() -> [Backend; 2] {
    [
        Backend { name: "memory", open: |schema, client| builder(schema, client).open_in_memory().unwrap() },
        Backend {
            name: "sqlite",
            open: |schema, client| {
                let dir = tempfile::tempdir().unwrap().keep();
                builder(schema, client).open(dir.join("test.db")).unwrap()
            },
        },
    ]
}

/// A controllable clock shared with a database.
pub fn manual_clock(start: u64) -> Arc<ManualClock> {
    let clock = Arc::new(ManualClock::default());
    clock.0.store(start, Ordering::SeqCst);
    clock
}
