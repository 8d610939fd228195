/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gRPC server from the wire: the input is what a client sends after the
 * HTTP/2 client preface (frames, or anything else), on a fresh connection to
 * the driver's own server (csi_server_start() with the real method table, on
 * a unix socket), which then sees the client end its side of the connection.
 * Everything the server does with those bytes runs: nghttp2's framing and
 * HPACK, our header checks, grpc-timeout, the length-prefixed message, the
 * validation and unpacking of the request, the handler (without a device
 * manager: it stops at csi_check_ready()) and the answer.
 *
 * Checked, per input: no crash, leak or sanitizer report; the server closes
 * the connection within 2 s of the client's end; and afterwards a Probe on a
 * new connection is answered (one message, then trailers), so no input can
 * wedge the event loop.
 */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "csi/driver.h"
#include "csi/server.h"
#include "fuzz.h"

#define STATE_DIR "/tmp/pmem-csi-fuzz-state.never-created"
#define CLOSE_TIMEOUT_MS 2000

static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
				 "\0\0\0\4\0\0\0\0\0"; /* + an empty SETTINGS frame */

static struct csi_driver *driver;

static int connect_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return; /* the server closed: fine */
		p += w;
		n -= (size_t)w;
	}
}

static long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/*
 * Read until the server closes (true) or timeout_ms pass (false). With probe,
 * stop as soon as stream 1 has one DATA message and a HEADERS frame that ends it.
 */
static bool read_until_closed(int fd, int timeout_ms, bool probe, bool *ret_answered)
{
	static uint8_t buf[256 * 1024];
	size_t have = 0, data_len = 0;
	long end = now_ms() + timeout_ms;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		long left = end - now_ms();
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return false;
		n = recv(fd, buf + have, sizeof(buf) - have, 0);
		if (n <= 0)
			return true;
		have += (size_t)n;
		/* Frames: 3 bytes length, type, flags, 4 bytes stream. */
		while (probe && have >= 9) {
			size_t len = (size_t)buf[0] << 16 | (size_t)buf[1] << 8 | buf[2];
			uint8_t type = buf[3], flags = buf[4];
			uint32_t sid = ((uint32_t)buf[5] << 24 | (uint32_t)buf[6] << 16 | (uint32_t)buf[7] << 8 | buf[8]) &
				       0x7fffffff;

			if (have < 9 + len)
				break;
			if (sid == 1 && type == 0)
				data_len += len;
			if (sid == 1 && type == 1 && (flags & 1)) {
				*ret_answered = data_len >= 5;
				return true;
			}
			memmove(buf, buf + 9 + len, have - 9 - len);
			have -= 9 + len;
		}
		if (have == sizeof(buf))
			have = 0; /* not parsing: drop what came */
	}
}

/* HPACK literals without indexing or Huffman: enough for one Probe request. */
static size_t literal(uint8_t *out, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value), o = 0;

	out[o++] = 0;
	out[o++] = (uint8_t)nl;
	memcpy(out + o, name, nl);
	o += nl;
	out[o++] = (uint8_t)vl;
	memcpy(out + o, value, vl);
	return o + vl;
}

static bool probe_answered(const char *path)
{
	uint8_t req[512];
	size_t n = 9;
	bool answered = false;
	int fd = connect_unix(path);

	if (fd < 0)
		return false;
	n += literal(req + n, ":method", "POST");
	n += literal(req + n, ":scheme", "http");
	n += literal(req + n, ":path", "/csi.v1.Identity/Probe");
	n += literal(req + n, ":authority", "localhost");
	n += literal(req + n, "content-type", "application/grpc");
	n += literal(req + n, "te", "trailers");
	req[0] = 0, req[1] = 0, req[2] = (uint8_t)(n - 9); /* HEADERS, END_HEADERS, stream 1 */
	req[3] = 1, req[4] = 4, req[5] = req[6] = req[7] = 0, req[8] = 1;
	/* DATA, END_STREAM, stream 1: an empty ProbeRequest */
	memcpy(req + n, "\0\0\5\0\1\0\0\0\1" "\0\0\0\0\0", 14);
	n += 14;
	send_all(fd, preface, sizeof(preface) - 1);
	send_all(fd, req, n);
	(void)read_until_closed(fd, CLOSE_TIMEOUT_MS, true, &answered);
	close(fd);
	return answered;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char dir[] = "/tmp/fuzz-grpc-wire.XXXXXX", path[64], endpoint[80];
	struct csi_server *server = NULL;
	struct csi_server_config cfg = { 0 };
	bool closed;
	int fd;

	if (size > 256 * 1024)
		return 0;
	if (!driver) {
		const struct csi_driver_config dcfg = {
			.name = "pmem-csi.intel.com",
			.version = "fuzz",
			.node_id = "fuzz-node",
			.state_dir = STATE_DIR,
		};
		/* Kept for the whole process, as in the driver. */
		if (csi_driver_new(&dcfg, &driver) < 0)
			return 0;
	}
	if (!mkdtemp(dir))
		return 0;
	snprintf(path, sizeof(path), "%s/csi.sock", dir);
	snprintf(endpoint, sizeof(endpoint), "unix://%s", path);
	cfg.endpoint = endpoint;
	cfg.methods = csi_driver_methods(&cfg.n_methods);
	cfg.userdata = driver;
	cfg.max_request_bytes = 4 * 1024 * 1024;
	cfg.workers = 2;
	if (csi_server_start(&cfg, &server) < 0) {
		rmdir(dir);
		return 0;
	}
	fd = connect_unix(path);
	FUZZ_CHECK(fd >= 0);
	send_all(fd, preface, sizeof(preface) - 1);
	send_all(fd, data, size);
	(void)shutdown(fd, SHUT_WR);
	closed = read_until_closed(fd, CLOSE_TIMEOUT_MS, false, NULL);
	close(fd);
	if (!closed)
		fprintf(stderr, "the server did not close the connection within %d ms of the client's end\n",
			CLOSE_TIMEOUT_MS);
	FUZZ_CHECK(closed);
	FUZZ_CHECK(probe_answered(path));
	csi_server_stop(server, 0);
	rmdir(dir);
	return 0;
}
