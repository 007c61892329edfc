//! Crash safety of the sync server: `triplite serve` on one SQLite file is killed with SIGKILL
//! at a random point, [`ROUNDS`] times, while two HTTP writers (`/bulk-insert`, `/insert`) and
//! two WebSocket writers (`CHANGES`) commit groups of entities. Each group is one transaction
//! whose entities all carry the group's id, so after every restart:
//! - every group the server acknowledged (HTTP 200, `CHANGES_ACK`) is there, every field intact;
//! - a group still unanswered at the kill is there whole or not at all, and stays so;
//! - nothing is there that no writer sent.
//!
//! Each restart checks the round before it over HTTP; at the end every round is checked again
//! over HTTP, and once more by opening the file directly after the last server is gone.
#![cfg(unix)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use tungstenite::Message;

use common::wire::{ServeProcess, agent, ws_connect, ws_next};

/// How many times the server is killed.
const ROUNDS: u64 = 60;
/// The kill comes this long after the writers start (uniformly at random, per round).
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 20..=150;
/// Each entity carries this much text, so a commit takes a moment.
const PAYLOAD_BYTES: usize = 3 * 1024;
/// A writer stops after this many groups or this long, whichever comes first (the kill
/// normally stops it long before: every request then fails).
const MAX_GROUPS_PER_WRITER: u64 = 2_000;
const WRITER_DEADLINE: Duration = Duration::from_secs(10);
const SECRET: &str = "crash-safety-secret-0123456789abcdef";

fn schema_json() -> Json {
    let string = json!({"type": "string", "config": {}});
    let number = json!({"type": "number", "config": {}});
    json!({"collections": {"items": {
        "schema": {"type": "record", "config": {}, "properties": {
            "id": string, "group": string, "writer": string, "round": number,
            "seq": number, "part": number, "size": number, "payload": string
        }},
        "indexes": [["round"]]
    }}})
}

fn service_token() -> String {
    triplite::mint_dev_token(SECRET, triplite::DevTokenKind::Secret, "local-project-id").unwrap()
}

/// splitmix64: a reproducible kill time per round, no dependency.
fn random(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Http,
    WebSocket,
}

/// One transaction's worth of entities: `<id>-0` .. `<id>-<size - 1>`.
#[derive(Clone, Debug)]
struct Group {
    id: String,
    writer: String,
    round: u64,
    seq: u64,
    size: u64,
    via: Via,
}

impl Group {
    fn new(writer: &str, round: u64, seq: u64, size: u64, via: Via) -> Group {
        Group { id: format!("r{round}-{writer}-g{seq}"), writer: writer.into(), round, seq, size, via }
    }

    fn entity_id(&self, part: u64) -> String {
        format!("{}-{part}", self.id)
    }

    fn entity(&self, part: u64) -> Json {
        let id = self.entity_id(part);
        // Text that differs per entity, so a torn or misplaced value cannot pass for another.
        let stamp = format!("{id}:");
        let payload: String = stamp.chars().cycle().take(PAYLOAD_BYTES).collect();
        json!({"id": id, "group": self.id, "writer": self.writer, "round": self.round,
               "seq": self.seq, "part": part, "size": self.size, "payload": payload})
    }

    fn entities(&self) -> Vec<Json> {
        (0..self.size).map(|part| self.entity(part)).collect()
    }
}

/// What one writer did in one round.
#[derive(Default)]
struct Outcome {
    /// Groups sent (or being sent) to the server, in order.
    sent: Vec<Group>,
    /// Ids of the groups the server acknowledged.
    acked: Vec<String>,
    /// An answer that no crash explains (an HTTP error status, an `ERROR` frame).
    failure: Option<String>,
}

/// A running `triplite serve` (SIGKILLed and reaped when dropped).
struct Server(ServeProcess);

impl Server {
    /// Starts the server on `database` and waits until it listens (it logs its address once
    /// the database is open and the socket bound).
    fn start(dir: &Path, database: &Path) -> Server {
        let schema = dir.join("schema.json");
        let args = ["--durability", "normal", "--schema", schema.to_str().unwrap()];
        let server = ServeProcess::start(&args, &[("LOCAL_DATABASE_URL", database)], SECRET);
        let health = agent().get(&format!("{}/healthcheck", server.url())).call();
        assert!(
            health.as_ref().is_ok_and(|r| r.status() == 200),
            "the server listens but does not answer: {:?}\n{}",
            health.map(|r| r.status()),
            server.log_text()
        );
        Server(server)
    }

