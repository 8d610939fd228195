#!/usr/bin/python3
"""test_compat.py - our deploy/ applied over an intel/pmem-csi 1.1 installation, on a
real API server (test/k8s/run-k8s-tests.sh starts one).

The 1.1 objects are written here from the facts of 1.1's
deploy/kubernetes-1.25/{lvm,direct}/pmem-csi.yaml (tag v1.1.0): object names and
labels, the immutable fields (CSIDriver spec without fsGroupPolicy, workload
selectors, binding roleRefs), the RBAC rules, the DaemonSets' containers, volumes
and mounts. They are made with `kubectl create`, as 1.1's install guide does, then
`kubectl apply -f deploy/generated/pmem-csi-<mode>.yaml` must succeed; after it,
every permission 1.1 granted is still granted (kubectl auth can-i as each service
account), and -mode=force-convert-raw-namespaces works with a token of 1.1's
node-setup service account (its role grants only "patch" on nodes).

usage: test_compat.py BUILDDIR KUBEDIR   (KUBEDIR from test/k8s/apiserver.sh)
Prints ok/FAIL lines and "N passed, N failed".
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback

BUILD, KDIR = sys.argv[1], sys.argv[2]
DRIVER = os.path.join(BUILD, "pmem-csi-driver")
KCFG = os.path.join(KDIR, "kubeconfig")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NS = "pmem-csi"
DRV = "pmem-csi.intel.com"
results = [0, 0]


def kubectl(*args, input=None, check=True):
    p = subprocess.run(["kubectl", "--kubeconfig", KCFG] + list(args), input=input, capture_output=True,
                       text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError("kubectl %s: %s" % (" ".join(args), p.stderr.strip()[-2000:]))
    return p.stdout + p.stderr


def test(fn):
    name = fn.__doc__.strip().splitlines()[0]
    t0 = time.time()
    try:
        fn()
        results[0] += 1
        print("ok - compat: %s (%.1f s)" % (name, time.time() - t0), flush=True)
    except Exception as e:
        results[1] += 1
        print("FAIL - compat: %s: %s" % (name, e), flush=True)
        traceback.print_exc(file=sys.stdout)
    return fn


# --- intel/pmem-csi 1.1's objects (facts from its deploy/kubernetes-1.25) ---------------

def rule(groups, resources, verbs):
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


V11_RULES = {
    ("Role", "pmem-csi-intel-com-external-provisioner-cfg"): [
        rule(["coordination.k8s.io"], ["leases"], ["get", "watch", "list", "delete", "update", "create"]),
        rule(["storage.k8s.io"], ["csistoragecapacities"],
             ["get", "list", "watch", "create", "update", "patch", "delete"]),
        rule([""], ["pods"], ["get"]),
        rule(["apps"], ["replicasets"], ["get"]),
    ],
    ("Role", "pmem-csi-intel-com-webhooks-cfg"): [
        rule([""], ["pods"], ["get", "watch", "list"]),
    ],
    ("ClusterRole", "pmem-csi-intel-com-external-provisioner-runner"): [
        rule([""], ["persistentvolumes"], ["get", "list", "watch", "create", "delete"]),
        rule([""], ["persistentvolumeclaims"], ["get", "list", "watch", "update"]),
        rule(["storage.k8s.io"], ["storageclasses"], ["get", "list", "watch"]),
        rule([""], ["events"], ["list", "watch", "create", "update", "patch"]),
        rule(["snapshot.storage.k8s.io"], ["volumesnapshots"], ["get", "list"]),
        rule(["snapshot.storage.k8s.io"], ["volumesnapshotcontents"], ["get", "list"]),
        rule(["storage.k8s.io"], ["csinodes"], ["get", "list", "watch"]),
        rule([""], ["nodes"], ["get", "list", "watch"]),
    ],
    ("ClusterRole", "pmem-csi-intel-com-node-setup-runner"): [
        rule([""], ["nodes"], ["patch"]),
    ],
    ("ClusterRole", "pmem-csi-intel-com-webhooks-runner"): [
        rule([""], ["persistentvolumes", "nodes"], ["get", "list", "watch"]),
        rule([""], ["persistentvolumeclaims"], ["get", "list", "watch", "patch", "update"]),
        rule([""], ["events"], ["get", "list", "watch", "patch", "update", "create"]),
        rule(["storage.k8s.io"], ["storageclasses", "csinodes"], ["get", "list", "watch"]),
    ],
}
# binding name -> (role kind, role name, service account)
V11_BINDINGS = {
    ("RoleBinding", "pmem-csi-intel-com-csi-provisioner-role-cfg"):
        ("Role", "pmem-csi-intel-com-external-provisioner-cfg", "pmem-csi-intel-com-controller"),
    ("RoleBinding", "pmem-csi-intel-com-node-openshift-cfg"):
        ("ClusterRole", "system:openshift:scc:privileged", "pmem-csi-intel-com-controller"),
    ("RoleBinding", "pmem-csi-intel-com-webhooks-role-cfg"):
        ("Role", "pmem-csi-intel-com-webhooks-cfg", "pmem-csi-intel-com-webhooks"),
    ("ClusterRoleBinding", "pmem-csi-intel-com-csi-provisioner-role"):
        ("ClusterRole", "pmem-csi-intel-com-external-provisioner-runner", "pmem-csi-intel-com-controller"),
    ("ClusterRoleBinding", "pmem-csi-intel-com-node-setup-role"):
        ("ClusterRole", "pmem-csi-intel-com-node-setup-runner", "pmem-csi-intel-com-node-setup"),
    ("ClusterRoleBinding", "pmem-csi-intel-com-webhooks-role"):
        ("ClusterRole", "pmem-csi-intel-com-webhooks-runner", "pmem-csi-intel-com-webhooks"),
}
SERVICE_ACCOUNTS = ["pmem-csi-intel-com-controller", "pmem-csi-intel-com-node-setup",
                    "pmem-csi-intel-com-webhooks"]


def meta(name, mode, namespaced=True, labels=None):
    m = {"name": name, "labels": dict({"pmem-csi.intel.com/deployment": mode + "-production"}, **(labels or {}))}
    if namespaced:
        m["namespace"] = NS
    return m


def app_labels(component, name, mode):
    return {"app.kubernetes.io/component": component, "app.kubernetes.io/instance": DRV,
            "app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "pmem-csi",
            "pmem-csi.intel.com/deployment": mode + "-production"}


def selector(name, mode):
    return {"matchLabels": {"app.kubernetes.io/instance": DRV, "app.kubernetes.io/name": name,
                            "pmem-csi.intel.com/deployment": mode + "-production"}}


def host_path(name, path, type_=None):
    hp = {"path": path}
    if type_:
        hp["type"] = type_
    return {"name": name, "hostPath": hp}


def workloads(mode):
    """The Deployment and DaemonSets of 1.1 (the shape that matters for a merge)."""
    img = "intel/pmem-csi-driver:v1.1.0"
    env_name = {"name": "PMEM_CSI_DRIVER_NAME", "value": DRV}
    node_name = {"name": "KUBE_NODE_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                                     "fieldPath": "spec.nodeName"}}}
    term = {"name": "TERMINATION_LOG_PATH", "value": "/tmp/termination-log"}
    probe = {"httpGet": {"path": "/metrics/simple", "port": "metrics", "scheme": "HTTP"}, "periodSeconds": 10,
             "failureThreshold": 6, "timeoutSeconds": 5}
    tmpl_labels = lambda c, n: dict(app_labels(c, n, mode), **{"pmem-csi.intel.com/webhook": "ignore"})
    controller = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": meta("pmem-csi-intel-com-controller", mode,
                         labels=app_labels("controller", "pmem-csi-controller", mode)),
        "spec": {"replicas": 1, "selector": selector("pmem-csi-controller", mode), "template": {
            "metadata": {"labels": tmpl_labels("controller", "pmem-csi-controller")},
            "spec": {"serviceAccountName": "pmem-csi-intel-com-webhooks",
                     "priorityClassName": "system-cluster-critical",
                     "containers": [{
                         "name": "pmem-driver", "image": img,
                         "command": ["/usr/local/bin/pmem-csi-driver", "-v=3", "-logging-format=text",
                                     "-mode=webhooks", "-drivername=$(PMEM_CSI_DRIVER_NAME)",
                                     '-nodeSelector={"storage":"pmem"}', "-metricsListen=:10010"],
                         "env": [{"name": "TERMINATION_LOG_PATH", "value": "/dev/termination-log"}, env_name,
                                 {"name": "POD_NAMESPACE",
                                  "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                         "ports": [{"containerPort": 10010, "name": "metrics"}],
                         "livenessProbe": probe,
                         "securityContext": {"readOnlyRootFilesystem": True},
                         "terminationMessagePath": "/dev/termination-log"}]}}}}
    node = {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": meta("pmem-csi-intel-com-node", mode, labels=app_labels("node", "pmem-csi-node", mode)),
        "spec": {"selector": selector("pmem-csi-node", mode), "template": {
            "metadata": {"labels": tmpl_labels("node", "pmem-csi-node"),
                         "annotations": {"pmem-csi.intel.com/scrape": "containers"}},
            "spec": {
                "serviceAccountName": "pmem-csi-intel-com-controller",
                "priorityClassName": "system-node-critical",
                "nodeSelector": {"storage": "pmem"},
                "containers": [
                    {"name": "pmem-driver", "image": img,
                     "command": ["/usr/local/bin/pmem-csi-driver", "-deviceManager=" + mode, "-v=3",
                                 "-logging-format=text", "-mode=node", "-endpoint=unix:///csi/csi.sock",
                                 "-nodeid=$(KUBE_NODE_NAME)", "-statePath=/var/lib/$(PMEM_CSI_DRIVER_NAME)",
                                 "-drivername=$(PMEM_CSI_DRIVER_NAME)", "-pmemPercentage=100",
                                 "-metricsListen=:10010"],
                     "env": [node_name, env_name, term],
                     "ports": [{"containerPort": 10010, "name": "metrics"}],
                     "livenessProbe": probe,
                     "securityContext": {"privileged": True, "runAsUser": 0},
                     "terminationMessagePath": "/tmp/termination-log",
                     "volumeMounts": [
                         {"name": "mountpoint-dir", "mountPath": "/var/lib/kubelet/plugins/kubernetes.io/csi",
                          "mountPropagation": "Bidirectional"},
                         {"name": "pods-dir", "mountPath": "/var/lib/kubelet/pods",
                          "mountPropagation": "Bidirectional"},
                         {"name": "dev-dir", "mountPath": "/dev"},
                         {"name": "sys-dir", "mountPath": "/sys"},
                         {"name": "sys-dir", "mountPath": "/host-sys"},
                         {"name": "socket-dir", "mountPath": "/csi"},
                         {"name": "pmem-state-dir", "mountPath": "/var/lib/pmem-csi.intel.com",
                          "mountPropagation": "Bidirectional"}]},
                    {"name": "driver-registrar", "image": "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.5.1",
                     "args": ["-v=3", "--kubelet-registration-path=/var/lib/kubelet/plugins/$(PMEM_CSI_DRIVER_NAME)/csi.sock",
                              "--csi-address=/csi/csi.sock", "--timeout=10s"],
                     "env": [env_name],
                     "volumeMounts": [{"name": "socket-dir", "mountPath": "/csi"},
                                      {"name": "registration-dir", "mountPath": "/registration"}]},
                    {"name": "external-provisioner", "image": "registry.k8s.io/sig-storage/csi-provisioner:v3.2.1",
                     "args": ["-v=3", "--csi-address=/csi/csi.sock", "--feature-gates=Topology=true",
                              "--node-deployment=true", "--strict-topology=true", "--immediate-topology=false",
                              "--timeout=5m", "--default-fstype=ext4", "--worker-threads=5",
                              "--metrics-address=:10011", "--enable-capacity",
                              "--capacity-ownerref-level=1"],
                     "env": [node_name, {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                             {"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                     "ports": [{"containerPort": 10011, "name": "metrics"}],
                     "volumeMounts": [{"name": "socket-dir", "mountPath": "/csi"}]}],
                "volumes": [
                    host_path("socket-dir", "/var/lib/kubelet/plugins/pmem-csi.intel.com", "DirectoryOrCreate"),
                    host_path("registration-dir", "/var/lib/kubelet/plugins_registry/", "DirectoryOrCreate"),
                    host_path("mountpoint-dir", "/var/lib/kubelet/plugins/kubernetes.io/csi", "DirectoryOrCreate"),
                    host_path("pods-dir", "/var/lib/kubelet/pods", "DirectoryOrCreate"),
                    host_path("pmem-state-dir", "/var/lib/pmem-csi.intel.com", "DirectoryOrCreate"),
                    host_path("dev-dir", "/dev", "DirectoryOrCreate"),
                    host_path("sys-dir", "/sys", "DirectoryOrCreate")]}}}}
    setup = {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": meta("pmem-csi-intel-com-node-setup", mode,
                         labels=app_labels("node-setup", "pmem-csi-node-setup", mode)),
        "spec": {"selector": selector("pmem-csi-node-setup", mode), "template": {
            "metadata": {"labels": tmpl_labels("node-setup", "pmem-csi-node-setup")},
            "spec": {
                "serviceAccountName": "pmem-csi-intel-com-node-setup",
                "nodeSelector": {DRV + "/convert-raw-namespaces": "force"},
                "containers": [{
                    "name": "pmem-driver", "image": img,
                    "command": ["/usr/local/bin/pmem-csi-driver", "-v=3", "-logging-format=text",
                                "-mode=force-convert-raw-namespaces", '-nodeSelector={"storage":"pmem"}',
                                "-nodeid=$(KUBE_NODE_NAME)"],
                    "env": [node_name, term],
                    "securityContext": {"privileged": True, "runAsUser": 0},
                    "terminationMessagePath": "/tmp/termination-log",
                    "volumeMounts": [{"name": "dev-dir", "mountPath": "/dev"},
                                     {"name": "sys-dir", "mountPath": "/sys"},
                                     {"name": "sys-dir", "mountPath": "/host-sys"}]}],
                "volumes": [host_path("dev-dir", "/dev", "DirectoryOrCreate"),
                            host_path("sys-dir", "/sys", "DirectoryOrCreate")]}}}}
    return [controller, node, setup]


def v11_objects(mode):
    objs = [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(sa, mode)} for sa in SERVICE_ACCOUNTS]
    for (kind, name), rules in V11_RULES.items():
        objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
                     "metadata": meta(name, mode, namespaced=kind == "Role"), "rules": rules})
    for (kind, name), (rkind, rname, sa) in V11_BINDINGS.items():
        objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
                     "metadata": meta(name, mode, namespaced=kind == "RoleBinding"),
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": rkind, "name": rname},
                     "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": NS}]})
    objs += workloads(mode)
    # No fsGroupPolicy: the API server defaults it (ReadWriteOnceWithFSType), and it is immutable.
    objs.append({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": meta(DRV, mode, False),
                 "spec": {"attachRequired": False, "podInfoOnMount": True, "storageCapacity": True,
                          "volumeLifecycleModes": ["Persistent", "Ephemeral"]}})
    return objs


def as_list(objs):
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})


def remove_v11(mode):
    """Leave the namespace (no namespace controller here to finalize it); remove the rest."""
    for o in reversed(v11_objects(mode)):
        # Background propagation: no garbage collector runs here to remove an orphan finalizer.
        args = ["delete", o["kind"], o["metadata"]["name"], "--ignore-not-found", "--wait=false"]
        if "namespace" in o["metadata"]:
            args += ["-n", NS]
        kubectl(*args, check=False)


def install_v11(mode):
    kubectl("create", "namespace", NS, check=False)  # 1.1's guide: kubectl create ns pmem-csi
    remove_v11(mode)
    for _ in range(50):  # deletions of cluster objects are asynchronous without --wait
        if "NotFound" in kubectl("get", "csidriver", DRV, check=False):
            break
        time.sleep(0.2)
    kubectl("create", "-f", "-", input=as_list(v11_objects(mode)))


def granted(sa):
    """(group, resource, verb) the service account may use in the namespace (kubectl auth can-i --list)."""
    out = kubectl("auth", "can-i", "--list", "-n", NS, "--as=system:serviceaccount:%s:%s" % (NS, sa))
    got = set()
    for line in out.splitlines()[1:]:
        m = re.match(r"^(\S+)\s+\[[^\]]*\]\s+\[[^\]]*\]\s+\[([^\]]*)\]", line)
        if not m:
            continue
        res, _, group = m.group(1).partition(".")
        for v in m.group(2).split():
            got.add((group, res, v))
    return got


def check_upgrade(mode):
    install_v11(mode)
    before = json.loads(kubectl("get", "csidriver", DRV, "-o", "json"))["spec"]
    out = kubectl("apply", "-f", os.path.join(REPO, "deploy", "generated", "pmem-csi-%s.yaml" % mode))
    assert "error" not in out.lower(), out[-2000:]
    after = json.loads(kubectl("get", "csidriver", DRV, "-o", "json"))["spec"]
    assert before.get("fsGroupPolicy") == after.get("fsGroupPolicy") == "ReadWriteOnceWithFSType", (before, after)
    missing = []
    have = {sa: granted(sa) for sa in SERVICE_ACCOUNTS}
    for (kind, name), rules in V11_RULES.items():
        sas = [sa for (bk, bn), (rk, rn, sa) in V11_BINDINGS.items() if rk == kind and rn == name]
        for sa in sas:
            for r in rules:
                for g in r["apiGroups"]:
                    for res in r["resources"]:
                        for v in r["verbs"]:
                            if (g, res, v) not in have[sa] and (g, res, "*") not in have[sa]:
                                missing.append("%s: %s %s%s" % (sa, v, res, "." + g if g else ""))
    assert not missing, "permissions 1.1 granted, gone after the apply: %s" % missing
    ds = json.loads(kubectl("get", "daemonset", "pmem-csi-intel-com-node", "-n", NS, "-o", "json"))
    images = [c["image"] for c in ds["spec"]["template"]["spec"]["containers"]]
    assert not any("v1.1.0" in i for i in images), "1.1's driver image still in the DaemonSet: %s" % images


@test
def t_apply_over_v11_lvm():
    """kubectl apply of deploy/generated/pmem-csi-lvm.yaml over 1.1's LVM objects: no error, 1.1's permissions kept"""
    check_upgrade("lvm")


@test
def t_apply_over_v11_direct():
    """kubectl apply of deploy/generated/pmem-csi-direct.yaml over 1.1's direct-mode objects"""
    remove_v11("lvm")
    check_upgrade("direct")


