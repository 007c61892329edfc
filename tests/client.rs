//! The native sync client against a sync server on loopback — `triplite serve`, and the real
//! Triplit server (`@triplit/server` from npm): every scenario runs against both, which shows
//! the client's wire compatibility from the client side. Convergence, offline work, the
//! durable outbox across a SIGKILL, rejected writes, the token lifecycle and subscriptions.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::engine::{SECRET, user_token};
use common::triplit::RealTriplit;
use common::wire::ServeProcess;
use serde_json::{Value as Json, json};
use std::path::Path;
use triplite::client::{Client, ClientEvent, ClientOptions, ClientResult, ConnectionStatus, FetchPolicy};
use triplite::{Query, Schema};

const WAIT: Duration = Duration::from_secs(20);
const LATER: i64 = 4_000_000_000;

/// The sync tests' schema, with a record attribute on todos (for record edits).
fn schema() -> Json {
    let mut schema = common::engine::schema();
    schema["collections"]["todos"]["schema"]["properties"]["details"] = json!({
        "type": "record", "config": {"optional": true}, "properties": {
            "priority": {"type": "string", "config": {}},
            "note": {"type": "string", "config": {"optional": true}}}});
    schema
}

/// A server the scenarios run against.
trait Peer {
    fn url(&self) -> String;
    /// How many `CHANGES` frames the server received so far, where it can tell.
    fn changes_received(&self) -> Option<usize>;
}

type Start = fn(&Path) -> Box<dyn Peer>;

impl Peer for ServeProcess {
    fn url(&self) -> String {
        ServeProcess::url(self)
    }

    fn changes_received(&self) -> Option<usize> {
        let log = self.log_text();
        let entries = log.lines().filter_map(|line| serde_json::from_str::<Json>(line).ok());
        let changes = entries.filter(|entry| {
            entry["message"] == "received" && entry["frame"].as_str().is_some_and(|f| f.starts_with("CHANGES"))
        });
        Some(changes.count())
    }
}

impl Peer for RealTriplit {
    fn url(&self) -> String {
        RealTriplit::url(self)
    }

    fn changes_received(&self) -> Option<usize> {
        None
    }
}

/// `triplite serve` with debug logs, which name every frame it receives.
fn triplite(dir: &Path) -> Box<dyn Peer> {
    let schema_file = dir.join("schema.json");
    std::fs::write(&schema_file, schema().to_string()).unwrap();
    Box::new(ServeProcess::start(
        &["--schema", schema_file.to_str().unwrap()],
        &[("LOCAL_DATABASE_URL", &dir.join("server.db")), ("LOG_LEVEL", Path::new("debug"))],
        SECRET,
    ))
}

fn triplit(dir: &Path) -> Box<dyn Peer> {
    Box::new(RealTriplit::start(&schema(), SECRET, dir))
}

/// Each scenario as a test against each server.
macro_rules! against_both {
    ($($scenario:ident),* $(,)?) => {
        mod against_triplite {
            $(#[test]
            fn $scenario() {
                let dir = tempfile::tempdir().unwrap();
                super::$scenario(super::triplite, dir.path());
            })*
        }
        mod against_triplit {
            $(#[test]
            fn $scenario() {
                let dir = tempfile::tempdir().unwrap();
                super::$scenario(super::triplit, dir.path());
            })*
        }
    };
}

against_both!(
    two_clients_converge_on_inserts_updates_deletes_and_concurrent_edits,
    a_client_offline_for_a_while_catches_up_including_deletes,
    a_write_the_rules_deny_fails_at_once_without_a_round_trip,
    a_transaction_the_server_rejects_is_reported_rolled_back_and_does_not_jam_the_outbox,
    the_clerk_guide_flow_never_shows_one_user_the_previous_users_rows,
    start_session_asks_for_a_new_token_before_exp_and_keeps_the_socket,
    an_expired_token_is_one_session_error_and_no_reconnect_storm,
    subscriptions_start_local_then_are_fulfilled_and_follow_other_clients,
    the_outbox_survives_a_sigkill_and_is_delivered_exactly_once,
);

fn options(url: &str, token: &str) -> ClientOptions {
    ClientOptions {
        server_url: Some(url.to_owned()),
        token: Some(token.to_owned()),
        schema: Some(Schema::from_json(&schema()).unwrap()),
        ..ClientOptions::default()
    }
}

fn client(server: &dyn Peer, sub: &str) -> Client {
    let client = Client::open(options(&server.url(), &user_token(sub, LATER))).unwrap();
    assert!(client.wait_until_ready(WAIT), "{sub} connects");
    client
}

