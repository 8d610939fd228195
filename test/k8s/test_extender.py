#!/usr/bin/python3
"""test_extender.py - the scheduler extender and the mutating pod webhook of
-mode=webhooks against a real kube-apiserver and kube-scheduler (no kubelet: the
test makes the Node and CSIStorageCapacity objects itself), with the service account
and RBAC of deploy/kustomize/examples/scheduler.

- the HTTP endpoints: /status, /filter (ExtenderArgs with nodenames and with full
  nodes) and /pod/mutate (AdmissionReview), bad input (bad JSON, too large, wrong
  method, unknown path), the scheduler_* metrics;
- the pod webhook registered in the API server (MutatingWebhookConfiguration with a
  URL and caBundle): a pod with a late-binding PMEM claim gets one
  pmem-csi.intel.com/scheduler, a pod without stays as it is;
- the chain: webhook -> kube-scheduler with deploy/'s extender configuration over
  mutual TLS -> /filter: a pod whose late-binding claim is bigger than the PMEM of
  four of five nodes gets the fifth node as selected node;
- TLS of -schedulerListen: the protocols (TLS 1.2 and 1.3 only) and the TLS 1.2
  ciphers it accepts (openssl s_client over every cipher openssl knows), clients
  without a certificate and with one from another CA are refused.

usage: test_extender.py BUILDDIR KUBEDIR   (KUBEDIR from test/k8s/apiserver.sh)
Environment: KUBE_SCHEDULER (a kube-scheduler binary; its test is skipped without,
failed when CI=true).
Prints ok/FAIL/SKIP lines and "N passed, N failed[, N skipped]".
"""
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

BUILD, KDIR = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
DRIVER = os.path.join(BUILD, "pmem-csi-driver")
KCFG = os.path.join(KDIR, "kubeconfig")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# A driver name of its own (-drivername): earlier tests install deploy/'s CSIDriver
# pmem-csi.intel.com with storageCapacity, and then kube-scheduler's own capacity check
# would filter the nodes before the extender is asked.
DRV = "ext-test.pmem-csi.intel.com"
RESOURCE = DRV + "/scheduler"
# Without a controller manager a deleted namespace stays Terminating: one per run.
NS = "pmem-ext-test-%d" % os.getpid()
SCHEDULER_NAME = "pmem-csi-test-scheduler"
GI = 1024 ** 3
results = [0, 0, 0]
WORK = tempfile.mkdtemp(prefix="pmem-csi-ext.")


def kubectl(*args, input=None, check=True):
    p = subprocess.run(["kubectl", "--kubeconfig", KCFG] + list(args), input=input, capture_output=True,
                       text=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError("kubectl %s: %s" % (" ".join(args), p.stderr.strip()))
    return p.stdout


def apply(objs):
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def openssl(*args, input=None):
    p = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=60, input=input)
    if p.returncode != 0:
        raise AssertionError("openssl %s: %s" % (" ".join(args), p.stderr.strip()[-400:]))
    return p.stdout


def make_ca(name):
    key, crt = os.path.join(WORK, name + ".key"), os.path.join(WORK, name + ".crt")
    openssl("req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-subj", "/CN=" + name,
            "-days", "2", "-out", crt)
    return crt, key


def make_cert(name, ca, ext):
    key, csr, crt = (os.path.join(WORK, name + s) for s in (".key", ".csr", ".crt"))
    extf = os.path.join(WORK, name + ".ext")
    with open(extf, "w") as f:
        f.write(ext)
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-subj", "/CN=" + name, "-out", csr)
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-days", "2",
            "-sha256", "-extfile", extf, "-out", crt)
    return crt, key


