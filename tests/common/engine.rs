//! Drives the sync engine in-process with frames: a server over the sync tests' schema, and a
//! client that sends frames to one connection and reads what it is owed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value as Json, json};
use triplite::sync::http::{Body, Request};
use triplite::sync::protocol::Outgoing;
use triplite::sync::{ConnectRequest, Connection, Limits, SyncServer};
use triplite::{Database, Schema};

pub const SECRET: &str = "sync-tests-secret";
pub const NOW: i64 = 1_800_000_000_000;

pub fn schema() -> Json {
    let own = json!({"filter": [["owner", "=", "$role.userId"]]});
    json!({
        "roles": {"user": {"match": {"sub": "$userId"}}},
        "collections": {
            "todos": {
                "schema": {"type": "record", "properties": {
                    "id": {"type": "string"}, "text": {"type": "string"}, "owner": {"type": "string"},
                    "tags": {"type": "set", "items": {"type": "string"}, "config": {"optional": true}},
                    "project_id": {"type": "string", "config": {"optional": true}}}},
                "relationships": {"project": {"query": {"collectionName": "projects", "where": [["id", "=", "$1.project_id"]]}, "cardinality": "one"}},
                "permissions": {"user": {"read": own, "insert": own, "update": own, "postUpdate": own, "delete": own}}
            },
            "projects": {
                "schema": {"type": "record", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}},
                "permissions": {"user": {"read": {"filter": [true]}}}
            },
            // Readable by its owner only, but anyone may update it (each operation has its rule).
            "notes": {
                "schema": {"type": "record", "properties": {
                    "id": {"type": "string"}, "owner": {"type": "string"}, "text": {"type": "string"}}},
                "permissions": {"user": {"read": own, "insert": own, "update": {"filter": [true]}, "delete": own}}
            }
        }
    })
}

pub fn server_with(limits: Limits) -> SyncServer {
    let db = Database::builder()
        .schema(Schema::from_json(&schema()).unwrap())
        .client_id("server")
        .jwt_secret(SECRET)
        .open_in_memory()
        .unwrap();
    SyncServer::new(db, limits)
}

pub fn server() -> SyncServer {
    server_with(Limits::default())
}

/// An HS256 user token (Triplit treats it as external, verified with JWT_SECRET).
pub fn user_token(sub: &str, exp: i64) -> String {
    let claims = json!({"sub": sub, "exp": exp});
    triplite::install_token_crypto();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

pub const LATER: i64 = 4_000_000_000;

/// A client driving one connection, counting wake-ups.
pub struct Client {
    pub connection: Arc<Connection>,
    pub wakes: Arc<AtomicUsize>,
    /// The server's database, whose live queries the client waits for before reading.
    db: Database,
}

impl Client {
    pub fn connect(server: &SyncServer, token: &str) -> Client {
        Self::connect_with(server, ConnectRequest { token: Some(token.into()), schema_hash: None })
    }

    pub fn connect_with(server: &SyncServer, request: ConnectRequest) -> Client {
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = wakes.clone();
        let connection = server
            .connect(
                &request,
                Arc::new(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                }),
            )
            .unwrap_or_else(|refusal| panic!("refused: {refusal:?}"));
        Client { connection, wakes, db: server.database().clone() }
    }

    pub fn send(&self, message_type: &str, payload: Json) {
        self.connection.receive(&json!({"type": message_type, "payload": payload}).to_string(), NOW);
    }

    /// Every message waiting, parsed.
    pub fn take(&self) -> Vec<Json> {
        self.take_at(NOW)
    }

    /// What is waiting once every commit so far has reached the connection's queries (they
    /// update on the database's live thread).
    pub fn take_at(&self, now: i64) -> Vec<Json> {
        self.db.flush_subscriptions();
        self.connection
            .drain(now)
            .into_iter()
            .map(|out| match out {
                Outgoing::Text(text) => serde_json::from_str(&text).unwrap(),
                Outgoing::Close { code, reason } => json!({"type": "SOCKET_CLOSE", "code": code, "reason": reason}),
            })
            .collect()
    }

    pub fn one(&self, message_type: &str) -> Json {
        let messages = self.take();
        let found: Vec<&Json> = messages.iter().filter(|m| m["type"] == message_type).collect();
        assert_eq!(found.len(), 1, "one {message_type} in {messages:#?}");
        found[0]["payload"].clone()
    }

    pub fn subscribe(&self, id: &str, params: Json) -> Json {
        self.send("CONNECT_QUERY", json!({"id": id, "params": params}));
        self.one("ENTITY_DATA")
    }

    pub fn write(&self, sets: Json, deletes: Json) -> Vec<Json> {
        let changes = json!({"json": {"todos": {"sets": sets, "deletes": deletes}}, "meta": {"values": {"todos.sets": ["map"], "todos.deletes": ["set"]}, "v": 1}});
        self.send("CHANGES", json!({"changes": changes}));
        self.take()
    }
}

pub fn sets(data: &Json, collection: &str) -> Vec<String> {
    data["changes"]["json"][collection]["sets"]
        .as_array()
        .map(|s| s.iter().map(|pair| pair[0].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

pub fn deletes(data: &Json, collection: &str) -> Vec<String> {
    data["changes"]["json"][collection]["deletes"]
        .as_array()
        .map(|s| s.iter().map(|id| id.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

pub fn todo(id: &str, owner: &str) -> Json {
    json!([id, {"id": id, "text": format!("todo {id}"), "owner": owner}])
}

/// A `POST` of Triplit's HTTP API.
pub fn post<'a>(path: &'a str, authorization: &'a str, body: &'a str) -> Request<'a> {
    Request { method: "POST", path, authorization: Some(authorization), body: body.as_bytes(), ..Request::default() }
}

pub fn json_body(body: Body) -> Json {
    match body {
        Body::Json(json) => json,
        Body::Text(text) => panic!("expected JSON, got {text}"),
    }
}

/// `Bearer <service token>` for the sync tests' secret.
pub fn service_bearer() -> String {
    format!("Bearer {}", triplite::mint_dev_token(SECRET, triplite::DevTokenKind::Secret, "p").unwrap())
}
