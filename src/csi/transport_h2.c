/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gRPC transport on libnghttp2 and protobuf-c, without gRPC core
 * (meson -Dgrpc_transport=nghttp2). Same interface and, as clients see it,
 * the same behaviour as transport.c; it exists because gRPC core and what it
 * pulls in (libstdc++, OpenSSL, its own threads) are most of the driver's
 * resident memory: see docs/performance.md.
 *
 * What a gRPC server must do on top of HTTP/2 (cleartext, prior knowledge:
 * what gRPC clients speak on unix sockets and insecure TCP):
 *   - a request is HEADERS (:method POST, :path /service/method,
 *     content-type application/grpc[+proto|;...], optional grpc-timeout and
 *     grpc-encoding) and DATA carrying length-prefixed messages: one byte
 *     "compressed", four bytes big-endian length, the protobuf bytes;
 *   - the answer is HEADERS (:status 200), DATA with one length-prefixed
 *     message, and trailers with grpc-status and grpc-message (percent-encoded);
 *     an error without a message is one HEADERS frame with all of them
 *     ("trailers-only").
 *
 * Threads: one event loop owns every socket and every nghttp2 session
 * (nghttp2 is not thread-safe): it accepts, reads, runs the fast methods
 * inline (they answer from memory) and writes. Slow methods go to a worker
 * pool whose threads start on demand, up to the configured number; a worker
 * runs the handler, packs the response and hands the call back through a
 * queue and an eventfd. A call is owned by the loop, or by one worker while
 * its handler runs; call->conn (loop only) says whether its stream still
 * exists.
 *
 * Limits, as in transport.c: max request size (RESOURCE_EXHAUSTED), 100
 * concurrent streams per connection, 16 KiB of request headers, a bound on
 * request bytes buffered over all calls, at most PENDING_MAX connections that
 * have not sent the HTTP/2 preface and HANDSHAKE_TIMEOUT_MS for them,
 * keepalive pings while calls run, FD_RESERVE descriptors never taken by
 * accepting, and accepting resumes after EMFILE (see the top of transport.c).
 * Against hostile clients (test/transport/attack-h2.py): at most CONN_MAX
 * connections (a new one evicts the oldest idle one), REQUEST_TIMEOUT_MS for
 * a request message to arrive, STALL_TIMEOUT_MS for a client to take the
 * bytes it is sent, and refusals logged at a bounded rate. Floods of resets,
 * CONTINUATION frames, PINGs and SETTINGS are nghttp2's to refuse (GOAWAY).
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "endpoint.h"
#include "server.h"
#include "validate.h"

#define RESPONSE_ARENA_LIMIT (16u * 1024 * 1024)
#define WORK_QUEUE_MAX 4096
#define CONN_KEEPALIVE_MS (60 * 1000)
#define CONN_KEEPALIVE_TIMEOUT_MS (20 * 1000)
#define CONN_MAX_STREAMS 100
#define MAX_HEADER_BYTES (16 * 1024)
#define HANDSHAKE_TIMEOUT_MS 20000
#define PENDING_MAX 1024
#define FD_RESERVE 64
#define ACCEPT_BACKOFF_MS 200
#define ACCEPT_FAILING_GRACE_S 1.0
/* Request bytes buffered over all calls (each call: at most max_request_bytes). */
#define BODY_BYTES_MAX (64u * 1024 * 1024)
/* Flow-control window per stream and per connection: a 4 MiB request in 4 round trips. */
#define WINDOW_BYTES (1024 * 1024)
#define READ_CHUNK (16 * 1024)
/* nghttp2's frames gathered into one send() (see conn_flush()). */
#define WRITE_BATCH (64 * 1024)
#define ACCEPT_BATCH 16
#define PATH_MAX_LEN 256
#define GRPC_PREFIX 5
/* After connections closed: give free heap pages back this much later (see conn_close()). */
#define TRIM_DELAY_MS 1000
/*
 * Bounds against hostile or broken clients (docs/performance.md, "Hostile
 * clients"). Kubelet and the sidecars hold one connection each; when
 * CONN_MAX are open, a new client evicts the oldest connection that has no
 * call in progress, so idle or silent connections cannot lock clients out.
 */
#define CONN_MAX 256
#define CONN_MIN 16
/* From HEADERS to the complete request message: clients send it at once. */
#define REQUEST_TIMEOUT_MS 10000
/* A response, or the connection's output, that makes no progress this long: the client does not read. */
#define STALL_TIMEOUT_MS 10000
/* Refusals a client can cause (log lines per connection or call): at most this many per window. */
#define REFUSAL_LOG_BURST 20
#define REFUSAL_LOG_WINDOW_S 10

struct conn;

struct call {
	struct csi_server *s;
	struct conn *conn; /* NULL once the stream is gone (loop thread only) */
	int32_t stream_id;
	struct call *cprev, *cnext; /* conn->calls */

	/* Request headers. */
	size_t header_bytes;
	char path[PATH_MAX_LEN];
	bool path_too_long;
	bool post;
	bool te_trailers; /* "te: trailers": the client can take trailers */
	bool content_type_ok;
	bool encoding_identity; /* no grpc-encoding, or "identity" */
	char encoding[32];
	bool timeout_bad;
	bool has_deadline;
	struct timespec deadline; /* CLOCK_MONOTONIC */

	/* Request body: one length-prefixed message. */
	uint8_t prefix[GRPC_PREFIX];
	size_t prefix_len;
	uint8_t *body;
	size_t body_len, body_got;
	bool message_done;

	const struct csi_method *method;
	ProtobufCMessage *request;
	struct csi_call c;
	struct timespec start;

	bool in_worker;         /* a worker owns it: the loop must not free it */
	bool answered;          /* a response or status was submitted (loop only) */
	bool reset_sent;        /* RST_STREAM for a stalled response (loop only) */
	struct timespec progress; /* last response bytes handed to nghttp2 (loop only) */
	atomic_bool abandoned;  /* deadline passed or stream gone: a queued call is skipped */
	atomic_bool logged;     /* the outcome was logged and observed */

	/* The response: 5-byte prefix + message, sent by read_response(). */
	uint8_t *resp;
	size_t resp_len, resp_off;

	struct call *next; /* work or done queue */
};

struct conn {
	struct csi_server *s;
	int fd;
	nghttp2_session *session;
	struct conn *prev, *next;
	struct call *calls;
	unsigned n_calls;
	bool preface_ok; /* a first frame arrived: the client speaks HTTP/2 */
	struct timespec handshake_deadline;
	struct timespec last_rx;
	bool ping_out;
	struct timespec ping_deadline;
	uint32_t events; /* registered with epoll */
	uint8_t *out;    /* bytes nghttp2 produced that the socket did not take yet */
	size_t out_len, out_off;
	struct timespec out_progress; /* the socket last took bytes of out */
	bool dead;
};

struct csi_server {
	struct csi_server_config cfg;
	char *socket_path;
	struct stat socket_st;
	rlim_t fd_limit;
	int listen_fd;
	int epoll_fd;
	int wake_fd; /* eventfd: work done or stop requested */
	bool listening;  /* listen_fd is polled */
	bool backoff;
	struct timespec backoff_until;
	pthread_t loop;
	bool loop_started;

	/* Loop thread only. */
	struct conn *conns;
	unsigned n_conns, n_pending, conn_max;
	size_t body_bytes;
	struct timespec next_timer;
	bool trim_pending;
	struct timespec trim_at;
	bool stop_seen;
	nghttp2_session_callbacks *callbacks;
	nghttp2_option *option;
	uint8_t wbuf[WRITE_BATCH];

