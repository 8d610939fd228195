#!/usr/bin/python3
"""startup.py - exec to first ready Probe with existing volumes, against one `lvs` run.
Runs INSIDE the QEMU guest (bench/startup.sh starts it); it destroys every namespace and
volume group it finds.

LVM mode, on freshly wiped regions: STARTUP_VOLUMES (10) volumes of 16 MiB are created by
our driver and left in place; then STARTUP_STARTS (7) rounds, each: `lvs` (the columns a
driver needs) timed alone, then every driver of the run started once and timed from exec
to the first Probe that answers ready (the order alternates by round). A driver is polled
with connect(2) every 5 ms until its socket accepts, then with Probe every
STARTUP_PROBE_INTERVAL (0.01) s. Drivers: PMEM_CSI_DRIVER ("ours"), and STARTUP_BASELINE
("baseline", e.g. an older build of ours) when set. Each start logs at -v=6; the timeline
of ours' middle start is printed (the driver logs every tool run with its duration).
Output: "# " progress lines, one "STARTUP {json}" line per round and one per driver.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lifecycle as lc  # noqa: E402  (stubs, csitest, ModeBench)

pb, csitest = lc.pb, lc.csitest
import grpc  # noqa: E402

STARTS = int(os.environ.get("STARTUP_STARTS", "7"))
VOLUMES = int(os.environ.get("STARTUP_VOLUMES", "10"))
PROBE_INTERVAL = float(os.environ.get("STARTUP_PROBE_INTERVAL", "0.01"))
LVS = ["lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o",
       "lv_name,vg_name,lv_size,lv_path,lv_attr"]
WORK = "/dev/shm/startup"  # the guest's tmpfs, as a node's local disk (its /tmp is 9p)


def start(binary, state_dir, log_path, timeout=120):
    sock = os.path.join(WORK, "csi.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    argv = [binary, "-mode=node", "-deviceManager=lvm", "-drivername=pmem-csi.intel.com",
            "-nodeid=bench-node", "-endpoint=unix://" + sock, "-statePath=" + state_dir, "-v=6"]
    with open(log_path, "w") as log:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=log, stderr=log, env=csitest.LVM_ENV)
        try:
            while not csitest.socket_accepts(sock):
                if p.poll() is not None or time.monotonic() - t0 > timeout:
                    raise RuntimeError("%s: no socket (exit status %s)" % (binary, p.returncode))
                time.sleep(0.005)
            ch = grpc.insecure_channel("unix://" + sock)
            stub = csitest.Stub(ch)
            while True:
                r = stub.Probe(pb.ProbeRequest(), timeout=5, wait_for_ready=True)
                if not r.HasField("ready") or r.ready.value:
                    break
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError("%s: not ready after %d s" % (binary, timeout))
                time.sleep(PROBE_INTERVAL)
            t = time.monotonic() - t0
            ch.close()
        finally:
            p.terminate()
            p.wait()
    return t


def timeline(log_path, n=40):
    """The log's lines with their offset from the first one (Probe lines left out)."""
    out = []
    first = None
    for line in open(log_path):
        parts = line.split()
        if len(parts) < 3 or not line.startswith("I") or '"Probe"' in line or "ownership.c" in line:
            continue
        h, m, s = parts[1].split(":")
        t = int(h) * 3600 + int(m) * 60 + float(s)
        first = t if first is None else first
        out.append("+%.3f %s" % (t - first, " ".join(parts[3:])[:160]))
    return out[:n]


def main():
    drivers = {"ours": os.environ.get("PMEM_CSI_DRIVER", csitest.DRIVER)}
    if os.environ.get("STARTUP_BASELINE"):
        drivers["baseline"] = os.environ["STARTUP_BASELINE"]
    os.makedirs(WORK, exist_ok=True)
    b = lc.ModeBench("lvm", WORK)
    b.start()
    for i in range(VOLUMES):
        b.create("keep-%d" % i, 16 << 20, False)
    b.stop()
    state = b.drv.state_dir
    lvs, ready = [], {k: [] for k in drivers}
    names = list(drivers)
    for k in range(STARTS):
        t0 = time.monotonic()
        subprocess.run(LVS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=csitest.LVM_ENV, check=True)
        lvs.append(time.monotonic() - t0)
        order = names if k % 2 == 0 else names[::-1]
        row = {"round": k + 1, "lvs": round(lvs[-1], 3)}
        for name in order:
            t = start(drivers[name], state, os.path.join(WORK, "log-%s-%d" % (name, k)))
            ready[name].append(t)
            row[name] = round(t, 3)
        print("STARTUP " + json.dumps(row), flush=True)
    L = statistics.median(lvs)
    print("STARTUP " + json.dumps({"what": "lvs alone", "median": round(L, 3),
                                   "seconds": [round(x, 3) for x in lvs]}))
    for name in names:
        m = statistics.median(ready[name])
        print("STARTUP " + json.dumps({"what": "exec to ready Probe", "driver": name, "volumes": VOLUMES,
                                       "median": round(m, 3), "ratio_to_lvs": round(m / L, 2),
                                       "seconds": [round(x, 3) for x in ready[name]]}))
    print("# timeline of ours' start %d (-v=6, seconds from its first log line):" % (STARTS // 2 + 1))
    for line in timeline(os.path.join(WORK, "log-ours-%d" % (STARTS // 2))):
        print("#   " + line)
    csitest.wipe_devices()


if __name__ == "__main__":
    main()
