"""Cache volumes on two nodes, and the mutual-TLS peer channel between node drivers.

Two driver processes act as two nodes on the guest's PMEM: node-a in LVM mode with
-pmemPercentage=50 (its volume groups on half of each region) and node-b in direct mode
on the other half (a namespace per volume). They have their own node IDs, sockets and
state dirs, and know each other through -peers. The certificates are made here with
openssl: a CA, the node driver's certificate ("pmem-node-controller", as the operator
issues it), one for another role of the same CA ("pmem-registry"), one from another CA.
"""

import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time

import grpc

import csi_pb2 as pb
from csitest import (DriverTestCase, Driver, MiB, TOPOLOGY_KEY, C, code_name, lvs, log, mount_cap,
                     regions, rpc_code, short, socket_accepts, volume_id, umount_all_under, READY_TIMEOUT)

PEER_NAME = "pmem-node-controller"
PORT_A, PORT_B = 10011, 10012
CACHE2 = {"persistencyModel": "cache", "cacheSize": "2"}


def openssl(*args, input=None):
    p = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=120, input=input)
    if p.returncode != 0:
        raise AssertionError("openssl %s: %s" % (" ".join(args), p.stderr.strip()[-400:]))
    return p.stdout


class Certs:
    def __init__(self, d):
        self.d = d
        os.makedirs(d, exist_ok=True)
        self.ca = self.make_ca("ca")
        self.other_ca = self.make_ca("other-ca")
        self.node = self.make_cert("node", PEER_NAME, self.ca)
        self.registry = self.make_cert("registry", "pmem-registry", self.ca)
        self.foreign = self.make_cert("foreign", PEER_NAME, self.other_ca)

    def make_ca(self, name):
        key, crt = os.path.join(self.d, name + ".key"), os.path.join(self.d, name + ".crt")
        openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-subj", "/CN=" + name, "-days", "2", "-out", crt)
        return crt, key

    def make_cert(self, name, cn, ca):
        """As the operator issues them: the name as CN and DNS name, server and client use."""
        key, csr, crt, ext = (os.path.join(self.d, name + s) for s in (".key", ".csr", ".crt", ".ext"))
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n"
                    "subjectAltName=DNS:%s\n" % cn)
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                "-subj", "/CN=" + cn, "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-days", "2",
                "-sha256", "-extfile", ext, "-out", crt)
        return crt, key


class Node(Driver):
    """A driver with its own socket: one of the two "nodes"."""

    def __init__(self, name, state_dir, nodeid, socket_path, extra_args):
        super().__init__(name, state_dir, nodeid=nodeid, extra_args=extra_args + ["-endpoint=unix://" + socket_path])
        self.socket_path = socket_path

    def connect(self):
        if self.client:
            self.client.close()
        from csitest import Stub
        self.client = Stub(grpc.insecure_channel("unix://" + self.socket_path))

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("driver %s exited with status %s; log tail:\n%s"
                                     % (self.nodeid, self.proc.returncode, self.log_tail()))
            if socket_accepts(self.socket_path):
                try:
                    r = self.client.Probe(pb.ProbeRequest(), timeout=5, wait_for_ready=True)
                    if not r.HasField("ready") or r.ready.value:
                        self.ready_after = time.monotonic() - self.t_start
                        return
                except grpc.RpcError:
                    self.connect()
            time.sleep(0.1)
        raise AssertionError("driver %s not ready; log tail:\n%s" % (self.nodeid, self.log_tail()))


def create_req(name, params, size=64 * MiB):
    return pb.CreateVolumeRequest(name=name, capacity_range=pb.CapacityRange(required_bytes=size),
                                  volume_capabilities=[mount_cap("ext4")], parameters=params)


def topology_nodes(vol):
    return sorted(t.segments[TOPOLOGY_KEY] for t in vol.accessible_topology)


def namespaces_named(vid):
    return [ns for r in regions() for ns in r.get("namespaces", []) if ns.get("name") == vid]


