#!/usr/bin/python3
"""attack-http.py - slow, huge and numerous clients against the driver's HTTP servers.

usage: attack-http.py DRIVER

Starts DRIVER in -mode=webhooks on this host (its API server address leads
nowhere: /status and /metrics need none) with the metrics endpoint, the plain
HTTP and the HTTPS scheduler/webhook servers on 127.0.0.1, and attacks them
from 127.0.0.1: slowloris headers and bodies, a huge Content-Length, a chunked
body without end, more connections than the limits, TLS handshakes that stall.
A normal client (a scrape of /metrics, GET /status over HTTP and HTTPS)
connects from 127.0.0.2, a different client address as a pod or the API
server would be, and must be served during and after each attack. Prints what
each attack cost the server (VmRSS, threads, fds, CPU seconds).

Needs openssl (a throw-away certificate). Ends with "N passed, N failed";
exit status 1 when a check failed.
"""
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

REQUEST_DEADLINE_S = 10   # every server: a complete request within this long (docs/metrics.md, docs/install.md)
WEBHOOK_CONNS_MAX = 64    # webhooks server: connections (threads), half of them per client address
WEBHOOK_PER_IP = 32
RSS_GROWTH_MAX_KB = 32 * 1024

passed = failed = 0


def ok(msg):
    global passed
    passed += 1
    print("ok - " + msg, flush=True)


def fail(msg):
    global failed
    failed += 1
    print("FAIL - " + msg, flush=True)


def check(cond, msg):
    (ok if cond else fail)(msg)


