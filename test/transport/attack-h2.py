#!/usr/bin/python3
"""attack-h2.py - hostile and broken HTTP/2 clients against the driver's gRPC server.

usage: attack-h2.py DRIVER

Starts DRIVER on this host (direct mode, no PMEM: Identity needs none) on a unix
socket and attacks it with hand-framed HTTP/2 (no h2 library: the point is to send
what a library would refuse to): rapid reset, CONTINUATION and PING/SETTINGS
floods, huge and indexed header lists, zero windows, a client that never reads,
too many streams and connections, silent and trickling connections, bad gRPC
framing, deadlines, and bytes that are not HTTP/2. For each attack it checks
that the server refused it in a bounded way (the connection or stream is
closed or answered, a refusal is logged) and that a normal Probe on a fresh
connection is still answered, and it prints what the attack cost the server
(VmRSS, threads, open fds, CPU seconds).

The slow attacks (stalled readers, never-ending requests) are started first
and checked last, so the run takes about the server's request and stall
timeouts (10 s) plus a few seconds. (Silent connections before the preface
are covered by the connection limit; their 20 s handshake timeout is not
waited for here.)

Ends with "N passed, N failed"; exit status 1 when a check failed.
"""
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# What the server promises (docs/performance.md, "Hostile clients").
CONN_MAX = 256              # connections, over all clients
HANDSHAKE_TIMEOUT_S = 20    # to send the preface
REQUEST_TIMEOUT_S = 10      # from HEADERS to the whole request message
STALL_TIMEOUT_S = 10        # a response (or the connection's output) that makes no progress
RSS_GROWTH_MAX_KB = 24 * 1024
FDS_SLACK = 16

passed = failed = 0


def ok(msg):
    global passed
    passed += 1
    print("ok - " + msg, flush=True)


def fail(msg):
    global failed
    failed += 1
    print("FAIL - " + msg, flush=True)


def check(cond, msg, why=""):
    if cond:
        ok(msg)
    else:
        fail(msg + (": " + why if why else ""))


# ---- HTTP/2 framing and HPACK literals (no Huffman, no dynamic table unless asked) ----

def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def hpack_int(n, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if n < limit:
        return bytes([first | n])
    out = [first | limit]
    n -= limit
    while n >= 128:
        out.append(n % 128 + 128)
        n //= 128
    out.append(n)
    return bytes(out)


def literal(name, value, index=False):
    """A literal header field with a new name: without indexing, or incremental indexing."""
    if isinstance(name, str):
        name = name.encode()
    if isinstance(value, str):
        value = value.encode()
    return (b"\x40" if index else b"\x00") + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def request_block(path="/csi.v1.Identity/Probe", extra=()):
    b = literal(":method", "POST") + literal(":scheme", "http") + literal(":path", path)
    b += literal(":authority", "localhost") + literal("content-type", "application/grpc")
    b += literal("te", "trailers")
    for n, v in extra:
        b += literal(n, v)
    return b


def grpc_msg(payload=b"", flag=0, length=None):
    return bytes([flag]) + struct.pack(">I", len(payload) if length is None else length) + payload


class Conn:
    def __init__(self, path, preface=True, settings=b"", timeout=5):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""
        self.closed = False
        if preface:
            self.s.sendall(PREFACE + frame(SETTINGS, 0, 0, settings))

    def send(self, data):
        try:
            self.s.sendall(data)
            return True
        except OSError:
            return False

    def frames(self, until, timeout=5):
        """Read frames until until(frame) is true, the connection closes, or timeout: the frames read."""
        got = []
        end = time.monotonic() + timeout
        while True:
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + n:
                    break
                f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF,
                     self.buf[9:9 + n])
                self.buf = self.buf[9 + n:]
                got.append(f)
                if f[0] == SETTINGS and not f[1] & ACK:
                    self.send(frame(SETTINGS, ACK, 0))
                if until(f):
                    return got
            left = end - time.monotonic()
            if left <= 0 or self.closed:
                return got
            self.s.settimeout(left)
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                return got
            except OSError:
                d = b""
            if not d:
                self.closed = True
                return got
            self.buf += d

    def wait_closed(self, timeout):
        """True when the server closed the connection within timeout (GOAWAY frames are read on the way)."""
        fr = self.frames(lambda f: False, timeout)
        self.goaway = [f for f in fr if f[0] == GOAWAY]
        return self.closed

    def close(self):
        self.s.close()


def stream_end(sid):
    return lambda f: f[2] == sid and f[0] in (HEADERS, DATA, RST_STREAM) and (f[0] == RST_STREAM or f[1] & END_STREAM)


