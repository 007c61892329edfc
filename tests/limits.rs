//! A hostile or careless client against the sync engine: each attack gets a typed answer or
//! a clear close, costs the server only what its limits allow, and leaves every other client
//! served. Each case reproduces a defect found on `triplite serve` before it was fixed.

mod common;

use serde_json::{Value as Json, json};
use triplite::sync::{ConnectRequest, Limits, SyncServer};
use triplite::{Database, QueryLimits, Schema};

use common::engine::*;

fn query_error(client: &Client) -> Json {
    let error = client.one("ERROR");
    assert_eq!(error["error"]["name"], "QuerySyncError", "{error:#}");
    error["metadata"]["innerError"].clone()
}

#[test]
fn a_chunk_declaring_a_huge_total_is_refused_without_allocating_for_it() {
    let server = server();
    let alice = Client::connect(&server, &user_token("alice", LATER));
    alice.take();
    // Before: the server allocated a slot per declared piece and aborted.
    for total in [u64::MAX / 2, 1 << 40, 5_000_000] {
        alice.send("CHUNK", json!({"data": "{", "total": total, "index": 0, "id": format!("c{total}")}));
        let error = alice.one("ERROR");
        assert_eq!(error["messageType"], "CHUNK");
        assert!(error["error"]["message"].as_str().unwrap().contains("at most 1000 pieces"), "{error:#}");
    }
    // Messages in progress at once are bounded too.
    for id in 0..4 {
        alice.send("CHUNK", json!({"data": "{", "total": 2, "index": 0, "id": format!("open{id}")}));
    }
    assert!(alice.take().is_empty());
    alice.send("CHUNK", json!({"data": "{", "total": 2, "index": 0, "id": "one-too-many"}));
    assert!(alice.one("ERROR")["error"]["message"].as_str().unwrap().contains("in progress"));
    // A message in progress still completes (its first piece, "{", is in).
    let message = json!({"type": "PING", "payload": {"clientTimestamp": 1}}).to_string();
    alice.send("CHUNK", json!({"data": &message[1..], "total": 2, "index": 1, "id": "open0"}));
    assert_eq!(alice.one("PONG")["clientTimestamp"], 1);
}

#[test]
fn claims_at_the_claims_path_never_make_a_service_token() {
    let db = Database::builder()
        .schema(Schema::from_json(&schema()).unwrap())
        .jwt_secret(SECRET)
        .claims_path("app.claims")
        .open_in_memory()
        .unwrap();
    let server = SyncServer::new(db, Limits::default());
    // An external token (verified with JWT_SECRET, as none other is set) whose nested claims
    // say it is a service token.
    let claims = json!({"sub": "mallory", "exp": LATER, "app": {"claims": {"sub": "mallory", "x-triplit-token-type": "secret"}}});
    triplite::install_token_crypto();
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let bearer = format!("Bearer {forged}");
    let open_schema = json!({"schema": {"collections": {"todos": {"schema": {"type": "record", "properties": {"id": {"type": "string"}}}}}}});
    for (route, body) in [
        ("/override-schema", open_schema.to_string()),
        ("/stats", "{}".to_owned()),
        ("/schema", "{}".to_owned()),
        ("/clear", "{}".to_owned()),
        ("/apply-changes", json!({"changes": {"todos": {"sets": [], "deletes": []}}}).to_string()),
    ] {
        let answer = server.handle_http(&post(route, &bearer, &body));
        assert_eq!(answer.status, 401, "{route}");
        assert_eq!(json_body(answer.body)["name"], "ServiceKeyRequiredError", "{route}");
    }
    // The rules still apply to it: it reads and writes only mallory's rows.
    let service = service_bearer();
    let insert = json!({"collectionName": "todos", "entity": {"id": "a1", "text": "x", "owner": "alice"}}).to_string();
    assert_eq!(server.handle_http(&post("/insert", &service, &insert)).status, 200);
    let fetch = json!({"query": {"collectionName": "todos"}}).to_string();
    assert_eq!(json_body(server.handle_http(&post("/fetch", &bearer, &fetch)).body), json!([]));
    assert_eq!(server.handle_http(&post("/insert", &bearer, &insert)).status, 401);
    let session = server.database().session(&forged).unwrap();
    assert!(!session.is_service() && !session.bypasses_rules());
}

/// `n` todos owned by alice, written through the service token.
fn seed(server: &SyncServer, n: usize) {
    let todos: Vec<Json> =
        (0..n).map(|i| json!({"id": format!("t{i:04}"), "text": format!("todo {i}"), "owner": "alice"})).collect();
    let body = json!({"todos": todos}).to_string();
    assert_eq!(server.handle_http(&post("/bulk-insert", &service_bearer(), &body)).status, 200);
}

