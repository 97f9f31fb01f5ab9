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

# Per-shard overhead: the same run of smoke.json against the release
# reference cluster (2 workers), unsharded and as `--shard 0/1` (one shard
# playing everything: the only difference is the sharding itself - the
# full schedule built and filtered, T waited for, the scenario copied),
# alternated ROUNDS times; the harness's CPU (user + sys) and peak RSS.
ROUNDS=${ROUNDS:-3}
SERVER_BIN=$TARGET_DIR/release/reference-server
if [ ! -x "$SERVER_BIN" ]; then
    echo "$0: $SERVER_BIN not found: skipping the per-shard overhead (make release builds it)" >&2
    exit 0
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
ADMIN=$(free_port)
setsid "$SERVER_BIN" --listen "127.0.0.1:$PORT" --admin "127.0.0.1:$ADMIN" --workers 2 --db "$WORK/shop.db" \
    >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill -KILL -- "-$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT
python3 - "$WORK/scenario.json" "$PORT" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
s["target"]["base_url"] = f"http://127.0.0.1:{sys.argv[2]}"
json.dump(s, open(sys.argv[1], "w"), indent=2)
PY
echo
printf '%-10s %-6s %-7s %-13s %s\n' mode round cpu_s peak_rss_mib verdict
for ((r = 1; r <= ROUNDS; r++)); do
    for mode in unsharded shard-0/1; do
        args=()
        if [ "$mode" != unsharded ]; then args=(--shard 0/1 --start-at "$(($(date +%s%3N) + 500))"); fi
        /usr/bin/time -f '%U %S %M' -o "$WORK/t.txt" "$BIN" run "$WORK/scenario.json" --quiet \
            --out "$WORK/run-$r" "${args[@]}" >"$WORK/run.log" 2>&1 || true
        read -r user sys rss_kb <"$WORK/t.txt"
        verdict=$(tail -n 1 "$WORK/run.log")
        printf '%-10s %-6s %-7s %-13s %s\n' "$mode" "$r" "$(python3 -c "print(round($user + $sys, 2))")" "$((rss_kb / 1024))" "${verdict%%;*}"
    done
done
