#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# test/deploy/check-manifests.sh - checks of deploy/ that need no cluster:
#   - deploy/generate.sh --check (the generated manifests match the overlays);
#   - every kustomize overlay and example overlay builds;
#   - every YAML file parses, and the content checks of check_manifests.py
#     (objects, arguments, mounts, probes, RBAC, examples, scrape config), with
#     /usr/bin/python3 and python3-yaml (reported as skipped without them);
#   - deploy/monitoring (check_monitoring.py: the dashboard's JSON, the alert
#     rules, every metric name in them, promtool check rules);
# and, when KUBECONFIG is set, `kubectl apply --dry-run=server` of the
# generated manifests and the examples against that cluster (scripts/test.sh
# runs them in test/k8s/run-k8s-tests.sh against its own API server, and sets
# CHECK_MANIFESTS_DRY_RUN=elsewhere here so that they are not reported twice).
# Prints "ok - ..." / "FAIL - ..." / "SKIP - ..." lines and ends with
# "N passed, N failed, N skipped"; exit status 1 if anything failed.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO" || exit 1
PASSED=0; FAILED=0; SKIPPED=0
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

result() { # result ok|fail|skip NAME [why]
    case $1 in
        ok) PASSED=$((PASSED + 1)); echo "ok - $2" ;;
        fail) FAILED=$((FAILED + 1)); echo "FAIL - $2${3:+ ($3)}" ;;
        skip) SKIPPED=$((SKIPPED + 1)); echo "SKIP - $2${3:+ ($3)}" ;;
    esac
}
run() { # run NAME cmd...: pass/fail by exit status, show the output's tail on failure
    local name=$1; shift
    if "$@" >"$TMP/out" 2>&1; then
        result ok "$name"
    else
        result fail "$name"
        tail -30 "$TMP/out" | sed 's/^/    /'
    fi
}

if ! command -v kubectl >/dev/null; then
    result fail "kubectl is installed (needed for kubectl kustomize)"
    echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
    exit 1
fi

# 1. Generated manifests up to date, overlays build.
run "deploy/generate.sh --check: deploy/generated matches deploy/kustomize" bash deploy/generate.sh --check
for o in lvm direct lvm-testing direct-testing examples/kubelet-dir examples/node-selector examples/single-node-resizer; do
    run "kubectl kustomize deploy/kustomize/$o" kubectl kustomize "deploy/kustomize/$o"
done
if kubectl kustomize deploy/kustomize/examples/kubelet-dir 2>/dev/null | grep -q /var/lib/kubelet; then
    result fail "examples/kubelet-dir replaces every /var/lib/kubelet path"
else
    result ok "examples/kubelet-dir replaces every /var/lib/kubelet path"
fi
# The scheduler extender component (deploy/kustomize/components/scheduler), applied to LVM.
run "kubectl kustomize deploy/kustomize/examples/scheduler" kubectl kustomize deploy/kustomize/examples/scheduler
# Cache volumes across nodes (deploy/kustomize/components/cache-volumes), applied to LVM.
run "kubectl kustomize deploy/kustomize/examples/cache-volumes" kubectl kustomize deploy/kustomize/examples/cache-volumes

# 2. YAML and content checks (python3-yaml).
PY=/usr/bin/python3
if [ -x $PY ] && $PY -c 'import yaml' 2>/dev/null; then
    driver=()
    for b in build/pmem-csi-driver build-image/pmem-csi-driver; do
        [ -x "$b" ] && { driver=("$REPO/$b"); break; }
    done
    $PY test/deploy/check_manifests.py "$REPO" "${driver[@]}" >"$TMP/py" 2>&1
    rc=$?
    cat "$TMP/py"
    PASSED=$((PASSED + $(grep -c '^ok - ' "$TMP/py")))
    FAILED=$((FAILED + $(grep -c '^FAIL - ' "$TMP/py")))
    SKIPPED=$((SKIPPED + $(grep -c '^SKIP - ' "$TMP/py")))
    if [ $rc != 0 ]; then
        result fail "check_manifests.py ran to the end" "status $rc"
    fi
    # deploy/monitoring: dashboard and alert rules (JSON, YAML, metric names, promtool).
    $PY test/deploy/check_monitoring.py >"$TMP/mon" 2>&1
    rc=$?
    cat "$TMP/mon"
    PASSED=$((PASSED + $(grep -c '^ok - ' "$TMP/mon")))
    FAILED=$((FAILED + $(grep -c '^FAIL - ' "$TMP/mon")))
    SKIPPED=$((SKIPPED + $(grep -c '^SKIP - ' "$TMP/mon")))
    if [ $rc != 0 ] && ! grep -q '^FAIL - ' "$TMP/mon"; then
        result fail "check_monitoring.py ran to the end" "status $rc"
    fi
    # The OLM bundle (deploy/olm): generated from deploy/operator and deploy/crd.
    $PY test/deploy/check_olm.py "$REPO" >"$TMP/olm" 2>&1
    cat "$TMP/olm"
    PASSED=$((PASSED + $(grep -c '^ok - ' "$TMP/olm")))
    FAILED=$((FAILED + $(grep -c '^FAIL - ' "$TMP/olm")))
else
    result skip "YAML parsing and content checks" "needs $PY with python3-yaml (apt-get install python3-yaml)"
fi

# 3. Server-side dry run against a real cluster.
if [ -n "${KUBECONFIG:-}" ]; then
    # Without the namespace, namespaced objects cannot be dry-run: such errors
    # are expected then and ignored.
    ns_exists=1
    kubectl get namespace pmem-csi >/dev/null 2>&1 || ns_exists=0
    # The opt-in resizer (not in deploy/generated): its example overlay.
    kubectl kustomize deploy/kustomize/examples/single-node-resizer >"$TMP/single-node-resizer.yaml" 2>/dev/null
    for f in deploy/generated/*.yaml deploy/examples/*.yaml "$TMP/single-node-resizer.yaml"; do
        out=$(kubectl apply --dry-run=server -f "$f" 2>&1)
        rc=$?
        errors=$(grep -iE 'error|invalid|forbidden' <<<"$out" | grep -v 'namespaces "pmem-csi" not found' || true)
        shown=$f
        case $f in "$TMP"/*) shown="<(kubectl kustomize deploy/kustomize/examples/$(basename "$f" .yaml))" ;; esac
        if [ $rc = 0 ] || { [ $ns_exists = 0 ] && [ -z "$errors" ]; }; then
            result ok "kubectl apply --dry-run=server -f $shown"
        else
            result fail "kubectl apply --dry-run=server -f $shown"
            echo "$out" | tail -20 | sed 's/^/    /'
        fi
    done
elif [ "${CHECK_MANIFESTS_DRY_RUN:-}" != elsewhere ]; then
    result skip "kubectl apply --dry-run=server of deploy/generated and deploy/examples" "KUBECONFIG is not set"
fi

echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
[ $FAILED = 0 ]