#[test]
fn a_wide_filter_or_deep_includes_are_refused_before_they_run() {
    let server = server();
    seed(&server, 20);
    let service = service_bearer();
    // 10,000 `or` branches over a relation path: before, ~20 s of work.
    let branches: Vec<Json> = (0..10_000).map(|i| json!(["project.name", "=", format!("p{i}")])).collect();
    let wide = json!({"query": {"collectionName": "todos", "where": [{"mod": "or", "filters": branches}]}});
    let answer = server.handle_http(&post("/fetch", &service, &wide.to_string()));
    assert_eq!(answer.status, 400);
    let error = json_body(answer.body);
    assert_eq!(error["name"], "QueryTooExpensiveError");
    assert!(error["message"].as_str().unwrap().contains("10001 filter terms"), "{error:#}");

    // Includes nested six deep: before, 45 s, 3.8 GB and a 340 MB answer.
    let mut deep = json!({"collectionName": "todos"});
    for _ in 0..6 {
        deep = json!({"collectionName": "todos", "include": {"all": {"subquery": deep, "cardinality": "many"}}});
    }
    let answer = server.handle_http(&post("/fetch", &service, &json!({"query": deep}).to_string()));
    assert_eq!(json_body(answer.body)["name"], "QueryTooExpensiveError");
    let alice = Client::connect(&server, &user_token("alice", LATER));
    alice.take();
    alice.send("CONNECT_QUERY", json!({"id": "deep", "params": deep}));
    assert_eq!(query_error(&alice)["name"], "QueryTooExpensiveError");
    // Four levels (the default limit) still run.
    let mut ok = json!({"collectionName": "todos", "limit": 2});
    for _ in 0..4 {
        ok =
            json!({"collectionName": "todos", "limit": 2, "include": {"all": {"subquery": ok, "cardinality": "many"}}});
    }
    assert_eq!(server.handle_http(&post("/fetch", &service, &json!({"query": ok}).to_string())).status, 200);
}

#[test]
fn rows_examined_and_result_bytes_are_metered_while_a_query_runs() {
    let limits = QueryLimits { max_rows_examined: 500, max_result_bytes: 8192, ..QueryLimits::default() };
    let server = server_with(Limits { query: limits, ..Limits::default() });
    seed(&server, 100);
    let service = service_bearer();
    let fetch = |query: Json| server.handle_http(&post("/fetch", &service, &json!({"query": query}).to_string()));
    // 100 rows × ~350 bytes parsed: over 8 KiB of results.
    let all = fetch(json!({"collectionName": "todos"}));
    assert_eq!(all.status, 400);
    assert!(json_body(all.body)["message"].as_str().unwrap().contains("8192 bytes"));
    assert_eq!(fetch(json!({"collectionName": "todos", "limit": 10})).status, 200);
    // Every row of 100 reading every row again: 10,100 rows examined, few results.
    let quadratic = json!({"collectionName": "todos", "where": [
        {"exists": {"collectionName": "todos", "where": [["text", "=", "nothing"]]}}]});
    let answer = fetch(quadratic.clone());
    let error = json_body(answer.body);
    assert_eq!(error["name"], "QueryTooExpensiveError");
    assert!(error["message"].as_str().unwrap().contains("more than 500 rows"), "{error:#}");
    // The same over sync, for a live query; the connection goes on.
    let alice = Client::connect(&server, &user_token("alice", LATER));
    alice.take();
    alice.send("CONNECT_QUERY", json!({"id": "q", "params": quadratic}));
    assert_eq!(query_error(&alice)["name"], "QueryTooExpensiveError");
    alice.subscribe("small", json!({"collectionName": "todos", "limit": 3}));
    // The embedding application's own reads are not metered.
    assert_eq!(server.database().fetch(&triplite::Query::new("todos")).unwrap().len(), 100);
}

