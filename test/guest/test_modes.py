"""Issue 3 in the guest: direct mode, raw block volumes, inline ephemeral volumes
and erasing, through the real gRPC API. The block/ephemeral/erase groups run in
both device modes."""

import os
import stat
import time

import csi_pb2 as pb
from csitest import (C, GiB, MiB, SNW, DriverTestCase, is_dax_file, lvs, mount_cap, mounts_at,
                     ndctl_json, regions, run, volume_id)

DIRECT = {"extra_args": ["-deviceManager=direct"]}


def block_cap(mode=SNW):
    return pb.VolumeCapability(block=pb.VolumeCapability.BlockVolume(),
                               access_mode=pb.VolumeCapability.AccessMode(mode=mode))


def volume_namespaces():
    """{alt-name: namespace} of all namespaces named like volume IDs."""
    res = {}
    for r in regions():
        for ns in r.get("namespaces", []):
            name = ns.get("name", "")
            if len(name) > 57 and name[-57] == "-":
                res[name] = ns
    return res


def blockdev_size(path):
    return int(run(["blockdev", "--getsize64", path]).strip())


def device_of(test, vid):
    """The block device of a volume, whatever the mode."""
    if type(test).mode == "direct":
        ns = volume_namespaces().get(vid)
        return "/dev/" + ns["blockdev"] if ns else None
    lv = lvs().get(vid)
    return "/dev/%s/%s" % (lv[0], vid) if lv else None


class Direct(DriverTestCase):
    group = "direct"
    mode = "direct"
    clean_devices = True
    driver_kwargs = DIRECT

    def test_01_capacity(self):
        cap = self.capacity()
        self.assertGreater(cap.available_capacity, 4 * GiB)
        self.assertGreater(cap.maximum_volume_size.value, 2 * GiB)
        self.assertLessEqual(cap.maximum_volume_size.value, cap.available_capacity)

    def test_02_fsdax_size_never_below_request(self):
        for i, size in enumerate([64 * MiB, 1 * GiB, 1500 * MiB + 1]):
            name = "direct-size-%d" % i
            vol = self.create(name, size, params={"eraseafter": "false"})
            ns = volume_namespaces().get(vol.volume_id)
            self.assertIsNotNone(ns, "no namespace named %s" % vol.volume_id)
            self.assertEqual(ns["mode"], "fsdax")
            self.assertEqual(ns.get("map"), "dev", "page map not on the device: %s" % ns)
            self.assertEqual(ns.get("align"), 2 * MiB, "not 2 MiB aligned: %s" % ns)
            real = blockdev_size("/dev/" + ns["blockdev"])
            self.assertGreaterEqual(real, size, "block device has %d bytes for a %d byte request" % (real, size))
            self.assertGreaterEqual(vol.capacity_bytes, size)
            self.assertLessEqual(vol.capacity_bytes, real)
            self.delete(vol.volume_id)
        self.assertEqual(volume_namespaces(), {})

    def test_03_dax_mount_and_data(self):
        vol = self.create("direct-dax", 128 * MiB)
        staging = self.stage(vol.volume_id)
        target = self.publish(vol.volume_id, staging)
        m = mounts_at(target)
        self.assertTrue(m and "dax=always" in m[0][3], "not mounted with dax: %s" % m)
        with open(os.path.join(target, "f"), "wb") as f:
            f.write(b"x" * (4 * MiB))
        self.assertTrue(is_dax_file(os.path.join(target, "f")))
        self.unpublish(vol.volume_id, target)
        self.unstage(vol.volume_id, staging)
        self.delete(vol.volume_id)

    def test_04_fileio_is_sector_mode_without_dax(self):
        vol = self.create("direct-fileio", 128 * MiB, params={"usage": "FileIO"})
        ns = volume_namespaces()[vol.volume_id]
        self.assertEqual(ns["mode"], "sector")
        self.assertEqual(ns.get("sector_size"), 4096)
        self.assertGreaterEqual(blockdev_size("/dev/" + ns["blockdev"]), 128 * MiB)
        staging = self.stage(vol.volume_id)
        m = mounts_at(staging)
        self.assertTrue(m and not any(o.startswith("dax") for o in m[0][3]), "FileIO mounted with dax: %s" % m)
        self.unstage(vol.volume_id, staging)
        self.delete(vol.volume_id)

    def test_05_maximum_volume_size_really_fits(self):
        cap = self.capacity()
        maxsz = cap.maximum_volume_size.value
        vol = self.create("direct-max", maxsz, params={"eraseafter": "false"})
        self.assertGreaterEqual(blockdev_size(device_of(self, vol.volume_id)), maxsz)
        code, details, _ = self.create("direct-too-big", self.capacity().maximum_volume_size.value + GiB, check=False)
        self.assertEqual(code, C.RESOURCE_EXHAUSTED, details)
        self.delete(vol.volume_id)

    def test_06_all_regions_used(self):
        nreg = len([r for r in regions() if r.get("type", "pmem") == "pmem"])
        if nreg < 2:
            self.skipTest("one region only")
        half = self.capacity().maximum_volume_size.value * 2 // 3
        a = self.create("direct-big-a", half, params={"eraseafter": "false"})
        b = self.create("direct-big-b", half, params={"eraseafter": "false"})
        ns = volume_namespaces()
        self.assertNotEqual(ns[a.volume_id]["dev"].split(".")[0], ns[b.volume_id]["dev"].split(".")[0],
                            "both volumes in one region")
        self.delete(a.volume_id)
        self.delete(b.volume_id)

    def test_07_restart_keeps_volumes(self):
        vol = self.create("direct-restart", 64 * MiB)
        type(self).driver.restart()
        self.assertIn(vol.volume_id, self.listed_ids())
        staging = self.stage(vol.volume_id)
        self.unstage(vol.volume_id, staging)
        self.delete(vol.volume_id)
        self.assertEqual(volume_namespaces(), {})


