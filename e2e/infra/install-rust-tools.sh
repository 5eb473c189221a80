#!/usr/bin/env bash
# install-rust-tools.sh: cargo-nextest (per-test time limits, one process per test), built from crates.io once
# and cached in $CACHE/cargo-tools. First run: about 5 minutes on 2 cores.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" rust-tools
NEXTEST_VERSION=0.9.151
ROOT=$CACHE/cargo-tools
# The version captured whole, never through `| grep -q`: under pipefail an early-closed pipe fails the check.
installed=$("$ROOT/bin/cargo-nextest" nextest --version 2>/dev/null || true)
[[ $installed == *" $NEXTEST_VERSION"* ]] && exit 0
say "building cargo-nextest $NEXTEST_VERSION from crates.io (first run: about 5 min)"
# Without the self-update feature (nextest's own updater, with its TLS stack): the version is pinned here.
CARGO_TARGET_DIR=$CACHE/cargo-tools-target cargo install --locked --quiet --root "$ROOT" \
  --no-default-features --features default-no-update \
  "cargo-nextest@$NEXTEST_VERSION" || die "cargo install cargo-nextest failed"
rm -rf "$CACHE/cargo-tools-target"
