//! The sync engine driven in-process with frames: every message type, checkpoints, fan-out,
//! bad frames (each answered with Triplit's ERROR or CLOSE while everyone else is served),
//! and the HTTP API.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::engine::*;
use serde_json::{Value as Json, json};
use triplite::sync::http::{Body, Request};
use triplite::sync::protocol::Outgoing;
use triplite::sync::{ConnectRequest, Limits};
use triplite::{DevTokenKind, Schema, mint_dev_token};

#[test]
fn ready_then_an_empty_answer_fulfils_a_query() {
    let server = server();
    let alice = Client::connect(&server, &user_token("alice", LATER));
    let ready = alice.one("READY");
    assert!(ready["clientId"].as_str().unwrap().len() == 36, "a uuid");
    let data = alice.subscribe("q1", json!({"collectionName": "todos"}));
    assert_eq!(data["forQueries"], json!(["q1"]));
    assert_eq!(data["changes"]["json"]["todos"], json!({"sets": [], "deletes": []}), "names the collection");
    assert_eq!(data["changes"]["meta"]["values"]["todos.sets"], json!(["map"]));
    assert_eq!(data["timestamp"][2], "server");
}

#[test]
fn writes_fan_out_to_the_connections_that_can_see_them() {
    let server = server();
    let alice = Client::connect(&server, &user_token("alice", LATER));
    let alice2 = Client::connect(&server, &user_token("alice", LATER));
    let bob = Client::connect(&server, &user_token("bob", LATER));
    for c in [&alice, &alice2, &bob] {
        c.take();
        c.subscribe("all", json!({"collectionName": "todos"}));
    }
    let wakes_before = bob.wakes.load(Ordering::SeqCst);
    let answers = alice.write(json!([todo("t1", "alice")]), json!([]));
    assert_eq!(answers[0]["type"], "CHANGES_ACK", "the ack comes first: {answers:#?}");
    assert_eq!(answers[0]["payload"]["timestamp"][2], "server");
    assert_eq!(sets(&answers[1]["payload"], "todos"), vec!["t1"], "the writer's own query sees it too");
    let data = alice2.one("ENTITY_DATA");
    assert_eq!(sets(&data, "todos"), vec!["t1"]);
    assert_eq!(data["changes"]["json"]["todos"]["sets"][0][1]["text"], "todo t1");
    assert!(bob.take().is_empty(), "bob cannot read it");
    assert_eq!(bob.wakes.load(Ordering::SeqCst), wakes_before, "and is not even woken");

    // An update, as the client sends it: a partial without id.
    alice.write(json!([["t1", {"text": "edited"}]]), json!([]));
    let data = alice2.one("ENTITY_DATA");
    assert_eq!(data["changes"]["json"]["todos"]["sets"][0][1]["text"], "edited", "whole entities are sent");
    // Leaving the view: sent as a delete.
    alice2.subscribe("mine-open", json!({"collectionName": "todos", "where": [["text", "=", "edited"]]}));
    alice2.send("DISCONNECT_QUERY", json!({"id": "all"}));
    alice.write(json!([["t1", {"text": "edited again"}]]), json!([]));
    assert_eq!(deletes(&alice2.one("ENTITY_DATA"), "todos"), vec!["t1"]);
    alice.write(json!([]), json!(["t1"]));
    assert!(alice2.take().is_empty(), "already evicted");
}

#[test]
fn includes_exists_and_relational_order_ship_the_entities_they_read() {
    let server = server();
    let db = server.database().clone();
    db.insert("projects", json!({"id": "p1", "name": "Garden"})).unwrap();
    db.insert("projects", json!({"id": "p2", "name": "House"})).unwrap();
    db.insert("todos", json!({"id": "t1", "text": "dig", "owner": "alice", "project_id": "p1"})).unwrap();
    let alice = Client::connect(&server, &user_token("alice", LATER));
    alice.take();
    let data = alice
        .subscribe("with-project", json!({"collectionName": "todos", "include": {"project": {"_extends": "project"}}}));
    assert_eq!((sets(&data, "todos"), sets(&data, "projects")), (vec!["t1".into()], vec!["p1".to_owned()]));
    let data = alice.subscribe(
        "projects-with-todos",
        json!({"collectionName": "projects", "where": [{"exists": {"collectionName": "todos", "where": [["project_id", "=", "$1.id"]]}}]}),
    );
    assert_eq!(sets(&data, "projects"), Vec::<String>::new(), "p1 was sent already");
    assert_eq!(data["forQueries"], json!(["projects-with-todos"]));
    db.update("projects", "p1", json!({"name": "Yard"})).unwrap();
    let data = alice.one("ENTITY_DATA");
    assert_eq!(sets(&data, "projects"), vec!["p1"]);
    let mut for_queries: Vec<String> = serde_json::from_value(data["forQueries"].clone()).unwrap();
    for_queries.sort();
    assert_eq!(for_queries, vec!["projects-with-todos", "with-project"]);
    let data =
        alice.subscribe("by-project-name", json!({"collectionName": "todos", "order": [["project.name", "ASC"]]}));
    assert!(sets(&data, "todos").is_empty() && sets(&data, "projects").is_empty(), "the client holds both");
}

