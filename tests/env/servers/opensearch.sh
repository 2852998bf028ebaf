#!/usr/bin/env bash
# OpenSearch from its integration-test distribution on Maven Central (the
# minimal, Apache-2.0 build OpenSearch's own tests run), plus the reindex
# module that provides _delete_by_query, single node, security off.
# Usage: opensearch.sh build|up|down|status
source "$(dirname "$0")/../lib.sh"

INSTALL=$DELENDA_CACHE/opensearch-$OPENSEARCH_VERSION
# Under RUN_DIR (lib.sh): the unprivileged user must be able to reach it.
DIR=$RUN_DIR/opensearch
# OpenSearch refuses to run as root, so root runs it as this system user.
RUN_USER=${DELENDA_TEST_USER:-delenda-test}
OPENSEARCH_JAVA_HOME=${OPENSEARCH_JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-amd64}
URL=http://127.0.0.1:$OPENSEARCH_PORT

# mvn_q ARGS...: Maven, its output shown only when it fails (even -q prints
# stray colour codes).
mvn_q() { local out; out=$(mvn -B -q "$@" 2>&1) || { printf '%s\n' "$out" >&2; return 1; }; }

# artifact_name FILE.jar: the jar's name without its version, so jars can be
# compared across versions (zstd-jni-1.5.5-5.jar -> zstd-jni).
artifact_name() { basename "$1" | sed -E 's/-[0-9][^-]*(-[0-9][^-]*)?\.jar$//'; }

