#!/usr/bin/env bash
# install-packages.sh: the Debian packages the tests and builds need (as root; apt-get only when something is
# missing). PostgreSQL itself is configured by postgres.sh.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" packages
PACKAGES=(
  openssl curl ca-certificates                              # control-plane PKI, readiness probes
  "postgresql-$POSTGRES_MAJOR" "postgresql-client-$POSTGRES_MAJOR"
  build-essential cmake pkg-config libssl-dev libsasl2-dev zlib1g-dev   # librdkafka, built by rdkafka-sys
  shellcheck                                                # lint of every script in CI
  containerd runc containernetworking-plugins               # the real node's runtime and CNI (node.sh)
  iptables nftables iproute2 kmod                           # kube-proxy, the network guard, the bridge
  buildah busybox-static gettext-base                       # images without Docker; the debug image; envsubst
  prometheus                                                # the monitoring test's server and promtool (never its daemon)
  chromium chromium-driver                                  # the browser test's Chromium and its WebDriver (browser.sh)
)
for t in go java mvn cargo python3; do command -v "$t" >/dev/null || die "$t is required but not on PATH"; done
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
[ "$(id -u)" = 0 ] || die "missing Debian packages ${missing[*]}: install them as root (apt-get install ${missing[*]})"
LOG=$STATE/logs/apt.log
mkdir -p "$STATE/logs"
say "installing Debian packages: ${missing[*]} (log: $LOG)"
apt-get update >"$LOG" 2>&1 || die_with_log "$LOG" "apt-get update failed"
# No package may start a system daemon (prometheus, containerd, postgresql come with one): the test bed starts
# what it needs itself, bound to loopback or its bridge. invoke-rc.d asks policy-rc.d first; 101 is "no".
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$POLICY" && chmod 755 "$POLICY"
  trap 'rm -f "$POLICY"' EXIT
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >>"$LOG" 2>&1 \
  || die_with_log "$LOG" "apt-get install ${missing[*]} failed"
say "installed"
