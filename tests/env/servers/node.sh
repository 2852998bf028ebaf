#!/usr/bin/env bash
# A real node for the test cluster, so the chart installs and the operator
# runs as a pod: containerd, runc and the CNI plugins from Debian; kubelet,
# kube-controller-manager and kube-scheduler built from the same
# k8s.io/kubernetes version as the API server (kube.sh); a sandbox ("pause")
# image built here from tests/env/node/pause.c, and a busybox image from
# Debian's busybox-static for smoke pods. No registry is reachable: every
# image the node runs is imported into its containerd.
#
# containerd and the kubelet share a mount namespace of their own (the
# process `node-mounts` holds it): volume mounts of pods never show on the
# host and go when the node stops, and the kernel settings the kubelet
# insists on (vm.overcommit_memory=1, kernel.panic=10,
# kernel.panic_on_oops=1) are shown to it there instead of being written to
# the machine's.
# Needs kube.sh up first. Usage: node.sh build|up|down|status
source "$(dirname "$0")/../lib.sh"
source "$ENV_DIR/oci.sh"

KUBELET_BIN=$BIN_CACHE/kubelet-$KUBE_VERSION
CM_BIN=$BIN_CACHE/kube-controller-manager-$KUBE_VERSION
SCHED_BIN=$BIN_CACHE/kube-scheduler-$KUBE_VERSION
DIR=$DELENDA_STATE/node
KPKI=$DELENDA_STATE/kube/pki
PKI=$DIR/pki
NODE_NAME=${NODE_NAME:-delenda-node}
SOCK=$DIR/containerd/containerd.sock
BRIDGE=${NODE_BRIDGE:-delenda0}
POD_SUBNET=${NODE_POD_SUBNET:-10.244.0.0/24}
PAUSE_TAG=$(sha256sum "$ENV_DIR/node/pause.c" | cut -c1-12)
PAUSE_IMAGE=localhost/delenda-test/pause:$PAUSE_TAG
PAUSE_ARCHIVE=$OCI_CACHE/pause-$PAUSE_TAG.tar
# Ports on 127.0.0.1 (the kubelet's API on every address, for the API
# server's logs and exec); each can be overridden from the environment.
KUBELET_PORT=${KUBELET_PORT:-20250}
KUBELET_HEALTHZ_PORT=${KUBELET_HEALTHZ_PORT:-20248}
CONTROLLER_MANAGER_PORT=${CONTROLLER_MANAGER_PORT:-20257}
SCHEDULER_PORT=${SCHEDULER_PORT:-20259}

busybox_image() {
  local v; v=$(deb_versions busybox-static | cut -d= -f2)
  echo "localhost/delenda-test/busybox:${v//[^A-Za-z0-9_.-]/-}"
}

