#!/usr/bin/env bash
# The published benchmarks in one command: triplite, Triplit 1.x (the npm packages pinned in
# benches/triplit-harness, installed into target/triplit-harness on first use) and raw SQLite,
# every workload in one run on this machine.
#
#   bash benches/compare/run.sh [--quick] [--out FILE] [--only embedded|live|network]
#
# Writes FILE (default docs/benchmarks/results.json: every figure), FILE's .md (the table, with
# ratios) and one SVG chart per workload beside it. --quick: small sizes, few repetitions (CI).
# Needs cargo, node and npm; a progress line per workload goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in cargo node npm; do
  command -v "$tool" >/dev/null || { echo "benches/compare/run.sh needs $tool" >&2; exit 1; }
done
# The server binary the network workloads start, and the bench itself, both optimized.
cargo build --release --quiet --bin triplite
exec cargo bench --quiet --bench compare -- "$@"
