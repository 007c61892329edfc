//! WebSocket frames from the network, through the sync engine of a connected client.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use triplite::sync::protocol::ClientMessage;
use triplite::sync::{ConnectRequest, Limits, SyncServer};
use triplite::{Database, DevTokenKind, mint_dev_token};

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = std::str::from_utf8(data) else { return };
    let _ = ClientMessage::parse(frame);
    let db = Database::builder().jwt_secret("fuzz-secret").open_in_memory().expect("an in-memory database");
    let server = SyncServer::new(db, Limits { max_message_bytes: 1 << 16, ..Limits::default() });
    let token = mint_dev_token("fuzz-secret", DevTokenKind::Secret, "fuzz").expect("a token");
    let connection = server
        .connect(&ConnectRequest { token: Some(token), schema_hash: None }, Arc::new(|| {}))
        .expect("a connection");
    connection.receive(frame, 0);
    let _ = connection.drain(0);
});
