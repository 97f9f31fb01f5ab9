#!/usr/bin/env bash
# make fleet (issue 16; docs/FLEET.md): a fleet on one machine. Starts, on
# free loopback ports,
#   - redis-server (AOF, appendfsync always) with its data in the run folder,
#   - two reference clusters standing for two hosts, a and b (own masters,
#     ports and --host-id, so X-Worker-Id reads a-3 / b-5), both on that Redis,
#   - HAProxy in front (config generated into the run folder, health checks
#     on /healthz, the runtime API on a stats socket),
# checks each is up, then plays scenarios/fleet.json through HAProxy
# (`harness run`, attached to host a's master through its pid file; the
# harness launches nothing): a worker SIGKILL, the host-by-host fleet deploy
# (scripts/fleet-deploy.sh), host b SIGKILLed whole and restarted
# (scripts/fleet-kill-host.sh) and a Redis restart (scripts/redis-outage.sh).
# Everything it started is stopped again on exit, failure included.
# Exit code: the harness's (0 pass, 1 a gate failed, 2 invalid or could not
# start; docs/EXIT_CODES.md); 2 when the fleet itself could not start.
# `scripts/fleet.sh --selftest` (make fleet-selftest) starts the same fleet
# and checks fleet-deploy.sh's abort paths instead of running the harness:
# a host that never drains and one that never comes back.
# Env: CARGO_TARGET_DIR (where `make release` built), FLEET_OUT (default
# reports/fleet), FLEET_WORKERS (per host, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=fleet-lib.sh
. scripts/fleet-lib.sh

TARGET_DIR=${CARGO_TARGET_DIR:-$(pwd)/target}
HARNESS=$TARGET_DIR/release/harness
SERVER=$TARGET_DIR/release/reference-server
MODE=run
if [ "${1:-}" = --selftest ]; then MODE=selftest; fi
OUT=${FLEET_OUT:-reports/fleet}
if [ "$MODE" = selftest ]; then OUT=${FLEET_OUT:-reports/fleet-selftest}; fi
WORKERS=${FLEET_WORKERS:-2}
for bin in "$HARNESS" "$SERVER"; do
    [ -x "$bin" ] || { echo "$0: $bin not found: run 'make release' first (same CARGO_TARGET_DIR)" >&2; exit 2; }
done
for tool in haproxy redis-server redis-cli curl python3; do
    command -v "$tool" >/dev/null ||
        { echo "$0: needs $tool (make deps installs haproxy and redis-server on Debian)" >&2; exit 2; }
done

rm -rf "$OUT"
mkdir -p "$OUT/redis"
RUN=$(cd "$OUT" && pwd)
REDIS_PORT=$(free_port)
FRONT=$(free_port)
# HAProxy's built-in Prometheus exporter, scraped by the run (target.metrics).
STATS=$(free_port)
SOCK=$RUN/haproxy.sock
HOSTS=(a b)

log() { echo "fleet: $*"; }

# ---------------------------------------------------------------- cleanup
HAPROXY_PID=""
REDIS_PIDS=""
cleanup() {
    local code=$? id pid
    set +e
    [ -n "$HAPROXY_PID" ] && kill "$HAPROXY_PID" 2>/dev/null
    for id in "${HOSTS[@]}"; do
        [ -f "$RUN/hosts/$id/host.env" ] || continue
        pid=$(host_master "$RUN/hosts/$id") || continue
        kill -INT "$pid" 2>/dev/null
        wait_until 10 eval "! kill -0 $pid" || kill -KILL -- "-$pid" 2>/dev/null
        # A worker left behind by a killed master drains on its own; do not wait for it.
        pkill -KILL -g "$pid" 2>/dev/null
    done
    # The Redis restart fault starts a new redis-server: ask whoever answers now.
    pid=$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info server 2>/dev/null | tr -d '\r' |
        awk -F: '$1 == "process_id" {print $2}')
    for p in $REDIS_PIDS $pid; do kill "$p" 2>/dev/null; done
    [ -n "$HAPROXY_PID" ] && wait "$HAPROXY_PID" 2>/dev/null
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- redis
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$RUN/redis" --appendonly yes \
    --appendfsync always --save '' --logfile "$RUN/redis/redis.log" </dev/null >/dev/null 2>&1 &
REDIS_PIDS=$!
disown "$REDIS_PIDS"  # the Redis restart fault kills it; no "Killed" notice from bash
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | tr -d '\r')" = PONG ]; }
wait_until 10 redis_up || { log "redis-server did not answer on 127.0.0.1:$REDIS_PORT (see $RUN/redis/redis.log)"; exit 2; }
log "redis on 127.0.0.1:$REDIS_PORT (pid $REDIS_PIDS, appendfsync always)"

