#!/usr/bin/python3
"""lifecycle.py - per-step latency of the driver against the external tools it runs,
and the driver's resident memory idle and under load. Runs INSIDE the QEMU guest
(bench/run.sh starts it). Prints a Markdown table.

Environment: PMEM_CSI_DRIVER, BENCH_ROUNDS (default 5), BENCH_SIZE_MIB (default 1024),
BENCH_LOAD_WORKERS (default 5), BENCH_LOAD_VOLUMES (default 4 per worker).
"""
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.environ.get("PMEM_CSI_DRIVER", os.path.join(REPO, "build", "pmem-csi-driver"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SIZE = int(os.environ.get("BENCH_SIZE_MIB", "1024")) << 20
LOAD_WORKERS = int(os.environ.get("BENCH_LOAD_WORKERS", "5"))
LOAD_VOLUMES = int(os.environ.get("BENCH_LOAD_VOLUMES", "4"))
LVM_ENV = dict(os.environ, LVM_SUPPRESS_FD_WARNINGS="1")


def sh(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=LVM_ENV).stdout


def timed(fn, *a, **kw):
    s = time.monotonic()
    r = fn(*a, **kw)
    return r, time.monotonic() - s


def rss_kib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main():
    stubs = tempfile.mkdtemp(prefix="bench-stubs.")
    sh("protoc", "-I", os.path.join(REPO, "proto"), "-I", "/usr/include", "--python_out=" + stubs,
       "--grpc_python_out=" + stubs, "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
       os.path.join(REPO, "proto", "csi.proto"))
    sys.path.insert(0, stubs)
    import grpc
    import csi_pb2 as pb
    import csi_pb2_grpc as rpc

    sh("ndctl", "disable-region", "all")
    sh("ndctl", "init-labels", "-f", "all")
    sh("ndctl", "enable-region", "all")
    work = tempfile.mkdtemp(prefix="bench.")
    sock = os.path.join(work, "csi.sock")
    log = open(os.path.join(work, "driver.log"), "w")
    t0 = time.monotonic()
    drv = subprocess.Popen([DRIVER, "-deviceManager=lvm", "-nodeid=bench", "-endpoint=unix://" + sock,
                            "-statePath=" + os.path.join(work, "state")], stderr=log)
    ch = grpc.insecure_channel("unix://" + sock)
    ident, ctrl, node = rpc.IdentityStub(ch), rpc.ControllerStub(ch), rpc.NodeStub(ch)
    while True:
        try:
            if ident.Probe(pb.ProbeRequest(), timeout=5).ready.value:
                break
        except grpc.RpcError:
            pass
        time.sleep(0.02)
    ready = time.monotonic() - t0
    time.sleep(1)
    rss_idle = rss_kib(drv.pid)

    cap = pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(fs_type="ext4"),
                              access_mode=pb.VolumeCapability.AccessMode(mode=1))
    steps = {k: [] for k in ["CreateVolume", "NodeStageVolume", "NodePublishVolume", "NodeUnpublishVolume",
                             "NodeUnstageVolume", "DeleteVolume (eraseafter=true)", "DeleteVolume (eraseafter=false)",
                             "GetCapacity", "Probe"]}

    def lifecycle(name, erase, record=True, size=SIZE):
        params = {"eraseafter": "true" if erase else "false"}
        v, t = timed(ctrl.CreateVolume, pb.CreateVolumeRequest(
            name=name, capacity_range=pb.CapacityRange(required_bytes=size), volume_capabilities=[cap],
            parameters=params))
        vid = v.volume.volume_id
        out = [("CreateVolume", t)]
        st, tg = os.path.join(work, name, "staging"), os.path.join(work, name, "target")
        os.makedirs(st, exist_ok=True)
        _, t = timed(node.NodeStageVolume, pb.NodeStageVolumeRequest(
            volume_id=vid, staging_target_path=st, volume_capability=cap))
        out.append(("NodeStageVolume", t))
        _, t = timed(node.NodePublishVolume, pb.NodePublishVolumeRequest(
            volume_id=vid, staging_target_path=st, target_path=tg, volume_capability=cap))
        out.append(("NodePublishVolume", t))
        _, t = timed(node.NodeUnpublishVolume, pb.NodeUnpublishVolumeRequest(volume_id=vid, target_path=tg))
        out.append(("NodeUnpublishVolume", t))
        _, t = timed(node.NodeUnstageVolume, pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=st))
        out.append(("NodeUnstageVolume", t))
        _, t = timed(ctrl.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid))
        out.append(("DeleteVolume (eraseafter=%s)" % ("true" if erase else "false"), t))
        if record:
            for k, t in out:
                steps[k].append(t)
        return out

    for i in range(ROUNDS):
        lifecycle("bench-%d" % i, erase=True)
        lifecycle("bench-noerase-%d" % i, erase=False)
        _, t = timed(ctrl.GetCapacity, pb.GetCapacityRequest())
        steps["GetCapacity"].append(t)
        _, t = timed(ident.Probe, pb.ProbeRequest())
        steps["Probe"].append(t)
    rss_after_serial = rss_kib(drv.pid)

    # Load: workers x volumes through the whole lifecycle at once; sample RSS meanwhile.
    peak = [0]
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(drv.pid))
            time.sleep(0.05)

    def worker(w):
        for j in range(LOAD_VOLUMES):
            lifecycle("load-%d-%d" % (w, j), erase=False, record=False, size=64 << 20)

    th = threading.Thread(target=sampler)
    th.start()
    s = time.monotonic()
    ws = [threading.Thread(target=worker, args=(w,)) for w in range(LOAD_WORKERS)]
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    load_secs = time.monotonic() - s
    stop.set()
    th.join()
    rss_after_load = rss_kib(drv.pid)
    drv.terminate()
    drv.wait()

    # The same operations with the tools alone, on a scratch LV in the driver's VG.
    vg = sh("vgs", "--noheadings", "-o", "vg_name").split()[0]
    tools = {k: [] for k in ["lvcreate", "mkfs.ext4", "mount -o dax", "umount", "zero (BLKZEROOUT)",
                             "lvremove", "shred -n 0 -z", "fallocate -z"]}
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
        tools["zero (BLKZEROOUT)"].append(timed(sh, "blkdiscard", "-f", "-z", dev)[1])
        tools["fallocate -z"].append(timed(sh, "fallocate", "-z", "-l", str(SIZE), dev)[1])
        if i < 2:  # slow
            tools["shred -n 0 -z"].append(timed(sh, "shred", "-n", "0", "-z", dev)[1])
        tools["lvremove"].append(timed(sh, "lvremove", "-y", "%s/%s" % (vg, lv))[1])

    med = lambda xs: statistics.median(xs) if xs else float("nan")
    print("\n### Lifecycle, %d MiB ext4 volume, LVM mode, median of %d (seconds)\n" % (SIZE >> 20, ROUNDS))
    print("| step | driver | tools alone |")
    print("| --- | --- | --- |")
    tool_for = {"CreateVolume": "lvcreate", "NodeStageVolume": "mkfs.ext4", "NodeUnstageVolume": "umount",
                "DeleteVolume (eraseafter=true)": "zero (BLKZEROOUT)", "DeleteVolume (eraseafter=false)": "lvremove"}
    for k, xs in steps.items():
        t = tool_for.get(k)
        extra = ""
        if k == "NodeStageVolume":
            extra = "%.3f (mkfs.ext4) + %.3f (mount -o dax)" % (med(tools["mkfs.ext4"]), med(tools["mount -o dax"]))
        elif k == "DeleteVolume (eraseafter=true)":
            extra = "%.3f (zero) + %.3f (lvremove)" % (med(tools["zero (BLKZEROOUT)"]), med(tools["lvremove"]))
        elif t:
            extra = "%.3f (%s)" % (med(tools[t]), t)
        print("| %s | %.4f | %s |" % (k, med(xs), extra))
    print("| start to first ready Probe | %.3f | |" % ready)
    print("\n### Erasing %d MiB in the guest (median, seconds)\n" % (SIZE >> 20))
    for k in ["zero (BLKZEROOUT)", "fallocate -z", "shred -n 0 -z"]:
        print("| %s | %.3f |" % (k, med(tools[k])))
    print("\n### Resident memory of the driver (VmRSS)\n")
    print("| when | MiB |")
    print("| --- | --- |")
    print("| idle after start | %.1f |" % (rss_idle / 1024))
    print("| after %d serial lifecycles | %.1f |" % (2 * ROUNDS, rss_after_serial / 1024))
    print("| peak under load (%d workers x %d lifecycles of 64 MiB) | %.1f |" % (LOAD_WORKERS, LOAD_VOLUMES, peak[0] / 1024))
    print("| after the load | %.1f |" % (rss_after_load / 1024))
    print("\nload: %d lifecycles in %.1f s = %.2f lifecycles/s" %
          (LOAD_WORKERS * LOAD_VOLUMES, load_secs, LOAD_WORKERS * LOAD_VOLUMES / load_secs))


if __name__ == "__main__":
    main()