	pthread_mutex_t lock;
	pthread_cond_t work_cond;
	/* Under lock. */
	int accept_errno;
	struct timespec accept_failing_since;
	uint64_t refused;
	/* Refusal log lines: the window and what was dropped in it. */
	time_t refusal_window;
	unsigned refusal_logged, refusal_dropped;
	bool stop_requested;
	struct timespec grace_deadline;
	struct call *work_head, *work_tail;
	size_t work_len;
	struct call *done_head;
	pthread_t *workers;
	unsigned n_workers, idle_workers, max_workers;
	bool stopping_workers;
	int loop_nice, base_nice; /* see csi_server_config.loop_nice */
};

/* Tags for epoll: the listener and the eventfd; anything else is a struct conn. */
static char tag_listen, tag_wake;

static void now_mono(struct timespec *t)
{
	clock_gettime(CLOCK_MONOTONIC, t);
}

static double elapsed_s(const struct timespec *start)
{
	struct timespec now;
	now_mono(&now);
	return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static bool after(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec > b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec >= b->tv_nsec);
}

static struct timespec add_ms(struct timespec t, long ms)
{
	t.tv_sec += ms / 1000;
	t.tv_nsec += (ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

static long ms_until(const struct timespec *t, const struct timespec *now)
{
	long ms = (long)(t->tv_sec - now->tv_sec) * 1000 + (t->tv_nsec - now->tv_nsec) / 1000000;

	return ms < 0 ? 0 : ms + 1;
}

static void timer_at(struct csi_server *s, const struct timespec *t)
{
	if (after(&s->next_timer, t))
		s->next_timer = *t;
}

static void wake(struct csi_server *s)
{
	uint64_t one = 1;

	if (write(s->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warning_errno(errno, "Cannot wake the gRPC event loop: %m");
}

/* ---- logging (as transport.c) ------------------------------------------------ */

/*
 * Whether one more refusal may be logged: a client that resets thousands of
 * streams or opens thousands of connections must not turn each into a log
 * line. At most REFUSAL_LOG_BURST lines per REFUSAL_LOG_WINDOW_S, then one
 * line with the number dropped (any thread).
 */
static bool refusal_log_allowed(struct csi_server *s)
{
	struct timespec now;
	unsigned dropped = 0;
	bool allowed;

	now_mono(&now);
	pthread_mutex_lock(&s->lock);
	if (now.tv_sec - s->refusal_window >= REFUSAL_LOG_WINDOW_S) {
		dropped = s->refusal_dropped;
		s->refusal_window = now.tv_sec;
		s->refusal_logged = s->refusal_dropped = 0;
	}
	allowed = s->refusal_logged < REFUSAL_LOG_BURST;
	if (allowed)
		s->refusal_logged++;
	else
		s->refusal_dropped++;
	pthread_mutex_unlock(&s->lock);
	if (dropped)
		log_warning("gRPC server: %u more refused calls or connections in %d s were not logged", dropped,
			    REFUSAL_LOG_WINDOW_S);
	return allowed;
}

/*
 * refusal: the transport refused or cancelled the call (a client's doing,
 * rate-limited in the log); otherwise the handler's outcome (always logged).
 */
static void log_outcome(struct call *c, enum csi_code code, const char *message, const char *volume, bool refusal)
{
	struct csi_server *s = c->s;
	double secs = elapsed_s(&c->start);
	char dur[32];
	int v;

	if (s->cfg.observer)
		s->cfg.observer(c->method ? c->method->path : c->c.method, code, secs, s->cfg.observer_userdata);
	snprintf(dur, sizeof(dur), "%.6fs", secs);
	v = code != CSI_CODE_OK ? 0 : (c->method && c->method->slow) ? 1 : 5;
	if (v > log_get_verbosity())
		return;
	if (refusal && code != CSI_CODE_OK && !refusal_log_allowed(s))
		return;
	if (code == CSI_CODE_OK)
		log_structured(LOG_LEVEL_INFO, v, __FILE__, __LINE__, "gRPC call", "method", c->c.method, "volume",
			       volume, "duration", dur, "code", csi_code_name(code), (const char *)NULL);
	else
		log_structured(LOG_LEVEL_ERROR, 0, __FILE__, __LINE__, "gRPC call failed", "method", c->c.method,
			       "volume", volume, "duration", dur, "code", csi_code_name(code), "message", message,
			       (const char *)NULL);
}

/* Log and observe the call's own outcome, unless its deadline was logged already. */
static void call_finish_log(struct call *c, bool refusal)
{
	if (!atomic_exchange(&c->logged, true)) {
		log_outcome(c, c->c.code, c->c.message, c->c.volume, refusal);
		return;
	}
	log_v(1, "gRPC call %s (volume \"%s\") finished after its deadline: %s", c->c.method, c->c.volume,
	      csi_code_name(c->c.code));
}

/* A connection-level refusal (flood, stall, eviction, not HTTP/2), rate-limited. */
static void log_refusal(struct csi_server *s, const char *fmt, ...) _printf_(2, 3);
static void log_refusal(struct csi_server *s, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (!refusal_log_allowed(s))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warning("gRPC server: %s", msg);
}

/* ---- calls --------------------------------------------------------------------- */

static void call_free(struct call *c)
{
	if (!c)
		return;
	if (c->body)
		c->s->body_bytes -= c->body_len;
	free(c->body);
	if (c->request)
		protobuf_c_message_free_unpacked(c->request, NULL);
	arena_free(c->c.arena);
	free(c->resp);
	free(c);
}

static void call_unlink(struct call *c)
{
	struct conn *conn = c->conn;

	if (!conn)
		return;
	if (c->cprev)
		c->cprev->cnext = c->cnext;
	else
		conn->calls = c->cnext;
	if (c->cnext)
		c->cnext->cprev = c->cprev;
	c->cprev = c->cnext = NULL;
	conn->n_calls--;
	c->conn = NULL;
}

/* The stream is gone (closed, reset, or its connection dropped). */
static void call_detach(struct call *c)
{
	call_unlink(c);
	atomic_store(&c->abandoned, true);
	if (c->method && !c->answered && !atomic_load(&c->logged) && !c->in_worker) {
		/* Gone before an answer: the client cancelled or its connection broke. */
		atomic_store(&c->logged, true);
		if (c->message_done)
			log_outcome(c, CSI_CODE_CANCELLED, "the client cancelled the call or closed its connection", "",
				    true);
		else if (c->s->cfg.observer)
			/* Before its request was complete (as a rapid-reset flood does): counted, not logged. */
			c->s->cfg.observer(c->method->path, CSI_CODE_CANCELLED, elapsed_s(&c->start),
					   c->s->cfg.observer_userdata);
	}
	if (!c->in_worker)
		call_free(c);
}

/*
 * Run the handler and pack its response (a worker, or the loop for fast
 * methods). The request and the arena go as soon as the bytes are packed.
 */
static void call_run_handler(struct call *c)
{
	ProtobufCMessage *resp = NULL;
	int r;

	r = c->method->handler(&c->c, c->s->cfg.userdata, c->request, &resp);
	if (r < 0 && c->c.code == CSI_CODE_OK)
		csi_fail(&c->c, CSI_CODE_INTERNAL, "internal error");
	if (r >= 0 && !resp)
		csi_fail(&c->c, CSI_CODE_INTERNAL, "handler returned no response");
	if (r >= 0 && resp) {
		size_t len = protobuf_c_message_get_packed_size(resp);

		c->c.code = CSI_CODE_OK;
		c->resp = len <= UINT32_MAX ? malloc(GRPC_PREFIX + len) : NULL;
		if (!c->resp) {
			csi_fail(&c->c, CSI_CODE_RESOURCE_EXHAUSTED, "out of memory for a %zu byte response", len);
		} else {
			c->resp[0] = 0;
			c->resp[1] = (uint8_t)(len >> 24);
			c->resp[2] = (uint8_t)(len >> 16);
			c->resp[3] = (uint8_t)(len >> 8);
			c->resp[4] = (uint8_t)len;
			protobuf_c_message_pack(resp, c->resp + GRPC_PREFIX);
			c->resp_len = GRPC_PREFIX + len;
		}
	}
	call_finish_log(c, false);
	protobuf_c_message_free_unpacked(c->request, NULL);
	c->request = NULL;
	arena_free(c->c.arena);
	c->c.arena = NULL;
}

/* grpc-message: bytes outside 0x20-0x7e and '%' as %XX (the gRPC spec). */
static void percent_encode(const char *in, char *out, size_t out_size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 <= out_size; p++) {
		if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = 0;
}

#define NV(n, v)                                                                                   \
	{                                                                                          \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE     \
	}

static ssize_t read_response(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
			     uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct call *c = source->ptr;
	size_t n = MIN(length, c->resp_len - c->resp_off);

	memcpy(buf, c->resp + c->resp_off, n);
	c->resp_off += n;
	now_mono(&c->progress);
	if (c->resp_off == c->resp_len) {
		nghttp2_nv trailers[] = { NV("grpc-status", "0") };

		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
		if (nghttp2_submit_trailer(session, stream_id, trailers, ELEMENTSOF(trailers)) == 0)
			*data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
	}
	return (ssize_t)n;
}

/* A status without a message: trailers-only (one HEADERS frame that ends the stream). */
static void submit_status(struct call *c, const char *http_status, enum csi_code code, const char *message)
{
	char codebuf[16], msg[3 * sizeof(c->c.message) + 1];
	nghttp2_nv nva[5] = { NV(":status", http_status), NV("content-type", "application/grpc") };
	size_t n = 2;

	snprintf(codebuf, sizeof(codebuf), "%d", (int)code);
	nva[n++] = (nghttp2_nv)NV("grpc-status", codebuf);
	if (message && *message) {
		percent_encode(message, msg, sizeof(msg));
		nva[n++] = (nghttp2_nv)NV("grpc-message", msg);
	}
	if (code == CSI_CODE_UNIMPLEMENTED && !c->encoding_identity)
		nva[n++] = (nghttp2_nv)NV("grpc-accept-encoding", "identity");
	if (nghttp2_submit_response(c->conn->session, c->stream_id, nva, n, NULL) != 0)
		nghttp2_submit_rst_stream(c->conn->session, NGHTTP2_FLAG_NONE, c->stream_id, NGHTTP2_INTERNAL_ERROR);
}

/* Send the call's outcome (loop thread; the stream exists and has no answer yet). */
static void call_submit(struct call *c)
{
	c->answered = true;
	now_mono(&c->progress);
	if (c->c.code == CSI_CODE_OK && c->resp) {
		nghttp2_nv nva[] = { NV(":status", "200"), NV("content-type", "application/grpc") };
		nghttp2_data_provider prd = { .source.ptr = c, .read_callback = read_response };

		if (nghttp2_submit_response(c->conn->session, c->stream_id, nva, ELEMENTSOF(nva), &prd) != 0)
			nghttp2_submit_rst_stream(c->conn->session, NGHTTP2_FLAG_NONE, c->stream_id,
						  NGHTTP2_INTERNAL_ERROR);
		return;
	}
	submit_status(c, "200", c->c.code, c->c.message);
}

/* Fail the call before it reached a handler (loop thread). */
static void call_reject(struct call *c, const char *http_status, enum csi_code code, const char *fmt, ...)
	_printf_(4, 5);
static void call_reject(struct call *c, const char *http_status, enum csi_code code, const char *fmt, ...)
{
	va_list ap;

	c->c.code = code;
	va_start(ap, fmt);
	vsnprintf(c->c.message, sizeof(c->c.message), fmt, ap);
	va_end(ap);
	if (c->body) {
		c->s->body_bytes -= c->body_len;
		free(TAKE_PTR(c->body));
	}
	c->message_done = true; /* ignore what else comes */
	atomic_store(&c->abandoned, true);
	call_finish_log(c, true);
	c->answered = true;
	submit_status(c, http_status, code, c->c.message);
}

static void *worker_thread(void *arg);

/* Under s->lock. A failure is logged; the queued call then waits for a running worker. */
static void start_worker(struct csi_server *s)
{
	pthread_attr_t attr;
	int r;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 512 * 1024);
	r = pthread_create(&s->workers[s->n_workers], &attr, worker_thread, s);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		log_error_errno(r, "Cannot start a gRPC worker thread (%u running): %m", s->n_workers);
		return;
	}
	s->n_workers++;
}

static void enqueue_work(struct call *c)
{
	struct csi_server *s = c->s;
	bool full;

	pthread_mutex_lock(&s->lock);
	full = s->work_len >= WORK_QUEUE_MAX;
	/*
	 * Workers start on demand, up to max_workers, and then stay: an idle
	 * driver has none, a busy one as many as slow calls ran at once. A
	 * worker that was signalled but has not woken up yet still counts as
	 * idle, hence the comparison with the queue.
	 */
	if (!full && s->work_len + 1 > s->idle_workers && s->n_workers < s->max_workers)
		start_worker(s);
	if (s->n_workers == 0)
		full = true;
	if (!full) {
		c->next = NULL;
		if (s->work_tail)
			s->work_tail->next = c;
		else
			s->work_head = c;
		s->work_tail = c;
		s->work_len++;
		c->in_worker = true;
		pthread_cond_signal(&s->work_cond);
	}
	pthread_mutex_unlock(&s->lock);
	if (full) {
		csi_fail(&c->c, CSI_CODE_RESOURCE_EXHAUSTED, "too many requests in progress (%d queued)",
			 WORK_QUEUE_MAX);
		call_finish_log(c, true);
		call_submit(c);
	}
}

/* The request message is complete: validate, unpack, run or queue (loop thread). */
static void call_dispatch(struct call *c)
{
	char err[CSI_VALIDATE_ERROR_MAX];
	int r;

	r = csi_validate_request(c->method->input, c->body, c->body_len, err, sizeof(err));
	if (r < 0) {
		call_reject(c, "200", r == -ENOMEM ? CSI_CODE_RESOURCE_EXHAUSTED : CSI_CODE_INVALID_ARGUMENT, "%s", err);
		return;
	}
	c->request = protobuf_c_message_unpack(c->method->input, NULL, c->body_len, c->body);
	c->s->body_bytes -= c->body_len;
	free(TAKE_PTR(c->body));
	if (!c->request) {
		call_reject(c, "200", CSI_CODE_INVALID_ARGUMENT, "the request is not a valid %s message",
			    c->method->input->name);
		return;
	}
	c->c.arena = arena_new(RESPONSE_ARENA_LIMIT);
	if (!c->c.arena) {
		call_reject(c, "200", CSI_CODE_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (c->method->slow) {
		enqueue_work(c);
		return;
	}
	call_run_handler(c);
	call_submit(c);
}

static void *worker_thread(void *arg)
{
	struct csi_server *s = arg;

	/* A new thread inherits its creator's nice value: the loop's, raised.
	 * Slow calls and the tools they fork run at the process's own. */
	(void)pthread_setname_np(pthread_self(), "grpc-worker");
	if (s->loop_nice != 0)
		(void)setpriority(PRIO_PROCESS, (id_t)gettid(), s->base_nice);
	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct call *c;

		while (!s->work_head && !s->stopping_workers) {
			s->idle_workers++;
			pthread_cond_wait(&s->work_cond, &s->lock);
			s->idle_workers--;
		}
		if (!s->work_head)
			break;
		c = s->work_head;
		s->work_head = c->next;
		if (!s->work_head)
			s->work_tail = NULL;
		s->work_len--;
		pthread_mutex_unlock(&s->lock);

		if (atomic_load(&c->abandoned)) {
			/* The client is gone or its deadline passed while the call was queued. */
			csi_fail(&c->c, CSI_CODE_CANCELLED, "cancelled or past its deadline before a worker took it");
			call_finish_log(c, true);
		} else {
			call_run_handler(c);
		}

		pthread_mutex_lock(&s->lock);
		c->next = s->done_head;
		s->done_head = c;
		pthread_mutex_unlock(&s->lock);
		wake(s);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* ---- request headers ------------------------------------------------------------- */

static bool header_is(const uint8_t *name, size_t len, const char *want)
{
	return len == strlen(want) && memcmp(name, want, len) == 0;
}

/* "application/grpc", optionally followed by "+<format>" or ";<parameters>". */
static bool content_type_is_grpc(const uint8_t *v, size_t len)
{
	static const char want[] = "application/grpc";
	size_t n = sizeof(want) - 1;

	if (len < n || strncasecmp((const char *)v, want, n) != 0)
		return false;
	return len == n || v[n] == '+' || v[n] == ';';
}

/* grpc-timeout: 1 to 8 digits and a unit: H, M, S, m (milli), u (micro), n (nano). */
static int parse_timeout(const uint8_t *v, size_t len, struct timespec *ret)
{
	uint64_t n = 0, sec, nsec;
	struct timespec t;

	if (len < 2 || len > 9)
		return -EINVAL;
	for (size_t i = 0; i + 1 < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -EINVAL;
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	switch (v[len - 1]) {
	case 'H':
		sec = n * 3600, nsec = 0;
		break;
	case 'M':
		sec = n * 60, nsec = 0;
		break;
	case 'S':
		sec = n, nsec = 0;
		break;
	case 'm':
		sec = n / 1000, nsec = (n % 1000) * 1000000;
		break;
	case 'u':
		sec = n / 1000000, nsec = (n % 1000000) * 1000;
		break;
	case 'n':
		sec = n / 1000000000, nsec = n % 1000000000;
		break;
	default:
		return -EINVAL;
	}
	now_mono(&t);
	t.tv_sec += (time_t)sec;
	t.tv_nsec += (long)nsec;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	*ret = t;
	return 0;
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct conn *conn = user_data;
	struct call *c;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
	c->s = conn->s;
	c->conn = conn;
	c->stream_id = frame->hd.stream_id;
	c->encoding_identity = true;
	c->c.method = "unknown";
	now_mono(&c->start);
	c->cnext = conn->calls;
	if (conn->calls)
		conn->calls->cprev = c;
	conn->calls = c;
	if (conn->n_calls++ == 0) {
		/* Keepalive pings run while the connection has calls. */
		struct timespec due = add_ms(conn->last_rx, CONN_KEEPALIVE_MS);

		timer_at(conn->s, &due);
	}
	nghttp2_session_set_stream_user_data(session, c->stream_id, c);
	{
		struct timespec due = add_ms(c->start, REQUEST_TIMEOUT_MS);

		timer_at(conn->s, &due);
	}
	return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
		     const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data)
{
	struct call *c;

	/* Trailers of the client (HEADERS after DATA) carry nothing gRPC uses. */
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	c = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (!c)
		return 0;
	/* As HTTP/2 counts a header list: name + value + 32 per field. */
	c->header_bytes += namelen + valuelen + 32;
	if (c->header_bytes > MAX_HEADER_BYTES)
		return 0;
	if (header_is(name, namelen, ":method")) {
		c->post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
	} else if (header_is(name, namelen, ":path")) {
		c->path_too_long = valuelen >= sizeof(c->path);
		if (!c->path_too_long) {
			memcpy(c->path, value, valuelen);
			c->path[valuelen] = 0;
		}
	} else if (header_is(name, namelen, "te")) {
		c->te_trailers = valuelen == 8 && memcmp(value, "trailers", 8) == 0;
	} else if (header_is(name, namelen, "content-type")) {
		c->content_type_ok = content_type_is_grpc(value, valuelen);
	} else if (header_is(name, namelen, "grpc-encoding")) {
		c->encoding_identity = valuelen == 8 && memcmp(value, "identity", 8) == 0;
		snprintf(c->encoding, sizeof(c->encoding), "%.*s", (int)MIN(valuelen, sizeof(c->encoding) - 1),
			 (const char *)value);
	} else if (header_is(name, namelen, "grpc-timeout")) {
		c->timeout_bad = parse_timeout(value, valuelen, &c->deadline) < 0;
		c->has_deadline = !c->timeout_bad;
	}
	return 0;
}

static const struct csi_method *find_method(struct csi_server *s, const char *path)
{
	for (size_t i = 0; i < s->cfg.n_methods; i++)
		if (strcmp(path, s->cfg.methods[i].path) == 0)
			return &s->cfg.methods[i];
	return NULL;
}

/* All request headers are in: check them before any body arrives. */
static void call_headers_done(struct call *c)
{
	const char *name;

	if (c->header_bytes > MAX_HEADER_BYTES) {
		call_reject(c, "200", CSI_CODE_RESOURCE_EXHAUSTED, "request headers larger than %d bytes",
			    MAX_HEADER_BYTES);
		return;
	}
	if (!c->post) {
		call_reject(c, "405", CSI_CODE_INTERNAL, "gRPC requests must use the POST method");
		return;
	}
	if (!c->content_type_ok) {
		call_reject(c, "415", CSI_CODE_INTERNAL, "content-type must be application/grpc");
		return;
	}
	/* gRPC requires it, as gRPC core does: without it a proxy may have dropped the trailers. */
	if (!c->te_trailers) {
		call_reject(c, "200", CSI_CODE_INTERNAL, "the te header must be \"trailers\"");
		return;
	}
	c->method = c->path_too_long ? NULL : find_method(c->s, c->path);
	if (!c->method) {
		call_reject(c, "200", CSI_CODE_UNIMPLEMENTED, "unknown method %s%s", c->path,
			    c->path_too_long ? "... (too long)" : "");
		return;
	}
	name = strrchr(c->method->path, '/');
	c->c.method = name ? name + 1 : c->method->path;
	if (!c->encoding_identity) {
		call_reject(c, "200", CSI_CODE_UNIMPLEMENTED, "grpc-encoding \"%s\" is not supported (only identity)",
			    c->encoding);
		return;
	}
	if (c->timeout_bad) {
		call_reject(c, "200", CSI_CODE_INTERNAL, "malformed grpc-timeout header");
		return;
	}
	if (c->has_deadline)
		timer_at(c->s, &c->deadline);
}

/* The client ended its side of the stream. */
static void call_request_ended(struct call *c)
{
	if (c->answered || c->message_done)
		return;
	if (c->prefix_len == 0)
		call_reject(c, "200", CSI_CODE_INTERNAL, "the request has no message (a unary call needs one)");
	else
		call_reject(c, "200", CSI_CODE_INTERNAL, "the request ended inside its message (%zu of %zu bytes)",
			    c->prefix_len + c->body_got, GRPC_PREFIX + c->body_len);
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
			 size_t len, void *user_data)
{
	struct call *c = nghttp2_session_get_stream_user_data(session, stream_id);
	struct csi_server *s;

	if (!c || c->answered || c->message_done || !c->method)
		return 0; /* answered already, or more than one message: ignored */
	s = c->s;
	while (len > 0 && !c->message_done) {
		size_t n;

		if (c->prefix_len < GRPC_PREFIX) {
			uint32_t msg_len;

			n = MIN(len, GRPC_PREFIX - c->prefix_len);
			memcpy(c->prefix + c->prefix_len, data, n);
			c->prefix_len += n;
			data += n;
			len -= n;
			if (c->prefix_len < GRPC_PREFIX)
				break;
			msg_len = (uint32_t)c->prefix[1] << 24 | (uint32_t)c->prefix[2] << 16 |
				  (uint32_t)c->prefix[3] << 8 | c->prefix[4];
			if (c->prefix[0] > 1) {
				call_reject(c, "200", CSI_CODE_INTERNAL, "invalid compressed flag %u in the message prefix",
					    c->prefix[0]);
				return 0;
			}
			if (c->prefix[0] == 1) {
				/* grpc-encoding other than identity was refused with the headers. */
				call_reject(c, "200", CSI_CODE_INTERNAL,
					    "compressed message without a grpc-encoding header");
				return 0;
			}
			if (msg_len > s->cfg.max_request_bytes) {
				call_reject(c, "200", CSI_CODE_RESOURCE_EXHAUSTED,
					    "request message larger than max (%u vs. %zu bytes)", msg_len,
					    s->cfg.max_request_bytes);
				return 0;
			}
			if (s->body_bytes + msg_len > BODY_BYTES_MAX) {
				call_reject(c, "200", CSI_CODE_RESOURCE_EXHAUSTED,
					    "too many request bytes in progress (%zu), try again", s->body_bytes);
				return 0;
			}
			c->body = malloc(msg_len ? msg_len : 1);
			if (!c->body) {
				call_reject(c, "200", CSI_CODE_RESOURCE_EXHAUSTED, "out of memory for a %u byte request",
					    msg_len);
				return 0;
			}
			c->body_len = msg_len;
			s->body_bytes += msg_len;
		} else {
			n = MIN(len, c->body_len - c->body_got);
			memcpy(c->body + c->body_got, data, n);
			c->body_got += n;
			data += n;
			len -= n;
		}
		if (c->body && c->body_got == c->body_len) {
			c->message_done = true;
			call_dispatch(c);
		}
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct conn *conn = user_data;
	struct call *c;

	if (!conn->preface_ok) {
		/* The client magic and a first frame (its SETTINGS) arrived. */
		conn->preface_ok = true;
		conn->s->n_pending--;
	}
	switch (frame->hd.type) {
	case NGHTTP2_PING:
		if (frame->hd.flags & NGHTTP2_FLAG_ACK)
			conn->ping_out = false;
		return 0;
	case NGHTTP2_HEADERS:
		c = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
		if (c && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
			call_headers_done(c);
		break;
	case NGHTTP2_DATA:
		c = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
		break;
	default:
		return 0;
	}
	if (c && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		call_request_ended(c);
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data)
{
	struct call *c = nghttp2_session_get_stream_user_data(session, stream_id);

	if (c) {
		(void)nghttp2_session_set_stream_user_data(session, stream_id, NULL);
		call_detach(c);
	}
	return 0;
}

/*
 * We ended the stream while the client is still sending (an early refusal, a
 * deadline): ask it to stop with RST_STREAM NO_ERROR, as HTTP/2 allows after a
 * complete response (RFC 9113, 8.1). Done once the frame is out, so that the
 * reset cannot overtake the response.
 */
static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct conn *conn = user_data;

	/* nghttp2 ends a connection that breaks the protocol or floods it (resets, CONTINUATION, ...). */
	if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR)
		log_refusal(conn->s, "closing a connection with GOAWAY %s: %.*s",
			    nghttp2_http2_strerror(frame->goaway.error_code), (int)MIN(frame->goaway.opaque_data_len, 120),
			    frame->goaway.opaque_data ? (const char *)frame->goaway.opaque_data : "");
	if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
	    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    nghttp2_session_get_stream_remote_close(session, frame->hd.stream_id) == 0)
		(void)nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
	return 0;
}

/* ---- connections ------------------------------------------------------------------ */

static void conn_close(struct conn *conn, struct conn **graveyard)
{
	struct csi_server *s = conn->s;

	if (conn->dead)
		return;
	conn->dead = true;
	while (conn->calls)
		call_detach(conn->calls);
	(void)epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, conn->fd, NULL);
	close(conn->fd);
	nghttp2_session_del(conn->session);
	conn->session = NULL;
	free(conn->out);
	conn->out = NULL;
	if (!conn->preface_ok)
		s->n_pending--;
	if (conn->prev)
		conn->prev->next = conn->next;
	else
		s->conns = conn->next;
	if (conn->next)
		conn->next->prev = conn->prev;
	s->n_conns--;
	/*
	 * Each session held a few tens of KiB (frame buffers, HPACK tables) in
	 * the middle of the heap, where M_TRIM_THRESHOLD does not reach: after
	 * 64 clients had gone, 2.4 MB stayed resident until malloc_trim().
	 * Once a second at most, after a close.
	 */
	if (!s->trim_pending) {
		struct timespec now;

		now_mono(&now);
		s->trim_pending = true;
		s->trim_at = add_ms(now, TRIM_DELAY_MS);
		timer_at(s, &s->trim_at);
	}
	/* Freed at the end of the loop iteration: events of this round may still name it. */
	conn->next = *graveyard;
	*graveyard = conn;
}

static bool conn_out_pending(const struct conn *conn)
{
	return conn->out_off < conn->out_len;
}

/*
 * Send a and then b; what the socket does not take waits in conn->out, and
 * reading stops until it is out. 0 when all went, 1 when some waits, -errno.
 */
static int conn_send(struct conn *conn, const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
	struct iovec iov[2] = { { (void *)(uintptr_t)a, a_len }, { (void *)(uintptr_t)b, b_len } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = b_len ? 2 : 1 };
	size_t total = a_len + b_len, done;
	ssize_t w;

	w = sendmsg(conn->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w < 0) {
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		w = 0;
	}
	done = (size_t)w;
	if (done == total)
		return 0;
	/* The client does not read fast enough. */
	conn->out = malloc(total - done);
	if (!conn->out)
		return -ENOMEM;
	if (done < a_len) {
		memcpy(conn->out, a + done, a_len - done);
		if (b_len)
			memcpy(conn->out + (a_len - done), b, b_len);
	} else {
		memcpy(conn->out, b + (done - a_len), total - done);
	}
	conn->out_len = total - done;
	conn->out_off = 0;
	/* The stall timer runs from here: see run_timers(). */
	now_mono(&conn->out_progress);
	{
		struct timespec due = add_ms(conn->out_progress, STALL_TIMEOUT_MS);

		timer_at(conn->s, &due);
	}
	return 1;
}

/* Write what nghttp2 has to send; what the socket does not take waits in conn->out. */
static int conn_flush(struct conn *conn)
{
	ssize_t w;

	if (conn_out_pending(conn)) {
		w = send(conn->fd, conn->out + conn->out_off, conn->out_len - conn->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -errno;
		if (w > 0)
			now_mono(&conn->out_progress);
		conn->out_off += (size_t)w;
		if (conn_out_pending(conn))
			return 0;
		free(conn->out);
		conn->out = NULL;
		conn->out_len = conn->out_off = 0;
	}
	for (;;) {
		uint8_t *buf = conn->s->wbuf;
		const uint8_t *data, *big = NULL;
		size_t len = 0, big_len = 0;
		ssize_t n;
		int r;

		/*
		 * nghttp2 hands out one frame at a time: gather them, so that a
		 * burst of small frames (resets, ACKs, trailers) is one send(). On
		 * a unix socket each send() is charged a few hundred bytes of
		 * buffer besides its data: 300 separate 13-byte RST_STREAMs filled
		 * it and stalled the connection.
		 */
		for (;;) {
			n = nghttp2_session_mem_send(conn->session, &data);
			if (n < 0)
				return -EIO;
			if (n == 0)
				break;
			if (len + (size_t)n > WRITE_BATCH) {
				/* Valid until the next nghttp2 call: sent (or kept) now. */
				big = data;
				big_len = (size_t)n;
				break;
			}
			memcpy(buf + len, data, (size_t)n);
			len += (size_t)n;
		}
		if (len == 0 && !big)
			return 0;
		r = conn_send(conn, buf, len, big, big_len);
		if (r != 0)
			return r < 0 ? r : 0; /* error, or the rest waits in conn->out */
	}
}

/* After reading or submitting: write, then close or re-arm. */
static void conn_after_io(struct conn *conn, struct conn **graveyard)
{
	struct csi_server *s = conn->s;
	uint32_t ev;
	int r;

	if (conn->dead)
		return;
	r = conn_flush(conn);
	if (r < 0) {
		log_v(5, "gRPC connection: write failed: %s", strerror(-r));
		conn_close(conn, graveyard);
		return;
	}
	if (!conn_out_pending(conn) && !nghttp2_session_want_read(conn->session) &&
	    !nghttp2_session_want_write(conn->session)) {
		conn_close(conn, graveyard);
		return;
	}
	ev = conn_out_pending(conn) ? EPOLLOUT : EPOLLIN;
	if (ev != conn->events) {
		struct epoll_event e = { .events = ev, .data.ptr = conn };

		if (epoll_ctl(s->epoll_fd, EPOLL_CTL_MOD, conn->fd, &e) == 0)
			conn->events = ev;
	}
}

static void conn_read(struct conn *conn, struct conn **graveyard)
{
	uint8_t buf[READ_CHUNK];

	for (int i = 0; i < 4 && !conn->dead; i++) {
		ssize_t n = recv(conn->fd, buf, sizeof(buf), MSG_DONTWAIT);
		ssize_t r;

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			conn_close(conn, graveyard);
			return;
		}
		if (n == 0) {
			conn_close(conn, graveyard);
			return;
		}
		now_mono(&conn->last_rx);
		r = nghttp2_session_mem_recv(conn->session, buf, (size_t)n);
		if (r < 0) {
			/* Not HTTP/2 (a bad preface), a flood, or out of memory. */
			if (r == NGHTTP2_ERR_BAD_CLIENT_MAGIC)
				log_refusal(conn->s, "closing a connection that does not speak HTTP/2 (%s)",
					    nghttp2_strerror((int)r));
			else
				log_refusal(conn->s, "closing a connection: %s", nghttp2_strerror((int)r));
			(void)conn_flush(conn);
			conn_close(conn, graveyard);
			return;
		}
		if ((size_t)n < sizeof(buf))
			break;
	}
	conn_after_io(conn, graveyard);
}

static int conn_new(struct csi_server *s, int fd, struct conn **graveyard)
{
	nghttp2_settings_entry settings[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, CONN_MAX_STREAMS },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WINDOW_BYTES },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_BYTES },
	};
	struct epoll_event e = { .events = EPOLLIN };
	struct conn *conn = calloc(1, sizeof(*conn));

	if (!conn)
		return -ENOMEM;
	conn->s = s;
	conn->fd = fd;
	if (nghttp2_session_server_new2(&conn->session, s->callbacks, conn, s->option) != 0) {
		free(conn);
		return -ENOMEM;
	}
	if (nghttp2_submit_settings(conn->session, NGHTTP2_FLAG_NONE, settings, ELEMENTSOF(settings)) != 0 ||
	    nghttp2_session_set_local_window_size(conn->session, NGHTTP2_FLAG_NONE, 0, WINDOW_BYTES) != 0) {
		nghttp2_session_del(conn->session);
		free(conn);
		return -ENOMEM;
	}
	e.data.ptr = conn;
	if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &e) < 0) {
		int r = -errno;

		nghttp2_session_del(conn->session);
		free(conn);
		return r;
	}
	conn->events = EPOLLIN;
	now_mono(&conn->last_rx);
	conn->handshake_deadline = add_ms(conn->last_rx, HANDSHAKE_TIMEOUT_MS);
	timer_at(s, &conn->handshake_deadline);
	conn->next = s->conns;
	if (s->conns)
		s->conns->prev = conn;
	s->conns = conn;
	s->n_conns++;
	s->n_pending++;
	conn_after_io(conn, graveyard); /* our SETTINGS */
	return 0;
}

