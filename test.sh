#!/usr/bin/env bash
# test.sh: run every test (unit, integration against real PostgreSQL and Kafka, control-plane against a real
# kube-apiserver, end-to-end on the test bed's real node) with a time limit per test. Starts the infrastructure first if it is not running
# (e2e/infra/up.sh; first run on a fresh machine: 20-35 min). Extra arguments go to cargo nextest, e.g.
#   ./test.sh -p ordersystem-order        one crate
#   ./test.sh -E 'test(outbox)'           tests whose name matches
set -euo pipefail
cd "$(dirname "$0")"
CACHE=${ORDERSYSTEM_CACHE:-$HOME/.cache/ordersystem}
STATE=${ORDERSYSTEM_STATE:-/tmp/ordersystem}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/cargo-target}
export PATH=$CACHE/cargo-tools/bin:$PATH

e2e/infra/install-rust-tools.sh
e2e/infra/up.sh
# shellcheck source=/dev/null
. "$STATE/env"
# The service tests run the services' binaries as processes: build them first.
echo "[test] building the binaries" >&2
cargo build --workspace --bins --locked
# order with crash points, for e2e/tests/shop/crash.rs (the test would build it too, inside its time limit);
# selected with --workspace like the rest, so only order and the kit are built again (e2e/testkit's binary())
cargo build --workspace --features ordersystem-order/failpoints --bin ordersystem-order-failpoints --locked
# The four images, from the Dockerfile's release build, imported into the real node: every end-to-end test
# runs them there.
echo "[test] building the release binaries and the images" >&2
e2e/images/cargo-release.sh
e2e/images/build-images.sh
echo "[test] running the tests (per-test limits in .config/nextest.toml)" >&2
cargo nextest run --workspace --profile "${NEXTEST_PROFILE:-default}" "$@"
