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
 */
#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "server.h"
#include "validate.h"

#define REQUEST_SLOTS 32
#define CQ_THREADS 2
#define RESPONSE_ARENA_LIMIT (16u * 1024 * 1024)
#define WORK_QUEUE_MAX 4096

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
	pthread_t *workers;
	unsigned n_workers;
	char *socket_path;

	pthread_mutex_t lock;
	pthread_cond_t cond;
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
		pthread_cond_signal(&s->cond);
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
			pthread_cond_broadcast(&s->cond);
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
			pthread_cond_wait(&s->cond, &s->lock);
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

/* "unix:///csi/csi.sock" -> "/csi/csi.sock", "tcp://1.2.3.4:5" -> "1.2.3.4:5". */
static int parse_endpoint(const char *ep, char **ret_grpc, char **ret_socket)
{
	if (startswith(ep, "unix://")) {
		const char *p = ep + strlen("unix://");
		if (*p != '/')
			return -EINVAL;
		*ret_socket = strdup(p);
		*ret_grpc = xasprintf("unix:%s", p);
	} else if (startswith(ep, "unix:")) {
		*ret_socket = strdup(ep + 5);
		*ret_grpc = strdup(ep);
	} else if (startswith(ep, "tcp://")) {
		*ret_socket = NULL;
		*ret_grpc = strdup(ep + strlen("tcp://"));
	} else if (strstr(ep, "://")) {
		return -EINVAL;
	} else {
		*ret_socket = NULL;
		*ret_grpc = strdup(ep);
	}
	if (!*ret_grpc)
		return -ENOMEM;
	return 0;
}

int csi_server_start(const struct csi_server_config *config, struct csi_server **ret)
{
	struct csi_server *s;
	_cleanup_free_ char *addr = NULL;
	grpc_arg args[2];
	grpc_channel_args chargs;
	grpc_server_credentials *creds;
	pthread_attr_t attr;
	int r, port;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *config;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	r = parse_endpoint(config->endpoint, &addr, &s->socket_path);
	if (r < 0) {
		free(s);
		return log_error_errno(r, "Invalid endpoint \"%s\" (unix:///path or tcp://host:port)",
				       config->endpoint);
	}

	gpr_set_log_function(grpc_log);
	grpc_init();
	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[0].value.integer = (int)config->max_request_bytes;
	args[1].type = GRPC_ARG_INTEGER;
	args[1].key = (char *)GRPC_ARG_MAX_CONCURRENT_STREAMS;
	args[1].value.integer = 1000;
	chargs.num_args = 2;
	chargs.args = args;
	s->cq = grpc_completion_queue_create_for_next(NULL);
	s->server = grpc_server_create(&chargs, NULL);
	grpc_server_register_completion_queue(s->server, s->cq, NULL);
	creds = grpc_insecure_server_credentials_create();
	port = grpc_server_add_http2_port(s->server, addr, creds);
	grpc_server_credentials_release(creds);
	if (port == 0) {
		r = log_error_errno(-EADDRNOTAVAIL, "Cannot listen on %s (does the directory exist?)",
				    config->endpoint);
		grpc_server_destroy(s->server);
		grpc_completion_queue_shutdown(s->cq);
		while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
		       GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(s->cq);
		grpc_shutdown();
		free(s->socket_path);
		free(s);
		return r;
	}
	grpc_server_start(s->server);
	for (int i = 0; i < REQUEST_SLOTS; i++)
		(void)post_request_slot(s);

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 512 * 1024);
	for (int i = 0; i < CQ_THREADS; i++)
		pthread_create(&s->cq_threads[i], &attr, cq_thread, s);
	s->n_workers = config->workers ? config->workers : 8;
	s->workers = calloc(s->n_workers, sizeof(*s->workers));
	for (unsigned i = 0; s->workers && i < s->n_workers; i++)
		pthread_create(&s->workers[i], &attr, worker_thread, s);
	pthread_attr_destroy(&attr);
	log_info("Listening for connections on %s", config->endpoint);
	*ret = s;
	return 0;
}

void csi_server_stop(struct csi_server *s, int grace_ms)
{
	struct timespec deadline;
	bool cancelled = false;

	if (!s)
		return;
	grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += grace_ms / 1000;
	deadline.tv_nsec += (long)(grace_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->lock);
	while (!s->shutdown_notified) {
		if (!cancelled && pthread_cond_timedwait(&s->cond, &s->lock, &deadline) == ETIMEDOUT) {
			log_warning("%u call(s) still running after %d ms, cancelling them", s->in_flight,
				    grace_ms);
			pthread_mutex_unlock(&s->lock);
			grpc_server_cancel_all_calls(s->server);
			pthread_mutex_lock(&s->lock);
			cancelled = true;
		} else if (cancelled)
			pthread_cond_wait(&s->cond, &s->lock);
	}
	s->stopping_workers = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);

	for (unsigned i = 0; s->workers && i < s->n_workers; i++)
		pthread_join(s->workers[i], NULL);
	grpc_completion_queue_shutdown(s->cq);
	for (int i = 0; i < CQ_THREADS; i++)
		pthread_join(s->cq_threads[i], NULL);
	grpc_server_destroy(s->server);
	grpc_completion_queue_destroy(s->cq);
	grpc_shutdown_blocking();
	if (s->socket_path && unlink(s->socket_path) < 0 && errno != ENOENT)
		log_warning_errno(errno, "Failed to remove %s: %m", s->socket_path);
	free(s->socket_path);
	free(s->workers);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}