    /// SIGKILL, then reaps the process; an error if it had already exited by itself.
    fn kill(mut self) -> Result<(), String> {
        let child = &mut self.0.child;
        let running = child.try_wait().ok().flatten().is_none();
        let _ = child.kill();
        let status = child.wait().map_err(|e| e.to_string())?;
        match status.signal() {
            Some(9) if running => Ok(()),
            _ => Err(format!("the server exited by itself ({status}); its log:\n{}", self.0.log_text())),
        }
    }

    /// Every entity of `round`, through `/fetch`.
    fn fetch_round(&self, round: u64) -> Vec<Json> {
        let body = json!({"query": {"collectionName": "items", "where": [["round", "=", round]]}});
        let mut response = agent()
            .post(&format!("{}/fetch", self.0.url()))
            .header("Authorization", &format!("Bearer {}", service_token()))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())
            .expect("fetching");
        let text = response.body_mut().with_config().limit(1 << 30).read_to_string().expect("reading a fetch");
        assert_eq!(response.status(), 200, "fetch: {text}");
        match serde_json::from_str(&text).expect("fetch answers JSON") {
            Json::Array(entities) => entities,
            other => panic!("fetch answered {other}"),
        }
    }
}

/// Writes groups through `/bulk-insert` (one transaction each) and, one time in five, a group
/// of one through `/insert`, until a request fails.
fn http_writer(port: u16, writer: String, round: u64) -> Outcome {
    let agent = agent();
    let token = format!("Bearer {}", service_token());
    let started = Instant::now();
    let mut outcome = Outcome::default();
    for seq in 0..MAX_GROUPS_PER_WRITER {
        if started.elapsed() > WRITER_DEADLINE {
            break;
        }
        let single = seq % 5 == 4;
        let group = Group::new(&writer, round, seq, if single { 1 } else { 2 + seq % 4 }, Via::Http);
        let (route, body) = if single {
            ("insert", json!({"collectionName": "items", "entity": group.entity(0)}))
        } else {
            ("bulk-insert", json!({"items": group.entities()}))
        };
        outcome.sent.push(group.clone());
        let response = agent
            .post(&format!("http://127.0.0.1:{port}/{route}"))
            .header("Authorization", &token)
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes());
        let Ok(mut response) = response else { break }; // The server is gone.
        if response.status() == 200 {
            outcome.acked.push(group.id.clone());
            let _ = response.body_mut().read_to_string(); // Whatever it says, 200 is the promise.
        } else {
            let text = response.body_mut().read_to_string().unwrap_or_default();
            outcome.failure =
                Some(format!("{writer}: /{route} of {} answered {}: {text}", group.id, response.status()));
            break;
        }
    }
    outcome
}

/// Sends each group as one `CHANGES` message and waits for its `CHANGES_ACK`, until the
/// connection fails.
fn ws_writer(port: u16, writer: String, round: u64) -> Outcome {
    let mut outcome = Outcome::default();
    let Some(mut socket) = ws_connect(port, &service_token()) else { return outcome };
    match ws_next(&mut socket) {
        Some(ready) if ready["type"] == "READY" => {}
        Some(other) => {
            outcome.failure = Some(format!("{writer}: expected READY, got {other}"));
            return outcome;
        }
        None => return outcome,
    }
    let started = Instant::now();
    for seq in 0..MAX_GROUPS_PER_WRITER {
        if started.elapsed() > WRITER_DEADLINE {
            break;
        }
        let group = Group::new(&writer, round, seq, 2 + seq % 4, Via::WebSocket);
        let sets: Vec<Json> = group.entities().into_iter().map(|e| json!([e["id"].clone(), e])).collect();
        let frame = json!({"type": "CHANGES", "payload": {"changes": {
            "json": {"items": {"sets": sets, "deletes": []}},
            "meta": {"values": {"items.sets": ["map"], "items.deletes": ["set"]}, "v": 1}
        }}});
        outcome.sent.push(group.clone());
        if socket.send(Message::text(frame.to_string())).is_err() {
            break;
        }
        let answer = loop {
            match ws_next(&mut socket) {
                Some(m) if m["type"] == "CHANGES_ACK" || m["type"] == "ERROR" => break Some(m),
                Some(_) => continue,
                None => break None,
            }
        };
        match answer {
            Some(m) if m["type"] == "CHANGES_ACK" => outcome.acked.push(group.id.clone()),
            Some(error) => {
                outcome.failure = Some(format!("{writer}: CHANGES of {} answered {error}", group.id));
                break;
            }
            None => break,
        }
    }
    let _ = socket.close(None);
    outcome
}

