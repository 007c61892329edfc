//! The sync workloads the client bench and benches/compare share: `triplite serve` with the
//! native client, and the real Triplit server with the published `@triplit/client`
//! (benches/triplit-harness/client-bench.mjs), both servers in memory with the todo schema and
//! owner rules of benches/todo-schema.json (a user token for `alice`).
#![allow(dead_code)] // Each bench uses a different part.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use triplite::client::{Client, ClientOptions};
use triplite::{DevTokenKind, Direction, Query, Schema, mint_dev_token};

use crate::{triplit, wire};

pub const SECRET: &str = "client-bench-secret-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(300);

pub fn schema_json() -> Json {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/todo-schema.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub fn user_token() -> String {
    token(json!({"sub": "alice", "exp": 4_000_000_000u64}))
}

/// A token for `alice` unlike any other (its `jti`): servers count connections per token.
pub fn numbered_user_token(n: usize) -> String {
    token(json!({"sub": "alice", "exp": 4_000_000_000u64, "jti": format!("client-{n}")}))
}

fn token(claims: Json) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    triplite::install_token_crypto();
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// A server under test: its URL, kept alive while the value lives.
pub struct Peer {
    pub url: String,
    /// The server process, for its memory figures.
    pub pid: u32,
    _process: Box<dyn std::any::Any>,
}

/// Where a server keeps its data.
#[derive(Clone, Copy, PartialEq)]
pub enum Storage {
    Memory,
    /// A SQLite file in the bench's directory; `triplite serve` at `--durability full` (every
    /// commit synced), Triplit's SQLite storage as it ships (synced at checkpoints only).
    Sqlite,
}

pub fn triplite_server(dir: &Path) -> Peer {
    triplite_server_on(dir, Storage::Memory)
}

pub fn triplite_server_on(dir: &Path, storage: Storage) -> Peer {
    let schema = dir.join("schema.json");
    std::fs::write(&schema, schema_json().to_string()).unwrap();
    let file = fresh_file(dir, "triplite");
    let (args, env): (&[&str], &[(&str, &Path)]) = match storage {
        Storage::Memory => (&["--storage", "memory", "--durability", "normal"], &[]),
        Storage::Sqlite => (&["--storage", "sqlite", "--durability", "full"], &[("LOCAL_DATABASE_URL", &file)]),
    };
    let args: Vec<&str> = args.iter().copied().chain(["--schema", schema.to_str().unwrap()]).collect();
    let server = wire::ServeProcess::start(&args, env, SECRET);
    Peer { url: server.url(), pid: server.pid(), _process: Box::new(server) }
}

pub fn triplit_server(dir: &Path) -> Peer {
    triplit_server_on(dir, Storage::Memory)
}

pub fn triplit_server_on(dir: &Path, storage: Storage) -> Peer {
    let file = (storage == Storage::Sqlite).then(|| fresh_file(dir, "triplit"));
    let server = triplit::RealTriplit::start_on(&schema_json(), SECRET, dir, file.as_deref());
    Peer { url: server.url(), pid: server.pid(), _process: Box::new(server) }
}

/// A database file no earlier server used.
fn fresh_file(dir: &Path, system: &str) -> std::path::PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!("{system}-server-{n}.db"))
}

pub fn native_client(url: &str) -> Client {
    // `CLIENT_BENCH_FILE=1`: the local database in a SQLite file, as on a phone.
    let path = std::env::var_os("CLIENT_BENCH_FILE").map(|_| {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::env::temp_dir().join(format!("triplite-client-bench-{}-{n}.db", std::process::id()))
    });
    let options = ClientOptions {
        path,
        server_url: Some(url.to_owned()),
        token: Some(user_token()),
        schema: Some(Schema::from_json(&schema_json()).unwrap()),
        ..ClientOptions::default()
    };
    let client = Client::open(options).unwrap();
    assert!(client.wait_until_ready(WAIT), "the client connects");
    client
}

pub fn todo(i: usize) -> Json {
    json!({"text": format!("todo {i}"), "completed": i % 3 == 0, "owner": "alice"})
}

