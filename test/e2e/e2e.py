#!/usr/bin/python3
"""e2e.py - end to end on a real cluster: deploy a variant of deploy/generated/,
then a late-binding PVC with a pod that checks DAX and writes and reads data, a
CSI inline ephemeral volume, a raw block volume; delete everything and check on
the node (through the driver's own pod) that no volume, state file or mount is
left. Needs at least one node labelled storage=pmem with PMEM, and the images of
the variant loaded on the nodes. On a single-node cluster in LVM mode it also grows
a PVC from 1Gi to 2Gi under a running pod (adding the external-resizer sidecar of
deploy/kustomize/components/resizer, whose image must be loadable too) and reads
kubelet_volume_stats_capacity_bytes from the kubelet's metrics before and after.

Environment:
  KUBECONFIG        the cluster (unset: every test is reported as skipped)
  E2E_VARIANT       pmem-csi-lvm-testing (default), pmem-csi-direct-testing, ...
  E2E_IMAGE         replace the driver image of the manifests (default: as generated)
  E2E_SIDECAR_IMAGES  "old=new,old=new" replacements for the sidecar images (the -testing
                    variants also run alpine/socat:1.8.0.3, for reaching the node socket)
  E2E_TEST_IMAGE    image of the test pods, with sh, grep, dd (default busybox:1.36)
  E2E_TIMEOUT       seconds to wait for each step (default 600; emulated nodes are slow)
  E2E_KEEP=1        leave the driver installed at the end
  E2E_ONLY_CACHE=1  run only deploy, the cache volume test and the clean-up check
  E2E_CACHE=0       skip the cache volume test (it turns on the peer channel of
                    deploy/kustomize/components/cache-volumes in the running node pods)
  E2E_NODE_IMAGES   a file listing the images the nodes have (default: node/images.list beside
                    KUBECONFIG, which test/e2e/cluster.sh writes): the expansion test is
                    skipped when the resizer image is not among them
Prints ok/FAIL/SKIP lines and "N passed, N failed[, N skipped]".
"""
import json
import os
import re
import subprocess
import sys
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VARIANT = os.environ.get("E2E_VARIANT", "pmem-csi-lvm-testing")
IMAGE = os.environ.get("E2E_IMAGE")
TEST_IMAGE = os.environ.get("E2E_TEST_IMAGE", "busybox:1.36")
TIMEOUT = int(os.environ.get("E2E_TIMEOUT", "600"))
NS = "pmem-csi-e2e"
DRV = "pmem-csi.intel.com"
SC = "pmem-csi-e2e-late-binding"
results = [0, 0, 0]


def log(msg):
    print("# " + msg, flush=True)


def kubectl(*args, input=None, check=True, timeout=120):
    p = subprocess.run(["kubectl"] + list(args), input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("kubectl %s: %s" % (" ".join(args), p.stderr.strip()[-1500:]))
    return p.stdout


def kget(*args):
    return json.loads(kubectl("get", "-o", "json", *args))


def apply(obj):
    kubectl("apply", "-f", "-", input=json.dumps(obj))


def wait(cond, what, timeout=TIMEOUT):
    t0 = time.time()
    last = None
    while time.time() - t0 < timeout:
        try:
            v = cond()
            if v:
                return v
        except AssertionError as e:
            last = e
        time.sleep(3)
    raise AssertionError("timed out after %d s waiting for %s%s" % (timeout, what, (": %s" % last) if last else ""))


def pod_done(name, ns=NS):
    return kget("pod", name, "-n", ns)["status"].get("phase") in ("Succeeded", "Failed")


def pod_logs(name, ns=NS):
    return kubectl("logs", name, "-n", ns, check=False)


def describe(kind, name, ns=NS):
    return kubectl("describe", kind, name, "-n", ns, check=False)[-2500:]


def manifest():
    with open(os.path.join(REPO, "deploy", "generated", VARIANT + ".yaml")) as f:
        text = f.read()
    if IMAGE:
        text = re.sub(r"image: \S*pmem-csi-driver\S*", "image: " + IMAGE, text)
    for pair in filter(None, os.environ.get("E2E_SIDECAR_IMAGES", "").split(",")):
        old, new = pair.split("=", 1)
        text = text.replace("image: " + old, "image: " + new)
    return text


def node_pods():
    return kget("pods", "-n", "pmem-csi", "-l", "app.kubernetes.io/name=pmem-csi-node")["items"]


def on_node(pod, *cmd):
    return kubectl("exec", "-n", "pmem-csi", pod, "-c", "pmem-driver", "--", *cmd, timeout=300)


def test_pod(name, volumes, mounts=None, devices=None, script="sleep 1"):
    c = {"name": "app", "image": TEST_IMAGE, "command": ["sh", "-c", script]}
    if mounts:
        c["volumeMounts"] = mounts
    if devices:
        c["volumeDevices"] = devices
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"restartPolicy": "Never", "containers": [c], "volumes": volumes,
                     "nodeSelector": {"storage": "pmem"}, "terminationGracePeriodSeconds": 1}}