/// A client answers a one-relation with one row and an `exists` with one match: that is all
/// it is sent (every candidate was, though HTTP answered right).
#[test]
fn one_relations_and_exists_ship_one_related_row() {
    let server = server();
    let db = server.database().clone();
    db.insert("projects", json!({"id": "p1", "name": "Garden"})).unwrap();
    for id in ["t1", "t2", "t3"] {
        db.insert("todos", json!({"id": id, "text": id, "owner": "alice", "project_id": "p1"})).unwrap();
    }
    let todos_of_p1 =
        json!({"collectionName": "todos", "where": [["project_id", "=", "$1.id"]], "order": [["id", "DESC"]]});
    let alice = Client::connect(&server, &user_token("alice", LATER));
    alice.take();
    let data = alice.subscribe(
        "latest",
        json!({"collectionName": "projects", "include": {"latest": {"subquery": todos_of_p1, "cardinality": "one"}}}),
    );
    assert_eq!((sets(&data, "projects"), sets(&data, "todos")), (vec!["p1".into()], vec!["t3".to_owned()]));
    db.delete("todos", "t3").unwrap();
    let data = alice.one("ENTITY_DATA");
    assert_eq!(
        (sets(&data, "todos"), deletes(&data, "todos")),
        (vec!["t2".into()], vec!["t3".to_owned()]),
        "the next one takes its place"
    );

    let other = Client::connect(&server, &user_token("alice", LATER));
    other.take();
    let data = other.subscribe(
        "busy",
        json!({"collectionName": "projects", "where": [{"exists": {"collectionName": "todos", "where": [["project_id", "=", "$1.id"]]}}]}),
    );
    assert_eq!(
        (sets(&data, "projects"), sets(&data, "todos").len()),
        (vec!["p1".into()], 1),
        "one match shows it exists"
    );
}

#[test]
fn a_checkpoint_skips_unchanged_entities_and_sends_what_happened_offline() {
    let server = server();
    let db = server.database().clone();
    let alice = Client::connect(&server, &user_token("alice", LATER));
    alice.take();
    for id in ["a", "b", "c"] {
        alice.write(json!([todo(id, "alice")]), json!([]));
    }
    let data = alice.subscribe("q", json!({"collectionName": "todos"}));
    let checkpoint = data["timestamp"].clone();
    assert_eq!(sets(&data, "todos"), vec!["a", "b", "c"]);
    server.disconnect(&alice.connection);

    // Offline: b is deleted, c is edited, d is inserted; a is untouched.
    db.delete("todos", "b").unwrap();
    db.update("todos", "c", json!({"text": "edited offline"})).unwrap();
    db.insert("todos", json!({"id": "d", "text": "new", "owner": "alice"})).unwrap();

    let back = Client::connect(&server, &user_token("alice", LATER));
    back.take();
    back.send(
        "CONNECT_QUERY",
        json!({"id": "q", "params": {"collectionName": "todos"}, "state": {"timestamp": checkpoint, "entityIds": {"todos": ["a", "b", "c"]}}}),
    );
    let data = back.one("ENTITY_DATA");
    assert_eq!(sets(&data, "todos"), vec!["c", "d"], "a is unchanged since the checkpoint");
    assert_eq!(deletes(&data, "todos"), vec!["b"], "the delete that happened offline");
}

/// Every `ENTITY_DATA` is stamped later than the one before it on its connection, even when
/// nothing was committed between them, and never `[0, 0]`: the published client drops data
/// stamped no later than what it holds, so an eviction stamped like the message that brought
/// the row left the row in its cache.
#[test]
fn every_entity_data_is_stamped_later_than_the_last() {
    let stamp = |data: &Json| triplite::Timestamp::from_json(&data["timestamp"]).unwrap();
    let server = server();
    let alice = Client::connect(&server, &user_token("alice", LATER));
    alice.take();
    let empty = alice.subscribe("nothing", json!({"collectionName": "todos"}));
    assert!(stamp(&empty).physical > 0, "an answer on an empty database: {}", empty["timestamp"]);

    for id in ["a", "b", "c"] {
        alice.write(json!([todo(id, "alice")]), json!([]));
    }
    let all = alice.subscribe("all", json!({"collectionName": "todos"}));
    assert!(stamp(&all) > stamp(&empty));
    // Another query with no commit in between: its answer still comes later.
    alice.send(
        "CONNECT_QUERY",
        json!({"id": "mine", "params": {"collectionName": "todos", "where": [["owner", "=", "alice"]]}}),
    );
    server.database().flush_subscriptions();
    assert_eq!(
        alice.connection.try_drain(NOW),
        None,
        "it needs a fresh checkpoint: the transport takes it off its workers"
    );
    let mine = alice.one("ENTITY_DATA");
    assert!(stamp(&mine) > stamp(&all), "{} after {}", mine["timestamp"], all["timestamp"]);
    assert!(stamp(&mine) <= server.database().latest_timestamp(), "a checkpoint the database has reached");
    // One fresh checkpoint serves every connection that needs one.
    let bob = Client::connect(&server, &user_token("bob", LATER));
    bob.take();
    let first = bob.subscribe("all", json!({"collectionName": "todos"}));
    assert_eq!(stamp(&first), stamp(&mine));
}

