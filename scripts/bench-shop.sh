#!/usr/bin/env bash
# Shop benchmark (make bench-shop): what one worker costs.
#   1. the CPU cost flags on this machine (µs per work unit, ms per checkout);
#   2. requests/s of ONE worker for GET /products/{sku} with --inventory-cost 0,
#      against a bare hyper hello-world and the worker's own /healthz, each
#      alone on the same pinned core, loaded by wrk pinned to another core;
#   3. checkout throughput of one worker at the default --pricing-cost and
#      at --pricing-cost 0 (the store's own cost), and of two workers sharing
#      the store (wrk alternates add-item and checkout on fresh carts),
#      cross-checked against the orders the audit counts, with p99 and the
#      WAL's size at the end;
#   4. with STORE=redis: one worker's product-page and checkout throughput on
#      Redis (a private redis-server on 127.0.0.1, AOF, appendfsync always,
#      then everysec) against SQLite, in the same run, as ratios;
#   5. with STORE=fleet (4 as well): the fleet's throughput against one
#      cluster with the same total workers (2), as ratios in one run: one
#      cluster on SQLite, the same on Redis (the network store's cost),
#      the same on SQLite behind HAProxy (the LB hop's cost), and two hosts
#      of one worker each on Redis behind HAProxy (both: the fleet).
# Every server binds 127.0.0.1:0 and the script reads the port it got from
# its log, so nothing else on the box can collide with it.
# On a shared box, servers and wrk run at a raised priority (nice -10 when
# root, for the process and its session's scheduling group) so other jobs'
# compiles skew the figures less; BENCH_NICE=0 turns it off.
# Env: BENCH_DURATION (s, default 10), BENCH_CONNECTIONS (default 32),
#      BENCH_NICE, CARGO_TARGET_DIR, STORE (sqlite, default; redis adds 4;
#      fleet adds 4 and 5).
set -euo pipefail
cd "$(dirname "$0")/.."

# With the kernel's autogroup scheduling, a process's nice value only counts
# against processes of its own session, so raising the priority over other
# jobs on the box (e.g. compiles) takes a session of our own whose group
# nice we set. Re-exec once under setsid; BENCH_NICE=0 skips all of this.
if [ "$(id -u)" = 0 ]; then NICE=${BENCH_NICE:--10}; else NICE=${BENCH_NICE:-0}; fi
if [ "$NICE" != 0 ] && [ -z "${BENCH_SHOP_SESSION:-}" ] && command -v setsid >/dev/null; then
    BENCH_SHOP_SESSION=1 exec setsid -w "$0" "$@"
fi
if [ "$NICE" != 0 ] && [ -w /proc/self/autogroup ]; then
    echo "$NICE" >/proc/self/autogroup 2>/dev/null || true
fi

DUR=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNECTIONS:-32}
TARGET_DIR=${CARGO_TARGET_DIR:-$(pwd)/target}
BIN=$TARGET_DIR/release/reference-server
HELLO=$TARGET_DIR/release/examples/hello
CPU=$TARGET_DIR/release/examples/shop_cpu

need() {
    command -v "$1" >/dev/null && return
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing $2 (apt-get)"
        apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }
    fi
    command -v "$1" >/dev/null || { echo "bench-shop: needs $1 (Debian package $2)" >&2; exit 2; }
}
need wrk wrk
need curl curl
need taskset util-linux

cargo build --release -q -p reference-server --bin reference-server --example hello --example shop_cpu

NPROC=$(nproc)
if [ "$NPROC" -ge 2 ]; then SERVER_CPU=0; CLIENT_CPU=1; else SERVER_CPU=0; CLIENT_CPU=0; fi
# Command prefixes, not functions: `nice` and `taskset` exec, so a server
# started in the background keeps $! as its own pid and can be signalled.
ON_SERVER_CPU=(nice -n "$NICE" taskset -c "$SERVER_CPU")
ON_CLIENT_CPU=(nice -n "$NICE" taskset -c "$CLIENT_CPU")
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# The address after "$2" in log file $1, once it appears (the server binds port 0).
addr_from_log() { # log key
    for _ in $(seq 1 200); do
        local a
        a=$(grep -o "$2 [0-9.]*:[0-9]*" "$1" 2>/dev/null | head -1 | awk '{print $NF}')
        [ -n "$a" ] && { echo "$a"; return 0; }
        sleep 0.05
    done
    echo "bench-shop: no '$2' line in $1:" >&2; cat "$1" >&2; exit 1
}

