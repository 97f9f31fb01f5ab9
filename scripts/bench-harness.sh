#!/usr/bin/env bash
# Harness benchmark (make bench-harness): how fast and how small the load
# generator is, next to wrk, in the same run.
#   1. a trivial server: nginx (Debian), one worker, `return 200 "ok"`,
#      pinned to one core; generators pinned to the other;
#   2. wrk -t1 -c64: its request rate (closed loop, 64 keep-alive connections),
#      and oha -c 64's when oha is installed (cargo install oha);
#   3. the harness with a 64-connection keep-alive pool on an open schedule at
#      rising arrival rates: the rate it achieves, its schedule slip, CPU time
#      per request (user+sys / requests), RSS at the end of the traffic
#      (summary.json run.traffic_peak_rss_mb: the generator's own cost) and
#      the process's peak RSS (which adds the ledger read back for
#      attribution and the report after the traffic), with the full ledger
#      (ledger.csv, histograms, events) written. Its max rate is the highest
#      achieved rate whose slip p99 stayed under 10 ms;
#   4. peak RSS with 30,000 shoppers active at once (each thinks 20 s between
#      two requests on a 256-connection pool);
#   5. over TLS (the same nginx, a second server block with `ssl` and a
#      throwaway openssl certificate): wrk -t1 -c64 https keep-alive next to
#      the harness (pool 64, verifying against the CA), and a new connection
#      per request (full handshakes) next to wrk -H "Connection: close": rate,
#      CPU µs/request and the ratio to wrk's in the same run, and the share of
#      requests nginx saw on resumed sessions ($ssl_session_reused); and
#      keep-alive TLS at matched rates: wrk slowed by its Lua delay() hook,
#      the harness at the rate wrk reached, CPU per request side by side.
# Env: BENCH_DURATION (s per harness rate, default 3), BENCH_RATES (arrivals/s,
#      default "20000 30000 ... 250000", stops at the first it cannot hold), BENCH_PORT (default 18280;
#      TLS on BENCH_PORT+1), BENCH_TLS_RATES (keep-alive TLS, default "20000 30000 40000 60000 80000"),
#      BENCH_HANDSHAKE_RATES (new connection per request, default "500 1000 1500 2000 3000 4000"),
#      BENCH_MATCH_DELAYS (wrk Lua delay() in ms for the rate-matched keep-alive TLS pairs, default "1 2 3 4"),
#      BENCH_MATCH_REPS (pairs per delay, default 3),
#      BENCH_SKIP_PLAIN=1 (only the TLS rows), CARGO_TARGET_DIR. Prints Markdown tables for docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${BENCH_DURATION:-3}
RATES=${BENCH_RATES:-"20000 30000 40000 60000 80000 100000 110000 120000 130000 150000 200000 250000"}
PORT=${BENCH_PORT:-18280}
TLS_PORT=$((PORT + 1))
FULL_PORT=$((PORT + 2))
CLOSE_PORT=$((PORT + 3))
TLS_RATES=${BENCH_TLS_RATES:-"20000 30000 40000 60000 80000"}
HS_RATES=${BENCH_HANDSHAKE_RATES:-"500 1000 1500 2000 3000 4000"}
MATCH_DELAYS=${BENCH_MATCH_DELAYS:-"1 2 3 4"}
MATCH_REPS=${BENCH_MATCH_REPS:-3}
TARGET_DIR=${CARGO_TARGET_DIR:-$(pwd)/target}
BIN=$TARGET_DIR/release/harness

need() {
    command -v "$1" >/dev/null && return
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing $2 (apt-get)"
        apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }
    fi
    command -v "$1" >/dev/null || { echo "bench-harness: needs $1 (Debian package $2)" >&2; exit 2; }
}
need wrk wrk
need nginx nginx-light
need taskset util-linux
need curl curl
need openssl openssl
[ -x /usr/bin/time ] || need /usr/bin/time time

cargo build --release -q -p harness --bin harness

