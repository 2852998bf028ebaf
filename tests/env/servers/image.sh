#!/usr/bin/env bash
# The operator's image, built with buildah from the repository's Dockerfile
# (no Docker engine, no registry), and imported into the test node's
# containerd so the chart can run it (tests/in_cluster.rs).
#
# The Dockerfile's bases are build arguments; both are made here:
#   RUNTIME_IMAGE  localhost/delenda-test/runtime-base:KEY, the files of
#                  Debian's libc6, libgcc-s1, ca-certificates, tzdata and
#                  netbase plus a user 65532 (what distroless/cc-debian12:nonroot
#                  holds), keyed by those packages' versions and cached
#   BINARY_FROM    an image holding /out/delenda, compiled by
#                  `cargo build --release --locked` on this machine (its
#                  cargo cache) from exactly the files of the Dockerfile's
#                  `sources` stage, so a file the context lacks fails here as
#                  it would in `docker build .`
# Usage: image.sh build|up|down|status|sources DIR
source "$(dirname "$0")/../lib.sh"
source "$ENV_DIR/oci.sh"

DIR=$DELENDA_STATE/image
IMAGE_REPO=localhost/delenda/delenda
RUNTIME_PACKAGES=(libc6 libgcc-s1 ca-certificates tzdata netbase)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$DELENDA_CACHE/cargo-target}

runtime_base() {
  local key; key=$( { deb_versions "${RUNTIME_PACKAGES[@]}"; echo recipe=1; } | sha256sum | cut -c1-12)
  RUNTIME_IMAGE=localhost/delenda-test/runtime-base:$key
  local archive=$OCI_CACHE/runtime-base-$key.tar
  [ -f "$archive" ] && bah inspect --type image "$RUNTIME_IMAGE" >/dev/null 2>&1 && return 0
  local t; t=$(mktemp -d); local root=$t/root
  debs_into "$root" "${RUNTIME_PACKAGES[@]}"
  rm -rf "$root"/usr/share/{doc,man,info,lintian} "$root"/usr/sbin "$root"/etc/ca-certificates.conf
  mkdir -p "$root/etc/ssl/certs" "$root/home/nonroot" "$root/tmp"
  cat "$root"/usr/share/ca-certificates/*/*.crt >"$root/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$root/etc/group"
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
  chmod 1777 "$root/tmp"; chown 65532:65532 "$root/home/nonroot"; chmod 700 "$root/home/nonroot"
  image_from_tree "$RUNTIME_IMAGE" "$root" "$archive" --user 65532:65532 --workingdir /home/nonroot \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
  rm -rf "$t"
  log "built the runtime base $RUNTIME_IMAGE from Debian's ${RUNTIME_PACKAGES[*]}"
}

# sources DIR: the Dockerfile's `sources` stage, built from this checkout
# through .dockerignore, as a tree in DIR. rsync --checksum keeps the times
# of unchanged files, so cargo rebuilds only when a source changed.
sources() {
  need_buildah
  mkdir -p "$1"
  bah bud --pull=never -q --layers=false -f "$REPO_ROOT/Dockerfile" --target sources \
    -t localhost/delenda-test/sources:latest "$REPO_ROOT" >/dev/null
  local ctr mnt
  ctr=$(bah from --pull-never localhost/delenda-test/sources:latest)
  mnt=$(bah mount "$ctr")
  rsync -a --checksum --delete "$mnt/src/" "$1/"
  bah umount "$ctr" >/dev/null; bah rm "$ctr" >/dev/null
}

build() {
  need_buildah
  mkdir -p "$DIR/src"
  runtime_base
  local start=$SECONDS
  sources "$DIR/src"
  log "compiling the image's binary (cargo build --release) from the Dockerfile's sources in $DIR/src"
  cargo build --release --locked --bin delenda --manifest-path "$DIR/src/Cargo.toml" \
    || die "cargo build --release of the Dockerfile's sources failed: does the Dockerfile copy, and .dockerignore let in, every file the build reads?"
  mkdir -p "$DIR/binary/out"
  install -m 0755 "$CARGO_TARGET_DIR/release/delenda" "$DIR/binary/out/delenda"
  local sum; sum=$(sha256sum "$DIR/binary/out/delenda" | cut -c1-12)
  image_from_tree "localhost/delenda-test/binary:$sum" "$DIR/binary" "$DIR/binary.tar"
  # The repository's Dockerfile builds the image; the compile stage is
  # skipped because BINARY_FROM names an image.
  bah bud --pull=never -q --layers=false -f "$REPO_ROOT/Dockerfile" \
    --build-arg RUST_IMAGE="$RUNTIME_IMAGE" --build-arg RUNTIME_IMAGE="$RUNTIME_IMAGE" \
    --build-arg BINARY_FROM="localhost/delenda-test/binary:$sum" \
    -t "$IMAGE_REPO:$sum" "$REPO_ROOT" >/dev/null
  save_image "$IMAGE_REPO:$sum" "$DIR/delenda.tar"
  echo "$IMAGE_REPO:$sum" >"$DIR/ref"
  log "built $IMAGE_REPO:$sum from the Dockerfile in $((SECONDS - start))s ($(du -k "$DIR/binary/out/delenda" | cut -f1) KiB binary)"
}

# The digest of the image's manifest in the OCI archive: what a pod names
# with image@sha256:...
digest() { tar -xOf "$DIR/delenda.tar" index.json | sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p' | head -1; }

up() {
  # tests/env/up has just built it; build once when run alone.
  [ -f "$DIR/delenda.tar" ] && [ -f "$DIR/ref" ] || build
  local ref; ref=$(cat "$DIR/ref")
  "$ENV_DIR/servers/node.sh" import "$ref" "$DIR/delenda.tar"
  write_env image <<ENV
DELENDA_IMAGE=$ref
DELENDA_IMAGE_DIGEST=$(digest)
DELENDA_IMAGE_ARCHIVE=$DIR/delenda.tar
DELENDA_IMAGE_SOURCES=$DIR/src
ENV
}

down() { rm -f "$DELENDA_STATE/env.d/image.env"; }

status() {
  if [ -f "$DIR/ref" ]; then echo "image: built ($(cat "$DIR/ref"))"; else echo "image: not built"; fi
}

cmd=${1:?usage: image.sh build|up|down|status|sources DIR}; shift
"$cmd" "$@"
