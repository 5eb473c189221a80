#!/usr/bin/env bash
# node-up.sh: the whole shop on this machine without a container engine: the test bed (PostgreSQL, Kafka, the
# Kubernetes control plane and a real node of it: kubelet, containerd, runc, CNI bridge, kube-proxy, CoreDNS),
# the four images built from the Dockerfile and imported into the node, the operator installed with helm, and
# an OrderSystem. Prints where to open the order UI, invoicing and shipping. Stop it all with
# e2e/infra/down.sh. It installs packages and changes this host: e2e/infra/up.sh says what and asks first.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${ORDERSYSTEM_CACHE:-$HOME/.cache/ordersystem}
STATE=${ORDERSYSTEM_STATE:-/tmp/ordersystem}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/cargo-target}
OPERATOR_NS=ordersystem-system
SHOP_NS=shop
say() { printf '[up] %s\n' "$*" >&2; }

e2e/infra/up.sh
# shellcheck source=/dev/null
. "$STATE/env"

say "building the release binaries and the four images (first run: 10-15 min)"
e2e/images/cargo-release.sh
e2e/images/build-images.sh

# The node is tainted: only namespaces pinned to it run there.
pin() {
  kubectl create namespace "$1" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl annotate --overwrite namespace "$1" \
    "scheduler.alpha.kubernetes.io/node-selector=$ORDERSYSTEM_NODE_KEY=$ORDERSYSTEM_NODE" \
    "scheduler.alpha.kubernetes.io/defaultTolerations=[{\"key\":\"$ORDERSYSTEM_NODE_KEY\",\"operator\":\"Equal\",\"value\":\"$ORDERSYSTEM_NODE\",\"effect\":\"NoSchedule\"}]" >/dev/null
  until kubectl -n "$1" get serviceaccount default >/dev/null 2>&1; do sleep 1; done
}
pin "$OPERATOR_NS"
pin "$SHOP_NS"

say "installing the operator with helm"
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
helm upgrade --install ordersystem-operator charts/ordersystem-operator --namespace "$OPERATOR_NS" \
  --set logFormat=text >/dev/null
kubectl -n "$OPERATOR_NS" rollout status deployment/ordersystem-operator --timeout=180s >/dev/null

say "applying the OrderSystem $SHOP_NS/shop (Kafka $KAFKA_NODE_BOOTSTRAP, PostgreSQL $POSTGRES_NODE_HOST:5432)"
url=$(e2e/infra/postgres.sh url)
creds=${url#postgres://}; userpass=${creds%%@*}; hostpart=${creds#*@}; port=${hostpart%%/*}; port=${port##*:}
kubectl -n "$SHOP_NS" create secret generic pg-admin --dry-run=client -o yaml \
  --from-literal=host="$POSTGRES_NODE_HOST" --from-literal=port="$port" --from-literal=dbname="${hostpart#*/}" \
  --from-literal=username="${userpass%%:*}" --from-literal=password="${userpass#*:}" | kubectl apply -f - >/dev/null
sed "s|bootstrapServers: .*|bootstrapServers: $KAFKA_NODE_BOOTSTRAP|" e2e/dev-shop.yaml | kubectl -n "$SHOP_NS" apply -f - >/dev/null
say "waiting for the shop to be Ready"
if ! kubectl -n "$SHOP_NS" wait --for=condition=Ready ordersystem/shop --timeout=180s >/dev/null; then
  kubectl -n "$SHOP_NS" get ordersystem shop -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}' >&2
  kubectl -n "$SHOP_NS" get pods -o wide >&2
  exit 1
fi
kubectl -n "$SHOP_NS" get ordersystems
# Each Service's ClusterIP: kube-proxy's rules on this machine route it to a ready pod, it stays while pods
# come and go, and it is reachable from this machine only (the guard keeps the uplink out).
service_url() {
  echo "http://$(kubectl -n "$SHOP_NS" get service "shop-$1" -o jsonpath='{.spec.clusterIP}'):8080/"
}
cat <<MSG
[up] the shop is up on the node $ORDERSYSTEM_NODE; open these on this machine (Service addresses, routed
     by kube-proxy; nothing listens on the network outside it):
       order      $(service_url order)   (form: form.html, API: api/orders)
       invoicing  $(service_url invoicing)
       shipping   $(service_url shipping)
     scale:  kubectl -n $SHOP_NS patch ordersystem shop --type merge -p '{"spec":{"invoicing":{"replicas":3}}}'
     env:    . $STATE/env   (kubectl, helm and KUBECONFIG for this test bed)
     stop:   e2e/infra/down.sh   (stops everything and restores this host; the data stays for the next start)
MSG