#[test]
fn denied_and_invalid_writes_get_triplit_errors_and_change_nothing() {
    let server = server();
    let alice = Client::connect(&server, &user_token("alice", LATER));
    alice.take();
    let answers = alice.write(json!([todo("ok", "alice"), todo("forged", "bob")]), json!([]));
    assert_eq!(answers.len(), 1, "{answers:#?}");
    let error = &answers[0]["payload"];
    assert_eq!(error["messageType"], "CHANGES");
    assert_eq!(error["error"]["name"], "WritePermissionError");
    assert_eq!(error["error"]["status"], 401);
    assert_eq!(error["metadata"]["failures"][0]["collection"], "todos");
    assert_eq!(server.database().fetch_by_id("todos", "ok").unwrap(), None, "one transaction: nothing landed");
    let answers = alice.write(json!([["bad", {"id": "bad", "text": 5, "owner": "alice"}]]), json!([]));
    assert_eq!(answers[0]["payload"]["error"]["name"], "DBSerializationError");
    let changes = json!({"json": {"nope": {"sets": [], "deletes": ["x"]}}});
    alice.send("CHANGES", json!({"changes": changes}));
    assert_eq!(alice.one("ERROR")["error"]["name"], "CollectionNotFoundError");
    // An insert missing a required attribute is refused as over HTTP (it was stored before).
    let answers =
        alice.write(json!([["partial", {"id": "partial", "owner": "alice"}], todo("ok", "alice")]), json!([]));
    let error = &answers[0]["payload"]["error"];
    assert_eq!(error["name"], "DBSerializationError", "{answers:#?}");
    assert!(error["message"].as_str().unwrap().contains("todos.text: required attribute is missing"), "{error:#}");
    assert_eq!(server.database().fetch_by_id("todos", "partial").unwrap(), None);
    assert_eq!(server.database().fetch_by_id("todos", "ok").unwrap(), None);
    // A partial update of an existing entity is still a patch, and optional attributes may
    // be left out of an insert.
    alice.write(json!([todo("ok", "alice")]), json!([]));
    assert_eq!(alice.write(json!([["ok", {"text": "edited"}]]), json!([]))[0]["type"], "CHANGES_ACK");
    assert_eq!(server.database().fetch_by_id("todos", "ok").unwrap().unwrap()["text"], "edited");
}

#[test]
fn bad_frames_get_errors_and_the_server_keeps_serving() {
    let server = server_with(Limits { max_message_bytes: 4096, ..Limits::default() });
    let alice = Client::connect(&server, &user_token("alice", LATER));
    let bob = Client::connect(&server, &user_token("bob", LATER));
    alice.take();
    bob.take();
    bob.subscribe("q", json!({"collectionName": "todos"}));

    alice.connection.receive("this is not json", NOW);
    let error = alice.one("ERROR");
    assert_eq!(error["error"]["name"], "MalformedMessagePayloadError");
    assert_eq!(error["metadata"]["message"], "this is not json");
    alice.send("FOO", json!({}));
    let error = alice.one("ERROR");
    assert_eq!(
        (error["messageType"].clone(), error["error"]["name"].clone()),
        (json!("FOO"), json!("UnrecognizedMessageTypeError"))
    );
    assert_eq!(error["error"]["message"], "Unrecognized message type: FOO.");
    alice.send("CONNECT_QUERY", json!({"id": "x"}));
    assert_eq!(alice.one("ERROR")["error"]["name"], "MalformedMessagePayloadError");
    alice.send("CONNECT_QUERY", json!({"id": "nope", "params": {"collectionName": "nope"}}));
    let error = alice.one("ERROR");
    assert_eq!(error["error"]["name"], "QuerySyncError");
    assert_eq!(error["metadata"]["queryKey"], "nope");
    assert_eq!(error["metadata"]["innerError"]["name"], "InvalidCollectionNameError");
    alice.connection.receive(&"x".repeat(5000), NOW);
    assert_eq!(alice.one("ERROR")["error"]["status"], 413, "oversized");
    // Chunks: out of range, disagreeing totals, too large in total.
    alice.send("CHUNK", json!({"data": "{", "total": 2, "index": 2, "id": "c1"}));
    assert_eq!(alice.one("ERROR")["messageType"], "CHUNK");
    alice.send("CHUNK", json!({"data": "{", "total": 2, "index": 0, "id": "c2"}));
    alice.send("CHUNK", json!({"data": "}", "total": 3, "index": 1, "id": "c2"}));
    assert_eq!(alice.one("ERROR")["messageType"], "CHUNK");
    for index in 0..3 {
        alice.send("CHUNK", json!({"data": "y".repeat(2000), "total": 3, "index": index, "id": "big"}));
    }
    assert_eq!(alice.one("ERROR")["messageType"], "CHUNK");
    // A chunk that never completes just waits; others are served meanwhile.
    alice.send("CHUNK", json!({"data": "{\"type\":", "total": 2, "index": 0, "id": "open"}));
    assert!(alice.take().is_empty());

    let carol = Client::connect(&server, &user_token("bob", LATER));
    carol.take();
    carol.write(json!([todo("b1", "bob")]), json!([]));
    assert_eq!(sets(&bob.one("ENTITY_DATA"), "todos"), vec!["b1"], "everyone else is still served");
}

