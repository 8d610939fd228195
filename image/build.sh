#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# image/build.sh [BUILDDIR] [OUT.tar] - build the pmem-csi-driver container image
# without a container engine: the driver and the operator with meson (release
# build), a minimal Debian root filesystem with mmdebstrap, and an OCI image archive
# written by this script (one layer, config, manifest, index: plain tar, gzip and
# sha256sum). One image for both, as 1.x: its entrypoint is the driver, and the
# operator's Deployment (deploy/operator/) runs /usr/local/bin/pmem-csi-operator.
#
#   BUILDDIR  meson build directory (default build-image, relative to the repo)
#   OUT.tar   OCI archive to write (default BUILDDIR/pmem-csi-driver.oci.tar)
#
# The result can be pushed with skopeo or imported with ctr, see docs/install.md.
# Run as root (mmdebstrap's root mode); it installs mmdebstrap with apt if missing.
#
# Environment:
#   IMAGE_NAME         image name recorded for `ctr images import` (default localhost/pmem-csi-driver)
#   IMAGE_TAG          tag (default v<meson project version>)
#   SUITE              Debian suite (default bookworm)
#   MIRROR             Debian mirror (default http://deb.debian.org/debian)
#   SECURITY_MIRROR    security mirror (default http://deb.debian.org/debian-security)
#   SOURCE_DATE_EPOCH  timestamp for every file and the image config (default: time of
#                      the last git commit)
#   REVISION           source revision for the image label (default: git HEAD, "-dirty"
#                      when tracked files are modified)
#   KEEP_ROOTFS=1      keep the root filesystem tarball next to OUT
#
# Reproducible: the same sources, the same mirror state and the same SOURCE_DATE_EPOCH
# give the same image digest (mmdebstrap clamps mtimes and sorts its tar; the layer is
# gzip'ed with -n; JSON is written in a fixed order). See image/check-reproducible.sh.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
BUILDDIR=${1:-build-image}
OUT=${2:-$BUILDDIR/pmem-csi-driver.oci.tar}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
IMAGE_NAME=${IMAGE_NAME:-localhost/pmem-csi-driver}
VERSION=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" meson.build | head -1)
IMAGE_TAG=${IMAGE_TAG:-v$VERSION}
if [ -z "${REVISION:-}" ]; then
    REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
    git diff --quiet HEAD -- 2>/dev/null || REVISION=$REVISION-dirty
fi
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

