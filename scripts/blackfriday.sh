#!/usr/bin/env bash
# make blackfriday (after `make release`): the Black Friday scenario against
# the reference server as one process, then as a cluster (one worker per
# CPU), with the scenario's worker kills, rolling restart and hang; audits;
# writes reports/blackfriday/ (index.html, summary.json, junit.xml, and a
# folder per run). The load is first calibrated to this machine: one
# process's capacity for the scenario's mix is measured and the peak set to
# 1.5x that, which the report prints at the top.
# Then the self-check (scripts/selfcheck.sh): the harness must still fail two
# deliberately broken servers, or the job fails.
# Exit code: the harness's (0 every gate passed, 1 a gate failed, 2 the run
# was invalid, inconclusive or could not start; docs/EXIT_CODES.md); 0 turns
# into the self-check's code when the self-check fails.
# Env: CARGO_TARGET_DIR (where `make release` built), BLACKFRIDAY_OUT
# (default reports/blackfriday), BLACKFRIDAY_ARGS (extra `harness compare`
# flags, e.g. "--baseline old/summary.json").
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR=${CARGO_TARGET_DIR:-$(pwd)/target}
BIN=$TARGET_DIR/release/harness
OUT=${BLACKFRIDAY_OUT:-reports/blackfriday}
for bin in "$BIN" "$TARGET_DIR/release/reference-server"; do
    if [ ! -x "$bin" ]; then
        echo "$0: $bin not found: run 'make release' first (same CARGO_TARGET_DIR)" >&2
        exit 2
    fi
done

start=$(date +%s)
status=0
# shellcheck disable=SC2086  # BLACKFRIDAY_ARGS is a list of flags
"$BIN" compare scenarios/blackfriday.json --out "$OUT" --calibrate ${BLACKFRIDAY_ARGS:-} || status=$?
echo "blackfriday: $(($(date +%s) - start)) s, exit $status; open $OUT/index.html"

# Then prove the verdict can still fail: two deliberately broken servers
# must be caught (scripts/selfcheck.sh). A harness that passes everything
# would pass the run above too.
check=0
SELFCHECK_OUT="$OUT/selfcheck" ./scripts/selfcheck.sh || check=$?
if [ "$status" -eq 0 ] && [ "$check" -ne 0 ]; then
    status=$check
fi
exit "$status"
