/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gRPC transport on the gRPC core C API: one completion queue, a few threads
 * polling it, a worker pool for slow methods.
 *
 * Each call is a small state machine whose tag is its struct:
 *   REQUESTED  --request_call done-->  RECEIVING  --message-->  (handler)
 *   --> SENDING (initial metadata + message + status + recv close) --> freed.
 * A call never has more than one batch outstanding, so no per-call lock is
 * needed. Request slots are re-posted as they are used, so the server always
 * accepts new calls.
 *
 * The listening socket is ours, not gRPC's: an acceptor thread accepts
 * connections and hands each one to gRPC with grpc_server_add_channel_from_fd().
 * gRPC core 1.51's own listener (tcp_server_posix.cc) re-arms after accept4()
 * fails only for EAGAIN and ECONNABORTED; EMFILE deactivates the port for good,
 * so one burst of idle clients past the open-file limit left the driver deaf
 * for ever. Ours backs off and retries, keeps FD_RESERVE descriptors free for
 * the driver's real work (state files, pipes to LVM tools), and tells the
 * health check when it cannot accept (csi_server_check()).
 */
#include <errno.h>
#include <fcntl.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "endpoint.h"
#include "server.h"
#include "validate.h"

#define REQUEST_SLOTS 32
#define CQ_THREADS 2
#define RESPONSE_ARENA_LIMIT (16u * 1024 * 1024)
#define WORK_QUEUE_MAX 4096

/*
 * What one client can hold: at most CONN_MAX_STREAMS calls at once per
 * connection; keepalive pings find peers that vanished while a call runs.
 * Idle connections are NOT closed (no GRPC_ARG_MAX_CONNECTION_IDLE_MS): the
 * sidecars (csi-lib-utils) take any reconnect for a driver restart and exit.
 * Instead, a connection reaches gRPC only once it has sent the HTTP/2
 * preface, which every gRPC client sends right after connecting; one that
 * sends nothing, something else, or a part for HANDSHAKE_TIMEOUT_MS is
 * closed. At most PENDING_MAX connections wait for their preface.
 */
#define CONN_KEEPALIVE_MS (60 * 1000)
#define CONN_KEEPALIVE_TIMEOUT_MS (20 * 1000)
#define CONN_MAX_STREAMS 100
#define HANDSHAKE_TIMEOUT_MS 20000
#define PENDING_MAX 1024
#define HTTP2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define HTTP2_PREFACE_LEN (sizeof(HTTP2_PREFACE) - 1)
/* Re-check interval for connections that sent a part of the preface. */
#define PARTIAL_RECHECK_MS 100
/* Descriptors below the open-file limit that accepting never takes. */
#define FD_RESERVE 64
/* Retry interval while accepting is impossible (EMFILE, no headroom). */
#define ACCEPT_BACKOFF_MS 200
/* Reported unhealthy once accepting has been impossible for this long. */
#define ACCEPT_FAILING_GRACE_S 1.0

enum call_state {
	CALL_REQUESTED,
	CALL_RECEIVING,
	CALL_SENDING,
};

struct call {
	enum call_state state;
	struct csi_server *server;
	grpc_call *call;
	grpc_call_details details;
	grpc_metadata_array request_metadata;
	grpc_byte_buffer *recv_buf;
	int recv_close_cancelled;
	const struct csi_method *method;
	ProtobufCMessage *request;
	grpc_byte_buffer *send_buf;
	grpc_slice status_details;
	struct csi_call c;
	struct timespec start;
	struct call *next_work;
};

struct csi_server {
	struct csi_server_config cfg;
	grpc_server *server;
	grpc_completion_queue *cq;
	pthread_t cq_threads[CQ_THREADS];
	unsigned n_cq_threads; /* started */
	pthread_t *workers;
	unsigned n_workers; /* started */
	char *socket_path;

	/* The listener (see the top of the file). */
	int listen_fd;
	int wake_fd; /* eventfd: the acceptor stops when it is readable */
	pthread_t acceptor;
	bool acceptor_started;
	grpc_server_credentials *creds;
	struct stat socket_st; /* the unix socket we bound, to notice its removal */
	rlim_t fd_limit;

