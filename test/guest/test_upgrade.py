"""Upgrade in place: devices and state files made the way intel/pmem-csi 1.x makes
them (built here with ndctl and lvm commands, not by this driver) are taken over:
ListVolumes shows the volumes, stage/publish/delete work, data survives."""

import json
import os

import csi_pb2 as pb
from csitest import (LVM_ENV, MiB, DriverTestCase, lvs, mounts_at, regions, run, volume_id, wipe_devices)


def upstream_state(state_dir, vid, name, size, mode):
    """<statePath>/<id>.json as upstream writes it."""
    os.makedirs(state_dir, exist_ok=True)
    with open(os.path.join(state_dir, vid + ".json"), "w") as f:
        json.dump({"id": vid, "size": size, "parameters": {
            "eraseafter": "true", "kataContainers": "false", "name": name,
            "persistencyModel": "normal", "usage": "AppDirect", "deviceMode": mode}}, f)


def pmem_regions():
    return [r["dev"] for r in regions() if r.get("type", "pmem") == "pmem"]


class UpgradeBase(DriverTestCase):
    sequential = True
    start_driver = False
    mode = "lvm"
    names = ["pvc-11111111-2222-3333-4444-555555555555", "pvc-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"]

    def make_upstream_lvm(self):
        for reg in pmem_regions():
            out = json.loads(run(["ndctl", "create-namespace", "-r", reg, "-m", "fsdax", "-n", "pmem-csi"]))
            vg = "ndbus0%sfsdax" % reg
            run(["vgcreate", "--force", "-y", vg, "/dev/" + out["blockdev"]], env=LVM_ENV)
        devs = []
        for name in self.names:
            vid = volume_id(name)
            run(["lvcreate", "-y", "-Zn", "-L", "%db" % (64 * MiB), "-n", vid, "ndbus0region0fsdax"], env=LVM_ENV)
            devs.append("/dev/ndbus0region0fsdax/" + vid)
            upstream_state(type(self).state_dir, vid, name, 64 * MiB, "lvm")
        return devs

    def make_upstream_direct(self):
        devs = []
        for name in self.names:
            vid = volume_id(name)
            out = json.loads(run(["ndctl", "create-namespace", "-r", pmem_regions()[0], "-m", "fsdax",
                                  "-s", str(96 * MiB), "-n", vid]))
            devs.append("/dev/" + out["blockdev"])
            upstream_state(type(self).state_dir, vid, name, 96 * MiB, "direct")
        return devs

    def test_01_takeover(self):
        cls = type(self)
        wipe_devices()
        devs = self.make_upstream_lvm() if self.mode == "lvm" else self.make_upstream_direct()
        # an upstream volume with a filesystem and data on it
        run(["mkfs.ext4", "-q", "-F", "-b", "4096", devs[0]])
        mnt = self.path("prefill")
        os.makedirs(mnt, exist_ok=True)
        run(["mount", "-o", "dax", devs[0], mnt])
        with open(os.path.join(mnt, "old-data"), "w") as f:
            f.write("written by the old driver")
        run(["umount", mnt])
        if self.mode == "direct":
            cls.driver.extra_args.append("-deviceManager=direct")
        cls.driver.start()
        ids = set(self.listed_ids())
        for name in self.names:
            self.assertIn(volume_id(name), ids, "upstream volume %s not listed" % name)
        if self.mode == "lvm":
            self.assertEqual(sorted(v for v in lvs()), sorted(volume_id(n) for n in self.names),
                             "the driver changed the LVs at start")

    def test_02_stage_publish_keeps_data(self):
        vid = volume_id(self.names[0])
        self._track(vid)["context"] = {"name": self.names[0], "eraseafter": "true"}
        staging = self.stage(vid)
        target = self.publish(vid, staging)
        self.assertTrue(any("dax=always" in m[3] for m in mounts_at(target)), "not mounted with dax")
        with open(os.path.join(target, "old-data")) as f:
            self.assertEqual(f.read(), "written by the old driver", "the old filesystem was not kept")
        self.unpublish(vid, target)
        self.unstage(vid, staging)

    def test_03_create_with_same_name_is_idempotent(self):
        r = self.c.CreateVolume(pb.CreateVolumeRequest(
            name=self.names[1], capacity_range=pb.CapacityRange(required_bytes=64 * MiB),
            volume_capabilities=[pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(),
                                                     access_mode=pb.VolumeCapability.AccessMode(mode=1))]))
        self.assertEqual(r.volume.volume_id, volume_id(self.names[1]))

    def test_04_delete(self):
        for name in self.names:
            self.delete(volume_id(name))
        self.assertEqual(self.listed_ids(), [])
        if self.mode == "lvm":
            self.assertEqual(lvs(), {})
        else:
            left = [ns for r in regions() for ns in r.get("namespaces", []) if ns.get("name") in
                    [volume_id(n) for n in self.names]]
            self.assertEqual(left, [])


class UpgradeLVM(UpgradeBase):
    group = "upgrade-lvm"


class UpgradeDirect(UpgradeBase):
    group = "upgrade-direct"
    mode = "direct"
