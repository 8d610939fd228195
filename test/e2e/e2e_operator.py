#!/usr/bin/python3
"""e2e_operator.py - the operator path end to end on a real cluster: install the CRD
and deploy/operator/, create a PmemCSIDeployment with only `deviceMode: lvm` and a
nodeSelector, then: driver pods running and the CR's status Running with Controller
and Node Ready; a late-binding PVC with a pod that checks DAX and writes and reads
data; a CR change (logLevel) that rolls the node pod; deleting the CR removes every
object it owned (garbage collector) and leaves nothing on the node (no volume, state
file or mount: looked at from a privileged pod with the driver image).
Needs what e2e.py needs (a node labelled storage=pmem with PMEM, the images loaded:
test/e2e/cluster.sh makes such a cluster), and no other PMEM-CSI installation.

Environment: KUBECONFIG (unset: every test is reported as skipped), E2E_TIMEOUT,
E2E_TEST_IMAGE (see e2e.py), E2E_KEEP=1 (leave the operator installed).
Prints ok/FAIL/SKIP lines and "N passed, N failed[, N skipped]".
"""
import json
import os
import sys
import time
import traceback

import e2e
from e2e import DRV, NS, REPO, TIMEOUT, apply, kget, kubectl, log, run_pod, step, test_pod, wait

OPNS = "pmem-csi"  # the operator's namespace (deploy/operator/)
CR = DRV  # the CR name is the driver name
PREFIX = CR.replace(".", "-")
CRD = os.path.join(REPO, "deploy", "crd", "pmem-csi.intel.com_pmemcsideployments.yaml")
OPERATOR = os.path.join(REPO, "deploy", "operator", "pmem-csi-operator.yaml")
# Owned objects are looked for among these kinds (namespaced ones in OPNS).
KINDS = ["daemonsets", "deployments", "serviceaccounts", "services", "secrets", "roles", "rolebindings",
         "clusterroles", "clusterrolebindings", "csidrivers"]
state = {}


def get_cr():
    return kget("pmemcsideployment", CR)


def node_pods():
    return kget("pods", "-n", OPNS, "-l", "app.kubernetes.io/name=pmem-csi-node,app.kubernetes.io/instance=" + CR)["items"]


def ready(pod):
    st = pod["status"].get("containerStatuses") or []
    return (pod["metadata"].get("deletionTimestamp") is None and len(st) == len(pod["spec"]["containers"])
            and all(c.get("ready") for c in st))


def running_status():
    """The CR's status when it says Running with both components Ready, else None."""
    st = get_cr().get("status") or {}
    comps = {c.get("component"): c for c in st.get("driverComponents") or []}
    if st.get("phase") == "Running" and all(comps.get(c, {}).get("status") == "Ready" for c in ("Controller", "Node")):
        return st
    return None


def owned(uid):
    """Every object of KINDS whose ownerReferences name uid: ["kind/name", ...]."""
    out = []
    for k in KINDS:
        for o in kget(k, "-A")["items"]:
            if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or []):
                out.append("%s/%s" % (k, o["metadata"]["name"]))
    return sorted(out)


def manifests_gone():
    """e2e.py's manifests variant used the same namespace and object names: gone?"""
    ns = kubectl("get", "namespace", OPNS, "--ignore-not-found", "-o", "json").strip()
    if not ns:
        return True
    if json.loads(ns)["status"].get("phase") == "Terminating":
        return False
    ds = kubectl("get", "daemonset", "%s-node" % PREFIX, "-n", OPNS, "--ignore-not-found", "-o", "json").strip()
    return not ds or any(r.get("kind") == "PmemCSIDeployment"
                         for r in json.loads(ds)["metadata"].get("ownerReferences") or [])


def install():
    wait(manifests_gone, "the objects of deploy/generated (e2e.py) to be gone")
    kubectl("apply", "--server-side", "-f", CRD)
    kubectl("wait", "--for=condition=Established", "crd/pmemcsideployments.pmem-csi.intel.com", "--timeout=60s")
    kubectl("apply", "-f", OPERATOR)
    pods = wait(lambda: [p for p in kget("pods", "-n", OPNS, "-l", "app.kubernetes.io/name=pmem-csi-operator")["items"]
                         if ready(p)] or None, "the operator pod to be ready")
    log("operator pod %s (image %s)" % (pods[0]["metadata"]["name"], pods[0]["spec"]["containers"][0]["image"]))