CA = make_ca("ext-ca")
OTHER_CA = make_ca("other-ca")
SERVER = make_cert("pmem-csi-intel-com-scheduler", CA, "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                   "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
CLIENT = make_cert("kube-scheduler", CA, "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
WRONG_CLIENT = make_cert("intruder", OTHER_CA, "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")


class Driver:
    """pmem-csi-driver -mode=webhooks with the scheduler endpoints."""

    def __init__(self, ca_file, kubeconfig):
        self.tls, self.plain, self.mport = free_port(), free_port(), free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="pmem-csi-ext.", suffix=".log", delete=False)
        env = dict(os.environ)
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self.p = subprocess.Popen([DRIVER, "-mode=webhooks", "-v=5", "-kubeconfig=" + kubeconfig, "-drivername=" + DRV,
                                   "-rescheduleSeconds=3600",
                                   "-metricsListen=127.0.0.1:%d" % self.mport,
                                   "-schedulerListen=127.0.0.1:%d" % self.tls,
                                   "-insecureSchedulerListen=127.0.0.1:%d" % self.plain,
                                   "-certFile=" + SERVER[0], "-keyFile=" + SERVER[1], "-caFile=" + ca_file],
                                  stdout=self.log, stderr=subprocess.STDOUT, env=env)
        wait(lambda: self.get_plain("/status") == (200, "ok"), "the driver's /status")

    def request(self, url, body=None, method=None, ctx=None):
        req = urllib.request.Request(url, data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return None, None

    def get_plain(self, path):
        return self.request("http://127.0.0.1:%d%s" % (self.plain, path))

    def post(self, path, obj):
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        return self.request("http://127.0.0.1:%d%s" % (self.plain, path), body=body, method="POST")

    def metrics(self):
        return self.request("http://127.0.0.1:%d/metrics" % self.mport)[1] or ""

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


def wait(cond, what, timeout=60):
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
        r = fn()
        if r == "skip":
            results[2] += 1
            return fn
        results[0] += 1
        print("ok - extender: %s (%.1f s)" % (name, time.time() - t0), flush=True)
    except Exception as e:
        results[1] += 1
        print("FAIL - extender: %s: %s" % (name, e), flush=True)
        traceback.print_exc(file=sys.stdout)
    return fn


def skip(name, why):
    if os.environ.get("CI") == "true":
        raise AssertionError("%s (CI=true: a missing tool is a failure)" % why)
    print("SKIP - extender: %s (%s)" % (name, why), flush=True)
    return "skip"


# ---- the cluster: five nodes, 4 GiB of PMEM on one, 1 GiB on the others
NODES = ["ext-node-%d" % i for i in range(5)]
BIG = "ext-node-3"


def node(name):
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"storage": "pmem", DRV + "/node": name,
                                                  "kubernetes.io/hostname": name}},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "message": "test node", "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}


def capacity(name, node_name, cap, max_size=None, sc="pmem-ext-late"):
    o = {"apiVersion": "storage.k8s.io/v1", "kind": "CSIStorageCapacity",
         "metadata": {"name": name, "namespace": NS,
                      "labels": {"csi.storage.k8s.io/drivername": DRV,
                                 "csi.storage.k8s.io/managed-by": "external-provisioner-" + node_name}},
         "storageClassName": sc, "capacity": cap,
         "nodeTopology": {"matchLabels": {DRV + "/node": node_name}}}
    if max_size:
        o["maximumVolumeSize"] = max_size
    return o


def claim(name, size, sc="pmem-ext-late"):
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": NS},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}},
                     "storageClassName": sc}}


def pod(name, volumes, scheduler=None):
    p = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
         "spec": {"automountServiceAccountToken": False,
                  "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
                  "volumes": volumes}}
    if scheduler:
        p["spec"]["schedulerName"] = scheduler
        # The API server taints new nodes not-ready (TaintNodesByCondition); no kubelet here clears it.
        p["spec"]["tolerations"] = [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                     "effect": "NoSchedule"}]
    return p


def pvc_volume(claim_name):
    return {"name": "pmem", "persistentVolumeClaim": {"claimName": claim_name}}


def setup_cluster():
    kubectl("create", "namespace", NS, check=False)
    kubectl("create", "serviceaccount", "default", "-n", NS, check=False)
    objs = [node(n) for n in NODES]
    objs += [{"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "pmem-ext-late"},
              "provisioner": DRV, "volumeBindingMode": "WaitForFirstConsumer"},
             {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "pmem-ext-now"},
              "provisioner": DRV, "volumeBindingMode": "Immediate"},
             {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "other-late"},
              "provisioner": "other.example.com", "volumeBindingMode": "WaitForFirstConsumer"}]
    objs += [capacity("cap-" + n, n, "4Gi" if n == BIG else "1Gi") for n in NODES]
    objs += [claim("big", "2Gi"), claim("small", "512Mi"), claim("now", "8Gi", "pmem-ext-now"),
             claim("other", "8Gi", "other-late")]
    apply(objs)


