#!/usr/bin/env bash
# kafka.sh start|stop|kill|reset|status|bootstrap|node-bootstrap: a real single-node Apache Kafka broker (KRaft) on 127.0.0.1:19092, its
# classpath resolved with Maven from Maven Central and cached in $CACHE/kafka/<version>-<pom hash>/; state under
# $STATE/kafka. A test that must stop and restart a broker runs its own instance beside the shared one:
#   KAFKA_INSTANCE=outage-1 KAFKA_PORT=19192 KAFKA_CONTROLLER_PORT=19193 kafka.sh start
# KAFKA_SECURITY=sasl_ssl makes an instance a secured one (server-sasl-ssl.properties): a test CA and broker
# certificate under $STATE/<instance>/tls (ca.crt for clients), the SCRAM user `admin` (password
# KAFKA_ADMIN_PASSWORD, default admin-test-secret) added when the log directory is formatted, the KRaft
# StandardAuthorizer with `admin` as the only super user. KAFKA_PLAIN_USERS="name:password ..." enables PLAIN
# on that listener too, for these users (JAAS), besides the admin.
# KAFKA_SECURITY=ssl makes it a mutual-TLS one (server-ssl.properties): the client listener requires a
# certificate from the instance's test CA, the principal is the certificate's CN, and `admin` is the super
# user. Client certificates $STATE/<instance>/tls/<cn>.crt and .key are issued for `admin` and for each CN in
# KAFKA_CLIENT_CERTS="cn ...". KAFKA_CLIENT_AUTH=required makes a sasl_ssl instance require them as well
# (mutual TLS under SASL: the principal is still the SASL user).
# Every instance has a second listener for the real node's pods, of the same security, on the bridge address
# ($BRIDGE_IP:KAFKA_BRIDGE_PORT, default the client port + 2) and advertised as $KAFKA_BRIDGE_HOST, the name
# the node's CoreDNS serves; the broker's certificate names both. `kafka.sh bootstrap` and
# `kafka.sh node-bootstrap` print the two bootstrap addresses.
# `kafka.sh acl ARGS` runs kafka-acls (org.apache.kafka.tools.AclCommand) against a secured instance as admin.
# A cluster (plaintext only): a dedicated KRaft controller and brokers, each an instance of its own (state, pidfile,
# ports), so a test stops, kills and restarts brokers one by one while the controller keeps the quorum:
#   KAFKA_INSTANCE=fo-ctl KAFKA_ROLE=controller KAFKA_CONTROLLER_PORT=19973 kafka.sh start
#   KAFKA_INSTANCE=fo-b2 KAFKA_ROLE=broker KAFKA_QUORUM=fo-ctl KAFKA_NODE_ID=2 KAFKA_PORT=19960 kafka.sh start
# The controller is node KAFKA_NODE_ID (default 1) and writes $STATE/<instance>/quorum (its voter and the cluster
# id it was formatted with); a broker reads the quorum file of its KAFKA_QUORUM instance, so all share one cluster
# id, and needs a node id of its own. A broker's internal topics (consumer offsets, transactions) get replication
# factor KAFKA_INTERNAL_REPLICATION (default 3). Both run in a 512 MiB heap. KAFKA_ROLE=combined (the default)
# is the single broker described above.
# KAFKA_BRIDGE_ADVERTISED_HOST (default $KAFKA_BRIDGE_HOST) is the name or address the bridge listener advertises:
# $BRIDGE_IP serves clients on this machine as well as the node's pods, which only CoreDNS' name does not.
# `kafka.sh kill` ends an instance with SIGKILL (a crash; its state stays for the next start).
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" kafka
POM=$(sed "s/KAFKA_VERSION/$KAFKA_VERSION/" "$INFRA_DIR/kafka-pom.xml")
# One classpath directory per POM content: an edited POM resolves into a new directory and never
# replaces the jars under a broker that is running from the old one.
K=$CACHE/kafka/$KAFKA_VERSION-$(printf '%s' "$POM" | sha256sum | cut -c1-12)
INSTANCE=${KAFKA_INSTANCE:-kafka}
[[ $INSTANCE =~ ^[a-z0-9-]+$ ]] || die "KAFKA_INSTANCE must match [a-z0-9-]+"
D=$STATE/$INSTANCE
LOG=$D/kafka.log
PIDFILE=$D/pid
PORT=${KAFKA_PORT:-19092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-19093}
BRIDGE_PORT=${KAFKA_BRIDGE_PORT:-$((PORT + 2))}
SECURITY=${KAFKA_SECURITY:-plaintext}
[[ $SECURITY =~ ^(plaintext|sasl_ssl|ssl)$ ]] || die "KAFKA_SECURITY must be plaintext, sasl_ssl or ssl"
ADMIN_PASSWORD=${KAFKA_ADMIN_PASSWORD:-admin-test-secret}
[[ $ADMIN_PASSWORD =~ ^[A-Za-z0-9_-]+$ ]] || die "KAFKA_ADMIN_PASSWORD must match [A-Za-z0-9_-]+"
PLAIN_USERS=${KAFKA_PLAIN_USERS:-}
for user in $PLAIN_USERS; do
  [[ $user =~ ^[A-Za-z0-9_.-]+:[A-Za-z0-9_-]+$ ]] || die "KAFKA_PLAIN_USERS entries must look like name:password"
