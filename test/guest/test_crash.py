"""Crash safety: SIGKILL the driver (and its children, as a container runtime
would) at random points inside CreateVolume, DeleteVolume, NodeStageVolume and
NodeUnstageVolume; restart it; retry the call as the CO would; then check that
no device leaked, no volume was lost, and state files, devices, ListVolumes and
mounts agree. CRASH_ITERATIONS (default 200) kills per device mode."""

import os
import random
import signal
import time

import csi_pb2 as pb
from csitest import MiB, DriverTestCase, log, lvs, mount_cap, mounts_at, regions, volume_id

ITERATIONS = int(os.environ.get("CRASH_ITERATIONS", "200"))
SEED = int(os.environ.get("CRASH_SEED", str(int(time.time()))))


def device_ids(mode):
    """Volume IDs that have a device (LV or namespace)."""
    if mode == "lvm":
        return {n for n, (vg, _) in lvs().items() if vg.endswith("fsdax")}
    ids = set()
    for r in regions():
        for ns in r.get("namespaces", []):
            name = ns.get("name", "")
            if len(name) > 57 and name[-57] == "-":
                ids.add(name)
    return ids


class CrashBase(DriverTestCase):
    mode = "lvm"
    clean_devices = True
    size = 16 * MiB

    def kill_and_restart(self):
        d = type(self).driver
        os.killpg(d.proc.pid, signal.SIGKILL)  # the driver and any mkfs/lvcreate it runs
        d.stop()
        d.start()

    def request(self, op, name, staging):
        vid = volume_id(name)
        if op == "CreateVolume":
            return pb.CreateVolumeRequest(name=name, volume_capabilities=[mount_cap("ext4")],
                                          capacity_range=pb.CapacityRange(required_bytes=self.size),
                                          parameters={"eraseafter": "true"})
        if op == "DeleteVolume":
            return pb.DeleteVolumeRequest(volume_id=vid)
        if op == "NodeStageVolume":
            return pb.NodeStageVolumeRequest(volume_id=vid, staging_target_path=staging,
                                             volume_capability=mount_cap("ext4"))
        return pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging)

    def check_consistent(self, state, staging, it):
        want = {volume_id(n) for n, s in state.items() if s != "absent"}
        devs = device_ids(self.mode)
        files = {f[:-5] for f in os.listdir(type(self).state_dir) if f.endswith(".json")}
        markers = [f for f in os.listdir(type(self).state_dir) if f.endswith(".creating") or f.endswith(".tmp")]
        listed = set(self.listed_ids())
        ctx = "iteration %d (seed %d)" % (it, SEED)
        self.assertEqual(devs, want, "%s: devices %s, expected %s" % (ctx, sorted(devs), sorted(want)))
        self.assertEqual(files, want, "%s: state files %s, expected %s" % (ctx, sorted(files), sorted(want)))
        self.assertEqual(listed, want, "%s: ListVolumes %s, expected %s" % (ctx, sorted(listed), sorted(want)))
        self.assertEqual(markers, [], "%s: leftover markers %s" % (ctx, markers))
        for n, s in state.items():
            self.assertEqual(bool(mounts_at(staging[n])), s == "staged", "%s: %s is %s but mounts say %s"
                             % (ctx, n, s, mounts_at(staging[n])))

    def test_01_random_kills(self):
        rng = random.Random(SEED)
        names = ["crash-%s-%d" % (self.mode, i) for i in range(3)]
        state = {n: "absent" for n in names}
        staging = {n: self.path(n, "staging") for n in names}
        for p in staging.values():
            os.makedirs(p, exist_ok=True)
        avg = {"CreateVolume": 1.0, "DeleteVolume": 1.0, "NodeStageVolume": 1.0, "NodeUnstageVolume": 0.2}
        counts = {k: [0, 0] for k in avg}  # op -> [kills, kills that landed while the call ran]
        t0 = time.monotonic()
        for it in range(ITERATIONS):
            n = rng.choice(names)
            s = state[n]
            op = {"absent": "CreateVolume", "staged": "NodeUnstageVolume"}.get(s) or \
                rng.choice(["NodeStageVolume", "DeleteVolume"])
            req = self.request(op, n, staging[n])
            fut = self.c.future(op, req)
            time.sleep(rng.uniform(0, 1.2 * avg[op]))
            landed = not fut.done()
            self.kill_and_restart()
            counts[op][0] += 1
            counts[op][1] += landed
            # The CO retries until the call succeeds; it must, at the first retry.
            t = time.monotonic()
            self.expect(None, getattr(self.c, op), req, "%s(%s) after a kill, iteration %d" % (op, n, it))
            avg[op] = 0.8 * avg[op] + 0.2 * (time.monotonic() - t)
            state[n] = {"CreateVolume": "created", "DeleteVolume": "absent", "NodeStageVolume": "staged",
                        "NodeUnstageVolume": "created"}[op]
            self.check_consistent(state, staging, it)
        log("crash %s: %d kills in %.0f s (seed %d); per call [kills, during the call]: %s"
            % (self.mode, ITERATIONS, time.monotonic() - t0, SEED, counts))
        landed = sum(v[1] for v in counts.values())
        self.assertGreater(landed, ITERATIONS // 4, "too few kills landed inside a call: %s" % counts)
        for n in names:  # clean up through the API
            if state[n] == "staged":
                self.unstage(volume_id(n), staging[n])
            if state[n] != "absent":
                self.delete(volume_id(n))
        self.assertEqual(device_ids(self.mode), set())


class CrashLVM(CrashBase):
    group = "crash-lvm"


class CrashDirect(CrashBase):
    group = "crash-direct"
    mode = "direct"
    driver_kwargs = {"extra_args": ["-deviceManager=direct"]}
