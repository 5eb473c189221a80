# shellcheck shell=bash
# Shared helpers for the infra scripts; sourced, never run: `. lib.sh COMPONENT`, where COMPONENT names the
# caller in every message.
# Caches live outside the clone so a second run is fast; runtime state lives under /tmp and is removed by stop.
set -euo pipefail
COMPONENT=${1:-infra}
INFRA_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$INFRA_DIR/versions.env"
CACHE=${ORDERSYSTEM_CACHE:-$HOME/.cache/ordersystem}
STATE=${ORDERSYSTEM_STATE:-/tmp/ordersystem}
export GOTOOLCHAIN=local GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build GOBIN=$CACHE/bin
mkdir -p "$CACHE" "$STATE"

say() { printf '[%s] %s\n' "$COMPONENT" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# go_module_dir MODULE VERSION: the directory of MODULE@VERSION as the Go module proxy serves it (downloaded
# into the cache once), for the CRDs some projects publish only in their module.
go_module_dir() {
  (cd / && go mod download -json "$1@$2") \
    | python3 -c 'import json,sys; m=json.load(sys.stdin); print(m.get("Dir") or sys.exit(m.get("Error", "no Dir")))' \
    || die "the Go module proxy did not serve $1@$2"
}

# apply_crds WHAT FILE...: applies the CRD files (server-side: some are too big for the last-applied
# annotation) to the test bed's API server and waits until each is established; WHAT names them in errors.
apply_crds() {
  local what=$1 file name names=()
  shift
  for file in "$@"; do
    name=$("$CACHE/k8s/$KUBERNETES_VERSION/kubectl" --kubeconfig "$STATE/cp/kubeconfig" \
      apply --server-side --force-conflicts -o name -f "$file") \
      || die "the API server refused $what's CRD $(basename "$file")"
    names+=("$name")
  done
  # kubectl wait fails at once ("accessor error: <nil>") on a CRD whose status has no conditions yet, as a
  # busy API server leaves a just-created one for a moment: asked again until the 60 s are up.
  local deadline=$((SECONDS + 60))
  until "$CACHE/k8s/$KUBERNETES_VERSION/kubectl" --kubeconfig "$STATE/cp/kubeconfig" \
    wait --for condition=established --timeout=60s "${names[@]}" >/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || die "$what's CRDs were not established"
    sleep 1
  done
  say "served: ${names[*]##*/} ($what)"
}

# module_crds WHAT MODULE VERSION SUBDIR ACTION FILE...: the body of a script serving the CRDs a project
# publishes in its Go module: ACTION `dir` prints where they are (SUBDIR of MODULE@VERSION), `apply` applies
# FILE... from there.
module_crds() {
  local what=$1 module=$2 version=$3 subdir=$4 action=$5 dir
  shift 5
  dir="$(go_module_dir "$module" "$version")/$subdir"
  case $action in
    dir) echo "$dir" ;;
    apply) apply_crds "$what $version" "${@/#/$dir/}" ;;
    *) die "usage: $(basename "$0") [apply|dir]" ;;
  esac
}

# die_with_log LOGFILE MESSAGE: fail naming the component and showing its log tail.
die_with_log() {
  say "ERROR: $2 (log: $1)"
  [ -f "$1" ] && tail -n 40 "$1" | sed "s/^/[$COMPONENT] | /" >&2
  exit 1
}

# The real test node's bridge address and pod network (node.sh): the shared API server, Kafka and PostgreSQL
# listen here, where the host and the node's pods both reach them, and never on the uplink.
export BRIDGE_IP=10.244.0.1
export PODNET=10.244.0.0/24
# The names the node's CoreDNS gives the host's Kafka and PostgreSQL (node/coredns.yaml): the node's pods reach
# them on the bridge by these names; the host's own clients keep to loopback.
export KAFKA_BRIDGE_HOST=kafka.ordersystem.internal
export POSTGRES_BRIDGE_HOST=postgres.ordersystem.internal