/// Polls `check` until it holds (bounded by [`WAIT`]).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn local(client: &Client, id: &str) -> Option<Json> {
    client.fetch_by_id("todos", id, FetchPolicy::LocalOnly).unwrap()
}

fn todos(client: &Client) -> Vec<Json> {
    client.fetch(&Query::new("todos").order("id", triplite::Direction::Asc), FetchPolicy::LocalOnly).unwrap()
}

/// Events a client reported, in order.
fn record_events(client: &Client) -> Arc<Mutex<Vec<ClientEvent>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    client.on_event(move |event| sink.lock().unwrap().push(event.clone()));
    events
}

/// Subscribes to everything in `todos`, keeping every result.
fn watch(client: &Client) -> (triplite::client::ClientSubscription, Arc<Mutex<Vec<ClientResult>>>) {
    let results = Arc::new(Mutex::new(Vec::new()));
    let sink = results.clone();
    let subscription = client.subscribe(&Query::new("todos"), move |r| sink.lock().unwrap().push(r)).unwrap();
    (subscription, results)
}

fn todo(id: &str, owner: &str, text: &str) -> Json {
    json!({"id": id, "owner": owner, "text": text})
}

fn two_clients_converge_on_inserts_updates_deletes_and_concurrent_edits(start: Start, dir: &Path) {
    let server = start(dir);
    let server = &*server;
    // Both are the same user on two devices: the rules let them share the rows.
    let (a, b) = (client(server, "alice"), client(server, "alice"));
    let (_sa, _) = watch(&a);
    let (_sb, seen_by_b) = watch(&b);

    a.insert("todos", todo("t1", "alice", "milk")).unwrap();
    eventually("b sees the insert", || local(&b, "t1").is_some_and(|t| t["text"] == "milk"));
    b.update("todos", "t1", json!({"text": "oat milk", "tags": ["shop"]})).unwrap();
    eventually("a sees b's update", || local(&a, "t1").is_some_and(|t| t["text"] == "oat milk"));
    assert_eq!(local(&a, "t1").unwrap()["tags"], json!(["shop"]));

    // Record edits from both sides merge per key.
    a.update("todos", "t1", json!({"details": {"priority": "high"}})).unwrap();
    eventually("b sees the record", || local(&b, "t1").is_some_and(|t| t["details"]["priority"] == "high"));
    a.update("todos", "t1", json!({"details": {"note": "two litres"}})).unwrap();
    b.update("todos", "t1", json!({"details": {"priority": "low"}})).unwrap();
    assert!(a.wait_for_outbox(WAIT) && b.wait_for_outbox(WAIT));
    eventually("the record edits merge on both", || {
        [&a, &b]
            .iter()
            .all(|c| local(c, "t1").is_some_and(|t| t["details"] == json!({"priority": "low", "note": "two litres"})))
    });

    // Set edits from both sides merge per element.
    a.transact(|tx| tx.update("todos", "t1", json!({"tags": ["shop", "home"]}))).unwrap();
    b.transact(|tx| tx.update("todos", "t1", json!({"tags": ["shop", "work"]}))).unwrap();
    // Concurrent edits of one attribute: both clients end with the same value.
    a.update("todos", "t1", json!({"text": "from a"})).unwrap();
    b.update("todos", "t1", json!({"text": "from b"})).unwrap();
    a.insert("todos", todo("t2", "alice", "bread")).unwrap();
    assert!(a.wait_for_outbox(WAIT) && b.wait_for_outbox(WAIT));
    eventually("both converge", || {
        let (ta, tb) = (todos(&a), todos(&b));
        ta.len() == 2 && ta == tb
    });
    let final_text = local(&a, "t1").unwrap()["text"].clone();
    assert!(final_text == "from a" || final_text == "from b", "{final_text}");

    b.delete("todos", "t2").unwrap();
    eventually("a sees the delete", || local(&a, "t2").is_none());
    eventually("b's subscription saw every step", || {
        seen_by_b.lock().unwrap().last().is_some_and(|r| r.fulfilled && r.results.len() == 1)
    });
}

