#!/bin/bash
# run-kinds.sh - the driver on every kind of PMEM the guest can emulate, in one boot
# (test/guest/test_kinds.py): label-less NVDIMMs, legacy memmap= PMEM, virtio-pmem and
# CXL persistent memory (q35 with a pxb-cxl host bridge and a fixed memory window), plus
# a label-less NVDIMM and a virtio-pmem device that hold someone's filesystem.
#
# usage: test/vm/run-kinds.sh BUILDDIR [GROUP-PATTERN...]   (e.g. convert: only kinds-convert)
# Ends with "N passed, N failed"; exit status 0 when all passed, 124 on a VM timeout.
# Environment: RESULTS_DIR (default BUILDDIR/test-results/kinds; emptied first),
# PMEMVM_TIMEOUT (default 1200 s).
# Parsed as a whole before it runs (the braces), as the other runners.
{
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=$(realpath "${1:?usage: $0 BUILDDIR [GROUP-PATTERN...]}"); shift
if [ ! -x "$BUILD/pmem-csi-driver" ]; then
    echo "FAIL - kinds: driver binary $BUILD/pmem-csi-driver missing"; echo "0 passed, 1 failed"; exit 1
fi
RESULTS=${RESULTS_DIR:-$BUILD/test-results/kinds}
rm -rf "$RESULTS"; mkdir -p "$RESULTS"; RESULTS=$(realpath "$RESULTS")
CONSOLE=$RESULTS/console.log
SUMMARY='^[0-9]+ passed, [0-9]+ failed'

# Sizes tell the devices apart in the guest: the 256M ones are the foreign ones.
# memmap=512M!1G takes 512M out of the 2G of RAM. CXL decoders work in 256M units.
"$HERE/vm-run.sh" --mem 2G --timeout "${PMEMVM_TIMEOUT:-1200}" \
    --nvdimm 768M,label=0 --nvdimm 256M,label=0 \
    --virtio-pmem 640M --virtio-pmem 256M \
    --memmap 512M@1G \
    --cxl-pmem 256M \
    --rwdir "$RESULTS" --env "PMEM_CSI_DRIVER=$BUILD/pmem-csi-driver" --env "RESULTS_DIR=$RESULTS" -- \
    /usr/bin/python3 "$REPO/test/guest/test_kinds.py" "$@" 2>&1 \
    | sed -u 's/\r$//' | grep --line-buffered -v '^\[ *[0-9.]*\] ' | tee "$CONSOLE" \
    | grep --line-buffered -Ev "$SUMMARY"
rc=${PIPESTATUS[0]}
summary=$(grep -E "$SUMMARY" "$CONSOLE" | tail -1 || true)
if [ -z "$summary" ]; then
    passed=$(grep -c '^ok - ' "$CONSOLE" || true)
    failed=$(grep -c '^FAIL - ' "$CONSOLE" || true)
    echo "FAIL - kinds: the guest did not finish (status $rc); see $CONSOLE"
    summary="$passed passed, $((failed + 1)) failed"
    [ "$rc" != 0 ] || rc=1
fi
echo "logs: $RESULTS"
echo "$summary"
exit "$rc"
}
