#!/bin/bash
# install-deps.sh - install every build and test dependency on Debian 12 (root).
# Idempotent: apt runs only when something is missing. The QEMU test VM's own
# needs (qemu, a Debian kernel unpacked into a cache) are in test/vm/setup-host.sh.
# The test peers that Debian lacks (csi-sanity, kube-apiserver) come from
# ../shared/tools (scripts/test.sh unpacks them). kubectl is not installed here:
# Debian 12's kubernetes-client is 1.20, whose kustomize cannot build deploy/
# and which has no `kubectl create token`; this script says when it is missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PKGS=(
    # build
    meson ninja-build pkg-config gcc clang
    libgrpc-dev libnghttp2-dev protobuf-c-compiler libprotobuf-c-dev libprotobuf-dev protobuf-compiler
    libndctl-dev libdaxctl-dev libjansson-dev libblkid-dev libmicrohttpd-dev libcurl4-openssl-dev libyaml-dev
    libgnutls28-dev  # the operator's certificates (also pulled in by libmicrohttpd-dev)
    # checks: valgrind, LeakSanitizer/UBSan runtime for clang
    valgrind libclang-rt-14-dev
    # run time (the tools the driver executes) and the Python gRPC test client
    ndctl daxctl lvm2 e2fsprogs xfsprogs util-linux
    python3 python3-grpcio python3-protobuf protobuf-compiler-grpc python3-yaml
    # test VM
    qemu-system-x86 busybox-static kmod xz-utils zstd bc
    # tests against a real API server (test/k8s/apiserver.sh): etcd, certificates, readiness
    etcd-server openssl curl
    # promtool, for the alert rules of deploy/monitoring (test/deploy/check_monitoring.py)
    prometheus
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
command -v kubectl >/dev/null ||
    echo "install-deps: kubectl (v1.24 or newer) is not installed and Debian 12 has no usable one: the manifest and API server tests need it" >&2
