#!/usr/bin/python3
"""test_operator.py - pmem-csi-operator against a real kube-apiserver and
kube-controller-manager (the garbage collector and the workload controllers):
the CRD, a CR turned into deploy/generated's objects owned by the CR, a CR change
reaching the DaemonSet, a field set by someone else surviving a reconcile, invalid
CRs refused by the schema, and deleting the CR removing everything. Certificates:
generated ones in Secrets made once and reused, given ones verified, bad ones ->
Failed with the reason and nothing applied. Metrics scraped over HTTP.

usage: test_operator.py BUILDDIR KUBEDIR   (KUBEDIR from test/k8s/apiserver.sh)
Environment: KUBE_CONTROLLER_MANAGER (default: kube-controller-manager beside
$KUBE_APISERVER). Without it the tests that need it are skipped (failed when CI=true).
Prints ok/FAIL/SKIP lines and "N passed, N failed, N skipped".
"""
import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
import traceback
import urllib.request

import yaml

BUILD, KDIR = sys.argv[1], sys.argv[2]
OPERATOR = os.path.join(BUILD, "pmem-csi-operator")
KCFG = os.path.join(KDIR, "kubeconfig")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NS = "pmem-csi-op"  # not the manifest's pmem-csi: proves the namespace is patched
CR = "pmem-csi.intel.com"
PREFIX = "pmem-csi-intel-com"
results = [0, 0, 0]
procs = []
operators = []  # the operator processes of procs
metrics_ports = []  # -metrics-addr port of each operator started, in order


def kubectl(*args, input=None, check=True):
    p = subprocess.run(["kubectl", "--kubeconfig", KCFG] + list(args), input=input, capture_output=True,
                       text=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError("kubectl %s: %s" % (" ".join(args), p.stderr.strip()))
    return p if not check else p.stdout


def get(*args):
    p = subprocess.run(["kubectl", "--kubeconfig", KCFG, "get", "-o", "json"] + list(args),
                       capture_output=True, text=True, timeout=60)
    return json.loads(p.stdout) if p.returncode == 0 else None


def wait(what, fn, timeout=60):
    end = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.time() > end:
            raise AssertionError("timed out after %d s waiting for %s" % (timeout, what))
        time.sleep(0.5)


def test(name, fn, skip=None):
    if skip:
        if os.environ.get("CI") == "true":
            print("FAIL - %s (%s; CI=true: a missing tool is a failure)" % (name, skip))
            results[1] += 1
        else:
            print("SKIP - %s (%s)" % (name, skip))
            results[2] += 1
        return
    t = time.time()
    try:
        fn()
        print("ok - %s (%.1f s)" % (name, time.time() - t))
        results[0] += 1
    except Exception:
        print("FAIL - %s" % name)
        traceback.print_exc(file=sys.stdout)
        results[1] += 1
    sys.stdout.flush()


def cr(spec, name=CR):
    return json.dumps({"apiVersion": "pmem-csi.intel.com/v1beta1", "kind": "PmemCSIDeployment",
                       "metadata": {"name": name}, "spec": spec})


def manifest(mode="lvm"):
    with open(os.path.join(REPO, "deploy/generated/pmem-csi-%s.yaml" % mode)) as f:
        return [d for d in yaml.safe_load_all(f) if d and d["kind"] != "Namespace"]


RESOURCE = {"ServiceAccount": "serviceaccounts", "Role": "roles.rbac.authorization.k8s.io",
            "RoleBinding": "rolebindings.rbac.authorization.k8s.io",
            "ClusterRole": "clusterroles.rbac.authorization.k8s.io",
            "ClusterRoleBinding": "clusterrolebindings.rbac.authorization.k8s.io",
            "Deployment": "deployments.apps", "DaemonSet": "daemonsets.apps",
            "CSIDriver": "csidrivers.storage.k8s.io", "Secret": "secrets"}


def live(obj):
    args = [RESOURCE[obj["kind"]], obj["metadata"]["name"]]
    if "namespace" in obj["metadata"]:
        args += ["-n", NS]
    return get(*args)


def subset(want, have, path="."):
    """want is contained in have (the server adds defaults); the first difference or None."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return "%s: %r is not an object" % (path, have)
        for k, v in want.items():
            if k not in have:
                return "%s.%s: missing" % (path, k)
            d = subset(v, have[k], path + "." + k)
            if d:
                return d
        return None
    if isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            return "%s: %r != %r" % (path, have, want)
        for i, (w, h) in enumerate(zip(want, have)):
            d = subset(w, h, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    return None if want == have else "%s: %r != %r" % (path, have, want)


def ds_args(name="%s-node" % PREFIX):
    ds = get("daemonset", name, "-n", NS)
    return ds["spec"]["template"]["spec"]["containers"][0]["args"] if ds else []


def t_crd():
    kubectl("apply", "-f", os.path.join(REPO, "deploy/crd"))
    wait("the CRD to be established", lambda: "Established" in [
        c["type"] for c in (get("crd", "pmemcsideployments.pmem-csi.intel.com") or {}).get("status", {})
        .get("conditions", []) if c["status"] == "True"])
    kubectl("apply", "-f", "-", input=cr({}, name="defaults.example.org"))
    spec = get("pmemcsideployment", "defaults.example.org")["spec"]
    kubectl("delete", "pmemcsideployment", "defaults.example.org")
    want = {"deviceMode": "lvm", "logLevel": 3, "logFormat": "text", "pmemPercentage": 100,
            "pullPolicy": "IfNotPresent", "kubeletDir": "/var/lib/kubelet", "controllerReplicas": 1,
            "nodeSelector": {"storage": "pmem"}, "maxUnavailable": 1}
    assert spec == want, spec


def t_invalid():
    for spec, name, field in [({"deviceMode": "raw"}, "x.example.org", "spec.deviceMode"),
                              ({"pmemPercentage": 101}, "x.example.org", "spec.pmemPercentage"),
                              ({"logFormat": "xml"}, "x.example.org", "spec.logFormat"),
                              ({"pullPolicy": "Sometimes"}, "x.example.org", "spec.pullPolicy"),
                              ({}, "Upper.Case", "metadata.name"),
                              ({}, "a" * 64, "metadata.name")]:
        p = kubectl("apply", "-f", "-", input=cr(spec, name=name), check=False)
        assert p.returncode != 0, "%s %s accepted" % (name, spec)
        assert field in p.stderr, "%s not named in: %s" % (field, p.stderr)
    assert not (get("pmemcsideployments") or {}).get("items"), "an invalid CR was stored"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_operator():
    log = open(os.path.join(KDIR, "operator.log"), "w")
    port = free_port()
    metrics_ports.append(port)
    p = subprocess.Popen([OPERATOR, "-kubeconfig=" + KCFG, "-namespace=" + NS, "-resync=5", "-v=4",
                          "-metrics-addr=127.0.0.1:%d" % port],
                         stdout=log, stderr=subprocess.STDOUT)
    procs.append(p)
    operators.append(p)
    return p


def remove_foreign():
    """Other test modules on this API server (test_compat.py) install deploy/generated with
    kubectl: the operator rightly refuses to take over cluster-scoped objects that no
    PmemCSIDeployment owns. Remove those before the operator's tests."""
    for obj in manifest():
        if "namespace" in obj["metadata"]:
            continue
        o = live(obj)
        if o and not [r for r in o["metadata"].get("ownerReferences", []) if r["kind"] == "PmemCSIDeployment"]:
            kubectl("delete", RESOURCE[obj["kind"]], obj["metadata"]["name"])


def t_created():
    remove_foreign()
    kubectl("create", "namespace", NS)
    start_operator()
    kubectl("apply", "-f", "-", input=cr({}))
    st = wait("status Running", lambda: ((get("pmemcsideployment", CR) or {}).get("status") or {})
              .get("phase") == "Running" and get("pmemcsideployment", CR)["status"])
    assert [c["type"] for c in st["conditions"]] == ["CertsReady", "DriverDeployed"], st
    assert {c["component"] for c in st["driverComponents"]} == {"Controller", "Node"}, st
    uid = get("pmemcsideployment", CR)["metadata"]["uid"]
    for obj in manifest():
        o = live(obj)
        assert o, "%s %s missing" % (obj["kind"], obj["metadata"]["name"])
        refs = o["metadata"].get("ownerReferences", [])
        assert [(r["kind"], r["uid"], r.get("controller")) for r in refs] == [("PmemCSIDeployment", uid, True)], refs


CERT_VOLUMES = ("registry-cert", "node-cert")
PEER_ARGS = ("-peerListen=", "-caFile=", "-certFile=", "-keyFile=", "-peerSelector=")
PEER_RULE = {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}


def strip_certs(o):
    """o without the certificate volumes and mounts the operator adds (as 1.x did) and
    without the peer channel of cache volumes that reads the node certificate."""
    if o.get("kind") == "Role" and o["metadata"]["name"].endswith("-external-provisioner-cfg"):
        o["rules"] = [r for r in o["rules"] if r != PEER_RULE]
    pod = o.get("spec", {}).get("template", {}).get("spec")
    if not pod:
        return o
    if "volumes" in pod:
        pod["volumes"] = [v for v in pod["volumes"] if v["name"] not in CERT_VOLUMES]
    for c in pod.get("containers", []):
        if "volumeMounts" in c:
            c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] not in CERT_VOLUMES]
        # and the peer channel of cache volumes, which reads the node certificate
        if "args" in c:
            c["args"] = [a for a in c["args"] if not a.startswith(PEER_ARGS)]
        if "ports" in c:
            c["ports"] = [p for p in c["ports"] if p.get("name") != "peer"]
    return o


