#!/bin/bash
# run-sanity.sh - csi-sanity (kubernetes-csi/csi-test) against the driver on emulated PMEM.
# usage: test/sanity/run-sanity.sh BUILDDIR CSI_SANITY [lvm|direct] [extra csi-sanity args...]
# csi-sanity is not in Debian: ../shared/tools has a static v5.4.0 (scripts/test.sh
# unpacks it into ~/.cache/pmem-csi-tools and runs this once per device mode).
# Ends with "N passed, N failed" (csi-sanity's Passed and Failed specs).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
[ $# -ge 2 ] || { echo "usage: $0 BUILDDIR CSI_SANITY [lvm|direct] [args...]" >&2; exit 2; }
BUILDDIR=$(realpath "$1"); SANITY=$(realpath "$2"); shift 2
MODE=${1:-lvm}; [ $# -gt 0 ] && shift
case $MODE in
    lvm|direct) ;;
    *) echo "run-sanity.sh: device mode must be lvm or direct, not '$MODE'" >&2; exit 2 ;;
esac
[ -x "$SANITY" ] || { echo "run-sanity.sh: $SANITY is not an executable"; echo "0 passed, 1 failed"; exit 1; }
echo "# csi-sanity $("$SANITY" -version 2>/dev/null | awk "{print \$NF; exit}" || true), $MODE mode"
bash "$REPO/test/vm/setup-host.sh" >/dev/null
exec "$REPO/test/vm/vm-run.sh" --nvdimm 4G --nvdimm 4G --mem 2G --timeout "${PMEMVM_TIMEOUT:-2400}" -- \
    bash "$HERE/guest-sanity.sh" "$BUILDDIR/pmem-csi-driver" "$SANITY" "$MODE" "$@"
