/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/*
 * The HTTP(S) server of -mode=webhooks: the scheduler extender and the
 * mutating pod webhook (-schedulerListen with TLS, -insecureSchedulerListen
 * without). webserver.c is the adapter to libmicrohttpd and GnuTLS for this
 * server; the metrics endpoint (metrics/http.c) is a separate, GET-only one.
 *
 * Limits: request bodies up to max_body bytes (413 beyond, decided from
 * Content-Length before anything is read, or when a chunked body grows past
 * it), headers about 8 KiB (431), WEBSERVER_CONNECTIONS_MAX connections (one
 * thread each, so a handler that waits for the API server holds up nobody
 * else), idle connections closed after WEBSERVER_IDLE_TIMEOUT_S.
 *
 * TLS: TLS 1.2 and 1.3 only, ECDHE key exchange and AEAD ciphers only
 * (AES-GCM, ChaCha20-Poly1305), server's preference. The certificate and key
 * files are checked at every handshake and re-read when they changed (a
 * renewed Secret needs no restart; a pair that does not match is not used).
 * The CA file is re-read too when it changed (the operator renews the CA with
 * the certificates; a file without a certificate keeps the CA read before).
 * With a CA file, every
 * request must come with a client certificate that this CA signed (checked
 * through the GnuTLS session before the handler runs): without one the
 * answer is 403 and the connection is closed. With client_name as well, the
 * certificate must also be issued for that name (a DNS subject alternative
 * name, or the common name when it has none): a certificate that the same CA
 * issued for another role of the driver is refused the same way.
 */

#define WEBSERVER_CONNECTIONS_MAX 64u
#define WEBSERVER_IDLE_TIMEOUT_S 30u
/* The GnuTLS priority string: what the TLS scan in test/k8s/test_extender.py expects. */
#define WEBSERVER_TLS_PRIORITIES                                                                        \
	"SECURE256:+SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:" \
	"+CHACHA20-POLY1305:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:-SHA1:%SERVER_PRECEDENCE"

struct webserver;

/**
 * struct webserver_reply - what a handler answers.
 * @status: the HTTP status.
 * @content_type: a static string.
 * @body: malloc'ed, taken over by the server (may be NULL for an empty body).
 * @len: the length of @body.
 */
struct webserver_reply {
	unsigned status;
	const char *content_type;
	char *body;
	size_t len;
};

/**
 * webserver_handler_fn - serve one request.
 * @userdata: as configured.
 * @method: "GET", "POST", ...
 * @path: the path, without the query string.
 * @body: the request body, NUL-terminated (the NUL is not counted in @len).
 * @len: its length.
 * @reply: to fill in.
 *
 * Runs in the connection's thread; several may run at the same time.
 */
typedef void (*webserver_handler_fn)(void *userdata, const char *method, const char *path, const char *body,
				     size_t len, struct webserver_reply *reply);

struct webserver_config {
	const char *listen;    /* as -metricsListen: ":8000", "127.0.0.1:0", "[::1]:8000" */
	const char *cert_file; /* PEM: serve HTTPS with this certificate (chain) and key; NULL: plain HTTP */
	const char *key_file;
	const char *ca_file;   /* PEM: require client certificates signed by it; NULL or "": none asked for */
	const char *client_name; /* with ca_file: the name the client certificate must be issued for; NULL: any */
	size_t max_body;
	webserver_handler_fn handler;
	void *userdata;
};

/**
 * webserver_start() - listen and serve in the background.
 * @cfg: the configuration (strings are read during the call only).
 * @ret: the server; stop it with webserver_stop().
 *
 * Return: 0; -EINVAL (malformed listen address, missing key for a
 * certificate); -errno from reading the files, resolving or binding; -EIO
 * when libmicrohttpd or GnuTLS refuse the configuration (the reason is logged).
 */
int webserver_start(const struct webserver_config *cfg, struct webserver **ret);

/** webserver_port() - the bound TCP port (useful with port 0). */
uint16_t webserver_port(const struct webserver *s);

/** webserver_stop() - close all connections, wait for the threads, free; NULL is fine. */
void webserver_stop(struct webserver *s);
