//! The published benchmarks: every workload on triplite, on Triplit 1.x (the npm packages pinned
//! in benches/triplit-harness) and on raw rusqlite, in one run on this machine, written as one
//! JSON file of every figure, a Markdown table and SVG charts.
//!
//! Run through `bash benches/compare/run.sh [--quick] [--out FILE] [--only GROUP]` (it builds and
//! calls `cargo bench --bench compare -- ...`). The default output is
//! docs/benchmarks/results.json, with results.md and the charts beside it. `--quick` measures
//! small sizes a few times (CI runs it); `--only embedded|live|network` runs one group.
//!
//! Groups:
//! - embedded: bulk insert, point lookup, filter + order + limit (also as a user under a read
//!   rule: the cost of permissions), relational include, unindexed scan and single-entity
//!   transactions — triplite's Rust API on a SQLite file, `@triplit/db` in-process on its
//!   SQLite storage, raw rusqlite;
//! - live: write → callback with 1, 100 (and 10,000) subscriptions open;
//! - network: client writes until acknowledged, client-to-client latency, initial sync, server
//!   memory — `triplite serve` with the native client against the real Triplit server with the
//!   published client — one write fanned out to 1,000 and 10,000 WebSocket clients, and HTTP
//!   inserts by 1 and 16 concurrent writers on SQLite storage (triplite syncing every commit,
//!   with group commit).

#[path = "../common/mod.rs"]
mod common;
mod embedded;
mod fanout;
mod network;
mod peer;
mod report;
#[path = "../common/stats.rs"]
mod stats;
#[path = "../common/sync_peers.rs"]
mod sync_peers;
#[path = "../../tests/common/triplit.rs"]
#[allow(dead_code)]
mod triplit;
#[path = "../../tests/common/wire.rs"]
#[allow(dead_code)]
mod wire;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use stats::Summary;

/// What one run measures.
pub struct Plan {
    pub quick: bool,
    /// Todos held by the embedded workloads.
    pub sizes: Vec<usize>,
    /// The sizes Triplit is asked for too (it is given `peer_limit` for each).
    pub triplit_sizes: Vec<usize>,
    pub peer_limit: Duration,
    /// Fresh databases per bulk insert.
    pub reps: usize,
    /// Timed runs of each query (lookups and single transactions: ten times as many).
    pub runs: usize,
    /// Subscriptions open in the live workloads, on a database of `sizes[0]` todos.
    pub live: Vec<usize>,
    pub client: ClientPlan,
    pub rss_sizes: Vec<usize>,
    /// WebSocket clients connected at once in the fan-out workload, and the writes each gets.
    pub fanout_clients: Vec<usize>,
    pub fanout_writes: usize,
    /// Concurrent HTTP writers, and the inserts each makes.
    pub http_writers: Vec<usize>,
    pub inserts_per_writer: usize,
    only: Option<String>,
}

pub struct ClientPlan {
    pub inserts: usize,
    pub latency_writes: usize,
    pub initial_rows: usize,
    /// Fresh servers per network workload.
    pub reps: usize,
}

impl Plan {
    fn new(quick: bool, only: Option<String>) -> Plan {
        if quick {
            return Plan {
                quick,
                sizes: vec![10_000],
                triplit_sizes: vec![10_000],
                peer_limit: Duration::from_secs(300),
                reps: 2,
                runs: 10,
                live: vec![1, 100],
                client: ClientPlan { inserts: 2_000, latency_writes: 50, initial_rows: 10_000, reps: 1 },
                rss_sizes: vec![10_000],
                fanout_clients: vec![200],
                fanout_writes: 5,
                http_writers: vec![1, 16],
                inserts_per_writer: 20,
                only,
            };
        }
        Plan {
            quick,
            sizes: vec![10_000, 100_000, 1_000_000],
            triplit_sizes: vec![10_000, 100_000, 1_000_000],
            peer_limit: Duration::from_secs(900),
            reps: 3,
            runs: 20,
            live: vec![1, 100, 10_000],
            client: ClientPlan { inserts: 10_000, latency_writes: 200, initial_rows: 100_000, reps: 3 },
            rss_sizes: vec![100_000, 1_000_000],
            fanout_clients: vec![1_000, 10_000],
            fanout_writes: 20,
            http_writers: vec![1, 16],
            inserts_per_writer: 200,
            only,
        }
    }