if [ "$(nproc)" -ge 2 ]; then SERVER_CPU=1; CLIENT_CPU=0; else SERVER_CPU=0; CLIENT_CPU=0; fi
WORK=$(mktemp -d)
NGINX_PID=""
cleanup() {
    [ -n "$NGINX_PID" ] && kill -QUIT "$NGINX_PID" 2>/dev/null || true
    sleep 0.3
    [ -n "$NGINX_PID" ] && kill -KILL "$NGINX_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/nginx/logs" "$WORK/pki"
# A throwaway CA and a certificate for 127.0.0.1 (P-256, as a shop's would be).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
    -keyout "$WORK/pki/ca.key" -out "$WORK/pki/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$WORK/pki/server.key" -out "$WORK/pki/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$WORK/pki/ext.cnf"
openssl x509 -req -in "$WORK/pki/server.csr" -CA "$WORK/pki/ca.pem" -CAkey "$WORK/pki/ca.key" -CAcreateserial \
    -days 2 -extfile "$WORK/pki/ext.cnf" -out "$WORK/pki/server.pem" 2>/dev/null
# An https server block on port $1 answering "ok", with extra directives $2.
tls_server() {
    cat <<EOF
    server {
        listen 127.0.0.1:$1 ssl backlog=4096;
        ssl_certificate $WORK/pki/server.pem;
        ssl_certificate_key $WORK/pki/server.key;
        ${2:-}
        access_log $WORK/nginx/logs/tls.log reused buffer=256k flush=1s;
        location / { return 200 "ok"; }
    }
EOF
}
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$PORT backlog=4096;
        location / { return 200 "ok"; }
    }
    # One access-log line per request: "r" when its connection resumed a session.
    log_format reused \$ssl_session_reused;
    # Sessions resumable (nginx's default: tickets).
$(tls_server "$TLS_PORT")
    # No session resumption at all: every new connection of either
    # generator pays a full handshake (wrk resumes sessions when it can).
$(tls_server "$FULL_PORT" "ssl_session_tickets off; ssl_session_cache off;")
    # Sessions resumable, but no keep-alive: every response closes its
    # connection (the harness's shoppers reconnect and resume).
$(tls_server "$CLOSE_PORT" "keepalive_timeout 0;")
}
EOF
# Raise the fd limit so nginx can hold the 30,000-shopper run's pool.
ulimit -n "$(ulimit -Hn)"
taskset -c "$SERVER_CPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
NGINX_PID=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.05; done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/" || { echo "bench-harness: nginx did not start" >&2; exit 1; }

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(uname -r)"
echo "server: nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') (1 worker) on cpu $SERVER_CPU; generators on cpu $CLIENT_CPU"
echo

if [ "${BENCH_SKIP_PLAIN:-0}" != 1 ]; then
# --- wrk ----------------------------------------------------------------------
/usr/bin/time -f "%U %S %M" -o "$WORK/wrk.time" \
    taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d"${DUR}s" "http://127.0.0.1:$PORT/" >"$WORK/wrk.txt"
WRK_RPS=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/wrk.txt")
WRK_REQS=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
read -r WU WS WM <"$WORK/wrk.time"
WRK_US=$(awk -v u="$WU" -v s="$WS" -v n="$WRK_REQS" 'BEGIN {printf "%.2f", (u+s)*1e6/n}')
WRK_MB=$(awk -v m="$WM" 'BEGIN {printf "%.1f", m/1024}')

