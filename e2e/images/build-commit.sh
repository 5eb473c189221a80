#!/usr/bin/env bash
# build-commit.sh: the four images of an earlier commit, for an upgrade from that version to this checkout
# (e2e/tests/upgrade_from_commit.rs). The commit is checked out with `git worktree` under
# $CACHE/commits/<full hash>/src and built there by its own scripts: its e2e/images/cargo-release.sh into a
# target directory of its own ($CACHE/commits/<hash>/target, so the shared one is untouched), then its
# e2e/images/build-images.sh with the tag <12-character hash> and the full hash as revision, imported into the
# real node. A commit whose build-images.sh has no --tag/--revision yet is imaged by this checkout's script
# (and Dockerfile) from its binaries.
# Cached by the hash: the release binaries are kept in $CACHE/commits/<hash>/bin and the cargo target is
# removed once they are (a few GB); a second run builds nothing and only imports the images again (a node
# started since has lost them). The commit's chart and CRDs are in its worktree, where the test installs
# them from.
#
# Usage: build-commit.sh [--print-dir] COMMIT
#   COMMIT       any name git knows for a commit of this repository (hash, tag, HEAD~40)
#   --print-dir  only print the cache directory of COMMIT (built or not) and exit
# The first build of a commit is a full release build (48 min on the 2-core machine beside three other
# builds); it runs at nice 10. Progress every 30 s; cargo's log in $CACHE/commits/<hash>/cargo-release.log.
# shellcheck source=../infra/lib.sh
. "$(dirname "$0")/../infra/lib.sh" build-commit
ROOT=$(cd "$INFRA_DIR/../.." && pwd)
PRINT_DIR=no
COMMIT=
while [ $# -gt 0 ]; do
  case $1 in
    --print-dir) PRINT_DIR=yes; shift ;;
    -h | --help) awk 'NR > 1 && !/^#/ || /^# shellcheck/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$COMMIT" ] || die "one commit only (see --help)"; COMMIT=$1; shift ;;
  esac
done
[ -n "$COMMIT" ] || die "which commit? (see --help)"
HASH=$(git -C "$ROOT" rev-parse --verify --quiet "$COMMIT^{commit}") || die "$COMMIT is not a commit of $ROOT"
SHORT=${HASH:0:12}
DIR=$CACHE/commits/$HASH
if [ "$PRINT_DIR" = yes ]; then echo "$DIR"; exit 0; fi
SRC=$DIR/src
BIN=$DIR/bin
IMAGES="operator order invoicing shipping"
mkdir -p "$DIR"
say "commit $HASH ($(git -C "$ROOT" log -1 --format='%cs %s' "$HASH" | cut -c1-100))"

# The worktree, at exactly that commit.
if [ -d "$SRC" ]; then
  [ "$(git -C "$SRC" rev-parse HEAD 2>/dev/null)" = "$HASH" ] || die "$SRC is not a worktree at $HASH: remove it (git worktree remove --force $SRC)"
else
  git -C "$ROOT" worktree prune
  say "git worktree add $SRC"
  git -C "$ROOT" worktree add --detach "$SRC" "$HASH" >/dev/null 2>&1 || die "git worktree add $SRC $HASH failed"
fi

# The release binaries: the commit's own build command, into its own target directory.
built() {
  local bin
  for bin in $IMAGES; do [ -x "$BIN/release/ordersystem-$bin" ] || return 1; done
}
if built; then
  say "cached: the release binaries of $SHORT ($BIN/release)"
else
  log=$DIR/cargo-release.log
  say "release build of $SHORT in $SRC (target $DIR/target; log $log)"
  start=$(date +%s)
  (
    cd "$SRC"
    CARGO_TARGET_DIR=$DIR/target CARGO_INCREMENTAL=0 nice -n 10 e2e/images/cargo-release.sh
  ) >"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 30
    kill -0 "$pid" 2>/dev/null || break
    say "  $(( $(date +%s) - start )) s: $(grep -c '^ *Compiling' "$log" || true) crates compiled, now: $(grep '^ *Compiling' "$log" | tail -n 1 | awk '{print $2}')"
  done
  wait "$pid" || die_with_log "$log" "the release build of $SHORT failed"
  mkdir -p "$BIN/release"
  for bin in $IMAGES; do
    cp "$DIR/target/release/ordersystem-$bin" "$BIN/release/.ordersystem-$bin.tmp"
    mv "$BIN/release/.ordersystem-$bin.tmp" "$BIN/release/ordersystem-$bin"
  done
  say "built in $(( $(date +%s) - start )) s; the binaries kept in $BIN/release, the target directory removed"
  rm -rf "$DIR/target"
fi

# The images, tagged with the short hash; build-images.sh keeps its own cache by the inputs.
# Two image builds at once would share buildah's store: wait for another to end.
while pgrep -f 'e2e/images/build-images\.sh' >/dev/null; do
  say "another build-images.sh is running; waiting"
  sleep 15
done
if grep -q -- '--revision)' "$SRC/e2e/images/build-images.sh" 2>/dev/null; then
  script=$SRC/e2e/images/build-images.sh
else
  say "$SHORT's build-images.sh takes no --tag/--revision: imaging its binaries with this checkout's"
  script=$ROOT/e2e/images/build-images.sh
fi
say "images ghcr.io/ordersystem/{${IMAGES// /,}}:$SHORT by $script"
CARGO_TARGET_DIR=$BIN bash "$script" --tag "$SHORT" --revision "$HASH"
printf 'commit=%s\ntag=%s\nchart=%s\ncrds=%s\n' "$HASH" "$SHORT" "$SRC/charts/ordersystem-operator" "$SRC/crds" >"$DIR/images.env"
say "ready: tag $SHORT, chart $SRC/charts/ordersystem-operator, CRDs $SRC/crds ($DIR/images.env)"