build() {
  command -v containerd >/dev/null && command -v runc >/dev/null && [ -x /usr/lib/cni/bridge ] \
    || apt_install containerd runc containernetworking-plugins
  need_buildah
  command -v cc >/dev/null && [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || apt_install gcc libc6-dev
  for n in kube-scheduler kube-controller-manager kubelet; do go_build_kube "$n" "$BIN_CACHE/$n-$KUBE_VERSION"; done
  if [ ! -f "$PAUSE_ARCHIVE" ]; then
    local t; t=$(mktemp -d)
    cc -static -Os -s -o "$t/pause" "$ENV_DIR/node/pause.c"
    image_from_tree "$PAUSE_IMAGE" "$t" "$PAUSE_ARCHIVE" --entrypoint '["/pause"]' --user 65535:65535
    rm -rf "$t"
    log "built the sandbox image $PAUSE_IMAGE"
  fi
  local busybox; busybox=$(busybox_image)
  local archive=$OCI_CACHE/${busybox##*/}.tar; archive=${archive/:/-}
  if [ ! -f "$archive" ]; then
    local t; t=$(mktemp -d)
    debs_into "$t/deb" busybox-static
    mkdir -p "$t/root/bin" "$t/root/tmp"; chmod 1777 "$t/root/tmp"
    cp "$t/deb/bin/busybox" "$t/root/bin/busybox"
    for a in sh echo sleep cat ls id wget; do ln -s busybox "$t/root/bin/$a"; done
    image_from_tree "$busybox" "$t/root" "$archive" --entrypoint '["/bin/busybox"]' --env PATH=/bin
    rm -rf "$t"
    log "built the smoke-test image $busybox"
  fi
}

# cert NAME SUBJECT [EXT]: a key and certificate signed by the test CA.
cert() {
  local name=$1 subj=$2 ext=${3:-extendedKeyUsage=clientAuth}
  [ -f "$PKI/$name.crt" ] && return 0
  openssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$PKI/$name.key" -out "$PKI/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$KPKI/ca.crt" -CAkey "$KPKI/ca.key" -CAcreateserial \
    -days 3650 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
}

# kubeconfig NAME: a kubeconfig that logs in with the certificate NAME.
kubeconfig() {
  cat >"$DIR/$1.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: delenda-test
  cluster: {server: "https://127.0.0.1:$APISERVER_PORT", certificate-authority: "$KPKI/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$PKI/$1.crt", client-key: "$PKI/$1.key"}
contexts:
- name: $1
  context: {cluster: delenda-test, user: $1}
current-context: $1
KC
}

admin() { kubectl --kubeconfig "$DELENDA_STATE/kube/kubeconfig" "$@"; }

# in_node_mounts CMD...: CMD in the node's mount namespace.
node_ns() { echo "--mount=/proc/$(cat "$DELENDA_STATE/pids/node-mounts.pid")/ns/mnt"; }
in_node_mounts() { nsenter "$(node_ns)" -- "$@"; }

configs() {
  mkdir -p "$PKI" "$DIR/containerd" "$DIR/cni/net.d" "$DIR/kubelet" "$DIR/sysctl" "$DIR/pod-logs"
  cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
  cert kubelet-serving "/CN=$NODE_NAME" "subjectAltName=DNS:$NODE_NAME,DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
  cert controller-manager "/CN=system:kube-controller-manager"
  cert scheduler "/CN=system:kube-scheduler"
  kubeconfig kubelet; kubeconfig controller-manager; kubeconfig scheduler
  cat >"$DIR/containerd/config.toml" <<TOML
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$DIR/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  enable_selinux = false
  # Without CAP_SYS_RESOURCE no process here may lower its OOM score (the
  # kubelet asks -997 for Guaranteed pods): keep to containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DIR/cni/net.d"
TOML
  # Pods that are not on the host network get an address on a bridge with no
  # gateway: they reach each other and nothing else (no forwarding, no NAT).
  # The operator's pods use the host network to reach the test servers on
  # 127.0.0.1 (docs/testing.md).
  cat >"$DIR/cni/net.d/10-delenda.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "delenda-test",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": false, "ipMasq": false,
     "ipam": {"type": "host-local", "subnet": "$POD_SUBNET", "dataDir": "$DIR/cni/ipam"}},
    {"type": "loopback"}
  ]
}
JSON
  cat >"$DIR/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 0.0.0.0
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $KPKI/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failCgroupV1: false
containerRuntimeEndpoint: unix://$SOCK
failSwapOn: false
podLogsDir: $DIR/pod-logs
# Images cannot be pulled again (no registry): never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 1%}
serializeImagePulls: false
YAML
  # The kubelet's kernel settings, as it wants to see them (see the top).
  local key want have
  for kv in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 \
    kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000; do
    key=${kv%=*}; want=${kv#*=}; have=$(cat "/proc/sys/$key")
    [ "$have" = "$want" ] || echo "$want" >"$DIR/sysctl/${key//\//.}"
  done
}