# ---------------------------------------------------------------- hosts
# One after the other: the first seeds the fresh Redis (two masters seed it
# once anyway, docs/SHOP_API.md).
declare -A PUBLIC_OF
for id in "${HOSTS[@]}"; do
    public=127.0.0.1:$(free_port)
    admin=127.0.0.1:$(free_port)
    PUBLIC_OF[$id]=$public
    fleet_host_setup "$RUN/hosts/$id" "$id" "$SERVER" "$public" "$admin" "redis://127.0.0.1:$REDIS_PORT/0" \
        --workers "$WORKERS"
    "$RUN/hosts/$id/start" || { log "host $id did not start (see $RUN/hosts/$id/server.log)"; exit 2; }
    wait_until 30 host_serving "$admin" "$public" || { log "host $id: not every worker ready"; exit 2; }
    if [ "$id" = a ]; then A_ADMIN=$admin; fi
    if [ "$id" = b ]; then B_ADMIN=$admin; fi
    log "host $id: master $(host_master "$RUN/hosts/$id"), $WORKERS workers on $public, admin $admin"
done

# ---------------------------------------------------------------- haproxy
cat > "$RUN/haproxy.cfg" <<EOF
# Generated by scripts/fleet.sh; docs/FLEET.md explains each line.
global
    stats socket $SOCK mode 600 level admin
    maxconn 4096

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    # Above the harness's 2 s idle timeout, so HAProxy never closes a
    # client connection the harness is about to reuse.
    timeout http-keep-alive 5s
    timeout http-request 10s
    # A connection refused (a host that just died, before the check
    # noticed) is tried again on another server; a request already sent
    # is never replayed (that is the client's call: idempotency keys).
    retries 3
    option redispatch 1
    option httpchk
    http-check send meth GET uri /healthz
    http-check expect status 200
    # Checks every 250 ms: a dead host is out after 2 failed checks, a
    # restarted one in after 2 good ones.
    # HAProxy keeps idle connections to a host for reuse; the reference
    # server closes one idle for its 5 s keep-alive timeout (racing a reuse)
    # and a draining worker waits for it. Half the idle ones are closed
    # every pool-purge-delay: 1 s keeps them well below 5 s.
    default-server inter 250ms fall 2 rise 2 pool-purge-delay 1s

frontend shop_in
    bind 127.0.0.1:$FRONT
    default_backend shop

# Prometheus text for the run's server charts (docs/FLEET.md): sessions and
# state per backend server. Debian's haproxy is built with the exporter.
frontend stats
    bind 127.0.0.1:$STATS
    http-request use-service prometheus-exporter if { path /metrics }

backend shop
    balance roundrobin
$(for id in "${HOSTS[@]}"; do echo "    server $id ${PUBLIC_OF[$id]} check"; done)
EOF
haproxy -c -q -f "$RUN/haproxy.cfg" || { log "haproxy refused $RUN/haproxy.cfg"; exit 2; }
haproxy -db -f "$RUN/haproxy.cfg" </dev/null >"$RUN/haproxy.log" 2>&1 &
HAPROXY_PID=$!
all_up() {
    local id
    for id in "${HOSTS[@]}"; do [ "$(hap_op_state "$SOCK" shop "$id")" = 2 ] || return 1; done
    curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$FRONT/healthz"
}
wait_until 15 all_up || { log "HAProxy did not see every host up (see $RUN/haproxy.log)"; exit 2; }
log "haproxy on 127.0.0.1:$FRONT (pid $HAPROXY_PID), every host up in its checks; runtime API $SOCK"