def filter_args(volumes, nodes=None, full_nodes=False):
    p = pod("filtered", volumes)
    names = nodes or NODES
    # kube-scheduler sends the Go field names; Go's decoder (and 1.x) took any case.
    if full_nodes:
        return {"pod": p, "nodes": {"items": [node(n) for n in names]}}
    return {"Pod": p, "NodeNames": names}


def controller_kubeconfig():
    """The controller's service account with the RBAC of deploy/kustomize/examples/scheduler."""
    import yaml
    out = kubectl("kustomize", os.path.join(REPO, "deploy", "kustomize", "examples", "scheduler"))
    rbac = [o for o in yaml.safe_load_all(out) if o and o["kind"] in
            ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")]
    apply(rbac)
    token = kubectl("create", "token", "pmem-csi-intel-com-webhooks", "-n", "pmem-csi", "--duration=3600s").strip()
    with open(KCFG) as f:
        text = f.read()
    server = re.search(r"server: (\S+)", text).group(1)
    ca = re.search(r"certificate-authority-data: (\S+)", text).group(1)
    path = os.path.join(WORK, "controller.kubeconfig")
    with open(path, "w") as f:
        f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: %s\n"
                "    certificate-authority-data: %s\nusers:\n- name: u\n  user:\n    token: %s\n"
                "contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n" % (server, ca, token))
    return path


setup_cluster()
# Both with the least privilege of deploy/: every read of the extender and the webhook goes through it.
CONTROLLER_KCFG = controller_kubeconfig()
# -caFile of its own, so that t_tls_ca_rotation can replace it
MTLS_CA = CA[0] + ".mtls"
shutil.copy(CA[0], MTLS_CA)
DRIVER_MTLS = Driver(MTLS_CA, CONTROLLER_KCFG)   # the extender as kube-scheduler reaches it: client certificates required
DRIVER_TLS = Driver("", CONTROLLER_KCFG)       # the webhook as the API server reaches it: no client certificate