def run_pod(pod, expect):
    apply(pod)
    name = pod["metadata"]["name"]
    wait(lambda: pod_done(name), "pod %s to finish" % name)
    out = pod_logs(name)
    phase = kget("pod", name, "-n", NS)["status"]["phase"]
    if phase != "Succeeded" or any(e not in out for e in expect):
        raise AssertionError("pod %s: phase %s, output:\n%s\n%s" % (name, phase, out, describe("pod", name)))
    return out


def step(name, fn):
    t0 = time.time()
    try:
        fn()
        results[0] += 1
        print("ok - e2e: %s (%.0f s)" % (name, time.time() - t0), flush=True)
        return True
    except Exception as e:
        results[1] += 1
        print("FAIL - e2e: %s: %s" % (name, e), flush=True)
        traceback.print_exc(file=sys.stdout)
        return False


def deploy():
    kubectl("apply", "-f", "-", input=manifest(), timeout=300)
    pods = wait(lambda: [p for p in node_pods()
                         if all(c.get("ready") for c in p["status"].get("containerStatuses", [{}]))
                         and len(p["status"].get("containerStatuses", [])) == len(p["spec"]["containers"])]
                or None,
                "a node pod with all containers ready")
    log("node pods: %s" % [p["metadata"]["name"] + "@" + p["spec"]["nodeName"] for p in pods])
    node = pods[0]["spec"]["nodeName"]
    wait(lambda: any(d["name"] == DRV for d in kget("csinode", node)["spec"].get("drivers") or []),
         "CSINode %s to list %s" % (node, DRV))
    caps = wait(lambda: [c for c in kget("csistoragecapacities", "-A")["items"]
                         if c.get("capacity") and c.get("storageClassName")] or None,
                "CSIStorageCapacity objects (create the storage class first)")
    log("capacity: %s" % [(c["storageClassName"], c["capacity"], c.get("maximumVolumeSize")) for c in caps])
    return pods


def storage_class():
    # The storage class first: the provisioner publishes capacity per class.
    apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
           "metadata": {"name": SC}, "provisioner": DRV, "reclaimPolicy": "Delete",
           "volumeBindingMode": "WaitForFirstConsumer",
           "parameters": {"csi.storage.k8s.io/fstype": "ext4", "eraseafter": "true"}})


def late_binding():
    apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": "late", "namespace": NS},
           "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": SC,
                    "resources": {"requests": {"storage": "100Mi"}}}})
    out = run_pod(test_pod("late-writer", [{"name": "d", "persistentVolumeClaim": {"claimName": "late"}}],
                           [{"name": "d", "mountPath": "/data"}],
                           script="grep ' /data ' /proc/mounts; grep ' /data ' /proc/mounts | grep -q dax && "
                                  "echo e2e-data > /data/file && sync && cat /data/file && echo DAX-OK"),
                  ["DAX-OK", "e2e-data"])
    log(out.strip().splitlines()[0])
    kubectl("delete", "pod", "late-writer", "-n", NS, "--wait=true", timeout=TIMEOUT)
    # The data survives the pod: a second pod reads it.
    run_pod(test_pod("late-reader", [{"name": "d", "persistentVolumeClaim": {"claimName": "late"}}],
                     [{"name": "d", "mountPath": "/data"}], script="cat /data/file"), ["e2e-data"])
    kubectl("delete", "pod", "late-reader", "-n", NS, "--wait=true", timeout=TIMEOUT)


