#!/bin/bash
# run-k8s-tests.sh - tests against a real Kubernetes API server: the manifests of
# deploy/ with `kubectl apply --dry-run=server` (and the examples), the
# rescheduler (-mode=webhooks) and the node checks of
# -mode=force-convert-raw-namespaces (test_k8s.py), and the conversion in the
# guest with the node patch against this API server (test/vm/run-convert.sh).
#
# usage: test/k8s/run-k8s-tests.sh BUILDDIR
# Environment: KUBE_APISERVER - a kube-apiserver binary (not in Debian; scripts/test.sh
# sets it to the one unpacked from ../shared/tools), ETCD (default: etcd on PATH,
# Debian's etcd-server, installed here when missing), kubectl on PATH.
# SKIP_VM=1 leaves out the conversion in the guest.
# Without a tool, its tests are skipped, or failed when CI=true.
# Ends with "N passed, N failed[, N skipped]".
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(realpath "${1:-$REPO/build}")
TESTS=("manifests and examples accepted by a real API server (kubectl apply --dry-run=server)"
       "webhooks mode and node checks against a real API server"
       "deploy/ applied over intel/pmem-csi 1.1's objects (test_compat.py)"
       "raw namespace conversion in the guest, node patched through a real API server"
       "scheduler extender and pod webhook with kube-scheduler (test_extender.py)")
# Nothing can run without these: every test is skipped, or failed in CI.
why=
if [ -z "${KUBE_APISERVER:-}" ]; then
    why="KUBE_APISERVER is not set: scripts/test.sh takes it from ../shared/tools"
elif [ ! -x "$KUBE_APISERVER" ]; then
    why="KUBE_APISERVER=$KUBE_APISERVER is not an executable"
elif ! command -v kubectl >/dev/null; then
    why="kubectl is not installed (not usable from Debian 12, see DEVELOPERS.md)"
else
    if [ -z "${ETCD:-}" ] && ! command -v etcd >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get install -y -qq --no-install-recommends etcd-server >/dev/null 2>&1
    fi
    [ -n "${ETCD:-}" ] || command -v etcd >/dev/null || why="no etcd (apt-get install etcd-server)"
fi
if [ -n "$why" ]; then
    if [ "${CI:-}" = true ]; then
        for t in "${TESTS[@]}"; do echo "FAIL - $t ($why; CI=true: a missing tool is a failure)"; done
        echo "0 passed, ${#TESTS[@]} failed"; exit 1
    fi
    for t in "${TESTS[@]}"; do echo "SKIP - $t ($why)"; done
    echo "0 passed, 0 failed, ${#TESTS[@]} skipped"
    exit 0
fi
KDIR=$(mktemp -d /tmp/pmem-csi-apiserver.XXXXXX)
trap 'bash "$REPO/test/k8s/apiserver.sh" stop "$KDIR"' EXIT
if ! bash "$REPO/test/k8s/apiserver.sh" start "$KDIR"; then
    echo "FAIL - start kube-apiserver ($KUBE_APISERVER)"; echo "0 passed, 1 failed"; exit 1
fi
export KUBECONFIG=$KDIR/kubeconfig
echo "# kube-apiserver $("$KUBE_APISERVER" --version 2>/dev/null | awk '{print $2}') at $(grep -m1 server: "$KUBECONFIG" | awk '{print $2}')"
# No controller manager here: the service account the example pods use must be made by hand.
kubectl create serviceaccount default -n default >/dev/null 2>&1 || true
P=0; F=0
add() { local l; l=$(grep -aE '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
    [ -n "$l" ] || { echo "FAIL - $2 (no summary)"; F=$((F+1)); return; }
    P=$((P + ${l%% passed*})); l=${l#*, }; F=$((F + ${l%% failed*})); }
out=$(mktemp)
bash "$REPO/test/deploy/check-manifests.sh" 2>&1 | grep -E 'dry-run|^[0-9]+ passed' | tee "$out" | grep -v '^[0-9]' 
# check-manifests counts its cluster-free checks too: count only the dry-runs here.
P=$((P + $(grep -c '^ok - .*dry-run' "$out"))); F=$((F + $(grep -c '^FAIL - .*dry-run' "$out")))
if ! grep -q '^ok - .*dry-run' "$out"; then
    echo "FAIL - ${TESTS[0]} (check-manifests.sh ran no dry-run)"; F=$((F + 1))
fi
/usr/bin/python3 "$REPO/test/k8s/test_k8s.py" "$BUILD" "$KDIR" | tee "$out"
add "$out" "test_k8s.py"
/usr/bin/python3 "$REPO/test/k8s/test_compat.py" "$BUILD" "$KDIR" | tee "$out"
add "$out" "test_compat.py"
/usr/bin/python3 "$REPO/test/k8s/test_operator.py" "$BUILD" "$KDIR" | tee "$out"; add "$out" "test_operator.py"
/usr/bin/python3 "$REPO/test/k8s/test_extender.py" "$BUILD" "$KDIR" | tee "$out"; add "$out" "test_extender.py"
S=0
if [ "${SKIP_VM:-0}" = 1 ]; then
    echo "SKIP - ${TESTS[3]} (SKIP_VM=1)"; S=1
else
    bash "$REPO/test/vm/run-convert.sh" "$BUILD" "$KDIR/kubeconfig-guest" | tee "$out"
    add "$out" "conversion in the guest"
fi
rm -f "$out"
echo "$P passed, $F failed, $S skipped"
[ $F = 0 ]