/* ---- accepting (the EMFILE rules of transport.c) --------------------------------- */

/*
 * Whether one more descriptor can be taken without eating into the reserve.
 * fcntl(F_DUPFD) returns the lowest free number, about the number in use.
 */
static int fd_headroom(struct csi_server *s)
{
	rlim_t reserve = MIN((rlim_t)FD_RESERVE, s->fd_limit / 4);
	int fd = fcntl(s->wake_fd, F_DUPFD_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	close(fd);
	if (s->fd_limit != RLIM_INFINITY && (rlim_t)fd + reserve >= s->fd_limit)
		return -EMFILE;
	return 0;
}

static void accept_result(struct csi_server *s, int err)
{
	bool started = false, recovered = false;
	double failed_for = 0;
	uint64_t attempts = 0;

	pthread_mutex_lock(&s->lock);
	if (err == 0) {
		recovered = s->accept_errno != 0;
		if (recovered) {
			failed_for = elapsed_s(&s->accept_failing_since);
			attempts = s->refused;
		}
		s->accept_errno = 0;
		s->refused = 0;
	} else {
		started = s->accept_errno == 0;
		if (started) {
			s->accept_errno = err;
			now_mono(&s->accept_failing_since);
		}
		s->refused++;
	}
	pthread_mutex_unlock(&s->lock);
	if (started)
		log_error_errno(err, "Cannot accept gRPC connections on %s (open-file limit %llu, %d kept in reserve): %m; retrying every %d ms",
				s->cfg.endpoint, (unsigned long long)s->fd_limit, FD_RESERVE, ACCEPT_BACKOFF_MS);
	if (recovered)
		log_info("Accepting gRPC connections again after %.1f s (%llu attempts failed)", failed_for,
			 (unsigned long long)attempts);
}

static void start_backoff(struct csi_server *s)
{
	struct timespec now;

	now_mono(&now);
	s->backoff = true;
	s->backoff_until = add_ms(now, ACCEPT_BACKOFF_MS);
	timer_at(s, &s->backoff_until);
}

/* Poll the listener unless backing off, stopping or full (clients then wait in the backlog). */
static void update_listen(struct csi_server *s)
{
	bool want = s->listen_fd >= 0 && !s->stop_seen && !s->backoff && s->n_pending < PENDING_MAX;
	struct epoll_event e = { .events = want ? EPOLLIN : 0, .data.ptr = &tag_listen };

	if (want != s->listening && epoll_ctl(s->epoll_fd, EPOLL_CTL_MOD, s->listen_fd, &e) == 0)
		s->listening = want;
}

/*
 * At conn_max connections: close the one a new client can best replace, a
 * connection that never sent the preface (the oldest) or else the one idle
 * for longest without a call in progress (GOAWAY first: a gRPC client then
 * reconnects when it needs to). false when every connection has a call.
 */
static bool evict_one(struct csi_server *s, struct conn **graveyard)
{
	struct conn *victim = NULL;

	for (struct conn *c = s->conns; c; c = c->next) {
		if (c->dead || c->n_calls > 0)
			continue;
		if (!victim || (!c->preface_ok && victim->preface_ok) ||
		    (c->preface_ok == victim->preface_ok && after(&victim->last_rx, &c->last_rx)))
			victim = c;
	}
	if (!victim)
		return false;
	log_refusal(s, "%u connections open (the limit): closing the %s one to make room for a new client",
		    s->n_conns, victim->preface_ok ? "longest idle" : "oldest silent");
	if (victim->preface_ok) {
		(void)nghttp2_submit_goaway(victim->session, NGHTTP2_FLAG_NONE,
					    nghttp2_session_get_last_proc_stream_id(victim->session), NGHTTP2_NO_ERROR,
					    NULL, 0);
		(void)conn_flush(victim);
	}
	conn_close(victim, graveyard);
	return true;
}

static void do_accept(struct csi_server *s, struct conn **graveyard)
{
	for (int i = 0; i < ACCEPT_BATCH && s->n_pending < PENDING_MAX; i++) {
		int fd, r;

		r = fd_headroom(s);
		if (r < 0) {
			accept_result(s, -r);
			start_backoff(s);
			return;
		}
		fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN)
				return;
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			accept_result(s, errno);
			start_backoff(s);
			return;
		}
		accept_result(s, 0);
		if (s->n_conns >= s->conn_max && !evict_one(s, graveyard)) {
			/* Every connection has a call in progress: refuse this one rather than let it wait. */
			log_refusal(s, "%u connections open, each with calls in progress: refusing a new one",
				    s->n_conns);
			close(fd);
			continue;
		}
		r = conn_new(s, fd, graveyard);
		if (r < 0) {
			log_error_errno(r, "Cannot set up a gRPC connection: %m");
			close(fd);
		}
	}
}

