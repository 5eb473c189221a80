#!/usr/bin/env bash
# monitoring-crds.sh: the Prometheus Operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs, as its own
# Go module publishes them (example/prometheus-operator-crd at PROMETHEUS_OPERATOR_VERSION, from the Go
# module proxy), applied to the test bed's API server: the chart's monitoring objects are then validated
# and stored by the API server like any other. No Prometheus Operator runs; e2e/tests/monitoring.rs runs a
# real Prometheus with the scrape configuration those objects stand for.
# Usage: monitoring-crds.sh [apply|dir]   (default apply; dir prints the directory holding the CRDs)
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" monitoring-crds
module_crds monitoring.coreos.com github.com/prometheus-operator/prometheus-operator \
  "$PROMETHEUS_OPERATOR_VERSION" example/prometheus-operator-crd "${1:-apply}" \
  monitoring.coreos.com_{podmonitors,servicemonitors,prometheusrules}.yaml
