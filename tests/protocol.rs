//! The sync protocol's messages against frames of a real session between the published client
//! and the real Triplit server (`tests/fixtures/protocol/`): every frame each side sent parses
//! into its typed message, and writing the message out and parsing it again gives it back.

use serde_json::Value as Json;
use triplite::sync::protocol::{ClientMessage, CloseType, FrameError, ServerMessage};

fn frames(name: &str) -> Vec<Json> {
    let path = format!("{}/tests/fixtures/protocol/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[test]
fn every_frame_the_real_server_sent_parses_and_round_trips() {
    let mut kinds = std::collections::BTreeSet::new();
    for frame in frames("server-frames.jsonl") {
        let text = frame.to_string();
        let message = ServerMessage::parse(&text).unwrap_or_else(|e| panic!("{e:?}: {text}"));
        kinds.insert(frame["type"].as_str().unwrap().to_owned());
        match &message {
            ServerMessage::EntityData { for_queries, .. } => assert!(!for_queries.is_empty(), "{text}"),
            ServerMessage::Close { close_type, retry, .. } => {
                assert!(close_type.is_some(), "a close type triplite knows: {text}");
                assert_eq!(*retry, close_type.unwrap().retry());
            }
            ServerMessage::Error { error, .. } => {
                assert_eq!(error.to_json()["message"], frame["payload"]["error"]["message"])
            }
            _ => {}
        }
        assert_eq!(ServerMessage::parse(&message.to_frame()), Ok(message), "{text}");
    }
    let all = ["CHANGES_ACK", "CLOSE", "ENTITY_DATA", "ERROR", "PONG", "READY", "SCHEMA_REQUEST"];
    assert_eq!(kinds.iter().map(String::as_str).collect::<Vec<_>>(), all, "every kind is covered");
}

#[test]
fn every_frame_the_published_client_sent_parses_and_round_trips() {
    for frame in frames("client-frames.jsonl") {
        // Raw text frames a test client sent on purpose are kept as strings.
        let text = frame.as_str().map(str::to_owned).unwrap_or_else(|| frame.to_string());
        match ClientMessage::parse(&text) {
            Ok(message) => assert_eq!(ClientMessage::parse(&message.to_frame()), Ok(message), "{text}"),
            Err(e) => assert!(frame.is_string() || frame["type"] == "FOO", "{e:?}: {text}"),
        }
    }
}

#[test]
fn hostile_server_frames_are_refused_without_a_panic() {
    for frame in [
        "",
        "null",
        "[]",
        r#"{"type": 5}"#,
        r#"{"type": "READY", "payload": {"clientId": 7}}"#,
        r#"{"type": "ENTITY_DATA", "payload": {"changes": {}, "timestamp": [1, 0, "s"], "forQueries": "q"}}"#,
        r#"{"type": "ENTITY_DATA", "payload": {"changes": {"json": {"t": {"sets": 1}}}, "timestamp": [1, 0, "s"], "forQueries": []}}"#,
        r#"{"type": "CHANGES_ACK", "payload": {"timestamp": "soon"}}"#,
        r#"{"type": "ERROR", "payload": {"error": {"message": "no name"}}}"#,
        r#"{"type": "CLOSE", "payload": {}}"#,
    ] {
        assert!(ServerMessage::parse(frame).is_err(), "{frame}");
    }
    assert_eq!(
        ServerMessage::parse(r#"{"type": "HELLO", "payload": {}}"#),
        Err(FrameError::UnknownType("HELLO".into()))
    );
    let unknown =
        ServerMessage::parse(r#"{"type": "CLOSE", "payload": {"type": "MAINTENANCE", "retry": true}}"#).unwrap();
    assert_eq!(
        unknown,
        ServerMessage::Close { close_type: None, name: "MAINTENANCE".into(), retry: true, message: None }
    );
    assert_eq!(CloseType::from_name("TOKEN_EXPIRED"), Some(CloseType::TokenExpired));
}