def goaway_code(frames):
    for f in frames:
        if f[0] == GOAWAY and len(f[3]) >= 8:
            return int.from_bytes(f[3][4:8], "big")
    return None


# ---- the server process ----

class Driver:
    def __init__(self, binary, work):
        self.sock = os.path.join(work, "csi.sock")
        self.log = os.path.join(work, "driver.log")
        self.logf = open(self.log, "wb")
        self.p = subprocess.Popen([binary, "-endpoint=unix://" + self.sock, "-deviceManager=direct", "-nodeid=n1",
                                   "-statePath=" + os.path.join(work, "state"), "-v=0"],
                                  stdout=self.logf, stderr=subprocess.STDOUT)
        for _ in range(100):
            if os.path.exists(self.sock):
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
            rc = self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        self.logf.close()
        return rc


def probe(path, timeout=5):
    """A normal client: one Probe on a fresh connection. Seconds it took, or None when not served."""
    t0 = time.monotonic()
    try:
        c = Conn(path, timeout=timeout)
        c.send(frame(HEADERS, END_HEADERS, 1, request_block()) + frame(DATA, END_STREAM, 1, grpc_msg()))
        fr = c.frames(stream_end(1), timeout)
        c.close()
    except OSError:
        return None
    data = b"".join(f[3] for f in fr if f[0] == DATA and f[2] == 1)
    ended = any(stream_end(1)(f) and f[0] == HEADERS for f in fr)
    # One message (ProbeResponse: empty, or "ready" while starting up) and the trailers.
    if ended and len(data) >= 5 and data[0] == 0 and int.from_bytes(data[1:5], "big") == len(data) - 5:
        return time.monotonic() - t0
    return None


class Attack:
    """Cost of one attack: server stats before and after, and Probe latency during it."""

    def __init__(self, drv, name):
        self.drv, self.name = drv, name
        self.before = drv.stats()
        self.peak = dict(self.before)

    def sample(self):
        st = self.drv.stats()
        for k in ("VmRSS", "Threads", "fds"):
            self.peak[k] = max(self.peak[k], st[k])
        return st

    def during(self):
        self.sample()
        self.probe_during = probe(self.drv.sock)
        check(self.probe_during is not None, "%s: a Probe on another connection is served during it (%s)" %
              (self.name, "%.3f s" % self.probe_during if self.probe_during is not None else "not served"))

    def done(self, fds_bound=None):
        after = self.sample()
        p = probe(self.drv.sock)
        rss = self.peak["VmRSS"] - self.before["VmRSS"]
        print("# %s: cost VmRSS +%d kB (peak %d kB), threads %d->%d, fds %d->%d (peak %d), CPU %.2f s; "
              "Probe after %s" % (self.name, rss, self.peak["VmRSS"], self.before["Threads"], after["Threads"],
                                  self.before["fds"], after["fds"], self.peak["fds"],
                                  after["cpu"] - self.before["cpu"], "%.3f s" % p if p is not None else "FAILED"),
              flush=True)
        check(p is not None, "%s: a Probe is served after it" % self.name)
        check(rss <= RSS_GROWTH_MAX_KB, "%s: VmRSS grew by %d kB (bound %d kB)" % (self.name, rss, RSS_GROWTH_MAX_KB))
        if fds_bound is not None:
            check(self.peak["fds"] <= fds_bound, "%s: at most %d open fds (peak %d)" % (self.name, fds_bound,
                                                                                        self.peak["fds"]))


def logged(drv, needle, since):
    return drv.log_text()[since:].count(needle)


