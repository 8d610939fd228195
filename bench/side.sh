#!/bin/bash
# bench/side.sh - our driver and intel/pmem-csi's side by side in ONE QEMU guest, LVM mode,
# same volume groups, interleaved round by round (bench/side.py runs in the guest): per-step
# median, p90 and ratio ours/upstream of CreateVolume, NodeStage/Publish/Unpublish/Unstage,
# DeleteVolume (eraseafter=false and =true), GetCapacity and ListVolumes; idle VmRSS,
# RssAnon, RssFile and threads of both after the same lifecycles; exec to first ready
# Probe of both with existing volumes, against `lvs` alone. Not part of CI.
# usage: bench/side.sh [-n] [BUILDDIR]     -n: check the arguments and print the plan, no guest
#
# Environment (default):
#   PMEM_CSI_UPSTREAM   upstream's driver (~/.cache/pmem-csi-tools/pmem-csi-driver-v0.6.52;
#                       unpack it with ../shared/tools/unpack.sh); required
#   SIDE_ROUNDS         rounds; each is one eraseafter=false and one =true lifecycle per driver (5)
#   SIDE_SIZE_MIB       volume size (1024)       SIDE_QUERIES  GetCapacity + ListVolumes per round (3)
#   SIDE_KEEP           volumes per driver left for the start-up timing (10)
#   SIDE_STARTS         starts of each driver, and `lvs` runs (3)
#   SIDE_LOG_V          -v of both drivers (0)   SIDE_CALL_TIMEOUT  seconds per call (600)
#   SIDE_TIMEOUT        guest time limit in seconds (3600)
#   SIDE_NVDIMM_DIR     NVDIMM backing files (/dev/shm when the host has 12 GiB available, else
#                       vm-run's directory on disk; "disk" forces that). As in bench/run.sh, the
#                       files are preallocated: on disk, or touched first by the guest, erase
#                       times measure the host's page faults and writeback (a 1 GiB erase took
#                       40 s in one such run), and whichever driver writes a page first pays.
# Default run: 4 minutes at host load 3-5, about 15 at load 10-20 (2 cores, TCG). Output: "# " progress,
# "BENCH {json}" lines, Markdown tables; the host's 1-minute load is sampled every 10 s.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dry=0
if [ "${1:-}" = -n ]; then dry=1; shift; fi
case "${1:-}" in -*) echo "usage: bench/side.sh [-n] [BUILDDIR]" >&2; exit 2 ;; esac
BUILDDIR=$(realpath "${1:-$REPO/build}")
UPSTREAM=${PMEM_CSI_UPSTREAM:-${HOME:-/root}/.cache/pmem-csi-tools/pmem-csi-driver-v0.6.52}
for v in SIDE_ROUNDS SIDE_SIZE_MIB SIDE_QUERIES SIDE_KEEP SIDE_STARTS SIDE_LOG_V SIDE_CALL_TIMEOUT SIDE_TIMEOUT; do
    val=${!v:-}
    if [ -n "$val" ] && ! [[ "$val" =~ ^[0-9]+$ ]]; then echo "$v=$val: not a whole number" >&2; exit 2; fi
done
if [ "${SIDE_ROUNDS:-5}" -lt 1 ] || [ "${SIDE_STARTS:-3}" -lt 1 ] || [ "${SIDE_SIZE_MIB:-1024}" -lt 4 ]; then
    echo "SIDE_ROUNDS and SIDE_STARTS must be at least 1, SIDE_SIZE_MIB at least 4" >&2; exit 2
fi
# Both drivers' volumes of one round never exist at once (each deletes before the other
# creates), so one volume plus the kept ones (4 MiB each) must fit one 4 GiB region.
if [ "${SIDE_SIZE_MIB:-1024}" -gt 3072 ]; then echo "SIDE_SIZE_MIB must fit a 4 GiB region (at most 3072)" >&2; exit 2; fi
[ -x "$BUILDDIR/pmem-csi-driver" ] || { echo "no driver at $BUILDDIR/pmem-csi-driver (build first)" >&2; exit 2; }
if [ ! -x "$UPSTREAM" ]; then
    echo "upstream driver $UPSTREAM not found (PMEM_CSI_UPSTREAM; ../shared/tools/unpack.sh unpacks it)" >&2
    [ "${CI:-}" = true ] && exit 1
    exit 77
