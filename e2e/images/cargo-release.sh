#!/usr/bin/env bash
# cargo-release.sh: the one release build command, shared by the Dockerfile and CI (which checks with ldd that
# the binaries need nothing the runtime image lacks). Arguments go to cargo, e.g. --target-dir.
set -euo pipefail
exec cargo build --release --locked \
  -p ordersystem-operator -p ordersystem-order -p ordersystem-invoicing -p ordersystem-shipping "$@"
