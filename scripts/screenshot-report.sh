#!/usr/bin/env bash
# Screenshot a run's report page with headless Chromium (Debian package
# `chromium`): scripts/screenshot-report.sh RUN_DIR OUT.png [WIDTHxHEIGHT]
# Used for the README image; the report's browser test uses the same flags.
# The page is self-contained, so the browser is kept off the network entirely:
# every host name resolves to "not found" and background services are off.
set -euo pipefail

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 RUN_DIR OUT.png [WIDTHxHEIGHT]   (default 1400x3000)" >&2
    exit 2
fi
run_dir=$1
out=$2
size=${3:-1400x3000}
page="$run_dir/index.html"
if [ ! -f "$page" ]; then
    echo "$0: $page not found (run the scenario, or 'harness report $run_dir' to rebuild it from report.json)" >&2
    exit 1
fi
if ! [[ $size =~ ^[0-9]+x[0-9]+$ ]]; then
    echo "$0: size must look like 1400x3000, got '$size'" >&2
    exit 2
fi
browser=${CHROMIUM:-}
if [ -z "$browser" ]; then
    for candidate in chromium chromium-browser; do
        if command -v "$candidate" >/dev/null 2>&1; then
            browser=$candidate
            break
        fi
    done
fi
if [ -z "$browser" ]; then
    echo "$0: headless Chromium not found: apt-get install chromium (or set CHROMIUM=/path/to/chromium)" >&2
    exit 1
fi

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
page_abs=$(cd "$(dirname "$page")" && pwd)/index.html
out_abs=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
rm -f "$out_abs"
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --disable-extensions \
    --disable-default-apps --disable-domain-reliability --no-pings --host-resolver-rules='MAP * ~NOTFOUND' \
    --hide-scrollbars --user-data-dir="$profile" --window-size="${size/x/,}" --screenshot="$out_abs" \
    "file://$page_abs" >"$profile/chromium.log" 2>&1 || {
    echo "$0: chromium failed; its output:" >&2
    cat "$profile/chromium.log" >&2
    exit 1
}
if [ ! -s "$out_abs" ]; then
    echo "$0: chromium wrote no screenshot; its output:" >&2
    cat "$profile/chromium.log" >&2
    exit 1
fi
echo "$out_abs"