node_ready() {
  [ "$(admin get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# import_image REF ARCHIVE [again]: the OCI archive into the node's
# containerd (the kubelet's namespace k8s.io), once unless `again`.
import_image() {
  local ref=$1 archive=$2
  if [ "${3:-}" != again ]; then
    in_node_mounts ctr --address "$SOCK" -n k8s.io images ls -q "name==$ref" | grep -q . && return 0
  fi
  in_node_mounts ctr --address "$SOCK" -n k8s.io images import "$archive" >/dev/null
  local digest
  digest=$(in_node_mounts ctr --address "$SOCK" -n k8s.io images ls "name==$ref" | awk 'NR == 2 {print $3}')
  [ -n "$digest" ] || die "importing $archive into the node's containerd did not give $ref"
  # A pull names the image by its digest too; an import does not. Pods that
  # name the image by digest (image.digest in the chart) need that name.
  in_node_mounts ctr --address "$SOCK" -n k8s.io images tag --force "$ref" "${ref%:*}@$digest" >/dev/null
}

up() {
  build
  [ -f "$DELENDA_STATE/kube/kubeconfig" ] && admin get --raw /readyz >/dev/null 2>&1 \
    || die "the node needs the API server: run tests/env/up kube first"
  configs
  # Nodes are authorised by RBAC alone here (no Node authorizer): the
  # built-in role system:node, bound to the group of node certificates.
  admin create clusterrolebinding delenda-test-nodes --clusterrole system:node --group system:nodes \
    --dry-run=client -o yaml | admin apply --server-side --field-manager delenda-testenv -f - >/dev/null
  if ! pid_alive node-mounts; then
    local binds="" f
    for f in "$DIR"/sysctl/*; do
      [ -e "$f" ] || continue
      local key; key=$(basename "$f"); key=${key//./\/}
      binds="$binds mount --bind '$f' /proc/sys/$key &&"
    done
    start_bg node-mounts unshare --mount --propagation private -- sh -c "$binds exec sleep infinity"
    wait_for "the node's mount namespace" 10 test -e "/proc/$(cat "$DELENDA_STATE/pids/node-mounts.pid")/ns/mnt"
    sleep 0.5
  fi
  if ! pid_alive containerd; then
    start_bg containerd nsenter "$(node_ns)" -- containerd --config "$DIR/containerd/config.toml"
    wait_for containerd 60 in_node_mounts ctr --address "$SOCK" version
    log "containerd $(containerd --version | awk '{print $3}') at $SOCK"
  fi
  import_image "$PAUSE_IMAGE" "$PAUSE_ARCHIVE"
  local busybox; busybox=$(busybox_image)
  local archive=$OCI_CACHE/${busybox##*/}.tar; archive=${archive/:/-}
  import_image "$busybox" "$archive"
  if ! pid_alive kube-controller-manager; then
    port_free "$CONTROLLER_MANAGER_PORT" kube-controller-manager
    start_bg kube-controller-manager "$CM_BIN" --kubeconfig "$DIR/controller-manager.kubeconfig" \
      --authentication-kubeconfig "$DIR/controller-manager.kubeconfig" --authorization-kubeconfig "$DIR/controller-manager.kubeconfig" \
      --bind-address 127.0.0.1 --secure-port "$CONTROLLER_MANAGER_PORT" --cert-dir "$DIR/controller-manager-certs" \
      --leader-elect=false --use-service-account-credentials=true \
      --service-account-private-key-file "$KPKI/sa.key" --root-ca-file "$KPKI/ca.crt" \
      --cluster-signing-cert-file "$KPKI/ca.crt" --cluster-signing-key-file "$KPKI/ca.key"
    wait_for kube-controller-manager 120 curl -skf "https://127.0.0.1:$CONTROLLER_MANAGER_PORT/healthz"
    log "kube-controller-manager $KUBE_VERSION on 127.0.0.1:$CONTROLLER_MANAGER_PORT"
  fi
  if ! pid_alive kube-scheduler; then
    port_free "$SCHEDULER_PORT" kube-scheduler
    start_bg kube-scheduler "$SCHED_BIN" --kubeconfig "$DIR/scheduler.kubeconfig" \
      --authentication-kubeconfig "$DIR/scheduler.kubeconfig" --authorization-kubeconfig "$DIR/scheduler.kubeconfig" \
      --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --leader-elect=false
    wait_for kube-scheduler 120 curl -skf "https://127.0.0.1:$SCHEDULER_PORT/healthz"
    log "kube-scheduler $KUBE_VERSION on 127.0.0.1:$SCHEDULER_PORT"
  fi
  if ! pid_alive kubelet; then
    port_free "$KUBELET_PORT" kubelet
    start_bg kubelet nsenter "$(node_ns)" -- "$KUBELET_BIN" --config "$DIR/kubelet/config.yaml" \
      --kubeconfig "$DIR/kubelet.kubeconfig" --root-dir "$DIR/kubelet" --cert-dir "$DIR/kubelet/pki" \
      --hostname-override "$NODE_NAME"
  fi
  wait_for "node $NODE_NAME to be Ready (logs: $DELENDA_STATE/logs/kubelet.log)" 180 node_ready
  log "node $NODE_NAME Ready (kubelet $KUBE_VERSION, containerd, runc)"
  # hostPath volumes of test pods (they run as 65532, which may not enter
  # the checkout: it can sit under /root).
  mkdir -p "$RUN_DIR/node-data"; chmod 755 "$RUN_DIR/node-data"
  write_env node <<ENV
DELENDA_TEST_NODE=$NODE_NAME
DELENDA_TEST_NODE_DATA=$RUN_DIR/node-data
DELENDA_TEST_BUSYBOX_IMAGE=$busybox
DELENDA_TEST_NODE_DIR=$DIR
ENV
}

down() {
  stop_pid kubelet
  if pid_alive containerd; then
    # Every container of every pod, then containerd: their shims exit with them.
    local id
    for id in $(in_node_mounts ctr --address "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
      in_node_mounts ctr --address "$SOCK" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    sleep 1
    for id in $(in_node_mounts ctr --address "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
      in_node_mounts ctr --address "$SOCK" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1 || true
    done
  fi
  stop_pid containerd
  stop_pid kube-scheduler
  stop_pid kube-controller-manager
  stop_pid node-mounts
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link delete "$BRIDGE" && log "removed the bridge $BRIDGE"; fi
  rm -f "$DELENDA_STATE/env.d/node.env"
}

# import REF ARCHIVE: an image built elsewhere (image.sh) onto the node.
import() {
  pid_alive containerd || die "the node does not run: start it with tests/env/up node"
  import_image "$1" "$2" again
  log "imported $1 into the node's containerd"
}

status() {
  for p in node-mounts containerd kube-controller-manager kube-scheduler kubelet; do
    if pid_alive $p; then echo "$p: running (pid $(cat "$DELENDA_STATE/pids/$p.pid"))"; else echo "$p: stopped"; fi
  done
}

cmd=${1:?usage: node.sh build|up|down|status|import REF ARCHIVE}; shift
"$cmd" "$@"
