"""Upgrade in place and rollback, both device modes.

Upgrade: devices and state files made the way intel/pmem-csi 1.1 makes them (built
here with ndctl and lvm commands from 1.1's formats, not by this driver) are taken
over: ListVolumes shows the volumes, stage/publish/delete work, data survives, and a
CSI inline ephemeral volume that 1.1 created and kubelet mounted is deleted when it is
unpublished (1.1 marks those with persistencyModel=ephemeral and a size).

Rollback: every kind of volume this driver makes (persistent with each parameter,
raw block, inline ephemeral, Kata) leaves a state file and device names that a
checker written from 1.1's rules (pkg/pmem-csi-driver/parameters Parse with
NodeVolumeOrigin, controllerserver-node.go) accepts and treats the same way."""

import json
import os
import re
import shlex
import time

import csi_pb2 as pb
from csitest import (LVM_ENV, MiB, Driver, DriverTestCase, lvs, mounts_at, regions, run, volume_id,
                     wipe_devices)


def upstream_state(state_dir, vid, name, size, mode, params=None):
    """<statePath>/<id>.json as upstream writes it."""
    os.makedirs(state_dir, exist_ok=True)
    if params is None:
        params = {"eraseafter": "true", "kataContainers": "false", "persistencyModel": "normal",
                  "usage": "AppDirect"}
    with open(os.path.join(state_dir, vid + ".json"), "w") as f:
        json.dump({"id": vid, "size": size, "parameters": dict(params, name=name, deviceMode=mode)}, f)
        f.write("\n")  # Go's json.Encoder ends with a newline


# An inline ephemeral volume of 1.1: named by kubelet's volume ID, and (createEphemeralDevice
# -> ToContext) only the keys that were set: the pod's attributes, persistencyModel, name, deviceMode.
EPHEMERAL = "csi-" + "7e" * 32


def ephemeral_params(size):
    return {"persistencyModel": "ephemeral", "size": str(size)}


V11_KEYS = {"eraseafter", "kataContainers", "usage", "name", "persistencyModel", "size", "deviceMode"}
GO_BOOLS = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}


