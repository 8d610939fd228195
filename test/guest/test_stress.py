"""Many volumes through the whole lifecycle at once, and races on one volume."""

import os
import threading
import time

from csitest import (C, MiB, DriverTestCase, code_name, log, lvs, mount_cap, mounts, mounts_at,
                     pb, rpc_code, volume_id)

# The full run is 10 x 50 (STRESS_VOLUMES=50): 500 lifecycles take 10-23 min under
# TCG, as LVM changes are serialized per volume group. 10 x 20 keeps the suite short.
WORKERS = int(os.environ.get("STRESS_WORKERS", "10"))
VOLUMES = int(os.environ.get("STRESS_VOLUMES", "20"))
SIZE = 8 * MiB


class Stress(DriverTestCase):
    group = "stress"
    clean_devices = True  # start from blank regions, whatever the groups before did
    workers, volumes = WORKERS, VOLUMES

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.lvs_before = set(lvs()) if not cls._setup_error else set()
        cls.errors = []
        cls.done = 0

    def worker(self, w, errors, lock):
        c = self.driver.client
        for i in range(self.volumes):
            name = "stress-w%d-v%d" % (w, i)
            vid = volume_id(name)
            staging = self.path("w%d" % w, "v%d" % i, "staging")
            target = self.path("w%d" % w, "v%d" % i, "pod", "mnt")
            os.makedirs(staging)
            os.makedirs(os.path.dirname(target))
            t = self._track(vid)
            t["staging"].add(staging)
            t["targets"].add(target)
            cap = mount_cap()
            steps = [
                ("CreateVolume", pb.CreateVolumeRequest(
                    name=name, volume_capabilities=[cap],
                    capacity_range=pb.CapacityRange(required_bytes=SIZE))),
                ("NodeStageVolume", pb.NodeStageVolumeRequest(
                    volume_id=vid, staging_target_path=staging, volume_capability=cap)),
                ("NodePublishVolume", pb.NodePublishVolumeRequest(
                    volume_id=vid, staging_target_path=staging, target_path=target,
                    volume_capability=cap)),
                ("use", None),
                ("NodeUnpublishVolume", pb.NodeUnpublishVolumeRequest(volume_id=vid, target_path=target)),
                ("NodeUnstageVolume", pb.NodeUnstageVolumeRequest(volume_id=vid,
                                                                  staging_target_path=staging)),
                ("DeleteVolume", pb.DeleteVolumeRequest(volume_id=vid)),
            ]
            for step, req in steps:
                if step == "use":
                    err = self.use(target, name)
                else:
                    code, details, _ = rpc_code(getattr(c, step), req)
                    err = "%s %r" % (code_name(code), details) if code is not None else None
                if err:
                    with lock:
                        errors.append("%s %s: %s" % (name, step, err))
                    break
            else:
                with lock:
                    type(self).done += 1
                    type(self).tracked.pop(vid, None)  # nothing left to clean up

    @staticmethod
    def use(target, name):
        ms = mounts_at(target)
        if len(ms) != 1 or "dax=always" not in ms[0][3]:
            return "target mounts: %s" % ms
        data = (name * 1000).encode()
        p = os.path.join(target, "data")
        with open(p, "wb") as f:
            f.write(data)
            os.fsync(f.fileno())
        with open(p, "rb") as f:
            if f.read() != data:
                return "read back different data"
        return None

    def test_01_concurrent_lifecycles(self):
        cls = type(self)
        cls.cap_before = self.capacity().available_capacity
        errors, lock = [], threading.Lock()
        t0 = time.monotonic()
        threads = [threading.Thread(target=self.worker, args=(w, errors, lock), daemon=True)
                   for w in range(cls.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - t0
        n = cls.workers * cls.volumes
        log("%s: %d workers x %d volumes: %d complete lifecycles in %.0f s (%.2f s/volume)"
            % (cls.group, cls.workers, cls.volumes, cls.done, took, took / max(1, n)))
        self.assertFalse(errors, "%d of %d volumes failed, e.g.:\n%s" % (len(errors), n, "\n".join(errors[:10])))
        self.assertEqual(cls.done, n)

    def test_02_no_lv_left(self):
        left = set(lvs()) - self.lvs_before
        self.assertFalse(left, "%d LVs left after the stress run: %s" % (len(left), sorted(left)[:5]))

    def test_03_no_mount_left(self):
        left = [m[1] for m in mounts() if m[1].startswith(self.workdir + "/")]
        self.assertFalse(left, "%d mounts left: %s" % (len(left), left[:5]))

    def test_04_no_state_file_left(self):
        left = [f for f in os.listdir(self.state_dir) if f.startswith("stress")]
        self.assertFalse(left, "%d state files left: %s" % (len(left), left[:5]))

    def test_05_capacity_restored(self):
        self.assertEqual(self.capacity().available_capacity, self.cap_before,
                         "GetCapacity available not back to the start value")

    def test_06_same_name_concurrently(self):
        """10 CreateVolume calls for one name at once: all OK, one volume; then 10 DeleteVolume."""
        name = "stress-same-name"
        vid = volume_id(name)
        self._track(vid)
        req = pb.CreateVolumeRequest(name=name, volume_capabilities=[mount_cap()],
                                     capacity_range=pb.CapacityRange(required_bytes=SIZE))
        futs = [self.driver.client.future("CreateVolume", req) for _ in range(10)]
        res = [rpc_result(f) for f in futs]
        bad = [r for r in res if r[0] is not None]
        self.assertFalse(bad, "concurrent CreateVolume of one name: %s" % bad[:3])
        self.assertEqual({r[2].volume.volume_id for r in res}, {vid})
        self.assertEqual(len({r[2].volume.capacity_bytes for r in res}), 1)
        self.assertEqual([lv for lv in lvs() if lv == vid], [vid])

        staging = self.path("same-name", "staging")
        os.makedirs(staging)
        self._track(vid)["staging"].add(staging)
        sreq = pb.NodeStageVolumeRequest(volume_id=vid, staging_target_path=staging,
                                         volume_capability=mount_cap())
        res = [rpc_result(f) for f in [self.driver.client.future("NodeStageVolume", sreq)
                                       for _ in range(5)]]
        bad = [r for r in res if r[0] is not None]
        self.assertFalse(bad, "concurrent NodeStageVolume of one volume: %s" % bad[:3])
        self.assertEqual(len(mounts_at(staging)), 1, "mounts: %s" % mounts_at(staging))
        self.unstage(vid, staging)

        dreq = pb.DeleteVolumeRequest(volume_id=vid)
        res = [rpc_result(f) for f in [self.driver.client.future("DeleteVolume", dreq)
                                       for _ in range(10)]]
        bad = [r for r in res if r[0] is not None]
        self.assertFalse(bad, "concurrent DeleteVolume of one volume: %s" % bad[:3])
        self.assertNotIn(vid, lvs())


class StressDirect(Stress):
    """The same in direct mode: one namespace per volume, allocation serialized per region."""
    group = "stress-direct"
    workers = int(os.environ.get("STRESS_DIRECT_WORKERS", "5"))
    volumes = int(os.environ.get("STRESS_DIRECT_VOLUMES", "8"))
    driver_kwargs = {"extra_args": ["-deviceManager=direct"]}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ns_before = volume_namespaces()

    def test_02_no_lv_left(self):
        left = volume_namespaces() - self.ns_before
        self.assertFalse(left, "%d volume namespaces left: %s" % (len(left), sorted(left)[:5]))

    # The same-name races are covered in LVM mode: the per-volume lock is the same code.
    test_06_same_name_concurrently = None


def volume_namespaces():
    from test_modes import volume_namespaces as vn
    return set(vn())


def rpc_result(fut):
    try:
        return None, "", fut.result()
    except Exception as e:  # grpc.RpcError and grpc.FutureTimeoutError
        code = e.code() if hasattr(e, "code") else C.UNKNOWN
        return code, e.details() if hasattr(e, "details") else str(e), None
