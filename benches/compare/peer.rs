//! Triplit's side of the embedded workloads: `node db-bench.mjs` in the installed harness
//! (target/triplit-harness), one process per size, its samples read back into the same
//! records as ours.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::{Plan, Sink, triplit};

/// What one run of db-bench.mjs is asked to do.
pub struct Run<'a> {
    pub size: usize,
    pub reps: usize,
    pub runs: usize,
    pub live: &'a [usize],
}

/// Runs db-bench.mjs; every workload it finishes becomes a record. A run that fails or passes
/// the plan's time limit is reported in the results' notes with what it did not finish.
pub fn run(plan: &Plan, run: Run, dir: &Path, sink: &mut Sink) {
    let harness = triplit::harness();
    let schema = dir.join("compare-schema.json");
    std::fs::write(&schema, crate::embedded::schema_json().to_string()).unwrap();
    let live: Vec<String> = run.live.iter().map(usize::to_string).collect();
    let mut child = Command::new("timeout")
        .arg(plan.peer_limit.as_secs().to_string())
        .args(["node", "--max-old-space-size=16384", "db-bench.mjs"])
        .current_dir(&harness)
        .env("SCHEMA_FILE", &schema)
        .env("SIZE", run.size.to_string())
        .env("REPS", run.reps.to_string())
        .env("RUNS", run.runs.to_string())
        .env("LIVE", live.join(","))
        .env("DATA_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node db-bench.mjs");
    let started = Instant::now();
    let mut finished = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok) {
        let Ok(record) = serde_json::from_str::<Json>(&line) else { continue };
        let samples: Vec<f64> = record["samples"].as_array().unwrap().iter().filter_map(Json::as_f64).collect();
        let workload = record["workload"].as_str().unwrap();
        let size = record["size"].as_u64().unwrap() as usize;
        // Every embedded workload is timed; a figure in another unit would not compare.
        let unit = record["unit"].as_str().unwrap_or("ms");
        assert_eq!(unit, "ms", "db-bench.mjs measured {workload} in {unit}, triplite's figure is in ms");
        sink.add(workload, size, "triplit", &samples, "ms");
        finished += 1;
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    if !status.success() {
        let why = if started.elapsed() >= plan.peer_limit - Duration::from_secs(1) {
            format!("did not finish within {} s", plan.peer_limit.as_secs())
        } else {
            format!("failed ({status}): {}", stderr.lines().last().unwrap_or(""))
        };
        sink.note(format!(
            "Triplit @triplit/db at {} todos: {why}; {finished} of its workloads were measured",
            run.size
        ));
    }
}
