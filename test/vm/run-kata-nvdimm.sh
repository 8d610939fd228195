#!/bin/bash
# run-kata-nvdimm.sh - boot a guest with a Kata Containers image file (made by
# the driver, copied out by test/guest/test_kata.py) as its NVDIMM, the way
# Kata's QEMU hands the volume to a Kata VM: memory-backend-file over the image,
# an nvdimm device without labels. The guest kernel must find the DAX metadata
# (nd_pfn_sb) and offer the filesystem as /dev/pmem0 in fsdax mode, which must
# mount with dax and hold the file written on the host side.
#
# usage: test/vm/run-kata-nvdimm.sh IMAGE...
# Prints "ok - / FAIL - " per image and ends with "N passed, N failed".
{
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
[ $# -ge 1 ] || { echo "usage: $0 IMAGE..." >&2; exit 2; }
passed=0; failed=0
for img in "$@"; do
    name="Kata image $(basename "$img") boots as an NVDIMM with DAX"
    if [ ! -f "$img" ]; then
        echo "FAIL - $name (missing: the in-guest kata test did not produce it)"; failed=$((failed+1)); continue
    fi
    # The guest may write to the image (mount): use a copy.
    work=$(mktemp -d /tmp/kata-nvdimm.XXXXXX)
    cp --sparse=always "$img" "$work/img"
    size=$(stat -c %s "$work/img")
    out=$("$HERE/vm-run.sh" --nvdimm "$size,label=0,file=$work/img" --mem 1G --timeout 600 -- \
        /bin/bash "$REPO/test/guest/kata-nvdimm-check.sh" 2>&1); rc=$?
    rm -rf "$work"
    if [ $rc = 0 ] && grep -q '^kata-nvdimm: all checks passed' <<< "$out"; then
        echo "ok - $name"; passed=$((passed+1))
    else
        echo "FAIL - $name (status $rc)"; failed=$((failed+1))
    fi
    sed 's/^/    /' <<< "$out" | grep -E 'kata-nvdimm|"mode"|"map"|pmem0' | head -20
done
echo "$passed passed, $failed failed"
[ $failed = 0 ]
exit
}
