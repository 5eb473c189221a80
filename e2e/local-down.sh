#!/usr/bin/env bash
# local-down.sh: stop what local-up.sh started: the shop's pods (by stopping the node agent, which ends
# them), then the infrastructure. Topic, schemas and etcd data stay for the next start.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${ORDERSYSTEM_STATE:-/tmp/ordersystem}
AGENT_PID=$STATE/local-agent.pid
if [ -f "$AGENT_PID" ] && kill -0 "$(cat "$AGENT_PID")" 2>/dev/null; then
  echo "[down] stopping the node agent and its pods" >&2
  kill "$(cat "$AGENT_PID")"
  for _ in $(seq 30); do kill -0 "$(cat "$AGENT_PID")" 2>/dev/null || break; sleep 1; done
fi
rm -f "$AGENT_PID"
e2e/infra/down.sh
