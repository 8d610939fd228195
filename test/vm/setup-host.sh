#!/bin/bash
# setup-host.sh - install what the QEMU test VM needs on a Debian 12 host (root).
#
# Idempotent: packages are installed only when missing, and the Debian kernel is
# downloaded once and unpacked into $PMEMVM_CACHE/kernel. Nothing touches /boot:
# the kernel package is not installed (no initramfs-tools, no update-initramfs).
#
# Environment:
#   PMEMVM_CACHE         cache dir (default ${XDG_CACHE_HOME:-~/.cache}/pmemvm)
#   PMEMVM_FORCE_UPDATE  1 = run apt-get update and re-fetch the kernel
set -euo pipefail
CACHE=${PMEMVM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/pmemvm}
export DEBIAN_FRONTEND=noninteractive

# VM runtime: qemu, busybox for the initramfs, kmod for module dependency
# resolution, xz/zstd to unpack the kernel image.
# In the guest (it runs the host's root filesystem): the PMEM and storage tools
# the driver calls, and the Python gRPC client the test suite uses.
PKGS="qemu-system-x86 busybox-static kmod xz-utils zstd util-linux
      ndctl daxctl lvm2 xfsprogs e2fsprogs
      python3 python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ] || [ "${PMEMVM_FORCE_UPDATE:-0}" = 1 ]; then
    apt-get update -qq
    # --no-install-recommends: qemu would otherwise pull in GUI and audio stacks
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

kdir=$CACHE/kernel
if ! ls "$kdir"/boot/vmlinuz-* >/dev/null 2>&1 || [ "${PMEMVM_FORCE_UPDATE:-0}" = 1 ]; then
    [ -n "$(apt-cache policy linux-image-amd64 2>/dev/null | grep Candidate)" ] || apt-get update -qq
    # linux-image-amd64 is a metapackage: resolve the real image package.
    kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
    [ -n "$kpkg" ] || { echo "setup-host: cannot resolve the Debian kernel package" >&2; exit 1; }
    dl=$(mktemp -d)
    trap 'rm -rf "$dl"' EXIT
    # apt-get download would drop privileges to _apt, which may not reach $dl
    (cd "$dl" && apt-get download -qq -o APT::Sandbox::User=root "$kpkg")
    mkdir -p "$CACHE"
    rm -rf "$kdir.new"
    dpkg-deb -x "$dl"/"$kpkg"_*.deb "$kdir.new"
    kver=$(ls "$kdir.new/lib/modules")
    depmod -b "$kdir.new" "$kver"
    rm -rf "$kdir"
    mv "$kdir.new" "$kdir"
fi
echo "pmemvm host setup OK: kernel $(ls "$kdir/lib/modules"), cache $CACHE"
