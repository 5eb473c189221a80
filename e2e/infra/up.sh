#!/usr/bin/env bash
# up.sh: install, build and start the test infrastructure (PostgreSQL, Kafka, Kubernetes control plane and a
# real node of it), then write $STATE/env with KUBECONFIG, DATABASE_URL, PG_TEST_CA, KAFKA_BOOTSTRAP, the real
# node's names and PATH for the tests and for you:
#   . /tmp/ordersystem/env
# Idempotent: running components are left as they are. First run on a fresh 2-core machine: 20-35 min
# (mostly compiling Kubernetes); later runs: under a minute.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" up

write_env() {
  cat > "$STATE/env" <<ENV
export KUBECONFIG=$STATE/cp/kubeconfig
export DATABASE_URL=$("$INFRA_DIR/postgres.sh" url)
export PG_TEST_CA=$("$INFRA_DIR/postgres.sh" ca)
export KAFKA_BOOTSTRAP=127.0.0.1:19092
$("$INFRA_DIR/node.sh" env)
export PATH=$CACHE/k8s/$KUBERNETES_VERSION:$CACHE/bin:$CACHE/node/current:\$PATH
ENV
  say "environment written to $STATE/env (source it: . $STATE/env)"
}

"$INFRA_DIR/install-packages.sh"
# The guard and the bridge come first: the API server listens on the bridge address.
"$INFRA_DIR/node.sh" net-up
"$INFRA_DIR/postgres.sh" start
"$INFRA_DIR/kafka.sh" start
"$INFRA_DIR/build-k8s-bins.sh"
"$INFRA_DIR/build-node-bins.sh"
"$INFRA_DIR/control-plane.sh" start
"$INFRA_DIR/node.sh" start
write_env
