#!/usr/bin/python3
"""convert-check.py - in the guest of test/vm/run-convert.sh: -mode=force-convert-raw-namespaces
on a label-less NVDIMM (its only namespace is raw), end to end.

usage: convert-check.py DRIVER [KUBECONFIG]
With KUBECONFIG (a real API server, reached over the VM's user network) the node
object lives there. Without, a minimal stand-in for the two API calls the mode
makes (a JSON patch testing the label and a merge patch of one Node) runs in this process, so that the device
side is tested in every CI run; test/k8s/run-k8s-tests.sh runs the real one.
Prints ok/FAIL lines and "N passed, N failed".
"""
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

DRIVER = sys.argv[1]
KCFG = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
DRV = "pmem-csi.intel.com"
LABEL = DRV + "/convert-raw-namespaces"
NODE = "pmem-csi-convert-node"
results = [0, 0]


def ok(name):
    results[0] += 1
    print("ok - convert: %s" % name, flush=True)


def fail(name, why):
    results[1] += 1
    print("FAIL - convert: %s: %s" % (name, why), flush=True)


def sh(*argv, check=True):
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=300)
    if check and p.returncode:
        raise RuntimeError("%s: %s" % (" ".join(argv), p.stderr.strip()))
    return p.stdout


def namespaces():
    out = sh("ndctl", "list", "-N")
    n = json.loads(out) if out.strip() else []
    return n if isinstance(n, list) else [n]


# ---- the API: real (kubectl) or the stand-in -------------------------------------

class Standin(http.server.BaseHTTPRequestHandler):
    node = None
    requests = []

    def log_message(self, *a):
        pass

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def target(self):
        return self.path == "/api/v1/nodes/" + NODE

    def do_GET(self):
        Standin.requests.append(("GET", self.path, None))
        if self.target():
            self.reply(200, Standin.node)
        else:
            self.reply(404, {"kind": "Status", "message": "nodes not found", "code": 404})

    def do_PATCH(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Standin.requests.append(("PATCH", self.path, self.headers.get("Content-Type")))
        if not self.target():
            return self.reply(404, {"kind": "Status", "message": "not found", "code": 404})
        if self.headers.get("Content-Type") == "application/json-patch+json":
            # Only "test" operations, as the driver checks its label with (1.1's RBAC allows patch only).
            labels = Standin.node["metadata"].get("labels", {})
            for op in json.loads(body):
                key = op["path"][len("/metadata/labels/"):].replace("~1", "/").replace("~0", "~")
                if op.get("op") != "test" or not op["path"].startswith("/metadata/labels/") or \
                        labels.get(key) != op.get("value"):
                    return self.reply(422, {"kind": "Status", "message": "test failed", "code": 422})
            return self.reply(200, Standin.node)
        if self.headers.get("Content-Type") != "application/merge-patch+json":
            return self.reply(415, {"kind": "Status", "message": "unsupported media type", "code": 415})
        patch = json.loads(body)
        labels = Standin.node["metadata"].setdefault("labels", {})
        for k, v in patch.get("metadata", {}).get("labels", {}).items():
            if v is None:
                labels.pop(k, None)
            else:
                labels[k] = v
        self.reply(200, Standin.node)


def start_standin():
    Standin.node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": {}}}
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Standin)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    path = os.path.join(tempfile.mkdtemp(), "kubeconfig")
    with open(path, "w") as f:
        f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: s\n  cluster:\n    server: http://127.0.0.1:%d\n"
                "users:\n- name: u\n  user:\n    token: standin\ncontexts:\n- name: c\n  context:\n"
                "    cluster: s\n    user: u\ncurrent-context: c\n" % srv.server_address[1])
    return path


def set_labels(labels):
    if KCFG:
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": labels}}
        sh("kubectl", "--kubeconfig", KCFG, "delete", "node", NODE, "--ignore-not-found")
        subprocess.run(["kubectl", "--kubeconfig", KCFG, "apply", "-f", "-"], input=json.dumps(node), text=True,
                       check=True, capture_output=True, timeout=120)
    else:
        Standin.node["metadata"]["labels"] = dict(labels)


def get_labels():
    if KCFG:
        return json.loads(sh("kubectl", "--kubeconfig", KCFG, "get", "node", NODE, "-o", "json"))["metadata"].get(
            "labels", {})
    return dict(Standin.node["metadata"].get("labels", {}))