def inline():
    vol = {"name": "d", "csi": {"driver": DRV, "fsType": "ext4", "volumeAttributes": {"size": "64Mi"}}}
    run_pod(test_pod("inline", [vol], [{"name": "d", "mountPath": "/data"}],
                     script="grep ' /data ' /proc/mounts; grep ' /data ' /proc/mounts | grep -q dax && "
                            "echo x > /data/x && echo INLINE-OK"), ["INLINE-OK"])
    kubectl("delete", "pod", "inline", "-n", NS, "--wait=true", timeout=TIMEOUT)


def block():
    apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "blk", "namespace": NS},
           "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Block", "storageClassName": SC,
                    "resources": {"requests": {"storage": "64Mi"}}}})
    run_pod(test_pod("block", [{"name": "d", "persistentVolumeClaim": {"claimName": "blk"}}],
                     devices=[{"name": "d", "devicePath": "/dev/e2e"}],
                     script="ls -l /dev/e2e && echo block-data | dd of=/dev/e2e bs=512 count=1 conv=sync "
                            "2>/dev/null && dd if=/dev/e2e bs=512 count=1 2>/dev/null | grep -q block-data "
                            "&& echo BLOCK-OK"), ["BLOCK-OK"])
    kubectl("delete", "pod", "block", "-n", NS, "--wait=true", timeout=TIMEOUT)
    # The pod object goes before kubelet has unpublished and unstaged the volume; a
    # PVC deleted now would race DeleteVolume against NodeUnpublishVolume (a bind-
    # mounted device node does not keep the LV open). Wait for kubelet's records.
    pv = kget("pvc", "blk", "-n", NS)["spec"]["volumeName"]
    pod0 = node_pods()[0]["metadata"]["name"]
    wait(lambda: not block_records(pod0, [pv]), "kubelet to unpublish and unstage block volume %s" % pv,
         timeout=min(TIMEOUT, 300))


VOLUME_DEVICES = "/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices"


def block_records(pod, pvs):
    """kubelet's records (under staging/, publish/ or at the top of VOLUME_DEVICES) of
    the block PVs pvs, as the driver's pod sees them."""
    out = on_node(pod, "sh", "-c", "test -d %s && find %s -maxdepth 2 || true" % (VOLUME_DEVICES, VOLUME_DEVICES))
    return [f for f in out.split() if os.path.basename(f) in pvs]


def node_leftovers(run):
    """What of ours is left on the node: run(*cmd) executes a command there (in a
    container that sees the node's /dev, /sys, /var/lib and mounts)."""
    lvs = run("lvm", "lvs", "--noheadings", "-o", "lv_name,vg_name")
    ours = [l for l in lvs.split("\n") if l.strip() and l.split()[-1].endswith("fsdax")]
    ns = json.loads(run("ndctl", "list", "-N") or "[]")
    ns = ns if isinstance(ns, list) else [ns]
    named = [n["name"] for n in ns if n.get("name") and n["name"] != "pmem-csi"]
    state_files = [f for f in run("sh", "-c", "ls /var/lib/%s 2>/dev/null || true" % DRV).split()
                   if f.endswith(".json")]
    # Our devices (LVM: /dev/ndbus*, direct: /dev/pmem*) or kubelet's staging
    # directories of this driver, wherever they are mounted.
    mounts = [l for l in run("cat", "/proc/1/mounts").split("\n")
              if l.split()[:1] and (l.split()[0].startswith(("/dev/pmem", "/dev/ndbus"))
                                    or "/kubernetes.io/csi/%s/" % DRV in l)]
    return {"LVs": ours, "volume namespaces": named, "state files": state_files, "mounts": mounts}


