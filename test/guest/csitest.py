"""csitest - fixtures and helpers for the in-guest PMEM-CSI test suite.

The suite talks to the real driver binary over its unix socket with Python's
gRPC client and checks the results on the real devices (ndctl, LVM, mounts).
It runs inside the QEMU test VM (see test/vm/run-guest-suite.sh) as root with
emulated NVDIMMs: it destroys every namespace and volume group it finds.

Needs the generated stubs (csi_pb2, csi_pb2_grpc) on sys.path; run-suite.py
generates them before importing this module.
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import traceback
import unittest

import grpc

import csi_pb2 as pb
import csi_pb2_grpc as pbg

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

DRIVER = os.environ.get("PMEM_CSI_DRIVER", os.path.join(REPO, "build", "pmem-csi-driver"))
RESULTS = os.environ.get("RESULTS_DIR", "/tmp/pmem-csi-test")
WORK = os.environ.get("PMEM_CSI_TEST_WORK", "/tmp/pmem-csi-work")
ENDPOINT_PATH = "/run/pmem-csi/csi.sock"
DRIVER_NAME = "pmem-csi.intel.com"
NODE_ID = "pmem-csi-test-node"
TOPOLOGY_KEY = DRIVER_NAME + "/node"

MiB = 1 << 20
GiB = 1 << 30
LVM_ALIGN = 4 * MiB
XFS_MIN = 300 * MiB

CALL_TIMEOUT = float(os.environ.get("CALL_TIMEOUT", "300"))  # s, per gRPC call
READY_TIMEOUT = float(os.environ.get("READY_TIMEOUT", "120"))  # s, start to Probe ready
STOP_TIMEOUT = 30

C = grpc.StatusCode
SNW = pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER

LVM_ENV = dict(os.environ, LVM_SUPPRESS_FD_WARNINGS="1")


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------

def log(msg):
    """Progress output (not a test result line)."""
    print("# " + msg, flush=True)


_LVM_RESERVED = ("_cdata", "_cmeta", "_corig", "_iorig", "_mlog", "_rlog", "_rmeta", "_tdata",
                 "_tmeta", "_vdata")


def volume_id(name):
    """The volume ID the driver derives from a CSI name: as intel/pmem-csi 1.1 (the
    first 6 bytes, '-', hex SHA-224 of the name) when those bytes make a valid LVM
    name; otherwise bytes LVM refuses (and a leading '-', and the '_' of a reserved
    LVM suffix) become '+'."""
    raw = name.encode() if isinstance(name, str) else bytes(name)
    prefix = ""
    for i, b in enumerate(raw[:6]):
        ch = chr(b)
        ok = b < 128 and (ch.isalnum() or ch in "+_.-") and not (i == 0 and ch == "-")
        prefix += ch if ok else "+"
    for r in _LVM_RESERVED:
        while r in prefix:
            prefix = prefix.replace(r, "+" + r[1:], 1)
    return prefix + "-" + hashlib.sha224(raw).hexdigest()


def run(argv, check=True, env=None, timeout=300):
    """Run a tool, return its stdout; raise with its stderr when it fails."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, env=env, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError("%s failed (rc=%d): %s" % (" ".join(argv), p.returncode,
                                                      p.stderr.strip()[-500:]))
    return p.stdout


def mount_cap(fs_type="ext4", mode=SNW, flags=()):
    return pb.VolumeCapability(
        mount=pb.VolumeCapability.MountVolume(fs_type=fs_type, mount_flags=list(flags)),
        access_mode=pb.VolumeCapability.AccessMode(mode=mode))


def code_name(code):
    return code.name if code is not None else "OK"


def rpc_code(fn, req, timeout=None):
    """Call fn(req); return (code, details, response). code is None on success."""
    try:
        return None, "", fn(req, timeout=timeout or CALL_TIMEOUT)
    except grpc.RpcError as e:
        return e.code(), e.details() or "", None


def short(msg, n=300):
    """A response or message in one line, cut to n characters."""
    s = " ".join(str(msg).split())
    return s if len(s) <= n else s[:n] + "..."


# --------------------------------------------------------------------------
# the host side of the volumes: mounts, LVM, ndctl
# --------------------------------------------------------------------------

