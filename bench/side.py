#!/usr/bin/python3
"""side.py - our driver and intel/pmem-csi's side by side in ONE guest, LVM mode, on the
same volume groups: every lifecycle step, GetCapacity, ListVolumes, idle memory and
start-up with existing volumes, as ratios ours/upstream. Runs INSIDE the QEMU guest
(bench/side.sh starts it); it destroys every namespace and volume group it finds.

1. wiped regions; our driver starts and sets up the namespaces and VGs
   (ndbus0region<N>fsdax, upstream's names too); the VGs get the `fsdax` tag upstream's
   pmem-vgm gave them (v0.6.52's driver rejects an untagged VG); upstream's driver
   (-mode=node -testEndpoint: Identity, Controller and Node on one socket, as ours) starts
   on them. Both stay up; the one not measured is idle.
2. SIDE_ROUNDS rounds; in each, driver by driver (ours first in odd rounds, upstream first
   in even ones), a lifecycle of a SIDE_SIZE_MIB ext4 volume with eraseafter=false, one
   with eraseafter=true (create, stage, publish, unpublish, unstage, delete; stage and
   publish get the volume context of CreateVolume plus external-provisioner's
   csiProvisionerIdentity key, as kubelet passes them), then
   SIDE_QUERIES GetCapacity and as many ListVolumes calls. Each driver deletes its volume
   before the other creates one, so both allocate the same free extents of the same VG:
   equal state, and which driver runs on a warmer page cache alternates by round.
3. idle memory of both (/proc/PID/status after 2 s idle): after start, after the rounds.
4. SIDE_KEEP volumes per driver are created and left; both drivers stop; `lvs` (the
   report columns ours reads) runs SIDE_STARTS times alone; then each driver starts
   SIDE_STARTS times (alternating which goes first), timed from exec to the first
   successful Probe with ready true (or unset), and stops again; memory 2 s after the
   first of these starts.
Output: "# " progress lines, one "BENCH {json}" line per measurement, Markdown tables.

Environment (defaults): PMEM_CSI_DRIVER, PMEM_CSI_UPSTREAM (required), SIDE_ROUNDS (5),
SIDE_SIZE_MIB (1024), SIDE_QUERIES (3), SIDE_KEEP (10), SIDE_STARTS (3), SIDE_LOG_V (0:
both drivers' -v; ours logs each tool run with its duration at 6), SIDE_SHOW_LOG (0: lines
of each driver's log printed at the end), SIDE_CALL_TIMEOUT (600 s per call),
SIDE_PROBE_INTERVAL (0.02 s between Probes while a driver answers "not ready").
"""
import json
import math
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lifecycle as lc  # noqa: E402  (stubs, csitest)
import grpc  # noqa: E402

pb, csitest = lc.pb, lc.csitest
MiB = 1 << 20


def env_int(name, default):
    return int(os.environ.get(name, str(default)))


OURS = os.environ.get("PMEM_CSI_DRIVER", csitest.DRIVER)
UPSTREAM = os.environ.get("PMEM_CSI_UPSTREAM", "")
ROUNDS = env_int("SIDE_ROUNDS", 5)
SIZE = env_int("SIDE_SIZE_MIB", 1024) * MiB
QUERIES = env_int("SIDE_QUERIES", 3)
KEEP = env_int("SIDE_KEEP", 10)
STARTS = env_int("SIDE_STARTS", 3)
LOG_V = env_int("SIDE_LOG_V", 0)
SHOW_LOG = env_int("SIDE_SHOW_LOG", 0)
CALL_TIMEOUT = float(os.environ.get("SIDE_CALL_TIMEOUT", "600"))
PROBE_INTERVAL = float(os.environ.get("SIDE_PROBE_INTERVAL", "0.02"))
WORK = "/tmp/side"
DRIVERS = ["ours", "upstream"]
STEPS = ["CreateVolume", "NodeStageVolume", "NodePublishVolume", "NodeUnpublishVolume",
         "NodeUnstageVolume", "DeleteVolume (eraseafter=false)", "DeleteVolume (eraseafter=true)",
         "GetCapacity", "ListVolumes"]
MEMKEYS = ("VmRSS", "RssAnon", "RssFile", "Threads")


def progress(msg):
    print("# " + msg, flush=True)


def emit(**fields):
    print("BENCH " + json.dumps(fields, sort_keys=True), flush=True)


def p90(xs):
    """Nearest-rank 90th percentile: of 5 values the largest, of 10 the 9th."""
    s = sorted(xs)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)] if s else float("nan")


def status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in MEMKEYS:
                out[k] = int(v.split()[0])
    return out