done
CLIENT_CERTS="admin ${KAFKA_CLIENT_CERTS:-}"
for cn in $CLIENT_CERTS; do [[ $cn =~ ^[a-z0-9-]+$ ]] || die "KAFKA_CLIENT_CERTS entries must match [a-z0-9-]+"; done
ROLE=${KAFKA_ROLE:-combined}
[[ $ROLE =~ ^(combined|controller|broker)$ ]] || die "KAFKA_ROLE must be combined, controller or broker"
NODE_ID=${KAFKA_NODE_ID:-1}
[[ $NODE_ID =~ ^[0-9]+$ ]] || die "KAFKA_NODE_ID must be a number"
QUORUM=${KAFKA_QUORUM:-}
[ "$ROLE" != broker ] || [[ $QUORUM =~ ^[a-z0-9-]+$ ]] || die "a broker needs KAFKA_QUORUM, its controller's instance"
INTERNAL_REPLICATION=${KAFKA_INTERNAL_REPLICATION:-3}
[[ $INTERNAL_REPLICATION =~ ^[1-9]$ ]] || die "KAFKA_INTERNAL_REPLICATION must be 1 to 9"
[ "$ROLE" = combined ] || [ "$SECURITY" = plaintext ] || die "a cluster (KAFKA_ROLE=$ROLE) is plaintext only"
BRIDGE_ADVERTISED=${KAFKA_BRIDGE_ADVERTISED_HOST:-$KAFKA_BRIDGE_HOST}
[[ $BRIDGE_ADVERTISED =~ ^[a-z0-9.-]+$ ]] || die "KAFKA_BRIDGE_ADVERTISED_HOST must be a host name or an IPv4 address"
# The port that answers once the instance is up: a controller has no client listener.
READY_PORT=$PORT
[ "$ROLE" = controller ] && READY_PORT=$CONTROLLER_PORT
CLIENT_AUTH=${KAFKA_CLIENT_AUTH:-none}
[ "$SECURITY" = ssl ] && CLIENT_AUTH=required
[[ $CLIENT_AUTH =~ ^(none|required)$ ]] || die "KAFKA_CLIENT_AUTH must be none or required"
HEAP="-Xms256m -Xmx768m"
[ "$ROLE" = combined ] || HEAP="-Xms128m -Xmx512m"
JOPTS="$HEAP -XX:+UseG1GC -Djava.awt.headless=true -Dlog4j2.configurationFile=$K/log4j2.properties"

classpath() {
  [ -d "$K/lib" ] && return
  say "resolving the Kafka $KAFKA_VERSION classpath with Maven (first run: about a minute)"
  mkdir -p "$CACHE/kafka"
  local tmp; tmp=$(mktemp -d "$CACHE/kafka/resolve.XXXXXX")
  printf '%s\n' "$POM" > "$tmp/pom.xml"
  (cd "$tmp" && mvn -B -q -Dmaven.repo.local="$CACHE/m2" \
      org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
      -DoutputDirectory=lib -DincludeScope=runtime) >&2 \
    || { rm -rf "$tmp"; die "Maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION"; }
  mv "$tmp" "$K"
  say "classpath: $(find "$K/lib" -name "*.jar" | wc -l) jars in $K"
}

# secure_config: the broker's TLS material and the secured client listener appended to server.properties,
# and admin.properties, the admin's client config for the Java tools.
secure_config() {
  local tls=$D/tls
  make_test_cert "$tls" broker broker "DNS:$KAFKA_BRIDGE_HOST" "IP:$BRIDGE_IP"
  cat "$tls/broker.key" "$tls/broker.crt" > "$tls/broker.pem"
  sed -e "s#TLS_DIR#$tls#" -e "s#ADMIN_PASSWORD#$ADMIN_PASSWORD#" -e "s#:19092#:$PORT#g" \
    -e "s#:19093#:$CONTROLLER_PORT#g" "$INFRA_DIR/server-${SECURITY//_/-}.properties" >> "$D/server.properties"
  printf 'ssl.truststore.type=PEM\nssl.truststore.location=%s\n' "$tls/ca.crt" > "$D/admin.properties"
  if [ "$CLIENT_AUTH" = required ]; then
    local cn
    for cn in $CLIENT_CERTS; do make_test_cert "$tls" "$cn" "$cn"; done
    [ -f "$tls/admin.pem" ] || cat "$tls/admin.key" "$tls/admin.crt" > "$tls/admin.pem"
    printf 'ssl.keystore.type=PEM\nssl.keystore.location=%s\n' "$tls/admin.pem" >> "$D/admin.properties"
  fi
  if [ "$SECURITY" = ssl ]; then
    printf 'security.protocol=SSL\n' >> "$D/admin.properties"
  else
    printf 'security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="%s";\n' \
      "$ADMIN_PASSWORD" >> "$D/admin.properties"
    [ -n "$PLAIN_USERS" ] && plain_config >> "$D/server.properties"
    [ "$CLIENT_AUTH" = required ] && printf 'listener.name.sasl_ssl.ssl.client.auth=required\n' >> "$D/server.properties"
  fi
  return 0
}

