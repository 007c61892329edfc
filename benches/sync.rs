//! Sync over loopback, triplite against the real Triplit server in the same run (started from
//! benches/triplit-harness, copied to target/ and `npm ci`-ed on first use), both in
//! memory, both driven by the same raw-protocol Rust client:
//! - client-to-client latency: client A sends `CHANGES` (one todo), client B — the same user,
//!   subscribed to `completed = false order created_at desc limit 20` — receives it in
//!   `ENTITY_DATA`; median and p99 of 200 writes, with 2 and with 1,000 connected clients (the
//!   others are other users, each subscribed to the same query);
//! - server RSS (VmRSS) holding 100k entities loaded through `/bulk-insert`: triplite on SQLite
//!   and in memory, Triplit in memory (its SQLite figure is in triplit-measured.md).
//!
//! Run: `cargo bench --bench sync`. Set `SYNC_BENCH_SKIP_TRIPLIT=1` to measure triplite only.

#[path = "../tests/common/triplit.rs"]
#[allow(dead_code)]
mod triplit;
#[path = "../tests/common/wire.rs"]
#[allow(dead_code)]
mod wire;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

const SECRET: &str = "sync-bench-secret-0123456789abcdef";
const WRITES: usize = 200;
const QUERY: &str =
    r#"{"collectionName":"todos","where":[["completed","=",false]],"order":[["created_at","DESC"]],"limit":20}"#;