@test
def t_immutable_field_caught():
    """the check can fail: a CSIDriver that changes an immutable field is refused over 1.1's"""
    install_v11("lvm")
    obj = [o for o in v11_objects("lvm") if o["kind"] == "CSIDriver"][0]
    # fsGroupPolicy was immutable when 1.1 was current; the v1.32 API server used here
    # lets it change (measured), so attachRequired, immutable in both, stands in for it.
    obj["spec"]["attachRequired"] = True
    p = subprocess.run(["kubectl", "--kubeconfig", KCFG, "apply", "--dry-run=server", "-f", "-"],
                       input=json.dumps(obj), capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "immutable" in p.stderr, (p.returncode, p.stderr[-500:])


def token_kubeconfig(sa):
    token = kubectl("create", "token", sa, "-n", NS, "--duration=3600s").strip()
    with open(KCFG) as f:
        cfg = f.read()
    ca = re.search(r"certificate-authority-data: (\S+)", cfg).group(1)
    server = re.search(r"server: (\S+)", cfg).group(1)
    path = tempfile.NamedTemporaryFile(prefix="pmem-csi-compat.", suffix=".kubeconfig", delete=False).name
    with open(path, "w") as f:
        f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: %s\n"
                "    certificate-authority-data: %s\nusers:\n- name: u\n  user:\n    token: %s\n"
                "contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n"
                % (server, ca, token))
    return path


