#!/usr/bin/env bash
# make soak (after `make release`; issue 18, not in CI): 30 minutes of the
# Black Friday mix against the reference cluster at 60% of its capacity on
# this machine, a fault every minute (SIGKILL a worker, SIGTERM rolling
# restart, hang a worker, in turn). The harness samples its own and the
# server's resident memory and open descriptors every 10 s (resources.csv);
# the gates max_server_rss_growth_mib_per_hour and
# max_server_fd_growth_per_hour judge their slopes, and the report draws them.
#
# Steps: `harness compare --calibrate-only` measures one process and the
# cluster on the scenario's mix (calibration.json); the rate is
# SOAK_LOAD (default 0.6) x the cluster's capacity; scenarios/soak.json is
# written with that rate and as many shoppers as 30 minutes bring
# (SOAK_MINUTES, default 30) to OUT/scenario.json, then `harness run`.
# Env: SOAK_OUT (default reports/soak), SOAK_LOAD, SOAK_MINUTES, SOAK_RATE
# (shoppers/s: skip the calibration), CARGO_TARGET_DIR.
# Exit code: the harness's (docs/EXIT_CODES.md).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/release-bins.sh
. scripts/release-bins.sh
BIN=$HARNESS
OUT=${SOAK_OUT:-reports/soak}
LOAD=${SOAK_LOAD:-0.6}
MINUTES=${SOAK_MINUTES:-30}
mkdir -p "$OUT"
start=$(date +%s)

if [ -n "${SOAK_RATE:-}" ]; then
    rate=$SOAK_RATE
    echo "soak: rate $rate shoppers/s (SOAK_RATE, no calibration)"
else
    "$BIN" compare scenarios/soak.json --calibrate-only --out "$OUT/calibration" --quiet
    rate=$(python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))
print(round(float(sys.argv[2]) * c["cluster_capacity"], 1))' "$OUT/calibration/calibration.json" "$LOAD")
    echo "soak: the cluster serves about $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cluster_capacity"])' "$OUT/calibration/calibration.json") shoppers/s; playing $LOAD of that: $rate shoppers/s for $MINUTES min"
fi

python3 - "$rate" "$MINUTES" "$SERVER" "$OUT/scenario.json" <<'PY'
import json, math, sys
rate, minutes, server, out = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
s = json.load(open("scenarios/soak.json"))
s["arrival"] = [{"duration": f"{minutes:g}m", "rate": rate}]
s["shoppers"] = math.ceil(rate * minutes * 60)
s["target"]["launch"]["argv"][0] = server
# A fault a minute: each of the three kinds every 3 minutes, as many as fit.
# (A shortened soak keeps the faults that fit, ending 20 s before the arrivals.)
kept = []
for f in s["chaos"]:
    first = {"s": 1, "m": 60}[f["at"][-1]] * float(f["at"][:-1])
    if first + 20 <= minutes * 60:
        f["count"] = int((minutes * 60 - first - 20) // 180) + 1
        kept.append(f)
s["chaos"] = kept
json.dump(s, open(out, "w"), indent=2)
PY

status=0
"$BIN" run "$OUT/scenario.json" --out "$OUT/run" --quiet || status=$?
python3 - "$OUT/run/summary.json" <<'PY' || true
import json, sys
s = json.load(open(sys.argv[1]))
r = s.get("resources") or {}
for who in ("server", "harness"):
    t = r.get(who)
    if t:
        print(f"soak: {who}: memory {t['rss_first_mib']} -> {t['rss_last_mib']} MiB (peak {t['rss_max_mib']}), "
              f"slope {t['rss_slope_mib_per_hour']} MiB/h; fds {t['fds_first']} -> {t['fds_last']} (peak {t['fds_max']}), "
              f"slope {t['fds_slope_per_hour']}/h over {t['samples']} samples")
t = s["totals"]
print(f"soak: {t['operations']} operations, {t['dropped']} dropped, {t['first_attempt_failures']} first-attempt failures; verdict {s['verdict']}")
PY
echo "soak: $(($(date +%s) - start)) s, exit $status; open $OUT/run/index.html"
exit "$status"
