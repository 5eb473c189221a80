#!/usr/bin/env bash
# node-restart-check.sh: the real node survives a crash of everything it runs on. With pods running on it, the
# kubelet, kube-proxy, containerd and every shim are killed with SIGKILL and the node is started again; then
# the same pods (same uid) must be Running and Ready, nothing of the killed sandboxes may be left (no mount, no
# cgroup), and the bridge must carry exactly one veth per running pod. A CI stage of its own, never beside
# tests: it takes the whole node down for a while.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" node-restart
eval "$("$INFRA_DIR/node.sh" env)"
export KUBECONFIG=$STATE/cp/kubeconfig
export PATH=$CACHE/k8s/$KUBERNETES_VERSION:$CACHE/node/current:$PATH
NS=node-restart-check

pods_on_node() {
  kubectl get pods -A --field-selector "spec.nodeName=$ORDERSYSTEM_NODE" \
    -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name} {.metadata.uid}{"\n"}{end}' | sort
}
containers_on_node() {
  kubectl get pods -A --field-selector "spec.nodeName=$ORDERSYSTEM_NODE" \
    -o jsonpath='{range .items[*].status.containerStatuses[*]}{.containerID}{"\n"}{end}' | sort
}
# all_ready N OLD_CONTAINERS: N pods Ready, each in a container other than the killed ones (a status the
# kubelet wrote before the crash does not count).
all_ready() {
  local want=$1 old=$2 ready
  ready=$(kubectl get pods -A --field-selector "spec.nodeName=$ORDERSYSTEM_NODE" \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)
  [ "$ready" = "$want" ] && [ -z "$(comm -12 <(containers_on_node) <(echo "$old"))" ]
}

# The workload goes with the check, however it ends.
trap 'kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT
say "a workload of two pods on node $ORDERSYSTEM_NODE"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# Restricted like every test namespace: the API server refuses a pod of it that the profile does not allow.
kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
kubectl apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: sleeper, namespace: $NS}
spec:
  replicas: 2
  selector: {matchLabels: {app: sleeper}}
  template:
    metadata: {labels: {app: sleeper}}
    spec:
      nodeSelector: {$ORDERSYSTEM_NODE_KEY: $ORDERSYSTEM_NODE}
      tolerations: [{key: $ORDERSYSTEM_NODE_KEY, operator: Exists, effect: NoSchedule}]
      terminationGracePeriodSeconds: 1
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: sleeper
          image: $ORDERSYSTEM_NODE_DEBUG_IMAGE
          imagePullPolicy: Never
          command: [sleep, "86400"]
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
YAML
kubectl -n "$NS" rollout status deployment/sleeper --timeout=120s >&2 || die "the workload did not start"

# Only pods that are Ready can be seen to come back: one that is not (left by an earlier run that failed,
# waiting for an image a later build replaced) is named instead of timing the check out.
not_ready=$(kubectl get pods -A --field-selector "spec.nodeName=$ORDERSYSTEM_NODE" \
  -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
  | awk '$2 != "True" {print $1}')
[ -z "$not_ready" ] || die "pods on the node are not Ready before the crash (left by an earlier run? delete their namespaces): $(tr "\n" " " <<<"$not_ready")"

before=$(pods_on_node)
count=$(wc -l <<<"$before")
killed=$(containers_on_node)
old_sandboxes=$(crictl pods -q)
old_containers=$(crictl ps -q)
say "$count pods on the node, $(wc -w <<<"$old_sandboxes") sandboxes, $(wc -w <<<"$old_containers") containers; killing the node with SIGKILL"
"$INFRA_DIR/node.sh" kill
sleep 2
"$INFRA_DIR/node.sh" status | grep ': running' && die "a component survived SIGKILL"
pgrep -f -- "-address ${ORDERSYSTEM_NODE_CRI#unix://}" >/dev/null && die "a shim survived SIGKILL"

"$INFRA_DIR/node.sh" start
say "waiting for the same $count pods to be Ready again"
for ((i = 0; i < 180; i++)); do all_ready "$count" "$killed" && break; sleep 1; done
all_ready "$count" "$killed" || { kubectl get pods -A -o wide >&2; die "not every pod came back Ready within 180 s"; }
after=$(pods_on_node)
[ "$before" = "$after" ] || die "the pods on the node changed: before
$before
after
$after"
say "the same pods are Ready again (same names and uids), each in a new container"

new_sandboxes=$(crictl pods -q --state ready)
bad=0
for id in $old_sandboxes $old_containers; do
  grep -qx "$id" <<<"$new_sandboxes $(crictl ps -q)" && continue
  if findmnt -rn -o TARGET | grep -F "$id" >/dev/null; then say "a mount of the killed sandbox or container $id is left"; bad=1; fi
  if find /sys/fs/cgroup/memory /sys/fs/cgroup/cpu -type d -name "*$id*" 2>/dev/null | grep . >/dev/null; then
    say "a cgroup of the killed sandbox or container $id is left"; bad=1
  fi
done
veths=$(ip -o link show master osbr0 | grep -c veth)
sandboxes=$(wc -w <<<"$new_sandboxes")
say "$veths veths on osbr0 for $sandboxes ready sandboxes ($count pods)"
{ [ "$veths" = "$sandboxes" ] && [ "$sandboxes" = "$count" ]; } || { say "expected one veth per pod"; bad=1; }
kubectl delete namespace "$NS" --wait=true --timeout=60s >/dev/null
[ $bad = 0 ] || die "the node did not come back clean (above)"
say "the node came back clean: same pods, no mount or cgroup of the killed run, one veth per pod"