class BlockBase(DriverTestCase):
    """volumeMode: Block - no filesystem, the device bind-mounted onto a file."""
    sequential = True
    mode = "lvm"

    def test_01_block_lifecycle(self):
        cls = type(self)
        req = pb.CreateVolumeRequest(name="block-" + self.mode, volume_capabilities=[block_cap()],
                                     capacity_range=pb.CapacityRange(required_bytes=64 * MiB))
        vol = self.expect(None, self.c.CreateVolume, req, "CreateVolume(block)").volume
        self._track(vol.volume_id)
        staging = self.path("block", "staging")
        os.makedirs(staging, exist_ok=True)
        self.expect(None, self.c.NodeStageVolume, self.stage_req(vol.volume_id, staging, cap=block_cap()), "stage")
        target = self.path("block", "pod", "dev")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        self._track(vol.volume_id)["targets"].add(target)
        preq = pb.NodePublishVolumeRequest(volume_id=vol.volume_id, staging_target_path=staging, target_path=target,
                                           volume_capability=block_cap())
        self.expect(None, self.c.NodePublishVolume, preq, "publish(block)")
        self.expect(None, self.c.NodePublishVolume, preq, "publish(block) again")
        st = os.stat(target)
        self.assertTrue(stat.S_ISBLK(st.st_mode), "target is not a block device")
        self.assertEqual(st.st_rdev, os.stat(device_of(self, vol.volume_id)).st_rdev)
        data = os.urandom(1 * MiB)
        fd = os.open(target, os.O_RDWR)
        os.pwrite(fd, data, 8 * MiB)
        os.fsync(fd)
        self.assertEqual(os.pread(fd, len(data), 8 * MiB), data)
        os.close(fd)
        self.assertIsNone(run(["blkid", "-p", target], check=False) or None, "a filesystem appeared on a block volume")
        # read-only publish
        ro_target = self.path("block", "pod", "ro")
        self._track(vol.volume_id)["targets"].add(ro_target)
        rreq = pb.NodePublishVolumeRequest(volume_id=vol.volume_id, staging_target_path=staging,
                                           target_path=ro_target, volume_capability=block_cap(), readonly=True)
        self.expect(None, self.c.NodePublishVolume, rreq, "publish(block, ro)")
        # The bind mount is read-only; the kernel does not stop writes through a
        # device node on a read-only mount, so enforcement for pods comes from the
        # container runtime's device rules (docs/usage.md says so).
        m = mounts_at(ro_target)
        self.assertTrue(m and "ro" in m[0][3], "read-only publish is not a ro mount: %s" % m)
        # DeleteVolume while the device node is bound at a target (found by the e2e
        # run: kubelet deleted the PV right after the pod, the LV went, and unpublish
        # failed for ever): a bind of the node shows devtmpfs in mountinfo, not the device.
        self.expect(C.FAILED_PRECONDITION, self.c.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vol.volume_id),
                    "DeleteVolume of a published block volume")
        self.assertIsNotNone(device_of(self, vol.volume_id), "the device of a published block volume is gone")
        for t in (target, ro_target):
            self.unpublish(vol.volume_id, t)
            self.assertFalse(os.path.exists(t), "target %s not removed" % t)
        self.unstage(vol.volume_id, staging)
        self.delete(vol.volume_id)
        self.assertIsNone(device_of(self, vol.volume_id))

    def test_03_unstage_after_delete(self):
        """kubelet's order for block volumes: unpublish, DeleteVolume (nothing is mounted at the
        staging path, so it is allowed), then NodeUnstageVolume. That must succeed, or kubelet
        retries it for ever and keeps its volumeDevices directories (found by the e2e run)."""
        req = pb.CreateVolumeRequest(name="block-late-" + self.mode, volume_capabilities=[block_cap()],
                                     capacity_range=pb.CapacityRange(required_bytes=16 * MiB))
        vid = self.expect(None, self.c.CreateVolume, req, "CreateVolume(block)").volume.volume_id
        self._track(vid)
        staging = self.path("block-late", "staging")
        os.makedirs(staging, exist_ok=True)
        self.expect(None, self.c.NodeStageVolume, self.stage_req(vid, staging, cap=block_cap()), "stage")
        self.delete(vid)
        self.unstage(vid, staging)
        self.unstage(vid, staging)
        # A volume ID never seen, nothing mounted: nothing to do either.
        self.unstage("no-such-volume", self.path("block-late", "other"))

    def test_02_kata_block_rejected(self):
        req = pb.CreateVolumeRequest(name="block-kata", volume_capabilities=[block_cap()],
                                     parameters={"kataContainers": "true"})
        self.expect(C.INVALID_ARGUMENT, self.c.CreateVolume, req, "kata+block", contains="kataContainers")


