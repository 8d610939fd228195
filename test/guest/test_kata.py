"""Kata Containers volumes in the guest, both device modes: the image file inside
the volume (MBR, nd_pfn_sb, filesystem at 2 MiB) checked byte by byte with code
written here independently of the driver, the loop mount at the target, sharing
between two targets, persistence across publishes, cleanup, and the ephemeral
variant. A copy of one image goes to RESULTS_DIR/kata/ so that
test/vm/run-kata-nvdimm.sh can boot a second guest with it as an NVDIMM, the way
Kata's QEMU uses it."""

import os
import shutil
import struct

import csi_pb2 as pb
from csitest import C, MiB, DriverTestCase, mount_cap, mounts_at, run, volume_id

from test_modes import DIRECT, block_cap, device_of

IMAGE = "kata-containers-pmem-csi-vm.img"
HEADER = 2 * MiB


def fletcher64(data):
    lo, hi = 0, 0
    for (w,) in struct.iter_unpack("<I", data):
        lo = (lo + w) & 0xFFFFFFFF
        hi = hi + lo
    return ((hi << 32) | lo) & 0xFFFFFFFFFFFFFFFF


def check_image(test, path):
    """The layout Kata's guest kernel expects; returns the image size."""
    size = os.path.getsize(path)
    test.assertEqual(size % HEADER, 0, "image size %d is not a multiple of 2 MiB" % size)
    with open(path, "rb") as f:
        head = f.read(8192)
    test.assertEqual(head[510:512], b"\x55\xaa", "no MBR signature")
    boot, ptype, first, count = head[446], head[450], *struct.unpack("<II", head[454:462])
    test.assertEqual((boot, ptype), (0, 0x83), "partition 1 is not a Linux partition")
    test.assertEqual(first * 512, HEADER, "the partition does not start at 2 MiB")
    test.assertEqual((first + count) * 512, size, "the partition does not end at the end of the file")
    sb = head[4096:8192]
    test.assertEqual(sb[:16], b"NVDIMM_PFN_INFO\0")
    minor, dataoff, _npfns, mode = struct.unpack("<HQQI", sb[54:76])
    align, = struct.unpack("<I", sb[84:88])
    test.assertEqual((minor, dataoff, mode, align), (2, HEADER, 1, HEADER))
    stored, = struct.unpack("<Q", sb[4088:4096])
    test.assertEqual(stored, fletcher64(sb[:4088] + bytes(8)), "nd_pfn_sb checksum is wrong")
    return size


def loop_of(target):
    """(loop device, backing file, offset) of the mount at target, or None."""
    m = mounts_at(target)
    if not m or not m[0][0].startswith("/dev/loop"):
        return None
    name = os.path.basename(m[0][0])
    with open("/sys/block/%s/loop/backing_file" % name) as f:
        backing = f.read().strip()
    with open("/sys/block/%s/loop/offset" % name) as f:
        offset = int(f.read())
    return m[0][0], backing, offset


def loops_over(path):
    res = []
    for name in os.listdir("/sys/block"):
        try:
            with open("/sys/block/%s/loop/backing_file" % name) as f:
                if f.read().strip().startswith(path):
                    res.append(name)
        except OSError:
            pass
    return res