def cleanup(pod0):
    pvs = [c["spec"].get("volumeName") for c in kget("pvc", "-n", NS)["items"]]
    pvs = [p for p in pvs if p]
    kubectl("delete", "pvc", "--all", "-n", NS, "--wait=true", timeout=TIMEOUT)
    wait(lambda: not [pv for pv in kget("pv")["items"]
                      if pv["spec"].get("csi", {}).get("driver") == DRV], "the PVs to be deleted")
    left = node_leftovers(lambda *cmd: on_node(pod0, *cmd))
    if any(left.values()):
        raise AssertionError("left on the node: %s" % left)
    # kubelet's own records of block volumes go once NodeUnstageVolume succeeded.
    vd = VOLUME_DEVICES
    if on_node(pod0, "sh", "-c", "test -d %s && echo yes || echo no" % vd).strip() == "yes":
        # A deleted PV of ours still under staging/, publish/ or at the top is a record
        # kubelet could not clean up (it keeps retrying NodeUnstageVolume).
        wait(lambda: not block_records(pod0, pvs),
             "kubelet to unstage the block volume (%s/{staging,publish} empty)" % vd,
             timeout=min(TIMEOUT, 300))
        log("node clean: no LV, volume namespace, state file, volume mount or kubelet block volume record")
    else:
        log("NOTE: %s is not visible in the driver pod (another kubelet directory?): "
            "kubelet's block volume records not checked" % vd)
        log("node clean: no LV, volume namespace, state file or volume mount")


# ---- PVC expansion (issue 12, part 2) -------------------------------------------------------
# Separate from the tests above: it needs the external-resizer sidecar, which is not in
# deploy/generated (released resizers have no node-deployment mode; docs/usage.md,
# "Volume expansion"). When the node pods lack it, the test adds
# deploy/kustomize/components/resizer to the running DaemonSet (its RBAC, and the
# container by a strategic merge patch), on single-node clusters only, and LVM mode only.

RESIZER = os.path.join(REPO, "deploy", "kustomize", "components", "resizer")
NODE_DS = "pmem-csi-intel-com-node"


# ---- cache volumes (issue 13): the peer channel of deploy/kustomize/components/cache-volumes ----
# Added to the running DaemonSet like the resizer: the node certificate Secret made here
# with openssl (as the operator would write it), the component's Role to list the node
# pods and its arguments, port and mount. On one node, cacheSize 2 gives one copy (as
# 0.7 did with fewer nodes than cacheSize); the peers still come from the API server.

CACHE = os.path.join(REPO, "deploy", "kustomize", "components", "cache-volumes")
CACHE_TEST = "cache volume (cacheSize 2, peers from the API): PV on the node, pod writes and reads, delete"


def node_secret():
    import tempfile
    d = tempfile.mkdtemp(prefix="pmem-csi-e2e-certs.")

    def ossl(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=120)
    ossl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", d + "/ca.key", "-subj", "/CN=pmem-csi-e2e-ca", "-days", "2", "-out", d + "/ca.crt")
    with open(d + "/ext", "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n"
                "subjectAltName=DNS:pmem-node-controller\n")
    ossl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
         d + "/tls.key", "-subj", "/CN=pmem-node-controller", "-out", d + "/tls.csr")
    ossl("x509", "-req", "-in", d + "/tls.csr", "-CA", d + "/ca.crt", "-CAkey", d + "/ca.key",
         "-CAcreateserial", "-days", "2", "-sha256", "-extfile", d + "/ext", "-out", d + "/tls.crt")
    kubectl("delete", "secret", "pmem-csi-intel-com-node-secrets", "-n", "pmem-csi", check=False)
    kubectl("create", "secret", "generic", "pmem-csi-intel-com-node-secrets", "-n", "pmem-csi",
            "--type=kubernetes.io/tls", "--from-file=ca.crt=" + d + "/ca.crt",
            "--from-file=tls.crt=" + d + "/tls.crt", "--from-file=tls.key=" + d + "/tls.key")


