//! What `triplite serve` tells its operator, on stderr as JSON lines: the startup summary
//! (where each key came from, never the key), a line per connection opened and closed (client
//! id, roles, close reason), per rejected write and per refused request (route, status, error
//! name); `LOG_LEVEL` filters them.

mod common;

use std::time::{Duration, Instant};

use common::wire::{ServeProcess, agent, changes_payload, ws_connect, ws_next, ws_send};
use serde_json::{Value as Json, json};

const SECRET: &str = "logs-test-secret-never-printed";

fn schema() -> Json {
    let own = json!({"filter": [["owner", "=", "$role.userId"]]});
    json!({
        "roles": {"user": {"match": {"sub": "$userId"}}},
        "collections": {"todos": {
            "schema": {"type": "record", "properties": {"id": {"type": "string"}, "owner": {"type": "string"}}},
            "permissions": {"user": {"read": own, "insert": own}}
        }}
    })
}

fn token(sub: &str) -> String {
    let claims = json!({"sub": sub, "exp": 4_000_000_000i64});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    triplite::install_token_crypto();
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

fn entries(server: &ServeProcess) -> Vec<Json> {
    server.log_text().lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

/// Waits (bounded) until a line with this message has `fields`.
fn find(server: &ServeProcess, message: &str, fields: &[(&str, Json)]) -> Json {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = entries(server)
            .into_iter()
            .find(|entry| entry["message"] == message && fields.iter().all(|(name, value)| &entry[*name] == value));
        if let Some(entry) = found {
            return entry;
        }
        assert!(Instant::now() < deadline, "no {message:?} line with {fields:?} in:\n{}", server.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_logs_startup_connections_rejected_writes_and_refused_requests() {
    let dir = tempfile::tempdir().unwrap();
    let schema_file = dir.path().join("schema.json");
    std::fs::write(&schema_file, schema().to_string()).unwrap();
    let server = ServeProcess::start(&["--storage", "memory", "--schema", schema_file.to_str().unwrap()], &[], SECRET);

    let startup = find(&server, "listening", &[]);
    assert_eq!(startup["level"], "INFO");
    assert_eq!(
        (startup["jwt_secret"].as_str(), startup["external_jwt_secret"].as_str()),
        (Some("environment"), Some("unset"))
    );
    assert!(startup["storage"].as_str().unwrap().starts_with("memory"));

    // A connection, a write its rules deny, and the client closing.
    let mut socket = ws_connect(server.port, &token("alice")).expect("connects");
    let ready = ws_next(&mut socket).unwrap();
    let client_id = ready["payload"]["clientId"].clone();
    let opened = find(&server, "connection opened", &[("client_id", client_id.clone())]);
    assert_eq!(opened["roles"], "[\"user\"]");
    let forged = changes_payload("todos", vec![("t1".into(), json!({"id": "t1", "owner": "bob"}))]);
    ws_send(&mut socket, "CHANGES", forged);
    let rejected = find(&server, "write rejected", &[("client_id", client_id.clone())]);
    assert_eq!(rejected["error"], "WritePermissionError");
    socket.close(None).unwrap();
    while socket.read().is_ok() {}
    find(&server, "connection closed", &[("client_id", client_id), ("reason", json!("SOCKET_CLOSED"))]);

    // A connection the server refuses.
    assert!(ws_connect(server.port, "not-a-token").is_some());
    find(&server, "connection refused", &[("reason", json!("UNAUTHORIZED"))]);

    // A refused request: route, status and error name.
    let answer = agent()
        .post(format!("{}/stats", server.url()))
        .header("authorization", format!("Bearer {}", token("alice")))
        .send("{}")
        .unwrap();
    assert_eq!(answer.status(), 401);
    find(
        &server,
        "request refused",
        &[("route", json!("/stats")), ("status", json!(401)), ("error", json!("ServiceKeyRequiredError"))],
    );

    assert!(!server.log_text().contains(SECRET), "a key is never logged");
}

#[test]
fn log_level_filters_and_a_bad_one_is_refused() {
    let quiet = std::process::Command::new(env!("CARGO_BIN_EXE_triplite"))
        .args(["serve", "--storage", "memory"])
        .env("JWT_SECRET", SECRET)
        .env("LOG_LEVEL", "loud")
        .output()
        .unwrap();
    assert!(!quiet.status.success());
    assert!(String::from_utf8_lossy(&quiet.stderr).contains("LOG_LEVEL must be"));

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_triplite"))
        .args(["serve", "--storage", "memory"])
        .env("JWT_SECRET", SECRET)
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("LOG_LEVEL", "warn")
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(!String::from_utf8_lossy(&output.stderr).contains("listening"), "info lines are filtered out");
}
