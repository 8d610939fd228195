"""Issue 8: the driver touches only what is its own (docs/ownership.md).

In both device modes: a foreign LV or namespace whose name has the shape of a
volume ID is neither removed by DeleteVolume nor adopted by CreateVolume; a
device whose state file is corrupt is reported and never handed out; a state
directory removed while the driver runs does not break DeleteVolume or
ListVolumes; state of the other device mode survives restarts; and filling
PMEM with concurrent creates leaks nothing (devices == ListVolumes == state
files, capacity restored)."""

import json
import os
import shutil
import threading
import time
import urllib.request

from csitest import (C, GiB, MiB, DriverTestCase, LVM_ENV, code_name, log, lvs, pb, regions,
                     rpc_code, run, mount_cap, volume_id)

MARKER = b"FOREIGN-DATA-MARKER-0123456789"
METRICS_PORT = 10931
# The leak test: rounds of batches of concurrent creates until PMEM is full. The
# default (volumes of 1/7 of the largest free extent, batches of 24) fills the
# test VM's 2 x 4 GiB in one batch; OWNERSHIP_LEAK_SIZE_MIB=64 OWNERSHIP_LEAK_BATCH=50
# is the reproduction (slower: about 100 volumes per round).
LEAK_ROUNDS = int(os.environ.get("OWNERSHIP_LEAK_ROUNDS", "2"))
LEAK_SIZE = int(os.environ.get("OWNERSHIP_LEAK_SIZE_MIB", "0")) * MiB
LEAK_BATCH = int(os.environ.get("OWNERSHIP_LEAK_BATCH", "24"))


def volume_namespaces():
    """{alt-name: namespace} of all namespaces whose name has the shape of a volume ID."""
    res = {}
    for r in regions():
        for ns in r.get("namespaces", []):
            name = ns.get("name", "")
            if len(name) > 57 and name[-57] == "-" and ns.get("size", 0) > 0:
                res[name] = dict(ns, region=r["dev"])
    return res


