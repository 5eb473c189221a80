#!/usr/bin/env bash
# postgres.sh start|stop|status: PostgreSQL from Debian's packages on 127.0.0.1:5432 with SCRAM password
# authentication (never trust: it would hide every credential bug) and a non-superuser admin role, as on
# managed Postgres and CloudNativePG. Prints nothing secret; the test credentials are fixed and test-only.
# A test that must stop and restart PostgreSQL runs its own throwaway cluster beside the shared one (initdb
# under $STATE/<instance>, run as the postgres user, same auth and roles):
#   PG_INSTANCE=pg-restart PG_PORT=5442 postgres.sh start|stop|reset|status|url
# With PG_BRIDGE=yes such an instance listens on the bridge address as well (same port) and admits the pod
# network with SCRAM, so the real node's pods reach it (without TLS); set when it is created.
# The shared cluster also listens on the real node's bridge address for its pods, which know it as
# $POSTGRES_BRIDGE_HOST (the node's CoreDNS); `postgres.sh node-host` prints that name.
# TLS with a test CA (`postgres.sh ca` prints its certificate's path): the server certificate is valid for
# 127.0.0.1, localhost, the bridge address and that name, so clients can use sslmode=verify-full; plain
# connections keep working. A running server takes it by reload, never by restart.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" postgres
V=$POSTGRES_MAJOR
PORT=5432
CONF=/etc/postgresql/$V/main
LOG=/var/log/postgresql/postgresql-$V-main.log
DB=${PG_TEST_DB:-ordersystem_test}
ADMIN=${PG_TEST_ADMIN:-ordersystem_admin}
ADMIN_PASSWORD=${PG_TEST_ADMIN_PASSWORD:-admin-test-password}
MARK=$STATE/postgres.started-by-us
TLS=$CONF/ordersystem-tls

install() {
  if [ -x "/usr/lib/postgresql/$V/bin/postgres" ]; then return; fi
  "$INFRA_DIR/install-packages.sh"
}

# tls: the test CA and server certificate, created once; the key readable only by the server.
tls() {
  make_test_cert "$TLS" server localhost "DNS:$POSTGRES_BRIDGE_HOST" "IP:$BRIDGE_IP"
  chown postgres:postgres "$TLS/server.key" "$TLS/server.crt"
  chmod 600 "$TLS/server.key"
  chmod 644 "$TLS/ca.crt"
}

running() { pg_ctlcluster "$V" main status >/dev/null 2>&1; }

start() {
  install
  [ -f "$CONF/postgresql.conf" ] || { say "creating cluster $V/main"; pg_createcluster "$V" main >&2; }
  cat > "$CONF/pg_hba.conf" <<'HBA'
local   all  all                 peer
host    all  all  127.0.0.1/32   scram-sha-256
host    all  all  ::1/128        scram-sha-256
HBA
  printf 'host    all  all  %s  scram-sha-256\n' "$PODNET" >> "$CONF/pg_hba.conf"
  # Tests create schemas, roles and many connections (several services, several test binaries at once).
  tls
  cat > "$CONF/conf.d/ordersystem-test.conf" <<PGCONF
listen_addresses = '127.0.0.1,$BRIDGE_IP'
max_connections = 300
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = '$TLS/server.crt'
ssl_key_file = '$TLS/server.key'
PGCONF
  if running; then
    say "reloading the running cluster"
    pg_ctlcluster --skip-systemctl-redirect "$V" main reload >&2
    # Some settings (max_connections, listen_addresses) only take effect on restart.
    if [ "$(su postgres -c "psql -tAc 'SELECT count(*) FROM pg_settings WHERE pending_restart'")" != 0 ]; then
      say "restarting: changed settings need it"
      pg_ctlcluster --skip-systemctl-redirect "$V" main restart >&2 || die_with_log "$LOG" "restart failed"
    fi
  else
    require_port "$PORT"
    require_bridge
    say "starting PostgreSQL $V on 127.0.0.1:$PORT and $BRIDGE_IP:$PORT"
    pg_ctlcluster --skip-systemctl-redirect "$V" main start >&2 || die_with_log "$LOG" "pg_ctlcluster start failed"
    touch "$MARK"
  fi
  local i
  for ((i = 0; i < 30; i++)); do pg_isready -q -h 127.0.0.1 -p "$PORT" && break; sleep 1; done
  pg_isready -q -h 127.0.0.1 -p "$PORT" || die_with_log "$LOG" "PostgreSQL not ready after 30s"
  su postgres -c "psql -q -v ON_ERROR_STOP=1 -v db=$DB -v admin=$ADMIN -v pw='$ADMIN_PASSWORD'" >&2 <<'SQL' \
    || die "could not create the test database and admin role"
SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SELECT format('CREATE ROLE %I LOGIN CREATEROLE', :'admin') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'admin') \gexec
ALTER ROLE :"admin" NOSUPERUSER LOGIN CREATEROLE PASSWORD :'pw';
GRANT CREATE, CONNECT ON DATABASE :"db" TO :"admin";
SQL
  say "ready: database $DB, admin role $ADMIN (non-superuser, CREATEROLE)"
}

