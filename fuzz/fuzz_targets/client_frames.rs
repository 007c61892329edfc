//! Frames from a hostile server, fed to the client's sans-IO engine: the first line is split
//! off as the local writes made before the connection (one document per transaction); every
//! other line is one frame. Nothing a server sends may panic the client or break its local
//! database: each frame is taken (or refused with an error), the outbox never holds more
//! transactions than were written, and the database still answers a query afterwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value as Json, json};
use triplite::client::{EngineOptions, SyncEngine};
use triplite::{Database, Query, Schema};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.lines();
    let schema = json!({"collections": {"todos": {"schema": {"type": "record", "properties": {
        "id": {"type": "string"}, "text": {"type": "string"},
        "tags": {"type": "set", "items": {"type": "string"}, "config": {"optional": true}}}}}}});
    let db = Database::builder().schema(Schema::from_json(&schema).unwrap()).open_in_memory().unwrap();
    let mut engine = SyncEngine::new(db.clone(), EngineOptions { max_in_flight: 4 }).unwrap();
    let mut written = 0;
    for doc in lines.next().unwrap_or("").split('\u{1f}').filter_map(|d| serde_json::from_str::<Json>(d).ok()) {
        if engine.commit(None, |tx| tx.insert("todos", doc)).is_ok_and(|c| c.tx_id.is_some()) {
            written += 1;
        }
    }
    engine.set_server_url(Some("http://127.0.0.1:9".into()));
    engine.set_token(Some("token".into()));
    engine.connect();
    let now = 1_800_000_000_000;
    assert!(engine.dial(now).is_some());
    engine.opened(now);
    for frame in lines {
        let _ = engine.received(frame, now);
        let _ = engine.take_output();
        let _ = engine.take_events();
    }
    assert!(engine.status().as_str().len() > 1);
    db.fetch(&Query::new("todos")).expect("the local database still answers");
    assert!(engine.pending_transactions() <= written, "the outbox only shrinks");
});
