#!/bin/bash
# bench/lean.sh - run bench/lean.py (memory over lifecycles, start-up with existing
# volumes) in the QEMU guest. usage: bench/lean.sh [BUILDDIR]; knobs: LEAN_* (see lean.py)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILDDIR=$(realpath "${1:-$REPO/build}")
bash "$REPO/test/vm/setup-host.sh" >/dev/null
bindir=$(mktemp -d /tmp/pmem-csi-lean.XXXXXX)
trap 'rm -rf "$bindir"' EXIT
cp "$BUILDDIR/pmem-csi-driver" "$bindir/"
envs=(--env "PMEM_CSI_DRIVER=$bindir/pmem-csi-driver")
for v in $(compgen -v LEAN_); do envs+=(--env "$v=${!v}"); done
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC') commit: $(git -C "$REPO" rev-parse --short HEAD) sha256 $(sha256sum "$bindir/pmem-csi-driver" | cut -c1-12)"
echo "host load before: $(cut -d' ' -f1-3 /proc/loadavg), QEMU processes: $(pgrep -c qemu-system || true)"
rc=0
"$REPO/test/vm/vm-run.sh" --nvdimm 4G --nvdimm 4G --mem 2G --timeout "${LEAN_TIMEOUT:-1800}" "${envs[@]}" -- \
    /usr/bin/python3 "$REPO/bench/lean.py" || rc=$?
echo "host load after: $(cut -d' ' -f1-3 /proc/loadavg), QEMU processes: $(pgrep -c qemu-system || true)"
exit $rc
