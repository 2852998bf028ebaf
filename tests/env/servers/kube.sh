#!/usr/bin/env bash
# etcd and kube-apiserver, built from their Go modules, with RBAC, service
# account keys and an admin kubeconfig that logs in with a client certificate.
# Usage: kube.sh build|up|down|status
source "$(dirname "$0")/../lib.sh"

ETCD_BIN=$BIN_CACHE/etcd-$ETCD_VERSION
APISERVER_BIN=$BIN_CACHE/kube-apiserver-$KUBE_VERSION
DIR=$DELENDA_STATE/kube
PKI=$DIR/pki

build() {
  go_build_wrapped etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 "$ETCD_BIN" \
    "-X go.etcd.io/etcd/api/v3/version.GitSHA=v$ETCD_VERSION"

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
  go_build_wrapped kube-apiserver k8s.io/kubernetes "$KUBE_VERSION" k8s.io/kubernetes/cmd/kube-apiserver "$APISERVER_BIN" "$ld" "$replaces"
}

pki() {
  [ -f "$PKI/admin.crt" ] && return 0
  mkdir -p "$PKI"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=delenda-test-ca" \
      -keyout ca.key -out ca.crt 2>/dev/null
    # Serving certificate for 127.0.0.1 and localhost.
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout serving.key -out serving.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >serving.ext
    openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile serving.ext -out serving.crt 2>/dev/null
    # Admin client: system:masters is bound to cluster-admin.
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=delenda-admin" -keyout admin.key -out admin.csr 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile admin.ext -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

kubeconfig() {
  cat >"$DIR/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: delenda-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: delenda-admin
  user:
    client-certificate: $PKI/admin.crt
    client-key: $PKI/admin.key
contexts:
- name: delenda-test
  context: {cluster: delenda-test, user: delenda-admin, namespace: default}
current-context: delenda-test
KC
}

ready() { curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
  "https://127.0.0.1:$APISERVER_PORT/readyz" | grep -q ok; }

up() {
  build
  mkdir -p "$DIR"
  pki
  kubeconfig
  if ! pid_alive etcd; then
    port_free "$ETCD_PORT" etcd; port_free "$ETCD_PEER_PORT" "etcd peers"
    start_bg etcd "$ETCD_BIN" --name delenda-test --data-dir "$DIR/etcd" \
      --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
      --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
      --initial-cluster "delenda-test=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --quota-backend-bytes 2147483648
    wait_for etcd 60 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
    log "etcd $ETCD_VERSION on 127.0.0.1:$ETCD_PORT"
  fi
  if ! pid_alive kube-apiserver; then
    port_free "$APISERVER_PORT" kube-apiserver
    # The ServiceAccount admission plugin stays on: pods of the test node
    # (node.sh) get their token. No endpoint reconciler: from 1.37 on it
    # refuses 127.0.0.1 ("cannot use public IP 127.0.0.1 with endpoint
    # reconciler"), and nothing here routes the kubernetes Service anyway.
    # The API server logs in to the kubelet with the admin certificate, at
    # its address (the node's name resolves nowhere).
    start_bg kube-apiserver "$APISERVER_BIN" \
      --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
      --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
      --cert-dir "$DIR/certs" --tls-cert-file "$PKI/serving.crt" --tls-private-key-file "$PKI/serving.key" \
      --client-ca-file "$PKI/ca.crt" \
      --service-cluster-ip-range 10.0.0.0/24 \
      --authorization-mode RBAC \
      --service-account-issuer https://kubernetes.default.svc \
      --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
      --allow-privileged=true \
      --endpoint-reconciler-type none \
      --kubelet-client-certificate "$PKI/admin.crt" --kubelet-client-key "$PKI/admin.key" \
      --kubelet-preferred-address-types InternalIP,Hostname
    wait_for kube-apiserver 120 ready
    log "kube-apiserver $KUBE_VERSION on https://127.0.0.1:$APISERVER_PORT"
  fi
  # The default namespace exists at once; wait for it so tests can use it.
  wait_for "default namespace" 60 kubectl --kubeconfig "$DIR/kubeconfig" get namespace default
  write_env kube <<ENV
KUBECONFIG=$DIR/kubeconfig
DELENDA_TEST_KUBE_VERSION=$KUBE_VERSION
ENV
}

down() { stop_pid kube-apiserver; stop_pid etcd; rm -f "$DELENDA_STATE/env.d/kube.env"; }

status() {
  for p in etcd kube-apiserver; do
    if pid_alive $p; then echo "$p: running (pid $(cat "$DELENDA_STATE/pids/$p.pid"))"; else echo "$p: stopped"; fi
  done
}

"${1:?usage: kube.sh build|up|down|status}"