/* ---- the event loop ------------------------------------------------------------- */

/* The deadline passed before the call was answered: DEADLINE_EXCEEDED now. */
static void call_expire(struct call *c)
{
	if (!atomic_exchange(&c->logged, true))
		log_outcome(c, CSI_CODE_DEADLINE_EXCEEDED, "deadline exceeded", c->in_worker ? "" : c->c.volume, true);
	atomic_store(&c->abandoned, true);
	if (c->body) {
		c->s->body_bytes -= c->body_len;
		free(TAKE_PTR(c->body));
	}
	c->message_done = true;
	c->answered = true;
	submit_status(c, "200", CSI_CODE_DEADLINE_EXCEEDED, "deadline exceeded");
}

/* A call's deadline, the arrival of its request, the progress of its response. */
static void call_timers(struct call *c, const struct timespec *now)
{
	struct csi_server *s = c->s;
	struct timespec due;

	if (c->answered) {
		/* The response waits for flow-control window the client never gives (nor resets the stream). */
		if (!c->resp || c->resp_off >= c->resp_len || c->reset_sent)
			return;
		due = add_ms(c->progress, STALL_TIMEOUT_MS);
		if (!after(now, &due)) {
			timer_at(s, &due);
			return;
		}
		log_refusal(s, "resetting a stream whose client took no response bytes for %d ms (%s, %zu of %zu sent)",
			    STALL_TIMEOUT_MS, c->c.method, c->resp_off, c->resp_len);
		c->reset_sent = true;
		(void)nghttp2_submit_rst_stream(c->conn->session, NGHTTP2_FLAG_NONE, c->stream_id, NGHTTP2_CANCEL);
		return;
	}
	if (c->has_deadline) {
		if (after(now, &c->deadline)) {
			call_expire(c);
			return;
		}
		timer_at(s, &c->deadline);
	}
	if (c->message_done)
		return; /* with a handler or a worker */
	due = add_ms(c->start, REQUEST_TIMEOUT_MS);
	if (after(now, &due))
		call_reject(c, "200", CSI_CODE_RESOURCE_EXHAUSTED, "the request message did not arrive within %d ms",
			    REQUEST_TIMEOUT_MS);
	else
		timer_at(s, &due);
}