class BlockLVM(BlockBase):
    group = "block-lvm"


class BlockDirect(BlockBase):
    group = "block-direct"
    mode = "direct"
    clean_devices = True
    driver_kwargs = DIRECT


class EphemeralBase(DriverTestCase):
    """CSI inline ephemeral volumes: NodePublishVolume creates, NodeUnpublishVolume deletes."""
    mode = "lvm"

    def ephemeral_req(self, kubelet_id, target, attrs, fs="ext4"):
        ctx = {"csi.storage.k8s.io/ephemeral": "true", "csi.storage.k8s.io/pod.name": "app-0",
               "csi.storage.k8s.io/pod.namespace": "default"}
        ctx.update(attrs)
        return pb.NodePublishVolumeRequest(volume_id=kubelet_id, target_path=target,
                                           volume_capability=mount_cap(fs), volume_context=ctx)

    def test_01_lifecycle(self):
        for fs, size in (("ext4", "100Mi"), ("xfs", "1e8")):
            kid = "csi-" + ("%s%s" % (self.mode, fs)).ljust(64, "0")
            target = self.path("eph", fs, "mount")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            req = self.ephemeral_req(kid, target, {"size": size}, fs)
            self.expect(None, self.c.NodePublishVolume, req, "ephemeral publish %s" % fs)
            self.expect(None, self.c.NodePublishVolume, req, "ephemeral publish %s again" % fs)
            m = mounts_at(target)
            self.assertTrue(m and m[0][2] == fs and "dax=always" in m[0][3], "mount: %s" % m)
            vid = volume_id(kid)
            self.assertIsNotNone(device_of(self, vid))
            with open(os.path.join(target, "data"), "wb") as f:
                f.write(b"e" * MiB)
            self.unpublish(kid, target)
            self.unpublish(kid, target)  # idempotent
            self.assertIsNone(device_of(self, vid), "ephemeral volume not deleted")
            self.assertFalse(os.path.exists(os.path.join(type(self).state_dir, vid + ".json")))
            self.assertFalse(os.path.exists(target))

    def test_02_bad_attributes(self):
        target = self.path("eph-bad", "mount")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        kid = "csi-" + "b" * 64
        for attrs, word in (({}, "size"), ({"size": "1Gb"}, "size"), ({"size": "-5"}, "size"),
                            ({"size": "10Mi", "colour": "red"}, "colour"),
                            ({"size": "10Mi", "eraseafter": "maybe"}, "eraseafter"),
                            ({"size": "10Mi", "usage": "Memory"}, "usage")):
            self.expect(C.INVALID_ARGUMENT, self.c.NodePublishVolume, self.ephemeral_req(kid, target, attrs),
                        "ephemeral %s" % attrs, contains=word)
        self.assertIsNone(device_of(self, volume_id(kid)), "a failed publish left a volume")

    def test_03_too_big(self):
        target = self.path("eph-big", "mount")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        kid = "csi-" + "c" * 64
        self.expect(C.RESOURCE_EXHAUSTED, self.c.NodePublishVolume,
                    self.ephemeral_req(kid, target, {"size": "100Gi"}), "ephemeral 100Gi")
        self.assertIsNone(device_of(self, volume_id(kid)))