def peer_post(port, cert=None, ca=None, body=b"{}", path="/pmem-csi/v1/DeleteVolume"):
    """POST to a peer port with Python's TLS client; returns (status, body) or raises ssl/OS errors."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=60)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


def s_client(port, certs, *args):
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", certs.ca[0],
                        "-cert", certs.node[0], "-key", certs.node[1]] + list(args),
                       input="", capture_output=True, text=True, timeout=60)
    m = re.search(r"Cipher is (\S+)", p.stdout)
    return m.group(1) if m and m.group(1) != "(NONE)" else None


def served_serial(port, certs):
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", certs.ca[0],
                        "-cert", certs.node[0], "-key", certs.node[1]], input="", capture_output=True, text=True,
                       timeout=60)
    x = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=p.stdout, capture_output=True, text=True,
                       timeout=30)
    return x.stdout.strip()


class CacheVolumes(DriverTestCase):
    group = "cache"
    clean_devices = True
    sequential = True
    start_driver = False

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls._setup_error:
            return
        try:
            cls.certs = Certs(os.path.join(cls.workdir, "certs"))
            # copies the drivers read, so that rotation can replace them
            cls.a_cert = [os.path.join(cls.workdir, "certs", "a" + s) for s in (".crt", ".key")]
            for src, dst in zip(cls.certs.node, cls.a_cert):
                shutil.copy(src, dst)
            peers = "-peers=node-a=127.0.0.1:%d,node-b=127.0.0.1:%d" % (PORT_A, PORT_B)
            tls = ["-caFile=" + cls.certs.ca[0]]
            cls.a = Node("cache-node-a", os.path.join(cls.workdir, "state-a"), "node-a", "/run/pmem-csi/cache-a.sock",
                         ["-deviceManager=lvm", "-pmemPercentage=50", "-peerListen=127.0.0.1:%d" % PORT_A, peers,
                          "-certFile=" + cls.a_cert[0], "-keyFile=" + cls.a_cert[1]] + tls)
            cls.b_args = ["-deviceManager=direct", "-peerListen=127.0.0.1:%d" % PORT_B, peers] + tls
            cls.b = Node("cache-node-b", os.path.join(cls.workdir, "state-b"), "node-b", "/run/pmem-csi/cache-b.sock",
                         cls.b_args + ["-certFile=" + cls.certs.node[0], "-keyFile=" + cls.certs.node[1]])
            cls.a.start()
            cls.b.start()
            cls.driver = cls.a
            log("node-a ready %.2f s, node-b %.2f s after start" % (cls.a.ready_after, cls.b.ready_after))
        except Exception as e:
            cls._setup_error = "group set-up failed: %s" % e

    @classmethod
    def tearDownClass(cls):
        b = getattr(cls, "b", None)
        try:
            if b is not None and b.proc is None:
                b.start()
            for vid, t in list(cls.tracked.items()):
                for path in t["targets"] | t["staging"]:
                    umount_all_under(path)
                if cls.a.alive():
                    rpc_code(cls.a.client.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid))
        except Exception as e:
            log("cleanup of cache: %s" % e)
        cls.tracked = {}
        if b is not None:
            b.stop()
        super().tearDownClass()

    def assert_copies(self, vid, on_a, on_b):
        self.assertEqual(vid in lvs(), on_a, "LV %s on node-a: want %s" % (vid, on_a))
        self.assertEqual(bool(namespaces_named(vid)), on_b, "namespace %s on node-b: want %s" % (vid, on_b))
        self.assertEqual(os.path.exists(os.path.join(self.a.state_dir, vid + ".json")), on_a)
        self.assertEqual(os.path.exists(os.path.join(self.b.state_dir, vid + ".json")), on_b)

    def use(self, node, vid, ctx, tag):
        """Stage and publish on one node, write a file, read it back, unpublish and unstage."""
        staging = self.path(node.nodeid, vid, "staging")
        target = self.path(node.nodeid, vid, "pod", "rw")
        os.makedirs(staging, exist_ok=True)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        t = self._track(vid)
        t["staging"].add(staging)
        t["targets"].add(target)
        self.expect(None, node.client.NodeStageVolume,
                    pb.NodeStageVolumeRequest(volume_id=vid, staging_target_path=staging,
                                              volume_capability=mount_cap("ext4"), volume_context=ctx),
                    "NodeStageVolume on %s" % node.nodeid)
        self.expect(None, node.client.NodePublishVolume,
                    pb.NodePublishVolumeRequest(volume_id=vid, staging_target_path=staging, target_path=target,
                                                volume_capability=mount_cap("ext4"), volume_context=ctx),
                    "NodePublishVolume on %s" % node.nodeid)
        f = os.path.join(target, "who")
        seen = open(f).read() if os.path.exists(f) else None
        with open(f, "w") as out:
            out.write(tag)
        return staging, target, seen

    def unuse(self, node, vid, staging, target):
        self.expect(None, node.client.NodeUnpublishVolume,
                    pb.NodeUnpublishVolumeRequest(volume_id=vid, target_path=target), "NodeUnpublishVolume")
        self.expect(None, node.client.NodeUnstageVolume,
                    pb.NodeUnstageVolumeRequest(volume_id=vid, staging_target_path=staging), "NodeUnstageVolume")

    def test_01_create_on_two_nodes(self):
        vid = volume_id("cache-one")
        self._track(vid)
        vol = self.expect(None, self.a.client.CreateVolume, create_req("cache-one", CACHE2), "CreateVolume").volume
        self.assertEqual(vol.volume_id, vid)
        self.assertEqual(topology_nodes(vol), ["node-a", "node-b"])
        self.assertEqual(vol.volume_context.get("persistencyModel"), "cache")
        self.assertEqual(vol.volume_context.get("cacheSize"), "2")
        self.assert_copies(vid, True, True)
        type(self).ctx = dict(vol.volume_context)
        # idempotent: the same answer, no third copy
        again = self.expect(None, self.a.client.CreateVolume, create_req("cache-one", CACHE2), "CreateVolume again")
        self.assertEqual(topology_nodes(again.volume), ["node-a", "node-b"])

    def test_02_use_on_each_node(self):
        vid = volume_id("cache-one")
        sa, ta, seen_a = self.use(self.a, vid, self.ctx, "a")
        sb, tb, seen_b = self.use(self.b, vid, self.ctx, "b")
        self.assertIsNone(seen_b, "node-b's copy shows node-a's file: not independent copies")
        self.assertEqual(open(os.path.join(ta, "who")).read(), "a")
        self.unuse(self.a, vid, sa, ta)
        self.unuse(self.b, vid, sb, tb)

    def test_03_delete_with_peer_down_then_back(self):
        vid = volume_id("cache-one")
        self.b.stop()
        try:
            details = self.expect(C.UNAVAILABLE, self.a.client.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid),
                                  "DeleteVolume with node-b down", contains="node-b")
            log("peer down: %s" % short(details, 200))
            self.assertTrue(vid in lvs(), "node-a's copy deleted while node-b's could not be")
        finally:
            self.b.start()
        self.expect(None, self.a.client.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid), "DeleteVolume retry")
        self.assert_copies(vid, False, False)
        self.expect(None, self.b.client.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid), "DeleteVolume on b, again")
        type(self).tracked.pop(vid, None)

    def test_04_create_with_peer_down_rolls_back(self):
        vid = volume_id("cache-two")
        self._track(vid)
        self.b.stop()
        try:
            self.expect(C.UNAVAILABLE, self.a.client.CreateVolume, create_req("cache-two", CACHE2),
                        "CreateVolume with node-b down", contains="node-b")
            self.assert_copies(vid, False, False)
        finally:
            self.b.start()

    def test_05_fewer_nodes_than_cache_size(self):
        """as 0.7: cacheSize 3 with two nodes gives two copies; DeleteVolume from the other node removes both"""
        vid = volume_id("cache-three")
        self._track(vid)
        vol = self.expect(None, self.a.client.CreateVolume,
                          create_req("cache-three", {"persistencyModel": "cache", "cacheSize": "3"}),
                          "CreateVolume cacheSize=3").volume
        self.assertEqual(topology_nodes(vol), ["node-a", "node-b"])
        self.assert_copies(vid, True, True)
        self.assertIn("2 of 3 copies", self.a.log_text(since_start=True))
        self.expect(None, self.b.client.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid), "DeleteVolume on b")
        self.assert_copies(vid, False, False)
        type(self).tracked.pop(vid, None)

    def test_06_bad_parameters(self):
        for params, field in (({"cacheSize": "2"}, "cacheSize"),
                              ({"persistencyModel": "cache", "cacheSize": "0"}, "cacheSize"),
                              ({"persistencyModel": "cache", "cacheSize": "two"}, "cacheSize"),
                              ({"persistencyModel": "cached"}, "persistencyModel")):
            self.expect(C.INVALID_ARGUMENT, self.a.client.CreateVolume, create_req("cache-bad", params),
                        "CreateVolume %s" % params, contains=field)

    def test_07_clients_refused(self):
        """no certificate, one from another CA, one of another role: refused before any handler runs"""
        certs = self.certs
        status, body = peer_post(PORT_A, cert=certs.node, body=b"{}")
        self.assertEqual(status, 400, "the node certificate should get through to the handler: %s" % body)
        for what, cert in (("no certificate", None), ("another CA", certs.foreign),
                           ("the registry's certificate", certs.registry)):
            try:
                status, body = peer_post(PORT_A, cert=cert)
            except (ssl.SSLError, OSError) as e:
                log("%s: handshake refused (%s)" % (what, e))
                continue
            self.assertEqual(status, 403, "%s: %s %s" % (what, status, body))
        text = self.a.log_text(since_start=True)
        for why in ("refused: no client certificate", "The certificate issuer is unknown",
                    "client certificate is not issued for"):
            self.assertIn(why, text)

    def test_08_server_identity_checked(self):
        """node-b serving the registry's certificate: node-a does not talk to it, and rolls back"""
        vid = volume_id("cache-four")
        self._track(vid)
        self.b.stop()
        saved = self.b.extra_args
        self.b.extra_args = [a for a in saved if not a.startswith(("-certFile", "-keyFile"))] + \
            ["-certFile=" + self.certs.registry[0], "-keyFile=" + self.certs.registry[1]]
        try:
            self.b.start()
            details = self.expect(C.UNAVAILABLE, self.a.client.CreateVolume, create_req("cache-four", CACHE2),
                                  "CreateVolume to an impostor", contains="node-b")
            log("impostor: %s" % short(details, 300))
            self.assert_copies(vid, False, False)
        finally:
            self.b.stop()
            self.b.extra_args = saved
            self.b.start()

    def test_09_tls_scan(self):
        """TLS 1.2 and 1.3 only; in 1.2 only ECDHE with AEAD ciphers"""
        weak = "DEFAULT:@SECLEVEL=0"
        for proto in ("-tls1", "-tls1_1"):
            self.assertIsNone(s_client(PORT_A, self.certs, proto, "-cipher", weak), "%s accepted" % proto)
        self.assertTrue(s_client(PORT_A, self.certs, "-tls1_3"), "TLS 1.3 refused")
        self.assertTrue(s_client(PORT_A, self.certs, "-tls1_2"), "TLS 1.2 refused")
        ciphers = [c.split()[0] for c in openssl("ciphers", "-v", "ALL:COMPLEMENTOFALL:@SECLEVEL=0").splitlines()
                   if "TLSv1.3" not in c]
        if os.environ.get("CACHE_TLS_SCAN") != "full":
            # Every cipher openssl knows takes minutes under TCG (155: 135 s): by default the ones
            # an EC certificate can use, one of each weak kind (CBC, SHA-1, no ECDHE) and the AEAD ones.
            ciphers = [c for c in ciphers if c.startswith("ECDHE-ECDSA-")] + \
                ["AES128-GCM-SHA256", "DHE-RSA-AES128-GCM-SHA256", "AES128-SHA"]
        accepted, lock = [], threading.Lock()

        def probe(chunk):
            for c in chunk:
                if s_client(PORT_A, self.certs, "-tls1_2", "-cipher", c + ":@SECLEVEL=0") == c:
                    with lock:
                        accepted.append(c)
        threads = [threading.Thread(target=probe, args=(ciphers[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        bad = [c for c in accepted if not (c.startswith("ECDHE-") and ("GCM" in c or "CHACHA20" in c))]
        self.assertTrue(accepted and not bad, "accepted %s; not ECDHE+AEAD: %s" % (accepted, bad))
        log("peer port: TLS 1.2 ciphers accepted (of %d tried): %s" % (len(ciphers), " ".join(sorted(accepted))))

    def test_10_rotation(self):
        """new certificate files are served and used as client certificate without a restart"""
        old = served_serial(PORT_A, self.certs)
        self.assertTrue(old.startswith("serial="), old)
        new = self.certs.make_cert("node-renewed", PEER_NAME, self.certs.ca)
        want = openssl("x509", "-noout", "-serial", "-in", new[0]).strip()
        self.assertNotEqual(old, want)
        for src, dst in ((new[1], self.a_cert[1]), (new[0], self.a_cert[0])):
            shutil.copy(src, dst + ".tmp")
            os.rename(dst + ".tmp", dst)
        self.assertEqual(served_serial(PORT_A, self.certs), want)
        # and node-a's client side with the new pair still makes node-b's copy
        vid = volume_id("cache-five")
        self._track(vid)
        vol = self.expect(None, self.a.client.CreateVolume, create_req("cache-five", CACHE2),
                          "CreateVolume after rotation").volume
        self.assertEqual(topology_nodes(vol), ["node-a", "node-b"])
        self.expect(None, self.a.client.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid), "DeleteVolume")
        self.assert_copies(vid, False, False)
        type(self).tracked.pop(vid, None)

    def test_11_peers_touch_cache_copies_only(self):
        """a peer (a valid node certificate) cannot delete a normal volume of this node, nor make
        one that is not a cache copy: the channel is no licence for other volumes"""
        vid = volume_id("plain-one")
        self._track(vid)
        self.expect(None, self.a.client.CreateVolume, create_req("plain-one", {}), "CreateVolume (normal)")
        body = ('{"request":"%s"}' % pb.DeleteVolumeRequest(volume_id=vid).SerializeToString().hex()).encode()
        status, text = peer_post(PORT_A, cert=self.certs.node, body=body)
        self.assertEqual(status, 200, text)
        self.assertEqual(json.loads(text)["code"], 7, text)  # PERMISSION_DENIED
        self.assertIn("not a cache volume", text)
        self.assertIn(vid, lvs(), "a peer's DeleteVolume removed a normal volume")
        self.assertTrue(os.path.exists(os.path.join(self.a.state_dir, vid + ".json")))
        body = ('{"request":"%s"}' % create_req("plain-two", {}).SerializeToString().hex()).encode()
        status, text = peer_post(PORT_A, cert=self.certs.node, body=body, path="/pmem-csi/v1/CreateVolume")
        self.assertEqual(status, 200, text)
        self.assertEqual(json.loads(text)["code"], 7, text)
        self.assertIn("only copies of cache volumes", text)
        self.assertNotIn(volume_id("plain-two"), lvs())
        self.expect(None, self.a.client.DeleteVolume, pb.DeleteVolumeRequest(volume_id=vid), "DeleteVolume")
        type(self).tracked.pop(vid, None)
