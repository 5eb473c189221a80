#!/usr/bin/env bash
# node.sh: a real Kubernetes worker node on this machine, joined to control-plane.sh's cluster: containerd and
# runc from Debian, the CNI bridge plugin on a bridge of its own, the kubelet and kube-proxy of
# KUBERNETES_VERSION, CoreDNS in kube-system. Nothing of it can reach beyond the machine (see "The guard").
#
#   node.sh net-up       the guard, the bridge osbr0 (10.244.0.1/24) and forwarding; before anything binds the
#                        bridge address (the API server does)
#   node.sh start        containerd, the images, the kubelet, kube-proxy and CoreDNS; waits for Ready
#   node.sh stop         removes every pod, container, shim, mount, cgroup, table and file the node created
#                        and puts back the sysctls the kubelet changed; the net stays
#   node.sh net-down     forwarding off again, then the bridge and the guard
#   node.sh status       what runs
#   node.sh check-clean  after net-down: fails unless the machine is as net-up found it
#   node.sh guard-check  fails if the guard ever dropped a packet on its way off the machine, or if anything
#                        new listens on the uplink address
#   node.sh kill         SIGKILL to the kubelet, kube-proxy, containerd and every shim (a crash, for tests)
#   node.sh env          the names tests need, as shell exports
#   node.sh check-ports  fails, naming the component, if a port the kubelet or kube-proxy needs is taken (what
#                        start checks for each component it starts)
#   node.sh guard-ruleset UPLINK BRIDGE   prints the guard's nftables ruleset (the tests apply it in netns)
#
# Idempotent; each component is started once and stopped by its pidfile. Logs: $STATE/node-logs/.
#
# The guard: the nftables table `inet ordersystem_guard`, in place before forwarding is switched on and removed
# only after it is off again. Nothing is forwarded to or from the uplink, nothing leaves the bridge but back
# into it, the host sends the pod and service ranges nowhere but the bridge, and nothing arriving on the uplink
# reaches the test bed's addresses or ports. Pods get no default route (host-local IPAM routes only the service
# range), and CoreDNS has no upstream forwarder.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" node

NODE=ordersystem-real
BR=osbr0
GW=$BRIDGE_IP
SVCNET=10.0.0.0/24
DNS_IP=10.0.0.10
# Every registry the test bed's images name: a pull from any of them goes to a closed port on loopback.
REGISTRIES="ghcr.io registry.k8s.io docker.io localhost"
# A busybox for tests that look at the node from inside a pod.
DEBUG_IMAGE=localhost/ordersystem/debug:busybox
# The node's taint and label: only pods that ask for this node land on it.
NODE_KEY=ordersystem.dev/real
# Every port the test bed listens on: the API server, etcd, the kubelet, kube-proxy, Kafka, PostgreSQL.
TEST_BED_PORTS="6443, 2379, 2380, 10248, 10249, 10250, 10256, 10257, 10259, 19092, 19093, 19094, 5432"

N=$STATE/node                     # kubelet root, containerd root, CNI state, PKI; removed by stop
NET=$STATE/node-net               # what net-up found and changed; removed by net-down
LOGS=$STATE/node-logs             # kept after stop, for CI's log tails
RUN=/run/ordersystem              # containerd's state, socket and runc's state (tmpfs)
SOCK=$RUN/containerd/containerd.sock
CP_PKI=$STATE/cp/pki
K8S=$CACHE/k8s/$KUBERNETES_VERSION
NODE_BINS=$CACHE/node/current
KUBECTL=(env KUBECONFIG="$STATE/cp/kubeconfig" "$K8S/kubectl")
CTR=(ctr --address "$SOCK" --namespace k8s.io)
SYSCTLS="net.ipv4.ip_forward vm.overcommit_memory kernel.panic kernel.panic_on_oops"

uplink() { ip -4 route show default | awk '{print $5; exit}'; }
uplink_addr() { ip -4 -o addr show dev "$1" | awk '{print $4}' | cut -d/ -f1; }

# ---------------------------------------------------------------------------------------------- the guard

