"""Identity service, capabilities and NodeGetInfo."""

from csitest import DRIVER_NAME, NODE_ID, TOPOLOGY_KEY, DriverTestCase, pb

PluginCap = pb.PluginCapability.Service
CtrlCap = pb.ControllerServiceCapability.RPC
NodeCap = pb.NodeServiceCapability.RPC


class Identity(DriverTestCase):
    group = "identity"

    def test_get_plugin_info(self):
        r = self.expect(None, self.c.GetPluginInfo, pb.GetPluginInfoRequest(), "GetPluginInfo")
        self.assertEqual(r.name, DRIVER_NAME)
        self.assertTrue(r.vendor_version, "GetPluginInfo: empty vendor_version")

    def test_plugin_capabilities(self):
        r = self.expect(None, self.c.GetPluginCapabilities, pb.GetPluginCapabilitiesRequest(),
                        "GetPluginCapabilities")
        caps = {c.service.type for c in r.capabilities if c.HasField("service")}
        want = {PluginCap.CONTROLLER_SERVICE, PluginCap.VOLUME_ACCESSIBILITY_CONSTRAINTS}
        self.assertEqual(caps, want, "plugin capabilities %s, want %s" % (
            sorted(PluginCap.Type.Name(c) for c in caps), sorted(PluginCap.Type.Name(c) for c in want)))

    def test_probe_ready(self):
        r = self.expect(None, self.c.Probe, pb.ProbeRequest(), "Probe")
        ready = r.ready.value if r.HasField("ready") else "unset"
        self.assertTrue(ready is True, "Probe of a ready driver: ready=%s" % ready)

    def test_controller_capabilities(self):
        r = self.expect(None, self.c.ControllerGetCapabilities, pb.ControllerGetCapabilitiesRequest(),
                        "ControllerGetCapabilities")
        caps = {c.rpc.type for c in r.capabilities}
        # LVM mode (this group's driver): expansion, snapshots and clones too
        # (direct mode leaves EXPAND_VOLUME out: test_expand.py checks that).
        want = {CtrlCap.CREATE_DELETE_VOLUME, CtrlCap.LIST_VOLUMES, CtrlCap.GET_CAPACITY,
                CtrlCap.EXPAND_VOLUME, CtrlCap.CREATE_DELETE_SNAPSHOT, CtrlCap.LIST_SNAPSHOTS,
                CtrlCap.CLONE_VOLUME}
        self.assertEqual(caps, want, "controller capabilities %s, want %s" % (
            sorted(CtrlCap.Type.Name(c) for c in caps), sorted(CtrlCap.Type.Name(c) for c in want)))

    def test_node_capabilities(self):
        r = self.expect(None, self.c.NodeGetCapabilities, pb.NodeGetCapabilitiesRequest(),
                        "NodeGetCapabilities")
        caps = {c.rpc.type for c in r.capabilities}
        self.assertEqual(caps, {NodeCap.STAGE_UNSTAGE_VOLUME, NodeCap.GET_VOLUME_STATS, NodeCap.VOLUME_CONDITION,
                                NodeCap.EXPAND_VOLUME},
                         "node capabilities %s" %
                         sorted(NodeCap.Type.Name(c) for c in caps))

    def test_node_get_info(self):
        r = self.expect(None, self.c.NodeGetInfo, pb.NodeGetInfoRequest(), "NodeGetInfo")
        self.assertEqual(r.node_id, NODE_ID)
        self.assertEqual(dict(r.accessible_topology.segments), {TOPOLOGY_KEY: NODE_ID})

    def test_version_matches_flag(self):
        from test_startup import run_driver
        r = self.expect(None, self.c.GetPluginInfo, pb.GetPluginInfoRequest(), "GetPluginInfo")
        p = run_driver(["-version"])
        self.assertIn(r.vendor_version, p.stdout + p.stderr,
                      "GetPluginInfo vendor_version %r not in the -version output %r"
                      % (r.vendor_version, (p.stdout + p.stderr).strip()))


class IdentityOtherName(DriverTestCase):
    """-drivername and -nodeid show up in GetPluginInfo and the topology key."""

    group = "identity-drivername"
    driver_kwargs = {"drivername": "pmem.example.org", "nodeid": "worker-7"}

    def test_plugin_name(self):
        r = self.expect(None, self.c.GetPluginInfo, pb.GetPluginInfoRequest(), "GetPluginInfo")
        self.assertEqual(r.name, "pmem.example.org")

    def test_topology_key(self):
        r = self.expect(None, self.c.NodeGetInfo, pb.NodeGetInfoRequest(), "NodeGetInfo")
        self.assertEqual(r.node_id, "worker-7")
        self.assertEqual(dict(r.accessible_topology.segments), {"pmem.example.org/node": "worker-7"})
