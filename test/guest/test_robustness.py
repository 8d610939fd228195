"""Hostile or odd input and inconsistent state: answers with a proper status, never
harms data outside the volume, never dies."""

import os
import signal

from csitest import (C, LVM_ENV, MiB, DriverTestCase, code_name, expected_vgs, is_mounted, lvs,
                     mount_cap, mounts_at, pb, rpc_code, run, volume_id)


class Input(DriverTestCase):
    group = "robustness-input"

    def test_odd_names(self):
        """Any CSI name: OK with a working volume, or INVALID_ARGUMENT."""
        bad = []
        for name in ["a", "with space", "slash/name", "UPPER_case.name+x", "\u65e5\u672c\u8a9e\u306e\u540d\u524d",
                     "abcde\u00e9t",
                     "x" * 128, "..", "-leading-dash"]:
            code, details, resp = self.create(name, 8 * MiB, check=False)
            if code is None:
                vid = resp.volume.volume_id
                staging = self.path("odd", vid.encode().hex()[:16], "staging")
                os.makedirs(staging, exist_ok=True)
                c2, d2, _ = rpc_code(self.c.NodeStageVolume, self.stage_req(vid, staging))
                if c2 is not None:
                    bad.append("%r: created as %r, but NodeStageVolume: %s %r" % (name, vid, code_name(c2), d2))
                else:
                    self.unstage(vid, staging)
                c3, d3, _ = rpc_code(self.c.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid))
                if c3 is not None:
                    bad.append("%r: DeleteVolume: %s %r" % (name, code_name(c3), d3))
            elif code != C.INVALID_ARGUMENT:
                bad.append("%r: CreateVolume: %s %r" % (name, code_name(code), details))
            self.assertTrue(self.driver.alive(), "driver died on name %r" % name)
        self.assertFalse(bad, "odd names, want OK and a working volume or INVALID_ARGUMENT:\n"
                         + "\n".join(bad))

    def test_path_traversal_volume_ids(self):
        """A volume ID is never a path: no file outside the state dir is touched."""
        victim_dir = self.path("victim")
        os.makedirs(victim_dir)
        victim = os.path.join(victim_dir, "precious.json")
        with open(victim, "w") as f:
            f.write('{"id":"precious","size":1,"parameters":{}}')
        rel = os.path.relpath(victim[:-len(".json")], self.state_dir)
        bad = []
        for vid in [rel, "/" + victim[:-len(".json")].lstrip("/"), "../state/../victim/precious"]:
            for method, req in [("DeleteVolume", pb.DeleteVolumeRequest(volume_id=vid)),
                                ("ValidateVolumeCapabilities", pb.ValidateVolumeCapabilitiesRequest(
                                    volume_id=vid, volume_capabilities=[mount_cap()]))]:
                code, details, _ = rpc_code(getattr(self.c, method), req)
                if method == "ValidateVolumeCapabilities" and code not in (C.NOT_FOUND, C.INVALID_ARGUMENT):
                    bad.append("%s(%r): %s %r" % (method, vid, code_name(code), details))
            self.assertTrue(os.path.exists(victim), "DeleteVolume(%r) removed %s" % (vid, victim))
        self.assertFalse(bad, "want NOT_FOUND or INVALID_ARGUMENT:\n" + "\n".join(bad))

    def test_huge_volume_id(self):
        vid = "v" * 100000
        for method, req in [("DeleteVolume", pb.DeleteVolumeRequest(volume_id=vid)),
                            ("NodeUnstageVolume", pb.NodeUnstageVolumeRequest(
                                volume_id=vid, staging_target_path=self.path("x")))]:
            code, details, _ = rpc_code(getattr(self.c, method), req)
            self.assertIn(code, (None, C.NOT_FOUND, C.INVALID_ARGUMENT),
                          "%s with a 100 kB volume_id: %s %r" % (method, code_name(code), details))
        self.assertTrue(self.driver.alive())

    def test_odd_sizes(self):
        bad = []
        code, details, resp = self.create("robust-size-0", 0, check=False)
        if code is not None or resp.volume.capacity_bytes <= 0:
            bad.append("required_bytes=0: %s %r" % (code_name(code), details or short_vol(resp)))
        else:
            self.delete(resp.volume.volume_id)
        for name, req, lim in [("robust-size-neg", -1, 0), ("robust-size-limit", 64 * MiB, 16 * MiB),
                               ("robust-size-neglim", 16 * MiB, -5)]:
            code, details, resp = self.create(name, req, limit=lim, check=False)
            if code not in (C.INVALID_ARGUMENT, C.OUT_OF_RANGE):
                bad.append("required %d limit %d: %s %r" % (req, lim, code_name(code), details))
                if code is None:
                    self.delete(resp.volume.volume_id)
        self.assertFalse(bad, "want OK for 0 and INVALID_ARGUMENT or OUT_OF_RANGE for the rest:\n"
                         + "\n".join(bad))

    def test_unsupported_fs_type(self):
        vol = self.create("robust-btrfs", 16 * MiB)
        staging = self.path("btrfs", "staging")
        os.makedirs(staging)
        code, details, _ = rpc_code(self.c.NodeStageVolume,
                                    self.stage_req(vol.volume_id, staging, fs="btrfs"))
        self.assertFalse(is_mounted(staging), "mounted with fs_type btrfs")
        self.assertEqual(code, C.INVALID_ARGUMENT, "NodeStageVolume fs_type=btrfs: %s %r"
                         % (code_name(code), details))

    def test_stage_other_fs_type_keeps_data(self):
        """An ext4 volume staged as xfs: refused, and the ext4 data survive."""
        vol = self.create("robust-refmt", 320 * MiB)
        vid = vol.volume_id
        staging = self.stage(vid)
        with open(os.path.join(staging, "keep"), "w") as f:
            f.write("keep me")
        self.unstage(vid, staging)
        code, details, _ = rpc_code(self.c.NodeStageVolume, self.stage_req(vid, staging, fs="xfs"))
        if code is None:
            self.unstage(vid, staging)
        self.stage(vid, staging)
        try:
            with open(os.path.join(staging, "keep")) as f:
                data = f.read()
        except OSError as e:
            data = str(e)
        self.unstage(vid, staging)
        self.assertEqual(data, "keep me", "staging an ext4 volume as xfs destroyed its data")
        self.assertIsNotNone(code, "NodeStageVolume of an ext4 volume as xfs succeeded")

    def test_publish_incompatible_at_same_target(self):
        """CSI: published at the target with other flags -> ALREADY_EXISTS."""
        vol = self.create("robust-pub", 16 * MiB)
        staging = self.stage(vol.volume_id)
        target = self.publish(vol.volume_id, staging)
        code, details, _ = rpc_code(self.c.NodePublishVolume,
                                    self.publish_req(vol.volume_id, staging, target, readonly=True))
        ms = mounts_at(target)
        self.unpublish(vol.volume_id, target)
        self.assertEqual(code, C.ALREADY_EXISTS, "rw-published target published again read-only: %s %r"
                         % (code_name(code), details))
        self.assertEqual(len(ms), 1, "mounts at the target: %s" % ms)


