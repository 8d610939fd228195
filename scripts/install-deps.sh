#!/bin/bash
# install-deps.sh - install every build and test dependency on Debian 12 (root).
# Idempotent: apt runs only when something is missing. The QEMU test VM's own
# needs (qemu, a Debian kernel unpacked into a cache) are in test/vm/setup-host.sh.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PKGS=(
    # build
    meson ninja-build pkg-config gcc clang
    libgrpc-dev protobuf-c-compiler libprotobuf-c-dev libprotobuf-dev protobuf-compiler
    libndctl-dev libdaxctl-dev libjansson-dev libblkid-dev libmicrohttpd-dev libcurl4-openssl-dev libyaml-dev
    # checks: valgrind, LeakSanitizer/UBSan runtime for clang
    valgrind libclang-rt-14-dev
    # run time (the tools the driver executes) and the Python gRPC test client
    ndctl daxctl lvm2 e2fsprogs xfsprogs util-linux
    python3 python3-grpcio python3-protobuf protobuf-compiler-grpc python3-yaml
    # test VM
    qemu-system-x86 busybox-static kmod xz-utils zstd bc
)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-deps: all ${#PKGS[@]} packages present"
