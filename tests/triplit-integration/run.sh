#!/usr/bin/env bash
# Runs one file of Triplit's integration tests (after setup.sh) against `triplite serve`, or against
# the real Triplit server with SERVER=triplit.
#   tests/triplit-integration/run.sh FILE [vitest args]      FILE: sessions, outbox, http, ...
# TRIPLITE_BIN: the binary (default target/release/triplite; build it with `cargo build --release`).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$root/target/triplit-integration"
file="${1:?usage: run.sh FILE [vitest args]}"; shift
file="${file#tests/}"; file="${file%.spec.ts}"
export TRIPLITE_BIN="${TRIPLITE_BIN:-$root/target/release/triplite}"
export TRIPLIT_IT_SERVER="${SERVER:-triplite}"
export TRIPLITE_LOG_DIR="$work/logs/$TRIPLIT_IT_SERVER/$file"
rm -rf "$TRIPLITE_LOG_DIR" && mkdir -p "$TRIPLITE_LOG_DIR"
cd "$work"
timeout "${TIMEOUT:-300}" npx vitest run "tests/$file.spec.ts" --reporter=verbose --no-color "$@"
status=$?
# Servers a test left running (it never disposed of them), by the pids they were started with.
if [ -f "$TRIPLITE_LOG_DIR/pids" ]; then
  while read -r pid; do
    if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "triplite.* serve"; then kill -9 "$pid"; fi
  done < "$TRIPLITE_LOG_DIR/pids"
fi
exit $status
