#!/usr/bin/python3
"""lifecycle.py - the driver's per-step latency, erase throughput, lifecycle throughput
and resident memory, in LVM and in direct mode, against the external tools it runs.
Runs INSIDE the QEMU guest (bench/run.sh starts it); it destroys every namespace and
volume group it finds.

For each mode in BENCH_MODES, on freshly wiped regions with a fresh driver:
  latency     BENCH_ROUNDS lifecycles (create, stage, publish, unpublish, unstage,
              delete) of a BENCH_SIZE_MIB ext4 volume with eraseafter=true and as many
              with eraseafter=false; GetCapacity and Probe once per round
  erase       BENCH_ERASE_ROUNDS times: a BENCH_ERASE_MIB volume with eraseafter=false;
              on its block device `shred -n 0 -z` (upstream's erase), `blkdiscard -z`
              (BLKZEROOUT, what the driver does) and `fallocate -z`, in rotating order;
              DeleteVolume; then a volume of the same size over the same space (checked)
              with eraseafter=true, and its DeleteVolume
  throughput  for each worker count in BENCH_WORKERS, that many threads each run
              BENCH_LOAD_VOLUMES lifecycles of BENCH_TP_MIB volumes (eraseafter=false);
              the driver's VmRSS is sampled meanwhile
  tools       (LVM only, driver stopped) lvcreate, mkfs.ext4, mount -o dax, umount,
              lvremove on a scratch LV of BENCH_SIZE_MIB
BENCH_PHASES selects phases (default: all four).

Output: progress lines start with "# "; every measurement is one line
"BENCH {json}" (machine-readable); Markdown tables follow at the end.

Environment (defaults): PMEM_CSI_DRIVER, BENCH_MODES ("lvm direct"), BENCH_PHASES
("latency erase throughput tools"), BENCH_ROUNDS (5), BENCH_SIZE_MIB (1024),
BENCH_ERASE_ROUNDS (5), BENCH_ERASE_MIB (1024), BENCH_TP_MIB (64), BENCH_WORKERS ("1 5"),
BENCH_LOAD_VOLUMES (6 per worker).
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1 << 20


def env_int(name, default):
    return int(os.environ.get(name, str(default)))


MODES = os.environ.get("BENCH_MODES", "lvm direct").split()
PHASES = os.environ.get("BENCH_PHASES", "latency erase throughput tools").split()
ROUNDS = env_int("BENCH_ROUNDS", 5)
SIZE = env_int("BENCH_SIZE_MIB", 1024) * MiB
ERASE_ROUNDS = env_int("BENCH_ERASE_ROUNDS", 5)
ERASE_SIZE = env_int("BENCH_ERASE_MIB", 1024) * MiB
TP_SIZE = env_int("BENCH_TP_MIB", 64) * MiB
WORKERS = [int(w) for w in os.environ.get("BENCH_WORKERS", "1 5").split()]
LOAD_VOLUMES = env_int("BENCH_LOAD_VOLUMES", 6)
LVM_ENV = dict(os.environ, LVM_SUPPRESS_FD_WARNINGS="1")

STEPS = ["CreateVolume", "NodeStageVolume", "NodePublishVolume", "NodeUnpublishVolume",
         "NodeUnstageVolume", "DeleteVolume"]
ERASE_METHODS = ["shred -n 0 -z", "blkdiscard -z", "fallocate -z"]


def progress(msg):
    print("# " + msg, flush=True)


def emit(**fields):
    """One machine-readable result line."""
    print("BENCH " + json.dumps(fields, sort_keys=True), flush=True)


def sh(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=LVM_ENV).stdout


def timed(fn, *a, **kw):
    s = time.monotonic()
    r = fn(*a, **kw)
    return r, time.monotonic() - s


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def gen_stubs():
    stubs = tempfile.mkdtemp(prefix="bench-stubs.")
    sh("protoc", "-I", os.path.join(REPO, "proto"), "-I", "/usr/include", "--python_out=" + stubs,
       "--grpc_python_out=" + stubs, "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
       os.path.join(REPO, "proto", "csi.proto"))
    return stubs


sys.path.insert(0, gen_stubs())
sys.path.insert(0, os.path.join(REPO, "test", "guest"))
import csi_pb2 as pb  # noqa: E402
import csitest  # noqa: E402


class ModeBench:
    """One device mode: a driver on wiped regions, and the volume operations timed."""

    def __init__(self, mode, work):
        self.mode = mode
        self.work = os.path.join(work, mode)
        os.makedirs(self.work)
        self.cap = csitest.mount_cap("ext4")
        self.drv = csitest.Driver("bench-" + mode, os.path.join(self.work, "state"),
                                  extra_args=["-deviceManager=" + mode], verbosity=0)

    @property
    def c(self):
        return self.drv.client

    def start(self):
        csitest.wipe_devices()
        csitest.init_labels()
        self.drv.start()
        return self.drv.ready_after

    def stop(self):
        self.drv.stop()

    def create(self, name, size, erase):
        r = self.c.CreateVolume(pb.CreateVolumeRequest(
            name=name, capacity_range=pb.CapacityRange(required_bytes=size),
            volume_capabilities=[self.cap], parameters={"eraseafter": "true" if erase else "false"}))
        return r.volume.volume_id

    def delete(self, vid):
        self.c.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vid))

    def lifecycle(self, name, size, erase):
        """The six steps of one volume; returns [(step, seconds)]."""
        out = []
        vid, t = timed(self.create, name, size, erase)
        out.append(("CreateVolume", t))
        st, tg = os.path.join(self.work, name, "staging"), os.path.join(self.work, name, "target")
        os.makedirs(st, exist_ok=True)
        _, t = timed(self.c.NodeStageVolume, pb.NodeStageVolumeRequest(
            volume_id=vid, staging_target_path=st, volume_capability=self.cap))
        out.append(("NodeStageVolume", t))
        _, t = timed(self.c.NodePublishVolume, pb.NodePublishVolumeRequest(
            volume_id=vid, staging_target_path=st, target_path=tg, volume_capability=self.cap))
        out.append(("NodePublishVolume", t))
        _, t = timed(self.c.NodeUnpublishVolume,
                     pb.NodeUnpublishVolumeRequest(volume_id=vid, target_path=tg))
        out.append(("NodeUnpublishVolume", t))
        _, t = timed(self.c.NodeUnstageVolume,
                     pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=st))
        out.append(("NodeUnstageVolume", t))
        _, t = timed(self.delete, vid)
        out.append(("DeleteVolume", t))
        return out

    def device(self, vid):
        """The volume's block device."""
        if self.mode == "lvm":
            return csitest.lv_path(vid)
        for r in csitest.regions():
            for ns in r.get("namespaces", []):
                if ns.get("name") == vid:
                    return "/dev/" + ns["blockdev"]
        raise RuntimeError("no namespace named %s" % vid)

    def location(self, vid):
        """Where on the PMEM a volume lies: LVM physical extents, or the namespace's region
        and physical address. Equal locations = the same memory is erased."""
        if self.mode == "lvm":
            return sh("lvs", "--noheadings", "-o", "vg_name,seg_pe_ranges",
                      "%s/%s" % (csitest.lvs()[vid][0], vid)).split()
        for r in csitest.regions():
            for ns in r.get("namespaces", []):
                if ns.get("name") == vid:
                    try:
                        with open("/sys/bus/nd/devices/%s/resource" % ns["dev"]) as f:
                            return [r["dev"], f.read().strip()]
                    except OSError:
                        return [r["dev"], ns["dev"]]
        return None

    # ---- phases -------------------------------------------------------------------

    def latency(self, res):
        steps = res.setdefault("latency", {})
        for i in range(ROUNDS):
            for erase in (True, False):
                name = "lat-%s-%d" % ("erase" if erase else "noerase", i)
                for step, t in self.lifecycle(name, SIZE, erase):
                    if step == "DeleteVolume":
                        step += " (eraseafter=%s)" % ("true" if erase else "false")
                    steps.setdefault(step, []).append(t)
            _, t = timed(self.c.GetCapacity, pb.GetCapacityRequest())
            steps.setdefault("GetCapacity", []).append(t)
            _, t = timed(self.c.Probe, pb.ProbeRequest())
            steps.setdefault("Probe", []).append(t)
            progress("%s latency round %d/%d done" % (self.mode, i + 1, ROUNDS))
        for step, xs in steps.items():
            emit(phase="latency", mode=self.mode, step=step, size_mib=SIZE >> 20, n=len(xs),
                 median_s=round(med(xs), 4), min_s=round(min(xs), 4), max_s=round(max(xs), 4))

    def erase(self, res):
        times = {k: [] for k in ERASE_METHODS + ["DeleteVolume (eraseafter=false)",
                                                "DeleteVolume (eraseafter=true)"]}
        same = []
        devsize = 0
        for i in range(ERASE_ROUNDS):
            vid = self.create("erase-tools-%d" % i, ERASE_SIZE, erase=False)
            dev = self.device(vid)
            devsize = int(sh("blockdev", "--getsize64", dev))
            where = self.location(vid)
            # Rotate the order so that none of the methods always runs first.
            order = ERASE_METHODS[i % 3:] + ERASE_METHODS[:i % 3]
            for m in order:
                if m == "shred -n 0 -z":
                    argv = ["shred", "-n", "0", "-z", dev]
                elif m == "blkdiscard -z":
                    argv = ["blkdiscard", "-f", "-z", dev]
                else:
                    argv = ["fallocate", "-z", "-l", str(devsize), dev]
                times[m].append(timed(sh, *argv)[1])
            times["DeleteVolume (eraseafter=false)"].append(timed(self.delete, vid)[1])
            vid = self.create("erase-driver-%d" % i, ERASE_SIZE, erase=True)
            same.append(self.location(vid) == where)
            if int(sh("blockdev", "--getsize64", self.device(vid))) != devsize:
                same[-1] = False
            times["DeleteVolume (eraseafter=true)"].append(timed(self.delete, vid)[1])
            progress("%s erase round %d/%d: %s" % (self.mode, i + 1, ERASE_ROUNDS, ", ".join(
                "%s %.2f s" % (k, v[-1]) for k, v in times.items())))
        mib = devsize / MiB
        out = res["erase"] = {"device_mib": mib, "same_space": all(same), "rows": {}}
        rows = dict(times)
        # What erasing adds to DeleteVolume: the difference of the medians.
        rows["DeleteVolume erase share (true - false)"] = [
            med(times["DeleteVolume (eraseafter=true)"]) - med(times["DeleteVolume (eraseafter=false)"])]
        for k, xs in rows.items():
            m = med(xs)
            # eraseafter=false clears 4 KiB only: a rate would mean nothing.
            rate = round(mib / m, 1) if m > 0 and "eraseafter=false" not in k else None
            out["rows"][k] = (m, rate)
            emit(phase="erase", mode=self.mode, method=k, device_mib=round(mib, 1), n=len(xs),
                 median_s=round(m, 4), mib_per_s=rate, same_space=all(same))

    def throughput(self, res):
        out = res.setdefault("throughput", [])
        pid = self.drv.proc.pid
        for workers in WORKERS:
            steps = {s: [] for s in STEPS}
            totals, errors = [], []
            lock = threading.Lock()
            peak = [rss_kib(pid)]
            stop = threading.Event()

            def sampler():
                while not stop.is_set():
                    peak[0] = max(peak[0], rss_kib(pid))
                    time.sleep(0.05)

            def worker(w):
                for j in range(LOAD_VOLUMES):
                    try:
                        r = self.lifecycle("tp%d-%d-%d" % (workers, w, j), TP_SIZE, erase=False)
                    except Exception as e:  # reported after the join
                        errors.append(e)
                        return
                    with lock:
                        for step, t in r:
                            steps[step].append(t)
                        totals.append(sum(t for _, t in r))

            th = threading.Thread(target=sampler)
            th.start()
            s = time.monotonic()
            ws = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
            for w in ws:
                w.start()
            for w in ws:
                w.join()
            wall = time.monotonic() - s
            stop.set()
            th.join()
            if errors:
                raise errors[0]
            n = workers * LOAD_VOLUMES
            res.setdefault("rss", []).append(
                ("peak during %d worker(s) x %d lifecycles" % (workers, LOAD_VOLUMES), peak[0]))
            out.append({"workers": workers, "volumes": n, "wall": wall, "steps": steps, "totals": totals,
                            "rss_peak_kib": peak[0], "rss_after_kib": rss_kib(pid)})
            progress("%s throughput %d worker(s): %d lifecycles in %.1f s" % (self.mode, workers, n, wall))
            emit(phase="throughput", mode=self.mode, workers=workers, volumes=n,
                 size_mib=TP_SIZE >> 20, wall_s=round(wall, 2), volumes_per_s=round(n / wall, 3),
                 lifecycle_median_s=round(med(totals), 3),
                 step_median_s={k: round(med(v), 4) for k, v in steps.items()},
                 rss_peak_mib=round(peak[0] / 1024, 1))

    def memory(self, res, when):
        kib = rss_kib(self.drv.proc.pid)
        res.setdefault("rss", []).append((when, kib))
        emit(phase="memory", mode=self.mode, when=when, rss_mib=round(kib / 1024, 1))


