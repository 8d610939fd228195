"""GetCapacity and ListVolumes."""

from csitest import (C, LVM_ALIGN, MiB, NODE_ID, TOPOLOGY_KEY, DriverTestCase, lvs, mount_cap,
                     nonblocking, pb, vgs)


class Capacity(DriverTestCase):
    group = "capacity"

    def test_fields(self):
        r = self.capacity()
        self.assertGreater(r.available_capacity, 0)
        self.assertTrue(r.HasField("maximum_volume_size"), "no maximum_volume_size")
        mx = r.maximum_volume_size.value
        self.assertTrue(0 < mx <= r.available_capacity,
                        "maximum_volume_size %d, available %d" % (mx, r.available_capacity))

    def test_matches_volume_groups(self):
        free = [f for name, (_, f) in vgs().items() if name.endswith("fsdax")]
        r = self.capacity()
        self.assertLessEqual(r.available_capacity, sum(free),
                             "available %d > free space of the VGs %d" % (r.available_capacity, sum(free)))
        self.assertGreaterEqual(r.available_capacity, sum(free) - len(free) * LVM_ALIGN)
        self.assertLessEqual(r.maximum_volume_size.value, max(free))
        self.assertGreaterEqual(r.maximum_volume_size.value, max(free) - LVM_ALIGN)

    def test_with_topology_and_capabilities(self):
        plain = self.capacity()
        r = self.expect(None, self.c.GetCapacity, pb.GetCapacityRequest(
            volume_capabilities=[mount_cap()],
            accessible_topology=pb.Topology(segments={TOPOLOGY_KEY: NODE_ID})),
            "GetCapacity with this node's topology")
        self.assertEqual(r.available_capacity, plain.available_capacity)

    def test_drops_after_create(self):
        size = 256 * MiB
        before = self.capacity()
        vol = self.create("capacity-256m", size, params={"eraseafter": "false"})
        after = self.capacity()
        self.delete(vol.volume_id)
        restored = self.capacity()
        self.assertGreaterEqual(before.available_capacity - after.available_capacity, size,
                                "available dropped by %d after creating %d bytes"
                                % (before.available_capacity - after.available_capacity, size))
        self.assertTrue(after.HasField("maximum_volume_size"))
        self.assertEqual(restored.available_capacity, before.available_capacity,
                         "available not back to the start value after DeleteVolume")

    @nonblocking
    def test_maximum_volume_size_is_creatable(self):
        """The scheduler trusts maximum_volume_size: a volume of exactly that size must fit."""
        mx = self.capacity().maximum_volume_size.value
        vol = self.create("capacity-max", mx, params={"eraseafter": "false"})
        self.delete(vol.volume_id)
        self.expect(C.RESOURCE_EXHAUSTED, self.c.CreateVolume, pb.CreateVolumeRequest(
            name="capacity-max-plus", volume_capabilities=[mount_cap()],
            capacity_range=pb.CapacityRange(required_bytes=mx + LVM_ALIGN),
            parameters={"eraseafter": "false"}), "CreateVolume of maximum_volume_size + 4 MiB")


class ListVolumes(DriverTestCase):
    group = "list-volumes"
    names = ["list-%d" % i for i in range(5)]

    def test_paging(self):
        vols = {self.create(n, 8 * MiB, params={"eraseafter": "false"}).volume_id for n in self.names}
        everything = self.list_all()
        ids = [e.volume.volume_id for e in everything]
        self.assertTrue(vols <= set(ids), "ListVolumes misses %s" % (vols - set(ids)))
        for page in (1, 2, 3):
            paged = [e.volume.volume_id for e in self.list_all(max_entries=page)]
            self.assertEqual(sorted(paged), sorted(ids),
                             "max_entries=%d: paging gives a different list (dups or gaps)" % page)
        r = self.expect(None, self.c.ListVolumes, pb.ListVolumesRequest(max_entries=2), "ListVolumes")
        self.assertEqual(len(r.entries), 2)
        self.assertTrue(r.next_token, "no next_token with 2 of %d volumes" % len(ids))

    def test_entries(self):
        vol = self.create(self.names[0], 8 * MiB, params={"eraseafter": "false"})
        entry = [e for e in self.list_all() if e.volume.volume_id == vol.volume_id]
        self.assertEqual(len(entry), 1)
        self.assertEqual(entry[0].volume.capacity_bytes, vol.capacity_bytes)
        self.assertEqual(lvs()[vol.volume_id][1], vol.capacity_bytes,
                         "LV size differs from the reported capacity")

    def test_deleted_not_listed(self):
        for n in self.names:
            self.create(n, 8 * MiB, params={"eraseafter": "false"})
        vids = list(type(self).tracked)
        for vid in vids:
            self.delete(vid)
        left = set(vids) & set(self.listed_ids())
        self.assertFalse(left, "deleted volumes still listed: %s" % left)
