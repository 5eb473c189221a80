#!/usr/bin/env bash
# check-runtime-libs.sh: build the release binaries exactly as the Dockerfile does, then check with ldd that
# every shared library they load is in the runtime image (runtime-libs.txt), so the distroless image users
# build has what the binaries need. build-images.sh then builds the images themselves here, on a runtime base
# made from this machine's Debian packages.
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=${CARGO_TARGET_DIR:-target}
e2e/images/cargo-release.sh
allowed=$(grep -v '^#' e2e/images/runtime-libs.txt)
status=0
for bin in ordersystem-operator ordersystem-order ordersystem-invoicing ordersystem-shipping; do
  path=$TARGET/release/$bin
  [ -x "$path" ] || { echo "missing release binary $path" >&2; exit 1; }
  while read -r lib; do
    if ! grep -qxF "$lib" <<<"$allowed"; then
      echo "$bin needs $lib, which the runtime image does not have" >&2
      status=1
    fi
  done < <(ldd "$path" | awk '{print $1}' | xargs -n1 basename)
  echo "$bin: $(ldd "$path" | awk '{print $1}' | xargs -n1 basename | tr '\n' ' ')"
done
exit $status