def t_equal_to_generated(mode="lvm"):
    """The default CR's objects are deploy/generated's (namespace, ownerReferences and
    the certificate mounts aside)."""
    for obj in manifest(mode):
        want = json.loads(json.dumps(obj))
        if "namespace" in want["metadata"]:
            want["metadata"]["namespace"] = NS
        for s in want.get("subjects", []):
            if "namespace" in s:
                s["namespace"] = NS
        o = strip_certs(live(obj))
        d = subset(want, o)
        assert not d, "%s %s differs: %s" % (obj["kind"], obj["metadata"]["name"], d)


def t_change():
    kubectl("patch", "pmemcsideployment", CR, "--type=merge", "-p",
            json.dumps({"spec": {"logLevel": 5, "logFormat": "json", "labels": {"team": "storage"}}}))
    wait("-v=5 in the node DaemonSet", lambda: "-v=5" in ds_args(), timeout=30)
    args = ds_args()
    assert "-logging-format=json" in args and "-v=3" not in args, args
    ds = get("daemonset", "%s-node" % PREFIX, "-n", NS)
    assert ds["metadata"]["labels"].get("team") == "storage", ds["metadata"]["labels"]


def t_others_fields_survive():
    kubectl("annotate", "daemonset", "%s-node" % PREFIX, "-n", NS, "example.org/owner=someone")
    kubectl("label", "serviceaccount", "%s-controller" % PREFIX, "-n", NS, "example.org/team=ops")
    kubectl("patch", "pmemcsideployment", CR, "--type=merge", "-p", json.dumps({"spec": {"logLevel": 4}}))
    wait("-v=4 in the node DaemonSet", lambda: "-v=4" in ds_args(), timeout=30)
    ds = get("daemonset", "%s-node" % PREFIX, "-n", NS)
    assert ds["metadata"].get("annotations", {}).get("example.org/owner") == "someone", ds["metadata"]
    sa = get("serviceaccount", "%s-controller" % PREFIX, "-n", NS)
    assert sa["metadata"]["labels"].get("example.org/team") == "ops", sa["metadata"]


# ---- certificates and metrics ----

