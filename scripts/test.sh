#!/bin/bash
# test.sh - the whole test suite, from a fresh Debian 12 machine (root):
#   dependencies, gcc and clang builds with --werror, unit tests, the unit tests
#   under ASan+UBSan and under valgrind, the fuzz corpora, the deployment
#   manifests, the in-guest CSI suite on emulated PMEM (QEMU), csi-sanity in the
#   guest in LVM and in direct mode, and the tests against a real Kubernetes API
#   server (manifest dry-runs, rescheduler with the RBAC of deploy/, conversion
#   with a node patch), and end to end on a one-node cluster whose node is a
#   guest (the manifests and the operator path, test/e2e/).
# Ends with one line "N passed, N failed"; exit status 1 if anything failed.
#
# The test peers (csi-sanity, kube-apiserver, ...) are not in Debian: they come
# from ../shared/tools beside the repository, whose unpack.sh decompresses them
# into a cache outside the repository. A missing peer or tool (that folder,
# a binary, kubectl, etcd) is a failed test when CI=true, a skipped one (with
# the reason) otherwise.
#
# Environment:
#   CI=true            a missing test peer or tool fails instead of being skipped
#   SKIP_VM=1          leave out the QEMU parts (they are counted as skipped)
#   PMEM_CSI_TOOLS=DIR where unpack.sh and the compressed peers are (default: ../shared/tools
#                      beside the repository)
#   PMEM_CSI_TOOLS_CACHE=DIR  where they are unpacked (default ~/.cache/pmem-csi-tools)
#   CSI_SANITY, KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER, KUBELET,
#   CSI_PROVISIONER, CSI_NODE_DRIVER_REGISTRAR=PATH  a binary of your own instead of
#                      the unpacked one (an explicit variable always wins)
#   STRESS_WORKERS / STRESS_VOLUMES   size of the in-guest stress test (default 10 x 20; full: 10 x 50)
#   CRASH_ITERATIONS   SIGKILL injections per device mode (default here 60; the test's own
#                      default, 200, is the soak: CRASH_ITERATIONS=200 bash scripts/test.sh)
#   CONN_STOP_ROUNDS   SIGTERMs under load in the connections test (default here 10; soak: 20+)
#   SKIP_E2E=1         leave out the end-to-end cluster (counted as skipped)
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
PASSED=0; FAILED=0; SKIPPED=0
# The CI budget is 90 minutes on 2 cores with the guest under TCG: the long
# loops run shorter here than their soak defaults (see above).
export CRASH_ITERATIONS=${CRASH_ITERATIONS:-60} CONN_STOP_ROUNDS=${CONN_STOP_ROUNDS:-10}
LOG=${TEST_LOG_DIR:-$REPO/build-logs}
mkdir -p "$LOG"
T0=$(date +%s)

result() { # result ok|fail|skip NAME [why]
    case $1 in
        ok) PASSED=$((PASSED+1)); echo "ok - $2" ;;
        fail) FAILED=$((FAILED+1)); echo "FAIL - $2${3:+ ($3)}" ;;
        skip) SKIPPED=$((SKIPPED+1)); echo "SKIP - $2${3:+ ($3)}" ;;
    esac
}
# Add a component's "N passed, N failed[, N skipped]" to the totals (a missing line is a failure).
absorb() { # absorb NAME LOGFILE STATUS
    local line p f
    line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed' "$2" | tail -1)
    if [ -z "$line" ]; then result fail "$1" "no summary line, status $3; see $2"; return; fi
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
    PASSED=$((PASSED+p)); FAILED=$((FAILED+f))
    if [[ $line =~ ([0-9]+)\ skipped ]]; then SKIPPED=$((SKIPPED+BASH_REMATCH[1])); fi
    if [ "$3" != 0 ] && [ "$f" = 0 ]; then result fail "$1" "status $3 but no failed test; see $2"; fi
    echo "== $1: $line"
}
# A test that cannot run for want of a tool: a failure in CI, else a skip.
missing() { # missing NAME WHY
    if [ "${CI:-}" = true ]; then result fail "$1" "$2; CI=true: a missing tool is a failure"
    else result skip "$1" "$2"; fi
}
step() { # step NAME LOGFILE cmd...: run, pass/fail by exit status, show the tail on failure
    local name=$1 log=$2; shift 2
    if "$@" >"$log" 2>&1; then result ok "$name"; else result fail "$name" "see $log"; tail -20 "$log" | sed 's/^/    /'; fi
}

