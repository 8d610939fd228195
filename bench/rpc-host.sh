#!/bin/bash
# bench/rpc-host.sh - the per-call cost of the RPC path without emulation: our driver
# (-deviceManager=direct) and intel/pmem-csi v0.6.52 (-mode=node -testEndpoint
# -deviceManager=ndctl) on this host, which has no PMEM (both manage 0 bytes and 0 volumes),
# timed by rpc-bench with 1, 8 and 64 clients, interleaved run by run. In the QEMU guest
# (bench/rpc.sh) every instruction of client and driver is emulated, which hides how
# little each call costs; here nothing touches a device, so only Probe, NodeGetInfo,
# GetCapacity and ListVolumes (empty) are meaningful.
# usage: bench/rpc-host.sh [BUILDDIR]     environment: PMEM_CSI_UPSTREAM, BENCH_RPC_ROUNDS (3),
#        BENCH_RPC_SECONDS (3), BENCH_RPC_CLIENTS ("1 8 64")
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILDDIR=$(realpath "${1:-$REPO/build}")
B=$BUILDDIR/bench/rpc-bench
UP=${PMEM_CSI_UPSTREAM:-${HOME:-/root}/.cache/pmem-csi-tools/pmem-csi-driver-v0.6.52}
work=$(mktemp -d /tmp/rpc-host.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
echo "host: $(nproc) cores, uptime: $(uptime)"
"$BUILDDIR/pmem-csi-driver" -endpoint="unix://$work/ours.sock" -deviceManager=direct -nodeid=n1 \
    -statePath="$work/ours-state" -v=0 >"$work/ours.log" 2>&1 &
pids+=($!)
labels=(ours)
if [ -x "$UP" ]; then
    "$UP" -mode=node -testEndpoint -endpoint="unix://$work/upstream.sock" -deviceManager=ndctl \
        -nodeid=n1 -statePath="$work/upstream-state" -v=0 >"$work/upstream.log" 2>&1 &
    pids+=($!)
    labels+=(upstream)
fi
for l in "${labels[@]}"; do "$B" -e "unix://$work/$l.sock" -l "$l" -t 30 wait; done
for ((r = 1; r <= ${BENCH_RPC_ROUNDS:-3}; r++)); do
    order=("${labels[@]}")
    if [ $((r % 2)) = 0 ] && [ ${#labels[@]} = 2 ]; then order=("${labels[1]}" "${labels[0]}"); fi
    for m in Probe NodeGetInfo GetCapacity ListVolumes; do
        for c in ${BENCH_RPC_CLIENTS:-1 8 64}; do
            for l in "${order[@]}"; do
                "$B" -e "unix://$work/$l.sock" -l "$l" -c "$c" -d "${BENCH_RPC_SECONDS:-3}" run "$m" |
                    sed "s/^RPC {/RPC {\"round\": $r, /"
            done
        done
    done
done
echo "host uptime at the end: $(uptime)"
