/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rpc-bench - latency and throughput of a CSI driver's gRPC API, measured by a C client.
 *
 * A Python client spends more time in its own interpreter than the driver spends per call
 * (the driver answers Probe in tens of microseconds), so this client is written against the
 * gRPC core C API, like the driver, with protobuf-c messages from the project's csi.proto.
 *
 * Every client is one thread that makes one call at a time (unary, blocking on its own
 * completion queue). By default each client has its own channel and its own connection
 * (GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL: without it, channels to the same target share one
 * subchannel and so one HTTP/2 connection), as separate sidecars would; --shared makes all
 * clients multiplex their calls over one channel.
 *
 * usage: rpc-bench -e unix:///path.sock [options] COMMAND
 *   wait                   Probe until the driver answers ready (at most -t seconds)
 *   create                 create -n volumes of -s bytes named PREFIX-00000.. (-j parallel)
 *   run METHOD             time METHOD (Probe, NodeGetInfo, GetCapacity, ListVolumes) with
 *                          -c clients for -d seconds; with -L K, K more threads run
 *                          CreateVolume + DeleteVolume of -s bytes meanwhile (slow calls)
 * options: -c clients (1) -d seconds (5) -j parallel creates (1) -n volumes (100)
 *          -s size in bytes (4 MiB) -p name prefix ("bench") -l label for the output
 *          -L slow-call threads (0) -t timeout in seconds (60) -w warm-up calls per client (5)
 *          --shared (one channel for all clients) -m ListVolumes max_entries (0 = all)
 *          --raw (the timed clients speak HTTP/2 themselves, see below)
 *
 * --raw: under TCG emulation a gRPC core call costs the client more than the driver
 * (several threads and context switches per call, about 1.5 ms of a 2 ms Probe), which
 * hides the driver's own latency. With --raw each timed client is one thread with one
 * blocking unix-socket connection and an nghttp2 client session: one write per call, one
 * read per answer. The slow-call threads and the other commands stay on gRPC core.
 * Output: one line "RPC {json}" per measurement, latencies in milliseconds.
 */
#include <errno.h>
#include <getopt.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>

#include <nghttp2/nghttp2.h>

#include "csi.pb-c.h"

#define MAX_CLIENTS 1024
#define MAX_SAMPLES_PER_CLIENT (1 << 20)

struct options {
	const char *endpoint;
	const char *label;
	const char *prefix;
	int clients;
	double seconds;
	int parallel;
	int volumes;
	int64_t size;
	int slow_threads;
	double timeout;
	int warmup;
	int max_entries;
	bool shared;
	bool raw;
};

static struct options opt = {
	.label = "driver", .prefix = "bench", .clients = 1, .seconds = 5, .parallel = 1,
	.volumes = 100, .size = 4 << 20, .timeout = 60, .warmup = 5,
};

/* One method: its path and how to pack the request and check the reply. */
struct method {
	const char *name;
	const char *path;
	const ProtobufCMessageDescriptor *reply;
};

static const struct method methods[] = {
	{ "Probe", "/csi.v1.Identity/Probe", &csi__v1__probe_response__descriptor },
	{ "NodeGetInfo", "/csi.v1.Node/NodeGetInfo", &csi__v1__node_get_info_response__descriptor },
	{ "GetCapacity", "/csi.v1.Controller/GetCapacity",
	  &csi__v1__get_capacity_response__descriptor },
	{ "ListVolumes", "/csi.v1.Controller/ListVolumes",
	  &csi__v1__list_volumes_response__descriptor },
	{ "CreateVolume", "/csi.v1.Controller/CreateVolume",
	  &csi__v1__create_volume_response__descriptor },
	{ "DeleteVolume", "/csi.v1.Controller/DeleteVolume",
	  &csi__v1__delete_volume_response__descriptor },
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const struct method *method_find(const char *name)
{
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strcmp(methods[i].name, name) == 0)
			return &methods[i];
	return NULL;
}

