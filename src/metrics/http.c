/* SPDX-License-Identifier: Apache-2.0 */
#include "http.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/reaper.h"
#include "basic/strutil.h"

/*
 * Per-connection memory pool: holds the request line and headers (about half
 * of it) and our response headers. 16 KiB caps request headers near 8 KiB,
 * ample for Prometheus and kubelet; beyond it libmicrohttpd answers 431.
 * Response bodies are separate buffers.
 */
#define HTTP_CONNECTION_MEMORY (16 * 1024)
/*
 * Connections: at most HTTP_CONNECTIONS_MAX, and at most a quarter of the
 * open-file limit (the gRPC side and the driver's own work need the rest);
 * one client address gets a quarter of that. Idle or trickling clients are thus
 * bounded, and a probe from another address always finds a free slot. A
 * connection that sends nothing for HTTP_IDLE_TIMEOUT_S is closed: kubelet
 * probes need one round trip, and Prometheus reconnects when its keep-alive
 * connection was closed between scrapes.
 */
#define HTTP_CONNECTIONS_MAX 4096u
#define HTTP_CONNECTIONS_MIN 16u
#define HTTP_IDLE_TIMEOUT_S 10u
/*
 * libmicrohttpd restarts that timeout at every byte, so a client trickling
 * its headers would keep its slot forever: a connection must also send a
 * complete request within HTTP_REQUEST_DEADLINE_S of connecting or of its
 * previous response (basic/reaper.h).
 */
#define HTTP_REQUEST_DEADLINE_S 10u
/*
 * Two epoll threads, each serving its connections without blocking on any of
 * them: idle and half-sent requests cost a slot, not a thread. A scrape that
 * waits for a capacity query leaves the other thread free for probes.
 */
#define HTTP_THREADS 2u
#define HTTP_BACKLOG 1024
#define HTTP_PATH_MAX 256
#define HTTP_REASON_MAX 512
/* libmicrohttpd's complaints (one per refused connection): at most this many per minute. */
#define HTTP_LOG_BURST 10

#define CONTENT_TYPE_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define CONTENT_TYPE_TEXT "text/plain; charset=utf-8"

struct metrics_http {
	struct metrics *metrics;
	struct MHD_Daemon *daemon;
	struct reaper *reaper;
	uint16_t port;
	char path[HTTP_PATH_MAX];
	char simple_path[HTTP_PATH_MAX + 8];

	pthread_mutex_t ready_lock;
	bool ready_set;
	metrics_ready_fn ready_fn;
	void *ready_userdata;
	metrics_live_fn live_fn;
	void *live_userdata;
};

static pthread_mutex_t mhd_log_lock = PTHREAD_MUTEX_INITIALIZER;
static time_t mhd_log_window;
static unsigned mhd_log_count, mhd_log_dropped;

_printf_(2, 0) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	unsigned dropped = 0;
	struct timespec now;
	size_t n;

	(void)cls;
	/* A flood of clients must not become a flood of log lines. */
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&mhd_log_lock);
	if (now.tv_sec - mhd_log_window >= 60) {
		dropped = mhd_log_dropped;
		mhd_log_window = now.tv_sec;
		mhd_log_count = mhd_log_dropped = 0;
	}
	if (mhd_log_count >= HTTP_LOG_BURST) {
		mhd_log_dropped++;
		pthread_mutex_unlock(&mhd_log_lock);
		return;
	}
	mhd_log_count++;
	pthread_mutex_unlock(&mhd_log_lock);
	if (dropped)
		log_error("libmicrohttpd: %u more message(s) in the last minute were not logged", dropped);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = 0;
	log_error("libmicrohttpd: %s", buf);
}

static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, const char *content_type,
			     struct MHD_Response *resp)
{
	enum MHD_Result ret;

	if (!resp)
		return MHD_NO; /* libmicrohttpd closes the connection */
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES ||
	    (status == MHD_HTTP_METHOD_NOT_ALLOWED &&
	     MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD") != MHD_YES)) {
		MHD_destroy_response(resp);
		return MHD_NO;
	}
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* A reply with constant text. */
static enum MHD_Result reply_static(struct MHD_Connection *c, unsigned status, const char *text)
{
	/* PERSISTENT: libmicrohttpd neither copies nor modifies nor frees it. */
	return queue(c, status, CONTENT_TYPE_TEXT,
		     MHD_create_response_from_buffer(strlen(text), (void *)(uintptr_t)text, MHD_RESPMEM_PERSISTENT));
}

/* A reply that takes over body (malloc'ed), also on failure. */
static enum MHD_Result reply_owned(struct MHD_Connection *c, unsigned status, const char *content_type, char *body,
				   size_t len)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, body, free);

	if (!resp)
		free(body);
	return queue(c, status, content_type, resp);
}