	pthread_mutex_t lock;
	/*
	 * Two conditions, because there are two kinds of waiters: a worker
	 * wakes for work (signalled, one at a time) and csi_server_stop() for
	 * the shutdown notification (broadcast). With one shared condition, a
	 * signal for new work could wake the stopping thread instead of an idle
	 * worker: the call then stayed queued, kept gRPC's shutdown from
	 * completing, and SIGTERM hung for ever.
	 */
	pthread_cond_t work_cond;
	pthread_cond_t shutdown_cond;
	/* Accepting: 0, or the errno of the first failure of a failing spell. */
	int accept_errno;
	struct timespec accept_failing_since; /* CLOCK_MONOTONIC */
	uint64_t refused; /* attempts that failed in the current spell */
	struct call *work_head, *work_tail;
	size_t work_len;
	bool stopping_workers;
	bool shutdown_notified;
	int shutdown_tag;
	unsigned in_flight;
};

static double elapsed_s(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void call_free(struct call *c)
{
	if (!c)
		return;
	if (c->call)
		grpc_call_unref(c->call);
	grpc_call_details_destroy(&c->details);
	grpc_metadata_array_destroy(&c->request_metadata);
	if (c->recv_buf)
		grpc_byte_buffer_destroy(c->recv_buf);
	if (c->send_buf)
		grpc_byte_buffer_destroy(c->send_buf);
	grpc_slice_unref(c->status_details);
	if (c->request)
		protobuf_c_message_free_unpacked(c->request, NULL);
	arena_free(c->c.arena);
	free(c);
}

static int post_request_slot(struct csi_server *s)
{
	struct call *c = calloc(1, sizeof(*c));
	grpc_call_error e;

	if (!c)
		return -ENOMEM;
	c->server = s;
	c->state = CALL_REQUESTED;
	c->status_details = grpc_empty_slice();
	grpc_call_details_init(&c->details);
	grpc_metadata_array_init(&c->request_metadata);
	e = grpc_server_request_call(s->server, &c->call, &c->details, &c->request_metadata, s->cq, s->cq, c);
	if (e != GRPC_CALL_OK) {
		call_free(c);
		return -EIO;
	}
	return 0;
}

static void call_send(struct call *c, const ProtobufCMessage *resp)
{
	grpc_op ops[4];
	size_t n = 0;
	grpc_call_error e;

	memset(ops, 0, sizeof(ops));
	ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
	n++;
	if (c->c.code == CSI_CODE_OK && resp) {
		size_t len = protobuf_c_message_get_packed_size(resp);
		grpc_slice slice = grpc_slice_malloc(len);
		protobuf_c_message_pack(resp, GRPC_SLICE_START_PTR(slice));
		c->send_buf = grpc_raw_byte_buffer_create(&slice, 1);
		grpc_slice_unref(slice);
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n].data.send_message.send_message = c->send_buf;
		n++;
	}
	c->status_details = grpc_slice_from_copied_string(c->c.code == CSI_CODE_OK ? "" : c->c.message);
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = (grpc_status_code)c->c.code;
	ops[n].data.send_status_from_server.status_details = &c->status_details;
	n++;
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n].data.recv_close_on_server.cancelled = &c->recv_close_cancelled;
	n++;
	c->state = CALL_SENDING;
	e = grpc_call_start_batch(c->call, ops, n, c, NULL);
	if (e != GRPC_CALL_OK) {
		log_error("grpc_call_start_batch (send) failed: %d", (int)e);
		pthread_mutex_lock(&c->server->lock);
		c->server->in_flight--;
		pthread_mutex_unlock(&c->server->lock);
		call_free(c);
	}
}

static void call_finish_log(struct call *c)
{
	struct csi_server *s = c->server;
	double secs = elapsed_s(&c->start);
	char dur[32];
	int v;

	/* Metrics use the full gRPC method path, as csi-lib-utils does. */
	if (s->cfg.observer)
		s->cfg.observer(c->method ? c->method->path : c->c.method, c->c.code, secs, s->cfg.observer_userdata);
	snprintf(dur, sizeof(dur), "%.6fs", secs);
	/* Errors always; successful slow calls at -v=1; probes and capability
	 * queries (kubelet and the sidecars call them constantly) at -v=5. */
	v = c->c.code != CSI_CODE_OK ? 0 : (c->method && c->method->slow) ? 1 : 5;
	if (v > log_get_verbosity())
		return;
	if (c->c.code == CSI_CODE_OK)
		log_structured(LOG_LEVEL_INFO, v, __FILE__, __LINE__, "gRPC call", "method", c->c.method,
			       "volume", c->c.volume, "duration", dur, "code", csi_code_name(c->c.code), (const char *)NULL);
	else
		log_structured(LOG_LEVEL_ERROR, 0, __FILE__, __LINE__, "gRPC call failed", "method",
			       c->c.method, "volume", c->c.volume, "duration", dur, "code",
			       csi_code_name(c->c.code), "message", c->c.message, (const char *)NULL);
}