def ensure_cache_channel():
    ds = kget("daemonset", NODE_DS, "-n", "pmem-csi")
    containers = ds["spec"]["template"]["spec"]["containers"]
    # the -testing variants put socat first: the component's paths name container 0
    idx = [c["name"] for c in containers].index("pmem-driver")
    if any(a.startswith("-peerListen") for a in containers[idx].get("args", [])):
        return
    import yaml
    with open(os.path.join(CACHE, "kustomization.yaml")) as f:
        comp = yaml.safe_load(f)
    node_secret()
    kubectl("apply", "-f", os.path.join(CACHE, "rbac.yaml"))
    json_patch = yaml.safe_load(comp["patches"][0]["patch"].replace("/containers/0/", "/containers/%d/" % idx))
    kubectl("patch", "daemonset", NODE_DS, "-n", "pmem-csi", "--type=json", "-p", json.dumps(json_patch))
    smp = yaml.safe_load(comp["patches"][1]["patch"])
    kubectl("patch", "daemonset", NODE_DS, "-n", "pmem-csi", "--type=strategic", "-p",
            json.dumps({"spec": smp["spec"]}))
    kubectl("rollout", "status", "daemonset/" + NODE_DS, "-n", "pmem-csi", "--timeout=%ds" % TIMEOUT,
            timeout=TIMEOUT + 30)
    log("turned on the peer channel (deploy/kustomize/components/cache-volumes) in the node pods")


def cache_volume():
    ensure_cache_channel()
    apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": SC + "-cache"},
           "provisioner": DRV, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
           "parameters": {"persistencyModel": "cache", "cacheSize": "2"}})
    apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "cache", "namespace": NS},
           "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": SC + "-cache",
                    "resources": {"requests": {"storage": "64Mi"}}}})
    pv = wait(lambda: kget("pvc", "cache", "-n", NS)["spec"].get("volumeName"), "the cache PVC to be bound")
    terms = kget("pv", pv)["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    nodes = sorted(v for t in terms for e in t.get("matchExpressions", []) if e["key"] == DRV + "/node"
                   for v in e["values"])
    if nodes != sorted(p["spec"]["nodeName"] for p in node_pods()):
        raise AssertionError("PV %s: node affinity %s, not the node(s) with a copy" % (pv, terms))
    run_pod(test_pod("cache-user", [{"name": "c", "persistentVolumeClaim": {"claimName": "cache"}}],
                     mounts=[{"name": "c", "mountPath": "/cache"}],
                     script="echo cached > /cache/f && cat /cache/f && grep ' /cache ' /proc/mounts"),
            ["cached", "dax"])
    pod0 = node_pods()[0]["metadata"]["name"]
    logs = kubectl("logs", "-n", "pmem-csi", pod0, "-c", "pmem-driver", check=False)
    for want in ("Peers of cache volumes: the pods of /api/v1/namespaces/pmem-csi/pods", "1 of 2 copies"):
        if want not in logs:
            raise AssertionError("the driver log does not say %r:\n%s" % (want, logs[-3000:]))
    kubectl("delete", "pod", "cache-user", "-n", NS, "--wait=true", timeout=TIMEOUT)
    kubectl("delete", "pvc", "cache", "-n", NS, "--wait=true", timeout=TIMEOUT)
    wait(lambda: not [p for p in kget("pv")["items"] if p["metadata"]["name"] == pv], "PV %s to be deleted" % pv)
    kubectl("delete", "storageclass", SC + "-cache", check=False)


def expand_applicable():
    """None when the expansion test can run here, else why not."""
    if "direct" in VARIANT:
        return "direct mode cannot grow volumes (namespaces are fixed)"
    listed = os.environ.get("E2E_NODE_IMAGES")
    if not listed and os.environ.get("KUBECONFIG"):
        listed = os.path.join(os.path.dirname(os.environ["KUBECONFIG"]), "node", "images.list")
        listed = listed if os.path.exists(listed) else None
    if listed:
        # cluster.sh lists the images its node has (no registry there).
        with open(os.path.join(RESIZER, "resizer.yaml")) as f:
            image = re.search(r"image:\s*(\S+)", f.read()).group(1)
        with open(listed) as f:
            if image not in f.read().split():
                return ("the node has no %s image (E2E_NODE_IMAGES=%s): the test peers have no "
                        "csi-resizer binary to make it from" % (image, listed))
    nodes = {p["spec"].get("nodeName") for p in node_pods()}
    if len(nodes) != 1:
        return ("%d nodes run the driver: external-resizer has no node-deployment mode, so PVC "
                "expansion is only set up on single-node clusters" % len(nodes))
    return None


