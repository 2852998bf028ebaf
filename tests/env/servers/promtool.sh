#!/usr/bin/env bash
# promtool (Apache-2.0), Prometheus's rule checker and rule unit-test
# runner, built from the Prometheus Go module: the tests check the chart's
# PrometheusRule with `promtool check rules` and `promtool test rules`
# against series the real operator exported. Nothing runs: `up` builds it
# and records its path.
# Usage: promtool.sh build|up|down|status
source "$(dirname "$0")/../lib.sh"

PROMTOOL_BIN=$BIN_CACHE/promtool-$PROMTOOL_VERSION

build() {
  [ -x "$PROMTOOL_BIN" ] && return 0
  # The module's versions are v0.<3-digit minor>.<patch> (v0.316.0 is
  # Prometheus 3.16.0); the build tags keep service discovery out, which
  # promtool's rule commands do not use and which would triple the build.
  # The version ldflags of its release builds, so `promtool --version`
  # says 3.16.0.
  local minor=${PROMTOOL_VERSION#0.}; minor=${minor%%.*}
  local release="${minor:0:1}.$((10#${minor:1})).${PROMTOOL_VERSION##*.}"
  local v=github.com/prometheus/common/version
  local ld="-X $v.Version=$release -X $v.Revision=v$PROMTOOL_VERSION -X $v.Branch=HEAD -X $v.BuildUser=delenda-testenv -X $v.BuildDate=19700101-00:00:00"
  GOFLAGS=-tags=remove_all_sd go_build_wrapped promtool github.com/prometheus/prometheus "$PROMTOOL_VERSION" \
    github.com/prometheus/prometheus/cmd/promtool "$PROMTOOL_BIN" "$ld"
}

up() {
  build
  write_env promtool <<ENV
PROMTOOL=$PROMTOOL_BIN
ENV
}

down() { rm -f "$DELENDA_STATE/env.d/promtool.env"; }

status() {
  if [ -x "$PROMTOOL_BIN" ]; then echo "promtool: built ($PROMTOOL_BIN)"; else echo "promtool: not built"; fi
}

"${1:?usage: promtool.sh build|up|down|status}"
