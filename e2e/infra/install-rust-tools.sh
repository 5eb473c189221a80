#!/usr/bin/env bash
# install-rust-tools.sh: cargo-nextest (per-test time limits, one process per test), built from crates.io once
# and cached in $CACHE/cargo-tools. First run: about 5 minutes on 2 cores.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" rust-tools
NEXTEST_VERSION=0.9.151
ROOT=$CACHE/cargo-tools
if [ -x "$ROOT/bin/cargo-nextest" ] && "$ROOT/bin/cargo-nextest" nextest --version 2>/dev/null | grep -q "$NEXTEST_VERSION"; then
  exit 0
fi
say "building cargo-nextest $NEXTEST_VERSION from crates.io (first run: about 5 min)"
CARGO_TARGET_DIR=$CACHE/cargo-tools-target cargo install --locked --quiet --root "$ROOT" \
  "cargo-nextest@$NEXTEST_VERSION" || die "cargo install cargo-nextest failed"
rm -rf "$CACHE/cargo-tools-target"
