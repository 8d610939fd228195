#!/bin/bash
# kata-nvdimm-check.sh - inside the guest of test/vm/run-kata-nvdimm.sh: the
# guest's only NVDIMM is a Kata image; check what Kata's VM would get from it.
set -u
fail() { echo "kata-nvdimm: FAIL: $*"; exit 1; }
udevadm settle 2>/dev/null || true
for i in $(seq 50); do [ -b /dev/pmem0 ] && break; sleep 0.2; done
ndctl list -N -v 2>&1 | sed 's/^/kata-nvdimm: /'
[ -b /dev/pmem0 ] || fail "no /dev/pmem0: the kernel did not accept the DAX metadata"
mode=$(ndctl list -N | /usr/bin/python3 -c 'import json,sys; n=json.load(sys.stdin); n=n[0] if isinstance(n,list) else n; print(n.get("mode"))')
[ "$mode" = fsdax ] || fail "namespace mode is $mode, not fsdax (no pfn info block found)"
type=$(blkid -p -o value -s TYPE /dev/pmem0)
[ -n "$type" ] || fail "no filesystem on /dev/pmem0 (data offset wrong?)"
mkdir -p /mnt/kata
mount -t "$type" -o dax /dev/pmem0 /mnt/kata || fail "mount -o dax failed"
grep " /mnt/kata " /proc/mounts | sed 's/^/kata-nvdimm: /'
grep " /mnt/kata " /proc/mounts | grep -q "dax" || fail "mounted without dax"
cat /mnt/kata/kata-check 2>/dev/null | sed 's/^/kata-nvdimm: file: /'
grep -q "written through" /mnt/kata/kata-check 2>/dev/null || fail "the file written on the host is not there"
umount /mnt/kata
echo "kata-nvdimm: all checks passed ($type, fsdax, dax mount)"