echo "== dependencies"
bash scripts/install-deps.sh || { echo "0 passed, 1 failed"; exit 1; }
[ "${SKIP_VM:-0}" = 1 ] || bash test/vm/setup-host.sh >/dev/null || { echo "FAIL - VM host setup"; echo "0 passed, 1 failed"; exit 1; }

echo "== test peers (csi-sanity, Kubernetes binaries) from ${PMEM_CSI_TOOLS:-../shared/tools}"
TOOLS_SRC=${PMEM_CSI_TOOLS:-$REPO/../shared/tools}
# A clone elsewhere than beside shared/ (e.g. a CI checkout directory) still finds them.
if [ -z "${PMEM_CSI_TOOLS:-}" ] && [ ! -f "$TOOLS_SRC/unpack.sh" ] && [ -f /work/shared/tools/unpack.sh ]; then
    TOOLS_SRC=/work/shared/tools
fi
TOOLS_CACHE=${PMEM_CSI_TOOLS_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/pmem-csi-tools}
TOOLS=
if [ -f "$TOOLS_SRC/unpack.sh" ]; then
    # unpack.sh checks every binary against SHA256SUMS and prints the folder.
    if TOOLS=$(bash "$TOOLS_SRC/unpack.sh" "$TOOLS_CACHE" 2>"$LOG/tools.log" | tail -1) && [ -d "$TOOLS" ]; then
        result ok "test peers unpacked from $TOOLS_SRC into $TOOLS"
    else
        TOOLS=; result fail "unpack test peers from $TOOLS_SRC" "see $LOG/tools.log"; cat "$LOG/tools.log"
    fi
else
    missing "test peers" "no $TOOLS_SRC/unpack.sh (set PMEM_CSI_TOOLS to the folder that has it)"
fi
# Default each peer's variable to the unpacked binary; an explicit one wins.
peer() { # peer VAR FILE
    if [ -z "${!1:-}" ] && [ -n "$TOOLS" ] && [ -x "$TOOLS/$2" ]; then export "$1=$TOOLS/$2"; fi
    echo "   $1=${!1:-(none)}"
}
peer CSI_SANITY csi-sanity
peer KUBE_APISERVER kube-apiserver
peer KUBE_CONTROLLER_MANAGER kube-controller-manager
peer KUBE_SCHEDULER kube-scheduler
peer KUBELET kubelet
peer CSI_PROVISIONER csi-provisioner
peer CSI_NODE_DRIVER_REGISTRAR csi-node-driver-registrar
peer PMEM_CSI_UPSTREAM pmem-csi-driver-v0.6.52

echo "== builds"
build() { # build DIR CC [meson options...]
    local dir=$1 cc=$2; shift 2
    if [ ! -f "$dir/build.ninja" ]; then CC=$cc meson setup "$dir" --werror "$@" >"$LOG/$(basename "$dir")-setup.log" 2>&1 || return 1; fi
    ninja -C "$dir" -j2
}
step "build with gcc, --werror" "$LOG/build-gcc.log" build build gcc
step "build with clang, --werror" "$LOG/build-clang.log" build build-clang clang
step "build with clang, ASan+UBSan" "$LOG/build-asan.log" build build-asan clang -Db_sanitize=address,undefined -Db_lundef=false

