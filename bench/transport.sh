#!/bin/bash
# bench/transport.sh - the driver with gRPC core vs with the nghttp2 transport, side by
# side in one QEMU guest (bench/transport-guest.sh runs there): memory idle and over
# lifecycles, start-up, RPC latency, SIGTERM to exit.
# usage: bench/transport.sh CORE_BUILDDIR NGHTTP2_BUILDDIR
#        (e.g. build, set up with -Dgrpc_transport=core, and build-h2 with =nghttp2)
# knobs: TRANSPORT_ROUNDS (1), TRANSPORT_SECONDS (3), TRANSPORT_CLIENTS ("1 8"),
#        TRANSPORT_LABELS ("core nghttp2": which to run), LEAN_*
#        (bench/lean.py: LEAN_CHECKPOINTS "10 40 80", LEAN_STARTS 3, ...), TRANSPORT_TIMEOUT
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ $# = 2 ] || { echo "usage: $0 CORE_BUILDDIR NGHTTP2_BUILDDIR" >&2; exit 2; }
CORE=$(realpath "$1"); H2=$(realpath "$2")
bash "$REPO/test/vm/setup-host.sh" >/dev/null
bindir=$(mktemp -d /tmp/pmem-csi-transport.XXXXXX)
trap 'rm -rf "$bindir"' EXIT
mkdir "$bindir/core" "$bindir/nghttp2"
# Private copies: a rebuild during the run cannot swap them.
cp "$CORE/pmem-csi-driver" "$bindir/core/"
cp "$H2/pmem-csi-driver" "$bindir/nghttp2/"
cp "$CORE/bench/rpc-bench" "$bindir/"
for l in core nghttp2; do
    echo "$l: sha256 $(sha256sum "$bindir/$l/pmem-csi-driver" | cut -c1-12), libgrpc linked: $(ldd "$bindir/$l/pmem-csi-driver" | grep -c libgrpc || true)"
done
envs=(--env "REPO=$REPO" --env "RPC_BENCH=$bindir/rpc-bench" --env "DRIVER_CORE=$bindir/core/pmem-csi-driver"
      --env "DRIVER_NGHTTP2=$bindir/nghttp2/pmem-csi-driver")
for v in $(compgen -v LEAN_) $(compgen -v TRANSPORT_); do envs+=(--env "$v=${!v}"); done
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC') commit: $(git -C "$REPO" rev-parse --short HEAD)"
echo "host load before: $(cut -d' ' -f1-3 /proc/loadavg), QEMU processes: $(pgrep -c qemu-system || true)"
rc=0
"$REPO/test/vm/vm-run.sh" --nvdimm 4G --nvdimm 4G --mem 2G --timeout "${TRANSPORT_TIMEOUT:-3600}" "${envs[@]}" -- \
    bash "$REPO/bench/transport-guest.sh" || rc=$?
echo "host load after: $(cut -d' ' -f1-3 /proc/loadavg), QEMU processes: $(pgrep -c qemu-system || true)"
exit $rc
