# Image helpers for the test node and the operator image: buildah with a
# store of its own in the cache, images kept as OCI archives keyed by what
# they are built from. No registry is reachable: every image is made here.
# Sourced after lib.sh.

OCI_CACHE=$DELENDA_CACHE/images
mkdir -p "$OCI_CACHE"

# bah ARGS...: buildah on the cache's own store (vfs: works on any file
# system, and these images are small), runc for the rare RUN step.
bah() {
  BUILDAH_RUNTIME=/usr/sbin/runc buildah --root "$DELENDA_CACHE/containers/storage" \
    --runroot "$DELENDA_STATE/containers-run" --storage-driver vfs "$@"
}

# need_buildah: installs buildah from Debian when missing.
need_buildah() { command -v buildah >/dev/null || apt_install buildah; }

# image_from_tree REF DIR OUT [buildah config args...]: an image of exactly
# the files under DIR (owners and modes kept), saved as the OCI archive OUT.
image_from_tree() {
  local ref=$1 dir=$2 out=$3; shift 3
  local ctr
  ctr=$(bah from --pull-never scratch)
  tar --numeric-owner -C "$dir" -cf "$out.rootfs.tar" .
  bah add "$ctr" "$out.rootfs.tar" / >/dev/null
  rm -f "$out.rootfs.tar"
  [ $# -eq 0 ] || bah config "$@" "$ctr"
  bah commit --rm -q "$ctr" "$ref" >/dev/null
  save_image "$ref" "$out"
}

# save_image REF OUT: the image REF as an OCI archive that containerd imports
# under the same name.
save_image() {
  rm -f "$1.tmp"
  bah push -q "$1" "oci-archive:$2.tmp:$1" >/dev/null
  mv "$2.tmp" "$2"
}

# debs_into DIR PKG...: the files of Debian packages (the candidate versions
# of this machine's apt sources), unpacked into DIR without running their
# scripts, as distroless images are made.
debs_into() {
  apt_ready
  local dir=$1; shift
  local dl; dl=$(mktemp -d)
  (cd "$dl" && apt-get download -qq "$@" >&2) || die "apt-get download $* failed"
  for deb in "$dl"/*.deb; do dpkg-deb -x "$deb" "$dir"; done
  rm -rf "$dl"
}

# deb_versions PKG...: "name=version" of each package's candidate, the cache
# key of images made from them.
deb_versions() {
  apt_ready
  local p
  for p in "$@"; do printf '%s=%s\n' "$p" "$(apt-cache policy "$p" | awk '/Candidate:/ {print $2}')"; done
}

# apt_ready: the package index, refreshed once per state dir (as apt_install
# does), so candidate versions are known on a fresh machine.
apt_ready() {
  if [ ! -f "$DELENDA_STATE/.apt-updated" ]; then
    apt-get update -qq >&2 && touch "$DELENDA_STATE/.apt-updated"
  fi
}
