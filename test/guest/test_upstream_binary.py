"""Drop-in both ways, against the REAL intel/pmem-csi v0.6.52 driver binary.

test_upgrade.py checks the 1.1 formats by building them by hand. This module runs
upstream's own binary (a test peer: PMEM_CSI_UPSTREAM, which test/vm/run-guest-suite.sh
passes in; default ~/.cache/pmem-csi-tools/pmem-csi-driver-v0.6.52) on the same
emulated NVDIMMs as our driver, one after the other, in each device mode:

1. upgrade: on fresh devices (LVM mode: after upstream's own pmem-ns-init and pmem-vgm,
   as its pod ran them) upstream creates every kind of volume it supports, stages and
   publishes some and writes data, and is stopped with SIGTERM; ours starts on the same
   devices and state directory and must list exactly those volumes (IDs, capacities),
   report the right capacity, keep the data through unpublish/unstage/stage/publish,
   delete an inline volume on unpublish, and erase on delete only as eraseafter said;
2. rollback: ours creates the same kinds, is stopped, and upstream serves them;
3. crash: upstream is SIGKILLed in the middle of CreateVolume; ours starts and handles
   what it left by docs/ownership.md, deleting nothing that is not its own.

Differences between 0.6.52 and 1.x (the format we target) are asserted as facts and
listed in docs/upgrade.md. Without the binary the groups skip (fail with CI=true)."""

import json
import os
import random
import signal
import time

import csi_pb2 as pb
from csitest import (LVM_ENV, MiB, NODE_ID, DRIVER_NAME, ENDPOINT_PATH, SNW, XFS_MIN, C, Driver,
                     DriverTestCase, all_namespaces, log, lvs, mount_cap, mounts_at, regions, run,
                     rpc_code, short, state_files, vgs, volume_id)

UPSTREAM = os.environ.get("PMEM_CSI_UPSTREAM") or os.path.join(
    os.environ.get("HOME", "/root"), ".cache", "pmem-csi-tools", "pmem-csi-driver-v0.6.52")
TOOLS = os.path.dirname(UPSTREAM)
SEED = int(os.environ.get("CRASH_SEED", str(int(time.time()))))
# The device modes to run (both by default; each costs 1.5-3.5 min of a loaded TCG guest)
# and the SIGKILLs inside CreateVolume per mode.
MODES = os.environ.get("UPSTREAM_BINARY_MODES", "lvm direct").split()
CRASH_ROUNDS = int(os.environ.get("UPSTREAM_BINARY_CRASHES", "3"))
MARK = b"pmem-csi-upstream-binary-marker!"
MARK_AT = 1 * MiB  # past any filesystem's first blocks, inside every volume


def block_cap():
    return pb.VolumeCapability(block=pb.VolumeCapability.BlockVolume(),
                               access_mode=pb.VolumeCapability.AccessMode(mode=SNW))


# The kinds of volume both drivers make: name -> (capability, size, parameters),
# folded into three (plus the inline volume) to keep the module's cost down (0.6.52
# is slow in a TCG guest) and because in direct mode 0.6.52 gives every namespace
# 2 GiB of a region (1 GiB alignment, then one more step): 2 x 4 GiB hold four.
# Between them: ext4 and xfs, raw block, eraseafter true (default) and false, and
# parameters; the xfs one is not erased (erasing 300 MiB cost minutes in a loaded guest).
def kinds(prefix, mode="lvm"):
    return {
        prefix + "-ext4": ("ext4", 64 * MiB, {}),
        prefix + "-xfs": ("xfs", XFS_MIN, {"eraseafter": "false"}),
        prefix + "-block": ("block", 64 * MiB, {"eraseafter": "false", "persistencyModel": "normal"}),
    }


EPH_CTX = {"csi.storage.k8s.io/ephemeral": "true", "csi.storage.k8s.io/pod.name": "app-0",
           "csi.storage.k8s.io/pod.namespace": "default", "size": "100Mi"}