static void call_run_handler(struct call *c)
{
	ProtobufCMessage *resp = NULL;
	int r;

	r = c->method->handler(&c->c, c->server->cfg.userdata, c->request, &resp);
	if (r < 0 && c->c.code == CSI_CODE_OK)
		csi_fail(&c->c, CSI_CODE_INTERNAL, "internal error");
	if (r >= 0 && !resp)
		csi_fail(&c->c, CSI_CODE_INTERNAL, "handler returned no response");
	if (r >= 0)
		c->c.code = CSI_CODE_OK;
	call_finish_log(c);
	call_send(c, r >= 0 ? resp : NULL);
}

static void enqueue_work(struct call *c)
{
	struct csi_server *s = c->server;
	bool full;

	pthread_mutex_lock(&s->lock);
	full = s->work_len >= WORK_QUEUE_MAX;
	if (!full) {
		c->next_work = NULL;
		if (s->work_tail)
			s->work_tail->next_work = c;
		else
			s->work_head = c;
		s->work_tail = c;
		s->work_len++;
		pthread_cond_signal(&s->work_cond);
	}
	pthread_mutex_unlock(&s->lock);
	if (full) {
		csi_fail(&c->c, CSI_CODE_RESOURCE_EXHAUSTED, "too many requests in progress (%d queued)",
			 WORK_QUEUE_MAX);
		call_finish_log(c);
		call_send(c, NULL);
	}
}

static const struct csi_method *find_method(struct csi_server *s, grpc_slice method)
{
	for (size_t i = 0; i < s->cfg.n_methods; i++)
		if (grpc_slice_str_cmp(method, s->cfg.methods[i].path) == 0)
			return &s->cfg.methods[i];
	return NULL;
}

static void on_new_call(struct call *c)
{
	struct csi_server *s = c->server;
	grpc_op op;
	grpc_call_error e;
	const char *path;

	clock_gettime(CLOCK_MONOTONIC, &c->start);
	(void)post_request_slot(s);
	pthread_mutex_lock(&s->lock);
	s->in_flight++;
	pthread_mutex_unlock(&s->lock);

	c->c.arena = arena_new(RESPONSE_ARENA_LIMIT);
	c->method = find_method(s, c->details.method);
	if (c->method) {
		path = strrchr(c->method->path, '/');
		c->c.method = path ? path + 1 : c->method->path;
	} else
		c->c.method = "unknown";
	if (!c->c.arena) {
		csi_fail(&c->c, CSI_CODE_RESOURCE_EXHAUSTED, "out of memory");
		call_finish_log(c);
		call_send(c, NULL);
		return;
	}
	if (!c->method) {
		char *m = grpc_slice_to_c_string(c->details.method);
		csi_fail(&c->c, CSI_CODE_UNIMPLEMENTED, "unknown method %s", m ? m : "?");
		gpr_free(m);
		call_finish_log(c);
		call_send(c, NULL);
		return;
	}
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &c->recv_buf;
	c->state = CALL_RECEIVING;
	e = grpc_call_start_batch(c->call, &op, 1, c, NULL);
	if (e != GRPC_CALL_OK) {
		csi_fail(&c->c, CSI_CODE_INTERNAL, "cannot receive the request");
		call_finish_log(c);
		call_send(c, NULL);
	}
}

