//! One slow request must not stall the others: reads run on their own connections while a
//! transaction holds the writer, HTTP handlers and frames run off the async workers, and a
//! reader sees exactly the committed state. Each check is ordering, not timing: the slow work
//! is held open by the test until the fast work has answered.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;
use triplite::net::RunningServer;
use triplite::sync::{Limits, SyncServer};
use triplite::{Database, Query, Schema};

use common::engine::{SECRET, schema, service_bearer};

fn file_database(dir: &tempfile::TempDir) -> Database {
    Database::builder()
        .schema(Schema::from_json(&schema()).unwrap())
        .jwt_secret(SECRET)
        .open(dir.path().join("app.db"))
        .unwrap()
}

/// Runs `hold` inside a transaction on another thread and returns once it is inside; the
/// transaction commits when the returned sender is dropped or sent to.
fn hold_the_writer(db: &Database) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (inside, entered) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let db = db.clone();
    let writer = std::thread::spawn(move || {
        db.transact(|tx| {
            tx.insert("projects", json!({"id": "uncommitted", "name": "held"}))?;
            inside.send(()).unwrap();
            let _ = released.recv();
            Ok(())
        })
        .unwrap();
    });
    entered.recv().unwrap();
    (release, writer)
}

#[test]
fn reads_run_while_a_transaction_holds_the_writer_and_see_only_committed_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = file_database(&dir);
    db.insert("projects", json!({"id": "p1", "name": "committed"})).unwrap();
    let (release, writer) = hold_the_writer(&db);
    // Before: every read waited for the store lock the transaction holds.
    let (done, answered) = mpsc::channel();
    let reader = db.clone();
    std::thread::spawn(move || done.send(reader.fetch(&Query::new("projects")).unwrap()).unwrap());
    let seen = answered.recv_timeout(Duration::from_secs(30)).expect("the read answered while the writer was held");
    assert_eq!(seen.len(), 1, "the uncommitted insert is not visible: {seen:?}");
    release.send(()).unwrap();
    writer.join().unwrap();
    assert_eq!(db.fetch(&Query::new("projects")).unwrap().len(), 2, "and is once committed");
}

#[test]
fn readers_follow_indexes_the_writer_creates_after_they_opened() {
    let dir = tempfile::tempdir().unwrap();
    let db = file_database(&dir);
    for i in 0..50 {
        db.insert("projects", json!({"id": format!("p{i}"), "name": format!("n{}", i % 5)})).unwrap();
    }
    let by_name = Query::new("projects").filter("name", "=", "n3");
    assert_eq!(db.explain(&by_name).unwrap().access, "scan");
    let mut indexed = schema();
    indexed["collections"]["projects"]["indexes"] = json!([["name"]]);
    db.set_schema(Schema::from_json(&indexed).unwrap()).unwrap();
    // Every reader, not just the one that happened to serve the first query.
    for _ in 0..6 {
        let plan = db.explain(&by_name).unwrap();
        assert_eq!((plan.access.as_str(), plan.results), ("index (name)", 10));
    }
    db.set_schema(Schema::from_json(&schema()).unwrap()).unwrap();
    for _ in 0..6 {
        assert_eq!(db.fetch(&by_name).unwrap().len(), 10, "a dropped index is not used");
    }
}

#[test]
fn over_the_network_http_and_frames_answer_while_the_writer_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let db = file_database(&dir);
    let server =
        RunningServer::start(SyncServer::new(db.clone(), Limits::default()), "127.0.0.1:0".parse().unwrap()).unwrap();
    let port = server.port();
    let (release, writer) = hold_the_writer(&db);
    let (done, answered) = mpsc::channel();
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        let health = agent.get(&format!("http://127.0.0.1:{port}/healthcheck")).call().unwrap().status();
        let fetch = agent
            .post(&format!("http://127.0.0.1:{port}/fetch"))
            .header("Authorization", &service_bearer())
            .send(json!({"query": {"collectionName": "projects"}}).to_string())
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap();
        let (mut socket, _) = tungstenite::connect(format!(
            "ws://127.0.0.1:{port}/?token={}",
            service_bearer().trim_start_matches("Bearer ")
        ))
        .unwrap();
        let ready = socket.read().unwrap();
        socket.send(json!({"type": "PING", "payload": {"clientTimestamp": 7}}).to_string().into()).unwrap();
        let pong = socket.read().unwrap();
        done.send((health, fetch, ready.to_string(), pong.to_string())).unwrap();
    });
    let (health, fetch, ready, pong) =
        answered.recv_timeout(Duration::from_secs(30)).expect("answers while a transaction holds the writer");
    assert_eq!(health, 200);
    assert_eq!(fetch, "[]", "nothing committed yet");
    assert!(ready.contains("READY") && pong.contains("PONG"), "{ready} {pong}");
    release.send(()).unwrap();
    writer.join().unwrap();
    server.stop().unwrap();
}