#[test]
fn chunks_reassemble_in_any_order() {
    let server = server();
    let alice = Client::connect(&server, &user_token("alice", LATER));
    alice.take();
    let message =
        json!({"type": "CONNECT_QUERY", "payload": {"id": "chunked-q", "params": {"collectionName": "todos"}}})
            .to_string();
    let (first, second) = message.split_at(30);
    alice.send("CHUNK", json!({"data": second, "total": 2, "index": 1, "id": "abc"}));
    assert!(alice.take().is_empty());
    alice.send("CHUNK", json!({"data": first, "total": 2, "index": 0, "id": "abc"}));
    assert_eq!(alice.one("ENTITY_DATA")["forQueries"], json!(["chunked-q"]));
}

#[test]
fn ping_gets_pong() {
    let server = server();
    let alice = Client::connect(&server, &user_token("alice", LATER));
    alice.take();
    alice.send("PING", json!({"clientTimestamp": 42}));
    assert_eq!(alice.one("PONG"), json!({"clientTimestamp": 42, "serverTimestamp": NOW}));
}

fn closed(messages: &[Json], close_type: &str) {
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert_eq!(messages[0]["type"], "CLOSE");
    assert_eq!(messages[0]["payload"]["type"], close_type);
    assert_eq!(messages[0]["payload"]["retry"], false);
    assert_eq!(messages[1]["code"], 1008);
    let reason = messages[1]["reason"].as_str().unwrap();
    assert!(reason.len() < 125);
    assert_eq!(serde_json::from_str::<Json>(reason).unwrap(), json!({"type": close_type, "retry": false}));
}