static bool is_ready(struct metrics_http *h)
{
	bool ready;

	pthread_mutex_lock(&h->ready_lock);
	ready = h->ready_set && (!h->ready_fn || h->ready_fn(h->ready_userdata));
	pthread_mutex_unlock(&h->ready_lock);
	return ready;
}

/* false with the reason when the process cannot do its job (see metrics_http_set_liveness()). */
static bool is_live(struct metrics_http *h, char *reason, size_t reason_len)
{
	bool live;

	pthread_mutex_lock(&h->ready_lock);
	live = !h->live_fn || h->live_fn(h->live_userdata, reason, reason_len);
	pthread_mutex_unlock(&h->ready_lock);
	return live;
}

/* 503 with the reason, e.g. "not live: cannot accept gRPC connections ...". */
static enum MHD_Result reply_not_live(struct MHD_Connection *c, const char *reason, unsigned *ret_status)
{
	char *body = xasprintf("not live: %s\n", reason);

	*ret_status = MHD_HTTP_SERVICE_UNAVAILABLE;
	if (!body)
		return reply_static(c, *ret_status, "not live\n");
	return reply_owned(c, *ret_status, CONTENT_TYPE_TEXT, body, strlen(body));
}

static enum MHD_Result serve_metrics(struct metrics_http *h, struct MHD_Connection *c, bool simple,
				     unsigned *ret_status)
{
	char *text = NULL;
	size_t len = 0;
	int r;

	r = metrics_render(h->metrics, simple, &text, &len);
	if (r < 0) {
		log_error_errno(r, "Failed to render metrics: %m");
		*ret_status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		return reply_static(c, *ret_status, "An error has occurred while serving metrics.\n");
	}
	*ret_status = MHD_HTTP_OK;
	return reply_owned(c, *ret_status, CONTENT_TYPE_METRICS, text, len);
}

/* Each connection's request deadline (see HTTP_REQUEST_DEADLINE_S). */
static void connection_notify(void *cls, struct MHD_Connection *c, void **socket_context,
			      enum MHD_ConnectionNotificationCode toe)
{
	struct metrics_http *h = cls;
	const union MHD_ConnectionInfo *ci;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		*socket_context = ci ? reaper_watch(h->reaper, ci->connect_fd) : NULL;
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		/* Before libmicrohttpd closes the descriptor. */
		reaper_forget(h->reaper, *socket_context);
		*socket_context = NULL;
	}
}

static struct reaper_conn *connection_deadline(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci ? ci->socket_context : NULL;
}

/* The response went out: the next request on this connection gets its own deadline. */
static void request_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe)
{
	struct metrics_http *h = cls;

	(void)req_cls;
	(void)toe;
	reaper_restart(h->reaper, connection_deadline(c));
}