# ---------------------------------------------------------------- the self-test
# make fleet-selftest: fleet-deploy.sh's abort paths, on the same fleet,
# without the harness. Exit 0 when every check held, 1 otherwise.
if [ "$MODE" = selftest ]; then
    fails=0
    check() { if "$@"; then log "selftest ok: ${CHECK}"; else log "selftest FAILED: ${CHECK}"; fails=$((fails + 1)); fi; }
    pids_of() { host_workers "$(. "$RUN/hosts/$1/host.env"; echo "$ADMIN")" | cut -d' ' -f4-; }

    # 1. A host that never drains: long-lived streams through HAProxy hold
    # sessions to both hosts (round robin), so the deploy of host a must
    # give up after FLEET_DRAIN_TIMEOUT, leave a drained and untouched.
    STREAMS=()
    for _ in 1 2 3 4; do
        curl -sN --max-time 60 "http://127.0.0.1:$FRONT/stream?ms=200" >/dev/null 2>&1 &
        STREAMS+=($!)
    done
    held() { [ "$(hap_sessions "$SOCK" shop a)" -ge 1 ]; }
    wait_until 10 held || { log "selftest: no stream reached host a"; exit 2; }
    before=$(pids_of a)
    code=0
    FLEET_DRAIN_TIMEOUT=2 scripts/fleet-deploy.sh "$SOCK" shop "$RUN/hosts/a" "$RUN/hosts/b" \
        > "$RUN/selftest-drain.log" 2>&1 || code=$?
    kill "${STREAMS[@]}" 2>/dev/null || true
    wait "${STREAMS[@]}" 2>/dev/null || true
    CHECK="a host that never drains aborts the deploy with exit 1 (got $code)" check [ "$code" = 1 ]
    CHECK="the abort names host a and its sessions" check grep -q "ABORT at host a: still [0-9]* session" "$RUN/selftest-drain.log"
    CHECK="host a was not rolled" check [ "$(pids_of a)" = "$before" ]
    CHECK="host b was not touched (no line for it)" check eval '! grep -q "host b" "$RUN/selftest-drain.log"'
    CHECK="host a left drained in HAProxy" check eval 'hap "$SOCK" "show servers state shop" | awk '"'"'$4 == "a" {exit !($7 == 8)}'"'"
    hap_set "$SOCK" shop a ready

    # 2. A host that never comes back: host b's next start runs a build whose
    # workers crash at start (the master gives up); a --restart deploy of
    # b then a must stop at b with exit 1, leave a untouched, and the
    # frontend still serves (through a).
    sed -i 's# --workers # --test-crash-on-start --max-crashes 2 --workers #' "$RUN/hosts/b/start"
    before=$(pids_of a)
    code=0
    FLEET_UP_TIMEOUT=5 scripts/fleet-deploy.sh --restart "$SOCK" shop "$RUN/hosts/b" "$RUN/hosts/a" \
        > "$RUN/selftest-restart.log" 2>&1 || code=$?
    CHECK="a host that never comes back aborts the deploy with exit 1 (got $code)" check [ "$code" = 1 ]
    CHECK="the abort names host b" check grep -q "ABORT at host b" "$RUN/selftest-restart.log"
    CHECK="host a was not rolled" check [ "$(pids_of a)" = "$before" ]
    CHECK="HAProxy's check has host b down" check [ "$(hap_op_state "$SOCK" shop b)" = 0 ]
    CHECK="the frontend still serves" check curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$FRONT/healthz"
    log "selftest: $fails check(s) failed (logs $RUN/selftest-*.log)"
    [ "$fails" = 0 ]
    exit $?
fi

# ---------------------------------------------------------------- the run
# The scenario names 127.0.0.1:8080 (the frontend), 127.0.0.1:9090 (host
# a's admin, for the audit: one store, so one host's audit is the fleet's,
# and for host a's metrics), 127.0.0.1:9091 (host b's admin, its metrics),
# 127.0.0.1:8404 (HAProxy's exporter), Redis on 6390 and reports/fleet/
# (this run folder).
sed -e "s#127.0.0.1:8080#127.0.0.1:$FRONT#g" -e "s#127.0.0.1:9090#$A_ADMIN#g" \
    -e "s#127.0.0.1:9091#$B_ADMIN#g" -e "s#127.0.0.1:8404#127.0.0.1:$STATS#g" \
    -e "s#\"6390\"#\"$REDIS_PORT\"#" \
    -e "s#reports/fleet/#$RUN/#g" scenarios/fleet.json > "$RUN/fleet.json"
status=0
"$HARNESS" run "$RUN/fleet.json" --pid-file "$RUN/hosts/a/master.pid" --out "$RUN/run" || status=$?
python3 - "$RUN/run" <<'PY' || true
import json, sys, os
run = sys.argv[1]
s = json.load(open(os.path.join(run, "summary.json")))
c = json.load(open(os.path.join(run, "chaos.json")))
print(f"fleet: verdict {s['verdict']}")
for f in c["attribution"]["faults"]:
    fa = sum(f["first_attempt_failures"].values())
    print(f"fleet:   fault {f['name']!r}: {fa} first-attempt failure(s) {f['first_attempt_failures']},"
          f" recovered {f['recovered']}, dropped {f['dropped']}, recovery {f['recovery_ms']} ms")
o = c["attribution"]["outside"]
print(f"fleet:   outside every fault: {sum(o['first_attempt_failures'].values())} first-attempt failure(s), dropped {o['dropped']}")
a = c.get("audit") or {}
print(f"fleet:   audit {a.get('verdict')}: {a.get('orders_in_audit')} orders, {a.get('acknowledged')} acknowledged, lost {len(a.get('lost', []))}")
for g in s["gates"]:
    if not g["passed"]:
        print(f"fleet:   FAILED gate {g['name']}")
PY
for id in "${HOSTS[@]}"; do
    grep -h "^fleet-deploy: host $id" "$RUN/run/fault-"*.log 2>/dev/null | sed 's/^/fleet:   /' || true
done
log "exit $status; report $RUN/run/index.html"
exit "$status"