# has_address ADDRESS [DEVICE]: true when an interface of this machine (or DEVICE) carries the IPv4 ADDRESS.
# (awk reads all of ip's output: under pipefail, `grep -q` closing the pipe early can fail the pipeline.)
has_address() {
  ip -4 -o addr show ${2:+dev "$2"} 2>/dev/null | awk -v a="$1/" 'index($4, a) == 1 {found = 1} END {exit !found}'
}

# require_bridge: stop unless the real node's bridge address is up, which every listener for its pods needs.
require_bridge() {
  has_address "$BRIDGE_IP" \
    || die "the bridge address $BRIDGE_IP is not on this machine: start the node's network first (node.sh net-up; up.sh does)"
}

# port_free PORT [ADDRESS]: true when nothing listens on ADDRESS:PORT (default 127.0.0.1).
port_free() { ! (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }

# require_port PORT [ADDRESS]: fail clearly when a foreign process already holds ADDRESS:PORT.
require_port() {
  port_free "$1" "${2:-}" || die "port ${2:-127.0.0.1}:$1 is already in use by another process (see: ss -ltnp 'sport = :$1')"
}

# pid_alive PIDFILE: true when the pid in PIDFILE runs.
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_for SECONDS DESCRIPTION LOGFILE PIDFILE CMD...: poll CMD once a second until it succeeds;
# stop early if the process died, fail with the log tail on timeout.
wait_for() {
  local secs=$1 what=$2 log=$3 pidfile=$4; shift 4
  local i
  for ((i = 0; i < secs; i++)); do
    if "$@" >/dev/null 2>&1; then say "$what is ready (${i}s)"; return 0; fi
    if [ -n "$pidfile" ] && ! pid_alive "$pidfile"; then die_with_log "$log" "$what exited before becoming ready"; fi
    sleep 1
  done
  die_with_log "$log" "$what not ready after ${secs}s"
}

# stop_pidfile PIDFILE NAME: SIGTERM the process we started, SIGKILL after 20 s; never touches other processes.
stop_pidfile() {
  local pidfile=$1 name=$2 pid i
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# make_test_ca DIR: a test-only certificate authority (DIR/ca.crt, DIR/ca.key), created once.
make_test_ca() {
  local dir=$1
  [ -f "$dir/ca.crt" ] && return
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ordersystem-test-$COMPONENT-ca" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$dir/ca.key" -out "$dir/ca.crt.tmp" 2>>"$dir/openssl.log" || die_with_log "$dir/openssl.log" "openssl CA failed"
  mv "$dir/ca.crt.tmp" "$dir/ca.crt"
}

# make_test_cert DIR NAME CN [SAN...]: DIR/NAME.crt and DIR/NAME.key (unencrypted PKCS#8) signed by DIR's test
# CA, valid for 127.0.0.1, localhost and each SAN (`DNS:name` or `IP:address`) as server and as client;
# created once, and again when the names asked for change.
make_test_cert() {
  local dir=$1 name=$2 cn=$3; shift 3
  local ext
  ext=$(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' \
    "$(IFS=,; echo "IP:127.0.0.1,DNS:localhost${*:+,$*}")")
  [ -f "$dir/$name.crt" ] && [ "$(cat "$dir/$name.ext" 2>/dev/null)" = "$ext" ] && return
  make_test_ca "$dir"
  printf '%s\n' "$ext" > "$dir/$name.ext"
  { openssl req -newkey rsa:2048 -nodes -subj "/CN=$cn" -keyout "$dir/$name.key" -out "$dir/$name.csr" &&
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 3650 \
      -extfile "$dir/$name.ext" -out "$dir/$name.crt.tmp"; } 2>>"$dir/openssl.log" \
    || die_with_log "$dir/openssl.log" "openssl certificate $name failed"
  mv "$dir/$name.crt.tmp" "$dir/$name.crt"
}
