#!/usr/bin/python3
"""connections.py - latency of /healthz, /metrics and Probe while many clients hold connections.

usage: /usr/bin/python3 bench/connections.py [BUILDDIR] [--http-clients N] [--grpc-clients N]
                                             [--samples N] [--addresses N]

Starts BUILDDIR/pmem-csi-driver (default build/) in direct mode with an empty
state directory. No PMEM is needed: the driver then manages 0 bytes, which
changes nothing about connection handling, so this runs on the host.

1. HTTP: opens --http-clients TCP connections to the metrics port, spread over
   --addresses loopback source addresses (127.0.0.2, ...: one client address
   may hold at most a quarter of the connections). A third send nothing, a
   third a half-sent request, a third trickle a header byte every 2 s
   (slowloris). While they are held, GET /healthz, /metrics and
   /metrics/simple from 127.0.0.1 are timed, one after the other.
2. gRPC: opens --grpc-clients idle unix-socket connections (raw, no HTTP/2)
   plus a tenth as many real gRPC channels that made one Probe; while they
   are held, Probe and GetCapacity on a fresh channel are timed.

Prints per-endpoint median / p90 / max in ms, how many clients were still
connected at the end, and the host load.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def stubs():
    out = tempfile.mkdtemp(prefix="pmem-csi-stubs.")
    subprocess.run(["protoc", "-I", os.path.join(REPO, "proto"), "-I", "/usr/include",
                    "--python_out=" + out, "--grpc_python_out=" + out,
                    "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
                    os.path.join(REPO, "proto", "csi.proto")], check=True)
    sys.path.insert(0, out)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def stats(name, ts):
    ts = sorted(ts)
    p90 = ts[min(len(ts) - 1, int(len(ts) * 0.9))]
    print("  %-16s n=%-4d median %7.1f ms  p90 %7.1f ms  max %7.1f ms" % (
        name, len(ts), statistics.median(ts) * 1e3, p90 * 1e3, ts[-1] * 1e3), flush=True)
    return ts[-1]


def http_get(port, path, timeout=5):
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
            r.read()
            code = r.status
    except urllib.error.HTTPError as e:
        code = e.code
    except Exception as e:  # timeout, reset
        code = type(e).__name__
    return code, time.monotonic() - t0


def still_open(socks):
    """How many of the sockets the server has not closed (no EOF/reset pending)."""
    n = 0
    for s in socks:
        try:
            s.setblocking(False)
            if s.recv(1, socket.MSG_PEEK) == b"":
                continue  # EOF: closed by the server
        except BlockingIOError:
            pass
        except OSError:
            continue
        n += 1
    return n


def unix_connect(path, timeout=10):
    """connect(2) to a unix socket; a full listen backlog (EAGAIN) is retried, as a blocking client waits."""
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
        except OSError:
            s.close()
            raise


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("builddir", nargs="?", default=os.path.join(REPO, "build"))
    ap.add_argument("--http-clients", type=int, default=1000)
    ap.add_argument("--grpc-clients", type=int, default=1200)
    ap.add_argument("--addresses", type=int, default=8)
    ap.add_argument("--samples", type=int, default=50)
    a = ap.parse_args()

    stubs()
    import grpc
    import csi_pb2 as pb
    import csi_pb2_grpc as pbg

    work = tempfile.mkdtemp(prefix="pmem-csi-bench-conn.")
    sock = os.path.join(work, "csi.sock")
    port = free_port()
    logf = open(os.path.join(work, "driver.log"), "w")
    driver = os.path.join(a.builddir, "pmem-csi-driver")
    p = subprocess.Popen([driver, "-endpoint=unix://" + sock, "-deviceManager=direct",
                          "-statePath=" + os.path.join(work, "state"),
                          "-metricsListen=127.0.0.1:%d" % port, "-v=1"],
                         stdout=logf, stderr=logf, start_new_session=True)
    try:
        while http_get(port, "/healthz", 1)[0] != 200:
            if p.poll() is not None:
                sys.exit("driver exited: see %s/driver.log" % work)
            time.sleep(0.1)
        with open("/proc/%d/limits" % p.pid) as f:
            lim = [l for l in f if l.startswith("Max open files")][0].split()[3:5]
        print("# driver %s, open-file limit %s (soft) %s (hard), load %s" % (
            driver, lim[0], lim[1], " ".join(open("/proc/loadavg").read().split()[:3])), flush=True)

        # ---- HTTP ----
        held = []
        refused = 0
        for i in range(a.http_clients):
            s = socket.socket()
            try:
                s.bind(("127.0.0.%d" % (2 + i % a.addresses), 0))
                s.settimeout(5)
                s.connect(("127.0.0.1", port))
                kind = i % 3
                if kind == 1:
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                elif kind == 2:
                    s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
                held.append((kind, s))
            except OSError:
                refused += 1
                s.close()
        stop = threading.Event()

        def trickle():
            while not stop.wait(2):
                for kind, s in held:
                    if kind == 2:
                        try:
                            s.send(b"a")
                        except OSError:
                            pass
        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        time.sleep(1)
        print("# HTTP: %d clients connected (%d idle, %d half-sent, %d trickling), %d refused at connect"
              % (len(held), sum(1 for k, _ in held if k == 0), sum(1 for k, _ in held if k == 1),
                 sum(1 for k, _ in held if k == 2), refused), flush=True)
        res = {"/healthz": [], "/metrics": [], "/metrics/simple": []}
        bad = []
        t0 = time.monotonic()
        for _ in range(a.samples):
            for path in res:
                code, dt = http_get(port, path)
                res[path].append(dt)
                if code != 200:
                    bad.append((path, code))
        took = time.monotonic() - t0
        for path, ts in res.items():
            stats(path, ts)
        print("# HTTP: %d non-200 answers %s; after %.0f s of sampling, clients still connected: "
              "idle %d, half-sent %d, trickling %d" % (
                  len(bad), bad[:5], took, still_open([s for k, s in held if k == 0]),
                  still_open([s for k, s in held if k == 1]), still_open([s for k, s in held if k == 2])),
              flush=True)
        stop.set()
        for _, s in held:
            s.close()

        # ---- gRPC ----
        raw = []
        for i in range(a.grpc_clients):
            try:
                raw.append(unix_connect(sock))
            except OSError as e:
                print("# gRPC: connection %d failed: %s" % (i, e), flush=True)
                break
        chans = []
        for i in range(a.grpc_clients // 10):
            ch = grpc.insecure_channel("unix://" + sock)
            try:
                pbg.IdentityStub(ch).Probe(pb.ProbeRequest(), timeout=10)
            except grpc.RpcError:
                pass
            chans.append(ch)
        time.sleep(1)
        print("# gRPC: %d raw idle connections, %d idle gRPC channels" % (len(raw), len(chans)), flush=True)
        res = {"Probe": [], "GetCapacity": []}
        bad = []
        for _ in range(a.samples):
            ch = grpc.insecure_channel("unix://" + sock)
            for name, fn, req in (("Probe", pbg.IdentityStub(ch).Probe, pb.ProbeRequest()),
                                  ("GetCapacity", pbg.ControllerStub(ch).GetCapacity,
                                   pb.GetCapacityRequest())):
                t0 = time.monotonic()
                try:
                    fn(req, timeout=5)
                except grpc.RpcError as e:
                    bad.append((name, e.code().name))
                res[name].append(time.monotonic() - t0)
            ch.close()
        for name, ts in res.items():
            stats(name + " (new channel)", ts)
        code, _ = http_get(port, "/healthz")
        print("# gRPC: %d failed calls %s; /healthz while held: %s; raw clients still connected: %d"
              % (len(bad), bad[:5], code, still_open(raw)), flush=True)
        for s in raw:
            s.close()
        for ch in chans:
            ch.close()
        print("# load at the end: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    finally:
        t0 = time.monotonic()
        p.terminate()
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        print("# SIGTERM to exit: %.2f s (status %s); driver log: %s/driver.log"
              % (time.monotonic() - t0, p.returncode, work), flush=True)


if __name__ == "__main__":
    main()