def run_convert(kubeconfig, wait_relabel=True):
    log = tempfile.NamedTemporaryFile(prefix="convert.", suffix=".log", delete=False)
    p = subprocess.Popen([DRIVER, "-mode=force-convert-raw-namespaces", "-v=5", "-nodeid=" + NODE,
                          "-kubeconfig=" + kubeconfig, '-nodeSelector={"storage":"pmem"}'],
                         stdout=log, stderr=subprocess.STDOUT)
    t0 = time.time()
    while time.time() - t0 < 300 and p.poll() is None:
        labels = get_labels()
        if LABEL not in labels and labels.get("storage") == "pmem":
            break
        time.sleep(1)
    took = time.time() - t0
    alive = p.poll() is None
    if alive:
        time.sleep(1)
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    with open(log.name) as f:
        text = f.read()
    return alive, p.returncode, took, text


def main():
    kubeconfig = KCFG or start_standin()
    print("# API: %s" % ("real, " + KCFG if KCFG else "in-process stand-in"), flush=True)
    ns = namespaces()
    raw = [n for n in ns if n.get("mode") == "raw"]
    if not raw:
        fail("setup", "no raw namespace on the label-less NVDIMM: %s" % ns)
        return
    sh("vgs")  # LVM works at all

    set_labels({LABEL: "force", "kubernetes.io/hostname": NODE})
    alive, rc, took, log = run_convert(kubeconfig)
    name = "raw namespace converted, volume group made, node relabelled (%.1f s)" % took
    ns = namespaces()
    labels = get_labels()
    vgs = sh("vgs", "--noheadings", "-o", "vg_name").split()
    problems = []
    if not alive:
        problems.append("the driver exited (status %s) instead of waiting for SIGTERM" % rc)
    elif rc != 0:
        problems.append("exit status %s after SIGTERM" % rc)
    if [n.get("mode") for n in ns] != ["fsdax"]:
        problems.append("namespaces after: %s" % ns)
    if not any(re.fullmatch(r"ndbus\d+region\d+fsdax", v) for v in vgs):
        problems.append("no <bus><region>fsdax volume group: %s" % vgs)
    if LABEL in labels or labels.get("storage") != "pmem":
        problems.append("labels after: %s" % labels)
    if problems:
        fail(name, "; ".join(problems) + "\n" + log[-3000:])
    else:
        ok(name)
    if not KCFG:
        kinds = sorted(set((m, c) for m, _, c in Standin.requests))
        want = [("PATCH", "application/json-patch+json"), ("PATCH", "application/merge-patch+json")]
        if kinds == want:
            ok("API calls: no GET (1.1's RBAC has patch only), a JSON patch testing the label, a merge patch")
        else:
            fail("API calls", "%s" % Standin.requests)

    # Label it again: nothing raw is left, PMEM is prepared, so it relabels and waits.
    set_labels({LABEL: "force"})
    alive, rc, took, log = run_convert(kubeconfig)
    labels = get_labels()
    if alive and rc == 0 and LABEL not in labels and "already prepared" in log:
        ok("a second run finds nothing raw, PMEM prepared, relabels")
    else:
        fail("second run", "alive=%s rc=%s labels=%s\n%s" % (alive, rc, labels, log[-2000:]))

    # LVM mode uses what the conversion made.
    state = tempfile.mkdtemp()
    log = tempfile.NamedTemporaryFile(prefix="node.", suffix=".log", delete=False)
    p = subprocess.Popen([DRIVER, "-mode=node", "-deviceManager=lvm", "-nodeid=" + NODE, "-statePath=" + state,
                          "-endpoint=unix://%s/csi.sock" % state], stdout=log, stderr=subprocess.STDOUT)
    text = ""
    for _ in range(180):
        with open(log.name) as f:
            text = f.read()
        if "PMEM-CSI ready" in text or p.poll() is not None:
            break
        time.sleep(1)
    p.send_signal(signal.SIGTERM)
    p.wait(60)
    m = re.search(r"Capacity: (\S+) managed, (\S+) available", text)
    if m and not m.group(1).startswith("0"):
        ok("LVM mode starts on the converted namespace (%s managed)" % m.group(1))
    else:
        fail("LVM mode on the converted namespace", text[-2000:])


try:
    main()
except Exception as e:
    import traceback
    traceback.print_exc(file=sys.stdout)
    fail("unexpected error", e)
print("%d passed, %d failed" % tuple(results), flush=True)
sys.exit(1 if results[1] else 0)
