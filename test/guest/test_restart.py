"""Driver restarts (SIGTERM and SIGKILL) between and during the lifecycle steps."""

import os
import signal
import time

from csitest import (MiB, DriverTestCase, is_mounted, lv_path, lvs, mount_cap, mounts_at, pb,
                     same_device, volume_id)


class Restart(DriverTestCase):
    group = "restart"
    step = ""

    def bounce(self, sig, after):
        """Restart the driver; afterwards it must be ready and still list the volume."""
        self.driver.restart(sig)
        self.step = "after the %s restart that followed %s" % (signal.Signals(sig).name, after)

    def check_listed(self, vid, listed=True):
        ids = self.listed_ids()
        if listed:
            self.assertIn(vid, ids, "ListVolumes lost the volume %s" % self.step)
        else:
            self.assertNotIn(vid, ids, "ListVolumes shows a deleted volume %s" % self.step)

    def check_mount(self, path, vid):
        ms = mounts_at(path)
        self.assertEqual(len(ms), 1, "%s: mounts at %s: %s" % (self.step, path, ms))
        self.assertTrue(same_device(ms[0][0], lv_path(vid)), "%s: %s" % (self.step, ms))
        self.assertIn("dax=always", ms[0][3], "%s: %s" % (self.step, ms))

    def lifecycle_with_restarts(self, sig):
        name = "restart-%s" % signal.Signals(sig).name.lower()
        vid = volume_id(name)
        data = os.urandom(64 * 1024)

        vol = self.create(name, 32 * MiB)
        self.bounce(sig, "CreateVolume")
        self.check_listed(vid)
        again = self.create(name, 32 * MiB)  # idempotent after the restart
        self.assertEqual(again.capacity_bytes, vol.capacity_bytes, self.step)

        staging = self.stage(vid)
        self.bounce(sig, "NodeStageVolume")
        self.check_listed(vid)
        self.check_mount(staging, vid)
        self.stage(vid, staging)
        self.check_mount(staging, vid)

        target = self.publish(vid, staging)
        self.bounce(sig, "NodePublishVolume")
        self.check_listed(vid)
        self.check_mount(target, vid)
        self.publish(vid, staging, target)
        self.check_mount(target, vid)
        with open(os.path.join(target, "f"), "wb") as f:
            f.write(data)
            os.fsync(f.fileno())

        self.unpublish(vid, target)
        self.bounce(sig, "NodeUnpublishVolume")
        self.check_listed(vid)
        self.assertFalse(is_mounted(target), self.step)
        self.unpublish(vid, target)

        self.unstage(vid, staging)
        self.bounce(sig, "NodeUnstageVolume")
        self.check_listed(vid)
        self.assertFalse(is_mounted(staging), self.step)
        self.unstage(vid, staging)
        self.stage(vid, staging)  # still usable, data still there
        with open(os.path.join(staging, "f"), "rb") as f:
            self.assertEqual(f.read(), data, "data lost " + self.step)
        self.unstage(vid, staging)

        self.delete(vid)
        self.bounce(sig, "DeleteVolume")
        self.check_listed(vid, listed=False)
        self.assertNotIn(vid, lvs(), self.step)
        self.assertFalse(os.path.exists(self.state_file(vid)), self.step)
        self.delete(vid)

    def test_sigterm_between_steps(self):
        self.lifecycle_with_restarts(signal.SIGTERM)

    def test_sigkill_between_steps(self):
        self.lifecycle_with_restarts(signal.SIGKILL)

    # ---- SIGKILL in the middle of a call: the retry after the restart must succeed ----------

    def call_and_kill(self, method, req, delay):
        """Start a call, SIGKILL the driver `delay` s later, restart it."""
        fut = self.driver.client.future(method, req, timeout=120)
        time.sleep(delay)
        self.driver.restart(signal.SIGKILL)
        try:
            fut.result()
            return "completed"
        except Exception:
            return "interrupted"

    def test_kill_during_create(self):
        name = "restart-kill-create"
        vid = volume_id(name)
        self._track(vid)
        req = pb.CreateVolumeRequest(name=name, capacity_range=pb.CapacityRange(required_bytes=32 * MiB),
                                     volume_capabilities=[mount_cap()])
        how = self.call_and_kill("CreateVolume", req, 0.3)
        vol = self.create(name, 32 * MiB)  # retry, as the provisioner would
        self.assertEqual(vol.volume_id, vid)
        self.assertIn(vid, lvs(), "no LV after the retried CreateVolume (first call %s)" % how)
        self.assertIn(vid, self.listed_ids())
        self.delete(vid)
        self.assertNotIn(vid, lvs(), "LV left after DeleteVolume (create call %s)" % how)
        self.assertFalse(os.path.exists(self.state_file(vid)))

    def test_kill_during_stage(self):
        vol = self.create("restart-kill-stage", 32 * MiB)
        vid = vol.volume_id
        staging = self.path("kill-stage", "staging")
        os.makedirs(staging)
        self._track(vid)["staging"].add(staging)
        how = self.call_and_kill("NodeStageVolume",
                                 self.stage_req(vid, staging, context=dict(vol.volume_context)), 0.3)
        self.stage(vid, staging)
        self.step = "retried NodeStageVolume (first call %s)" % how
        ms = mounts_at(staging)
        self.assertEqual(len(ms), 1, "%s: mounts %s" % (self.step, ms))
        self.assertIn("dax=always", ms[0][3], self.step)
        self.unstage(vid, staging)
        self.delete(vid)

    def test_kill_during_delete(self):
        vol = self.create("restart-kill-delete", 32 * MiB)
        vid = vol.volume_id
        how = self.call_and_kill("DeleteVolume", pb.DeleteVolumeRequest(volume_id=vid), 0.2)
        self.delete(vid)
        self.assertNotIn(vid, lvs(), "LV left after the retried DeleteVolume (first call %s)" % how)
        self.assertNotIn(vid, self.listed_ids())
        self.assertFalse(os.path.exists(self.state_file(vid)))