#[test]
fn queries_per_connection_and_connections_per_token_are_bounded() {
    let server =
        server_with(Limits { max_queries_per_connection: 3, max_connections_per_token: 2, ..Limits::default() });
    let token = user_token("alice", LATER);
    let alice = Client::connect(&server, &token);
    alice.take();
    for id in ["a", "b", "c"] {
        alice.subscribe(id, json!({"collectionName": "todos", "where": [["text", "=", id]]}));
    }
    alice.send("CONNECT_QUERY", json!({"id": "d", "params": {"collectionName": "todos"}}));
    let inner = query_error(&alice);
    assert_eq!((inner["name"].clone(), inner["status"].clone()), (json!("LimitExceededError"), json!(429)));
    // Re-subscribing a query it has is not a new one; dropping one makes room.
    alice.subscribe("a", json!({"collectionName": "todos"}));
    alice.send("DISCONNECT_QUERY", json!({"id": "b"}));
    alice.subscribe("d", json!({"collectionName": "todos"}));

    let second = Client::connect(&server, &token);
    let refused = server
        .connect(&ConnectRequest { token: Some(token.clone()), schema_hash: None }, std::sync::Arc::new(|| {}))
        .err()
        .expect("a third connection with one token is refused");
    let close: Json = match &refused[0] {
        triplite::sync::protocol::Outgoing::Text(text) => serde_json::from_str(text).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(close["payload"]["type"], "TOO_MANY_CONNECTIONS");
    assert_eq!(close["payload"]["retry"], true);
    // Another token is its own count, and a connection that leaves frees its place.
    let _bob = Client::connect(&server, &user_token("bob", LATER));
    server.disconnect(&second.connection);
    let _third = Client::connect(&server, &token);
}

#[test]
fn a_client_that_never_reads_is_closed_once_it_owes_too_much() {
    let server = server_with(Limits { max_pending_output_bytes: 16 * 1024, ..Limits::default() });
    let reader = Client::connect(&server, &user_token("alice", LATER));
    let stalled = Client::connect(&server, &user_token("alice", LATER));
    reader.take();
    stalled.take();
    reader.subscribe("all", json!({"collectionName": "todos"}));
    stalled.subscribe("all", json!({"collectionName": "todos"}));
    let writer = Client::connect(&server, &user_token("alice", LATER));
    writer.take();
    for batch in 0..40 {
        let sets: Vec<Json> = (0..5)
            .map(|i| {
                let id = format!("b{batch}-{i}");
                json!([id, {"id": id, "text": "x".repeat(200), "owner": "alice"}])
            })
            .collect();
        writer.write(Json::Array(sets), json!([]));
        reader.take();
    }
    assert!(stalled.connection.is_closed(), "40 KB owed over a 16 KB limit");
    let messages = stalled.take();
    let close = messages.iter().find(|m| m["type"] == "CLOSE").expect("a CLOSE");
    assert_eq!(close["payload"]["type"], "BACKLOG_LIMIT");
    assert!(messages.iter().all(|m| m["type"] != "ENTITY_DATA"), "what it was owed is dropped");
    assert!(!reader.connection.is_closed(), "a client that reads is served");
}

#[test]
fn a_first_answer_larger_than_the_backlog_limit_is_refused_and_the_connection_stays() {
    // Closing for the backlog would make the client reconnect, ask again and be closed again.
    let server = server_with(Limits { max_pending_output_bytes: 16 * 1024, ..Limits::default() });
    let writer = Client::connect(&server, &user_token("alice", LATER));
    writer.take();
    let todos: Vec<Json> = (0..100)
        .map(|i| {
            let id = format!("big-{i}");
            json!([id, {"id": id, "text": "x".repeat(400), "owner": "alice"}])
        })
        .collect();
    writer.write(Json::Array(todos), json!([]));
    let reader = Client::connect(&server, &user_token("alice", LATER));
    reader.take();
    reader.send("CONNECT_QUERY", json!({"id": "all", "params": {"collectionName": "todos"}}));
    assert_eq!(query_error(&reader)["name"], "LimitExceededError");
    assert!(!reader.connection.is_closed(), "the connection stays for queries that fit");
    let small = reader.subscribe("one", json!({"collectionName": "todos", "where": [["id", "=", "big-1"]]}));
    assert_eq!(sets(&small, "todos"), ["big-1"]);
}

#[test]
fn serve_takes_limits_from_the_environment_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_triplite"))
            .args(["serve", "--storage", "memory"])
            .args(args)
            .env("JWT_SECRET", SECRET)
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("MAX_QUERIES_PER_CONNECTION", "7")
            .env("MAX_RESULT_SIZE", "3")
            .current_dir(dir.path())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let refused = serve(&["--limit", "MAX_NOTHING=1"]).wait_with_output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown limit \\\"MAX_NOTHING\\\""));

    let mut child = serve(&["--limit", "MAX_QUERIES_PER_CONNECTION=9", "--limit", "MAX_INCLUDE_DEPTH=2"]);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let listening: Json = loop {
        let line = lines.next().expect("a listening line").unwrap();
        let json: Json = serde_json::from_str(&line).unwrap();
        if json["message"] == "listening" {
            break json;
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let limits: Json = serde_json::from_str(listening["limits"].as_str().unwrap()).unwrap();
    assert_eq!(limits["MAX_QUERIES_PER_CONNECTION"], 9, "the flag wins over the environment");
    assert_eq!(limits["MAX_RESULT_SIZE"], 3);
    assert_eq!(limits["MAX_INCLUDE_DEPTH"], 2);
    assert_eq!(limits["MAX_BODY_SIZE"], 100, "defaults otherwise");
}
