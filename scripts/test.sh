#!/bin/bash
# test.sh - the whole test suite, from a fresh Debian 12 machine (root):
#   dependencies, gcc and clang builds with --werror, unit tests, the unit tests
#   under ASan+UBSan and under valgrind, the in-guest CSI suite on emulated PMEM
#   (QEMU), and csi-sanity in the guest when CSI_SANITY points to a binary.
# Ends with one line "N passed, N failed"; exit status 1 if anything failed.
#
# Environment:
#   SKIP_VM=1          leave out the QEMU parts (they are counted as skipped)
#   CSI_SANITY=PATH    csi-sanity binary (built from kubernetes-csi/csi-test); unset = skipped
#   KUBE_APISERVER=PATH  kube-apiserver binary for the tests against a real API server
#                      (manifest dry-runs, webhooks and conversion modes); unset = skipped
#   STRESS_WORKERS / STRESS_VOLUMES   size of the in-guest stress test (default 10 x 20; full: 10 x 50)
#   CRASH_ITERATIONS   SIGKILL injections per device mode (default 200)
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
PASSED=0; FAILED=0; SKIPPED=0
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
# Add a component's "N passed, N failed" to the totals (a missing line is a failure).
absorb() { # absorb NAME LOGFILE STATUS
    local line p f
    line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed' "$2" | tail -1)
    if [ -z "$line" ]; then result fail "$1" "no summary line, status $3; see $2"; return; fi
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
    PASSED=$((PASSED+p)); FAILED=$((FAILED+f))
    if [ "$3" != 0 ] && [ "$f" = 0 ]; then result fail "$1" "status $3 but no failed test; see $2"; fi
    echo "== $1: $line"
}
step() { # step NAME LOGFILE cmd...: run, pass/fail by exit status, show the tail on failure
    local name=$1 log=$2; shift 2
    if "$@" >"$log" 2>&1; then result ok "$name"; else result fail "$name" "see $log"; tail -20 "$log" | sed 's/^/    /'; fi
}

echo "== dependencies"
bash scripts/install-deps.sh || { echo "0 passed, 1 failed"; exit 1; }
[ "${SKIP_VM:-0}" = 1 ] || bash test/vm/setup-host.sh >/dev/null || { echo "FAIL - VM host setup"; echo "0 passed, 1 failed"; exit 1; }

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

echo "== fuzz corpora (test/fuzz), also under ASan+UBSan"
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
    bash test/deploy/check-manifests.sh >"$LOG/manifests.log" 2>&1; rc=$?
    grep -aE '^(FAIL|SKIP) - ' "$LOG/manifests.log" | sed 's/^/    /'
    absorb "deployment manifests" "$LOG/manifests.log" $rc
else
    result skip "deployment manifests" "kubectl is not installed"
fi

echo "== documentation against the code (flags, metrics, parameters)"
/usr/bin/python3 test/docs/check_docs.py build >"$LOG/docs.log" 2>&1; rc=$?
grep -aE '^(FAIL|SKIP) - ' "$LOG/docs.log" | sed 's/^/    /'
absorb "documentation against the code" "$LOG/docs.log" $rc

if [ "${SKIP_VM:-0}" = 1 ]; then
    result skip "in-guest CSI suite" "SKIP_VM=1"
    result skip "csi-sanity" "SKIP_VM=1"
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
    echo "== against a real Kubernetes API server (KUBE_APISERVER)"
    bash test/k8s/run-k8s-tests.sh build >"$LOG/k8s.log" 2>&1; rc=$?
    grep -aE '^(ok|FAIL|SKIP) - ' "$LOG/k8s.log" | sed 's/^/    /'
    SKIPPED=$((SKIPPED + $(grep -c '^SKIP - ' "$LOG/k8s.log")))
    absorb "real API server" "$LOG/k8s.log" $rc
    if [ -n "${CSI_SANITY:-}" ]; then
        echo "== csi-sanity (LVM mode, in the guest)"
        bash test/sanity/run-sanity.sh build "$CSI_SANITY" >"$LOG/sanity.log" 2>&1; rc=$?
        absorb "csi-sanity" "$LOG/sanity.log" $rc
    else
        result skip "csi-sanity" "CSI_SANITY is not set: build csi-sanity from kubernetes-csi/csi-test (see DEVELOPERS.md)"
    fi
fi

echo "== total time $(( $(date +%s) - T0 )) s; logs in $LOG; $SKIPPED skipped"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