fn a_client_offline_for_a_while_catches_up_including_deletes(start: Start, dir: &Path) {
    let server = start(dir);
    let server = &*server;
    let (a, b) = (client(server, "alice"), client(server, "alice"));
    let (_sa, _) = watch(&a);
    let (_sb, _) = watch(&b);
    for id in ["t1", "t2", "t3"] {
        a.insert("todos", todo(id, "alice", id)).unwrap();
    }
    eventually("b holds three", || todos(&b).len() == 3);

    b.disconnect();
    assert_eq!(b.status().connection, ConnectionStatus::Closed);
    b.insert("todos", todo("offline", "alice", "written offline")).unwrap();
    b.update("todos", "t1", json!({"text": "edited offline"})).unwrap();
    assert_eq!(b.status().pending_transactions, 2);
    a.delete("todos", "t2").unwrap();
    a.update("todos", "t3", json!({"text": "edited by a"})).unwrap();
    a.insert("todos", todo("t4", "alice", "new on a")).unwrap();
    assert!(a.wait_for_outbox(WAIT));
    std::thread::sleep(Duration::from_millis(100));
    assert!(local(&b, "t2").is_some(), "b is offline: it has not heard of the delete");

    b.connect().unwrap();
    assert!(b.wait_for_outbox(WAIT), "b's queued writes are acknowledged");
    eventually("both converge", || {
        let (ta, tb) = (todos(&a), todos(&b));
        ta.len() == 4 && ta == tb
    });
    assert!(local(&b, "t2").is_none(), "the delete made while b was offline reached it");
    assert_eq!(local(&a, "t1").unwrap()["text"], "edited offline");
    assert_eq!(local(&b, "t3").unwrap()["text"], "edited by a");
}

fn a_write_the_rules_deny_fails_at_once_without_a_round_trip(start: Start, dir: &Path) {
    let server = start(dir);
    let server = &*server;
    let a = client(server, "alice");
    let error = a.insert("todos", todo("x", "bob", "not mine")).unwrap_err();
    assert_eq!(error.name(), "WritePermissionError", "{error}");
    assert_eq!(a.status().pending_transactions, 0);
    assert_eq!(local(&a, "x"), None);
}

fn a_transaction_the_server_rejects_is_reported_rolled_back_and_does_not_jam_the_outbox(start: Start, dir: &Path) {
    let server = start(dir);
    let server = &*server;
    // A client whose local schema has no rules: only the server refuses.
    let mut without_rules = schema();
    for collection in without_rules["collections"].as_object_mut().unwrap().values_mut() {
        collection.as_object_mut().unwrap().remove("permissions");
    }
    without_rules.as_object_mut().unwrap().remove("roles");
    let options = ClientOptions {
        schema: Some(Schema::from_json(&without_rules).unwrap()),
        ..options(&server.url(), &user_token("alice", LATER))
    };
    let a = Client::open(options).unwrap();
    let events = record_events(&a);
    a.disconnect();
    let denied = a.insert("todos", todo("x", "bob", "not mine")).unwrap().tx_id.unwrap();
    let allowed = a.insert("todos", todo("y", "alice", "mine")).unwrap().tx_id.unwrap();
    assert!(local(&a, "x").is_some(), "optimistic until the server answers");
    a.connect().unwrap();
    assert!(a.wait_for_outbox(WAIT));
    eventually("both answers are reported", || {
        events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, ClientEvent::WriteAcked { .. } | ClientEvent::WriteRejected { .. }))
            .count()
            == 2
    });
    let events = events.lock().unwrap().clone();
    assert!(
        events.iter().any(|e| matches!(e, ClientEvent::WriteRejected { tx_id, error } if *tx_id == denied && error.name == "WritePermissionError")),
        "{events:?}"
    );
    assert!(events.contains(&ClientEvent::WriteAcked { tx_id: allowed }), "{events:?}");
    assert_eq!(local(&a, "x"), None, "the rejected insert is rolled back");
    let check = client(server, "alice");
    let on_server = check.fetch(&Query::new("todos"), FetchPolicy::RemoteOnly).unwrap();
    assert_eq!(on_server.len(), 1);
    assert_eq!(on_server[0]["id"], "y");
}

fn the_clerk_guide_flow_never_shows_one_user_the_previous_users_rows(start: Start, dir: &Path) {
    let server = start(dir);
    let server = &*server;
    let bob = client(server, "bob");
    bob.insert("todos", todo("b1", "bob", "bob's")).unwrap();
    assert!(bob.wait_for_outbox(WAIT));

    let app = client(server, "alice");
    let (_live, results) = watch(&app);
    app.insert("todos", todo("a1", "alice", "alice's")).unwrap();
    assert!(app.wait_for_outbox(WAIT));
    eventually("alice sees her row", || todos(&app).len() == 1);

    // The guide: on a new token, disconnect, update the token, reset if none, else connect.
    app.disconnect();
    app.update_token(Some(&user_token("bob", LATER))).unwrap();
    assert!(todos(&app).is_empty(), "bob never sees alice's rows, not even from the cache");
    app.connect().unwrap();
    assert!(app.wait_until_ready(WAIT));
    eventually("bob's rows arrive", || todos(&app).iter().any(|t| t["id"] == "b1"));
    assert!(todos(&app).iter().all(|t| t["owner"] == "bob"));
    let results = results.lock().unwrap().clone();
    let owners = |r: &ClientResult, owner: &str| r.results.iter().any(|t| t["owner"] == owner);
    let first_bob = results.iter().position(|r| owners(r, "bob")).expect("bob's rows were delivered");
    assert!(results[first_bob..].iter().all(|r| !owners(r, "alice")), "alice's rows never show with bob's");

    app.disconnect();
    app.update_token(None).unwrap();
    app.reset().unwrap();
    assert!(todos(&app).is_empty(), "signed out: the cache is empty");
    assert_eq!(app.status().pending_transactions, 0);
    assert!(app.connect().is_err(), "no token, no connection");
}

