"""Connections that hold: bursts of idle gRPC clients past the connection limit,
idle and half-sent HTTP clients on the metrics port, SIGTERM under load.

The driver runs as in the other groups (LVM mode, real PMEM), with
-metricsListen on 127.0.0.1. HTTP clients that hold connections come from
127.0.0.2-127.0.0.9 (the server gives one client address a quarter of its
connections); the probes come from 127.0.0.1, as kubelet's come from the node.
"""

import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request

import grpc

from csitest import (ENDPOINT_PATH, Driver, DriverTestCase, code_name, log, pb, pbg,
                     socket_accepts)

NOFILE = 256             # open-file limit of the driver in the EMFILE group
IDLE_GRPC = 300          # idle unix-socket clients: more than NOFILE
HTTP_CLIENTS = 300       # idle + half-sent + trickling HTTP clients
HTTP_ADDRESSES = 8
PROBE_LIMIT = 1.0        # s: /healthz and /metrics must answer within this
RECOVER_LIMIT = 5.0      # s: after the clients are gone, calls succeed again within this
STOP_ROUNDS = int(os.environ.get("CONN_STOP_ROUNDS", "20"))
STOP_LIMIT = 20.0        # s: SIGTERM to exit, with calls in flight (8.6 s seen at host load 20)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(port, path, timeout=5):
    """(status or exception name, body, seconds)."""
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace"), time.monotonic() - t0
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace"), time.monotonic() - t0
    except Exception as e:  # timeout, reset, refused
        return type(e).__name__, str(e), time.monotonic() - t0


def unix_connect(path, timeout=10):
    """connect(2); a full listen backlog (EAGAIN) is retried, as a blocking client waits."""
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


def fresh_call(name, timeout):
    """One call on a new channel (no backoff inherited): (code or None, seconds)."""
    ch = grpc.insecure_channel("unix://" + ENDPOINT_PATH)
    stub = pbg.IdentityStub(ch) if name == "Probe" else pbg.ControllerStub(ch)
    req = pb.ProbeRequest() if name == "Probe" else pb.GetCapacityRequest()
    t0 = time.monotonic()
    try:
        getattr(stub, name)(req, timeout=timeout)
        return None, time.monotonic() - t0
    except grpc.RpcError as e:
        return e.code(), time.monotonic() - t0
    finally:
        ch.close()