guard_ruleset() {
  local up=$1 br=$2
  cat <<NFT
table inet ordersystem_guard
delete table inet ordersystem_guard
table inet ordersystem_guard {
  counter forwarded_to_uplink {}
  counter left_bridge {}
  counter test_ranges_off_bridge {}
  counter forwarded_from_uplink {}
  counter uplink_to_test_bed {}
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname "$up" counter name forwarded_from_uplink drop
    oifname "$up" counter name forwarded_to_uplink drop
    iifname "$br" oifname != "$br" counter name left_bridge drop
  }
  chain output {
    type filter hook output priority -10; policy accept;
    oifname != { "lo", "$br" } ip daddr { $PODNET, $SVCNET } counter name test_ranges_off_bridge drop
  }
  chain input {
    type filter hook input priority -10; policy accept;
    iifname "$up" ip daddr { $PODNET, $SVCNET } counter name uplink_to_test_bed drop
    iifname "$up" tcp dport { $TEST_BED_PORTS } counter name uplink_to_test_bed drop
  }
}
NFT
}

# guard_counter NAME: packets the guard's counter NAME has seen (0 when there is no guard).
guard_counter() {
  nft list counter inet ordersystem_guard "$1" 2>/dev/null | awk '/packets/ {for (i = 1; i < NF; i++) if ($i == "packets") print $(i + 1)}'
}

# ------------------------------------------------------------------------------------------------ network

net_up() {
  local up; up=$(uplink)
  [ -n "$up" ] || up=none
  if ip link show "$BR" >/dev/null 2>&1 && [ ! -f "$NET/bridge" ]; then
    die "the bridge $BR exists but was not made by node.sh (no $NET/bridge): another test bed or a user owns it; remove it (ip link del $BR) or stop what uses it"
  fi
  if has_address "$GW" && ! has_address "$GW" "$BR"; then
    die "the address $GW is already on another interface: $(ip -4 -o addr show | grep "$GW/" | awk '{print $2}')"
  fi
  mkdir -p "$NET" "$LOGS"
  # What we change, as it was before the first net-up (kept across restarts of the node).
  if [ ! -f "$NET/sysctl.orig" ]; then
    machine_snapshot > "$LOGS/machine.before"
    local s; for s in $SYSCTLS net.bridge.bridge-nf-call-iptables; do
      printf '%s=%s\n' "$s" "$(sysctl -n "$s")"
    done > "$NET/sysctl.orig"
    nft list tables > "$NET/tables.orig"
    ss -ltnH > "$NET/listening.orig"
    echo "$up" > "$NET/uplink"
  fi
  say "guard: nftables table inet ordersystem_guard (uplink $up)"
  guard_ruleset "$up" "$BR" | nft -f - || die "nft refused the guard ruleset"
  if ! ip link show "$BR" >/dev/null 2>&1; then
    say "bridge $BR with $GW/24"
    ip link add "$BR" type bridge || die "ip link add $BR failed"
  fi
  echo "$BR" > "$NET/bridge"
  { ip addr replace "$GW/24" dev "$BR" && ip link set "$BR" up; } || die "could not bring up $BR with $GW/24"
  # An unallocated ClusterIP dies on the bridge instead of following the default route.
  ip route replace "$SVCNET" dev "$BR" src "$GW" || die "could not route $SVCNET to $BR"
  nft list table inet ordersystem_guard >/dev/null || die "the guard is not in place: forwarding stays off"
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 || die "could not switch on forwarding"
}

# restore_sysctls NAME...: put back the named sysctls as net-up found them.
restore_sysctls() {
  [ -f "$NET/sysctl.orig" ] || return 0
  local s v
  for s in "$@"; do
    v=$(awk -F= -v k="$s" '$1 == k {print $2}' "$NET/sysctl.orig")
    if [ -n "$v" ]; then sysctl -qw "$s=$v"; fi
  done
}

net_down() {
  pid_alive "$RUN/kubelet.pid" && die "the node runs: node.sh stop first"
  # Forwarding goes off while the guard is still there: never on and unguarded.
  restore_sysctls net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables
  if [ -f "$NET/bridge" ] && ip link show "$BR" >/dev/null 2>&1; then
    say "removing the bridge $BR"
    ip link del "$BR"
  fi
  if [ "$(sysctl -n net.ipv4.ip_forward)" = 1 ] && [ "$(awk -F= '$1 == "net.ipv4.ip_forward" {print $2}' "$NET/sysctl.orig" 2>/dev/null)" != 1 ]; then
    die "net.ipv4.ip_forward is still 1: the guard stays in place"
  fi
  nft delete table inet ordersystem_guard 2>/dev/null && say "guard removed"
  rm -rf "$NET"
}

# ------------------------------------------------------------------------------------------------ cgroups