fn start_session_asks_for_a_new_token_before_exp_and_keeps_the_socket(start: Start, dir: &Path) {
    let server = start(dir);
    let server = &*server;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let app = Client::open(ClientOptions { token: None, ..options(&server.url(), "") }).unwrap();
    let events = record_events(&app);
    let record = asked.clone();
    let refresh = Box::new(move || {
        record.lock().unwrap().push(Instant::now());
        Some(user_token("alice", LATER))
    });
    let started = Instant::now();
    app.start_session(&user_token("alice", now + 3), true, Some(refresh)).unwrap();
    assert!(app.wait_until_ready(WAIT));
    let client_id = app.status().client_id.unwrap();
    eventually("the refresh handler is asked", || !asked.lock().unwrap().is_empty());
    let at = asked.lock().unwrap()[0] - started;
    assert!(at < Duration::from_secs(3), "asked {at:?} after the start, before exp");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(app.status().client_id.as_deref(), Some(client_id.as_str()), "the same socket");
    assert!(!events.lock().unwrap().iter().any(|e| matches!(e, ClientEvent::SessionError { .. })));
    app.insert("todos", todo("a1", "alice", "after the first token expired")).unwrap();
    assert!(app.wait_for_outbox(WAIT), "the socket still takes writes");
}

fn an_expired_token_is_one_session_error_and_no_reconnect_storm(start: Start, dir: &Path) {
    let server = start(dir);
    let server = &*server;
    let app = Client::open(ClientOptions { token: None, ..options(&server.url(), "") }).unwrap();
    let events = record_events(&app);
    app.start_session(&user_token("alice", 1_000), true, None).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let events = events.lock().unwrap().clone();
    let errors: Vec<_> = events.iter().filter(|e| matches!(e, ClientEvent::SessionError { .. })).collect();
    assert_eq!(errors.len(), 1, "{events:?}");
    let attempts = events.iter().filter(|e| **e == ClientEvent::Connection(ConnectionStatus::Connecting)).count();
    assert_eq!(attempts, 1, "no reconnect after a close that says not to: {events:?}");
    assert_eq!(app.status().connection, ConnectionStatus::Closed);
}

fn subscriptions_start_local_then_are_fulfilled_and_follow_other_clients(start: Start, dir: &Path) {
    let server = start(dir);
    let server = &*server;
    let writer = client(server, "alice");
    writer.insert("todos", todo("t1", "alice", "first")).unwrap();
    assert!(writer.wait_for_outbox(WAIT));

    let reader = client(server, "alice");
    let (_live, results) = watch(&reader);
    let (_twice, again) = watch(&reader);
    eventually("the server answers", || results.lock().unwrap().iter().any(|r| r.fulfilled));
    {
        let results = results.lock().unwrap();
        assert!(!results[0].fulfilled, "the first result is the local one");
        assert_eq!(results.iter().find(|r| r.fulfilled).unwrap().results.len(), 1);
    }
    writer.insert("todos", todo("t2", "alice", "second")).unwrap();
    eventually("a live update from another client", || results.lock().unwrap().last().unwrap().results.len() == 2);
    eventually("the second subscription of the same query too", || {
        again.lock().unwrap().last().is_some_and(|r| r.fulfilled && r.results.len() == 2)
    });
    // A fresh client's first local-first fetch waits for the server once.
    let fresh = client(server, "alice");
    assert_eq!(fresh.fetch(&Query::new("todos"), FetchPolicy::LocalFirst).unwrap().len(), 2);
    assert_eq!(fresh.fetch(&Query::new("todos"), FetchPolicy::RemoteOnly).unwrap().len(), 2);
}

