#!/bin/bash
# vm-run.sh - run a command inside a throw-away QEMU VM that has emulated NVDIMMs
# and sees the host's root filesystem (read-only, with a tmpfs overlay), so the
# freshly built binaries and the host's ndctl, lvm2 and mkfs run in the guest.
# Needs setup-host.sh once. The guest is Debian's stock kernel with a busybox
# initramfs built here (init = stage 1, stage2.sh = PID 1 that runs the command).
#
# usage: vm-run.sh [options] [--] command [args...]
#   --nvdimm SIZE[,label=SZ][,file=PATH]   add an NVDIMM (repeatable; default: one 4G, label=128K)
#                                          label=0 -> label-less DIMM (no namespace labels)
#   --no-nvdimm                            no NVDIMM at all (e.g. for --memmap tests)
#   --memmap SIZE@OFFSET                   add kernel param memmap=SIZE!OFFSET (legacy e820 pmem;
#                                          OFFSET+SIZE must lie inside --mem, e.g. --mem 2G --memmap 512M@1G)
#   --virtio-pmem SIZE[,file=PATH]         add a virtio-pmem-pci device (repeatable; the guest loads virtio_pmem)
#   --cxl-pmem SIZE[,label=SZ][,file=PATH] add a CXL type-3 device with SIZE of persistent memory behind a
#                                          pxb-cxl host bridge and a fixed memory window (q35 machine;
#                                          repeatable; the guest loads the cxl modules; label area default
#                                          256K, in PATH.lsa with file=)
#   --mem SIZE      guest RAM (default 1G)      --smp N     vCPUs (default: host cores, max 4)
#   --rwdir DIR     share host DIR read-write at the same path (repeatable)
#   --env VAR=VAL   set a variable for the command (repeatable)
#   --timeout S     kill the VM after S seconds (default 900) -> exit 124
#   --accel kvm|tcg (default: auto; PVM-type /dev/kvm is treated as unusable)
#   --append ARGS   extra kernel command-line args     --debug   show kernel boot log
#   --no-lvm-tweak  do not append udev-less settings to the guest's /etc/lvm/lvm.conf
#   --interactive   give the command the serial console as stdin/tty (default stdin=/dev/null)
#   --net           user-mode network: the guest is 10.0.2.15, the host's 127.0.0.1 is 10.0.2.2
#   --hostfwd PORT  with --net: the host's 127.0.0.1:PORT reaches the guest's PORT (repeatable)
# Exit status: the command's exit status; 124 timeout; 255 guest died / no status.
# Parsed as a whole before it runs (the braces), so that editing this file while
# it runs (a VM can take an hour) cannot derail the running copy.
{
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${PMEMVM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/pmemvm}
KDIR=${PMEMVM_KERNEL_DIR:-$CACHE/kernel}

MEM=1G; SMP=$(nproc); [ "$SMP" -gt 4 ] && SMP=4
NVDIMMS=(); NO_NVDIMM=0; MEMMAP=(); VPMEMS=(); CXLS=(); RWDIRS=(); ENVS=(); TIMEOUT=900
ACCEL=${PMEMVM_ACCEL:-auto}; APPEND=""; DEBUG=0; INTERACTIVE=0; LVM_TWEAK=1; NET=0; HOSTFWD=""
while [ $# -gt 0 ]; do
    case "$1" in
        --nvdimm) NVDIMMS+=("$2"); shift 2 ;;
        --no-nvdimm) NO_NVDIMM=1; shift ;;
        --memmap) MEMMAP+=("$2"); shift 2 ;;
        --virtio-pmem) VPMEMS+=("$2"); shift 2 ;;
        --cxl-pmem) CXLS+=("$2"); shift 2 ;;
        --mem) MEM=$2; shift 2 ;;
        --smp) SMP=$2; shift 2 ;;
        --rwdir) RWDIRS+=("$(realpath "$2")"); shift 2 ;;
        --env) ENVS+=("$2"); shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --accel) ACCEL=$2; shift 2 ;;
        --append) APPEND="$APPEND $2"; shift 2 ;;
        --debug) DEBUG=1; shift ;;
        --interactive) INTERACTIVE=1; shift ;;
        --no-lvm-tweak) LVM_TWEAK=0; shift ;;
        --net) NET=1; shift ;;
        --hostfwd) HOSTFWD="$HOSTFWD,hostfwd=tcp:127.0.0.1:$2-:$2"; shift 2 ;;
        --) shift; break ;;
        -*) echo "vm-run: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { set -- /bin/bash -i; INTERACTIVE=1; }
