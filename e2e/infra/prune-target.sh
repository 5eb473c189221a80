#!/usr/bin/env bash
# prune-target.sh: keep the shared cargo target directory from filling the disk. Every build of a test
# target with changed code leaves a new executable (`<name>-<hash>`, hundreds of MB with debug info) beside
# the old ones, which nothing removes; this keeps the newest of each name in `<target>/*/deps` and deletes
# the rest. What a build needs again it rebuilds.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh" prune
TARGET=${CARGO_TARGET_DIR:-$CACHE/cargo-target}
freed=0
for deps in "$TARGET"/*/deps; do
  [ -d "$deps" ] || continue
  # Executables without an extension, newest first; a name is what precedes the last `-<hash>`.
  while IFS= read -r -d '' file; do
    name=${file##*/}
    name=${name%-*}
    if [[ " ${seen[*]:-} " == *" $deps/$name "* ]]; then
      size=$(stat -c %s "$file")
      rm -f "$file" && freed=$((freed + size))
    else
      seen+=("$deps/$name")
    fi
  done < <(find "$deps" -maxdepth 1 -type f -perm -u+x ! -name '*.*' -printf '%T@ %p\0' | sort -z -rn | cut -z -d' ' -f2-)
done
say "freed $((freed / 1024 / 1024)) MiB of older test executables in $TARGET"
