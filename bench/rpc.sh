#!/bin/bash
# bench/rpc.sh - the RPC path side by side: our driver and intel/pmem-csi's in one QEMU guest
# (LVM mode, same volume groups), timed by build/bench/rpc-bench, a gRPC core C client.
# usage: bench/rpc.sh [BUILDDIR]
#
# Per round and per driver (interleaved, see bench/rpc-guest.sh): Probe, NodeGetInfo,
# GetCapacity and ListVolumes (with BENCH_RPC_VOLUMES volumes of 4 MiB present) with 1, 8
# and 64 client threads, each with its own channel and connection; then GetCapacity with
# one client while BENCH_RPC_SLOW threads run CreateVolume + DeleteVolume (slow calls).
# Prints the "RPC {json}" lines, then a Markdown table: medians over the rounds of p50,
# p99 and calls/s, and the ratio ours/upstream.
#
# Environment (default):
#   PMEM_CSI_UPSTREAM        upstream's driver binary (~/.cache/pmem-csi-tools/pmem-csi-driver-v0.6.52;
#                            unpack it with ../shared/tools/unpack.sh); missing: ours only
#   BENCH_RPC_VOLUMES        volumes per driver (100); 1000 takes about 10x as long to set up
#   BENCH_RPC_ROUNDS         rounds (3)          BENCH_RPC_SECONDS    seconds per run (3)
#   BENCH_RPC_CLIENTS        client counts ("1 8 64")
#   BENCH_RPC_METHODS        ("Probe NodeGetInfo GetCapacity ListVolumes")
#   BENCH_RPC_SLOW           slow-call threads (2)   BENCH_RPC_SLOW_SECONDS  their run (15)
#   BENCH_RPC_CLIENT         the timed clients: raw (rpc-bench --raw, a one-thread nghttp2
#                            client) or grpc-core (raw; slow calls always use gRPC core)
#   BENCH_RPC_CGROUPS        1: the clients, ours and upstream each in a cgroup of their own
#                            with the cpu controller, as containers of pods are (1); 0: none
#   BENCH_TIMEOUT            guest time limit in seconds (3600)
# The NVDIMMs (two, on vm-run's disk-backed files) are sized for both drivers' volumes:
# 2 x BENCH_RPC_VOLUMES x 4 MiB plus room for the slow calls and LVM metadata.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILDDIR=$(realpath "${1:-$REPO/build}")
UPSTREAM=${PMEM_CSI_UPSTREAM:-${HOME:-/root}/.cache/pmem-csi-tools/pmem-csi-driver-v0.6.52}
N=${BENCH_RPC_VOLUMES:-100}
bash "$REPO/test/vm/setup-host.sh" >/dev/null
# Private copies: a rebuild during the run must not swap the binaries. /tmp is on the root
# fs the guest sees.
bindir=$(mktemp -d /tmp/pmem-csi-rpc-bench.XXXXXX)
out=$(mktemp)
trap 'rm -rf "$bindir" "$out"' EXIT
cp "$BUILDDIR/pmem-csi-driver" "$BUILDDIR/bench/rpc-bench" "$bindir/"
envs=(--env "PMEM_CSI_DRIVER=$bindir/pmem-csi-driver" --env "RPC_BENCH=$bindir/rpc-bench")
if [ -x "$UPSTREAM" ]; then
    cp "$UPSTREAM" "$bindir/upstream-driver"
    envs+=(--env "PMEM_CSI_UPSTREAM=$bindir/upstream-driver")
else
    echo "upstream driver $UPSTREAM not found: measuring ours only"
fi
for v in $(compgen -v BENCH_RPC_); do envs+=(--env "$v=${!v}"); done
# Each region holds one namespace and VG, and half of each driver's volumes land in each:
# N x 4 MiB per DIMM for the two drivers, plus 512 MiB for the slow calls, LVM metadata and
# the region alignment; at least 2 GiB.
dimm_mib=$(( N * 4 + 512 < 2048 ? 2048 : N * 4 + 512 ))
dimm_gib=$(( (dimm_mib + 1023) / 1024 ))

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "commit: $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- src bench meson.build || echo ' + uncommitted changes')"
echo "ours: sha256 $(sha256sum "$bindir/pmem-csi-driver" | cut -c1-12); upstream: ${UPSTREAM} sha256 $( [ -x "$UPSTREAM" ] && sha256sum "$UPSTREAM" | cut -c1-12)"
echo "host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/^Mem:/ {print $2}') GiB, QEMU TCG guest, 2 x ${dimm_gib} GiB NVDIMMs"
echo "host uptime at start: $(uptime), other QEMU processes: $(pgrep -c qemu-system || true)"
samples=$(mktemp)
( while :; do echo "$(cut -d' ' -f1 /proc/loadavg) $(pgrep -c qemu-system || true)"; sleep 10; done ) >"$samples" &
sampler=$!
trap 'kill "$sampler" 2>/dev/null || true; rm -rf "$bindir" "$out" "$samples"' EXIT
rc=0
"$REPO/test/vm/vm-run.sh" --nvdimm "${dimm_gib}G" --nvdimm "${dimm_gib}G" --mem 2G \
    --timeout "${BENCH_TIMEOUT:-3600}" "${envs[@]}" -- /bin/bash "$REPO/bench/rpc-guest.sh" | tee "$out" || rc=$?
awk '{ l += $1; if ($1 > m) m = $1; if ($2 > q) q = $2; n++ }
     END { if (n) printf "during the run: host 1-min load mean %.2f, max %.2f; at most %d QEMU processes at once (this guest counts 1)\n", l / n, m, q }' "$samples"
echo "host uptime at the end: $(uptime)"

/usr/bin/python3 "$REPO/bench/rpc-summary.py" "$out"
exit $rc