fn token(sub: &str) -> String {
    let claims = json!({"sub": sub, "exp": 4_000_000_000u64});
    triplite::install_token_crypto();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn service_token() -> String {
    triplite::mint_dev_token(SECRET, triplite::DevTokenKind::Secret, "local-project-id").unwrap()
}

/// A raw-protocol client: frames as JSON, no Triplit client logic.
struct RawClient {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
}

impl RawClient {
    fn connect(port: u16, sub: &str) -> RawClient {
        let url = format!("ws://127.0.0.1:{port}/?sync-schema=false&token={}", token(sub));
        let (socket, _) = tungstenite::connect(url).expect("connecting");
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            stream.set_nodelay(true).unwrap();
        }
        let mut client = RawClient { socket };
        client.until(|m| m["type"] == "READY");
        client
    }

    fn send(&mut self, message_type: &str, payload: Json) {
        let frame = json!({"type": message_type, "payload": payload}).to_string();
        self.socket.send(Message::text(frame)).unwrap();
    }

    /// Reads messages until one satisfies `wanted`.
    fn until(&mut self, wanted: impl Fn(&Json) -> bool) -> Json {
        loop {
            match self.socket.read().expect("reading a frame") {
                Message::Text(text) => {
                    let message: Json = serde_json::from_str(text.as_str()).unwrap();
                    if wanted(&message) {
                        return message;
                    }
                }
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    }

    fn subscribe(&mut self, id: &str) {
        let params: Json = serde_json::from_str(QUERY).unwrap();
        self.send("CONNECT_QUERY", json!({"id": id, "params": params}));
        self.until(|m| m["type"] == "ENTITY_DATA");
    }
}

fn insert_frame(id: &str, owner: &str) -> Json {
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
    let entity = json!({"id": id, "text": "latency probe", "completed": false, "created_at": now, "owner": owner});
    json!({"changes": {"json": {"todos": {"sets": [[id, entity]], "deletes": []}}, "meta": {"values": {"todos.sets": ["map"], "todos.deletes": ["set"]}, "v": 1}}})
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Client-to-client latency with `clients` connections in all.
fn latency(port: u16, clients: usize, run: &str) -> (Duration, Duration) {
    let mut others: Vec<RawClient> = Vec::with_capacity(clients.saturating_sub(2));
    for i in 0..clients.saturating_sub(2) {
        let mut client = RawClient::connect(port, &format!("user-{i}"));
        client.subscribe("q");
        others.push(client);
    }
    let mut a = RawClient::connect(port, "alice");
    let mut b = RawClient::connect(port, "alice");
    b.subscribe("q");
    let mut samples = Vec::with_capacity(WRITES);
    for i in 0..WRITES + 20 {
        let id = format!("{run}-{i}");
        let start = Instant::now();
        a.send("CHANGES", insert_frame(&id, "alice"));
        b.until(|m| m["type"] == "ENTITY_DATA" && m.to_string().contains(&id));
        if i >= 20 {
            samples.push(start.elapsed());
        }
        a.until(|m| m["type"] == "CHANGES_ACK");
    }
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

fn rss_mb(pid: u32) -> f64 {
    println!(
        "  (pid {pid}: anonymous {:.1} MB, file-backed {:.1} MB)",
        wire::status_mb(pid, "RssAnon"),
        wire::status_mb(pid, "RssFile")
    );
    wire::status_mb(pid, "VmRSS")
}

/// Loads 100k todos through `/bulk-insert` (10k per request) and reports the server's RSS.
fn rss_with_100k(port: u16, pid: u32) -> f64 {
    let service = service_token();
    for batch in 0..10 {
        let todos: Vec<Json> = (0..10_000)
            .map(|i| {
                let n = batch * 10_000 + i;
                json!({"id": format!("bulk-{n:06}"), "text": format!("todo {n}"), "completed": n % 3 == 0,
                       "created_at": "2026-01-01T00:00:00.000Z", "owner": format!("user-{}", n % 10)})
            })
            .collect();
        let body = json!({"todos": todos}).to_string();
        let response = ureq::post(&format!("http://127.0.0.1:{port}/bulk-insert?noReturn=true"))
            .header("Authorization", &format!("Bearer {service}"))
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .expect("bulk insert");
        assert_eq!(response.status(), 200);
    }
    std::thread::sleep(Duration::from_millis(500));
    rss_mb(pid)
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Spawns a server listening on `port` and waits until it answers.
    fn start(mut command: Command, port: u16) -> Server {
        let child = command.spawn().expect("starting a server");
        let server = Server { child, port };
        wait_healthy(port);
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ureq::get(&format!("http://127.0.0.1:{port}/healthcheck")).call().is_err() {
        assert!(Instant::now() < deadline, "server on {port} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn triplite(storage: &str, dir: &Path) -> Server {
    let port = free_port();
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/todo-schema.json");
    let mut command = Command::new(env!("CARGO_BIN_EXE_triplite"));
    command
        .args(["serve", "--storage", storage, "--durability", "normal", "--schema"])
        .arg(&schema)
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("JWT_SECRET", SECRET)
        .env("LOCAL_DATABASE_URL", dir.join(format!("{port}.db")))
        .stderr(Stdio::null());
    Server::start(command, port)
}

/// The real Triplit server from the reference harness.
fn real_triplit() -> Server {
    let harness = triplit::harness();
    let port = free_port();
    let mut command = Command::new("node");
    command
        .arg("server.mjs")
        .env("PORT", port.to_string())
        .env("JWT_SECRET", SECRET)
        .env("STORAGE", "memory")
        .current_dir(&harness)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Server::start(command, port)
}

fn report(name: &str, port: u16) {
    for clients in [2, 1000] {
        let (median, p99) = latency(port, clients, &format!("{name}-{clients}"));
        println!("{name:<24} {clients:>5} clients: client-to-client median {median:>10.3?}  p99 {p99:>10.3?}");
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` and listing: nothing to run.
    }
    let _ = rlimit::increase_nofile_limit(8192);
    let dir = tempfile::tempdir().unwrap();
    if std::env::var_os("SYNC_BENCH_RSS_ONLY").is_some() {
        let server = triplite("sqlite", dir.path());
        let rss = rss_with_100k(server.port, server.child.id());
        println!("triplite (sqlite)        RSS with 100k entities: {rss:.1} MB");
        return;
    }
    let ours = triplite("memory", dir.path());
    report("triplite (memory)", ours.port);
    drop(ours);
    if std::env::var_os("SYNC_BENCH_SKIP_TRIPLIT").is_none() {
        let theirs = real_triplit();
        report("Triplit 1.x (memory)", theirs.port);
        let rss = rss_with_100k(theirs.port, theirs.child.id());
        println!("Triplit 1.x (memory)     RSS with 100k entities: {rss:.1} MB");
    }
    for storage in ["sqlite", "memory"] {
        let server = triplite(storage, dir.path());
        let rss = rss_with_100k(server.port, server.child.id());
        println!("triplite ({storage:<6})        RSS with 100k entities: {rss:.1} MB");
    }
}
