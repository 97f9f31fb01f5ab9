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
# flags, e.g. "--baseline old/summary.json"), TLS=1 (`make blackfriday
# TLS=1`: the whole comparison over HTTPS; a throwaway CA and a certificate
# for 127.0.0.1 are made with openssl into $OUT/tls, the reference servers
# get --tls-cert/--tls-key and the harness trusts that CA; TLS_RESUMPTION=0
# makes every new connection pay a full handshake).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/release-bins.sh
. scripts/release-bins.sh
BIN=$HARNESS
OUT=${BLACKFRIDAY_OUT:-reports/blackfriday}

tls_args=()
if [ "${TLS:-0}" = "1" ]; then
    if ! command -v openssl >/dev/null 2>&1; then
        echo "$0: TLS=1 needs openssl to make a throwaway certificate (apt-get install openssl)" >&2
        exit 2
    fi
    pki="$OUT/tls"
    mkdir -p "$pki"
    # A CA, and a server certificate it signs for 127.0.0.1 and localhost;
    # valid two days, thrown away with the run folder.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=blackfriday throwaway CA" -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=127.0.0.1" -keyout "$pki/server.key" -out "$pki/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >"$pki/ext.cnf"
    openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
        -days 2 -extfile "$pki/ext.cnf" -out "$pki/server.pem" 2>/dev/null
    tls_args=(--tls-cert "$pki/server.pem" --tls-key "$pki/server.key" --tls-ca "$pki/ca.pem")
    if [ "${TLS_RESUMPTION:-1}" = "0" ]; then
        tls_args+=(--no-tls-resumption)
    fi
    echo "blackfriday: over HTTPS (certificate $pki/server.pem, CA $pki/ca.pem)"
fi

start=$(date +%s)
status=0
# shellcheck disable=SC2086  # BLACKFRIDAY_ARGS is a list of flags
"$BIN" compare scenarios/blackfriday.json --out "$OUT" --calibrate "${tls_args[@]}" ${BLACKFRIDAY_ARGS:-} || status=$?
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
