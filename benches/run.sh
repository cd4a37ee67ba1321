#!/usr/bin/env bash
# Runs every benchmark (release build) and prints one table. Build output goes to target/bench.log.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
echo "| benchmark | result | baseline (same run) | ratio | target |"
echo "|---|---|---|---|---|"
cargo bench --benches -q 2>target/bench.log | grep '^|' || { echo "benchmarks failed; see target/bench.log" >&2; tail -20 target/bench.log >&2; exit 1; }