# Every pod cgroup lives under the caller's own memory cgroup, in every hierarchy the kubelet checks: the
# caller's limits apply, and stop finds them all.
CG_HIERARCHIES="cpu cpuacct cpuset memory pids systemd"

cgroup_root() {
  if [ -f "$N/cgroot" ]; then cat "$N/cgroot"; return; fi
  local memcg; memcg=$(awk -F: '$2 == "memory" {print $3}' /proc/self/cgroup)
  echo "${memcg%/}/ordersystem-node"
}

make_cgroup_root() {
  local root=$1 h p parent part
  : > "$N/cgroups.created"
  for h in $CG_HIERARCHIES; do
    [ -d "/sys/fs/cgroup/$h" ] || die "cgroup hierarchy /sys/fs/cgroup/$h is missing: the kubelet needs cpu, cpuacct, cpuset, memory, pids and name=systemd"
    p=/sys/fs/cgroup/$h
    for part in $(tr '/' ' ' <<<"$root"); do
      parent=$p; p=$p/$part
      if [ ! -d "$p" ]; then mkdir "$p" || die "cannot create cgroup $p"; echo "$p" >> "$N/cgroups.created"; fi
      if [ "$h" = cpuset ]; then
        [ -n "$(cat "$p/cpuset.cpus")" ] || cat "$parent/cpuset.cpus" > "$p/cpuset.cpus"
        [ -n "$(cat "$p/cpuset.mems")" ] || cat "$parent/cpuset.mems" > "$p/cpuset.mems"
      fi
    done
  done
}

# cgroup_pids ROOT: every process in the memory cgroup tree ROOT.
cgroup_pids() {
  [ -d "/sys/fs/cgroup/memory$1" ] || return 0
  find "/sys/fs/cgroup/memory$1" -name cgroup.procs -exec cat {} + 2>/dev/null
}

remove_cgroups() {
  local root=$1 h d
  for h in $CG_HIERARCHIES; do
    [ -d "/sys/fs/cgroup/$h$root" ] && find "/sys/fs/cgroup/$h$root" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  # The intermediate levels this node created in the other hierarchies, deepest first, only if empty.
  [ -f "$N/cgroups.created" ] && sort -r "$N/cgroups.created" | while read -r d; do rmdir "$d" 2>/dev/null || true; done
  for h in $CG_HIERARCHIES; do
    [ -d "/sys/fs/cgroup/$h$root" ] && die "cgroup /sys/fs/cgroup/$h$root could not be removed: $(cgroup_pids "$root" | wc -l) processes are left in it"
  done
  return 0
}

# -------------------------------------------------------------------------------------------------- files

pki() {
  [ -f "$N/pki/kube-proxy.crt" ] && return
  [ -f "$CP_PKI/ca.key" ] || die "the control plane's CA ($CP_PKI/ca.key) is missing: control-plane.sh start first"
  mkdir -p "$N/pki"
  say "node certificates signed by the control plane's CA"
  (
    cd "$N/pki" || exit 1
    cert() { # NAME SUBJECT EXTENSIONS
      openssl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$1.key" -out "$1.csr" &&
        printf '%b' "$3" > "$1.ext" &&
        openssl x509 -req -in "$1.csr" -CA "$CP_PKI/ca.crt" -CAkey "$CP_PKI/ca.key" -CAcreateserial \
          -CAserial "$N/pki/ca.srl" -days 3650 -extfile "$1.ext" -out "$1.crt"
    }
    cert kubelet "/O=system:nodes/CN=system:node:$NODE" 'extendedKeyUsage=clientAuth\n' &&
      cert kubelet-serving "/CN=$NODE" "subjectAltName=IP:$GW,DNS:$NODE\nextendedKeyUsage=serverAuth\n" &&
      cert kube-proxy "/CN=system:kube-proxy" 'extendedKeyUsage=clientAuth\n'
  ) >"$LOGS/pki.log" 2>&1 || die_with_log "$LOGS/pki.log" "openssl failed for the node's certificates"
  local who server
  server=$(awk '/server:/ {gsub(/[",}]/, "", $0); for (i = 1; i <= NF; i++) if ($i ~ /^https:/) print $i}' "$STATE/cp/kubeconfig" | head -n1)
  for who in kubelet kube-proxy; do
    cat > "$N/$who.kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$server", certificate-authority: "$CP_PKI/ca.crt"}}]
