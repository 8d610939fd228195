#!/usr/bin/python3
"""check_monitoring.py - checks of deploy/monitoring/ (the Grafana dashboard and the
Prometheus alert rules) that need no Prometheus or Grafana:

  - the dashboard is valid JSON with the structure Grafana needs (uid, title, panels
    with unique ids, grid positions inside 24 columns and not overlapping, targets
    with an expression and unique refIds, variables that exist for every $name used);
  - the alert rules are valid YAML (groups, unique alert names, expr, for, a
    severity, summary and description);
  - every metric name in every expression is one the driver exports (the table of
    docs/metrics.md, which test/docs/check_docs.py keeps in step with the source;
    histograms with _bucket/_sum/_count) or one of the few external ones listed
    below (kubelet's volume stats, kube-state-metrics' PVC and storage class info,
    Prometheus' own `up`);
  - the rules cover capacity, operation errors, latencies and volume health;
  - `promtool check rules` accepts the rules (when promtool is installed: Debian's
    `prometheus` package; without it the check is skipped, or failed when CI=true).

Prints ok/FAIL/SKIP lines and "N passed, N failed[, N skipped]".
"""
import json
import os
import re
import shutil
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MON = os.path.join(REPO, "deploy", "monitoring")
DASHBOARD = os.path.join(MON, "pmem-csi-dashboard.json")
ALERTS = os.path.join(MON, "pmem-csi-alerts.yaml")

# Metrics of other components that the dashboard and the rules may use.
EXTERNAL = {
    # kubelet, from NodeGetVolumeStats
    "kubelet_volume_stats_capacity_bytes", "kubelet_volume_stats_available_bytes",
    "kubelet_volume_stats_used_bytes", "kubelet_volume_stats_inodes",
    "kubelet_volume_stats_inodes_free", "kubelet_volume_stats_inodes_used",
    "kubelet_volume_stats_health_status_abnormal",
    # kube-state-metrics: which PVCs belong to a storage class of this driver
    "kube_persistentvolumeclaim_info", "kube_storageclass_info",
    # Prometheus, per scrape target
    "up",
}
FUNCTIONS = {"abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil", "changes",
             "clamp", "clamp_max", "clamp_min", "count", "count_over_time", "delta", "deriv", "exp", "floor",
             "group", "histogram_quantile", "idelta", "increase", "irate", "label_replace", "label_join",
             "max", "max_over_time", "min", "min_over_time", "predict_linear", "quantile", "rate", "resets",
             "round", "scalar", "sort", "sort_desc", "sqrt", "stddev", "sum", "sum_over_time", "time",
             "timestamp", "topk", "vector", "label_values", "last_over_time"}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
            "offset", "inf", "nan"}

results = [0, 0, 0]


def result(kind, name, why=""):
    idx = {"ok": 0, "FAIL": 1, "SKIP": 2}[kind]
    results[idx] += 1
    print("%s - %s%s" % (kind, name, (" (%s)" % why) if why else ""), flush=True)


def check(name, fn):
    try:
        problems = fn()
    except Exception as e:  # a crash of a check is its failure
        problems = ["%s: %s" % (type(e).__name__, e)]
    if problems:
        result("FAIL", name)
        for p in problems[:30]:
            print("    " + p)
    else:
        result("ok", name)


def exported_metrics():
    """Names in docs/metrics.md's table; histograms also with their series suffixes."""
    names = set()
    with open(os.path.join(REPO, "docs", "metrics.md")) as f:
        for line in f:
            m = re.match(r"\|\s*`([a-z_]+)`\s*\|\s*(\w+)\s*\|", line)
            if not m:
                continue
            names.add(m.group(1))
            if m.group(2) == "histogram":
                names.update(m.group(1) + s for s in ("_bucket", "_sum", "_count"))
    return names


