/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP(S) server of -mode=webhooks on libmicrohttpd, with TLS from
 * libmicrohttpd's GnuTLS backend. Unlike the metrics endpoint it reads request
 * bodies (the scheduler's ExtenderArgs, the API server's AdmissionReview) and
 * its handlers wait for the API server, so every connection gets its own
 * thread and their number is capped.
 */
#include "webserver.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/reaper.h"
#include "basic/strbuf.h"
#include "basic/strutil.h"

#define WEBSERVER_CONNECTION_MEMORY (16 * 1024)
#define WEBSERVER_BACKLOG 128
#define WEBSERVER_PEM_MAX (1024 * 1024)
#define CONTENT_TYPE_TEXT "text/plain; charset=utf-8"
#define WEBSERVER_CHAIN_MAX 8
/*
 * The idle timeout restarts at every byte: a client trickling its handshake,
 * headers or body would hold one of the WEBSERVER_CONNECTIONS_MAX threads
 * forever. So a connection must also complete its TLS handshake and request
 * within this long of connecting or of its previous response (basic/reaper.h),
 * and one client address gets at most half of the connections: the API server
 * (webhook calls in bursts of pod creations) and the scheduler each come from
 * one address, and neither they nor a hostile pod can lock the other out.
 */
#define WEBSERVER_REQUEST_DEADLINE_S 10u
#define WEBSERVER_PER_IP_MAX (WEBSERVER_CONNECTIONS_MAX / 2)

/*
 * One certificate (chain) and key as read from the files. GnuTLS uses them
 * during handshakes without taking a reference, so a generation replaced by a
 * newer one stays allocated until the server stops: a rotation costs a few
 * KiB, and certificates rotate every few weeks.
 */
struct cert_gen {
	struct cert_gen *older;
	gnutls_pcert_st pcert[WEBSERVER_CHAIN_MAX];
	unsigned n_pcert;
	gnutls_privkey_t key;
	struct stat cert_st, key_st;
};

/* The HTTPS server whose certificate files the handshake callback reads (one per process). */
static pthread_mutex_t cert_lock = PTHREAD_MUTEX_INITIALIZER;
static struct webserver *tls_server;

struct webserver {
	struct MHD_Daemon *daemon;
	struct reaper *reaper;
	uint16_t port;
	bool verify_clients;
	char *client_name; /* the name a client certificate must carry; NULL: any */
	size_t max_body;
	webserver_handler_fn handler;
	void *userdata;
	/* HTTPS: the files and what was read from them (cert_lock) */
	char *cert_file, *key_file;
	struct cert_gen *cert;
	/* The CA that client certificates must chain to, re-read when the file
	 * changes (ca_lock): the operator renews the CA with the certificates. */
	pthread_mutex_t ca_lock;
	char *ca_file;
	struct stat ca_st;
	gnutls_x509_trust_list_t ca;
};

/* Per request: the body read so far. */
struct request {
	struct strbuf body;
	bool too_big;
};

_printf_(2, 0) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = 0;
	/* One line per refused connection or bad handshake: debug level, a client cannot flood the log. */
	log_debug("libmicrohttpd (webhooks): %s", buf);
}

static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, const char *content_type, char *body,
			     size_t len, bool close_after)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = body ? MHD_create_response_from_buffer_with_free_callback(len, body, free)
		    : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES ||
	    (close_after && MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close") != MHD_YES)) {
		MHD_destroy_response(resp);
		return MHD_NO;
	}
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text, bool close_after)
{
	char *body = strdup(text);

	if (!body)
		return MHD_NO;
	return queue(c, status, CONTENT_TYPE_TEXT, body, strlen(body), close_after);
}

/*
 * With a CA, a client must show a certificate that it signed. libmicrohttpd
 * asks for one (GNUTLS_CERT_REQUEST) but completes the handshake without:
 * the check is here, on the session, before any request is served.
 */
static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Read the CA file into a new trust list when it changed (ca_lock held). A file
 * that cannot be read or holds no certificate keeps the list read before. */
