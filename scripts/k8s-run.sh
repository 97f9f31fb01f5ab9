#!/usr/bin/env bash
# A sharded run on Kubernetes (deploy/k8s/README.md): render the manifests, apply them, wait
# for the shard and chaos Jobs, run the merge Job, copy the merged report out, and exit with
# the merge's exit code (0 passed, 1 a gate failed, 2 invalid).
#
#   scripts/k8s-run.sh [options] SCENARIO SHARDS NAMESPACE IMAGE [START_DELAY_SECONDS]
#
#   --render-only DIR   write the manifests to DIR and stop: no kubectl, no cluster
#                       (make k8s-render; harness/tests/k8s_manifests.rs renders this way)
#   --overlay DIR       the overlay's values.env (default deploy/k8s/overlays/example)
#   --run NAME          run id, a DNS label of at most 40 characters (default k8s-<UTC time>)
#   --start-at T        the shared start instant (RFC 3339 or Unix ms) instead of
#                       now + START_DELAY_SECONDS (default delay 120 s)
#   --chaos-image IMG   the image with kubectl for the chaos runner (default IMAGE-kubectl,
#                       the Dockerfile's `chaos` stage tagged so)
#   --report DIR        where the merged report is copied (default reports/<run>)
#   --timeout SECONDS   how long to wait for each Job (default 3600)
#
# Why not kustomize: it is not in Debian bookworm (only kubernetes-client 1.20, whose
# embedded kustomize is v2), so rendering could not be reproduced on a fresh machine or in
# CI. The renderer is this script: it replaces ${NAME} in deploy/k8s/base/*.yaml with the
# overlay's values and the arguments (every name checked against a list, every value
# against a pattern, and a ${NAME} left over is an error), and generates the scenario
# ConfigMap from the scenario file. Deterministic: the same inputs give the same bytes.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
base="$root/deploy/k8s/base"

die() { echo "k8s-run.sh: $*" >&2; exit 2; }
usage() { sed -n '5,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

render_only="" overlay="$root/deploy/k8s/overlays/example" run="" start_at="" chaos_image=""
report="" wait_timeout=3600
while [ $# -gt 0 ]; do
    case "$1" in
        --render-only) render_only=${2:?--render-only needs a folder}; shift 2 ;;
        --overlay) overlay=${2:?--overlay needs a folder}; shift 2 ;;
        --run) run=${2:?--run needs a name}; shift 2 ;;
        --start-at) start_at=${2:?--start-at needs a time}; shift 2 ;;
        --chaos-image) chaos_image=${2:?--chaos-image needs an image}; shift 2 ;;
        --report) report=${2:?--report needs a folder}; shift 2 ;;
        --timeout) wait_timeout=${2:?--timeout needs seconds}; shift 2 ;;
        -h | --help) usage ;;
        --*) die "unknown option $1" ;;
        *) break ;;
    esac
done
if [ $# -lt 4 ] || [ $# -gt 5 ]; then usage; fi
scenario=$1 shards=$2 namespace=$3 image=$4 delay=${5:-120}

check() { # name value pattern what
    [[ $2 =~ $3 ]] || die "$1: '$2' is not $4"
}
dns_label='^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'
[ -f "$scenario" ] || die "SCENARIO: no file '$scenario'"
# A ConfigMap holds at most 1 MiB (the API server refuses more); leave room for the rest.
[ "$(wc -c <"$scenario")" -le 1000000 ] || die "SCENARIO: '$scenario' is over 1,000,000 bytes, too big for a ConfigMap"
check SHARDS "$shards" '^[1-9][0-9]{0,2}$' "a shard count from 1 to 999"
check NAMESPACE "$namespace" "$dns_label" "a namespace name (DNS label)"
image_re='^[A-Za-z0-9][A-Za-z0-9._/:@-]*$'
check IMAGE "$image" "$image_re" "an image reference"
check START_DELAY_SECONDS "$delay" '^[0-9]{1,5}$' "a number of seconds"
check --timeout "$wait_timeout" '^[1-9][0-9]{0,5}$' "a number of seconds"
[ -n "$run" ] || run="k8s-$(date -u +%Y%m%d-%H%M%S)"
# <run>-shards must stay a valid Job name, and the Job's pods' names add "-<index>-<hash>".
check --run "$run" '^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$' "a DNS label of at most 40 characters"
[ -n "$chaos_image" ] || chaos_image="$image-kubectl"
check --chaos-image "$chaos_image" "$image_re" "an image reference"
if [ -z "$start_at" ]; then
    start_at=$(date -u -d "@$(($(date +%s) + delay))" +%Y-%m-%dT%H:%M:%SZ)
fi
check --start-at "$start_at" \
    '^([0-9]{13}|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2}))$' \
    "Unix milliseconds or an RFC 3339 time"

# The overlay: KEY=value lines, read (never sourced), each key known, each value checked.
declare -A vals=()
[ -f "$overlay/values.env" ] || die "--overlay: no values.env in '$overlay'"
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    [[ $line =~ ^([A-Z_]+)=(.*)$ ]] || die "$overlay/values.env:$lineno: not KEY=value"
    key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
    case "$key" in
        TARGET_URL) check "$key" "$value" '^https?://[][A-Za-z0-9.:-]+$' "http(s)://host[:port] (no path)" ;;
        TARGET_NAMESPACE) check "$key" "$value" "$dns_label" "a namespace name (DNS label)" ;;
        STORAGE_CLASS) check "$key" "$value" '^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$' "a storage class name" ;;
        RESULTS_SIZE) check "$key" "$value" '^[1-9][0-9]*(Mi|Gi|Ti)$' "a size like 20Gi" ;;
        MERGE_WAIT_SECONDS) check "$key" "$value" '^[1-9][0-9]{0,5}$' "a number of seconds" ;;
        *) die "$overlay/values.env:$lineno: unknown key $key" ;;
    esac
    vals[$key]=$value
