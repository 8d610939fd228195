#!/usr/bin/python3
"""demo.py - the driver's lifecycle on emulated PMEM, through its real gRPC API.

Runs inside the QEMU guest (scripts/demo.sh starts it): starts pmem-csi-driver in
LVM mode, creates a volume, stages and publishes it like kubelet would, shows that
the filesystem is mounted with DAX, writes and reads a file, cleans up, and prints
a summary with the time each step took.
"""
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.environ.get("PMEM_CSI_DRIVER", os.path.join(REPO, "build", "pmem-csi-driver"))


def sh(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def main():
    stubs = tempfile.mkdtemp(prefix="demo-stubs.")
    sh("protoc", "-I", os.path.join(REPO, "proto"), "-I", "/usr/include", "--python_out=" + stubs,
       "--grpc_python_out=" + stubs, "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
       os.path.join(REPO, "proto", "csi.proto"))
    sys.path.insert(0, stubs)
    import grpc
    import csi_pb2 as pb
    import csi_pb2_grpc as rpc

    print("== preparing the emulated NVDIMMs (fresh label areas)")
    sh("ndctl", "disable-region", "all")
    sh("ndctl", "init-labels", "-f", "all")
    sh("ndctl", "enable-region", "all")

    work = tempfile.mkdtemp(prefix="pmem-csi-demo.")
    sock = os.path.join(work, "csi.sock")
    log = open(os.path.join(work, "driver.log"), "w+")
    print("== starting %s -deviceManager=lvm" % DRIVER)
    t0 = time.monotonic()
    drv = subprocess.Popen([DRIVER, "-mode=node", "-deviceManager=lvm", "-nodeid=demo-node",
                            "-endpoint=unix://" + sock, "-statePath=" + os.path.join(work, "state"), "-v=2"],
                           stderr=log)
    ch = grpc.insecure_channel("unix://" + sock)
    ident, ctrl, node = rpc.IdentityStub(ch), rpc.ControllerStub(ch), rpc.NodeStub(ch)
    while True:
        try:
            if ident.Probe(pb.ProbeRequest(), timeout=5).ready.value:
                break
        except grpc.RpcError:
            pass
        if drv.poll() is not None or time.monotonic() - t0 > 120:
            log.seek(0)
            print(log.read())
            raise SystemExit("driver did not become ready")
        time.sleep(0.1)
    steps = [("start to ready", time.monotonic() - t0)]
    log.seek(0)
    print("   " + [l for l in log.read().splitlines() if "PMEM-CSI ready" in l][0])

    def step(name, fn):
        s = time.monotonic()
        r = fn()
        steps.append((name, time.monotonic() - s))
        return r

    cap = pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(fs_type="ext4"),
                              access_mode=pb.VolumeCapability.AccessMode(mode=1))
    before = ctrl.GetCapacity(pb.GetCapacityRequest())
    print("== GetCapacity: available %d MiB, maximum volume size %d MiB" %
          (before.available_capacity >> 20, before.maximum_volume_size.value >> 20))
    vol = step("CreateVolume", lambda: ctrl.CreateVolume(pb.CreateVolumeRequest(
        name="pvc-demo-0001", capacity_range=pb.CapacityRange(required_bytes=1 << 30),
        volume_capabilities=[cap], parameters={"eraseafter": "true"}))).volume
    print("== CreateVolume: id %s, %d MiB, topology %s" %
          (vol.volume_id, vol.capacity_bytes >> 20, dict(vol.accessible_topology[0].segments)))
    print("   LV: " + sh("lvs", "--noheadings", "-o", "vg_name,lv_name,lv_size").strip())
    staging, target = os.path.join(work, "staging"), os.path.join(work, "pod", "mount")
    os.makedirs(staging)
    step("NodeStageVolume", lambda: node.NodeStageVolume(pb.NodeStageVolumeRequest(
        volume_id=vol.volume_id, staging_target_path=staging, volume_capability=cap,
        volume_context=vol.volume_context)))
    step("NodePublishVolume", lambda: node.NodePublishVolume(pb.NodePublishVolumeRequest(
        volume_id=vol.volume_id, staging_target_path=staging, target_path=target, volume_capability=cap,
        volume_context=vol.volume_context)))
    mounts = [l for l in open("/proc/mounts") if target in l or staging in l]
    print("== /proc/mounts:")
    for l in mounts:
        print("   " + l.strip())
    dax = all("dax=always" in l for l in mounts) and len(mounts) == 2
    data = os.urandom(1 << 20)
    with open(os.path.join(target, "hello.bin"), "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    with open(os.path.join(target, "hello.bin"), "rb") as f:
        same = f.read() == data
    print("== wrote and read back 1 MiB through the pod's mount: %s" % ("identical" if same else "DIFFERENT"))
    step("NodeUnpublishVolume", lambda: node.NodeUnpublishVolume(pb.NodeUnpublishVolumeRequest(
        volume_id=vol.volume_id, target_path=target)))
    step("NodeUnstageVolume", lambda: node.NodeUnstageVolume(pb.NodeUnstageVolumeRequest(
        volume_id=vol.volume_id, staging_target_path=staging)))
    step("DeleteVolume (erase 1 GiB)", lambda: ctrl.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vol.volume_id)))
    after = ctrl.GetCapacity(pb.GetCapacityRequest())
    left = sh("lvs", "--noheadings", "-o", "lv_name").split()
    drv.terminate()
    drv.wait(timeout=60)

    print("\n== summary")
    for name, secs in steps:
        print("   %-28s %6.3f s" % (name, secs))
    ok = dax and same and not left and after.available_capacity == before.available_capacity
    print("   DAX on (dax=always)         %s" % ("yes" if dax else "NO"))
    print("   data read back              %s" % ("yes" if same else "NO"))
    print("   LVs left after delete       %d" % len(left))
    print("   capacity restored           %s" % ("yes" if after.available_capacity == before.available_capacity else "NO"))
    print("   driver stopped cleanly      %s" % ("yes" if drv.returncode == 0 else "NO (%d)" % drv.returncode))
    print("DEMO %s" % ("PASSED" if ok and drv.returncode == 0 else "FAILED"))
    return 0 if ok and drv.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
