#!/usr/bin/env bash
# make distributed (after `make release`): the sharded-run contract on this
# machine (docs/DISTRIBUTED.md). Starts the reference cluster (2 workers,
# fresh database), plays the smoke scenario with a SIGTERM rolling restart
# at 1.5 s and a SIGKILL of a worker at 3 s as 3 shard processes
# (`harness run --shard K/3 --start-at T`) plus one chaos runner
# (`harness chaos --start-at T --attach-pid`), all on one start instant 3 s
# ahead, then merges them (`harness merge`) into reports/distributed/merged.
# The same check, next to the unsharded run and the merge's refusals, is
# harness/tests/distributed.rs.
# Exit code: the merge's (0 every gate passed, 1 a gate failed, 2 invalid or
# refused; docs/EXIT_CODES.md), or 2 if a shard or the chaos runner ran invalidly.
# Env: CARGO_TARGET_DIR, BIN_DIR (default $CARGO_TARGET_DIR/release),
# DISTRIBUTED_OUT (default reports/distributed; one folder per scenario),
# SHARDS (default 3), DISTRIBUTED_SCENARIOS (default "smoke blackfriday": the
# smoke scenario, then a cut of blackfriday: its journeys, data and gates,
# 3,000 shoppers over 20 s). Exit code: the worst of the merges'.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/release-bins.sh
. scripts/release-bins.sh
ROOT=${DISTRIBUTED_OUT:-reports/distributed}
N=${SHARDS:-3}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# play BASE: the scenario scenarios/BASE.json (smoke, or a cut of
# blackfriday) as N shards + 1 chaos runner + merge, into $OUT/BASE.
play() {
BASE=$1
OUT=$ROOT/$BASE
rm -rf "$OUT"
mkdir -p "$OUT/server"
PORT=$(free_port)
ADMIN=$(free_port)
setsid "$BIN_DIR/reference-server" --listen "127.0.0.1:$PORT" --admin "127.0.0.1:$ADMIN" --workers 2 \
    --db "$OUT/server/shop.db" >"$OUT/server/stdout.log" 2>"$OUT/server/stderr.log" &
SERVER=$!
cleanup() { kill -KILL -- "-$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }
trap cleanup EXIT

# The smoke scenario on this cluster, with the two faults; every step
# retries what a killed worker leaves behind (see harness/tests/distributed.rs).
python3 - "$PORT" "$ADMIN" "$OUT/scenario.json" "$BASE" <<'PY'
import json, sys
port, admin, out, base = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
s = json.load(open(f"scenarios/{base}.json"))
if base == "blackfriday":
    # The cut: the Black Friday journeys, data and gates, 3,000 shoppers over
    # 20 s (a tenth of the scenario), and this script's two faults.
    s["name"] = "blackfriday-cut"
    s["shoppers"] = 3000
    s["arrival"] = [{"duration": "20s", "rate": 150}]
    s["target"].pop("launch", None)
    s["gates"].pop("min_throughput_rps", None)
s["target"]["base_url"] = f"http://127.0.0.1:{port}"
s["audit"]["url"] = f"http://127.0.0.1:{admin}/audit"
s["defaults"]["retry"] = {"attempts": 4, "backoff": "50ms", "on": [
    "connect_refused", "connect_timeout", "reset_before_response", "closed_before_response",
    "truncated_body", "response_timeout", "protocol_error", "server_error"]}
s["chaos"] = [
    {"name": "deploy", "at": "1500ms", "action": "signal_master", "signal": "SIGTERM"},
    {"name": "crash", "at": "3s", "action": "kill_worker", "signal": "SIGKILL", "pick": "oldest"}]
json.dump(s, open(out, "w"), indent=2)
PY

T=$(( $(date +%s%3N) + 3000 ))
echo "== start instant T = $T (Unix ms); $N shards + 1 chaos runner"
pids=()
for ((k = 0; k < N; k++)); do
    "$BIN_DIR/harness" run "$OUT/scenario.json" --quiet --shard "$k/$N" --start-at "$T" \
        --out "$OUT/shard-$k" >"$OUT/shard-$k.log" 2>&1 &
    pids+=($!)
done
"$BIN_DIR/harness" chaos "$OUT/scenario.json" --start-at "$T" --attach-pid "$SERVER" \
    --out "$OUT/chaos" >"$OUT/chaos.log" 2>&1 &
pids+=($!)
failed=0
for p in "${pids[@]}"; do
    wait "$p" || failed=1
done
tail -n 2 "$OUT"/shard-*.log "$OUT/chaos.log"
if [ "$failed" != 0 ]; then
    echo "$0: a shard or the chaos runner did not run validly (logs in $OUT)" >&2
    exit 2
fi
dirs=()
for ((k = 0; k < N; k++)); do dirs+=("$OUT/shard-$k"); done
code=0
"$BIN_DIR/harness" merge "$OUT/merged" "${dirs[@]}" "$OUT/chaos" || code=$?
echo "== merged run: $OUT/merged/index.html (exit $code)"
cleanup
trap - EXIT
return "$code"
}

status=0
for base in ${DISTRIBUTED_SCENARIOS:-smoke blackfriday}; do
    code=0
    play "$base" || code=$?
    if [ "$code" -gt "$status" ]; then status=$code; fi
done
exit "$status"