def _unescape(s):
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mounts():
    """/proc/mounts as a list of (source, mountpoint, fstype, [options])."""
    out = []
    with open("/proc/mounts") as f:
        for line in f:
            src, mnt, fs, opts = line.split()[:4]
            out.append((_unescape(src), _unescape(mnt), fs, opts.split(",")))
    return out


def mounts_at(path):
    path = os.path.realpath(path)
    return [m for m in mounts() if m[1] == path]


def is_mounted(path):
    return bool(mounts_at(path))


def same_device(a, b):
    """Whether two paths are the same block device."""
    try:
        return os.stat(a).st_rdev == os.stat(b).st_rdev
    except OSError:
        return False


def is_dax_file(path):
    """STATX_ATTR_DAX (0x200000) set on a file: its I/O really bypasses the page cache."""
    out = run(["xfs_io", "-c", "statx -r", path])
    for line in out.splitlines():
        if line.startswith("stat.attributes ="):
            return bool(int(line.split("=")[1].strip(), 16) & 0x200000)
    return False


def lvs():
    """All logical volumes: {lv_name: (vg_name, size_bytes)}."""
    out = run(["lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
               "-o", "lv_name,vg_name,lv_size"], env=LVM_ENV)
    res = {}
    for rep in json.loads(out)["report"]:
        for lv in rep.get("lv", []):
            res[lv["lv_name"]] = (lv["vg_name"], int(lv["lv_size"]))
    return res


def vgs():
    """All volume groups: {vg_name: (size, free)}."""
    out = run(["vgs", "--reportformat", "json", "--units", "b", "--nosuffix",
               "-o", "vg_name,vg_size,vg_free"], env=LVM_ENV)
    res = {}
    for rep in json.loads(out)["report"]:
        for vg in rep.get("vg", []):
            res[vg["vg_name"]] = (int(vg["vg_size"]), int(vg["vg_free"]))
    return res


def lv_path(vid):
    """/dev/<vg>/<lv> of a volume, or None when there is no such LV."""
    lv = lvs().get(vid)
    return "/dev/%s/%s" % (lv[0], vid) if lv else None


def ndctl_json(*args):
    out = run(["ndctl", "list"] + list(args))
    if not out.strip():
        return []
    data = json.loads(out)
    return data if isinstance(data, list) else [data]


def regions():
    """Regions as ndctl lists them, with their namespaces (-RN)."""
    data = ndctl_json("-R", "-N")
    # with several buses ndctl nests: [{"provider":..,"regions":[..]}]
    res = []
    for item in data:
        res.extend(item.get("regions", [item]))
    return res


def expected_vgs():
    """VG names the driver must create: <bus><region>fsdax, e.g. ndbus0region0fsdax."""
    names = []
    for bus in ndctl_json("-B", "-R"):
        for r in bus.get("regions", []):
            if r.get("type", "pmem") == "pmem":
                names.append("%s%sfsdax" % (bus["dev"], r["dev"]))
    return sorted(names)


def init_labels():
    """Fresh QEMU DIMMs have blank label areas: one label-less raw namespace, no space."""
    run(["ndctl", "disable-region", "all"])
    run(["ndctl", "init-labels", "-f", "all"])
    run(["ndctl", "enable-region", "all"])


def umount_all_under(prefix):
    """Unmount everything below prefix, deepest first."""
    for _, mnt, _, _ in sorted(mounts(), key=lambda m: -len(m[1])):
        if mnt == prefix or mnt.startswith(prefix.rstrip("/") + "/"):
            run(["umount", "-l", mnt], check=False)


