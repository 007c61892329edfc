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

#[path = "common/stats.rs"]
mod stats;
#[path = "common/sync_peers.rs"]
mod sync_peers;

use std::path::Path;

use serde_json::Value as Json;
use stats::{Summary, ms, quantile};
use sync_peers::{
    load, native_initial_sync, native_inserts, native_latency, published, triplit_server, triplite_server,
};

const INSERTS: usize = 10_000;
const LATENCY_WRITES: usize = 200;
const INITIAL_ROWS: usize = 100_000;

fn median(values: Vec<f64>) -> f64 {
    Summary::of(&values).median
}

fn spread(values: &[f64]) -> String {
    let spread = Summary::of(values).spread;
    format!("{:.1}–{:.1}", spread.min, spread.max)
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
            native: |url| ms(native_inserts(url, INSERTS, true)),
            published: Some(|url, dir| published("insert-tx", url, INSERTS, dir)["ms"].as_f64().unwrap()),
            setup: |_| {},
            unit: "ms",
        },
        Workload {
            name: "10,000 inserts, one transaction each, until acknowledged",
            native: |url| ms(native_inserts(url, INSERTS, false)),
            published: Some(|url, dir| published("insert-each", url, INSERTS, dir)["ms"].as_f64().unwrap()),
            setup: |_| {},
            unit: "ms",
        },
        Workload {
            name: "initial sync of 100,000 entities into an empty client",
            native: |url| INITIAL_ROWS as f64 / native_initial_sync(url, INITIAL_ROWS).as_secs_f64(),
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
        ours.extend(native_latency(&server.url, LATENCY_WRITES).into_iter().map(ms));
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