@test
def t_status_and_errors():
    """/status, unknown paths, wrong methods, bad and too large bodies"""
    d = DRIVER_MTLS
    assert d.get_plain("/status") == (200, "ok")
    assert d.get_plain("/nothing")[0] == 404
    assert d.request("http://127.0.0.1:%d/filter" % d.plain, body=b"{}", method="PUT")[0] == 405
    code, body = d.post("/filter", b"{not json")
    assert code == 400 and "not JSON ExtenderArgs" in json.loads(body)["Error"], (code, body)
    code, body = d.post("/filter", {"pod": {"metadata": {"name": "p"}}})
    assert code == 400 and "neither a NodeNames list nor a Nodes.items list" in json.loads(body)["Error"], body
    code, body = d.post("/filter", {"nodenames": ["a"]})
    assert code == 400 and "ExtenderArgs.Pod" in json.loads(body)["Error"], body
    code, body = d.post("/pod/mutate", b"[1,2]")
    assert code == 400 and "AdmissionReview" in body, (code, body)
    code, body = d.post("/pod/mutate", {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                        "request": {}})
    assert code == 400 and "request.uid" in body, (code, body)
    # A Content-Length beyond 4 MiB is refused before the body is read.
    with socket.create_connection(("127.0.0.1", d.plain), timeout=10) as s:
        s.sendall(b"POST /filter HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (5 * 1024 * 1024))
        head = s.recv(4096).decode(errors="replace")
    assert head.startswith("HTTP/1.1 413") and "at most 4194304" in head, head
    # A chunked body that grows beyond it: the connection is closed.
    with socket.create_connection(("127.0.0.1", d.plain), timeout=10) as s:
        s.sendall(b"POST /filter HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (1024 * 1024, b" " * (1024 * 1024))
        got = b""
        try:
            for _ in range(6):
                s.sendall(chunk)
            s.sendall(b"0\r\n\r\n")
            got = s.recv(4096)
        except OSError:
            pass
    assert not got.startswith(b"HTTP/1.1 200"), got[:200]
    assert d.get_plain("/status") == (200, "ok"), "the server stopped answering"


@test
def t_filter():
    """/filter keeps the nodes with room for the pod's unbound PMEM volumes"""
    d = DRIVER_MTLS
    code, body = d.post("/filter", filter_args([pvc_volume("big")]))
    res = json.loads(body)
    assert code == 200 and res["NodeNames"] == [BIG], body
    assert set(res["FailedNodes"]) == set(NODES) - {BIG}, body
    assert "only 1GiB of PMEM available, need 2GiB" in res["FailedNodes"]["ext-node-0"], body
    # fits everywhere; immediate binding and other drivers do not count; a node without capacity objects
    code, body = d.post("/filter", filter_args([pvc_volume("small"), {"name": "b", "persistentVolumeClaim":
                                                                       {"claimName": "now"}},
                                                {"name": "c", "persistentVolumeClaim": {"claimName": "other"}}],
                                               NODES + ["no-pmem-node"]))
    res = json.loads(body)
    assert res["NodeNames"] == NODES and list(res["FailedNodes"]) == ["no-pmem-node"], body
    assert "no CSIStorageCapacity" in res["FailedNodes"]["no-pmem-node"], body
    # inline ephemeral volumes count with their size; generic ephemeral ones with the template's
    inline = {"name": "i", "csi": {"driver": DRV, "volumeAttributes": {"size": "3Gi"}}}
    generic = {"name": "g", "ephemeral": {"volumeClaimTemplate": {"spec": {
        "accessModes": ["ReadWriteOnce"], "storageClassName": "pmem-ext-late",
        "resources": {"requests": {"storage": "1536Mi"}}}}}}
    for vols, want in (([inline], [BIG]), ([generic], [BIG]), ([inline, generic], [])):
        code, body = d.post("/filter", filter_args(vols))
        assert code == 200 and json.loads(body)["NodeNames"] == want, (vols, body)
    # nodeCacheCapable=false: full Node objects in and out
    code, body = d.post("/filter", filter_args([pvc_volume("big")], full_nodes=True))
    res = json.loads(body)
    assert [n["metadata"]["name"] for n in res["Nodes"]["items"]] == [BIG], body
    assert res["Nodes"]["items"][0]["status"]["allocatable"]["pods"] == "110", body
    # problems with the cluster's objects: 200 with "error" (the scheduler retries)
    code, body = d.post("/filter", filter_args([pvc_volume("missing")]))
    assert code == 200 and "claim %s/missing not found" % NS in json.loads(body)["Error"], body
    code, body = d.post("/filter", filter_args([dict(inline, csi={"driver": DRV, "volumeAttributes": {"size": "x"}})]))
    assert code == 200 and "size \"x\" is not a valid quantity" in json.loads(body)["Error"], body
    # maximumVolumeSize: the total fits, the volume does not
    apply([capacity("cap-" + BIG, BIG, "4Gi", "1Gi")])
    try:
        code, body = d.post("/filter", filter_args([pvc_volume("big")]))
        res = json.loads(body)
        assert res["NodeNames"] == [] and "largest PMEM volume possible is 1GiB" in res["FailedNodes"][BIG], body
    finally:
        apply([capacity("cap-" + BIG, BIG, "4Gi")])


def review(p, uid="uid-1", op="CREATE"):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": uid, "operation": op, "namespace": NS,
                        "resource": {"group": "", "version": "v1", "resource": "pods"}, "object": p}}


def patch_of(body):
    res = json.loads(body)["response"]
    return json.loads(base64.b64decode(res["patch"])) if "patch" in res else None