class Proc:
    """One driver: its own socket, state directory and log; a timed start."""

    def __init__(self, label, argv):
        self.label = label
        self.sock = os.path.join(WORK, label + ".sock")
        self.log = os.path.join(WORK, label + ".log")
        self.argv = argv + ["-endpoint=unix://" + self.sock,
                            "-statePath=" + os.path.join(WORK, label + "-state"),
                            "-drivername=pmem-csi.intel.com", "-nodeid=side-node",
                            "-deviceManager=lvm", "-v=%d" % LOG_V]
        self.proc = None
        self.c = None

    def start(self, timeout=300):
        """Start and wait for the first ready Probe; returns seconds from exec."""
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        logf = open(self.log, "a")
        logf.write("\n===== start: %s\n" % " ".join(self.argv))
        logf.flush()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                     env=lc.LVM_ENV, start_new_session=True)
        logf.close()
        deadline = t0 + timeout
        last = "socket not accepting connections"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with status %s during start-up; log tail:\n%s"
                                   % (self.label, self.proc.returncode, self.tail()))
            # connect(2) until the socket accepts: a failed gRPC channel backs off for seconds.
            # Once a channel is up, Probe alone polls (each connect(2) of this check is a
            # connection the driver serves too).
            if self.c is None:
                if not csitest.socket_accepts(self.sock):
                    time.sleep(0.02)
                    continue
                self.c = csitest.Stub(grpc.insecure_channel("unix://" + self.sock))
            try:
                r = self.c.Probe(pb.ProbeRequest(), timeout=5, wait_for_ready=True)
                if not r.HasField("ready") or r.ready.value:
                    return time.monotonic() - t0
                last = "ready=false"
                time.sleep(PROBE_INTERVAL)
            except grpc.RpcError as e:
                last = "%s: %s" % (csitest.code_name(e.code()), e.details())
                self.c.close()
                self.c = None
                time.sleep(0.05)
        raise RuntimeError("%s not ready after %d s (%s); log tail:\n%s"
                           % (self.label, timeout, last, self.tail()))

    def stop(self):
        if self.c:
            self.c.close()
            self.c = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def tail(self, n=20):
        try:
            with open(self.log, errors="replace") as f:
                return "\n".join("#   | " + l for l in f.read().splitlines()[-n:])
        except OSError:
            return "(no log)"

    def call(self, method, req):
        return getattr(self.c, method)(req, timeout=CALL_TIMEOUT)


def lifecycle(d, name, erase, cap):
    """The six steps of one volume on driver d; returns [(step, seconds)]."""
    out = []

    def step(label, method, req):
        s = time.monotonic()
        r = d.call(method, req)
        out.append((label, time.monotonic() - s))
        return r

    r = step("CreateVolume", "CreateVolume", pb.CreateVolumeRequest(
        name=name, capacity_range=pb.CapacityRange(required_bytes=SIZE), volume_capabilities=[cap],
        parameters={"eraseafter": "true" if erase else "false"}))
    # kubelet passes the PV's volumeAttributes: the volume context of CreateVolume plus the
    # key external-provisioner always adds. v0.6.52 mounts with dax only when the context
    # is not empty, and its CreateVolume (node mode) returns an empty one.
    vid, ctx = r.volume.volume_id, dict(r.volume.volume_context)
    ctx["storage.kubernetes.io/csiProvisionerIdentity"] = "1700000000000-8081-pmem-csi.intel.com"
    base = os.path.join(WORK, "mnt", name)
    st, tg = os.path.join(base, "staging"), os.path.join(base, "target")
    os.makedirs(st, exist_ok=True)
    step("NodeStageVolume", "NodeStageVolume", pb.NodeStageVolumeRequest(
        volume_id=vid, staging_target_path=st, volume_capability=cap, volume_context=ctx))
    step("NodePublishVolume", "NodePublishVolume", pb.NodePublishVolumeRequest(
        volume_id=vid, staging_target_path=st, target_path=tg, volume_capability=cap,
        volume_context=ctx))
    # Both must have mounted the volume with DAX, or the comparison is not like for like.
    opts = [o for m in csitest.mounts_at(tg) for o in m[3]]
    dax = any(o.startswith("dax") for o in opts)
    if name.endswith("-r1-n"):
        progress("%s: CreateVolume's volume context %s; target mounted with %s"
                 % (d.label, json.dumps(ctx, sort_keys=True), ",".join(opts)))
    step("NodeUnpublishVolume", "NodeUnpublishVolume",
         pb.NodeUnpublishVolumeRequest(volume_id=vid, target_path=tg))
    step("NodeUnstageVolume", "NodeUnstageVolume",
         pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=st))
    step("DeleteVolume (eraseafter=%s)" % ("true" if erase else "false"), "DeleteVolume",
         pb.DeleteVolumeRequest(volume_id=vid))
    return out, dax


