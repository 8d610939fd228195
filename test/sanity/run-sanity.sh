#!/bin/bash
# run-sanity.sh - csi-sanity (kubernetes-csi/csi-test) against the driver on emulated PMEM.
# usage: test/sanity/run-sanity.sh BUILDDIR CSI_SANITY [lvm|direct] [extra csi-sanity args...]
# csi-sanity is not in Debian: build it from kubernetes-csi/csi-test v5.3.1 (see DEVELOPERS.md).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
[ $# -ge 2 ] || { echo "usage: $0 BUILDDIR CSI_SANITY [lvm|direct] [args...]" >&2; exit 2; }
BUILDDIR=$(realpath "$1"); SANITY=$(realpath "$2"); shift 2
bash "$REPO/test/vm/setup-host.sh" >/dev/null
exec "$REPO/test/vm/vm-run.sh" --nvdimm 4G --nvdimm 4G --mem 2G --timeout "${PMEMVM_TIMEOUT:-2400}" -- \
    bash "$HERE/guest-sanity.sh" "$BUILDDIR/pmem-csi-driver" "$SANITY" "$@"