#[test]
fn tokens_are_checked_at_connect_as_messages_pass_and_when_replaced() {
    let server = server();
    let refusal = server
        .connect(&ConnectRequest { token: Some("forged.token.here".into()), schema_hash: None }, Arc::new(|| {}))
        .err()
        .expect("refused");
    let texts: Vec<Json> = refusal
        .iter()
        .map(|o| match o {
            Outgoing::Text(t) => serde_json::from_str(t).unwrap(),
            Outgoing::Close { code, reason } => json!({"code": code, "reason": reason}),
        })
        .collect();
    closed(&texts, "UNAUTHORIZED");
    let service = mint_dev_token(SECRET, DevTokenKind::Secret, "p").unwrap();
    let tampered = user_token("alice", LATER).replacen('.', ".x", 1);
    assert!(server.connect(&ConnectRequest { token: Some(tampered), schema_hash: None }, Arc::new(|| {})).is_err());

    // Expiry, checked on the next message in or out.
    let expires = NOW / 1000 + 10;
    let alice = Client::connect(&server, &user_token("alice", expires));
    alice.take();
    alice.connection.receive(r#"{"type":"PING","payload":{}}"#, (expires + 1) * 1000);
    closed(&alice.take_at((expires + 1) * 1000), "TOKEN_EXPIRED");
    assert!(alice.connection.is_closed());

    // Expired a second ago at connect: refused with one CLOSE UNAUTHORIZED, no READY first
    // (there is no leeway, as in Triplit).
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let request = ConnectRequest { token: Some(user_token("alice", now_s - 1)), schema_hash: None };
    let refusal = server.connect(&request, Arc::new(|| {})).err().expect("refused at connect");
    let texts: Vec<Json> = refusal
        .iter()
        .filter_map(|o| if let Outgoing::Text(t) = o { serde_json::from_str(t).ok() } else { None })
        .collect();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(
        (texts[0]["type"].as_str(), texts[0]["payload"]["type"].as_str()),
        (Some("CLOSE"), Some("UNAUTHORIZED"))
    );

    // A renewed token with the same roles keeps the connection, and its new expiry counts.
    let bob = Client::connect(&server, &user_token("bob", expires));
    bob.take();
    bob.send("UPDATE_TOKEN", json!({"token": user_token("bob", LATER)}));
    bob.connection.receive(r#"{"type":"PING","payload":{}}"#, (expires + 1) * 1000);
    assert_eq!(bob.take_at((expires + 1) * 1000)[0]["type"], "PONG");
    // Other roles: closed.
    bob.send("UPDATE_TOKEN", json!({"token": service}));
    closed(&bob.take(), "ROLES_MISMATCH");

    // Over HTTP, as the 1.x client does.
    let carol = Client::connect(&server, &user_token("carol", LATER));
    let client_id = carol.one("READY")["clientId"].as_str().unwrap().to_owned();
    let body = json!({"clientId": client_id}).to_string();
    let bearer = format!("Bearer {}", user_token("carol", LATER + 10));
    let answer = server.handle_http(&post("/update-token", &bearer, &body));
    assert_eq!((answer.status, answer.body), (200, Body::Text("OK")));
    assert!(!carol.connection.is_closed());
    let bearer = format!("Bearer {}", mint_dev_token(SECRET, DevTokenKind::Anon, "p").unwrap());
    assert_eq!(server.handle_http(&post("/update-token", &bearer, &body)).status, 200);
    closed(&carol.take(), "ROLES_MISMATCH");
}

#[test]
fn the_schema_handshake_checks_the_client_schema() {
    let server = server();
    let request =
        |hash: &str| ConnectRequest { token: Some(user_token("alice", LATER)), schema_hash: Some(hash.into()) };
    let alice = Client::connect_with(&server, request("123"));
    assert_eq!(alice.one("SCHEMA_REQUEST"), json!({}));
    alice.send("CONNECT_QUERY", json!({"id": "early", "params": {"collectionName": "todos"}}));
    let error = alice.one("ERROR");
    assert_eq!(error["error"]["message"], "Triplit Error | Context: Server not ready for messages");
    assert_eq!(error["error"]["status"], 500);
    alice.send("SCHEMA_RESPONSE", json!({"schema": schema()}));
    alice.one("READY");
    // The hash is now known compatible: no request the next time.
    Client::connect_with(&server, request("123")).one("READY");

    let bob = Client::connect_with(&server, request("456"));
    bob.take();
    let mut incompatible = schema();
    incompatible["collections"]["todos"]["schema"]["properties"]["text"] = json!({"type": "number"});
    bob.send("SCHEMA_RESPONSE", json!({"schema": incompatible}));
    closed(&bob.take(), "SCHEMA_MISMATCH");
}

#[test]
fn the_http_api_answers_as_triplit() {
    let server = server();
    let service = format!("Bearer {}", mint_dev_token(SECRET, DevTokenKind::Secret, "p").unwrap());
    let alice = format!("Bearer {}", user_token("alice", LATER));
    let call = |path: &str, auth: &str, body: Json| {
        let text = body.to_string();
        let answer = server.handle_http(&post(path, auth, &text));
        (answer.status, json_body(answer.body))
    };

    let (status, inserted) = call(
        "/insert",
        &alice,
        json!({"collectionName": "todos", "entity": {"id": "t1", "text": "a", "owner": "alice", "tags": ["x"]}}),
    );
    assert_eq!((status, inserted["tags"].clone()), (200, json!(["x"])), "API form: sets as arrays");
    let (status, error) = call(
        "/insert",
        &alice,
        json!({"collectionName": "todos", "entity": {"id": "t2", "text": "a", "owner": "bob"}}),
    );
    assert_eq!((status, error["name"].clone()), (401, json!("WritePermissionError")));
    let (status, rows) = call("/fetch", &alice, json!({"query": {"collectionName": "todos"}}));
    assert_eq!((status, rows.as_array().unwrap().len()), (200, 1));
    let (status, _) = call(
        "/update",
        &alice,
        json!({"collectionName": "todos", "entityId": "t1", "changes": {"text": "b", "tags": {"y": true}}}),
    );
    assert_eq!(status, 200);
    let (_, rows) = call("/fetch", &alice, json!({"query": {"collectionName": "todos"}}));
    assert_eq!((rows[0]["text"].clone(), rows[0]["tags"].clone()), (json!("b"), json!(["x", "y"])));
    let (status, error) =
        call("/update", &alice, json!({"collectionName": "todos", "entityId": "nope", "changes": {}}));
    assert_eq!((status, error["name"].clone()), (404, json!("EntityNotFoundError")));
    let (status, output) = call("/bulk-insert", &service, json!({"projects": [{"id": "p1", "name": "P"}]}));
    assert_eq!((status, output["projects"][0]["id"].clone()), (200, json!("p1")));
    let (status, error) = call("/stats", &alice, json!({}));
    assert_eq!((status, error["name"].clone()), (401, json!("ServiceKeyRequiredError")));
    let (_, stats) = call("/stats", &service, json!({}));
    assert_eq!(stats, json!([{"collection": "projects", "numEntities": 1}, {"collection": "todos", "numEntities": 1}]));
    let (_, schema) = call("/schema", &service, json!({}));
    assert_eq!(schema["type"], "schema");
    let mut pushed = schema["schema"].clone();
    pushed["collections"]["notes"] = json!({"schema": {"type": "record", "properties": {"id": {"type": "string"}}}});
    let (status, change) = call("/override-schema", &service, json!({"schema": pushed}));
    assert_eq!((status, change["successful"].clone()), (200, json!(true)));
    let changes = json!({"json": {"notes": {"sets": [["n1", {"id": "n1"}]], "deletes": []}}, "meta": {"values": {"notes.sets": ["map"]}, "v": 1}});
    assert_eq!(call("/apply-changes", &service, json!({"changes": changes})).0, 200);
    assert_eq!(server.database().fetch_all("notes").unwrap().len(), 1);
    assert_eq!(call("/delete", &alice, json!({"collectionName": "todos", "entityId": "t1"})).0, 200);
    assert_eq!(call("/delete-all", &service, json!({"collectionName": "notes"})), (200, json!({})));
    let cleared = server.handle_http(&post("/clear", &service, "{}"));
    assert_eq!((cleared.status, cleared.body), (200, Body::Text("")), "an empty body, as Triplit's");
    assert!(server.database().fetch_all("projects").unwrap().is_empty());
    assert_eq!(call("/nope", &service, json!({})).1["name"], "RouteNotFoundError");

    // Bad input: typed 4xx answers.
    let answer = server.handle_http(&post("/fetch", &alice, "{not json"));
    assert_eq!((answer.status, json_body(answer.body)["name"].clone()), (400, json!("InvalidJsonError")));
    assert_eq!(call("/fetch", &alice, json!({})).1["name"], "InvalidJsonError");
    let (status, error) = call("/fetch", &alice, json!({"query": {"collectionName": "nope"}}));
    assert_eq!((status, error["name"].clone()), (400, json!("InvalidCollectionNameError")));
    let no_auth = server.handle_http(&Request { method: "POST", path: "/fetch", ..Request::default() });
    assert_eq!((no_auth.status, json_body(no_auth.body)["name"].clone()), (401, json!("NoTokenProvidedError")));
    let basic = server.handle_http(&post("/fetch", "Basic abc", "{}"));
    assert_eq!(json_body(basic.body)["name"], "InvalidAuthenticationSchemeError");
    let forged = server.handle_http(&post("/fetch", "Bearer a.b.c", "{}"));
    assert!(forged.status == 400 || forged.status == 401, "{forged:?}");
    let small = server_with(Limits { max_message_bytes: 10, ..Limits::default() });
    assert_eq!(small.handle_http(&post("/fetch", &alice, &" ".repeat(11))).status, 413);
    let health = server.handle_http(&Request { method: "GET", path: "/healthcheck", ..Request::default() });
    assert_eq!(health.body, Body::Text("OK"));
    let version = server.handle_http(&Request {
        method: "GET",
        path: "/version",
        authorization: Some(&alice),
        ..Request::default()
    });
    assert_eq!(version.body, Body::Text("1.0.0"));

    // The multipart upload of `triplit snapshot push` / HttpClient.bulkInsert.
    let body = "--XyZ\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n{\"projects\":[{\"id\":\"p9\",\"name\":\"N\"}]}\r\n--XyZ--\r\n";
    let upload = server.handle_http(&Request {
        method: "POST",
        path: "/bulk-insert-file",
        query: "noReturn=true",
        authorization: Some(&service),
        content_type: Some("multipart/form-data; boundary=XyZ"),
        body: body.as_bytes(),
    });
    assert_eq!((upload.status, json_body(upload.body)), (200, json!({})));
    assert!(server.database().fetch_by_id("projects", "p9").unwrap().is_some());
}

/// Where triplite's HTTP answers differed from the real server's (each failed before its fix).
#[test]
fn http_answers_that_differed_from_triplits_now_match() {
    let server = server();
    let service = service_bearer();
    let alice = format!("Bearer {}", user_token("alice", LATER));
    let call = |path: &str, auth: &str, body: Json| {
        let text = body.to_string();
        let answer = server.handle_http(&post(path, auth, &text));
        (answer.status, answer.body)
    };
    let insert =
        json!({"collectionName": "todos", "entity": {"id": "t1", "text": "a", "owner": "alice", "tags": ["x"]}});
    assert_eq!(call("/insert", &alice, insert).0, 200);

    // Ids are immutable: an id in `/update`'s changes is refused, not dropped.
    let (status, body) = call(
        "/update",
        &alice,
        json!({"collectionName": "todos", "entityId": "t1", "changes": {"id": "t9", "text": "b"}}),
    );
    let error = json_body(body);
    assert_eq!((status, error["name"].as_str()), (400, Some("InvalidOperationError")));
    assert_eq!(error["baseMessage"], "You are attempting to perform an operation that is not valid.");
    assert_eq!(server.database().fetch_by_id("todos", "t1").unwrap().unwrap()["text"], "a", "nothing applied");

    // A set given as an array adds its items.
    let (status, _) =
        call("/update", &alice, json!({"collectionName": "todos", "entityId": "t1", "changes": {"tags": ["y", "z"]}}));
    assert_eq!(status, 200);
    assert_eq!(server.database().fetch_by_id("todos", "t1").unwrap().unwrap()["tags"], json!(["x", "y", "z"]));

    // Removed 0.x routes: the running 1.1.8 server answers 404 (its 410 branch is unreachable).
    let (status, body) = call("/insert-triples", &service, json!({}));
    assert_eq!((status, json_body(body)["name"].clone()), (404, json!("RouteNotFoundError")));

    // The schema comes back as pushed, explicit `false` flags included.
    let mut pushed = schema();
    pushed["collections"]["notes"] = json!({"schema": {"type": "record", "properties": {
        "id": {"type": "string", "config": {"nullable": false}},
        "body": {"type": "string", "config": {"nullable": false, "optional": false}}}}});
    assert_eq!(call("/override-schema", &service, json!({"schema": pushed})).0, 200);
    let (_, body) = call("/schema", &service, json!({}));
    assert_eq!(json_body(body)["schema"], pushed);

    // `_metadata` holds the schema as the row `_schema`, for service tokens.
    let metadata = json!({"query": {"collectionName": "_metadata", "where": [["id", "=", "_schema"]]}});
    let (status, body) = call("/fetch", &service, metadata.clone());
    let rows = json_body(body);
    assert_eq!(status, 200);
    assert_eq!(rows[0]["id"], "_schema");
    assert_eq!(rows[0]["collections"], pushed["collections"]);
    assert_eq!(rows[0]["roles"], pushed["roles"]);
    assert_eq!(call("/fetch", &alice, metadata.clone()).0, 400, "not for users: it holds every rule");

    // `/clear` clears what is stored even after its collection left the schema; the schema
    // stays until `full`.
    server.database().insert("notes", json!({"id": "n1", "body": "kept?"})).unwrap();
    assert_eq!(call("/override-schema", &service, json!({"schema": schema()})).0, 200);
    assert_eq!(call("/clear", &service, json!({})).0, 200);
    assert!(
        server
            .database()
            .collection_names()
            .unwrap()
            .iter()
            .all(|c| { server.database().fetch_all(c).map(|rows| rows.is_empty()).unwrap_or(true) })
    );
    let (status, body) = call("/fetch", &service, metadata.clone());
    assert_eq!((status, json_body(body).as_array().map(Vec::len)), (200, Some(1)), "the schema stays");
    assert_eq!(call("/override-schema", &service, json!({"schema": pushed})).0, 200, "later pushes work");
    assert_eq!(call("/clear", &service, json!({"full": true})).0, 200);
    let (_, body) = call("/fetch", &service, metadata);
    assert_eq!(json_body(body), json!([]), "full: the schema is gone too");
    assert!(server.database().schema().is_none());
}

/// A write to a row the session cannot read goes ahead when its own rule allows it; otherwise
/// it is answered exactly as one to a missing row, over HTTP and sync alike — so a denial never
/// tells a user which ids exist.
#[test]
fn writes_to_unreadable_rows_follow_their_rule_and_otherwise_look_missing() {
    let server = server();
    let db = server.database().clone();
    db.insert("notes", json!({"id": "n1", "owner": "alice", "text": "private"})).unwrap();
    db.insert("todos", json!({"id": "t1", "text": "alice's", "owner": "alice"})).unwrap();
    let bob = format!("Bearer {}", user_token("bob", LATER));
    let call = |path: &str, body: Json| {
        let answer = server.handle_http(&post(path, &bob, &body.to_string()));
        (answer.status, json_body(answer.body))
    };

    // Update allowed, read not: applied (Triplit applies it too).
    let update = |id: &str| json!({"collectionName": "notes", "entityId": id, "changes": {"text": "seen by bob?"}});
    assert_eq!(call("/update", update("n1")).0, 200);
    assert_eq!(db.fetch_by_id("notes", "n1").unwrap().unwrap()["text"], "seen by bob?");

    // Denied on an unreadable row: the very answer a missing row gets, and nothing changes.
    let hidden = call("/update", json!({"collectionName": "todos", "entityId": "t1", "changes": {"text": "x"}}));
    let missing = call("/update", json!({"collectionName": "todos", "entityId": "t0", "changes": {"text": "x"}}));
    assert_eq!(hidden.0, 404);
    assert_eq!(hidden.1.to_string().replace("t1", "t0"), missing.1.to_string());
    for (collection, id) in [("todos", "t1"), ("notes", "n1")] {
        let hidden = call("/delete", json!({"collectionName": collection, "entityId": id}));
        let missing = call("/delete", json!({"collectionName": collection, "entityId": "nope"}));
        assert_eq!((hidden.clone(), missing), ((200, json!({})), (200, json!({}))), "{collection}");
    }
    assert!(db.fetch_by_id("todos", "t1").unwrap().is_some() && db.fetch_by_id("notes", "n1").unwrap().is_some());

    // Over sync: denied deletes and updates of unreadable rows are acknowledged and dropped,
    // as those of missing rows are; the rest of the transaction lands.
    let client = Client::connect(&server, &user_token("bob", LATER));
    client.take();
    let changes = json!({"json": {
        "todos": {"sets": [["t1", {"text": "x"}], ["t0", {"text": "x"}], ["b1", {"id": "b1", "text": "bob's", "owner": "bob"}]], "deletes": []},
        "notes": {"sets": [], "deletes": ["n1", "n0"]}},
        "meta": {"values": {"todos.sets": ["map"], "todos.deletes": ["set"], "notes.sets": ["map"], "notes.deletes": ["set"]}, "v": 1}});
    client.send("CHANGES", json!({"changes": changes}));
    let answer = client.take();
    assert!(answer.iter().any(|m| m["type"] == "CHANGES_ACK"), "{answer:?}");
    assert_eq!(db.fetch_by_id("todos", "t1").unwrap().unwrap()["text"], "alice's");
    assert!(db.fetch_by_id("notes", "n1").unwrap().is_some());
    assert!(db.fetch_by_id("todos", "b1").unwrap().is_some());
    // The owner's own denied-free writes still work.
    let alice = format!("Bearer {}", user_token("alice", LATER));
    let deleted =
        server.handle_http(&post("/delete", &alice, &json!({"collectionName": "notes", "entityId": "n1"}).to_string()));
    assert_eq!(deleted.status, 200);
    assert!(db.fetch_by_id("notes", "n1").unwrap().is_none());
}

#[test]
fn a_query_the_new_schema_rejects_ends_with_an_error_to_its_client() {
    let server = server();
    let alice = Client::connect(&server, &user_token("alice", LATER));
    alice.take();
    alice.subscribe("p", json!({"collectionName": "projects"}));
    alice.subscribe("t", json!({"collectionName": "todos"}));
    let mut without_projects = schema();
    without_projects["collections"].as_object_mut().unwrap().remove("projects");
    without_projects["collections"]["todos"].as_object_mut().unwrap().remove("relationships");
    server.database().set_schema(Schema::from_json(&without_projects).unwrap()).unwrap();
    let messages = alice.take();
    let error = messages.iter().find(|m| m["type"] == "ERROR").expect("an error for the ended query");
    assert_eq!(error["payload"]["error"]["name"], "QuerySyncError");
    assert_eq!(error["payload"]["metadata"]["queryKey"], "p");
    // The other query lives on.
    let answers = alice.write(json!([todo("t1", "alice")]), json!([]));
    assert_eq!(sets(&answers.last().unwrap()["payload"], "todos"), vec!["t1"]);
}

#[test]
fn over_the_network_a_stop_closes_every_socket_with_1001() {
    use triplite::net::RunningServer;
    let server = server();
    let running = RunningServer::start(server.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("ws://127.0.0.1:{}/?sync-schema=false&token={}", running.port(), user_token("alice", LATER));
    let (mut socket, _) = tungstenite::connect(url).unwrap();
    let ready: Json = serde_json::from_str(socket.read().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(ready["type"], "READY");
    assert_eq!(server.connection_count(), 1);
    running.stop().unwrap();
    let closed = loop {
        match socket.read() {
            Ok(tungstenite::Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    };
    assert_eq!(closed, Some(1001));
    assert_eq!(server.connection_count(), 0, "the engine forgot the connection");
}

/// A client that closes gets the close echoed (code and reason), so it sees a clean close,
/// not an abnormal one (1006) after which the published client reconnects — with the token of
/// the user who just signed out.
#[test]
fn a_close_from_the_client_is_answered_with_the_same_close() {
    use tungstenite::protocol::CloseFrame;
    use tungstenite::protocol::frame::coding::CloseCode;
    let server = server();
    let running = triplite::net::RunningServer::start(server.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("ws://127.0.0.1:{}/?token={}", running.port(), user_token("alice", LATER));
    let (mut socket, _) = tungstenite::connect(url).unwrap();
    socket.read().unwrap();
    let reason = r#"{"type":"MANUAL_DISCONNECT","retry":false}"#;
    socket.close(Some(CloseFrame { code: CloseCode::Normal, reason: reason.into() })).unwrap();
    let echoed = loop {
        match socket.read() {
            Ok(tungstenite::Message::Close(frame)) => break frame,
            Ok(_) => continue,
            Err(e) => panic!("expected the close echoed, got {e}"),
        }
    };
    let echoed = echoed.expect("a close frame with a code");
    assert_eq!((u16::from(echoed.code), echoed.reason.as_str()), (1000, reason));
    // The handshake is complete: the server then ends the TCP connection.
    assert!(matches!(socket.read(), Err(tungstenite::Error::ConnectionClosed)));
    running.stop().unwrap();
}

/// An `ENTITY_DATA` taken while a commit's update is still reaching other connections carries
/// that commit's stamp: the published client drops data stamped no later than what it holds
/// (it missed updates and deletes when the stamp was the previous commit's).
#[test]
fn entity_data_drained_mid_fan_out_is_stamped_with_the_commit_it_carries() {
    use std::sync::mpsc;
    use std::sync::{Mutex, atomic::AtomicBool};

    let server = server();
    let db = server.database().clone();
    let alice = Client::connect(&server, &user_token("alice", LATER));
    alice.take();
    alice.write(json!([todo("t1", "alice")]), json!([]));
    let first = alice.subscribe("q", json!({"collectionName": "todos"}));
    // Subscribed after alice, so fed after her; once armed, its wake-up holds the fan-out.
    let armed = Arc::new(AtomicBool::new(false));
    let (held, fan_out_held) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let released = Mutex::new(released);
    let trigger = armed.clone();
    let holder = server
        .connect(
            &ConnectRequest { token: Some(user_token("alice", LATER)), schema_hash: None },
            Arc::new(move || {
                if trigger.swap(false, Ordering::SeqCst) {
                    let _ = held.send(());
                    let _ = released.lock().unwrap().recv_timeout(std::time::Duration::from_secs(5));
                }
            }),
        )
        .unwrap();
    holder.receive(
        &json!({"type": "CONNECT_QUERY", "payload": {"id": "q", "params": {"collectionName": "todos"}}}).to_string(),
        NOW,
    );
    holder.drain(NOW);

    armed.store(true, Ordering::SeqCst);
    let writer = std::thread::spawn(move || db.update("todos", "t1", json!({"text": "edited"})).unwrap());
    fan_out_held.recv_timeout(std::time::Duration::from_secs(5)).expect("the update's fan-out reached the holder");
    let update = alice.one("ENTITY_DATA");
    release.send(()).unwrap();
    writer.join().unwrap();
    assert_eq!(update["changes"]["json"]["todos"]["sets"][0][1]["text"], "edited");
    let stamp = |data: &Json| triplite::Timestamp::from_json(&data["timestamp"]).unwrap();
    assert!(
        stamp(&update) > stamp(&first),
        "the update is stamped {} and the answer before it {}",
        update["timestamp"],
        first["timestamp"]
    );
    assert!(stamp(&update) <= server.database().latest_timestamp(), "and no later than the commit");
    server.disconnect(&holder);
}
