#!/usr/bin/env bash
# down.sh: stop what up.sh started (by pid; the shared PostgreSQL only if up.sh started it). Data stays for
# the next start; `kafka.sh reset`, `control-plane.sh reset` and `postgres-next.sh reset` remove it. The real
# node leaves nothing behind, and the guard goes last, after forwarding is off again.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" down
"$INFRA_DIR/browser.sh" stop
"$INFRA_DIR/node.sh" stop
"$INFRA_DIR/control-plane.sh" stop
"$INFRA_DIR/kafka.sh" stop
"$INFRA_DIR/otelcol.sh" stop
"$INFRA_DIR/postgres-next.sh" stop
"$INFRA_DIR/postgres.sh" stop
"$INFRA_DIR/node.sh" net-down
rm -f "$STATE/env"
