#!/usr/bin/python3
"""run-suite.py - the in-guest PMEM-CSI test suite.

usage: /usr/bin/python3 test/guest/run-suite.py [PATTERN...]

Runs inside the QEMU test VM (test/vm/run-guest-suite.sh starts it): it re-labels
the emulated NVDIMMs and destroys every namespace and volume group it finds.
PATTERNs select tests whose "group: name" contains one of them.

Prints one line per test (ok - / FAIL - / SKIP - name) and ends with
"N passed, N failed[, N skipped]"; exits 1 when a test failed.

Environment:
  PMEM_CSI_DRIVER   driver binary (default <repo>/build/pmem-csi-driver)
  RESULTS_DIR       driver logs go to RESULTS_DIR/logs (default /tmp/pmem-csi-test)
  STRESS_WORKERS    concurrent workers in the stress test (default 10)
  STRESS_VOLUMES    volumes per worker (default 20; the full stress run is 50)
  PMEM_CSI_TEST_FORCE=1  run outside the test VM (destroys PMEM namespaces!)
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

MODULES = ["test_startup", "test_identity", "test_lifecycle", "test_idempotency",
           "test_errors", "test_input", "test_parameters", "test_capacity", "test_restart", "test_robustness", "test_paths", "test_modes", "test_kata", "test_upgrade", "test_upstream_binary", "test_crash", "test_ownership", "test_hostile", "test_connections", "test_stats", "test_expand", "test_snapshot",
           "test_cache", "test_stress", "test_lvm_meta"]


def finish(passed, failed, skipped=0):
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line, flush=True)
    sys.exit(1 if failed else 0)


def gen_stubs():
    out = tempfile.mkdtemp(prefix="pmem-csi-stubs.")
    subprocess.run(["protoc", "-I", os.path.join(REPO, "proto"), "-I", "/usr/include",
                    "--python_out=" + out, "--grpc_python_out=" + out,
                    "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
                    os.path.join(REPO, "proto", "csi.proto")], check=True)
    return out


def collect(patterns):
    import csitest
    suite = unittest.TestSuite()
    loader = unittest.TestLoader()
    for modname in MODULES:
        mod = __import__(modname)
        for obj in list(vars(mod).values()):  # definition order
            if not (isinstance(obj, type) and issubclass(obj, csitest.DriverTestCase)
                    and obj.__module__ == modname and obj.group):
                continue
            tests = [t for t in loader.loadTestsFromTestCase(obj)
                     if not patterns or any(p in csitest.test_name(t) for p in patterns)]
            if tests:
                suite.addTests(tests)
    return suite


def timing_summary():
    import csitest
    if not csitest.Stub.timings:
        return
    print("# RPC timings (s): method n median p90 max", flush=True)
    for name, ts in sorted(csitest.Stub.timings.items()):
        ts = sorted(ts)
        p90 = ts[min(len(ts) - 1, int(len(ts) * 0.9))]
        print("#   %-28s %5d %7.3f %7.3f %7.3f" % (name, len(ts), statistics.median(ts), p90, ts[-1]),
              flush=True)


def main():
    patterns = sys.argv[1:]
    if os.environ.get("PMEMVM") != "1" and os.environ.get("PMEM_CSI_TEST_FORCE") != "1":
        print("run-suite: refusing to run outside the test VM: it destroys all PMEM namespaces "
              "(set PMEM_CSI_TEST_FORCE=1 to override)", file=sys.stderr)
        sys.exit(2)
    t0 = time.monotonic()
    sys.path.insert(0, gen_stubs())
    sys.path.insert(0, HERE)
    import csitest

    print("# driver %s, results in %s" % (csitest.DRIVER, csitest.RESULTS), flush=True)
    if not os.access(csitest.DRIVER, os.X_OK):
        print("FAIL - driver binary %s missing or not executable" % csitest.DRIVER, flush=True)
        finish(0, 1)
    os.makedirs(os.path.join(csitest.RESULTS, "logs"), exist_ok=True)

    # Fresh emulated DIMMs have blank labels (one label-less raw namespace and no
    # free space); the driver expects labelled regions, as on real hardware.
    try:
        csitest.wipe_devices()
        csitest.init_labels()
    except Exception as e:
        print("FAIL - device preparation (ndctl init-labels): %s" % e, flush=True)
        finish(0, 1)

    suite = collect(patterns)
    print("# %d tests" % suite.countTestCases(), flush=True)
    result = csitest.TapResult()
    suite.run(result)
    print("# suite took %.0f s" % (time.monotonic() - t0), flush=True)
    timing_summary()
    if result.failures_list:
        print("# failed tests:", flush=True)
        for name, msg in result.failures_list:
            print("#   %s: %s" % (name, csitest.short(msg, 200)), flush=True)
    finish(result.passed, result.failed, result.skipped_n)


if __name__ == "__main__":
    main()
