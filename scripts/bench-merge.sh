#!/usr/bin/env bash
# make bench-merge (after `make release`): what `harness merge` costs. For a
# run of REQUESTS requests split into N shards (N = 2, 4, 8 at 1,000,000
# requests; N = 4 at 250,000 over the same 500 s to show that memory does
# not grow with requests: like a single run's, it follows the run's seconds
# and its shoppers, 30,000 here), synthesizes the shard folders with the synth_shards example
# (real ledger, histograms and summary.json, generated attempts; not timed)
# and times the merge: wall seconds and peak RSS (/usr/bin/time). The
# scenario is smoke.json without its audit (there is no shop to audit).
# Figures and machine go in docs/PERFORMANCE.md ("Merging shards").
# Env: CARGO_TARGET_DIR, BENCH_DIR (where the scratch folder goes, default
# $TMPDIR or /tmp; ~400 MB at 1M, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR=${CARGO_TARGET_DIR:-$(pwd)/target}
BIN=$TARGET_DIR/release/harness
SYNTH=$TARGET_DIR/release/examples/synth_shards
for bin in "$BIN" "$SYNTH"; do
    if [ ! -x "$bin" ]; then
        echo "$0: $bin not found: run 'make release' and 'cargo build --release -p harness --example synth_shards' first" >&2
        exit 2
    fi
done
if [ ! -x /usr/bin/time ]; then
    echo "$0: /usr/bin/time is needed for peak RSS (apt-get install time)" >&2
    exit 2
fi
mkdir -p "${BENCH_DIR:-${TMPDIR:-/tmp}}"
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/bench-merge.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
python3 - "$WORK/scenario.json" <<'PY'
import json, sys
s = json.load(open("scenarios/smoke.json"))
s.pop("audit", None)
json.dump(s, open(sys.argv[1], "w"), indent=2)
PY

printf '%-10s %-7s %-7s %-10s %-14s %-12s %s\n' requests shards run_s merge_s peak_rss_mib ledger_lines verdict
# requests, shards, arrival rate (/s): every run lasts 500 s.
for case in "250000 4 500" "1000000 4 2000" "1000000 2 2000" "1000000 8 2000"; do
    read -r requests shards rate <<<"$case"
    dir=$WORK/r$requests-n$shards
    "$SYNTH" "$WORK/scenario.json" "$dir" "$shards" "$requests" "$rate" >/dev/null
    inputs=()
    for ((k = 0; k < shards; k++)); do inputs+=("$dir/shard-$k"); done
    code=0
    /usr/bin/time -f '%e %M' -o "$dir/time.txt" "$BIN" merge "$dir/merged" "${inputs[@]}" >"$dir/merge.log" 2>&1 || code=$?
    read -r secs rss_kb <"$dir/time.txt"
    lines=$(($(wc -l <"$dir/merged/ledger.csv") - 1))
    verdict=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["verdict"])' "$dir/merged/summary.json")
    printf '%-10s %-7s %-7s %-10s %-14s %-12s %s (exit %s)\n' "$requests" "$shards" "$((requests / rate))" "$secs" "$((rss_kb / 1024))" "$lines" "$verdict" "$code"
    rm -rf "$dir"
done
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
