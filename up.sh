#!/usr/bin/env bash
# up.sh: bring the order system up on this machine.
#   kind mode  (a container engine answers): not yet wired; see README "Status"
#   local mode (no container engine): real PostgreSQL, Kafka and Kubernetes control plane on loopback
# First run on a fresh 2-core machine: 20-35 min (compiling Kubernetes); later runs: under a minute.
set -euo pipefail
cd "$(dirname "$0")"
STATE=${ORDERSYSTEM_STATE:-/tmp/ordersystem}
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo "[up] a container engine answers, but kind mode is not wired yet: starting local mode instead" >&2
else
  echo "[up] no container engine: local mode (host processes on loopback)" >&2
fi
e2e/infra/up.sh
cat <<MSG
[up] local mode is up:
       PostgreSQL   127.0.0.1:5432 (database ordersystem_test, non-superuser admin ordersystem_admin)
       Kafka        127.0.0.1:19092 (KRaft, single node)
       Kubernetes   https://127.0.0.1:6443 (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)
     use it:   . $STATE/env && kubectl get namespaces
     stop it:  e2e/infra/down.sh
MSG
