#!/bin/bash
# demo.sh - the main job: on a fresh Debian 12 machine (root), install what is
# needed, build the driver, boot a QEMU guest with two emulated 4 GiB NVDIMMs and
# run demo/demo.py in it (create, stage, publish with DAX, write/read, clean up).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
bash scripts/install-deps.sh
bash test/vm/setup-host.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build -j2 >/dev/null
echo "== booting the QEMU guest (software emulation, this takes a few seconds)"
exec test/vm/vm-run.sh --nvdimm 4G --nvdimm 4G --mem 2G --timeout 900 -- \
    /usr/bin/python3 "$REPO/demo/demo.py"