def v11_check(path, mode):
    """What 1.1 does with a state file: None if it rejects it, else (volume, ephemeral)."""
    with open(path) as f:
        vol = json.load(f)
    if not isinstance(vol.get("id"), str) or not isinstance(vol.get("size"), int):
        return None
    p = vol.get("parameters") or {}
    for k, v in p.items():
        if k not in V11_KEYS or not isinstance(v, str):
            return None
        if k in ("eraseafter", "kataContainers") and v not in GO_BOOLS:
            return None
        if k == "usage" and v not in ("AppDirect", "FileIO", ""):
            return None
        if k == "persistencyModel" and v not in ("normal", "none", "ephemeral"):
            return None
        if k == "deviceMode" and v not in ("lvm", "direct", "ndctl", "fake"):
            return None
        if k == "size" and not re.fullmatch(r"[0-9]+", v):
            return None  # we write plain byte counts; 1.1 parses them as quantities
    if p.get("kataContainers") in ("1", "t", "T", "TRUE", "true", "True") and p.get("usage") == "FileIO":
        return None
    if p.get("deviceMode", "") != mode:
        return None  # 1.1 would look for the device with another device manager
    return vol, p.get("persistencyModel") == "ephemeral"


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
        for name in self.names + [EPHEMERAL]:
            vid = volume_id(name)
            run(["lvcreate", "-y", "-Zn", "-L", "%db" % (64 * MiB), "-n", vid, "ndbus0region0fsdax"], env=LVM_ENV)
            devs.append("/dev/ndbus0region0fsdax/" + vid)
            upstream_state(type(self).state_dir, vid, name, 64 * MiB, "lvm",
                           ephemeral_params(60 * MiB) if name == EPHEMERAL else None)
        return devs

    def make_upstream_direct(self):
        devs = []
        for name in self.names + [EPHEMERAL]:
            vid = volume_id(name)
            out = json.loads(run(["ndctl", "create-namespace", "-r", pmem_regions()[0], "-m", "fsdax",
                                  "-s", str(96 * MiB), "-n", vid]))
            devs.append("/dev/" + out["blockdev"])
            upstream_state(type(self).state_dir, vid, name, 96 * MiB, "direct",
                           ephemeral_params(90 * MiB) if name == EPHEMERAL else None)
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
        # 1.1's inline volume, formatted and mounted at kubelet's target path by 1.1.
        run(["mkfs.ext4", "-q", "-F", "-b", "4096", devs[-1]])
        cls.eph_target = self.path("pods", "eph", "mount")
        os.makedirs(cls.eph_target, exist_ok=True)
        run(["mount", "-o", "dax", devs[-1], cls.eph_target])
        if self.mode == "direct":
            cls.driver.extra_args.append("-deviceManager=direct")
        cls.driver.start()
        ids = set(self.listed_ids())
        for name in self.names:
            self.assertIn(volume_id(name), ids, "upstream volume %s not listed" % name)
        if self.mode == "lvm":
            self.assertEqual(sorted(v for v in lvs()), sorted(volume_id(n) for n in self.names + [EPHEMERAL]),
                             "the driver changed the LVs at start")
        self.assertTrue(os.path.exists(self.state_file(volume_id(EPHEMERAL))),
                        "1.1's state file of an inline volume was dropped: " + cls.driver.log_tail())

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

    def test_03b_v11_ephemeral_deleted_on_unpublish(self):
        """The leak of an upgrade: 1.1's inline volume must go when kubelet unpublishes it."""
        cls = type(self)
        vid = volume_id(EPHEMERAL)
        self.assertTrue(mounts_at(cls.eph_target), "not mounted before")
        self.expect(None, self.c.NodeUnpublishVolume,
                    pb.NodeUnpublishVolumeRequest(volume_id=EPHEMERAL, target_path=cls.eph_target),
                    "unpublish 1.1's inline volume")
        self.assertFalse(mounts_at(cls.eph_target), "still mounted")
        self.assertFalse(os.path.exists(self.state_file(vid)), "state file left: the volume leaked")
        if self.mode == "lvm":
            self.assertNotIn(vid, lvs(), "LV left: the volume leaked")
        else:
            left = [ns for r in regions() for ns in r.get("namespaces", []) if ns.get("name") == vid]
            self.assertEqual(left, [], "namespace left: the volume leaked")
        self.assertNotIn(vid, self.listed_ids())

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


    def test_05_rollback_our_state_read_by_v11(self):
        """Every kind of volume made here: 1.1's parser accepts the state file, the device has 1.1's name."""
        kinds = {
            "pvc-r0110000-0000-0000-0000-000000000001": {},
            "pvc-r0110000-0000-0000-0000-000000000002": {"eraseafter": "false", "usage": "FileIO"},
            "pvc-r0110000-0000-0000-0000-000000000003": {"kataContainers": "true", "persistencyModel": "none"},
            "pvc-r0110000-0000-0000-0000-000000000004": {"usage": "", "eraseafter": "0"},
        }
        made = []
        for name, params in kinds.items():
            made.append((self.create(name, params=params).volume_id, False))
        # raw block
        r = self.c.CreateVolume(pb.CreateVolumeRequest(
            name="pvc-r0110000-0000-0000-0000-000000000005", capacity_range=pb.CapacityRange(required_bytes=64 * MiB),
            volume_capabilities=[pb.VolumeCapability(block=pb.VolumeCapability.BlockVolume(),
                                                     access_mode=pb.VolumeCapability.AccessMode(mode=1))]))
        self._track(r.volume.volume_id)
        made.append((r.volume.volume_id, False))
        # inline ephemeral, as kubelet publishes it
        kid = "csi-" + "0b" * 32
        target = self.path("pods", "ours", "mount")
        os.makedirs(target, exist_ok=True)
        ctx = {"csi.storage.k8s.io/ephemeral": "true", "csi.storage.k8s.io/pod.name": "app-0",
               "csi.storage.k8s.io/pod.namespace": "default", "size": "100Mi", "eraseafter": "false"}
        self.expect(None, self.c.NodePublishVolume,
                    pb.NodePublishVolumeRequest(volume_id=kid, target_path=target,
                                                volume_capability=pb.VolumeCapability(
                                                    mount=pb.VolumeCapability.MountVolume(fs_type="ext4"),
                                                    access_mode=pb.VolumeCapability.AccessMode(mode=1)),
                                                volume_context=ctx), "ephemeral publish")
        made.append((volume_id(kid), True))
        try:
            for vid, ephemeral in made:
                got = v11_check(self.state_file(vid), self.mode)
                with open(self.state_file(vid)) as f:
                    text = f.read()
                self.assertIsNotNone(got, "1.1 would reject the state file of %s: %s" % (vid, text))
                vol, is_eph = got
                self.assertEqual(vol["id"], vid)
                self.assertEqual(is_eph, ephemeral, "1.1 would treat %s as ephemeral=%s: %s" % (vid, is_eph, text))
                if ephemeral:
                    self.assertEqual(vol["parameters"].get("name"), kid, "1.1 finds inline volumes by name")
                    self.assertEqual(int(vol["parameters"]["size"]), 100 * MiB)
                # 1.1 finds the device by the volume ID: LV name or namespace name
                if self.mode == "lvm":
                    self.assertIn(vid, lvs(), "no LV named %s" % vid)
                else:
                    names = [ns.get("name") for r_ in regions() for ns in r_.get("namespaces", [])]
                    self.assertIn(vid, names, "no namespace named %s" % vid)
        finally:
            self.unpublish(kid, target)
            for vid, ephemeral in made:
                if not ephemeral:
                    self.delete(vid)


