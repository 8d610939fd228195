"""Issue 8, part 7: hostile input of our own, in both device modes.

Each test sends one class of the input issue 8's "Why" lists (names, volume IDs,
paths, sizes, parameters, racing calls on one volume, capacity running out, kill -9
of the driver during parallel creates) and then checks that nothing outside the
driver's own devices and the paths it was given changed:
  - things the group makes by hand at the start and owns: an LV in the driver's
    volume group named like a volume ID (LVM mode) or a namespace with such a name
    (direct mode), each with a known pattern in its first MiB; a tmpfs with a file;
    a regular file; a directory with a file;
  - the mount table (every test cleans up its own volumes, so it must be as before);
and that the driver's devices, its state files and ListVolumes agree.

The docstring of each test names the part of issue 8 it checks (1 ownership,
2 paths, 3 no leak under pressure, 4 input at the gRPC boundary, 7 this group).
Tests of parts 1-3 are written to the behaviour the issue asks for; on a branch
without those fixes they fail, and say what they saw."""

import hashlib
import json
import os
import random
import signal
import time

from csitest import (C, LVM_ENV, MiB, DriverTestCase, code_name, expected_vgs, log, lvs,
                     mount_cap, mount_table, pb, raw_call, regions, rpc_code, run, state_files,
                     volume_device_ids, volume_id, wire, wire_field)

SNW = pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER
PATTERN_BYTES = 1 * MiB


def block_cap():
    return pb.VolumeCapability(block=pb.VolumeCapability.BlockVolume(),
                               access_mode=pb.VolumeCapability.AccessMode(mode=SNW))


def sha_file(path, n=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(n) if n else f.read())
    return h.hexdigest()


