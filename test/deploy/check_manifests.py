#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Structural checks of deploy/: run by test/deploy/check-manifests.sh.

Usage: check_manifests.py REPO [DRIVER_BINARY]
Prints one "ok - ..." or "FAIL - ..." line per check (parsing every YAML file,
then the content of the generated manifests, the examples and the scrape
config). Needs python3-yaml.
"""
import glob
import json
import os
import re
import subprocess
import sys

import yaml

REPO = sys.argv[1]
DRIVER = sys.argv[2] if len(sys.argv) > 2 else ""
DRIVER_NAME = "pmem-csi.intel.com"
NAMESPACE = "pmem-csi"
OVERLAYS = ["lvm", "direct", "lvm-testing", "direct-testing"]


def report(ok, name, why=""):
    if ok:
        print(f"ok - {name}")
    else:
        print(f"FAIL - {name}" + (f" ({why})" if why else ""))


def check(name, fn):
    """Run fn(); it returns a list of problems (empty = pass)."""
    try:
        problems = fn()
    except Exception as e:  # a check that crashes is a failed check
        problems = [f"{type(e).__name__}: {e}"]
    report(not problems, name, "; ".join(problems[:5]))


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# 1. Every YAML file parses.
files = sorted(
    glob.glob(f"{REPO}/deploy/**/*.yaml", recursive=True)
)
for path in files:
    rel = os.path.relpath(path, REPO)
    check(f"YAML parses: {rel}", lambda p=path: [] if load(p) is not None else ["empty"])

meson = open(f"{REPO}/meson.build").read()
VERSION = re.search(r"version\s*:\s*'([^']+)'", meson).group(1)

driver_flags = None
if DRIVER:
    # Go-style usage: "  -name\n    \thelp"
    out = subprocess.run([DRIVER, "-h"], capture_output=True, text=True).stderr
    driver_flags = set(re.findall(r"^  -([A-Za-z][A-Za-z0-9_-]*)", out, re.M))


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def one(docs, kind, name):
    found = [d for d in docs if d.get("kind") == kind and d["metadata"]["name"] == name]
    if len(found) != 1:
        raise AssertionError(f"{len(found)} {kind} named {name}")
    return found[0]


def container(pod_spec, name):
    for c in pod_spec["containers"]:
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name}")


def flag_names(args):
    return [re.match(r"^--?([^=]+)", a).group(1) for a in args if a.startswith("-")]


def check_driver_args(c, problems, what):
    if driver_flags is None:
        return
    for f in flag_names(c["args"]):
        if f not in driver_flags:
            problems.append(f"{what}: pmem-csi-driver has no flag -{f}")


def check_generated(overlay):
    mode = overlay.split("-")[0]
    testing = overlay.endswith("-testing")
    deployment_label = f"{mode}-testing" if testing else f"{mode}-production"
    docs = load(f"{REPO}/deploy/generated/pmem-csi-{overlay}.yaml")
    p = []

    # Namespaced objects live in pmem-csi; the namespace allows privileged pods.
    ns = one(docs, "Namespace", NAMESPACE)
    if ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") != "privileged":
        p.append("namespace is not pod-security privileged")
    for d in docs:
        if d["kind"] in ("Namespace", "CSIDriver", "ClusterRole", "ClusterRoleBinding"):
            continue
        if d["metadata"].get("namespace") != NAMESPACE:
            p.append(f"{d['kind']}/{d['metadata']['name']} not in {NAMESPACE}")

    # CSIDriver.
    spec = one(docs, "CSIDriver", DRIVER_NAME)["spec"]
    want = {
        "attachRequired": False,
        "podInfoOnMount": True,
        "storageCapacity": True,
        "fsGroupPolicy": "ReadWriteOnceWithFSType",
    }
    for k, v in want.items():
        if spec.get(k) != v:
            p.append(f"CSIDriver {k}={spec.get(k)!r}, want {v!r}")
    if sorted(spec.get("volumeLifecycleModes", [])) != ["Ephemeral", "Persistent"]:
        p.append(f"CSIDriver volumeLifecycleModes {spec.get('volumeLifecycleModes')}")

    # Workloads: selectors carry the deployment label and match the template.
    for kind in ("DaemonSet", "Deployment"):
        for w in by_kind(docs, kind):
            sel = w["spec"]["selector"]["matchLabels"]
            tmpl = w["spec"]["template"]["metadata"]["labels"]
            if sel.get("pmem-csi.intel.com/deployment") != deployment_label:
                p.append(f"{w['metadata']['name']}: selector lacks deployment={deployment_label}")
            if any(tmpl.get(k) != v for k, v in sel.items()):
                p.append(f"{w['metadata']['name']}: template labels do not match the selector")
            sa = w["spec"]["template"]["spec"].get("serviceAccountName")
            if not [s for s in by_kind(docs, "ServiceAccount") if s["metadata"]["name"] == sa]:
                p.append(f"{w['metadata']['name']}: service account {sa} missing")
            for c in w["spec"]["template"]["spec"]["containers"]:
                if c["name"] == "pmem-driver":
                    image = c["image"]
                    if not image.endswith(f":v{VERSION}"):
                        p.append(f"{w['metadata']['name']}: image {image} is not v{VERSION} (meson.build)")
                    if c.get("command") != ["/usr/local/bin/pmem-csi-driver"]:
                        p.append(f"{w['metadata']['name']}: command {c.get('command')}")

    # Node DaemonSet.
    node = one(docs, "DaemonSet", "pmem-csi-intel-com-node")
    ps = node["spec"]["template"]["spec"]
    names = [c["name"] for c in ps["containers"]]
    want_names = ["pmem-driver", "external-provisioner", "node-driver-registrar"] + (["socat"] if testing else [])
    if sorted(names) != sorted(want_names):
        p.append(f"node containers {names}, want {want_names}")
    if ps.get("nodeSelector") != {"storage": "pmem"}:
        p.append(f"node nodeSelector {ps.get('nodeSelector')}")
    if ps.get("priorityClassName") != "system-node-critical":
        p.append("node priorityClassName")
    if node["spec"]["template"]["metadata"].get("annotations", {}).get("pmem-csi.intel.com/scrape") != "containers":
        p.append("node pods lack pmem-csi.intel.com/scrape=containers")
    drv = container(ps, "pmem-driver")
    args = drv["args"]
    for a in [
        "-mode=node",
        f"-deviceManager={mode}",
        "-drivername=$(PMEM_CSI_DRIVER_NAME)",
        "-nodeid=$(KUBE_NODE_NAME)",
        "-endpoint=unix:///csi/csi.sock",
        "-statePath=/var/lib/pmem-csi.intel.com",
        "-metricsListen=:10010",
        "-v=5" if testing else "-v=3",
    ]:
        if a not in args:
            p.append(f"pmem-driver lacks {a}")
    if len([a for a in args if a.startswith("-v=")]) != 1:
        p.append("pmem-driver has more than one -v")
    check_driver_args(drv, p, "node")
    if not drv.get("securityContext", {}).get("privileged"):
        p.append("pmem-driver not privileged")
    ports = {pt["name"]: pt["containerPort"] for pt in drv.get("ports", [])}
    if ports.get("metrics") != 10010:
        p.append(f"pmem-driver ports {ports}")
    for probe in ("startupProbe", "livenessProbe"):
        g = drv.get(probe, {}).get("httpGet", {})
        if g.get("path") != "/metrics/simple" or g.get("port") != "metrics":
            p.append(f"pmem-driver {probe} {g}")
    g = drv.get("readinessProbe", {}).get("httpGet", {})
    if g.get("path") != "/healthz" or g.get("port") != "metrics":
        p.append(f"pmem-driver readinessProbe {g}")
    env = {e["name"]: e for e in drv["env"]}
    if env.get("PMEM_CSI_DRIVER_NAME", {}).get("value") != DRIVER_NAME:
        p.append("PMEM_CSI_DRIVER_NAME")
    if env.get("KUBE_NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "spec.nodeName":
        p.append("KUBE_NODE_NAME")
    vols = {v["name"]: v for v in ps["volumes"]}
    mounts = {m["mountPath"]: m for m in drv["volumeMounts"]}
    for path, bidir in [
        ("/csi", False),
        ("/dev", False),
        ("/sys", False),
        ("/var/lib/kubelet/plugins/kubernetes.io/csi", True),
        ("/var/lib/kubelet/pods", True),
        ("/var/lib/pmem-csi.intel.com", True),
    ]:
        m = mounts.get(path)
        if not m:
            p.append(f"pmem-driver does not mount {path}")
            continue
        if bidir and m.get("mountPropagation") != "Bidirectional":
            p.append(f"{path} is not Bidirectional")
        host = vols[m["name"]].get("hostPath", {}).get("path")
        if path != "/csi" and host != path:
            p.append(f"{path} mounts host path {host}")
    sock_dir = vols[[m for m in drv["volumeMounts"] if m["mountPath"] == "/csi"][0]["name"]]["hostPath"]["path"]
    if sock_dir != f"/var/lib/kubelet/plugins/{DRIVER_NAME}":
        p.append(f"socket dir {sock_dir}")

    prov = container(ps, "external-provisioner")
    if not prov["image"].startswith("registry.k8s.io/sig-storage/csi-provisioner:v5."):
        p.append(f"provisioner image {prov['image']}")
    for a in [
        "--csi-address=/csi/csi.sock",
        "--node-deployment",
        "--strict-topology",
        "--immediate-topology=false",
        "--enable-capacity",
        "--capacity-ownerref-level=1",
        "--timeout=5m",
        "--worker-threads=5",
    ]:
        if a not in prov["args"]:
            p.append(f"external-provisioner lacks {a}")
    # 1.1's CreateVolume rejects the parameters it adds: a rollback by image swap would fail.
    if "--extra-create-metadata" in prov["args"]:
        p.append("external-provisioner has --extra-create-metadata")
    penv = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in prov["env"]}
    if penv != {"NODE_NAME": "spec.nodeName", "NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}:
        p.append(f"external-provisioner env {penv}")

    reg = container(ps, "node-driver-registrar")
    want_reg = f"--kubelet-registration-path={sock_dir}/csi.sock"
    if want_reg not in reg["args"]:
        p.append(f"registrar lacks {want_reg}")
    if not any(a.startswith("--http-endpoint=") for a in reg["args"]):
        p.append("registrar has no --http-endpoint")
    if reg.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
        p.append("registrar liveness probe")
    regmounts = {m["mountPath"]: vols[m["name"]]["hostPath"]["path"] for m in reg["volumeMounts"]}
    if regmounts.get("/registration") != "/var/lib/kubelet/plugins_registry":
        p.append(f"registrar registration dir {regmounts}")

    if testing:
        s = container(ps, "socat")
        if {pt["containerPort"] for pt in s.get("ports", [])} != {9735}:
            p.append("socat does not listen on 9735")
        if "UNIX-CONNECT:/csi/csi.sock" not in s["args"]:
            p.append("socat does not connect to /csi/csi.sock")

    # Node setup DaemonSet.
    setup = one(docs, "DaemonSet", "pmem-csi-intel-com-node-setup")["spec"]["template"]["spec"]
    if setup.get("nodeSelector") != {"pmem-csi.intel.com/convert-raw-namespaces": "force"}:
        p.append(f"node-setup nodeSelector {setup.get('nodeSelector')}")
    sargs = container(setup, "pmem-driver")["args"]
    if "-mode=force-convert-raw-namespaces" not in sargs:
        p.append("node-setup mode")
    check_driver_args(container(setup, "pmem-driver"), p, "node-setup")

    # Controller Deployment.
    ctrl = one(docs, "Deployment", "pmem-csi-intel-com-controller")
    cs = ctrl["spec"]["template"]["spec"]
    cargs = container(cs, "pmem-driver")["args"]
    for a in ["-mode=webhooks", '-nodeSelector={"storage":"pmem"}', "-metricsListen=:10010",
              "-v=5" if testing else "-v=3"]:
        if a not in cargs:
            p.append(f"controller lacks {a}")
    check_driver_args(container(cs, "pmem-driver"), p, "controller")
    if ctrl["spec"]["template"]["metadata"].get("annotations", {}).get("pmem-csi.intel.com/scrape") != "containers":
        p.append("controller pod lacks pmem-csi.intel.com/scrape=containers")
    try:
        sel = json.loads(next(a for a in cargs if a.startswith("-nodeSelector="))[len("-nodeSelector="):])
        if sel != ps["nodeSelector"]:
            p.append("controller -nodeSelector differs from the node DaemonSet's nodeSelector")
    except (StopIteration, ValueError) as e:
        p.append(f"controller -nodeSelector: {e}")
    return p


def check_rbac(overlay):
    docs = load(f"{REPO}/deploy/generated/pmem-csi-{overlay}.yaml")
    p = []
    roles = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"] in ("Role", "ClusterRole")}
    sas = {d["metadata"]["name"] for d in by_kind(docs, "ServiceAccount")}
    for d in docs:
        if d["kind"] in ("Role", "ClusterRole"):
            for r in d.get("rules", []):
                if "*" in r.get("verbs", []) or "*" in r.get("resources", []) or "*" in r.get("apiGroups", []):
                    p.append(f"{d['metadata']['name']}: wildcard rule")
                if "secrets" in r.get("resources", []):
                    p.append(f"{d['metadata']['name']}: grants secrets")
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            ref = (d["roleRef"]["kind"], d["roleRef"]["name"])
            # 1.1's binding to OpenShift's privileged SCC role, which only OpenShift has.
            if ref not in roles and ref != ("ClusterRole", "system:openshift:scc:privileged"):
                p.append(f"{d['metadata']['name']}: {ref} missing")
            for s in d["subjects"]:
                if s["kind"] != "ServiceAccount" or s["name"] not in sas or s.get("namespace") != NAMESPACE:
                    p.append(f"{d['metadata']['name']}: subject {s}")

    def grants(sa, group, resource, verb, namespaced_in=None):
        for d in docs:
            if d["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
                continue
            if not any(s["name"] == sa for s in d["subjects"]):
                continue
            role = roles.get((d["roleRef"]["kind"], d["roleRef"]["name"]), {"rules": []})
            for r in role["rules"]:
                if group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"]:
                    return True
        return False

    prov = "pmem-csi-intel-com-controller"
    for group, res, verbs in [
        ("", "persistentvolumes", ["get", "list", "watch", "create", "delete", "patch"]),
        ("", "persistentvolumeclaims", ["get", "list", "watch", "update"]),
        ("storage.k8s.io", "storageclasses", ["get", "list", "watch"]),
        ("storage.k8s.io", "csinodes", ["get", "list", "watch"]),
        ("", "nodes", ["get", "list", "watch"]),
        ("", "events", ["create", "patch"]),
        ("storage.k8s.io", "csistoragecapacities", ["list", "watch", "create", "update", "delete"]),
        ("", "pods", ["get"]),
    ]:
        for v in verbs:
            if not grants(prov, group, res, v):
                p.append(f"external-provisioner cannot {v} {res}")
    for group, res, verbs in [
        ("", "persistentvolumeclaims", ["get", "list", "watch", "patch", "update"]),
        ("storage.k8s.io", "csinodes", ["get", "list", "watch"]),
        ("", "nodes", ["get", "list", "watch"]),
        ("", "events", ["create"]),
    ]:
        for v in verbs:
            if not grants("pmem-csi-intel-com-webhooks", group, res, v):
                p.append(f"controller cannot {v} {res}")
    for v in ["patch"]:  # only patch, as 1.1's role: the label is checked with a JSON patch test
        if not grants("pmem-csi-intel-com-node-setup", "", "nodes", v):
            p.append(f"node-setup cannot {v} nodes")
    # CSIStorageCapacity only in the driver's namespace.
    for d in by_kind(docs, "ClusterRole"):
        if any("csistoragecapacities" in r["resources"] for r in d["rules"]):
            p.append(f"{d['metadata']['name']}: csistoragecapacities cluster-wide")
    return p


for o in OVERLAYS:
    check(f"generated/pmem-csi-{o}.yaml: objects, driver and sidecar arguments, mounts, probes", lambda o=o: check_generated(o))
    check(f"generated/pmem-csi-{o}.yaml: RBAC bindings resolve, least privilege, needed verbs granted", lambda o=o: check_rbac(o))
if driver_flags is None:
    print("SKIP - manifest flags accepted by pmem-csi-driver -h (no driver binary built)")
else:
    print(f"ok - manifest flags checked against {os.path.relpath(DRIVER, REPO)} -h ({len(driver_flags)} flags)")


def check_operator():
    """deploy/operator runs the operator binary from the driver image of deploy/generated."""
    p = []
    docs = load(f"{REPO}/deploy/operator/pmem-csi-operator.yaml")
    gen = load(f"{REPO}/deploy/generated/pmem-csi-lvm.yaml")
    drv = container(one(gen, "DaemonSet", "pmem-csi-intel-com-node")["spec"]["template"]["spec"], "pmem-driver")
    c = container(one(docs, "Deployment", "pmem-csi-operator")["spec"]["template"]["spec"], "pmem-csi-operator")
    if c["image"] != drv["image"]:
        p.append(f"operator image {c['image']} is not the driver image {drv['image']}")
    if c.get("command") != ["/usr/local/bin/pmem-csi-operator"]:
        p.append(f"operator command {c.get('command')}")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    if env.get("PMEM_CSI_IMAGE") not in (None, drv["image"]):
        p.append(f"PMEM_CSI_IMAGE {env.get('PMEM_CSI_IMAGE')} is not the driver image {drv['image']}")
    return p


check("operator/pmem-csi-operator.yaml: the operator runs from the driver image of deploy/generated",
      check_operator)


def check_examples():
    p = []
    docs = []
    for path in sorted(glob.glob(f"{REPO}/deploy/examples/*.yaml")):
        docs += [(os.path.basename(path), d) for d in load(path)]
    classes = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "StorageClass"}
    claims = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "PersistentVolumeClaim"}
    for name, sc in classes.items():
        if sc.get("provisioner") != DRIVER_NAME:
            p.append(f"{name}: provisioner {sc.get('provisioner')}")
        for k in sc.get("parameters", {}):
            if k not in ("csi.storage.k8s.io/fstype", "eraseafter", "usage", "kataContainers", "persistencyModel",
                         "cacheSize"):
                p.append(f"{name}: unknown parameter {k}")
    bindings = {sc.get("volumeBindingMode") for sc in classes.values()}
    if bindings != {"Immediate", "WaitForFirstConsumer"}:
        p.append(f"binding modes {bindings}")
    for name, c in claims.items():
        if c["spec"].get("storageClassName") not in classes:
            p.append(f"claim {name}: class {c['spec'].get('storageClassName')} not in the examples")
    kinds = set()
    for f, d in docs:
        if d["kind"] != "Pod":
            continue
        for v in d["spec"].get("volumes", []):
            if "persistentVolumeClaim" in v:
                if v["persistentVolumeClaim"]["claimName"] not in claims:
                    p.append(f"{f}: claim {v['persistentVolumeClaim']['claimName']} not in the examples")
                kinds.add("block" if claims.get(v["persistentVolumeClaim"]["claimName"], {}).get("spec", {}).get("volumeMode") == "Block" else "pvc")
            elif "csi" in v:
                if v["csi"]["driver"] != DRIVER_NAME or "size" not in v["csi"].get("volumeAttributes", {}):
                    p.append(f"{f}: inline volume without driver name or size")
                kinds.add("inline")
            elif "ephemeral" in v:
                sc = v["ephemeral"]["volumeClaimTemplate"]["spec"].get("storageClassName")
                if sc not in classes:
                    p.append(f"{f}: ephemeral class {sc}")
                kinds.add("generic-ephemeral")
    if kinds != {"pvc", "block", "inline", "generic-ephemeral"}:
        p.append(f"pod volume kinds {sorted(kinds)}")
    if not any(sc.get("parameters", {}).get("usage") == "FileIO" for sc in classes.values()):
        p.append("no FileIO class")
    if not any(sc.get("parameters", {}).get("kataContainers") == "true" for sc in classes.values()):
        p.append("no Kata class")
    return p


check("examples: classes, claims and pods refer to each other and to the driver", check_examples)


def check_scrape():
    p = []
    cfg = load(f"{REPO}/deploy/prometheus-scrape.yaml")[0]
    job = cfg["scrape_configs"][0]
    rl = job["relabel_configs"]
    keep = {(tuple(r["source_labels"]), r["regex"]) for r in rl if r.get("action") == "keep"}
    if (("__meta_kubernetes_pod_annotation_pmem_csi_intel_com_scrape",), "containers") not in keep:
        p.append("does not keep on the scrape annotation")
    if (("__meta_kubernetes_pod_container_port_name",), "metrics") not in keep:
        p.append("does not keep on the port name metrics")
    return p


check("prometheus-scrape.yaml: keeps pmem-csi.intel.com/scrape=containers pods, ports named metrics", check_scrape)