def wipe_devices():
    """Back to blank regions: no volume groups, PVs or namespaces (driver stopped).

    Whatever a crashed test or driver left behind (mounts, loop devices, device-mapper
    tables, /dev/<vg> directories) is removed too and logged, so that the next group
    starts from the same state as on a freshly booted node."""
    umount_all_under(WORK)
    for src, mnt, _, _ in sorted(mounts(), key=lambda m: -len(m[1])):
        if "fsdax" in src or src.startswith("/dev/pmem"):
            log("wipe: unmounting leftover %s from %s" % (mnt, src))
            run(["umount", "-l", mnt], check=False)
    if run(["losetup", "-a"], check=False).strip():
        log("wipe: detaching leftover loop devices")
        run(["losetup", "-D"], check=False)
    for vg in vgs():
        if vg.endswith("fsdax"):
            run(["vgremove", "-ff", "-y", vg], env=LVM_ENV, check=False)
    for line in run(["dmsetup", "ls"], check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        if "fsdax-" in name:
            log("wipe: removing leftover device-mapper table %s" % name)
            run(["dmsetup", "remove", "--force", name], check=False)
    for d in os.listdir("/dev"):
        if d.endswith("fsdax") and os.path.isdir(os.path.join("/dev", d)):
            log("wipe: removing leftover /dev/%s" % d)
            shutil.rmtree(os.path.join("/dev", d), ignore_errors=True)
    pvs = run(["pvs", "--noheadings", "-o", "pv_name"], env=LVM_ENV, check=False).split()
    for pv in pvs:
        if pv.startswith("/dev/pmem"):
            run(["pvremove", "-ff", "-y", pv], env=LVM_ENV, check=False)
    run(["ndctl", "destroy-namespace", "-f", "all"], check=False)
    left = [ns for r in regions() for ns in r.get("namespaces", [])
            if ns.get("size", 0) > 0 and ns.get("mode") != "raw"]
    if left:
        raise RuntimeError("namespaces left after wipe: %s" % short(left))


def socket_accepts(path):
    """Whether a unix socket at path accepts connections (a stale one refuses them)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


# --------------------------------------------------------------------------
# the driver process
# --------------------------------------------------------------------------

class Stub:
    """The three CSI services on one channel; records how long each call took."""

    timings = {}
    _lock = threading.Lock()

    def __init__(self, channel):
        self.channel = channel
        self._stubs = [pbg.IdentityStub(channel), pbg.ControllerStub(channel), pbg.NodeStub(channel)]

    def __getattr__(self, name):
        for s in self._stubs:
            fn = getattr(s, name, None)
            if fn is not None:
                return self._timed(name, fn)
        raise AttributeError(name)

    def _timed(self, name, fn):
        def call(req, timeout=None, **kw):
            t0 = time.monotonic()
            try:
                return fn(req, timeout=timeout or CALL_TIMEOUT, **kw)
            finally:
                with Stub._lock:
                    Stub.timings.setdefault(name, []).append(time.monotonic() - t0)
        return call

    def future(self, name, req, timeout=None):
        """Start a call without waiting for it (grpc.Future)."""
        for s in self._stubs:
            fn = getattr(s, name, None)
            if fn is not None:
                return fn.future(req, timeout=timeout or CALL_TIMEOUT)
        raise AttributeError(name)

    def close(self):
        self.channel.close()


class Driver:
    """pmem-csi-driver as a subprocess, with its log in RESULTS/logs/<name>.log."""

    def __init__(self, name, state_dir, nodeid=NODE_ID, drivername=DRIVER_NAME,
                 extra_args=(), verbosity=5, logging_format="text"):
        self.name = name
        self.state_dir = state_dir
        self.nodeid = nodeid
        self.drivername = drivername
        self.extra_args = list(extra_args)
        self.verbosity = verbosity
        self.logging_format = logging_format
        self.log_path = os.path.join(RESULTS, "logs", name + ".log")
        self.proc = None
        self.client = None
        self._logf = None
        self.starts = 0
        # Seconds between Probes while the driver says "not ready" (benchmarks poll faster).
        self.probe_interval = 0.1

    def argv(self):
        """Flags in extra_args replace the defaults of the same name."""
        flags = ["-mode=node", "-deviceManager=lvm",
                 "-drivername=" + self.drivername, "-nodeid=" + self.nodeid,
                 "-endpoint=unix://" + ENDPOINT_PATH, "-statePath=" + self.state_dir,
                 "-v=%d" % self.verbosity, "-logging-format=" + self.logging_format]
        extra = {a.split("=", 1)[0] for a in self.extra_args}
        return [DRIVER] + [f for f in flags if f.split("=", 1)[0] not in extra] + self.extra_args

    def start(self, wait=True):
        assert self.proc is None
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        os.makedirs(os.path.dirname(ENDPOINT_PATH), exist_ok=True)
        os.makedirs(self.state_dir, exist_ok=True)
        self._logf = open(self.log_path, "a")
        self._log_offset = self._logf.tell()
        self.starts += 1
        self._logf.write("\n===== start #%d: %s\n" % (self.starts, " ".join(self.argv())))
        self._logf.flush()
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=self._logf, env=LVM_ENV, start_new_session=True)
        self.connect()
        if wait:
            self.wait_ready()

    def connect(self):
        """A new channel: it tries to connect at once, without an old channel's backoff."""
        if self.client:
            self.client.close()
        self.client = Stub(grpc.insecure_channel("unix://" + ENDPOINT_PATH))

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Poll Probe until the driver says it is ready; time it.

        Until the socket accepts connections, only connect(2) is polled: a gRPC
        channel that failed backs off for up to seconds before it tries again."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("driver exited with status %s during start-up; log tail:\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            if not socket_accepts(ENDPOINT_PATH):
                last = "socket not accepting connections"
                time.sleep(0.05)
                continue
            try:
                r = self.client.Probe(pb.ProbeRequest(), timeout=5, wait_for_ready=True)
                if not r.HasField("ready") or r.ready.value:
                    self.ready_after = time.monotonic() - self.t_start
                    return
                last = "ready=false"
                time.sleep(self.probe_interval)
            except grpc.RpcError as e:
                last = "%s: %s" % (code_name(e.code()), e.details())
                self.connect()
                time.sleep(0.1)
        raise AssertionError("driver not ready after %.0f s (last Probe: %s); log tail:\n%s"
                             % (timeout, last, self.log_tail()))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Send sig, wait for the exit; return (exit status, seconds). SIGKILLs on timeout."""
        if self.proc is None:
            return None, 0
        if self.client:
            self.client.close()
            self.client = None
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._logf.write("===== test harness: no exit %d s after %s, SIGKILLed\n"
                                 % (timeout, signal.Signals(sig).name))
        rc, took = self.proc.returncode, time.monotonic() - t0
        self.proc = None
        self._logf.write("===== exited with status %s after %.2f s\n" % (rc, took))
        self._logf.close()
        return rc, took

    def restart(self, sig=signal.SIGTERM):
        self.stop(sig)
        self.start()

    def log_text(self, since_start=False):
        try:
            with open(self.log_path, errors="replace") as f:
                if since_start:
                    f.seek(self._log_offset)
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=15):
        lines = self.log_text(since_start=True).splitlines()
        return "\n".join("    | " + l for l in lines[-n:])


def nonblocking(fn):
    """In a sequential group: a failure of this step does not skip the later steps."""
    fn.nonblocking = True
    return fn


# --------------------------------------------------------------------------
# test case base class: one driver per class ("test group")
# --------------------------------------------------------------------------

class DriverTestCase(unittest.TestCase):
    """A group of tests sharing one driver process and one fresh state dir.

    Class attributes a group sets:
      group          name in the result lines
      clean_devices  wipe all namespaces and VGs before starting the driver
      sequential     the tests are steps of one story: once one fails, skip the rest
      driver_kwargs  extra Driver() arguments
      start_driver   False for groups that start their own drivers
    """

    group = None
    clean_devices = False
    sequential = False
    driver_kwargs = {}
    start_driver = True

    @classmethod
    def setUpClass(cls):
        cls._setup_error = None
        cls._setup_reported = False
        cls._failed_step = None
        cls.driver = None
        cls.tracked = {}  # volume id -> {"staging": set(), "targets": set()}
        cls.workdir = os.path.join(WORK, cls.group)
        cls.t0 = time.monotonic()
        log("group %s" % cls.group)
        try:
            umount_all_under(cls.workdir)
            shutil.rmtree(cls.workdir, ignore_errors=True)
            os.makedirs(cls.workdir)
            cls.state_dir = os.path.join(cls.workdir, "state")
            if cls.clean_devices:
                wipe_devices()
            cls.driver = Driver(cls.group, cls.state_dir, **cls.driver_kwargs)
            if cls.start_driver:
                cls.driver.start()
                log("driver ready %.2f s after start" % cls.driver.ready_after)
        except Exception as e:  # reported by the first test, see setUp
            cls._setup_error = "group set-up failed: %s" % e

    @classmethod
    def tearDownClass(cls):
        try:
            cls.cleanup_volumes()
        except Exception as e:
            log("cleanup of %s: %s" % (cls.group, e))
        if cls.driver:
            cls.driver.stop()
        umount_all_under(cls.workdir)
        log("group %s took %.1f s" % (cls.group, time.monotonic() - cls.t0))

    def setUp(self):
        cls = type(self)
        if cls._setup_error:
            if not cls._setup_reported:
                cls._setup_reported = True
                self.fail(cls._setup_error)
            self.skipTest("group set-up failed")
        if cls.sequential and cls._failed_step:
            self.skipTest("step %s failed" % cls._failed_step)
        if cls.driver and cls.driver.proc is not None and not cls.driver.alive():
            rc = cls.driver.proc.returncode
            cls.driver.stop()
            log("driver had died (status %s); restarting it for %s" % (rc, self.id()))
            cls.driver.start()

    def tearDown(self):
        d = type(self).driver
        if d and d.proc is not None and not d.alive():
            self.fail("driver died during this test (exit status %s); log tail:\n%s"
                      % (d.proc.returncode, d.log_tail()))

    # ---- access to the driver ------------------------------------------------

    @property
    def c(self):
        return type(self).driver.client

    def expect(self, code, fn, req, what, contains=None):
        """Call fn(req) and require status code (None = OK). Returns the response or details."""
        got, details, resp = rpc_code(fn, req)
        if got != code:
            self.fail("%s: expected %s, got %s%s" % (
                what, code_name(code), code_name(got),
                (": %r" % details) if got else (" (response: %s)" % short(resp))))
        if contains is not None and contains not in details:
            self.fail("%s: %s as expected, but the message %r does not mention %r"
                      % (what, code_name(code), details, contains))
        return resp if code is None else details

    # ---- volume operations that remember what to clean up ----------------------

    def path(self, *parts):
        return os.path.join(type(self).workdir, *parts)

    def _track(self, vid):
        return type(self).tracked.setdefault(vid, {"staging": set(), "targets": set(), "context": {}})

    def create(self, name, size=64 * MiB, fs="ext4", params=None, limit=0, caps=None, check=True):
        req = pb.CreateVolumeRequest(
            name=name, capacity_range=pb.CapacityRange(required_bytes=size, limit_bytes=limit),
            volume_capabilities=caps if caps is not None else [mount_cap(fs)],
            parameters=params or {})
        self._track(volume_id(name))
        if not check:
            return rpc_code(self.c.CreateVolume, req)
        vol = self.expect(None, self.c.CreateVolume, req, "CreateVolume(%s)" % name).volume
        self._track(vol.volume_id)["context"] = dict(vol.volume_context)
        return vol

    def stage_req(self, vid, staging, fs="ext4", context=None, cap=None):
        return pb.NodeStageVolumeRequest(volume_id=vid, staging_target_path=staging,
                                         volume_capability=cap or mount_cap(fs),
                                         volume_context=context or {})

    def stage(self, vid, staging=None, fs="ext4", context=None):
        """NodeStageVolume with the volume context CreateVolume returned, as kubelet does."""
        staging = staging or self.path(vid, "staging")
        os.makedirs(staging, exist_ok=True)  # the CO creates the staging dir
        t = self._track(vid)
        t["staging"].add(staging)
        if context is None:
            context = t["context"]
        self.expect(None, self.c.NodeStageVolume, self.stage_req(vid, staging, fs, context),
                    "NodeStageVolume(%s)" % vid)
        return staging

    def publish_req(self, vid, staging, target, fs="ext4", readonly=False, context=None):
        return pb.NodePublishVolumeRequest(volume_id=vid, staging_target_path=staging,
                                           target_path=target, volume_capability=mount_cap(fs),
                                           readonly=readonly, volume_context=context or {})

    def publish(self, vid, staging, target=None, fs="ext4", readonly=False):
        target = target or self.path(vid, "pod", "ro" if readonly else "rw")
        os.makedirs(os.path.dirname(target), exist_ok=True)  # the CO creates the parent only
        t = self._track(vid)
        t["targets"].add(target)
        self.expect(None, self.c.NodePublishVolume,
                    self.publish_req(vid, staging, target, fs, readonly, t["context"]),
                    "NodePublishVolume(%s)" % vid)
        return target

    def unpublish(self, vid, target):
        self.expect(None, self.c.NodeUnpublishVolume,
                    pb.NodeUnpublishVolumeRequest(volume_id=vid, target_path=target),
                    "NodeUnpublishVolume(%s)" % vid)

    def unstage(self, vid, staging):
        self.expect(None, self.c.NodeUnstageVolume,
                    pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging),
                    "NodeUnstageVolume(%s)" % vid)

    def delete(self, vid):
        self.expect(None, self.c.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid),
                    "DeleteVolume(%s)" % vid)
        type(self).tracked.pop(vid, None)

    def list_all(self, max_entries=0):
        """All ListVolumes entries, following next_token."""
        entries, token, pages = [], "", 0
        while True:
            r = self.expect(None, self.c.ListVolumes,
                            pb.ListVolumesRequest(max_entries=max_entries, starting_token=token),
                            "ListVolumes(max_entries=%d, starting_token=%r)" % (max_entries, token))
            pages += 1
            if max_entries:
                self.assertLessEqual(len(r.entries), max_entries,
                                     "ListVolumes returned more than max_entries")
            entries.extend(r.entries)
            token = r.next_token
            if not token:
                return entries
            self.assertLess(pages, 10000, "ListVolumes paging does not end")

    def listed_ids(self):
        return [e.volume.volume_id for e in self.list_all()]

    def capacity(self):
        return self.expect(None, self.c.GetCapacity, pb.GetCapacityRequest(), "GetCapacity")

    def state_file(self, vid):
        return os.path.join(type(self).state_dir, vid + ".json")

    @classmethod
    def cleanup_volumes(cls):
        """Best effort: undo what the tests left, through the driver, then by hand."""
        c = cls.driver.client if cls.driver and cls.driver.alive() else None
        for vid, t in list(cls.tracked.items()):
            for target in t["targets"]:
                if c:
                    rpc_code(c.NodeUnpublishVolume,
                             pb.NodeUnpublishVolumeRequest(volume_id=vid, target_path=target))
                umount_all_under(target)
            for staging in t["staging"]:
                if c:
                    rpc_code(c.NodeUnstageVolume,
                             pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging))
                umount_all_under(staging)
            if c:
                rpc_code(c.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid))
        cls.tracked = {}
        left = [(vg, lv) for lv, (vg, _) in lvs().items() if vg.endswith("fsdax")]
        # Groups run one after the other: whatever LV is left now leaked from this
        # group (and was reported by its tests); remove it so later groups start clean.
        for vg, lv in left:
            log("cleanup: removing leftover LV %s/%s by hand" % (vg, lv))
            run(["lvremove", "-f", "-y", "%s/%s" % (vg, lv)], env=LVM_ENV, check=False)


# --------------------------------------------------------------------------
# result reporting: "ok - name", "FAIL - name", "SKIP - name (why)"
# --------------------------------------------------------------------------

def test_name(test):
    if isinstance(test, DriverTestCase):
        name = test._testMethodName
        if name.startswith("test_"):
            name = name[5:]
        return "%s: %s" % (test.group, name)
    return str(test)


class TapResult(unittest.TestResult):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.passed = 0
        self.failed = 0
        self.failures_list = []  # (name, message)
        self.skipped_n = 0
        self._t0 = 0

    def startTest(self, test):
        super().startTest(test)
        self._t0 = time.monotonic()

    def _took(self):
        return " (%.1f s)" % (time.monotonic() - self._t0)

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1
        print("ok - %s%s" % (test_name(test), self._took()), flush=True)

    def _fail(self, test, err, is_error):
        name = test_name(test)
        exc_type, exc, tb = err
        if exc_type is AssertionError or not is_error:
            msg = str(exc)
        else:
            msg = "".join(traceback.format_exception(exc_type, exc, tb)[-6:]).rstrip()
        if self.failures_list and self.failures_list[-1][0] == name:
            # a second failure of the same test (e.g. its tearDown saw the driver dead)
            self.failures_list[-1] = (name, self.failures_list[-1][1] + "\n" + msg)
            for line in msg.splitlines()[:40]:
                print("    " + line, flush=True)
            return
        self.failed += 1
        self.failures_list.append((name, msg))
        cls = type(test)
        if (isinstance(test, DriverTestCase) and cls.sequential and not cls._failed_step
                and not getattr(getattr(test, test._testMethodName, None), "nonblocking", False)
                and not str(exc).startswith("group set-up failed")):
            cls._failed_step = test._testMethodName[5:]
        print("FAIL - %s%s" % (name, self._took()), flush=True)
        for line in msg.splitlines()[:40]:
            print("    " + line, flush=True)
        d = getattr(cls, "driver", None)
        if isinstance(test, DriverTestCase) and d is not None and d.log_path:
            print("    (driver log: %s)" % d.log_path, flush=True)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._fail(test, err, False)

    def addError(self, test, err):
        super().addError(test, err)
        self._fail(test, err, True)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.skipped_n += 1
        print("SKIP - %s (%s)" % (test_name(test), reason), flush=True)


# --------------------------------------------------------------------------
# raw requests: bytes that the generated stubs cannot express (invalid UTF-8,
# fields given twice), sent as they are over the driver's gRPC socket
# --------------------------------------------------------------------------

def wire_varint(v):
    out = bytearray()
    while True:
        b = v & 0x7f
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _b(x):
    return x if isinstance(x, bytes) else x.encode()


def wire_field(num, data):
    """A length-delimited field (string, message, map entry): tag, length, bytes."""
    data = _b(data)
    return wire_varint(num << 3 | 2) + wire_varint(len(data)) + data


def wire_entry(num, key, value):
    """One map<string,string> entry of field num."""
    return wire_field(num, wire_field(1, key) + wire_field(2, value))


def wire(msg, *extra):
    """A generated message serialized, with raw fields appended (protobuf merges them in)."""
    return (msg.SerializeToString() if msg is not None else b"") + b"".join(extra)


def method_path(name):
    """'/csi.v1.Node/NodeStageVolume' and the response class for a CSI method name."""
    for svc in pb.DESCRIPTOR.services_by_name.values():
        m = svc.methods_by_name.get(name)
        if m:
            return "/%s/%s" % (svc.full_name, name), getattr(pb, m.output_type.name)
    raise KeyError(name)


def raw_call(channel, name, data, timeout=None):
    """Send serialized request bytes to a CSI method; (code, details, response) as rpc_code()."""
    path, resp_type = method_path(name)
    fn = channel.unary_unary(path, request_serializer=lambda b: b,
                             response_deserializer=resp_type.FromString)
    try:
        return None, "", fn(data, timeout=timeout or CALL_TIMEOUT)
    except grpc.RpcError as e:
        return e.code(), e.details() or "", None


# --------------------------------------------------------------------------
# what is on the node, for before/after comparisons
# --------------------------------------------------------------------------

def all_namespaces():
    """{(region, dev): name} of every namespace with a size (what ndctl -N lists)."""
    res = {}
    for r in regions():
        for ns in r.get("namespaces", []):
            if ns.get("size", 0) > 0:
                res[(r.get("dev"), ns.get("dev"))] = ns.get("name", "")
    return res


def looks_like_volume_id(name):
    return len(name) > 57 and name[-57] == "-"


def volume_device_ids(mode):
    """Names of the devices that look like volumes: LVs in the driver's VGs, or
    namespaces named like a volume ID."""
    if mode == "lvm":
        return {n for n, (vg, _) in lvs().items() if vg.endswith("fsdax")}
    return {n for n in all_namespaces().values() if looks_like_volume_id(n)}


def state_files(state_dir):
    """File names in the state directory (volume records, intent markers, temp files)."""
    try:
        return sorted(os.listdir(state_dir))
    except FileNotFoundError:
        return []


def mount_table():
    """/proc/mounts as (source, mountpoint, fstype) tuples, read so that a mount point
    with bytes that are not UTF-8 (what a driver without input checks can make) is
    reported instead of raising (surrogateescape)."""
    out = []
    with open("/proc/mounts", errors="surrogateescape") as f:
        for line in f:
            src, mnt, fs = line.split()[:3]
            out.append((_unescape(src), _unescape(mnt), fs))
    return out