def tools_alone(res, work):
    """The LVM steps by the tools alone, on a scratch LV in a VG the driver made."""
    vg = sorted(csitest.vgs())[0]
    tools = {k: [] for k in ["lvcreate", "mkfs.ext4", "mount -o dax", "umount", "lvremove"]}
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt)
    for i in range(ROUNDS):
        lv = "tool%d" % i
        dev = "/dev/%s/%s" % (vg, lv)
        tools["lvcreate"].append(timed(sh, "lvcreate", "-y", "-Zn", "-L", "%db" % SIZE, "-n", lv, vg)[1])
        tools["mkfs.ext4"].append(timed(sh, "mkfs.ext4", "-q", "-F", "-b", "4096", "-E",
                                        "stride=512,stripe_width=512", dev)[1])
        tools["mount -o dax"].append(timed(sh, "mount", "-o", "dax", dev, mnt)[1])
        tools["umount"].append(timed(sh, "umount", mnt)[1])
        tools["lvremove"].append(timed(sh, "lvremove", "-y", "%s/%s" % (vg, lv))[1])
    res["tools"] = tools
    for k, xs in tools.items():
        emit(phase="tools", mode="lvm", tool=k, size_mib=SIZE >> 20, n=len(xs), median_s=round(med(xs), 4))


