#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and etcd from Go modules, and helm,
# into $CACHE/k8s/<version>/ and $CACHE/bin/. Idempotent: a cached build returns at once.
# k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces the staging modules with local paths), so a
# throwaway wrapper module requires it and replaces each staging module with its published v0.Y.Z.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" k8s-build
K8S_VERSION=${K8S_VERSION:-$KUBERNETES_VERSION}
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
OUT=$CACHE/k8s/$K8S_VERSION
export CGO_ENABLED=0
BINS="kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy etcd"

build_kubernetes() {
  local all=1 b
  for b in $BINS; do [ -x "$OUT/$b" ] || all=0; done
  if [ $all = 1 ]; then say "cached: $OUT"; return; fi
  local w; w=$(mktemp -d)
  mkdir -p "$w/k8s" "$w/etcd" "$OUT"
  say "building Kubernetes $K8S_VERSION into $OUT (first run on 2 cores: 15-30 min)"
  cd "$w/k8s" || exit
  go mod init local.test/k8sbins >/dev/null 2>&1
  local kmod
  kmod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])') \
    || die "the Go module proxy refused k8s.io/kubernetes@$K8S_VERSION"
  # Every k8s.io/* module required at v0.0.0 is a staging module: pin it to the published v0.Y.Z.
  local m n=0
  while read -r m; do
    go mod edit -replace="$m=$m@$STAGING_VERSION"; n=$((n + 1))
  done < <(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$kmod" | sort -u)
  say "replaced $n staging modules with $STAGING_VERSION"
  go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
  local gd; gd=$(awk '$1=="godebug" && $2 ~ /=/ {print $2}' "$kmod")
  [ -n "$gd" ] && go mod edit -godebug="$gd"
  local pkgs="k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy"
  say "resolving the module graph (go get)"
  # shellcheck disable=SC2046
  go get $(for p in $pkgs; do printf '%s@%s ' "$p" "$K8S_VERSION"; done) 2>&1 | tail -n 20 >&2 \
    || die "go get failed: the module named above was refused by the Go module proxy"
  local minor ldf="-s -w" p
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf="$ldf -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  say "compiling kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet, kube-proxy"
  # shellcheck disable=SC2086
  go build -trimpath -ldflags "$ldf" -o "$OUT/" $pkgs

  local etcd_version; etcd_version=${ETCD_VERSION:-$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2}' "$kmod")}
  cd "$w/etcd" || exit
  go mod init local.test/etcdbin >/dev/null 2>&1
  say "building etcd $etcd_version"
  if ! go get "go.etcd.io/etcd/server/v3@$etcd_version" >&2; then
    say "etcd $etcd_version refused by the Go module proxy; falling back to v3.6.16"
    etcd_version=v3.6.16; go get "go.etcd.io/etcd/server/v3@$etcd_version" >&2
  fi
  go build -trimpath -ldflags "-s -w" -o "$OUT/etcd" go.etcd.io/etcd/server/v3
  echo "$etcd_version" > "$OUT/etcd.version"
  cd / && rm -rf "$w"
  say "built: $(find "$OUT" -maxdepth 1 -type f -printf '%f ')"
}

build_helm() {
  if [ -x "$CACHE/bin/helm" ] && [[ $("$CACHE/bin/helm" version --short 2>/dev/null || true) == "$HELM_VERSION"* ]]; then
    say "cached: helm $HELM_VERSION"; return
  fi
  say "installing helm $HELM_VERSION (go install)"
  cd / && CGO_ENABLED=0 go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

build_kubernetes
build_helm
