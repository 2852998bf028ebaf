# Shared helpers for the test-environment scripts. Sourced, not run.
# Layout:
#   $DELENDA_CACHE  builds and downloads, keyed by version, shared by clones
#                   (default ~/.cache/delenda)
#   $DELENDA_STATE  this checkout's running servers: data, logs, pid files and
#                   the env file tests read (default <repo>/.testenv)
set -euo pipefail

ENV_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$ENV_DIR/../.." && pwd)
export DELENDA_CACHE=${DELENDA_CACHE:-$HOME/.cache/delenda}
export DELENDA_STATE=${DELENDA_STATE:-$REPO_ROOT/.testenv}
BIN_CACHE=$DELENDA_CACHE/bin
mkdir -p "$BIN_CACHE" "$DELENDA_STATE/env.d" "$DELENDA_STATE/pids" "$DELENDA_STATE/logs"
# Data of servers that refuse to run as root (PostgreSQL, OpenSearch) lives
# here: the checkout may sit below a directory (/root) that an unprivileged
# user cannot enter. One directory per checkout, derived from its state path.
RUN_DIR=${DELENDA_RUN_DIR:-/var/tmp/delenda-testenv/$(printf '%s' "$DELENDA_STATE" | sha256sum | cut -c1-12)}
mkdir -p "$RUN_DIR"; chmod 755 "$RUN_DIR" "$(dirname "$RUN_DIR")"

# Pinned versions; each can be overridden from the environment.
export KUBE_VERSION=${KUBE_VERSION:-1.34.4}
export ETCD_VERSION=${ETCD_VERSION:-3.6.16}
export VERSITYGW_VERSION=${VERSITYGW_VERSION:-1.8.0}
export HELM_VERSION=${HELM_VERSION:-3.22.0}
export KUBECONFORM_VERSION=${KUBECONFORM_VERSION:-0.8.0}
export PROMTOOL_VERSION=${PROMTOOL_VERSION:-0.316.0}
export OPENSEARCH_VERSION=${OPENSEARCH_VERSION:-2.19.6}

# Ports on 127.0.0.1; each can be overridden from the environment.
export ETCD_PORT=${ETCD_PORT:-12379}
export ETCD_PEER_PORT=${ETCD_PEER_PORT:-12380}
export APISERVER_PORT=${APISERVER_PORT:-16443}
export POSTGRES_PORT=${POSTGRES_PORT:-15432}
export MARIADB_PORT=${MARIADB_PORT:-13306}
export S3_PORT=${S3_PORT:-17070}
export OPENSEARCH_PORT=${OPENSEARCH_PORT:-19200}
export OPENSEARCH_TRANSPORT_PORT=${OPENSEARCH_TRANSPORT_PORT:-19300}

log() { printf '[testenv %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# pid_alive NAME: true when the pid file of NAME names a live process.
pid_alive() {
  local f=$DELENDA_STATE/pids/$1.pid
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

# port_free PORT NAME: fail clearly when another process holds a port, rather
# than let a health check succeed against someone else's server.
port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    die "port $1 for $2 is already in use by a process this checkout did not start (another checkout's test servers? stop them with its tests/env/down, or choose another port: see tests/env/lib.sh)"
  fi
}

# start_bg NAME CMD...: start CMD detached, its output in logs/NAME.log and
# its pid in pids/NAME.pid. setsid puts it in a session of its own, so it
# survives the shell that started it and `down` can stop its whole group.
start_bg() {
  local name=$1; shift
  setsid "$@" >>"$DELENDA_STATE/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$DELENDA_STATE/pids/$name.pid"
}

# stop_pid NAME: stop the process group recorded for NAME, TERM then KILL.
stop_pid() {
  local name=$1 f=$DELENDA_STATE/pids/$1.pid pid i
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    log "stopped $name (pid $pid)"
  fi
  rm -f "$f"
}

# wait_for DESCRIPTION SECONDS CMD...: retry CMD until it succeeds.
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what did not become ready within ${secs}s"
    sleep 0.5
  done
}

# apt_install PKG...: install Debian packages, refreshing the index once.
apt_install() {
  if [ ! -f "$DELENDA_STATE/.apt-updated" ]; then
    apt-get update -qq >&2 && touch "$DELENDA_STATE/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# ensure_user NAME: an unprivileged system user for servers that refuse root.
ensure_user() {
  id -u "$1" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$1"
}

# write_env NAME: stdin (KEY=VALUE lines) becomes env.d/NAME.env.
write_env() { cat >"$DELENDA_STATE/env.d/$1.env"; }

# go_build_wrapped NAME MODULE VERSION PACKAGE OUT [LDFLAGS] [REPLACES]
# Builds PACKAGE from MODULE@VERSION through a wrapper module of our own in the
# cache, since `go install` refuses modules whose go.mod has replace lines.
# REPLACES holds extra go.mod replace lines (kube-apiserver's staging modules).
go_build_wrapped() {
  local name=$1 module=$2 version=$3 pkg=$4 out=$5 ldflags=${6:-} replaces=${7:-}
  [ -x "$out" ] && return 0
  local dir=$DELENDA_CACHE/src/$name-$version
  rm -rf "$dir"; mkdir -p "$dir"
  log "building $name $version (cold build; cached afterwards in $out)"
  cat >"$dir/go.mod" <<MOD
module delenda.dev/testenv/$name

go 1.24

require $module v$version

$replaces
MOD
  cat >"$dir/tools.go" <<GO
//go:build tools

package tools

import _ "$pkg"
GO
  (cd "$dir" && GOFLAGS=-mod=mod go mod tidy -e >"$dir/tidy.log" 2>&1 || { cat "$dir/tidy.log" >&2; exit 1; })
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg") || die "go build of $name failed"
  mv "$out.tmp" "$out"
}

# go_build_kube NAME OUT: builds cmd/NAME of k8s.io/kubernetes at KUBE_VERSION
# (kube-apiserver, kubelet, kube-controller-manager, kube-scheduler) through
# the wrapper module, with a replace line per staging module and the version
# ldflags of its release builds, so every binary says v$KUBE_VERSION.
go_build_kube() {
  local name=$1 out=$2
  [ -x "$out" ] && return 0
  local minor=${KUBE_VERSION#*.}; minor=${minor%%.*}
  local patch=${KUBE_VERSION##*.}
  local gomod replaces
  gomod=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@v$KUBE_VERSION"
  # Every staging module that k8s.io/kubernetes requires at v0.0.0 is
  # published as v0.<minor>.<patch>.
  replaces=$(awk '$2 == "v0.0.0" && $1 ~ /^k8s.io\// {print "replace " $1 " => " $1 " v0.'"$minor.$patch"'"}' "$gomod")
  local v=k8s.io/component-base/version cv=k8s.io/client-go/pkg/version ld=""
  for p in $v $cv; do
    ld="$ld -X $p.gitVersion=v$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  go_build_wrapped "$name" k8s.io/kubernetes "$KUBE_VERSION" "k8s.io/kubernetes/cmd/$name" "$out" "$ld" "$replaces"
}