static void run_timers(struct csi_server *s, struct conn **graveyard)
{
	struct timespec now, next;
	struct conn *conn, *cnext;

	now_mono(&now);
	next = now;
	next.tv_sec += 3600;
	s->next_timer = next;
	if (s->trim_pending) {
		if (after(&now, &s->trim_at)) {
			s->trim_pending = false;
			(void)malloc_trim(0);
		} else {
			timer_at(s, &s->trim_at);
		}
	}
	if (s->backoff) {
		if (after(&now, &s->backoff_until))
			s->backoff = false;
		else
			timer_at(s, &s->backoff_until);
	}
	for (conn = s->conns; conn; conn = cnext) {
		cnext = conn->next;
		if (!conn->preface_ok) {
			if (after(&now, &conn->handshake_deadline)) {
				log_refusal(s, "closing a connection that sent no HTTP/2 preface within %d ms",
					    HANDSHAKE_TIMEOUT_MS);
				conn_close(conn, graveyard);
				continue;
			}
			timer_at(s, &conn->handshake_deadline);
		}
		if (conn->ping_out) {
			if (after(&now, &conn->ping_deadline)) {
				log_refusal(s, "closing a connection that did not answer a ping within %d ms",
					    CONN_KEEPALIVE_TIMEOUT_MS);
				conn_close(conn, graveyard);
				continue;
			}
			timer_at(s, &conn->ping_deadline);
		} else if (conn->n_calls > 0) {
			struct timespec due = add_ms(conn->last_rx, CONN_KEEPALIVE_MS);

			if (after(&now, &due) && nghttp2_submit_ping(conn->session, NGHTTP2_FLAG_NONE, NULL) == 0) {
				conn->ping_out = true;
				conn->ping_deadline = add_ms(now, CONN_KEEPALIVE_TIMEOUT_MS);
				timer_at(s, &conn->ping_deadline);
			} else {
				timer_at(s, &due);
			}
		}
		if (conn_out_pending(conn)) {
			struct timespec due = add_ms(conn->out_progress, STALL_TIMEOUT_MS);

			if (after(&now, &due)) {
				log_refusal(s, "closing a connection whose client read nothing for %d ms (%zu bytes waiting)",
					    STALL_TIMEOUT_MS, conn->out_len - conn->out_off);
				conn_close(conn, graveyard);
				continue;
			}
			timer_at(s, &due);
		}
		for (struct call *c = conn->calls; c; c = c->cnext)
			call_timers(c, &now);
		conn_after_io(conn, graveyard);
	}
}

