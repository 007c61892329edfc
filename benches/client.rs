//! The native sync client against `triplite serve`, and the published `@triplit/client`
//! against the real Triplit server (benches/triplit-harness), in one run on this machine, both
//! servers in memory with the same todo schema and owner rules (a user token for `alice`):
//! - 10,000 inserts until the server acknowledged them: in one transaction, and one
//!   transaction each (the native client pipelines them: it does not wait for each ack);
//! - client-to-client latency: client A inserts, client B — the same user, subscribed to
//!   `completed = false order created_at desc limit 20` — has it in its callback; 200
//!   sequential writes per repetition, p50 and p99;
//! - initial sync: an empty client subscribes to `todos` on a server holding 100,000 of the
//!   user's todos; rows per second until it holds them all.
//!
//! Each figure is the median of `CLIENT_BENCH_REPS` (default 3) repetitions, each on a fresh
//! server. Run: `cargo bench --bench client`; `CLIENT_BENCH_SKIP_TRIPLIT=1` measures triplite
//! only.

#[path = "../tests/common/triplit.rs"]
#[allow(dead_code)]
mod triplit;
#[path = "../tests/common/wire.rs"]
#[allow(dead_code)]
mod wire;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use triplite::client::{Client, ClientOptions};
use triplite::{DevTokenKind, Direction, Query, Schema, mint_dev_token};

const SECRET: &str = "client-bench-secret-0123456789abcdef";
const INSERTS: usize = 10_000;
const LATENCY_WRITES: usize = 200;
const INITIAL_ROWS: usize = 100_000;
const WAIT: Duration = Duration::from_secs(300);

