"""Issue 8, part 4: input at the gRPC boundary. Every string field (name, volume_id,
paths, parameters, volume_context, secrets' keys, mount flags) with a NUL, invalid
UTF-8, a control character or an absurd length gets INVALID_ARGUMENT naming the
field, before any side effect: no device, no state file, no mount changes, and
an existing volume whose ID or path is a prefix of the bad value is untouched.

The requests are sent as raw bytes (csitest.raw_call): the generated Python stubs
refuse invalid UTF-8, and a C client (kubelet is Go, but anyone on the socket is
not) can send anything. Runs in both device modes."""

import os

from csitest import (C, MiB, DriverTestCase, code_name, mount_cap, mount_table, pb, raw_call,
                     state_files, volume_device_ids, volume_id, wire, wire_entry, wire_field)

# Bad bytes for a string field: (label, suffix appended to a valid value).
BAD_SUFFIXES = [
    ("NUL", b"\x00junk"),
    ("NUL at the end", b"\x00"),
    ("invalid UTF-8 0xff", b"\xff"),
    ("overlong '/'", b"\xc0\xaf"),
    ("surrogate U+D800", b"\xed\xa0\x80"),
    ("cut UTF-8 sequence", b"\xe6\x97"),
    ("above U+10FFFF", b"\xf4\x90\x80\x80"),
    ("newline", b"\nx"),
    ("tab", b"\tx"),
    ("escape sequence", b"\x1b[31m"),
    ("DEL", b"\x7f"),
    ("C1 control U+0085", b"\xc2\x85"),
]


def cap_bytes(flags=(), fs_type=b"ext4"):
    """A VolumeCapability (mount, SINGLE_NODE_WRITER) with raw mount flags."""
    mount = wire_field(1, fs_type) + b"".join(wire_field(2, f) for f in flags)
    mode = pb.VolumeCapability.AccessMode(mode=pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER)
    return wire_field(2, mount) + wire_field(3, mode.SerializeToString())