def short_vol(resp):
    return resp.volume if resp else None


class State(DriverTestCase):
    """State files and devices that disagree, as after a crash or a manual fix."""

    group = "robustness-state"

    def test_garbage_in_state_dir(self):
        self.driver.stop()
        for fname, text in [("broken.json", '{"id": "broken", "si'), ("empty.json", ""),
                            ("notjson.json", "\x00\x01garbage"), ("x.json.tmp", "{}"),
                            ("README", "not a state file")]:
            with open(os.path.join(self.state_dir, fname), "w") as f:
                f.write(text)
        self.driver.start()
        self.list_all()
        vol = self.create("robust-after-garbage", 8 * MiB)
        self.delete(vol.volume_id)

    def test_missing_state_dir_is_created(self):
        self.driver.stop()
        old = self.driver.state_dir
        self.driver.state_dir = self.path("new", "nested", "state")
        try:
            self.driver.start()
            vol = self.create("robust-newdir", 8 * MiB)
            self.assertTrue(os.path.exists(os.path.join(self.driver.state_dir, vol.volume_id + ".json")))
            self.delete(vol.volume_id)
        finally:
            self.driver.stop()
            self.driver.state_dir = old
            self.driver.start()

    def test_state_without_lv(self):
        """The LV vanished (removed by hand): DeleteVolume still cleans up."""
        vol = self.create("robust-nolv", 8 * MiB)
        vid = vol.volume_id
        self.driver.stop()
        vg = lvs()[vid][0]
        run(["lvremove", "-f", "-y", "%s/%s" % (vg, vid)], env=LVM_ENV)
        self.driver.start()
        code, details, _ = rpc_code(self.c.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid))
        self.assertIsNone(code, "DeleteVolume of a volume whose LV is gone: %s %r" % (code_name(code), details))
        self.assertFalse(os.path.exists(self.state_file(vid)), "state file left")
        self.assertNotIn(vid, self.listed_ids())

    def test_lv_without_state(self):
        """An LV without a state record is not ours (the record is written before the
        LV, so no crash of ours leaves one): CreateVolume of that name fails and
        names it, DeleteVolume leaves it alone (docs/ownership.md)."""
        name = "robust-nostate"
        vid = volume_id(name)
        self.driver.stop(signal.SIGTERM)
        run(["lvcreate", "-q", "-y", "-Zn", "-L", "8m", "-n", vid, expected_vgs()[0]], env=LVM_ENV)
        self.driver.start()
        try:
            code, details, resp = self.create(name, 8 * MiB, check=False)
            self.assertEqual(code, C.FAILED_PRECONDITION,
                             "CreateVolume over an LV without state: %s %r" % (code_name(code), details))
            self.assertIn(vid, details)
            self.expect(None, self.c.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid), "DeleteVolume")
            self.assertIn(vid, lvs(), "DeleteVolume removed an LV that is not the driver's")
            self.assertNotIn(vid, self.listed_ids())
        finally:
            type(self).tracked.pop(vid, None)
            lv = lvs().get(vid)
            if lv:
                run(["lvremove", "-f", "-y", "%s/%s" % (lv[0], vid)], env=LVM_ENV, check=False)