def report(results):
    modes = [m for m in MODES if m in results]
    f3 = lambda x: "%.3f" % x if x == x else ""  # noqa: E731 (nan -> empty cell)

    if "latency" in PHASES:
        tools = results.get("lvm", {}).get("tools", {})
        tool_for = {"CreateVolume": "%s lvcreate" % f3(med(tools.get("lvcreate", []))),
                    "NodeStageVolume": "%s mkfs.ext4 + %s mount -o dax" % (
                        f3(med(tools.get("mkfs.ext4", []))), f3(med(tools.get("mount -o dax", [])))),
                    "NodeUnstageVolume": "%s umount" % f3(med(tools.get("umount", []))),
                    "DeleteVolume (eraseafter=false)": "%s lvremove" % f3(med(tools.get("lvremove", [])))}
        print("\n### Per step, %d MiB ext4 volume, median of %d (seconds)\n" % (SIZE >> 20, ROUNDS))
        print("| step | " + " | ".join(modes) + " | LVM tools alone |")
        print("| --- |" + " --- |" * (len(modes) + 1))
        keys = [k for k in ["CreateVolume", "NodeStageVolume", "NodePublishVolume", "NodeUnpublishVolume",
                            "NodeUnstageVolume", "DeleteVolume (eraseafter=false)",
                            "DeleteVolume (eraseafter=true)", "GetCapacity", "Probe"]]
        for k in keys:
            cells = [f3(med(results[m].get("latency", {}).get(k, []))) for m in modes]
            print("| %s | %s | %s |" % (k, " | ".join(cells), tool_for.get(k, "") if tools else ""))
        print("| start to first ready Probe (fresh regions) | %s | |" %
              " | ".join("%.1f" % results[m]["ready"] for m in modes))

    if "erase" in PHASES:
        print("\n### Erasing one volume, same space (median of %d; DeleteVolume includes "
              "removing the volume)\n" % ERASE_ROUNDS)
        print("| mode | method | MiB | seconds | MiB/s |")
        print("| --- | --- | --- | --- | --- |")
        for m in modes:
            e = results[m].get("erase")
            if not e:
                continue
            for k, (s, rate) in e["rows"].items():
                print("| %s | %s | %.0f | %.3f | %s |" % (m, k, e["device_mib"], s,
                                                         "%.0f" % rate if rate else ""))
            if not e["same_space"]:
                print("| %s | (the eraseafter=true volume did NOT land on the same space) | | | |" % m)

    if "throughput" in PHASES:
        print("\n### Lifecycle throughput, %d MiB ext4 volumes, eraseafter=false "
              "(%d lifecycles per worker; per-step medians in seconds)\n" % (TP_SIZE >> 20, LOAD_VOLUMES))
        print("| mode | workers | volumes | wall s | volumes/s | lifecycle | " +
              " | ".join(s.replace("Volume", "").replace("Node", "") for s in STEPS) + " |")
        print("| --- " * (6 + len(STEPS)) + "|")
        for m in modes:
            for t in results[m].get("throughput", []):
                print("| %s | %d | %d | %.1f | %.3f | %.2f | %s |" % (
                    m, t["workers"], t["volumes"], t["wall"], t["volumes"] / t["wall"], med(t["totals"]),
                    " | ".join(f3(med(t["steps"][s])) for s in STEPS)))

    print("\n### Resident memory of the driver (VmRSS, MiB)\n")
    print("| when | " + " | ".join(modes) + " |")
    print("| --- |" + " --- |" * len(modes))
    rows = {}
    for m in modes:
        for when, kib in results[m].get("rss", []):
            rows.setdefault(when, {})[m] = kib
    for when, per in rows.items():
        print("| %s | %s |" % (when, " | ".join("%.1f" % (per[m] / 1024) if m in per else "" for m in modes)))