class KataBase(DriverTestCase):
    mode = "lvm"

    def host_dir(self, vid):
        return os.path.join(type(self).state_dir, "mount", vid)

    def test_01_persistent(self):
        for fs, size in (("ext4", 128 * MiB), ("xfs", 700 * MiB)):
            name = "kata-%s-%s" % (self.mode, fs)
            vol = self.create(name, size, fs, params={"kataContainers": "true", "eraseafter": "false"})
            vid = vol.volume_id
            self.assertEqual(vol.volume_context.get("kataContainers"), "true")
            staging = self.stage(vid, fs=fs)
            t1 = self.publish(vid, staging, self.path(vid, "pod1", "mount"), fs=fs)
            t1b = self.publish(vid, staging, t1, fs=fs)  # idempotent
            image = os.path.join(self.host_dir(vid), IMAGE)
            lo = loop_of(t1)
            self.assertIsNotNone(lo, "target is not a loop mount: %s" % mounts_at(t1))
            self.assertEqual((lo[1], lo[2]), (image, HEADER))
            m = mounts_at(t1)[0]
            self.assertEqual(m[2], fs)
            isize = check_image(self, image)
            # Fully allocated: no holes for the VM to run into (SIGBUS on a DAX mapping).
            self.assertGreaterEqual(os.stat(image).st_blocks * 512, isize, "the image file has holes")
            # The image fills the volume's filesystem: little is left beside it.
            st = os.statvfs(staging)
            free = st.f_bfree * st.f_frsize
            self.assertLess(free, max(16 * MiB, isize // 24), "image of %d bytes leaves %d bytes free"
                            % (isize, free))
            self.assertEqual(run(["blkid", "-p", "-o", "value", "-s", "TYPE", "-O", str(HEADER), image]).strip(),
                             fs)
            with open(os.path.join(t1, "data"), "wb") as f:
                f.write(b"kata" * 1024)
            # A second pod on the node: same loop device.
            t2 = self.publish(vid, staging, self.path(vid, "pod2", "mount"), fs=fs, readonly=True)
            lo2 = loop_of(t2)
            self.assertEqual(lo2[0], lo[0], "second target got another loop device")
            self.assertIn("ro", mounts_at(t2)[-1][3])
            with open(os.path.join(t2, "data"), "rb") as f:
                self.assertEqual(f.read(), b"kata" * 1024)
            self.unpublish(vid, t2)
            self.assertTrue(os.path.exists(image), "host side released while another target uses it")
            self.unpublish(vid, t1b)
            self.unpublish(vid, t1b)
            self.assertEqual(loops_over(self.host_dir(vid)), [], "loop device left")
            self.assertFalse(os.path.exists(self.host_dir(vid)), "host mount dir left")
            # Published again: the same image with the data.
            t3 = self.publish(vid, staging, self.path(vid, "pod3", "mount"), fs=fs)
            with open(os.path.join(t3, "data"), "rb") as f:
                self.assertEqual(f.read(), b"kata" * 1024)
            if fs == "ext4" and os.environ.get("RESULTS_DIR"):
                out = os.path.join(os.environ["RESULTS_DIR"], "kata")
                os.makedirs(out, exist_ok=True)
                with open(os.path.join(t3, "kata-check"), "w") as f:
                    f.write("written through %s in mode %s\n" % (IMAGE, self.mode))
                self.unpublish(vid, t3)
                run(["cp", "--sparse=always", os.path.join(staging, IMAGE),
                     os.path.join(out, "%s-%s.img" % (self.mode, fs))])
            else:
                self.unpublish(vid, t3)
            self.unstage(vid, staging)
            self.delete(vid)
            self.assertIsNone(device_of(self, vid), "volume not deleted")
            self.assertEqual(loops_over(type(self).state_dir), [], "loop device left")

    def test_02_ephemeral(self):
        kid = "csi-" + ("kata%s" % self.mode).ljust(64, "0")
        target = self.path("eph", "mount")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        ctx = {"csi.storage.k8s.io/ephemeral": "true", "size": "100Mi", "kataContainers": "true",
               "csi.storage.k8s.io/pod.name": "kata-0", "csi.storage.k8s.io/pod.namespace": "default"}
        req = pb.NodePublishVolumeRequest(volume_id=kid, target_path=target, volume_capability=mount_cap(),
                                          volume_context=ctx)
        self.expect(None, self.c.NodePublishVolume, req, "ephemeral kata publish")
        self.expect(None, self.c.NodePublishVolume, req, "ephemeral kata publish again")
        lo = loop_of(target)
        self.assertIsNotNone(lo, "target is not a loop mount: %s" % mounts_at(target))
        host = self.host_dir(kid)
        self.assertEqual(lo[1], os.path.join(host, IMAGE))
        hm = mounts_at(host)
        self.assertTrue(hm and "dax=always" in hm[0][3], "host side not mounted with dax: %s" % hm)
        check_image(self, os.path.join(host, IMAGE))
        vid = volume_id(kid)
        self.assertIsNotNone(device_of(self, vid))
        self.unpublish(kid, target)
        self.unpublish(kid, target)
        self.assertIsNone(device_of(self, vid), "ephemeral volume not deleted")
        self.assertFalse(os.path.exists(host))
        self.assertEqual(loops_over(host), [])

    def test_03_rejected(self):
        self.expect(C.INVALID_ARGUMENT, self.c.CreateVolume,
                    pb.CreateVolumeRequest(name="kata-block", volume_capabilities=[block_cap()],
                                           parameters={"kataContainers": "true"}),
                    "kata + block", contains="kataContainers")
        self.expect(C.INVALID_ARGUMENT, self.c.CreateVolume,
                    pb.CreateVolumeRequest(name="kata-fileio", volume_capabilities=[mount_cap()],
                                           parameters={"kataContainers": "true", "usage": "FileIO"}),
                    "kata + FileIO", contains="kataContainers")

    def test_04_too_small_for_xfs(self):
        vol = self.create("kata-small-xfs", 350 * MiB, "xfs", params={"kataContainers": "true"})
        staging = self.stage(vol.volume_id, fs="xfs")
        target = self.path("small", "mount")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        self.expect(C.OUT_OF_RANGE, self.c.NodePublishVolume,
                    self.publish_req(vol.volume_id, staging, target, "xfs", context=dict(vol.volume_context)),
                    "kata xfs in 350 MiB", contains="xfs")
        self.assertFalse(os.path.exists(self.host_dir(vol.volume_id)), "failed publish left its host mount")
        self.assertEqual(loops_over(self.host_dir(vol.volume_id)), [])
        self.unstage(vol.volume_id, staging)
        self.delete(vol.volume_id)


class KataLVM(KataBase):
    group = "kata-lvm"


class KataDirect(KataBase):
    group = "kata-direct"
    mode = "direct"
    clean_devices = True
    driver_kwargs = DIRECT