[ ${#NVDIMMS[@]} -eq 0 ] && [ $NO_NVDIMM = 0 ] && NVDIMMS=("4G,label=128K")

# ---- kernel ---------------------------------------------------------------
VMLINUZ=$(ls "$KDIR"/boot/vmlinuz-* 2>/dev/null | sort -V | tail -1 || true)
[ -n "$VMLINUZ" ] || { echo "vm-run: no kernel in $KDIR; run setup-host.sh" >&2; exit 2; }
KVER=${VMLINUZ##*/vmlinuz-}
KMODDIR=$KDIR/lib/modules/$KVER

# ---- initramfs (cached; rebuilt when the scripts or kernel change) -----------
MODULES=${PMEMVM_MODULES:-"virtio_pci 9pnet_virtio 9p overlay nfit nd_pmem nd_btt dax_pmem device_dax nd_e820 dm-mod ext4 xfs loop"}
key=$(cat "$HERE/init" "$HERE/stage2.sh" /bin/busybox <(echo "$KVER $MODULES") | md5sum | cut -c1-12)
INITRD=$CACHE/initramfs-$KVER-$key.cpio
if [ ! -s "$INITRD" ]; then
    mkdir -p "$CACHE"
    t=$(mktemp -d)
    mkdir -p "$t/bin"
    cp /bin/busybox "$t/bin/busybox"
    install -m755 "$HERE/init" "$t/init"
    install -m755 "$HERE/stage2.sh" "$t/stage2.sh"
    echo "$KVER" > "$t/kver"
    for m in $MODULES; do
        modprobe -C /dev/null -d "$KDIR" -S "$KVER" --show-depends "$m"
    done | awk '$1=="insmod" && !seen[$2]++ {print $2}' | while read -r ko; do
        rel=${ko#"$KMODDIR"/}
        mkdir -p "$t/lib/modules/$KVER/$(dirname "$rel")"
        case "$ko" in
            *.ko.xz) xz -dc "$ko" > "$t/lib/modules/$KVER/${rel%.xz}"; rel=${rel%.xz} ;;
            *.ko.zst) zstd -qdc "$ko" > "$t/lib/modules/$KVER/${rel%.zst}"; rel=${rel%.zst} ;;
            *) cp "$ko" "$t/lib/modules/$KVER/$rel" ;;
        esac
        echo "$rel" >> "$t/modules.list"
    done
    (cd "$t" && find . | busybox cpio -o -H newc 2>/dev/null) > "$INITRD.tmp"
    mv "$INITRD.tmp" "$INITRD"
    find "$CACHE" -maxdepth 1 -name 'initramfs-*.cpio' ! -path "$INITRD" -delete
    rm -rf "$t"
fi

# ---- accelerator ------------------------------------------------------------
if [ "$ACCEL" = auto ]; then
    ACCEL=tcg
    # /sys/module/kvm_pvm: "PVM" nested KVM (e.g. Firecracker-style sandboxes) only runs
    # PVM-enabled guest kernels; a stock kernel crawls there, so fall back to TCG.
    if [ -r /dev/kvm ] && [ -w /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ] \
       && grep -qE '(vmx|svm)' /proc/cpuinfo 2>/dev/null; then ACCEL=kvm; fi
fi
if [ "$ACCEL" = kvm ]; then ACCEL_OPTS=(-accel kvm -cpu host); KIMG=$VMLINUZ
else
    ACCEL_OPTS=(-accel tcg,thread=multi,tb-size=256 -cpu "${PMEMVM_CPU:-qemu64}")
    KIMG=$VMLINUZ
    # Uncompressed ELF vmlinux boots through PVH and skips the (slow under TCG) xz decompression.
    VMLINUX=$CACHE/vmlinux-$KVER
    if [ ! -s "$VMLINUX" ]; then
        # find the compressed payload (xz for Debian 12; zstd as a fallback) and unpack it
        for fmt in "xz:"$'\xfd''7zXZ' "zstd:"$'\x28\xb5\x2f\xfd'; do
            off=$(LC_ALL=C grep -abo "${fmt#*:}" "$VMLINUZ" | head -1 | cut -d: -f1 || true)
            [ -n "$off" ] || continue
            tail -c +$((off+1)) "$VMLINUZ" | ${fmt%%:*} -qdc > "$VMLINUX.tmp" 2>/dev/null || true
            if [ "$(head -c4 "$VMLINUX.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then mv "$VMLINUX.tmp" "$VMLINUX"; break; fi
            rm -f "$VMLINUX.tmp"
        done
    fi
    [ -s "$VMLINUX" ] && [ "${PMEMVM_BZIMAGE:-0}" != 1 ] && KIMG=$VMLINUX
fi

# ---- per-run directory: config, command, exit status, NVDIMM backing files ----
RUN=$(mktemp -d "${PMEMVM_TMPDIR:-${TMPDIR:-/tmp}}/pmemvm.XXXXXX")
chmod 755 "$RUN"
QPID=""
cleanup() { [ -n "$QPID" ] && kill "$QPID" 2>/dev/null; rm -rf "$RUN"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

{
    echo "PMEMVM_CWD=$(printf %q "$PWD")"
    echo "PMEMVM_KMODDIR=$(printf %q "$KMODDIR")"
    echo "PMEMVM_RWDIRS=$(printf %q "${RWDIRS[*]:-}")"
    echo "PMEMVM_INTERACTIVE=$INTERACTIVE"
    [ $LVM_TWEAK = 1 ] && echo "PMEMVM_LVM_NOUDEV=1"
    if [ $NET = 1 ]; then echo "PMEMVM_NET=1"; fi
} > "$RUN/config"

QARGS=(-nodefaults -no-user-config -display none -no-reboot
       -serial stdio -smp "$SMP" "${ACCEL_OPTS[@]}"
       -kernel "$KIMG" -initrd "$INITRD"
       -fsdev local,id=fsroot,path=/,security_model=none,readonly=on,multidevs=remap
       -device virtio-9p-pci,fsdev=fsroot,mount_tag=hostroot
       -fsdev local,id=fsout,path="$RUN",security_model=none
       -device virtio-9p-pci,fsdev=fsout,mount_tag=pmemvm-out)
[ $NET = 1 ] && QARGS+=(-netdev "user,id=net0$HOSTFWD" -device virtio-net-pci,netdev=net0)
i=0
for d in "${RWDIRS[@]:-}"; do
    [ -n "$d" ] || continue
    QARGS+=(-fsdev local,id=fsrw$i,path="$d",security_model=none,multidevs=remap
            -device virtio-9p-pci,fsdev=fsrw$i,mount_tag=pmemvm-rw$i)
    i=$((i+1))
done

to_bytes() { numfmt --from=iec "${1^^}"; }
total=0; n=0
for spec in "${NVDIMMS[@]:-}"; do
    [ -n "$spec" ] || continue
    IFS=, read -r -a parts <<< "$spec"
    size=${parts[0]}; label=128K; file=""
    for p in "${parts[@]:1}"; do
        case "$p" in label=*) label=${p#label=} ;; file=*) file=${p#file=} ;; esac
    done
    [ -n "$file" ] || file=$RUN/nvdimm$n.img
    # QEMU carves the label area out of the END of the backend and places the
    # next DIMM right after the guest-visible part: backend = SIZE + label so
    # that every region stays 16M aligned (else ndctl create-namespace fails
    # with "namespaceN.0 misaligned to 16M" on the 2nd DIMM).
    bytes=$(to_bytes "$size"); lbytes=0
    [ "$label" != 0 ] && lbytes=$(to_bytes "$label")
    bytes=$((bytes + lbytes))
    [ -e "$file" ] || truncate -s "$bytes" "$file"
    dev="nvdimm,id=nv$n,memdev=nvmem$n"
    [ "$label" != 0 ] && dev="$dev,label-size=$label"
    # PMEMVM_NVDIMM_PREALLOC=1: QEMU touches the backing file up front. Otherwise the
    # guest's first write to each page costs a host page fault (under TCG about
    # 9 s per GiB), which benchmarks of erasing would measure instead of the erase.
    pre=""; [ "${PMEMVM_NVDIMM_PREALLOC:-0}" = 1 ] && pre=",prealloc=on"
    QARGS+=(-object memory-backend-file,id=nvmem$n,share=on,mem-path="$file",size="$bytes"$pre
            -device "$dev")
    total=$((total + bytes)); n=$((n+1))
done
# virtio-pmem: a PCI device whose memory QEMU maps into the guest's device-memory area
# (like a DIMM: it needs a slot and counts against maxmem); the guest sees it through
# virtio_pmem, which registers its own nvdimm bus with one label-less region.
nv=$n; v=0; GUEST_MODS=""
for spec in "${VPMEMS[@]:-}"; do
    [ -n "$spec" ] || continue
    IFS=, read -r -a parts <<< "$spec"
    size=${parts[0]}; file=""
    for p in "${parts[@]:1}"; do case "$p" in file=*) file=${p#file=} ;; esac; done
    [ -n "$file" ] || file=$RUN/vpmem$v.img
    bytes=$(to_bytes "$size")
    [ -e "$file" ] || truncate -s "$bytes" "$file"
    QARGS+=(-object memory-backend-file,id=vpmem$v,share=on,mem-path="$file",size="$bytes"
            -device virtio-pmem-pci,memdev=vpmem$v,id=vpmemdev$v)
    total=$((total + bytes)); n=$((n+1)); v=$((v+1))
done
[ $v -gt 0 ] && GUEST_MODS="virtio_pmem"
# CXL: q35 with cxl=on; one pxb-cxl host bridge, one root port and one type-3 device per
# --cxl-pmem (persistent memdev + label storage area), and one fixed memory window
# (CFMWS) over the bridge big enough for all of them. The memory sits behind the
# window, not in the device-memory area: no DIMM slot.
c=0; cxltotal=0; CXLARGS=()
for spec in "${CXLS[@]:-}"; do
    [ -n "$spec" ] || continue
    IFS=, read -r -a parts <<< "$spec"
    size=${parts[0]}; lsa=256K; file=""
    for p in "${parts[@]:1}"; do case "$p" in label=*) lsa=${p#label=} ;; file=*) file=${p#file=} ;; esac; done
    [ -n "$file" ] || file=$RUN/cxl$c.img
    bytes=$(to_bytes "$size")
    [ -e "$file" ] || truncate -s "$bytes" "$file"
    [ -e "$file.lsa" ] || truncate -s "$(to_bytes "$lsa")" "$file.lsa"
    [ $c = 0 ] && CXLARGS+=(-device pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1)
    CXLARGS+=(-object memory-backend-file,id=cxlmem$c,share=on,mem-path="$file",size="$bytes"
              -object memory-backend-file,id=cxllsa$c,share=on,mem-path="$file.lsa",size="$(to_bytes "$lsa")"
              -device cxl-rp,port=$c,bus=cxl.1,id=cxlrp$c,chassis=0,slot=$((2 + c))
              -device cxl-type3,bus=cxlrp$c,memdev=cxlmem$c,lsa=cxllsa$c,id=cxlpmem$c)
    cxltotal=$((cxltotal + bytes)); c=$((c+1))
done
# A host bridge with a single root port may have no HDM decoder of its own (CXL 3.0
# "passthrough"), and Linux 6.1 then leaves it unprogrammed; QEMU 7.2 still routes by
# that decoder and, with it unprogrammed, drops every write to the window and reads
# zeros (QEMU 8.0 models the passthrough). A second, empty root port makes Linux
# program the host bridge's decoder.
[ $c = 1 ] && CXLARGS+=(-device cxl-rp,port=1,bus=cxl.1,id=cxlrp1,chassis=0,slot=3)
MACHINE=pc
if [ $c -gt 0 ]; then
    # The window must be a multiple of 256M and cover every device (interleave 1).
    fmw=$(( (cxltotal + 256*1024*1024 - 1) / (256*1024*1024) * 256 ))
    MACHINE=q35,cxl=on
    CXLARGS+=(-M "cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=${fmw}M")
    GUEST_MODS="$GUEST_MODS cxl_acpi cxl_pci cxl_mem cxl_pmem"
fi
if [ $n -gt 0 ]; then
    maxmem=$(( $(to_bytes "$MEM") + total ))
    mach=$MACHINE; [ $nv -gt 0 ] && mach=$mach,nvdimm=on
    QARGS+=(-machine "$mach" -m "$MEM,slots=$((n+1)),maxmem=$maxmem")
else
    QARGS+=(-machine "$MACHINE" -m "$MEM")
fi
QARGS+=("${CXLARGS[@]}")

{
    echo "export HOME=/root TERM=${TERM:-dumb} LANG=C.UTF-8 PMEMVM=1"
    for e in "${ENVS[@]:-}"; do [ -n "$e" ] && echo "export $(printf %q "$e")"; done
    # Drivers of the devices above that the initramfs does not load (loaded here, so the
    # initramfs and its cache key stay the same for every variant).
    if [ -n "$GUEST_MODS" ]; then echo "for m in $GUEST_MODS; do /sbin/modprobe \$m || echo \"vm-run: modprobe \$m failed\" >&2; done"; fi
    printf '%q ' "$@"; echo
} > "$RUN/cmd"
CMDLINE="console=ttyS0 panic=-1 oops=panic rdinit=/init mitigations=off tsc=reliable no_timer_check"
[ $DEBUG = 1 ] && CMDLINE="$CMDLINE pmemvm.debug=1" || CMDLINE="$CMDLINE quiet loglevel=4"
for mm in "${MEMMAP[@]:-}"; do [ -n "$mm" ] && CMDLINE="$CMDLINE memmap=${mm/@/!}"; done
CMDLINE="$CMDLINE $APPEND"
QARGS+=(-append "$CMDLINE")
[ -n "${PMEMVM_QEMU_EXTRA:-}" ] && QARGS+=($PMEMVM_QEMU_EXTRA)

[ "${PMEMVM_PRINT_QEMU:-0}" = 1 ] && echo "qemu-system-x86_64 ${QARGS[*]}" >&2
if [ $INTERACTIVE = 1 ]; then
    # serial console <-> this terminal (Ctrl-C kills QEMU)
    timeout --foreground "$TIMEOUT" qemu-system-x86_64 "${QARGS[@]}" || qrc=$?
else
    # No TTY / no stdin (CI): serial input from /dev/null.
    set +e
    timeout "$TIMEOUT" qemu-system-x86_64 "${QARGS[@]}" < /dev/null &
    QPID=$!
    wait $QPID; qrc=$?; QPID=""
    set -e
fi
qrc=${qrc:-0}
if [ "$qrc" = 124 ]; then echo "vm-run: TIMEOUT after ${TIMEOUT}s" >&2; exit 124; fi
if [ -s "$RUN/exitcode" ]; then exit "$(cat "$RUN/exitcode")"; fi
echo "vm-run: guest did not report an exit status (qemu rc=$qrc)" >&2
exit 255
}
