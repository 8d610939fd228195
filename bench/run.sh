#!/bin/bash
# bench/run.sh - run the lifecycle benchmark in the QEMU guest (2 x 4 GiB emulated NVDIMMs).
# usage: bench/run.sh [BUILDDIR]   (environment: BENCH_ROUNDS, BENCH_SIZE_MIB, BENCH_LOAD_*)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILDDIR=$(realpath "${1:-$REPO/build}")
bash "$REPO/test/vm/setup-host.sh" >/dev/null
envs=(--env "PMEM_CSI_DRIVER=$BUILDDIR/pmem-csi-driver")
for v in BENCH_ROUNDS BENCH_SIZE_MIB BENCH_LOAD_WORKERS BENCH_LOAD_VOLUMES; do
    [ -n "${!v:-}" ] && envs+=(--env "$v=${!v}")
done
echo "host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), QEMU TCG guest"
export PMEMVM_NVDIMM_PREALLOC=1   # measure erasing, not the host's first-touch page faults
exec "$REPO/test/vm/vm-run.sh" --nvdimm 4G --nvdimm 4G --mem 2G --timeout 1800 "${envs[@]}" -- \
    /usr/bin/python3 "$REPO/bench/lifecycle.py"