static enum MHD_Result handle_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				      const char *version, const char *upload_data, size_t *upload_data_size,
				      void **req_cls)
{
	static int headers_seen;
	struct metrics_http *h = cls;
	char reason[HTTP_REASON_MAX] = "";
	enum MHD_Result ret;
	unsigned status;

	(void)version;
	(void)upload_data;
	/* The headers are in (all a GET needs): no deadline while it is answered. */
	reaper_pause(h->reaper, connection_deadline(c));
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
		/* Answer at once, without reading a body; libmicrohttpd then closes the connection. */
		log_v(5, "HTTP %.16s %.128s -> 405", method, url);
		return reply_static(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	}
	/*
	 * The first call has only the headers. Answering right then makes
	 * libmicrohttpd close the connection, since it cannot know there is no
	 * body; answering on the next call keeps scrapers' connections alive.
	 */
	if (!*req_cls) {
		*req_cls = &headers_seen;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		/*
		 * A GET with a body. No scraper or probe sends one, and reading it
		 * would only cost memory or time; libmicrohttpd cannot answer in
		 * the middle of a body, so just close the connection.
		 */
		log_v(5, "HTTP %s %.128s with a body: closing the connection", method, url);
		return MHD_NO;
	}

	if (strcmp(url, h->path) == 0) {
		ret = serve_metrics(h, c, false, &status);
	} else if (strcmp(url, h->simple_path) == 0) {
		/* The deployments' liveness probe: fails when the process cannot serve. */
		if (!is_live(h, reason, sizeof(reason)))
			ret = reply_not_live(c, reason, &status);
		else
			ret = serve_metrics(h, c, true, &status);
	} else if (strcmp(url, "/healthz") == 0) {
		if (!is_live(h, reason, sizeof(reason))) {
			ret = reply_not_live(c, reason, &status);
		} else {
			bool ready = is_ready(h);
			status = ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
			ret = reply_static(c, status, ready ? "ok" : "not ready");
		}
	} else {
		status = MHD_HTTP_NOT_FOUND;
		ret = reply_static(c, status, "404 page not found\n");
	}
	log_v(5, "HTTP %s %.128s -> %u", method, url, status);
	return ret;
}

/*
 * Splits Go-style "host:port" / "[v6]:port" / ":port" into host (empty for
 * "all addresses") and port.
 */
static int parse_listen(const char *listen, char *host, size_t host_len, char *port, size_t port_len)
{
	const char *colon, *h = listen;
	size_t hl;
	uint64_t p;

	colon = strrchr(listen, ':');
	if (!colon)
		return -EINVAL;
	hl = (size_t)(colon - listen);
	if (hl > 0 && listen[0] == '[') {
		if (listen[hl - 1] != ']' || hl < 2)
			return -EINVAL;
		h = listen + 1;
		hl -= 2;
	} else if (memchr(listen, ':', hl) || memchr(listen, '[', hl) || memchr(listen, ']', hl)) {
		return -EINVAL; /* a bare IPv6 address needs brackets */
	}
	if (hl >= host_len || strlen(colon + 1) >= port_len)
		return -EINVAL;
	if (safe_atou64(colon + 1, &p) < 0 || p > 65535)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = 0;
	snprintf(port, port_len, "%u", (unsigned)p);
	return 0;
}

static int bind_one(int family, int type, int protocol, const struct sockaddr *sa, socklen_t sa_len)
{
	_cleanup_close_ int fd = -1;
	int one = 1, zero = 0;

	fd = socket(family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, protocol);
	if (fd < 0)
		return -errno;
	/* As Go does: restart without waiting for TIME_WAIT to expire. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		return -errno;
	/* "[::]" and ":port" also accept IPv4, as in Go. */
	if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
		return -errno;
	if (bind(fd, sa, sa_len) < 0 || listen(fd, HTTP_BACKLOG) < 0)
		return -errno;
	return TAKE_FD(fd);
}

static int listen_socket(const char *listen, uint16_t *ret_port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
		struct sockaddr_storage storage;
	} bound = {};
	socklen_t bound_len = sizeof(bound);
	char host[256], port[8];
	int fd = -EADDRNOTAVAIL, r;

	r = parse_listen(listen, host, sizeof(host), port, sizeof(port));
	if (r < 0)
		return r;
	if (!host[0]) {
		/* All addresses: IPv6 dual-stack, or IPv4 where IPv6 is disabled. */
		struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
		struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
		s6.sin6_port = s4.sin_port = htons((uint16_t)strtoul(port, NULL, 10));
		fd = bind_one(AF_INET6, SOCK_STREAM, 0, (const struct sockaddr *)&s6, sizeof(s6));
		if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL)
			fd = bind_one(AF_INET, SOCK_STREAM, 0, (const struct sockaddr *)&s4, sizeof(s4));
	} else {
		r = getaddrinfo(host, port, &hints, &ai);
		if (r != 0)
			return log_debug_errno(r == EAI_SYSTEM ? errno : EADDRNOTAVAIL,
					       "Cannot resolve metrics address \"%s\": %s", listen, gai_strerror(r));
		for (struct addrinfo *a = ai; a; a = a->ai_next) {
			fd = bind_one(a->ai_family, a->ai_socktype, a->ai_protocol, a->ai_addr, a->ai_addrlen);
			if (fd >= 0)
				break;
		}
		freeaddrinfo(ai);
	}
	if (fd < 0)
		return fd;
	if (getsockname(fd, &bound.sa, &bound_len) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	*ret_port = ntohs(bound.sa.sa_family == AF_INET6 ? bound.in6.sin6_port : bound.in.sin_port);
	return fd;
}

