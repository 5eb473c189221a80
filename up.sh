#!/usr/bin/env bash
# up.sh: bring the whole order system up on this machine and print where to open it.
#   kind mode  (a container engine answers; not with --local): a kind cluster, images built and loaded, the
#              operator and a development Kafka and PostgreSQL installed with helm, a sample OrderSystem (e2e/kind.sh)
#   real-node mode (no container engine, or --local): PostgreSQL, Kafka, a Kubernetes control plane and a real node of
#              it (kubelet, containerd, runc, CNI bridge, kube-proxy, CoreDNS) on this machine, the images
#              built with buildah, the operator installed with helm, an OrderSystem         (e2e/node-up.sh)
# Real-node mode installs Debian packages and changes this host (README: "What ./up.sh changes on this
# machine"); it asks first, or goes ahead with --yes. First run on a fresh 2-core machine: about 30-40 min
# (compiling Kubernetes and the workspace); later runs: a few minutes.
set -euo pipefail
cd "$(dirname "$0")"
usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  echo
  echo "usage: ./up.sh [--yes] [--local]"
  echo "  --yes    make the host changes real-node mode needs without asking"
  echo "  --local  real-node mode even where a container engine answers"
}
local_node=false
for arg in "$@"; do
  case "$arg" in
    --yes|-y) export ORDERSYSTEM_ALLOW_HOST_CHANGES=yes ;;
    --local) local_node=true ;;
    --help|-h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
if ! $local_node && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo "[up] a container engine answers: kind mode" >&2
  exec e2e/kind.sh up
fi
if $local_node; then
  echo "[up] --local: real-node mode (a kubelet node on this machine, behind a network guard)" >&2
else
  echo "[up] no container engine: real-node mode (a kubelet node on this machine, behind a network guard)" >&2
fi
exec e2e/node-up.sh
