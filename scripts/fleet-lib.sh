# Sourced (not run) by scripts/fleet.sh, fleet-deploy.sh, fleet-kill-host.sh
# and fleet-selftest.sh: HAProxy's runtime API, the host folders and the
# waits they share (docs/FLEET.md). Needs bash, python3 (the stats socket
# is a unix socket; Debian's haproxy brings no socat) and curl.
#
# A host folder (written by fleet_host_setup) holds:
#   host.env  HOST_ID, PUBLIC, ADMIN, PID_FILE (sourced)
#   start     starts the host's master in a session of its own (so a
#             whole-host SIGKILL is one kill of its process group) and
#             returns once it serves
#   server.log  the master's and workers' stderr, across restarts

# Milliseconds since the epoch.
now_ms() { date +%s%3N; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# hap SOCKET COMMAND: one command to HAProxy's runtime API; its answer on stdout.
hap() {
    python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
out = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    out += chunk
sys.stdout.write(out.decode())
PY
}

# hap_sessions SOCKET BACKEND SERVER: the streams HAProxy has open to that
# server now (`show stat` scur), whatever its admin state.
hap_sessions() {
    hap "$1" "show stat" | awk -F, -v be="$2" -v srv="$3" '$1 == be && $2 == srv {print $5}'
}

# hap_op_state SOCKET BACKEND SERVER: what HAProxy's health check says,
# apart from drain/maint (`show servers state` srv_op_state): 2 = running
# (checks pass), 0 = stopped, 1 = starting, 3 = stopping.
hap_op_state() {
    hap "$1" "show servers state $2" | awk -v srv="$3" '$4 == srv {print $6}'
}

# hap_set SOCKET BACKEND SERVER STATE (ready | drain | maint); fails on an
# answer other than empty.
hap_set() {
    local answer
    answer=$(hap "$1" "set server $2/$3 state $4")
    if [ -n "$(echo "$answer" | tr -d '[:space:]')" ]; then
        echo "haproxy: set server $2/$3 state $4: $answer" >&2
        return 1
    fi
}

# wait_until TIMEOUT_S COMMAND...: polls COMMAND every 50 ms; 0 once it
# succeeds, 1 after TIMEOUT_S seconds.
wait_until() {
    local until=$(($(now_ms) + $1 * 1000))
    shift
    while [ "$(now_ms)" -lt "$until" ]; do
        if "$@" 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

# host_workers ADMIN: the master's /workers as "ready_count target rolling pid pid ...".
host_workers() {
    curl -fsS --max-time 2 "http://$1/workers" | python3 -c '
import json, sys
w = json.load(sys.stdin)
ready = [x["pid"] for x in w["workers"] if x["state"] == "ready"]
print(len(ready), w["target"], "1" if w["rolling_restart"] else "0", *ready)'
}

# host_serving ADMIN PUBLIC: every worker slot has a ready worker, no roll
# runs, and the public address answers /healthz.
host_serving() {
    local ready target rolling
    read -r ready target rolling _ < <(host_workers "$1") || return 1
    [ "$ready" = "$target" ] && [ "$rolling" = 0 ] || return 1
    curl -fsS --max-time 2 -o /dev/null "http://$2/healthz"
}

# host_master HOSTDIR: the pid in the host's pid file, if that process lives.
host_master() {
    local pid
    pid=$(cat "$1/master.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# fleet_host_setup DIR ID SERVER PUBLIC ADMIN STORE [EXTRA_FLAGS...]: write the
# host folder (host.env and start). Nothing is started.
fleet_host_setup() {
    local dir=$1 id=$2 server=$3 public=$4 admin=$5 store=$6
    shift 6
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    cat > "$dir/host.env" <<EOF
HOST_ID=$id
PUBLIC=$public
ADMIN=$admin
PID_FILE=$dir/master.pid
EOF
    {
        echo '#!/usr/bin/env bash'
        echo "# Starts fleet host $id (written by scripts/fleet-lib.sh); returns once it serves."
        echo 'set -euo pipefail'
        echo "cd $(printf %q "$dir")"
        # Out of the caller's process group (a harness fault's, which the
        # harness may kill) and with no inherited descriptor but 0-2, or the
        # master would hold the caller's pipes open for its whole life.
        echo 'for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done'
        # A SIGKILLed master leaves its pid file behind.
        echo 'rm -f master.pid'
        printf 'setsid %q --host-id %q --listen %q --admin %q --store %q --pid-file %q' \
            "$server" "$id" "$public" "$admin" "$store" "$dir/master.pid"
        printf ' %q' "$@"
        echo ' </dev/null >>server.log 2>&1 &'
        echo 'master=$!'
        echo 'for _ in $(seq 1 600); do'
        echo '    kill -0 "$master" 2>/dev/null || { echo "host '"$id"': master $master exited (log: '"$dir"'/server.log)" >&2; exit 1; }'
        printf '    if curl -fsS --max-time 1 -o /dev/null http://%s/healthz 2>/dev/null && [ -s master.pid ]; then exit 0; fi\n' "$public"
        echo '    sleep 0.05'
        echo 'done'
        echo "echo \"host $id did not serve on $public within 30 s (log: $dir/server.log)\" >&2"
        echo 'exit 1'
    } > "$dir/start"
    chmod +x "$dir/start"
}
