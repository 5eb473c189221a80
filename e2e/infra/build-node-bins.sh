#!/usr/bin/env bash
# build-node-bins.sh: what the real test node needs beyond Debian's packages and build-k8s-bins.sh (which
# builds the kubelet and kube-proxy): a CoreDNS with the plugins node.sh's Corefile uses, crictl, and the
# pause binary compiled from the Kubernetes module's own build/pause/linux/pause.c. Into $CACHE/node/<key>/;
# idempotent: a cached build returns at once.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" node-build
OUT=$CACHE/node/coredns-$COREDNS_VERSION.crictl-$CRICTL_VERSION.pause-$PAUSE_VERSION.$(sha256sum "$INFRA_DIR/node/coredns-main.go" | cut -c1-12)
mkdir -p "$OUT"

build_coredns() {
  if [ -x "$OUT/coredns" ]; then say "cached: coredns $COREDNS_VERSION"; return; fi
  local w; w=$(mktemp -d)
  say "building CoreDNS $COREDNS_VERSION with the node's plugins only (first run on 2 cores: 2-3 min)"
  cp "$INFRA_DIR/node/coredns-main.go" "$w/main.go"
  (
    cd "$w" || exit 1
    go mod init local.test/coredns >/dev/null 2>&1
    go get "github.com/coredns/coredns@$COREDNS_VERSION" >&2 && go mod tidy >&2 \
      && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT/coredns.tmp" .
  ) || { rm -rf "$w"; die "CoreDNS $COREDNS_VERSION did not build (a module refused by the Go module proxy is named above)"; }
  rm -rf "$w"
  mv "$OUT/coredns.tmp" "$OUT/coredns"
}

build_crictl() {
  if [ -x "$OUT/crictl" ]; then say "cached: crictl $CRICTL_VERSION"; return; fi
  say "building crictl $CRICTL_VERSION"
  (cd / && CGO_ENABLED=0 GOBIN="$OUT" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION") \
    || die "crictl $CRICTL_VERSION did not build"
}

# The sandbox ("pause") process, as build/pause/Makefile builds it: static, tagged with its version.
build_pause() {
  if [ -x "$OUT/pause" ]; then say "cached: pause $PAUSE_VERSION"; return; fi
  local src
  src=$( (cd / && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION") | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')/build/pause/linux/pause.c
  [ -f "$src" ] || die "pause.c not found in the k8s.io/kubernetes@$KUBERNETES_VERSION module ($src)"
  say "compiling pause $PAUSE_VERSION from $src"
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-ordersystem" -o "$OUT/pause" "$src" || die "gcc pause.c failed"
}

build_coredns
build_crictl
build_pause
# node.sh finds the binaries through this link.
ln -sfn "$OUT" "$CACHE/node/current"
say "built: $(find "$OUT" -maxdepth 1 -type f -printf '%f ')"