def kubelet_capacity(node, pvc):
    """kubelet_volume_stats_capacity_bytes of NS/pvc from the node's kubelet, or None."""
    text = kubectl("get", "--raw", "/api/v1/nodes/%s/proxy/metrics" % node, timeout=60)
    for line in text.splitlines():
        if (line.startswith("kubelet_volume_stats_capacity_bytes{") and 'namespace="%s"' % NS in line
                and 'persistentvolumeclaim="%s"' % pvc in line):
            return float(line.rsplit(" ", 1)[1])
    return None


def ensure_resizer():
    ds = kget("daemonset", NODE_DS, "-n", "pmem-csi")
    if any(c["name"] == "external-resizer" for c in ds["spec"]["template"]["spec"]["containers"]):
        return
    import yaml
    with open(os.path.join(RESIZER, "resizer.yaml")) as f:
        patch = yaml.safe_load(f)
    kubectl("apply", "-f", os.path.join(RESIZER, "rbac-resizer.yaml"))
    for pair in filter(None, os.environ.get("E2E_SIDECAR_IMAGES", "").split(",")):
        old, new = pair.split("=", 1)
        for c in patch["spec"]["template"]["spec"]["containers"]:
            if c["image"] == old:
                c["image"] = new
    kubectl("patch", "daemonset", NODE_DS, "-n", "pmem-csi", "--type=strategic", "-p",
            json.dumps({"spec": patch["spec"]}))
    kubectl("rollout", "status", "daemonset/" + NODE_DS, "-n", "pmem-csi", "--timeout=%ds" % TIMEOUT,
            timeout=TIMEOUT + 30)
    log("added the external-resizer sidecar (deploy/kustomize/components/resizer) to the node pods")


def expansion(klass):
    ensure_resizer()
    # allowVolumeExpansion is the one mutable field of a StorageClass.
    kubectl("patch", "storageclass", klass, "-p", json.dumps({"allowVolumeExpansion": True}))
    apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "grow", "namespace": NS},
           "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": klass,
                    "resources": {"requests": {"storage": "1Gi"}}}})
    pod = test_pod("grower", [{"name": "d", "persistentVolumeClaim": {"claimName": "grow"}}],
                   [{"name": "d", "mountPath": "/data"}],
                   script="dd if=/dev/urandom of=/data/blob bs=1M count=16 2>/dev/null && sync && "
                          "md5sum /data/blob > /data/blob.md5 && echo READY && sleep 100000")
    apply(pod)
    wait(lambda: kget("pod", "grower", "-n", NS)["status"].get("phase") == "Running"
         and "READY" in pod_logs("grower"), "pod grower to run")
    node = kget("pod", "grower", "-n", NS)["spec"]["nodeName"]

    def df_bytes():
        out = kubectl("exec", "-n", NS, "grower", "--", "df", "-P", "-k", "/data")  # -P: one line per filesystem
        return int(out.strip().splitlines()[-1].split()[1]) * 1024

    before = df_bytes()
    cap0 = wait(lambda: kubelet_capacity(node, "grow"), "kubelet_volume_stats_capacity_bytes of the 1Gi PVC",
                timeout=min(TIMEOUT, 300))
    log("before: df %d bytes, kubelet_volume_stats_capacity_bytes %d" % (before, cap0))
    if not (0.8 * 2**30 < before <= 2**30 and cap0 <= 2**30):
        raise AssertionError("a 1Gi volume has df %d, kubelet says %d" % (before, cap0))
    kubectl("patch", "pvc", "grow", "-n", NS, "-p", json.dumps({"spec": {"resources": {"requests": {"storage": "2Gi"}}}}))
    wait(lambda: kget("pvc", "grow", "-n", NS)["status"].get("capacity", {}).get("storage") == "2Gi",
         "PVC grow to report 2Gi (resizer, then kubelet's NodeExpandVolume)")
    after = wait(lambda: df_bytes() > 1.6 * 2**30 and df_bytes(), "df in the running pod to show the new size",
                 timeout=min(TIMEOUT, 300))
    cap1 = wait(lambda: (kubelet_capacity(node, "grow") or 0) > 1.6 * 2**30 and kubelet_capacity(node, "grow"),
                "kubelet_volume_stats_capacity_bytes to follow (kubelet refreshes it about once a minute)",
                timeout=min(TIMEOUT, 300))
    log("after: df %d bytes, kubelet_volume_stats_capacity_bytes %d" % (after, cap1))
    check = kubectl("exec", "-n", NS, "grower", "--", "sh", "-c",
                    "md5sum -c /data/blob.md5 && grep ' /data ' /proc/mounts")
    if "OK" not in check or "dax" not in check:
        raise AssertionError("after growing: data or dax lost: %s" % check)
    if kget("pod", "grower", "-n", NS)["status"].get("containerStatuses", [{}])[0].get("restartCount", 0):
        raise AssertionError("the pod restarted while its volume grew")
    kubectl("delete", "pod", "grower", "-n", NS, "--wait=true", timeout=TIMEOUT)