users: [{name: $who, user: {client-certificate: "$N/pki/$who.crt", client-key: "$N/pki/$who.key"}}]
contexts: [{name: local, context: {cluster: local, user: $who}}]
current-context: local
KCFG
  done
}

# render FILE: e2e/infra/node/FILE with the node's names filled in (only these: nothing else in it is touched).
RENDERED="N RUN SOCK BR GW PODNET SVCNET KAFKA_BRIDGE_HOST POSTGRES_BRIDGE_HOST DNS_IP NODE NODE_KEY CP_PKI CGROOT PAUSE_VERSION COREDNS_VERSION KUBERNETES_VERSION"
render() {
  # shellcheck disable=SC2086,SC2163,SC2016
  export $RENDERED
  # shellcheck disable=SC2086,SC2016
  envsubst "$(printf '${%s} ' $RENDERED)" < "$INFRA_DIR/node/$1"
}

configs() {
  mkdir -p "$N/cni/net.d" "$N/cni/ipam" "$N/containerd/root" "$N/containerd/opt" "$N/kubelet" "$N/pod-logs" "$RUN/containerd" "$RUN/runc"
  render containerd.toml | write_if_changed "$N/containerd.toml"
  render cni.conflist | write_if_changed "$N/cni/net.d/10-ordersystem.conflist"
  render kubelet-config.yaml | write_if_changed "$N/kubelet-config.yaml"
  render kube-proxy.yaml | write_if_changed "$N/kube-proxy.yaml"
  printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 10\n' "$SOCK" "$SOCK" > "$N/crictl.yaml"
  local registry
  for registry in $REGISTRIES; do
    mkdir -p "$N/certs.d/$registry"
    # containerd 1.6 still asks the registry itself when the file names only a server: a host entry too.
    printf 'server = "http://127.0.0.1:1"\n\n[host."http://127.0.0.1:1"]\n  capabilities = ["pull", "resolve"]\n' \
      > "$N/certs.d/$registry/hosts.toml"
  done
}

# write_if_changed FILE: stdin into FILE, only when it differs (kube-proxy exits when its file is written).
write_if_changed() {
  local new; new=$(cat)
  [ -f "$1" ] && [ "$new" = "$(cat "$1")" ] && return 0
  printf '%s\n' "$new" > "$1"
}

# -------------------------------------------------------------------------------------------------- images

# build_image NAME ROOTFS USER ENTRYPOINT: an image from scratch with ROOTFS's files, imported into the
# node's containerd under NAME (so the kubelet never pulls it). The archive is cached under a key of
# everything that goes into it.
build_image() {
  local name=$1 rootfs=$2 user=$3 entrypoint=$4 key tar
  key=$( { echo "$name $user $entrypoint $IMAGE_PATH"; (cd "$rootfs" && find . -printf '%p %l %m\n' | sort \
    && find . -type f -exec sha256sum {} + | sort -k2); } | sha256sum | cut -c1-16)
  tar=$NODE_BINS/images/$(tr '/:' '__' <<<"$name").$key.tar
  if [ ! -f "$tar" ]; then
    mkdir -p "$NODE_BINS/images"
    local store; store=$(mktemp -d "$STATE/buildah.XXXXXX")
    say "building image $name"
    (
      b=(buildah --storage-driver vfs --root "$store/root" --runroot "$store/run")
      c=$("${b[@]}" from scratch) &&
        "${b[@]}" copy "$c" "$rootfs/" / &&
        "${b[@]}" config --entrypoint "$entrypoint" --user "$user" --env "PATH=$IMAGE_PATH" "$c" &&
        "${b[@]}" commit --format oci "$c" "docker-archive:$tar.tmp:$name"
      rc=$?
      "${b[@]}" rm -a >/dev/null 2>&1
      exit $rc
    ) >"$LOGS/image-build.log" 2>&1 || { rm -rf "$store"; die_with_log "$LOGS/image-build.log" "buildah could not build $name"; }
    rm -rf "$store"
    mv "$tar.tmp" "$tar"
  fi
  "${CTR[@]}" images import --all-platforms "$tar" >"$LOGS/image-import.log" 2>&1 \
    || die_with_log "$LOGS/image-import.log" "containerd did not import $name"
}
IMAGE_PATH=/usr/local/bin:/usr/bin:/bin

