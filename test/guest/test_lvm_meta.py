"""LVM mode reads LVM's on-disk metadata at start-up instead of running pvs.

For states made with the real LVM tools, the reader's rows (build/test/unit/
lvm-meta-dump, built from src/pmem/lvm_meta.c) must equal what pvs prints, and
the driver must start without running any LVM report command when the reader
can be used, and run pvs when it cannot (an orphan PV)."""

import fcntl
import json
import os
import re
import struct
import subprocess
import time

from csitest import (DRIVER, DriverTestCase, LVM_ENV, MiB, log, lv_path, lvs, nonblocking,
                     regions, run)

# Built beside the driver (BUILDDIR/test/unit), installed nowhere.
DUMP = os.environ.get("LVM_META_DUMP", os.path.join(os.path.dirname(DRIVER), "test", "unit",
                                                     "lvm-meta-dump"))
FOREIGN_VG = "lvmmetaforeign"
FOREIGN_NS = "lvm-meta-foreign"
# At most this many lvcreate (+ every other one an lvremove) in the foreign VG
# until its small metadata area has wrapped (LVM writes each new text after the
# last, 512-byte aligned: a 32 KiB area, the smallest LVM makes, with 1.5-2.5 KiB
# texts wraps after about 14 writes).
WRAP_ROUNDS = int(os.environ.get("LVM_META_WRAP_ROUNDS", "40"))
REPORT_RE = re.compile(r"exec '(pvs|vgs|lvs)")


def namespace_devices():
    """/dev/pmemN of every active namespace with a block device (what the driver reads)."""
    devs = []
    for r in regions():
        for ns in r.get("namespaces", []):
            if ns.get("blockdev"):
                devs.append("/dev/" + ns["blockdev"])
    return devs


def norm(rows):
    """Rows as comparable tuples: attr only by its 5th character (active), as the driver uses it."""
    out = []
    for r in rows:
        attr = r["lv_attr"]
        out.append((r["pv_name"], r["vg_name"], r["lv_name"], int(r["lv_size"] or 0),
                    int(r["vg_size"] or 0), int(r["vg_free"] or 0), attr[4] if len(attr) > 4 else ""))
    return sorted(out)


def reader_rows():
    out = subprocess.run([DUMP] + namespace_devices(), capture_output=True, text=True,
                         env=dict(LVM_ENV, LVM_META_V="2"), check=True)
    data = json.loads(out.stdout)
    return data["rc"], data["rows"], out.stderr


def pvs_rows():
    """pvs's rows for the same devices, parsed by the driver's own report parser."""
    out = run(["pvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o",
               "pv_name,vg_name,vg_size,vg_free,lv_name,lv_size,lv_attr"], env=LVM_ENV)
    path = "/tmp/lvm-meta-pvs.json"
    with open(path, "w") as f:
        f.write(out)
    data = json.loads(subprocess.run([DUMP, "--pvs", path], capture_output=True, text=True,
                                     check=True).stdout)
    devs = set(namespace_devices())
    return [r for r in data["rows"] if r["pv_name"] in devs]


def text_wraps(dev):
    """Whether the committed metadata text of a PV runs past the end of its area."""
    with open(dev, "rb") as f:
        head = f.read(2048)
        lab = next(i for i in range(4) if head[i * 512:i * 512 + 8] == b"LABELONE") * 512
        p = lab + struct.unpack_from("<I", head, lab + 20)[0] + 40
        while struct.unpack_from("<Q", head, p)[0]:  # data areas
            p += 16
        mda_off, mda_size = struct.unpack_from("<QQ", head, p + 16)
        f.seek(mda_off)
        hdr = f.read(512)
    off, size = struct.unpack_from("<QQ", hdr, 40)
    return off + size > mda_size


def lvm(*argv):
    return run(list(argv), env=LVM_ENV)


