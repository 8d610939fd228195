#!/usr/bin/python3
"""rpc-summary.py FILE - Markdown table of the "RPC {json}" lines of bench/rpc.sh or rpc-host.sh:
medians over the rounds of p50, p99 and calls/s per driver, and the ratios ours/upstream."""
import json, statistics, sys
rows = [json.loads(l[4:]) for l in open(sys.argv[1]) if l.startswith("RPC {")]
runs = [r for r in rows if r["method"] != "CreateVolume"]
med = lambda xs: statistics.median(xs) if xs else float("nan")
def key(r):
    return (r["method"] + (" + %d slow threads" % r["slow_threads"] if r["slow_threads"] else ""), r["clients"])
keys = []
for r in runs:
    if key(r) not in keys:
        keys.append(key(r))
def agg(k, drv):
    rs = [r for r in runs if key(r) == k and r["driver"] == drv]
    return (med([r["p50_ms"] for r in rs]), med([r["p99_ms"] for r in rs]),
            med([r["calls_per_s"] for r in rs]), sum(r["calls"] for r in rs), len(rs),
            max([r["list_entries"] for r in rs] or [0]), sum(r["slow_calls"] for r in rs),
            sum(r["errors"] + r["slow_errors"] for r in rs))
print("\n| method | clients | ours p50 ms | ours p99 ms | ours calls/s | upstream p50 ms | upstream p99 ms | upstream calls/s | p99 ratio | calls/s ratio |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for k in keys:
    o, u = agg(k, "ours"), agg(k, "upstream")
    ratio = lambda a, b: "%.3f" % (a / b) if b == b and b else "-"
    cell = lambda x, f: f % x if x == x else "-"
    print("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        k[0], k[1], cell(o[0], "%.3f"), cell(o[1], "%.3f"), cell(o[2], "%.0f"),
        cell(u[0], "%.3f"), cell(u[1], "%.3f"), cell(u[2], "%.1f"), ratio(o[1], u[1]), ratio(o[2], u[2])))
print("\nmedians over %s rounds; p99 ratio = ours/upstream (lower is better), calls/s ratio = ours/upstream (higher is better)"
      % max([r.get("round", 0) for r in runs] or [0]))
for k in keys:
    for d in ("ours", "upstream"):
        a = agg(k, d)
        if a[4]:
            extra = (", ListVolumes entries %d" % a[5]) if k[0] == "ListVolumes" else ""
            extra += (", slow calls completed %d" % a[6]) if a[6] else ""
            print("- %s, %d clients, %s: %d calls in %d runs, %d errors%s" % (k[0], k[1], d, a[3], a[4], a[7], extra))
for r in rows:
    if r["method"] == "CreateVolume":
        print("- setup: %s created %d volumes of %d MiB in %.1f s (%d clients, %d errors)" % (
            r["driver"], r["calls"], r["size_bytes"] >> 20, r["wall_s"], r["clients"], r["errors"]))
