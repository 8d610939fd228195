"""The whole life of one volume, step by step, on ext4 and on xfs."""

import errno
import os

from csitest import (MiB, DriverTestCase, is_dax_file, is_mounted, lv_path, lvs, mounts_at,
                     nonblocking, same_device, volume_id)


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


class LifecycleBase(DriverTestCase):
    """Create, stage, publish (rw and ro), use, unpublish, unstage, delete."""

    sequential = True
    fs = None
    size = None
    data = os.urandom(1 * MiB)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.name = "lifecycle-%s" % cls.fs
        cls.vid = volume_id(cls.name)

    def check_mount(self, path, readonly=False):
        ms = mounts_at(path)
        self.assertEqual(len(ms), 1, "mounts at %s: %s" % (path, ms))
        src, _, fstype, opts = ms[0]
        self.assertEqual(fstype, self.fs, "%s is mounted as %s" % (path, fstype))
        self.assertTrue(same_device(src, lv_path(self.vid)),
                        "%s is mounted from %s, not from the LV %s" % (path, src, lv_path(self.vid)))
        self.assertIn("dax=always", opts, "%s mounted without dax: %s" % (path, ",".join(opts)))
        self.assertIn("ro" if readonly else "rw", opts, "%s options %s" % (path, ",".join(opts)))

    def test_01_create(self):
        cls = type(self)
        vol = self.create(self.name, self.size, self.fs)
        self.assertEqual(vol.volume_id, self.vid, "volume ID is not name[:6]-sha224(name)")
        self.assertGreaterEqual(vol.capacity_bytes, self.size)
        lv = lvs().get(self.vid)
        self.assertIsNotNone(lv, "no LV named %s" % self.vid)
        self.assertGreaterEqual(lv[1], vol.capacity_bytes, "LV smaller than the reported capacity")
        self.assertTrue(os.path.exists(self.state_file(self.vid)), "no state file")
        listed = {e.volume.volume_id: e.volume.capacity_bytes for e in self.list_all()}
        self.assertIn(self.vid, listed, "ListVolumes does not show the new volume")
        self.assertEqual(listed[self.vid], vol.capacity_bytes, "ListVolumes capacity differs")
        cls.capacity_bytes = vol.capacity_bytes

    def test_02_stage(self):
        cls = type(self)
        cls.staging = self.stage(self.vid, fs=self.fs)
        self.check_mount(cls.staging)

    def test_03_publish(self):
        cls = type(self)
        target = self.path("pod1", "volumes", "rw")
        self.assertFalse(os.path.exists(target))
        cls.target = self.publish(self.vid, self.staging, target, fs=self.fs)
        self.assertTrue(os.path.isdir(target), "target dir not created")
        self.check_mount(target)

    def test_04_write_read(self):
        f = os.path.join(self.target, "data")
        write_file(f, self.data)
        self.assertEqual(read_file(f), self.data)
        self.assertEqual(read_file(os.path.join(self.staging, "data")), self.data,
                         "file written through the target differs at the staging path")
        self.assertTrue(is_dax_file(f), "the file has no STATX_ATTR_DAX: the mount is not really DAX")

    def test_05_readonly_publish(self):
        cls = type(self)
        cls.ro_target = self.publish(self.vid, self.staging, self.path("pod2", "volumes", "ro"),
                                     fs=self.fs, readonly=True)
        self.check_mount(self.ro_target, readonly=True)
        self.assertEqual(read_file(os.path.join(self.ro_target, "data")), self.data)
        with self.assertRaises(OSError, msg="write to a read-only publish succeeded") as cm:
            write_file(os.path.join(self.ro_target, "new"), b"x")
        self.assertEqual(cm.exception.errno, errno.EROFS, str(cm.exception))
        self.unpublish(self.vid, self.ro_target)
        self.assertFalse(is_mounted(self.ro_target))
        self.check_mount(self.staging)  # the staging mount stays writable
        self.check_mount(self.target)

    def test_06_unpublish(self):
        self.unpublish(self.vid, self.target)
        self.assertFalse(is_mounted(self.target), "target still mounted")
        self.assertTrue(is_mounted(self.staging), "unpublish unmounted the staging path")

    @nonblocking
    def test_07_target_removed(self):
        """CSI: the SP deletes the target path it created."""
        self.assertFalse(os.path.exists(self.target), "NodeUnpublishVolume left %s" % self.target)

    def test_08_unstage(self):
        self.unstage(self.vid, self.staging)
        self.assertFalse(is_mounted(self.staging), "staging path still mounted")
        self.assertIn(self.vid, lvs(), "unstage removed the LV")

    def test_09_restage_keeps_data(self):
        """Staging a volume with a filesystem must not mkfs it again."""
        self.stage(self.vid, self.staging, fs=self.fs)
        self.check_mount(self.staging)
        self.assertEqual(read_file(os.path.join(self.staging, "data")), self.data,
                         "data lost after unstage + stage")
        self.unstage(self.vid, self.staging)
        self.assertFalse(is_mounted(self.staging))

    def test_10_delete(self):
        before = self.capacity().available_capacity
        self.delete(self.vid)
        self.assertNotIn(self.vid, lvs(), "LV still exists after DeleteVolume")
        self.assertFalse(os.path.exists(self.state_file(self.vid)), "state file still exists")
        self.assertNotIn(self.vid, self.listed_ids(), "ListVolumes still shows the volume")
        after = self.capacity().available_capacity
        self.assertGreaterEqual(after - before, self.capacity_bytes,
                                "GetCapacity grew by %d after deleting a %d byte volume"
                                % (after - before, self.capacity_bytes))


class LifecycleExt4(LifecycleBase):
    group = "lifecycle-ext4"
    fs = "ext4"
    size = 64 * MiB


class LifecycleXfs(LifecycleBase):
    group = "lifecycle-xfs"
    fs = "xfs"
    size = 320 * MiB