int metrics_http_start(struct metrics *m, const char *listen, const char *path, struct metrics_http **ret)
{
	struct metrics_http *h;
	sigset_t all, saved;
	struct rlimit rl;
	unsigned max_conns = HTTP_CONNECTIONS_MAX, per_ip;
	size_t plen;
	int fd, r;

	if (!m || !listen || !path || !ret || path[0] != '/')
		return -EINVAL;
	plen = strlen(path);
	if (plen >= HTTP_PATH_MAX)
		return -EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->metrics = m;
	pthread_mutex_init(&h->ready_lock, NULL);
	memcpy(h->path, path, plen + 1);
	/* "/metrics" -> "/metrics/simple"; "/" -> "/simple". */
	snprintf(h->simple_path, sizeof(h->simple_path), "%s%s", path,
		 path[plen - 1] == '/' ? "simple" : "/simple");

	fd = listen_socket(listen, &h->port);
	if (fd < 0) {
		r = fd;
		goto fail;
	}
	r = reaper_new("Metrics HTTP server", HTTP_REQUEST_DEADLINE_S, &h->reaper);
	if (r < 0) {
		close(fd);
		goto fail;
	}
	/*
	 * libmicrohttpd's threads inherit our signal mask: block the
	 * asynchronous signals in them, so SIGTERM & co. reach the thread that
	 * waits for them whatever the caller's mask is.
	 */
	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	sigdelset(&all, SIGABRT);
	sigdelset(&all, SIGTRAP);
	pthread_sigmask(SIG_BLOCK, &all, &saved);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur / 4 < max_conns)
		max_conns = (unsigned)MAX(rl.rlim_cur / 4, (rlim_t)HTTP_CONNECTIONS_MIN);
	per_ip = MAX(max_conns / 4, 4u);
	/* libmicrohttpd takes over fd (and closes it in MHD_stop_daemon). */
	h->daemon = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG,
				     0, NULL, NULL,
				     handle_request, h,
				     /* First, so that the other options' complaints reach our log too. */
				     MHD_OPTION_EXTERNAL_LOGGER, mhd_log, (void *)NULL,
				     MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
				     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONNECTION_MEMORY,
				     MHD_OPTION_CONNECTION_LIMIT, max_conns,
				     MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip,
				     MHD_OPTION_CONNECTION_TIMEOUT, HTTP_IDLE_TIMEOUT_S,
				     MHD_OPTION_THREAD_POOL_SIZE, HTTP_THREADS,
				     MHD_OPTION_NOTIFY_CONNECTION, connection_notify, h,
				     MHD_OPTION_NOTIFY_COMPLETED, request_completed, h,
				     MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (!h->daemon) {
		/* The reason went to the log through mhd_log(). */
		close(fd);
		r = -EIO;
		goto fail;
	}
	log_debug("Metrics HTTP server listening on %s (port %u), path %s, at most %u connections (%u per client address)",
		  listen, (unsigned)h->port, h->path, max_conns, per_ip);
	*ret = h;
	return 0;
fail:
	reaper_free(h->reaper);
	pthread_mutex_destroy(&h->ready_lock);
	free(h);
	return r;
}

void metrics_http_set_readiness(struct metrics_http *h, metrics_ready_fn fn, void *userdata)
{
	pthread_mutex_lock(&h->ready_lock);
	h->ready_set = true;
	h->ready_fn = fn;
	h->ready_userdata = userdata;
	pthread_mutex_unlock(&h->ready_lock);
}

void metrics_http_set_liveness(struct metrics_http *h, metrics_live_fn fn, void *userdata)
{
	pthread_mutex_lock(&h->ready_lock);
	h->live_fn = fn;
	h->live_userdata = userdata;
	pthread_mutex_unlock(&h->ready_lock);
}

uint16_t metrics_http_port(const struct metrics_http *h)
{
	return h->port;
}

void metrics_http_stop(struct metrics_http *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->daemon);
	reaper_free(h->reaper);
	pthread_mutex_destroy(&h->ready_lock);
	free(h);
}
