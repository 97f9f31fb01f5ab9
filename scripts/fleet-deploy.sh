#!/usr/bin/env bash
# A fleet deploy, host by host, through HAProxy's runtime API (issue 16;
# docs/FLEET.md). For each host in turn:
#   1. drain: `set server BACKEND/HOST state drain` (no new request goes to it);
#   2. wait until HAProxy holds no session (stream) to it;
#   3. roll it: SIGHUP to its master (rolling restart: every worker replaced
#      by one of the binary on disk now, capacity kept) and wait until no
#      worker of before is left, or with --restart a full stop (SIGINT,
#      graceful) and start (its `start` script) of a new binary;
#   4. wait until the host serves (every slot ready, /healthz) and HAProxy's
#      health check says it is up;
#   5. ready: `set server BACKEND/HOST state ready`; then the next host.
# Prints what it did per host with timings. A host that does not drain
# within FLEET_DRAIN_TIMEOUT or does not come back within FLEET_UP_TIMEOUT
# aborts the deploy (exit 1) and stays drained (out of rotation), the hosts
# after it untouched; a usage or set-up error is exit 2.
#
# Usage: scripts/fleet-deploy.sh [--restart] HAPROXY_SOCKET BACKEND HOSTDIR...
#   HOSTDIR: a host folder of scripts/fleet-lib.sh; the HAProxy server is
#   named by its HOST_ID.
# Env: FLEET_DRAIN_TIMEOUT (s, default 30), FLEET_UP_TIMEOUT (s, default 60).
set -euo pipefail
# shellcheck source=fleet-lib.sh
. "$(dirname "$0")/fleet-lib.sh"

MODE=sighup
if [ "${1:-}" = --restart ]; then MODE=restart; shift; fi
if [ $# -lt 3 ]; then
    echo "usage: $0 [--restart] HAPROXY_SOCKET BACKEND HOSTDIR..." >&2
    exit 2
fi
SOCK=$1 BACKEND=$2
shift 2
DRAIN_TIMEOUT=${FLEET_DRAIN_TIMEOUT:-30}
UP_TIMEOUT=${FLEET_UP_TIMEOUT:-60}
[ -S "$SOCK" ] || { echo "$0: $SOCK is not HAProxy's stats socket" >&2; exit 2; }

log() { echo "fleet-deploy: $*"; }
abort() {
    log "ABORT at host $HOST_ID: $* (host $HOST_ID left drained; hosts after it not deployed)"
    exit 1
}
no_sessions() { [ "$(hap_sessions "$SOCK" "$BACKEND" "$HOST_ID")" = 0 ]; }
haproxy_up() { [ "$(hap_op_state "$SOCK" "$BACKEND" "$HOST_ID")" = 2 ]; }
# Every worker of before the SIGHUP is gone and the host serves.
rolled() {
    local ready target rolling pids p
    read -r ready target rolling pids < <(host_workers "$ADMIN") || return 1
    [ "$ready" = "$target" ] && [ "$rolling" = 0 ] || return 1
    for p in $OLD_PIDS; do
        case " $pids " in *" $p "*) return 1 ;; esac
    done
    host_serving "$ADMIN" "$PUBLIC"
}
master_gone() { ! kill -0 "$1" 2>/dev/null; }

deploy_start=$(now_ms)
for dir in "$@"; do
    [ -f "$dir/host.env" ] || { echo "$0: $dir is not a host folder (no host.env)" >&2; exit 2; }
    # shellcheck source=/dev/null
    . "$dir/host.env"
    [ -n "$(hap_op_state "$SOCK" "$BACKEND" "$HOST_ID")" ] ||
        { echo "$0: HAProxy has no server $BACKEND/$HOST_ID" >&2; exit 2; }
    t0=$(now_ms)

    hap_set "$SOCK" "$BACKEND" "$HOST_ID" drain || abort "HAProxy refused the drain"
    wait_until "$DRAIN_TIMEOUT" no_sessions ||
        abort "still $(hap_sessions "$SOCK" "$BACKEND" "$HOST_ID") session(s) after ${DRAIN_TIMEOUT}s"
    t_drained=$(now_ms)

    master=$(host_master "$dir") || abort "no live master in $dir/master.pid"
    if [ "$MODE" = sighup ]; then
        OLD_PIDS=$(host_workers "$ADMIN" | cut -d' ' -f4-)
        kill -HUP "$master"
        wait_until "$UP_TIMEOUT" rolled ||
            abort "the rolling restart of master $master did not replace every worker (${OLD_PIDS}) within ${UP_TIMEOUT}s (see $dir/server.log)"
        what="SIGHUP rolling restart of master $master"
    else
        kill -INT "$master"
        wait_until "$UP_TIMEOUT" master_gone "$master" ||
            abort "master $master still running ${UP_TIMEOUT}s after SIGINT"
        "$dir/start" >>"$dir/server.log" 2>&1 || abort "its start script failed (see $dir/server.log)"
        wait_until "$UP_TIMEOUT" host_serving "$ADMIN" "$PUBLIC" ||
            abort "not serving on $PUBLIC within ${UP_TIMEOUT}s after the restart (see $dir/server.log)"
        what="stop (SIGINT to $master) and start (master $(host_master "$dir" || echo '?'))"
    fi
    t_rolled=$(now_ms)

    wait_until "$UP_TIMEOUT" haproxy_up ||
        abort "HAProxy's check did not see it up within ${UP_TIMEOUT}s"
    t_up=$(now_ms)
    hap_set "$SOCK" "$BACKEND" "$HOST_ID" ready || abort "HAProxy refused ready"
    log "host $HOST_ID: drained in $((t_drained - t0)) ms; $what in $((t_rolled - t_drained)) ms;" \
        "up in HAProxy after $((t_up - t_rolled)) ms; ready again; $((t_up - t0)) ms in all"
done
log "deployed $# host(s) in $(($(now_ms) - deploy_start)) ms"
