#!/usr/bin/env bash
# monitoring-crds.sh: the Prometheus Operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs, as its own
# Go module publishes them (example/prometheus-operator-crd at PROMETHEUS_OPERATOR_VERSION, from the Go
# module proxy), applied to the test bed's API server: the chart's monitoring objects are then validated
# and stored by the API server like any other. No Prometheus Operator runs; e2e/tests/monitoring.rs runs a
# real Prometheus with the scrape configuration those objects stand for.
# Usage: monitoring-crds.sh [apply|dir]   (default apply; dir prints the directory holding the CRDs)
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" monitoring-crds
MODULE=github.com/prometheus-operator/prometheus-operator
CRDS="podmonitors servicemonitors prometheusrules"

crd_dir() {
  local dir
  dir=$( (cd / && go mod download -json "$MODULE@$PROMETHEUS_OPERATOR_VERSION") \
    | python3 -c 'import json,sys; m=json.load(sys.stdin); print(m.get("Dir") or sys.exit(m.get("Error", "no Dir")))') \
    || die "the Go module proxy did not serve $MODULE@$PROMETHEUS_OPERATOR_VERSION"
  echo "$dir/example/prometheus-operator-crd"
}

case ${1:-apply} in
  dir) crd_dir ;;
  apply)
    dir=$(crd_dir)
    kubectl() { "$CACHE/k8s/$KUBERNETES_VERSION/kubectl" --kubeconfig "$STATE/cp/kubeconfig" "$@"; }
    for crd in $CRDS; do
      kubectl apply --server-side --force-conflicts -f "$dir/monitoring.coreos.com_$crd.yaml" >/dev/null \
        || die "the API server refused the $crd CRD of $MODULE@$PROMETHEUS_OPERATOR_VERSION"
    done
    # shellcheck disable=SC2046
    kubectl wait --for condition=established --timeout=60s \
      $(for crd in $CRDS; do echo "crd/$crd.monitoring.coreos.com"; done) >/dev/null \
      || die "the monitoring CRDs were not established"
    say "served: $CRDS (monitoring.coreos.com, $PROMETHEUS_OPERATOR_VERSION)"
    ;;
  *) die "usage: monitoring-crds.sh [apply|dir]" ;;
esac