done <"$overlay/values.env"
for key in TARGET_URL TARGET_NAMESPACE STORAGE_CLASS RESULTS_SIZE MERGE_WAIT_SECONDS; do
    [ -n "${vals[$key]:-}" ] || die "$overlay/values.env: $key is missing"
done

merge_inputs=""
for ((i = 0; i < shards; i++)); do merge_inputs+="\"/results/$run/shard-$i\", "; done
merge_inputs+="\"/results/$run/chaos\""
vals[RUN]=$run vals[NAMESPACE]=$namespace vals[IMAGE]=$image vals[CHAOS_IMAGE]=$chaos_image
vals[SHARDS]=$shards vals[START_AT]=$start_at vals[MERGE_INPUTS]=$merge_inputs

render() { # into DIR
    local out=$1 f name text key
    mkdir -p "$out"
    rm -f "$out"/*.yaml
    {
        echo "# Generated by scripts/k8s-run.sh from $(basename "$scenario"): the scenario every pod reads."
        echo "apiVersion: v1"
        echo "kind: ConfigMap"
        echo "metadata:"
        echo "  name: \"$run-scenario\""
        echo "  namespace: \"$namespace\""
        echo "  labels:"
        echo "    app.kubernetes.io/name: harness"
        echo "    harness.example.org/run: \"$run\""
        echo "data:"
        echo "  scenario.json: |"
        sed 's/^/    /' "$scenario"
    } >"$out/00-scenario-configmap.yaml"
    for f in "$base"/*.yaml; do
        name=$(basename "$f")
        text=$(<"$f")
        for key in "${!vals[@]}"; do text=${text//"\${$key}"/"${vals[$key]}"}; done
        if [[ $text =~ \$\{[A-Za-z_]+\} ]]; then
            die "$f: ${BASH_REMATCH[0]} has no value (known: ${!vals[*]})"
        fi
        printf '%s\n' "$text" >"$out/$name"
    done
}

if [ -n "$render_only" ]; then
    render "$render_only"
    echo "rendered run $run ($shards shards, start at $start_at) into $render_only"
    exit 0
fi

command -v kubectl >/dev/null || die "kubectl is not on PATH"
if [ -x "$root/target/release/harness" ]; then
    "$root/target/release/harness" validate "$scenario" || die "SCENARIO: '$scenario' is not valid"
fi
report=${report:-$root/reports/$run}
manifests="$report/manifests"
render "$manifests"
echo "run $run: $shards shards in namespace $namespace, start at $start_at (manifests: $manifests)"

k() { kubectl -n "$namespace" "$@"; }
kubectl get namespace "$namespace" >/dev/null 2>&1 || kubectl create namespace "$namespace"
for f in "$manifests"/*.yaml; do
    case "$(basename "$f")" in 90-* | 95-*) ;; *) kubectl apply -f "$f" ;; esac
done

# Prints Complete or Failed once the Job has that condition; exits 2 after the timeout.
wait_job() {
    local job=$1 deadline=$(($(date +%s) + wait_timeout)) state
    while :; do
        state=$(k get job "$job" -o jsonpath='{.status.conditions[?(@.status=="True")].type}' 2>/dev/null || true)
        case " $state " in
            *" Complete "*) echo Complete; return ;;
            *" Failed "*) echo Failed; return ;;
        esac
        [ "$(date +%s)" -lt "$deadline" ] || die "job/$job did not finish within $wait_timeout s"
        sleep 5
    done
}

shards_state=$(wait_job "$run-shards")
chaos_state=$(wait_job "$run-chaos")
if [ "$shards_state" != Complete ] || [ "$chaos_state" != Complete ]; then
    failed=$(k get job "$run-shards" -o jsonpath='{.status.failedIndexes}' 2>/dev/null || true)
    echo "run $run is invalid: shards $shards_state (failed indexes: ${failed:-none}), chaos $chaos_state" >&2
    echo "  logs: kubectl -n $namespace logs -l harness.example.org/run=$run --prefix" >&2
    exit 2
fi

kubectl apply -f "$manifests/90-merge-job.yaml"
wait_job "$run-merge" >/dev/null
k logs "job/$run-merge" -c merge || true
code=$(k get pods -l "job-name=$run-merge" \
    -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.exitCode}')
[[ $code =~ ^[0-9]+$ ]] || die "could not read the merge pod's exit code ('$code')"

kubectl apply -f "$manifests/95-fetch-pod.yaml"
k wait --for=condition=Ready "pod/$run-fetch" --timeout=300s
k cp "$run-fetch:/results/$run/merged" "$report/merged"
k delete pod "$run-fetch" --wait=false
echo "run $run: merge exited $code; report in $report/merged/index.html"
exit "$code"
