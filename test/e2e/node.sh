#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# test/e2e/node.sh DIR - the Kubernetes node of the e2e cluster, run INSIDE the QEMU
# guest by test/e2e/cluster.sh (vm-run.sh --net --rwdir DIR): containerd and kubelet
# with the guest's emulated NVDIMMs. DIR (shared read-write with the host) holds what
# cluster.sh prepared: node.env, kubelet.kubeconfig, images/*.tar, local-images.txt.
# The guest writes its logs and DIR/node-up there and runs until DIR/stop appears.
#
# Everything it changes is inside the throw-away guest (root = tmpfs overlay).
set -uo pipefail
DIR=$1
# shellcheck source=/dev/null
. "$DIR/node.env" # NODE_NAME KUBELET_PORT APISERVER_PORT KUBELET
say() { echo "node: $(cut -d' ' -f1 /proc/uptime)s $*"; }
die() { say "error: $*"; echo "$*" >"$DIR/node-failed"; exit 1; }

# --- kernel and mounts ---------------------------------------------------------------
for m in overlay br_netfilter bridge veth nf_conntrack nf_nat iptable_nat iptable_filter xt_nat xt_conntrack \
    xt_MASQUERADE xt_addrtype xt_comment xt_mark nft_chain_nat nft_compat; do
    modprobe "$m" 2>/dev/null || true
done
sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || die "cgroup2"
# The controllers kubelet and runc need, for the cgroups below the root.
for c in cpuset cpu io memory hugetlb pids; do
    echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
done
# Bidirectional mount propagation (the driver's mounts reach kubelet and the pods).
mount --make-rshared /
# containerd's overlay snapshots cannot live on the overlay root: tmpfs for them;
# kubelet's directory and the driver's state on tmpfs as on a real node's disk.
for d in /var/lib/containerd /var/lib/kubelet /var/log/pods /var/lib/pmem-csi.intel.com; do
    mkdir -p "$d" && mount -t tmpfs -o mode=0755 "e2e-${d//\//-}" "$d" || die "tmpfs on $d"
done
mkdir -p /etc/containerd /etc/cni/net.d /run/containerd /var/lib/kubelet/pki

# The NVDIMMs start with an empty label area: give them an index (as a new DIMM gets).
ndctl disable-region all >/dev/null && ndctl init-labels -f all >/dev/null && ndctl enable-region all >/dev/null \
    || die "ndctl init-labels"

# --- network: pods reach the API server as https://10.0.0.1 (the kubernetes Service,
# no kube-proxy): DNAT to the host's API server (10.0.2.2 through QEMU's user network).
for chain in PREROUTING OUTPUT; do
    iptables -t nat -A "$chain" -d 10.0.0.1/32 -p tcp --dport 443 -j DNAT --to-destination "10.0.2.2:$APISERVER_PORT" \
        || die "iptables DNAT ($chain)"
done
cat >/etc/cni/net.d/10-e2e.conflist <<'EOF'
{
  "cniVersion": "1.0.0",
  "name": "e2e",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

# --- containerd --------------------------------------------------------------------
# restrict_oom_score_adj: kubelet gives pods OOM scores below containerd's own.
cat >/etc/containerd/config.toml <<'EOF'
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:e2e"
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
EOF
say "starting containerd"
containerd --config /etc/containerd/config.toml >"$DIR/containerd.log" 2>&1 &
echo $! >/run/containerd.pid
for _ in $(seq 120); do ctr version >/dev/null 2>&1 && break; sleep 0.5; done
ctr version >/dev/null 2>&1 || die "containerd did not start (see containerd.log)"

say "importing images"
for t in "$DIR"/images/*.tar; do
    ctr -n k8s.io images import "$t" >/dev/null 2>>"$DIR/import.log" || die "ctr import $t"
done
# Extra names (those deploy/ references) for the same images.
while read -r arch name; do
    [ -n "$name" ] || continue
    first=$(awk -v a="$arch" '$1 == a { print $2; exit }' "$DIR/images/local-images.txt")
    [ "$first" = "$name" ] || ctr -n k8s.io images tag --force "$first" "$name" >/dev/null || die "ctr tag $name"
done <"$DIR/images/local-images.txt"
ctr -n k8s.io images ls -q >"$DIR/images.list"

# --- kubelet -----------------------------------------------------------------------
# Anonymous access with AlwaysAllow: the test API server (test/k8s/apiserver.sh)
# calls kubelet (logs, exec) without a client certificate; nothing but the host's
# loopback reaches this port (QEMU hostfwd).
cat >/var/lib/kubelet/config.yaml <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
port: $KUBELET_PORT
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
failSwapOn: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "0%", nodefs.available: "0%", imagefs.available: "0%", nodefs.inodesFree: "0%"}
nodeStatusUpdateFrequency: 10s
syncFrequency: 10s
EOF
[ -s /etc/resolv.conf ] || echo "nameserver 10.0.2.3" >/etc/resolv.conf
say "starting kubelet as $NODE_NAME"
"$KUBELET" --config=/var/lib/kubelet/config.yaml --kubeconfig="$DIR/kubelet.kubeconfig" \
    --hostname-override="$NODE_NAME" --node-ip=10.0.2.15 --node-labels=storage=pmem \
    --v="${KUBELET_V:-1}" >"$DIR/kubelet.log" 2>&1 &
echo $! >/run/kubelet.pid
touch "$DIR/node-up"

# --- until the host says stop --------------------------------------------------------
while [ ! -e "$DIR/stop" ]; do
    kill -0 "$(cat /run/kubelet.pid)" 2>/dev/null || die "kubelet exited (see kubelet.log)"
    kill -0 "$(cat /run/containerd.pid)" 2>/dev/null || die "containerd exited (see containerd.log)"
    sleep 1
done
say "stopping"
kill "$(cat /run/kubelet.pid)" 2>/dev/null
for _ in $(seq 20); do kill -0 "$(cat /run/kubelet.pid)" 2>/dev/null || break; sleep 0.5; done
kill "$(cat /run/containerd.pid)" 2>/dev/null
sleep 1
exit 0