def open_files(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return line.split()[3]
    return "?"


class LimitedDriver(Driver):
    """The driver under `prlimit --nofile=N:N`: soft = hard, so the driver cannot raise it."""

    def __init__(self, *a, nofile=None, **kw):
        super().__init__(*a, **kw)
        self.nofile = nofile

    def argv(self):
        argv = super().argv()
        return ["prlimit", "--nofile=%d:%d" % (self.nofile, self.nofile)] + argv if self.nofile else argv


class _MetricsGroup(DriverTestCase):
    """A group whose driver also serves metrics on 127.0.0.1:<free port>."""

    start_driver = False
    nofile = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls._setup_error:
            return
        try:
            cls.port = free_port()
            cls.driver = LimitedDriver(cls.group, cls.state_dir, nofile=cls.nofile,
                                       extra_args=["-metricsListen=127.0.0.1:%d" % cls.port])
            cls.driver.start()
            log("driver ready %.2f s after start, open-file limit %s"
                % (cls.driver.ready_after, open_files(cls.driver.proc.pid)))
        except Exception as e:
            cls._setup_error = "group set-up failed: %s" % e


class ConnectionsEmfile(_MetricsGroup):
    """More idle clients than the open-file limit allows: the driver keeps serving."""

    group = "connections-emfile"
    nofile = NOFILE

    def test_burst_past_fd_limit_keeps_serving(self):
        """More idle clients than the open files allow: the oldest are closed, new ones served.

        The gRPC server keeps at most 256 connections and at most half of what the
        open-file limit leaves beyond its reserve (here (256 - 64) / 2 = 96); a new
        client past that closes the oldest silent or idle one, so the descriptors never
        run out and the driver stays live (before, accept failed with EMFILE and
        /healthz said 503 until the clients left)."""
        port = type(self).port
        code, body, _ = http_get(port, "/healthz")
        self.assertEqual(code, 200, "/healthz before the burst: %s %r" % (code, body))
        held, problems = [], []
        try:
            for i in range(IDLE_GRPC):
                held.append(unix_connect(ENDPOINT_PATH))
            log("%d idle connections to the gRPC socket (driver limit %d open files)" % (len(held), NOFILE))
            code, body, dt = http_get(port, "/healthz")
            log("/healthz meanwhile: %s %r (%.3f s)" % (code, body.strip(), dt))
            if code != 200:
                problems.append("/healthz while %d idle clients were connected: %s %r" % (len(held), code, body))
            got, dt = fresh_call("Probe", 5)
            log("Probe on a new channel meanwhile: %s after %.2f s" % (code_name(got), dt))
            if got is not None:
                problems.append("Probe on a new channel while %d idle clients were connected: %s"
                                % (len(held), code_name(got)))
            closed = 0
            for s in held:
                # The server's SETTINGS frame first, then EOF if it closed the connection.
                s.settimeout(0.05)
                try:
                    while s.recv(4096):
                        pass
                    closed += 1
                except socket.timeout:
                    pass
                except OSError:
                    closed += 1
            log("%d of %d idle clients closed by the driver" % (closed, len(held)))
            if closed < IDLE_GRPC - 96:
                problems.append("only %d of %d idle clients were closed to make room" % (closed, len(held)))
        finally:
            for s in held:
                s.close()
        if "connections open (the limit)" not in type(self).driver.log_text(since_start=True):
            problems.append("no log line about the connection limit")
        for name in ("Probe", "GetCapacity"):
            got, dt = fresh_call(name, 5)
            if got is not None:
                problems.append("%s on a new channel after the idle clients closed: %s" % (name, code_name(got)))
        self.assertFalse(problems, "; ".join(problems))

    def test_silent_client_is_closed(self):
        """A client that never speaks gRPC does not hold its descriptor for long (20 s)."""
        s = unix_connect(ENDPOINT_PATH)
        s.settimeout(60)
        t0 = time.monotonic()
        try:
            while s.recv(100):  # until the server closes (or 60 s pass)
                pass
        except OSError:
            pass
        took = time.monotonic() - t0
        s.close()
        log("a silent gRPC client was closed after %.1f s" % took)
        self.assertLess(took, 30, "a silent gRPC client was held %.0f s" % took)

    def test_removed_socket_is_not_live(self):
        """A driver whose socket file was removed cannot be reached: liveness says so."""
        port = type(self).port
        tmp = ENDPOINT_PATH + ".moved"
        os.rename(ENDPOINT_PATH, tmp)
        try:
            code, body, _ = http_get(port, "/healthz")
        finally:
            os.rename(tmp, ENDPOINT_PATH)
        self.assertEqual(code, 503, "/healthz with the socket file moved away: %s %r" % (code, body))
        self.assertIn("removed", body)
        code, body, _ = http_get(port, "/healthz")
        self.assertEqual(code, 200, "/healthz with the socket back: %s %r" % (code, body))


class ConnectionsHttp(_MetricsGroup):
    """Idle, half-sent and trickling HTTP clients do not starve /healthz and /metrics."""

    group = "connections-http"

    def test_probes_answer_while_clients_hold_connections(self):
        port = type(self).port
        held, refused = [], 0
        stop = threading.Event()
        try:
            for i in range(HTTP_CLIENTS):
                s = socket.socket()
                try:
                    s.bind(("127.0.0.%d" % (2 + i % HTTP_ADDRESSES), 0))
                    s.settimeout(5)
                    s.connect(("127.0.0.1", port))
                    if i % 3 == 1:
                        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # half-sent
                    elif i % 3 == 2:
                        s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")  # trickles below
                    held.append((i % 3, s))
                except OSError:
                    refused += 1
                    s.close()

            def trickle():
                while not stop.wait(2):
                    for kind, s in held:
                        if kind == 2:
                            try:
                                s.send(b"a")
                            except OSError:
                                pass
            threading.Thread(target=trickle, daemon=True).start()
            log("%d HTTP clients hold connections (%d refused at connect)" % (len(held), refused))
            slow, worst = [], 0.0
            for _ in range(20):
                for path in ("/healthz", "/metrics", "/metrics/simple"):
                    code, body, dt = http_get(port, path, timeout=5)
                    worst = max(worst, dt)
                    if code != 200 or dt > PROBE_LIMIT:
                        slow.append("%s: %s after %.2f s" % (path, code, dt))
            log("slowest probe answer %.3f s" % worst)
            self.assertFalse(slow, "with %d HTTP clients holding connections, %d of 60 probes failed or took "
                             "more than %.1f s: %s" % (len(held), len(slow), PROBE_LIMIT, slow[:5]))
        finally:
            stop.set()
            for _, s in held:
                s.close()

    def test_idle_connections_are_closed(self):
        """A connection that sends nothing is closed by the server (10 s idle timeout)."""
        port = type(self).port
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        t0 = time.monotonic()
        try:
            data = s.recv(1)
        except OSError:
            data = b""
        took = time.monotonic() - t0
        s.close()
        self.assertEqual(data, b"", "a half-sent request got an answer?")
        self.assertLess(took, 25, "a half-sent request was held %.0f s" % took)
        log("half-sent request closed after %.1f s" % took)


class ConnectionsStop(DriverTestCase):
    """SIGTERM with calls in flight, again and again: the driver exits every time, quickly."""

    group = "connections-stop"

    def test_sigterm_under_load(self):
        d = type(self).driver
        times = []
        for rnd in range(STOP_ROUNDS):
            if d.proc is None:
                d.start()
            stop = threading.Event()
            counts = {"ok": 0, "err": 0}

            def load(seed):
                rng = random.Random(seed)
                ch = grpc.insecure_channel("unix://" + ENDPOINT_PATH)
                ident, ctrl, node = pbg.IdentityStub(ch), pbg.ControllerStub(ch), pbg.NodeStub(ch)
                calls = [
                    (ident.Probe, pb.ProbeRequest()),
                    (ctrl.GetCapacity, pb.GetCapacityRequest()),
                    # slow methods (worker queue), without side effects: unknown volumes
                    (ctrl.DeleteVolume, pb.DeleteVolumeRequest(volume_id="conn-stop-unknown")),
                    (node.NodeUnpublishVolume, pb.NodeUnpublishVolumeRequest(
                        volume_id="conn-stop-unknown", target_path="/tmp/pmem-csi-conn-stop/none")),
                ]
                futures = []
                while not stop.is_set():
                    fn, req = rng.choice(calls)
                    futures.append(fn.future(req, timeout=30))
                    if len(futures) >= 8:
                        f = futures.pop(0)
                        try:
                            f.result()
                            counts["ok"] += 1
                        except grpc.RpcError:
                            counts["err"] += 1
                ch.close()

            threads = [threading.Thread(target=load, args=(rnd * 100 + i,), daemon=True) for i in range(4)]
            for t in threads:
                t.start()
            time.sleep(random.uniform(0.3, 1.0))
            rc, took = d.stop()
            stop.set()
            for t in threads:
                t.join(30)
            times.append(took)
            self.assertEqual(rc, 0, "round %d: exit status %s %.1f s after SIGTERM (SIGKILLed when it did not "
                             "exit within 30 s); log tail:\n%s" % (rnd, rc, took, d.log_tail()))
            self.assertLess(took, STOP_LIMIT, "round %d: exit took %.1f s after SIGTERM" % (rnd, took))
            self.assertFalse(socket_accepts(ENDPOINT_PATH), "round %d: socket still accepts after exit" % rnd)
        log("%d SIGTERMs under load: exit after median %.2f s, max %.2f s"
            % (len(times), sorted(times)[len(times) // 2], max(times)))
