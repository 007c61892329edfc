//! A load of many WebSocket clients with mixed subscriptions and writes, and the hostile
//! clients of the reliability issue, against a `triplite serve` process — shared by
//! `tests/load.rs` (a short run on the debug build) and `benches/load.rs` (release, longer).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value as Json, json};

use super::wire::{ServeProcess, agent, changes_payload, status_mb, ws_connect, ws_next, ws_send};

pub const SECRET: &str = "load-secret-0123456789abcdef";

/// Messages in rooms: everyone reads everything, and writes as themselves.
pub fn schema() -> Json {
    json!({
        "roles": {"user": {"match": {"sub": "$userId"}}},
        "collections": {"messages": {
            "schema": {"type": "record", "properties": {
                "id": {"type": "string"}, "room": {"type": "string"}, "author": {"type": "string"},
                "sent_us": {"type": "number"}, "text": {"type": "string"}}},
            "indexes": [["room", "sent_us"], ["sent_us"]],
            "permissions": {"user": {
                "read": {"filter": [true]},
                "insert": {"filter": [["author", "=", "$role.userId"]]}
            }}
        }}
    })
}

/// Starts `triplite serve` on a SQLite file in `dir` with the load schema.
pub fn start_server(dir: &std::path::Path, extra: &[&str]) -> ServeProcess {
    let schema_file = dir.join("schema.json");
    std::fs::write(&schema_file, schema().to_string()).unwrap();
    let mut args = vec!["--durability", "normal", "--schema", schema_file.to_str().unwrap()];
    args.extend_from_slice(extra);
    ServeProcess::start(&args, &[("LOCAL_DATABASE_URL", &dir.join("load.db"))], SECRET)
}

pub fn user_token(sub: &str) -> String {
    let claims = json!({"sub": sub, "exp": 4_000_000_000u64});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    triplite::install_token_crypto();
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

/// The shape of a load.
#[derive(Debug, Clone)]
pub struct Workload {
    pub clients: usize,
    pub rooms: usize,
    /// Clients that also write (the first ones), each once per `write_every`.
    pub writers: usize,
    pub write_every: Duration,
    /// Every this many clients, one also follows the latest messages of every room.
    pub latest_every: usize,
    /// How long writes go on.
    pub duration: Duration,
}

/// What a load saw.
#[derive(Debug, Default)]
pub struct Report {
    pub connected: usize,
    pub acked: usize,
    /// Writes a client received through its room query, and how many it should have.
    pub delivered: usize,
    pub expected: usize,
    pub errors: Vec<String>,
    /// Write → delivery to each room member, sorted.
    pub latencies: Vec<Duration>,
    /// (seconds since the start, server RSS in MB).
    pub rss: Vec<(f64, f64)>,
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    acked_rooms: Vec<usize>,
    delivered: usize,
    latencies: Vec<Duration>,
    errors: Vec<String>,
    connected: bool,
}

fn room_query(room: usize) -> Json {
    json!({"collectionName": "messages", "where": [["room", "=", format!("r{room}")]],
           "order": [["sent_us", "DESC"]], "limit": 100})
}

fn latest_query() -> Json {
    json!({"collectionName": "messages", "order": [["sent_us", "DESC"]], "limit": 20})
}

/// Runs `work` against `server`: every client subscribes to its room (every
/// `latest_every`-th also to the latest messages of all rooms), all start together, writers write for the duration,
/// then everyone reads until it has every write to its room that was acknowledged (or a
/// minute has passed: an error). The server's RSS is sampled throughout.
pub fn run(server: &ServeProcess, work: &Workload) -> Report {
    let start = Instant::now();
    let barrier = Arc::new(Barrier::new(work.clients + 1));
    let tally = Arc::new(Tally {
        acked: (0..work.rooms).map(|_| AtomicUsize::new(0)).collect(),
        writers_done: AtomicUsize::new(0),
    });
    let sampling = Arc::new(AtomicBool::new(true));
    let rss = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (sampling, rss, pid) = (sampling.clone(), rss.clone(), server.pid());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                rss.lock().unwrap().push((start.elapsed().as_secs_f64(), status_mb(pid, "VmRSS")));
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let handles: Vec<_> = (0..work.clients)
        .map(|i| {
            let (barrier, tally, work, port) = (barrier.clone(), tally.clone(), work.clone(), server.port);
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || client(i, port, &work, &barrier, &tally))
                .expect("a client thread")
        })
        .collect();
    barrier.wait();
    let seen: Vec<Seen> = handles.into_iter().map(|h| h.join().unwrap_or_default()).collect();
    std::thread::sleep(Duration::from_secs(1));
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let mut report = Report { rss: std::mem::take(&mut *rss.lock().unwrap()), ..Report::default() };
    let members = |room: usize| (0..work.clients).filter(|c| c % work.rooms == room).count();
    for client in seen {
        report.connected += usize::from(client.connected);
        report.acked += client.acked_rooms.len();
        report.expected += client.acked_rooms.iter().map(|&room| members(room)).sum::<usize>();
        report.delivered += client.delivered;
        report.latencies.extend(client.latencies);
        report.errors.extend(client.errors);
    }
    report.latencies.sort();
    report
}