def metric_names(expr):
    """The metric names an expression selects (a small PromQL tokenizer)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)   # strings
    e = re.sub(r"\{[^}]*\}", " ", e)                  # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                 # ranges
    # label lists of by/without/on/ignoring/group_left/group_right
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call and word in FUNCTIONS:
            continue
        if word.lower() in KEYWORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def dashboard_exprs(d):
    out = []
    for p in d.get("panels", []):
        for t in p.get("targets", []):
            out.append(("panel %r" % p.get("title"), t.get("expr", "")))
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q or "")
            out.append(("variable %s" % v.get("name"), m.group(1) if m else q or ""))
    return out


def alert_exprs(doc):
    return [("alert %s" % r.get("alert", r.get("record")), r.get("expr", ""))
            for g in doc.get("groups", []) for r in g.get("rules", [])]


def load_dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def load_alerts():
    with open(ALERTS) as f:
        return yaml.safe_load(f)


def check_dashboard():
    d = load_dashboard()
    p = []
    for k in ("uid", "title", "schemaVersion", "panels", "templating"):
        if k not in d:
            p.append("dashboard: no %s" % k)
    ids, boxes = set(), []
    variables = {v.get("name") for v in d.get("templating", {}).get("list", [])}
    builtin = {"__rate_interval", "__interval", "__range"}
    for panel in d.get("panels", []):
        t = panel.get("title") or "?"
        if panel.get("id") in ids:
            p.append("panel %r: id %s used twice" % (t, panel.get("id")))
        ids.add(panel.get("id"))
        g = panel.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in "xywh") or g["x"] < 0 or g["x"] + g["w"] > 24:
            p.append("panel %r: gridPos %s is not inside 24 columns" % (t, g))
            continue
        for (bx, by, bw, bh, bt) in boxes:
            if g["x"] < bx + bw and bx < g["x"] + g["w"] and g["y"] < by + bh and by < g["y"] + g["h"]:
                p.append("panel %r overlaps panel %r" % (t, bt))
        boxes.append((g["x"], g["y"], g["w"], g["h"], t))
        if panel.get("type") == "row":
            continue
        if not panel.get("title"):
            p.append("panel %s: no title" % panel.get("id"))
        targets = panel.get("targets") or []
        if not targets:
            p.append("panel %r: no targets" % t)
        refs = [x.get("refId") for x in targets]
        if len(set(refs)) != len(refs) or None in refs:
            p.append("panel %r: refIds %s" % (t, refs))
        for x in targets:
            if not x.get("expr", "").strip():
                p.append("panel %r: a target without expr" % t)
    for where, text in [(w, e) for w, e in dashboard_exprs(d)] + [("datasource", json.dumps(d))]:
        for v in re.findall(r"\$\{?(\w+)", text):
            if v not in variables and v not in builtin:
                p.append("%s: $%s is not a variable of the dashboard" % (where, v))
    return sorted(set(p))


def check_alerts():
    doc = load_alerts()
    p, names = [], set()
    groups = doc.get("groups") or []
    if not groups:
        p.append("no groups")
    if len({g.get("name") for g in groups}) != len(groups):
        p.append("group names are not unique")
    for g in groups:
        for r in g.get("rules") or []:
            n = r.get("alert")
            if not n or not re.fullmatch(r"[A-Z][A-Za-z0-9]+", n):
                p.append("rule %r: alert name is not CamelCase" % n)
            if n in names:
                p.append("alert %s defined twice" % n)
            names.add(n)
            if not str(r.get("expr", "")).strip():
                p.append("alert %s: no expr" % n)
            if not re.fullmatch(r"\d+[smh]", str(r.get("for", ""))):
                p.append("alert %s: for %r is not a duration" % (n, r.get("for")))
            if (r.get("labels") or {}).get("severity") not in ("critical", "warning", "info"):
                p.append("alert %s: severity must be critical, warning or info" % n)
            a = r.get("annotations") or {}
            for k in ("summary", "description"):
                if not a.get(k):
                    p.append("alert %s: no %s annotation" % (n, k))
    return p


def check_names():
    known = exported_metrics() | EXTERNAL
    if len(known) <= len(EXTERNAL):
        return ["no metrics found in docs/metrics.md's table"]
    p = []
    for where, expr in dashboard_exprs(load_dashboard()) + alert_exprs(load_alerts()):
        for n in sorted(metric_names(expr)):
            if n not in known:
                p.append("%s: %s is neither exported by the driver (docs/metrics.md) nor listed as external" % (where, n))
    return p


def check_coverage():
    exprs = " ".join(e for _, e in alert_exprs(load_alerts()))
    want = {"PMEM capacity": "pmem_amount_available", "operation errors": "grpc_status_code",
            "latencies": "csi_plugin_operations_seconds_bucket",
            "volume health": "kubelet_volume_stats_health_status_abnormal",
            "volume space": "kubelet_volume_stats_available_bytes"}
    return ["no alert on %s (%s)" % (k, v) for k, v in want.items() if v not in exprs]


def check_tokenizer():
    """The tokenizer itself: it must find an unknown name and ignore what is not a metric."""
    got = metric_names('sum by (le, node) (rate(foo_bucket{a="b", c=~"x|y"}[5m])) > 64 * 1024 '
                       'and on (namespace) bar_info * on (sc) group_left (prov) up{job="j"} offset 5m')
    want = {"foo_bucket", "bar_info", "up"}
    return [] if got == want else ["tokenizer: %s, want %s" % (sorted(got), sorted(want))]


def check_promtool():
    tool = shutil.which("promtool")
    if not tool:
        why = "promtool is not installed (Debian package prometheus)"
        if os.environ.get("CI") == "true":
            result("FAIL", "promtool check rules deploy/monitoring/pmem-csi-alerts.yaml", why)
        else:
            result("SKIP", "promtool check rules deploy/monitoring/pmem-csi-alerts.yaml", why)
        return
    out = subprocess.run([tool, "check", "rules", ALERTS], capture_output=True, text=True)
    if out.returncode == 0:
        result("ok", "promtool check rules deploy/monitoring/pmem-csi-alerts.yaml")
    else:
        result("FAIL", "promtool check rules deploy/monitoring/pmem-csi-alerts.yaml")
        print("\n".join("    " + l for l in (out.stdout + out.stderr).splitlines()[-20:]))


check("monitoring: the metric-name tokenizer", check_tokenizer)
check("monitoring: deploy/monitoring/pmem-csi-dashboard.json is a valid Grafana dashboard", check_dashboard)
check("monitoring: deploy/monitoring/pmem-csi-alerts.yaml is valid alert rules", check_alerts)
check("monitoring: every expression names only exported (or listed external) metrics", check_names)
check("monitoring: the alerts cover capacity, errors, latencies and volume health", check_coverage)
check_promtool()
line = "%d passed, %d failed" % (results[0], results[1])
if results[2]:
    line += ", %d skipped" % results[2]
print(line)
sys.exit(1 if results[1] else 0)
