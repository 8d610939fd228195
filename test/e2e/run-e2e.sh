#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# test/e2e/run-e2e.sh - both end-to-end paths on the cluster of $KUBECONFIG, one after
# the other on the same node: e2e.py with the manifests of deploy/generated
# (E2E_VARIANT, default pmem-csi-lvm-testing), then e2e_operator.py (the operator of
# deploy/operator/ and a PmemCSIDeployment). Ends with the sum of both as
# "N passed, N failed[, N skipped]". scripts/test.sh runs it as
#   test/e2e/cluster.sh run -- test/e2e/run-e2e.sh
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
P=0; F=0; S=0; status=0
for t in e2e.py e2e_operator.py; do
    echo "== $t ($(date -u +%H:%M:%S))"
    t0=$(date +%s)
    out=$(mktemp)
    /usr/bin/python3 "$HERE/$t" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
    rm -f "$out"
    echo "== $t: ${line:-no summary line} (status $rc, $(( $(date +%s) - t0 )) s)"
    if [ -z "$line" ]; then F=$((F + 1)); status=1; continue; fi
    [ "$rc" = 0 ] || status=1
    P=$((P + ${line%% passed*})); f=${line#*, }; F=$((F + ${f%% failed*}))
    if [[ $line =~ ([0-9]+)\ skipped ]]; then S=$((S + BASH_REMATCH[1])); fi
done
[ "$status" = 0 ] || [ "$F" != 0 ] || F=1
echo "$P passed, $F failed$([ "$S" = 0 ] || echo ", $S skipped")"
[ "$F" = 0 ]
