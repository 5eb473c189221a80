#!/usr/bin/env bash
# otelcol.sh build|start|stop|status|endpoint|spans: the test bed's tracing backend, an OpenTelemetry
# Collector built from its Go modules with only an OTLP receiver (HTTP, on loopback) and the file exporter,
# which appends every batch of spans it receives to one file as a line of OTLP JSON, for a test to read the
# traces back (e2e/tests/shop/tracing.rs).
#   build     compile it into $CACHE/otelcol/<versions>-<main.go's hash>/ (first run on 2 cores: 3-10 min);
#             idempotent
#   start     build if needed, then listen on $OTLP_ADDRESS (default 127.0.0.1:19318) and wait until ready
#   endpoint  prints the OTLP endpoint to set as OTEL_EXPORTER_OTLP_ENDPOINT
#   spans     prints the file the spans are written to
# Logs and the span file under $STATE/otelcol; stop removes them.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" otelcol
ADDRESS=${OTLP_ADDRESS:-127.0.0.1:19318}
D=$STATE/otelcol
PIDFILE=$D/otelcol.pid
SPANS=$D/spans.jsonl
OUT=$CACHE/otelcol/$OTELCOL_VERSION-$OTELCOL_CONTRIB_VERSION-$(sha256sum "$INFRA_DIR/otelcol/main.go" | cut -c1-12)
BIN=$OUT/otelcol

build() {
  if [ -x "$BIN" ]; then say "cached: $BIN"; return; fi
  local w
  w=$(mktemp -d)
  say "building the OpenTelemetry Collector $OTELCOL_VERSION (OTLP receiver, file exporter $OTELCOL_CONTRIB_VERSION; first run on 2 cores: 3-10 min)"
  cp "$INFRA_DIR/otelcol/main.go" "$w/main.go"
  (
    cd "$w" || exit 1
    go mod init local.test/otelcol >/dev/null 2>&1
    go get "go.opentelemetry.io/collector/otelcol@$OTELCOL_VERSION" \
      "go.opentelemetry.io/collector/receiver/otlpreceiver@$OTELCOL_VERSION" \
      "go.opentelemetry.io/collector/service/telemetry/otelconftelemetry@$OTELCOL_VERSION" \
      "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter@$OTELCOL_CONTRIB_VERSION" >&2 \
      && go get go.opentelemetry.io/collector/confmap/provider/fileprovider >&2 \
      && mkdir -p "$OUT" \
      && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" .
  ) || { rm -rf "$w"; die "the collector did not build (a module the Go module proxy refused is named above)"; }
  rm -rf "$w"
  mv "$BIN.tmp" "$BIN"
}

config() {
  cat > "$D/config.yaml" <<YAML
receivers:
  otlp:
    protocols:
      http:
        endpoint: $ADDRESS
exporters:
  file:
    path: $SPANS
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
YAML
}

start() {
  if pid_alive "$PIDFILE"; then say "already running: $(endpoint)"; return; fi
  build
  require_port "${ADDRESS##*:}" "${ADDRESS%:*}"
  rm -rf "$D"
  mkdir -p "$D"
  config
  setsid "$BIN" --config "$D/config.yaml" >"$D/otelcol.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  wait_for 30 "the collector's OTLP receiver on $ADDRESS" "$D/otelcol.log" "$PIDFILE" \
    grep -q "Everything is ready" "$D/otelcol.log"
  say "running: OTLP/HTTP at $(endpoint), spans in $SPANS"
}

endpoint() { echo "http://$ADDRESS"; }

case ${1:-} in
  build) build ;;
  start) start ;;
  stop) stop_pidfile "$PIDFILE" collector; rm -rf "$D" ;;
  status)
    if pid_alive "$PIDFILE"; then say "running: $(endpoint)"; else say "stopped"; exit 1; fi
    ;;
  endpoint) endpoint ;;
  spans) echo "$SPANS" ;;
  *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