/* Answers of the workers. */
static void process_done(struct csi_server *s, struct conn **graveyard)
{
	struct call *list;

	pthread_mutex_lock(&s->lock);
	list = s->done_head;
	s->done_head = NULL;
	pthread_mutex_unlock(&s->lock);
	while (list) {
		struct call *c = list;
		struct conn *conn = c->conn;

		list = c->next;
		c->in_worker = false;
		if (!conn) {
			call_free(c);
			continue;
		}
		if (!c->answered)
			call_submit(c);
		conn_after_io(conn, graveyard);
	}
}

/* SIGTERM: no new connections or calls; what runs may finish. */
static void begin_stop(struct csi_server *s, struct conn **graveyard)
{
	struct conn *conn, *cnext;

	s->stop_seen = true;
	if (s->listen_fd >= 0) {
		(void)epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, s->listen_fd, NULL);
		close(s->listen_fd);
		s->listen_fd = -1;
		s->listening = false;
	}
	for (conn = s->conns; conn; conn = cnext) {
		cnext = conn->next;
		if (!conn->preface_ok) {
			conn_close(conn, graveyard);
			continue;
		}
		(void)nghttp2_submit_goaway(conn->session, NGHTTP2_FLAG_NONE,
					    nghttp2_session_get_last_proc_stream_id(conn->session), NGHTTP2_NO_ERROR,
					    NULL, 0);
		conn_after_io(conn, graveyard);
	}
}

