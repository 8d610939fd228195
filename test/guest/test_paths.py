"""Paths given to the Node service (issue 8, part 2), both device modes: the driver
unmounts only mounts of the volume's own device and removes only the empty directory
or empty file a publish of ours would have made; a foreign mount (a tmpfs mounted here
by the test) or a file with content at the path stays as it is and the call names it.
Relative paths and paths with "." or ".." components are INVALID_ARGUMENT in every
Node call; a symlinked staging path is resolved the same way by stage and unstage."""

import os
import stat

import csi_pb2 as pb
from csitest import C, MiB, DriverTestCase, is_mounted, mounts_at, rpc_code, run, short

from test_modes import DIRECT, block_cap, device_of

CONTENT = b"precious data, not the driver's\n"
UNKNOWN_VID = "nosuch-" + "0" * 56


class PathsBase(DriverTestCase):
    mode = "lvm"

    def volume(self, what):
        """A real filesystem volume of this group (made once per name)."""
        return self.create("paths-%s-%s" % (what, self.mode), 16 * MiB).volume_id

    def tmpfs(self, path):
        os.makedirs(path, exist_ok=True)
        run(["mount", "-t", "tmpfs", "-o", "size=1m", "pathtest-tmpfs", path])
        with open(os.path.join(path, "keep"), "wb") as f:
            f.write(CONTENT)
        self.addCleanup(run, ["umount", "-l", path], False)

    def assert_tmpfs_intact(self, path, what):
        m = mounts_at(path)
        self.assertTrue(m and m[-1][2] == "tmpfs", "%s: the tmpfs at %s was unmounted (mounts: %s)"
                        % (what, path, m))
        with open(os.path.join(path, "keep"), "rb") as f:
            self.assertEqual(f.read(), CONTENT, "%s: the tmpfs content changed" % what)

    def file_with_content(self, path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(CONTENT)

    def assert_file_intact(self, path, what):
        self.assertTrue(os.path.isfile(path), "%s: %s was deleted" % (what, path))
        self.assertFalse(is_mounted(path), "%s: something was mounted over %s: %s" % (what, path, mounts_at(path)))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), CONTENT, "%s: the content of %s changed" % (what, path))

    def test_foreign_mount_is_left_alone(self):
        """A tmpfs at the target or staging path: Unpublish and Unstage, with an unknown
        and with a real volume ID, leave it mounted and name it."""
        vid = self.volume("tmpfs")
        path = self.path("tmpfs", "mnt")
        self.tmpfs(path)
        for method, req_of in (("NodeUnpublishVolume", lambda v: pb.NodeUnpublishVolumeRequest(
                                    volume_id=v, target_path=path)),
                               ("NodeUnstageVolume", lambda v: pb.NodeUnstageVolumeRequest(
                                   volume_id=v, staging_target_path=path))):
            for v in (UNKNOWN_VID, vid):
                what = "%s(%s) over a tmpfs" % (method, "unknown volume" if v == UNKNOWN_VID else "real volume")
                self.expect(C.FAILED_PRECONDITION, getattr(self.c, method), req_of(v), what, contains="tmpfs")
                self.assert_tmpfs_intact(path, what)

    def test_other_volume_is_left_alone(self):
        """Volume A published at a target: unpublishing volume B there leaves A mounted."""
        a, b = self.volume("a"), self.volume("b")
        staging = self.stage(a)
        target = self.publish(a, staging)
        self.expect(C.FAILED_PRECONDITION, self.c.NodeUnpublishVolume,
                    pb.NodeUnpublishVolumeRequest(volume_id=b, target_path=target),
                    "NodeUnpublishVolume of B at A's target")
        self.expect(C.FAILED_PRECONDITION, self.c.NodeUnstageVolume,
                    pb.NodeUnstageVolumeRequest(volume_id=b, staging_target_path=staging),
                    "NodeUnstageVolume of B at A's staging path")
        self.assertTrue(is_mounted(target), "A's publish was unmounted by B's unpublish")
        self.assertTrue(is_mounted(staging), "A's staging was unmounted by B's unstage")
        self.unpublish(a, target)
        self.assertFalse(os.path.exists(target), "the target dir of a publish is not removed")
        self.unstage(a, staging)
        self.assertFalse(is_mounted(staging))

    def test_file_at_target_is_kept(self):
        """A regular file with content at the target: Unpublish keeps it; an empty dir or
        nothing at the path of an unknown volume is success (kubelet retries otherwise)."""
        vid = self.volume("file")
        f = self.path("file", "target")
        self.file_with_content(f)
        for v in (UNKNOWN_VID, vid):
            what = "NodeUnpublishVolume(%s) over a file with content" % ("unknown" if v == UNKNOWN_VID else "real")
            self.expect(C.FAILED_PRECONDITION, self.c.NodeUnpublishVolume,
                        pb.NodeUnpublishVolumeRequest(volume_id=v, target_path=f), what, contains=f)
            self.assert_file_intact(f, what)
        d = self.path("file", "nonempty-dir")
        self.file_with_content(os.path.join(d, "keep"))
        self.expect(C.FAILED_PRECONDITION, self.c.NodeUnpublishVolume,
                    pb.NodeUnpublishVolumeRequest(volume_id=vid, target_path=d), "unpublish over a non-empty dir")
        self.assert_file_intact(os.path.join(d, "keep"), "unpublish over a non-empty dir")
        empty = self.path("file", "empty-dir")
        os.makedirs(empty)
        self.unpublish(UNKNOWN_VID, empty)
        self.assertFalse(os.path.exists(empty), "an empty target dir is not removed")
        self.unpublish(UNKNOWN_VID, self.path("file", "nothing-here"))
        self.unstage(UNKNOWN_VID, self.path("file", "nothing-here"))

    def test_block_publish_over_existing_file(self):
        """Raw block: a file with content or a directory at the target is refused and untouched."""
        req = pb.CreateVolumeRequest(name="paths-block-" + self.mode, volume_capabilities=[block_cap()],
                                     capacity_range=pb.CapacityRange(required_bytes=16 * MiB))
        vid = self.expect(None, self.c.CreateVolume, req, "CreateVolume(block)").volume.volume_id
        self._track(vid)
        staging = self.path("block", "staging")
        os.makedirs(staging, exist_ok=True)
        self.expect(None, self.c.NodeStageVolume, self.stage_req(vid, staging, cap=block_cap()), "stage(block)")
        f = self.path("block", "file")
        self.file_with_content(f)
        self._track(vid)["targets"].add(f)
        d = self.path("block", "dir")
        os.makedirs(d)
        self._track(vid)["targets"].add(d)
        for target, what in ((f, "a file with content"), (d, "a directory")):
            preq = pb.NodePublishVolumeRequest(volume_id=vid, staging_target_path=staging, target_path=target,
                                               volume_capability=block_cap())
            self.expect(C.FAILED_PRECONDITION, self.c.NodePublishVolume, preq,
                        "block publish over %s" % what, contains=target)
            self.assertFalse(is_mounted(target), "block publish bound the device over %s" % what)
        self.assert_file_intact(f, "block publish over a file with content")
        self.assertTrue(os.path.isdir(d))
        # What we make ourselves is fine, and unpublish removes it.
        t = self.path("block", "dev")
        preq = pb.NodePublishVolumeRequest(volume_id=vid, staging_target_path=staging, target_path=t,
                                           volume_capability=block_cap())
        self._track(vid)["targets"].add(t)
        self.expect(None, self.c.NodePublishVolume, preq, "block publish")
        self.assertTrue(stat.S_ISBLK(os.stat(t).st_mode))
        self.assertEqual(os.stat(t).st_rdev, os.stat(device_of(self, vid)).st_rdev)
        self.unpublish(vid, t)
        self.assertFalse(os.path.exists(t), "the target file of a block publish is not removed")
        # The unpublish of the refused targets keeps them too.
        self.expect(C.FAILED_PRECONDITION, self.c.NodeUnpublishVolume,
                    pb.NodeUnpublishVolumeRequest(volume_id=vid, target_path=f), "unpublish(block) of the file")
        self.assert_file_intact(f, "unpublish(block) of the file")
        self.unstage(vid, staging)
        self.delete(vid)

    def test_relative_and_dot_paths(self):
        """INVALID_ARGUMENT naming the field in each Node call, before anything happens."""
        vid = self.volume("rel")
        staging = self.path("rel", "staging")
        target = self.path("rel", "target")
        os.makedirs(staging)
        # Each resolves to a harmless place: a driver that takes them as they are
        # must not be able to damage the test VM (the starting main unmounted "/..").
        bad_paths = ["rel/staging", "./rel", self.path("rel", "..", "rel", "staging"),
                     self.path("rel", ".", "staging"), self.path("rel", "staging", "..", "target")]
        bad = []
        for p in bad_paths:
            calls = [
                ("NodeStageVolume", "staging_target_path", self.stage_req(vid, p)),
                ("NodeUnstageVolume", "staging_target_path",
                 pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=p)),
                ("NodePublishVolume", "target_path", self.publish_req(vid, staging, p)),
                ("NodePublishVolume", "staging_target_path", self.publish_req(vid, p, target)),
                ("NodeUnpublishVolume", "target_path",
                 pb.NodeUnpublishVolumeRequest(volume_id=vid, target_path=p)),
            ]
            for method, field, req in calls:
                code, details, _ = rpc_code(getattr(self.c, method), req)
                if code != C.INVALID_ARGUMENT or field not in details:
                    bad.append("%s with %s=%r: %s %r" % (method, field, p, code.name if code else "OK", details))
        self.assertFalse(bad, "want INVALID_ARGUMENT naming the field:\n" + "\n".join(bad))
        left = [m for m in run(["cat", "/proc/mounts"]).splitlines() if type(self).workdir in m]
        self.assertEqual(left, [], "mounts left by refused calls: %s" % short(left))

    def test_symlinked_staging_path(self):
        """Rule: stage and unstage both resolve the path (realpath). Stage through a
        symlink and unstage through it, or through the real path: nothing left mounted."""
        vid = self.volume("link")
        real = self.path("link", "real-staging")
        os.makedirs(real)
        link = self.path("link", "staging")
        os.symlink(real, link)
        for stage_at, unstage_at in ((link, link), (real, link), (link, real)):
            what = "stage at %s, unstage at %s" % (os.path.basename(stage_at), os.path.basename(unstage_at))
            self.stage(vid, stage_at)
            self.assertTrue(is_mounted(real), "%s: not mounted at the resolved path" % what)
            self.assertTrue(os.path.islink(link), "%s: the symlink was replaced" % what)
            target = self.publish(vid, stage_at)
            with open(os.path.join(target, "f"), "w") as f:
                f.write("x")
            self.unpublish(vid, target)
            self.expect(None, self.c.NodeUnstageVolume,
                        pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=unstage_at),
                        "NodeUnstageVolume (%s)" % what)
            self.assertFalse(is_mounted(real), "%s: still mounted" % what)
            self.assertEqual([m for m in run(["cat", "/proc/mounts"]).splitlines() if "link" in m], [],
                             "%s: mounts left" % what)


class PathsLVM(PathsBase):
    group = "paths-lvm"


class PathsDirect(PathsBase):
    group = "paths-direct"
    mode = "direct"
    clean_devices = True
    driver_kwargs = DIRECT
