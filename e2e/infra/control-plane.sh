#!/usr/bin/env bash
# control-plane.sh start|stop|status: a real Kubernetes control plane on this machine: etcd, kube-apiserver
# (https://10.244.0.1:6443, RBAC), kube-controller-manager and kube-scheduler, from the binaries that
# build-k8s-bins.sh built. PKI and kubeconfig are generated locally under $STATE/cp. The shared API server
# listens on the real node's bridge address (node.sh net-up first): the host and the node's pods reach it
# there, the `kubernetes` Service points at it, and it reaches the kubelet with a client certificate of its own.
# The shared API server keeps an audit log of writes (create, update, patch, delete) at Metadata level in
# $STATE/cp/logs/audit.log: who wrote what and when, with each request's User-Agent, so a test can prove from
# outside a process that it wrote nothing (e2e/tests/operator_ha.rs). Reads, the node's and the scheduler's
# own writes are left out to keep it small. `restart-apiserver` applies a changed flag to a running bed.
# A test that must restart the API server runs its own etcd and kube-apiserver beside the shared control
# plane (its own PKI and kubeconfig under $STATE/<instance>; no controller-manager or scheduler):
#   CP_INSTANCE=name CP_ETCD_PORT=12379 CP_ETCD_PEER_PORT=12380 CP_APISERVER_PORT=16443 \
#     control-plane.sh start|stop-apiserver|stop|reset|status|kubeconfig
# An instance keeps no audit log unless CP_AUDIT=all asks for one of every request, reads and watches too
# (logs/audit.log under $STATE/<instance>), so a benchmark can count a process's API requests by User-Agent
# (ordersystem-bench operator-scale).
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" control-plane
B=$CACHE/k8s/$KUBERNETES_VERSION
INSTANCE=${CP_INSTANCE:-}
if [ -n "$INSTANCE" ]; then
  [[ $INSTANCE =~ ^[a-z0-9-]+$ ]] || die "CP_INSTANCE must match [a-z0-9-]+"
  if [ -z "${CP_ETCD_PORT:-}" ] || [ -z "${CP_ETCD_PEER_PORT:-}" ] || [ -z "${CP_APISERVER_PORT:-}" ]; then
    die "CP_INSTANCE needs CP_ETCD_PORT, CP_ETCD_PEER_PORT and CP_APISERVER_PORT"
  fi
  R=$STATE/$INSTANCE
  ADDRESS=127.0.0.1
else
  R=$STATE/cp
  ADDRESS=$BRIDGE_IP
fi
ETCD_PORT=${CP_ETCD_PORT:-2379}
ETCD_PEER_PORT=${CP_ETCD_PEER_PORT:-2380}
APISERVER_PORT=${CP_APISERVER_PORT:-6443}
# An instance may need more Services than the shared /24 holds (CP_SERVICE_CIDR=10.96.0.0/16: three per
# OrderSystem, 300 of them); it has no node, so its range routes nowhere.
SERVICE_CIDR=10.0.0.0/24
if [ -n "$INSTANCE" ]; then SERVICE_CIDR=${CP_SERVICE_CIDR:-$SERVICE_CIDR}; fi
P=$R/pki
L=$R/logs
KUBECONFIG_FILE=$R/kubeconfig

pki() {
  [ -f "$P/apiserver-kubelet-client.crt" ] && return
  # A PKI from before the API server listened on the bridge: made again, with the new names.
  [ -d "$P" ] && { say "replacing the PKI of an older layout"; rm -rf "$P"; }
  say "generating PKI and kubeconfig"
  mkdir -p "$P"
  (
    cd "$P"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ordersystem-test-ca" -keyout ca.key -out ca.crt
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr
    printf 'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,IP:%s,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' "$BRIDGE_IP" > apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile apiserver.ext -out apiserver.crt
    printf 'extendedKeyUsage=clientAuth\n' > client.ext
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=admin" -keyout admin.key -out admin.csr
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile client.ext -out admin.crt
    # The API server's identity towards kubelets (logs, exec, port-forward).
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
      -keyout apiserver-kubelet-client.key -out apiserver-kubelet-client.csr
    openssl x509 -req -in apiserver-kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile client.ext -out apiserver-kubelet-client.crt
    openssl genrsa -out sa.key 2048
  ) >"$L/pki.log" 2>&1 || die_with_log "$L/pki.log" "openssl failed"
  cat > "$KUBECONFIG_FILE" <<KCFG
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://$ADDRESS:$APISERVER_PORT", certificate-authority: "$P/ca.crt"}}]
users: [{name: admin, user: {client-certificate: "$P/admin.crt", client-key: "$P/admin.key"}}]
contexts: [{name: local, context: {cluster: local, user: admin}}]
current-context: local
KCFG
}