@test
def t_mutate():
    """/pod/mutate marks pods with late-binding or inline PMEM volumes, leaves others alone"""
    d = DRIVER_MTLS
    code, body = d.post("/pod/mutate", review(pod("p", [pvc_volume("big")])))
    res = json.loads(body)["response"]
    assert code == 200 and res["uid"] == "uid-1" and res["allowed"] is True and res["patchType"] == "JSONPatch", body
    assert patch_of(body) == [{"op": "add", "path": "/spec/containers/0/resources",
                               "value": {"requests": {RESOURCE: "1"}, "limits": {RESOURCE: "1"}}}], body
    p = pod("p", [{"name": "i", "csi": {"driver": DRV}}])
    p["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1"}}
    assert patch_of(d.post("/pod/mutate", review(p))[1]) == [
        {"op": "add", "path": "/spec/containers/0/resources/requests/%s~1scheduler" % DRV, "value": "1"},
        {"op": "add", "path": "/spec/containers/0/resources/limits", "value": {RESOURCE: "1"}}]
    for vols in ([], [pvc_volume("now")], [pvc_volume("other")], [pvc_volume("not-yet-created")],
                 [{"name": "e", "emptyDir": {}}], [{"name": "i", "csi": {"driver": "other.example.com"}}]):
        code, body = d.post("/pod/mutate", review(pod("p", vols)))
        assert code == 200 and json.loads(body)["response"]["allowed"] and patch_of(body) is None, (vols, body)
    p = pod("p", [pvc_volume("big")])
    p["spec"]["containers"] = []
    res = json.loads(d.post("/pod/mutate", review(p))[1])["response"]
    assert res["allowed"] is False and res["status"]["message"] == "pod has no containers", res
    res = json.loads(d.post("/pod/mutate", review({"spec": {"containers": "x"}}))[1])["response"]
    assert res["allowed"] is False and res["status"]["code"] == 400, res
    # updates are not touched
    assert patch_of(d.post("/pod/mutate", review(pod("p", [pvc_volume("big")]), op="UPDATE"))[1]) is None


@test
def t_metrics():
    """scheduler_* metrics on the metrics endpoint"""
    m = DRIVER_MTLS.metrics()
    for pat in (r'^scheduler_requests_total\{code="200",method="post"\} [1-9]',
                r'^scheduler_requests_total\{code="400",method="post"\} [1-9]',
                r'^scheduler_request_duration_seconds_count\{handler="filter",method="post"\} [1-9]',
                r'^scheduler_request_duration_seconds_count\{handler="mutate",method="post"\} [1-9]',
                r'^scheduler_request_duration_seconds_count\{handler="status",method="get"\} [1-9]',
                r'^scheduler_response_size_bytes_bucket\{le="200"\} [1-9]',
                r'^scheduler_in_flight_requests 0$'):
        assert re.search(pat, m, re.M), "no %s in:\n%s" % (pat, "\n".join(l for l in m.splitlines()
                                                                          if "scheduler_" in l))


def curl(port, path="/status", cert=None):
    args = ["curl", "-sS", "--max-time", "10", "-o", "/dev/stdout", "-w", "\n%{http_code}", "--cacert", CA[0],
            "https://127.0.0.1:%d%s" % (port, path)]
    if cert:
        args += ["--cert", cert[0], "--key", cert[1]]
    p = subprocess.run(args, capture_output=True, text=True, timeout=30)
    out = p.stdout.rsplit("\n", 1)
    return (out[1] if len(out) == 2 else "000"), out[0], p.stderr


@test
def t_tls_clients():
    """-schedulerListen: a client certificate of -caFile's CA is required; none or another CA's is refused"""
    port = DRIVER_MTLS.tls
    code, body, err = curl(port, cert=CLIENT)
    assert code == "200" and body == "ok", (code, body, err)
    code, body, err = curl(port)
    assert code == "403" and "client certificate" in body, (code, body, err)
    code, body, err = curl(port, cert=WRONG_CLIENT)
    assert code != "200" and "ok" != body, (code, body, err)
    log = DRIVER_MTLS.text()
    assert "no client certificate" in log, log[-2000:]
    # without -caFile no certificate is asked for (the API server calling the webhook has none)
    code, body, err = curl(DRIVER_TLS.tls)
    assert code == "200" and body == "ok", (code, body, err)


def s_client(port, *args):
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", CA[0],
                        "-cert", CLIENT[0], "-key", CLIENT[1]] + list(args),
                       input="", capture_output=True, text=True, timeout=30)
    m = re.search(r"Cipher is (\S+)", p.stdout)
    return m.group(1) if m and m.group(1) != "(NONE)" else None


