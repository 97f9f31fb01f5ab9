#!/usr/bin/env bash
# Cluster benchmark (make bench-cluster): SIGKILL -> replacement ready, and
# idle rolling-restart time for 2 and 4 workers. Figures go in
# docs/PERFORMANCE.md ("Cluster"). Usage: scripts/bench-cluster.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-20}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p reference-server --bin reference-server --example bench_cluster
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -sr)"
echo "binary:  $target/release/reference-server (release), $rounds rounds each"
"$target/release/examples/bench_cluster" "$target/release/reference-server" "$rounds"