/// What writers tell readers: how many writes to each room were acknowledged, and how many
/// writers have all their answers.
struct Tally {
    acked: Vec<AtomicUsize>,
    writers_done: AtomicUsize,
}

fn client(i: usize, port: u16, work: &Workload, barrier: &Barrier, tally: &Tally) -> Seen {
    let mut seen = Seen::default();
    let room = i % work.rooms;
    let Some(mut socket) = ws_connect(port, &user_token(&format!("user-{i}"))) else {
        seen.errors.push(format!("client {i}: could not connect"));
        barrier.wait();
        return seen;
    };
    let mut queries = vec![("room", room_query(room))];
    if i % work.latest_every == 0 {
        queries.push(("latest", latest_query()));
    }
    let ready = ws_next(&mut socket).is_some_and(|m| m["type"] == "READY");
    for (id, query) in &queries {
        ws_send(&mut socket, "CONNECT_QUERY", json!({"id": id, "params": query}));
    }
    let mut answered = 0;
    while ready && answered < queries.len() {
        match ws_next(&mut socket) {
            Some(m) if m["type"] == "ENTITY_DATA" => {
                answered += m["payload"]["forQueries"].as_array().map_or(0, Vec::len)
            }
            Some(m) if m["type"] == "ERROR" => {
                seen.errors.push(format!("client {i}: {m}"));
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    seen.connected = ready && answered >= queries.len();
    if !seen.connected {
        seen.errors.push(format!("client {i}: not subscribed (ready: {ready}, answered {answered})"));
    }
    barrier.wait();
    if !seen.connected {
        return seen;
    }
    let writes_until = Instant::now() + work.duration;
    let writer = i < work.writers;
    // Writers read in short waits, so they write on time (a read timeout leaves the socket
    // usable); readers wait long, so a thousand idle threads do not spin the machine.
    let wait = if writer { Duration::from_millis(20) } else { Duration::from_millis(500) };
    let _ = socket.get_ref().set_read_timeout(Some(wait));
    // Writers start spread over one interval, not all at once.
    let mut next_write = Instant::now() + work.write_every.mul_f64((i as f64 / work.writers.max(1) as f64).fract());
    let mut sent_rooms = std::collections::VecDeque::new();
    let mut known = HashSet::new();
    let mut written = 0;
    let mut delivered_here = 0;
    let mut done_writing = !writer;
    loop {
        let now = Instant::now();
        if writer && now < writes_until && now >= next_write {
            let id = format!("c{i}-{written}");
            let entity = json!({"id": id, "room": format!("r{room}"), "author": format!("user-{i}"),
                                "sent_us": now_us(), "text": "hello"});
            if !ws_send(&mut socket, "CHANGES", changes_payload("messages", vec![(id, entity)])) {
                seen.errors.push(format!("client {i}: the connection failed while writing"));
                break;
            }
            sent_rooms.push_back(room);
            written += 1;
            next_write += work.write_every;
        }
        if writer && !done_writing && now >= writes_until && sent_rooms.is_empty() {
            done_writing = true;
            tally.writers_done.fetch_add(1, Ordering::SeqCst);
        }
        let all_written = tally.writers_done.load(Ordering::SeqCst) == work.writers.min(work.clients);
        if done_writing && all_written && delivered_here >= tally.acked[room].load(Ordering::SeqCst) {
            break;
        }
        if now > writes_until + Duration::from_secs(60) {
            let owed = tally.acked[room].load(Ordering::SeqCst).saturating_sub(delivered_here);
            seen.errors.push(format!(
                "client {i}: 60 s after writes stopped, still owed {} acks and {owed} deliveries",
                sent_rooms.len()
            ));
            break;
        }
        let message = match socket.read() {
            Ok(tungstenite::Message::Text(text)) => serde_json::from_str::<Json>(text.as_str()).unwrap_or_default(),
            Ok(tungstenite::Message::Close(frame)) => {
                seen.errors.push(format!("client {i}: closed by the server: {frame:?}"));
                break;
            }
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                continue;
            }
            Err(e) => {
                seen.errors.push(format!("client {i}: {e}"));
                break;
            }
        };
        match message["type"].as_str() {
            Some("CHANGES_ACK") => {
                if let Some(room) = sent_rooms.pop_front() {
                    tally.acked[room].fetch_add(1, Ordering::SeqCst);
                    seen.acked_rooms.push(room);
                }
            }
            Some("ENTITY_DATA") => {
                let received = now_us();
                let sets = message["payload"]["changes"]["json"]["messages"]["sets"].as_array().cloned();
                for pair in sets.unwrap_or_default() {
                    let entity = &pair[1];
                    let mine = entity["room"] == format!("r{room}");
                    if mine && known.insert(pair[0].as_str().unwrap_or_default().to_owned()) {
                        seen.delivered += 1;
                        delivered_here += 1;
                        let sent = entity["sent_us"].as_u64().unwrap_or(received);
                        seen.latencies.push(Duration::from_micros(received.saturating_sub(sent)));
                    }
                }
            }
            _ => seen.errors.push(format!("client {i}: unexpected {message}")),
        }
    }
    if writer && !done_writing {
        // A writer that failed has no more answers coming: readers must not wait for it.
        tally.writers_done.fetch_add(1, Ordering::SeqCst);
    }
    seen
}

/// `/healthcheck` latencies, sampled every 10 ms until `stop`.
pub fn probe_health(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Duration>> {
    std::thread::spawn(move || {
        let agent = agent();
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let answered = agent.get(&format!("http://127.0.0.1:{port}/healthcheck")).call();
            samples.push(if answered.is_ok_and(|r| r.status() == 200) { started.elapsed() } else { Duration::MAX });
            std::thread::sleep(Duration::from_millis(10));
        }
        samples.sort();
        samples
    })
}

/// The attacks of the reliability issue, each run by one hostile client until `stop`.
pub const ATTACKS: &[&str] =
    &["chunk totals", "wide filter", "deep includes", "5,000 queries", "never reads", "idle sockets"];

pub fn attack(name: &str, port: u16, stop: &AtomicBool) {
    let token = user_token("mallory");
    let fetch = |query: Json| {
        let _ = agent()
            .post(&format!("http://127.0.0.1:{port}/fetch"))
            .header("Authorization", &format!("Bearer {token}"))
            .send(json!({"query": query}).to_string());
    };
    match name {
        "chunk totals" => {
            let Some(mut socket) = ws_connect(port, &token) else { return };
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let total = if n % 2 == 0 { u64::MAX / 3 } else { 1_000_000 + n };
                let data = "x".repeat(64 * 1024);
                if !ws_send(
                    &mut socket,
                    "CHUNK",
                    json!({"data": data, "total": total, "index": n % 1000, "id": format!("m{n}")}),
                ) {
                    socket = match ws_connect(port, &token) {
                        Some(socket) => socket,
                        None => return,
                    };
                }
                n += 1;
            }
        }
        "wide filter" => {
            let branches: Vec<Json> = (0..10_000).map(|i| json!(["room", "=", format!("r{i}")])).collect();
            let wide = json!({"collectionName": "messages", "where": [{"mod": "or", "filters": branches}]});
            while !stop.load(Ordering::Relaxed) {
                fetch(wide.clone());
            }
        }
        "deep includes" => {
            let mut deep = json!({"collectionName": "messages"});
            let mut deepest_allowed = json!({"collectionName": "messages"});
            for level in 0..6 {
                deep = json!({"collectionName": "messages", "include": {"all": {"subquery": deep, "cardinality": "many"}}});
                if level < 4 {
                    deepest_allowed = json!({"collectionName": "messages",
                        "include": {"all": {"subquery": deepest_allowed, "cardinality": "many"}}});
                }
            }
            while !stop.load(Ordering::Relaxed) {
                fetch(deep.clone());
                fetch(deepest_allowed.clone());
            }
        }
        "5,000 queries" => {
            while !stop.load(Ordering::Relaxed) {
                let Some(mut socket) = ws_connect(port, &token) else { return };
                for q in 0..5_000 {
                    let query = json!({"collectionName": "messages", "where": [["text", "=", format!("q{q}")]]});
                    if stop.load(Ordering::Relaxed)
                        || !ws_send(&mut socket, "CONNECT_QUERY", json!({"id": format!("q{q}"), "params": query}))
                    {
                        break;
                    }
                }
            }
        }
        "never reads" => {
            // Subscribes to everything, then never reads while another client writes.
            let Some(mut stalled) = ws_connect(port, &token) else { return };
            ws_send(&mut stalled, "CONNECT_QUERY", json!({"id": "all", "params": {"collectionName": "messages"}}));
            let Some(mut writer) = ws_connect(port, &token) else { return };
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("flood-{n}");
                let entity = json!({"id": id, "room": "flood", "author": "mallory", "sent_us": now_us(), "text": "y".repeat(4096)});
                if !ws_send(&mut writer, "CHANGES", changes_payload("messages", vec![(id, entity)]))
                    || ws_next(&mut writer).is_none()
                {
                    break;
                }
                n += 1;
            }
        }
        "idle sockets" => {
            // Opens connections and leaves them idle.
            let mut sockets = Vec::new();
            while !stop.load(Ordering::Relaxed) && sockets.len() < 900 {
                if let Some(socket) = ws_connect(port, &token) {
                    sockets.push(socket);
                }
            }
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        other => panic!("no attack {other}"),
    }
}

/// Runs one attack for `each` while `/healthcheck` is probed; the sorted latencies.
pub fn run_attack(name: &'static str, port: u16, each: Duration) -> Vec<Duration> {
    let stop = Arc::new(AtomicBool::new(false));
    let prober = probe_health(port, stop.clone());
    let attacker = {
        let stop = stop.clone();
        std::thread::spawn(move || attack(name, port, &stop))
    };
    std::thread::sleep(each);
    stop.store(true, Ordering::Relaxed);
    let _ = attacker.join();
    prober.join().unwrap()
}

/// The `p` quantile of sorted samples.
pub fn quantile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1))).copied().unwrap_or_default()
}