/// What a group must look like from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Acknowledged, or seen whole after a crash: present, whole, for good.
    Present,
    /// Unanswered at the kill and absent after it: never appears.
    Absent,
    /// Unanswered at the kill, not yet looked at.
    Unknown,
}

#[derive(Default)]
struct Ledger {
    groups: BTreeMap<String, (Group, Expect)>,
    acked: BTreeSet<String>,
}

impl Ledger {
    fn record(&mut self, outcome: &Outcome) {
        for group in &outcome.sent {
            let acked = outcome.acked.contains(&group.id);
            if acked {
                self.acked.insert(group.id.clone());
            }
            let expect = if acked { Expect::Present } else { Expect::Unknown };
            self.groups.insert(group.id.clone(), (group.clone(), expect));
        }
    }

    /// Checks `entities` — everything the database holds for the groups `in_scope` selects —
    /// against what was sent and acknowledged; settles unanswered groups on first sight.
    /// Returns the problems found, each naming the group and entities.
    fn check(&mut self, entities: &[Json], in_scope: impl Fn(&Group) -> bool, seen_at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let mut found: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for entity in entities {
            let id = entity["id"].as_str().unwrap_or("?");
            let group_id = entity["group"].as_str().unwrap_or("?");
            let Some((group, _)) = self.groups.get(group_id).filter(|(g, _)| in_scope(g)) else {
                problems.push(format!("{seen_at}: entity {id} belongs to no group that was sent: {entity}"));
                continue;
            };
            let part = entity["part"].as_u64().or_else(|| entity["part"].as_f64().map(|p| p as u64));
            match part.filter(|&p| p < group.size && group.entity_id(p) == id) {
                Some(part) => {
                    if let Err(field) = same_entity(&group.entity(part), entity) {
                        problems.push(format!("{seen_at}: entity {id} of group {group_id} is damaged ({field})"));
                    }
                    found.entry(group_id.to_owned()).or_default().push(part);
                }
                None => problems.push(format!("{seen_at}: entity {id} is not part of group {group_id}: {entity}")),
            }
        }
        for (id, (group, expect)) in self.groups.iter_mut().filter(|(_, (g, _))| in_scope(g)) {
            let mut parts = found.remove(id).unwrap_or_default();
            parts.sort_unstable();
            let duplicates = parts.windows(2).any(|w| w[0] == w[1]);
            parts.dedup();
            let present = parts.len() as u64;
            let missing: Vec<String> =
                (0..group.size).filter(|p| !parts.contains(p)).map(|p| group.entity_id(p)).collect();
            if duplicates {
                problems.push(format!("{seen_at}: group {id} has an entity twice"));
            }
            if present != 0 && present != group.size {
                problems.push(format!(
                    "{seen_at}: group {id} ({:?}, {}) is half-applied: {present} of {} entities, missing {missing:?}",
                    group.via,
                    if *expect == Expect::Present { "acknowledged" } else { "unanswered" },
                    group.size
                ));
            }
            match (*expect, present) {
                (Expect::Present, 0) => problems.push(format!(
                    "{seen_at}: group {id} ({:?}) was acknowledged (or seen after a crash) but is gone: {missing:?}",
                    group.via
                )),
                (Expect::Absent, p) if p > 0 => {
                    problems.push(format!("{seen_at}: group {id} was absent after its crash but is there now"))
                }
                (Expect::Unknown, 0) => *expect = Expect::Absent,
                (Expect::Unknown, _) => *expect = Expect::Present,
                _ => {}
            }
        }
        problems
    }

    fn acked(&self, via: Via) -> usize {
        self.groups.values().filter(|(g, _)| g.via == via && self.acked.contains(&g.id)).count()
    }

    /// Groups sent without an answer that, after their crash, were there (whole) or not.
    fn unanswered(&self, expect: Expect) -> usize {
        self.groups.values().filter(|(g, e)| *e == expect && !self.acked.contains(&g.id)).count()
    }

