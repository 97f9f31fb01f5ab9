# shellcheck shell=bash
# Sourced (not run) by the scripts that drive release builds (blackfriday,
# selfcheck, soak, distributed, fleet), from the repository's root: where
# `make release` put the two binaries, and a stop with exit 2 when either
# is missing.
# Sets TARGET_DIR (CARGO_TARGET_DIR, default ./target), BIN_DIR (default
# $TARGET_DIR/release), HARNESS and SERVER.
TARGET_DIR=${CARGO_TARGET_DIR:-$(pwd)/target}
BIN_DIR=${BIN_DIR:-$TARGET_DIR/release}
HARNESS=$BIN_DIR/harness
SERVER=$BIN_DIR/reference-server
for bin in "$HARNESS" "$SERVER"; do
    if [ ! -x "$bin" ]; then
        echo "$0: $bin not found: run 'make release' first (same CARGO_TARGET_DIR)" >&2
        exit 2
    fi
done
