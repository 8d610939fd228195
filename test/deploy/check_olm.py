#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""check_olm.py REPO - structure of the OLM bundle in deploy/olm/bundle (run by
test/deploy/check-manifests.sh): generated from the current sources, the CSV's
install strategy is deploy/operator's Deployment, Role and ClusterRole, the CRD is
listed as owned and shipped unchanged, the bundle annotations are present; and the
CSV fields OLM's validation (operator-framework/api) requires: the four install modes
once each, semver version and minKubeVersion (never older than the driver's oldest
supported Kubernetes), capabilities and categories from OLM's lists, alm-examples of
owned kinds, relatedImages that cover every image the operator runs or deploys.
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


SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
CAPABILITIES = ["Basic Install", "Seamless Upgrades", "Full Lifecycle", "Deep Insights", "Auto Pilot"]
CATEGORIES = {"AI/Machine Learning", "Application Runtime", "Big Data", "Cloud Provider", "Database",
              "Developer Tools", "Drivers and plugins", "Integration & Delivery", "Logging & Tracing",
              "Modernization & Migration", "Monitoring", "Networking", "OpenShift Optional", "Security",
              "Storage", "Streaming & Messaging"}


def required_fields():
    """What OLM's CSV validation refuses a bundle for (and OperatorHub's metadata rules)."""
    s, a = csv["spec"], csv["metadata"].get("annotations", {})
    p = []
    types = [m.get("type") for m in s.get("installModes", [])]
    if sorted(types) != sorted(["OwnNamespace", "SingleNamespace", "MultiNamespace", "AllNamespaces"]):
        p.append("installModes must list each of the four types once: %s" % types)
    if any(not isinstance(m.get("supported"), bool) for m in s.get("installModes", [])):
        p.append("installModes: supported is not a boolean")
    for field in ("version", "minKubeVersion"):
        if not SEMVER.match(str(s.get(field, ""))):
            p.append("spec.%s %r is not a semantic version" % (field, s.get(field)))
    for field in ("displayName", "description"):
        if not s.get(field):
            p.append("spec.%s is empty" % field)
    if not (s.get("provider") or {}).get("name"):
        p.append("spec.provider.name is empty")
    if s.get("maturity") not in ("alpha", "beta", "stable", "deprecated", "planning", "pre-alpha", "mature"):
        p.append("spec.maturity %r" % s.get("maturity"))
    if a.get("capabilities") not in CAPABILITIES:
        p.append("capabilities %r is not one of %s" % (a.get("capabilities"), CAPABILITIES))
    bad = [c.strip() for c in a.get("categories", "").split(",") if c.strip() not in CATEGORIES]
    if bad:
        p.append("categories not in OLM's list: %s" % bad)
    owned = {(o["name"].split(".", 1)[1], o["version"], o["kind"]) for o in s["customresourcedefinitions"]["owned"]}
    for e in json.loads(a.get("alm-examples", "[]")):
        group, _, ver = e["apiVersion"].partition("/")
        if (group, ver, e["kind"]) not in owned:
            p.append("alm-examples: %s %s is not an owned CRD" % (e["apiVersion"], e["kind"]))
    # The driver's oldest Kubernetes (src/operator/sidecars.h): OLM must not install below it.
    with open(os.path.join(REPO, "src/operator/sidecars.h")) as f:
        oldest = int(re.search(r"#define OPERATOR_KUBE_MIN_MINOR (\d+)", f.read()).group(1))
    m = SEMVER.match(str(s.get("minKubeVersion", "")))
    if m and (int(m.group(1)), int(m.group(2))) < (1, oldest):
        p.append("minKubeVersion %s is older than 1.%d, the oldest the driver runs on" % (s["minKubeVersion"], oldest))
    return p


def related_images():
    """relatedImages: every image the operator runs (its Deployment) or may deploy
    (deploy/generated/pmem-csi-lvm.yaml, and each sidecar of the table by Kubernetes version
    in src/operator/sidecars.c), each once, with a unique DNS-label name."""
    rel = csv["spec"].get("relatedImages", [])
    have = [r.get("image") for r in rel]
    names = [r.get("name", "") for r in rel]
    p = []
    want = set()
    for path in (os.path.join(REPO, "deploy/operator/pmem-csi-operator.yaml"),
                 os.path.join(REPO, "deploy/generated/pmem-csi-lvm.yaml")):
        for d in load(path):
            pod = d.get("spec", {}).get("template", {}).get("spec", {})
            want |= {c["image"] for c in pod.get("initContainers", []) + pod.get("containers", [])}
    with open(os.path.join(REPO, "src/operator/sidecars.c")) as f:
        text = f.read()
    reg = re.search(r'#define REG "([^"]+)"', text).group(1)
    table = {reg + m for m in re.findall(r'(?<!define )\bREG "([^"]+)"', text)}
    if len(table) < 2:
        p.append("no sidecar images found in src/operator/sidecars.c")
    want |= table
    missing = sorted(want - set(have))
    if missing:
        p.append("not in relatedImages: %s" % missing)
    if len(set(have)) != len(have):
        p.append("an image listed twice")
    if len(set(names)) != len(names) or not all(re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", n) for n in names):
        p.append("relatedImages names not unique DNS labels: %s" % names)
    return p


check("deploy/olm/generate.py --check: the bundle matches deploy/operator and deploy/crd", gen_check)
check("the CSV: kind, name and version (meson.build), install modes, alm-examples", csv_basics)
check("install strategy deployment == deploy/operator's Deployment", deployment)
check("permissions and clusterPermissions == deploy/operator's Role and ClusterRole", permissions)
check("owned CRD listed and shipped unchanged", owned_crd)
check("deploy/operator's Services shipped in manifests/", services)
check("metadata/annotations.yaml: mediatype, manifests, metadata, package, channels", annotations)
check("CSV fields OLM validates: install modes, semver version/minKubeVersion (>= the driver's oldest "
      "Kubernetes), capabilities, categories, alm-examples of owned kinds", required_fields)
check("relatedImages: the operator's, deploy/generated's and every sidecar of the version table", related_images)