def scrape(port=None):
    """{(name, ((label, value), ...)): value} and the TYPE of each family."""
    port = port or metrics_ports[0]
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
        assert r.status == 200, r.status
        text = r.read().decode()
    samples, types = {}, {}
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)$", line)
        if m:
            types[m.group(1)] = m.group(2)
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        assert m, "not a sample line: %r" % line
        labels = tuple(sorted(re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', m.group(2) or "")))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples, types


def sample(samples, metric, **labels):
    """The value of the series of metric whose labels include labels, or None."""
    for (n, ls), v in samples.items():
        if n == metric and all((k, v2) in ls for k, v2 in labels.items()):
            return v
    return None


def reconciles(name=CR):
    return sample(scrape()[0], "pmem_csi_deployment_reconcile", name=name) or 0


def secret(name):
    return get("secret", name, "-n", NS)


def openssl(*args, input=None):
    p = subprocess.run(["openssl"] + list(args), input=input, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, "openssl %s: %s" % (" ".join(args), p.stderr)
    return p.stdout


def check_tls_secret(name, cn, uid):
    s = secret(name)
    assert s, "Secret %s missing" % name
    assert s["type"] == "kubernetes.io/tls", s["type"]
    assert sorted(s["data"]) == ["ca.crt", "tls.crt", "tls.key"], sorted(s["data"])
    refs = s["metadata"].get("ownerReferences", [])
    assert [(r["kind"], r["uid"]) for r in refs] == [("PmemCSIDeployment", uid)], refs
    pem = {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
    ca = os.path.join(KDIR, "check-ca.crt")
    with open(ca, "w") as f:
        f.write(pem["ca.crt"])
    # Signed by the CA, issued for the name 1.x used, and the key is the certificate's.
    assert openssl("verify", "-CAfile", ca, input=pem["tls.crt"]).strip().endswith("OK")
    san = openssl("x509", "-noout", "-ext", "subjectAltName", input=pem["tls.crt"])
    assert "DNS:%s" % cn in san, san
    assert openssl("x509", "-noout", "-pubkey", input=pem["tls.crt"]) == \
        openssl("pkey", "-pubout", input=pem["tls.key"])
    return s


def conditions(name=CR):
    st = (get("pmemcsideployment", name) or {}).get("status") or {}
    return {c["type"]: (c["status"], c.get("reason", "")) for c in st.get("conditions", [])}


def t_secrets():
    """Generated once (a CA, pmem-registry and pmem-node-controller), reused by later
    reconciles, regenerated when one is deleted; mounted at /certs as 1.x did."""
    uid = get("pmemcsideployment", CR)["metadata"]["uid"]
    reg = check_tls_secret("%s-registry-secrets" % PREFIX, "pmem-registry", uid)
    node = check_tls_secret("%s-node-secrets" % PREFIX, "pmem-node-controller", uid)
    assert reg["data"]["ca.crt"] == node["data"]["ca.crt"], "two CAs"
    assert conditions()["CertsReady"] == ("True", "Driver certificates are available."), conditions()
    assert "CertsVerified" not in conditions(), conditions()
    # Mounted into the driver containers of the controller and the nodes.
    for kind, name, vol, sec in [("deployment", "%s-controller" % PREFIX, "registry-cert", reg),
                                 ("daemonset", "%s-node" % PREFIX, "node-cert", node)]:
        pod = get(kind, name, "-n", NS)["spec"]["template"]["spec"]
        assert {"name": vol, "secret": {"secretName": sec["metadata"]["name"], "defaultMode": 420}} in \
            pod["volumes"], pod["volumes"]
        c = [c for c in pod["containers"] if c["name"] == "pmem-driver"][0]
        assert {"name": vol, "mountPath": "/certs", "readOnly": True} in c["volumeMounts"], c["volumeMounts"]
    # The node drivers read theirs: the peer channel of cache volumes, peers = this CR's node pods.
    args = ds_args()
    for a in ("-peerListen=:10011", "-caFile=/certs/ca.crt", "-certFile=/certs/tls.crt", "-keyFile=/certs/tls.key",
              "-peerSelector=app.kubernetes.io/name=pmem-csi-node,app.kubernetes.io/instance=%s" % CR):
        assert a in args, args
    role = get("role", "%s-external-provisioner-cfg" % PREFIX, "-n", NS)
    assert PEER_RULE in role["rules"], role["rules"]
    # Reused: two more reconciles (resync every 5 s) leave both Secrets as they were.
    n = reconciles()
    wait("two more reconciles", lambda: reconciles() >= n + 2, timeout=30)
    for old in (reg, node):
        now = secret(old["metadata"]["name"])
        assert now["data"] == old["data"], "%s regenerated" % old["metadata"]["name"]
        assert now["metadata"]["resourceVersion"] == old["metadata"]["resourceVersion"], \
            "%s rewritten" % old["metadata"]["name"]
    # One deleted: a new set (the CA key is not kept, as in 1.x), both Secrets again.
    kubectl("delete", "secret", "%s-node-secrets" % PREFIX, "-n", NS)
    wait("the node Secret back", lambda: secret("%s-node-secrets" % PREFIX), timeout=30)
    reg2 = check_tls_secret("%s-registry-secrets" % PREFIX, "pmem-registry", uid)
    node2 = check_tls_secret("%s-node-secrets" % PREFIX, "pmem-node-controller", uid)
    assert reg2["data"]["ca.crt"] == node2["data"]["ca.crt"] != reg["data"]["ca.crt"]


def t_metrics():
    """1.x's pmem_csi_deployment_* and controller-runtime's reconcile metrics over HTTP."""
    samples, types = scrape()
    uid = get("pmemcsideployment", CR)["metadata"]["uid"]
    for name, typ in [("pmem_csi_deployment_reconcile", "counter"),
                      ("pmem_csi_deployment_sub_resource_created_at", "gauge"),
                      ("controller_runtime_reconcile_total", "counter"),
                      ("controller_runtime_reconcile_errors_total", "counter"),
                      ("controller_runtime_reconcile_time_seconds", "histogram"),
                      ("build_info", "gauge"), ("process_start_time_seconds", "gauge")]:
        assert types.get(name) == typ, "%s: TYPE %s" % (name, types.get(name))
    r0 = sample(samples, "pmem_csi_deployment_reconcile", name=CR, uid=uid)
    assert r0 and r0 >= 1, r0
    # Every object of the CR was created by us, labelled as 1.x labels it.
    ds = get("daemonset", "%s-node" % PREFIX, "-n", NS)
    t = sample(samples, "pmem_csi_deployment_sub_resource_created_at", name="%s-node" % PREFIX, namespace=NS,
               group="apps", version="v1", kind="DaemonSet", uid=ds["metadata"]["uid"], ownedBy=uid)
    assert t and abs(t - time.time()) < 600, t
    for obj in manifest():
        o = live(obj)
        assert sample(samples, "pmem_csi_deployment_sub_resource_created_at", uid=o["metadata"]["uid"]), \
            "no created_at for %s %s" % (obj["kind"], obj["metadata"]["name"])
    ok0 = sample(samples, "controller_runtime_reconcile_total", controller="deployment-controller",
                 result="success")
    c0 = sample(samples, "controller_runtime_reconcile_time_seconds_count", controller="deployment-controller")
    # The counters move with the resync.
    wait("the reconcile counter to move", lambda: reconciles() > r0, timeout=30)
    samples = scrape()[0]
    assert sample(samples, "controller_runtime_reconcile_total", controller="deployment-controller",
                  result="success") > ok0
    assert sample(samples, "controller_runtime_reconcile_time_seconds_count",
                  controller="deployment-controller") > c0


def t_metrics_updated():
    """The CR change of the earlier test updated the DaemonSet: updated_at is set for it."""
    ds = get("daemonset", "%s-node" % PREFIX, "-n", NS)
    t = sample(scrape()[0], "pmem_csi_deployment_sub_resource_updated_at", kind="DaemonSet",
               uid=ds["metadata"]["uid"])
    assert t and abs(t - time.time()) < 600, t


CR2 = "certs.example.org"  # its own nodes: not the default CR's
PREFIX2 = "certs-example-org"


def given_spec(**override):
    """The certificates of the default CR's Secrets, as a second CR's spec fields (base64 PEM, as 1.x)."""
    reg = secret("%s-registry-secrets" % PREFIX)["data"]
    node = secret("%s-node-secrets" % PREFIX)["data"]
    spec = {"nodeSelector": {"example.org/certs": "yes"}, "caCert": reg["ca.crt"],
            "registryCert": reg["tls.crt"], "registryKey": reg["tls.key"],
            "nodeControllerCert": node["tls.crt"], "nodeControllerKey": node["tls.key"]}
    spec.update(override)
    return spec


def phase(name):
    return ((get("pmemcsideployment", name) or {}).get("status") or {}).get("phase")


def t_given_certs():
    """Given certificates verified and used; bad ones -> Failed with the reason, nothing applied."""
    kubectl("apply", "-f", "-", input=cr(given_spec(), name=CR2))
    wait("%s Running" % CR2, lambda: phase(CR2) == "Running")
    assert conditions(CR2)["CertsVerified"] == ("True", "Driver certificates validated."), conditions(CR2)
    assert conditions(CR2)["CertsReady"][0] == "True", conditions(CR2)
    spec = given_spec()
    s = secret("%s-registry-secrets" % PREFIX2)["data"]
    assert (s["ca.crt"], s["tls.crt"], s["tls.key"]) == (spec["caCert"], spec["registryCert"], spec["registryKey"])
    s = secret("%s-node-secrets" % PREFIX2)["data"]
    assert (s["tls.crt"], s["tls.key"]) == (spec["nodeControllerCert"], spec["nodeControllerKey"])
    ds_before = get("daemonset", "%s-node" % PREFIX2, "-n", NS)
    sec_before = secret("%s-registry-secrets" % PREFIX2)
    errors0 = sample(scrape()[0], "controller_runtime_reconcile_errors_total", controller="deployment-controller")

    # The node controller's key for the registry certificate, with a log level change:
    # Failed, reason names the field, and neither the Secret nor the DaemonSet changes.
    bad = given_spec(registryKey=spec["nodeControllerKey"], logLevel=6)
    kubectl("apply", "-f", "-", input=cr(bad, name=CR2))
    wait("%s Failed" % CR2, lambda: phase(CR2) == "Failed")
    st = get("pmemcsideployment", CR2)["status"]
    assert "spec.registryKey: the private key does not match the certificate in spec.registryCert" in \
        st["reason"], st
    assert conditions(CR2)["CertsVerified"][0] == "False" and "spec.registryKey" in conditions(CR2)["CertsVerified"][1]
    assert conditions(CR2)["CertsReady"][0] == "False", conditions(CR2)
    assert conditions(CR2)["DriverDeployed"][0] == "False", conditions(CR2)
    n = reconciles(CR2)
    wait("another reconcile of %s" % CR2, lambda: reconciles(CR2) > n, timeout=30)
    ds = get("daemonset", "%s-node" % PREFIX2, "-n", NS)
    assert ds["metadata"]["resourceVersion"] == ds_before["metadata"]["resourceVersion"], "DaemonSet changed"
    assert "-v=6" not in ds["spec"]["template"]["spec"]["containers"][0]["args"]
    assert secret("%s-registry-secrets" % PREFIX2)["metadata"]["resourceVersion"] == \
        sec_before["metadata"]["resourceVersion"], "Secret changed"
    assert sample(scrape()[0], "controller_runtime_reconcile_errors_total",
                  controller="deployment-controller") > errors0

    # Base64 of something that is not PEM.
    kubectl("apply", "-f", "-", input=cr(given_spec(caCert=base64.b64encode(b"not a certificate").decode()),
                                         name=CR2))
    wait("%s Failed for spec.caCert" % CR2, lambda: "spec.caCert: not a PEM certificate" in
         ((get("pmemcsideployment", CR2) or {}).get("status") or {}).get("reason", ""))
    # Not base64 at all: the schema (format: byte, as 1.x) refuses it, naming the field.
    p = kubectl("apply", "-f", "-", input=cr(given_spec(caCert="%%% not base64"), name=CR2), check=False)
    assert p.returncode != 0 and "spec.caCert" in p.stderr, p.stderr
    # Incomplete.
    inc = given_spec()
    del inc["nodeControllerKey"]
    kubectl("apply", "-f", "-", input=cr(inc, name=CR2))
    wait("%s Failed as incomplete" % CR2, lambda: "missing: spec.nodeControllerKey" in
         ((get("pmemcsideployment", CR2) or {}).get("status") or {}).get("reason", ""))

    # Good ones again: Running, and the pending log level change arrives.
    kubectl("apply", "-f", "-", input=cr(given_spec(logLevel=6), name=CR2))
    wait("%s Running again" % CR2, lambda: phase(CR2) == "Running")
    wait("-v=6 in %s's DaemonSet" % CR2, lambda: "-v=6" in ds_args("%s-node" % PREFIX2), timeout=30)

    # A new CR with bad certificates gets nothing at all.
    kubectl("apply", "-f", "-", input=cr(given_spec(registryKey=spec["nodeControllerKey"],
                                                    nodeSelector={"example.org/fresh": "yes"}),
                                         name="fresh.example.org"))
    wait("fresh.example.org Failed", lambda: phase("fresh.example.org") == "Failed")
    for kind, name in [("secret", "fresh-example-org-registry-secrets"), ("secret", "fresh-example-org-node-secrets"),
                       ("daemonset", "fresh-example-org-node"), ("deployment", "fresh-example-org-controller"),
                       ("serviceaccount", "fresh-example-org-controller")]:
        assert get(kind, name, "-n", NS) is None, "%s %s exists" % (kind, name)
    assert get("csidriver", "fresh.example.org") is None
    kubectl("delete", "pmemcsideployment", "fresh.example.org", CR2)


def t_operator_manifest():
    """deploy/operator is accepted by the API server and serves metrics as 1.x's did."""
    f = os.path.join(REPO, "deploy/operator/pmem-csi-operator.yaml")
    # A server-side dry-run does not create the Namespace the other objects need.
    kubectl("create", "namespace", "pmem-csi", check=False)
    kubectl("apply", "--dry-run=server", "-f", f)
    with open(f) as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    svc = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "pmem-csi-operator-metrics"]
    assert svc and svc[0]["spec"]["ports"][0]["port"] == 8080, svc
    c = [d for d in docs if d["kind"] == "Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    assert "-metrics-addr=:8080" in c["args"] and {"name": "metrics", "containerPort": 8080} in c["ports"], c


def t_delete():
    kubectl("delete", "pmemcsideployment", CR)
    for obj in manifest() + [{"kind": "Secret", "metadata": {"name": "%s-%s-secrets" % (PREFIX, n),
                                                               "namespace": NS}} for n in ("registry", "node")]:
        wait("%s %s removed by the garbage collector" % (obj["kind"], obj["metadata"]["name"]),
             lambda: live(obj) is None, timeout=90)


def t_direct():
    kubectl("apply", "-f", "-", input=cr({"deviceMode": "direct"}))
    wait("status Running", lambda: ((get("pmemcsideployment", CR) or {}).get("status") or {})
         .get("phase") == "Running")
    t_equal_to_generated("direct")
    kubectl("delete", "pmemcsideployment", CR)


# --- leader election, watches on owned objects, events, bad CRs, 1.x takeover ----------
# These start their own operators with -resync=300: whatever happens within seconds
# is the work of the watches, not of a resync.
LEASE = "pmem-csi-operator-lock"
NODE_SEL = {"olife.example.org/pmem": "a"}
replicas = {}


def stop_operators():
    """SIGTERM: the leader releases the lease on the way out."""
    for p in operators:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


def start_replica(pod):
    log = open(os.path.join(KDIR, "operator-%s.log" % pod), "w")
    env = dict(os.environ, POD_NAME=pod)
    p = subprocess.Popen([OPERATOR, "-kubeconfig=" + KCFG, "-namespace=" + NS, "-resync=300", "-v=4",
                          "-metrics-addr=0"], stdout=log, stderr=subprocess.STDOUT, env=env)
    procs.append(p)
    operators.append(p)
    replicas[pod] = p
    return p


def holder():
    lease = get("lease", LEASE, "-n", NS)
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or ""


def status():
    return (get("pmemcsideployment", CR) or {}).get("status") or {}


def events(reason=None, name=CR):
    uid = (get("pmemcsideployment", name) or {}).get("metadata", {}).get("uid")
    evs = (get("events", "-n", "default") or {}).get("items", [])
    return [e for e in evs if e["involvedObject"].get("uid") == uid and (reason is None or e["reason"] == reason)]


def node(name, labels):
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node",
                                                  "metadata": {"name": name, "labels": labels}}))
    # The API server taints a new node not-ready (NoSchedule), which DaemonSets do not
    # tolerate; no node lifecycle controller runs here to take it away again.
    kubectl("taint", "node", name, "node.kubernetes.io/not-ready:NoSchedule-", check=False)


def t_leader():
    stop_operators()
    kubectl("apply", "-f", "-", input=cr({"nodeSelector": NODE_SEL}))
    start_replica("op-a")
    start_replica("op-b")
    first = wait("a leader", lambda: holder().startswith("op-") and holder(), timeout=30)
    wait("status Running", lambda: status().get("phase") == "Running", timeout=60)
    leader, other = ("op-a", "op-b") if first.startswith("op-a_") else ("op-b", "op-a")
    time.sleep(3)
    with open(os.path.join(KDIR, "operator-%s.log" % other)) as f:
        assert "objects applied" not in f.read(), "the replica that is not the leader reconciled"
    t0 = time.time()
    replicas[leader].kill()  # SIGKILL: no release, the lease must expire (15 s)
    new = wait("the other replica to take over", lambda: holder().startswith(other + "_") and holder(),
               timeout=45)
    took = time.time() - t0
    print("# lease taken over by %s %.1f s after the leader was killed" % (new, took))
    assert took >= 10, "taken over after %.1f s: before the lease expired" % took
    start_replica(leader)  # two replicas again for what follows


def t_stolen_lease():
    """Losing the lease stops reconciling at once: a foreign holder, then a CR change."""
    for attempt in range(10):  # the leader renews every 2 s: a conflict means "read again"
        lease = get("lease", LEASE, "-n", NS)
        lease["spec"]["holderIdentity"] = "intruder"
        lease["spec"]["leaseDurationSeconds"] = 12
        p = kubectl("replace", "-f", "-", input=json.dumps(lease), check=False)
        if p.returncode == 0:
            break
        assert "Conflict" in p.stderr and attempt < 9, p.stderr
    time.sleep(4)  # > retry period: the leader has seen it
    kubectl("patch", "pmemcsideployment", CR, "--type=merge", "-p", json.dumps({"spec": {"logLevel": 6}}))
    time.sleep(4)
    assert "-v=6" not in ds_args(), "reconciled without holding the lease"
    wait("a replica to take the expired lease", lambda: holder().startswith("op-"), timeout=40)
    wait("-v=6 after the takeover", lambda: "-v=6" in ds_args(), timeout=20)


def t_repair():
    ds = get("daemonset", "%s-node" % PREFIX, "-n", NS)
    uid = ds["metadata"]["uid"]
    t0 = time.time()
    kubectl("delete", "daemonset", "%s-node" % PREFIX, "-n", NS, "--wait=false")
    wait("the DaemonSet back", lambda: (get("daemonset", "%s-node" % PREFIX, "-n", NS) or {})
         .get("metadata", {}).get("uid") not in (None, uid), timeout=15)
    print("# deleted DaemonSet back after %.1f s" % (time.time() - t0))
    kubectl("set", "image", "deployment/%s-controller" % PREFIX, "-n", NS, "pmem-driver=example.org/other:1")
    t0 = time.time()
    wait("the controller image repaired", lambda: (get("deployment", "%s-controller" % PREFIX, "-n", NS) or {})
         ["spec"]["template"]["spec"]["containers"][0]["image"] != "example.org/other:1", timeout=15)
    print("# changed Deployment repaired after %.1f s" % (time.time() - t0))


def t_status_follows():
    node("olife-n1", dict(NODE_SEL))
    t0 = time.time()
    st = wait("Node NotReady 0 out of 1", lambda: [c for c in status().get("driverComponents", [])
                                                  if c["component"] == "Node" and "0 out of 1" in c["reason"]],
              timeout=30)
    print("# node status followed the DaemonSet after %.1f s: %s" % (time.time() - t0, st[0]["reason"]))
    assert st[0]["status"] == "NotReady", st
    logs = ""
    for pod in replicas:
        with open(os.path.join(KDIR, "operator-%s.log" % pod)) as f:
            logs += f.read()
    assert "refreshing the component status" in logs, "a status-only change ran a whole reconcile"


def t_events_once():
    for reason in ("NewDeployment", "Running"):
        evs = events(reason)
        assert len(evs) == 1, "%d %s events: %s" % (len(evs), reason, [e["message"] for e in evs])
        assert evs[0]["source"]["component"] == "pmem-csi-operator", evs[0]
    assert not events("Failed"), [e["message"] for e in events("Failed")]


def no_objects(prefix):
    for res in ("daemonsets", "deployments", "serviceaccounts", "roles.rbac.authorization.k8s.io"):
        items = [i["metadata"]["name"] for i in (get(res, "-n", NS) or {}).get("items", [])
                 if i["metadata"]["name"].startswith(prefix + "-")]
        assert not items, "half-applied: %s %s" % (res, items)
    for res in ("clusterroles", "clusterrolebindings"):
        items = [i["metadata"]["name"] for i in (get(res) or {}).get("items", [])
                 if i["metadata"]["name"].startswith(prefix + "-")]
        assert not items, "half-applied: %s %s" % (res, items)


def failed(name, field):
    def f():
        s = (get("pmemcsideployment", name) or {}).get("status") or {}
        return s.get("phase") == "Failed" and field in s.get("reason", "") and s
    return f


def t_bad_overlap():
    node("olife-n2", dict(NODE_SEL, **{"olife.example.org/other": "b"}))
    second = "second.example.org"
    kubectl("apply", "-f", "-", input=cr({"nodeSelector": {"olife.example.org/other": "b"}}, name=second))
    st = wait("the second CR Failed", failed(second, "spec.nodeSelector"), timeout=30)
    assert "olife-n2" in st["reason"] and CR in st["reason"], st["reason"]
    wait("a Failed event", lambda: events("Failed", name=second), timeout=10)
    no_objects("second-example-org")
    assert status().get("phase") == "Running", status()
    kubectl("patch", "pmemcsideployment", second, "--type=merge", "-p",
            json.dumps({"spec": {"nodeSelector": {"olife.example.org/other": "c"}}}))
    wait("the fixed second CR Running", lambda: ((get("pmemcsideployment", second) or {}).get("status") or {})
         .get("phase") == "Running", timeout=30)
    kubectl("delete", "pmemcsideployment", second)


def t_bad_image():
    kubectl("patch", "pmemcsideployment", CR, "--type=merge", "-p", json.dumps({"spec": {"image": "Bad//Image:x"}}))
    st = wait("Failed for spec.image", failed(CR, "spec.image"), timeout=30)
    assert "Bad//Image:x" in st["reason"], st
    wait("a Failed event", lambda: events("Failed"), timeout=10)
    ds = get("daemonset", "%s-node" % PREFIX, "-n", NS)
    assert ds["spec"]["template"]["spec"]["containers"][0]["image"] != "Bad//Image:x", "half-applied"
    kubectl("patch", "pmemcsideployment", CR, "--type=json", "-p", '[{"op":"remove","path":"/spec/image"}]')
    wait("Running again", lambda: status().get("phase") == "Running", timeout=30)
    assert len(events("Running")) == 2, "Running again is one more event"


def t_bad_foreign_object():
    name, prefix = "foreign.example.org", "foreign-example-org"
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
                                                  "metadata": {"name": name}, "spec": {"attachRequired": False}}))
    kubectl("apply", "-f", "-", input=cr({"nodeSelector": {"olife.example.org/foreign": "x"}}, name=name))
    st = wait("Failed: CSIDriver not owned", failed(name, "not owned by"), timeout=30)
    assert "CSIDriver" in st["reason"], st["reason"]
    wait("a Failed event", lambda: events("Failed", name=name), timeout=10)
    no_objects(prefix)
    assert not (get("csidriver", name) or {}).get("metadata", {}).get("ownerReferences"), "foreign object taken"
    kubectl("delete", "csidriver", name)
    kubectl("patch", "pmemcsideployment", name, "--type=merge", "-p", json.dumps({"spec": {"logLevel": 4}}))
    wait("Running after the foreign object is gone", lambda: ((get("pmemcsideployment", name) or {})
                                                              .get("status") or {}).get("phase") == "Running",
         timeout=30)
    kubectl("delete", "pmemcsideployment", name)


