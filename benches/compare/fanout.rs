//! Fan-out: many WebSocket clients on one server, all subscribed to the newest todo, and a
//! write (`POST /insert` with a service token) that reaches every one of them; the delay from
//! the write to each client's `ENTITY_DATA`, over every client and write. The same raw-protocol
//! client drives both servers (the frames are Triplit's), one thread per socket.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use triplite::{DevTokenKind, mint_dev_token};

use crate::stats::ms;
use crate::sync_peers::{Peer, SECRET, numbered_user_token, triplit_server, triplite_server};
use crate::wire::{ws_connect, ws_next, ws_send};
use crate::{Plan, Sink};

pub const FANOUT: &str = "one write fanned out to every connected client";
/// How long a write may take to reach every client before the missing ones are counted.
const DELIVERY_LIMIT: Duration = Duration::from_secs(30);
/// How long the clients have to connect and subscribe.
const SUBSCRIBE_LIMIT: Duration = Duration::from_secs(120);

pub fn run(plan: &Plan, dir: &Path, sink: &mut Sink) {
    let _ = rlimit::increase_nofile_limit(65_536);
    for &clients in &plan.fanout_clients {
        crate::progress(FANOUT, clients);
        for (system, start) in [("triplite", triplite_server as fn(&Path) -> Peer), ("triplit", triplit_server)] {
            let server = start(dir);
            let (samples, missing, absent) = deliveries(&server, clients, plan.fanout_writes);
            if absent > 0 {
                sink.note(format!(
                    "{system}, {clients} clients: {absent} did not connect and subscribe within {} s; the figure is over the others",
                    SUBSCRIBE_LIMIT.as_secs()
                ));
            }
            if missing > 0 {
                sink.note(format!(
                    "{system}, {clients} clients: {missing} deliveries did not arrive within {} s",
                    DELIVERY_LIMIT.as_secs()
                ));
            }
            if !samples.is_empty() {
                sink.add(FANOUT, clients, system, &samples, "ms");
            }
        }
    }
}

/// Every delivery's delay, and how many were owed but never came (clients that did not
/// subscribe within `SUBSCRIBE_LIMIT` are owed nothing and are reported as such).
fn deliveries(server: &Peer, clients: usize, writes: usize) -> (Vec<f64>, usize, usize) {
    let port: u16 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    let (arrived, arrivals) = crossbeam_channel::unbounded::<(usize, Instant)>();
    let roll = Arc::new(Roll::default());
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let (arrived, roll, stop) = (arrived.clone(), roll.clone(), stop.clone());
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || listen(port, i, &arrived, &roll, &stop))
                .unwrap()
        })
        .collect();
    let subscribed = roll.close_after(clients, SUBSCRIBE_LIMIT);
    let service = mint_dev_token(SECRET, DevTokenKind::Secret, "local-project-id").unwrap();
    let mut samples = Vec::with_capacity(clients * writes);
    let mut missing = 0;
    for k in 0..writes {
        let entity = json!({"id": format!("fanout-{k}"), "text": "fan-out", "completed": false, "owner": "alice",
                            "created_at": format!("2030-01-01T00:00:{:02}.000Z", k % 60)});
        let written = Instant::now();
        let response = ureq::post(&format!("{}/insert", server.url))
            .header("Authorization", &format!("Bearer {service}"))
            .header("Content-Type", "application/json")
            .send(json!({"collectionName": "todos", "entity": entity}).to_string().as_bytes())
            .expect("insert");
        assert_eq!(response.status(), 200);
        let mut owed = subscribed;
        while owed > 0 {
            match arrivals.recv_deadline(written + DELIVERY_LIMIT) {
                Ok((write, at)) if write == k => {
                    samples.push(ms(at - written));
                    owed -= 1;
                }
                Ok(_) => {} // a late copy of an earlier write
                Err(_) => break,
            }
        }
        missing += owed;
    }
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        let _ = thread.join();
    }
    (samples, missing, clients - subscribed)
}

/// Which clients subscribed in time: those answering after the roll closed take no part.
#[derive(Default)]
struct Roll {
    state: Mutex<RollState>,
    changed: Condvar,
}

#[derive(Default)]
struct RollState {
    subscribed: usize,
    failed: usize,
    closed: bool,
}

impl Roll {
    /// Reports a client; whether it takes part.
    fn answer(&self, subscribed: bool) -> bool {
        let mut state = self.state.lock().unwrap();
        if state.closed {
            return false;
        }
        if subscribed {
            state.subscribed += 1
        } else {
            state.failed += 1
        }
        self.changed.notify_all();
        subscribed
    }

    /// Waits until all `clients` answered or `limit` passed; how many subscribed.
    fn close_after(&self, clients: usize, limit: Duration) -> usize {
        let state = self.state.lock().unwrap();
        let (mut state, _) =
            self.changed.wait_timeout_while(state, limit, |s| s.subscribed + s.failed < clients).unwrap();
        state.closed = true;
        state.subscribed
    }
}

/// One client: subscribes, then reports each write it receives until told to stop.
fn listen(port: u16, i: usize, arrived: &crossbeam_channel::Sender<(usize, Instant)>, roll: &Roll, stop: &AtomicBool) {
    let socket = ws_connect(port, &numbered_user_token(i)).and_then(|mut socket| {
        (ws_next(&mut socket)?["type"] == "READY").then_some(())?;
        let newest = json!({"collectionName": "todos", "order": [["created_at", "DESC"]], "limit": 1});
        ws_send(&mut socket, "CONNECT_QUERY", json!({"id": "newest", "params": newest}));
        while ws_next(&mut socket)?["type"] != "ENTITY_DATA" {}
        Some(socket)
    });
    let Some(mut socket) = socket else {
        roll.answer(false);
        return;
    };
    if !roll.answer(true) {
        return;
    }
    let _ = socket.get_ref().set_read_timeout(Some(Duration::from_millis(500)));
    while !stop.load(Ordering::SeqCst) {
        let frame = match socket.read() {
            Ok(tungstenite::Message::Text(text)) => text,
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue;
            }
            Err(_) => return,
        };
        let at = Instant::now();
        let Ok(message) = serde_json::from_str::<Json>(frame.as_str()) else { continue };
        let sets = message["payload"]["changes"]["json"]["todos"]["sets"].as_array().cloned().unwrap_or_default();
        for set in sets {
            if let Some(write) = set[0].as_str().and_then(|id| id.strip_prefix("fanout-")?.parse().ok()) {
                let _ = arrived.send((write, at));
            }
        }
    }
}
