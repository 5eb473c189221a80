#!/usr/bin/env bash
# check-chart.sh: helm lint (strict) and helm template of the operator chart with its defaults and with every
# option on, then a server-side dry run of the rendered objects against the local API server (real
# validation of every object, CRDs included). Needs the control plane of e2e/infra/up.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${ORDERSYSTEM_STATE:-/tmp/ordersystem}
# shellcheck source=/dev/null
. "$STATE/env"
CHART=charts/ordersystem-operator
NS=chart-check-$$
helm lint --strict "$CHART"
# Every pod option of the chart at once (e2e/tests/chart_options.rs installs them for real).
OPTIONS=(--set priorityClassName=system-cluster-critical --set 'imagePullSecrets[0].name=mirror'
  --set podLabels.team=platform --set podAnnotations.note=hello --set 'extraArgs[0]=--log-format=text'
  --set 'extraEnv[0].name=RUST_LOG' --set 'extraEnv[0].value=debug' --set serviceImages.defaultTag=0.2.0
  --set 'topologySpreadConstraints[0].maxSkew=1' --set 'topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname'
  --set 'topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway'
  --set podSecurityContext.runAsNonRoot=true --set securityContext.readOnlyRootFilesystem=true
  --set tracing.otlpEndpoint=http://otel-collector.observability:4318)
helm lint --strict "$CHART" --set watchNamespace=shop --set networkPolicy.enabled=true \
  --set serviceMonitor.enabled=true --set devBackends.kafka.enabled=true --set devBackends.postgres.enabled=true \
  --set leaderElection.enabled=true --set replicaCount=2 "${OPTIONS[@]}"
helm lint --strict "$CHART" --set aggregateRoles.enabled=false
# Two replicas without leader election would reconcile side by side: the chart refuses to render that.
if helm template check "$CHART" --set replicaCount=2 >/dev/null 2>&1; then
  echo "chart: replicaCount=2 without leaderElection.enabled rendered, but must be refused" >&2
  exit 1
fi
# The collector's endpoint must be a URL: a bare host:port would only fail in the operator's log.
if helm template check "$CHART" --set tracing.otlpEndpoint=otel-collector:4318 >/dev/null 2>&1; then
  echo "chart: tracing.otlpEndpoint=otel-collector:4318 rendered, but must be refused" >&2
  exit 1
fi
kubectl create namespace "$NS" >/dev/null
trap 'kubectl delete namespace "$NS" --wait=false >/dev/null' EXIT
kubectl apply --server-side --force-conflicts --dry-run=server -f "$CHART/crds/" >/dev/null
# The monitoring objects against the Prometheus Operator's own CRDs (e2e/infra/monitoring-crds.sh serves them).
MONITORING=(--set serviceMonitor.enabled=true --set monitoring.podMonitor.enabled=true
  --set monitoring.prometheusRule.enabled=true --set monitoring.dashboard.enabled=true)
# The helm test pod names a ServiceAccount that a dry run does not create: e2e/tests/chart_options.rs runs it.
helm template check "$CHART" --namespace "$NS" --skip-tests --set networkPolicy.enabled=true \
  --set devBackends.kafka.enabled=true --set devBackends.postgres.enabled=true \
  --set leaderElection.enabled=true --set replicaCount=2 "${OPTIONS[@]}" "${MONITORING[@]}" \
  | kubectl apply --dry-run=server --namespace "$NS" -f -
# The alerting rules as Prometheus reads them (the PrometheusRule's spec), and their unit tests.
RULES=$(mktemp -d)
trap 'kubectl delete namespace "$NS" --wait=false >/dev/null; rm -rf "$RULES"' EXIT
helm template check "$CHART" --set monitoring.prometheusRule.enabled=true --show-only templates/prometheusrule.yaml \
  | python3 -c 'import sys, yaml; print(yaml.safe_dump(yaml.safe_load(sys.stdin)["spec"]))' >"$RULES/ordersystem-rules.yaml"
promtool check rules "$RULES/ordersystem-rules.yaml"
cp e2e/monitoring/rules-test.yaml "$RULES/"
promtool test rules "$RULES/rules-test.yaml"
echo "chart: lint, template and server-side dry run passed"