echo "== unit tests"
for t in build/test/unit/test-*; do
    [ -f "$t" ] && [ -x "$t" ] || continue
    n=$(basename "$t")
    "$t" >"$LOG/$n.log" 2>&1; rc=$?
    absorb "unit $n" "$LOG/$n.log" $rc
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
        "build-asan/test/unit/$n" >"$LOG/$n-asan.log" 2>&1 && result ok "$n under ASan+UBSan" \
        || { result fail "$n under ASan+UBSan" "see $LOG/$n-asan.log"; tail -20 "$LOG/$n-asan.log"; }
    valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
        --show-leak-kinds=definite,indirect "$t" >"$LOG/$n-valgrind.log" 2>&1 && result ok "$n under valgrind" \
        || { result fail "$n under valgrind" "see $LOG/$n-valgrind.log"; tail -20 "$LOG/$n-valgrind.log"; }
done

echo "== the gRPC server at the wire (curl over HTTP/2 against the driver on this host), also under ASan+UBSan"
for b in build build-asan; do
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 bash test/transport/check-transport.sh "$b/pmem-csi-driver" \
        >"$LOG/transport-$b.log" 2>&1
    absorb "transport wire checks ($b)" "$LOG/transport-$b.log" $?
done

echo "== fuzz corpora (test/fuzz), also under ASan+UBSan: one test per corpus"
for t in build/test/fuzz/fuzz-*; do
    n=$(basename "$t")
    [ -f "$t" ] && [ -x "$t" ] && [ "${n%-libfuzzer}" = "$n" ] || continue
    "$t" "test/fuzz/corpus/${n#fuzz-}" >"$LOG/$n.log" 2>&1
    absorb "$n corpus" "$LOG/$n.log" $?
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "build-asan/test/fuzz/$n" "test/fuzz/corpus/${n#fuzz-}" \
        >"$LOG/$n-asan.log" 2>&1 && result ok "$n corpus under ASan+UBSan" \
        || { result fail "$n corpus under ASan+UBSan" "see $LOG/$n-asan.log"; tail -20 "$LOG/$n-asan.log"; }
done

echo "== deployment manifests"
if command -v kubectl >/dev/null; then
    # The dry-runs against a server are in the API server group below.
    CHECK_MANIFESTS_DRY_RUN=elsewhere bash test/deploy/check-manifests.sh >"$LOG/manifests.log" 2>&1; rc=$?
    grep -aE '^(FAIL|SKIP) - ' "$LOG/manifests.log" | sed 's/^/    /'
    absorb "deployment manifests" "$LOG/manifests.log" $rc
else
    missing "deployment manifests" "kubectl is not installed (Debian 12's kubernetes-client 1.20 is too old; see DEVELOPERS.md)"
fi

# The manifest dry-runs and the rescheduler run on the host; the conversion with
# a node patch runs in a guest (skipped with SKIP_VM=1).
echo "== against a real Kubernetes API server (kube-apiserver, etcd, kubectl)"
bash test/k8s/run-k8s-tests.sh build >"$LOG/k8s.log" 2>&1; rc=$?
grep -aE '^(ok|FAIL|SKIP) - ' "$LOG/k8s.log" | sed 's/^/    /'
absorb "real API server" "$LOG/k8s.log" $rc

echo "== documentation against the code (flags, metrics, parameters)"
/usr/bin/python3 test/docs/check_docs.py build >"$LOG/docs.log" 2>&1; rc=$?
grep -aE '^(FAIL|SKIP) - ' "$LOG/docs.log" | sed 's/^/    /'
absorb "documentation against the code" "$LOG/docs.log" $rc

if [ "${SKIP_VM:-0}" = 1 ]; then
    for t in "in-guest CSI suite" "Kata images as NVDIMMs" "raw namespace conversion" "kinds of PMEM" \
             "csi-sanity (lvm mode)" "csi-sanity (direct mode)"; do
        result skip "$t" "SKIP_VM=1"
    done