def pv(name):
    return json.dumps({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
                       "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                "csi": {"driver": CR, "volumeHandle": "pvc-olife-1"}}})


def t_bad_mode_change():
    kubectl("apply", "-f", "-", input=pv("olife-pv"))
    kubectl("patch", "pmemcsideployment", CR, "--type=merge", "-p", json.dumps({"spec": {"deviceMode": "direct"}}))
    st = wait("Failed for spec.deviceMode", failed(CR, "spec.deviceMode"), timeout=30)
    assert "olife-pv" in st["reason"], st
    assert "-deviceManager=lvm" in ds_args(), "half-applied: %s" % ds_args()
    # No pv-protection controller runs here: drop its finalizer, or the delete never ends.
    kubectl("delete", "pv", "olife-pv", "--wait=false")
    kubectl("patch", "pv", "olife-pv", "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
    kubectl("patch", "pmemcsideployment", CR, "--type=merge", "-p", json.dumps({"spec": {"deviceMode": "lvm"}}))
    wait("Running again", lambda: status().get("phase") == "Running", timeout=30)
    # Without volumes the change goes through: the workloads are recreated (selector carries the mode).
    kubectl("patch", "pmemcsideployment", CR, "--type=merge", "-p", json.dumps({"spec": {"deviceMode": "direct"}}))
    wait("-deviceManager=direct", lambda: "-deviceManager=direct" in ds_args(), timeout=30)
    wait("Running in direct mode", lambda: status().get("phase") == "Running", timeout=30)


def inline_pod(name):
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                       "spec": {"nodeName": "olife-n1", "automountServiceAccountToken": False,
                                "containers": [{"name": "c", "image": "busybox", "volumeMounts": [
                                    {"name": "pmem", "mountPath": "/data"}]}],
                                "volumes": [{"name": "pmem", "csi": {"driver": CR,
                                                                     "volumeAttributes": {"size": "1Gi"}}}]}})


def pod_phase(name, phase):
    kubectl("patch", "pod", name, "-n", "default", "--subresource=status", "--type=merge", "-p",
            json.dumps({"status": {"phase": phase}}))


def t_bad_mode_change_inline():
    """Inline ephemeral volumes hold PMEM too: a pod that is not terminated blocks the change;
    one that Succeeded (or Failed) does not. t_bad_mode_change left the CR in direct mode."""
    wait("Running in direct mode", lambda: status().get("phase") == "Running", timeout=30)
    kubectl("apply", "-f", "-", input=inline_pod("olife-inline"))
    pod_phase("olife-inline", "Running")
    kubectl("patch", "pmemcsideployment", CR, "--type=merge", "-p", json.dumps({"spec": {"deviceMode": "lvm"}}))
    st = wait("Failed for spec.deviceMode", failed(CR, "spec.deviceMode"), timeout=30)
    assert "pod default/olife-inline" in st["reason"] and "inline ephemeral" in st["reason"], st["reason"]
    assert "-deviceManager=direct" in ds_args(), "half-applied: %s" % ds_args()
    pod_phase("olife-inline", "Succeeded")  # terminated: its volume is gone from the node
    # Any change makes the operator look again: a logLevel other than the current one.
    level = 7 if get("pmemcsideployment", CR)["spec"].get("logLevel") != 7 else 8
    kubectl("patch", "pmemcsideployment", CR, "--type=merge", "-p", json.dumps({"spec": {"logLevel": level}}))
    wait("-deviceManager=lvm", lambda: "-deviceManager=lvm" in ds_args(), timeout=30)
    wait("Running in LVM mode", lambda: status().get("phase") == "Running", timeout=30)
    kubectl("delete", "pod", "olife-inline", "-n", "default", "--grace-period=0", "--force", check=False)


def cr_status(name):
    return (get("pmemcsideployment", name) or {}).get("status") or {}


def t_overlap_rules():
    """One driver per node, the older CR wins: a CR without nodeSelector (default storage=pmem)
    overlaps on a node with both labels; a narrower selector is refused before any node has
    its labels; direct beside LVM with pmemPercentage < 100 may share nodes (1.x's rule);
    disjoint selectors both run; two CRs made at once: the younger by (creationTimestamp,
    name) fails, never both, and the winner keeps running."""
    # (a) no nodeSelector: every node labelled storage=pmem, here also selected by CR (older).
    node("olife-n3", dict(NODE_SEL, storage="pmem"))
    nosel = "nosel.example.org"
    kubectl("apply", "-f", "-", input=cr({}, name=nosel))
    st = wait("the CR without nodeSelector Failed", failed(nosel, "spec.nodeSelector"), timeout=30)
    assert "olife-n3" in st["reason"] and CR in st["reason"], st["reason"]
    no_objects("nosel-example-org")
    assert status().get("phase") == "Running", status()
    # The older CR is reconciled again (a change) and stays Running: the younger does not block it.
    kubectl("patch", "pmemcsideployment", CR, "--type=merge", "-p", json.dumps({"spec": {"logLevel": 4}}))
    wait("-v=4", lambda: "-v=4" in ds_args(), timeout=30)
    assert status().get("phase") == "Running", status()
    kubectl("delete", "pmemcsideployment", nosel)
    # (d) a narrower selector (no node carries it yet): refused without nodes.
    sub = "sub.example.org"
    kubectl("apply", "-f", "-", input=cr({"nodeSelector": dict(NODE_SEL, **{"olife.example.org/zone": "z"})},
                                          name=sub))
    st = wait("the narrower CR Failed", failed(sub, "every node it selects is also selected by"), timeout=30)
    assert CR in st["reason"], st["reason"]
    no_objects("sub-example-org")
    kubectl("delete", "pmemcsideployment", sub)
    # (e) 1.x's exception: direct beside LVM with pmemPercentage < 100 on the same nodes.
    sh = "sh.example.org"
    kubectl("apply", "-f", "-", input=cr({"nodeSelector": NODE_SEL, "deviceMode": "direct"}, name=sh))
    wait("direct beside LVM at 100%% Failed", failed(sh, "pmemPercentage < 100 beside direct"), timeout=30)
    no_objects("sh-example-org")
    kubectl("patch", "pmemcsideployment", CR, "--type=merge", "-p", json.dumps({"spec": {"pmemPercentage": 50}}))
    wait("-pmemPercentage=50", lambda: "-pmemPercentage=50" in ds_args(), timeout=30)
    kubectl("patch", "pmemcsideployment", sh, "--type=merge", "-p", json.dumps({"spec": {"logLevel": 5}}))
    wait("direct beside LVM at 50%% Running", lambda: cr_status(sh).get("phase") == "Running", timeout=60)
    assert status().get("phase") == "Running", status()
    kubectl("delete", "pmemcsideployment", sh)
    kubectl("patch", "pmemcsideployment", CR, "--type=merge", "-p", json.dumps({"spec": {"pmemPercentage": 100}}))
    # (b) disjoint selectors, different driver names: both run.
    node("olife-n4", {"olife.example.org/x": "1"})
    node("olife-n5", {"olife.example.org/x": "2"})
    d1, d2 = "d1.example.org", "d2.example.org"
    kubectl("apply", "-f", "-", input=cr({"nodeSelector": {"olife.example.org/x": "1"}}, name=d1))
    kubectl("apply", "-f", "-", input=cr({"nodeSelector": {"olife.example.org/x": "2"}}, name=d2))
    for n in (d1, d2):
        wait("%s Running" % n, lambda: cr_status(n).get("phase") == "Running", timeout=60)
    kubectl("delete", "pmemcsideployment", d1, d2)
    # (c) made together (usually the same second): the younger by timestamp, then name, fails.
    node("olife-n6", {"olife.example.org/y": "1"})
    t1, t2 = "t2.example.org", "t1.example.org"
    both = {"apiVersion": "v1", "kind": "List", "items": [
        json.loads(cr({"nodeSelector": {"olife.example.org/y": "1"}}, name=n)) for n in (t1, t2)]}
    kubectl("apply", "-f", "-", input=json.dumps(both))
    crs = {n: get("pmemcsideployment", n)["metadata"]["creationTimestamp"] for n in (t1, t2)}
    winner, loser = sorted((t1, t2), key=lambda n: (crs[n], n))
    print("# created %s; winner %s" % (crs, winner))
    wait("%s Failed" % loser, failed(loser, "spec.nodeSelector"), timeout=60)
    wait("%s Running" % winner, lambda: cr_status(winner).get("phase") == "Running", timeout=60)
    assert winner in cr_status(loser)["reason"], cr_status(loser)
    no_objects(loser.replace(".", "-"))
    # The winner gone, the other one takes the node.
    kubectl("delete", "pmemcsideployment", winner)
    wait("%s Running after %s is gone" % (loser, winner), lambda: cr_status(loser).get("phase") == "Running",
         timeout=60)
    kubectl("delete", "pmemcsideployment", loser)


def sidecar_events():
    return [e["message"] for e in events("SidecarImages")]


def t_sidecars_by_version():
    """Default sidecar images come from the table row for the cluster's version (v1.32 here:
    deploy/generated's, which t_equal_to_generated checks); an explicit CR field wins; an
    Event says which and why."""
    ver = json.loads(kubectl("get", "--raw", "/version"))
    msgs = sidecar_events()
    assert msgs and ver["gitVersion"] in msgs[0], msgs
    assert "csi-provisioner:v5.3.0" in msgs[0] and "1.32 and newer" in msgs[0], msgs
    with open(os.path.join(KDIR, "operator.log")) as f:
        assert "Kubernetes %s (1.%s)" % (ver["gitVersion"], ver["minor"].rstrip("+")) in f.read()
    kubectl("patch", "pmemcsideployment", CR, "--type=merge", "-p",
            json.dumps({"spec": {"provisionerImage": "example.org/csi-provisioner:v9.9.9"}}))
    img = lambda: [c["image"] for c in get("daemonset", "%s-node" % PREFIX, "-n", NS)["spec"]["template"]["spec"]
                   ["containers"] if c["name"] == "external-provisioner"][0]
    wait("the explicit provisionerImage", lambda: img() == "example.org/csi-provisioner:v9.9.9", timeout=30)
    m = wait("a second SidecarImages event", lambda: len(sidecar_events()) >= 2 and sidecar_events(), timeout=10)
    assert any("v9.9.9 (spec.provisionerImage)" in x for x in m), m
    kubectl("patch", "pmemcsideployment", CR, "--type=json", "-p",
            '[{"op":"remove","path":"/spec/provisionerImage"}]')
    wait("the default provisioner again", lambda: img().endswith("csi-provisioner:v5.3.0"), timeout=30)
    n = len(sidecar_events())
    kubectl("patch", "pmemcsideployment", CR, "--type=merge", "-p", json.dumps({"spec": {"logLevel": 3}}))
    wait("-v=3", lambda: "-v=3" in ds_args(), timeout=30)
    time.sleep(1)
    assert len(sidecar_events()) == n, "a reconcile that kept the images recorded an event"


class VersionProxy:
    """A plain-HTTP front for the real kube-apiserver (admin client certificate) that
    passes every request through, streams included, and answers GET /version with
    self.version when set: the only way to show the operator other Kubernetes versions
    with the one API server binary the tests have. Everything else is the real server."""

    def __init__(self):
        import http.client
        import http.server
        import ssl
        import threading
        with open(KCFG) as f:
            server = re.search(r"server: https://([^\s]+)", f.read()).group(1)
        host, port = server.rsplit(":", 1)
        ctx = ssl.create_default_context(cafile=os.path.join(KDIR, "ca.crt"))
        ctx.load_cert_chain(os.path.join(KDIR, "admin.crt"), os.path.join(KDIR, "admin.key"))
        proxy = self
        self.version = None

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def forward(self):
                if self.path == "/version" and proxy.version is not None:
                    body = json.dumps(proxy.version).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "content-length", "authorization")}
                c = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=600)
                c.request(self.command, self.path, body=body, headers=headers)
                r = c.getresponse()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    while True:
                        chunk = r.read1(65536)
                        if not chunk:
                            break
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                finally:
                    c.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.kubeconfig = os.path.join(KDIR, "kubeconfig-proxy")
        with open(self.kubeconfig, "w") as f:
            f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: p\n  cluster:\n    server: http://127.0.0.1:%d\n"
                    "users:\n- name: u\n  user: {}\ncontexts:\n- name: p\n  context: {cluster: p, user: u}\n"
                    "current-context: p\n" % self.server.server_address[1])

    def stop(self):
        self.server.shutdown()