# --- oha, if present (not packaged by Debian; `cargo install oha`) ------------
OHA_ROW=""
if command -v oha >/dev/null; then
    /usr/bin/time -f "%U %S %M" -o "$WORK/oha.time" \
        taskset -c "$CLIENT_CPU" oha -z "${DUR}s" -c 64 --no-tui "http://127.0.0.1:$PORT/" >"$WORK/oha.txt" 2>&1 || true
    OHA_RPS=$(awk '/Requests\/sec:/ {printf "%.0f", $2; exit}' "$WORK/oha.txt")
    OHA_OK=$(awk '/\[200\] / {print $2; exit}' "$WORK/oha.txt")
    read -r OU OS OM <"$WORK/oha.time"
    if [ -n "$OHA_RPS" ] && [ -n "$OHA_OK" ]; then
        OHA_US=$(awk -v u="$OU" -v s="$OS" -v n="$OHA_OK" 'BEGIN {printf "%.2f", (u+s)*1e6/n}')
        OHA_ROW="| oha -c 64 (closed loop) | - | $OHA_RPS | - | $OHA_US | - | $(awk -v m="$OM" 'BEGIN {printf "%.1f", m/1024}') MB |"
    else
        echo "bench-harness: oha ran but its output was not understood:" >&2
        cat "$WORK/oha.txt" >&2
    fi
else
    echo "oha: not installed, no row (cargo install oha to add one)"
fi

# --- harness at rising rates ------------------------------------------------
scenario() { # name shoppers rate journey-json pool think-json
    cat <<EOF
{
  "name": "$1",
  "seed": 1,
  "target": {"base_url": "http://127.0.0.1:$PORT", "ready_timeout": "5s"},
  "shoppers": $2,
  "arrival": [{"duration": "$(awk -v n="$2" -v r="$3" 'BEGIN {printf "%.3f", n/r + 1}')s", "rate": $3}],
  "arrival_process": "uniform",
  "think": $6,
  "connections": {"model": "pool", "size": $5, "idle_timeout": "30s"},
  "journeys": [{"name": "j", "steps": $4}]
}
EOF
}

ONE_STEP='[{"name": "get", "path": "/"}]'
echo "| generator | offered rate | achieved req/s | slip p99 | CPU µs/request | RSS at end of traffic | peak RSS (with report) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
echo "| wrk -t1 -c64 (closed loop) | - | $WRK_RPS | - | $WRK_US | - | $WRK_MB MB |"
[ -n "$OHA_ROW" ] && echo "$OHA_ROW"
BEST=0
for RATE in $RATES; do
    N=$(awk -v r="$RATE" -v d="$DUR" 'BEGIN {printf "%d", r*d}')
    scenario "bench-$RATE" "$N" "$RATE" "$ONE_STEP" 64 '{"kind": "none"}' >"$WORK/s.json"
    /usr/bin/time -f "%U %S %M" -o "$WORK/h.time" \
        taskset -c "$CLIENT_CPU" "$BIN" run "$WORK/s.json" --quiet --out "$WORK/run-$RATE" >"$WORK/h.txt" 2>&1 || true
    S="$WORK/run-$RATE/summary.json"
    [ -f "$S" ] || { echo "bench-harness: no summary at rate $RATE:"; cat "$WORK/h.txt"; exit 1; }
    read -r ATT DUR_S OK SLIP TRAFFIC_MB <<<"$(python3 -c "
import json,sys; s=json.load(open('$S'))
print(s['totals']['attempts'], s['run']['duration_s'], s['totals']['ok'], s['schedule_slip']['p99_ms'],
      '%.1f' % s['run']['traffic_peak_rss_mb'])")"
    read -r HU HS HM <"$WORK/h.time"
    ACH=$(awk -v n="$ATT" -v d="$DUR_S" 'BEGIN {printf "%.0f", n/d}')
    US=$(awk -v u="$HU" -v s="$HS" -v n="$ATT" 'BEGIN {printf "%.2f", (u+s)*1e6/n}')
    MB=$(awk -v m="$HM" 'BEGIN {printf "%.1f", m/1024}')
    LEDGER=$(($(wc -l <"$WORK/run-$RATE/ledger.csv") - 1))
    [ "$LEDGER" = "$ATT" ] || echo "bench-harness: ledger has $LEDGER records for $ATT attempts" >&2
    echo "| harness, pool 64 (open model, full ledger) | $RATE/s | $ACH ($OK ok) | ${SLIP} ms | $US | $TRAFFIC_MB MB | $MB MB |"
    # On schedule: slip p99 under 10 ms and at least 97% of the offered rate.
    if awk -v s="$SLIP" -v a="$ACH" -v r="$RATE" 'BEGIN {exit !(s < 10 && a >= 0.97 * r)}'; then BEST=$ACH; else break; fi