static void ca_refresh(struct webserver *s)
{
	_cleanup_free_ char *pem = NULL;
	gnutls_x509_trust_list_t tl;
	gnutls_datum_t d;
	struct stat st;
	int r;

	if (stat(s->ca_file, &st) < 0 || (s->ca && same_file(&st, &s->ca_st)))
		return;
	r = read_file_limited(s->ca_file, WEBSERVER_PEM_MAX, &pem, NULL);
	if (r < 0) {
		log_warning_errno(r, "Cannot read the CA %s, keeping the one read before: %m", s->ca_file);
		return;
	}
	if (gnutls_x509_trust_list_init(&tl, 0) < 0)
		return;
	d.data = (unsigned char *)pem;
	d.size = (unsigned)strlen(pem);
	r = gnutls_x509_trust_list_add_trust_mem(tl, &d, NULL, GNUTLS_X509_FMT_PEM, 0, 0);
	if (r <= 0) {
		log_warning("The CA %s holds no certificate (%s), keeping the one read before", s->ca_file,
			    r < 0 ? gnutls_strerror(r) : "none found");
		gnutls_x509_trust_list_deinit(tl, 1);
		return;
	}
	if (s->ca)
		log_info("The CA %s changed: client certificates are checked against the new one", s->ca_file);
	gnutls_x509_trust_list_deinit(s->ca, 1);
	s->ca = tl;
	s->ca_st = st;
}

/* The client's chain (DER, leaf first) against the CA file as it is now. */
static int verify_chain(struct webserver *s, const gnutls_datum_t *peers, unsigned n, unsigned *status)
{
	gnutls_x509_crt_t crts[WEBSERVER_CHAIN_MAX];
	unsigned k = 0;
	int r = 0;

	if (n > WEBSERVER_CHAIN_MAX)
		n = WEBSERVER_CHAIN_MAX;
	for (; k < n; k++) {
		if ((r = gnutls_x509_crt_init(&crts[k])) < 0)
			break;
		if ((r = gnutls_x509_crt_import(crts[k], &peers[k], GNUTLS_X509_FMT_DER)) < 0) {
			gnutls_x509_crt_deinit(crts[k]);
			break;
		}
	}
	if (r >= 0) {
		pthread_mutex_lock(&s->ca_lock);
		ca_refresh(s);
		/* Validity times are checked too (GnuTLS's default). */
		r = s->ca ? gnutls_x509_trust_list_verify_crt(s->ca, crts, k, 0, status, NULL) : GNUTLS_E_NO_CERTIFICATE_FOUND;
		pthread_mutex_unlock(&s->ca_lock);
	}
	while (k > 0)
		gnutls_x509_crt_deinit(crts[--k]);
	return r;
}

static int verify_client(struct webserver *s, struct MHD_Connection *c, const char *name, char *why, size_t why_len)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	const gnutls_datum_t *peers;
	gnutls_session_t session;
	gnutls_x509_crt_t crt;
	unsigned status = 0, n = 0;
	bool ok;
	int r;

	if (!ci || !ci->tls_session) {
		snprintf(why, why_len, "no TLS session");
		return -EPERM;
	}
	session = (gnutls_session_t)ci->tls_session;
	if (gnutls_certificate_type_get(session) != GNUTLS_CRT_X509 ||
	    !(peers = gnutls_certificate_get_peers(session, &n)) || n == 0) {
		snprintf(why, why_len, "no client certificate");
		return -EPERM;
	}
	r = verify_chain(s, peers, n, &status);
	if (r < 0) {
		snprintf(why, why_len, "client certificate not verified: %s", r == -ENOMEM ? "out of memory" : gnutls_strerror(r));
		return -EPERM;
	}
	if (status != 0) {
		gnutls_datum_t out = {};
		if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) == 0) {
			snprintf(why, why_len, "client certificate rejected: %s", out.data);
			gnutls_free(out.data);
		} else
			snprintf(why, why_len, "client certificate rejected (status 0x%x)", status);
		return -EPERM;
	}
	if (!name)
		return 0;
	/* The CA signs the certificates of every role: the name says which one this is. */
	if (gnutls_x509_crt_init(&crt) < 0) {
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	ok = gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) >= 0 &&
	     gnutls_x509_crt_check_hostname2(crt, name, GNUTLS_VERIFY_DO_NOT_ALLOW_WILDCARDS) != 0;
	gnutls_x509_crt_deinit(crt);
	if (!ok) {
		snprintf(why, why_len, "client certificate is not issued for \"%s\"", name);
		return -EPERM;
	}
	return 0;
}