# The tests after the deployment, in order: (name, function). Add new ones here.
TESTS = [
    ("late-binding PVC: pod sees dax, writes and reads data", late_binding),
    ("CSI inline ephemeral volume: pod sees dax, volume gone after the pod", inline),
    ("raw block volume: pod writes and reads the device", block),
]
# Before the clean-up step, so that its volume is checked for leftovers too; it may
# be skipped (expand_applicable), so it is not in TESTS.
EXPAND_TEST = "PVC expansion: 1Gi -> 2Gi under a running pod, kubelet_volume_stats_capacity_bytes follows"
DEPLOY = "deploy: node pods ready, driver registered, capacity published"
CLEANUP = "after deleting everything: no volume, state file, mount or kubelet record left on the node"


def skip(names, why):
    for n in names:
        print("SKIP - e2e: %s (%s)" % (n, why))
        results[2] += 1


def main():
    names = [DEPLOY] + [n for n, _ in TESTS] + [EXPAND_TEST, CACHE_TEST, CLEANUP]
    if not os.environ.get("KUBECONFIG"):
        skip(names, "KUBECONFIG is not set")
        return
    log("variant %s, test image %s, cluster %s" % (VARIANT, TEST_IMAGE,
        kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")))
    kubectl("create", "namespace", NS, check=False)
    storage_class()
    state = {}
    if not step(DEPLOY, lambda: state.update(pods=deploy())):
        skip(names[1:], "deploy failed")
        return
    pod0 = state["pods"][0]["metadata"]["name"]
    for name, fn in TESTS:
        if os.environ.get("E2E_ONLY_CACHE") == "1":
            skip([name], "E2E_ONLY_CACHE=1")
            continue
        step(name, fn)
    why = expand_applicable()
    if why:
        skip([EXPAND_TEST], why)
    else:
        step(EXPAND_TEST, lambda: expansion(SC))
        pod0 = node_pods()[0]["metadata"]["name"]  # adding the resizer restarts the node pods
    if os.environ.get("E2E_CACHE", "1") == "1":
        step(CACHE_TEST, cache_volume)
        pod0 = node_pods()[0]["metadata"]["name"]  # so does the peer channel
    else:
        skip([CACHE_TEST], "E2E_CACHE=0")
    step(CLEANUP, lambda: cleanup(pod0))
    if os.environ.get("E2E_KEEP") != "1":
        kubectl("delete", "namespace", NS, "--wait=false", check=False)
        kubectl("delete", "-f", "-", "--wait=false", input=manifest(), check=False, timeout=300)
        kubectl("delete", "storageclass", SC, check=False)


def finish():
    line = "%d passed, %d failed" % (results[0], results[1])
    if results[2]:
        line += ", %d skipped" % results[2]
    print(line)
    sys.exit(1 if results[1] else 0)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        traceback.print_exc(file=sys.stdout)
        print("FAIL - e2e: unexpected error: %s" % e)
        results[1] += 1
    finish()