def create():
    apply({"apiVersion": "pmem-csi.intel.com/v1beta1", "kind": "PmemCSIDeployment", "metadata": {"name": CR},
           "spec": {"deviceMode": "lvm", "nodeSelector": {"storage": "pmem"}}})
    pods = wait(lambda: [p for p in node_pods() if ready(p)] or None, "a node driver pod with all containers ready")
    state["pod"] = pods[0]["metadata"]["name"]
    log("node pods: %s" % [p["metadata"]["name"] + "@" + p["spec"]["nodeName"] for p in pods])
    node = pods[0]["spec"]["nodeName"]
    wait(lambda: any(d["name"] == DRV for d in kget("csinode", node)["spec"].get("drivers") or []),
         "CSINode %s to list %s" % (node, DRV))
    # The operator refreshes the component status at each reconcile (at the latest
    # at its resync, 60 s).
    st = wait(running_status, "the CR's status: Running, Controller and Node Ready")
    log("status: %s" % json.dumps({"phase": st.get("phase"), "reason": st.get("reason"),
                                   "components": [(c["component"], c["status"], c.get("reason"))
                                                  for c in st["driverComponents"]]}))
    cr = get_cr()
    state["uid"] = cr["metadata"]["uid"]
    state["owned"] = owned(state["uid"])
    log("owned by the CR: %s" % state["owned"])
    for want in ("daemonsets/%s-node" % PREFIX, "deployments/%s-controller" % PREFIX, "csidrivers/%s" % DRV):
        if want not in state["owned"]:
            raise AssertionError("%s is not owned by the CR (owned: %s)" % (want, state["owned"]))


def pvc():
    kubectl("create", "namespace", NS, check=False)
    e2e.storage_class()
    e2e.late_binding()
    kubectl("delete", "pvc", "late", "-n", NS, "--wait=true", timeout=TIMEOUT)
    wait(lambda: not [pv for pv in kget("pv")["items"] if pv["spec"].get("csi", {}).get("driver") == DRV],
         "the PV to be deleted")


def change():
    old = state["pod"]
    before = kget("daemonset", "%s-node" % PREFIX, "-n", OPNS)
    kubectl("patch", "pmemcsideployment", CR, "--type=merge", "-p", json.dumps({"spec": {"logLevel": 5}}))

    def rolled():
        pods = [p for p in node_pods() if ready(p) and p["metadata"]["name"] != old]
        if not pods:
            return None
        drv = [c for c in pods[0]["spec"]["containers"] if c["name"] == "pmem-driver"][0]
        if "-v=5" not in drv.get("args", []) + drv.get("command", []):
            raise AssertionError("the new node pod's driver runs with %s, not -v=5" % drv.get("args"))
        return pods
    pods = wait(rolled, "a new node pod with -v=5, ready")
    gone = kubectl("get", "pod", old, "-n", OPNS, "--ignore-not-found", "-o", "name").strip()
    if gone:
        raise AssertionError("the old node pod %s is still there" % old)
    log("node pod %s replaced by %s (DaemonSet generation %s -> %s)" % (
        old, pods[0]["metadata"]["name"], before["metadata"]["generation"],
        kget("daemonset", "%s-node" % PREFIX, "-n", OPNS)["metadata"]["generation"]))
    state["pod"] = pods[0]["metadata"]["name"]
    wait(running_status, "the CR's status: Running, Controller and Node Ready again")


def inspect_node(node, script):
    """Run script in a privileged pod with the driver image (lvm, ndctl) that sees the
    node's /dev, /sys, /var/lib and its mounts (hostPID: /proc/1/mounts); return its output."""
    image = state["image"]
    name = "e2e-inspect-%d" % int(time.time())
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
           "spec": {"restartPolicy": "Never", "nodeName": node, "hostPID": True, "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "inspect", "image": image, "imagePullPolicy": "IfNotPresent",
                                    "command": ["sh", "-c", script], "securityContext": {"privileged": True},
                                    "volumeMounts": [{"name": n, "mountPath": p} for n, p in
                                                     (("dev", "/dev"), ("sys", "/sys"), ("varlib", "/var/lib"))]}],
                    "volumes": [{"name": n, "hostPath": {"path": p}} for n, p in
                                (("dev", "/dev"), ("sys", "/sys"), ("varlib", "/var/lib"))]}}
    out = run_pod(pod, ["INSPECT-END"])
    kubectl("delete", "pod", name, "-n", NS, "--wait=false", check=False)
    return out


