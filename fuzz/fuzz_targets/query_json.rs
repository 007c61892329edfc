//! Query JSON from a client: parsing, then preparation and execution against a schema.
#![no_main]

use libfuzzer_sys::fuzz_target;
use triplite::{Database, Query, Schema};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(query) = Query::from_json_str(text) else { return };
    let schema = Schema::from_json(&serde_json::json!({"collections": {"todos": {"schema": {"type": "record",
        "properties": {"id": {"type": "string"}, "text": {"type": "string"}, "n": {"type": "number"}}}}}}))
    .expect("a valid schema");
    let db = Database::builder().schema(schema).open_in_memory().expect("an in-memory database");
    db.insert("todos", serde_json::json!({"id": "a", "text": "x", "n": 1})).expect("an insert");
    let _ = db.fetch(&query);
});
