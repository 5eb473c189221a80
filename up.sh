#!/usr/bin/env bash
# up.sh: bring the whole order system up on this machine and print where to open it.
#   kind mode  (a container engine answers): a kind cluster, images built and loaded, the operator and a
#              development Kafka and PostgreSQL installed with helm, a sample OrderSystem   (e2e/kind.sh)
#   local mode (no container engine): real PostgreSQL, Kafka and Kubernetes control plane on loopback, a
#              node agent that runs pods as host processes, the operator installed with helm,
#              an OrderSystem                                                               (e2e/local-up.sh)
# First run of local mode on a fresh 2-core machine: about 15-20 min (compiling Kubernetes and the
# workspace); later runs: under a minute.
set -euo pipefail
cd "$(dirname "$0")"
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo "[up] a container engine answers: kind mode" >&2
  exec e2e/kind.sh up
fi
echo "[up] no container engine: local mode (pods run as host processes on loopback)" >&2
exec e2e/local-up.sh