/*
 * The loop answers the fast methods (GetCapacity, Probe, NodeGetInfo, ...)
 * from memory; under load it competes for the CPU with the tools the slow
 * calls run (lvcreate, mkfs: hundreds of milliseconds of CPU each). A higher
 * priority lets it preempt them when a request arrives; it never runs long.
 */
static void loop_priority(struct csi_server *s)
{
	int target;

	if (s->loop_nice == 0)
		return;
	target = s->base_nice + s->loop_nice;
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), target) < 0)
		log_v(2, "Cannot set the gRPC loop's nice value to %d (%m): it runs at %d", target, s->base_nice);
	else
		log_v(4, "gRPC loop: nice value %d (workers: %d)", target, s->base_nice);
}

static void *loop_thread(void *arg)
{
	struct csi_server *s = arg;
	struct epoll_event evs[64];

	(void)pthread_setname_np(pthread_self(), "grpc-loop");
	loop_priority(s);

	for (;;) {
		struct conn *graveyard = NULL;
		struct timespec now, grace;
		bool stop;
		int n;

		pthread_mutex_lock(&s->lock);
		stop = s->stop_requested;
		grace = s->grace_deadline;
		pthread_mutex_unlock(&s->lock);
		if (stop && !s->stop_seen) {
			begin_stop(s, &graveyard);
			timer_at(s, &grace);
		}
		now_mono(&now);
		if (s->stop_seen) {
			struct conn *conn, *cnext;
			unsigned calls = 0;

			/* A connection without calls goes at once: its client got the GOAWAY. */
			for (conn = s->conns; conn; conn = cnext) {
				cnext = conn->next;
				calls += conn->n_calls;
				if (conn->n_calls == 0 && !conn_out_pending(conn))
					conn_close(conn, &graveyard);
			}
			if (s->conns && after(&now, &grace)) {
				log_warning("%u call(s) still running after the grace period, cancelling them", calls);
				while (s->conns)
					conn_close(s->conns, &graveyard);
			}
		}
		if (after(&now, &s->next_timer))
			run_timers(s, &graveyard);
		while (graveyard) {
			struct conn *g = graveyard;

			graveyard = g->next;
			free(g);
		}
		if (s->stop_seen && !s->conns)
			break;
		update_listen(s);

		now_mono(&now);
		n = epoll_wait(s->epoll_fd, evs, ELEMENTSOF(evs), (int)MIN(ms_until(&s->next_timer, &now), 3600000L));
		if (n < 0) {
			if (errno != EINTR) {
				log_error_errno(errno, "Waiting for gRPC events failed: %m");
				usleep(100 * 1000);
			}
			continue;
		}
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;

			if (p == &tag_listen) {
				if (s->listen_fd >= 0 && !s->stop_seen)
					do_accept(s, &graveyard);
			} else if (p == &tag_wake) {
				uint64_t v;

				(void)read(s->wake_fd, &v, sizeof(v));
			} else {
				struct conn *conn = p;

				if (conn->dead)
					continue;
				if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
					conn_read(conn, &graveyard);
				else
					conn_after_io(conn, &graveyard);
			}
		}
		process_done(s, &graveyard);
		while (graveyard) {
			struct conn *g = graveyard;

			graveyard = g->next;
			free(g);
		}
	}
	return NULL;
}