wait_up() { # url
    for _ in $(seq 1 200); do curl -sf -o /dev/null "$1" && return 0; sleep 0.05; done
    echo "bench-shop: $1 never answered" >&2; exit 1
}

stop() { # pid
    kill -INT "$1" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
    kill -KILL "$1" 2>/dev/null || true
}

# wrk's "Requests/sec:" figure for one run; its full output goes to $WORK/$name.txt.
load() { # name url [extra wrk args...]
    local name=$1 url=$2; shift 2
    "${ON_CLIENT_CPU[@]}" wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "$@" "$url" >"$WORK/$name.txt"
    if grep -q "Non-2xx" "$WORK/$name.txt"; then
        echo "bench-shop: $name got non-2xx answers:" >&2; cat "$WORK/$name.txt" >&2; exit 1
    fi
    awk '/Requests\/sec/ {print $2}' "$WORK/$name.txt"
}
p50() { awk '/ 50%/ {print $2}' "$WORK/$1.txt"; }

# Extra flags naming the store (empty: the SQLite file); section 4 sets it.
STORE_ARGS=()

start_shop() { # extra shop args... (WORKERS: default 1)
    : >"$WORK/server.log"
    "${ON_SERVER_CPU[@]}" "$BIN" --workers "${WORKERS:-1}" --listen 127.0.0.1:0 --admin 127.0.0.1:0 \
        --db "$WORK/shop.db" --reset-db "${STORE_ARGS[@]}" "$@" 2>"$WORK/server.log" &
    SHOP_PID=$!
    PIDS+=("$SHOP_PID")
    SHOP=$(addr_from_log "$WORK/server.log" "listening on")
    ADMIN=$(addr_from_log "$WORK/server.log" "admin on")
    wait_up "http://$SHOP/healthz"
}

echo "== machine"
echo "nproc: $NPROC; cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); kernel: $(uname -r)"
echo "load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the box skews every figure)"
echo "server pinned to cpu $SERVER_CPU, wrk pinned to cpu $CLIENT_CPU, both at nice $NICE ($(cat /proc/self/autogroup 2>/dev/null || echo 'no autogroup')); ${DUR}s per run"
echo
echo "== CPU cost flags on this machine"
"$CPU"
echo

echo "== one event loop, GET, $CONNS keep-alive connections"
"${ON_SERVER_CPU[@]}" "$HELLO" 127.0.0.1:0 2>"$WORK/hello.log" &
HELLO_PID=$!
PIDS+=("$HELLO_PID")
HELLO_ADDR=$(addr_from_log "$WORK/hello.log" "listening on")
wait_up "http://$HELLO_ADDR/"
HELLO_RPS=$(load hello "http://$HELLO_ADDR/")
# Background jobs of a script ignore SIGINT; hello has no drain anyway.
kill -TERM "$HELLO_PID" 2>/dev/null || true
wait "$HELLO_PID" 2>/dev/null || true

start_shop --inventory-cost 0
HEALTH_RPS=$(load healthz "http://$SHOP/healthz")
PRODUCT_RPS=$(load product "http://$SHOP/products/sku-0042")
stop "$SHOP_PID"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
printf "%-40s %10s req/s  p50 %s\n" "hyper hello-world" "$HELLO_RPS" "$(p50 hello)"
printf "%-40s %10s req/s  p50 %s  (%s of hello)\n" "worker GET /healthz (worker layer+axum)" "$HEALTH_RPS" \
    "$(p50 healthz)" "$(ratio "$HEALTH_RPS" "$HELLO_RPS")"
printf "%-40s %10s req/s  p50 %s  (%s of hello)\n" "worker GET /products/{sku} (+SQLite)" "$PRODUCT_RPS" \
    "$(p50 product)" "$(ratio "$PRODUCT_RPS" "$HELLO_RPS")"
echo