class UpstreamDriver(Driver):
    """intel/pmem-csi v0.6.52 as its node pod ran it, with -testEndpoint so that one
    socket serves Identity, Controller and Node (as ours does)."""
    mode = "lvm"

    def argv(self):
        return [UPSTREAM, "-mode=node", "-testEndpoint", "-drivername=" + DRIVER_NAME,
                "-nodeid=" + NODE_ID, "-endpoint=unix://" + ENDPOINT_PATH,
                "-statePath=" + self.state_dir,
                "-deviceManager=" + ("lvm" if self.mode == "lvm" else "ndctl"), "-v=5"]


def read_states(state_dir):
    out = {}
    for f in state_files(state_dir):
        try:
            with open(os.path.join(state_dir, f)) as fh:
                out[f] = fh.read()
        except OSError as e:
            out[f] = "<%s>" % e
    return out


def vg_tags():
    out = run(["vgs", "--reportformat", "json", "-o", "vg_name,vg_tags"], env=LVM_ENV)
    return {v["vg_name"]: v["vg_tags"] for rep in json.loads(out)["report"] for v in rep.get("vg", [])}


def devices(mode):
    """{volume-like device name: size} (LVs in the fsdax VGs, or named namespaces)."""
    if mode == "lvm":
        return {n: s for n, (vg, s) in lvs().items() if vg.endswith("fsdax")}
    res = {}
    for r in regions():
        for ns in r.get("namespaces", []):
            if ns.get("size", 0) > 0 and ns.get("name"):
                res[ns["name"]] = ns["size"]
    return res


def lv_pv_offset(vid):
    """(PV path, byte offset on the PV) where LV vid starts (its first segment)."""
    out = json.loads(run(["lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o",
                          "lv_name,seg_pe_ranges,vg_extent_size"], env=LVM_ENV))
    pvout = json.loads(run(["pvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o",
                            "pv_name,pe_start"], env=LVM_ENV))
    pe_start = {p["pv_name"]: int(p["pe_start"]) for rep in pvout["report"] for p in rep.get("pv", [])}
    for rep in out["report"]:
        for lv in [row for rows in rep.values() for row in rows]:  # "lv" or "seg" rows
            if lv.get("lv_name") == vid:
                pv, ext = lv["seg_pe_ranges"].split()[0].rsplit(":", 1)
                first = int(ext.split("-")[0])
                return pv, pe_start[pv] + first * int(lv["vg_extent_size"])
    raise AssertionError("no LV %s" % vid)


def pwrite_sync(path, data, offset):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def pread_fresh(path, n, offset):
    run(["blockdev", "--flushbufs", path], check=False)
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, n, offset)
    finally:
        os.close(fd)


