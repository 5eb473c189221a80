#!/usr/bin/env bash
# browser.sh start|stop|status|webdriver|binary: headless Chromium for the browser test, driven over WebDriver
# by chromedriver, both inside a network namespace of their own whose only links are loopback and a veth on
# the test bed's bridge ($BRIDGE_IP's /24, at $BROWSER_IP: outside the pods' address range; no default
# route). So the browser reaches the test bed's bridge address and nothing else: not the host's loopback,
# not the uplink; and the host's guard drops anything the bridge would forward elsewhere.
#   start       the namespace, the veth and chromedriver (port 9515 on $BROWSER_IP, taking commands from
#               $BRIDGE_IP only); waits until it is ready
#   stop        chromedriver and every Chromium it started, the veth and the namespace; nothing is left
#   webdriver   prints chromedriver's URL; binary prints the Chromium to name in a session's capabilities
# Chromium runs through `binary`, a wrapper adding what every session needs whatever the client asks: new
# headless mode, no background networking, component updates, sync, QUIC, first-run or default apps, and
# no sandbox (the test bed runs as root; the namespace is the fence). Logs under $STATE/browser.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" browser
NS=ordersystem-browser
HOST_IF=osbrowser0
BROWSER_IP=${BROWSER_IP:-10.244.0.251}
PORT=9515
D=$STATE/browser
PIDFILE=$D/chromedriver.pid
WRAPPER=$D/chromium

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

wrapper() {
  local chromium
  chromium=$(command -v chromium) || die "chromium is missing: run e2e/infra/install-packages.sh first"
  cat >"$WRAPPER" <<EOF
#!/bin/sh
# Every Chromium of the browser test: these flags whatever the WebDriver client asks for.
exec $chromium --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \\
  --disable-background-networking --disable-component-update --disable-sync --disable-quic \\
  --no-first-run --no-default-browser-check --disable-default-apps --disable-extensions \\
  --disable-features=MediaRouter,OptimizationHints,Translate --metrics-recording-only "\$@"
EOF
  chmod 755 "$WRAPPER"
}

start() {
  command -v chromedriver >/dev/null || die "chromedriver is missing: run e2e/infra/install-packages.sh first"
  ip link show osbr0 >/dev/null 2>&1 || die "the bridge osbr0 is not up: node.sh net-up first (up.sh does)"
  running && { say "already running: $(webdriver)"; return; }
  stop_quietly
  mkdir -p "$D"
  wrapper
  ip netns add "$NS"
  ip -n "$NS" link set lo up
  ip netns exec "$NS" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip link add "$HOST_IF" type veth peer name eth0 netns "$NS"
  ip link set "$HOST_IF" master osbr0 up
  ip -n "$NS" addr add "$BROWSER_IP/24" dev eth0
  ip -n "$NS" link set eth0 up
  [ -z "$(ip -n "$NS" route show default)" ] || die "the browser's namespace has a default route"
  ip netns exec "$NS" setsid chromedriver --port="$PORT" --allowed-ips="$BRIDGE_IP" \
    --log-path="$D/chromedriver.log" >"$D/chromedriver.out" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local i
  for i in $(seq 1 50); do
    curl -fsS -m 1 "$(webdriver)/status" >/dev/null 2>&1 && { say "ready: $(webdriver), Chromium $WRAPPER"; return; }
    running || die_with_log "$D/chromedriver.out" "chromedriver exited"
    sleep 0.2
  done
  die_with_log "$D/chromedriver.out" "chromedriver did not answer at $(webdriver)/status"
}

stop_quietly() {
  if [ -f "$PIDFILE" ]; then
    # chromedriver leads its own session (setsid): its Chromiums go with it.
    kill -- "-$(cat "$PIDFILE")" 2>/dev/null || true
    rm -f "$PIDFILE"
  fi
  if ip netns list 2>/dev/null | grep -qw "$NS"; then
    ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$NS"
  fi
  ip link del "$HOST_IF" 2>/dev/null || true
}

webdriver() { echo "http://$BROWSER_IP:$PORT"; }

case "${1:-}" in
  start) start ;;
  stop) stop_quietly; say "stopped" ;;
  status) if running; then say "running: $(webdriver)"; else say "not running"; exit 1; fi ;;
  webdriver) webdriver ;;
  binary) echo "$WRAPPER" ;;
  *) die "usage: $(basename "$0") start|stop|status|webdriver|binary" ;;
esac
