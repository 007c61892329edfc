//! The cost of the C ABI: fetch by id of one todo among 1,000 in memory, through
//! `triplite_db_fetch_by_id` from C (benches/ffi_roundtrip.c, compiled here against the
//! release static library; the JSON result is serialized and freed each call) and through
//! `Database::fetch_by_id` from Rust (the same ids), both timed the same way: the median of 25
//! batches of 20,000 calls. Then the write -> callback latency of a subscription to 10,000
//! rows through C (benches/ffi_subscription.c), with whole results and with deltas only.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::json;
use triplite::Database;

const ENTITIES: u32 = 1000;
const BATCHES: usize = 25;
const CALLS: usize = 20_000;

fn rust_median_ns() -> f64 {
    let db = Database::in_memory().unwrap();
    for i in 0..ENTITIES {
        let doc = json!({"id": format!("t{i:04}"), "text": format!("todo {i}"), "owner": format!("user-{}", i % 10), "completed": false});
        db.insert("todos", doc).unwrap();
    }
    let mut seed: u32 = 7;
    let mut per_call: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..CALLS {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let id = format!("t{:04}", (seed >> 8) % ENTITIES);
                std::hint::black_box(db.fetch_by_id("todos", &id).unwrap());
            }
            start.elapsed().as_nanos() as f64 / CALLS as f64
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[BATCHES / 2]
}

/// Compiles `benches/<name>.c` against the release static library; the program's path.
fn c_program(name: &str, out: &Path) -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = std::env::current_exe().unwrap();
    // `cargo bench` builds the static library beside this bench, in `deps`.
    let deps = exe.parent().unwrap();
    let program = out.join(name);
    let status = Command::new("gcc")
        .args(["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root.join("include"))
        .arg(root.join(format!("benches/{name}.c")))
        .arg(deps.join("libtriplite.a"))
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&program)
        .status()
        .unwrap();
    assert!(status.success(), "compiling benches/{name}.c");
    program
}

/// Runs a compiled program; the numbers it prints.
fn run(program: &Path, args: &[&str]) -> Vec<f64> {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).split_whitespace().map(|n| n.parse().unwrap()).collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let rust = rust_median_ns();
    let c = run(&c_program("ffi_roundtrip", out.path()), &[])[0];
    println!("fetch by id, Rust API: median {:.2} µs per call", rust / 1000.0);
    println!(
        "fetch by id, C ABI:    median {:.2} µs per call ({:+.2} µs: checks, JSON text, free)",
        c / 1000.0,
        (c - rust) / 1000.0
    );
    // The same run, both ways, so the two figures compare.
    let subscription = c_program("ffi_subscription", out.path());
    for (what, options) in [("whole results", "{}"), ("deltas only", r#"{"deltas": true}"#)] {
        let figures = run(&subscription, &[options]);
        println!(
            "insert -> callback of a 10,000-row subscription through C, {what}: median {:.1} µs, p99 {:.1} µs",
            figures[0], figures[1]
        );
    }
}
