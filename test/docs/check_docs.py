#!/usr/bin/python3
"""check_docs.py - the documentation cannot drift silently from the code.

usage: test/docs/check_docs.py [BUILDDIR]     (default: build)

Checks, each an ok/FAIL line, then "N passed, N failed[, N skipped]":
- every flag the driver accepts (its -h output, plus the klog and deprecated flags
  of the flag table in src/driver/main.c) is documented in docs/usage.md, and every
  flag of usage.md's flag table is one the driver accepts;
- every metric the source registers is in docs/metrics.md's table, and every
  metric of that table is registered somewhere;
- every storage class / volume attribute key of src/volume/params.c is in
  docs/usage.md's parameter table, and every key of that table is one the driver
  knows;
- no document says a mode or feature the code has is "not available yet";
- every relative link between the docs points to an existing file.
Needs no cluster and no root; the flag check is skipped without a built driver.
"""
import glob
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "build"))
DRIVER = os.path.join(BUILD, "pmem-csi-driver")
results = [0, 0, 0]


def read(rel):
    with open(os.path.join(REPO, rel)) as f:
        return f.read()


def check(name, fn):
    try:
        problems = fn()
    except Exception as e:  # a broken check is a failure, not a pass
        problems = ["%s: %s" % (type(e).__name__, e)]
    if problems is None:
        results[2] += 1
        print("SKIP - %s" % name)
    elif problems:
        results[1] += 1
        print("FAIL - %s: %s" % (name, "; ".join(problems)))
    else:
        results[0] += 1
        print("ok - %s" % name)


def table_first_column(text, heading):
    """The `...` names in the first column of the first table after heading."""
    i = text.find(heading)
    if i < 0:
        raise AssertionError("no section %r" % heading)
    rows = []
    started = False
    for line in text[i:].splitlines()[1:]:
        if line.startswith("|"):
            started = True
            m = re.match(r"\|\s*`([^`]+)`", line)
            if m:
                rows.append(m.group(1))
        elif started:
            break
    return rows


def driver_flags():
    src = read("src/driver/main.c")
    table = src[src.index("const struct flag flags[] = {"):]
    table = table[:table.index("};")]
    return set(re.findall(r'\{\s*"([A-Za-z_-]+)",\s*FLAG_', table))


def check_flags():
    if not os.access(DRIVER, os.X_OK):
        return None
    p = subprocess.run([DRIVER, "-h"], capture_output=True, text=True, timeout=30)
    helped = set(re.findall(r"^  -(\S+)", p.stdout + p.stderr, re.M))
    accepted = driver_flags()
    usage = read("docs/usage.md")
    problems = ["-%s (in -h) not in usage.md" % f for f in sorted(helped | accepted)
                if not re.search(r"`-%s[`=]" % re.escape(f), usage)]
    if not helped:
        problems.append("pmem-csi-driver -h listed no flags")
    for f in table_first_column(usage, "## Modes and flags"):
        if f.lstrip("-") not in accepted:
            problems.append("usage.md's table has %s, which the driver does not accept" % f)
    return problems


METRIC_RE = re.compile(r'"((?:pmem_|csi_|process_|build_|controller_runtime_|scheduler_)[a-z_]+)"')


def source_metrics():
    names = set()
    for path in glob.glob(os.path.join(REPO, "src", "**", "*.c"), recursive=True):
        with open(path) as f:
            text = f.read()
        if "metrics_registry_add" not in text and "process_" not in text:
            continue
        for m in METRIC_RE.finditer(text):
            names.add(m.group(1))
    # label values and other strings that look like names are not metrics: keep the
    # ones registered (metrics_registry_add, the capacity and process tables).
    return {n for n in names if not n.endswith("_") and n not in ("csi_plugin_operations",)}


def check_metrics():
    doc = read("docs/metrics.md")
    documented = {n for n in re.findall(r"^\| `([a-z_]+)` \|", doc, re.M)}
    registered = source_metrics()
    problems = ["%s registered, not in metrics.md" % n for n in sorted(registered - documented)]
    problems += ["%s in metrics.md, not registered" % n for n in sorted(documented - registered)
                 if not n.startswith("csi_plugin_operations_seconds_")]
    return problems


def check_parameters():
    src = read("src/volume/params.c")
    keys = set(re.findall(r'#define KEY_[A-Z_]+ "([^"]+)"', src))
    # internal keys: kept in the state file or set by Kubernetes, not parameters to document
    internal = {"name", "deviceMode", "csi.storage.k8s.io/ephemeral",
                "storage.kubernetes.io/csiProvisionerIdentity", "fsType"}
    usage = read("docs/usage.md")
    table = table_first_column(usage, "## Storage class parameters")
    documented = set()
    for k in table:
        documented.add(k)
    documented |= set(re.findall(r"also `([A-Za-z.]+)`", usage))
    problems = ["parameter %s not in usage.md's table" % k for k in sorted(keys - internal - documented)]
    known = keys | {"csi.storage.k8s.io/fstype"}
    problems += ["usage.md documents %s, which the driver does not know" % k for k in sorted(documented - known)]
    return problems


def check_not_available():
    problems = []
    for path in glob.glob(os.path.join(REPO, "docs", "*.md")) + [os.path.join(REPO, "README.md")] + \
            glob.glob(os.path.join(REPO, "deploy", "examples", "*.yaml")):
        with open(path) as f:
            for n, line in enumerate(f, 1):
                # only for what the code has (the operator, for one, really is not there yet)
                if re.search(r"not (available|implemented) (yet|in pmem-csi)", line, re.I) and \
                        re.search(r"webhooks|force-convert|convert-raw|rescheduler|[Kk]ata", line):
                    problems.append("%s:%d: %s" % (os.path.relpath(path, REPO), n, line.strip()[:100]))
    return problems


def check_links():
    problems = []
    for path in glob.glob(os.path.join(REPO, "docs", "*.md")) + [os.path.join(REPO, "README.md")]:
        with open(path) as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", text):
            if not os.path.exists(os.path.join(os.path.dirname(path), target)):
                problems.append("%s links to missing %s" % (os.path.relpath(path, REPO), target))
    return problems


check("every flag of the driver is in docs/usage.md, every documented flag exists", check_flags)
check("every registered metric is in docs/metrics.md and the reverse", check_metrics)
check("every storage class parameter is in docs/usage.md and the reverse", check_parameters)
check("no document calls an implemented feature \"not available yet\"", check_not_available)
check("relative links between the documents resolve", check_links)
print("%d passed, %d failed%s" % (results[0], results[1], ", %d skipped" % results[2] if results[2] else ""))
sys.exit(1 if results[1] else 0)
