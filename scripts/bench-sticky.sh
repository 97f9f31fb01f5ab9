#!/usr/bin/env bash
# Sticky-balancing benchmark: what master-accepted sticky mode costs against
# the shared listener, same machine, same run, alternating the two modes.
# For 1 and 2 workers, wrk loads GET /healthz two ways: keep-alive (the master
# only sees each connection once) and `Connection: close` (every request is a
# new connection, so every request crosses the master: the worst case).
# wrk connects from one address (127.0.0.1), which sticky mode would send to
# one worker; the bench-only flag --bench-sticky-by-port hashes the source
# port too, so both modes spread over the same workers. Figures go in
# docs/PERFORMANCE.md ("Sticky").
# Env: BENCH_DURATION (s, default 8), BENCH_CONNECTIONS (default 32),
#      BENCH_ROUNDS (default 2), BENCH_NICE, CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

# On a shared box, raise our priority over other jobs' compiles as
# scripts/bench-shop.sh does: with autogroup scheduling, nice only counts
# within a session, so re-exec once in a session of our own and set its
# group's nice. BENCH_NICE=0 turns it off.
if [ "$(id -u)" = 0 ]; then NICE=${BENCH_NICE:--10}; else NICE=${BENCH_NICE:-0}; fi
if [ "$NICE" != 0 ] && [ -z "${BENCH_STICKY_SESSION:-}" ] && command -v setsid >/dev/null; then
    BENCH_STICKY_SESSION=1 exec setsid -w "$0" "$@"
fi
if [ "$NICE" != 0 ] && [ -w /proc/self/autogroup ]; then
    echo "$NICE" >/proc/self/autogroup 2>/dev/null || true
fi

DUR=${BENCH_DURATION:-8}
CONNS=${BENCH_CONNECTIONS:-32}
ROUNDS=${BENCH_ROUNDS:-2}
TARGET_DIR=${CARGO_TARGET_DIR:-$(pwd)/target}
BIN=$TARGET_DIR/release/reference-server
command -v wrk >/dev/null || { echo "bench-sticky: needs wrk (Debian package wrk)" >&2; exit 2; }
command -v curl >/dev/null || { echo "bench-sticky: needs curl" >&2; exit 2; }

cargo build --release -q -p reference-server --bin reference-server
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -sr)"
echo "wrk -t2 -c$CONNS -d${DUR}s --latency, GET /healthz, $ROUNDS rounds, modes alternating; server and wrk share the box"

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill -INT "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# start WORKERS MODE: start a server, set PORT, wait until it answers.
start() {
    local workers=$1 mode=$2 extra=()
    [ "$mode" = sticky ] && extra=(--balance sticky --bench-sticky-by-port)
    rm -f "$WORK"/shop.db*
    # Exists before the server starts, so the port lookup never races its creation.
    : >"$WORK/log"
    (cd "$WORK" && exec "$BIN" --listen 127.0.0.1:0 --admin 127.0.0.1:0 --workers "$workers" "${extra[@]}" 2>"$WORK/log") &
    SERVER_PID=$!
    for _ in $(seq 1 200); do
        PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$WORK/log" | head -1)
        [ -n "$PORT" ] && [ "$(grep -c ' ready in ' "$WORK/log")" -ge "$workers" ] && return 0
        sleep 0.05
    done
    echo "server did not start:" >&2; cat "$WORK/log" >&2; exit 1
}

stop() {
    kill -INT "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
}

# wrk's p99 in ms and req/s, as "RPS P99MS".
measure() {
    local out
    out=$(wrk -t2 -c"$CONNS" -d"${DUR}s" --latency "$@" "http://127.0.0.1:$PORT/healthz")
    local rps p99 errs
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.2f", v}')
    errs=$(echo "$out" | awk '/Socket errors|Non-2xx/ {print}' | tr '\n' ' ')
    echo "$rps $p99 ${errs:-no errors}"
}

printf "%-8s %-7s %-10s %12s %10s  %s\n" workers mode conns req/s p99_ms errors
for round in $(seq 1 "$ROUNDS"); do
    for workers in 1 2; do
        for conn in keep-alive close; do
            for mode in shared sticky; do
                start "$workers" "$mode"
                if [ "$conn" = close ]; then r=$(measure -H "Connection: close"); else r=$(measure); fi
                stop
                read -r rps p99 errs <<<"$r"
                printf "%-8s %-7s %-10s %12s %10s  %s (round %s)\n" "$workers" "$mode" "$conn" "$rps" "$p99" "$errs" "$round"
            done
        done
    done
done