static void on_received(struct call *c, bool ok)
{
	grpc_byte_buffer_reader reader;
	grpc_slice slice;
	char err[CSI_VALIDATE_ERROR_MAX];
	int r;

	if (!ok || !c->recv_buf) {
		/* Cancelled, or a message larger than the limit (gRPC has already
		 * told the client RESOURCE_EXHAUSTED). */
		csi_fail(&c->c, CSI_CODE_CANCELLED,
			 "no request message: cancelled by the client or larger than the %zu byte limit",
			 c->server->cfg.max_request_bytes);
		call_finish_log(c);
		call_send(c, NULL);
		return;
	}
	if (!grpc_byte_buffer_reader_init(&reader, c->recv_buf)) {
		csi_fail(&c->c, CSI_CODE_INVALID_ARGUMENT, "cannot read the request");
		call_finish_log(c);
		call_send(c, NULL);
		return;
	}
	slice = grpc_byte_buffer_reader_readall(&reader);
	grpc_byte_buffer_reader_destroy(&reader);
	/* Before unpacking, which cuts strings at a NUL: see validate.h. */
	r = csi_validate_request(c->method->input, GRPC_SLICE_START_PTR(slice), GRPC_SLICE_LENGTH(slice),
				 err, sizeof(err));
	if (r < 0) {
		grpc_slice_unref(slice);
		csi_fail(&c->c, r == -ENOMEM ? CSI_CODE_RESOURCE_EXHAUSTED : CSI_CODE_INVALID_ARGUMENT, "%s", err);
		call_finish_log(c);
		call_send(c, NULL);
		return;
	}
	c->request = protobuf_c_message_unpack(c->method->input, NULL, GRPC_SLICE_LENGTH(slice),
					       GRPC_SLICE_START_PTR(slice));
	grpc_slice_unref(slice);
	if (!c->request) {
		csi_fail(&c->c, CSI_CODE_INVALID_ARGUMENT, "the request is not a valid %s message",
			 c->method->input->name);
		call_finish_log(c);
		call_send(c, NULL);
		return;
	}
	if (c->method->slow)
		enqueue_work(c);
	else
		call_run_handler(c);
}

static void on_sent(struct call *c)
{
	struct csi_server *s = c->server;

	call_free(c);
	pthread_mutex_lock(&s->lock);
	s->in_flight--;
	pthread_mutex_unlock(&s->lock);
}

static void *cq_thread(void *arg)
{
	struct csi_server *s = arg;

	for (;;) {
		grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		struct call *c;

		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		if (ev.tag == &s->shutdown_tag) {
			pthread_mutex_lock(&s->lock);
			s->shutdown_notified = true;
			pthread_cond_broadcast(&s->shutdown_cond);
			pthread_mutex_unlock(&s->lock);
			continue;
		}
		c = ev.tag;
		switch (c->state) {
		case CALL_REQUESTED:
			if (!ev.success) {
				/* The server is shutting down: the slot is returned unused. */
				call_free(c);
				break;
			}
			on_new_call(c);
			break;
		case CALL_RECEIVING:
			on_received(c, ev.success);
			break;
		case CALL_SENDING:
			on_sent(c);
			break;
		}
	}
	return NULL;
}

static void *worker_thread(void *arg)
{
	struct csi_server *s = arg;

	for (;;) {
		struct call *c;

		pthread_mutex_lock(&s->lock);
		while (!s->work_head && !s->stopping_workers)
			pthread_cond_wait(&s->work_cond, &s->lock);
		if (!s->work_head) {
			pthread_mutex_unlock(&s->lock);
			break;
		}
		c = s->work_head;
		s->work_head = c->next_work;
		if (!s->work_head)
			s->work_tail = NULL;
		s->work_len--;
		pthread_mutex_unlock(&s->lock);
		call_run_handler(c);
	}
	return NULL;
}

static void grpc_log(gpr_log_func_args *args)
{
	/* gRPC's own errors (failed handshakes, ...) at error level; the rest is debug. */
	enum log_level level = args->severity == GPR_LOG_SEVERITY_ERROR ? LOG_LEVEL_ERROR : LOG_LEVEL_INFO;
	int v = args->severity == GPR_LOG_SEVERITY_ERROR ? 0 : 5;

	if (level == LOG_LEVEL_INFO && v > log_get_verbosity())
		return;
	log_internal(level, v, 0, args->file, args->line, "grpc: %s", args->message);
}

/*
 * Whether one more descriptor can be taken without eating into the reserve.
 * fcntl(F_DUPFD) returns the lowest free number, which is about the number of
 * descriptors in use.
 */