/* Each connection's request deadline (see WEBSERVER_REQUEST_DEADLINE_S). */
static void connection_notify(void *cls, struct MHD_Connection *c, void **socket_context,
			      enum MHD_ConnectionNotificationCode toe)
{
	struct webserver *s = cls;
	const union MHD_ConnectionInfo *ci;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		*socket_context = ci ? reaper_watch(s->reaper, ci->connect_fd) : NULL;
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		/* Before libmicrohttpd closes the descriptor. */
		reaper_forget(s->reaper, *socket_context);
		*socket_context = NULL;
	}
}

static struct reaper_conn *connection_deadline(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci ? ci->socket_context : NULL;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			      const char *version, const char *upload_data, size_t *upload_data_size, void **req_cls)
{
	struct webserver *s = cls;
	struct request *req = *req_cls;
	struct webserver_reply reply = {};
	char why[256];

	(void)version;
	if (!req) {
		/* Headers only: decide what can be decided before reading a body. */
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		uint64_t n;

		if (s->verify_clients && verify_client(s, c, s->client_name, why, sizeof(why)) < 0) {
			log_v(3, "HTTPS server: %s %.128s refused: %s", method, url, why);
			return reply_text(c, MHD_HTTP_FORBIDDEN,
					  s->client_name ? "forbidden: a client certificate for this role, signed by the CA of -caFile, is required\n"
							 : "forbidden: a client certificate signed by the CA of -caFile is required\n",
					  true);
		}
		if (cl && (safe_atou64(cl, &n) < 0 || n > s->max_body)) {
			snprintf(why, sizeof(why), "request body too large (%s bytes, at most %zu)\n", cl, s->max_body);
			return reply_text(c, MHD_HTTP_CONTENT_TOO_LARGE, why, true);
		}
		req = calloc(1, sizeof(*req));
		if (!req)
			return MHD_NO;
		req->body.limit = s->max_body + 1;
		*req_cls = req;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		if (!req->too_big) {
			if (strbuf_len(&req->body) + *upload_data_size > s->max_body)
				req->too_big = true;
			else
				strbuf_append(&req->body, upload_data, *upload_data_size);
		}
		*upload_data_size = 0;
		/* A chunked body beyond the limit: stop reading, close the connection. */
		return req->too_big ? MHD_NO : MHD_YES;
	}
	/* The whole request is in: no deadline while the handler works (it may wait for the API server). */
	reaper_pause(s->reaper, connection_deadline(c));
	if (strbuf_failed(&req->body))
		return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", true);

	s->handler(s->userdata, method, url, strbuf_str(&req->body), strbuf_len(&req->body), &reply);
	return queue(c, reply.status ? reply.status : MHD_HTTP_INTERNAL_SERVER_ERROR,
		     reply.content_type ? reply.content_type : CONTENT_TYPE_TEXT, reply.body, reply.len, false);
}

static void request_done(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe)
{
	struct webserver *s = cls;
	struct request *req = *req_cls;

	(void)toe;
	/* The next request on this connection gets its own deadline. */
	reaper_restart(s->reaper, connection_deadline(c));
	if (!req)
		return;
	strbuf_free(&req->body);
	free(req);
	*req_cls = NULL;
}

/* "host:port", "[v6]:port", ":port" -> host ("" for all addresses) and port. */
static int parse_listen(const char *listen, char *host, size_t host_len, char *port, size_t port_len)
{
	const char *colon = strrchr(listen, ':'), *h = listen;
	size_t hl;
	uint64_t p;

	if (!colon)
		return -EINVAL;
	hl = (size_t)(colon - listen);
	if (hl > 0 && listen[0] == '[') {
		if (hl < 2 || listen[hl - 1] != ']')
			return -EINVAL;
		h = listen + 1;
		hl -= 2;
	} else if (memchr(listen, ':', hl) || memchr(listen, '[', hl) || memchr(listen, ']', hl)) {
		return -EINVAL;
	}
	if (hl >= host_len || strlen(colon + 1) >= port_len || safe_atou64(colon + 1, &p) < 0 || p > 65535)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = 0;
	snprintf(port, port_len, "%u", (unsigned)p);
	return 0;
}

static int bind_one(int family, const struct sockaddr *sa, socklen_t sa_len)
{
	_cleanup_close_ int fd = -1;
	int one = 1, zero = 0;

	fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		return -errno;
	if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
		return -errno;
	if (bind(fd, sa, sa_len) < 0 || listen(fd, WEBSERVER_BACKLOG) < 0)
		return -errno;
	return TAKE_FD(fd);
}

