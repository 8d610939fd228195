#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""check_olm.py REPO - structure of the OLM bundle in deploy/olm/bundle (run by
test/deploy/check-manifests.sh): generated from the current sources, the CSV's
install strategy is deploy/operator's Deployment, Role and ClusterRole, the CRD is
listed as owned and shipped unchanged, the bundle annotations are present.
Prints ok/FAIL lines. Needs python3-yaml.
"""
import glob
import json
import os
import re
import subprocess
import sys

import yaml

REPO = sys.argv[1]
B = os.path.join(REPO, "deploy/olm/bundle")


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def check(name, fn):
    try:
        problems = fn()
    except Exception as e:  # a check that crashes is a failed check
        problems = ["%s: %s" % (type(e).__name__, e)]
    print(("ok - olm: %s" % name) if not problems else ("FAIL - olm: %s (%s)" % (name, "; ".join(problems[:5]))))


def gen_check():
    p = subprocess.run([sys.executable, os.path.join(REPO, "deploy/olm/generate.py"), "--check"],
                       capture_output=True, text=True)
    return [] if p.returncode == 0 else [p.stderr.strip()]


op = load(os.path.join(REPO, "deploy/operator/pmem-csi-operator.yaml"))
by_kind = {d["kind"]: d for d in op}
csvs = glob.glob(os.path.join(B, "manifests/*.clusterserviceversion.yaml"))
csv = load(csvs[0])[0] if len(csvs) == 1 else {}
strategy = csv.get("spec", {}).get("install", {})
meson = open(os.path.join(REPO, "meson.build")).read()
version = re.search(r"version\s*:\s*'([^']+)'", meson).group(1)


def csv_basics():
    p = []
    if len(csvs) != 1:
        return ["%d CSVs in manifests/" % len(csvs)]
    if csv.get("apiVersion") != "operators.coreos.com/v1alpha1" or csv.get("kind") != "ClusterServiceVersion":
        p.append("not a ClusterServiceVersion: %s/%s" % (csv.get("apiVersion"), csv.get("kind")))
    if csv["spec"].get("version") != version or csv["metadata"]["name"] != "pmem-csi-operator.v" + version:
        p.append("version %s / name %s, want %s" % (csv["spec"].get("version"), csv["metadata"]["name"], version))
    modes = {m["type"]: m["supported"] for m in csv["spec"].get("installModes", [])}
    if not modes.get("OwnNamespace"):
        p.append("OwnNamespace install mode not supported")
    examples = json.loads(csv["metadata"]["annotations"]["alm-examples"])
    if [e["kind"] for e in examples] != ["PmemCSIDeployment"]:
        p.append("alm-examples: %s" % examples)
    return p


def deployment():
    dep = by_kind["Deployment"]
    ds = strategy.get("spec", {}).get("deployments", [])
    if strategy.get("strategy") != "deployment" or len(ds) != 1:
        return ["install strategy %r with %d deployments" % (strategy.get("strategy"), len(ds))]
    p = []
    if ds[0]["name"] != dep["metadata"]["name"]:
        p.append("deployment name %s != %s" % (ds[0]["name"], dep["metadata"]["name"]))
    if ds[0]["spec"] != dep["spec"]:
        p.append("deployment spec differs from deploy/operator's Deployment")
    return p


def permissions():
    sa = by_kind["ServiceAccount"]["metadata"]["name"]
    s = strategy.get("spec", {})
    p = []
    if s.get("permissions") != [{"serviceAccountName": sa, "rules": by_kind["Role"]["rules"]}]:
        p.append("permissions != deploy/operator's Role rules for %s" % sa)
    if s.get("clusterPermissions") != [{"serviceAccountName": sa, "rules": by_kind["ClusterRole"]["rules"]}]:
        p.append("clusterPermissions != deploy/operator's ClusterRole rules for %s" % sa)
    if by_kind["Deployment"]["spec"]["template"]["spec"].get("serviceAccountName") != sa:
        p.append("the Deployment does not run as %s" % sa)
    if not any("leases" in r.get("resources", []) for r in by_kind["Role"]["rules"]):
        p.append("no permission for the leader election Lease")
    return p


def owned_crd():
    p = []
    owned = csv["spec"]["customresourcedefinitions"]["owned"]
    for path in glob.glob(os.path.join(REPO, "deploy/crd/*.yaml")):
        shipped = os.path.join(B, "manifests", os.path.basename(path))
        if not os.path.exists(shipped) or open(shipped).read() != open(path).read():
            p.append("%s not shipped unchanged" % os.path.basename(path))
        for crd in load(path):
            want = [(crd["metadata"]["name"], crd["spec"]["names"]["kind"], v["name"])
                    for v in crd["spec"]["versions"] if v.get("storage")]
            have = [(o["name"], o["kind"], o["version"]) for o in owned]
            if want[0] not in have:
                p.append("%s not in owned CRDs %s" % (want[0], have))
    return p


def services():
    p = []
    for svc in [d for d in op if d["kind"] == "Service"]:
        path = os.path.join(B, "manifests", "%s_v1_service.yaml" % svc["metadata"]["name"])
        if not os.path.exists(path):
            p.append("Service %s not in the bundle" % svc["metadata"]["name"])
        elif load(path)[0]["spec"] != svc["spec"]:
            p.append("Service %s differs from deploy/operator's" % svc["metadata"]["name"])
    return p


def annotations():
    a = load(os.path.join(B, "metadata/annotations.yaml"))[0]["annotations"]
    want = {"operators.operatorframework.io.bundle.mediatype.v1": "registry+v1",
            "operators.operatorframework.io.bundle.manifests.v1": "manifests/",
            "operators.operatorframework.io.bundle.metadata.v1": "metadata/",
            "operators.operatorframework.io.bundle.package.v1": "pmem-csi-operator"}
    p = ["%s=%r, want %r" % (k, a.get(k), v) for k, v in want.items() if a.get(k) != v]
    ch = a.get("operators.operatorframework.io.bundle.channels.v1", "")
    if not ch or a.get("operators.operatorframework.io.bundle.channel.default.v1") not in ch.split(","):
        p.append("channels %r / default channel %r" % (ch, a.get(
            "operators.operatorframework.io.bundle.channel.default.v1")))
    return p


check("deploy/olm/generate.py --check: the bundle matches deploy/operator and deploy/crd", gen_check)
check("the CSV: kind, name and version (meson.build), install modes, alm-examples", csv_basics)
check("install strategy deployment == deploy/operator's Deployment", deployment)
check("permissions and clusterPermissions == deploy/operator's Role and ClusterRole", permissions)
check("owned CRD listed and shipped unchanged", owned_crd)
check("deploy/operator's Services shipped in manifests/", services)
check("metadata/annotations.yaml: mediatype, manifests, metadata, package, channels", annotations)
