"""Every call twice in a row gives the same result (CSI requires idempotency)."""

import os

from csitest import (MiB, DriverTestCase, is_mounted, lvs, mount_cap, mounts_at, nonblocking,
                     pb, volume_id)


class Idempotency(DriverTestCase):
    group = "idempotency"
    sequential = True

    name = "idem-volume"
    vid = volume_id(name)
    size = 32 * MiB

    def twice(self, fn, req, what):
        r1 = self.expect(None, fn, req, what + " (1st call)")
        r2 = self.expect(None, fn, req, what + " (2nd call)")
        self.assertEqual(r1, r2, "%s: the 2nd answer differs from the 1st" % what)
        return r1

    def create_req(self, size=None, limit=0):
        return pb.CreateVolumeRequest(
            name=self.name, volume_capabilities=[mount_cap()],
            capacity_range=pb.CapacityRange(required_bytes=size or self.size, limit_bytes=limit))

    def test_01_create_twice(self):
        self._track(self.vid)
        r = self.twice(self.c.CreateVolume, self.create_req(), "CreateVolume")
        type(self).vol = r.volume
        self._track(self.vid)["context"] = dict(r.volume.volume_context)
        self.assertEqual(r.volume.volume_id, self.vid)
        self.assertEqual([lv for lv in lvs() if lv == self.vid], [self.vid])

    @nonblocking
    def test_02_create_again_smaller_request(self):
        """Same name, a request the existing volume satisfies: OK, the same volume."""
        r = self.expect(None, self.c.CreateVolume, self.create_req(size=16 * MiB),
                        "CreateVolume with a smaller required_bytes")
        self.assertEqual(r.volume.volume_id, self.vid)
        self.assertEqual(r.volume.capacity_bytes, self.vol.capacity_bytes)

    def test_03_validate_twice(self):
        req = pb.ValidateVolumeCapabilitiesRequest(volume_id=self.vid,
                                                   volume_capabilities=[mount_cap()])
        r = self.twice(self.c.ValidateVolumeCapabilities, req, "ValidateVolumeCapabilities")
        self.assertTrue(r.HasField("confirmed"), "SINGLE_NODE_WRITER mount not confirmed: %r" % r.message)

    def test_04_stage_twice(self):
        cls = type(self)
        cls.staging = self.stage(self.vid)
        self.stage(self.vid, self.staging)
        self.assertEqual(len(mounts_at(self.staging)), 1, "staging mounts: %s" % mounts_at(self.staging))

    def test_05_publish_twice(self):
        cls = type(self)
        cls.target = self.publish(self.vid, self.staging)
        self.publish(self.vid, self.staging, self.target)
        self.assertEqual(len(mounts_at(self.target)), 1, "target mounts: %s" % mounts_at(self.target))

    def test_06_publish_readonly_twice(self):
        cls = type(self)
        cls.ro_target = self.publish(self.vid, self.staging, readonly=True)
        self.publish(self.vid, self.staging, self.ro_target, readonly=True)
        ms = mounts_at(self.ro_target)
        self.assertEqual(len(ms), 1, "target mounts: %s" % ms)
        self.assertIn("ro", ms[0][3])

    def test_07_list_capacity_info_twice(self):
        self.twice(self.c.ListVolumes, pb.ListVolumesRequest(), "ListVolumes")
        self.twice(self.c.GetCapacity, pb.GetCapacityRequest(), "GetCapacity")
        self.twice(self.c.NodeGetInfo, pb.NodeGetInfoRequest(), "NodeGetInfo")
        self.twice(self.c.GetPluginInfo, pb.GetPluginInfoRequest(), "GetPluginInfo")
        self.twice(self.c.Probe, pb.ProbeRequest(), "Probe")

    def test_08_unpublish_twice(self):
        for t in (self.target, self.ro_target):
            self.unpublish(self.vid, t)
            self.unpublish(self.vid, t)
            self.assertFalse(is_mounted(t))

    def test_09_unstage_twice(self):
        self.unstage(self.vid, self.staging)
        self.unstage(self.vid, self.staging)
        self.assertFalse(is_mounted(self.staging))

    def test_10_delete_twice(self):
        self.delete(self.vid)
        self.delete(self.vid)
        self.assertNotIn(self.vid, lvs())
        self.assertFalse(os.path.exists(self.state_file(self.vid)))
