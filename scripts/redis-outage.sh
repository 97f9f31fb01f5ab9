#!/usr/bin/env bash
# A Redis outage, as a harness `command` fault (docs/CHAOS.md) or by hand:
# SIGKILL the redis-server listening on 127.0.0.1:PORT (no chance to flush),
# keep it down for DOWN seconds, then start it again with the same command
# settings (read with CONFIG GET: redis-server rewrites its own
# /proc/PID/cmdline), so it reloads its AOF, and wait until
# it answers PING (not LOADING). The reference server meanwhile answers 503
# within --db-busy-timeout and its workers stay up; afterwards the harness's
# audit shows whether anything acknowledged was lost (docs/SHOP_API.md,
# "Redis store"). Loopback only: the server is found through 127.0.0.1.
#
# Usage: scripts/redis-outage.sh PORT [DOWN_SECONDS (default 2)]
# In a scenario: {"action": "command", "command": "scripts/redis-outage.sh 6390 2", ...}
set -euo pipefail

PORT=${1:?usage: $0 PORT [DOWN_SECONDS]}
DOWN=${2:-2}
CLI=(redis-cli -h 127.0.0.1 -p "$PORT")
command -v redis-cli >/dev/null || { echo "$0: needs redis-cli (Debian: redis-tools)" >&2; exit 2; }

PID=$("${CLI[@]}" info server 2>/dev/null | tr -d '\r' | awk -F: '$1 == "process_id" {print $2}')
[ -n "$PID" ] || { echo "$0: no redis-server answers on 127.0.0.1:$PORT" >&2; exit 2; }
[ -r "/proc/$PID/cmdline" ] || { echo "$0: redis-server pid $PID is not on this machine" >&2; exit 2; }
AOF=$("${CLI[@]}" config get appendonly | tr -d '\r' | sed -n 2p)
[ "$AOF" = yes ] || echo "$0: warning: appendonly is '$AOF': the restart will not reload the data" >&2

# The command line to start it again: its executable and the settings
# that decide where its data is and how it is kept.
EXE=$("${CLI[@]}" info server | tr -d '\r' | awk -F: '$1 == "executable" {print $2}')
[ -x "$EXE" ] || EXE=$(command -v redis-server)
ARGV=("$EXE")
for name in port bind dir dbfilename appendonly appendfsync appendfilename appenddirname save logfile \
    protected-mode maxmemory maxmemory-policy requirepass; do
    value=$("${CLI[@]}" config get "$name" | tr -d '\r' | sed -n 2p)
    ARGV+=("--$name" "$value")
done
CWD=$(readlink "/proc/$PID/cwd")
echo "redis-outage: SIGKILL redis-server pid $PID on 127.0.0.1:$PORT; down for ${DOWN}s"
kill -KILL "$PID"
for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.02; done
sleep "$DOWN"

# setsid: out of this fault's process group, which the harness may kill;
# and no inherited descriptor but 0-2 (/dev/null), or the new server would
# hold the caller's pipes (the harness's fault log) open for its whole life.
(
    cd "$CWD"
    for fd in /proc/$BASHPID/fd/*; do
        fd=${fd##*/}
        [ "$fd" -gt 2 ] && eval "exec $fd>&-"
    done
    setsid "${ARGV[@]}" </dev/null >/dev/null 2>&1 &
)
for _ in $(seq 1 600); do
    if [ "$("${CLI[@]}" ping 2>/dev/null | tr -d '\r')" = PONG ]; then
        echo "redis-outage: redis-server back on 127.0.0.1:$PORT (pid $("${CLI[@]}" info server | tr -d '\r' | awk -F: '$1 == "process_id" {print $2}'))"
        exit 0
    fi
    sleep 0.05
done
echo "$0: redis-server did not come back on 127.0.0.1:$PORT within 30 s" >&2
exit 1