def main():
    global RSS_GROWTH_MAX_KB
    binary = sys.argv[1]
    with open(binary, "rb") as f:
        if b"AddressSanitizer" in f.read():
            # ASan keeps freed memory in quarantine: what an attack costs shows up several times over.
            RSS_GROWTH_MAX_KB *= 4
    work = tempfile.mkdtemp(prefix="attack-h2.")
    drv = Driver(binary, work)
    S = drv.sock
    try:
        for _ in range(50):
            p = probe(S)
            if p is not None:
                break
            time.sleep(0.1)
        check(p is not None, "a Probe before any attack")
        base = drv.stats()
        print("# idle: VmRSS %d kB, %d threads, %d fds" % (base["VmRSS"], base["Threads"], base["fds"]), flush=True)
        run(drv, S, base)
    finally:
        rc = drv.stop()
        log = drv.log_text()
        check(rc == 0 and "Sanitizer" not in log and "runtime error:" not in log,
              "the server exits with 0 on SIGTERM, no sanitizer report (rc %d)" % rc)
        if failed:
            print("# driver log (last 30 lines):\n# " + "\n# ".join(log.splitlines()[-30:]))
        if os.environ.get("KEEP"):
            print("# kept " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


def run(drv, S, base):
    t_start = time.monotonic()
    # ---- slow attacks: start them now, check them at the end ----
    slow = {}
    # A client that never reads: PINGs until its socket is full, then nothing.
    c = Conn(S)
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.s.setblocking(False)
    sent = 0
    try:
        for _ in range(200000):
            c.s.send(frame(PING, 0, 0, b"12345678") * 64)
            sent += 64
    except (BlockingIOError, OSError):
        pass
    slow["never reads"] = c
    print("# never reads: %d PINGs sent before the socket filled up" % sent, flush=True)
    # A client that sends Probes and never reads the answers.
    c = Conn(S)
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.s.settimeout(0.5)
    sent = 0
    batch = 100
    try:
        # Until the server stops reading (its answers no longer fit the sockets' buffers).
        for i in range(0, 50000, batch):
            c.s.sendall(b"".join(frame(HEADERS, END_HEADERS, 1 + 2 * j, request_block()) +
                                 frame(DATA, END_STREAM, 1 + 2 * j, grpc_msg()) for j in range(i, i + batch)))
            sent += batch
    except OSError:
        pass
    slow["never reads its answers"] = c
    print("# never reads its answers: %d Probes sent before the socket filled up" % sent, flush=True)
    # Zero window: the responses can never be sent.
    c = Conn(S, settings=struct.pack(">HI", 4, 0))
    for i in range(20):
        sid = 1 + 2 * i
        c.send(frame(HEADERS, END_HEADERS, sid, request_block()) + frame(DATA, END_STREAM, sid, grpc_msg()))
    slow["zero window"] = c
    # A request that never ends: HEADERS, half a prefix, then silence (no grpc-timeout).
    c = Conn(S)
    c.send(frame(HEADERS, END_HEADERS, 1, request_block()) + frame(DATA, 0, 1, b"\0\0"))
    slow["request never ends"] = c
    # HEADERS without any DATA, never ended.
    c = Conn(S)
    for i in range(100):
        c.send(frame(HEADERS, END_HEADERS, 1 + 2 * i, request_block()))
    slow["100 streams never end"] = c

    # ---- gRPC framing (first: refusals are logged, up to 20 per 10 s) ----
    def grpc_case(name, block, body_frames, want_code, want_in_log):
        since = len(drv.log_text())
        c = Conn(S)
        c.send(frame(HEADERS, END_HEADERS, 1, block) + b"".join(body_frames))
        fr = c.frames(stream_end(1), 5)
        ended = bool(fr) and stream_end(1)(fr[-1])
        log = drv.log_text()[since:]
        check(ended and (want_in_log is None or want_in_log in log),
              "%s: the stream ends (%s)%s" % (name, "yes" if ended else "no",
                                            ", logged " + want_in_log if want_in_log else ""),
              "log: " + log.strip()[-300:])
        c.close()

    grpc_case("gRPC length prefix of 4 GiB - 1", request_block(), [frame(DATA, END_STREAM, 1, b"\0\xff\xff\xff\xff")],
              8, 'code="ResourceExhausted"')
    grpc_case("gRPC compressed flag", request_block(), [frame(DATA, END_STREAM, 1, b"\1\0\0\0\0")], 13,
              "compressed message")
    grpc_case("Probe in 1-byte DATA frames", request_block(),
              [frame(DATA, 0, 1, bytes([b])) for b in grpc_msg()] + [frame(DATA, END_STREAM, 1)], 0, None)
    grpc_case("truncated message", request_block(), [frame(DATA, END_STREAM, 1, grpc_msg(b"ab", length=10))], 13,
              "ended inside its message")
    grpc_case("invalid protobuf", request_block("/csi.v1.Controller/DeleteVolume"),
              [frame(DATA, END_STREAM, 1, grpc_msg(b"\xff\xff\xff"))], 3, 'code="InvalidArgument"')
    grpc_case("malformed grpc-timeout", request_block(extra=[("grpc-timeout", "-5S")]),
              [frame(DATA, END_STREAM, 1, grpc_msg())], 13, "grpc-timeout")
    grpc_case("grpc-timeout of 99999999 hours", request_block(extra=[("grpc-timeout", "99999999H")]),
              [frame(DATA, END_STREAM, 1, grpc_msg())], 0, None)
    grpc_case("grpc-timeout of 1 ns", request_block(extra=[("grpc-timeout", "1n")]), [], 4,
              'code="DeadlineExceeded"')

    # ---- fast attacks, one after the other ----
    a = Attack(drv, "rapid reset (HEADERS + RST_STREAM x 20000)")
    since = len(drv.log_text())
    c = Conn(S)
    burst = b"".join(frame(HEADERS, END_HEADERS, 1 + 2 * i, request_block()) + frame(RST_STREAM, 0, 1 + 2 * i,
                                                                                       struct.pack(">I", 8))
                     for i in range(20000))
    c.send(burst)
    a.during()
    closed = c.wait_closed(10)
    check(closed and goaway_code(c.goaway) is not None,
          "%s: GOAWAY and close (error code %s)" % (a.name, goaway_code(c.goaway)))
    c.close()
    a.done()

    a = Attack(drv, "CONTINUATION flood without END_HEADERS")
    c = Conn(S)
    c.send(frame(HEADERS, 0, 1, request_block()))
    nsent = 0
    for i in range(100000):
        if not c.send(frame(CONTINUATION, 0, 1, literal("x-flood-%d" % i, "v" * 64))):
            break
        nsent += 1
    closed = c.wait_closed(10)
    check(closed, "%s: connection closed after %d CONTINUATION frames" % (a.name, nsent))
    c.close()
    a.done()

    a = Attack(drv, "PING flood (200000, reading the ACKs)")
    c = Conn(S)
    c.send(frame(PING, 0, 0, b"abcdefgh") * 200000)
    fr = c.frames(lambda f: False, 3)
    acks = sum(1 for f in fr if f[0] == PING and f[1] & ACK)
    a.during()
    print("# PING flood: %d ACKs, connection %s" % (acks, "closed" if c.closed else "open"))
    check(c.closed or acks <= 200000, "%s: bounded (%d ACKs, closed: %s)" % (a.name, acks, c.closed))
    c.close()
    a.done()

    a = Attack(drv, "SETTINGS flood (100000 frames)")
    c = Conn(S)
    c.send(frame(SETTINGS, 0, 0, struct.pack(">HI", 3, 100)) * 100000)
    fr = c.frames(lambda f: False, 3)
    a.during()
    print("# SETTINGS flood: %d frames back, connection %s" % (len(fr), "closed" if c.closed else "open"))
    c.close()
    a.done()

    a = Attack(drv, "SETTINGS frame with 1000 entries")
    c = Conn(S)
    c.send(frame(SETTINGS, 0, 0, struct.pack(">HI", 3, 100) * 1000))
    check(c.wait_closed(5), "%s: connection closed" % a.name)
    c.close()
    a.done()

    a = Attack(drv, "a 100 KiB header list in HEADERS + CONTINUATION")
    since = len(drv.log_text())
    c = Conn(S)
    block = request_block(extra=[("x-big-%d" % i, "a" * 1000) for i in range(100)])
    chunks = [block[i:i + 16000] for i in range(0, len(block), 16000)]
    data = frame(HEADERS, END_HEADERS if len(chunks) == 1 else 0, 1, chunks[0])
    for i, ch in enumerate(chunks[1:]):
        data += frame(CONTINUATION, END_HEADERS if i == len(chunks) - 2 else 0, 1, ch)
    c.send(data + frame(DATA, END_STREAM, 1, grpc_msg()))
    fr = c.frames(stream_end(1), 5)
    check(stream_end(1)(fr[-1]) if fr else False, "%s: the stream is refused (%s)" %
          (a.name, "RST_STREAM" if fr and fr[-1][0] == RST_STREAM else "trailers" if fr else "nothing"))
    c.close()
    a.done()

    a = Attack(drv, "HPACK dynamic table churn (2000 indexed 4000-byte headers)")
    c = Conn(S)
    ended = set()
    for i in range(2000):
        sid = 1 + 2 * i
        if not c.send(frame(HEADERS, END_HEADERS | END_STREAM, sid,
                            request_block(extra=[("x-i", ("%d" % i) * (4000 // len("%d" % i)))]).replace(
                                b"\x00\x03x-i", b"\x40\x03x-i"))):
            break
        if i % 50 == 49:
            ended.update(f[2] for f in c.frames(stream_end(sid), 5) if stream_end(f[2])(f))
    ended.update(f[2] for f in c.frames(stream_end(3999), 10) if stream_end(f[2])(f))
    check(c.closed or len(ended) == 2000, "%s: every stream answered (%d) or the connection closed (%s)"
          % (a.name, len(ended), c.closed))
    c.close()
    a.done()

    a = Attack(drv, "1000 streams on one connection (limit 100)")
    # Before the client acknowledged the limit: the streams beyond it are refused, 900
    # RST_STREAMs at once. (They went out as 900 separate 13-byte writes before, which filled
    # the unix socket's buffer accounting: the connection then stalled for 10 s.)
    c = Conn(S)
    c.send(b"".join(frame(HEADERS, END_HEADERS, 1 + 2 * i, request_block()) for i in range(1000)))
    fr = c.frames(lambda f: f[0] == RST_STREAM and f[2] == 1999, 5)
    refused = sum(1 for f in fr if f[0] == RST_STREAM and f[3] == struct.pack(">I", 7))
    check(refused >= 900 or c.closed, "%s: streams beyond the limit refused at once (%d REFUSED_STREAM, closed: %s)"
          % (a.name, refused, c.closed))
    c.close()
    # Once the client has acknowledged the limit, stream 101 is a protocol error: the connection ends.
    c = Conn(S)
    c.frames(lambda f: f[0] == SETTINGS and f[1] & ACK, 5)
    c.send(b"".join(frame(HEADERS, END_HEADERS, 1 + 2 * i, request_block()) for i in range(101)))
    check(c.wait_closed(5) and goaway_code(c.goaway) == 1,
          "%s: the 101st stream after the SETTINGS ACK: GOAWAY PROTOCOL_ERROR (%s)" % (a.name, goaway_code(c.goaway)))
    a.during()
    c.close()
    a.done()

    a = Attack(drv, "more connections than the limit (%d idle + 300 silent)" % (CONN_MAX + 100))
    conns = []
    try:
        for i in range(CONN_MAX + 100):
            conns.append(Conn(S))
        for i in range(300):
            conns.append(Conn(S, preface=False))
    except OSError as e:
        print("# connect failed after %d: %s" % (len(conns), e))
    time.sleep(1)
    a.during()
    a.done(fds_bound=base["fds"] + CONN_MAX + FDS_SLACK)
    closed = sum(1 for x in conns if x.wait_closed(0.01))
    print("# %d of %d connections closed by the server" % (closed, len(conns)))
    check(closed >= len(conns) - CONN_MAX, "%s: the oldest idle connections were closed (%d of %d)" %
          (a.name, closed, len(conns)))
    for x in conns:
        x.close()
    del conns
    check("refused calls or connections in 10 s were not logged" in drv.log_text(),
          "the floods above did not flood the log (refusals were rate-limited)")

    # ---- not HTTP/2 ----
    for name, data in (("HTTP/1.1 request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                       ("TLS ClientHello", bytes.fromhex("160301002e010000") + os.urandom(48)),
                       ("HTTP/1.1 upgrade to h2c", b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings"
                        b"\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")):
        c = Conn(S, preface=False)
        c.send(data)
        t0 = time.monotonic()
        check(c.wait_closed(5), "%s: closed after %.3f s" % (name, time.monotonic() - t0))
        c.close()

    # ---- the slow attacks ----
    a = Attack(drv, "slow attacks")
    left = max(REQUEST_TIMEOUT_S, STALL_TIMEOUT_S) + 3 - (time.monotonic() - t_start)
    print("# waiting %.0f s for the slow attacks" % max(left, 0), flush=True)
    while time.monotonic() - t_start < max(REQUEST_TIMEOUT_S, STALL_TIMEOUT_S) + 3:
        time.sleep(0.5)
        a.sample()
    c = slow["never reads"]
    c.s.setblocking(True)
    # Read what is there without blocking forever: the server should have closed it.
    check(c.wait_closed(3), "a client that never reads: connection closed after the stall timeout")
    c = slow["never reads its answers"]
    c.s.setblocking(True)
    check(c.wait_closed(3), "a client that never reads its answers: connection closed after the stall timeout")
    c = slow["zero window"]
    fr = c.frames(lambda f: False, 1)
    rst = sum(1 for f in fr if f[0] == RST_STREAM)
    check(rst >= 20 or c.closed, "zero window: the 20 stalled responses were reset (%d RST_STREAM, closed: %s)" %
          (rst, c.closed))
    c = slow["request never ends"]
    fr = c.frames(stream_end(1), 1)
    check(any(stream_end(1)(f) for f in fr) or c.closed, "a request that never ends: the stream is ended")
    c = slow["100 streams never end"]
    fr = c.frames(lambda f: False, 1)
    ended = sum(1 for f in fr if f[0] in (HEADERS, RST_STREAM) and (f[0] == RST_STREAM or f[1] & END_STREAM))
    check(ended >= 100 or c.closed, "100 requests without a body: all ended (%d, closed: %s)" % (ended, c.closed))
    for c in slow.values():
        c.close()
    a.done()


if __name__ == "__main__":
    main()
