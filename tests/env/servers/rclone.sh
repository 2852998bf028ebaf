#!/usr/bin/env bash
# rclone (MIT), from Debian's packages: the baseline of the S3 benchmark
# (bench/scenarios/objects.rs), which deletes the same key set with
# `rclone delete --files-from`. Nothing runs: `up` installs it when missing
# and records its path.
# Usage: rclone.sh build|up|down|status
source "$(dirname "$0")/../lib.sh"

build() {
  if ! command -v rclone >/dev/null; then
    log "installing rclone from Debian's packages"
    apt_install rclone
  fi
}

up() {
  build
  write_env rclone <<ENV
RCLONE=$(command -v rclone)
ENV
}

down() { rm -f "$DELENDA_STATE/env.d/rclone.env"; }

status() {
  if command -v rclone >/dev/null; then echo "rclone: installed ($(rclone version 2>/dev/null | head -1))"; else echo "rclone: not installed"; fi
}

"${1:?usage: rclone.sh build|up|down|status}"
