#!/usr/bin/env bash
# extended.sh: the long runs, outside the README's test command. Each goes through ./test.sh (the test bed
# started if needed, the binaries and the real node's images built) with the nextest profile `extended`
# (.config/nextest.toml), prints the test's own log as it runs and keeps it in $STATE/extended/.
#   e2e/extended.sh --smoke                        the chaos soak's CI form (seed 29, one round of the seven
#                                                  faults); ./test.sh runs the same as part of every test
#   e2e/extended.sh --soak MINUTES [--seed N] [--rate N]
#                                                  the chaos soak (e2e/tests/chaos_soak): MINUTES of seeded
#                                                  faults under N orders a second (default 20), then the
#                                                  exactly-once check; the seed (default: from the clock)
#                                                  and schedule are printed first, so --seed N replays a run
#   e2e/extended.sh --resources N [BENCH_ARGS...]  N OrderSystems (1 to 300) under one operator: its release
#                                                  binary against an API server of the run's own
#                                                  (ordersystem-bench operator-scale --help): RSS, CPU and
#                                                  API requests per minute at rest, the lag reads' cost,
#                                                  spec change → child; BENCHMARKS.md has 1, 20, 100, 300
#   e2e/extended.sh --upgrade [COMMIT]             the whole system upgraded from COMMIT to this checkout
#                                                  under load (e2e/tests/upgrade_from_commit.rs); COMMIT
#                                                  (default ae2bd6a, the last before the money, redrive
#                                                  and trace-context changes) is built first by
#                                                  e2e/images/build-commit.sh (cached by its hash; the
#                                                  first build of a commit is a full release build)
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${ORDERSYSTEM_STATE:-/tmp/ordersystem}
# The soak's limit in the `extended` profile is 240 min; a run needs its minutes, the setup and the check.
MAX_SOAK_MINUTES=210
# The default version --upgrade starts from: the last commit before the services' money strings and paged
# lists (696ebb0), dead-letter redrive (3bf4db1, migration dead_letters/0002_redrive) and trace context across
# Kafka (d060df3, migration outbox/0002_trace_context, the records' traceparent headers), so the upgrade runs
# new migrations under the earlier pods and both event producers (with and without trace headers).
UPGRADE_FROM=ae2bd6aa0e635d6539cc9f46f8782c4f7bf20b43

usage() {
  awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0" >&2
  exit 2
}

# resources N [ARGS...]: the operator-scale benchmark with N OrderSystems, after building the operator's and
# the benchmark's release binaries; its output and JSON kept in $STATE/extended/. The binaries run from a
# copy beside them ($log.bin/), so another build in a shared target directory cannot replace them mid-run.
resources() {
  local n=$1 log bin
  shift
  mkdir -p "$STATE/extended"
  log=$STATE/extended/operator-scale-$n-$(date -u +%Y%m%dT%H%M%SZ)
  # Kafka, PostgreSQL and the Kubernetes binaries of the test bed; the API server is the run's own.
  e2e/infra/up.sh
  # shellcheck source=/dev/null
  . "$STATE/env"
  echo "[extended] building the operator's and the benchmark's release binaries" >&2
  nice -n 10 cargo build --release --locked -p ordersystem-operator -p ordersystem-bench
  bin=$log.bin
  mkdir -p "$bin"
  cp "${CARGO_TARGET_DIR:-target}/release/ordersystem-operator" "${CARGO_TARGET_DIR:-target}/release/ordersystem-bench" "$bin/"
  echo "[extended] operator at scale, $n OrderSystems: output $log.txt, JSON $log.json, binaries $bin/" >&2
  "$bin/ordersystem-bench" --bin-dir "$bin" --json "$log.json" operator-scale --resources "$n" "$@" \
    2>&1 | tee "$log.txt"
}

# soak DURATION_SECONDS SEED RATE: runs the chaos soak with these settings and keeps its log.
soak() {
  local log
  mkdir -p "$STATE/extended"
  log=$STATE/extended/chaos-soak-seed$2-$1s-$(date -u +%Y%m%dT%H%M%SZ).log
  echo "[extended] chaos soak: CHAOS_DURATION_SECONDS=$1 CHAOS_SEED=$2 CHAOS_RATE=$3; log $log" >&2
  CHAOS_DURATION_SECONDS=$1 CHAOS_SEED=$2 CHAOS_RATE=$3 NEXTEST_PROFILE=extended \
    ./test.sh -p ordersystem-e2e -E 'binary(chaos_soak)' --no-capture 2>&1 | tee "$log"
}

[ $# -ge 1 ] || usage
case "$1" in
  --smoke)
    [ $# -eq 1 ] || usage
    soak 60 29 20
    ;;
  --soak)
    if [ $# -lt 2 ] || ! [[ $2 =~ ^[0-9]+$ ]]; then usage; fi
    minutes=$2 seed=$(date +%s) rate=20
    shift 2
    while [ $# -gt 0 ]; do
      case "$1" in
        --seed) [[ ${2:-} =~ ^[0-9]+$ ]] || usage; seed=$2; shift 2 ;;
        --rate) [[ ${2:-} =~ ^[0-9]+$ ]] || usage; rate=$2; shift 2 ;;
        *) usage ;;
      esac
    done
    if [ "$minutes" -lt 1 ] || [ "$minutes" -gt "$MAX_SOAK_MINUTES" ]; then
      echo "[extended] --soak takes 1 to $MAX_SOAK_MINUTES minutes" >&2
      exit 2
    fi
    soak $((minutes * 60)) "$seed" "$rate"
    ;;
  --resources)
    if [ $# -lt 2 ] || ! [[ $2 =~ ^[0-9]+$ ]] || [ "$2" -lt 1 ] || [ "$2" -gt 300 ]; then usage; fi
    n=$2
    shift 2
    resources "$n" "$@"
    ;;
  --upgrade)
    [ $# -le 2 ] || usage
    commit=$(git rev-parse --verify --quiet "${2:-$UPGRADE_FROM}^{commit}") || usage
    mkdir -p "$STATE/extended"
    log=$STATE/extended/upgrade-from-${commit:0:12}-$(date -u +%Y%m%dT%H%M%SZ).log
    # The images are imported into the real node: the test bed first.
    e2e/infra/up.sh
    echo "[extended] upgrade from $commit: building it (e2e/images/build-commit.sh); log $log" >&2
    e2e/images/build-commit.sh "$commit" 2>&1 | tee "$log"
    UPGRADE_FROM_COMMIT=$commit NEXTEST_PROFILE=extended \
      ./test.sh -p ordersystem-e2e --test upgrade_from_commit -E 'binary(upgrade_from_commit)' --no-capture 2>&1 \
      | tee -a "$log"
    ;;
  *) usage ;;
esac
