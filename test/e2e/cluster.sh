#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# test/e2e/cluster.sh - a one-node Kubernetes cluster for the e2e suite, from a fresh
# Debian 12 machine (root), without a registry or internet access to images:
#   control plane on the host: etcd (Debian) and kube-apiserver (test/k8s/apiserver.sh),
#     kube-controller-manager (garbage collector, DaemonSets, Deployments, PVs) and
#     kube-scheduler, v1.32.13 from the test peers (../shared/tools, see DEVELOPERS.md);
#   the node: containerd + kubelet inside a QEMU guest with emulated NVDIMMs
#     (test/vm/vm-run.sh --net; test/e2e/node.sh runs in it), images imported with
#     `ctr images import`: the driver image of image/build.sh (driver and operator),
#     the sidecars made from the peers' binaries, pause/busybox/socat made from Debian's
#     binaries (test/e2e/images.py).
#
# usage: test/e2e/cluster.sh up [DIR]      bring it up, print KUBECONFIG=DIR/kubeconfig
#        test/e2e/cluster.sh down [DIR]    stop everything that `up` started
#        test/e2e/cluster.sh run [DIR] -- CMD [ARGS...]
#                                          up, CMD with KUBECONFIG set, down (also on
#                                          failure or a signal); exit status of CMD
# DIR (default build-e2e in the repository) gets the certificates, kubeconfigs, images,
# PIDs and every log (apiserver, controller manager, scheduler, VM, containerd, kubelet).
#
# Environment:
#   KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER, KUBELET, CSI_PROVISIONER,
#   CSI_NODE_DRIVER_REGISTRAR   binaries (default: PMEM_CSI_TOOLS_CACHE, ~/.cache/pmem-csi-tools)
#   E2E_DRIVER_IMAGE   OCI archive of the driver image (default: image/build.sh build-image)
#   E2E_NODE_MEM (3G), E2E_NODE_SMP (2), E2E_NVDIMM (4G)   the guest
#   E2E_NODE_TIMEOUT   seconds for the node to become Ready (default 900)
#   E2E_VM_TIMEOUT     the guest's lifetime in seconds (default 5400; `down` ends it sooner)
#
# The node is registered as "localhost": the API server reaches a kubelet (for logs,
# exec) at the node's Hostname address first, and "localhost" on the host is the QEMU
# port forward to the guest's kubelet (the guest's own address, 10.0.2.15, is not
# reachable from the host through QEMU's user network).
#
# Parsed as a whole before it runs (the braces), so that editing this file while a
# cluster is up (the `run` of scripts/test.sh takes many minutes) cannot derail it.
{
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cmd=${1:-}
shift || true
DIR=$REPO/build-e2e
if [ $# -gt 0 ] && [ "$1" != -- ]; then DIR=$1; shift; fi
[ "${1:-}" = -- ] && shift
case $cmd in up | down | run) ;; *) sed -n '2,/^set -/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2 ;; esac
mkdir -p "$DIR"
DIR=$(realpath "$DIR")
NODE_NAME=localhost
log() { echo "cluster: $(date -u +%H:%M:%S) $*" >&2; }
die() { log "error: $*"; exit 1; }

stop_pid() { # stop_pid FILE: TERM, wait up to 10 s, KILL
    [ -f "$1" ] || return 0
    local pid
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$1"
}

down() {
    if [ -f "$DIR/vm.pid" ]; then
        # The guest stops kubelet and containerd and powers off; QEMU is killed after 60 s.
        touch "$DIR/node/stop" 2>/dev/null || true
        pid=$(cat "$DIR/vm.pid")
        for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        stop_pid "$DIR/vm.pid"
    fi
    stop_pid "$DIR/scheduler.pid"
    stop_pid "$DIR/controller-manager.pid"
    [ -d "$DIR/k8s" ] && KUBE_APISERVER=${KUBE_APISERVER:-none} bash "$REPO/test/k8s/apiserver.sh" stop "$DIR/k8s"
    # The images and logs stay for a look afterwards; the cluster's state goes.
    rm -rf "$DIR/k8s/etcd-data" "$DIR/node/stop"
    log "down"
}
if [ "$cmd" = down ]; then down; exit 0; fi

# --- what it needs ---------------------------------------------------------------
need=()
for p in containerd runc containernetworking-plugins iptables catatonit socat busybox-static; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
TOOLS=${PMEM_CSI_TOOLS_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/pmem-csi-tools}
for v in KUBE_APISERVER:kube-apiserver KUBE_CONTROLLER_MANAGER:kube-controller-manager KUBE_SCHEDULER:kube-scheduler \
    KUBELET:kubelet CSI_PROVISIONER:csi-provisioner CSI_NODE_DRIVER_REGISTRAR:csi-node-driver-registrar; do
    var=${v%%:*}
    [ -n "${!var:-}" ] || export "$var=$TOOLS/${v#*:}"
    [ -x "${!var}" ] || die "$var=${!var} is not executable (bash ../shared/tools/unpack.sh, see DEVELOPERS.md)"
done
command -v kubectl >/dev/null || die "kubectl is not installed (see DEVELOPERS.md)"

