//! Load and soak against `triplite serve` (release build, SQLite, `--durability normal`):
//! - 1,000 WebSocket clients in 25 rooms, each subscribed to its room's latest 100 messages
//!   (every tenth also to the latest 20 of all rooms), 50 of them writing once a second — each
//!   write reaches 140 clients, 7,000 deliveries a second:
//!   delivery latency p50/p99, deliveries against what was owed, errors, and the server's RSS
//!   sampled over the run and after the clients left;
//! - `/healthcheck` latency p50/p99 with no attack (the baseline, same run) and while each
//!   hostile client of the reliability issue runs (target: p99 under 50 ms).
//!
//! Run: `cargo bench --bench load` (60 s of load; `LOAD_SECONDS=600` for the 10-minute soak,
//! `-- --quick` for 10 s).

#[path = "../tests/common/load.rs"]
mod load;
#[path = "../tests/common/wire.rs"]
#[allow(dead_code)]
mod wire;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use load::{Workload, quantile};

/// VmRSS, with how much of it is the process's own memory and how much the database file's
/// pages mapped in (reclaimable by the system).
fn rss(pid: u32) -> String {
    let mb = |field| wire::status_mb(pid, field);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let threads = status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap_or("?").trim().to_owned();
    format!(
        "{:.0} MB ({:.0} MB anonymous, {:.0} MB file-backed; {threads} threads)",
        mb("VmRSS"),
        mb("RssAnon"),
        mb("RssFile")
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` and listing: nothing to run.
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let seconds =
        std::env::var("LOAD_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(if quick { 10 } else { 60 });
    // Skips the load (to look at the attacks alone).
    let attacks_only = std::env::var_os("LOAD_ATTACKS_ONLY").is_some();
    let _ = rlimit::increase_nofile_limit(8192);
    let dir = tempfile::tempdir().unwrap();
    let server = load::start_server(dir.path(), &[]);
    let pid = server.pid();
    let before = wire::status_mb(pid, "VmRSS");

    let work = Workload {
        clients: 1_000,
        rooms: 25,
        writers: 50,
        write_every: Duration::from_secs(1),
        latest_every: 10,
        duration: Duration::from_secs(seconds),
    };
    println!("load: {work:?}");
    let report = if attacks_only { load::Report::default() } else { load::run(&server, &work) };
    std::thread::sleep(Duration::from_secs(5));
    let soon_after = rss(pid);
    std::thread::sleep(Duration::from_secs(10));
    let after = rss(pid);
    println!(
        "load: {} clients, {} writes acked, {}/{} deliveries, {} errors",
        report.connected,
        report.acked,
        report.delivered,
        report.expected,
        report.errors.len()
    );
    for error in report.errors.iter().take(5) {
        println!("  error: {error}");
    }
    println!(
        "delivery latency (write -> every room member): p50 {:.2?}  p99 {:.2?}  max {:.2?}",
        quantile(&report.latencies, 0.5),
        quantile(&report.latencies, 0.99),
        report.latencies.last().copied().unwrap_or_default()
    );
    let at = |fraction: f64| {
        let index = ((report.rss.len() as f64 * fraction) as usize).min(report.rss.len().saturating_sub(1));
        report.rss.get(index).map_or(0.0, |(_, mb)| *mb)
    };
    let peak = report.rss.iter().map(|(_, mb)| *mb).fold(0.0, f64::max);
    println!(
        "server RSS: {before:.0} MB idle, {:.0} MB at 25% of the run, {:.0} MB at 50%, {:.0} MB at 95%, peak {peak:.0} MB; {soon_after} 5 s after the clients left, {after} 15 s after",
        at(0.25),
        at(0.5),
        at(0.95)
    );

    let each = Duration::from_secs(if quick { 3 } else { 10 });
    let stop = Arc::new(AtomicBool::new(false));
    let baseline = load::probe_health(server.port, stop.clone());
    std::thread::sleep(each);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let baseline = baseline.join().unwrap();
    let line = |name: &str, samples: &[Duration]| {
        let p99 = quantile(samples, 0.99);
        let verdict = if p99 < Duration::from_millis(50) { "under 50 ms" } else { "OVER 50 ms" };
        println!(
            "/healthcheck {name:<16} p50 {:>9.2?}  p99 {p99:>9.2?}  ({} samples, {verdict})",
            quantile(samples, 0.5),
            samples.len()
        );
    };
    line("no attack", &baseline);
    for &attack in load::ATTACKS {
        let samples = load::run_attack(attack, server.port, each);
        line(attack, &samples);
        std::thread::sleep(Duration::from_secs(2));
        println!("  server RSS 2 s after it: {}", rss(pid));
    }
}
