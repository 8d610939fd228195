#!/usr/bin/python3
"""lean.py - the driver's memory over many lifecycles and its start-up time with
existing volumes. Runs INSIDE the QEMU guest (bench/lean.sh starts it); it destroys
every namespace and volume group it finds.

LVM mode (LEAN_MODES, default "lvm"), on freshly wiped regions:
  memory   VmRSS, RssAnon, RssFile and Threads of the driver from /proc/PID/status,
           idle and after each count in LEAN_CHECKPOINTS (default "10 40 80") of
           lifecycles of a LEAN_MIB (32) MiB ext4 volume (create, stage, publish,
           unpublish, unstage, delete; eraseafter=false); the largest mappings from smaps
           at the end
  start-up with LEAN_VOLUMES (10) volumes left in place: the driver is stopped and
           started LEAN_STARTS (3) times; time from exec to the first ready Probe
           (polled every LEAN_PROBE_INTERVAL, 0.02 s, while the driver answers "not ready"),
           against `lvs` (the same report columns) run alone as often
Output: "# " progress lines and one "LEAN {json}" line per measurement.
"""
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lifecycle as lc  # noqa: E402  (stubs, csitest, ModeBench)

pb, csitest = lc.pb, lc.csitest
MiB = 1 << 20
CHECKPOINTS = [int(x) for x in os.environ.get("LEAN_CHECKPOINTS", "10 40 80").split()]
SIZE = int(os.environ.get("LEAN_MIB", "32")) * MiB
VOLUMES = int(os.environ.get("LEAN_VOLUMES", "10"))
STARTS = int(os.environ.get("LEAN_STARTS", "3"))
MODES = os.environ.get("LEAN_MODES", "lvm").split()
# Seconds between Probes while the driver is not ready: the start-up time is known to this
# resolution (each Probe costs the guest CPU too).
PROBE_INTERVAL = float(os.environ.get("LEAN_PROBE_INTERVAL", "0.02"))


def emit(**kw):
    print("LEAN " + json.dumps(kw, sort_keys=True), flush=True)


def status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "Threads"):
                out[k] = int(v.split()[0])
    return out


def smaps_top(pid, n=8):
    maps, cur = [], None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and ":" not in parts[0]:
                cur = [parts[5] if len(parts) > 5 else "[anon]", 0]
                maps.append(cur)
            elif parts[0] == "Rss:":
                cur[1] += int(parts[1])
    agg = {}
    for name, rss in maps:
        agg[name] = agg.get(name, 0) + rss
    return sorted(agg.items(), key=lambda x: -x[1])[:n]


def main():
    work = "/tmp/lean"
    os.makedirs(work, exist_ok=True)
    for mode in MODES:
        b = lc.ModeBench(mode, work)
        b.drv.probe_interval = PROBE_INTERVAL
        t = b.start()
        emit(mode=mode, what="ready, fresh regions", seconds=round(t, 3))
        pid = b.drv.proc.pid
        time.sleep(2)
        emit(mode=mode, what="memory", lifecycles=0, **status(pid))
        done = 0
        for cp in CHECKPOINTS:
            while done < cp:
                b.lifecycle("mem-%d" % done, SIZE, False)
                done += 1
            time.sleep(1)
            emit(mode=mode, what="memory", lifecycles=done, **status(pid))
        emit(mode=mode, what="smaps", top=smaps_top(pid))
        for i in range(VOLUMES):
            b.create("keep-%d" % i, SIZE, False)
        b.stop()
        if mode == "lvm":
            tl = []
            for _ in range(STARTS):
                t0 = time.monotonic()
                subprocess.run(["lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o",
                                "lv_name,vg_name,lv_size,lv_path,lv_attr"], env=lc.LVM_ENV,
                               stdout=subprocess.DEVNULL, check=True)
                tl.append(time.monotonic() - t0)
            emit(mode=mode, what="lvs alone", seconds=[round(x, 3) for x in tl],
                 median=round(statistics.median(tl), 3))
        ts = []
        for _ in range(STARTS):
            b.drv.start()
            ts.append(b.drv.ready_after)
            if len(ts) == 1:
                time.sleep(1)
                emit(mode=mode, what="memory after restart", volumes=VOLUMES, **status(b.drv.proc.pid))
            b.stop()
        emit(mode=mode, what="ready, existing volumes", volumes=VOLUMES,
             seconds=[round(x, 3) for x in ts], median=round(statistics.median(ts), 3))
    csitest.wipe_devices()


if __name__ == "__main__":
    main()