def node_images():
    ds = get("daemonset", "%s-node" % PREFIX, "-n", NS)
    return {c["name"]: c["image"] for c in ds["spec"]["template"]["spec"]["containers"]}


def t_version_change():
    """GET /version through VersionProxy: 1.20 -> Failed naming the version, nothing applied;
    the version becomes 1.27 -> within a resync the CR runs with 1.27's sidecars (v3.6.0,
    v2.9.0) and a SidecarImages event says why; back to the real version -> deploy/generated's."""
    stop_operators()
    real = json.loads(kubectl("get", "--raw", "/version"))
    before = node_images()
    proxy = VersionProxy()
    proxy.version = {"major": "1", "minor": "20", "gitVersion": "v1.20.15"}
    log = open(os.path.join(KDIR, "operator-version.log"), "w")
    p = subprocess.Popen([OPERATOR, "-kubeconfig=" + proxy.kubeconfig, "-namespace=" + NS, "-resync=3", "-v=4",
                          "-metrics-addr=0", "-leader-election=false"], stdout=log, stderr=subprocess.STDOUT)
    procs.append(p)
    operators.append(p)
    try:
        kubectl("patch", "pmemcsideployment", CR, "--type=merge", "-p", json.dumps({"spec": {"logLevel": 2}}))
        st = wait("Failed: Kubernetes 1.20 too old", failed(CR, "v1.20.15"), timeout=30)
        assert "older than 1.21" in st["reason"], st["reason"]
        assert node_images() == before and "-v=2" not in ds_args(), "half-applied: %s" % node_images()
        t0 = time.time()
        proxy.version = {"major": "1", "minor": "27+", "gitVersion": "v1.27.16-eks-2f008fe"}
        wait("1.27's sidecars", lambda: node_images().get("external-provisioner", "").endswith(
            "csi-provisioner:v3.6.0"), timeout=30)
        print("# version change applied after %.1f s (resync 3 s)" % (time.time() - t0))
        imgs = node_images()
        assert imgs["node-driver-registrar"].endswith("csi-node-driver-registrar:v2.9.0"), imgs
        wait("Running", lambda: status().get("phase") == "Running", timeout=30)
        m = wait("a SidecarImages event for 1.27", lambda: [e for e in sidecar_events() if "v1.27.16" in e],
                 timeout=10)
        assert "1.27-1.28" in m[0], m
        proxy.version = None  # the real server's answer again
        wait("deploy/generated's sidecars on %s" % real["gitVersion"], lambda: node_images() == dict(
            before, **{"pmem-driver": node_images()["pmem-driver"]}), timeout=30)
        with open(os.path.join(KDIR, "operator-version.log")) as f:
            assert "the version changed" in f.read()
    finally:
        stop_operators()
        proxy.stop()