fi
if [ $dry = 1 ]; then
    echo "would run bench/side.py in a guest: ours $BUILDDIR/pmem-csi-driver, upstream $UPSTREAM,"
    echo "rounds ${SIDE_ROUNDS:-5}, ${SIDE_SIZE_MIB:-1024} MiB, queries ${SIDE_QUERIES:-3}, keep ${SIDE_KEEP:-10}, starts ${SIDE_STARTS:-3}, timeout ${SIDE_TIMEOUT:-3600} s"
    exit 0
fi
bash "$REPO/test/vm/setup-host.sh" >/dev/null
# Private copies: a rebuild during the run must not swap a binary. /tmp is on the root fs
# the guest sees.
bindir=$(mktemp -d /tmp/pmem-csi-side.XXXXXX)
samples=$(mktemp)
trap 'rm -rf "$bindir" "$samples"' EXIT
cp "$BUILDDIR/pmem-csi-driver" "$bindir/"
cp "$UPSTREAM" "$bindir/upstream-driver"
envs=(--env "PMEM_CSI_DRIVER=$bindir/pmem-csi-driver" --env "PMEM_CSI_UPSTREAM=$bindir/upstream-driver")
for v in $(compgen -v SIDE_); do
    [ "$v" = SIDE_TIMEOUT ] || envs+=(--env "$v=${!v}")
done

echo "command: $(for v in $(compgen -v SIDE_) PMEM_CSI_UPSTREAM; do [ -n "${!v:-}" ] && printf '%s=%s ' "$v" "${!v}"; done)bash bench/side.sh $*"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "commit: $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- src bench meson.build || echo ' + uncommitted changes in src/, bench/ or meson.build')"
echo "ours: $BUILDDIR/pmem-csi-driver built $(date -u -r "$BUILDDIR/pmem-csi-driver" '+%Y-%m-%d %H:%M UTC'), sha256 $(sha256sum "$bindir/pmem-csi-driver" | cut -c1-12)"
echo "upstream: $UPSTREAM, sha256 $(sha256sum "$bindir/upstream-driver" | cut -c1-12)"
echo "host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/^Mem:/ {print $2}') GiB, QEMU TCG guest, 2 vCPUs, 2 GiB, 2 x 4 GiB NVDIMMs"
echo "host load at the start: $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min), QEMU processes: $(pgrep -c qemu-system || true)"
( while :; do echo "$(cut -d' ' -f1 /proc/loadavg) $(pgrep -c qemu-system || true)"; sleep 10; done ) >"$samples" &
sampler=$!
trap 'kill "$sampler" 2>/dev/null || true; rm -rf "$bindir" "$samples"' EXIT
nvdir=${SIDE_NVDIMM_DIR:-/dev/shm}
avail=$(awk '/^MemAvailable:/ {print int($2 / 1048576)}' /proc/meminfo)
nvdimms=(--nvdimm 4G --nvdimm 4G)
if [ "$nvdir" != disk ] && [ "$avail" -ge 12 ]; then
    nvtmp=$(mktemp -d "$nvdir/pmem-csi-side.XXXXXX")
    nvdimms=(--nvdimm "4G,file=$nvtmp/nvdimm0.img" --nvdimm "4G,file=$nvtmp/nvdimm1.img")
    echo "NVDIMM backing files: $nvtmp ($(df --output=fstype "$nvtmp" | tail -1)), preallocated, host MemAvailable $avail GiB"
else
    echo "NVDIMM backing files: on disk (vm-run's run directory), preallocated, host MemAvailable $avail GiB; erase times include host writeback"
fi
trap 'kill "$sampler" 2>/dev/null || true; rm -rf "$bindir" "$samples" ${nvtmp:+"$nvtmp"}' EXIT
export PMEMVM_NVDIMM_PREALLOC=1
rc=0
"$REPO/test/vm/vm-run.sh" "${nvdimms[@]}" --mem 2G --smp 2 --timeout "${SIDE_TIMEOUT:-3600}" "${envs[@]}" -- \
    /usr/bin/python3 "$REPO/bench/side.py" || rc=$?
awk '{ l += $1; if ($1 > m) m = $1; if ($2 > q) q = $2; n++ }
     END { if (n) printf "during the run: host 1-min load mean %.2f, max %.2f over %d samples; at most %d QEMU processes at once (this guest counts 1)\n", l / n, m, n, q }' "$samples"
echo "host load at the end: $(cut -d' ' -f1-3 /proc/loadavg), QEMU processes: $(pgrep -c qemu-system || true)"
exit $rc