cat >"$WORK/checkout.lua" <<'LUA'
-- Each wrk thread has one connection and alternates: add an item to a fresh
-- cart, then check that cart out, so requests/s = 2 x checkouts/s. The step
-- advances on each response (wrk may call request() once more than it
-- sends); repeating an add is harmless, it sets the line's quantity.
local threads = {}
function setup(thread)
    table.insert(threads, thread)
    thread:set("tid", #threads)
end
local n, adding = 1, true
function request()
    local cart = "bench-" .. tid .. "-" .. n
    local h = { ["Content-Type"] = "application/json" }
    if adding then
        return wrk.format("POST", "/carts/" .. cart .. "/items", h, '{"sku":"sku-0007","qty":1}')
    end
    return wrk.format("POST", "/checkout", h, '{"cart_id":"' .. cart .. '"}')
end
function response(status, headers, body)
    if status >= 300 then io.stderr:write("checkout bench: " .. status .. " " .. body .. "\n") end
    if not adding then n = n + 1 end
    adding = not adding
end
LUA

# checkout_load NAME URL CONNECTIONS [command prefix...]: wrk's add-item +
# checkout loop against URL; req/s into RPS, checkouts/s into CHECKOUTS,
# wrk's output in $WORK/checkout.txt.
checkout_load() {
    local name=$1 url=$2 conns=$3
    shift 3
    "$@" wrk -t"$conns" -c"$conns" -d"${DUR}s" --latency -s "$WORK/checkout.lua" "$url" \
        >"$WORK/checkout.txt" 2>"$WORK/checkout.err"
    if grep -q "Non-2xx" "$WORK/checkout.txt"; then
        echo "bench-shop: $name got non-2xx answers:" >&2; cat "$WORK/checkout.txt" "$WORK/checkout.err" >&2; exit 1
    fi
    RPS=$(awk '/Requests\/sec/ {print $2}' "$WORK/checkout.txt")
    CHECKOUTS=$(awk -v r="$RPS" 'BEGIN { printf "%.1f", r / 2 }')
}

# checkout_run NAME WORKERS CONNECTIONS PRICING_COST PINNED(yes|no)
checkout_run() {
    local name=$1 workers=$2 conns=$3 cost=$4 pinned=$5 server=("${ON_SERVER_CPU[@]}") client=("${ON_CLIENT_CPU[@]}")
    if [ "$pinned" = no ]; then server=(nice -n "$NICE"); client=(nice -n "$NICE"); fi
    : >"$WORK/server.log"
    rm -f "$WORK/shop.db" "$WORK/shop.db-wal" "$WORK/shop.db-shm"
    "${server[@]}" "$BIN" --workers "$workers" --listen 127.0.0.1:0 --admin 127.0.0.1:0 \
        --db "$WORK/shop.db" --reset-db "${STORE_ARGS[@]}" --pricing-cost "$cost" 2>"$WORK/server.log" &
    SHOP_PID=$!
    PIDS+=("$SHOP_PID")
    SHOP=$(addr_from_log "$WORK/server.log" "listening on")
    ADMIN=$(addr_from_log "$WORK/server.log" "admin on")
    wait_up "http://$SHOP/healthz"
    checkout_load "$name" "http://$SHOP" "$conns" "${client[@]}"
    local rps=$RPS orders wal
    orders=$(curl -sf "http://$ADMIN/audit" | grep -o '"order_id"' | wc -l)
    wal=$(stat -c %s "$WORK/shop.db-wal" 2>/dev/null || echo 0)
    stop "$SHOP_PID"
    awk -v n="$name" -v r="$rps" -v o="$orders" -v d="$DUR" -v w="$wal" \
        -v p50="$(awk '/ 50%/ {print $2}' "$WORK/checkout.txt")" -v p99="$(awk '/ 99%/ {print $2}' "$WORK/checkout.txt")" \
        'BEGIN { printf "%-46s %7.1f checkouts/s (audit: %.1f/s)  p50 %s  p99 %s  WAL %.0f MiB\n",
                 n, r / 2, o / d, p50, p99, w / 1048576 }'
}