def delete():
    node = kget("pod", state["pod"], "-n", OPNS)["spec"]["nodeName"]
    state["image"] = [c for c in kget("pod", state["pod"], "-n", OPNS)["spec"]["containers"]
                      if c["name"] == "pmem-driver"][0]["image"]
    kubectl("delete", "pmemcsideployment", CR, "--wait=true", timeout=TIMEOUT)
    wait(lambda: not owned(state["uid"]), "the garbage collector to remove the CR's objects")
    for o in state["owned"]:
        if kubectl("get", o, "-n", OPNS, "--ignore-not-found", "-o", "name").strip():
            raise AssertionError("%s is still there" % o)
    wait(lambda: not node_pods(), "the node driver pods to be gone")
    wait(lambda: not [d for d in kget("csinode", node)["spec"].get("drivers") or [] if d["name"] == DRV],
         "CSINode %s to drop %s (the registrar's socket gone)" % (node, DRV))
    # Nothing of ours on the node: one pod prints each check's output between markers.
    checks = [("lvs", "lvm lvs --noheadings -o lv_name,vg_name"), ("ndctl", "ndctl list -N"),
              ("state", "ls /var/lib/%s 2>/dev/null || true" % DRV), ("mounts", "cat /proc/1/mounts")]
    script = "".join("echo '@@%s'; %s; " % (k, c) for k, c in checks) + "echo '@@end'; echo INSPECT-END"
    out = inspect_node(node, script)
    parts, cur = {}, None
    for line in out.split("\n"):
        if line.startswith("@@"):
            cur = line[2:]
            parts[cur] = []
        elif cur:
            parts[cur].append(line)
    # The pod must really see the node: its LVM namespace and its root mount.
    seen = {k: "\n".join(v) for k, v in parts.items()}
    if '"pmem-csi"' not in seen.get("ndctl", "") or " / " not in seen.get("mounts", ""):
        raise AssertionError("the inspecting pod does not see the node's namespaces or mounts:\n%s" % out)
    left = e2e.node_leftovers(lambda *cmd: "\n".join(parts[{"lvm": "lvs", "ndctl": "ndctl", "sh": "state",
                                                            "cat": "mounts"}[cmd[0]]]))
    if any(left.values()):
        raise AssertionError("left on the node: %s" % left)
    log("CR gone: %d owned objects removed by the garbage collector; node clean: no LV, volume namespace, "
        "state file or volume mount" % len(state["owned"]))


TESTS = [
    ("operator installed: CRD and deploy/operator, operator pod ready", install),
    ("PmemCSIDeployment {deviceMode: lvm, nodeSelector}: driver pods running, status Running, "
     "Controller and Node Ready", create),
    ("late-binding PVC through the operator's driver: pod sees dax, writes and reads data", pvc),
    ("CR change (logLevel 5) rolls the node pod, status Running again", change),
    ("CR deleted: owned objects garbage-collected, nothing left on the node", delete),
]


def main():
    if not os.environ.get("KUBECONFIG"):
        e2e.skip(["operator: " + n for n, _ in TESTS], "KUBECONFIG is not set")
        return
    for i, (name, fn) in enumerate(TESTS):
        if not step("operator: " + name, fn):
            e2e.skip(["operator: " + n for n, _ in TESTS[i + 1:]], "an earlier step failed")
            break
    if os.environ.get("E2E_KEEP") != "1":
        kubectl("delete", "pmemcsideployment", CR, "--ignore-not-found", "--wait=false", check=False)
        kubectl("delete", "namespace", NS, "--wait=false", check=False)
        kubectl("delete", "storageclass", e2e.SC, "--ignore-not-found", check=False)
        kubectl("delete", "-f", OPERATOR, "--ignore-not-found", "--wait=false", check=False)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        traceback.print_exc(file=sys.stdout)
        print("FAIL - e2e: operator: unexpected error: %s" % e)
        e2e.results[1] += 1
    e2e.finish()
