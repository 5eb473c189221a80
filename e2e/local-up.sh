#!/usr/bin/env bash
# local-up.sh: the whole shop in local mode (no container engine): the test infrastructure, the binaries,
# a node agent that runs pods as host processes, the operator installed with helm, and an OrderSystem.
# Prints where to open the order UI, invoicing and shipping. Stop it all with e2e/local-down.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${ORDERSYSTEM_CACHE:-$HOME/.cache/ordersystem}
STATE=${ORDERSYSTEM_STATE:-/tmp/ordersystem}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/cargo-target}
NODE=ordersystem-local
OPERATOR_NS=ordersystem-system
SHOP_NS=shop
say() { printf '[up] %s\n' "$*" >&2; }

e2e/infra/up.sh
# shellcheck source=/dev/null
. "$STATE/env"

say "building the operator, the services and the node agent (first run: a few minutes)"
cargo build --workspace --bins --locked

AGENT_PID=$STATE/local-agent.pid
if [ -f "$AGENT_PID" ] && kill -0 "$(cat "$AGENT_PID")" 2>/dev/null; then
  say "node agent already running (pid $(cat "$AGENT_PID"))"
else
  say "starting the node agent (Node $NODE; pods get 127.66.0.x; log: $STATE/local-agent.log)"
  # Tainted, so only the namespaces pinned to it below run there (never pods of tests run meanwhile).
  setsid "$CARGO_TARGET_DIR/debug/ordersystem-node-agent" --node-name "$NODE" --pod-ip-prefix 127.66.0 \
    --state-dir "$STATE/agent" --taint "ordersystem.dev/local=$NODE:NoSchedule" \
    --label "ordersystem.dev/local=$NODE" >"$STATE/local-agent.log" 2>&1 < /dev/null &
  echo $! > "$AGENT_PID"
fi
kubectl wait --for=condition=Ready "node/$NODE" --timeout=60s >/dev/null

pin() {
  kubectl create namespace "$1" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl annotate --overwrite namespace "$1" \
    "scheduler.alpha.kubernetes.io/node-selector=ordersystem.dev/local=$NODE" \
    "scheduler.alpha.kubernetes.io/defaultTolerations=[{\"key\":\"ordersystem.dev/local\",\"operator\":\"Equal\",\"value\":\"$NODE\",\"effect\":\"NoSchedule\"}]" >/dev/null
  until kubectl -n "$1" get serviceaccount default >/dev/null 2>&1; do sleep 1; done
}
pin "$OPERATOR_NS"
pin "$SHOP_NS"

say "installing the operator with helm"
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
helm upgrade --install ordersystem-operator charts/ordersystem-operator --namespace "$OPERATOR_NS" \
  --set logFormat=text >/dev/null
kubectl -n "$OPERATOR_NS" rollout status deployment/ordersystem-operator --timeout=120s >/dev/null

say "applying the OrderSystem $SHOP_NS/shop (Kafka 127.0.0.1:19092, PostgreSQL 127.0.0.1:5432)"
url=$(e2e/infra/postgres.sh url)
creds=${url#postgres://}; userpass=${creds%%@*}; hostpart=${creds#*@}
kubectl -n "$SHOP_NS" create secret generic pg-admin --dry-run=client -o yaml \
  --from-literal=host=127.0.0.1 --from-literal=port=5432 --from-literal=dbname="${hostpart#*/}" \
  --from-literal=username="${userpass%%:*}" --from-literal=password="${userpass#*:}" | kubectl apply -f - >/dev/null
kubectl -n "$SHOP_NS" apply -f e2e/dev-shop.yaml >/dev/null
say "waiting for the shop to be Ready"
kubectl -n "$SHOP_NS" wait --for=condition=Ready ordersystem/shop --timeout=180s >/dev/null
kubectl -n "$SHOP_NS" get ordersystems
pod_url() {
  local ip
  # Running only: pods a stopped agent left behind stay listed as Completed.
  ip=$(kubectl -n "$SHOP_NS" get pods -l "app.kubernetes.io/instance=shop,app.kubernetes.io/component=$1" \
        --field-selector=status.phase=Running -o jsonpath='{.items[0].status.podIP}')
  echo "http://$ip:8080/"
}
cat <<MSG
[up] the shop is up (local mode):
       order      $(pod_url order)   (form: form.html, API: api/orders)
       invoicing  $(pod_url invoicing)
       shipping   $(pod_url shipping)
     scale:  kubectl -n $SHOP_NS patch ordersystem shop --type merge -p '{"spec":{"invoicing":{"replicas":3}}}'
     stop:   e2e/local-down.sh
MSG
