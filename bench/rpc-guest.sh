#!/bin/bash
# bench/rpc-guest.sh - the RPC-path benchmark, run INSIDE the QEMU guest (bench/rpc.sh
# starts it): our driver and intel/pmem-csi's, both in LVM mode on the same volume groups,
# timed by rpc-bench (a gRPC core C client) call by call, the two drivers interleaved.
#
# 1. our driver starts on the fresh NVDIMMs and sets up the namespaces and VGs
#    (ndbus0region<N>fsdax, the names upstream uses too); it gets BENCH_RPC_VOLUMES
#    volumes of 4 MiB (one LVM extent, the driver's allocation unit);
# 2. upstream's driver (-mode=node -testEndpoint) starts on the same VGs, as its pod did once
#    pmem-ns-init and pmem-vgm had run, and gets as many volumes of its own;
# 3. BENCH_RPC_ROUNDS rounds; in each, for every method and client count, one run against
#    each driver (which one goes first alternates by round), then GetCapacity with one
#    client while BENCH_RPC_SLOW threads run CreateVolume + DeleteVolume on that driver.
# Both drivers stay up the whole time; the one not being measured is idle.
# Output: "# " progress lines and one "RPC {json}" line per measurement.
set -euo pipefail
B=${RPC_BENCH:?}
OURS=${PMEM_CSI_DRIVER:?}
UP=${PMEM_CSI_UPSTREAM:-}
N=${BENCH_RPC_VOLUMES:-100}
SECONDS_PER_RUN=${BENCH_RPC_SECONDS:-3}
SLOW_SECONDS=${BENCH_RPC_SLOW_SECONDS:-15}
ROUNDS=${BENCH_RPC_ROUNDS:-3}
CLIENTS=${BENCH_RPC_CLIENTS:-"1 8 64"}
METHODS=${BENCH_RPC_METHODS:-"Probe NodeGetInfo GetCapacity ListVolumes"}
SLOW=${BENCH_RPC_SLOW:-2}
# The timed clients: "raw" (rpc-bench --raw: one thread, one blocking HTTP/2 connection,
# nghttp2) or "grpc-core" (several threads per call: under TCG it costs more than the driver).
CLIENT=${BENCH_RPC_CLIENT:-raw}
RAW=(); [ "$CLIENT" = raw ] && RAW=(--raw)
SIZE=$((4 << 20))
# State directories and sockets on the guest's tmpfs, as on a node's local disk: the guest's
# /tmp is an overlay on the host's root over 9p, where each path lookup can cost a round
# trip to the host (GetCapacity checks that the state directory is still there).
work=$(mktemp -d /dev/shm/rpc-bench.XXXXXX)
export LVM_SUPPRESS_FD_WARNINGS=1

# Fresh QEMU DIMMs have blank label areas (one label-less raw namespace, no space to
# allocate); an administrator (or upstream's pmem-ns-init) initializes them once.
ndctl disable-region all >/dev/null 2>&1
ndctl init-labels -f all >/dev/null 2>&1
ndctl enable-region all >/dev/null 2>&1
echo "# guest: $(nproc) vCPUs, $(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo) MiB, $(uname -r)"
ndctl list -R 2>/dev/null | grep -o '"size":[0-9]*' | sed 's/^/# region /' || true

# As in a pod: each driver (with the tools it runs) and the clients (a CO's sidecar) in a
# cgroup of their own with the cpu controller, so the kernel shares the CPU between them
# by cgroup, not by process count (BENCH_RPC_CGROUPS=0: everything in the guest's root).
CGROUPS=${BENCH_RPC_CGROUPS:-1}
CG=/sys/fs/cgroup
if [ "$CGROUPS" = 1 ]; then
    { grep -q " $CG cgroup2 " /proc/mounts || mount -t cgroup2 none "$CG"; } 2>/dev/null &&
        echo +cpu >"$CG/cgroup.subtree_control" 2>/dev/null &&
        mkdir -p "$CG/bench-clients" "$CG/bench-ours" "$CG/bench-upstream" || CGROUPS=0
fi
echo "# cgroups: $([ "$CGROUPS" = 1 ] && echo "clients, ours and upstream each in their own (cpu controller)" || echo "none (all in the root)")"
in_cg() { # NAME command...: run the command in cgroup bench-NAME
    local name=$1; shift
    if [ "$CGROUPS" = 1 ]; then
        sh -c 'echo $$ >"$0" && exec "$@"' "$CG/bench-$name/cgroup.procs" "$@"
    else
        "$@"
    fi
}

