"""Every error the contract names, with the exact gRPC status code."""

import os

from csitest import (C, GiB, MiB, XFS_MIN, DriverTestCase, lvs, mount_cap, nonblocking, pb,
                     rpc_code, volume_id)

UNKNOWN_VID = volume_id("no-such-volume")

CtrlCap = pb.ControllerServiceCapability.RPC
NodeCap = pb.NodeServiceCapability.RPC


class Errors(DriverTestCase):
    group = "errors"

    name = "errors-volume"
    vid = volume_id(name)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.have_volume = False

    def volume(self):
        """A volume (created once) for the checks that need an existing one."""
        if not type(self).have_volume:
            self.create(self.name, 16 * MiB)
            type(self).have_volume = True
        return self.vid

    # ---- CreateVolume ---------------------------------------------------------

    def test_create_without_name(self):
        self.expect(C.INVALID_ARGUMENT, self.c.CreateVolume,
                    pb.CreateVolumeRequest(volume_capabilities=[mount_cap()],
                                           capacity_range=pb.CapacityRange(required_bytes=MiB)),
                    "CreateVolume without name")

    def test_create_without_capabilities(self):
        self.expect(C.INVALID_ARGUMENT, self.c.CreateVolume,
                    pb.CreateVolumeRequest(name="errors-nocaps",
                                           capacity_range=pb.CapacityRange(required_bytes=MiB)),
                    "CreateVolume without volume_capabilities")
        self.assertNotIn(volume_id("errors-nocaps"), lvs())

    def test_create_same_name_bigger(self):
        self.volume()
        self.expect(C.ALREADY_EXISTS, self.c.CreateVolume,
                    pb.CreateVolumeRequest(name=self.name, volume_capabilities=[mount_cap()],
                                           capacity_range=pb.CapacityRange(required_bytes=64 * MiB)),
                    "CreateVolume of an existing 16 MiB volume's name with 64 MiB")

    def test_create_too_big(self):
        self.expect(C.RESOURCE_EXHAUSTED, self.c.CreateVolume,
                    pb.CreateVolumeRequest(name="errors-huge", volume_capabilities=[mount_cap()],
                                           capacity_range=pb.CapacityRange(required_bytes=1024 * GiB)),
                    "CreateVolume of 1 TiB")
        self.assertNotIn(volume_id("errors-huge"), lvs())
        self.assertFalse(os.path.exists(self.state_file(volume_id("errors-huge"))),
                         "failed CreateVolume left a state file")

    def test_create_xfs_small_is_bumped(self):
        vol = self.create("errors-xfs-small", 16 * MiB, fs="xfs")
        self.assertGreaterEqual(vol.capacity_bytes, XFS_MIN,
                                "16 MiB xfs volume got %d bytes (< 300 MiB)" % vol.capacity_bytes)
        staging = self.stage(vol.volume_id, fs="xfs")  # mkfs.xfs refuses < 300 MB
        self.unstage(vol.volume_id, staging)
        self.delete(vol.volume_id)

    def test_create_xfs_small_with_limit(self):
        code, details, resp = self.create("errors-xfs-limited", 16 * MiB, fs="xfs",
                                          limit=100 * MiB, check=False)
        self.assertEqual(code, C.OUT_OF_RANGE, "CreateVolume xfs 16 MiB limit 100 MiB: expected "
                         "OUT_OF_RANGE, got %s %r" % (code.name if code else "OK", details or resp))

    @nonblocking
    def test_create_ext4_small_not_bumped(self):
        vol = self.create("errors-ext4-small", 8 * MiB)
        self.assertLess(vol.capacity_bytes, XFS_MIN, "8 MiB ext4 volume got %d bytes" % vol.capacity_bytes)
        self.delete(vol.volume_id)

    # ---- DeleteVolume -----------------------------------------------------------

    def test_delete_without_id(self):
        self.expect(C.INVALID_ARGUMENT, self.c.DeleteVolume, pb.DeleteVolumeRequest(),
                    "DeleteVolume without volume_id")

    def test_delete_unknown(self):
        self.expect(None, self.c.DeleteVolume, pb.DeleteVolumeRequest(volume_id=UNKNOWN_VID),
                    "DeleteVolume of an unknown volume")

    def test_delete_while_staged(self):
        vol = self.create("errors-staged", 16 * MiB)
        staging = self.stage(vol.volume_id)
        self.expect(C.FAILED_PRECONDITION, self.c.DeleteVolume,
                    pb.DeleteVolumeRequest(volume_id=vol.volume_id), "DeleteVolume of a staged volume")
        self.assertIn(vol.volume_id, lvs(), "the LV of a staged volume is gone")
        self.assertTrue(os.path.exists(self.state_file(vol.volume_id)), "state file gone")
        self.unstage(vol.volume_id, staging)
        self.delete(vol.volume_id)

    def test_delete_while_published(self):
        vol = self.create("errors-published", 16 * MiB)
        staging = self.stage(vol.volume_id)
        target = self.publish(vol.volume_id, staging)
        self.expect(C.FAILED_PRECONDITION, self.c.DeleteVolume,
                    pb.DeleteVolumeRequest(volume_id=vol.volume_id), "DeleteVolume of a published volume")
        self.assertIn(vol.volume_id, lvs())
        self.unpublish(vol.volume_id, target)
        self.unstage(vol.volume_id, staging)
        self.delete(vol.volume_id)

    # ---- missing fields on the node calls ------------------------------------------

    def test_stage_missing_fields(self):
        vid = self.volume()
        st = self.path("stage-missing")
        os.makedirs(st, exist_ok=True)
        bad = []
        for what, req in [
                ("volume_id", pb.NodeStageVolumeRequest(
                    staging_target_path=st, volume_capability=mount_cap())),
                ("staging_target_path", pb.NodeStageVolumeRequest(
                    volume_id=vid, volume_capability=mount_cap())),
                ("volume_capability", pb.NodeStageVolumeRequest(
                    volume_id=vid, staging_target_path=st))]:
            code, details, _ = rpc_code(self.c.NodeStageVolume, req)
            if code != C.INVALID_ARGUMENT:
                bad.append("without %s: %s %r" % (what, code.name if code else "OK", details))
        self.assertFalse(bad, "NodeStageVolume, expected INVALID_ARGUMENT:\n" + "\n".join(bad))

    def test_publish_missing_fields(self):
        vid = self.volume()
        st, tg = self.path("stage-missing"), self.path("pub-missing", "target")
        os.makedirs(st, exist_ok=True)
        os.makedirs(os.path.dirname(tg), exist_ok=True)
        bad = []
        for what, req in [
                ("volume_id", pb.NodePublishVolumeRequest(staging_target_path=st, target_path=tg,
                                                          volume_capability=mount_cap())),
                ("target_path", pb.NodePublishVolumeRequest(volume_id=vid, staging_target_path=st,
                                                            volume_capability=mount_cap())),
                ("volume_capability", pb.NodePublishVolumeRequest(volume_id=vid, staging_target_path=st,
                                                                  target_path=tg)),
                ("staging_target_path", pb.NodePublishVolumeRequest(volume_id=vid, target_path=tg,
                                                                    volume_capability=mount_cap()))]:
            code, details, _ = rpc_code(self.c.NodePublishVolume, req)
            if code != C.INVALID_ARGUMENT:
                bad.append("without %s: %s %r" % (what, code.name if code else "OK", details))
        self.assertFalse(bad, "NodePublishVolume, expected INVALID_ARGUMENT:\n" + "\n".join(bad))

    def test_unstage_missing_fields(self):
        bad = []
        for what, req in [("volume_id", pb.NodeUnstageVolumeRequest(staging_target_path=self.path("x"))),
                          ("staging_target_path", pb.NodeUnstageVolumeRequest(volume_id=self.vid))]:
            code, details, _ = rpc_code(self.c.NodeUnstageVolume, req)
            if code != C.INVALID_ARGUMENT:
                bad.append("without %s: %s %r" % (what, code.name if code else "OK", details))
        self.assertFalse(bad, "NodeUnstageVolume, expected INVALID_ARGUMENT:\n" + "\n".join(bad))

    def test_unpublish_missing_fields(self):
        bad = []
        for what, req in [("volume_id", pb.NodeUnpublishVolumeRequest(target_path=self.path("x"))),
                          ("target_path", pb.NodeUnpublishVolumeRequest(volume_id=self.vid))]:
            code, details, _ = rpc_code(self.c.NodeUnpublishVolume, req)
            if code != C.INVALID_ARGUMENT:
                bad.append("without %s: %s %r" % (what, code.name if code else "OK", details))
        self.assertFalse(bad, "NodeUnpublishVolume, expected INVALID_ARGUMENT:\n" + "\n".join(bad))

    def test_validate_missing_fields(self):
        vid = self.volume()
        bad = []
        for what, req in [
                ("volume_id", pb.ValidateVolumeCapabilitiesRequest(volume_capabilities=[mount_cap()])),
                ("volume_capabilities", pb.ValidateVolumeCapabilitiesRequest(volume_id=vid))]:
            code, details, _ = rpc_code(self.c.ValidateVolumeCapabilities, req)
            if code != C.INVALID_ARGUMENT:
                bad.append("without %s: %s %r" % (what, code.name if code else "OK", details))
        self.assertFalse(bad, "ValidateVolumeCapabilities, expected INVALID_ARGUMENT:\n" + "\n".join(bad))

    # ---- unknown volumes ------------------------------------------------------------

    def test_stage_unknown_volume(self):
        st = self.path("stage-unknown")
        os.makedirs(st, exist_ok=True)
        self.expect(C.NOT_FOUND, self.c.NodeStageVolume,
                    pb.NodeStageVolumeRequest(volume_id=UNKNOWN_VID, staging_target_path=st,
                                              volume_capability=mount_cap()),
                    "NodeStageVolume of an unknown volume")

    def test_publish_unknown_volume(self):
        st, tg = self.path("stage-unknown"), self.path("pub-unknown", "target")
        os.makedirs(st, exist_ok=True)
        os.makedirs(os.path.dirname(tg), exist_ok=True)
        self.expect(C.NOT_FOUND, self.c.NodePublishVolume,
                    pb.NodePublishVolumeRequest(volume_id=UNKNOWN_VID, staging_target_path=st,
                                                target_path=tg, volume_capability=mount_cap()),
                    "NodePublishVolume of an unknown volume")

    def test_validate_unknown_volume(self):
        self.expect(C.NOT_FOUND, self.c.ValidateVolumeCapabilities,
                    pb.ValidateVolumeCapabilitiesRequest(volume_id=UNKNOWN_VID,
                                                         volume_capabilities=[mount_cap()]),
                    "ValidateVolumeCapabilities of an unknown volume")

    @nonblocking
    def test_validate_unsupported_access_mode(self):
        """CSI: unsupported capabilities -> OK without 'confirmed'."""
        vid = self.volume()
        mode = pb.VolumeCapability.AccessMode.MULTI_NODE_MULTI_WRITER
        r = self.expect(None, self.c.ValidateVolumeCapabilities,
                        pb.ValidateVolumeCapabilitiesRequest(volume_id=vid,
                                                             volume_capabilities=[mount_cap(mode=mode)]),
                        "ValidateVolumeCapabilities MULTI_NODE_MULTI_WRITER")
        self.assertFalse(r.HasField("confirmed"), "MULTI_NODE_MULTI_WRITER was confirmed")

    # ---- ListVolumes ------------------------------------------------------------------

    def test_list_bad_token(self):
        self.expect(C.ABORTED, self.c.ListVolumes,
                    pb.ListVolumesRequest(max_entries=1, starting_token="no-such-token"),
                    "ListVolumes with starting_token 'no-such-token'")

    # ---- what the driver does not implement -----------------------------------------------

    def test_unimplemented_methods(self):
        vid = UNKNOWN_VID
        ccaps = {c.rpc.type for c in self.c.ControllerGetCapabilities(
            pb.ControllerGetCapabilitiesRequest()).capabilities}
        ncaps = {c.rpc.type for c in self.c.NodeGetCapabilities(
            pb.NodeGetCapabilitiesRequest()).capabilities}
        calls = [
            (CtrlCap.PUBLISH_UNPUBLISH_VOLUME, "ControllerPublishVolume",
             pb.ControllerPublishVolumeRequest(volume_id=vid, node_id="n", volume_capability=mount_cap())),
            (CtrlCap.PUBLISH_UNPUBLISH_VOLUME, "ControllerUnpublishVolume",
             pb.ControllerUnpublishVolumeRequest(volume_id=vid, node_id="n")),
            (CtrlCap.CREATE_DELETE_SNAPSHOT, "CreateSnapshot",
             pb.CreateSnapshotRequest(source_volume_id=vid, name="snap")),
            (CtrlCap.CREATE_DELETE_SNAPSHOT, "DeleteSnapshot", pb.DeleteSnapshotRequest(snapshot_id="snap")),
            (CtrlCap.LIST_SNAPSHOTS, "ListSnapshots", pb.ListSnapshotsRequest()),
            (CtrlCap.EXPAND_VOLUME, "ControllerExpandVolume",
             pb.ControllerExpandVolumeRequest(volume_id=vid,
                                              capacity_range=pb.CapacityRange(required_bytes=GiB))),
            (CtrlCap.GET_VOLUME, "ControllerGetVolume", pb.ControllerGetVolumeRequest(volume_id=vid)),
            (CtrlCap.MODIFY_VOLUME, "ControllerModifyVolume",
             pb.ControllerModifyVolumeRequest(volume_id=vid)),
            (None, "GetSnapshot", pb.GetSnapshotRequest(snapshot_id="snap")),
            (NodeCap.EXPAND_VOLUME, "NodeExpandVolume",
             pb.NodeExpandVolumeRequest(volume_id=vid, volume_path=self.path("x"))),
            (NodeCap.GET_VOLUME_STATS, "NodeGetVolumeStats",
             pb.NodeGetVolumeStatsRequest(volume_id=vid, volume_path=self.path("x"))),
        ]
        bad = []
        for cap, method, req in calls:
            if cap is not None and cap in (ncaps if method.startswith("Node") else ccaps):
                continue  # advertised: then it is implemented
            fn = getattr(self.c, method, None)
            if fn is None:
                continue  # not in this proto
            code, details, _ = rpc_code(fn, req)
            if code != C.UNIMPLEMENTED:
                bad.append("%s: %s %r" % (method, code.name if code else "OK", details))
        self.assertFalse(bad, "expected UNIMPLEMENTED:\n" + "\n".join(bad))

    # ---- message size limit ---------------------------------------------------------------

    def test_oversized_request(self):
        big = {"p%d" % i: "x" * 1000 for i in range(5000)}  # ~5 MB
        req = pb.CreateVolumeRequest(name="errors-big-request", volume_capabilities=[mount_cap()],
                                     capacity_range=pb.CapacityRange(required_bytes=MiB), parameters=big)
        self.assertGreater(req.ByteSize(), 5000000)
        self.expect(C.RESOURCE_EXHAUSTED, self.c.CreateVolume, req, "CreateVolume of ~5 MB")
        self.assertTrue(self.driver.alive(), "driver died after a 5 MB request")
        self.expect(None, self.c.Probe, pb.ProbeRequest(), "Probe after a 5 MB request")
        vol = self.create("errors-after-big", 8 * MiB)
        self.delete(vol.volume_id)
