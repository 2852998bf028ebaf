#!/usr/bin/env bash
# kubeconform (Apache-2.0), the offline manifest validator CI pipelines
# use, built from its Go module: the tests check that the JSON schemas in
# schemas/ work with it. Nothing runs: `up` builds it and records its path.
# Usage: kubeconform.sh build|up|down|status
source "$(dirname "$0")/../lib.sh"

KUBECONFORM_BIN=$BIN_CACHE/kubeconform-$KUBECONFORM_VERSION

build() {
  [ -x "$KUBECONFORM_BIN" ] && return 0
  go_build_wrapped kubeconform github.com/yannh/kubeconform "$KUBECONFORM_VERSION" \
    github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_BIN"
}

up() {
  build
  write_env kubeconform <<ENV
KUBECONFORM=$KUBECONFORM_BIN
ENV
}

down() { rm -f "$DELENDA_STATE/env.d/kubeconform.env"; }

status() {
  if [ -x "$KUBECONFORM_BIN" ]; then echo "kubeconform: built ($KUBECONFORM_BIN)"; else echo "kubeconform: not built"; fi
}

"${1:?usage: kubeconform.sh build|up|down|status}"