static int listen_socket(const char *listen, uint16_t *ret_port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *ai = NULL;
	struct sockaddr_storage bound = {};
	socklen_t bound_len = sizeof(bound);
	char host[256], port[8];
	int fd = -EADDRNOTAVAIL, r;

	r = parse_listen(listen, host, sizeof(host), port, sizeof(port));
	if (r < 0)
		return r;
	if (!host[0]) {
		struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
		struct sockaddr_in s4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };

		s6.sin6_port = s4.sin_port = htons((uint16_t)strtoul(port, NULL, 10));
		fd = bind_one(AF_INET6, (const struct sockaddr *)&s6, sizeof(s6));
		if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL)
			fd = bind_one(AF_INET, (const struct sockaddr *)&s4, sizeof(s4));
	} else {
		r = getaddrinfo(host, port, &hints, &ai);
		if (r != 0)
			return r == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
		for (struct addrinfo *a = ai; a; a = a->ai_next) {
			fd = bind_one(a->ai_family, a->ai_addr, a->ai_addrlen);
			if (fd >= 0)
				break;
		}
		freeaddrinfo(ai);
	}
	if (fd < 0)
		return fd;
	if (getsockname(fd, (struct sockaddr *)&bound, &bound_len) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	*ret_port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
						     : ((struct sockaddr_in *)&bound)->sin_port);
	return fd;
}

static void cert_gen_free(struct cert_gen *g);

/* Free what webserver_start() allocated (the daemon is stopped or was never started). */
static void webserver_free(struct webserver *s)
{
	pthread_mutex_lock(&cert_lock);
	if (tls_server == s)
		tls_server = NULL;
	pthread_mutex_unlock(&cert_lock);
	reaper_free(s->reaper);
	cert_gen_free(s->cert);
	if (s->ca)
		gnutls_x509_trust_list_deinit(s->ca, 1);
	pthread_mutex_destroy(&s->ca_lock);
	free(s->ca_file);
	free(s->cert_file);
	free(s->key_file);
	free(s->client_name);
	free(s);
}

static void cert_gen_free(struct cert_gen *g)
{
	while (g) {
		struct cert_gen *older = g->older;

		for (unsigned i = 0; i < g->n_pcert; i++)
			gnutls_pcert_deinit(&g->pcert[i]);
		if (g->key)
			gnutls_privkey_deinit(g->key);
		free(g);
		g = older;
	}
}

/* Read certificate chain and key; -EINVAL when they cannot be parsed or do not belong together. */
static int cert_gen_load(const char *cert_file, const char *key_file, struct cert_gen **ret)
{
	_cleanup_free_ char *cert = NULL, *key = NULL;
	struct cert_gen *g;
	gnutls_datum_t cd, kd;
	gnutls_pubkey_t pub = NULL;
	unsigned char id1[64], id2[64];
	size_t l1 = sizeof(id1), l2 = sizeof(id2);
	int r;

	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	if (stat(cert_file, &g->cert_st) < 0 || stat(key_file, &g->key_st) < 0) {
		r = log_error_errno(-errno, "Cannot read the certificate %s or key %s: %m", cert_file, key_file);
		goto fail;
	}
	if ((r = read_file_limited(cert_file, WEBSERVER_PEM_MAX, &cert, NULL)) < 0 ||
	    (r = read_file_limited(key_file, WEBSERVER_PEM_MAX, &key, NULL)) < 0) {
		log_error_errno(r, "Cannot read the certificate %s or key %s: %m", cert_file, key_file);
		goto fail;
	}
	cd = (gnutls_datum_t){ (unsigned char *)cert, (unsigned)strlen(cert) };
	kd = (gnutls_datum_t){ (unsigned char *)key, (unsigned)strlen(key) };
	g->n_pcert = WEBSERVER_CHAIN_MAX;
	r = gnutls_pcert_list_import_x509_raw(g->pcert, &g->n_pcert, &cd, GNUTLS_X509_FMT_PEM, 0);
	if (r < 0 || g->n_pcert == 0) {
		g->n_pcert = 0;
		r = log_error_errno(-EINVAL, "%s: no PEM certificate (chain of at most %d): %s", cert_file,
				    WEBSERVER_CHAIN_MAX, gnutls_strerror(r));
		goto fail;
	}
	r = gnutls_privkey_init(&g->key);
	if (r >= 0)
		r = gnutls_privkey_import_x509_raw(g->key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0);
	if (r < 0) {
		r = log_error_errno(-EINVAL, "%s: no PEM private key: %s", key_file, gnutls_strerror(r));
		goto fail;
	}
	/* A rotation caught half-way (new certificate, old key) must not be served. */
	if (gnutls_pubkey_init(&pub) < 0 || gnutls_pubkey_import_privkey(pub, g->key, 0, 0) < 0 ||
	    gnutls_pubkey_get_key_id(pub, 0, id1, &l1) < 0 || gnutls_pubkey_get_key_id(g->pcert[0].pubkey, 0, id2, &l2) < 0 ||
	    l1 != l2 || memcmp(id1, id2, l1) != 0) {
		r = log_error_errno(-EINVAL, "The key %s does not belong to the certificate %s", key_file, cert_file);
		goto fail;
	}
	gnutls_pubkey_deinit(pub);
	explicit_bzero(key, strlen(key));
	*ret = g;
	return 0;
fail:
	if (pub)
		gnutls_pubkey_deinit(pub);
	if (key)
		explicit_bzero(key, strlen(key));
	cert_gen_free(g);
	return r;
}

