#!/usr/bin/env bash
# A whole host dies, as a harness `command` fault (docs/FLEET.md): SIGKILL
# to the process group of a fleet host's master (master and every worker at
# once, as a power cut or a kernel panic would), keep it down DOWN seconds,
# start it again with its `start` script and exit once it serves and, given
# HAProxy's stats socket, once HAProxy's check sees it up. The balancer is
# not told anything: finding out is its health check's job.
#
# Usage: scripts/fleet-kill-host.sh HOSTDIR [DOWN_SECONDS (default 1)] [HAPROXY_SOCKET BACKEND]
# Env: FLEET_UP_TIMEOUT (s, default 60).
set -euo pipefail
# shellcheck source=fleet-lib.sh
. "$(dirname "$0")/fleet-lib.sh"

DIR=${1:?usage: $0 HOSTDIR [DOWN_SECONDS] [HAPROXY_SOCKET BACKEND]}
DOWN=${2:-1}
SOCK=${3:-} BACKEND=${4:-}
UP_TIMEOUT=${FLEET_UP_TIMEOUT:-60}
[ -f "$DIR/host.env" ] || { echo "$0: $DIR is not a host folder (no host.env)" >&2; exit 2; }
# shellcheck source=/dev/null
. "$DIR/host.env"

master=$(host_master "$DIR") || { echo "$0: no live master in $DIR/master.pid" >&2; exit 2; }
# The start script runs the master under setsid, so its pgid is its pid and
# the group is exactly the host: master and workers.
[ "$(ps -o pgid= -p "$master" | tr -d ' ')" = "$master" ] ||
    { echo "$0: master $master does not lead its process group; not killing a group it does not own" >&2; exit 2; }
t0=$(now_ms)
echo "fleet-kill-host: SIGKILL to host $HOST_ID (process group $master: $(pgrep -g "$master" | wc -l) processes); down for ${DOWN}s"
kill -KILL -- "-$master"
gone() { ! pgrep -g "$master" >/dev/null; }
wait_until 10 gone || { echo "$0: processes of group $master still alive 10 s after SIGKILL" >&2; exit 1; }
sleep "$DOWN"
"$DIR/start" >>"$DIR/server.log" 2>&1 || { echo "$0: host $HOST_ID's start script failed (see $DIR/server.log)" >&2; exit 1; }
wait_until "$UP_TIMEOUT" host_serving "$ADMIN" "$PUBLIC" ||
    { echo "$0: host $HOST_ID not serving on $PUBLIC within ${UP_TIMEOUT}s" >&2; exit 1; }
t_serving=$(now_ms)
if [ -n "$SOCK" ]; then
    up() { [ "$(hap_op_state "$SOCK" "$BACKEND" "$HOST_ID")" = 2 ]; }
    wait_until "$UP_TIMEOUT" up ||
        { echo "$0: HAProxy's check did not see host $HOST_ID up within ${UP_TIMEOUT}s" >&2; exit 1; }
fi
echo "fleet-kill-host: host $HOST_ID back (master $(host_master "$DIR")): serving $((t_serving - t0)) ms after the kill," \
    "up in HAProxy after $(($(now_ms) - t0)) ms"