@test
def t_tls_scan():
    """-schedulerListen offers TLS 1.2 and 1.3 only, and in 1.2 only ECDHE with AEAD ciphers"""
    port = DRIVER_MTLS.tls
    weak = "DEFAULT:@SECLEVEL=0"
    for proto in ("-tls1", "-tls1_1"):
        assert s_client(port, proto, "-cipher", weak) is None, "%s accepted" % proto
    assert s_client(port, "-tls1_3"), "TLS 1.3 refused"
    assert s_client(port, "-tls1_2"), "TLS 1.2 refused"
    ciphers = [c.split()[0] for c in openssl("ciphers", "-v", "ALL:COMPLEMENTOFALL:@SECLEVEL=0").splitlines()
               if "TLSv1.3" not in c]
    accepted = [c for c in ciphers if s_client(port, "-tls1_2", "-cipher", c + ":@SECLEVEL=0") == c]
    bad = [c for c in accepted if not (c.startswith("ECDHE-") and ("GCM" in c or "CHACHA20" in c))]
    assert accepted and not bad, "accepted %s; not ECDHE+AEAD: %s" % (accepted, bad)
    print("# TLS 1.2 ciphers accepted (of %d tried): %s" % (len(ciphers), " ".join(accepted)), flush=True)


@test
def t_webhook_in_apiserver():
    """the API server calls /pod/mutate: PMEM pods get the extended resource, others do not"""
    conf = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "pmem-csi-ext-test-hook"},
            "webhooks": [{"name": "pod-hook.pmem-csi.intel.com", "failurePolicy": "Ignore", "sideEffects": "None",
                          "admissionReviewVersions": ["v1"],
                          "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}},
                          "clientConfig": {"url": "https://127.0.0.1:%d/pod/mutate" % DRIVER_TLS.tls,
                                           "caBundle": base64.b64encode(open(CA[0], "rb").read()).decode()},
                          "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                     "resources": ["pods"]}]}]}
    apply([conf])
    # The API server picks the configuration up asynchronously.
    def marked():
        kubectl("delete", "pod", "probe", "-n", NS, "--wait=false", "--ignore-not-found")
        kubectl("create", "-f", "-", input=json.dumps(pod("probe", [pvc_volume("small")], "nobody")), check=False)
        got = json.loads(kubectl("get", "pod", "probe", "-n", NS, "-o", "json", check=False) or "{}")
        return got.get("spec", {}).get("containers", [{}])[0].get("resources", {}).get("requests", {}).get(RESOURCE)
    assert wait(marked, "the webhook to mark a pod", 60) == "1"
    kubectl("create", "-f", "-", input=json.dumps(pod("plain", [{"name": "e", "emptyDir": {}}], "nobody")))
    got = json.loads(kubectl("get", "pod", "plain", "-n", NS, "-o", "json"))
    assert RESOURCE not in json.dumps(got["spec"]), got["spec"]
    kubectl("delete", "pod", "probe", "plain", "-n", NS, "--wait=false")


def scheduler_config(path, driver):
    """deploy/'s example with this test's addresses, certificates and profile name."""
    import yaml
    with open(os.path.join(REPO, "deploy", "kustomize", "components", "scheduler", "scheduler-config.yaml")) as f:
        cfg = yaml.safe_load(f)
    assert cfg["kind"] == "KubeSchedulerConfiguration", cfg
    ext = cfg["extenders"][0]
    assert ext["urlPrefix"].startswith("https://") and ext["filterVerb"] == "filter", ext
    assert ext["managedResources"] == [{"name": "pmem-csi.intel.com/scheduler", "ignoredByScheduler": True}], ext
    ext["managedResources"][0]["name"] = RESOURCE
    ext["urlPrefix"] = "https://127.0.0.1:%d" % driver.tls
    ext["tlsConfig"] = {"certFile": CLIENT[0], "keyFile": CLIENT[1], "caFile": CA[0], "serverName": "localhost"}
    cfg["clientConnection"] = {"kubeconfig": KCFG}
    cfg["leaderElection"] = {"leaderElect": False}
    cfg["profiles"] = [{"schedulerName": SCHEDULER_NAME}]
    with open(path, "w") as f:
        json.dump(cfg, f)


def filters():
    m = re.search(r'^scheduler_request_duration_seconds_count\{handler="filter",method="post"\} (\S+)$',
                  DRIVER_MTLS.metrics(), re.M)
    return float(m.group(1)) if m else 0.0


@test
def t_kube_scheduler():
    """kube-scheduler with deploy/'s extender configuration places a 2 GiB claim on the node with 4 GiB"""
    binary = os.environ.get("KUBE_SCHEDULER")
    if not binary or not os.access(binary, os.X_OK):
        return skip("kube-scheduler with the extender", "KUBE_SCHEDULER is not set: scripts/test.sh takes it "
                    "from ../shared/tools")
    cfg = os.path.join(WORK, "scheduler.json")
    scheduler_config(cfg, DRIVER_MTLS)
    log = open(os.path.join(WORK, "kube-scheduler.log"), "w")
    sched = subprocess.Popen([binary, "--config=" + cfg, "--secure-port=0", "-v=2"], stdout=log,
                             stderr=subprocess.STDOUT)
    try:
        before = filters()
        kubectl("create", "-f", "-", input=json.dumps(pod("placed", [pvc_volume("big")], SCHEDULER_NAME)))
        got = json.loads(kubectl("get", "pod", "placed", "-n", NS, "-o", "json"))
        assert got["spec"]["containers"][0]["resources"]["limits"][RESOURCE] == "1", got["spec"]
        sel = wait(lambda: json.loads(kubectl("get", "pvc", "big", "-n", NS, "-o", "json"))["metadata"]
                   .get("annotations", {}).get("volume.kubernetes.io/selected-node"),
                   "the scheduler to select a node for the claim", 120)
        assert sel == BIG, "selected %s, not %s" % (sel, BIG)
        assert filters() > before, "the extender was not asked"
        # A claim that fits nowhere: the pod stays pending with the extender's reasons.
        apply([claim("huge", "6Gi")])
        kubectl("create", "-f", "-", input=json.dumps(pod("nowhere", [pvc_volume("huge")], SCHEDULER_NAME)))

        def unschedulable():
            p = json.loads(kubectl("get", "pod", "nowhere", "-n", NS, "-o", "json"))
            for c in p.get("status", {}).get("conditions", []):
                if c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable":
                    return c.get("message", "")
        msg = wait(unschedulable, "the pod that fits nowhere to be unschedulable", 120)
        assert "PMEM" in msg, msg
    finally:
        sched.send_signal(signal.SIGTERM)
        try:
            sched.wait(20)
        except subprocess.TimeoutExpired:
            sched.kill()
            sched.wait()
        log.close()


@test
def t_manifests():
    """deploy/kustomize/examples/scheduler is accepted by the API server (dry-run)"""
    kubectl("create", "namespace", "pmem-csi", check=False)
    out = kubectl("apply", "--dry-run=server", "-k", os.path.join(REPO, "deploy", "kustomize", "examples", "scheduler"))
    for want in ("mutatingwebhookconfiguration.admissionregistration.k8s.io/pmem-csi-intel-com-hook",
                 "service/pmem-csi-intel-com-scheduler", "service/pmem-csi-intel-com-webhook",
                 "deployment.apps/pmem-csi-intel-com-controller"):
        assert want in out, out


def served_serial(port):
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", CA[0]], input="",
                       capture_output=True, text=True, timeout=30)
    x = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=p.stdout, capture_output=True, text=True,
                       timeout=30)
    return x.stdout.strip()


