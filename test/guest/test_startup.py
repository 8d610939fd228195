"""Driver start-up in LVM mode: namespaces, volume groups, readiness, signals, logs."""

import json
import os
import re
import signal
import subprocess

from csitest import (DRIVER, DriverTestCase, ENDPOINT_PATH, LVM_ENV, expected_vgs, regions, run,
                     vgs)


def csi_namespaces(region):
    return [ns for ns in region.get("namespaces", []) if ns.get("name") == "pmem-csi"]


def pv_vgs():
    """{pv device: vg name}"""
    out = run(["pvs", "--reportformat", "json", "-o", "pv_name,vg_name"], env=LVM_ENV)
    return {pv["pv_name"]: pv["vg_name"] for rep in json.loads(out)["report"]
            for pv in rep.get("pv", [])}


class StartupPercentage(DriverTestCase):
    """-pmemPercentage=50 on blank regions."""

    group = "startup-50percent"
    clean_devices = True
    driver_kwargs = {"extra_args": ["-pmemPercentage=50"]}

    def test_namespace_is_half_the_region(self):
        for r in regions():
            nss = csi_namespaces(r)
            self.assertEqual(len(nss), 1, "%s: pmem-csi namespaces: %s" % (r["dev"], nss))
            frac = nss[0]["size"] / r["size"]
            self.assertTrue(0.45 <= frac <= 0.55,
                            "%s: namespace is %.0f%% of the region, want ~50%%" % (r["dev"], 100 * frac))

    def test_capacity_is_half(self):
        total = sum(r["size"] for r in regions())
        avail = self.capacity().available_capacity
        self.assertTrue(0.4 * total <= avail <= 0.55 * total,
                        "GetCapacity available %d is not ~50%% of %d" % (avail, total))


class Startup(DriverTestCase):
    """Default flags on blank regions (100%), then restarts on the devices it made."""

    group = "startup"
    clean_devices = True

    def test_ready_log_line(self):
        self.assertIn("PMEM-CSI ready.", self.driver.log_text(since_start=True),
                      "no 'PMEM-CSI ready.' in the driver log although Probe said ready")

    def test_one_fsdax_namespace_per_region(self):
        regs = regions()
        self.assertTrue(regs, "no regions")
        for r in regs:
            nss = csi_namespaces(r)
            self.assertEqual(len(nss), 1, "%s: pmem-csi namespaces: %s" % (r["dev"], nss))
            self.assertEqual(nss[0].get("mode"), "fsdax", "%s: %s" % (r["dev"], nss[0]))
            self.assertGreater(nss[0]["size"], 0.95 * r["size"],
                               "%s: namespace %d bytes of a %d byte region with the default "
                               "-pmemPercentage=100" % (r["dev"], nss[0]["size"], r["size"]))

    def test_volume_group_per_region(self):
        want = expected_vgs()
        have = vgs()
        self.assertEqual(sorted(v for v in have if v.endswith("fsdax")), want)
        # each region's VG sits on that region's pmem-csi namespace
        pvmap = pv_vgs()
        for r in regions():
            ns = csi_namespaces(r)[0]
            vg = pvmap.get("/dev/" + ns["blockdev"])
            self.assertTrue(vg and vg.endswith(r["dev"] + "fsdax"),
                            "/dev/%s (namespace of %s) is in VG %r" % (ns["blockdev"], r["dev"], vg))

    def test_log_format_text(self):
        """klog text format: I1121 10:00:00.000000  123 file.c:42] msg"""
        klog = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6}\s+\d+ [^ \]]+:\d+\] ")
        bad = [l for l in self.driver.log_text(since_start=True).splitlines()
               if l.strip() and not l.startswith("=====") and not klog.match(l)]
        self.assertFalse(bad, "%d log lines not in klog format, e.g.:\n%s"
                         % (len(bad), "\n".join(bad[:5])))

    def test_restart_reuses_namespaces_and_vgs(self):
        before = {r["dev"]: [ns["uuid"] for ns in csi_namespaces(r)] for r in regions()}
        vgs_before = sorted(vgs())
        self.driver.restart(signal.SIGTERM)
        after = {r["dev"]: [ns["uuid"] for ns in csi_namespaces(r)] for r in regions()}
        self.assertEqual(after, before, "pmem-csi namespaces changed across a restart")
        self.assertEqual(sorted(vgs()), vgs_before, "volume groups changed across a restart")

    def test_sigterm_exits_promptly(self):
        rc, took = self.driver.stop(signal.SIGTERM, timeout=15)
        self.driver.start()
        self.assertLess(took, 10, "driver needed %.1f s to exit after SIGTERM" % took)
        self.assertIn(rc, (0, -signal.SIGTERM), "exit status %s after SIGTERM" % rc)

    def test_start_after_sigkill_with_stale_socket(self):
        self.driver.stop(signal.SIGKILL)
        self.assertTrue(os.path.exists(ENDPOINT_PATH), "socket file vanished (test assumption)")
        self.driver.start()  # raises if it never becomes ready

    def test_start_time(self):
        """Start to first ready Probe on devices that are already set up."""
        self.driver.stop()
        self.driver.start()
        self.assertLess(self.driver.ready_after, 30,
                        "ready only %.1f s after start" % self.driver.ready_after)
        print("# start to ready: %.2f s" % self.driver.ready_after)


class StartupJSON(DriverTestCase):
    """-logging-format=json: every log line is a JSON object."""

    group = "startup-json"
    driver_kwargs = {"logging_format": "json"}

    def test_log_lines_are_json(self):
        self.capacity()  # make it log something beyond start-up
        lines = [l for l in self.driver.log_text(since_start=True).splitlines()
                 if l.strip() and not l.startswith("=====")]
        self.assertTrue(lines, "no log output")
        bad = []
        for l in lines:
            try:
                obj = json.loads(l)
                if not isinstance(obj, dict) or "msg" not in obj:
                    bad.append(l)
            except ValueError:
                bad.append(l)
        self.assertFalse(bad, "%d of %d lines are not JSON objects with \"msg\", e.g.:\n%s"
                         % (len(bad), len(lines), "\n".join(bad[:5])))


class BadFlags(DriverTestCase):
    """Invalid command lines fail fast instead of serving."""

    group = "flags"
    start_driver = False

    def _run(self, *args):
        return run_driver(list(args))

    def test_version_flag(self):
        p = self._run("-version")
        self.assertEqual(p.returncode, 0, "-version: exit status %d, stderr %r" % (p.returncode, p.stderr))
        self.assertTrue((p.stdout + p.stderr).strip(), "-version printed nothing")

    def test_unknown_device_manager(self):
        p = self._run("-mode=node", "-deviceManager=bogus", "-endpoint=unix:///run/pmem-csi/bad.sock")
        self.assertNotEqual(p.returncode, 0, "-deviceManager=bogus was accepted")

    def test_unknown_flag(self):
        p = self._run("-no-such-flag=1", "-endpoint=unix:///run/pmem-csi/bad.sock")
        self.assertNotEqual(p.returncode, 0, "an unknown flag was accepted")

    def test_bad_logging_format(self):
        p = self._run("-logging-format=xml", "-endpoint=unix:///run/pmem-csi/bad.sock")
        self.assertNotEqual(p.returncode, 0, "-logging-format=xml was accepted")


def run_driver(args, timeout=20):
    try:
        return subprocess.run([DRIVER] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("%s did not exit within %d s" % (" ".join(args), timeout))
