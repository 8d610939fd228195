"""Online volume expansion (issue 12, part 2), both device modes, on real volumes.

LVM mode: ControllerExpandVolume grows the LV (rounded to 4 MiB as CreateVolume rounds,
OUT_OF_RANGE when the volume group has no room, a smaller size answers the current one,
never shrinks, limit_bytes respected), NodeExpandVolume grows ext4 and xfs while mounted
with DAX (data kept, dax still on, statvfs sees the new size), raw block volumes grow
without a node step, the new size survives a restart, and a crash between lvextend and
the record write is completed by the CO's retry. Direct mode offers no expansion
capability and says why when asked anyway. Bad fields are INVALID_ARGUMENT naming the
field, unknown volumes NOT_FOUND."""

import hashlib
import json
import os

import csi_pb2 as pb
from csitest import C, MiB, SNW, DriverTestCase, lvs, mount_cap, mounts_at, run, LVM_ENV

from test_modes import DIRECT, block_cap, blockdev_size, device_of

UNKNOWN_VID = "nosuch-" + "0" * 56
CtlRPC = pb.ControllerServiceCapability.RPC
NodeRPC = pb.NodeServiceCapability.RPC


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_random(path, size):
    with open(path, "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
    return sha256(path)


def write_pattern(path, size):
    """size bytes of a repeated random MiB (os.urandom of hundreds of MiB is slow under TCG)."""
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(block)
        f.write(block[:size % MiB])
        f.flush()
        os.fsync(f.fileno())


def has_dax(path):
    m = mounts_at(path)
    return bool(m) and any(o == "dax" or o.startswith("dax=always") for o in m[-1][3])


class ExpandBase(DriverTestCase):
    mode = "lvm"

    def cexpand(self, vid, required, limit=0, cap=None, code=None, contains=None, what=None, no_range=False):
        req = pb.ControllerExpandVolumeRequest(volume_id=vid)
        if not no_range:
            req.capacity_range.SetInParent()
            req.capacity_range.CopyFrom(pb.CapacityRange(required_bytes=required, limit_bytes=limit))
        if cap is not None:
            req.volume_capability.CopyFrom(cap)
        return self.expect(code, self.c.ControllerExpandVolume, req,
                           what or "ControllerExpandVolume(%s, %d)" % (vid, required), contains=contains)

    def nexpand(self, vid, path, required=0, staging="", cap=None, code=None, contains=None, what=None):
        req = pb.NodeExpandVolumeRequest(volume_id=vid, volume_path=path, staging_target_path=staging,
                                         capacity_range=pb.CapacityRange(required_bytes=required))
        if cap is not None:
            req.volume_capability.CopyFrom(cap)
        return self.expect(code, self.c.NodeExpandVolume, req,
                           what or "NodeExpandVolume(%s, %s)" % (vid, path), contains=contains)

    def volume(self, what, size=64 * MiB, fs="ext4", caps=None):
        return self.create("expand-%s-%s" % (what, self.mode), size, fs=fs, caps=caps).volume_id

    def listed_size(self, vid):
        for e in self.list_all():
            if e.volume.volume_id == vid:
                return e.volume.capacity_bytes
        self.fail("volume %s is not listed" % vid)

    def recorded_size(self, vid):
        with open(self.state_file(vid)) as f:
            return json.load(f)["size"]

    def capabilities(self):
        ctl = {c.rpc.type for c in self.expect(None, self.c.ControllerGetCapabilities,
                                                pb.ControllerGetCapabilitiesRequest(),
                                                "ControllerGetCapabilities").capabilities}
        node = {c.rpc.type for c in self.expect(None, self.c.NodeGetCapabilities,
                                                 pb.NodeGetCapabilitiesRequest(),
                                                 "NodeGetCapabilities").capabilities}
        plugin = [c for c in self.expect(None, self.c.GetPluginCapabilities, pb.GetPluginCapabilitiesRequest(),
                                         "GetPluginCapabilities").capabilities if c.HasField("volume_expansion")]
        return ctl, node, plugin

    def check_field_errors(self, vid):
        """Every field is checked before the mode or the volume is looked at."""
        here = self.path("errors")
        os.makedirs(here, exist_ok=True)
        multi = mount_cap(mode=pb.VolumeCapability.AccessMode.MULTI_NODE_MULTI_WRITER)
        self.cexpand("", 128 * MiB, code=C.INVALID_ARGUMENT, contains="volume_id", what="no volume_id")
        self.cexpand(vid, 0, code=C.INVALID_ARGUMENT, contains="capacity_range", what="no capacity_range",
                     no_range=True)
        self.cexpand(vid, 0, 0, code=C.INVALID_ARGUMENT, contains="capacity_range", what="empty capacity_range")
        self.cexpand(vid, -1, code=C.INVALID_ARGUMENT, contains="negative", what="negative required_bytes")
        self.cexpand(vid, 0, -5, code=C.INVALID_ARGUMENT, contains="negative", what="negative limit_bytes")
        self.cexpand(vid, 256 * MiB, 128 * MiB, code=C.INVALID_ARGUMENT, contains="limit_bytes",
                     what="required_bytes above limit_bytes")
        self.cexpand(vid, 128 * MiB, cap=multi, code=C.INVALID_ARGUMENT, contains="volume_capability",
                     what="multi-node capability")
        self.cexpand(vid, 128 * MiB, cap=pb.VolumeCapability(access_mode=pb.VolumeCapability.AccessMode(mode=SNW)),
                     code=C.INVALID_ARGUMENT, contains="volume_capability", what="capability without access type")
        self.nexpand("", here, code=C.INVALID_ARGUMENT, contains="volume_id", what="node: no volume_id")
        self.nexpand(vid, "", code=C.INVALID_ARGUMENT, contains="volume_path", what="node: no volume_path")
        # csi-sanity sends "some/path" and wants NOT_FOUND (as for NodeGetVolumeStats).
        self.nexpand(vid, "some/path", code=C.NOT_FOUND, contains="volume_path",
                     what="node: relative volume_path")
        self.nexpand(vid, here + "/../errors", code=C.INVALID_ARGUMENT, contains="volume_path",
                     what="node: volume_path with ..")
        self.nexpand(vid, here, staging="rel/staging", code=C.INVALID_ARGUMENT, contains="staging_target_path",
                     what="node: relative staging_target_path")
        self.nexpand(vid, here, cap=multi, code=C.INVALID_ARGUMENT, contains="volume_capability",
                     what="node: multi-node capability")
        self.nexpand(vid, here, required=-1, code=C.INVALID_ARGUMENT, contains="negative",
                     what="node: negative required_bytes")


class ExpandLVM(ExpandBase):
    group = "expand-lvm"

    def test_capabilities(self):
        ctl, node, plugin = self.capabilities()
        self.assertIn(CtlRPC.EXPAND_VOLUME, ctl, "LVM mode: no EXPAND_VOLUME controller capability")
        self.assertIn(NodeRPC.EXPAND_VOLUME, node, "LVM mode: no EXPAND_VOLUME node capability")
        self.assertEqual([c.volume_expansion.type for c in plugin], [pb.PluginCapability.VolumeExpansion.ONLINE],
                         "LVM mode: plugin capability VolumeExpansion ONLINE")

    def grow_fs(self, fs, size, new):
        vid = self.volume(fs, size, fs=fs)
        staging = self.stage(vid, fs=fs)
        target = self.publish(vid, staging, fs=fs)
        self.assertTrue(has_dax(staging), "%s: not mounted with dax before: %s" % (fs, mounts_at(staging)))
        data = os.path.join(target, "data")
        sum0 = write_random(data, 8 * MiB)
        sv = os.statvfs(target)
        total0, avail0 = sv.f_blocks * sv.f_frsize, sv.f_bavail * sv.f_frsize
        dev = device_of(self, vid)

        resp = self.cexpand(vid, new, cap=mount_cap(fs))
        self.assertEqual(resp.capacity_bytes, new, "%s: ControllerExpandVolume capacity_bytes" % fs)
        self.assertTrue(resp.node_expansion_required, "%s: a filesystem volume needs the node step" % fs)
        self.assertEqual(lvs()[vid][1], new, "%s: LV size after ControllerExpandVolume" % fs)
        self.assertEqual(self.recorded_size(vid), new, "%s: size in the state file" % fs)
        self.assertEqual(self.listed_size(vid), new, "%s: ListVolumes capacity" % fs)

        resp = self.nexpand(vid, target, required=new, staging=staging, cap=mount_cap(fs))
        self.assertEqual(resp.capacity_bytes, blockdev_size(dev), "%s: NodeExpandVolume capacity_bytes" % fs)
        sv = os.statvfs(target)
        total = sv.f_blocks * sv.f_frsize
        self.assertGreater(total, total0 + (new - size) * 3 // 4,
                           "%s: statvfs total %d after growing from %d to %d (was %d)" % (fs, total, size, new, total0))
        df = run(["df", "-B1", "--output=size", target]).split()[-1]
        self.assertEqual(int(df), total, "%s: df shows %s, statvfs %d" % (fs, df, total))
        self.assertTrue(has_dax(staging), "%s: dax is off after growing: %s" % (fs, mounts_at(staging)))
        self.assertTrue(has_dax(target), "%s: dax is off at the target after growing: %s" % (fs, mounts_at(target)))
        self.assertEqual(sha256(data), sum0, "%s: data changed by growing" % fs)
        # The new space is usable: more than the old filesystem had free.
        write_pattern(os.path.join(target, "big"), avail0 + 16 * MiB)
        self.assertEqual(sha256(data), sum0, "%s: data changed after filling the new space" % fs)
        # Again: idempotent, nothing left to grow.
        resp = self.nexpand(vid, target, required=new, staging=staging, what="%s: NodeExpandVolume again" % fs)
        self.assertEqual(resp.capacity_bytes, blockdev_size(dev))
        # The bind mount alone (no staging path given) works too.
        self.nexpand(vid, target, what="%s: NodeExpandVolume at the target only" % fs)
        return vid, staging, target

    def test_grow_ext4(self):
        self.grow_fs("ext4", 64 * MiB, 128 * MiB)

    def test_grow_xfs(self):
        self.grow_fs("xfs", 300 * MiB, 400 * MiB)

    def test_grow_block(self):
        vid = self.volume("block", 64 * MiB, caps=[block_cap()])
        target = self.path("block", "pod", "dev")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        self._track(vid)["targets"].add(target)
        self.expect(None, self.c.NodePublishVolume,
                    pb.NodePublishVolumeRequest(volume_id=vid, target_path=target, volume_capability=block_cap()),
                    "NodePublishVolume(block)")
        with open(target, "r+b") as f:
            head = os.urandom(MiB)
            f.write(head)
            f.flush()
            os.fsync(f.fileno())
        resp = self.cexpand(vid, 100 * MiB, cap=block_cap())
        self.assertEqual(resp.capacity_bytes, 100 * MiB, "block: 100 MiB (a multiple of 4 MiB)")
        self.assertFalse(resp.node_expansion_required, "block: no node step")
        self.assertEqual(blockdev_size(target), 100 * MiB, "block: the published device node has the new size")
        with open(target, "rb") as f:
            self.assertEqual(f.read(MiB), head, "block: data changed by growing")
        resp = self.nexpand(vid, target, cap=block_cap(), what="NodeExpandVolume(block)")
        self.assertEqual(resp.capacity_bytes, 100 * MiB)

    def test_rounding_and_limits(self):
        vid = self.volume("round", 64 * MiB)
        resp = self.cexpand(vid, 65 * MiB)
        self.assertEqual(resp.capacity_bytes, 68 * MiB, "65 MiB rounds up to 68 MiB (4 MiB units)")
        self.assertEqual(lvs()[vid][1], 68 * MiB)
        # Without a capability the driver looks: no filesystem yet, no node step.
        self.assertFalse(resp.node_expansion_required, "an unformatted volume needs no node step")
        resp = self.cexpand(vid, 69 * MiB, 70 * MiB, code=C.OUT_OF_RANGE, contains="4 MiB",
                            what="no multiple of 4 MiB in [69, 70] MiB")
        resp = self.cexpand(vid, 70 * MiB, 75 * MiB)
        self.assertEqual(resp.capacity_bytes, 72 * MiB, "[70, 75] MiB gives 72 MiB")
        # Smaller or equal: the current size, nothing shrinks.
        for req in (72 * MiB, 16 * MiB, 1):
            resp = self.cexpand(vid, req, what="ControllerExpandVolume to %d bytes (smaller)" % req)
            self.assertEqual(resp.capacity_bytes, 72 * MiB, "a request of %d bytes on a 72 MiB volume" % req)
        self.assertEqual(lvs()[vid][1], 72 * MiB, "the LV changed on a smaller request")
        self.cexpand(vid, 16 * MiB, 32 * MiB, code=C.OUT_OF_RANGE, contains="shrink",
                     what="limit_bytes below the current size")
        self.assertEqual(lvs()[vid][1], 72 * MiB, "the LV shrank")
        self.assertEqual(self.recorded_size(vid), 72 * MiB)

    def test_out_of_range(self):
        vid = self.volume("toobig", 16 * MiB)
        free0 = self.capacity().available_capacity
        self.cexpand(vid, 1 << 40, code=C.OUT_OF_RANGE, contains=vid, what="ControllerExpandVolume to 1 TiB")
        self.cexpand(vid, free0 + 32 * MiB, code=C.OUT_OF_RANGE, what="ControllerExpandVolume beyond the free space")
        self.assertEqual(lvs()[vid][1], 16 * MiB, "the LV changed on a failed expansion")
        self.assertEqual(self.recorded_size(vid), 16 * MiB)
        self.assertEqual(self.capacity().available_capacity, free0, "capacity changed on a failed expansion")
        # The whole free space of its VG still works afterwards (no reservation leaked).
        resp = self.cexpand(vid, 32 * MiB)
        self.assertEqual(resp.capacity_bytes, 32 * MiB)
        self.assertEqual(self.capacity().available_capacity, free0 - 16 * MiB, "capacity after growing by 16 MiB")

    def test_unknown_and_errors(self):
        vid = self.volume("errors", 16 * MiB)
        self.check_field_errors(vid)
        here = self.path("errors")
        self.cexpand(UNKNOWN_VID, 128 * MiB, code=C.NOT_FOUND, contains=UNKNOWN_VID, what="unknown volume")
        self.cexpand("not-a-volume-id", 128 * MiB, code=C.NOT_FOUND, what="ID of no volume's shape")
        self.nexpand(UNKNOWN_VID, here, code=C.NOT_FOUND, contains=UNKNOWN_VID, what="node: unknown volume")
        self.nexpand(vid, self.path("no", "such"), code=C.NOT_FOUND, contains="does not exist",
                     what="node: volume_path that does not exist")
        self.nexpand(vid, here, code=C.NOT_FOUND, contains="not mounted", what="node: unmounted volume_path")
        # Something else mounted there is left alone.
        tmp = self.path("errors", "tmpfs")
        os.makedirs(tmp, exist_ok=True)
        run(["mount", "-t", "tmpfs", "-o", "size=1m", "expandtest-tmpfs", tmp])
        self.addCleanup(run, ["umount", "-l", tmp], False)
        self.nexpand(vid, tmp, code=C.FAILED_PRECONDITION, contains="tmpfs", what="node: a tmpfs at volume_path")
        self.assertTrue(mounts_at(tmp), "the tmpfs was unmounted")
        # NodeExpandVolume before ControllerExpandVolume: the device is too small.
        staging = self.stage(vid)
        self.nexpand(vid, staging, required=64 * MiB, staging=staging, code=C.FAILED_PRECONDITION,
                     contains="ControllerExpandVolume", what="node step before the controller step")

    def test_zz_restart_after_expand(self):
        vid = self.volume("restart", 64 * MiB)
        staging = self.stage(vid)
        data = os.path.join(staging, "data")
        sum0 = write_random(data, 4 * MiB)
        self.cexpand(vid, 96 * MiB, cap=mount_cap())
        self.nexpand(vid, staging, staging=staging)
        d = type(self).driver
        d.stop()
        d.start()
        self.assertEqual(self.listed_size(vid), 96 * MiB, "ListVolumes after a restart")
        self.assertEqual(self.recorded_size(vid), 96 * MiB)
        self.assertEqual(sha256(data), sum0, "data after the restart")
        resp = self.cexpand(vid, 96 * MiB, what="ControllerExpandVolume to the same size after a restart")
        self.assertEqual(resp.capacity_bytes, 96 * MiB)

    def test_zz_crash_between_lvextend_and_record(self):
        """What a crash right after lvextend leaves (the LV grown, the record not): the
        restart serves the recorded size, the CO's retry finds the LV large enough,
        runs no second lvextend and writes the record."""
        vid = self.volume("crash", 64 * MiB)
        staging = self.stage(vid)
        dev = device_of(self, vid)
        d = type(self).driver
        d.stop()
        run(["lvextend", "--config", "activation{udev_sync=0 udev_rules=0}", "-L", "%db" % (128 * MiB), dev],
            env=LVM_ENV)
        d.start()
        self.assertEqual(self.listed_size(vid), 64 * MiB, "after the crash: the recorded size is served")
        free0 = self.capacity().available_capacity
        resp = self.cexpand(vid, 128 * MiB, cap=mount_cap(), what="the CO's retry after the crash")
        self.assertEqual(resp.capacity_bytes, 128 * MiB)
        self.assertTrue(resp.node_expansion_required)
        self.assertEqual(lvs()[vid][1], 128 * MiB, "the LV was extended again")
        self.assertEqual(self.recorded_size(vid), 128 * MiB, "the record after the retry")
        self.assertEqual(self.capacity().available_capacity, free0, "capacity changed by the retry")
        resp = self.nexpand(vid, staging, staging=staging)
        self.assertEqual(resp.capacity_bytes, 128 * MiB)
        self.assertTrue(has_dax(staging))


class ExpandDirect(ExpandBase):
    group = "expand-direct"
    mode = "direct"
    clean_devices = True
    driver_kwargs = DIRECT

    def test_capabilities(self):
        ctl, node, plugin = self.capabilities()
        self.assertNotIn(CtlRPC.EXPAND_VOLUME, ctl, "direct mode offers EXPAND_VOLUME (controller)")
        self.assertNotIn(NodeRPC.EXPAND_VOLUME, node, "direct mode offers EXPAND_VOLUME (node)")
        self.assertEqual(plugin, [], "direct mode offers VolumeExpansion")

    def test_answers(self):
        vid = self.volume("answers", 64 * MiB)
        staging = self.stage(vid)
        size0 = blockdev_size(device_of(self, vid))
        self.cexpand(vid, 128 * MiB, code=C.UNIMPLEMENTED, contains="direct mode",
                     what="ControllerExpandVolume in direct mode")
        self.nexpand(vid, staging, staging=staging, code=C.UNIMPLEMENTED, contains="direct mode",
                     what="NodeExpandVolume in direct mode")
        self.cexpand(UNKNOWN_VID, 128 * MiB, code=C.UNIMPLEMENTED, what="unknown volume in direct mode")
        self.assertEqual(blockdev_size(device_of(self, vid)), size0, "the namespace changed")

    def test_field_errors(self):
        vid = self.volume("errors", 16 * MiB)
        self.check_field_errors(vid)

    def test_zz_direct_volume_in_lvm_mode(self):
        """A volume made in direct mode, served by an LVM-mode driver after a switch: the
        driver offers expansion, but that namespace cannot grow: FAILED_PRECONDITION."""
        vid = self.volume("switch", 64 * MiB)
        size0 = blockdev_size(device_of(self, vid))
        d = type(self).driver
        d.stop()
        saved = d.extra_args
        try:
            d.extra_args = [a for a in saved if not a.startswith("-deviceManager")] + \
                ["-deviceManager=lvm", "-pmemPercentage=0"]
            d.start()
            ctl, node, plugin = self.capabilities()
            self.assertIn(CtlRPC.EXPAND_VOLUME, ctl, "LVM mode after the switch: no EXPAND_VOLUME")
            self.cexpand(vid, 128 * MiB, code=C.FAILED_PRECONDITION, contains="direct",
                         what="ControllerExpandVolume of a direct-mode volume in LVM mode")
            d.stop()
        finally:
            d.extra_args = saved
            if not d.alive():
                d.start()
        self.assertEqual(blockdev_size(device_of(self, vid)), size0, "the namespace changed")