def v1x_objects(uid, mode="lvm"):
    """What intel/pmem-csi 1.x's operator created (controller_driver.go): names, labels, selectors."""
    own = [{"apiVersion": "pmem-csi.intel.com/v1beta1", "kind": "PmemCSIDeployment", "name": CR, "uid": uid,
            "controller": True, "blockOwnerDeletion": True}]

    def meta(name, ns=True, labels=None):
        m = {"name": name, "ownerReferences": own}
        if ns:
            m["namespace"] = NS
        if labels:
            m["labels"] = labels
        return m

    def labels(name, comp):
        return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "pmem-csi",
                "app.kubernetes.io/component": comp, "app.kubernetes.io/instance": CR}

    def workload(kind, name, comp, args):
        sel = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": CR}
        spec = {"selector": {"matchLabels": sel}, "template": {
            "metadata": {"labels": dict(labels(name, comp), **{"pmem-csi.intel.com/webhook": "ignore"})},
            "spec": {"serviceAccountName": PREFIX + "-controller", "containers": [
                {"name": "pmem-driver", "image": "intel/pmem-csi-driver:v1.1.0", "args": args}]}}}
        if kind == "Deployment":
            spec["replicas"] = 1
        return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta("%s-%s" % (PREFIX, comp),
                                                                          labels=labels(name, comp)), "spec": spec}

    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(PREFIX + "-controller")},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": meta(PREFIX + "-csi-provisioner-role", ns=False),
         "subjects": [{"kind": "ServiceAccount", "name": PREFIX + "-controller", "namespace": NS}],
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": PREFIX + "-external-provisioner-runner"}},
        {"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": meta(CR, ns=False),
         "spec": {"attachRequired": False, "podInfoOnMount": True, "storageCapacity": True,
                  "volumeLifecycleModes": ["Persistent", "Ephemeral"]}},
        workload("DaemonSet", "pmem-csi-node", "node", ["-v=3", "-mode=node", "-deviceManager=" + mode]),
        workload("Deployment", "pmem-csi-controller", "controller", ["-v=3", "-mode=webhooks"]),
    ]


