#!/usr/bin/env bash
# helm v3, built from its Go module with the ldflags of its release Makefile:
# the version, and the Kubernetes version `helm template` assumes by default
# (derived, as the Makefile does, from the k8s.io/client-go it requires).
# Nothing runs: `up` builds it and records its path.
# Usage: helm.sh build|up|down|status
source "$(dirname "$0")/../lib.sh"

HELM_BIN=$BIN_CACHE/helm-$HELM_VERSION

build() {
  [ -x "$HELM_BIN" ] && return 0
  local gomod cgo minor ld
  gomod=$(go mod download -json "helm.sh/helm/v3@v$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$gomod" ] || die "could not download helm.sh/helm/v3@v$HELM_VERSION"
  cgo=$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$gomod")   # v0.<minor>.<patch>
  minor=${cgo#v0.}; minor=${minor%%.*}
  [ -n "$minor" ] || die "no k8s.io/client-go requirement in $gomod"
  ld="-X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ld="$ld -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$minor"
  done
  go_build_wrapped helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "$HELM_BIN" "$ld"
}

up() {
  build
  write_env helm <<ENV
HELM=$HELM_BIN
ENV
}

down() { rm -f "$DELENDA_STATE/env.d/helm.env"; }

status() {
  if [ -x "$HELM_BIN" ]; then echo "helm: built ($HELM_BIN)"; else echo "helm: not built"; fi
}

"${1:?usage: helm.sh build|up|down|status}"
