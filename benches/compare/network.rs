//! The workloads over the network, each repetition on fresh servers: `triplite serve` with the
//! native client, and the real Triplit server with the published `@triplit/client`
//! (benches/common/sync_peers.rs, which benches/client.rs runs too).

use std::path::Path;
use std::time::Duration;

use serde_json::{Value as Json, json};
use triplite::{DevTokenKind, mint_dev_token};

use crate::stats::ms;
use crate::sync_peers::{
    Peer, SECRET, Storage, load, native_initial_sync, native_inserts, native_latency, published, triplit_server,
    triplit_server_on, triplite_server, triplite_server_on,
};
use crate::wire::status_mb;
use crate::{ClientPlan, Plan, Sink};

pub const INSERTS_ONE_TX: &str = "client writes until acknowledged, one transaction";
pub const INSERTS_EACH: &str = "client writes until acknowledged, one transaction each";
pub const LATENCY: &str = "client-to-client sync latency";
pub const INITIAL: &str = "initial sync into an empty client";
pub const RSS_MEMORY: &str = "server memory (RSS) holding the todos, in-memory storage";
pub const RSS_SQLITE: &str = "server memory (RSS) holding the todos, SQLite storage";
pub const WRITERS: &str = "HTTP inserts by concurrent writers, SQLite storage (triplite: fsync per commit)";

/// One workload on both systems.
struct Workload {
    name: &'static str,
    unit: &'static str,
    /// How many writes or entities it is measured with.
    size: fn(&ClientPlan) -> usize,
    /// What the server holds before it starts.
    setup: fn(&Peer, &ClientPlan),
    triplite: fn(&Peer, &ClientPlan) -> Vec<f64>,
    triplit: fn(&Peer, &ClientPlan, &Path) -> Vec<f64>,
}

const WORKLOADS: [Workload; 4] = [
    Workload {
        name: INSERTS_ONE_TX,
        unit: "ms",
        size: |c| c.inserts,
        setup: |_, _| {},
        triplite: |s, c| vec![ms(native_inserts(&s.url, c.inserts, true))],
        triplit: |s, c, d| vec![published("insert-tx", &s.url, c.inserts, d)["ms"].as_f64().unwrap()],
    },
    Workload {
        name: INSERTS_EACH,
        unit: "ms",
        size: |c| c.inserts,
        setup: |_, _| {},
        triplite: |s, c| vec![ms(native_inserts(&s.url, c.inserts, false))],
        triplit: |s, c, d| vec![published("insert-each", &s.url, c.inserts, d)["ms"].as_f64().unwrap()],
    },
    Workload {
        name: LATENCY,
        unit: "ms",
        size: |c| c.latency_writes,
        setup: |_, _| {},
        triplite: |s, c| native_latency(&s.url, c.latency_writes).into_iter().map(ms).collect(),
        triplit: |s, c, d| {
            let result = published("latency", &s.url, c.latency_writes, d);
            result["samples_ms"].as_array().unwrap().iter().filter_map(Json::as_f64).collect()
        },
    },
    Workload {
        name: INITIAL,
        unit: "rows/s",
        size: |c| c.initial_rows,
        setup: |s, c| load(&s.url, c.initial_rows),
        triplite: |s, c| vec![c.initial_rows as f64 / native_initial_sync(&s.url, c.initial_rows).as_secs_f64()],
        triplit: |s, c, d| {
            let took = published("initial", &s.url, c.initial_rows, d)["ms"].as_f64().unwrap();
            vec![c.initial_rows as f64 / (took / 1000.0)]
        },
    },
];

/// Every network workload, on both systems.
pub fn all(plan: &Plan, dir: &Path, sink: &mut Sink) {
    let c = &plan.client;
    for workload in &WORKLOADS {
        let size = (workload.size)(c);
        crate::progress(workload.name, size);
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..c.reps {
            let server = triplite_server(dir);
            (workload.setup)(&server, c);
            ours.extend((workload.triplite)(&server, c));
            let server = triplit_server(dir);
            (workload.setup)(&server, c);
            theirs.extend((workload.triplit)(&server, c, dir));
        }
        sink.add(workload.name, size, "triplite", &ours, workload.unit);
        sink.add(workload.name, size, "triplit", &theirs, workload.unit);
    }
    for (workload, storage) in [(RSS_MEMORY, Storage::Memory), (RSS_SQLITE, Storage::Sqlite)] {
        for &size in &plan.rss_sizes {
            crate::progress(workload, size);
            for (system, start) in SERVERS {
                let samples: Vec<f64> = (0..c.reps)
                    .map(|_| {
                        let server = start(dir, storage);
                        load(&server.url, size);
                        // Let what the load left behind be freed before reading what is held.
                        std::thread::sleep(Duration::from_secs(1));
                        status_mb(server.pid, "VmRSS")
                    })
                    .collect();
                sink.add(workload, size, system, &samples, "MB");
            }
        }
    }
    for &writers in &plan.http_writers {
        crate::progress(WRITERS, writers);
        for (system, start) in SERVERS {
            let samples: Vec<f64> = (0..c.reps)
                .map(|_| http_inserts(&start(dir, Storage::Sqlite), writers, plan.inserts_per_writer))
                .collect();
            sink.add(WRITERS, writers, system, &samples, "inserts/s");
        }
    }
}

/// Starts a fresh server on a storage.
type Start = fn(&Path, Storage) -> Peer;

const SERVERS: [(&str, Start); 2] = [("triplite", triplite_server_on), ("triplit", triplit_server_on)];

/// `writers` threads each inserting `each` todos through `POST /insert`, one request at a
/// time; inserts per second over the whole run.
fn http_inserts(server: &Peer, writers: usize, each: usize) -> f64 {
    let service = mint_dev_token(SECRET, DevTokenKind::Secret, "local-project-id").unwrap();
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for writer in 0..writers {
            let (url, service) = (&server.url, &service);
            scope.spawn(move || {
                let agent = crate::wire::agent();
                for i in 0..each {
                    let entity = json!({"id": format!("w{writer}-{i}"), "text": "insert", "completed": false,
                                        "owner": "alice", "created_at": "2026-01-01T00:00:00.000Z"});
                    let response = agent
                        .post(&format!("{url}/insert"))
                        .header("Authorization", &format!("Bearer {service}"))
                        .header("Content-Type", "application/json")
                        .send(json!({"collectionName": "todos", "entity": entity}).to_string().as_bytes())
                        .expect("insert");
                    assert_eq!(response.status(), 200, "insert {writer}/{i}");
                }
            });
        }
    });
    (writers * each) as f64 / started.elapsed().as_secs_f64()
}