@test
def t_tls_rotation():
    """a renewed certificate is served without a restart; a certificate without its key is not"""
    port = DRIVER_TLS.tls
    old = served_serial(port)
    assert old.startswith("serial="), old
    new = make_cert("renewed", CA, "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                    "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    want = openssl("x509", "-noout", "-serial", "-in", new[0]).strip()
    # Half a rotation: the new certificate with the old key is not used.
    shutil.copy(new[0], SERVER[0] + ".tmp")
    os.rename(SERVER[0] + ".tmp", SERVER[0])
    assert served_serial(port) == old
    assert "is not usable, still serving the previous one" in DRIVER_TLS.text()
    shutil.copy(new[1], SERVER[1] + ".tmp")
    os.rename(SERVER[1] + ".tmp", SERVER[1])
    assert served_serial(port) == want, "still %s, not %s" % (served_serial(port), want)
    assert "changed, serving the new one" in DRIVER_TLS.text()
    code, body, err = curl(port)
    assert code == "200" and body == "ok", (code, body, err)


def replace_file(src, dst):
    shutil.copy(src, dst + ".tmp")
    os.rename(dst + ".tmp", dst)


@test
def t_tls_ca_rotation():
    """a renewed CA (the operator renews the CA with the certificates) is used for client
    certificates without a restart; a CA file that holds no certificate keeps the old one"""
    port = DRIVER_MTLS.tls
    try:
        replace_file(OTHER_CA[0], MTLS_CA)
        code, body, err = curl(port, cert=CLIENT)
        assert code == "403" and "client certificate" in body, (code, body, err)
        code, body, err = curl(port, cert=WRONG_CLIENT)
        assert code == "200" and body == "ok", (code, body, err)
        assert "changed: client certificates are checked against the new one" in DRIVER_MTLS.text()
        with open(MTLS_CA + ".tmp", "w") as f:
            f.write("not a certificate\n")
        os.rename(MTLS_CA + ".tmp", MTLS_CA)
        code, body, err = curl(port, cert=WRONG_CLIENT)
        assert code == "200" and body == "ok", (code, body, err)
        assert "keeping the one read before" in DRIVER_MTLS.text()
    finally:
        replace_file(CA[0], MTLS_CA)
    code, body, err = curl(port, cert=CLIENT)
    assert code == "200" and body == "ok", (code, body, err)


@test
def t_api_server_down():
    """without the API server: the webhook lets PMEM pods through unmarked with a warning, /filter answers an error"""
    dead = os.path.join(WORK, "dead.kubeconfig")
    with open(CONTROLLER_KCFG) as f, open(dead, "w") as g:
        g.write(re.sub(r"server: \S+", "server: https://127.0.0.1:%d" % free_port(), f.read()))
    d = Driver("", dead)
    try:
        t0 = time.time()
        code, body = d.post("/pod/mutate", review(pod("p", [pvc_volume("big")])))
        res = json.loads(body)["response"]
        assert code == 200 and res["allowed"] is True and "patch" not in res, body
        assert "cannot check whether the pod uses PMEM" in res["warnings"][0], body
        code, body = d.post("/filter", filter_args([pvc_volume("big")]))
        assert code == 200 and "checking for unbound volumes" in json.loads(body)["Error"], body
        # bounded by the client's limits (5 s, one retry), well below the webhook's 10 s timeout
        print("# webhook and filter answered in %.1f s without an API server" % (time.time() - t0), flush=True)
        assert d.get_plain("/status") == (200, "ok")
    finally:
        d.stop()


@test
def t_clean_stop():
    """both drivers stop cleanly on SIGTERM"""
    for d in (DRIVER_MTLS, DRIVER_TLS):
        rc = d.stop()
        assert rc == 0, "exit code %s:\n%s" % (rc, d.text()[-2000:])


kubectl("delete", "csistoragecapacities", "--all", "-n", NS, check=False)
kubectl("delete", "pods", "--all", "-n", NS, "--wait=false", check=False)
kubectl("delete", "namespace", NS, "--wait=false", check=False)
kubectl("delete", "mutatingwebhookconfiguration", "pmem-csi-ext-test-hook", check=False)
kubectl("delete", "storageclass", "pmem-ext-late", "pmem-ext-now", "other-late", check=False)
kubectl("delete", "node", *NODES, check=False)
for d in (DRIVER_MTLS, DRIVER_TLS):
    d.stop()
if results[1] == 0:
    shutil.rmtree(WORK, ignore_errors=True)
else:
    print("# logs and certificates kept in %s; driver logs %s %s" % (WORK, DRIVER_MTLS.log.name,
                                                                      DRIVER_TLS.log.name))
print("%d passed, %d failed, %d skipped" % tuple(results))
sys.exit(1 if results[1] else 0)
