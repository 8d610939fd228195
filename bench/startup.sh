#!/bin/bash
# bench/startup.sh - start-up with existing volumes against one `lvs` run, in the QEMU
# guest (bench/startup.py). usage: bench/startup.sh [BUILDDIR]
# Knobs: STARTUP_STARTS (7), STARTUP_VOLUMES (10), STARTUP_PROBE_INTERVAL (0.01 s),
# STARTUP_BASELINE (another driver binary, e.g. an older build, interleaved with ours),
# STARTUP_TIMEOUT (guest time limit, 900 s).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILDDIR=$(realpath "${1:-$REPO/build}")
bash "$REPO/test/vm/setup-host.sh" >/dev/null
# Private copies: a rebuild during the run must not swap the binaries.
bindir=$(mktemp -d /tmp/pmem-csi-startup.XXXXXX)
trap 'rm -rf "$bindir"' EXIT
cp "$BUILDDIR/pmem-csi-driver" "$bindir/"
envs=(--env "PMEM_CSI_DRIVER=$bindir/pmem-csi-driver")
if [ -n "${STARTUP_BASELINE:-}" ]; then
    cp "$STARTUP_BASELINE" "$bindir/baseline-driver"
    envs+=(--env "STARTUP_BASELINE=$bindir/baseline-driver")
fi
for v in STARTUP_STARTS STARTUP_VOLUMES STARTUP_PROBE_INTERVAL; do
    [ -n "${!v:-}" ] && envs+=(--env "$v=${!v}")
done
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC') commit: $(git -C "$REPO" rev-parse --short HEAD) ours sha256 $(sha256sum "$bindir/pmem-csi-driver" | cut -c1-12)${STARTUP_BASELINE:+ baseline sha256 $(sha256sum "$bindir/baseline-driver" | cut -c1-12)}"
echo "host load before: $(cut -d' ' -f1-3 /proc/loadavg), QEMU processes: $(pgrep -c qemu-system || true)"
rc=0
"$REPO/test/vm/vm-run.sh" --nvdimm 4G --nvdimm 4G --mem 2G --timeout "${STARTUP_TIMEOUT:-900}" "${envs[@]}" -- \
    /usr/bin/python3 "$REPO/bench/startup.py" || rc=$?
echo "host load after: $(cut -d' ' -f1-3 /proc/loadavg), QEMU processes: $(pgrep -c qemu-system || true)"
exit $rc