pids=()
cleanup() {
    local st=$?
    if [ $st != 0 ]; then
        for f in "$work"/*.log; do echo "# exit status $st; $(basename "$f") tail:"; tail -15 "$f" | sed 's/^/#   /'; done
    fi
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

start_driver() { # label argv...
    local label=$1; shift
    in_cg "$label" "$@" >"$work/$label.log" 2>&1 &
    pids+=($!)
    eval "pid_$label=$!"
    local t0=$(date +%s.%N)
    if ! in_cg clients "$B" -e "unix://$work/$label.sock" -l "$label" -t 120 wait; then
        echo "# $label did not become ready; its log:"; tail -20 "$work/$label.log" | sed 's/^/#   /'
        return 1
    fi
    echo "# $label: exec to ready Probe $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s (incl. rpc-bench start)"
}

rss() { awk '/^VmRSS:/ {print $2 " kB"}' "/proc/$1/status" 2>/dev/null || echo "?"; }

labels=(ours)
start_driver ours "$OURS" -drivername=pmem-csi.intel.com -nodeid=bench-node \
    -endpoint="unix://$work/ours.sock" -statePath="$work/ours-state" -deviceManager=lvm -v=0
vgs --noheadings -o vg_name,vg_size,vg_free,vg_extent_size 2>/dev/null | sed 's/^/# VG /'
echo "# ours: creating $N volumes of $SIZE bytes"
in_cg clients "$B" -e "unix://$work/ours.sock" -l ours -p ours -n "$N" -s "$SIZE" -j 2 -t 600 create

if [ -n "$UP" ] && [ -x "$UP" ]; then
    # Upstream's pmem-vgm tagged each VG with its namespace mode after vgcreate, and its
    # driver reads "vg_name,vg_size,vg_free,vg_tags" and fails on a VG without the tag
    # ("failed to parse vgs output"); ours does not tag. Do what pmem-vgm did.
    for vg in $(vgs --noheadings -o vg_name 2>/dev/null); do
        case "$vg" in *fsdax) vgchange --addtag fsdax "$vg" >/dev/null ;; esac
    done
    # -mode=unified is rejected by this binary ("Invalid driver mode: unified"); -mode=node
    # with -testEndpoint serves Identity, Node and Controller on the one socket, as ours does.
    if start_driver upstream "$UP" -mode=node -testEndpoint -drivername=pmem-csi.intel.com \
        -nodeid=bench-node -endpoint="unix://$work/upstream.sock" \
        -statePath="$work/upstream-state" -deviceManager=lvm -v=0; then
        echo "# upstream: creating $N volumes of $SIZE bytes"
        if in_cg clients "$B" -e "unix://$work/upstream.sock" -l upstream -p upstream -n "$N" -s "$SIZE" -j 2 -t 600 create; then
            labels+=(upstream)
        else
            echo "# upstream: creating volumes failed; log tail:"; tail -20 "$work/upstream.log" | sed 's/^/#   /'
        fi
    fi
else
    echo "# upstream driver not found (PMEM_CSI_UPSTREAM='$UP'): ours only"
fi
vgs --noheadings -o vg_name,lv_count,vg_free 2>/dev/null | sed 's/^/# VG after creating: /'
for l in "${labels[@]}"; do p=pid_$l; echo "# $l: VmRSS ${!p:+$(rss ${!p})} with its volumes, before the rounds"; done

rc=0
for ((r = 1; r <= ROUNDS; r++)); do
    order=("${labels[@]}")
    if [ $((r % 2)) = 0 ] && [ ${#labels[@]} = 2 ]; then order=("${labels[1]}" "${labels[0]}"); fi
    echo "# round $r of $ROUNDS, order: ${order[*]}, guest load $(cut -d' ' -f1-3 /proc/loadavg)"
    for m in $METHODS; do
        for c in $CLIENTS; do
            for l in "${order[@]}"; do
                in_cg clients "$B" -e "unix://$work/$l.sock" -l "$l" -c "$c" -d "$SECONDS_PER_RUN" -w 1 -t 30 "${RAW[@]}" run "$m" | sed "s/^RPC {/RPC {\"round\": $r, /" || rc=1
            done
        done
    done
    for l in "${order[@]}"; do
        in_cg clients "$B" -e "unix://$work/$l.sock" -l "$l" -p "$l-r$r" -s "$SIZE" -c 1 -L "$SLOW" -d "$SLOW_SECONDS" -w 1 -t 30 \
            "${RAW[@]}" run GetCapacity | sed "s/^RPC {/RPC {\"round\": $r, /" || rc=1
    done
done
for l in "${labels[@]}"; do p=pid_$l; echo "# $l: VmRSS $(rss ${!p}) at the end"; done
for l in "${labels[@]}"; do p=pid_$l; kill -0 "${!p}" 2>/dev/null || { echo "# $l exited during the run; log tail:"; tail -20 "$work/$l.log" | sed 's/^/#   /'; rc=1; }; done
exit $rc
