"""NodeGetVolumeStats (issue 12, part 1), both device modes, on real volumes: bytes and
inodes of a filesystem volume match statvfs(2) of its mount, a raw block volume reports
its device size, unknown volumes and paths that do not exist are NOT_FOUND, and the
volume condition is abnormal (with a message) when the path is not a mount of the
volume, when the filesystem became read-only under a read-write mount, and when the
device was removed behind the driver's back."""

import os

import csi_pb2 as pb
from csitest import C, MiB, DriverTestCase, mounts_at, run

from test_modes import DIRECT, block_cap, blockdev_size, device_of, volume_namespaces

UNKNOWN_VID = "nosuch-" + "0" * 56
Unit = pb.VolumeUsage.Unit


class StatsBase(DriverTestCase):
    mode = "lvm"

    def volume(self, what, size=64 * MiB, caps=None):
        return self.create("stats-%s-%s" % (what, self.mode), size, caps=caps).volume_id

    def stats(self, vid, path, what, code=None, contains=None, staging=""):
        return self.expect(code, self.c.NodeGetVolumeStats,
                           pb.NodeGetVolumeStatsRequest(volume_id=vid, volume_path=path,
                                                        staging_target_path=staging),
                           what, contains=contains)

    def usage(self, resp):
        return {u.unit: u for u in resp.usage}

    def assert_healthy(self, resp, what):
        self.assertTrue(resp.HasField("volume_condition"), "%s: no volume_condition" % what)
        self.assertFalse(resp.volume_condition.abnormal, "%s: abnormal: %r" % (what, resp.volume_condition.message))

    def assert_abnormal(self, resp, what, contains):
        cond = resp.volume_condition
        self.assertTrue(cond.abnormal, "%s: condition is normal (%r), want abnormal" % (what, cond.message))
        self.assertIn(contains, cond.message, "%s: message %r does not mention %r" % (what, cond.message, contains))
        self.assertEqual(list(resp.usage), [], "%s: usage reported for what is not the volume: %s"
                         % (what, resp.usage))

    def assert_matches_statvfs(self, resp, path, what):
        u = self.usage(resp)
        self.assertEqual(set(u), {Unit.BYTES, Unit.INODES}, "%s: units %s" % (what, sorted(u)))
        sv = os.statvfs(path)
        block = sv.f_frsize
        b, i = u[Unit.BYTES], u[Unit.INODES]
        for name, got, want in (("total", b.total, sv.f_blocks * block),
                                ("available", b.available, sv.f_bavail * block),
                                ("used", b.used, (sv.f_blocks - sv.f_bfree) * block)):
            self.assertLessEqual(abs(got - want), block, "%s: bytes %s %d, statvfs says %d" % (what, name, got, want))
        self.assertEqual(i.total, sv.f_files, "%s: inodes total" % what)
        self.assertLessEqual(abs(i.available - sv.f_ffree), 1, "%s: inodes available" % what)
        self.assertLessEqual(abs(i.used - (sv.f_files - sv.f_ffree)), 1, "%s: inodes used" % what)
        self.assertEqual(b.used + b.available <= b.total, True, "%s: used + available > total" % what)

    # ---- usage ----------------------------------------------------------------------------

    def test_fs_volume(self):
        vid = self.volume("fs")
        staging = self.stage(vid)
        target = self.publish(vid, staging)
        before = self.usage(self.stats(vid, target, "stats of an empty volume"))[Unit.BYTES].used
        with open(os.path.join(target, "data"), "wb") as f:
            f.write(os.urandom(8 * MiB))
            f.flush()
            os.fsync(f.fileno())
        for path, what in ((target, "target path"), (staging, "staging path")):
            resp = self.stats(vid, path, "NodeGetVolumeStats at the " + what, staging=staging)
            self.assert_healthy(resp, what)
            self.assert_matches_statvfs(resp, path, what)
        used = self.usage(resp)[Unit.BYTES].used
        self.assertGreaterEqual(used - before, 8 * MiB, "8 MiB written, used grew by %d bytes only" % (used - before))
        total = self.usage(resp)[Unit.BYTES].total
        self.assertGreater(total, 48 * MiB, "a 64 MiB volume reports %d bytes" % total)
        self.assertLessEqual(total, blockdev_size(device_of(self, vid)))

    def test_block_volume(self):
        vid = self.volume("block", caps=[block_cap()])
        target = self.path("block", "pod", "dev")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        self._track(vid)["targets"].add(target)
        self.expect(None, self.c.NodePublishVolume,
                    pb.NodePublishVolumeRequest(volume_id=vid, target_path=target, volume_capability=block_cap()),
                    "NodePublishVolume(block)")
        resp = self.stats(vid, target, "NodeGetVolumeStats of a block volume")
        self.assert_healthy(resp, "block volume")
        u = self.usage(resp)
        self.assertEqual(set(u), {Unit.BYTES}, "block volume: units %s" % sorted(u))
        self.assertEqual(u[Unit.BYTES].total, blockdev_size(device_of(self, vid)), "block volume total")

    def test_ephemeral_volume(self):
        """kubelet names an inline ephemeral volume by its own ID, as in publish."""
        kid = "csi-" + ("stats%s" % self.mode).ljust(64, "0")
        target = self.path("eph", "mount")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        ctx = {"csi.storage.k8s.io/ephemeral": "true", "size": "64Mi"}
        self.expect(None, self.c.NodePublishVolume,
                    pb.NodePublishVolumeRequest(volume_id=kid, target_path=target, volume_context=ctx,
                                                volume_capability=pb.VolumeCapability(
                                                    mount=pb.VolumeCapability.MountVolume(fs_type="ext4"),
                                                    access_mode=pb.VolumeCapability.AccessMode(
                                                        mode=pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER))),
                    "NodePublishVolume(ephemeral)")
        try:
            resp = self.stats(kid, target, "NodeGetVolumeStats of an ephemeral volume")
            self.assert_healthy(resp, "ephemeral volume")
            self.assert_matches_statvfs(resp, target, "ephemeral volume")
        finally:
            self.expect(None, self.c.NodeUnpublishVolume,
                        pb.NodeUnpublishVolumeRequest(volume_id=kid, target_path=target),
                        "NodeUnpublishVolume(ephemeral)")

    # ---- errors ---------------------------------------------------------------------------

    def test_errors(self):
        vid = self.volume("errors", 16 * MiB)
        here = self.path("errors")
        os.makedirs(here, exist_ok=True)
        self.stats("", here, "no volume_id", C.INVALID_ARGUMENT, "volume_id")
        self.stats(vid, "", "no volume_path", C.INVALID_ARGUMENT, "volume_path")
        self.stats(UNKNOWN_VID, here, "unknown volume", C.NOT_FOUND, UNKNOWN_VID)
        self.stats(vid, self.path("errors", "no", "such"), "path that does not exist", C.NOT_FOUND, "does not exist")
        # csi-sanity sends "some/path" for a known volume and wants NOT_FOUND.
        self.stats(vid, "some/path", "relative path", C.NOT_FOUND, "volume_path")
        self.stats(vid, here + "/../errors", "path with ..", C.INVALID_ARGUMENT, "volume_path")
        self.stats(vid, here, "relative staging_target_path", C.INVALID_ARGUMENT, "staging_target_path",
                   staging="rel/staging")

    # ---- condition ------------------------------------------------------------------------

    def test_unmounted_staging_path(self):
        vid = self.volume("unmounted", 16 * MiB)
        staging = self.stage(vid)
        self.unstage(vid, staging)
        os.makedirs(staging, exist_ok=True)
        resp = self.stats(vid, staging, "NodeGetVolumeStats at an unmounted staging path")
        self.assert_abnormal(resp, "unmounted staging path", "not mounted")

    def test_foreign_mount(self):
        vid = self.volume("foreign", 16 * MiB)
        path = self.path("foreign", "mnt")
        os.makedirs(path, exist_ok=True)
        run(["mount", "-t", "tmpfs", "-o", "size=1m", "statstest-tmpfs", path])
        self.addCleanup(run, ["umount", "-l", path], False)
        resp = self.stats(vid, path, "NodeGetVolumeStats at a tmpfs")
        self.assert_abnormal(resp, "tmpfs at the path", "tmpfs")
        self.assertTrue(mounts_at(path), "the tmpfs was unmounted")

    def test_read_only_after_remount(self):
        """`mount -o remount,ro` of the staging path stands in for the kernel's remount
        after an error: the superblock becomes read-only and the publish bind mount keeps
        its own "rw", as after errors=remount-ro."""
        vid = self.volume("remount")
        staging = self.stage(vid)
        target = self.publish(vid, staging)
        self.assert_healthy(self.stats(vid, target, "before the remount"), "before the remount")
        run(["mount", "-o", "remount,ro", staging])
        try:
            resp = self.stats(vid, target, "NodeGetVolumeStats after remount,ro")
            cond = resp.volume_condition
            self.assertTrue(cond.abnormal, "read-only superblock under a rw mount: condition normal (%r); mounts: %s"
                            % (cond.message, mounts_at(target)))
            self.assertIn("read-only", cond.message)
        finally:
            run(["mount", "-o", "remount,rw", staging])
        self.assert_healthy(self.stats(vid, target, "after remount,rw"), "after remount,rw")

    def test_read_only_after_error(self):
        """A real ext4 error with errors=remount-ro (ext4's trigger_fs_error in sysfs). The
        guest's kernel (6.1.0-5x) no longer marks the superblock read-only on an error (the
        filesystem refuses writes, mountinfo still says rw): the driver sees the error
        through the error count ext4 keeps in the superblock."""
        vid = self.volume("fserror")
        staging = self.path(vid, "staging")
        os.makedirs(staging, exist_ok=True)
        t = self._track(vid)
        t["staging"].add(staging)
        cap = pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(fs_type="ext4",
                                                                          mount_flags=["errors=remount-ro"]),
                                  access_mode=pb.VolumeCapability.AccessMode(
                                      mode=pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER))
        self.expect(None, self.c.NodeStageVolume, self.stage_req(vid, staging, cap=cap, context=t["context"]),
                    "NodeStageVolume with errors=remount-ro")
        st = os.stat(staging)
        name = os.path.basename(os.path.realpath("/sys/dev/block/%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev))))
        trigger = "/sys/fs/ext4/%s/trigger_fs_error" % name
        if not os.path.exists(trigger):
            self.skipTest("%s does not exist in this kernel" % trigger)
        self.assert_healthy(self.stats(vid, staging, "before the error"), "before the error")
        with open(trigger, "w") as f:
            f.write("stats test\n")
        resp = self.stats(vid, staging, "NodeGetVolumeStats after an ext4 error")
        cond = resp.volume_condition
        self.assertTrue(cond.abnormal, "after an ext4 error: condition normal (%r); mounts: %s"
                        % (cond.message, mounts_at(staging)))
        self.assertIn("read-only", cond.message)

    def test_zz_device_removed(self):
        """The volume's LV or namespace removed by hand (not mounted: the kernel refuses
        to remove a mounted one)."""
        vid = self.volume("gone", 16 * MiB)
        dev = device_of(self, vid)
        here = self.path("gone")
        os.makedirs(here, exist_ok=True)
        if self.mode == "direct":
            run(["ndctl", "destroy-namespace", "-f", volume_namespaces()[vid]["dev"]])
        else:
            run(["lvremove", "-f", "-y", dev])
        self.assertFalse(os.path.exists(dev), "%s still exists" % dev)
        resp = self.stats(vid, here, "NodeGetVolumeStats after the device was removed")
        self.assert_abnormal(resp, "removed device", "missing")


class StatsLVM(StatsBase):
    group = "stats-lvm"


class StatsDirect(StatsBase):
    group = "stats-direct"
    mode = "direct"
    clean_devices = True
    driver_kwargs = DIRECT