echo "== checkout: wrk connections alternate add-item + checkout on fresh carts (req/s = 2 x checkouts/s)"
checkout_run "1 worker, default --pricing-cost, 4 conns" 1 4 5000 yes
checkout_run "1 worker, --pricing-cost 0, 4 conns" 1 4 0 yes
checkout_run "2 workers, --pricing-cost 0, 8 conns, unpinned" 2 8 0 no

case "${STORE:-sqlite}" in redis | fleet) ;; *) exit 0 ;; esac

echo
echo "== store: one worker on Redis vs SQLite (same run; product page --inventory-cost 0, checkout --pricing-cost 0, 4 conns)"
need redis-server redis-server
need redis-cli redis-tools
mkdir -p "$WORK/redis"
REDIS_PORT=""
for _ in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 20000))
    # Redis gets no pinning: on two cores it shares them with the worker and
    # wrk, as a Redis on the same host would.
    nice -n "$NICE" redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/redis" --save '' \
        --appendonly yes --appendfsync always --daemonize no --logfile "$WORK/redis/log" &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for _ in $(seq 1 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && { REDIS_PORT=$port; break; }
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.05
    done
    [ -n "$REDIS_PORT" ] && break
done
[ -n "$REDIS_PORT" ] || { echo "bench-shop: redis-server never came up:" >&2; cat "$WORK/redis/log" >&2; exit 1; }
echo "redis-server $(redis-server --version | awk '{print $3}') on 127.0.0.1:$REDIS_PORT, appendonly yes"

# store_pass LABEL: product-page req/s into PRODUCT, checkouts/s into CHECKOUTS.
store_pass() {
    start_shop --inventory-cost 0
    PRODUCT=$(load "product-$1" "http://$SHOP/products/sku-0042")
    stop "$SHOP_PID"
    checkout_run "1 worker, $1, --pricing-cost 0, 4 conns" 1 4 0 yes
    printf "%-46s %10s req/s  p50 %s\n" "1 worker GET /products/{sku}, $1" "$PRODUCT" "$(p50 "product-$1")"
}
STORE_ARGS=()
store_pass sqlite
SQLITE_PRODUCT=$PRODUCT SQLITE_CHECKOUTS=$CHECKOUTS
STORE_ARGS=(--store "redis://127.0.0.1:$REDIS_PORT/0")
store_pass "redis appendfsync always"
ALWAYS_PRODUCT=$PRODUCT ALWAYS_CHECKOUTS=$CHECKOUTS
redis-cli -p "$REDIS_PORT" config set appendfsync everysec >/dev/null
store_pass "redis appendfsync everysec"
echo
printf "Redis/SQLite, product page:  always %s  everysec %s\n" \
    "$(ratio "$ALWAYS_PRODUCT" "$SQLITE_PRODUCT")" "$(ratio "$PRODUCT" "$SQLITE_PRODUCT")"
printf "Redis/SQLite, checkout:      always %s  everysec %s\n" \
    "$(ratio "$ALWAYS_CHECKOUTS" "$SQLITE_CHECKOUTS")" "$(ratio "$CHECKOUTS" "$SQLITE_CHECKOUTS")"

[ "${STORE:-sqlite}" = fleet ] || exit 0

echo
echo "== fleet: 2 hosts x 1 worker on Redis behind HAProxy vs one cluster of 2 workers (same run; --inventory-cost 0, --pricing-cost 0, unpinned, $CONNS conns for pages, 8 for checkout)"
need haproxy haproxy
redis-cli -p "$REDIS_PORT" config set appendfsync everysec >/dev/null
UNPINNED=(nice -n "$NICE")
ON_SERVER_CPU=("${UNPINNED[@]}")
ON_CLIENT_CPU=("${UNPINNED[@]}")
REDIS=(--store "redis://127.0.0.1:$REDIS_PORT/0")
FRONT=""

