#!/usr/bin/env bash
# versitygw (Apache-2.0), an S3-compatible gateway, built from its Go module
# and run with the posix backend: buckets are directories under the data dir,
# object versions live in a separate versioning directory, metadata in xattrs.
# Versioning is available on every bucket (PUT ?versioning); object lock needs
# no flag, it is enabled per bucket at creation
# (x-amz-bucket-object-lock-enabled: true).
# Usage: s3.sh build|up|down|status
source "$(dirname "$0")/../lib.sh"

VGW_BIN=$BIN_CACHE/versitygw-$VERSITYGW_VERSION
DIR=$DELENDA_STATE/s3
ACCESS_KEY=delenda-test

build() {
  # Version, Build and BuildTime are variables of package main (set by its Makefile).
  go_build_wrapped versitygw github.com/versity/versitygw "$VERSITYGW_VERSION" \
    github.com/versity/versitygw/cmd/versitygw "$VGW_BIN" \
    "-X main.Version=v$VERSITYGW_VERSION -X main.Build=v$VERSITYGW_VERSION -X main.BuildTime=1970-01-01T00:00:00Z"
}

# The root secret is made once per state dir and kept there.
secret() {
  [ -s "$DIR/secret" ] || { (umask 077; openssl rand -hex 20 >"$DIR/secret"); }
  cat "$DIR/secret"
}

ready() { pid_alive versitygw && curl -sf "http://127.0.0.1:$S3_PORT/health"; }

up() {
  build
  mkdir -p "$DIR/data" "$DIR/versions"
  local key; key=$(secret)
  if ! pid_alive versitygw; then
    port_free "$S3_PORT" versitygw
    # Credentials go through the environment, not argv, so `ps` does not show them.
    ROOT_ACCESS_KEY_ID=$ACCESS_KEY ROOT_SECRET_ACCESS_KEY=$key \
      start_bg versitygw "$VGW_BIN" --port "127.0.0.1:$S3_PORT" --region us-east-1 \
        --health /health --quiet \
        posix --versioning-dir "$DIR/versions" "$DIR/data"
    wait_for versitygw 60 ready
    log "versitygw $VERSITYGW_VERSION on http://127.0.0.1:$S3_PORT"
  fi
  write_env s3 <<ENV
S3_ENDPOINT=http://127.0.0.1:$S3_PORT
S3_ACCESS_KEY_ID=$ACCESS_KEY
S3_SECRET_ACCESS_KEY=$key
S3_REGION=us-east-1
DELENDA_TEST_S3_SERVER=versitygw-$VERSITYGW_VERSION
ENV
}

down() { stop_pid versitygw; rm -f "$DELENDA_STATE/env.d/s3.env"; }

status() {
  if pid_alive versitygw; then echo "versitygw: running (pid $(cat "$DELENDA_STATE/pids/versitygw.pid"))"; else echo "versitygw: stopped"; fi
}

"${1:?usage: s3.sh build|up|down|status}"
