#!/usr/bin/env bash
# What `make test` and `make blackfriday` need beyond the Rust toolchain, on
# Debian: rustfmt and clippy (rustup components), headless Chromium with a
# font (the report's browser test), redis-server (the Redis store's tests
# start their own on a loopback port), haproxy (make fleet's load balancer),
# nginx-light (the harness's HTTPS test against a third-party TLS server, and
# make bench-harness's TLS rows) and wrk (make bench-*). Installs what is missing when it can
# (root, or passwordless sudo); otherwise says what to run and exits 1, before
# any test starts.
set -euo pipefail

if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

packages=""
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    packages="chromium fonts-dejavu-core"
fi
if ! command -v redis-server >/dev/null 2>&1; then
    packages="$packages redis-server"
fi
if ! command -v haproxy >/dev/null 2>&1; then
    packages="$packages haproxy"
fi
# nginx lives in /usr/sbin, which a non-root PATH may lack.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    packages="$packages nginx-light"
fi
if ! command -v wrk >/dev/null 2>&1; then
    packages="$packages wrk"
fi
packages=${packages# }
if [ -z "$packages" ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo"
else
    echo "$0: missing: $packages (the report's browser test, the Redis store's tests, the nginx TLS test, make fleet, benchmarks);" >&2
    echo "    install them: sudo apt-get install -y $packages" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "$0: missing: $packages, and this is not Debian (no apt-get): install them yourself" >&2
    exit 1
fi
echo "installing $packages (the report's browser test, the Redis store's tests, the nginx TLS test, make fleet, benchmarks) ..." >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends $packages >/dev/null
