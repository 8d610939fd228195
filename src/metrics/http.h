/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

/*
 * The metrics HTTP endpoint (http.c is the only file that includes
 * microhttpd.h). Plain HTTP/1.1, GET and HEAD only:
 *
 *   GET <path>          the full exposition (Prometheus text format 0.0.4)
 *   GET <path>/simple   build_info only: cheap, for probes; 503 "not live: <reason>"
 *                       when the liveness check fails (metrics_http_set_liveness())
 *   GET /healthz        200 "ok", or 503 "not ready" (see metrics_http_set_readiness())
 *                       or 503 "not live: <reason>"
 *   anything else       404; other methods 405 with "Allow: GET, HEAD"
 *
 * libmicrohttpd serves from two epoll threads, so a slow scrape (capacity
 * queries may run LVM tools) does not hold up /healthz, and idle or
 * half-sent requests hold a connection slot, never a thread. Request headers
 * are capped (431 beyond about 8 KiB), as are connections (4096, at most a
 * quarter of the open-file limit; a quarter of that per client address) and
 * idle time (10 s). libmicrohttpd's error messages go to the project's logger,
 * at most 10 a minute.
 */

struct metrics_http;

/**
 * metrics_ready_fn - tell whether the process is ready, for /healthz.
 * @userdata: as given to metrics_http_set_readiness().
 *
 * Called from the server's threads, one call at a time; must be quick.
 */
typedef bool (*metrics_ready_fn)(void *userdata);

/**
 * metrics_http_start() - listen and serve in the background.
 * @m: the metrics to serve; must outlive the server.
 * @listen: ":10010" (all addresses, IPv6 and IPv4), "host:port",
 *	"1.2.3.4:port" or "[::1]:port", as Go's net.Listen takes it. Port 0
 *	picks a free port; see metrics_http_port().
 * @path: the metrics path, starting with '/', e.g. "/metrics".
 * @ret: the server; stop it with metrics_http_stop().
 *
 * Until metrics_http_set_readiness() is called, /healthz answers 503.
 *
 * Return: 0; -EINVAL for a malformed @listen or @path; -errno from
 * resolving, socket(), bind() or listen() (-EADDRINUSE ...); -EIO if
 * libmicrohttpd does not start; -ENOMEM.
 */
int metrics_http_start(struct metrics *m, const char *listen, const char *path, struct metrics_http **ret);

/**
 * metrics_http_set_readiness() - decide what /healthz answers.
 * @h: the server.
 * @fn: returns true when ready (200 "ok"), false for 503 "not ready".
 *	NULL means always ready.
 * @userdata: passed to @fn.
 *
 * When this returns, no request is still using the previous callback.
 */
void metrics_http_set_readiness(struct metrics_http *h, metrics_ready_fn fn, void *userdata);

/**
 * metrics_live_fn - tell whether the process can still do its job, for
 * /healthz and <path>/simple (the liveness probe).
 * @userdata: as given to metrics_http_set_liveness().
 * @reason: to fill with why not, in one line, when returning false.
 * @reason_len: size of @reason.
 *
 * Called from the server's threads, one call at a time; must be quick.
 */
typedef bool (*metrics_live_fn)(void *userdata, char *reason, size_t reason_len);

/**
 * metrics_http_set_liveness() - add a liveness check.
 * @h: the server.
 * @fn: the check, NULL for none (the default).
 * @userdata: passed to @fn.
 *
 * While @fn returns false, /healthz and <path>/simple answer 503 with its
 * reason; <path> itself still serves the metrics. When this returns, no
 * request is still using the previous check.
 */
void metrics_http_set_liveness(struct metrics_http *h, metrics_live_fn fn, void *userdata);

/**
 * metrics_http_port() - the TCP port the server is bound to (useful with port 0).
 * @h: the server.
 *
 * Return: the port in host byte order.
 */
uint16_t metrics_http_port(const struct metrics_http *h);

/**
 * metrics_http_stop() - close the listening socket and all connections,
 * wait for the server threads and free the server.
 * @h: the server, or NULL.
 */
void metrics_http_stop(struct metrics_http *h);