else
    echo "== in-guest CSI suite (QEMU, emulated NVDIMMs)"
    bash test/vm/run-guest-suite.sh build >"$LOG/guest.log" 2>&1; rc=$?
    grep -aE '^(ok|FAIL|SKIP) - ' "$LOG/guest.log" | sed 's/^/    /'
    absorb "in-guest CSI suite" "$LOG/guest.log" $rc
    echo "== Kata Containers images as NVDIMMs (a second guest boots each image the in-guest suite made)"
    bash test/vm/run-kata-nvdimm.sh build/test-results/guest/kata/*.img >"$LOG/kata-nvdimm.log" 2>&1; rc=$?
    grep -aE '^(ok|FAIL|SKIP) - ' "$LOG/kata-nvdimm.log" | sed 's/^/    /'
    absorb "Kata images as NVDIMMs" "$LOG/kata-nvdimm.log" $rc
    echo "== raw namespace conversion in a guest with a label-less NVDIMM (API stand-in)"
    bash test/vm/run-convert.sh build >"$LOG/convert.log" 2>&1; rc=$?
    grep -aE '^(ok|FAIL|SKIP) - ' "$LOG/convert.log" | sed 's/^/    /'
    absorb "raw namespace conversion" "$LOG/convert.log" $rc
    echo "== every kind of PMEM: label-less NVDIMM, memmap=, virtio-pmem, CXL (one guest)"
    t=$(date +%s)
    bash test/vm/run-kinds.sh build >"$LOG/kinds.log" 2>&1; rc=$?
    grep -aE '^(ok|FAIL|SKIP) - ' "$LOG/kinds.log" | sed 's/^/    /'
    echo "    ($(( $(date +%s) - t )) s)"
    absorb "kinds of PMEM" "$LOG/kinds.log" $rc
    for mode in lvm direct; do
        if [ -n "${CSI_SANITY:-}" ] && [ -x "$CSI_SANITY" ]; then
            echo "== csi-sanity ($mode mode, in the guest)"
            t=$(date +%s)
            bash test/sanity/run-sanity.sh build "$CSI_SANITY" $mode >"$LOG/sanity-$mode.log" 2>&1; rc=$?
            grep -aE '^\[FAIL\]|Ran [0-9]+ of|[0-9]+ Passed \|' "$LOG/sanity-$mode.log" | sed 's/^/    /'
            echo "    ($(( $(date +%s) - t )) s)"
            absorb "csi-sanity ($mode mode)" "$LOG/sanity-$mode.log" $rc
        else
            missing "csi-sanity ($mode mode)" "no csi-sanity binary (CSI_SANITY=${CSI_SANITY:-unset}; it comes from ../shared/tools)"
        fi
    done
fi

# End to end: a one-node cluster (control plane on the host, kubelet + containerd in a
# guest with emulated NVDIMMs, the driver image of image/build.sh) for the manifests
# path (e2e.py) and the operator path (e2e_operator.py), one boot for both.
if [ "${SKIP_VM:-0}" = 1 ]; then
    result skip "end to end on a cluster" "SKIP_VM=1"
elif [ "${SKIP_E2E:-0}" = 1 ]; then
    result skip "end to end on a cluster" "SKIP_E2E=1"
else
    e2e_missing=
    for v in KUBE_APISERVER KUBE_CONTROLLER_MANAGER KUBE_SCHEDULER KUBELET CSI_PROVISIONER CSI_NODE_DRIVER_REGISTRAR; do
        [ -n "${!v:-}" ] && [ -x "${!v}" ] || e2e_missing="$e2e_missing $v"
    done
    command -v kubectl >/dev/null || e2e_missing="$e2e_missing kubectl"
    if [ -n "$e2e_missing" ]; then
        missing "end to end on a cluster" "missing:$e2e_missing (they come from ../shared/tools)"
    else
        echo "== end to end on a cluster (test/e2e/cluster.sh run -- test/e2e/run-e2e.sh)"
        t=$(date +%s)
        bash test/e2e/cluster.sh run "$REPO/build-e2e" -- bash test/e2e/run-e2e.sh >"$LOG/e2e.log" 2>&1; rc=$?
        grep -aE '^(ok|FAIL|SKIP) - |^cluster: ' "$LOG/e2e.log" | sed 's/^/    /'
        echo "    ($(( $(date +%s) - t )) s; cluster logs in build-e2e/)"
        absorb "end to end on a cluster" "$LOG/e2e.log" $rc
    fi
fi

echo "== total time $(( $(date +%s) - T0 )) s; logs in $LOG; $SKIPPED skipped"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