def main():
    work = tempfile.mkdtemp(prefix="bench.")
    results = {}
    t_all = time.monotonic()
    emit(phase="config", modes=MODES, phases=PHASES, rounds=ROUNDS, size_mib=SIZE >> 20,
         erase_rounds=ERASE_ROUNDS, erase_mib=ERASE_SIZE >> 20, tp_mib=TP_SIZE >> 20,
         workers=WORKERS, load_volumes=LOAD_VOLUMES, guest_cpus=os.cpu_count())
    for mode in MODES:
        b = ModeBench(mode, work)
        res = results[mode] = {}
        t0 = time.monotonic()
        res["ready"] = b.start()
        progress("%s: driver ready after %.1f s" % (mode, res["ready"]))
        emit(phase="start", mode=mode, ready_s=round(res["ready"], 2))
        time.sleep(1)
        b.memory(res, "idle after start")
        try:
            if "latency" in PHASES:
                b.latency(res)
                b.memory(res, "after %d serial lifecycles of %d MiB" % (2 * ROUNDS, SIZE >> 20))
            if "erase" in PHASES:
                b.erase(res)
            if "throughput" in PHASES:
                b.throughput(res)
                b.memory(res, "after the throughput runs")
        except Exception:
            rc = b.drv.proc.poll() if b.drv.proc else None
            progress("%s: failed; the driver %s; its log ends:\n%s" % (
                mode, "is still running" if rc is None else "exited with status %s" % rc,
                b.drv.log_tail(40)))
            raise
        finally:
            b.stop()
        if mode == "lvm" and "tools" in PHASES:
            tools_alone(res, work)
        progress("%s: done in %.0f s" % (mode, time.monotonic() - t0))
    csitest.wipe_devices()
    report(results)
    print("\nbench total: %.0f s in the guest" % (time.monotonic() - t_all))


if __name__ == "__main__":
    main()
