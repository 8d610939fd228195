#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# image/check-reproducible.sh [WORKDIR] - build the image twice from scratch and
# compare the digests. Both builds use one snapshot of the source tree (tracked
# and untracked, not ignored files, copied to WORKDIR/src), one SOURCE_DATE_EPOCH
# and one REVISION, but their own meson build directory and mmdebstrap run. On a
# difference, it shows which files of the two root filesystems differ.
# Needs root and the Debian mirror; about 5-10 minutes per build on 2 cores.
# Exit status 0 when the digests are identical.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=$(realpath -m "${1:-$REPO/build-repro}")
rm -rf "$W"
mkdir -p "$W/src"
(cd "$REPO" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) | tar -C "$W/src" -xf -
SOURCE_DATE_EPOCH=$(git -C "$REPO" log -1 --format=%ct)
REVISION=$(git -C "$REPO" rev-parse HEAD)
git -C "$REPO" diff --quiet HEAD -- || REVISION=$REVISION-dirty
export SOURCE_DATE_EPOCH REVISION
for i in 1 2; do
    echo "== build $i"
    KEEP_ROOTFS=1 bash "$W/src/image/build.sh" "$W/build$i" "$W/image$i.tar" | tee "$W/build$i.out"
done
d1=$(cat "$W/image1.digest"); d2=$(cat "$W/image2.digest")
if [ "$d1" = "$d2" ]; then
    echo "reproducible: both builds give $d1"
    exit 0
fi
echo "NOT reproducible: $d1 vs $d2"
cmp -s "$W/build1/pmem-csi-driver" "$W/build2/pmem-csi-driver" || echo "the driver binaries differ"
for i in 1 2; do
    mkdir -p "$W/rootfs$i"
    tar -C "$W/rootfs$i" -xf "$W/image$i.rootfs.tar"
    tar --full-time -tvf "$W/image$i.rootfs.tar" | sort -k6 >"$W/rootfs$i.list"
done
echo "-- metadata differences (tar listings):"
diff "$W/rootfs1.list" "$W/rootfs2.list" | head -20 || true
echo "-- content differences:"
diff -rq --no-dereference "$W/rootfs1" "$W/rootfs2" | head -20 || true
exit 1