class Driver:
    def __init__(self, binary, work):
        self.work = work
        kc = os.path.join(work, "kubeconfig")
        with open(kc, "w") as f:
            f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:9'}\n"
                    "contexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n"
                    "users:\n- name: u\n  user: {token: x}\n")
        cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=localhost", "-days", "1"],
                       check=True, capture_output=True)
        self.log = os.path.join(work, "driver.log")
        self.logf = open(self.log, "wb")
        self.p = subprocess.Popen([binary, "-mode=webhooks", "-kubeconfig=" + kc, "-metricsListen=127.0.0.1:0",
                                   "-insecureSchedulerListen=127.0.0.1:0", "-schedulerListen=127.0.0.1:0",
                                   "-certFile=" + cert, "-keyFile=" + key, "-caFile=", "-v=2"],
                                  stdout=self.logf, stderr=subprocess.STDOUT)
        self.metrics = self.plain = self.tls = None
        for _ in range(100):
            text = self.log_text()
            m = re.search(r"Prometheus endpoint started on \S+ \(port (\d+)\)", text)
            p = re.search(r"plain HTTP on \S+ \(port (\d+)\)", text)
            t = re.search(r"HTTPS on \S+ \(port (\d+)\)", text)
            if m and p and t:
                self.metrics, self.plain, self.tls = int(m.group(1)), int(p.group(1)), int(t.group(1))
                break
            time.sleep(0.1)

    def stats(self):
        st = {}
        with open("/proc/%d/status" % self.p.pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "Threads"):
                    st[k] = int(v.split()[0])
        st["fds"] = len(os.listdir("/proc/%d/fd" % self.p.pid))
        with open("/proc/%d/stat" % self.p.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        st["cpu"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return st

    def log_text(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        self.p.terminate()
        try:
            rc = self.p.wait(15)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        self.logf.close()
        return rc


def connect(port, src="127.0.0.1", timeout=5):
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def get(port, path, tls=False, timeout=5):
    """The normal client, from 127.0.0.2: seconds for a 200 answer, or None."""
    t0 = time.monotonic()
    try:
        s = connect(port, "127.0.0.2", timeout)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s)
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
    except OSError:
        return None
    return time.monotonic() - t0 if data.startswith(b"HTTP/1.1 200") else None


def closed_by_server(s, timeout):
    """True when the server closes s within timeout (reads and drops what it sends)."""
    end = time.monotonic() + timeout
    try:
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            s.settimeout(left)
            if not s.recv(65536):
                return True
    except socket.timeout:
        return False
    except OSError:
        return True


class Attack:
    def __init__(self, drv, name):
        self.drv, self.name = drv, name
        self.before = drv.stats()
        self.peak = dict(self.before)

    def sample(self):
        st = self.drv.stats()
        for k in ("VmRSS", "Threads", "fds"):
            self.peak[k] = max(self.peak[k], st[k])
        return st

    def served(self, when):
        self.sample()
        for what, port, path, tls in (("scrape", self.drv.metrics, "/metrics", False),
                                      ("webhook /status", self.drv.plain, "/status", False),
                                      ("webhook /status over TLS", self.drv.tls, "/status", True)):
            t = get(port, path, tls)
            check(t is not None, "%s: %s served %s it (%s)" % (self.name, what, when,
                                                              "%.3f s" % t if t is not None else "not served"))

    def done(self, threads_bound=None):
        self.served("after")
        after = self.sample()
        rss = self.peak["VmRSS"] - self.before["VmRSS"]
        print("# %s: cost VmRSS +%d kB (peak %d kB), threads %d->%d (peak %d), fds %d->%d (peak %d), CPU %.2f s" %
              (self.name, rss, self.peak["VmRSS"], self.before["Threads"], after["Threads"], self.peak["Threads"],
               self.before["fds"], after["fds"], self.peak["fds"], after["cpu"] - self.before["cpu"]), flush=True)
        check(rss <= RSS_GROWTH_MAX_KB, "%s: VmRSS grew by %d kB (bound %d kB)" % (self.name, rss, RSS_GROWTH_MAX_KB))
        if threads_bound is not None:
            check(self.peak["Threads"] <= threads_bound, "%s: at most %d threads (peak %d)" %
                  (self.name, threads_bound, self.peak["Threads"]))


def main():
    global RSS_GROWTH_MAX_KB
    binary = sys.argv[1]
    with open(binary, "rb") as f:
        if b"AddressSanitizer" in f.read():
            # ASan keeps freed memory in quarantine: what an attack costs shows up several times over.
            RSS_GROWTH_MAX_KB *= 4
    if not shutil.which("openssl"):
        if os.environ.get("CI") == "true":
            fail("openssl is missing (needed for a test certificate)")
        else:
            print("SKIP - openssl is missing (needed for a test certificate)")
        print("%d passed, %d failed" % (passed, failed))
        sys.exit(1 if failed else 0)
    work = tempfile.mkdtemp(prefix="attack-http.")
    drv = Driver(binary, work)
    try:
        check(drv.tls is not None, "the driver serves metrics, HTTP and HTTPS (ports %s, %s, %s)" %
              (drv.metrics, drv.plain, drv.tls))
        if drv.tls is not None:
            run(drv)
    finally:
        rc = drv.stop()
        log = drv.log_text()
        check(rc == 0 and "Sanitizer" not in log and "runtime error:" not in log,
              "the server exits with 0 on SIGTERM, no sanitizer report (rc %d)" % rc)
        if failed:
            print("# driver log (last 20 lines):\n# " + "\n# ".join(log.splitlines()[-20:]))
        if os.environ.get("KEEP"):
            print("# kept " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


def run(drv):
    base = drv.stats()
    print("# idle: VmRSS %d kB, %d threads, %d fds" % (base["VmRSS"], base["Threads"], base["fds"]), flush=True)
    a = Attack(drv, "before any attack")
    a.served("before")

    # ---- slow clients: all at once, each trickling a byte a second ----
    a = Attack(drv, "slowloris (headers, bodies, chunks, TLS handshakes; %d connections)" % (50 + 3 * 20 + 20))
    slow = []   # (what, socket, bytes to trickle)
    for i in range(50):
        slow.append(("metrics headers", connect(drv.metrics), b"GET /metrics HTTP/1.1\r\nX-a: " + b"a" * 100))
    for i in range(20):
        slow.append(("webhook headers", connect(drv.plain), b"POST /filter HTTP/1.1\r\nX-a: " + b"a" * 100))
    for i in range(20):
        s = connect(drv.plain)
        s.sendall(b"POST /filter HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
        slow.append(("webhook body", s, b"a" * 1000))
    for i in range(20):
        s = connect(drv.plain)
        s.sendall(b"POST /filter HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        slow.append(("webhook chunks", s, b"1\r\na\r\n" * 200))
    hello = bytes.fromhex("16030100c4010000c00303") + os.urandom(32)
    for i in range(10):
        slow.append(("TLS handshake", connect(drv.tls), hello))
    for i in range(10):
        slow.append(("TLS silent", connect(drv.tls), b""))
    t0 = time.monotonic()
    refused_early = 0
    alive = list(slow)
    served_during = False
    while alive and time.monotonic() - t0 < REQUEST_DEADLINE_S + 4:
        nxt = []
        for what, s, data in alive:
            if not data:
                nxt.append((what, s, data))
                continue
            try:
                s.send(data[:1])
                nxt.append((what, s, data[1:]))
            except OSError:
                refused_early += 1
        alive = nxt
        a.sample()
        if not served_during and time.monotonic() - t0 > 2:
            a.served("during")
            served_during = True
        time.sleep(1)
    elapsed = time.monotonic() - t0
    for kind in ("metrics headers", "webhook headers", "webhook body", "webhook chunks", "TLS handshake", "TLS silent"):
        socks = [s for what, s, _ in slow if what == kind]
        closed = sum(1 for s in socks if closed_by_server(s, 0.5))
        check(closed == len(socks), "slowloris %s: %d of %d connections closed by the server within %.0f s" %
              (kind, closed, len(socks), elapsed + 0.5))
    for _, s, _ in slow:
        s.close()
    a.done(threads_bound=base["Threads"] + WEBHOOK_CONNS_MAX * 2 + 4)

    # ---- huge bodies ----
    a = Attack(drv, "huge Content-Length")
    s = connect(drv.plain)
    s.sendall(b"POST /filter HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\n")
    data = s.recv(4096)
    check(data.startswith(b"HTTP/1.1 413"), "webhook: Content-Length 99999999999999 refused: %r" % data[:20])
    s.close()
    s = connect(drv.metrics)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\nabc")
    check(closed_by_server(s, 5), "metrics: a GET with a body of 99999999999999 bytes: connection closed")
    s.close()
    a.done()

    a = Attack(drv, "chunked body without end (fast, 16 MiB)")
    s = connect(drv.plain)
    s.sendall(b"POST /filter HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"4000\r\n" + b"a" * 0x4000 + b"\r\n"
    sent = 0
    try:
        for i in range(1024):
            s.sendall(chunk)
            sent += 0x4000
    except OSError:
        pass
    check(sent < 16 * 1024 * 1024 or closed_by_server(s, 5),
          "webhook: a chunked body past the 4 MiB limit: connection closed (after %d KiB sent)" % (sent // 1024))
    s.close()
    a.done()

    # ---- numbers ----
    a = Attack(drv, "200 connections to each server from one address")
    conns = {"metrics": [], "webhook": [], "TLS": []}
    for name, port in (("metrics", drv.metrics), ("webhook", drv.plain), ("TLS", drv.tls)):
        for i in range(200):
            try:
                conns[name].append(connect(port))
            except OSError:
                break
    time.sleep(1)
    a.served("during")
    for name in ("webhook", "TLS"):
        closed = sum(1 for s in conns[name] if closed_by_server(s, 0.05))
        check(closed >= 200 - WEBHOOK_PER_IP, "%s: connections beyond %d per address closed at once (%d of 200)" %
              (name, WEBHOOK_PER_IP, closed))
    for v in conns.values():
        for s in v:
            s.close()
    a.done(threads_bound=base["Threads"] + WEBHOOK_CONNS_MAX * 2 + 4)


if __name__ == "__main__":
    main()
