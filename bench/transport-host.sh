#!/bin/bash
# bench/transport-host.sh - the driver with gRPC core vs with the nghttp2 transport on this
# host (direct mode, no PMEM: Identity, NodeGetInfo, GetCapacity and an empty ListVolumes
# need none), both up at once: memory and threads idle, rpc-bench runs interleaved
# (the first transport alternates by round), memory after, SIGTERM to exit.
# usage: bench/transport-host.sh CORE_BUILDDIR NGHTTP2_BUILDDIR
# knobs: TRANSPORT_ROUNDS (2), TRANSPORT_SECONDS (2), TRANSPORT_CLIENTS ("1 8 64")
set -euo pipefail
[ $# = 2 ] || { echo "usage: $0 CORE_BUILDDIR NGHTTP2_BUILDDIR" >&2; exit 2; }
declare -A bin=([core]=$(realpath "$1")/pmem-csi-driver [nghttp2]=$(realpath "$2")/pmem-csi-driver)
B=$(realpath "$1")/bench/rpc-bench
work=$(mktemp -d /tmp/transport-host.XXXXXX)
declare -A pid
trap 'for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"' EXIT
mem() { # label what
    echo "MEM {\"transport\": \"$1\", \"what\": \"$2\", $(awk '/^(VmRSS|RssAnon|RssFile|Threads):/ {gsub(":", ""); printf "\"%s\": %s, ", $1, $2}' "/proc/${pid[$1]}/status") \"libgrpc_kib\": $(awk '/^[0-9a-f]+-/ {g = ($6 ~ /libgrpc/)} /^Rss:/ && g {s += $2} END {print s + 0}' "/proc/${pid[$1]}/smaps")}"
}
echo "host: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), QEMU processes: $(pgrep -c qemu-system || true)"
for l in core nghttp2; do
    cp "${bin[$l]}" "$work/$l-driver"   # private copies: a rebuild cannot swap them
    "$work/$l-driver" -endpoint="unix://$work/$l.sock" -deviceManager=direct -nodeid=n1 \
        -statePath="$work/$l-state" -metricsListen=127.0.0.1:0 -v=0 >"$work/$l.log" 2>&1 &
    pid[$l]=$!
    echo "# $l: sha256 $(sha256sum "$work/$l-driver" | cut -c1-12), libgrpc linked: $(ldd "$work/$l-driver" | grep -c libgrpc || true)"
done
for l in core nghttp2; do "$B" -e "unix://$work/$l.sock" -l "$l" -t 30 wait >/dev/null; done
sleep 2
for l in core nghttp2; do mem "$l" idle; done
labels=(core nghttp2)
for ((r = 1; r <= ${TRANSPORT_ROUNDS:-2}; r++)); do
    order=("${labels[@]}")
    [ $((r % 2)) = 0 ] && order=("${labels[1]}" "${labels[0]}")
    for m in Probe NodeGetInfo GetCapacity ListVolumes; do
        for c in ${TRANSPORT_CLIENTS:-1 8 64}; do
            for l in "${order[@]}"; do
                "$B" -e "unix://$work/$l.sock" -l "$l" -c "$c" -d "${TRANSPORT_SECONDS:-2}" run "$m" |
                    sed "s/^RPC {/RPC {\"round\": $r, /"
            done
        done
    done
done
for l in core nghttp2; do mem "$l" "after the runs"; done
for l in core nghttp2; do
    t0=$(date +%s%N)
    kill -TERM "${pid[$l]}"
    wait "${pid[$l]}" || true
    echo "STOP {\"transport\": \"$l\", \"sigterm_to_exit_ms\": $(( ($(date +%s%N) - t0) / 1000000 ))}"
    unset "pid[$l]"
done
echo "host load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
