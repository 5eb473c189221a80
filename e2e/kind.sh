#!/usr/bin/env bash
# kind.sh up|test|down: the order system on a kind cluster. Needs Docker (or another engine kind supports),
# kind, kubectl and helm; cannot run on machines without a container engine (use e2e/node-up.sh there).
#   up    create the cluster (kind-config.yaml), build and load the images, install the operator with the
#         development Kafka and PostgreSQL, apply an OrderSystem, wait for Ready, print how to reach it
#   test  create the cluster, build and load the images, install the operator and the development
#         backends, then run the end-to-end scenario (e2e/tests/scenario.rs) in kind mode
#   down  delete the cluster
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER=ordersystem
OPERATOR_NS=ordersystem-system
RELEASE=ordersystem-operator
TAG=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/ordersystem-operator/Chart.yaml)
say() { printf '[kind] %s\n' "$*" >&2; }

require() {
  local t
  for t in docker kind kubectl helm; do
    command -v "$t" >/dev/null || { say "ERROR: $t is required for kind mode"; exit 1; }
  done
  docker info >/dev/null 2>&1 || { say "ERROR: no container engine answers (docker info failed)"; exit 1; }
}

cluster() {
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    say "cluster $CLUSTER exists"
  else
    say "creating cluster $CLUSTER (kind-config.yaml)"
    kind create cluster --config kind-config.yaml --wait 120s
  fi
  kubectl config use-context "kind-$CLUSTER" >/dev/null
}

images() {
  local target
  for target in operator order invoicing shipping; do
    say "building ghcr.io/ordersystem/$target:$TAG (Dockerfile target $target)"
    docker build --target "$target" -t "ghcr.io/ordersystem/$target:$TAG" .
    kind load docker-image --name "$CLUSTER" "ghcr.io/ordersystem/$target:$TAG"
  done
  # The scenario rolls shipping and order to a new tag: the same images under a second name.
  for target in shipping order; do
    docker tag "ghcr.io/ordersystem/$target:$TAG" "ghcr.io/ordersystem/$target:e2e-rolled"
    kind load docker-image --name "$CLUSTER" "ghcr.io/ordersystem/$target:e2e-rolled"
  done
}

operator() {
  say "installing the operator with the development Kafka and PostgreSQL (not for production)"
  # Helm never upgrades CRDs: apply them first, server-side.
  kubectl apply --server-side --force-conflicts -f crds/
  helm upgrade --install "$RELEASE" charts/ordersystem-operator --namespace "$OPERATOR_NS" --create-namespace \
    --set devBackends.kafka.enabled=true --set devBackends.postgres.enabled=true --wait --timeout 5m
  kubectl -n "$OPERATOR_NS" rollout status "statefulset/$RELEASE-dev-kafka" --timeout=300s
  kubectl -n "$OPERATOR_NS" rollout status "statefulset/$RELEASE-dev-postgres" --timeout=300s
}

shop() {
  kubectl create namespace shop --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  local secret=$RELEASE-dev-postgres-admin key args=()
  for key in host port dbname username password; do
    args+=("--from-literal=$key=$(kubectl -n "$OPERATOR_NS" get secret "$secret" -o "jsonpath={.data.$key}" | base64 -d)")
  done
  kubectl -n shop create secret generic pg-admin "${args[@]}" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  # The development shop, with the in-cluster development Kafka in place of the test bed's broker.
  sed "s|bootstrapServers: .*|bootstrapServers: $RELEASE-dev-kafka.$OPERATOR_NS.svc:9092|" e2e/dev-shop.yaml |
    kubectl -n shop apply -f -
  say "waiting for the shop to be Ready"
  kubectl -n shop wait --for=condition=Ready ordersystem/shop --timeout=300s
  kubectl -n shop get ordersystems
  cat <<MSG
[kind] the shop is up (kind mode). Reach it with port-forwards:
         kubectl -n shop port-forward svc/shop-order 8081:8080       # http://localhost:8081/
         kubectl -n shop port-forward svc/shop-invoicing 8083:8080   # http://localhost:8083/
         kubectl -n shop port-forward svc/shop-shipping 8082:8080    # http://localhost:8082/
       stop: e2e/kind.sh down
MSG
}

scenario() {
  say "running the end-to-end scenario in kind mode"
  E2E_MODE=kind \
  E2E_OPERATOR_NAMESPACE="$OPERATOR_NS" \
  E2E_KAFKA_BOOTSTRAP="$RELEASE-dev-kafka.$OPERATOR_NS.svc:9092" \
  E2E_PG_ADMIN_SECRET="$OPERATOR_NS/$RELEASE-dev-postgres-admin" \
  E2E_PSQL="kubectl -n $OPERATOR_NS exec statefulset/$RELEASE-dev-postgres -- psql -U postgres -d ordersystem -tAc" \
  KUBECONFIG="${KUBECONFIG:-$HOME/.kube/config}" \
    cargo test --locked -p ordersystem-e2e --test scenario -- --nocapture
}

case "${1:-}" in
  up) require; cluster; images; operator; shop ;;
  test) require; cluster; images; operator; scenario ;;
  down) require; kind delete cluster --name "$CLUSTER" ;;
  *) echo "usage: $0 up|test|down" >&2; exit 2 ;;
esac