done
echo
echo "harness max rate on schedule (slip p99 < 10 ms, >= 97% of offered): $BEST req/s; wrk: $WRK_RPS req/s"

# --- 30,000 shoppers active -------------------------------------------------
TWO_STEPS='[{"name": "first", "path": "/"}, {"name": "second", "path": "/"}]'
scenario "bench-30k" 30000 10000 "$TWO_STEPS" 256 '{"kind": "constant", "duration": "20s"}' >"$WORK/s30k.json"
/usr/bin/time -f "%U %S %M" -o "$WORK/h30k.time" \
    taskset -c "$CLIENT_CPU" "$BIN" run "$WORK/s30k.json" --quiet --out "$WORK/run-30k" >"$WORK/h30k.txt" 2>&1 || true
read -r _ _ M30 <"$WORK/h30k.time"
read -r PEAK T30 <<<"$(python3 -c "
import json; r=json.load(open('$WORK/run-30k/summary.json'))['run']
print(r['peak_active_shoppers'], '%.1f' % r['traffic_peak_rss_mb'])")"
echo "30,000 shoppers: peak active $PEAK, RSS at end of traffic $T30 MB, peak RSS (with report) $(awk -v m="$M30" 'BEGIN {printf "%.1f", m/1024}') MB"
fi

# --- TLS --------------------------------------------------------------------
TLS_LOG="$WORK/nginx/logs/tls.log"
# Lines nginx logged so far (its access log is flushed every second: wait).
mark() { sleep 1.2; if [ -f "$TLS_LOG" ]; then wc -l <"$TLS_LOG"; else echo 0; fi; }
# The share of requests logged since `mark` whose connection resumed a session.
resumed_since() { # mark
    sleep 1.2
    tail -n +"$(($1 + 1))" "$TLS_LOG" | awk '{n++; if ($1 == "r") r++} END {printf "%.0f%%", n ? 100*r/n : 0}'
}
# wrk over https; prints "req/s µs-per-request".
wrk_tls() { # name port extra-args...
    local name=$1 port=$2
    shift 2
    /usr/bin/time -f "%U %S %M" -o "$WORK/$name.time" \
        taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d"${DUR}s" "$@" "https://127.0.0.1:$port/" >"$WORK/$name.txt"
    local rps reqs u s m
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/$name.txt")
    reqs=$(awk '/requests in/ {print $1}' "$WORK/$name.txt")
    read -r u s m <"$WORK/$name.time"
    echo "$rps $(awk -v u="$u" -v s="$s" -v n="$reqs" 'BEGIN {printf "%.2f", (u+s)*1e6/n}')"
}
# One harness run over TLS; prints "achieved ok slip µs-per-request full
# resumed traffic-µs-per-request": the first CPU figure is the whole
# process's (start-up, the ledger read back and the report included), the
# last only the traffic's (summary.json run.traffic_cpu_s), which is what
# wrk's whole-process figure is.
harness_tls() { # name shoppers rate connections-json [port] [steps per shopper]
    local dur_s steps
    dur_s=$(awk -v n="$2" -v r="$3" 'BEGIN {printf "%.3f", n/r + 1}')
    steps=$(seq 1 "${6:-1}" | awk '{printf "%s{\"name\": \"get %d\", \"path\": \"/\"}", (NR > 1 ? ", " : ""), $1}')
    printf '{"name": "%s", "seed": 1,
  "target": {"base_url": "https://127.0.0.1:%s", "ca_file": "%s", "ready_timeout": "5s"},
  "shoppers": %s, "arrival": [{"duration": "%ss", "rate": %s}], "arrival_process": "uniform",
  "connections": %s, "journeys": [{"name": "j", "steps": [%s]}]}\n' \
        "$1" "${5:-$TLS_PORT}" "$WORK/pki/ca.pem" "$2" "$dur_s" "$3" "$4" "$steps" >"$WORK/$1.json"
    /usr/bin/time -f "%U %S %M" -o "$WORK/$1.time" \
        taskset -c "$CLIENT_CPU" "$BIN" run "$WORK/$1.json" --quiet --out "$WORK/run-$1" >"$WORK/$1.txt" 2>&1 || true
    local S="$WORK/run-$1/summary.json"
    if [ ! -f "$S" ]; then
        echo "bench-harness: no summary for $1:" >&2
        cat "$WORK/$1.txt" >&2
        exit 1
    fi
    local att dur ok slip full res tcpu u s m
    read -r att dur ok slip full res tcpu <<<"$(python3 -c "