class UpgradeLVM(UpgradeBase):
    group = "upgrade-lvm"


class UpgradeDirect(UpgradeBase):
    group = "upgrade-direct"
    mode = "direct"


class ReadOnlySysDriver(Driver):
    """The driver in a mount namespace whose /sys is read-only, as on OpenShift 4.5;
    with host_sys, a writable sysfs at /host-sys, as 1.1's manifests mount it."""
    host_sys = True

    def argv(self):
        steps = ["mount -o remount,bind,ro /sys"]
        if self.host_sys:
            steps += ["mkdir -p /host-sys", "mount -t sysfs sysfs /host-sys"]
        else:
            steps += ["! test -e /host-sys || { umount /host-sys 2>/dev/null; rmdir /host-sys; }"]
        script = " && ".join(steps) + " && exec " + " ".join(shlex.quote(a) for a in super().argv())
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script]


class UpgradeReadOnlySys(DriverTestCase):
    """1.1's /host-sys fallback: with /sys read-only the driver bind-mounts /host-sys onto it."""
    group = "upgrade-ro-sys"
    sequential = True
    start_driver = False
    clean_devices = True

    def test_01_without_host_sys_fails_clearly(self):
        d = ReadOnlySysDriver(self.group + "-none", type(self).state_dir)
        d.host_sys = False
        d.start(wait=False)
        try:
            for _ in range(300):
                if not d.alive():
                    break
                time.sleep(0.1)
            self.assertFalse(d.alive(), "the driver runs with a read-only /sys")
            self.assertIn("read-only and there is no /host-sys", d.log_text(), d.log_tail())
        finally:
            d.stop()

    def test_02_host_sys_bind_mounted(self):
        cls = type(self)
        wipe_devices()  # so that the driver has to write /sys: create its namespaces
        d = ReadOnlySysDriver(self.group, cls.state_dir)
        d.start()
        try:
            self.assertIn("bind-mounted /host-sys onto it", d.log_text(), d.log_tail())
            self.assertTrue(any(r.get("namespaces") for r in regions()), "no namespace made")
        finally:
            d.stop()
        run(["rmdir", "/host-sys"], check=False)


class V11CommandLineDriver(Driver):
    """The driver with the command line of 1.1's node DaemonSet (deploy/kubernetes-1.25,
    kubelet's $(VAR) expansion done) plus klog flags 1.1 accepted; KUBE_NODE_NAME and
    TERMINATION_LOG_PATH in the environment, as that DaemonSet sets them."""
    termination_log = None
    endpoint = None

    def argv(self):
        import csitest
        return [csitest.DRIVER, "-deviceManager=lvm", "-v=3", "-logging-format=text", "-mode=node",
                "-endpoint=" + (self.endpoint or "unix://" + csitest.ENDPOINT_PATH), "-nodeid=" + self.nodeid,
                "-statePath=" + self.state_dir, "-drivername=pmem-csi.intel.com", "-pmemPercentage=100",
                "-logtostderr=true", "-alsologtostderr", "-stderrthreshold=INFO", "-skip_headers=false",
                "-add_dir_header", "-one_output=True", "-log_file_max_size=1800", "-vmodule=", "-log_backtrace_at="]

    def start(self, wait=True):
        import csitest  # Driver.start() passes csitest.LVM_ENV as the environment
        csitest.LVM_ENV["KUBE_NODE_NAME"] = self.nodeid
        if self.termination_log:
            csitest.LVM_ENV["TERMINATION_LOG_PATH"] = self.termination_log
        try:
            super().start(wait)
        finally:
            csitest.LVM_ENV.pop("KUBE_NODE_NAME", None)
            csitest.LVM_ENV.pop("TERMINATION_LOG_PATH", None)


class UpgradeV11CommandLine(DriverTestCase):
    """1.1's DaemonSet command line and environment work unchanged."""
    group = "upgrade-v11-args"
    start_driver = False

    def test_01_v11_node_args_ready(self):
        d = V11CommandLineDriver(self.group, type(self).state_dir)
        d.start()
        try:
            self.assertIn("Accepted for compatibility but not applied", d.log_text(since_start=True))
        finally:
            d.stop()

    def test_02_termination_log(self):
        bad = "unix:///proc/pmem-csi-impossible/csi.sock"  # a fatal error at start
        d = V11CommandLineDriver(self.group + "-fail", type(self).state_dir)
        d.endpoint = bad
        d.termination_log = self.path("termination-log")
        d.start(wait=False)
        try:
            for _ in range(300):
                if not d.alive():
                    break
                time.sleep(0.1)
            self.assertFalse(d.alive(), "the driver runs without its endpoint")
            self.assertNotEqual(d.proc.returncode, 0)
            with open(d.termination_log) as f:
                msg = f.read()
            self.assertIn("pmem-csi-driver failed:", msg)
            self.assertIn(bad, msg, "the termination message does not say what failed")
        finally:
            d.stop()
