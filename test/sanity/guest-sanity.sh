#!/bin/bash
# guest-sanity.sh - run INSIDE the test VM: csi-sanity against the driver.
# usage: guest-sanity.sh DRIVER CSI_SANITY [lvm|direct] [extra csi-sanity args...]
# Prints ginkgo's output and a final "N passed, N failed" line.
set -uo pipefail
DRIVER=$1 SANITY=$2 MODE=${3:-lvm}; shift 2; [ $# -gt 0 ] && shift
export LVM_SUPPRESS_FD_WARNINGS=1
# Fresh emulated DIMMs have blank labels: one namespace per region needs labels.
ndctl disable-region all >/dev/null && ndctl init-labels -f all >/dev/null && ndctl enable-region all >/dev/null
W=$(mktemp -d /tmp/sanity.XXXXXX)
mkdir -p "$W/state" "$W/run"
"$DRIVER" -mode=node -deviceManager="$MODE" -nodeid=sanity-node -endpoint="unix://$W/run/csi.sock" \
    -statePath="$W/state" -v=2 2>"$W/driver.log" &
DPID=$!
for _ in $(seq 1 300); do grep -q "PMEM-CSI ready" "$W/driver.log" && break; sleep 0.2; done
grep "PMEM-CSI ready" "$W/driver.log" || { cat "$W/driver.log"; echo "0 passed, 1 failed"; exit 1; }
# 64 MiB volumes: the VM has 2 x 4 GiB of PMEM; csi-sanity's default is 10 GiB.
"$SANITY" -csi.endpoint="unix://$W/run/csi.sock" -csi.testvolumesize=$((64 << 20)) \
    -csi.stagingdir="$W/staging" -csi.mountdir="$W/mount" -ginkgo.no-color "$@" 2>&1 | tee "$W/sanity.out"
kill -TERM $DPID; wait $DPID
echo "== driver log (errors):"; grep -E '^E' "$W/driver.log" | tail -20
echo "== LVs left: $(lvs --noheadings 2>/dev/null | wc -l); volume and snapshot namespaces left: $(ndctl list -N 2>/dev/null | grep -c "\"name\":\"\([^\"]*-\|snap\.\)[0-9a-f]\{56\}\"")"
# ginkgo: "Ran 58 of 92 Specs ... SUCCESS! -- 58 Passed | 0 Failed | 1 Pending | 33 Skipped"
line=$(grep -aE '[0-9]+ Passed \| [0-9]+ Failed' "$W/sanity.out" | tail -1)
p=$(sed -E 's/.* ([0-9]+) Passed.*/\1/' <<<"$line"); f=$(sed -E 's/.* ([0-9]+) Failed.*/\1/' <<<"$line")
[ -n "$line" ] || { p=0; f=1; }
# A run that passed nothing tested nothing (a driver without capabilities, a wrong flag).
[ "$p" != 0 ] || { echo "FAIL - csi-sanity ran no spec"; f=$((f + 1)); }
echo "$p passed, $f failed"
[ "$f" = 0 ]