@test
def t_force_convert_with_v11_rbac():
    """force-convert with 1.1's node-setup role (patch only): label checked without GET, no HTTP 403"""
    install_v11("lvm")  # 1.1's roles, not ours
    rules = json.loads(kubectl("get", "clusterrole", "pmem-csi-intel-com-node-setup-runner", "-o", "json"))["rules"]
    assert rules == V11_RULES[("ClusterRole", "pmem-csi-intel-com-node-setup-runner")], rules
    nodes = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "compat-plain", "labels": {"a": "b"}}},
             {"apiVersion": "v1", "kind": "Node",
              "metadata": {"name": "compat-force", "labels": {DRV + "/convert-raw-namespaces": "force"}}}]
    kubectl("apply", "-f", "-", input=as_list(nodes))
    kc = token_kubeconfig("pmem-csi-intel-com-node-setup")

    def convert(node):
        p = subprocess.run([DRIVER, "-mode=force-convert-raw-namespaces", "-kubeconfig=" + kc, "-nodeid=" + node],
                           capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout + p.stderr

    rc, out = convert("compat-plain")
    assert rc != 0 and "not labelled %s/convert-raw-namespaces=force" % DRV in out, (rc, out[-800:])
    assert "403" not in out, out[-800:]
    # This host has no PMEM: the label check passes, then there is nothing to convert.
    rc, out = convert("compat-force")
    assert rc != 0 and "Nothing to convert" in out and "403" not in out, (rc, out[-800:])


print("%d passed, %d failed" % tuple(results))
sys.exit(1 if results[1] else 0)
