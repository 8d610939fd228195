"""StorageClass parameters, volume context, state files and topology."""

import json
import mmap
import os

from csitest import (C, LVM_ENV, MiB, NODE_ID, TOPOLOGY_KEY, DriverTestCase, lvs, mount_cap,
                     mounts_at, pb, run, volume_id)


class Parameters(DriverTestCase):
    group = "parameters"

    def create_code(self, name, params):
        return self.create(name, 8 * MiB, params=params, check=False)

    def test_unknown_key(self):
        code, details, _ = self.create_code("param-unknown", {"eraseafter": "false", "fooBar": "1"})
        self.assertEqual(code, C.INVALID_ARGUMENT, "unknown parameter fooBar: got %s %r"
                         % (code.name if code else "OK", details))
        self.assertIn("fooBar", details, "the error does not name the key")
        self.assertNotIn(volume_id("param-unknown"), lvs())

    def test_bad_values(self):
        bad = []
        for key, value in [("eraseafter", "maybe"), ("kataContainers", "maybe"),
                           ("usage", "Bogus"), ("persistencyModel", "cached"),
                           ("cacheSize", "2")]:
            name = "param-bad-%s" % key.lower()
            code, details, _ = self.create_code(name, {key: value})
            if code != C.INVALID_ARGUMENT:
                bad.append("%s=%s: %s %r" % (key, value, code.name if code else "OK", details))
                if code is None:
                    self.delete(volume_id(name))
        self.assertFalse(bad, "expected INVALID_ARGUMENT:\n" + "\n".join(bad))

    def test_good_values(self):
        bad = []
        for i, params in enumerate([{"eraseafter": "true"}, {"eraseafter": "false"},
                                    {"eraseAfter": "false"}, {"kataContainers": "false"},
                                    {"usage": "AppDirect"}, {"usage": "FileIO"},
                                    {"persistencyModel": "normal"}, {"persistencyModel": "none"},
                                    {"eraseafter": "false", "usage": "AppDirect",
                                     "persistencyModel": "normal", "kataContainers": "false"}]):
            code, details, resp = self.create_code("param-good-%d" % i, params)
            if code is not None:
                bad.append("%s: %s %r" % (params, code.name, details))
            else:
                self.delete(resp.volume.volume_id)
        self.assertFalse(bad, "valid parameters refused:\n" + "\n".join(bad))

    def test_state_file_content(self):
        """Upstream's format: {"id": ..., "size": ..., "parameters": {...}} (drop-in upgrade)."""
        params = {"eraseafter": "false", "usage": "AppDirect"}
        vol = self.create("param-state", 12 * MiB, params=params)
        with open(self.state_file(vol.volume_id)) as f:
            st = json.load(f)
        self.assertEqual(st.get("id"), vol.volume_id, "state file: %s" % st)
        self.assertGreaterEqual(int(st.get("size", 0)), 12 * MiB, "state file: %s" % st)
        for k, v in params.items():
            self.assertEqual(st.get("parameters", {}).get(k), v, "state file: %s" % st)
        self.delete(vol.volume_id)

    def test_create_returns_topology(self):
        vol = self.create("param-topology", 8 * MiB)
        segs = [dict(t.segments) for t in vol.accessible_topology]
        self.delete(vol.volume_id)
        self.assertEqual(segs, [{TOPOLOGY_KEY: NODE_ID}], "accessible_topology of the new volume")

    def test_fileio_mounts_without_dax(self):
        vol = self.create("param-fileio", 16 * MiB, params={"usage": "FileIO"})
        staging = self.stage(vol.volume_id)
        ms = mounts_at(staging)
        self.unstage(vol.volume_id, staging)
        self.delete(vol.volume_id)
        self.assertEqual(len(ms), 1, "mounts: %s" % ms)
        self.assertFalse([o for o in ms[0][3] if o.startswith("dax")],
                         "usage=FileIO mounted with dax: %s" % ",".join(ms[0][3]))

    def test_stage_with_empty_context_uses_dax(self):
        """csi-sanity stages with an empty volume context: the default usage (AppDirect) still applies."""
        vol = self.create("param-emptyctx", 16 * MiB)
        staging = self.stage(vol.volume_id, context={})
        ms = mounts_at(staging)
        self.unstage(vol.volume_id, staging)
        self.delete(vol.volume_id)
        self.assertEqual(len(ms), 1, "mounts: %s" % ms)
        self.assertIn("dax=always", ms[0][3], "mounted without dax: %s" % ",".join(ms[0][3]))

    def test_eraseafter_true_erases(self):
        """DeleteVolume with eraseafter=true zeroes the data where the LV was."""
        marker = b"PMEM-CSI-ERASE-MARKER-"
        vol = self.create("param-erase", 16 * MiB, params={"eraseafter": "true"})
        staging = self.stage(vol.volume_id)
        with open(os.path.join(staging, "secret"), "wb") as f:
            f.write(marker * (4 * MiB // len(marker)))
            os.fsync(f.fileno())
        where = lv_location(vol.volume_id)
        self.unstage(vol.volume_id, staging)
        self.assertTrue(find_on_pv(marker, *where), "test error: marker not found before the delete")
        self.delete(vol.volume_id)
        self.assertFalse(find_on_pv(marker, *where),
                         "data of a deleted eraseafter=true volume is still on %s" % where[0])


    def test_kubelet_volume_context_accepted(self):
        """What kubelet really sends: the PV's attributes plus, on publish, pod info."""
        vol = self.create("param-kubelet-ctx", 16 * MiB, params={"eraseafter": "true"})
        ctx = dict(vol.volume_context)
        ctx["storage.kubernetes.io/csiProvisionerIdentity"] = "1700000000000-8081-pmem-csi.intel.com"
        staging = self.stage(vol.volume_id, context=ctx)
        pod = dict(ctx, **{"csi.storage.k8s.io/pod.name": "app-0",
                           "csi.storage.k8s.io/pod.namespace": "default",
                           "csi.storage.k8s.io/pod.uid": "0c5b8a8e-7d1c-4a5e-9a51-4f2f3a1b7c11",
                           "csi.storage.k8s.io/serviceAccount.name": "default",
                           "csi.storage.k8s.io/ephemeral": "false"})
        target = self.path("kubelet-ctx", "mount")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        self._track(vol.volume_id)["targets"].add(target)
        self.expect(None, self.c.NodePublishVolume,
                    pb.NodePublishVolumeRequest(volume_id=vol.volume_id, staging_target_path=staging,
                                                target_path=target, volume_capability=mount_cap(),
                                                volume_context=pod),
                    "NodePublishVolume with kubelet's pod info in the volume context")
        self.unpublish(vol.volume_id, target)
        self.unstage(vol.volume_id, staging)
        self.delete(vol.volume_id)


def lv_location(vid):
    """(pv device, byte offset, length) of a single-segment LV."""
    out = run(["lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
               "-o", "lv_name,seg_pe_ranges,vg_extent_size", "-S", "lv_name=" + vid], env=LVM_ENV)
    lv = json.loads(out)["report"][0]["lv"][0]
    pv, rng = lv["seg_pe_ranges"].split()[0].rsplit(":", 1)
    first, last = (int(x) for x in rng.split("-"))
    ext = int(lv["vg_extent_size"])
    out = run(["pvs", "--reportformat", "json", "--units", "b", "--nosuffix",
               "-o", "pv_name,pe_start", pv], env=LVM_ENV)
    pe_start = int(json.loads(out)["report"][0]["pv"][0]["pe_start"])
    return pv, pe_start + first * ext, (last - first + 1) * ext


def find_on_pv(marker, pv, offset, length):
    """Read with O_DIRECT: the page cache of the PV knows nothing of writes through the LV."""
    buf = mmap.mmap(-1, length)  # page aligned, as O_DIRECT wants
    fd = os.open(pv, os.O_RDONLY | os.O_DIRECT)
    try:
        n = os.preadv(fd, [buf], offset)
        return buf.find(marker, 0, n) >= 0
    finally:
        os.close(fd)
        buf.close()