    fn entities_present(&self) -> u64 {
        self.groups.values().filter(|(_, e)| *e == Expect::Present).map(|(g, _)| g.size).sum()
    }
}

/// Field by field; numbers compare as numbers (3 and 3.0 are the same Triplit number).
fn same_entity(expected: &Json, found: &Json) -> Result<(), String> {
    let (Json::Object(expected), Json::Object(found)) = (expected, found) else { return Err("not an object".into()) };
    for (key, want) in expected {
        let got = found.get(key).unwrap_or(&Json::Null);
        let same = match (want, got) {
            (Json::Number(a), Json::Number(b)) => a.as_f64() == b.as_f64(),
            _ => want == got,
        };
        if !same {
            let shown: String = got.to_string().chars().take(80).collect();
            return Err(format!("{key} is {shown}..."));
        }
    }
    match found.keys().find(|key| !expected.contains_key(*key)) {
        Some(extra) => Err(format!("unexpected attribute {extra}")),
        None => Ok(()),
    }
}

fn problems_report(problems: &[String]) -> String {
    let shown: Vec<&str> = problems.iter().take(40).map(String::as_str).collect();
    format!("{} problem(s):\n{}", problems.len(), shown.join("\n"))
}

#[test]
fn sigkill_under_concurrent_writers_keeps_every_acknowledged_group_whole() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schema.json"), schema_json().to_string()).unwrap();
    let database: PathBuf = dir.path().join("crash.db");
    let mut ledger = Ledger::default();
    let mut problems = Vec::new();

    for round in 0..ROUNDS {
        // Every restart is a recovery from the previous kill: the database must reopen.
        let server = Server::start(dir.path(), &database);
        if round > 0 {
            let entities = server.fetch_round(round - 1);
            problems.extend(ledger.check(&entities, |g| g.round == round - 1, &format!("restart {round}")));
        }
        let port = server.0.port;
        let writers: Vec<_> =
            [("http-a", Via::Http), ("http-b", Via::Http), ("ws-a", Via::WebSocket), ("ws-b", Via::WebSocket)]
                .into_iter()
                .map(|(name, via)| {
                    let name = name.to_owned();
                    std::thread::spawn(move || match via {
                        Via::Http => http_writer(port, name, round),
                        Via::WebSocket => ws_writer(port, name, round),
                    })
                })
                .collect();
        let span = KILL_AFTER_MS.end() - KILL_AFTER_MS.start() + 1;
        std::thread::sleep(Duration::from_millis(KILL_AFTER_MS.start() + random(round) % span));
        if let Err(problem) = server.kill() {
            problems.push(format!("round {round}: {problem}"));
        }
        for writer in writers {
            let outcome = writer.join().expect("a writer thread panicked");
            if let Some(failure) = &outcome.failure {
                problems.push(format!("round {round}: {failure}"));
            }
            ledger.record(&outcome);
        }
    }

    // All rounds again, through one more server.
    let server = Server::start(dir.path(), &database);
    let mut over_http = 0;
    for round in 0..ROUNDS {
        let entities = server.fetch_round(round);
        over_http += entities.len();
        problems.extend(ledger.check(&entities, |g| g.round == round, "final fetch"));
    }
    drop(server);

    // And the file itself, with no server in between.
    let db = triplite::Database::open(&database).expect("the database opens directly after the last kill");
    let entities = db.fetch_all("items").unwrap();
    problems.extend(ledger.check(&entities, |_| true, "direct open"));
    assert_eq!(entities.len(), over_http, "the file and the server hold the same entities");

    let (http, ws) = (ledger.acked(Via::Http), ledger.acked(Via::WebSocket));
    eprintln!(
        "crash_safety: {ROUNDS} rounds, each ended by SIGKILL; acknowledged groups: {http} via HTTP, {ws} via \
         WebSocket; unanswered at a kill: {} applied whole, {} absent; {} entities checked ({PAYLOAD_BYTES} B \
         payload each); {:.1?}",
        ledger.unanswered(Expect::Present),
        ledger.unanswered(Expect::Absent),
        ledger.entities_present(),
        started.elapsed()
    );
    assert!(problems.is_empty(), "{}", problems_report(&problems));
    assert!(http > 0 && ws > 0, "both kinds of writer got writes acknowledged");
}