static int fd_headroom(struct csi_server *s)
{
	rlim_t reserve = MIN((rlim_t)FD_RESERVE, s->fd_limit / 4);
	int fd = fcntl(s->listen_fd, F_DUPFD_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	close(fd);
	if (s->fd_limit != RLIM_INFINITY && (rlim_t)fd + reserve >= s->fd_limit)
		return -EMFILE;
	return 0;
}

/* Record the outcome of an attempt to accept: 0 or a positive errno. */
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
			clock_gettime(CLOCK_MONOTONIC, &s->accept_failing_since);
		}
		s->refused++;
	}
	pthread_mutex_unlock(&s->lock);
	/* Once per spell, not once per attempt. */
	if (started)
		log_error_errno(err, "Cannot accept gRPC connections on %s (open-file limit %llu, %d kept in reserve): %m; retrying every %d ms",
				s->cfg.endpoint, (unsigned long long)s->fd_limit, FD_RESERVE, ACCEPT_BACKOFF_MS);
	if (recovered)
		log_info("Accepting gRPC connections again after %.1f s (%llu attempts failed)", failed_for,
			 (unsigned long long)attempts);
}

/* An accepted connection that has not sent the whole HTTP/2 preface yet. */
struct pending {
	int fd;
	bool partial; /* sent a part: re-checked by timer, since poll() would report it at once */
	short revents;
	struct timespec deadline;
};

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

/* Milliseconds from now to t, rounded up, at least 0. */
static long ms_until(const struct timespec *t, const struct timespec *now)
{
	long ms = (long)(t->tv_sec - now->tv_sec) * 1000 + (t->tv_nsec - now->tv_nsec) / 1000000;

	return ms < 0 ? 0 : ms + 1;
}

/*
 * 1: the preface is there, hand the connection to gRPC; 0: a correct part of
 * it, wait; -1: end of file, an error, or something else: close it.
 */
static int preface_check(int fd)
{
	char buf[HTTP2_PREFACE_LEN];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if (n == 0 || memcmp(buf, HTTP2_PREFACE, (size_t)n) != 0)
		return -1;
	return (size_t)n == HTTP2_PREFACE_LEN ? 1 : 0;
}

static void *acceptor_thread(void *arg)
{
	struct csi_server *s = arg;
	struct pending pending[PENDING_MAX] = {};
	struct pollfd p[2 + PENDING_MAX];
	struct timespec backoff_until = {};
	size_t n_pending = 0;
	bool backoff = false;

	for (;;) {
		struct timespec now;
		long timeout = -1;
		size_t np = 0;
		int fd, r;

		clock_gettime(CLOCK_MONOTONIC, &now);
		if (backoff && after(&now, &backoff_until))
			backoff = false;
		/*
		 * p[0]: the stop request; p[1]: the listener, unless backing off
		 * or full (clients then wait in the listen backlog); then the
		 * pending connections that have sent nothing yet.
		 */
		p[np++] = (struct pollfd){ .fd = s->wake_fd, .events = POLLIN };
		p[np++] = (struct pollfd){ .fd = backoff || n_pending == PENDING_MAX ? -1 : s->listen_fd,
					   .events = POLLIN };
		if (backoff)
			timeout = ms_until(&backoff_until, &now);
		for (size_t i = 0; i < n_pending; i++) {
			long t = pending[i].partial ? PARTIAL_RECHECK_MS : ms_until(&pending[i].deadline, &now);

			p[np++] = (struct pollfd){ .fd = pending[i].partial ? -1 : pending[i].fd, .events = POLLIN };
			if (timeout < 0 || t < timeout)
				timeout = t;
		}
		if (poll(p, np, (int)MIN(timeout, (long)INT32_MAX)) < 0) {
			if (errno != EINTR) {
				log_error_errno(errno, "Waiting for gRPC connections failed: %m");
				backoff = true;
				backoff_until = add_ms(now, ACCEPT_BACKOFF_MS);
			}
			continue;
		}
		if (p[0].revents)
			break;

		/* Pending connections: hand over to gRPC, keep waiting, or close. */
		clock_gettime(CLOCK_MONOTONIC, &now);
		for (size_t i = 0; i < n_pending; i++)
			pending[i].revents = p[2 + i].revents;
		for (size_t i = 0; i < n_pending;) {
			struct pending *q = &pending[i];

			r = q->partial || q->revents ? preface_check(q->fd) : 0;
			if (r == 0 && after(&now, &q->deadline))
				r = -1;
			if (r == 0) {
				q->partial = q->partial || q->revents;
				i++;
				continue;
			}
			if (r > 0)
				/* gRPC owns the descriptor from here on and closes it with the connection. */
				grpc_server_add_channel_from_fd(s->server, q->fd, s->creds);
			else
				close(q->fd);
			*q = pending[--n_pending];
		}

		if (p[1].fd < 0 || !p[1].revents)
			continue;
		r = fd_headroom(s);
		if (r < 0) {
			/* The client waits in the listen backlog until there is room. */
			accept_result(s, -r);
			backoff = true;
			backoff_until = add_ms(now, ACCEPT_BACKOFF_MS);
			continue;
		}
		fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			accept_result(s, errno);
			backoff = true;
			backoff_until = add_ms(now, ACCEPT_BACKOFF_MS);
			continue;
		}
		accept_result(s, 0);
		pending[n_pending++] = (struct pending){
			.fd = fd,
			.deadline = add_ms(now, HANDSHAKE_TIMEOUT_MS),
		};
	}
	for (size_t i = 0; i < n_pending; i++)
		close(pending[i].fd);
	return NULL;
}

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

