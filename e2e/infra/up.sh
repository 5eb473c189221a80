#!/usr/bin/env bash
# up.sh: install, build and start the test infrastructure (PostgreSQL, the newest PostgreSQL major beside it,
# Kafka, Kubernetes control plane and a real node of it), then write $STATE/env with KUBECONFIG, DATABASE_URL,
# PG_TEST_CA, PG_NEXT_DATABASE_URL, PG_NEXT_CA, KAFKA_BOOTSTRAP (what the host uses), KAFKA_NODE_BOOTSTRAP and
# POSTGRES_NODE_HOST (what the node's pods use), OTLP_ENDPOINT and OTLP_SPANS_FILE (the tracing backend's
# receiver on loopback and the file it writes the spans to), the real node's names and PATH for the tests
# and for you:
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
export PG_NEXT_DATABASE_URL=$("$INFRA_DIR/postgres-next.sh" url)
export PG_NEXT_CA=$("$INFRA_DIR/postgres-next.sh" ca)
export KAFKA_BOOTSTRAP=$("$INFRA_DIR/kafka.sh" bootstrap)
export KAFKA_NODE_BOOTSTRAP=$("$INFRA_DIR/kafka.sh" node-bootstrap)
export POSTGRES_NODE_HOST=$("$INFRA_DIR/postgres.sh" node-host)
export OTLP_ENDPOINT=$("$INFRA_DIR/otelcol.sh" endpoint)
export OTLP_SPANS_FILE=$("$INFRA_DIR/otelcol.sh" spans)
$("$INFRA_DIR/node.sh" env)
export PATH=$CACHE/k8s/$KUBERNETES_VERSION:$CACHE/bin:$CACHE/node/current:\$PATH
ENV
  say "environment written to $STATE/env (source it: . $STATE/env)"
}

# consent: the first start changes this host; outside CI it says how and asks first (or needs
# ORDERSYSTEM_ALLOW_HOST_CHANGES=yes, which ./up.sh --yes sets). A test bed already up was consented to.
consent() {
  [ "${CI:-}" = true ] || [ "${ORDERSYSTEM_ALLOW_HOST_CHANGES:-}" = yes ] && return
  nft list table inet ordersystem_guard >/dev/null 2>&1 && return
  cat >&2 <<'MSG'
[up] The test bed changes this machine (README: "What ./up.sh changes on this machine"):
     - installs missing Debian packages (PostgreSQL, containerd, runc, CNI plugins, nftables, buildah, ...);
     - adds the bridge osbr0 (10.244.0.1/24), a route for 10.0.0.0/24 and the nftables table
       inet ordersystem_guard, which drops whatever would leave through the uplink;
     - turns on net.ipv4.ip_forward and the sysctls the kubelet sets; kube-proxy adds KUBE-* rules;
     - configures and starts PostgreSQL (listening on 127.0.0.1 and 10.244.0.1), and runs Kafka, etcd,
       the API server, containerd and a kubelet as root.
     e2e/infra/down.sh stops it all and puts the bridge, the guard, the route and the sysctls back.
MSG
  if [ -t 0 ]; then
    local answer
    read -r -p "[up] Go on? [y/N] " answer
    [[ $answer =~ ^[Yy] ]] || die "nothing was changed"
  else
    die "not asked interactively: run ./up.sh --yes (or set ORDERSYSTEM_ALLOW_HOST_CHANGES=yes) to go ahead"
  fi
}

consent
"$INFRA_DIR/install-packages.sh"
# The guard and the bridge come first: the API server listens on the bridge address.
"$INFRA_DIR/node.sh" net-up
"$INFRA_DIR/postgres.sh" start
"$INFRA_DIR/postgres-next.sh" start
"$INFRA_DIR/kafka.sh" start
"$INFRA_DIR/otelcol.sh" start
"$INFRA_DIR/build-k8s-bins.sh"
"$INFRA_DIR/build-node-bins.sh"
"$INFRA_DIR/control-plane.sh" start
"$INFRA_DIR/monitoring-crds.sh"
"$INFRA_DIR/gateway-api-crds.sh"
"$INFRA_DIR/example-crds.sh"
"$INFRA_DIR/node.sh" start
write_env
