#!/bin/bash
# run-convert.sh - -mode=force-convert-raw-namespaces in a guest whose only NVDIMM
# has no labels (so its namespace is raw, as on legacy NVDIMMs and memmap= PMEM).
#
# usage: test/vm/run-convert.sh BUILDDIR [KUBECONFIG]
# With KUBECONFIG (for the host's API server as the guest sees it, 10.0.2.2, see
# test/k8s/apiserver.sh) the guest gets a network and the node is patched there;
# without, test/guest/convert-check.py serves the two API calls itself.
{
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=$(realpath "${1:?usage: $0 BUILDDIR [KUBECONFIG]}")
KCFG=${2:-}
net=(); dirs=()
if [ -n "$KCFG" ]; then
    KCFG=$(realpath "$KCFG"); net=(--net); dirs=(--rwdir "$(dirname "$KCFG")")
fi
"$HERE/vm-run.sh" --nvdimm 2G,label=0 --mem 1G --timeout 1200 "${net[@]}" "${dirs[@]}" -- \
    /usr/bin/python3 "$REPO/test/guest/convert-check.py" "$BUILD/pmem-csi-driver" "$KCFG" 2>&1 \
    | sed -u 's/\r$//' | grep -v '^\[ *[0-9.]*\] '
exit "${PIPESTATUS[0]}"
}