static void set_int_arg(grpc_arg *a, const char *key, int value)
{
	a->type = GRPC_ARG_INTEGER;
	a->key = (char *)key;
	a->value.integer = value;
}

int csi_server_start(const struct csi_server_config *config, struct csi_server **ret)
{
	struct csi_server *s;
	_cleanup_free_ char *hostport = NULL;
	grpc_arg args[5];
	grpc_channel_args chargs;
	pthread_attr_t attr;
	pthread_condattr_t cattr;
	struct rlimit rl;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *config;
	s->listen_fd = s->wake_fd = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->work_cond, NULL);
	/* The grace period is measured on the monotonic clock, immune to clock steps. */
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&s->shutdown_cond, &cattr);
	pthread_condattr_destroy(&cattr);

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
	if (s->wake_fd < 0) {
		r = log_error_errno(errno, "Cannot create an eventfd: %m");
		goto fail;
	}
	s->fd_limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : RLIM_INFINITY;

	gpr_set_log_function(grpc_log);
	grpc_init();
	/* These apply to every connection, also to those added with grpc_server_add_channel_from_fd(). */
	set_int_arg(&args[0], GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (int)config->max_request_bytes);
	set_int_arg(&args[1], GRPC_ARG_MAX_CONCURRENT_STREAMS, CONN_MAX_STREAMS);
	set_int_arg(&args[2], GRPC_ARG_KEEPALIVE_TIME_MS, CONN_KEEPALIVE_MS);
	set_int_arg(&args[3], GRPC_ARG_KEEPALIVE_TIMEOUT_MS, CONN_KEEPALIVE_TIMEOUT_MS);
	set_int_arg(&args[4], GRPC_ARG_MAX_METADATA_SIZE, 16 * 1024);
	chargs.num_args = ELEMENTSOF(args);
	chargs.args = args;
	s->cq = grpc_completion_queue_create_for_next(NULL);
	s->server = grpc_server_create(&chargs, NULL);
	grpc_server_register_completion_queue(s->server, s->cq, NULL);
	s->creds = grpc_insecure_server_credentials_create();
	grpc_server_start(s->server);
	for (int i = 0; i < REQUEST_SLOTS; i++)
		(void)post_request_slot(s);

	/* From here on csi_server_stop() undoes a partial start: it knows what runs. */
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 512 * 1024);
	for (int i = 0; i < CQ_THREADS; i++) {
		r = pthread_create(&s->cq_threads[i], &attr, cq_thread, s);
		if (r != 0)
			goto fail_threads;
		s->n_cq_threads++;
	}
	s->workers = calloc(config->workers ? config->workers : 8, sizeof(*s->workers));
	if (!s->workers) {
		r = ENOMEM;
		goto fail_threads;
	}
	for (unsigned i = 0; i < (config->workers ? config->workers : 8); i++) {
		r = pthread_create(&s->workers[i], &attr, worker_thread, s);
		if (r != 0)
			goto fail_threads;
		s->n_workers++;
	}
	r = pthread_create(&s->acceptor, &attr, acceptor_thread, s);
	if (r != 0)
		goto fail_threads;
	s->acceptor_started = true;
	pthread_attr_destroy(&attr);
	log_info("Listening for connections on %s", config->endpoint);
	*ret = s;
	return 0;