# launch NAME ADDRESS:PORT CMD...: start one component in its own process group, its pid in $R/NAME.pid.
launch() {
  local name=$1 port=${2##*:} address=${2%:*}; shift 2
  if pid_alive "$R/$name.pid"; then say "$name already running (pid $(cat "$R/$name.pid"))"; return; fi
  require_port "$port" "$address"
  say "starting $name"
  setsid "$@" >"$L/$name.log" 2>&1 < /dev/null &
  echo $! > "$R/$name.pid"
}

apiserver_ready() { curl -sf --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key" "https://$ADDRESS:$APISERVER_PORT/readyz"; }
# KCM and the scheduler serve an in-memory self-signed certificate on loopback: nothing to verify it against.
component_healthy() { curl -sfk "https://127.0.0.1:$1/healthz"; }
etcd_healthy() { curl -sf "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }

# audit_policy: the shared API server's audit policy: writes at Metadata level, once each (when the response
# is complete), except the kubelet's and the scheduler's steady stream of status, lease and binding writes.
audit_policy() {
  cat > "$R/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted, Panic]
rules:
  - level: None
    userGroups: [system:nodes]
  - level: None
    users: [system:kube-scheduler]
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
POLICY
}

# instance_audit_policy: CP_AUDIT=all on an instance: every request at Metadata level (who, what, when; no
# bodies), logged when it starts (a watch's start is what a count of requests per minute wants) and when it
# completes; a count takes each auditID once.
instance_audit_policy() {
  cat > "$R/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, Panic]
rules:
  - level: Metadata
POLICY
}

start() {
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$B/$b" ] || die "$B/$b is missing: run e2e/infra/build-k8s-bins.sh first"
  done
  mkdir -p "$R/etcd" "$L"
  pki
  launch etcd "127.0.0.1:$ETCD_PORT" "$B/etcd" --name=default --data-dir="$R/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="default=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync=true
  wait_for 60 etcd "$L/etcd.log" "$R/etcd.pid" etcd_healthy
  # The ServiceAccount admission plugin stays enabled (unlike envtest): the real node's pods get their
  # projected token volume, which the kubelet fills through the TokenRequest API. PodNodeSelector and
  # PodTolerationRestriction let a test pin a whole namespace's pods to its own tainted node through
  # namespace annotations, so tests running side by side never run each other's pods.
  local own=()
  if [ -n "$INSTANCE" ]; then
    # A test's own API server has no nodes and no `kubernetes` Service endpoint.
    own=(--endpoint-reconciler-type=none)
    case "${CP_AUDIT:-}" in
      "") ;;
      all)
        instance_audit_policy
        own+=(--audit-policy-file="$R/audit-policy.yaml" --audit-log-path="$L/audit.log" --audit-log-format=json
          --audit-log-maxsize=1000 --audit-log-maxbackup=1) ;;
      *) die "CP_AUDIT is all or empty" ;;
    esac
  else
    require_bridge
    own=(--kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key"
      --kubelet-certificate-authority="$P/ca.crt"
      # the node's own address, never a host name looked up through the machine's resolver
      --kubelet-preferred-address-types=InternalIP)
    audit_policy
    own+=(--audit-policy-file="$R/audit-policy.yaml" --audit-log-path="$L/audit.log" --audit-log-format=json
      --audit-log-maxsize=100 --audit-log-maxbackup=1)
  fi
  launch kube-apiserver "$ADDRESS:$APISERVER_PORT" "$B/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address="$ADDRESS" --secure-port="$APISERVER_PORT" --advertise-address="$ADDRESS" \
    --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" --client-ca-file="$P/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$P/sa.key" --service-account-signing-key-file="$P/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --authorization-mode=Node,RBAC --allow-privileged=true \
    --enable-admission-plugins=PodNodeSelector,PodTolerationRestriction \
    --cert-dir="$R/apiserver-certs" "${own[@]}"
  wait_for 180 kube-apiserver "$L/kube-apiserver.log" "$R/kube-apiserver.pid" apiserver_ready
  if [ -n "$INSTANCE" ]; then say "instance $INSTANCE ready: KUBECONFIG=$KUBECONFIG_FILE"; return; fi
  launch kube-controller-manager 127.0.0.1:10257 "$B/kube-controller-manager" --kubeconfig="$KUBECONFIG_FILE" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port=10257 \
    --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics \
    --root-ca-file="$P/ca.crt" --service-account-private-key-file="$P/sa.key" \
    --use-service-account-credentials=true --cluster-name=ordersystem
  launch kube-scheduler 127.0.0.1:10259 "$B/kube-scheduler" --kubeconfig="$KUBECONFIG_FILE" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port=10259 --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics
  wait_for 90 kube-controller-manager "$L/kube-controller-manager.log" "$R/kube-controller-manager.pid" component_healthy 10257
  wait_for 90 kube-scheduler "$L/kube-scheduler.log" "$R/kube-scheduler.pid" component_healthy 10259
  # The serviceaccount controller creates `default` in every namespace; waiting for it proves KCM works.
  wait_for 60 "default ServiceAccount" "$L/kube-controller-manager.log" "$R/kube-controller-manager.pid" \
    "$B/kubectl" --kubeconfig="$KUBECONFIG_FILE" -n default get serviceaccount default
  say "ready: KUBECONFIG=$KUBECONFIG_FILE ($("$B/kubectl" --kubeconfig="$KUBECONFIG_FILE" version -o json | python3 -c 'import json,sys;print(json.load(sys.stdin)["serverVersion"]["gitVersion"])'))"
}

stop() {
  local c
  for c in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop_pidfile "$R/$c.pid" "$c"; done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  # a test's own instance: stop only the API server (start brings it back over the same etcd)
  stop-apiserver) [ -n "$INSTANCE" ] || die "stop-apiserver is for a CP_INSTANCE only"; stop_pidfile "$R/kube-apiserver.pid" kube-apiserver ;;
  # the API server again with the flags of this script (etcd, the controller manager and the scheduler stay)
  restart-apiserver) stop_pidfile "$R/kube-apiserver.pid" kube-apiserver; start ;;
  kubeconfig) echo "$KUBECONFIG_FILE" ;;
  # stop and remove etcd data and PKI: the next start is a new cluster
  reset) stop; rm -rf "$R" ;;
  status)
    for c in etcd kube-apiserver kube-controller-manager kube-scheduler; do
      if pid_alive "$R/$c.pid"; then echo "$c: running"; else echo "$c: stopped"; fi
    done ;;
  *) echo "usage: $0 start|stop|restart-apiserver|reset|status|kubeconfig (CP_INSTANCE: also stop-apiserver)" >&2; exit 2 ;;
esac
