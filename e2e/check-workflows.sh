#!/usr/bin/env bash
# check-workflows.sh: actionlint over .github/workflows (with shellcheck on their run: steps), installed from
# the Go module proxy at ACTIONLINT_VERSION into the cache. The workflows cannot run here (no registry
# to push to, no GitHub runner); this is what can be checked.
# shellcheck source=infra/lib.sh
. "$(dirname "$0")/infra/lib.sh" workflows
ROOT=$(cd "$INFRA_DIR/../.." && pwd)
BIN=$CACHE/actionlint/$ACTIONLINT_VERSION
if [ ! -x "$BIN/actionlint" ]; then
  say "installing actionlint $ACTIONLINT_VERSION (go install)"
  (cd / && CGO_ENABLED=0 GOBIN="$BIN" go install -trimpath "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION") \
    || die "go install github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION failed"
fi
cd "$ROOT" && "$BIN/actionlint" -no-color
say "workflows: actionlint passed"