fail_threads:
	pthread_attr_destroy(&attr);
	log_error_errno(r, "Cannot start the gRPC server's threads: %m");
	csi_server_stop(s, 0);
	return -r;
fail:
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->wake_fd >= 0)
		close(s->wake_fd);
	free(s->socket_path);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->work_cond);
	pthread_cond_destroy(&s->shutdown_cond);
	free(s);
	return r;
}

/* Without a queue thread (start-up failed early): wait for the notification here. */
static void drain_until(struct csi_server *s, bool queue_shutdown)
{
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);

		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			return;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		if (ev.tag == &s->shutdown_tag) {
			s->shutdown_notified = true;
			if (!queue_shutdown)
				return;
			continue;
		}
		/* Only unused request slots: no connection was ever handed to gRPC. */
		call_free(ev.tag);
	}
}

void csi_server_stop(struct csi_server *s, int grace_ms)
{
	struct timespec deadline;
	struct stat st;
	bool cancelled = false;
	uint64_t one = 1;

	if (!s)
		return;
	/* No new connections: stop the acceptor and close the listener. */
	if (s->acceptor_started) {
		if (write(s->wake_fd, &one, sizeof(one)) < 0)
			log_warning_errno(errno, "Cannot wake the gRPC acceptor: %m");
		pthread_join(s->acceptor, NULL);
	}
	close(s->listen_fd);
	close(s->wake_fd);

	grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
	if (s->n_cq_threads == 0) {
		grpc_server_cancel_all_calls(s->server);
		drain_until(s, false);
	}
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += grace_ms / 1000;
	deadline.tv_nsec += (long)(grace_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	/*
	 * Calls in flight get up to grace_ms. Once none is left, cancel: that
	 * also drops the connections at once, where a graceful GOAWAY waits 20 s
	 * for each client that does not answer gRPC's ping.
	 */
	pthread_mutex_lock(&s->lock);
	while (!s->shutdown_notified) {
		struct timespec now, tick;

		clock_gettime(CLOCK_MONOTONIC, &now);
		if (!cancelled && (s->in_flight == 0 || now.tv_sec > deadline.tv_sec ||
				   (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec))) {
			if (s->in_flight)
				log_warning("%u call(s) still running after %d ms, cancelling them", s->in_flight,
					    grace_ms);
			pthread_mutex_unlock(&s->lock);
			grpc_server_cancel_all_calls(s->server);
			pthread_mutex_lock(&s->lock);
			cancelled = true;
		} else if (cancelled) {
			pthread_cond_wait(&s->shutdown_cond, &s->lock);
		} else {
			/* Look at in_flight again in 50 ms (on_sent() does not signal). */
			tick = now;
			tick.tv_nsec += 50 * 1000000L;
			if (tick.tv_nsec >= 1000000000L) {
				tick.tv_sec++;
				tick.tv_nsec -= 1000000000L;
			}
			(void)pthread_cond_timedwait(&s->shutdown_cond, &s->lock, &tick);
		}
	}
	s->stopping_workers = true;
	pthread_cond_broadcast(&s->work_cond);
	pthread_mutex_unlock(&s->lock);

	for (unsigned i = 0; i < s->n_workers; i++)
		pthread_join(s->workers[i], NULL);
	grpc_completion_queue_shutdown(s->cq);
	for (unsigned i = 0; i < s->n_cq_threads; i++)
		pthread_join(s->cq_threads[i], NULL);
	if (s->n_cq_threads == 0)
		drain_until(s, true);
	grpc_server_destroy(s->server);
	grpc_completion_queue_destroy(s->cq);
	grpc_server_credentials_release(s->creds);
	grpc_shutdown_blocking();
	/* Remove the socket only if it is still the one we bound. */
	if (s->socket_path && lstat(s->socket_path, &st) == 0 && st.st_ino == s->socket_st.st_ino &&
	    st.st_dev == s->socket_st.st_dev && unlink(s->socket_path) < 0 && errno != ENOENT)
		log_warning_errno(errno, "Failed to remove %s: %m", s->socket_path);
	free(s->socket_path);
	free(s->workers);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->work_cond);
	pthread_cond_destroy(&s->shutdown_cond);
	free(s);
}