/*
 * GnuTLS asks for the certificate at every handshake: when the files changed
 * (a Secret volume swaps them atomically), use the new ones from now on, so
 * a renewed certificate needs no restart. If they cannot be read or do not
 * match, the previous pair stays in use.
 */
static int cert_retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
			 const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length, gnutls_pcert_st **pcert,
			 unsigned int *pcert_length, gnutls_privkey_t *pkey)
{
	struct webserver *s;
	struct stat cst, kst;

	(void)session;
	(void)req_ca_dn;
	(void)nreqs;
	(void)pk_algos;
	(void)pk_algos_length;
	pthread_mutex_lock(&cert_lock);
	s = tls_server;
	if (!s || !s->cert) {
		pthread_mutex_unlock(&cert_lock);
		return -1;
	}
	if (stat(s->cert_file, &cst) == 0 && stat(s->key_file, &kst) == 0 &&
	    (!same_file(&cst, &s->cert->cert_st) || !same_file(&kst, &s->cert->key_st))) {
		struct cert_gen *g = NULL;

		if (cert_gen_load(s->cert_file, s->key_file, &g) >= 0) {
			g->older = s->cert;
			s->cert = g;
			log_info("Webhooks: the certificate %s changed, serving the new one", s->cert_file);
		} else {
			/* do not try again until the files change once more */
			s->cert->cert_st = cst;
			s->cert->key_st = kst;
			log_error("Webhooks: the changed certificate %s or key %s is not usable, still serving the previous one",
				  s->cert_file, s->key_file);
		}
	}
	*pcert = s->cert->pcert;
	*pcert_length = s->cert->n_pcert;
	*pkey = s->cert->key;
	pthread_mutex_unlock(&cert_lock);
	return 0;
}

static int read_pem(const char *what, const char *path, char **ret)
{
	int r = read_file_limited(path, WEBSERVER_PEM_MAX, ret, NULL);

	if (r < 0)
		return log_error_errno(r, "Cannot read %s %s: %m", what, path);
	return 0;
}