import json; s=json.load(open('$S'))
print(s['totals']['attempts'], s['run']['duration_s'], s['totals']['ok'], s['schedule_slip']['p99_ms'],
      s['tls']['handshakes_full'], s['tls']['handshakes_resumed'], s['run']['traffic_cpu_s'])")"
    read -r u s m <"$WORK/$1.time"
    echo "$(awk -v n="$att" -v d="$dur" 'BEGIN {printf "%.0f", n/d}') $ok $slip" \
        "$(awk -v u="$u" -v s="$s" -v n="$att" 'BEGIN {printf "%.2f", (u+s)*1e6/n}') $full $res" \
        "$(awk -v c="$tcpu" -v n="$att" 'BEGIN {printf "%.2f", c*1e6/n}')"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
held() { awk -v s="$1" -v a="$2" -v r="$3" 'BEGIN {exit !(s < 10 && a >= 0.97 * r)}'; }

echo
echo "TLS: nginx on $TLS_PORT (sessions resumable) and $FULL_PORT (no resumption), ECDSA P-256 certificate;"
echo "the harness verifies it against the CA, wrk does not verify."
echo
echo "CPU µs/request: the harness's during its traffic (summary.json run.traffic_cpu_s), then in brackets its"
echo "whole process's (start-up, ledger read back, report); wrk's whole process. Ratios use the first."
echo
echo "| generator | offered rate | achieved req/s | slip p99 | CPU µs/request | x wrk CPU/request | requests on resumed sessions (nginx) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
M=$(mark)
read -r WK_RPS WK_US <<<"$(wrk_tls wrk-tls-ka "$TLS_PORT")"
echo "| wrk -t1 -c64 https keep-alive (closed loop) | - | $WK_RPS | - | $WK_US | 1.00 | $(resumed_since "$M") |"
for RATE in $TLS_RATES; do
    N=$(awk -v r="$RATE" -v d="$DUR" 'BEGIN {printf "%d", r*d}')
    M=$(mark)
    read -r ACH OK SLIP US FULL RES TUS <<<"$(harness_tls "tls-ka-$RATE" "$N" "$RATE" '{"model": "pool", "size": 64, "idle_timeout": "30s"}')"
    echo "| harness https, pool 64 (open model, full ledger) | $RATE/s | $ACH ($OK ok) | ${SLIP} ms | $TUS ($US) | $(ratio "$TUS" "$WK_US") | $(resumed_since "$M") ($FULL full, $RES resumed handshakes) |"
    held "$SLIP" "$ACH" "$RATE" || break