class EphemeralLVM(EphemeralBase):
    group = "ephemeral-lvm"


class EphemeralDirect(EphemeralBase):
    group = "ephemeral-direct"
    mode = "direct"
    clean_devices = True
    driver_kwargs = DIRECT


class EraseBase(DriverTestCase):
    """eraseafter=true: a new volume over the same space reads only zeros."""
    mode = "lvm"
    clean_devices = True
    size = 64 * MiB

    def fill(self, vid):
        dev = device_of(self, vid)
        pattern = bytes([0xA5]) * MiB
        fd = os.open(dev, os.O_WRONLY)
        for off in range(0, blockdev_size(dev), MiB):
            os.pwrite(fd, pattern, off)
        os.fsync(fd)
        os.close(fd)

    def nonzero_mib(self, vid):
        dev = device_of(self, vid)
        fd = os.open(dev, os.O_RDONLY)
        bad = 0
        zero = bytes(MiB)
        size = blockdev_size(dev)
        for off in range(0, size, MiB):
            if os.pread(fd, MiB, off) != zero:
                bad += 1
        os.close(fd)
        return bad, size // MiB

    def cycle(self, erase):
        a = self.create("erase-a-%s" % erase, self.size, params={"eraseafter": erase})
        self.fill(a.volume_id)
        t = time.monotonic()
        self.delete(a.volume_id)
        took = time.monotonic() - t
        b = self.create("erase-b-%s" % erase, self.size, params={"eraseafter": "false"})
        bad, total = self.nonzero_mib(b.volume_id)
        dev = device_of(self, b.volume_id)
        fd = os.open(dev, os.O_RDONLY)
        head = os.pread(fd, 4096, 0)
        os.close(fd)
        self.delete(b.volume_id)
        return bad, total, took, head

    def test_01_erase_true_reads_zeros(self):
        bad, total, took, head = self.cycle("true")
        self.assertEqual(bad, 0, "%d of %d MiB still hold the old pattern after eraseafter=true" % (bad, total))
        type(self).took_erase = took

    def test_02_erase_false_is_fast_and_first_4k_cleared(self):
        bad, total, took, head = self.cycle("false")
        self.assertEqual(head, bytes(4096), "the first 4 KiB of a new volume are not zero")
        # Same space, not erased: the old data is still there (that is what eraseafter=false means).
        self.assertGreater(bad, 0, "expected the old pattern to survive eraseafter=false (same extents reused)")
        erase_took = getattr(type(self), "took_erase", None)
        if erase_took is not None:
            print("# erase %s: delete with eraseafter=true %.2f s, false %.2f s" % (self.mode, erase_took, took))


class EraseLVM(EraseBase):
    group = "erase-lvm"


class EraseDirect(EraseBase):
    group = "erase-direct"
    mode = "direct"
    driver_kwargs = DIRECT