static grpc_channel *channel_new(void)
{
	/*
	 * Reconnect quickly: "wait" polls a driver that is still starting (default: 1 s, growing).
	 * The minimum backoff stays at its default: gRPC also takes it as the connect timeout,
	 * and a connection under TCG emulation can take longer than any short one.
	 */
	grpc_arg arg[] = {
		{ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
		  .value.integer = 1 },
		{ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
		  .value.integer = 100 },
		{ .type = GRPC_ARG_INTEGER, .key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
		  .value.integer = 1000 },
	};
	grpc_channel_args args = { .num_args = sizeof(arg) / sizeof(arg[0]), .args = arg };
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	grpc_channel *ch = grpc_channel_create(opt.endpoint, creds, &args);

	grpc_channel_credentials_release(creds);
	return ch;
}

/* The outcome of one call: the gRPC status, its message and the unpacked reply (or NULL). */
struct reply {
	grpc_status_code status;
	char details[256];
	ProtobufCMessage *msg;
};

static void reply_clear(struct reply *r)
{
	if (r->msg)
		protobuf_c_message_free_unpacked(r->msg, NULL);
	r->msg = NULL;
}

/*
 * call_unary() - one blocking unary call of @m with the packed request @req on @ch,
 * completed on @cq (a pluck queue of the calling thread). Returns 0 when the call
 * completed (whatever its status: see @ret->status), -ETIMEDOUT or -EIO otherwise.
 */
static int call_unary(grpc_channel *ch, grpc_completion_queue *cq, const struct method *m,
		      const ProtobufCMessage *req, struct reply *ret)
{
	uint8_t stack_buf[512];
	size_t len = protobuf_c_message_get_packed_size(req);
	uint8_t *buf = len <= sizeof(stack_buf) ? stack_buf : malloc(len);
	grpc_metadata_array initial_md, trailing_md;
	grpc_byte_buffer *send = NULL, *recv = NULL;
	grpc_slice details = grpc_empty_slice();
	grpc_op ops[6];
	grpc_call *call;
	grpc_event ev;
	gpr_timespec deadline;
	int r = 0;

	if (!buf)
		return -ENOMEM;
	protobuf_c_message_pack(req, buf);
	grpc_slice payload = grpc_slice_from_copied_buffer((const char *)buf, len);
	send = grpc_raw_byte_buffer_create(&payload, 1);
	grpc_slice_unref(payload);
	if (buf != stack_buf)
		free(buf);

	deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
				gpr_time_from_millis((int64_t)(opt.timeout * 1000), GPR_TIMESPAN));
	grpc_slice path = grpc_slice_from_static_string(m->path);
	call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, path, NULL, deadline,
					NULL);
	grpc_metadata_array_init(&initial_md);
	grpc_metadata_array_init(&trailing_md);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = send;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &recv;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &trailing_md;
	ops[5].data.recv_status_on_client.status = &ret->status;
	ops[5].data.recv_status_on_client.status_details = &details;
	if (grpc_call_start_batch(call, ops, 6, call, NULL) != GRPC_CALL_OK) {
		r = -EIO;
		goto out;
	}
	ev = grpc_completion_queue_pluck(cq, call, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
		r = ev.type == GRPC_QUEUE_TIMEOUT ? -ETIMEDOUT : -EIO;
		goto out;
	}
	snprintf(ret->details, sizeof(ret->details), "%.*s", (int)GRPC_SLICE_LENGTH(details),
		 (const char *)GRPC_SLICE_START_PTR(details));
	ret->msg = NULL;
	if (ret->status == GRPC_STATUS_OK && recv) {
		grpc_byte_buffer_reader reader;
		grpc_slice all;

		if (!grpc_byte_buffer_reader_init(&reader, recv)) {
			r = -EIO;
			goto out;
		}
		all = grpc_byte_buffer_reader_readall(&reader);
		grpc_byte_buffer_reader_destroy(&reader);
		ret->msg = protobuf_c_message_unpack(m->reply, NULL, GRPC_SLICE_LENGTH(all),
						     GRPC_SLICE_START_PTR(all));
		grpc_slice_unref(all);
		if (!ret->msg) {
			ret->status = GRPC_STATUS_INTERNAL;
			snprintf(ret->details, sizeof(ret->details), "reply does not unpack");
		}
	}
