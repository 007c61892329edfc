//! Sequences of WebSocket frames into one connection of the sync server, with a second
//! connection beside it whose query must keep being answered. Small limits, so that chunk,
//! size, backlog, query-count and query-cost limits are reached.
//!
//! The input is frames separated by `\n` (then only the fuzzed connection is drained) or by a
//! NUL byte (then the second connection is drained too). A first frame `?schema=<hash>` is not
//! sent: the fuzzed connection connects with that schema hash, as the URL's `?schema=` does.
//!
//! Checked: every text drained is JSON with a `type` (an `ERROR` names its error, a `CLOSE`
//! its reason); no `ENTITY_DATA` carries a todo its reader may not read; the second connection
//! is never closed but for its own backlog; after the sequence, a new query on it gets its
//! data or a typed error; and both disconnect cleanly, nothing holding on to them.
//!
//! Run it with `-detect_leaks=0`: the live-query delivery thread a subscription starts exits
//! after each input returns, so LeakSanitizer would re-run every input (six times slower).
//! The check that disconnected connections are freed stands in for it.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use serde_json::{Value as Json, json};
use triplite::sync::protocol::{Outgoing, decode_changes};
use triplite::sync::{ConnectRequest, Connection, Limits, SyncServer};
use triplite::{Database, QueryLimits, Schema};

const SECRET: &str = "fuzz-secret";
/// When the sequence starts (ms); every frame moves the clock on by a second.
const START_MS: i64 = 1_800_000_000_000;
/// The connections' tokens expire long after any sequence ends (s).
const LATER: i64 = 4_000_000_000;

/// Two collections under rules: a todo is read by its owner, or by anyone when public, and
/// written only by its owner; projects are read by every user. The todos are those of the
/// captured Triplit session (../shared/reference/protocol-samples.jsonl), so its frames work
/// as seeds, plus what the rules and relations need.
fn schema() -> Schema {
    let own = json!({"filter": [["owner", "=", "$role.userId"]]});
    let read = json!({"filter": [{"mod": "or", "filters": [["owner", "=", "$role.userId"], ["public", "=", true]]}]});
    Schema::from_json(&json!({
        "roles": {"user": {"match": {"sub": "$userId"}}},
        "collections": {
            "todos": {
                "schema": {"type": "record", "properties": {
                    "id": {"type": "string", "config": {"default": {"func": "nanoid", "args": null}}},
                    "text": {"type": "string"},
                    "completed": {"type": "boolean", "config": {"default": false}},
                    "created_at": {"type": "date", "config": {"default": {"func": "now", "args": null}}},
                    "owner": {"type": "string"},
                    "public": {"type": "boolean", "config": {"default": false}},
                    "tags": {"type": "set", "items": {"type": "string"}, "config": {"optional": true}},
                    "project_id": {"type": "string", "config": {"optional": true}}}},
                "relationships": {"project": {
                    "query": {"collectionName": "projects", "where": [["id", "=", "$1.project_id"]]},
                    "cardinality": "one"
                }},
                "permissions": {"user": {"read": read, "insert": own, "update": own, "postUpdate": own, "delete": own}}
            },
            "projects": {
                "schema": {"type": "record", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}},
                "permissions": {"user": {"read": {"filter": [true]}}}
            }
        }
    }))
    .expect("the fuzz schema is valid")
}

fn limits() -> Limits {
    Limits {
        max_message_bytes: 3 * 1024,
        max_chunks_per_message: 4,
        max_chunked_messages: 2,
        max_queries_per_connection: 3,
        max_connections_per_token: 2,
        max_pending_output_bytes: 6 * 1024,
        query: QueryLimits {
            max_filter_terms: 16,
            max_include_depth: 2,
            max_rows_examined: 64,
            max_result_bytes: 8 * 1024,
        },
    }
}

fn user_token(sub: &str) -> String {
    let claims = json!({"sub": sub, "exp": LATER});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    triplite::install_token_crypto();
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("a token")
}

fn server() -> SyncServer {
    let db = Database::builder()
        .schema(schema())
        .client_id("server")
        .jwt_secret(SECRET)
        .open_in_memory()
        .expect("an in-memory database");
    db.insert("projects", json!({"id": "p1", "name": "shared"})).expect("a project");
    for (id, owner, public) in
        [("a1", "alice", true), ("a2", "alice", false), ("b1", "bob", false), ("b2", "bob", true)]
    {
        let todo =
            json!({"id": id, "text": format!("{owner}'s"), "owner": owner, "public": public, "project_id": "p1"});
        db.insert("todos", todo).expect("a todo");
    }
    SyncServer::new(db, limits())
}

/// One connected client: who it is, and how its connection was closed, if it was.
struct Client {
    sub: &'static str,
    connection: Arc<Connection>,
    closed_as: Option<String>,
}

