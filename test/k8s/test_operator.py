#!/usr/bin/python3
"""test_operator.py - pmem-csi-operator against a real kube-apiserver and
kube-controller-manager (the garbage collector and the workload controllers):
the CRD, a CR turned into deploy/generated's objects owned by the CR, a CR change
reaching the DaemonSet, a field set by someone else surviving a reconcile, invalid
CRs refused by the schema, and deleting the CR removing everything.

usage: test_operator.py BUILDDIR KUBEDIR   (KUBEDIR from test/k8s/apiserver.sh)
Environment: KUBE_CONTROLLER_MANAGER (default: kube-controller-manager beside
$KUBE_APISERVER). Without it the tests that need it are skipped (failed when CI=true).
Prints ok/FAIL/SKIP lines and "N passed, N failed, N skipped".
"""
import json
import os
import subprocess
import sys
import time
import traceback

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
            "CSIDriver": "csidrivers.storage.k8s.io"}


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


def start_operator():
    log = open(os.path.join(KDIR, "operator.log"), "w")
    p = subprocess.Popen([OPERATOR, "-kubeconfig=" + KCFG, "-namespace=" + NS, "-resync=5", "-v=4"],
                         stdout=log, stderr=subprocess.STDOUT)
    procs.append(p)
    return p


def t_created():
    kubectl("create", "namespace", NS)
    start_operator()
    kubectl("apply", "-f", "-", input=cr({}))
    st = wait("status Running", lambda: ((get("pmemcsideployment", CR) or {}).get("status") or {})
              .get("phase") == "Running" and get("pmemcsideployment", CR)["status"])
    assert [c["type"] for c in st["conditions"]] == ["DriverDeployed"], st
    assert {c["component"] for c in st["driverComponents"]} == {"Controller", "Node"}, st
    uid = get("pmemcsideployment", CR)["metadata"]["uid"]
    for obj in manifest():
        o = live(obj)
        assert o, "%s %s missing" % (obj["kind"], obj["metadata"]["name"])
        refs = o["metadata"].get("ownerReferences", [])
        assert [(r["kind"], r["uid"], r.get("controller")) for r in refs] == [("PmemCSIDeployment", uid, True)], refs


def t_equal_to_generated(mode="lvm"):
    """The default CR's objects are deploy/generated's (namespace and ownerReferences aside)."""
    for obj in manifest(mode):
        want = json.loads(json.dumps(obj))
        if "namespace" in want["metadata"]:
            want["metadata"]["namespace"] = NS
        for s in want.get("subjects", []):
            if "namespace" in s:
                s["namespace"] = NS
        o = live(obj)
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


def t_delete():
    kubectl("delete", "pmemcsideployment", CR)
    for obj in manifest():
        wait("%s %s removed by the garbage collector" % (obj["kind"], obj["metadata"]["name"]),
             lambda: live(obj) is None, timeout=90)


def t_direct():
    kubectl("apply", "-f", "-", input=cr({"deviceMode": "direct"}))
    wait("status Running", lambda: ((get("pmemcsideployment", CR) or {}).get("status") or {})
         .get("phase") == "Running")
    t_equal_to_generated("direct")
    kubectl("delete", "pmemcsideployment", CR)


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
        test("deleting the CR removes the objects (garbage collector)", t_delete, skip=no_cm)
        test("a direct-mode CR's objects equal deploy/generated/pmem-csi-direct.yaml's", t_direct,
             skip=no_cm)
    finally:
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