out:
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&initial_md);
	grpc_metadata_array_destroy(&trailing_md);
	grpc_byte_buffer_destroy(send);
	if (recv)
		grpc_byte_buffer_destroy(recv);
	grpc_call_unref(call);
	return r;
}

/*
 * The --raw client: one blocking HTTP/2 connection over a unix socket, one call at a time.
 */
struct h2c {
	int fd;
	nghttp2_session *session;
	const uint8_t *req; /* the length-prefixed request message */
	size_t req_len, req_off;
	uint8_t *resp;
	size_t resp_len, resp_cap;
	int grpc_status; /* -1 until the trailers say */
	bool closed;
	bool failed;
};

static ssize_t h2_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
	struct h2c *h = ud;
	size_t off = 0;

	(void)s;
	(void)flags;
	while (off < len) {
		ssize_t n = write(h->fd, data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		off += (size_t)n;
	}
	return (ssize_t)len;
}

static int h2_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
		     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	struct h2c *h = ud;

	(void)s;
	(void)f;
	(void)flags;
	if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
		char buf[16];
		snprintf(buf, sizeof(buf), "%.*s", (int)(valuelen < 15 ? valuelen : 15), (const char *)value);
		h->grpc_status = atoi(buf);
	}
	return 0;
}

static int h2_data(nghttp2_session *s, uint8_t flags, int32_t stream, const uint8_t *data, size_t len, void *ud)
{
	struct h2c *h = ud;

	(void)s;
	(void)flags;
	(void)stream;
	if (h->resp_len + len > h->resp_cap) {
		size_t cap = (h->resp_len + len) * 2;
		uint8_t *p = realloc(h->resp, cap);
		if (!p)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		h->resp = p;
		h->resp_cap = cap;
	}
	memcpy(h->resp + h->resp_len, data, len);
	h->resp_len += len;
	return 0;
}

static int h2_close(nghttp2_session *s, int32_t stream, uint32_t error, void *ud)
{
	struct h2c *h = ud;

	(void)s;
	(void)stream;
	h->closed = true;
	h->failed = error != NGHTTP2_NO_ERROR;
	return 0;
}