/// The child process of the SIGKILL test: writes three-entity transactions into a client whose
/// server is down, printing each committed one, until it is killed; or, with a live server,
/// waits until its outbox is delivered.
#[test]
fn outbox_child() {
    let Ok(mode) = std::env::var("TRIPLITE_OUTBOX_CHILD") else { return };
    let path = std::env::var("TRIPLITE_OUTBOX_PATH").unwrap();
    let url = std::env::var("TRIPLITE_OUTBOX_URL").unwrap();
    let options = ClientOptions { path: Some(path.into()), ..options(&url, &user_token("alice", LATER)) };
    let client = Client::open(options).unwrap();
    if mode == "write" {
        for n in 0.. {
            client
                .transact(|tx| {
                    for part in 0..3 {
                        tx.insert("todos", todo(&format!("w{n}-{part}"), "alice", "offline"))?;
                    }
                    Ok(())
                })
                .unwrap();
            println!("committed {n}");
        }
    } else {
        assert!(client.wait_for_outbox(WAIT), "the outbox is delivered");
        println!("delivered {}", client.status().pending_transactions);
    }
}

fn the_outbox_survives_a_sigkill_and_is_delivered_exactly_once(start: Start, dir: &Path) {
    use std::io::BufRead;
    let path = dir.join("phone.db");
    let child = |mode: &str, url: &str| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "outbox_child", "--nocapture", "--test-threads=1"])
            .env("TRIPLITE_OUTBOX_CHILD", mode)
            .env("TRIPLITE_OUTBOX_PATH", &path)
            .env("TRIPLITE_OUTBOX_URL", url)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // No server yet: a port nothing listens on.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_url = format!("http://{}", down.local_addr().unwrap());
    drop(down);
    let mut writer = child("write", &down_url);
    let mut committed = 0usize;
    for line in std::io::BufReader::new(writer.stdout.take().unwrap()).lines().map_while(Result::ok) {
        if line.starts_with("committed ") {
            committed += 1;
            if committed == 50 {
                break;
            }
        }
    }
    // SIGKILL, mid-write: the writer keeps committing until it dies.
    writer.kill().unwrap();
    writer.wait().unwrap();

    let server = start(dir);
    let server = &*server;
    let delivered = child("deliver", &server.url()).wait_with_output().unwrap();
    assert!(delivered.status.success(), "{}", String::from_utf8_lossy(&delivered.stdout));

    let check = client(server, "alice");
    let rows = check.fetch(&Query::new("todos"), FetchPolicy::RemoteOnly).unwrap();
    let mut transactions = std::collections::BTreeMap::<String, usize>::new();
    for row in &rows {
        let id = row["id"].as_str().unwrap();
        *transactions.entry(id.split('-').next().unwrap().to_owned()).or_default() += 1;
    }
    assert!(transactions.len() >= committed, "{} of {committed} committed transactions arrived", transactions.len());
    assert!(transactions.values().all(|parts| *parts == 3), "every transaction arrived whole: {transactions:?}");
    for n in 0..committed {
        assert!(transactions.contains_key(&format!("w{n}")), "committed transaction w{n} arrived");
    }
    // Exactly once: one CHANGES frame reached the server per transaction (where it can tell).
    if let Some(received) = server.changes_received() {
        assert_eq!(received, transactions.len(), "each transaction was sent once");
    }
}

#[test]
fn the_native_client_and_the_published_client_see_each_others_writes_on_one_triplite_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = triplite(dir.path());
    let compat = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    if !compat.join("node_modules/@triplit/client").exists() {
        let npm =
            std::process::Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&compat).status();
        assert!(npm.unwrap().success(), "npm ci in tests/compat");
    }
    let schema_file = dir.path().join("peer-schema.json");
    std::fs::write(&schema_file, schema().to_string()).unwrap();
    let published = std::process::Command::new("node")
        .arg("peer.mjs")
        .current_dir(&compat)
        .env("SERVER", server.url())
        .env("TOKEN", user_token("alice", LATER))
        .env("SCHEMA_FILE", &schema_file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    let native = client(&*server, "alice");
    let (_live, _) = watch(&native);
    native.insert("todos", todo("from-native", "alice", "hello from rust")).unwrap();
    eventually("the published client's insert arrives", || local(&native, "from-js").is_some());
    assert_eq!(local(&native, "from-js").unwrap()["text"], "hello from js");
    eventually("the published client's edit arrives", || {
        local(&native, "from-native").is_some_and(|t| t["text"] == "edited by js")
    });
    native.delete("todos", "from-js").unwrap();
    let output = published.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && stdout.contains("done"), "the published client: {stdout}{stderr}");
}