def t_takeover_1x():
    stop_operators()
    kubectl("delete", "pmemcsideployment", "--all")
    try:
        wait("the objects gone", lambda: live({"kind": "DaemonSet", "metadata": {"name": "%s-node" % PREFIX,
                                                                                 "namespace": NS}}) is None,
             timeout=90)
    except AssertionError:
        print(json.dumps(get("daemonset", "%s-node" % PREFIX, "-n", NS)["metadata"], indent=1))
        raise
    kubectl("apply", "-f", "-", input=cr({"nodeSelector": NODE_SEL}))
    uid = get("pmemcsideployment", CR)["metadata"]["uid"]
    for o in v1x_objects(uid):
        # 1.x (controller-runtime, no explicit field manager): the API server names the
        # manager after the user agent, pmem-csi-operator, with operation Update.
        kubectl("create", "--field-manager=pmem-csi-operator", "-f", "-", input=json.dumps(o))
    ds_uid = get("daemonset", "%s-node" % PREFIX, "-n", NS)["metadata"]["uid"]
    start_replica("op-c")
    wait("status Running", lambda: status().get("phase") == "Running", timeout=60)
    ds = get("daemonset", "%s-node" % PREFIX, "-n", NS)
    assert ds["metadata"]["uid"] == ds_uid, "the DaemonSet was recreated"
    assert ds["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "pmem-csi-node",
                                                     "app.kubernetes.io/instance": CR}, ds["spec"]["selector"]
    c = ds["spec"]["template"]["spec"]["containers"]
    want = [o for o in manifest() if o["kind"] == "DaemonSet" and o["metadata"]["name"] == "%s-node" % PREFIX][0]
    wc = want["spec"]["template"]["spec"]["containers"]
    assert sorted(x["name"] for x in c) == sorted(x["name"] for x in wc), c
    drv = [x for x in c if x["name"] == "pmem-driver"][0]
    want_args = [x for x in wc if x["name"] == "pmem-driver"][0]["args"]
    assert [a for a in drv["args"] if not a.startswith(PEER_ARGS)] == want_args, drv["args"]
    mf = json.loads(kubectl("get", "daemonset", "%s-node" % PREFIX, "-n", NS, "-o", "json",
                            "--show-managed-fields"))["metadata"]["managedFields"]
    managers = {(m["manager"], m["operation"]) for m in mf}
    assert ("pmem-csi-operator", "Apply") in managers, managers
    assert not events("Failed"), [e["message"] for e in events("Failed")]
    d = get("deployment", "%s-controller" % PREFIX, "-n", NS)
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] != "intel/pmem-csi-driver:v1.1.0", d


