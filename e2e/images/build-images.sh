#!/usr/bin/env bash
# build-images.sh: the Dockerfile's four runtime images (operator, order, invoicing, shipping), built here with
# buildah from the Dockerfile's own stages and imported into the real node's containerd under the names the
# chart and the operator use (ghcr.io/ordersystem/<name>:<tag>). Nothing is pulled:
#   - RUNTIME_BASE is localhost/ordersystem/cc-debian12:nonroot, made from the files of the Debian packages
#     distroless cc-debian12 carries, as installed here (the libraries the binaries are linked against), with
#     its users root, nobody and nonroot (65532);
#   - BINARIES is an image holding the release build of e2e/images/cargo-release.sh (the Dockerfile's own
#     command, run by CI's release-libs stage) where the Dockerfile's builder stage puts it.
# The images' digests follow their content: a rebuilt binary gives a new digest under the same tag. The
# import also names each image by its digest (ghcr.io/ordersystem/<name>@sha256:…), so a pod that names its
# image that way runs exactly this build (operator/tests/images.rs does).
# Idempotent: an image whose inputs did not change is not built again.
#
# Usage: build-images.sh [--tag TAG] [--revision REVISION]
#   --tag TAG            the images' tag (default: the workspace version, what the chart and operator use)
#   --revision REVISION  the Dockerfile's REVISION, which every binary reports in its build_info metric
#                        (default: this checkout's commit, with "-dirty" when it has uncommitted changes)
# Another tag and revision give a second, distinct build of the same binaries: e2e/tests/upgrade.rs rolls a
# running system from one to the other.
# shellcheck source=../infra/lib.sh
. "$(dirname "$0")/../infra/lib.sh" images
ROOT=$(cd "$INFRA_DIR/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VERSION=$(awk -F'"' '/^version *=/ {print $2; exit}' "$ROOT/Cargo.toml")
TAG=$VERSION
REVISION=
while [ $# -gt 0 ]; do
  case $1 in
    --tag) [ $# -ge 2 ] || die "--tag needs a value"; TAG=$2; shift 2 ;;
    --revision) [ $# -ge 2 ] || die "--revision needs a value"; REVISION=$2; shift 2 ;;
    -h | --help) awk 'NR > 1 && !/^#/ || /^# shellcheck/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
# A tag as the OCI distribution spec allows it.
[[ $TAG =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "--tag $TAG is not a valid image tag"
if [ -z "$REVISION" ]; then
  REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null) || REVISION=unknown
  if [ "$REVISION" != unknown ] && [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    REVISION=$REVISION-dirty
  fi
fi
[[ $REVISION =~ ^[A-Za-z0-9_.+-]{1,128}$ ]] || die "--revision $REVISION: letters, digits and _.+- only"
OUT=$CACHE/images
SOCK=/run/ordersystem/containerd/containerd.sock
# Debian's names for what gcr.io/distroless/cc-debian12 carries.
BASE_PACKAGES="base-files netbase tzdata libc6 libssl3 libgcc-s1 libgomp1 libstdc++6"
BASE_IMAGE=localhost/ordersystem/cc-debian12:nonroot
IMAGES="operator order invoicing shipping"
LOGS=$STATE/node-logs
mkdir -p "$OUT" "$LOGS"

STORE=$STATE/buildah
B=(buildah --storage-driver vfs --root "$STORE/root" --runroot "$STORE/run")

# key WORDS...: a short hash of the words and of the files they name.
key() {
  local w
  for w in "$@"; do
    if [ -f "$w" ]; then sha256sum "$w"; else echo "$w"; fi
  done | sha256sum | cut -c1-16
}

# The runtime base: the packages' files as dpkg would unpack them, the CA bundle update-ca-certificates
# makes, and distroless's users and directories.
runtime_base() {
  local versions k
  # shellcheck disable=SC2086
  versions=$(dpkg-query -W -f='${Package}=${Version}\n' $BASE_PACKAGES) || die "one of $BASE_PACKAGES is not installed here"
  k=$(key "$versions" /etc/ssl/certs/ca-certificates.crt)
  BASE_KEY=$k
  if [ "$("${B[@]}" inspect --type image --format '{{index .OCIv1.Config.Labels "ordersystem.base.key"}}' "$BASE_IMAGE" 2>/dev/null)" = "$k" ]; then
    say "cached: $BASE_IMAGE"; return
  fi
  say "making $BASE_IMAGE from Debian's $(tr '\n' ' ' <<<"$versions")"
  local w; w=$(mktemp -d "$STATE/base.XXXXXX")
  (
    set -e
    mkdir "$w/rootfs"
    # Each package's files as this machine has them installed: the very libraries the binaries were linked
    # against, and no download.
    # Files and links, not directories (nor this machine's merged-/usr links such as /lib -> usr/lib): the
    # directories on the way are made 0755.
    # shellcheck disable=SC2086
    dpkg -L $BASE_PACKAGES | sort -u | while read -r f; do
      if [ -f "$f" ] || { [ -L "$f" ] && [ ! -d "$f" ]; }; then echo "${f#/}"; fi
    done > "$w/files"
    tar -C / --no-recursion -cf - -T "$w/files" | tar -C "$w/rootfs" -xf -
    cd "$w/rootfs"
    rm -rf usr/share/doc usr/share/man usr/share/lintian usr/share/info
    mkdir -p etc/ssl/certs tmp home/nonroot root
    cp /etc/ssl/certs/ca-certificates.crt etc/ssl/certs/
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > etc/passwd
    printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' > etc/group
    printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n' > etc/nsswitch.conf
    chmod 1777 tmp; chmod 700 home/nonroot root; chown 65532:65532 home/nonroot
    if [ -e bin/sh ] || [ -e usr/bin/sh ]; then echo "the runtime base must have no shell" >&2; exit 1; fi
  ) >"$LOGS/images-base.log" 2>&1 || { rm -rf "$w"; die_with_log "$LOGS/images-base.log" "could not assemble the runtime base from the installed packages"; }
  (
    c=$("${B[@]}" from scratch) &&
      "${B[@]}" copy "$c" "$w/rootfs/" / &&
      "${B[@]}" copy --chown 65532:65532 "$c" "$w/rootfs/home/" /home &&
      "${B[@]}" config --user 65532:65532 --workingdir /home/nonroot \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
        --label "ordersystem.base.key=$k" "$c" &&
      "${B[@]}" commit --rm --format oci "$c" "$BASE_IMAGE"
  ) >"$LOGS/images-build.log" 2>&1 || { rm -rf "$w"; die_with_log "$LOGS/images-build.log" "buildah could not make $BASE_IMAGE"; }
  rm -rf "$w"
}

# The release binaries where the Dockerfile's builder stage leaves them.
binaries_image() {
  local bin k w
  for bin in $IMAGES; do
    [ -x "$TARGET/release/ordersystem-$bin" ] || die "$TARGET/release/ordersystem-$bin is missing: run e2e/images/cargo-release.sh (CI's release-libs stage does)"
  done
  # shellcheck disable=SC2046
  k=$(key $(for bin in $IMAGES; do echo "$TARGET/release/ordersystem-$bin"; done))
  BINARIES=localhost/ordersystem/release-binaries:$k
  if "${B[@]}" inspect --type image "$BINARIES" >/dev/null 2>&1; then return; fi
  # Yesterday's binaries are never needed again.
  "${B[@]}" images --format '{{.Name}}:{{.Tag}}' 2>/dev/null | grep '/release-binaries:' | xargs -r "${B[@]}" rmi >/dev/null 2>&1 || true
  w=$(mktemp -d "$STATE/binaries.XXXXXX")
  mkdir -p "$w/src/target/release"
  for bin in $IMAGES; do cp "$TARGET/release/ordersystem-$bin" "$w/src/target/release/"; done
  (
    c=$("${B[@]}" from scratch) && "${B[@]}" copy "$c" "$w/" / && "${B[@]}" commit --rm --format oci "$c" "$BINARIES"
  ) >"$LOGS/images-build.log" 2>&1 || { rm -rf "$w"; die_with_log "$LOGS/images-build.log" "buildah could not hold the release binaries"; }
  rm -rf "$w"
}

# The Dockerfile's stage NAME, on the two images above, as an archive named by its content.
build_stage() {
  local name=$1 ref=ghcr.io/ordersystem/$1:$TAG tar
  tar=$OUT/$name.$(key "$ROOT/Dockerfile" "$BASE_KEY" "$BINARIES" "$ref" "$REVISION").tar
  if [ -f "$tar" ]; then say "cached: $ref (revision $REVISION)"; ARCHIVES+=("$tar"); return; fi
  say "building $ref (Dockerfile target $name, revision $REVISION)"
  "${B[@]}" build --layers=false --pull=never --target "$name" \
    --build-arg "RUNTIME_BASE=$BASE_IMAGE" --build-arg "BINARIES=$BINARIES" --build-arg "REVISION=$REVISION" \
    -f "$ROOT/Dockerfile" -t "$ref" "$CONTEXT" >"$LOGS/images-build-$name.log" 2>&1 \
    || die_with_log "$LOGS/images-build-$name.log" "buildah could not build the Dockerfile's $name stage"
  # The archives of earlier builds of this tag are never needed again; other tags keep theirs (each archive's
  # .ref file names its tag).
  local old
  for old in "$OUT/$name".*.tar; do
    if [ -f "$old" ] && { [ ! -f "${old%.tar}.ref" ] || [ "$(cat "${old%.tar}.ref")" = "$ref" ]; }; then
      rm -f "$old" "${old%.tar}.ref"
    fi
  done
  echo "$ref" >"${tar%.tar}.ref"
  "${B[@]}" push "$ref" "docker-archive:$tar.tmp:$ref" >>"$LOGS/images-build-$name.log" 2>&1 \
    || die_with_log "$LOGS/images-build-$name.log" "buildah could not write $tar"
  mv "$tar.tmp" "$tar"
  "${B[@]}" rmi "$ref" >/dev/null 2>&1 || true
  ARCHIVES+=("$tar")
}

# import ARCHIVE: into the node's containerd, named by its tag and by its digest.
import() {
  local name; name=$(basename "$1" | cut -d. -f1)
  local ref=ghcr.io/ordersystem/$name:$TAG digest
  # --digests with --base-name also names the image ghcr.io/ordersystem/<name>@sha256:…, which pods can use.
  ctr --address "$SOCK" --namespace k8s.io images import --all-platforms --digests \
    --base-name "ghcr.io/ordersystem/$name" "$1" >"$LOGS/images-import.log" 2>&1 \
    || die_with_log "$LOGS/images-import.log" "the node's containerd did not import $ref (is the node running? e2e/infra/node.sh start)"
  digest=$(ctr --address "$SOCK" --namespace k8s.io images ls "name==$ref" | awk 'NR == 2 {print $3}')
  [ -n "$digest" ] || die "$ref is not in the node's containerd after the import"
  say "imported $ref ($digest)"
}

runtime_base
binaries_image
# The runtime stages take nothing from the build context.
CONTEXT=$(mktemp -d "$STATE/context.XXXXXX")
ARCHIVES=()
for name in $IMAGES; do build_stage "$name"; done
rmdir "$CONTEXT"
for tar in "${ARCHIVES[@]}"; do import "$tar"; done