class InputBase(DriverTestCase):
    mode = "lvm"
    clean_devices = True

    # ---- helpers ----------------------------------------------------------------

    def fail_if(self, problems, msg):
        """Fail with msg (one problem per line) when the list of problems is not empty."""
        if problems:
            self.fail(msg)

    def node_state(self):
        """State files and mounts, compared around every call (cheap); the devices are
        compared around each test (listing them takes a second or more under TCG)."""
        return state_files(type(self).state_dir), sorted(mount_table())

    def setUp(self):
        super().setUp()
        self.devices_before = volume_device_ids(self.mode)

    def tearDown(self):
        try:
            after = volume_device_ids(self.mode) - set(type(self).tracked)
            made = sorted(after - self.devices_before)
            self.assertFalse(made, "devices made during the test that no successful call asked for: %s" % made)
        finally:
            super().tearDown()

    def check_bad(self, problems, method, data, field, what):
        """Send data to method: INVALID_ARGUMENT whose message starts with field, and
        nothing changed on the node. Appends to problems instead of failing at once,
        so that one run shows every case."""
        before = self.node_state()
        code, details, _ = raw_call(self.c.channel, method, data)
        after = self.node_state()
        if code != C.INVALID_ARGUMENT:
            problems.append("%s with %s: expected INVALID_ARGUMENT, got %s %r"
                            % (method, what, code_name(code), details))
        elif not details.startswith(field):
            problems.append("%s with %s: INVALID_ARGUMENT %r does not name %r first"
                            % (method, what, details, field))
        if after != before:
            problems.append("%s with %s changed the node: state %s -> %s, mounts %s"
                            % (method, what, before[0], after[0], sorted(set(after[1]) ^ set(before[1]))))
        self.assertTrue(self.driver.alive(), "driver died on %s with %s" % (method, what))

    def create_raw(self, name_bytes, params=(), extra=b""):
        base = pb.CreateVolumeRequest(capacity_range=pb.CapacityRange(required_bytes=8 * MiB),
                                      volume_capabilities=[mount_cap()])
        return wire(base, wire_field(1, name_bytes), *[wire_entry(4, k, v) for k, v in params]) + extra

    def volume(self, name):
        """A real volume, created once per group."""
        vid = volume_id(name)
        if vid not in type(self).tracked:
            self.create(name, 8 * MiB)
        return vid

    # ---- the tests ---------------------------------------------------------------

    def test_01_nul_name_is_not_another_volume(self):
        """Part 4: "a" and "a\\0b" were one volume (protobuf-c cuts at the NUL)."""
        vid = volume_id("a")
        self.create("a", 8 * MiB)
        before = self.node_state()
        code, details, resp = raw_call(self.c.channel, "CreateVolume", self.create_raw(b"a\x00b"))
        if code is None and resp.volume.volume_id:
            self._track(resp.volume.volume_id)
        self.assertEqual(code, C.INVALID_ARGUMENT, "CreateVolume(\"a\\0b\") after CreateVolume(\"a\"): "
                         "%s %r (response %s)" % (code_name(code), details, resp))
        self.assertTrue(details.startswith("name"), "the error does not name the field: %r" % details)
        self.assertEqual(self.node_state(), before, "CreateVolume(\"a\\0b\") changed the node")
        self.assertEqual(self.listed_ids(), [vid])
        # and the other way round: "c\0d" first, then "c" is a volume of its own
        code, details, _ = raw_call(self.c.channel, "CreateVolume", self.create_raw(b"c\x00d"))
        self.assertEqual(code, C.INVALID_ARGUMENT, "CreateVolume(\"c\\0d\"): %s %r" % (code_name(code), details))
        self.assertNotIn(volume_id("c"), volume_device_ids(self.mode), "\"c\\0d\" made the device of \"c\"")
        self.delete(vid)

    def test_02_bad_names(self):
        """Part 4: name with NUL, bad UTF-8, controls, more than 128 bytes."""
        problems = []
        for label, suffix in BAD_SUFFIXES + [("129 bytes", b"n" * 125)]:
            self.check_bad(problems, "CreateVolume", self.create_raw(b"pvc-" + suffix), "name",
                           "name pvc-+%s" % label)
        self.fail_if(problems, "\n".join(problems))
        ok = b"pvc-" + b"n" * 124  # exactly 128 bytes is allowed
        code, details, resp = raw_call(self.c.channel, "CreateVolume", self.create_raw(ok))
        self.assertIsNone(code, "a 128-byte name: %s %r" % (code_name(code), details))
        self.delete(resp.volume.volume_id)

    def test_03_bad_volume_ids(self):
        """Part 4: volume_id with a bad suffix, in every call that takes one; the real
        volume whose ID is the prefix (what a NUL-cut ID would name) stays as it is."""
        vid = self.volume("input-vid")
        staging = self.path("vid", "staging")
        target = self.path("vid", "target")
        os.makedirs(staging, exist_ok=True)
        cap = mount_cap()
        reqs = {
            "DeleteVolume": pb.DeleteVolumeRequest(),
            "ValidateVolumeCapabilities": pb.ValidateVolumeCapabilitiesRequest(volume_capabilities=[cap]),
            "NodeStageVolume": pb.NodeStageVolumeRequest(staging_target_path=staging, volume_capability=cap),
            "NodeUnstageVolume": pb.NodeUnstageVolumeRequest(staging_target_path=staging),
            "NodePublishVolume": pb.NodePublishVolumeRequest(staging_target_path=staging, target_path=target,
                                                             volume_capability=cap),
            "NodeUnpublishVolume": pb.NodeUnpublishVolumeRequest(target_path=target),
        }
        problems = []
        for method, req in reqs.items():
            for label, suffix in BAD_SUFFIXES + [("129 bytes", b"v" * (129 - len(vid)))]:
                self.check_bad(problems, method, wire(req, wire_field(1, vid.encode() + suffix)),
                               "volume_id", "volume_id <real ID>+%s" % label)
        self.fail_if(problems, "\n".join(problems))
        self.assertIn(vid, volume_device_ids(self.mode), "the volume's device is gone")
        self.assertIn(vid + ".json", state_files(type(self).state_dir), "the volume's state is gone")
        self.assertIn(vid, self.listed_ids())

    def test_04_bad_paths(self):
        """Part 4: staging_target_path and target_path with a bad suffix; the mounts at
        the real paths (the prefix) stay; a path longer than PATH_MAX is refused."""
        vid = self.volume("input-paths")
        staging = self.stage(vid)
        target = self.publish(vid, staging)
        cap = mount_cap()
        problems = []
        for label, suffix in BAD_SUFFIXES:
            self.check_bad(problems, "NodeUnpublishVolume",
                           wire(pb.NodeUnpublishVolumeRequest(volume_id=vid), wire_field(2, target.encode() + suffix)),
                           "target_path", "target_path <published>+%s" % label)
            self.check_bad(problems, "NodeUnstageVolume",
                           wire(pb.NodeUnstageVolumeRequest(volume_id=vid), wire_field(2, staging.encode() + suffix)),
                           "staging_target_path", "staging_target_path <staged>+%s" % label)
            self.check_bad(problems, "NodePublishVolume",
                           wire(pb.NodePublishVolumeRequest(volume_id=vid, staging_target_path=staging,
                                                            volume_capability=cap),
                                wire_field(4, self.path("other-target").encode() + suffix)),
                           "target_path", "target_path +%s" % label)
            self.check_bad(problems, "NodeStageVolume",
                           wire(pb.NodeStageVolumeRequest(volume_id=vid, volume_capability=cap),
                                wire_field(3, self.path("other-staging").encode() + suffix)),
                           "staging_target_path", "staging_target_path +%s" % label)
        long_path = ("/" + "p" * 4095).encode()
        self.check_bad(problems, "NodeUnpublishVolume",
                       wire(pb.NodeUnpublishVolumeRequest(volume_id=vid), wire_field(2, long_path)),
                       "target_path", "a 4096-byte target_path")
        self.fail_if(problems, "\n".join(problems))
        self.unpublish(vid, target)
        self.unstage(vid, staging)

    def test_05_bad_parameters(self):
        """Part 4: parameters' keys and values (and mutable_parameters) with bad bytes,
        too long, too many."""
        problems = []
        name = b"input-params"
        for label, suffix in BAD_SUFFIXES:
            self.check_bad(problems, "CreateVolume", self.create_raw(name, [("eraseafter", b"false" + suffix)]),
                           'parameters["eraseafter"] value', "parameter value false+%s" % label)
            self.check_bad(problems, "CreateVolume", self.create_raw(name, [(b"usage" + suffix, "AppDirect")]),
                           "parameters key", "parameter key usage+%s" % label)
            self.check_bad(problems, "CreateVolume",
                           self.create_raw(name, extra=wire_entry(8, b"k" + suffix, "v")),
                           "mutable_parameters key", "mutable parameter key k+%s" % label)
        self.check_bad(problems, "CreateVolume", self.create_raw(name, [("k%d" % i, "v") for i in range(65)]),
                       "parameters", "65 parameters")
        self.check_bad(problems, "CreateVolume", self.create_raw(name, [("k", "v" * 4097)]),
                       'parameters["k"] value', "a 4097-byte parameter value")
        self.check_bad(problems, "CreateVolume", self.create_raw(name, [("k" * 513, "v")]),
                       "parameters key", "a 513-byte parameter key")
        self.check_bad(problems, "CreateVolume", self.create_raw(name, [("usage", "AppDirect"), ("usage", "FileIO")]),
                       "parameters", "a parameter key given twice")
        self.fail_if(problems, "\n".join(problems))

    def test_06_bad_volume_context(self):
        """Part 4: volume_context keys and values in NodeStageVolume and NodePublishVolume."""
        vid = self.volume("input-context")
        staging = self.path("ctx", "staging")
        os.makedirs(staging, exist_ok=True)
        cap = mount_cap()
        stage = pb.NodeStageVolumeRequest(volume_id=vid, staging_target_path=staging, volume_capability=cap)
        publish = pb.NodePublishVolumeRequest(volume_id=vid, staging_target_path=staging,
                                              target_path=self.path("ctx", "target"), volume_capability=cap)
        problems = []
        for label, suffix in BAD_SUFFIXES:
            self.check_bad(problems, "NodeStageVolume", wire(stage, wire_entry(6, b"k" + suffix, "v")),
                           "volume_context key", "volume_context key k+%s" % label)
            self.check_bad(problems, "NodeStageVolume", wire(stage, wire_entry(6, "eraseafter", b"true" + suffix)),
                           'volume_context["eraseafter"] value', "volume_context value true+%s" % label)
            self.check_bad(problems, "NodePublishVolume",
                           wire(publish, wire_entry(8, b"csi.storage.k8s.io/pod.name" + suffix, "pod")),
                           "volume_context key", "volume_context key pod.name+%s" % label)
            self.check_bad(problems, "NodePublishVolume",
                           wire(publish, wire_entry(8, "csi.storage.k8s.io/ephemeral", b"false" + suffix)),
                           'volume_context["csi.storage.k8s.io/ephemeral"] value',
                           "volume_context value false+%s" % label)
            self.check_bad(problems, "NodePublishVolume", wire(publish, wire_entry(2, b"k" + suffix, "v")),
                           "publish_context key", "publish_context key k+%s" % label)
        self.fail_if(problems, "\n".join(problems))

    def test_07_secrets(self):
        """Part 4: secrets' keys are checked like any key; their values are opaque bytes:
        accepted whatever they hold, and never written to the log."""
        vid = self.volume("input-secrets")
        staging = self.path("sec", "staging")
        os.makedirs(staging, exist_ok=True)
        problems = []
        for label, suffix in BAD_SUFFIXES:
            key = b"token" + suffix
            self.check_bad(problems, "CreateVolume", self.create_raw(b"input-sec2", extra=wire_entry(5, key, "x")),
                           "secrets key", "CreateVolume secrets key token+%s" % label)
            self.check_bad(problems, "DeleteVolume", wire(pb.DeleteVolumeRequest(volume_id=vid), wire_entry(2, key, "x")),
                           "secrets key", "DeleteVolume secrets key token+%s" % label)
            self.check_bad(problems, "NodeStageVolume",
                           wire(pb.NodeStageVolumeRequest(volume_id=vid, staging_target_path=staging,
                                                          volume_capability=mount_cap()), wire_entry(5, key, "x")),
                           "secrets key", "NodeStageVolume secrets key token+%s" % label)
        self.fail_if(problems, "\n".join(problems))
        secret = b"S3CR3T-\x00-\xff-\n-VALUE"
        code, details, resp = raw_call(self.c.channel, "CreateVolume",
                                       self.create_raw(b"input-sec3", extra=wire_entry(5, "password", secret)))
        self._track(volume_id("input-sec3"))
        self.assertIsNone(code, "CreateVolume with an opaque secret value: %s %r" % (code_name(code), details))
        self.delete(resp.volume.volume_id)
        with open(self.driver.log_path, "rb") as f:
            self.assertNotIn(b"S3CR3T", f.read(), "a secret value is in the driver log")

    def test_08_mount_flags_and_fs_type(self):
        """Part 4: volume_capability.mount.mount_flags[i] and fs_type."""
        vid = self.volume("input-flags")
        staging = self.path("flags", "staging")
        os.makedirs(staging, exist_ok=True)
        problems = []
        for label, suffix in BAD_SUFFIXES:
            self.check_bad(problems, "NodeStageVolume",
                           wire(pb.NodeStageVolumeRequest(volume_id=vid, staging_target_path=staging),
                                wire_field(4, cap_bytes([b"noatime", b"nodev" + suffix]))),
                           "volume_capability.mount.mount_flags[1]", "mount flag nodev+%s" % label)
            self.check_bad(problems, "CreateVolume",
                           wire(pb.CreateVolumeRequest(name="input-fstype",
                                                       capacity_range=pb.CapacityRange(required_bytes=8 * MiB)),
                                wire_field(3, cap_bytes(fs_type=b"ext4" + suffix))),
                           "volume_capabilities[0].mount.fs_type", "fs_type ext4+%s" % label)
        self.check_bad(problems, "NodeStageVolume",
                       wire(pb.NodeStageVolumeRequest(volume_id=vid, staging_target_path=staging),
                            wire_field(4, cap_bytes([b"ro"] * 65))),
                       "volume_capability.mount.mount_flags", "65 mount flags")
        self.fail_if(problems, "\n".join(problems))

    def test_09_log_holds_no_raw_control_bytes(self):
        """Part 4: what the tests above sent is in the log escaped, never as raw bytes
        (a terminal escape or a fake log line in a name stays harmless)."""
        with open(self.driver.log_path, "rb") as f:
            data = f.read()
        bad = sorted({b for b in data if (b < 0x20 and b not in (0x0a,)) or b == 0x7f})
        self.fail_if(bad, "control bytes in the driver log: %s" % ["0x%02x" % b for b in bad])
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            self.fail("the driver log is not valid UTF-8: %s" % e)


class InputLVM(InputBase):
    group = "input-lvm"


class InputDirect(InputBase):
    group = "input-direct"
    mode = "direct"
    driver_kwargs = {"extra_args": ["-deviceManager=direct"]}
