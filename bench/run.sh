#!/bin/bash
# bench/run.sh - run the benchmark (bench/lifecycle.py) in the QEMU guest (2 x 4 GiB
# emulated NVDIMMs, 2 GiB RAM). Default run: about 10-15 minutes on a 2-core host.
# usage: bench/run.sh [BUILDDIR]
#
# What it measures, in LVM and in direct mode (-deviceManager=direct), each on freshly
# wiped regions with a fresh driver:
#   latency     per-step medians of BENCH_ROUNDS lifecycles of a BENCH_SIZE_MIB ext4 volume,
#               with eraseafter=true and with eraseafter=false
#   erase       on the same volume's block device: shred -n 0 -z (upstream), blkdiscard -z
#               (BLKZEROOUT, the driver's method), fallocate -z; then DeleteVolume with
#               eraseafter=true of a same-size volume over the same space; MiB/s of each
#   throughput  volumes/s and per-step medians of BENCH_TP_MIB lifecycles (eraseafter=false)
#               with each worker count of BENCH_WORKERS, BENCH_LOAD_VOLUMES per worker
#   tools       (LVM) the same steps by lvcreate, mkfs.ext4, mount, umount, lvremove alone
# Output: "# " progress lines, one "BENCH {json}" line per measurement, Markdown tables.
#
# Environment (default):
#   BENCH_MODES         device modes, in order ("lvm direct")
#   BENCH_PHASES        phases to run ("latency erase throughput tools")
#   BENCH_ROUNDS        latency rounds, each one eraseafter=true + one =false lifecycle (5)
#   BENCH_SIZE_MIB      latency and tools volume size (1024)
#   BENCH_ERASE_ROUNDS  erase rounds (5)          BENCH_ERASE_MIB   erase volume size (1024)
#   BENCH_TP_MIB        throughput volume size (64)
#   BENCH_WORKERS       parallel worker counts to run, one run each ("1 5")
#   BENCH_LOAD_VOLUMES  lifecycles per worker (6)
#   BENCH_TIMEOUT       guest time limit in seconds (1800)
#   BENCH_NVDIMM_DIR    where the NVDIMM backing files go (/dev/shm; "disk" = vm-run's
#                       default, its run directory on the host's disk). tmpfs is used only
#                       when MemAvailable exceeds 12 GiB, else the run falls back to disk
#                       and says so. Why tmpfs: the host writes dirtied pages of a
#                       disk-backed file back and write-protects them again, so the guest's
#                       next write to them faults (seconds per GiB under TCG); erase times
#                       then depended on the host's writeback, not on the erase method.
# Bigger sweeps, for example (each roughly 2-4x the default run):
#   BENCH_ROUNDS=10 BENCH_ERASE_ROUNDS=5 BENCH_WORKERS="1 2 5 10" BENCH_LOAD_VOLUMES=8 \
#     BENCH_TIMEOUT=5400 bash bench/run.sh build
#   BENCH_ERASE_MIB=3072 BENCH_PHASES=erase bash bench/run.sh build
# The NVDIMMs are 4 GiB each (one region each): BENCH_ERASE_MIB and BENCH_SIZE_MIB must
# fit in one region, and in direct mode BENCH_WORKERS x BENCH_TP_MIB in both together.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILDDIR=$(realpath "${1:-$REPO/build}")
bash "$REPO/test/vm/setup-host.sh" >/dev/null
# Run a private copy: a rebuild during the run (it takes minutes) must not swap the
# binary between the LVM and the direct half. /tmp is on the root fs the guest sees.
bindir=$(mktemp -d /tmp/pmem-csi-bench.XXXXXX)
cp "$BUILDDIR/pmem-csi-driver" "$bindir/"
envs=(--env "PMEM_CSI_DRIVER=$bindir/pmem-csi-driver")
for v in $(compgen -v BENCH_); do
    case "$v" in BENCH_TIMEOUT|BENCH_NVDIMM_DIR) continue ;; esac
    envs+=(--env "$v=${!v}")
done

# Results are only comparable with their context: say what else ran on the host.
host_load() {
    echo "host load: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min), other QEMU processes: $(pgrep -c qemu-system || true)"
}
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "commit: $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- src meson.build || echo ' + uncommitted changes in src/ or meson.build')"
echo "driver: $BUILDDIR/pmem-csi-driver built $(date -u -r "$BUILDDIR/pmem-csi-driver" '+%Y-%m-%d %H:%M UTC'), sha256 $(sha256sum "$bindir/pmem-csi-driver" | cut -c1-12)"
echo "host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/^Mem:/ {print $2}') GiB, QEMU TCG guest"
host_load
# Every 10 s: the 1-minute load and the number of QEMU processes (ours included).
samples=$(mktemp)
( while :; do echo "$(cut -d' ' -f1 /proc/loadavg) $(pgrep -c qemu-system || true)"; sleep 10; done ) >"$samples" &
sampler=$!
trap 'kill "$sampler" 2>/dev/null || true; rm -rf "$bindir" "$samples"' EXIT
nvdir=${BENCH_NVDIMM_DIR:-/dev/shm}
avail=$(awk '/^MemAvailable:/ {print int($2 / 1048576)}' /proc/meminfo)
nvdimms=(--nvdimm 4G --nvdimm 4G)
if [ "$nvdir" != disk ] && [ "$avail" -ge 12 ]; then
    nvtmp=$(mktemp -d "$nvdir/pmem-csi-bench.XXXXXX")
    nvdimms=(--nvdimm "4G,file=$nvtmp/nvdimm0.img" --nvdimm "4G,file=$nvtmp/nvdimm1.img")
    echo "NVDIMM backing files: $nvtmp ($(df --output=fstype "$nvtmp" | tail -1)), host MemAvailable $avail GiB"
else
    echo "NVDIMM backing files: on disk (vm-run's run directory), host MemAvailable $avail GiB; erase times include host writeback effects"
fi
trap 'kill "$sampler" 2>/dev/null || true; rm -rf "$bindir" "$samples" ${nvtmp:+"$nvtmp"}' EXIT
export PMEMVM_NVDIMM_PREALLOC=1   # measure erasing, not the host's first-touch page faults
rc=0
"$REPO/test/vm/vm-run.sh" "${nvdimms[@]}" --mem 2G --timeout "${BENCH_TIMEOUT:-1800}" "${envs[@]}" -- \
    /usr/bin/python3 "$REPO/bench/lifecycle.py" || rc=$?
awk '{ l += $1; if ($1 > m) m = $1; if ($2 > q) q = $2; n++ }
     END { if (n) printf "during the run: host 1-min load mean %.2f, max %.2f; at most %d QEMU processes at once (this guest counts 1)\n", l / n, m, q }' "$samples"
echo "at the end: $(host_load)"
exit $rc
