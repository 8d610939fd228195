#!/bin/bash
# run-guest-suite.sh - run the in-guest CSI test suite (test/guest) in the QEMU VM.
#
# usage: test/vm/run-guest-suite.sh BUILDDIR [PATTERN...]
#
# Boots a VM with 2 x 4G emulated NVDIMMs and 2G RAM that sees the host's root
# filesystem read-only (so BUILDDIR/pmem-csi-driver and the repo), runs
# test/guest/run-suite.py in it against BUILDDIR/pmem-csi-driver, and ends with
# the suite's "N passed, N failed" line. Exit status: the suite's (0 = all
# passed), 124 when the VM timed out, 255 when the guest died.
#
# Environment:
#   RESULTS_DIR            where the console log and driver logs go
#                          (default BUILDDIR/test-results/guest; emptied first)
#   STRESS_DIRECT_WORKERS, STRESS_DIRECT_VOLUMES  the direct-mode stress test (default 5 x 8)
#   STRESS_WORKERS, STRESS_VOLUMES   size of the stress test (default 10 x 20;
#                          the full run is STRESS_VOLUMES=50)
#   PMEMVM_TIMEOUT         VM time limit in seconds (default 5400)
#   PMEM_CSI_UPSTREAM      intel/pmem-csi v0.6.52's driver binary (default
#                          ~/.cache/pmem-csi-tools/pmem-csi-driver-v0.6.52); its pmem-ns-init
#                          and pmem-vgm beside it. CI is passed in too.
#   UPSTREAM_BINARY_MODES, UPSTREAM_BINARY_CRASHES  test_upstream_binary.py: the device
#                          modes (default "lvm direct") and SIGKILLs per mode (default 3)
#   LVM_META_WRAP_ROUNDS   test_lvm_meta.py: lvcreate/lvremove rounds at most until a foreign
#                          VG's metadata wraps around its area (default 40)
#   CACHE_TLS_SCAN=full    test_cache.py scans the peer port with every cipher openssl
#                          knows (about 135 s more), not the ECDSA ones and a few weak ones
# Parsed as a whole before it runs (the braces), so that editing this file while
# it runs (a VM can take an hour) cannot derail the running copy.
{
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

[ $# -ge 1 ] || { echo "usage: $0 BUILDDIR [PATTERN...]" >&2; exit 2; }
BUILDDIR=$(realpath "$1"); shift
DRIVER=$BUILDDIR/pmem-csi-driver
if [ ! -x "$DRIVER" ]; then
    echo "FAIL - driver binary $DRIVER missing"
    echo "0 passed, 1 failed"
    exit 1
fi

bash "$HERE/setup-host.sh" >/dev/null

RESULTS=${RESULTS_DIR:-$BUILDDIR/test-results/guest}
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
RESULTS=$(realpath "$RESULTS")
CONSOLE=$RESULTS/console.log

envs=(--env "PMEM_CSI_DRIVER=$DRIVER" --env "RESULTS_DIR=$RESULTS")
# intel/pmem-csi v0.6.52's driver, a test peer (../shared/tools, unpacked by
# scripts/test.sh) for test_upstream_binary.py; CI=true makes its absence a failure.
UPSTREAM=${PMEM_CSI_UPSTREAM:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/pmem-csi-tools/pmem-csi-driver-v0.6.52}
envs+=(--env "PMEM_CSI_UPSTREAM=$(realpath -m "$UPSTREAM")")  # the test says when it is missing
[ -n "${CI:-}" ] && envs+=(--env "CI=$CI")
for v in STRESS_WORKERS STRESS_VOLUMES STRESS_DIRECT_WORKERS STRESS_DIRECT_VOLUMES CALL_TIMEOUT READY_TIMEOUT CRASH_ITERATIONS CRASH_SEED OWNERSHIP_LEAK_ROUNDS OWNERSHIP_LEAK_SIZE_MIB OWNERSHIP_LEAK_BATCH CONN_STOP_ROUNDS SNAPSHOT_BENCH_MIB UPSTREAM_BINARY_MODES UPSTREAM_BINARY_CRASHES \
    CACHE_TLS_SCAN LVM_META_WRAP_ROUNDS; do
    [ -n "${!v:-}" ] && envs+=(--env "$v=${!v}")
done

SUMMARY='^[0-9]+ passed, [0-9]+ failed'
rc=0
# The suite's summary line is held back and printed last, after the VM's own
# shutdown messages, so that it closes the output.
"$HERE/vm-run.sh" --nvdimm 4G --nvdimm 4G --mem 2G --timeout "${PMEMVM_TIMEOUT:-5400}" \
    --rwdir "$RESULTS" "${envs[@]}" -- \
    /usr/bin/python3 "$REPO/test/guest/run-suite.py" "$@" 2>&1 \
    | sed -u 's/\r$//' | tee "$CONSOLE" | grep --line-buffered -Ev "$SUMMARY" || rc=${PIPESTATUS[0]}

summary=$(grep -E "$SUMMARY" "$CONSOLE" | tail -1 || true)
if [ -z "$summary" ]; then
    # The guest never got to its summary (timeout, panic): count what it printed.
    passed=$(grep -c '^ok - ' "$CONSOLE" || true)
    failed=$(grep -c '^FAIL - ' "$CONSOLE" || true)
    echo "FAIL - the guest suite did not finish (status $rc); see $CONSOLE"
    summary="$passed passed, $((failed + 1)) failed"
    [ "$rc" != 0 ] || rc=1
fi
echo "logs: $RESULTS"
echo "$summary"
exit "$rc"
}