/* ---- the interface of server.h ------------------------------------------------- */

int csi_server_check(struct csi_server *s, char *reason, size_t reason_len)
{
	struct stat st;
	double failed_for = 0;
	int err, r;

	pthread_mutex_lock(&s->lock);
	err = s->accept_errno;
	if (err)
		failed_for = elapsed_s(&s->accept_failing_since);
	pthread_mutex_unlock(&s->lock);
	if (err && failed_for >= ACCEPT_FAILING_GRACE_S) {
		snprintf(reason, reason_len, "cannot accept gRPC connections on %s for %.1f s: %s",
			 s->cfg.endpoint, failed_for, strerror(err));
		return -err;
	}
	r = fd_headroom(s);
	if (r < 0) {
		snprintf(reason, reason_len, "no file descriptor left for new gRPC connections (limit %llu): %s",
			 (unsigned long long)s->fd_limit, strerror(-r));
		return r;
	}
	if (s->socket_path && (lstat(s->socket_path, &st) < 0 || st.st_ino != s->socket_st.st_ino ||
			       st.st_dev != s->socket_st.st_dev)) {
		snprintf(reason, reason_len, "the gRPC socket %s was removed or replaced: clients cannot connect",
			 s->socket_path);
		return -ENOENT;
	}
	return 0;
}

int csi_server_start(const struct csi_server_config *config, struct csi_server **ret)
{
	struct csi_server *s;
	_cleanup_free_ char *hostport = NULL;
	struct epoll_event e = { .events = EPOLLIN };
	pthread_attr_t attr;
	struct rlimit rl;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *config;
	s->listen_fd = s->wake_fd = s->epoll_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->work_cond, NULL);
	s->max_workers = config->workers ? config->workers : 8;
	s->loop_nice = config->loop_nice;
	errno = 0;
	s->base_nice = getpriority(PRIO_PROCESS, 0);
	if (s->base_nice == -1 && errno != 0)
		s->base_nice = 0;
	s->workers = calloc(s->max_workers, sizeof(*s->workers));
	if (!s->workers) {
		r = -ENOMEM;
		goto fail;
	}

	r = csi_endpoint_parse(config->endpoint, &s->socket_path, &hostport);
	if (r < 0) {
		r = log_error_errno(r, "Invalid endpoint \"%s\" (unix:///path or tcp://host:port)", config->endpoint);
		goto fail;
	}
	s->listen_fd = s->socket_path ? csi_listen_unix(s->socket_path, &s->socket_st) : csi_listen_tcp(hostport);
	if (s->listen_fd < 0) {
		r = log_error_errno(s->listen_fd, "Cannot listen on %s: %m", config->endpoint);
		goto fail;
	}
	s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (s->wake_fd < 0 || s->epoll_fd < 0) {
		r = log_error_errno(errno, "Cannot create an eventfd or epoll instance: %m");
		goto fail;
	}
	e.data.ptr = &tag_listen;
	if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->listen_fd, &e) < 0) {
		r = log_error_errno(errno, "Cannot poll %s: %m", config->endpoint);
		goto fail;
	}
	s->listening = true;
	e.data.ptr = &tag_wake;
	if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->wake_fd, &e) < 0) {
		r = log_error_errno(errno, "Cannot poll an eventfd: %m");
		goto fail;
	}
	s->fd_limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : RLIM_INFINITY;
	/* Connections take at most half of what the open-file limit leaves beyond the reserve. */
	s->conn_max = CONN_MAX;
	if (s->fd_limit != RLIM_INFINITY && s->fd_limit > FD_RESERVE &&
	    (s->fd_limit - FD_RESERVE) / 2 < (rlim_t)s->conn_max)
		s->conn_max = (unsigned)MAX((s->fd_limit - FD_RESERVE) / 2, (rlim_t)CONN_MIN);

	if (nghttp2_session_callbacks_new(&s->callbacks) != 0 || nghttp2_option_new(&s->option) != 0) {
		r = -ENOMEM;
		goto fail;
	}
	nghttp2_session_callbacks_set_on_begin_headers_callback(s->callbacks, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(s->callbacks, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(s->callbacks, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(s->callbacks, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(s->callbacks, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_send_callback(s->callbacks, on_frame_send);
	now_mono(&s->next_timer);
	s->next_timer.tv_sec += 3600;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 512 * 1024);
	r = pthread_create(&s->loop, &attr, loop_thread, s);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		r = log_error_errno(-r, "Cannot start the gRPC event loop: %m");
		goto fail;
	}
	s->loop_started = true;
	log_info("Listening for connections on %s", config->endpoint);
	*ret = s;
	return 0;

fail:
	csi_server_stop(s, 0);
	return r;
}

void csi_server_stop(struct csi_server *s, int grace_ms)
{
	struct stat st;
	struct call *c;
	unsigned n;

	if (!s)
		return;
	if (s->loop_started) {
		struct timespec now;

		now_mono(&now);
		pthread_mutex_lock(&s->lock);
		s->stop_requested = true;
		s->grace_deadline = add_ms(now, grace_ms);
		pthread_mutex_unlock(&s->lock);
		wake(s);
		pthread_join(s->loop, NULL);
	}
	/* The loop is gone: workers finish what they run (queued calls are abandoned and skipped). */
	pthread_mutex_lock(&s->lock);
	s->stopping_workers = true;
	pthread_cond_broadcast(&s->work_cond);
	n = s->n_workers;
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; i < n; i++)
		pthread_join(s->workers[i], NULL);
	while ((c = s->done_head)) {
		s->done_head = c->next;
		call_free(c);
	}
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	if (s->epoll_fd >= 0)
		close(s->epoll_fd);
	/* Remove the socket only if it is still the one we bound. */
	if (s->socket_path && s->socket_st.st_ino && lstat(s->socket_path, &st) == 0 &&
	    st.st_ino == s->socket_st.st_ino && st.st_dev == s->socket_st.st_dev && unlink(s->socket_path) < 0 &&
	    errno != ENOENT)
		log_warning_errno(errno, "Failed to remove %s: %m", s->socket_path);
	nghttp2_session_callbacks_del(s->callbacks);
	nghttp2_option_del(s->option);
	free(s->socket_path);
	free(s->workers);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->work_cond);
	free(s);
}