stop() {
  # Stop only a cluster this script started; a cluster that was already running is left alone.
  if [ -f "$MARK" ] && running; then
    say "stopping PostgreSQL $V/main"
    pg_ctlcluster --skip-systemctl-redirect "$V" main stop -m fast >&2 || true
  fi
  rm -f "$MARK"
}

# --- a test's own instance -------------------------------------------------------------------------------
INSTANCE=${PG_INSTANCE:-}
if [ -n "$INSTANCE" ]; then
  [[ $INSTANCE =~ ^[a-z0-9-]+$ ]] || die "PG_INSTANCE must match [a-z0-9-]+"
  [ -n "${PG_PORT:-}" ] || die "PG_INSTANCE needs PG_PORT"
  PORT=$PG_PORT
  D=$STATE/$INSTANCE
  LOG=$D/postgres.log
  BIN=/usr/lib/postgresql/$V/bin
fi

as_postgres() { su postgres -s /bin/bash -c "$*"; }

instance_running() { [ -f "$D/data/postmaster.pid" ] && as_postgres "$BIN/pg_ctl -D '$D/data' status" >/dev/null 2>&1; }

instance_start() {
  install
  if instance_running; then say "instance $INSTANCE already running"; return; fi
  require_port "$PORT"
  if [ ! -f "$D/data/PG_VERSION" ]; then
    say "creating instance $INSTANCE in $D"
    mkdir -p "$D" && chown postgres:postgres "$D"
    as_postgres "$BIN/initdb -D '$D/data' --auth-local=peer --auth-host=scram-sha-256 -U postgres" >"$D/initdb.log" 2>&1 \
      || die_with_log "$D/initdb.log" "initdb failed"
    local listen=127.0.0.1
    if [ "${PG_BRIDGE:-}" = yes ]; then
      require_bridge
      listen="127.0.0.1,$BRIDGE_IP"
      printf 'host    all  all  %s  scram-sha-256\n' "$PODNET" >> "$D/data/pg_hba.conf"
    fi
    cat >> "$D/data/postgresql.conf" <<PGCONF
listen_addresses = '$listen'
port = $PORT
unix_socket_directories = '$D'
max_connections = 100
password_encryption = 'scram-sha-256'
PGCONF
  fi
  say "starting instance $INSTANCE on port $PORT"
  as_postgres "$BIN/pg_ctl -D '$D/data' -l '$LOG' -w -t 60 start" >&2 || die_with_log "$LOG" "pg_ctl start failed"
  as_postgres "psql -h '$D' -p $PORT -q -v ON_ERROR_STOP=1 -v db=$DB -v admin=$ADMIN -v pw='$ADMIN_PASSWORD' postgres" >&2 <<'SQL' \
    || die "could not create the test database and admin role in instance $INSTANCE"
SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SELECT format('CREATE ROLE %I LOGIN CREATEROLE', :'admin') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'admin') \gexec
ALTER ROLE :"admin" NOSUPERUSER LOGIN CREATEROLE PASSWORD :'pw';
GRANT CREATE, CONNECT ON DATABASE :"db" TO :"admin";
SQL
  say "instance $INSTANCE ready: database $DB, admin role $ADMIN"
}

instance_stop() {
  if instance_running; then
    say "stopping instance $INSTANCE"
    as_postgres "$BIN/pg_ctl -D '$D/data' -m fast -w stop" >&2 || true
  fi
}

if [ -n "$INSTANCE" ]; then
  case "${1:-}" in
    start) instance_start ;;
    stop) instance_stop ;;
    reset) instance_stop; rm -rf "$D" ;;
    status) if instance_running; then echo running; else echo stopped; exit 1; fi ;;
    url) echo "postgres://$ADMIN:$ADMIN_PASSWORD@127.0.0.1:$PORT/$DB" ;;
    *) echo "usage: PG_INSTANCE=name PG_PORT=port $0 start|stop|reset|status|url" >&2; exit 2 ;;
  esac
  exit 0
fi

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if running; then echo running; else echo stopped; exit 1; fi ;;
  url) echo "postgres://$ADMIN:$ADMIN_PASSWORD@127.0.0.1:$PORT/$DB" ;;
  ca) echo "$TLS/ca.crt" ;;
  node-host) echo "$POSTGRES_BRIDGE_HOST" ;;
  *) echo "usage: $0 start|stop|status|url|ca|node-host" >&2; exit 2 ;;
esac