    /// Whether the run includes `group` (`--only` names one).
    pub fn wants(&self, group: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == group)
    }
}

/// One figure of the results file.
#[derive(serde::Serialize)]
pub struct Record {
    pub workload: String,
    pub size: usize,
    pub system: &'static str,
    #[serde(flatten)]
    pub summary: Summary,
    pub unit: &'static str,
    pub better: &'static str,
}

/// Where the figures of a run collect.
#[derive(Default)]
pub struct Sink {
    pub records: Vec<Record>,
    /// What was not measured, and why.
    pub notes: Vec<String>,
}

impl Sink {
    pub fn add(&mut self, workload: &str, size: usize, system: &'static str, samples: &[f64], unit: &'static str) {
        let better = if unit.ends_with("/s") { "higher" } else { "lower" };
        let summary = Summary::of(samples);
        eprintln!("         {system:<9} {workload} @ {size}: median {:.4} {unit} (n={})", summary.median, summary.n);
        self.records.push(Record { workload: workload.to_owned(), size, system, summary, unit, better });
    }

    pub fn note(&mut self, note: String) {
        eprintln!("         note: {note}");
        self.notes.push(note);
    }
}

/// The progress line a workload prints when it starts.
pub fn progress(what: &str, size: usize) {
    static START: OnceLock<Instant> = OnceLock::new();
    let elapsed = START.get_or_init(Instant::now).elapsed().as_secs();
    eprintln!("[{:>2}:{:02}] {what} @ {size}", elapsed / 60, elapsed % 60);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut quick, mut out, mut only) = (false, None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--out" => out = Some(PathBuf::from(args.next().expect("--out FILE"))),
            "--only" => only = Some(args.next().expect("--only embedded|live|network")),
            "--bench" => {}
            "--list" | "--test" => return, // `cargo test --benches` and listing: nothing to run.
            other => panic!("unknown argument {other}; usage: [--quick] [--out FILE] [--only embedded|live|network]"),
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = out.unwrap_or_else(|| root.join("docs/benchmarks/results.json"));
    let plan = Plan::new(quick, only);
    let dir = tempfile::tempdir().unwrap();
    let mut sink = Sink::default();
    progress("installing the pinned Triplit packages", 0);
    triplit::harness();

    for &size in &plan.sizes {
        let live: &[usize] = if size == plan.sizes[0] && plan.wants("live") { &plan.live } else { &[] };
        if plan.wants("embedded") {
            progress("embedded workloads, raw SQLite", size);
            embedded::sqlite(&plan, size, dir.path(), &mut sink);
            progress("embedded workloads, triplite", size);
            embedded::triplite(&plan, size, dir.path(), &mut sink);
        }
        for &count in live {
            progress("live query, triplite, subscriptions", count);
            embedded::triplite_live(&plan, size, count, dir.path(), &mut sink);
        }
        if plan.triplit_sizes.contains(&size) && (plan.wants("embedded") || !live.is_empty()) {
            progress("embedded and live workloads, Triplit @triplit/db", size);
            let (reps, runs) = if size >= 1_000_000 { (1, 5) } else { (plan.reps, plan.runs) };
            peer::run(&plan, peer::Run { size, reps, runs, live }, dir.path(), &mut sink);
        }
    }
    if plan.wants("network") {
        network::all(&plan, dir.path(), &mut sink);
        fanout::run(&plan, dir.path(), &mut sink);
    }
    report::write(&plan, &sink, &out);
    eprintln!("wrote {} (and its .md and charts)", out.display());
}