# plain_config: PLAIN beside SCRAM on the SASL_SSL listener, its users (and the admin) from the JAAS config.
plain_config() {
  local jaas="org.apache.kafka.common.security.plain.PlainLoginModule required user_admin=\"$ADMIN_PASSWORD\"" user
  for user in $PLAIN_USERS; do jaas+=" user_${user%%:*}=\"${user#*:}\""; done
  printf 'sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN\nlistener.name.sasl_ssl.plain.sasl.jaas.config=%s;\n' "$jaas"
}

# bridge_config: the pods' listener beside the loopback one, with the same protocol and the same per-listener
# settings (later keys win, so the last listener lines of server.properties are the ones extended).
bridge_config() {
  local file=$D/server.properties protocol listeners advertised map
  protocol=${SECURITY^^}
  listeners=$(grep '^listeners=' "$file" | tail -1)
  advertised=$(grep '^advertised.listeners=' "$file" | tail -1)
  map=$(grep '^listener.security.protocol.map=' "$file" | tail -1)
  printf '%s,BRIDGE://%s:%s\n' "$listeners" "$BRIDGE_IP" "$BRIDGE_PORT"
  printf '%s,BRIDGE://%s:%s\n' "$advertised" "$BRIDGE_ADVERTISED" "$BRIDGE_PORT"
  printf '%s,BRIDGE:%s\n' "$map" "$protocol"
  grep "^listener\.name\.${SECURITY}\." "$file" | sed "s/^listener\.name\.${SECURITY}\./listener.name.bridge./" || true
}

broker_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$READY_PORT") 2>/dev/null && grep -q 'Kafka Server started' "$LOG"; }

# role_config: for a cluster's controller or broker, the template's shared settings with the role's own node,
# quorum and listeners; the cluster id it is formatted with goes to $D/cluster-id.
role_config() {
  local voters
  grep -vE '^(process\.roles|node\.id|controller\.quorum\.voters|listeners|advertised\.listeners|inter\.broker\.listener\.name|listener\.security\.protocol\.map|offsets\.topic\.replication\.factor|transaction\.state\.log\.replication\.factor|share\.coordinator\.state\.topic\.replication\.factor)=' \
    "$INFRA_DIR/server.properties" | grep -v '^#' | sed "s#STATE_DIR#$D#"
  printf 'process.roles=%s\nnode.id=%s\n' "$ROLE" "$NODE_ID"
  if [ "$ROLE" = controller ]; then
    voters="$NODE_ID@127.0.0.1:$CONTROLLER_PORT"
    printf 'controller.quorum.voters=%s\nlisteners=CONTROLLER://127.0.0.1:%s\n' "$voters" "$CONTROLLER_PORT"
    printf 'listener.security.protocol.map=CONTROLLER:PLAINTEXT\n'
    return
  fi
  local quorum=$STATE/$QUORUM/quorum
  [ -f "$quorum" ] || die "no controller instance $QUORUM: start it first (KAFKA_ROLE=controller)"
  voters=$(sed -n 's/^voters=//p' "$quorum")
  sed -n 's/^cluster.id=//p' "$quorum" > "$D/cluster-id"
  printf 'controller.quorum.voters=%s\n' "$voters"
  printf 'listeners=PLAINTEXT://127.0.0.1:%s\nadvertised.listeners=PLAINTEXT://127.0.0.1:%s\n' "$PORT" "$PORT"
  printf 'inter.broker.listener.name=PLAINTEXT\nlistener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n'
  printf '%s.replication.factor=%s\n' offsets.topic "$INTERNAL_REPLICATION" transaction.state.log "$INTERNAL_REPLICATION" \
    share.coordinator.state.topic "$INTERNAL_REPLICATION"
}