if [ "$cmd" = run ]; then
    [ $# -gt 0 ] || die "run: no command"
    trap 'down' EXIT
    trap 'exit 130' INT TERM
fi
down >/dev/null 2>&1 || true
T0=$(date +%s)

# --- images ----------------------------------------------------------------------
mkdir -p "$DIR/node/images"
rm -f "$DIR"/node/{node-up,node-failed,stop}
IMAGE=${E2E_DRIVER_IMAGE:-}
if [ -z "$IMAGE" ]; then
    log "building the driver image (image/build.sh build-image)"
    bash "$REPO/image/build.sh" build-image build-image/pmem-csi-driver.oci.tar >"$DIR/image-build.log" 2>&1 ||
        { tail -20 "$DIR/image-build.log" >&2; die "image/build.sh failed (see $DIR/image-build.log)"; }
    IMAGE=$REPO/build-image/pmem-csi-driver.oci.tar
fi
cp "$IMAGE" "$DIR/node/images/pmem-csi-driver.tar"
/usr/bin/python3 "$REPO/test/e2e/images.py" "$DIR/node/images" "$(dirname "$CSI_PROVISIONER")" >/dev/null ||
    die "images.py failed"
if [ "$(dirname "$CSI_PROVISIONER")" != "$(dirname "$CSI_NODE_DRIVER_REGISTRAR")" ]; then
    die "CSI_PROVISIONER and CSI_NODE_DRIVER_REGISTRAR must be in one folder (images.py takes both from it)"
fi
log "images ready ($(( $(date +%s) - T0 )) s)"

# --- control plane -----------------------------------------------------------------
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
bash "$REPO/test/k8s/apiserver.sh" start "$DIR/k8s" || die "kube-apiserver did not start (see $DIR/k8s/apiserver.log)"
K=$DIR/k8s
APORT=$(sed -n 's|.*server: https://127.0.0.1:\([0-9]*\).*|\1|p' "$K/kubeconfig")
cp "$K/kubeconfig" "$DIR/kubeconfig"
export KUBECONFIG=$DIR/kubeconfig
"$KUBE_CONTROLLER_MANAGER" --kubeconfig="$K/kubeconfig" --authentication-kubeconfig="$K/kubeconfig" \
    --authorization-kubeconfig="$K/kubeconfig" --service-account-private-key-file="$K/sa.key" \
    --root-ca-file="$K/ca.crt" --leader-elect=false --secure-port=0 --use-service-account-credentials=false \
    --controllers='*' >"$DIR/controller-manager.log" 2>&1 &
echo $! >"$DIR/controller-manager.pid"
"$KUBE_SCHEDULER" --kubeconfig="$K/kubeconfig" --authentication-kubeconfig="$K/kubeconfig" \
    --authorization-kubeconfig="$K/kubeconfig" --leader-elect=false --secure-port=0 \
    >"$DIR/scheduler.log" 2>&1 &
echo $! >"$DIR/scheduler.pid"

# kubelet's client certificate: the Node authorizer's identity of this node.
(
    cd "$K"
    umask 077
    openssl req -new -newkey rsa:2048 -nodes -keyout kubelet.key -subj "/O=system:nodes/CN=system:node:$NODE_NAME" \
        -out kubelet.csr 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' >kubelet.ext
    openssl x509 -req -in kubelet.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -sha256 \
        -extfile kubelet.ext -out kubelet.crt 2>/dev/null
    rm -f kubelet.csr kubelet.ext
)
cat >"$DIR/node/kubelet.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://10.0.2.2:$APORT
    certificate-authority-data: $(base64 -w0 <"$K/ca.crt")
users:
- name: kubelet
  user:
    client-certificate-data: $(base64 -w0 <"$K/kubelet.crt")
    client-key-data: $(base64 -w0 <"$K/kubelet.key")
contexts:
- name: kubelet@e2e
  context: {cluster: e2e, user: kubelet}
current-context: kubelet@e2e
KC
KPORT=$(free_port)
cat >"$DIR/node/node.env" <<EOF
NODE_NAME=$NODE_NAME
KUBELET_PORT=$KPORT
APISERVER_PORT=$APORT
KUBELET=$KUBELET
EOF

# --- the node ---------------------------------------------------------------------
log "booting the node (QEMU, ${E2E_NVDIMM:-4G} NVDIMM, ${E2E_NODE_MEM:-3G} RAM, kubelet port $KPORT)"
setsid bash "$REPO/test/vm/vm-run.sh" --nvdimm "${E2E_NVDIMM:-4G}" --mem "${E2E_NODE_MEM:-3G}" \
    --smp "${E2E_NODE_SMP:-2}" --net --hostfwd "$KPORT" --rwdir "$DIR/node" \
    --timeout "${E2E_VM_TIMEOUT:-5400}" -- bash "$REPO/test/e2e/node.sh" "$DIR/node" \
    >"$DIR/vm.log" 2>&1 </dev/null &
echo $! >"$DIR/vm.pid"

# Namespaces get their default ServiceAccount from the controller manager.
for _ in $(seq 120); do kubectl get serviceaccount default -n default >/dev/null 2>&1 && break; sleep 1; done
kubectl get serviceaccount default -n default >/dev/null 2>&1 ||
    die "kube-controller-manager made no default ServiceAccount (see $DIR/controller-manager.log)"

deadline=$(( $(date +%s) + ${E2E_NODE_TIMEOUT:-900} ))
while :; do
    if kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null |
        grep -qx True; then
        break
    fi
    [ -f "$DIR/node/node-failed" ] && die "the node failed: $(cat "$DIR/node/node-failed") (logs in $DIR/node)"
    kill -0 "$(cat "$DIR/vm.pid")" 2>/dev/null || { tail -20 "$DIR/vm.log" >&2; die "the guest exited"; }
    [ "$(date +%s)" -lt "$deadline" ] || {
        tail -5 "$DIR/node/kubelet.log" >&2 2>/dev/null || true
        die "node $NODE_NAME not Ready after ${E2E_NODE_TIMEOUT:-900} s (logs in $DIR/node)"
    }
    sleep 3
done
log "node $NODE_NAME Ready, $(( $(date +%s) - T0 )) s after start"
echo "KUBECONFIG=$DIR/kubeconfig"

if [ "$cmd" = run ]; then
    rc=0
    "$@" || rc=$?
    exit $rc
fi
exit 0
}