# add_reindex_module HOME: the integ-test zip ships transport-netty4 only, but
# _delete_by_query (and _update_by_query, _reindex) live in the reindex
# module. Maven Central has no zip of it; its jar is published as
# org.opensearch.plugin:reindex-client (like transport-netty4-client in the
# zip's own modules/), with its dependencies in the pom. We assemble the
# module directory the distribution would have: the jars, minus any the core
# lib/ already holds (duplicates fail OpenSearch's jar-hell check), and the
# descriptor and policy from OpenSearch's modules/reindex sources.
add_reindex_module() {
  local home=$1 work=$1/../reindex-build mod=$1/modules/reindex jar
  mkdir -p "$work" "$mod"
  cat >"$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.delenda.testenv</groupId>
  <artifactId>opensearch-reindex-module</artifactId>
  <version>$OPENSEARCH_VERSION</version>
  <dependencies>
    <dependency>
      <groupId>org.opensearch.plugin</groupId>
      <artifactId>reindex-client</artifactId>
      <version>$OPENSEARCH_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
  mvn_q -f "$work/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$work/jars" || die "could not fetch org.opensearch.plugin:reindex-client:$OPENSEARCH_VERSION"
  local core; core=$(for jar in "$home"/lib/*.jar; do artifact_name "$jar"; done)
  for jar in "$work"/jars/*.jar; do
    grep -qxF "$(artifact_name "$jar")" <<<"$core" || cp "$jar" "$mod/"
  done
  unzip -l "$mod/reindex-client-$OPENSEARCH_VERSION.jar" org/opensearch/index/reindex/ReindexPlugin.class >/dev/null \
    || die "reindex-client $OPENSEARCH_VERSION has no org.opensearch.index.reindex.ReindexPlugin; update add_reindex_module"
  cat >"$mod/plugin-descriptor.properties" <<PROPS
description=Adds _reindex, _update_by_query and _delete_by_query (assembled by delenda's tests/env from reindex-client)
version=$OPENSEARCH_VERSION
name=reindex
classname=org.opensearch.index.reindex.ReindexPlugin
java.version=11
opensearch.version=$OPENSEARCH_VERSION
custom.foldername=
extended.plugins=
has.native.controller=false
PROPS
  # Reindex from a remote cluster uses the low-level REST client.
  cat >"$mod/plugin-security.policy" <<'POLICY'
grant {
  permission java.net.SocketPermission "*", "connect";
};
grant codeBase "${codebase.opensearch-rest-client}" {
  permission java.net.NetPermission "getProxySelector";
};
grant codeBase "${codebase.httpasyncclient}" {
  permission java.net.NetPermission "getProxySelector";
};
POLICY
  rm -rf "$work"
}

build() {
  # The marker is written last, so an interrupted build is redone.
  [ -f "$INSTALL/.delenda-complete" ] && return 0
  local tmp=$INSTALL.tmp
  rm -rf "$tmp" "$INSTALL"; mkdir -p "$tmp"
  log "fetching OpenSearch $OPENSEARCH_VERSION from Maven Central (cold; cached afterwards in $INSTALL)"
  mvn_q dependency:copy -Dartifact="org.opensearch.distribution.integ-test-zip:opensearch:$OPENSEARCH_VERSION:zip" \
    -DoutputDirectory="$tmp" || die "could not fetch the OpenSearch $OPENSEARCH_VERSION integ-test zip"
  unzip -q "$tmp/opensearch-$OPENSEARCH_VERSION.zip" -d "$tmp"
  rm "$tmp/opensearch-$OPENSEARCH_VERSION.zip"
  [ -d "$tmp/opensearch-$OPENSEARCH_VERSION/modules/reindex" ] || add_reindex_module "$tmp/opensearch-$OPENSEARCH_VERSION"
  # Read by an unprivileged user: files readable, directories searchable.
  chmod -R a+rX "$tmp/opensearch-$OPENSEARCH_VERSION"
  mv "$tmp/opensearch-$OPENSEARCH_VERSION" "$INSTALL"
  rmdir "$tmp"
  touch "$INSTALL/.delenda-complete"
}

# AS_USER: the prefix that runs a command as the user OpenSearch runs as
# (an array, not a function, since start_bg hands it to setsid).
AS_USER=()
[ "$(id -u)" = 0 ] && AS_USER=(runuser -u "$RUN_USER" --)
as_user() { "${AS_USER[@]}" "$@"; }

# prepare_user: as root, make sure the unprivileged user exists.
prepare_user() {
  [ "$(id -u)" = 0 ] || return 0
  id -u "$RUN_USER" >/dev/null 2>&1 && return 0
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$RUN_USER"
  log "created system user $RUN_USER to run OpenSearch"
}

# home_dir: the install the user can read. Root's cache usually sits in a
# mode-700 /root; then the user gets a hard-linked mirror in the state
# directory (no copy of the data, and nothing of root's home opened up).
home_dir() {
  if as_user test -r "$INSTALL/lib/opensearch-$OPENSEARCH_VERSION.jar"; then
    echo "$INSTALL"; return
  fi
  local mirror=$DIR/home-$OPENSEARCH_VERSION
  if [ ! -d "$mirror" ]; then
    rm -rf "$DIR"/home-*
    cp -al "$INSTALL" "$mirror.tmp" 2>/dev/null || { rm -rf "$mirror.tmp"; cp -a "$INSTALL" "$mirror.tmp"; }
    mv "$mirror.tmp" "$mirror"
  fi
  as_user test -r "$mirror/lib/opensearch-$OPENSEARCH_VERSION.jar" \
    || die "$RUN_USER cannot read $mirror; put DELENDA_STATE where $RUN_USER can reach it"
  echo "$mirror"
}

# configure HOME: a fresh config directory for this checkout. Never chown
# HOME: in the mirror its files are hard links to the shared cache.
configure() {
  local home=$1 conf=$DIR/config
  rm -rf "$conf"
  mkdir -p "$DIR/data" "$DIR/logs" "$DIR/tmp"
  cp -r "$home/config" "$conf"
  # bin/opensearch runs from HOME, so the relative paths in jvm.options (GC
  # log, heap dumps, crash logs) would point into the read-only install.
  sed -i -e "s|file=logs/gc.log|file=$DIR/logs/gc.log|" \
    -e "s|HeapDumpPath=data|HeapDumpPath=$DIR/data|" \
    -e "s|ErrorFile=logs/|ErrorFile=$DIR/logs/|" "$conf/jvm.options"
  cat >"$conf/opensearch.yml" <<YML
cluster.name: delenda-test
node.name: delenda-test
path.data: $DIR/data
path.logs: $DIR/logs
# Loopback only: it also keeps the production bootstrap checks (file
# descriptors, vm.max_map_count) warnings instead of errors.
network.host: 127.0.0.1
http.port: $OPENSEARCH_PORT
transport.port: $OPENSEARCH_TRANSPORT_PORT
discovery.type: single-node
# A full disk on a developer machine must not turn test indices read-only.
cluster.routing.allocation.disk.threshold_enabled: false
YML
  if [ "$(id -u)" = 0 ]; then chown -R "$RUN_USER:" "$conf" "$DIR/data" "$DIR/logs" "$DIR/tmp"; fi
}

ready() {
  if ! pid_alive opensearch; then
    log "OpenSearch exited during startup; the end of $DELENDA_STATE/logs/opensearch.log:" 2>&3
    tail -n 30 "$DELENDA_STATE/logs/opensearch.log" >&3
    exit 1
  fi
  curl -sf "$URL/_cluster/health?wait_for_status=yellow&timeout=1s"
}

up() {
  build
  if ! pid_alive opensearch; then
    port_free "$OPENSEARCH_PORT" OpenSearch; port_free "$OPENSEARCH_TRANSPORT_PORT" "OpenSearch transport"
    prepare_user
    mkdir -p "$DIR"
    local home; home=$(home_dir)
    configure "$home"
    # OPENSEARCH_TMPDIR set saves bin/opensearch a JVM start to pick one.
    # TieredStopAtLevel=1 (no C2 compiler) halves the start on 2 busy cores;
    # test workloads are too small to miss the faster steady state.
    start_bg opensearch "${AS_USER[@]}" env HOME="$DIR/tmp" \
      OPENSEARCH_JAVA_HOME="$OPENSEARCH_JAVA_HOME" \
      OPENSEARCH_PATH_CONF="$DIR/config" \
      OPENSEARCH_TMPDIR="$DIR/tmp" \
      OPENSEARCH_JAVA_OPTS="-Xms512m -Xmx512m -XX:TieredStopAtLevel=1" \
      "$home/bin/opensearch"
    # ready() writes the log of a failed start to fd 3: wait_for hides its output.
    wait_for opensearch 180 ready 3>&2
    local plugins; plugins=$(curl -sf "$URL/_nodes/_local/plugins")
    grep -q '"name":"reindex"' <<<"$plugins" \
      || die "OpenSearch started without the reindex module (no _delete_by_query)"
    log "OpenSearch $OPENSEARCH_VERSION on $URL"
  fi
  write_env opensearch <<ENV
OPENSEARCH_URL=$URL
DELENDA_TEST_OPENSEARCH_VERSION=$OPENSEARCH_VERSION
ENV
}

down() { stop_pid opensearch; rm -f "$DELENDA_STATE/env.d/opensearch.env"; }

status() {
  if pid_alive opensearch; then echo "opensearch: running (pid $(cat "$DELENDA_STATE/pids/opensearch.pid"))"; else echo "opensearch: stopped"; fi
}

"${1:?usage: opensearch.sh build|up|down|status}"