fn schema_json() -> Json {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/todo-schema.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn user_token() -> String {
    let claims = json!({"sub": "alice", "exp": 4_000_000_000u64});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    triplite::install_token_crypto();
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// A server under test: its URL, kept alive while the value lives.
struct Peer {
    url: String,
    _process: Box<dyn std::any::Any>,
}

fn triplite_server(dir: &Path) -> Peer {
    let schema = dir.join("schema.json");
    std::fs::write(&schema, schema_json().to_string()).unwrap();
    let server = wire::ServeProcess::start(
        &["--storage", "memory", "--durability", "normal", "--schema", schema.to_str().unwrap()],
        &[],
        SECRET,
    );
    Peer { url: server.url(), _process: Box::new(server) }
}

fn triplit_server(dir: &Path) -> Peer {
    let server = triplit::RealTriplit::start(&schema_json(), SECRET, dir);
    Peer { url: server.url(), _process: Box::new(server) }
}

fn native_client(url: &str) -> Client {
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

fn todo(i: usize) -> Json {
    json!({"text": format!("todo {i}"), "completed": i % 3 == 0, "owner": "alice"})
}

fn native_inserts(url: &str, one_transaction: bool) -> Duration {
    let client = native_client(url);
    let start = Instant::now();
    if one_transaction {
        client
            .transact(|tx| {
                for i in 0..INSERTS {
                    tx.insert("todos", todo(i))?;
                }
                Ok(())
            })
            .unwrap();
    } else {
        for i in 0..INSERTS {
            client.insert("todos", todo(i)).unwrap();
        }
    }
    assert!(client.wait_for_outbox(WAIT), "the server acknowledges every insert");
    start.elapsed()
}

fn native_latency(url: &str) -> Vec<Duration> {
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
    let mut samples = Vec::with_capacity(LATENCY_WRITES);
    for i in 0..LATENCY_WRITES {
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
fn load(url: &str, rows: usize) {
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

fn native_initial_sync(url: &str) -> Duration {
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
    let count = changed.wait_timeout_while(count.lock().unwrap(), WAIT, |n| *n < INITIAL_ROWS).unwrap();
    assert_eq!(*count.0, INITIAL_ROWS);
    start.elapsed()
}

/// Runs the published client's side (benches/triplit-harness/client-bench.mjs).
fn published(mode: &str, url: &str, n: usize, dir: &Path) -> Json {
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

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn spread(values: &[f64]) -> String {
    let (min, max) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    format!("{min:.1}–{max:.1}")
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// One workload on both systems, each repetition on a fresh server.
struct Workload {
    name: &'static str,
    native: fn(&str) -> f64,
    published: Option<fn(&str, &Path) -> f64>,
    setup: fn(&str),
    unit: &'static str,
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` and listing: nothing to run.
    }
    let reps: usize = std::env::var("CLIENT_BENCH_REPS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let with_triplit = std::env::var_os("CLIENT_BENCH_SKIP_TRIPLIT").is_none();
    let dir = tempfile::tempdir().unwrap();
    let workloads = [
        Workload {
            name: "10,000 inserts, one transaction, until acknowledged",
            native: |url| ms(native_inserts(url, true)),
            published: Some(|url, dir| published("insert-tx", url, INSERTS, dir)["ms"].as_f64().unwrap()),
            setup: |_| {},
            unit: "ms",
        },
        Workload {
            name: "10,000 inserts, one transaction each, until acknowledged",
            native: |url| ms(native_inserts(url, false)),
            published: Some(|url, dir| published("insert-each", url, INSERTS, dir)["ms"].as_f64().unwrap()),
            setup: |_| {},
            unit: "ms",
        },
        Workload {
            name: "initial sync of 100,000 entities into an empty client",
            native: |url| INITIAL_ROWS as f64 / native_initial_sync(url).as_secs_f64(),
            published: Some(|url, dir| {
                INITIAL_ROWS as f64 / (published("initial", url, INITIAL_ROWS, dir)["ms"].as_f64().unwrap() / 1000.0)
            }),
            setup: |url| load(url, INITIAL_ROWS),
            unit: "rows/s",
        },
    ];
    // `CLIENT_BENCH_ONLY=<part of a name>` runs the matching workloads (and the latency if it matches).
    let only = std::env::var("CLIENT_BENCH_ONLY").unwrap_or_default();
    for workload in workloads.iter().filter(|w| w.name.contains(&only)) {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..reps {
            let server = triplite_server(dir.path());
            (workload.setup)(&server.url);
            ours.push((workload.native)(&server.url));
            if let (true, Some(published)) = (with_triplit, workload.published) {
                let server = triplit_server(dir.path());
                (workload.setup)(&server.url);
                theirs.push(published(&server.url, dir.path()));
            }
        }
        let unit = workload.unit;
        print!("{:<58} triplite {:>10.1} {unit} ({})", workload.name, median(ours.clone()), spread(&ours));
        if !theirs.is_empty() {
            print!("   Triplit {:>10.1} {unit} ({})", median(theirs.clone()), spread(&theirs));
        }
        println!();
    }

    if !"client-to-client latency".contains(&only) {
        return;
    }
    // Latency: every sample of every repetition, p50 and p99.
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..reps {
        let server = triplite_server(dir.path());
        ours.extend(native_latency(&server.url).into_iter().map(ms));
        if with_triplit {
            let server = triplit_server(dir.path());
            let result = published("latency", &server.url, LATENCY_WRITES, dir.path());
            theirs.extend(result["samples_ms"].as_array().unwrap().iter().filter_map(Json::as_f64));
        }
    }
    ours.sort_by(f64::total_cmp);
    theirs.sort_by(f64::total_cmp);
    print!(
        "{:<58} triplite p50 {:.2} ms p99 {:.2} ms",
        "client-to-client latency (write → other client's callback)",
        quantile(&ours, 0.5),
        quantile(&ours, 0.99)
    );
    if !theirs.is_empty() {
        print!("   Triplit p50 {:.2} ms p99 {:.2} ms", quantile(&theirs, 0.5), quantile(&theirs, 0.99));
    }
    println!();
}