done
# Rate-matched: CPU per request falls as the rate rises (more requests per
# epoll wake-up, ACKs riding on requests), so wrk's closed loop at its own
# maximum and the harness's open schedule at a lower rate are not the same
# work. wrk's documented Lua hook delay() holds each of its 64 connections
# for N ms between a response and the next request, which caps its rate;
# the harness then runs at the rate wrk achieved. Each pair BENCH_MATCH_REPS
# times, interleaved; the ratio is the median of the pairs'.
echo
echo "Rate-matched keep-alive TLS: wrk -t1 -c64 with a Lua delay() of N ms per request, then the harness"
echo "(pool 64) at the rate wrk achieved; $MATCH_REPS pairs per N, ratio = median of the pairs'."
echo
echo "| wrk delay() | wrk req/s | wrk CPU µs/request | harness offered | harness achieved | harness slip p99 | harness CPU µs/request traffic (whole process) | harness / wrk (pair) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
MATCH_SUMMARY=""
for D in $MATCH_DELAYS; do
    echo "function delay() return $D end" >"$WORK/delay.lua"
    RATIOS=""
    for REP in $(seq 1 "$MATCH_REPS"); do
        read -r MW_RPS MW_US <<<"$(wrk_tls "wrk-match-$D-$REP" "$TLS_PORT" -s "$WORK/delay.lua")"
        RATE=$(awk -v r="$MW_RPS" 'BEGIN {printf "%d", r}')
        N=$(awk -v r="$RATE" -v d="$DUR" 'BEGIN {printf "%d", r*d}')
        read -r ACH OK SLIP US FULL RES TUS <<<"$(harness_tls "tls-match-$D-$REP" "$N" "$RATE" '{"model": "pool", "size": 64, "idle_timeout": "30s"}')"
        R=$(ratio "$TUS" "$MW_US")
        RATIOS="$RATIOS $R"
        echo "| $D ms | $MW_RPS | $MW_US | $RATE/s | $ACH ($OK ok) | ${SLIP} ms | $TUS ($US) | $R |"
    done
    MED=$(echo "$RATIOS" | tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
    MATCH_SUMMARY="$MATCH_SUMMARY delay ${D}ms: median ${MED}x;"
done
echo
echo "rate-matched keep-alive TLS, harness CPU/request over wrk's (target <= 1.3):$MATCH_SUMMARY"
echo
echo "| generator | offered rate | achieved req/s | slip p99 | CPU µs/request | x wrk CPU/request | requests on resumed sessions (nginx) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
M=$(mark)
read -r WC_RPS WC_US <<<"$(wrk_tls wrk-tls-close "$FULL_PORT" -H "Connection: close")"
echo "| wrk -t1 -c64 https, Connection: close, server without resumption (full handshakes) | - | $WC_RPS | - | $WC_US | 1.00 | $(resumed_since "$M") |"
for RATE in $HS_RATES; do
    N=$(awk -v r="$RATE" -v d="$DUR" 'BEGIN {printf "%d", r*d}')
    M=$(mark)
    read -r ACH OK SLIP US FULL RES TUS <<<"$(harness_tls "tls-hs-$RATE" "$N" "$RATE" '{"model": "per_shopper", "tls_resumption": false}' "$FULL_PORT")"
    echo "| harness https, new connection per request, tls_resumption false | $RATE/s | $ACH ($OK ok) | ${SLIP} ms | $TUS ($US) | $(ratio "$TUS" "$WC_US") | $(resumed_since "$M") ($FULL full, $RES resumed handshakes) |"
    held "$SLIP" "$ACH" "$RATE" || break
done
M=$(mark)
read -r WR_RPS WR_US <<<"$(wrk_tls wrk-tls-close-res "$TLS_PORT" -H "Connection: close")"
echo "| wrk -t1 -c64 https, Connection: close, sessions resumable | - | $WR_RPS | - | $WR_US | 1.00 | $(resumed_since "$M") |"
# Each shopper is a browser with its own sessions: 10 requests each, on a
# server that closes after every response, so its first connection pays a
# full handshake and the next nine resume its own session.
RATE=$(echo "$HS_RATES" | awk '{print $2}')
N=$(awk -v r="$RATE" -v d="$DUR" 'BEGIN {printf "%d", r*d/10}')
M=$(mark)
read -r ACH OK SLIP US FULL RES TUS <<<"$(harness_tls "tls-hs-res-$RATE" "$N" "$((RATE / 10))" '{"model": "per_shopper"}' "$CLOSE_PORT" 10)"
echo "| harness https, 10 requests per shopper, server closes after each, resumption on | $RATE/s | $ACH ($OK ok) | ${SLIP} ms | $TUS ($US) | $(ratio "$TUS" "$WR_US") | $(resumed_since "$M") ($FULL full, $RES resumed handshakes) |"