start() {
  if pid_alive "$PIDFILE"; then say "already running (pid $(cat "$PIDFILE"))"; return; fi
  [ "$ROLE" = controller ] || require_port "$PORT"
  [ "$ROLE" = broker ] || require_port "$CONTROLLER_PORT"
  classpath
  cp "$INFRA_DIR/log4j2.properties" "$K/log4j2.properties"
  mkdir -p "$D"
  if [ "$ROLE" = combined ]; then
    sed -e "s#STATE_DIR#$D#" -e "s#:19092#:$PORT#g" -e "s#:19093#:$CONTROLLER_PORT#g" "$INFRA_DIR/server.properties" > "$D/server.properties"
  else
    role_config > "$D/server.properties"
  fi
  local scram=()
  [ "$SECURITY" = plaintext ] || secure_config
  [ "$SECURITY" = sasl_ssl ] && scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$ADMIN_PASSWORD]")
  # Pods talk to brokers only, never to a controller.
  if [ "$ROLE" != controller ]; then
    require_bridge
    require_port "$BRIDGE_PORT" "$BRIDGE_IP"
    bridge_config > "$D/bridge.properties"
    cat "$D/bridge.properties" >> "$D/server.properties"
  fi
  if [ ! -f "$D/data/meta.properties" ]; then
    say "formatting the KRaft log directory"
    local cid
    if [ -s "$D/cluster-id" ]; then
      cid=$(cat "$D/cluster-id")
    else
      # shellcheck disable=SC2086
      cid=$(java $JOPTS -cp "$K/lib/*" kafka.tools.StorageTool random-uuid 2>>"$LOG" | grep -E '^[A-Za-z0-9_-]{22}$' | tail -1)
    fi
    [ -n "$cid" ] || die_with_log "$LOG" "StorageTool random-uuid printed no cluster id"
    # shellcheck disable=SC2086
    java $JOPTS -cp "$K/lib/*" kafka.tools.StorageTool format -t "$cid" -c "$D/server.properties" \
      "${scram[@]}" --ignore-formatted >>"$LOG" 2>&1 || die_with_log "$LOG" "StorageTool format failed"
    if [ "$ROLE" = controller ]; then
      printf 'voters=%s@127.0.0.1:%s\ncluster.id=%s\n' "$NODE_ID" "$CONTROLLER_PORT" "$cid" > "$D/quorum"
    fi
  fi
  if [ "$ROLE" = controller ]; then
    say "starting the KRaft controller (node $NODE_ID) on 127.0.0.1:$CONTROLLER_PORT"
  else
    say "starting the broker${QUORUM:+ (node $NODE_ID of $QUORUM)} on 127.0.0.1:$PORT and $BRIDGE_IP:$BRIDGE_PORT ($SECURITY)"
  fi
  # setsid: the broker gets its own process group, so a test runner's signals do not reach it.
  # shellcheck disable=SC2086
  setsid java $JOPTS -cp "$K/lib/*" kafka.Kafka "$D/server.properties" >>"$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  wait_for 90 "Kafka broker" "$LOG" "$PIDFILE" broker_answers
}

stop() { stop_pidfile "$PIDFILE" "Kafka broker"; }

# crash: SIGKILL, no shutdown of any kind; the state stays for the next start.
crash() {
  pid_alive "$PIDFILE" || die "instance $INSTANCE is not running"
  say "killing instance $INSTANCE (pid $(cat "$PIDFILE")) with SIGKILL"
  kill -9 "$(cat "$PIDFILE")"
  rm -f "$PIDFILE"
}

acl() {
  [ -f "$D/admin.properties" ] || die "instance $INSTANCE is not a secured one"
  # The tool's own logging: warnings only, on stderr.
  printf '%s\n' 'appender.console.type = Console' 'appender.console.name = STDERR' 'appender.console.target = SYSTEM_ERR' \
    'appender.console.layout.type = PatternLayout' 'appender.console.layout.pattern = %p %m%n' 'rootLogger.level = warn' \
    'rootLogger.appenderRef.stderr.ref = STDERR' > "$D/log4j2-tools.properties"
  java -Xmx256m -Dlog4j2.configurationFile="$D/log4j2-tools.properties" -cp "$K/lib/*" org.apache.kafka.tools.AclCommand \
    --bootstrap-server "127.0.0.1:$PORT" --command-config "$D/admin.properties" "$@"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  kill) crash ;;
  acl) shift; acl "$@" ;;
  bootstrap) echo "127.0.0.1:$PORT" ;;
  node-bootstrap) echo "$BRIDGE_ADVERTISED:$BRIDGE_PORT" ;;
  # stop and remove all data: the next start formats a fresh cluster
  reset) stop; rm -rf "$D" ;;
  status) if pid_alive "$PIDFILE"; then echo "running (pid $(cat "$PIDFILE"))"; else echo "stopped"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|kill|reset|status|bootstrap|node-bootstrap|acl ARGS" >&2; exit 2 ;;
esac