def lvs_alone():
    s = time.monotonic()
    subprocess.run(["lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o",
                    "lv_name,vg_name,lv_size,lv_path,lv_attr"], env=lc.LVM_ENV,
                   stdout=subprocess.DEVNULL, check=True)
    return time.monotonic() - s


def memory(procs, when, res):
    time.sleep(2)
    for d in procs:
        st = status(d.proc.pid)
        res.setdefault(when, {})[d.label] = st
        emit(phase="memory", driver=d.label, when=when, **st)


def fmt(x, unit=1.0, digits=3):
    return "" if x != x else "%.*f" % (digits, x * unit)


def report(steps, mem, starts, lvs_t, dax):
    print("\n### Per step, %d MiB ext4 volume, LVM mode, %d interleaved rounds (seconds)\n"
          % (SIZE >> 20, ROUNDS))
    print("| step | n | ours median | ours p90 | upstream median | upstream p90 | ratio ours/upstream (median) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for k in STEPS:
        o, u = steps["ours"].get(k, []), steps["upstream"].get(k, [])
        mo, mu = lc.med(o), lc.med(u)
        print("| %s | %d | %s | %s | %s | %s | %s |" % (
            k, min(len(o), len(u)), fmt(mo), fmt(p90(o)), fmt(mu), fmt(p90(u)),
            fmt(mo / mu if mu else float("nan"), digits=2)))
    tot = {d: sum(lc.med(steps[d].get(k, [])) for k in STEPS[:5]) for d in DRIVERS}
    for erase in ("false", "true"):
        k = "DeleteVolume (eraseafter=%s)" % erase
        o = tot["ours"] + lc.med(steps["ours"].get(k, []))
        u = tot["upstream"] + lc.med(steps["upstream"].get(k, []))
        print("| lifecycle, sum of medians (eraseafter=%s) | | %s | | %s | | %s |"
              % (erase, fmt(o), fmt(u), fmt(o / u if u else float("nan"), digits=2)))
    so, su = lc.med(starts["ours"]), lc.med(starts["upstream"])
    print("| exec to first ready Probe, %d volumes each present (median of %d) | %d | %s | %s | %s | %s | %s |"
          % (KEEP, STARTS, STARTS, fmt(so, digits=2), fmt(p90(starts["ours"]), digits=2), fmt(su, digits=2),
             fmt(p90(starts["upstream"]), digits=2), fmt(so / su if su else float("nan"), digits=2)))
    print("| `lvs` alone, same guest (median of %d) | %d | %s | | | | ours/lvs %s |"
          % (STARTS, STARTS, fmt(lc.med(lvs_t), digits=2), fmt(so / lc.med(lvs_t), digits=2)))
    print("\nMounted with dax in every lifecycle (the published target's mount options): ours %s, upstream %s\n"
          % (dax.get("ours"), dax.get("upstream")))
    print("### Memory (/proc/PID/status, KiB; Threads: count)\n")
    print("| when | key | ours | upstream | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for when, per in mem.items():
        for k in MEMKEYS:
            o, u = per.get("ours", {}).get(k), per.get("upstream", {}).get(k)
            if o is None or u is None:
                continue
            print("| %s | %s | %d | %d | %s |" % (when, k, o, u, "%.2f" % (o / u) if u and k != "Threads" else ""))


def main():
    if not UPSTREAM or not os.access(UPSTREAM, os.X_OK):
        progress("upstream driver not found (PMEM_CSI_UPSTREAM=%r): nothing to compare" % UPSTREAM)
        return 2
    os.makedirs(WORK, exist_ok=True)
    t_all = time.monotonic()
    emit(phase="config", rounds=ROUNDS, size_mib=SIZE >> 20, queries=QUERIES, keep=KEEP, starts=STARTS,
         log_v=LOG_V, guest_cpus=os.cpu_count(), kernel=os.uname().release)
    csitest.wipe_devices()
    csitest.init_labels()
    procs = {"ours": Proc("ours", [OURS, "-mode=node"]),
             "upstream": Proc("upstream", [UPSTREAM, "-mode=node", "-testEndpoint"])}
    cap = csitest.mount_cap("ext4")
    steps = {d: {} for d in DRIVERS}
    mem, dax = {}, {}
    try:
        t = procs["ours"].start()
        emit(phase="start", driver="ours", when="fresh regions (sets up namespaces and VGs)", ready_s=round(t, 3))
        progress("ours ready after %.2f s on fresh regions" % t)
        for vg in csitest.vgs():
            if vg.endswith("fsdax"):
                subprocess.run(["vgchange", "--addtag", "fsdax", vg], env=lc.LVM_ENV, check=True,
                               stdout=subprocess.DEVNULL)
        t = procs["upstream"].start()
        emit(phase="start", driver="upstream", when="namespaces and VGs in place", ready_s=round(t, 3))
        progress("upstream ready after %.2f s; VGs: %s" % (t, csitest.vgs()))
        memory(procs.values(), "idle after start", mem)

        for r in range(1, ROUNDS + 1):
            order = DRIVERS if r % 2 else DRIVERS[::-1]
            for label in order:
                d = procs[label]
                for erase in (False, True):
                    out, dx = lifecycle(d, "%s-r%d-%s" % (label[:4], r, "e" if erase else "n"), erase, cap)
                    dax[label] = dx if dax.get(label, True) else dax[label]
                    for k, t in out:
                        steps[label].setdefault(k, []).append(t)
                for _ in range(QUERIES):
                    _, t = lc.timed(d.call, "GetCapacity", pb.GetCapacityRequest(volume_capabilities=[cap]))
                    steps[label].setdefault("GetCapacity", []).append(t)
                    lv, t = lc.timed(d.call, "ListVolumes", pb.ListVolumesRequest())
                    steps[label].setdefault("ListVolumes", []).append(t)
                progress("round %d/%d %s: %s; ListVolumes returned %d" % (
                    r, ROUNDS, label, ", ".join("%s %.2f" % (k, v[-1]) for k, v in steps[label].items()),
                    len(lv.entries)))
            progress("round %d done, guest load %s" % (r, open("/proc/loadavg").read().split()[0]))
        memory(procs.values(), "idle after %d lifecycles of %d MiB" % (2 * ROUNDS, SIZE >> 20), mem)
        for label in DRIVERS:
            for k, xs in steps[label].items():
                emit(phase="step", driver=label, step=k, n=len(xs), median_s=round(lc.med(xs), 4),
                     p90_s=round(p90(xs), 4), min_s=round(min(xs), 4), max_s=round(max(xs), 4))
        for k in STEPS:
            mo, mu = lc.med(steps["ours"].get(k, [])), lc.med(steps["upstream"].get(k, []))
            emit(phase="ratio", step=k, ours_median_s=round(mo, 4), upstream_median_s=round(mu, 4),
                 ratio=round(mo / mu, 3) if mu else None)

        for label in DRIVERS:
            for i in range(KEEP):
                procs[label].call("CreateVolume", pb.CreateVolumeRequest(
                    name="%s-keep-%d" % (label[:4], i), capacity_range=pb.CapacityRange(required_bytes=4 * MiB),
                    volume_capabilities=[cap], parameters={"eraseafter": "false"}))
        progress("%d volumes per driver created and kept; LVs: %d" % (KEEP, len(csitest.lvs())))
        for d in procs.values():
            d.stop()
        lvs_t = [lvs_alone() for _ in range(STARTS)]
        emit(phase="lvs alone", seconds=[round(x, 3) for x in lvs_t], median_s=round(lc.med(lvs_t), 3))
        starts = {d: [] for d in DRIVERS}
        for i in range(STARTS):
            for label in (DRIVERS if i % 2 == 0 else DRIVERS[::-1]):
                d = procs[label]
                starts[label].append(d.start())
                if i == 0:
                    memory([d], "idle after a restart with %d + %d volumes" % (KEEP, KEEP), mem)
                d.stop()
        for label in DRIVERS:
            xs = starts[label]
            emit(phase="start", driver=label, when="existing volumes", volumes=2 * KEEP,
                 seconds=[round(x, 3) for x in xs], median_s=round(lc.med(xs), 3))
    except Exception:
        for d in procs.values():
            rc = d.proc.poll() if d.proc else "not running"
            progress("%s (status %s) log tail:\n%s" % (d.label, rc, d.tail()))
        raise
    finally:
        for d in procs.values():
            d.stop()
    csitest.wipe_devices()
    if SHOW_LOG:
        for d in procs.values():
            print("\n# the last %d lines of %s's log:\n%s" % (SHOW_LOG, d.label, d.tail(SHOW_LOG)))
    report(steps, mem, starts, lvs_t, dax)
    print("\nbench total: %.0f s in the guest" % (time.monotonic() - t_all))
    return 0


if __name__ == "__main__":
    sys.exit(main())
