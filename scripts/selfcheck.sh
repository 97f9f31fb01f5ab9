#!/usr/bin/env bash
# Can the harness still see? make blackfriday's last step (issue 12): plays
# scenarios/selfcheck.json (a few seconds) against the release reference
# server three times and checks the verdicts, not just the exit codes:
#   - the correct server passes (so the scenario is fair);
#   - --unsafe-drain (drain = drop every connection; TEST ONLY) fails the
#     rolling restart's first-attempt budget, though retries drop nothing;
#   - --unsafe-ack-before-commit (201 before the order commits; TEST ONLY)
#     fails the audit: the SIGKILLs lose acknowledged orders.
# Exit 0 when all three came out as expected, 1 when the harness missed a
# defect or failed the correct server, 2 when a run could not be judged.
# Env: CARGO_TARGET_DIR (where `make release` built), SELFCHECK_OUT
# (default reports/selfcheck).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/release-bins.sh
. scripts/release-bins.sh
OUT=${SELFCHECK_OUT:-reports/selfcheck}
mkdir -p "$OUT"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# expect NAME FLAGS VERDICT GATE: play the self-check against the server with
# FLAGS; the run's verdict must be VERDICT and, for a failing one, GATE must
# be among the failed gates.
expect() {
    local name=$1 flags=$2 want=$3 gate=$4
    local dir=$OUT/$name port admin scenario
    port=$(free_port)
    admin=$(free_port)
    rm -rf "$dir"
    mkdir -p "$dir"
    scenario=$dir/selfcheck.json
    sed -e "s#127.0.0.1:8080#127.0.0.1:$port#g" -e "s#127.0.0.1:9090#127.0.0.1:$admin#g" \
        scenarios/selfcheck.json > "$scenario"
    local code=0
    # shellcheck disable=SC2086  # FLAGS is a list of flags
    "$HARNESS" run "$scenario" --quiet --out "$dir/run" \
        --launch "$SERVER --workers 2 --listen 127.0.0.1:$port --admin 127.0.0.1:$admin --db $dir/shop.db --reset-db $flags" \
        > "$dir/harness.log" 2>&1 || code=$?
    python3 - "$dir/run/summary.json" "$want" "$gate" "$name" "$code" <<'PY'
import json, sys
path, want, gate, name, code = sys.argv[1:]
try:
    s = json.load(open(path))
except (OSError, ValueError) as e:
    print(f"selfcheck {name}: no summary.json ({e}); harness exit {code}")
    sys.exit(2)
failed = [g["name"] for g in s["gates"] if not g["passed"]]
got = s["verdict"]
if got == want and (want == "pass" or gate in failed):
    what = "every gate passed" if want == "pass" else f"failed gate {gate!r}"
    print(f"selfcheck {name}: {got} as expected ({what})")
    sys.exit(0)
print(f"selfcheck {name}: expected {want} with failed gate {gate!r}, got {got} (exit {code}); failed gates: {failed}")
sys.exit(2 if got in ("invalid", "inconclusive") else 1)
PY
}

status=0
# The worst outcome of all three decides.
check() {
    local c=0
    expect "$@" || c=$?
    if [ "$c" -gt "$status" ]; then status=$c; fi
}
check correct "" pass ""
check unsafe-drain "--unsafe-drain" fail "fault rolling restart: first-attempt failures"
check ack-before-commit "--unsafe-ack-before-commit" fail "audit"
if [ "$status" -ne 0 ]; then
    echo "selfcheck: the harness did not see what it must (logs in $OUT/*/harness.log)" >&2
fi
exit "$status"
