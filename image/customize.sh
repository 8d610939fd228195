#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# image/customize.sh ROOT - mmdebstrap customize hook of image/build.sh (runs on the
# build host, ROOT is the image's root directory, /dev /proc /sys are mounted in it).
# Installs the driver and operator binaries ($PMEM_CSI_BINARY,
# $PMEM_CSI_OPERATOR_BINARY), configures LVM for a container
# without udev, drops packages the driver never runs, and checks the result:
# every ELF file finds its libraries and the tools start.
set -euo pipefail
ROOT=$1
say() { echo "customize: $*"; }
in_root() { chroot "$ROOT" "$@"; }

# 1. Packages pulled in only by xfsprogs' xfs_scrub (python3, ICU, ~70 MB; xfs_scrub
#    itself is path-excluded by build.sh): mkfs.xfs needs none of them. Purged one by
#    one, users before their libraries (maintainer scripts of python3 run python),
#    with --force-depends, so dpkg's database stays truthful about what is on disk
#    (xfsprogs' dependency on python3 and libicu72 is left unmet on purpose).
PURGE=(
    python3 python3.11 python3-minimal python3.11-minimal
    libpython3-stdlib libpython3.11-stdlib libpython3.11-minimal media-types
    libicu72 libsqlite3-0 libreadline8 readline-common libexpat1 libncursesw6
    libnsl2 libtirpc3 libtirpc-common
)
# (Kerberos, which python3's libnsl2 also pulls in, stays: libcurl links it.)
n=0
for p in "${PURGE[@]}"; do
    # shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
    in_root dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -q '^installed$' || continue
    out=$(in_root dpkg --purge --force-depends "$p" 2>&1) || { echo "$out"; say "purging $p failed"; exit 1; }
    n=$((n + 1))
done
say "purged $n packages not needed at run time"
rm -rf "$ROOT/usr/lib/python3" "$ROOT/usr/share/python3" "$ROOT/usr/lib/python3.11"

# 2. The driver and the operator (one image, as 1.x).
install -D -m 0755 "$PMEM_CSI_BINARY" "$ROOT/usr/local/bin/pmem-csi-driver"
install -D -m 0755 "$PMEM_CSI_OPERATOR_BINARY" "$ROOT/usr/local/bin/pmem-csi-operator"
install -d -m 0750 "$ROOT/var/lib/pmem-csi.intel.com"
install -d -m 0755 "$ROOT/csi"

# 3. LVM without udev, dbus, backups or dmeventd: the container has none of them,
#    and volume groups live on PMEM namespaces only the driver touches.
conf=$ROOT/etc/lvm/lvm.conf
set_lvm() { # set_lvm SECTION/KEY VALUE: uncomment the documented default and set it
    local key=${1#*/}
    grep -qE "^[[:space:]]*#?[[:space:]]*$key = " "$conf" || { say "lvm.conf has no $1"; exit 1; }
    sed -i -E "s|^([[:space:]]*)#?[[:space:]]*($key) = .*|\1\2 = $2|" "$conf"
}
set_lvm activation/udev_sync 0
set_lvm activation/udev_rules 0
set_lvm activation/monitoring 0
set_lvm devices/obtain_device_list_from_udev 0
set_lvm devices/multipath_component_detection 0
set_lvm devices/md_component_detection 0
set_lvm global/notify_dbus 0
set_lvm backup/backup 0
set_lvm backup/archive 0
keys=(activation/udev_sync activation/udev_rules activation/monitoring
    devices/obtain_device_list_from_udev devices/multipath_component_detection
    devices/md_component_detection global/notify_dbus backup/backup backup/archive)
got=$(LVM_SUPPRESS_FD_WARNINGS=1 in_root lvmconfig "${keys[@]}" 2>&1 | grep -c '=0$' || true)
[ "$got" = ${#keys[@]} ] || { LVM_SUPPRESS_FD_WARNINGS=1 in_root lvmconfig "${keys[@]}" || true; say "lvm.conf: settings not applied"; exit 1; }
say "lvm.conf: udev_sync udev_rules monitoring obtain_device_list_from_udev multipath/md_component_detection notify_dbus backup archive = 0"

# 4. Host-specific and leftover files (the container runtime provides resolv.conf,
#    hostname and hosts).
: >"$ROOT/etc/resolv.conf"
echo localhost >"$ROOT/etc/hostname"
rm -f "$ROOT"/var/lib/dpkg/*-old "$ROOT"/var/cache/debconf/*-old "$ROOT"/etc/*-
in_root ldconfig

# 5. Checks: every executable and library resolves its libraries; the tools run.
missing=0
while IFS= read -r -d '' f; do
    [ "$(head -c4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
    rel=/${f#"$ROOT"/}
    rc=0
    out=$(in_root /lib64/ld-linux-x86-64.so.2 --list "$rel" 2>&1) || rc=$?
    if [ "$rc" != 0 ] || grep -q 'not found' <<<"$out"; then
        say "unresolved libraries in $rel: $(grep -E 'not found|error' <<<"$out" | tr -s ' \t\n' ' ')"
        missing=$((missing + 1))
    fi
done < <(find "$ROOT/usr/bin" "$ROOT/usr/sbin" "$ROOT/usr/local/bin" -type f -perm -u+x -print0)
[ "$missing" = 0 ] || { say "$missing executables miss libraries"; exit 1; }
in_root /usr/local/bin/pmem-csi-driver -version >/dev/null
in_root /usr/local/bin/pmem-csi-operator -version >/dev/null
# libcurl is loaded with dlopen() (src/k8s/client.c), which the ldd check above cannot see.
out=$(in_root /lib64/ld-linux-x86-64.so.2 --list /usr/lib/x86_64-linux-gnu/libcurl.so.4 2>&1) &&
    ! grep -q 'not found' <<<"$out" || { say "libcurl.so.4 (loaded by the driver with dlopen) is missing or incomplete: $out"; exit 1; }
LVM_SUPPRESS_FD_WARNINGS=1 in_root lvm version >/dev/null 2>&1
in_root ndctl --version >/dev/null
in_root mkfs.ext4 -V >/dev/null 2>&1
in_root mkfs.xfs -V >/dev/null
say "all executables resolve their libraries; pmem-csi-driver, pmem-csi-operator, lvm, ndctl, mkfs.ext4, mkfs.xfs run"