class UpstreamBase(DriverTestCase):
    sequential = True
    start_driver = False
    clean_devices = True
    mode = "lvm"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.missing = None
        if not os.access(UPSTREAM, os.X_OK):
            cls.missing = "intel/pmem-csi v0.6.52 binary %s not found (a test peer from ../shared/tools)" % UPSTREAM
        cls.up = UpstreamDriver(cls.group + "-upstream", cls.state_dir)
        cls.up.mode = cls.mode
        if cls.mode == "direct":
            cls.driver.extra_args.append("-deviceManager=direct")
        cls.facts = []
        cls.ours = cls.driver

    @classmethod
    def tearDownClass(cls):
        for d in (cls.up, cls.ours):
            if d is not cls.driver and d.proc is not None:
                d.stop()
        for f in cls.facts:
            log("%s: difference: %s" % (cls.group, f))
        super().tearDownClass()

    def setUp(self):
        if self.mode not in MODES:
            self.skipTest("UPSTREAM_BINARY_MODES=%s" % " ".join(MODES))
        cls = type(self)
        if cls.missing:
            if os.environ.get("CI") == "true" and not cls._setup_reported:
                cls._setup_reported = True  # one failure per group, the other steps skip
                self.fail(cls.missing + "; CI=true: a missing peer is a failure")
            self.skipTest(cls.missing)
        super().setUp()

    def fact(self, text):
        type(self).facts.append(text)
        log("difference: " + text)

    # ---- calls to whichever driver is up -------------------------------------

    def use(self, d):
        """Route the helper calls (self.c) to driver d."""
        type(self).driver = d

    def make(self, name, kind, size, params):
        caps = [block_cap()] if kind == "block" else [mount_cap(kind)]
        vol = self.create(name, size=size, params=params, caps=caps)
        return vol

    def publish_kind(self, vid, kind, tag):
        """Stage and publish as kubelet does; returns (staging, target)."""
        staging = self.path(tag, vid[:12], "staging")
        os.makedirs(staging, exist_ok=True)
        t = self._track(vid)
        t["staging"].add(staging)
        cap = block_cap() if kind == "block" else mount_cap(kind)
        self.expect(None, self.c.NodeStageVolume,
                    pb.NodeStageVolumeRequest(volume_id=vid, staging_target_path=staging,
                                              volume_capability=cap, volume_context=t["context"]),
                    "NodeStageVolume(%s)" % vid)
        target = self.path(tag, vid[:12], "pod", "vol")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        t["targets"].add(target)
        self.expect(None, self.c.NodePublishVolume,
                    pb.NodePublishVolumeRequest(volume_id=vid, staging_target_path=staging, target_path=target,
                                                volume_capability=cap, volume_context=t["context"]),
                    "NodePublishVolume(%s)" % vid)
        return staging, target

    def published_ok(self, target):
        """A mount at target, or (0.6.52's raw block publish) a symlink to a block device."""
        if os.path.islink(target):
            log("%s is a symlink to %s" % (target, os.readlink(target)))
            return os.path.exists(target)
        return bool(mounts_at(target))

    def unpublish_unmounted_block(self, vid, staging, target):
        """0.6.52's unpublish of its own (never mounted) raw block target fails: remove
        the file by hand, as an administrator would."""
        got, details, _ = rpc_code(self.c.NodeUnpublishVolume,
                                   pb.NodeUnpublishVolumeRequest(volume_id=vid, target_path=target))
        if got is not None:
            self.fact("upstream: NodeUnpublishVolume of that raw block target: %s %s"
                      % (got.name, short(details, 160)))
        if os.path.lexists(target):
            os.unlink(target)
        self.unstage(vid, staging)

    def unpublish_kind(self, vid, staging, target):
        self.unpublish(vid, target)
        self.unstage(vid, staging)
        self.assertFalse(mounts_at(target) or mounts_at(staging), "still mounted after unpublish/unstage")
        self.assertFalse(os.path.lexists(target), "target %s left after unpublish" % target)

    def listing(self):
        return {e.volume.volume_id: e.volume.capacity_bytes for e in self.list_all()}

    def ephemeral_publish(self, kid, tag):
        target = self.path(tag, "eph", "mount")
        os.makedirs(target, exist_ok=True)
        self.expect(None, self.c.NodePublishVolume,
                    pb.NodePublishVolumeRequest(volume_id=kid, target_path=target, volume_capability=mount_cap("ext4"),
                                                volume_context=EPH_CTX), "ephemeral NodePublishVolume(%s)" % kid)
        with open(os.path.join(target, "data"), "w") as f:
            f.write("ephemeral " + kid)
        return target

    def ephemeral_unpublish(self, kid, target):
        self.expect(None, self.c.NodeUnpublishVolume,
                    pb.NodeUnpublishVolumeRequest(volume_id=kid, target_path=target),
                    "ephemeral NodeUnpublishVolume(%s)" % kid)
        self.assertFalse(mounts_at(target), "inline volume still mounted")

    def write_data(self, target, kind, text):
        if kind == "block":
            pwrite_sync(target, text.encode(), 0)
        else:
            with open(os.path.join(target, "data"), "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())

    def read_data(self, target, kind, n):
        if kind == "block":
            return pread_fresh(target, n, 0).decode(errors="replace")
        with open(os.path.join(target, "data")) as f:
            return f.read()

    def capacity_right(self, what):
        r = self.capacity()
        if self.mode == "lvm":
            free = [f for vg, (_, f) in vgs().items() if vg.endswith("fsdax")]
            self.assertTrue(sum(free) - len(free) * 4 * MiB <= r.available_capacity <= sum(free),
                            "%s: GetCapacity %d, free space of the VGs %s" % (what, r.available_capacity, free))
        else:
            avail = [reg.get("available_size", 0) for reg in regions() if reg.get("type", "pmem") == "pmem"]
            self.assertTrue(sum(avail) - len(avail) * 96 * MiB <= r.available_capacity <= sum(avail),
                            "%s: GetCapacity %d, regions' available_size %s" % (what, r.available_capacity, avail))
        return r.available_capacity

    # ---- the stories ------------------------------------------------------------

    def create_all(self, prefix, tag, driver_name):
        """Every kind of volume, two published with data, one inline volume."""
        cls = type(self)
        made = {}
        for name, (kind, size, params) in kinds(prefix, self.mode).items():
            got, details, resp = rpc_code(self.c.CreateVolume, pb.CreateVolumeRequest(
                name=name, capacity_range=pb.CapacityRange(required_bytes=size),
                volume_capabilities=[block_cap()] if kind == "block" else [mount_cap(kind)], parameters=params))
            self.assertIsNone(got, "%s: CreateVolume(%s, %s): %s %s" % (driver_name, name, params, got, details))
            vid = resp.volume.volume_id
            self._track(vid)["context"] = dict(resp.volume.volume_context)
            if vid != volume_id(name):
                self.fact("%s: volume ID of %s is %s, 1.x's is %s" % (driver_name, name, vid, volume_id(name)))
            made[name] = (vid, kind, resp.volume.capacity_bytes, dict(resp.volume.volume_context))
            log("%s made %s: %s bytes, context %s" % (driver_name, vid, resp.volume.capacity_bytes,
                                                     dict(resp.volume.volume_context)))
        published = {}
        for name in (prefix + "-ext4", prefix + "-xfs", prefix + "-block"):
            vid, kind = made[name][0], made[name][1]
            staging, target = self.publish_kind(vid, kind, tag)
            if not self.published_ok(target):
                st = os.lstat(target)
                self.fact("%s: NodePublishVolume of raw block volume %s answered OK but %s is a %s of %d "
                          "bytes, not the device (findmnt finds no mount there)"
                          % (driver_name, vid, target, "regular file" if os.path.isfile(target) else "non-mount",
                             st.st_size))
                self.assertEqual(driver_name, "upstream", "ours did not publish %s" % vid)
                # kubelet would hand the pod that empty file: nothing to carry over
                self.unpublish_unmounted_block(vid, staging, target)
                published[name] = None
                continue
            self.write_data(target, kind, "%s wrote this on %s" % (driver_name, vid))
            published[name] = (staging, target)
        kid = "csi-" + ("%02x" % len(prefix)) * 32
        cls.kid = kid
        devs0 = set(devices(self.mode))
        cls.eph_target = self.ephemeral_publish(kid, tag)
        cls.eph_devs = set(devices(self.mode)) - devs0
        log("%s: inline volume %s has the device %s" % (driver_name, kid, sorted(cls.eph_devs)))
        self.assertEqual(len(cls.eph_devs), 1, "%s: inline volume devices %s" % (driver_name, cls.eph_devs))
        if cls.eph_devs != {volume_id(kid)}:
            self.fact("%s names the device of inline volume %s %s; 1.x: %s"
                      % (driver_name, kid, sorted(cls.eph_devs), volume_id(kid)))
        cls.made, cls.published = made, published
        return made

    def takeover_checks(self, made, before_list, before_devs, writer):
        """The new driver sees exactly what the old one made, and the data."""
        cls = type(self)
        after = self.listing()
        self.assertEqual(after, before_list, "ListVolumes after the switch (the old driver listed %s)" % before_list)
        self.assertEqual(devices(self.mode), before_devs, "the devices changed at start")
        for name, pub in cls.published.items():
            vid, kind = made[name][0], made[name][1]
            want = "%s wrote this on %s" % (writer, vid)
            if pub is None:  # the old driver never gave it to a pod: publish, write, read
                staging, target = self.publish_kind(vid, kind, "again")
                self.assertTrue(self.published_ok(target), "%s not published by the new driver" % name)
                self.write_data(target, kind, want)
                self.unpublish_kind(vid, staging, target)
            staging, target = pub if pub else (None, None)
            if pub:
                self.unpublish_kind(vid, staging, target)
            staging, target = self.publish_kind(vid, kind, "again")
            if writer == "ours" and kind == "block" and not self.published_ok(target):
                self.fact("upstream: raw block volume %s of ours staged and published OK, but the "
                          "target is not the device (as for its own block volumes)" % vid)
                self.unpublish_unmounted_block(vid, staging, target)
                continue
            self.assertEqual(self.read_data(target, kind, len(want)), want, "data of %s after the switch" % vid)
            self.unpublish_kind(vid, staging, target)

    def delete_all_checked(self, made):
        """Marker in every volume (LVM: checked on the PV after the delete), delete all."""
        spots = {}
        if self.mode == "lvm":
            for name, (vid, kind, size, ctx) in made.items():
                spots[name] = lv_pv_offset(vid)
                pwrite_sync("/dev/%s/%s" % (lvs()[vid][0], vid), MARK, MARK_AT)
        for name, (vid, kind, size, ctx) in made.items():
            self.delete(vid)
        self.assertEqual(self.listing(), {}, "listed after deleting all")
        self.assertEqual({d for d in devices(self.mode) if d != "pmem-csi"}, set(), "devices left after deleting all")
        self.assertEqual([f for f in state_files(type(self).state_dir)], [], "state files left")
        for name, (pv, off) in spots.items():
            params = kinds(name.rsplit("-", 1)[0], self.mode)[name][2]
            erase = params.get("eraseafter", "true") == "true"
            got = pread_fresh(pv, len(MARK), off + MARK_AT)
            if erase:
                self.assertNotEqual(got, MARK, "%s (eraseafter=%s) not erased on delete" % (name, erase))
            else:
                self.assertEqual(got, MARK, "%s (eraseafter=false) was changed by delete" % name)


class UpstreamLVM(UpstreamBase):
    group = "upstream-0.6-lvm"

    def test_01_upstream_makes_volumes(self):
        cls = type(self)
        if self.mode == "lvm":
            # What 0.6's node pod ran before its driver: the namespaces, then the VGs (tagged).
            for tool in ("pmem-ns-init", "pmem-vgm"):
                out = run([os.path.join(TOOLS, tool + "-v0.6.52"), "-v=3"], env=LVM_ENV)
                log("%s: %s" % (tool, short(out, 200)))
            cls.tags0 = vg_tags()
            cls.ns0 = all_namespaces()
            log("after pmem-ns-init/pmem-vgm: VGs %s, namespaces %s" % (cls.tags0, all_namespaces()))
        self.use(cls.up)
        cls.up.start()
        log("upstream ready %.2f s after start; GetCapacity %s" % (cls.up.ready_after, short(self.capacity())))
        cls.caps0 = self.capacity().available_capacity
        made = self.create_all("pvc-up", "up", "upstream")
        cls.up_list = self.listing()
        cls.up_devs = devices(self.mode)
        cls.up_states = read_states(cls.state_dir)
        for f, text in sorted(cls.up_states.items()):
            log("upstream state %s: %s" % (f, short(text, 400)))
        want = {vid: size for vid, _, size, _ in made.values()}
        extra = {k: v for k, v in cls.up_list.items() if k not in want}
        if extra:
            self.fact("0.6.52 ListVolumes also lists %s (inline volumes?)" % extra)

    def test_02_switch_to_ours(self):
        cls = type(self)
        rc, took = cls.up.stop()
        log("upstream: SIGTERM -> exit status %s after %.2f s" % (rc, took))
        for name, pub in cls.published.items():
            self.assertTrue(pub is None or self.published_ok(pub[1]), "%s not published after upstream stopped" % name)
        self.use(cls.ours)
        cls.ours.start()
        log("ours ready %.2f s after start" % cls.ours.ready_after)
        text = cls.ours.log_text(since_start=True)
        for line in text.splitlines():
            if "not ours" in line or "unreadable" in line or "unowned" in line.lower() or line.startswith("W"):
                log("ours: " + line.strip()[:300])
        self.takeover_checks(cls.made, cls.up_list, cls.up_devs, "upstream")
        self.capacity_right("after the switch")
        changed = {f for f, t in read_states(cls.state_dir).items() if cls.up_states.get(f) != t}
        if changed:
            log("ours rewrote the state files %s" % sorted(changed))

    def test_03_inline_volume_deleted_on_unpublish(self):
        cls = type(self)
        states0 = set(state_files(cls.state_dir))
        self.ephemeral_unpublish(cls.kid, cls.eph_target)
        gone = states0 - set(state_files(cls.state_dir))
        self.assertEqual(cls.eph_devs & set(devices(self.mode)), set(), "0.6's inline volume leaked (device left)")
        self.assertEqual(gone, {d + ".json" for d in cls.eph_devs}, "state files removed by the unpublish")

    def test_04_delete_erases_as_told(self):
        cls = type(self)
        self.delete_all_checked(cls.made)
        self.capacity_right("after deleting all")
        if self.mode == "lvm":
            self.assertEqual(vg_tags(), cls.tags0, "ours changed 0.6's volume groups or their tags")
            self.assertEqual(all_namespaces(), cls.ns0, "ours changed the namespaces pmem-ns-init made")

    def test_05_rollback_ours_makes_volumes(self):
        cls = type(self)
        made = self.create_all("pvc-ours", "ours", "ours")
        cls.ours_list = self.listing()
        cls.ours_devs = devices(self.mode)
        for f, text in sorted(read_states(cls.state_dir).items()):
            log("our state %s: %s" % (f, short(text, 400)))
        rc, took = cls.ours.stop()
        log("ours: SIGTERM -> exit status %s after %.2f s" % (rc, took))
        self.use(cls.up)
        cls.up.start()
        self.assertTrue(made)

    def test_06_rollback_upstream_serves(self):
        cls = type(self)
        self.takeover_checks(cls.made, cls.ours_list, cls.ours_devs, "ours")

    def test_07_rollback_inline_and_delete(self):
        cls = type(self)
        got, details, _ = rpc_code(self.c.NodeUnpublishVolume,
                                   pb.NodeUnpublishVolumeRequest(volume_id=cls.kid, target_path=cls.eph_target))
        if got is not None:
            # 0.6 looks for SHA-1(kubelet's volume ID); ours is named by the 1.x ID.
            self.fact("upstream: NodeUnpublishVolume of an inline volume that ours made: %s %s; the volume "
                      "stays mounted (unmounted here by hand)" % (got.name, short(details, 120)))
            run(["umount", cls.eph_target])
        self.assertFalse(mounts_at(cls.eph_target), "inline volume still mounted")
        left = cls.eph_devs & (set(devices(self.mode)) | {f[:-5] for f in state_files(cls.state_dir)})
        if left:
            self.fact("0.6.52 does not delete an inline volume that ours made when kubelet unpublishes it: "
                      "%s left" % sorted(left))
            for vid in left:
                self.delete(vid)
        self.delete_all_checked(cls.made)

    def test_08_crash_in_create(self):
        """SIGKILL upstream inside CreateVolume; ours starts on what it left."""
        cls = type(self)
        rnd = random.Random(SEED)
        log("crash seed %d" % SEED)
        # A foreign device whose name has the shape of a volume ID: never ours to touch.
        foreign = volume_id("pvc-foreign-made-by-hand")
        if self.mode == "lvm":
            vg = sorted(v for v in vgs() if v.endswith("fsdax"))[0]
            run(["lvcreate", "-y", "-Zn", "-L", "8m", "-n", foreign, vg], env=LVM_ENV)
        else:
            reg = [r["dev"] for r in regions() if r.get("type", "pmem") == "pmem"][0]
            run(["ndctl", "create-namespace", "-r", reg, "-m", "fsdax", "-s", str(96 * MiB), "-n", foreign])
        left = {}
        for i in range(CRASH_ROUNDS):
            name = "pvc-crash-%d" % i
            if cls.up.proc is None:
                cls.up.start()
            devs0, states0 = set(devices(self.mode)), set(state_files(cls.state_dir))
            fut = cls.up.client.future("CreateVolume", pb.CreateVolumeRequest(
                name=name, capacity_range=pb.CapacityRange(required_bytes=256 * MiB),
                volume_capabilities=[mount_cap("ext4")], parameters={"eraseafter": "true"}))
            delay = rnd.uniform(0.2, 3.0)
            time.sleep(delay)
            os.killpg(cls.up.proc.pid, signal.SIGKILL)
            cls.up.stop()
            try:
                fut.result(timeout=5)
                outcome = "answered"
            except Exception as e:
                outcome = "cut off (%s)" % type(e).__name__
            devs = set(devices(self.mode)) - devs0
            sts = set(state_files(cls.state_dir)) - states0
            left[name] = (devs, sts)
            log("crash %d: SIGKILL %.2f s into CreateVolume, %s: new devices %s, new state files %s"
                % (i, delay, outcome, sorted(devs), sorted(sts)))
        self.use(cls.ours)
        cls.ours.start()
        listed = self.listing()
        self.assertIn(foreign, devices(self.mode), "ours removed a foreign device at start")
        self.assertNotIn(foreign, listed)
        for name, (devs, sts) in left.items():
            for dev in devs:
                if dev + ".json" in sts:
                    self.assertIn(dev, listed, "%s: upstream's complete volume not served" % name)
                    self.delete(dev)
                else:
                    self.assertNotIn(dev, listed, "%s: a device without state is listed" % name)
                    self.assertIn(dev, devices(self.mode), "%s: a device without state was removed" % name)
            for st in sts:
                if st[:-5] not in devs:
                    self.assertNotIn(st[:-5], listed, "%s: listed without a device" % name)
                    self.assertNotIn(st, state_files(cls.state_dir), "%s: a record without device kept" % name)
            # the provisioner's retry, now to ours
            half = {d for d in devs if d + ".json" not in sts}
            if volume_id(name) in half:
                got, details, _ = self.create(name, size=256 * MiB, check=False)
                self.assertEqual(got, C.FAILED_PRECONDITION, "CreateVolume over upstream's half-made device: %s %s"
                                 % (got, details))
            else:
                self.delete(self.create(name, size=256 * MiB).volume_id)
        self.assertIn(foreign, devices(self.mode), "ours removed a foreign device")
        self.delete(foreign)  # DeleteVolume of a foreign ID: success, touches nothing
        self.assertIn(foreign, devices(self.mode), "DeleteVolume removed a foreign device")
        cls.ours.stop()
        # tidy up by hand what is not the driver's
        for name, (devs, sts) in left.items():
            for dev in devs:
                if dev in devices(self.mode):
                    self._remove_device(dev)
        self._remove_device(foreign)

    def _remove_device(self, name):
        if self.mode == "lvm":
            vg = lvs()[name][0]
            run(["lvremove", "-f", "-y", "%s/%s" % (vg, name)], env=LVM_ENV)
        else:
            for r in regions():
                for ns in r.get("namespaces", []):
                    if ns.get("name") == name:
                        run(["ndctl", "destroy-namespace", "-f", ns["dev"]])


class UpstreamDirect(UpstreamLVM):
    group = "upstream-0.6-direct"
    mode = "direct"