def write_marker(dev):
    fd = os.open(dev, os.O_WRONLY)
    try:
        os.pwrite(fd, MARKER, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_marker(dev):
    fd = os.open(dev, os.O_RDONLY)
    try:
        return os.pread(fd, len(MARKER), 0)
    finally:
        os.close(fd)


class OwnershipBase(DriverTestCase):
    """Steps shared by both modes; a subclass sets mode and driver_kwargs."""

    clean_devices = True
    sequential = False
    mode = None

    # ---- the devices, seen with the tools, not through the driver ----------------

    def devices(self):
        """{volume-ID-shaped name: block device} of all devices of this mode."""
        if self.mode == "direct":
            return {n: "/dev/" + ns["blockdev"] for n, ns in volume_namespaces().items()
                    if ns.get("blockdev")}
        return {lv: "/dev/%s/%s" % (vg, lv) for lv, (vg, _) in lvs().items()
                if vg.endswith("fsdax") and len(lv) > 57}

    def make_foreign(self, vid, size=64 * MiB):
        """A device made by hand (not by the driver) named vid; returns its path."""
        if self.mode == "direct":
            region = max(regions(), key=lambda r: r.get("max_available_extent", 0))
            run(["ndctl", "create-namespace", "-r", region["dev"], "-m", "fsdax", "-s", str(size),
                 "-n", vid])
        else:
            vg = sorted(v for v in lvs_vgs() if v.endswith("fsdax"))[0]
            run(["lvcreate", "-y", "-Zn", "-L", "%db" % size, "-n", vid, vg], env=LVM_ENV)
        dev = self.devices().get(vid)
        self.assertIsNotNone(dev, "could not make the foreign device %s" % vid)
        # The driver sees it at start-up, as a device that was there before.
        type(self).driver.restart()
        return self.devices().get(vid)

    def remove_by_hand(self, vid):
        if self.mode == "direct":
            ns = volume_namespaces().get(vid)
            if ns:
                run(["ndctl", "destroy-namespace", "-f", ns["dev"]], check=False)
        else:
            lv = lvs().get(vid)
            if lv:
                run(["lvremove", "-f", "-y", "%s/%s" % (lv[0], vid)], env=LVM_ENV, check=False)

    def state_files(self):
        d = type(self).state_dir
        if not os.path.isdir(d):
            return set()
        return {f[:-5] for f in os.listdir(d) if f.endswith(".json")}

    def metric(self, name):
        """The sum of a metric's samples from the driver's /metrics."""
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % METRICS_PORT,
                                      timeout=10).read().decode()
        total, seen = 0.0, False
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
                seen = True
        self.assertTrue(seen, "metric %s missing from /metrics" % name)
        return total

    # ---- the tests -----------------------------------------------------------------

    def test_01_foreign_device_not_deleted(self):
        vid = volume_id("foreign-a")
        dev = self.make_foreign(vid)
        try:
            write_marker(dev)
            self.expect(None, self.c.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid),
                        "DeleteVolume of a foreign device's ID")
            self.assertIn(vid, self.devices(), "DeleteVolume removed a device it never made")
            self.assertEqual(read_marker(self.devices()[vid]), MARKER, "foreign device was erased")
        finally:
            pass

    def test_02_foreign_device_not_adopted(self):
        vid = volume_id("foreign-a")
        if vid not in self.devices():
            self.make_foreign(vid)
            write_marker(self.devices()[vid])
        try:
            code, details, _ = self.create("foreign-a", 32 * MiB, check=False)
            self.assertEqual(code, C.FAILED_PRECONDITION,
                             "CreateVolume over a foreign device: %s %r" % (code_name(code), details))
            self.assertIn(vid, details, "the error does not name the device")
            self.assertIn(vid, self.devices(), "the foreign device is gone")
            self.assertEqual(read_marker(self.devices()[vid]), MARKER, "foreign device was touched")
            self.assertNotIn(vid, self.state_files(), "a state file was left for the foreign device")
            self.assertNotIn(vid, self.listed_ids())
            self.assertFalse([f for f in os.listdir(type(self).state_dir) if f.startswith(vid)],
                             "state or marker files left behind")
        finally:
            type(self).tracked.pop(vid, None)
            self.remove_by_hand(vid)

    def test_03_corrupt_state_not_handed_out(self):
        vol = self.create("corrupt-a", 64 * MiB, params={"eraseafter": "false"})
        vid = vol.volume_id
        dev = self.devices()[vid]
        write_marker(dev)
        d = type(self).driver
        d.stop()
        with open(self.state_file(vid), "w") as f:
            f.write('{"id": "%s", "size": ' % vid)  # cut off
        d.start()
        try:
            self.assertIn(vid, d.log_text(since_start=True),
                          "start-up did not report the device with the corrupt state")
            self.assertNotIn(vid, self.listed_ids())
            self.assertGreaterEqual(self.metric("pmem_csi_unowned_devices"), 1)
            code, details, _ = self.create("corrupt-a", 64 * MiB, params={"eraseafter": "false"},
                                           check=False)
            self.assertEqual(code, C.FAILED_PRECONDITION,
                             "CreateVolume over a device with a corrupt state: %s %r"
                             % (code_name(code), details))
            self.assertIn(vid, details)
            self.assertEqual(read_marker(self.devices()[vid]), MARKER)
            with open(self.state_file(vid)) as f:
                self.assertTrue(f.read().endswith('"size": '), "the corrupt state file was replaced")
            self.expect(None, self.c.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid),
                        "DeleteVolume of the unreadable volume")
            self.assertIn(vid, self.devices(), "DeleteVolume removed a device whose state is unreadable")
        finally:
            type(self).tracked.pop(vid, None)
            self.remove_by_hand(vid)
            if os.path.exists(self.state_file(vid)):
                os.unlink(self.state_file(vid))

    def test_04_state_dir_removed_while_running(self):
        a = self.create("lost-a", 32 * MiB).volume_id
        b = self.create("lost-b", 32 * MiB).volume_id
        shutil.rmtree(type(self).state_dir)
        try:
            # The provisioner's periodic call puts the records back: GetCapacity looks at
            # the state directory at most once a second.
            time.sleep(1.1)
            self.capacity()
            self.assertEqual(self.state_files(), {a, b}, "GetCapacity did not restore the records")
            shutil.rmtree(type(self).state_dir)
            self.delete(a)
            self.assertNotIn(a, self.devices())
            ids = self.listed_ids()
            self.assertNotIn(a, ids)
            self.assertIn(b, ids)
            self.assertEqual(self.state_files(), {b}, "state not recreated for the remaining volume")
            self.delete(b)
            self.assertNotIn(b, self.listed_ids())
            self.assertEqual(self.state_files(), set())
        finally:
            os.makedirs(type(self).state_dir, exist_ok=True)  # for the next tests on a failure

    def test_05_other_mode_state_survives_restart(self):
        vid = self.create("mode-a", 32 * MiB).volume_id
        d = type(self).driver
        other = "direct" if self.mode == "lvm" else "lvm"
        d.stop()
        saved = d.extra_args
        try:
            d.extra_args = [a for a in saved if not a.startswith("-deviceManager")] + \
                ["-deviceManager=" + other] + \
                (["-pmemPercentage=0"] if other == "lvm" else [])
            d.start()
            self.assertIn(vid, self.state_files(), "state of a %s volume deleted by a %s driver"
                          % (self.mode, other))
            self.assertIn(vid, self.listed_ids(), "the %s volume is not served in %s mode"
                          % (self.mode, other))
            d.stop()
        finally:
            d.extra_args = saved
            if not d.alive():
                d.start()
        self.assertIn(vid, self.state_files())
        self.assertIn(vid, self.listed_ids())
        self.assertIn(vid, self.devices())
        self.delete(vid)
        self.assertNotIn(vid, self.devices())

    def test_06_no_leak_when_full(self):
        """Batches of concurrent creates until PMEM runs out, then delete all; several rounds."""
        cap0 = self.capacity()
        size = LEAK_SIZE or max(cap0.maximum_volume_size.value // 7, 64 * MiB)
        size -= size % (4 * MiB)
        n = LEAK_BATCH
        for rnd in range(LEAK_ROUNDS):
            results, lock = [], threading.Lock()

            def one(name):
                code, details, resp = rpc_code(self.c.CreateVolume, pb.CreateVolumeRequest(
                    name=name, volume_capabilities=[mount_cap()],
                    capacity_range=pb.CapacityRange(required_bytes=size),
                    parameters={"eraseafter": "false"}))
                with lock:
                    results.append((name, code, details))

            batch = 0
            while not any(r[1] == C.RESOURCE_EXHAUSTED for r in results) and batch < 20:
                threads = [threading.Thread(target=one, args=("leak-r%d-b%d-%d" % (rnd, batch, i),))
                           for i in range(n)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                batch += 1
            ok = [r[0] for r in results if r[1] is None]
            full = [r for r in results if r[1] == C.RESOURCE_EXHAUSTED]
            other = [r for r in results if r[1] not in (None, C.RESOURCE_EXHAUSTED)]
            log("leak round %d: %d x %d MiB in %d batch(es): %d OK, %d RESOURCE_EXHAUSTED, %d other"
                % (rnd, len(results), size // MiB, batch, len(ok), len(full), len(other)))
            for name in ok:
                self._track(volume_id(name))
            self.assertFalse(other, "unexpected errors: %s" % other[:3])
            self.assertTrue(full, "PMEM never ran out: make the volumes larger")
            devs, listed, states = set(self.devices()), set(self.listed_ids()), self.state_files()
            want = {volume_id(x) for x in ok}
            self.assertEqual(devs, want, "devices after the creates: %d, %d OK; extra: %s"
                             % (len(devs), len(ok), sorted(devs - want)[:3]))
            self.assertEqual(listed, want)
            self.assertEqual(states, want)
            markers = [f for f in os.listdir(type(self).state_dir) if not f.endswith(".json")]
            self.assertEqual(markers, [], "intent markers left: %s" % markers)
            for vid in sorted(want):
                self.delete(vid)
            self.assertEqual(set(self.devices()), set(), "devices left after deleting all")
            self.assertEqual(self.listed_ids(), [])
            self.assertEqual(self.state_files(), set())
            cap = self.capacity()
            self.assertEqual(cap.available_capacity, cap0.available_capacity, "capacity not restored")
            self.assertEqual(cap.maximum_volume_size.value, cap0.maximum_volume_size.value)


def lvs_vgs():
    out = run(["vgs", "--reportformat", "json", "-o", "vg_name"], env=LVM_ENV)
    return [vg["vg_name"] for rep in json.loads(out)["report"] for vg in rep.get("vg", [])]


class OwnershipLVM(OwnershipBase):
    group = "ownership-lvm"
    mode = "lvm"
    driver_kwargs = {"extra_args": ["-metricsListen=127.0.0.1:%d" % METRICS_PORT]}


class OwnershipDirect(OwnershipBase):
    group = "ownership-direct"
    mode = "direct"
    driver_kwargs = {"extra_args": ["-deviceManager=direct",
                                    "-metricsListen=127.0.0.1:%d" % METRICS_PORT]}