/// `count` inserts, in one transaction or one each (pipelined), until the server acknowledged them.
pub fn native_inserts(url: &str, count: usize, one_transaction: bool) -> Duration {
    let client = native_client(url);
    let start = Instant::now();
    if one_transaction {
        client
            .transact(|tx| {
                for i in 0..count {
                    tx.insert("todos", todo(i))?;
                }
                Ok(())
            })
            .unwrap();
    } else {
        for i in 0..count {
            client.insert("todos", todo(i)).unwrap();
        }
    }
    assert!(client.wait_for_outbox(WAIT), "the server acknowledges every insert");
    start.elapsed()
}

/// `writes` sequential writes from one client, each until the other client's subscription has it.
pub fn native_latency(url: &str, writes: usize) -> Vec<Duration> {
    let (a, b) = (native_client(url), native_client(url));
    let latest = Arc::new((Mutex::new(Vec::<String>::new()), Condvar::new()));
    let feed = latest.clone();
    let query = Query::new("todos").filter("completed", "=", false).order("created_at", Direction::Desc).limit(20);
    let _live = b
        .subscribe(&query, move |result| {
            let texts = result.results.iter().filter_map(|t| t["text"].as_str().map(str::to_owned)).collect();
            *feed.0.lock().unwrap() = texts;
            feed.1.notify_all();
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut samples = Vec::with_capacity(writes);
    for i in 0..writes {
        let text = format!("latency {i}");
        let start = Instant::now();
        a.insert("todos", json!({"text": text, "completed": false, "owner": "alice"})).unwrap();
        let (texts, arrived) = &*latest;
        let texts = arrived.wait_timeout_while(texts.lock().unwrap(), WAIT, |texts| !texts.contains(&text)).unwrap();
        assert!(texts.0.contains(&text), "write {i} reached the other client");
        samples.push(start.elapsed());
    }
    samples
}

/// Loads the user's todos through `/bulk-insert` (10k per request) with a service token.
pub fn load(url: &str, rows: usize) {
    let service = mint_dev_token(SECRET, DevTokenKind::Secret, "local-project-id").unwrap();
    for batch in 0..rows.div_ceil(10_000) {
        let todos: Vec<Json> = (batch * 10_000..((batch + 1) * 10_000).min(rows))
            .map(|n| {
                json!({"id": format!("bulk-{n:06}"), "text": format!("todo {n}"), "completed": n % 3 == 0,
                       "created_at": "2026-01-01T00:00:00.000Z", "owner": "alice"})
            })
            .collect();
        let response = ureq::post(&format!("{url}/bulk-insert?noReturn=true"))
            .header("Authorization", &format!("Bearer {service}"))
            .header("Content-Type", "application/json")
            .send(json!({"todos": todos}).to_string().as_bytes())
            .expect("bulk insert");
        assert_eq!(response.status(), 200);
    }
}

/// An empty client subscribes to `todos` on a server holding `rows` of them; until it holds all.
pub fn native_initial_sync(url: &str, rows: usize) -> Duration {
    let start = Instant::now();
    let client = native_client(url);
    let held = Arc::new((Mutex::new(0usize), Condvar::new()));
    let feed = held.clone();
    let _live = client
        .subscribe(&Query::new("todos"), move |result| {
            *feed.0.lock().unwrap() = result.results.len();
            feed.1.notify_all();
        })
        .unwrap();
    let (count, changed) = &*held;
    let count = changed.wait_timeout_while(count.lock().unwrap(), WAIT, |n| *n < rows).unwrap();
    assert_eq!(*count.0, rows);
    start.elapsed()
}

/// Runs the published client's side (benches/triplit-harness/client-bench.mjs).
pub fn published(mode: &str, url: &str, n: usize, dir: &Path) -> Json {
    let harness = triplit::harness();
    let schema = dir.join("schema.json");
    std::fs::write(&schema, schema_json().to_string()).unwrap();
    let output = Command::new("node")
        .arg("client-bench.mjs")
        .arg(mode)
        .current_dir(&harness)
        .env("SERVER", url)
        .env("TOKEN", user_token())
        .env("SCHEMA_FILE", &schema)
        .env("N", n.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or("{}");
    let result: Json = serde_json::from_str(line).unwrap();
    assert!(
        output.status.success() && result.get("error").is_none(),
        "client-bench.mjs {mode}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    result
}
