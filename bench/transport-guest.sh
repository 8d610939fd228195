#!/bin/bash
# bench/transport-guest.sh - gRPC core vs nghttp2 transport, run INSIDE the QEMU guest
# (bench/transport.sh starts it). For each of TRANSPORT_ROUNDS rounds, and for each
# transport (the first one alternates by round):
#   1. bench/lean.py with that driver (memory idle and over LEAN_CHECKPOINTS lifecycles,
#      start-up with existing volumes), its "LEAN {" lines tagged with the transport;
#   2. the RPC path: the driver on wiped regions in LVM mode, rpc-bench (a gRPC core C
#      client) for Probe, NodeGetInfo and GetCapacity with TRANSPORT_CLIENTS clients, then
#      GetCapacity with one client while 2 threads run CreateVolume + DeleteVolume; then
#      SIGTERM, timed to exit. "RPC {" lines tagged with the transport.
set -euo pipefail
REPO=${REPO:?}
B=${RPC_BENCH:?}
ROUNDS=${TRANSPORT_ROUNDS:-1}
SECS=${TRANSPORT_SECONDS:-3}
CLIENTS=${TRANSPORT_CLIENTS:-"1 8"}
labels=(${TRANSPORT_LABELS:-core nghttp2})
declare -A drv=([core]=${DRIVER_CORE:?} [nghttp2]=${DRIVER_NGHTTP2:?})
export LVM_SUPPRESS_FD_WARNINGS=1
echo "# guest: $(nproc) vCPUs, $(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo) MiB, $(uname -r)"

tag() { sed -u "s/^\(LEAN\|RPC\) {/\1 {\"transport\": \"$1\", \"round\": $2, /"; }

rpc_part() { # label round
    local l=$1 r=$2 work pid t0
    work=$(mktemp -d /tmp/transport.XXXXXX)
    /usr/bin/python3 -c "import sys; sys.path.insert(0, '$REPO/bench'); import lifecycle as lc; lc.csitest.wipe_devices(); lc.csitest.init_labels()" >/dev/null
    "${drv[$l]}" -endpoint="unix://$work/csi.sock" -deviceManager=lvm -nodeid=n1 -statePath="$work/state" \
        -v=0 >"$work/driver.log" 2>&1 &
    pid=$!
    if ! "$B" -e "unix://$work/csi.sock" -l "$l" -t 180 wait >/dev/null; then
        echo "# $l: driver not ready"; tail -5 "$work/driver.log" | sed 's/^/#   /'; kill "$pid"; return 1
    fi
    for m in Probe NodeGetInfo GetCapacity; do
        for c in $CLIENTS; do
            "$B" -e "unix://$work/csi.sock" -l "$l" -c "$c" -d "$SECS" -t 60 run "$m" | tag "$l" "$r"
        done
    done
    "$B" -e "unix://$work/csi.sock" -l "$l" -c 1 -L 2 -d "$((SECS * 3))" -t 60 run GetCapacity | tag "$l" "$r"
    echo "RPC {\"transport\": \"$l\", \"round\": $r, \"what\": \"status after the RPC runs\", $(awk '/^(VmRSS|RssAnon|RssFile|Threads):/ {gsub(":", ""); printf "\"%s\": %s, ", $1, $2}' /proc/$pid/status) \"pid\": $pid}"
    t0=$(date +%s.%N)
    kill -TERM "$pid"
    wait "$pid" || true
    echo "RPC {\"transport\": \"$l\", \"round\": $r, \"what\": \"SIGTERM to exit\", \"seconds\": $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')}"
    rm -rf "$work"
}

for ((r = 1; r <= ROUNDS; r++)); do
    order=("${labels[@]}")
    [ $((r % 2)) = 0 ] && [ ${#labels[@]} = 2 ] && order=("${labels[1]}" "${labels[0]}")
    for l in "${order[@]}"; do
        echo "# round $r: $l (${drv[$l]}), host-independent guest uptime $(cut -d' ' -f1 /proc/uptime)"
        rm -rf /tmp/lean  # lean.py's work directory, which it wants to create itself
        PMEM_CSI_DRIVER=${drv[$l]} /usr/bin/python3 "$REPO/bench/lean.py" | tag "$l" "$r"
        rpc_part "$l" "$r"
    done
done