def main():
    cm = os.environ.get("KUBE_CONTROLLER_MANAGER") or os.path.join(
        os.path.dirname(os.environ.get("KUBE_APISERVER", "/nonexistent")), "kube-controller-manager")
    no_cm = None if os.access(cm, os.X_OK) else "no kube-controller-manager at %s" % cm
    if not no_cm:
        log = open(os.path.join(KDIR, "controller-manager.log"), "w")
        procs.append(subprocess.Popen(
            [cm, "--kubeconfig=" + KCFG, "--authentication-kubeconfig=" + KCFG,
             "--authorization-kubeconfig=" + KCFG, "--service-account-private-key-file=%s/sa.key" % KDIR,
             "--root-ca-file=%s/ca.crt" % KDIR, "--leader-elect=false", "--secure-port=0",
             "--controllers=garbagecollector,daemonset,deployment,replicaset,serviceaccount"],
            stdout=log, stderr=subprocess.STDOUT))
    try:
        test("CRD accepted, defaults of the 1.x API applied", t_crd)
        test("invalid CRs refused by the schema, naming the field", t_invalid)
        test("CR -> objects created, owned by the CR, status Running", t_created)
        test("default CR's objects equal deploy/generated's", t_equal_to_generated)
        test("CR change (logLevel, logFormat, labels) reaches the DaemonSet", t_change)
        test("fields set by others survive a reconcile", t_others_fields_survive)
        test("sidecar images by the cluster's version; explicit fields win; SidecarImages event",
             t_sidecars_by_version)
        test("certificates: generated once into Secrets, reused, mounted as 1.x did", t_secrets)
        test("metrics over HTTP: 1.x's pmem_csi_deployment_*, controller-runtime's, counters move", t_metrics)
        test("metrics: the CR change set sub_resource_updated_at", t_metrics_updated)
        test("certificates given in the CR verified; bad ones -> Failed with the reason, nothing applied",
             t_given_certs)
        test("deploy/operator accepted by the API server, metrics Service and port as 1.x", t_operator_manifest)
        test("deleting the CR removes the objects (garbage collector)", t_delete, skip=no_cm)
        test("a direct-mode CR's objects equal deploy/generated/pmem-csi-direct.yaml's", t_direct,
             skip=no_cm)
        test("two replicas: one leader; the leader killed, the other takes over after the lease expires",
             t_leader, skip=no_cm)
        test("a foreign lease holder stops reconciling at once; the expired lease is taken back",
             t_stolen_lease, skip=no_cm)
        test("an owned DaemonSet deleted and a Deployment changed by hand are repaired within seconds",
             t_repair, skip=no_cm)
        test("the Node status follows the DaemonSet's status without a resync (status refresh only)",
             t_status_follows, skip=no_cm)
        test("events NewDeployment and Running recorded once", t_events_once, skip=no_cm)
        test("a second CR selecting the same node: Failed + reason + event, nothing applied; fixed: Running",
             t_bad_overlap, skip=no_cm)
        test("an invalid image reference: Failed + reason + event, nothing applied; fixed: Running",
             t_bad_image, skip=no_cm)
        test("an object of the same name that no CR owns (a YAML install): Failed, not taken over",
             t_bad_foreign_object, skip=no_cm)
        test("deviceMode change with a PersistentVolume of the driver: Failed, nothing applied; without: done",
             t_bad_mode_change, skip=no_cm)
        test("deviceMode change with a pod using an inline volume of the driver: Failed; terminated pod: done",
             t_bad_mode_change_inline, skip=no_cm)
        test("overlap: no nodeSelector = storage=pmem nodes; narrower selector; direct beside LVM < 100%; "
             "disjoint both run; the younger fails, never both",
             t_overlap_rules, skip=no_cm)
        test("cluster version via /version: 1.20 Failed naming it; a change to 1.27 re-picks the sidecars",
             t_version_change, skip=no_cm)
        test("objects of the 1.x operator (other field manager, 1.x selectors) taken over in place",
             t_takeover_1x, skip=no_cm)
    finally:
        kubectl("delete", "node", "olife-n1", "olife-n2", "olife-n3", "olife-n4", "olife-n5", "olife-n6",
                "--ignore-not-found", check=False)
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    print("%d passed, %d failed, %d skipped" % tuple(results))
    return 1 if results[1] else 0


if __name__ == "__main__":
    sys.exit(main())