# haproxy_in_front SERVER_ADDR...: a round-robin HTTP proxy with keep-alive
# to each server (as scripts/fleet.sh runs it); its address into FRONT.
haproxy_in_front() {
    local port cfg="$WORK/haproxy.cfg" i=0
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    {
        echo "global"
        echo "    maxconn 4096"
        echo "defaults"
        echo "    mode http"
        echo "    timeout connect 2s"
        echo "    timeout client 30s"
        echo "    timeout server 30s"
        echo "    option http-keep-alive"
        echo "frontend shop"
        echo "    bind 127.0.0.1:$port"
        echo "    default_backend hosts"
        echo "backend hosts"
        echo "    balance roundrobin"
        echo "    http-reuse safe"
        for a in "$@"; do i=$((i + 1)); echo "    server h$i $a"; done
    } >"$cfg"
    haproxy -c -q -f "$cfg" || { echo "bench-shop: haproxy refused $cfg" >&2; exit 1; }
    "${UNPINNED[@]}" haproxy -db -f "$cfg" </dev/null >"$WORK/haproxy.log" 2>&1 &
    HAPROXY_PID=$!
    PIDS+=("$HAPROXY_PID")
    FRONT=127.0.0.1:$port
    wait_up "http://$FRONT/healthz"
}

# HAProxy stops at once on SIGTERM (SIGINT, stop's signal, it ignores in -db mode).
stop_haproxy() {
    kill -TERM "$HAPROXY_PID" 2>/dev/null || true
    wait "$HAPROXY_PID" 2>/dev/null || true
}

# fleet_pass LABEL URL: product-page req/s and checkouts/s against URL.
fleet_pass() {
    local product
    product=$(load "fleet-$1" "$2/products/sku-0042")
    checkout_load "$1" "$2" 8 "${UNPINNED[@]}"
    printf "%-52s %10s req/s  p50 %-8s %7s checkouts/s  p99 %s\n" "$1" "$product" "$(p50 "fleet-$1")" \
        "$CHECKOUTS" "$(awk '/ 99%/ {print $2}' "$WORK/checkout.txt")"
    F_PRODUCT=$product F_CHECKOUTS=$CHECKOUTS
}

STORE_ARGS=()
WORKERS=2 start_shop --inventory-cost 0 --pricing-cost 0
fleet_pass "one cluster, 2 workers, SQLite, direct" "http://$SHOP"
BASE_PRODUCT=$F_PRODUCT BASE_CHECKOUTS=$F_CHECKOUTS
haproxy_in_front "$SHOP"
fleet_pass "one cluster, 2 workers, SQLite, behind HAProxy" "http://$FRONT"
LB_PRODUCT=$F_PRODUCT LB_CHECKOUTS=$F_CHECKOUTS
stop_haproxy
stop "$SHOP_PID"

STORE_ARGS=("${REDIS[@]}")
WORKERS=2 start_shop --inventory-cost 0 --pricing-cost 0
fleet_pass "one cluster, 2 workers, Redis, direct" "http://$SHOP"
REDIS_PRODUCT=$F_PRODUCT REDIS_CHECKOUTS=$F_CHECKOUTS
stop "$SHOP_PID"

# Two hosts of one worker each on the one Redis, as make fleet runs them.
HOSTS=()
HOST_PIDS=()
for h in a b; do
    start_shop --host-id "$h" --inventory-cost 0 --pricing-cost 0
    HOSTS+=("$SHOP")
    HOST_PIDS+=("$SHOP_PID")
done
haproxy_in_front "${HOSTS[@]}"
fleet_pass "fleet: 2 hosts x 1 worker, Redis, behind HAProxy" "http://$FRONT"
stop_haproxy
for p in "${HOST_PIDS[@]}"; do stop "$p"; done

echo
printf "against one cluster on SQLite, direct:  %-14s %-14s\n" "product page" "checkout"
printf "  + HAProxy hop (LB cost)               %-14s %-14s\n" \
    "$(ratio "$LB_PRODUCT" "$BASE_PRODUCT")" "$(ratio "$LB_CHECKOUTS" "$BASE_CHECKOUTS")"
printf "  Redis store (network store cost)      %-14s %-14s\n" \
    "$(ratio "$REDIS_PRODUCT" "$BASE_PRODUCT")" "$(ratio "$REDIS_CHECKOUTS" "$BASE_CHECKOUTS")"
printf "  fleet: both, 2 hosts x 1 worker       %-14s %-14s\n" \
    "$(ratio "$F_PRODUCT" "$BASE_PRODUCT")" "$(ratio "$F_CHECKOUTS" "$BASE_CHECKOUTS")"