int webserver_start(const struct webserver_config *cfg, struct webserver **ret)
{
	_cleanup_free_ char *ca = NULL;
	struct webserver *s;
	sigset_t all, saved;
	bool tls = cfg->cert_file && *cfg->cert_file;
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
			 MHD_USE_ITC | MHD_USE_ERROR_LOG;
	int fd, r;

	if (!cfg->listen || !cfg->handler || !cfg->max_body)
		return -EINVAL;
	if (tls) {
		if (!cfg->key_file || !*cfg->key_file)
			return log_error_errno(-EINVAL, "A certificate (%s) without a key file", cfg->cert_file);
		if (cfg->ca_file && *cfg->ca_file && (r = read_pem("CA", cfg->ca_file, &ca)) < 0)
			return r;
		flags |= MHD_USE_TLS;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->ca_lock, NULL);
	if (tls) {
		s->cert_file = strdup(cfg->cert_file);
		s->key_file = strdup(cfg->key_file);
		r = s->cert_file && s->key_file ? cert_gen_load(cfg->cert_file, cfg->key_file, &s->cert) : -ENOMEM;
		pthread_mutex_lock(&cert_lock);
		if (r >= 0 && tls_server)
			r = log_error_errno(-EBUSY, "Only one HTTPS server per process");
		if (r >= 0)
			tls_server = s;
		pthread_mutex_unlock(&cert_lock);
		if (r < 0) {
			webserver_free(s);
			return r;
		}
	}
	s->verify_clients = tls && ca;
	if (s->verify_clients) {
		s->ca_file = strdup(cfg->ca_file);
		if (!s->ca_file) {
			webserver_free(s);
			return -ENOMEM;
		}
		ca_refresh(s);
		if (!s->ca) {
			webserver_free(s);
			return log_error_errno(-EINVAL, "The CA file %s holds no usable certificate", cfg->ca_file);
		}
	}
	if (s->verify_clients && cfg->client_name && !(s->client_name = strdup(cfg->client_name))) {
		webserver_free(s);
		return -ENOMEM;
	}
	s->max_body = cfg->max_body;
	s->handler = cfg->handler;
	s->userdata = cfg->userdata;
	r = reaper_new(tls ? "Webhooks HTTPS server" : "Webhooks HTTP server", WEBSERVER_REQUEST_DEADLINE_S, &s->reaper);
	if (r < 0) {
		webserver_free(s);
		return log_error_errno(r, "Cannot start a thread for the webhooks server: %m");
	}
	fd = listen_socket(cfg->listen, &s->port);
	if (fd < 0) {
		webserver_free(s);
		return log_error_errno(fd, "Cannot listen on %s: %m", cfg->listen);
	}
	/* The server's threads must not take SIGTERM & co. from the thread that waits for them. */
	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	sigdelset(&all, SIGABRT);
	pthread_sigmask(SIG_BLOCK, &all, &saved);
	/* libmicrohttpd copies the CA into GnuTLS credentials during the call; the certificate comes from cert_retrieve(). */
	if (tls)
		s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle, s,
					     MHD_OPTION_EXTERNAL_LOGGER, mhd_log, (void *)NULL,
					     MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
					     MHD_OPTION_NOTIFY_COMPLETED, request_done, s,
					     MHD_OPTION_NOTIFY_CONNECTION, connection_notify, s,
					     MHD_OPTION_PER_IP_CONNECTION_LIMIT, WEBSERVER_PER_IP_MAX,
					     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)WEBSERVER_CONNECTION_MEMORY,
					     MHD_OPTION_CONNECTION_LIMIT, WEBSERVER_CONNECTIONS_MAX,
					     MHD_OPTION_CONNECTION_TIMEOUT, WEBSERVER_IDLE_TIMEOUT_S,
					     MHD_OPTION_HTTPS_CERT_CALLBACK, cert_retrieve,
					     MHD_OPTION_HTTPS_PRIORITIES, WEBSERVER_TLS_PRIORITIES,
					     ca ? MHD_OPTION_HTTPS_MEM_TRUST : MHD_OPTION_END, (const char *)ca,
					     MHD_OPTION_END);
	else
		s->daemon = MHD_start_daemon(flags, 0, NULL, NULL, handle, s,
					     MHD_OPTION_EXTERNAL_LOGGER, mhd_log, (void *)NULL,
					     MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
					     MHD_OPTION_NOTIFY_COMPLETED, request_done, s,
					     MHD_OPTION_NOTIFY_CONNECTION, connection_notify, s,
					     MHD_OPTION_PER_IP_CONNECTION_LIMIT, WEBSERVER_PER_IP_MAX,
					     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)WEBSERVER_CONNECTION_MEMORY,
					     MHD_OPTION_CONNECTION_LIMIT, WEBSERVER_CONNECTIONS_MAX,
					     MHD_OPTION_CONNECTION_TIMEOUT, WEBSERVER_IDLE_TIMEOUT_S,
					     MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (!s->daemon) {
		close(fd);
		webserver_free(s);
		return log_error_errno(-EIO, "Cannot serve %s on %s (libmicrohttpd refused the configuration%s; -v=5 "
					     "shows its reason)",
				       tls ? "HTTPS" : "HTTP", cfg->listen, tls ? ": check the certificate and key" : "");
	}
	*ret = s;
	return 0;
}

uint16_t webserver_port(const struct webserver *s)
{
	return s->port;
}

void webserver_stop(struct webserver *s)
{
	if (!s)
		return;
	MHD_stop_daemon(s->daemon);
	webserver_free(s);
}