class LvmMeta(DriverTestCase):
    """Half of each region for the driver, the rest for a foreign VG: the reader against pvs."""

    group = "lvm-meta"
    clean_devices = True
    sequential = True
    driver_kwargs = {"extra_args": ["-pmemPercentage=50"], "verbosity": 6}
    vols = []

    def setUp(self):
        if not os.access(DUMP, os.X_OK):
            if os.environ.get("CI") == "true":
                self.fail("%s is missing (ninja -C build)" % DUMP)
            self.skipTest("%s is missing (ninja -C build)" % DUMP)
        super().setUp()

    def assert_same_as_pvs(self, what):
        rc, rows, err = reader_rows()
        self.assertEqual(rc, 0, "%s: the reader refused (%d): %s" % (what, rc, err.strip()))
        want = norm(pvs_rows())
        self.assertEqual(norm(rows), want, "%s: reader rows differ from pvs's" % what)
        return rows

    def start_log(self):
        """The driver's log of its last start, up to its ready line."""
        text = self.driver.log_text(since_start=True)
        self.assertIn("PMEM-CSI ready", text, "no ready line")
        return text.split("PMEM-CSI ready", 1)[0]

    def restart_and_check(self, expect_report):
        self.driver.restart()
        log("driver ready %.2f s after start" % self.driver.ready_after)
        before = self.start_log()
        ran = REPORT_RE.findall(before)
        if expect_report:
            self.assertTrue(ran, "the reader should have refused and pvs run at start-up")
        else:
            self.assertEqual(ran, [], "LVM report commands ran at start-up: %s" % ran)
        listed = self.listed_ids()
        for vid in type(self).vols:
            self.assertIn(vid, listed, "volume %s not listed after the restart" % vid)

    def test_1_fresh_vgs_and_volumes(self):
        for i in range(3):
            vid = self.create("lvm-meta-%d" % i, size=8 * MiB).volume_id
            type(self).vols.append(vid)
        self.assert_same_as_pvs("the driver's VGs with volumes")

    def test_2_restart_reads_metadata(self):
        self.restart_and_check(expect_report=False)
        vid = type(self).vols[0]
        staging = self.path("stage0")
        self.stage(vid, staging)
        self.unstage(vid, staging)

    def test_2b_tagged_vgs(self):
        """intel/pmem-csi 0.x tagged its VGs with the namespace mode ("fsdax"); tags on a VG
        and an LV change nothing the report shows: still no LVM command at start-up."""
        all_lvs = lvs()
        vgs = sorted({all_lvs[vid][0] for vid in type(self).vols})
        self.assertTrue(vgs, "no VG of the driver")
        for vg in vgs:
            lvm("vgchange", "--addtag", "fsdax", vg)
        vid = type(self).vols[0]
        lvm("lvchange", "--addtag", "pmem-csi-test", "%s/%s" % (lvs()[vid][0], vid))
        self.assert_same_as_pvs("VGs and an LV with tags")
        self.restart_and_check(expect_report=False)

    def test_3_foreign_vg_wrapped(self):
        """A VG made by hand on another namespace, its small metadata area wrapped."""
        r = regions()[0]
        run(["ndctl", "create-namespace", "--region", r["dev"], "--mode", "fsdax", "--map", "dev",
             "--size", "64M", "--name", FOREIGN_NS])
        dev = None
        for r2 in regions():
            for ns in r2.get("namespaces", []):
                if ns.get("name") == FOREIGN_NS:
                    dev = "/dev/" + ns["blockdev"]
        self.assertTrue(dev, "no foreign namespace")
        lvm("pvcreate", "--yes", "--metadatasize", "32k", "--dataalignment", "4k", dev)
        lvm("vgcreate", FOREIGN_VG, dev)
        for i in range(WRAP_ROUNDS):
            if text_wraps(dev):
                log("foreign metadata wrapped after %d lvcreate(s)" % i)
                break
            lvm("lvcreate", "--yes", "-Zn", "-L", "4m", "-n", "f%d" % i, FOREIGN_VG)
            if i % 2:
                lvm("lvremove", "--yes", "%s/f%d" % (FOREIGN_VG, i - 1))
        self.assertTrue(text_wraps(dev), "metadata text did not wrap in %d rounds" % WRAP_ROUNDS)
        self.assert_same_as_pvs("a foreign VG with a wrapped metadata area")
        self.restart_and_check(expect_report=False)

    def test_4_deactivated_lv(self):
        vid = type(self).vols[1]
        vg = lvs()[vid][0]
        lvm("lvchange", "--activate", "n", "%s/%s" % (vg, vid))
        self.assertFalse(os.path.exists("/dev/%s/%s" % (vg, vid)), "LV still has a device")
        self.assert_same_as_pvs("an LV deactivated by hand")
        self.restart_and_check(expect_report=False)
        self.assertTrue(os.path.exists(lv_path(vid)), "the driver did not reactivate %s" % vid)
        staging = self.path("stage1")
        self.stage(vid, staging)
        self.unstage(vid, staging)

    def test_4b_lvm_lock_falls_back(self):
        """While an LVM command holds a VG's lock (here: this test, as an lvremove left
        running by a killed driver would), the reader gives up and pvs, which waits for
        the lock, runs instead."""
        vg = lvs()[type(self).vols[0]][0]
        os.makedirs("/run/lock/lvm", exist_ok=True)
        fd = os.open("/run/lock/lvm/V_" + vg, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            rc, _, err = reader_rows()
            self.assertEqual(rc, -95, "the reader must refuse while the VG is locked: rc %d %s"
                             % (rc, err))
            self.assertIn("holds", err)
            self.driver.stop()
            self.driver.start(wait=False)
            deadline = time.monotonic() + 60
            while "holds" not in self.driver.log_text(since_start=True):
                self.assertLess(time.monotonic(), deadline, "no 'holds' line in the driver log")
                time.sleep(0.1)
            time.sleep(0.5)
            self.assertNotIn("PMEM-CSI ready", self.driver.log_text(since_start=True),
                             "ready while pvs should wait for the VG lock")
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self.driver.wait_ready()
        ran = REPORT_RE.findall(self.start_log())
        self.assertTrue(ran, "pvs did not run while the VG was locked")

    def test_5_orphan_falls_back(self):
        """The foreign VG removed, its PV left: an orphan PV, which the reader does not
        interpret (an LVM snapshot, the case the reader was first meant to refuse here,
        cannot be made of an LV on fsdax PMEM: device-mapper refuses a snapshot target
        on a DAX origin, see test/unit/test-lvm-meta.c)."""
        lvm("vgremove", "--yes", "--force", FOREIGN_VG)
        rc, _, err = reader_rows()
        self.assertEqual(rc, -95, "the reader must refuse an orphan PV (EOPNOTSUPP): rc %d %s"
                         % (rc, err))
        self.assertIn("orphan", err)
        self.restart_and_check(expect_report=True)

    @nonblocking
    def test_6_cleanup_foreign(self):
        run(["vgremove", "--yes", "--force", FOREIGN_VG], check=False, env=LVM_ENV)
        for r in regions():
            for ns in r.get("namespaces", []):
                if ns.get("name") == FOREIGN_NS:
                    lvm("pvremove", "--yes", "/dev/" + ns["blockdev"])
                    run(["ndctl", "destroy-namespace", "--force", ns["dev"]])