images() {
  local r; r=$(mktemp -d "$STATE/rootfs.XXXXXX")
  mkdir -p "$r/pause" "$r/coredns/etc" "$r/debug/bin" "$r/debug/tmp"
  cp "$NODE_BINS/pause" "$r/pause/pause"
  cp "$NODE_BINS/coredns" "$r/coredns/coredns"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$r/coredns/etc/passwd"
  cp /bin/busybox "$r/debug/bin/busybox"
  local applet; for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$r/debug/bin/$applet"
  done
  chmod 1777 "$r/debug/tmp"
  build_image "registry.k8s.io/pause:$PAUSE_VERSION" "$r/pause" 65535:65535 '["/pause"]'
  build_image "localhost/ordersystem/coredns:$COREDNS_VERSION" "$r/coredns" 65532:65532 '["/coredns"]'
  build_image "$DEBUG_IMAGE" "$r/debug" 65532:65532 '["/bin/sh"]'
  rm -rf "$r"
}


# --------------------------------------------------------------------------------------------- start/stop

# launch NAME CMD...: start one component in its own process group, its pid in $RUN/NAME.pid and the time
# it was started (UTC, whole seconds, as the API writes times) in $RUN/NAME.started.
launch() {
  local name=$1; shift
  if pid_alive "$RUN/$name.pid"; then say "$name already running (pid $(cat "$RUN/$name.pid"))"; return; fi
  say "starting $name (log: $LOGS/$name.log)"
  date -u +%Y-%m-%dT%H:%M:%SZ > "$RUN/$name.started"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
}

# require_free_port ADDRESS PORT NAME: fail clearly when a foreign process holds ADDRESS:PORT.
require_free_port() {
  port_free "$2" "$1" || die "port $1:$2, which the $3 needs, is already in use by another process (see: ss -ltnp 'sport = :$2')"
}

# require_free_ports COMPONENT...: fail, naming the component, when a port one of them listens on is taken.
require_free_ports() {
  local component address port
  while read -r component address port; do
    if [[ " $* " == *" $component "* ]]; then require_free_port "$address" "$port" "$component"; fi
  done <<PORTS
kubelet $GW 10250
kubelet 127.0.0.1 10248
kube-proxy 127.0.0.1 10256
kube-proxy 127.0.0.1 10249
PORTS
}