log() { echo "build-image: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap --mode=root)"

# --- tools -------------------------------------------------------------------
need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v meson >/dev/null || need+=(meson)
command -v ninja >/dev/null || need+=(ninja-build)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- the driver --------------------------------------------------------------
if [ ! -f "$BUILDDIR/build.ninja" ]; then
    log "configuring $BUILDDIR (release)"
    meson setup "$BUILDDIR" --buildtype=release >"$BUILDDIR.setup.log" 2>&1 ||
        { cat "$BUILDDIR.setup.log" >&2; die "meson setup failed (missing build dependencies? bash scripts/install-deps.sh)"; }
    rm -f "$BUILDDIR.setup.log"
else
    meson configure "$BUILDDIR" -Dbuildtype=release >/dev/null
fi
log "building pmem-csi-driver and pmem-csi-operator in $BUILDDIR"
ninja -C "$BUILDDIR" -j2 pmem-csi-driver pmem-csi-operator >&2
BIN=$(realpath "$BUILDDIR/pmem-csi-driver")
OPERATOR_BIN=$(realpath "$BUILDDIR/pmem-csi-operator")

# --- packages ------------------------------------------------------------------
# The tools the driver executes, and the packages that hold the shared libraries
# the binaries link (found with ldd/dpkg -S, so new dependencies come along).
# libcurl4: src/k8s/client.c loads libcurl.so.4 with dlopen(), so ldd does not list it.
PKGS=(ndctl lvm2 e2fsprogs xfsprogs util-linux libcurl4)
owner() { # owner FILE: the Debian package that ships FILE (merged /usr aware)
    local f=$1 alt
    case $f in /usr/*) alt=${f#/usr} ;; *) alt=/usr$f ;; esac
    { dpkg-query -S "$f" 2>/dev/null || dpkg-query -S "$alt" 2>/dev/null; } | head -1 | cut -d: -f1
}
while read -r lib; do
    p=$(owner "$lib")
    [ -n "$p" ] || p=$(owner "$(readlink -f "$lib")")
    [ -n "$p" ] || die "no Debian package ships $lib"
    PKGS+=("$p")
done < <(ldd "$BIN" "$OPERATOR_BIN" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u)
INCLUDE=$(printf '%s\n' "${PKGS[@]}" | sort -u | paste -sd, -)
log "packages: $INCLUDE"

# --- root filesystem -------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
OUT=$(realpath "$OUT")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pmem-csi-image.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOTFS=$WORK/rootfs.tar

log "mmdebstrap $SUITE (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH, $CREATED)"
export PMEM_CSI_BINARY=$BIN PMEM_CSI_OPERATOR_BINARY=$OPERATOR_BIN
# Docs, man pages, translations are not needed; license files stay.
mmdebstrap --mode=root --variant=essential --format=tar --skip=output/dev \
    --include="$INCLUDE" \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --dpkgopt='path-exclude=/usr/share/bash-completion/*' \
    --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/gconv/*' \
    --dpkgopt='path-exclude=/usr/sbin/xfs_scrub*' \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --customize-hook="$REPO/image/customize.sh" \
    "$SUITE" "$ROOTFS" \
    "deb $MIRROR $SUITE main" \
    "deb $MIRROR $SUITE-updates main" \
    "deb $SECURITY_MIRROR $SUITE-security main" \
    >"$WORK/mmdebstrap.log" 2>&1 ||
    { tail -40 "$WORK/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
grep -E '^customize:' "$WORK/mmdebstrap.log" >&2 || true

# --- OCI image layout ------------------------------------------------------------
L=$WORK/layout
mkdir -p "$L/blobs/sha256"
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
blob() { # blob FILE: move FILE into the layout under its digest, print the digest
    local d
    d=$(sha "$1")
    mv "$1" "$L/blobs/sha256/$d"
    echo "$d"
}

DIFF_ID=$(sha "$ROOTFS")
ROOTFS_SIZE=$(size "$ROOTFS")
gzip -n -6 <"$ROOTFS" >"$WORK/layer.tar.gz"
if [ "${KEEP_ROOTFS:-0}" = 1 ]; then mv "$ROOTFS" "${OUT%.tar}.rootfs.tar"; else rm -f "$ROOTFS"; fi
LAYER_SIZE=$(size "$WORK/layer.tar.gz")
LAYER=$(blob "$WORK/layer.tar.gz")

labels=$(printf '"org.opencontainers.image.created":"%s","org.opencontainers.image.licenses":"Apache-2.0","org.opencontainers.image.revision":"%s","org.opencontainers.image.title":"pmem-csi-driver","org.opencontainers.image.version":"%s"' \
    "$CREATED" "$REVISION" "$IMAGE_TAG")
printf '{"architecture":"amd64","config":{"Entrypoint":["/usr/local/bin/pmem-csi-driver"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Labels":{%s},"WorkingDir":"/"},"created":"%s","history":[{"created":"%s","created_by":"image/build.sh: mmdebstrap %s + pmem-csi-driver and pmem-csi-operator %s"}],"os":"linux","rootfs":{"diff_ids":["sha256:%s"],"type":"layers"}}' \
    "$labels" "$CREATED" "$CREATED" "$SUITE" "$IMAGE_TAG" "$DIFF_ID" >"$WORK/config.json"
CONFIG_SIZE=$(size "$WORK/config.json")
CONFIG=$(blob "$WORK/config.json")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}],"annotations":{%s}}' \
    "$CONFIG" "$CONFIG_SIZE" "$LAYER" "$LAYER_SIZE" "$labels" >"$WORK/manifest.json"
MANIFEST_SIZE=$(size "$WORK/manifest.json")
MANIFEST=$(blob "$WORK/manifest.json")

# io.containerd.image.name: the name `ctr images import` gives the image;
# org.opencontainers.image.ref.name: the tag (skopeo's oci-archive:FILE:TAG).
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s:%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$MANIFEST" "$MANIFEST_SIZE" "$IMAGE_NAME" "$IMAGE_TAG" "$IMAGE_TAG" >"$L/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$L/oci-layout"

find "$L" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    --format=pax --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$L" -cf "$OUT.tmp" oci-layout index.json blobs
mv "$OUT.tmp" "$OUT"
echo "sha256:$MANIFEST" >"${OUT%.tar}.digest"

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "image:        $IMAGE_NAME:$IMAGE_TAG"
echo "archive:      $OUT ($(mib "$(size "$OUT")"))"
echo "digest:       sha256:$MANIFEST (manifest; also in ${OUT%.tar}.digest)"
echo "config:       sha256:$CONFIG"
echo "layer:        sha256:$LAYER ($(mib "$LAYER_SIZE") compressed, $(mib "$ROOTFS_SIZE") uncompressed)"
echo "created:      $CREATED (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"
