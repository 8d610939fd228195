#!/usr/bin/python3
"""test_k8s.py - the driver's Kubernetes-facing modes against a real API server
(test/k8s/run-k8s-tests.sh starts one): the rescheduler of -mode=webhooks with the
admin's credentials, with the least-privilege service account of deploy/ (token
from a kubeconfig, and in-cluster with a token file that rotates), and the node
checks of -mode=force-convert-raw-namespaces on the host (no PMEM here: the
conversion itself is tested in the guest, test/vm/run-convert.sh).

usage: test_k8s.py BUILDDIR KUBEDIR   (KUBEDIR from test/k8s/apiserver.sh)
Prints ok/FAIL lines and "N passed, N failed".
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

BUILD, KDIR = sys.argv[1], sys.argv[2]
DRIVER = os.path.join(BUILD, "pmem-csi-driver")
KCFG = os.path.join(KDIR, "kubeconfig")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRV = "pmem-csi.intel.com"
SEL = "volume.kubernetes.io/selected-node"
results = [0, 0]


def kubectl(*args, input=None, check=True):
    p = subprocess.run(["kubectl", "--kubeconfig", KCFG] + list(args), input=input, capture_output=True,
                       text=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError("kubectl %s: %s" % (" ".join(args), p.stderr.strip()))
    return p.stdout


def apply(objs):
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))


def pvc(name, node, provisioner=DRV):
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "default",
                         "annotations": {"volume.kubernetes.io/storage-provisioner": provisioner, SEL: node}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": "pmem-csi-sc-late-binding"}}


def node(name, labels=None):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}}}


def selected(name):
    out = json.loads(kubectl("get", "pvc", name, "-n", "default", "-o", "json"))
    return out["metadata"].get("annotations", {}).get(SEL)


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Driver:
    def __init__(self, args, env=None):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="pmem-csi-k8s.", suffix=".log", delete=False)
        e = dict(os.environ)
        e.pop("KUBERNETES_SERVICE_HOST", None)
        e.update(env or {})
        self.p = subprocess.Popen([DRIVER, "-v=5", "-metricsListen=127.0.0.1:%d" % self.port] + args,
                                  stdout=self.log, stderr=subprocess.STDOUT, env=e)

    def metrics(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=5) as r:
            return r.read().decode()

    def metric(self, name):
        try:
            m = re.search(r"^%s (\S+)$" % re.escape(name), self.metrics(), re.M)
        except OSError:
            return None
        return float(m.group(1)) if m else None

    def text(self):
        with open(self.log.name) as f:
            return f.read()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


def wait(cond, what, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(0.3)
    raise AssertionError("timed out waiting for " + what)


def test(fn):
    name = fn.__doc__.strip().splitlines()[0]
    t0 = time.time()
    try:
        fn()
        results[0] += 1
        print("ok - k8s: %s (%.1f s)" % (name, time.time() - t0), flush=True)
    except Exception as e:
        results[1] += 1
        print("FAIL - k8s: %s: %s" % (name, e), flush=True)
        traceback.print_exc(file=sys.stdout)
    return fn


def reset_pvcs():
    kubectl("delete", "pvc", "--all", "-n", "default", "--wait=false")
    # Without a controller manager the pvc-protection finalizer stays: drop it.
    for n in kubectl("get", "pvc", "-n", "default", "-o", "name").split():
        kubectl("patch", n, "-n", "default", "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)


def rescheduler_cases(driver_args, env=None):
    reset_pvcs()
    apply([node("worker-nolabel"), node("worker-pmem", {"storage": "pmem"}), node("worker-ready"),
           {"apiVersion": "storage.k8s.io/v1", "kind": "CSINode", "metadata": {"name": "worker-ready"},
            "spec": {"drivers": [{"name": DRV, "nodeID": "worker-ready", "topologyKeys": [DRV + "/node"]}]}},
           pvc("gone", "worker-gone"), pvc("nolabel", "worker-nolabel"), pvc("pmem", "worker-pmem"),
           pvc("ready", "worker-ready"), pvc("other", "worker-gone", provisioner="other.example.com")])
    d = Driver(["-mode=webhooks", "-drivername=" + DRV, "-rescheduleSeconds=1",
                '-nodeSelector={"storage":"pmem"}'] + driver_args, env)
    try:
        wait(lambda: d.metric("pmem_csi_rescheduler_rescheduled_total") == 2, "2 PVCs rescheduled")
        expect = {"gone": None, "nolabel": None, "pmem": "worker-pmem", "ready": "worker-ready",
                  "other": "worker-gone"}
        got = {n: selected(n) for n in expect}
        assert got == expect, "selected nodes %s, expected %s" % (got, expect)
        assert d.metric("pmem_csi_rescheduler_pending_pvcs") in (2, 4), d.metrics()
        # A node chosen again is left alone (it now runs the driver).
        kubectl("annotate", "pvc", "nolabel", "-n", "default", SEL + "=worker-ready")
        time.sleep(2.5)
        assert selected("nolabel") == "worker-ready", "re-selected node was removed again"
        assert d.p.poll() is None, "driver exited: " + d.text()[-2000:]
    finally:
        rc = d.stop()
    assert rc == 0, "exit status %s after SIGTERM: %s" % (rc, d.text()[-1500:])
    return d


@test
def t_admin():
    """webhooks: reschedules exactly the PVCs on nodes that cannot run the driver (admin)"""
    rescheduler_cases(["-kubeconfig=" + KCFG])


def sa_token(sa, seconds=3600):
    return kubectl("create", "token", sa, "-n", "pmem-csi", "--duration=%ds" % seconds).strip()


def ca_b64():
    with open(KCFG) as f:
        return re.search(r"certificate-authority-data: (\S+)", f.read()).group(1)


def server():
    with open(KCFG) as f:
        return re.search(r"server: (\S+)", f.read()).group(1)


def token_kubeconfig(path, token_file):
    with open(path, "w") as f:
        f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: %s\n"
                "    certificate-authority-data: %s\nusers:\n- name: u\n  user:\n    tokenFile: %s\n"
                "contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n"
                % (server(), ca_b64(), token_file))


@test
def t_least_privilege():
    """webhooks: the service account and RBAC of deploy/ are enough (token in a kubeconfig)"""
    kubectl("apply", "-f", os.path.join(REPO, "deploy", "generated", "pmem-csi-lvm.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        tf = os.path.join(tmp, "token")
        with open(tf, "w") as f:
            f.write(sa_token("pmem-csi-intel-com-webhooks"))
        token_kubeconfig(os.path.join(tmp, "kubeconfig"), tf)
        rescheduler_cases(["-kubeconfig=" + os.path.join(tmp, "kubeconfig")])
    # ... and the node-setup account may not touch PVCs.
    out = kubectl("auth", "can-i", "patch", "persistentvolumeclaims",
                  "--as=system:serviceaccount:pmem-csi:pmem-csi-intel-com-node-setup", check=False).strip()
    assert out == "no", "node-setup may patch PVCs: %s" % out


@test
def t_in_cluster_rotation():
    """webhooks: in-cluster configuration; a rotated token file is picked up without a restart"""
    with tempfile.TemporaryDirectory() as sa:
        with open(os.path.join(KDIR, "ca.crt")) as f, open(os.path.join(sa, "ca.crt"), "w") as g:
            g.write(f.read())
        with open(os.path.join(sa, "token"), "w") as f:
            f.write("not-a-valid-token")
        host, port = re.match(r"https://([^:]+):(\d+)", server()).groups()
        reset_pvcs()
        apply([pvc("gone", "worker-gone")])
        d = Driver(["-mode=webhooks", "-rescheduleSeconds=1"],
                   {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
                    "PMEM_CSI_SERVICEACCOUNT_DIR": sa})
        try:
            wait(lambda: d.metric('pmem_csi_rescheduler_passes_total{result="error"}'), "a failed pass")
            assert selected("gone") == "worker-gone"
            assert "HTTP 401" in d.text(), "no 401 in the log: " + d.text()[-1000:]
            # The kubelet writes a new token (atomically, through a symlink swap; a rename here).
            with open(os.path.join(sa, "token.new"), "w") as f:
                f.write(sa_token("pmem-csi-intel-com-webhooks"))
            os.rename(os.path.join(sa, "token.new"), os.path.join(sa, "token"))
            wait(lambda: selected("gone") is None, "the rescheduler to work with the new token")
        finally:
            d.stop()


def convert(args):
    p = subprocess.run([DRIVER, "-mode=force-convert-raw-namespaces", "-kubeconfig=" + KCFG] + args,
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


@test
def t_convert_checks():
    """force-convert: refuses an unlabelled node, fails clearly with nothing to convert"""
    apply([node("plain"), node("labelled", {DRV + "/convert-raw-namespaces": "force"})])
    rc, out = convert(["-nodeid=plain"])
    assert rc != 0 and "not labelled pmem-csi.intel.com/convert-raw-namespaces=force" in out, (rc, out[-800:])
    rc, out = convert(["-nodeid=missing-node"])
    assert rc != 0 and "HTTP 404" in out and "missing-node" in out, (rc, out[-800:])
    # This host has no PMEM at all.
    rc, out = convert(["-nodeid=labelled"])
    assert rc != 0 and "Nothing to convert" in out, (rc, out[-800:])
    labels = json.loads(kubectl("get", "node", "labelled", "-o", "json"))["metadata"]["labels"]
    assert labels.get(DRV + "/convert-raw-namespaces") == "force", "node relabelled after a failure: %s" % labels


print("%d passed, %d failed" % tuple(results))
sys.exit(1 if results[1] else 0)