# node_ready: the Node is Ready by a heartbeat of the kubelet launched last. After a restart the Node still
# says Ready=True, as the killed kubelet last reported, until the new one reports; a heartbeat in the second of
# the launch counts, as the API's times have whole seconds.
node_ready() {
  local since status
  since=$(cat "$RUN/kubelet.started" 2>/dev/null || true)
  status=$("${KUBECTL[@]}" get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}' 2>/dev/null) || return 1
  [ "${status%% *}" = True ] && [[ ! ${status#* } < $since ]]
}
containerd_answers() { ctr --address "$SOCK" version; }
kube_proxy_healthy() { curl -sf http://127.0.0.1:10256/healthz; }
coredns_available() {
  "${KUBECTL[@]}" -n kube-system get deployment coredns -o jsonpath='{.status.availableReplicas}' 2>/dev/null | grep -qx 1
}

start() {
  local b
  for b in "$K8S/kubelet" "$K8S/kube-proxy" "$NODE_BINS/coredns" "$NODE_BINS/crictl" "$NODE_BINS/pause"; do
    [ -x "$b" ] || die "$b is missing: run e2e/infra/build-k8s-bins.sh and e2e/infra/build-node-bins.sh first"
  done
  for b in containerd containerd-shim-runc-v2 runc buildah nft iptables /usr/lib/cni/bridge /usr/lib/cni/host-local; do
    command -v "$b" >/dev/null || die "$b is missing: run e2e/infra/install-packages.sh first"
  done
  { [ -f "$NET/bridge" ] && ip link show "$BR" >/dev/null 2>&1; } || die "the bridge $BR is not up: node.sh net-up first (up.sh does)"
  nft list table inet ordersystem_guard >/dev/null 2>&1 || die "the guard is not in place: node.sh net-up first"
  "${KUBECTL[@]}" get --raw /readyz >/dev/null 2>&1 || die "the API server does not answer: control-plane.sh start first"
  mkdir -p "$N" "$LOGS" "$RUN"
  local cgroot; cgroot=$(cgroup_root)
  # A node of ours that was killed left its record in $N: containerd cleans up after its dead shims.
  if [ ! -f "$N/cgroot" ] && [ -n "$(cgroup_pids "$cgroot")" ]; then
    die "the cgroup root $cgroot is taken: it holds $(cgroup_pids "$cgroot" | wc -l) processes that no node of node.sh started (another kubelet?)"
  fi
  pid_alive "$RUN/kubelet.pid" || require_free_ports kubelet
  pid_alive "$RUN/kube-proxy.pid" || require_free_ports kube-proxy
  if [ ! -f "$N/preexisting" ]; then
    # What was there before the node's first start: stop removes only what the node created.
    { for b in /var/lib/kubelet /var/lib/cni /var/log/containers /var/log/pods; do [ -e "$b" ] && echo "$b"; done; } > "$N/preexisting"
    nft list tables > "$N/tables.orig"
  fi
  if [ ! -f "$N/cgroot" ]; then make_cgroup_root "$cgroot"; echo "$cgroot" > "$N/cgroot"; fi
  pki
  CGROOT=$cgroot configs

  launch containerd containerd --config "$N/containerd.toml"
  wait_for 60 containerd "$LOGS/containerd.log" "$RUN/containerd.pid" containerd_answers
  images

  launch kubelet "$K8S/kubelet" --config="$N/kubelet-config.yaml" --kubeconfig="$N/kubelet.kubeconfig" \
    --hostname-override="$NODE" --node-ip="$GW" --root-dir="$N/kubelet" \
    --node-labels="$NODE_KEY=$NODE" --v=2
  wait_for 120 "kubelet (node $NODE Ready, reported since its start)" "$LOGS/kubelet.log" "$RUN/kubelet.pid" node_ready
  launch kube-proxy "$K8S/kube-proxy" --config="$N/kube-proxy.yaml" --v=2
  wait_for 60 kube-proxy "$LOGS/kube-proxy.log" "$RUN/kube-proxy.pid" kube_proxy_healthy

  render coredns.yaml | "${KUBECTL[@]}" apply -f - >"$LOGS/coredns-apply.log" 2>&1 \
    || die_with_log "$LOGS/coredns-apply.log" "kubectl apply of CoreDNS failed"
  if ! wait_for_quietly 120 coredns_available; then
    "${KUBECTL[@]}" -n kube-system describe pods -l k8s-app=kube-dns > "$LOGS/coredns-describe.log" 2>&1
    die_with_log "$LOGS/coredns-describe.log" "CoreDNS did not become available in 120 s (kubelet log: $LOGS/kubelet.log)"
  fi
  say "ready: node $NODE ($("${KUBECTL[@]}" get node "$NODE" -o jsonpath='{.status.nodeInfo.containerRuntimeVersion}'), pods on $PODNET, cluster DNS $DNS_IP)"
}

wait_for_quietly() {
  local secs=$1 i; shift
  for ((i = 0; i < secs; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  return 1
}

# kill_node_processes SIGNAL: the kubelet, kube-proxy, containerd and every shim of this node's containerd.
kill_node_processes() {
  local sig=$1 c
  for c in kubelet kube-proxy containerd; do
    if [ -f "$RUN/$c.pid" ]; then kill "-$sig" "$(cat "$RUN/$c.pid")" 2>/dev/null || true; fi
  done
  pkill "-$sig" -f -- "-address $SOCK" 2>/dev/null || true
}

stop() {
  [ -d "$N" ] || [ -d "$RUN" ] || { say "no node to stop"; return 0; }
  # The kubelet first: it would start again what is removed below.
  stop_pidfile "$RUN/kubelet.pid" kubelet
  if pid_alive "$RUN/containerd.pid"; then
    say "removing every pod sandbox"
    "$NODE_BINS/crictl" --config "$N/crictl.yaml" rmp -fa >"$LOGS/crictl-rmp.log" 2>&1 \
      || say "crictl rmp -fa failed (log: $LOGS/crictl-rmp.log); going on with the processes"
  fi
  stop_pidfile "$RUN/kube-proxy.pid" kube-proxy
  stop_pidfile "$RUN/containerd.pid" containerd
  # Shims and container processes whose owners are gone (a node killed with SIGKILL leaves them).
  pkill -KILL -f -- "-address $SOCK" 2>/dev/null || true
  local cgroot pid; cgroot=$(cgroup_root)
  for pid in $(cgroup_pids "$cgroot"); do kill -KILL "$pid" 2>/dev/null || true; done
  sleep 1
  "${KUBECTL[@]}" delete node "$NODE" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  # kube-proxy's and the kubelet's iptables chains, then the tables that were not there before.
  "$K8S/kube-proxy" --cleanup >"$LOGS/kube-proxy-cleanup.log" 2>&1 || say "kube-proxy --cleanup failed (log: $LOGS/kube-proxy-cleanup.log); its tables go below"
  remove_kube_tables
  # Network namespaces, overlay mounts and the kubelet's volume mounts, deepest first.
  findmnt -rn -o TARGET | { grep -E "^($N|$RUN)(/|$)" || true; } | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  remove_cgroups "$cgroot"
  remove_host_files
  ip -o link show master "$BR" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | xargs -r -n1 ip link del 2>/dev/null || true
  restore_sysctls vm.overcommit_memory kernel.panic kernel.panic_on_oops
  rm -rf "$N" "$RUN"
  say "stopped; nothing of the node is left"
}

# The kubelet and kube-proxy write to the machine's iptables (the nft backend): delete the tables the node
# created; in tables that were there before, only the KUBE-* chains.
remove_kube_tables() {
  local fam table
  [ -f "$N/tables.orig" ] || return 0
  while read -r _ fam table; do
    grep -qx "table $fam $table" "$N/tables.orig" && continue
    [ "$table" = ordersystem_guard ] && continue
    nft delete table "$fam" "$table" 2>/dev/null || true
  done < <(nft list tables)
  local ipt t chain
  for ipt in iptables ip6tables; do
    for t in filter nat mangle; do
      "$ipt" -t "$t" -S 2>/dev/null | awk '$1 == "-A" && / -j KUBE-/' | sed 's/^-A/-D/' | while read -r rule; do
        # shellcheck disable=SC2086
        "$ipt" -t "$t" $rule 2>/dev/null || true
      done
      for chain in $("$ipt" -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
        "$ipt" -t "$t" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$ipt" -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
        "$ipt" -t "$t" -X "$chain" 2>/dev/null || true
      done
    done
  done
  return 0
}

# Files the kubelet and the CNI plugins write outside the node's own directories.
remove_host_files() {
  local f
  for f in /var/log/containers/*.log; do
    [ -L "$f" ] && case $(readlink "$f") in "$N"/*) rm -f "$f" ;; esac
  done
  rm -f /var/lib/cni/results/ordersystem-* 2>/dev/null
  for f in /var/lib/kubelet /var/lib/cni /var/log/containers /var/log/pods; do
    grep -qx "$f" "$N/preexisting" 2>/dev/null && continue
    # Created by this node: removed whole (the device-plugin socket, empty result directories).
    [ -e "$f" ] && rm -rf "$f"
  done
  return 0
}

# ----------------------------------------------------------------------------------------------- checks

# machine_snapshot: what the node and its network may change on the machine, one fact a line; equal before
# net-up and after net-down when the node leaves nothing behind. Counters that move by themselves (and the
# per-interface settings of interfaces that come and go) are left out of the sysctls.
machine_snapshot() (
  set +e +o pipefail   # an empty grep is an answer here
  local h
  ip -o link show | awk -F': ' '{print "link " $2}' | cut -d@ -f1
  ip -4 route show table all | grep -v ' table local ' | sed 's/^/route /'
  nft list tables | sed 's/^/nft /'
  for h in iptables ip6tables; do "$h" -S 2>/dev/null | grep -o 'KUBE-[A-Z0-9-]*' | sort -u | sed "s/^/$h chain /"; done
  findmnt -rn -o TARGET | grep -E 'ordersystem|kubelet|containerd|netns' | grep -vx /run/netns | sed 's/^/mount /'
  # `ip netns add` (the guard's test) makes /run/netns a mount point once; a namespace left in it counts.
  find /run/netns -mindepth 1 -maxdepth 1 -printf 'netns %f\n' 2>/dev/null
  for h in $CG_HIERARCHIES; do find "/sys/fs/cgroup/$h" -type d -name 'ordersystem-node' 2>/dev/null | sed 's/^/cgroup /'; done
  for h in /var/lib/kubelet /var/lib/cni /var/log/containers /var/log/pods "$N" "$RUN"; do [ -e "$h" ] && echo "path $h"; done
  for h in containerd containerd-shim kubelet kube-proxy coredns pause; do pgrep -x "$h" | sed "s/^/process $h /"; done
  sysctl -a 2>/dev/null | grep -E '^(net\.ipv4\.(ip_forward|conf\.(all|default|lo)\.)|net\.ipv6\.conf\.(all|default)\.|net\.bridge\.|net\.netfilter\.nf_conntrack_(max|tcp_timeout)|vm\.|kernel\.(panic|keys|pid_max|threads)|fs\.inotify)' \
    | grep -v -E '^vm\.(stat_refresh|drop_caches|compact_memory)' | sed 's/^/sysctl /'
)

# check_clean: after net-down, the machine is as net-up found it.
check_clean() {
  [ -f "$LOGS/machine.before" ] || die "no snapshot from before net-up ($LOGS/machine.before)"
  local diff; diff=$(diff <(sort "$LOGS/machine.before") <(machine_snapshot | sort) || true)
  if [ -n "$diff" ]; then
    printf '%s\n' "$diff" | sed 's/^</  before:/; s/^>/  now:   /' | grep -v '^---' >&2
    die "the machine is not as net-up found it (above: what differs)"
  fi
  say "the machine is as net-up found it: no process, mount, cgroup, link, route, table, file or sysctl of the node is left"
}

# uplink_listeners ADDRESS: the local addresses of `ss -ltnH` lines on stdin that ADDRESS's traffic reaches.
uplink_listeners() {
  awk '{print $4}' | grep -E "^(${1//./\\.}|0\.0\.0\.0|\*|\[::\]):[0-9]+$" | sort -u
}

guard_check() {
  nft list table inet ordersystem_guard >/dev/null 2>&1 || die "the guard is not in place"
  local c n bad=0
  for c in forwarded_to_uplink left_bridge test_ranges_off_bridge; do
    n=$(guard_counter "$c")
    say "guard counter $c: ${n:-?} packets dropped on their way off the machine"
    [ "${n:-1}" = 0 ] || bad=1
  done
  for c in forwarded_from_uplink uplink_to_test_bed; do say "guard counter $c: $(guard_counter "$c") packets dropped as they arrived"; done
  local up addr new; up=$(cat "$NET/uplink"); addr=$(uplink_addr "$up")
  if [ -n "$addr" ]; then
    # Listeners that take connections on the uplink address: bound to it, or to every address.
    new=$(comm -13 <(uplink_listeners "$addr" < "$NET/listening.orig") <(ss -ltnH | uplink_listeners "$addr"))
    if [ -n "$new" ]; then say "listening on the uplink address $addr ($up) since net-up: $new"; bad=1
    else say "nothing new listens on the uplink address $addr ($up)"; fi
  fi
  [ $bad = 0 ] || die "the guard check failed (see above)"
}

# The names tests need, for $STATE/env (up.sh).
node_env() {
  cat <<ENV
export ORDERSYSTEM_NODE=$NODE
export ORDERSYSTEM_NODE_KEY=$NODE_KEY
export ORDERSYSTEM_NODE_BRIDGE_IP=$GW
export ORDERSYSTEM_NODE_DEBUG_IMAGE=$DEBUG_IMAGE
export ORDERSYSTEM_NODE_CRI=unix://$SOCK
export CRI_CONFIG_FILE=$N/crictl.yaml
ENV
}

status() {
  local c
  for c in containerd kubelet kube-proxy; do
    if pid_alive "$RUN/$c.pid"; then echo "$c: running"; else echo "$c: stopped"; fi
  done
  if nft list table inet ordersystem_guard >/dev/null 2>&1; then echo "guard: in place"; else echo "guard: absent"; fi
  if ip link show "$BR" >/dev/null 2>&1; then echo "bridge $BR: up"; else echo "bridge $BR: absent"; fi
}

case "${1:-}" in
  net-up) net_up ;;
  net-down) net_down ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  guard-check) guard_check ;;
  guard-ruleset) [ $# -eq 3 ] || die "usage: node.sh guard-ruleset UPLINK BRIDGE"; guard_ruleset "$2" "$3" ;;
  kill) kill_node_processes KILL ;;
  env) node_env ;;
  check-clean) check_clean ;;
  check-ports) require_free_ports kubelet kube-proxy; say "every port of the kubelet and kube-proxy is free" ;;
  *) echo "usage: $0 net-up|start|stop|net-down|status|check-clean|check-ports|guard-check|kill|env|guard-ruleset UPLINK BRIDGE" >&2; exit 2 ;;
esac