class HostileBase(DriverTestCase):
    mode = "lvm"
    clean_devices = True

    def fail_if(self, problems, msg):
        """Fail with msg (one problem per line) when the list of problems is not empty."""
        if problems:
            self.fail(msg)

    # ---- the things this group owns, made by hand ------------------------------

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls._setup_error:
            return
        try:
            cls.make_foreign()
        except Exception as e:
            cls._setup_error = "group set-up failed: making the foreign devices and files: %s" % e

    @classmethod
    def make_foreign_device(cls, vid):
        """A device named like volume ID vid, made by hand, with 1 MiB of random data."""
        if cls.mode == "lvm":
            vg = expected_vgs()[0]
            run(["lvcreate", "-q", "-y", "-Zn", "-L", "16m", "-n", vid, vg], env=LVM_ENV)
            dev = "/dev/%s/%s" % (vg, vid)
        else:
            region = max(regions(), key=lambda r: r.get("available_size", 0))
            out = run(["ndctl", "create-namespace", "-r", region["dev"], "-m", "fsdax", "-s", "64M", "-n", vid])
            dev = "/dev/" + json.loads(out)["blockdev"]
        run(["dd", "if=/dev/urandom", "of=" + dev, "bs=1M", "count=1", "oflag=direct,sync", "status=none"])
        cls.foreign_devices[vid] = dev

    @classmethod
    def make_foreign(cls):
        cls.foreign_devices = {}  # volume ID -> device path
        # IDs of names no test creates, except "hostile-adopt", which
        # test_03_create_over_foreign_device asks for.
        for n in ["hostile-foreign", "hostile-adopt"]:
            cls.make_foreign_device(volume_id(n))
        cls.foreign_dir = os.path.join(cls.workdir, "foreign")
        cls.tmpfs = os.path.join(cls.foreign_dir, "tmpfs")
        cls.regular_file = os.path.join(cls.foreign_dir, "regular-file")
        cls.plain_dir = os.path.join(cls.foreign_dir, "dir")
        cls.owned_files = [os.path.join(cls.tmpfs, "precious"), cls.regular_file,
                           os.path.join(cls.plain_dir, "precious")]
        os.makedirs(cls.tmpfs)
        os.makedirs(cls.plain_dir)
        cls.mount_tmpfs()
        for p in cls.owned_files:
            with open(p, "wb") as f:
                f.write(os.urandom(4096))
        cls.baseline = cls.outside()
        log("%s: foreign devices %s, tmpfs %s" % (cls.group, sorted(cls.foreign_devices.values()), cls.tmpfs))

    @classmethod
    def mount_tmpfs(cls):
        run(["mount", "-t", "tmpfs", "-o", "size=4m", "hostile-tmpfs", cls.tmpfs])

    @classmethod
    def restore_outside(cls):
        """After a test changed what is not the driver's: put it back (new contents) and
        take a new baseline, so that the next test is judged on its own."""
        present = cls.present_devices()
        for vid in list(cls.foreign_devices):
            if vid not in present:
                log("restoring the foreign device %s" % vid)
                cls.make_foreign_device(vid)
        base = {(m[0], m[1], m[2]) for m in cls.baseline["mounts"]}
        for src, mnt, fs in sorted(mount_table(), key=lambda m: -len(m[1])):
            if (src, mnt, fs) not in base and mnt.startswith(cls.workdir + "/"):
                log("unmounting the leftover %s at %s" % (src, mnt))
                run(["umount", "-l", mnt], check=False)
        if not os.path.ismount(cls.tmpfs):
            if os.path.isfile(cls.tmpfs):
                os.unlink(cls.tmpfs)
            os.makedirs(cls.tmpfs, exist_ok=True)
            cls.mount_tmpfs()
        for p in cls.owned_files:
            if not os.path.isfile(p):
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with open(p, "wb") as f:
                    f.write(os.urandom(4096))
        cls.baseline = cls.outside()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        run(["umount", "-l", os.path.join(cls.workdir, "foreign", "tmpfs")], check=False)
        for vid in getattr(cls, "foreign_devices", {}):
            if cls.mode == "lvm":
                lv = lvs().get(vid)
                if lv:
                    run(["lvremove", "-f", "-y", "%s/%s" % (lv[0], vid)], env=LVM_ENV, check=False)
            else:
                for r in regions():
                    for ns in r.get("namespaces", []):
                        if ns.get("name") == vid:
                            run(["ndctl", "destroy-namespace", "-f", ns["dev"]], check=False)
        # what the driver leaked (reported by the tests): the base class removes it
        cls.tracked = {}
        DriverTestCase.cleanup_volumes.__func__(cls)

    @classmethod
    def outside(cls):
        """What the driver must never change: the foreign devices (present, contents),
        the files the group owns (inode, contents), the tmpfs and the mount table."""
        snap = {"devices": {}, "files": {}}
        present = cls.present_devices()
        for vid, dev in cls.foreign_devices.items():
            if vid not in present:
                snap["devices"][vid] = "missing"
                continue
            try:
                snap["devices"][vid] = sha_file(dev, PATTERN_BYTES)[:16]
            except OSError as e:
                snap["devices"][vid] = "unreadable: %s" % e
        for root, _, files in os.walk(cls.foreign_dir):
            for fn in files:
                p = os.path.join(root, fn)
                st = os.lstat(p)
                snap["files"][p] = (st.st_ino, st.st_mode, sha_file(p)[:16])
        snap["mounts"] = sorted(mount_table())
        return snap

    @classmethod
    def present_devices(cls):
        return volume_device_ids(cls.mode)

    def our_devices(self):
        return self.present_devices() - set(type(self).foreign_devices)

    def check_outside(self, what):
        """Compare with the group's baseline; the mount table as well, so call it
        after the test cleaned up its own volumes."""
        now = type(self).outside()
        base = type(self).baseline
        diffs = []
        for vid in sorted(base["devices"]):
            if now["devices"].get(vid) != base["devices"][vid]:
                diffs.append("foreign device %s (%s): %s, was %s" % (
                    vid[:12] + "...", type(self).foreign_devices[vid], now["devices"].get(vid),
                    base["devices"][vid]))
        for p in sorted(set(base["files"]) | set(now["files"])):
            if base["files"].get(p) != now["files"].get(p):
                diffs.append("file %s: %s, was %s" % (p, now["files"].get(p, "missing"), base["files"].get(p)))
        gone = sorted(set(base["mounts"]) - set(now["mounts"]))
        new = sorted(set(now["mounts"]) - set(base["mounts"]))
        if gone:
            diffs.append("mounts gone: %s" % gone)
        if new:
            diffs.append("mounts left: %s" % new)
        if diffs:
            type(self).restore_outside()
        self.fail_if(diffs, "%s changed what is not the driver's:\n  %s" % (what, "\n  ".join(diffs)))

    def check_consistent(self, what):
        """The driver's devices == its state files == ListVolumes, no marker left."""
        devs = self.our_devices()
        files = state_files(type(self).state_dir)
        records = {f[:-5] for f in files if f.endswith(".json")}
        others = [f for f in files if not f.endswith(".json")]
        listed = set(self.listed_ids())
        self.assertEqual((devs, listed, others), (records, records, []),
                         "%s: devices %s, state files %s, ListVolumes %s, other files in the state dir %s"
                         % (what, sorted(devs), sorted(records), sorted(listed), others))

    def cleanup_here(self):
        """Unpublish, unstage and delete what this test made, through the driver."""
        type(self).cleanup_volumes_keep_foreign()

    @classmethod
    def cleanup_volumes_keep_foreign(cls):
        c = cls.driver.client if cls.driver and cls.driver.alive() else None
        for vid, t in list(cls.tracked.items()):
            if vid in cls.foreign_devices:
                continue
            for target in t["targets"]:
                if c:
                    rpc_code(c.NodeUnpublishVolume, pb.NodeUnpublishVolumeRequest(volume_id=vid, target_path=target))
            for staging in t["staging"]:
                if c:
                    rpc_code(c.NodeUnstageVolume,
                             pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging))
            if c:
                rpc_code(c.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid))
        cls.tracked = {}

    @classmethod
    def cleanup_volumes(cls):
        """The base class removes every LV left in the driver's VGs: keep the foreign ones
        for tearDownClass, and only go through the driver here."""
        cls.cleanup_volumes_keep_foreign()

    def tearDown(self):
        try:
            self.cleanup_here()
        finally:
            super().tearDown()

    def finish(self, what):
        self.cleanup_here()
        self.check_consistent(what)
        self.check_outside(what)

    # ---- the tests ----------------------------------------------------------------------

    def test_01_names(self):
        """Parts 4 and 7: hostile names get OK with a working volume of their own, or
        INVALID_ARGUMENT; none reaches another volume or a foreign device."""
        bad = []
        names = [b"a", b"a\x00b", b"..", b"../../etc/passwd", b"/abs", b"x" * 128, b"x" * 129, b"-dash",
                 b"\xff\xfe", b"name\nline", b"\x1b[2J", "\u65e5\u672c".encode(), b"hostile-foreign\x00",
                 b"a\x00c"]
        for name in names:
            base = pb.CreateVolumeRequest(capacity_range=pb.CapacityRange(required_bytes=16 * MiB),
                                          volume_capabilities=[mount_cap()])
            code, details, resp = raw_call(self.c.channel, "CreateVolume", wire(base, wire_field(1, name)))
            if code is None:
                vid = resp.volume.volume_id
                self._track(vid)
                try:
                    expected = volume_id(name.decode("utf-8"))
                except UnicodeDecodeError:
                    expected = None
                if b"\x00" in name or vid != expected:
                    bad.append("%r: OK as volume %s (expected %s)" % (name, vid, expected))
            elif code != C.INVALID_ARGUMENT:
                bad.append("%r: %s %r" % (name, code_name(code), details))
            self.assertTrue(self.driver.alive(), "driver died on name %r" % name)
        self.fail_if(bad, "names:\n" + "\n".join(bad))
        self.finish("hostile names")

    def test_02_foreign_ids(self):
        """Part 1: a device named like a volume ID without a state record is not ours:
        DeleteVolume of its ID succeeds without touching it (CSI idempotency),
        ValidateVolumeCapabilities says NOT_FOUND, NodeStageVolume does not mount it."""
        vid = volume_id("hostile-foreign")
        staging = self.path("foreign-id", "staging")
        os.makedirs(staging, exist_ok=True)
        bad = []
        code, details, _ = rpc_code(self.c.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid))
        if code is not None:
            bad.append("DeleteVolume(foreign ID): %s %r (want OK, device untouched)" % (code_name(code), details))
        self.check_outside("DeleteVolume of a foreign device's ID")
        # the same once the driver has started with the foreign device there
        type(self).driver.restart()
        self.check_outside("a driver start with a foreign device named like a volume ID")
        code, details, _ = rpc_code(self.c.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid))
        if code is not None:
            bad.append("DeleteVolume(foreign ID) after a restart: %s %r (want OK, device untouched)"
                       % (code_name(code), details))
        self.check_outside("DeleteVolume of a foreign device's ID after a restart")
        code, details, _ = rpc_code(self.c.ValidateVolumeCapabilities, pb.ValidateVolumeCapabilitiesRequest(
            volume_id=vid, volume_capabilities=[mount_cap()]))
        if code != C.NOT_FOUND:
            bad.append("ValidateVolumeCapabilities(foreign ID): %s %r (want NOT_FOUND)" % (code_name(code), details))
        code, details, _ = rpc_code(self.c.NodeStageVolume, self.stage_req(vid, staging))
        if code is None:
            rpc_code(self.c.NodeUnstageVolume, pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging))
            bad.append("NodeStageVolume(foreign ID): OK, the foreign device was staged")
        # IDs that are paths, or too long
        for odd in ["../" + vid, "/dev/" + vid, vid + "/..", "v" * 129, ""]:
            code, details, _ = rpc_code(self.c.DeleteVolume, pb.DeleteVolumeRequest(volume_id=odd))
            if code not in (None, C.INVALID_ARGUMENT, C.NOT_FOUND):
                bad.append("DeleteVolume(%r): %s %r" % (odd[:70], code_name(code), details))
        self.fail_if(bad, "\n".join(bad))
        self.finish("foreign volume IDs")

    def test_03_create_over_foreign_device(self):
        """Part 1: CreateVolume of a name whose ID is a foreign device's fails with a clear
        error naming the device, and never adopts it or hands out its contents."""
        name = "hostile-adopt"
        vid = volume_id(name)
        code, details, resp = self.create(name, 16 * MiB, check=False)
        type(self).tracked.pop(vid, None)  # never DeleteVolume it: it is not the driver's
        if code is None:
            # Adopted: forget the record the driver made, so that later tests start clean.
            d = type(self).driver
            d.stop()
            for f in state_files(type(self).state_dir):
                if f.startswith(vid):
                    os.unlink(os.path.join(type(self).state_dir, f))
            d.start()
        try:
            self.check_outside("CreateVolume over a foreign device")
        finally:
            self.assertIsNotNone(code, "CreateVolume(%s) over a foreign device of the same ID: OK, adopted "
                                 "(want an error naming the device)" % name)
        self.assertIn(vid, details, "the error does not name the device: %s %r" % (code_name(code), details))
        self.check_consistent("CreateVolume over a foreign device")

    def test_04_paths_of_others(self):
        """Part 2: NodeUnpublishVolume and NodeUnstageVolume leave alone what is not the
        volume's own mount: a tmpfs, a regular file, a directory, for an unknown volume
        ID and for a real one."""
        vol = self.create("hostile-paths", 16 * MiB)
        vid = vol.volume_id
        cls = type(self)
        bad = []
        for who in [volume_id("hostile-unknown"), vid]:
            for path in [cls.tmpfs, cls.regular_file, cls.plain_dir]:
                for method, req in [
                        ("NodeUnpublishVolume", pb.NodeUnpublishVolumeRequest(volume_id=who, target_path=path)),
                        ("NodeUnstageVolume", pb.NodeUnstageVolumeRequest(volume_id=who, staging_target_path=path))]:
                    code, details, _ = rpc_code(getattr(self.c, method), req)
                    try:
                        self.check_outside("%s(%s, %s)" % (method, "real" if who == vid else "unknown", path))
                    except AssertionError as e:  # check_outside() has put things back
                        bad.append("%s -> %s %r" % (e, code_name(code), details))
        self.fail_if(bad, "\n".join(bad))
        self.finish("Node calls on foreign paths")

    def test_05_relative_and_dotdot_paths(self):
        """Part 2: relative paths and paths with '..' are INVALID_ARGUMENT in every Node
        call, and nothing is mounted or removed."""
        vol = self.create("hostile-rel", 16 * MiB)
        vid = vol.volume_id
        staging = self.stage(vid)
        target_ok = self.path("rel", "pod", "mount")
        os.makedirs(os.path.dirname(target_ok), exist_ok=True)
        rel = os.path.relpath(self.path("rel", "x"), "/")  # relative to / (the driver's cwd or not)
        dotdot = self.path("rel", "a", "..", "x")
        bad = []
        for p in [rel, "./x", "x", dotdot, self.path("..", os.path.basename(type(self).workdir), "rel", "y")]:
            calls = [
                ("NodeStageVolume", self.stage_req(vid, p)),
                ("NodeUnstageVolume", pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=p)),
                ("NodePublishVolume", self.publish_req(vid, staging, p)),
                ("NodePublishVolume", self.publish_req(vid, p, target_ok)),
                ("NodeUnpublishVolume", pb.NodeUnpublishVolumeRequest(volume_id=vid, target_path=p)),
            ]
            for method, req in calls:
                code, details, _ = rpc_code(getattr(self.c, method), req)
                if code != C.INVALID_ARGUMENT:
                    bad.append("%s with path %r: %s %r (want INVALID_ARGUMENT)" % (method, p, code_name(code), details))
                    if code is None and method == "NodePublishVolume":
                        rpc_code(self.c.NodeUnpublishVolume,
                                 pb.NodeUnpublishVolumeRequest(volume_id=vid, target_path=req.target_path))
        self.unstage(vid, staging)
        self.fail_if(bad, "\n".join(bad))
        self.finish("relative and .. paths")

    def test_06_symlinked_staging_path(self):
        """Part 2: one rule for symlinks at stage and unstage: a staging path that is a
        symlink is either refused by both, or staged and then unstaged through it."""
        vol = self.create("hostile-symlink", 16 * MiB)
        vid = vol.volume_id
        real = self.path("symlink", "real")
        link = self.path("symlink", "link")
        os.makedirs(real)
        os.symlink(real, link)
        code, details, _ = rpc_code(self.c.NodeStageVolume, self.stage_req(vid, link))
        if code is None:
            self._track(vid)["staging"].add(link)
            ucode, udetails, _ = rpc_code(self.c.NodeUnstageVolume,
                                          pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=link))
            left = [m for m in mount_table() if m[1] in (real, link)]
            if ucode is not None or left:
                run(["umount", "-l", real], check=False)
            self.assertIsNone(ucode, "staged through a symlink, but NodeUnstageVolume through it: %s %r"
                              % (code_name(ucode), udetails))
            self.assertFalse(left, "unstaged through a symlink, still mounted: %s" % left)
        else:
            self.assertEqual(code, C.INVALID_ARGUMENT, "NodeStageVolume at a symlink: %s %r" % (code_name(code), details))
            self.assertFalse([m for m in mount_table() if m[1] in (real, link)], "refused, but mounted")
        self.assertTrue(os.path.islink(link), "the symlink is gone")
        self.finish("symlinked staging path")

    def test_07_block_publish_over_regular_file(self):
        """Part 2 (the "Why" list): a raw block NodePublishVolume at a path that holds a
        regular file of someone else's neither binds over it nor deletes it."""
        req = pb.CreateVolumeRequest(name="hostile-block", volume_capabilities=[block_cap()],
                                     capacity_range=pb.CapacityRange(required_bytes=16 * MiB))
        vid = self.expect(None, self.c.CreateVolume, req, "CreateVolume(block)").volume.volume_id
        self._track(vid)
        staging = self.path("block", "staging")
        os.makedirs(staging, exist_ok=True)
        self._track(vid)["staging"].add(staging)
        self.expect(None, self.c.NodeStageVolume, self.stage_req(vid, staging, cap=block_cap()), "stage(block)")
        target = self.path("block", "victim")
        with open(target, "wb") as f:
            f.write(b"precious data")
        preq = pb.NodePublishVolumeRequest(volume_id=vid, staging_target_path=staging, target_path=target,
                                           volume_capability=block_cap())
        code, details, _ = rpc_code(self.c.NodePublishVolume, preq)
        mounted = [m for m in mount_table() if m[1] == target]
        ucode, udetails, _ = rpc_code(self.c.NodeUnpublishVolume,
                                      pb.NodeUnpublishVolumeRequest(volume_id=vid, target_path=target))
        if os.path.ismount(target):
            run(["umount", "-l", target], check=False)
        survived = os.path.exists(target) and open(target, "rb").read() == b"precious data"
        self.assertTrue(survived, "the regular file at the target was removed or changed (publish %s %r, "
                        "unpublish %s %r)" % (code_name(code), details, code_name(ucode), udetails))
        self.assertFalse(mounted and code is None and not survived, "bound over a regular file")
        self.assertIsNotNone(code, "NodePublishVolume(block) over an existing regular file: OK, bound over it "
                             "(mounts there: %s)" % mounted)
        self.finish("block publish over a regular file")

    def test_08_sizes(self):
        """Parts 4 and 7: sizes: negative, zero, limit below required, absurd; a proper
        status each time, and no device or state left by a failure."""
        bad = []
        cases = [(-1, 0), (16 * MiB, -5), (64 * MiB, 16 * MiB), (1 << 50, 0), ((1 << 63) - 1, 0),
                 ((1 << 63) - 4 * MiB + 1, 0), (1, 1), (0, 0)]
        for i, (req, lim) in enumerate(cases):
            name = "hostile-size-%d" % i
            code, details, resp = self.create(name, req, limit=lim, check=False)
            if code is None:
                cap = resp.volume.capacity_bytes
                if cap < max(req, 1) or (lim > 0 and cap > lim):
                    bad.append("required %d limit %d: OK with %d bytes" % (req, lim, cap))
            elif code not in (C.INVALID_ARGUMENT, C.OUT_OF_RANGE, C.RESOURCE_EXHAUSTED):
                bad.append("required %d limit %d: %s %r" % (req, lim, code_name(code), details))
            elif volume_id(name) in self.present_devices() or os.path.exists(self.state_file(volume_id(name))):
                bad.append("required %d limit %d: %s, but left a device or state" % (req, lim, code_name(code)))
        self.fail_if(bad, "\n".join(bad))
        self.finish("sizes")

    def test_09_parameters(self):
        """Parts 4 and 7: parameters and volume contexts that are wrong, odd or hostile:
        INVALID_ARGUMENT (or OK when ignorable), no device or state left by a failure."""
        bad = []
        cases = [{"usage": "Nonsense"}, {"eraseafter": "maybe"}, {"kataContainers": "yes please"},
                 {"persistencyModel": "cache"}, {"fsType": "btrfs"}, {"size": "1Gi"},
                 {"csi.storage.k8s.io/ephemeral": "true"}, {"x" * 300: "y"}, {"k": "v" * 3000},
                 {"unknown.example.com/key": "v"}, {"usage": "FileIO", "kataContainers": "true"},
                 {"deviceMode": "../../etc"}, {"name": "other-name"}]
        for i, params in enumerate(cases):
            name = "hostile-param-%d" % i
            code, details, resp = self.create(name, 16 * MiB, params=params, check=False)
            if code not in (None, C.INVALID_ARGUMENT):
                bad.append("%s: %s %r" % (str(params)[:80], code_name(code), details))
            if code is not None and (volume_id(name) in self.present_devices()
                                     or os.path.exists(self.state_file(volume_id(name)))):
                bad.append("%s: %s, but left a device or state" % (str(params)[:80], code_name(code)))
        # an inline ephemeral volume with a bogus size
        target = self.path("eph", "mount")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        for size in ["-1", "1e30", "lots", "1Ei"]:
            req = pb.NodePublishVolumeRequest(volume_id="hostile-eph-" + size.replace(".", ""), target_path=target,
                                              volume_capability=mount_cap(),
                                              volume_context={"csi.storage.k8s.io/ephemeral": "true", "size": size})
            code, details, _ = rpc_code(self.c.NodePublishVolume, req)
            if code is None:
                rpc_code(self.c.NodeUnpublishVolume,
                         pb.NodeUnpublishVolumeRequest(volume_id=req.volume_id, target_path=target))
                bad.append("ephemeral size %r: OK" % size)
            elif code not in (C.INVALID_ARGUMENT, C.OUT_OF_RANGE, C.RESOURCE_EXHAUSTED):
                bad.append("ephemeral size %r: %s %r" % (size, code_name(code), details))
        self.fail_if(bad, "\n".join(bad))
        self.finish("parameters")

    def test_10_racing_calls_on_one_volume(self):
        """Parts 3 and 7: concurrent and racing calls on one volume: creates of one name
        give one volume; stage/publish/unpublish/unstage/delete racing each other end
        in a state where devices, state files and ListVolumes agree."""
        name = "hostile-race"
        n = 8
        req = pb.CreateVolumeRequest(name=name, volume_capabilities=[mount_cap()],
                                     capacity_range=pb.CapacityRange(required_bytes=16 * MiB))
        self._track(volume_id(name))
        futs = [self.c.future("CreateVolume", req) for _ in range(n)]
        codes, ids = [], set()
        for f in futs:
            try:
                ids.add(f.result().volume.volume_id)
                codes.append(None)
            except Exception as e:  # grpc.RpcError
                codes.append(e.code())
        self.assertEqual([c for c in codes if c is not None], [], "concurrent CreateVolume of one name: %s" % codes)
        self.assertEqual(ids, {volume_id(name)})
        self.assertEqual(self.our_devices(), {volume_id(name)}, "concurrent creates of one name made other devices")
        vid = volume_id(name)
        staging = self.path("race", "staging")
        targets = [self.path("race", "pod%d" % i, "mount") for i in range(3)]
        os.makedirs(staging, exist_ok=True)
        for t in targets:
            os.makedirs(os.path.dirname(t), exist_ok=True)
        t = self._track(vid)
        t["staging"].add(staging)
        t["targets"].update(targets)
        rng = random.Random(8)
        ops = []
        for _ in range(4):
            ops += [("NodeStageVolume", self.stage_req(vid, staging))]
            ops += [("NodePublishVolume", self.publish_req(vid, staging, tt)) for tt in targets]
            ops += [("NodeUnpublishVolume", pb.NodeUnpublishVolumeRequest(volume_id=vid, target_path=tt))
                    for tt in targets]
            ops += [("NodeUnstageVolume", pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging)),
                    ("DeleteVolume", pb.DeleteVolumeRequest(volume_id=vid)), ("CreateVolume", req)]
        rng.shuffle(ops)
        futs = [(op, self.c.future(op, r)) for op, r in ops]
        odd = []
        for op, f in futs:
            try:
                f.result()
            except Exception as e:
                if e.code() not in (C.FAILED_PRECONDITION, C.NOT_FOUND, C.ABORTED, C.ALREADY_EXISTS):
                    odd.append("%s: %s %r" % (op, code_name(e.code()), e.details()))
        self.assertTrue(self.driver.alive())
        self.check_consistent("after racing calls")
        # whatever happened, the driver must be able to take it apart again
        for tt in targets:
            rpc_code(self.c.NodeUnpublishVolume, pb.NodeUnpublishVolumeRequest(volume_id=vid, target_path=tt))
        rpc_code(self.c.NodeUnstageVolume, pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging))
        code, details, _ = rpc_code(self.c.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid))
        self.assertIsNone(code, "DeleteVolume after the race: %s %r" % (code_name(code), details))
        self.fail_if(odd, "racing calls answered with unexpected codes:\n" + "\n".join(odd))
        self.finish("racing calls on one volume")

    def test_11_until_full(self):
        """Part 3: concurrent creates until PMEM runs out leave no device without a volume:
        devices == ListVolumes == state files, and deleting all restores the capacity."""
        cap0 = self.capacity().available_capacity
        size = max(256 * MiB, (cap0 // 10) // (4 * MiB) * (4 * MiB))
        n = int(cap0 // size) + 4
        reqs = [pb.CreateVolumeRequest(name="hostile-full-%d" % i, volume_capabilities=[mount_cap()],
                                       capacity_range=pb.CapacityRange(required_bytes=size),
                                       parameters={"eraseafter": "false"}) for i in range(n)]
        for r in reqs:
            self._track(volume_id(r.name))
        futs = [self.c.future("CreateVolume", r) for r in reqs]
        ok, full, other = 0, 0, []
        for f in futs:
            try:
                f.result()
                ok += 1
            except Exception as e:
                if e.code() == C.RESOURCE_EXHAUSTED:
                    full += 1
                else:
                    other.append("%s %r" % (code_name(e.code()), e.details()))
        log("%s: %d creates of %d MiB: %d OK, %d RESOURCE_EXHAUSTED, %d other"
            % (self.group, n, size // MiB, ok, full, len(other)))
        self.check_consistent("after %d concurrent creates until full" % n)
        self.assertGreater(full, 0, "capacity never ran out")
        self.fail_if(other, "\n".join(other))
        self.cleanup_here()
        cap1 = self.capacity().available_capacity
        self.assertEqual(cap1, cap0, "capacity after deleting all: %d, before %d" % (cap1, cap0))
        self.finish("creates until full")

    def test_12_kill_during_parallel_creates(self):
        """Parts 3 and 7: kill -9 of the driver (and its children) during parallel creates,
        then restart: devices, state files and ListVolumes agree, the retried creates
        succeed, and deleting them leaves nothing; foreign devices survive the restart."""
        rng = random.Random(12)
        d = type(self).driver
        for rnd in range(3):
            reqs = [pb.CreateVolumeRequest(name="hostile-kill-%d-%d" % (rnd, i), volume_capabilities=[mount_cap()],
                                           capacity_range=pb.CapacityRange(required_bytes=32 * MiB))
                    for i in range(6)]
            for r in reqs:
                self._track(volume_id(r.name))
            futs = [self.c.future("CreateVolume", r) for r in reqs]
            time.sleep(rng.uniform(0.2, 1.5))
            done = sum(f.done() for f in futs)
            os.killpg(d.proc.pid, signal.SIGKILL)
            d.stop()
            d.start()
            log("%s: kill round %d: %d of %d creates had answered" % (self.group, rnd, done, len(futs)))
            self.check_consistent("after kill -9 during creates, round %d" % rnd)
            for r in reqs:
                self.expect(None, self.c.CreateVolume, r, "CreateVolume(%s) retried after the kill" % r.name)
            self.check_consistent("after the retried creates, round %d" % rnd)
            self.cleanup_here()
            self.assertEqual(self.our_devices(), set(), "devices left after deleting all")
        self.finish("kill -9 during parallel creates")

    def test_99_outside_unchanged(self):
        """Part 7: at the end, everything the group made by hand is as it was, and the
        driver has no device, state file or listed volume left."""
        self.finish("the whole group")
        self.assertEqual(self.our_devices(), set())


class HostileLVM(HostileBase):
    group = "hostile-lvm"


class HostileDirect(HostileBase):
    group = "hostile-direct"
    mode = "direct"
    driver_kwargs = {"extra_args": ["-deviceManager=direct"]}