static ssize_t h2_body(nghttp2_session *s, int32_t stream, uint8_t *buf, size_t len, uint32_t *flags,
			     nghttp2_data_source *src, void *ud)
{
	struct h2c *h = ud;
	size_t n = h->req_len - h->req_off;

	(void)s;
	(void)stream;
	(void)src;
	if (n > len)
		n = len;
	memcpy(buf, h->req + h->req_off, n);
	h->req_off += n;
	if (h->req_off == h->req_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static void h2c_free(struct h2c *h)
{
	if (!h)
		return;
	if (h->session)
		nghttp2_session_del(h->session);
	if (h->fd >= 0)
		close(h->fd);
	free(h->resp);
	free(h);
}

static struct h2c *h2c_new(void)
{
	const char *path = opt.endpoint;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	nghttp2_session_callbacks *cb;
	struct h2c *h;

	if (strncmp(path, "unix://", 7) == 0)
		path += 7;
	else if (strncmp(path, "unix:", 5) == 0)
		path += 5;
	else {
		fprintf(stderr, "rpc-bench: --raw needs a unix:// endpoint\n");
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (h->fd < 0 || connect(h->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "rpc-bench: connect %s: %s\n", path, strerror(errno));
		h2c_free(h);
		return NULL;
	}
	if (nghttp2_session_callbacks_new(&cb) != 0) {
		h2c_free(h);
		return NULL;
	}
	nghttp2_session_callbacks_set_send_callback(cb, h2_send);
	nghttp2_session_callbacks_set_on_header_callback(cb, h2_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_close);
	if (nghttp2_session_client_new(&h->session, cb, h) != 0 ||
	    nghttp2_submit_settings(h->session, NGHTTP2_FLAG_NONE, NULL, 0) != 0) {
		nghttp2_session_callbacks_del(cb);
		h2c_free(h);
		return NULL;
	}
	nghttp2_session_callbacks_del(cb);
	return h;
}

/* One unary call over @h; same contract as call_unary(). */
static int h2c_call(struct h2c *h, const struct method *m, const ProtobufCMessage *req, struct reply *ret)
{
	size_t len = protobuf_c_message_get_packed_size(req);
	uint8_t stack_buf[512], *buf = len + 5 <= sizeof(stack_buf) ? stack_buf : malloc(len + 5);
	const nghttp2_nv hdrs[] = {
#define NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE }
		NV(":method", "POST"),
		NV(":scheme", "http"),
		NV(":path", m->path),
		NV(":authority", "localhost"),
		NV("content-type", "application/grpc"),
		NV("te", "trailers"),
#undef NV
	};
	nghttp2_data_provider dp = { .read_callback = h2_body };
	int r = 0;

	if (!buf)
		return -ENOMEM;
	buf[0] = 0;
	buf[1] = (uint8_t)(len >> 24);
	buf[2] = (uint8_t)(len >> 16);
	buf[3] = (uint8_t)(len >> 8);
	buf[4] = (uint8_t)len;
	protobuf_c_message_pack(req, buf + 5);
	h->req = buf;
	h->req_len = len + 5;
	h->req_off = 0;
	h->resp_len = 0;
	h->grpc_status = -1;
	h->closed = h->failed = false;
	if (nghttp2_submit_request(h->session, NULL, hdrs, sizeof(hdrs) / sizeof(hdrs[0]), &dp, NULL) < 0) {
		r = -EIO;
		goto out;
	}
	while (!h->closed) {
		uint8_t in[16384];
		ssize_t n;

		if (nghttp2_session_send(h->session) != 0) {
			r = -EIO;
			goto out;
		}
		n = read(h->fd, in, sizeof(in));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || nghttp2_session_mem_recv(h->session, in, (size_t)n) < 0) {
			r = -EIO;
			goto out;
		}
	}
	/* Acknowledgements and window updates go out with the next call's frames. */
	ret->msg = NULL;
	ret->details[0] = 0;
	ret->status = h->failed || h->grpc_status < 0 ? GRPC_STATUS_UNKNOWN : (grpc_status_code)h->grpc_status;
	if (ret->status == GRPC_STATUS_OK) {
		if (h->resp_len < 5)
			ret->status = GRPC_STATUS_INTERNAL;
		else
			ret->msg = protobuf_c_message_unpack(m->reply, NULL, h->resp_len - 5, h->resp + 5);
		if (!ret->msg) {
			ret->status = GRPC_STATUS_INTERNAL;
			snprintf(ret->details, sizeof(ret->details), "reply does not unpack");
		}
	}
out:
	if (buf != stack_buf)
		free(buf);
	return r;
}

/* The request messages of the timed methods; read-only, shared by all threads. */
static Csi__V1__VolumeCapability__MountVolume mount_ext4 = CSI__V1__VOLUME_CAPABILITY__MOUNT_VOLUME__INIT;
static Csi__V1__VolumeCapability__AccessMode access_rw = CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__INIT;
static Csi__V1__VolumeCapability cap_ext4 = CSI__V1__VOLUME_CAPABILITY__INIT;
static Csi__V1__VolumeCapability *caps[1] = { &cap_ext4 };

static void requests_init(void)
{
	mount_ext4.fs_type = (char *)"ext4";
	access_rw.mode = CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER;
	cap_ext4.access_mode = &access_rw;
	cap_ext4.access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT;
	cap_ext4.mount = &mount_ext4;
}

/* One call of a timed method; returns 0 for an OK reply, else logs why and returns < 0. */
static int call_timed(grpc_channel *ch, grpc_completion_queue *cq, struct h2c *h2, const struct method *m,
		      size_t *ret_entries)
{
	Csi__V1__ProbeRequest probe = CSI__V1__PROBE_REQUEST__INIT;
	Csi__V1__NodeGetInfoRequest info = CSI__V1__NODE_GET_INFO_REQUEST__INIT;
	Csi__V1__GetCapacityRequest capacity = CSI__V1__GET_CAPACITY_REQUEST__INIT;
	Csi__V1__ListVolumesRequest list = CSI__V1__LIST_VOLUMES_REQUEST__INIT;
	const ProtobufCMessage *req;
	struct reply rep = { 0 };
	size_t entries = 0;
	int r;

	capacity.n_volume_capabilities = 1;
	capacity.volume_capabilities = caps;
	list.max_entries = opt.max_entries;
	if (strcmp(m->name, "Probe") == 0)
		req = &probe.base;
	else if (strcmp(m->name, "NodeGetInfo") == 0)
		req = &info.base;
	else if (strcmp(m->name, "GetCapacity") == 0)
		req = &capacity.base;
	else
		req = &list.base;

	r = h2 ? h2c_call(h2, m, req, &rep) : call_unary(ch, cq, m, req, &rep);
	if (r < 0) {
		fprintf(stderr, "rpc-bench: %s: call failed: %s\n", m->name, strerror(-r));
		return r;
	}
	if (rep.status != GRPC_STATUS_OK) {
		fprintf(stderr, "rpc-bench: %s: status %d: %s\n", m->name, rep.status, rep.details);
		reply_clear(&rep);
		return -EIO;
	}
	if (strcmp(m->name, "ListVolumes") == 0)
		entries = ((Csi__V1__ListVolumesResponse *)rep.msg)->n_entries;
	reply_clear(&rep);
	if (ret_entries)
		*ret_entries = entries;
	return 0;
}

static int create_volume(grpc_channel *ch, grpc_completion_queue *cq, const char *name,
			 char *ret_id, size_t id_size)
{
	Csi__V1__CreateVolumeRequest req = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
	Csi__V1__CapacityRange range = CSI__V1__CAPACITY_RANGE__INIT;
	struct reply rep = { 0 };
	int r;

	range.required_bytes = opt.size;
	req.name = (char *)name;
	req.capacity_range = &range;
	req.n_volume_capabilities = 1;
	req.volume_capabilities = caps;
	r = call_unary(ch, cq, method_find("CreateVolume"), &req.base, &rep);
	if (r < 0)
		return r;
	if (rep.status != GRPC_STATUS_OK) {
		fprintf(stderr, "rpc-bench: CreateVolume %s: status %d: %s\n", name, rep.status,
			rep.details);
		reply_clear(&rep);
		return -EIO;
	}
	snprintf(ret_id, id_size, "%s", ((Csi__V1__CreateVolumeResponse *)rep.msg)->volume->volume_id);
	reply_clear(&rep);
	return 0;
}

static int delete_volume(grpc_channel *ch, grpc_completion_queue *cq, const char *id)
{
	Csi__V1__DeleteVolumeRequest req = CSI__V1__DELETE_VOLUME_REQUEST__INIT;
	struct reply rep = { 0 };
	int r;

	req.volume_id = (char *)id;
	r = call_unary(ch, cq, method_find("DeleteVolume"), &req.base, &rep);
	if (r < 0)
		return r;
	reply_clear(&rep);
	if (rep.status != GRPC_STATUS_OK) {
		fprintf(stderr, "rpc-bench: DeleteVolume %s: status %d: %s\n", id, rep.status,
			rep.details);
		return -EIO;
	}
	return 0;
}

/* Shared state of one run: the threads start together and stop at a common end time. */
static pthread_barrier_t start_barrier;
static volatile double end_time;
static grpc_channel *shared_channel;
static volatile int slow_stop;

struct client {
	pthread_t thread;
	int index;
	const struct method *m;
	double *lat;       /* seconds per call, after the warm-up */
	size_t n, room;    /* samples taken, room in lat */
	size_t entries;    /* ListVolumes: entries in the last reply */
	int errors;
	int slow_calls;    /* slow threads: CreateVolume + DeleteVolume calls made */
	double first, last;
};

static void *client_run(void *arg)
{
	struct client *c = arg;
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_channel *ch = opt.shared || opt.raw ? shared_channel : channel_new();
	struct h2c *h2 = opt.raw ? h2c_new() : NULL;

	if (opt.raw && !h2)
		c->errors = 101;
	/* The warm-up connects the channel and touches the driver's code paths. */
	for (int i = 0; i < opt.warmup && c->errors <= 100; i++)
		if (call_timed(ch, cq, h2, c->m, &c->entries) < 0)
			c->errors++;
	pthread_barrier_wait(&start_barrier);
	c->first = now_s();
	for (;;) {
		double t0 = now_s(), t1;

		if (t0 >= end_time || c->n >= c->room || c->errors > 100)
			break;
		if (call_timed(ch, cq, h2, c->m, &c->entries) < 0) {
			c->errors++;
			if (c->errors > 100)
				break;
			continue;
		}
		t1 = now_s();
		c->lat[c->n++] = t1 - t0;
		c->last = t1;
	}
	if (!opt.shared && !opt.raw)
		grpc_channel_destroy(ch);
	h2c_free(h2);
	grpc_completion_queue_shutdown(cq);
	grpc_completion_queue_destroy(cq);
	return NULL;
}

/* A slow-call thread: CreateVolume then DeleteVolume, over and over, until told to stop. */
static void *slow_run(void *arg)
{
	struct client *c = arg;
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_channel *ch = channel_new();
	char name[128], id[128];

	pthread_barrier_wait(&start_barrier);
	for (int i = 0; !slow_stop; i++) {
		snprintf(name, sizeof(name), "%s-slow-%d-%d", opt.prefix, c->index, i);
		if (create_volume(ch, cq, name, id, sizeof(id)) < 0) {
			c->errors++;
			break;
		}
		c->slow_calls++;
		if (delete_volume(ch, cq, id) < 0) {
			c->errors++;
			break;
		}
		c->slow_calls++;
	}
	grpc_channel_destroy(ch);
	grpc_completion_queue_shutdown(cq);
	grpc_completion_queue_destroy(cq);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of the sorted @v. */
static double percentile(const double *v, size_t n, double p)
{
	size_t k;

	if (n == 0)
		return 0;
	k = (size_t)(p / 100.0 * (double)n + 0.999999);
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return v[k - 1];
}

static int cmd_run(const char *method_name)
{
	const struct method *m = method_find(method_name);
	struct client *cl, *slow = NULL;
	size_t total = 0, entries = 0;
	double *all, first = 0, last = 0;
	int errors = 0, slow_calls = 0, slow_errors = 0;

	if (!m || strcmp(m->name, "CreateVolume") == 0 || strcmp(m->name, "DeleteVolume") == 0) {
		fprintf(stderr, "rpc-bench: run: unknown method '%s'\n", method_name);
		return 2;
	}
	cl = calloc((size_t)opt.clients, sizeof(*cl));
	if (opt.slow_threads > 0)
		slow = calloc((size_t)opt.slow_threads, sizeof(*slow));
	if (!cl || (opt.slow_threads > 0 && !slow))
		return 1;
	if (opt.shared)
		shared_channel = channel_new();
	pthread_barrier_init(&start_barrier, NULL, (unsigned)(opt.clients + opt.slow_threads + 1));
	slow_stop = 0;
	for (int i = 0; i < opt.slow_threads; i++) {
		slow[i].index = i;
		pthread_create(&slow[i].thread, NULL, slow_run, &slow[i]);
	}
	/* Room for the samples: one call per 5 us per client, bounded (a client that fills it
	 * stops early; wall_s and calls_per_s then cover the calls made). */
	size_t room = (size_t)(opt.seconds / 5e-6) + 16;
	if (room > MAX_SAMPLES_PER_CLIENT)
		room = MAX_SAMPLES_PER_CLIENT;
	for (int i = 0; i < opt.clients; i++) {
		cl[i].index = i;
		cl[i].m = m;
		cl[i].room = room;
		cl[i].lat = malloc(room * sizeof(double));
		if (!cl[i].lat)
			return 1;
		pthread_create(&cl[i].thread, NULL, client_run, &cl[i]);
	}
	/* The end time is set before the barrier opens, so every thread sees it. */
	end_time = 1e18;
	pthread_barrier_wait(&start_barrier);
	first = now_s();
	end_time = first + opt.seconds;
	for (int i = 0; i < opt.clients; i++) {
		pthread_join(cl[i].thread, NULL);
		total += cl[i].n;
		errors += cl[i].errors;
		entries = cl[i].entries;
		if (cl[i].last > last)
			last = cl[i].last;
	}
	slow_stop = 1;
	for (int i = 0; i < opt.slow_threads; i++) {
		pthread_join(slow[i].thread, NULL);
		slow_calls += slow[i].slow_calls;
		slow_errors += slow[i].errors;
	}
	if (opt.shared)
		grpc_channel_destroy(shared_channel);

	all = malloc((total + 1) * sizeof(double));
	if (!all)
		return 1;
	total = 0;
	for (int i = 0; i < opt.clients; i++) {
		memcpy(all + total, cl[i].lat, cl[i].n * sizeof(double));
		total += cl[i].n;
		free(cl[i].lat);
	}
	qsort(all, total, sizeof(double), cmp_double);
	double wall = last > first ? last - first : 0;
	printf("RPC {\"driver\": \"%s\", \"method\": \"%s\", \"clients\": %d, \"channel\": \"%s\", "
	       "\"client\": \"%s\", "
	       "\"slow_threads\": %d, \"calls\": %zu, \"errors\": %d, \"wall_s\": %.3f, "
	       "\"calls_per_s\": %.1f, \"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, "
	       "\"max_ms\": %.3f, \"list_entries\": %zu, \"slow_calls\": %d, \"slow_errors\": %d}\n",
	       opt.label, m->name, opt.clients, opt.shared ? "shared" : "own", opt.raw ? "nghttp2" : "grpc-core",
	       opt.slow_threads,
	       total, errors, wall, wall > 0 ? (double)total / wall : 0,
	       percentile(all, total, 50) * 1e3, percentile(all, total, 90) * 1e3,
	       percentile(all, total, 99) * 1e3, total ? all[total - 1] * 1e3 : 0, entries,
	       slow_calls, slow_errors);
	fflush(stdout);
	free(all);
	free(cl);
	free(slow);
	pthread_barrier_destroy(&start_barrier);
	return errors || slow_errors || total == 0 ? 1 : 0;
}

static int cmd_wait(void)
{
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_channel *ch = channel_new();
	const struct method *m = method_find("Probe");
	double start = now_s(), saved = opt.timeout;
	int rc = 1;

	opt.timeout = 2;
	while (now_s() - start < saved) {
		Csi__V1__ProbeRequest req = CSI__V1__PROBE_REQUEST__INIT;
		struct reply rep = { 0 };

		/* A fresh channel each time: a channel that failed to connect waits out its backoff. */
		grpc_channel_destroy(ch);
		ch = channel_new();
		if (call_unary(ch, cq, m, &req.base, &rep) == 0 && rep.status == GRPC_STATUS_OK) {
			Csi__V1__ProbeResponse *p = (Csi__V1__ProbeResponse *)rep.msg;
			bool ready = !p->ready || p->ready->value;

			reply_clear(&rep);
			if (ready) {
				printf("# %s: ready after %.2f s of waiting\n", opt.label,
				       now_s() - start);
				rc = 0;
				break;
			}
		}
		reply_clear(&rep);
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	opt.timeout = saved;
	if (rc)
		fprintf(stderr, "rpc-bench: %s not ready after %.0f s\n", opt.label, saved);
	grpc_channel_destroy(ch);
	grpc_completion_queue_shutdown(cq);
	grpc_completion_queue_destroy(cq);
	return rc;
}

static int next_volume;
static pthread_mutex_t next_lock = PTHREAD_MUTEX_INITIALIZER;

static void *create_run(void *arg)
{
	struct client *c = arg;
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_channel *ch = channel_new();
	char name[128], id[128];

	for (;;) {
		int i;

		pthread_mutex_lock(&next_lock);
		i = next_volume++;
		pthread_mutex_unlock(&next_lock);
		if (i >= opt.volumes)
			break;
		snprintf(name, sizeof(name), "%s-%05d", opt.prefix, i);
		if (create_volume(ch, cq, name, id, sizeof(id)) < 0) {
			c->errors++;
			break;
		}
		c->slow_calls++;
	}
	grpc_channel_destroy(ch);
	grpc_completion_queue_shutdown(cq);
	grpc_completion_queue_destroy(cq);
	return NULL;
}

static int cmd_create(void)
{
	struct client cl[64] = { 0 };
	int n = opt.parallel < 1 ? 1 : opt.parallel > 64 ? 64 : opt.parallel;
	int made = 0, errors = 0;
	double t0 = now_s(), wall;

	for (int i = 0; i < n; i++)
		pthread_create(&cl[i].thread, NULL, create_run, &cl[i]);
	for (int i = 0; i < n; i++) {
		pthread_join(cl[i].thread, NULL);
		made += cl[i].slow_calls;
		errors += cl[i].errors;
	}
	wall = now_s() - t0;
	printf("RPC {\"driver\": \"%s\", \"method\": \"CreateVolume\", \"clients\": %d, "
	       "\"calls\": %d, \"errors\": %d, \"wall_s\": %.3f, \"calls_per_s\": %.2f, "
	       "\"size_bytes\": %" PRId64 "}\n",
	       opt.label, n, made, errors, wall, wall > 0 ? made / wall : 0, opt.size);
	fflush(stdout);
	return errors ? 1 : 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: rpc-bench -e unix:///path.sock [-c clients] [-d seconds] [-j parallel]\n"
			"       [-n volumes] [-s bytes] [-p prefix] [-l label] [-L slow threads]\n"
			"       [-t timeout] [-w warmup] [-m max_entries] [--shared] [--raw]\n"
			"       wait | create | run Probe|NodeGetInfo|GetCapacity|ListVolumes\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "shared", no_argument, NULL, 'S' },
		{ "raw", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	int c, rc;

	while ((c = getopt_long(argc, argv, "e:c:d:j:n:s:p:l:L:t:w:m:h", longopts, NULL)) >= 0) {
		switch (c) {
		case 'e': opt.endpoint = optarg; break;
		case 'c': opt.clients = (int)strtol(optarg, NULL, 10); break;
		case 'd': opt.seconds = strtod(optarg, NULL); break;
		case 'j': opt.parallel = (int)strtol(optarg, NULL, 10); break;
		case 'n': opt.volumes = (int)strtol(optarg, NULL, 10); break;
		case 's': opt.size = strtoll(optarg, NULL, 10); break;
		case 'p': opt.prefix = optarg; break;
		case 'l': opt.label = optarg; break;
		case 'L': opt.slow_threads = (int)strtol(optarg, NULL, 10); break;
		case 't': opt.timeout = strtod(optarg, NULL); break;
		case 'w': opt.warmup = (int)strtol(optarg, NULL, 10); break;
		case 'm': opt.max_entries = (int)strtol(optarg, NULL, 10); break;
		case 'S': opt.shared = true; break;
		case 'R': opt.raw = true; break;
		default: usage(); return 2;
		}
	}
	if (!opt.endpoint || optind >= argc || opt.clients < 1 || opt.clients > MAX_CLIENTS ||
	    opt.seconds <= 0 || opt.slow_threads < 0 || opt.slow_threads > 64 || opt.size <= 0) {
		usage();
		return 2;
	}
	requests_init();
	grpc_init();
	if (strcmp(argv[optind], "wait") == 0)
		rc = cmd_wait();
	else if (strcmp(argv[optind], "create") == 0)
		rc = cmd_create();
	else if (strcmp(argv[optind], "run") == 0 && optind + 1 < argc)
		rc = cmd_run(argv[optind + 1]);
	else {
		usage();
		rc = 2;
	}
	grpc_shutdown();
	return rc;
}