impl Client {
    fn connect(server: &SyncServer, sub: &'static str, schema_hash: Option<String>) -> Client {
        let request = ConnectRequest { token: Some(user_token(sub)), schema_hash };
        let connection = server.connect(&request, Arc::new(|| {})).expect("a valid token connects");
        Client { sub, connection, closed_as: None }
    }

    /// Takes and checks what the connection owes its client; returns the texts, parsed.
    fn drain(&mut self, now_ms: i64) -> Vec<Json> {
        let mut texts = Vec::new();
        for outgoing in self.connection.drain(now_ms) {
            match outgoing {
                Outgoing::Text(text) => {
                    let message: Json =
                        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
                    self.check(&message);
                    texts.push(message);
                }
                Outgoing::Close { code, reason } => {
                    assert!(code == 1008 || code == 1011, "close code {code}");
                    let reason: Json =
                        serde_json::from_str(&reason).unwrap_or_else(|e| panic!("reason not JSON ({e}): {reason}"));
                    assert!(reason["type"].is_string(), "a close reason without a type: {reason}");
                }
            }
        }
        texts
    }

    fn check(&mut self, message: &Json) {
        let payload = &message["payload"];
        match message["type"].as_str() {
            None => panic!("a message without a type: {message}"),
            Some("ERROR") => {
                let name = payload["error"]["name"].as_str().unwrap_or_default();
                assert!(!name.is_empty(), "an ERROR without an error name: {message}");
            }
            Some("CLOSE") => {
                let close = payload["type"].as_str().unwrap_or_else(|| panic!("a CLOSE without a type: {message}"));
                self.closed_as = Some(close.to_owned());
            }
            Some("ENTITY_DATA") => {
                let changes = decode_changes(payload["changes"].clone())
                    .unwrap_or_else(|e| panic!("ENTITY_DATA's changes do not decode ({e}): {message}"));
                for (id, todo) in changes.collections.get("todos").map(|c| &c.sets).into_iter().flatten() {
                    let readable =
                        todo.get("owner") == Some(&json!(self.sub)) || todo.get("public") == Some(&json!(true));
                    assert!(readable, "{} was sent todo {id}, which it may not read: {todo:?}", self.sub);
                }
            }
            Some(_) => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Frames, each with whether the second connection is drained after it.
    let mut frames: Vec<(&[u8], bool)> = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n' || b == 0).unwrap_or(rest.len());
        frames.push((&rest[..end], rest.get(end) == Some(&0)));
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    let schema_hash = match frames.first() {
        Some((first, _)) if first.starts_with(b"?schema=") => {
            let hash = String::from_utf8_lossy(&first[b"?schema=".len()..]).into_owned();
            frames.remove(0);
            Some(hash)
        }
        _ => None,
    };

    let server = server();
    let mut fuzzed = Client::connect(&server, "alice", schema_hash);
    let mut watcher = Client::connect(&server, "bob", None);
    let mut now = START_MS;
    fuzzed.drain(now);
    let subscribe = json!({"type": "CONNECT_QUERY", "payload": {"id": "watch", "params": {"collectionName": "todos"}}});
    watcher.connection.receive(&subscribe.to_string(), now);
    watcher.drain(now);

    for (frame, drain_watcher) in frames {
        let Ok(frame) = std::str::from_utf8(frame) else { continue };
        now += 1000;
        fuzzed.connection.receive(frame, now);
        fuzzed.drain(now);
        if drain_watcher {
            watcher.drain(now);
        }
    }

    // The watcher is still served: closed only when it let its own backlog grow (then it
    // reconnects, as the close tells it to), and a new query gets its data or a typed error.
    // Every commit's update reaches the queries first (on the live thread), so none arrives
    // between this drain and the new query to close the watcher then.
    now += 1000;
    server.database().flush_subscriptions();
    watcher.drain(now);
    if let Some(close) = &watcher.closed_as {
        assert_eq!(close, "BACKLOG_LIMIT", "the fuzzed connection's frames closed the other connection");
        server.disconnect(&watcher.connection);
        watcher = Client::connect(&server, "bob", None);
        watcher.drain(now);
    }
    let params = json!({"collectionName": "todos", "include": {"project": null}});
    let again = json!({"type": "CONNECT_QUERY", "payload": {"id": "again", "params": params}});
    watcher.connection.receive(&again.to_string(), now);
    let answers = watcher.drain(now);
    let answered = answers.iter().any(|m| m["type"] == "ENTITY_DATA" || m["type"] == "ERROR");
    assert!(answered, "a new query got no answer: {answers:?}");

    // Disconnected, nothing keeps a connection alive (no cycle through its subscriptions).
    for client in [fuzzed, watcher] {
        server.disconnect(&client.connection);
        let connection = Arc::downgrade(&client.connection);
        drop(client);
        assert!(connection.upgrade().is_none(), "a disconnected connection is still referenced");
    }
    assert_eq!(server.connection_count(), 0);
});
