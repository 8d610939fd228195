/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The libcurl adapter (the only file that includes curl.h): the Kubernetes
 * API client of k8s.h. One easy handle per client behind a mutex, so that the
 * TLS connection is reused between the calls of a polling loop.
 *
 * libcurl is loaded with dlopen() when the first client is made, not linked:
 * with its TLS, Kerberos and LDAP libraries it is 1.7 MB of resident pages,
 * and the node driver, the mode that runs on every node, never talks to the
 * API server (docs/performance.md). Only the calls below are used.
 */
#define CURL_DISABLE_TYPECHECK 1 /* the calls go through function pointers */
#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strbuf.h"
#include "basic/strutil.h"
#include "json/json.h"
#include "k8s-internal.h"
#include "k8s.h"

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define RESPONSE_MAX (64u * 1024 * 1024) /* a list of every PVC of a big cluster fits */
#define TOKEN_MAX (64u * 1024)

struct k8s_client {
	struct k8s_config cfg;
	pthread_mutex_t lock;
	CURL *curl;
	long timeout_ms;
	unsigned attempts;
	/* the bearer token and what its file looked like when read */
	char *token;
	struct timespec token_mtime;
	off_t token_size;
	/* k8s_client_new_tls(): "name:port:address" for CURLOPT_RESOLVE, or NULL */
	char *resolve;
};

/* The libcurl entry points, from dlopen() of its SONAME (Debian's libcurl4). */
#define LIBCURL_SONAME "libcurl.so.4"
static struct {
	CURLcode (*global_init)(long flags);
	CURL *(*easy_init)(void);
	void (*easy_cleanup)(CURL *h);
	void (*easy_reset)(CURL *h);
	CURLcode (*easy_setopt)(CURL *h, CURLoption opt, ...);
	CURLcode (*easy_perform)(CURL *h);
	CURLcode (*easy_getinfo)(CURL *h, CURLINFO info, ...);
	const char *(*easy_strerror)(CURLcode rc);
	struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
	void (*slist_free_all)(struct curl_slist *l);
} cu;
/* curl.h defines the two variadic ones as macros that check the argument count */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_global_init cu.global_init
#define curl_easy_init cu.easy_init
#define curl_easy_cleanup cu.easy_cleanup
#define curl_easy_reset cu.easy_reset
#define curl_easy_setopt cu.easy_setopt
#define curl_easy_perform cu.easy_perform
#define curl_easy_getinfo cu.easy_getinfo
#define curl_easy_strerror cu.easy_strerror
#define curl_slist_append cu.slist_append
#define curl_slist_free_all cu.slist_free_all

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;
static char global_err[256];

/* Bind one symbol; false (with the reason kept) when it is missing. */
static bool bind_sym(void *lib, const char *name, void *ret_fn)
{
	void *p = dlsym(lib, name);

	if (!p) {
		snprintf(global_err, sizeof(global_err), "%s has no %s", LIBCURL_SONAME, name);
		return false;
	}
	memcpy(ret_fn, &p, sizeof(p));
	return true;
}

static void global_init(void)
{
	/* Never closed: curl keeps global state for the life of the process. */
	void *lib = dlopen(LIBCURL_SONAME, RTLD_NOW | RTLD_LOCAL);

	global_rc = CURLE_FAILED_INIT;
	if (!lib) {
		snprintf(global_err, sizeof(global_err), "cannot load %s: %s", LIBCURL_SONAME, dlerror());
		return;
	}
	if (!bind_sym(lib, "curl_global_init", &cu.global_init) || !bind_sym(lib, "curl_easy_init", &cu.easy_init) ||
	    !bind_sym(lib, "curl_easy_cleanup", &cu.easy_cleanup) || !bind_sym(lib, "curl_easy_reset", &cu.easy_reset) ||
	    !bind_sym(lib, "curl_easy_setopt", &cu.easy_setopt) ||
	    !bind_sym(lib, "curl_easy_perform", &cu.easy_perform) ||
	    !bind_sym(lib, "curl_easy_getinfo", &cu.easy_getinfo) ||
	    !bind_sym(lib, "curl_easy_strerror", &cu.easy_strerror) ||
	    !bind_sym(lib, "curl_slist_append", &cu.slist_append) ||
	    !bind_sym(lib, "curl_slist_free_all", &cu.slist_free_all))
		return;
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (global_rc != CURLE_OK)
		snprintf(global_err, sizeof(global_err), "libcurl initialisation failed (curl error %d)",
			 (int)global_rc);
}

/* Re-read the token file when it changed: the kubelet rotates projected tokens. */
static int refresh_token(struct k8s_client *c, bool force)
{
	struct stat st;
	_cleanup_free_ char *t = NULL;
	size_t len;
	int r;

	if (!c->cfg.token_file)
		return 0;
	if (stat(c->cfg.token_file, &st) < 0)
		return c->token ? 0 : -errno; /* keep the last one during a rotation */
	if (!force && c->token && st.st_size == c->token_size && st.st_mtim.tv_sec == c->token_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == c->token_mtime.tv_nsec)
		return 0;
	r = read_file_limited(c->cfg.token_file, TOKEN_MAX, &t, &len);
	if (r < 0)
		return c->token ? 0 : r;
	while (len > 0 && (t[len - 1] == '\n' || t[len - 1] == '\r' || t[len - 1] == ' '))
		t[--len] = 0;
	free(c->token);
	c->token = TAKE_PTR(t);
	c->token_mtime = st.st_mtim;
	c->token_size = st.st_size;
	return 0;
}

static int in_cluster(struct k8s_config *cfg, char **ret_err)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST"), *port = getenv("KUBERNETES_SERVICE_PORT");
	const char *dir = getenv("PMEM_CSI_SERVICEACCOUNT_DIR");

	if (!host || !*host || !port || !*port) {
		*ret_err = strdup("not running in a Kubernetes cluster (KUBERNETES_SERVICE_HOST/PORT unset) and no "
				  "kubeconfig given (-kubeconfig or $KUBECONFIG)");
		return -ENOENT;
	}
	if (!dir || !*dir)
		dir = SA_DIR;
	/* An IPv6 address needs brackets in a URL. */
	cfg->server = strchr(host, ':') ? xasprintf("https://[%s]:%s", host, port)
					: xasprintf("https://%s:%s", host, port);
	cfg->ca_file = xasprintf("%s/ca.crt", dir);
	cfg->token_file = xasprintf("%s/token", dir);
	if (!cfg->server || !cfg->ca_file || !cfg->token_file)
		return -ENOMEM;
	return 0;
}

int k8s_client_new(const char *kubeconfig, struct k8s_client **ret, char **ret_err)
{
	struct k8s_client *c;
	int r;

	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK) {
		*ret_err = strdup(global_err);
		return -EIO;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->timeout_ms = 15000;
	c->attempts = 5;
	pthread_mutex_init(&c->lock, NULL);
	if (!kubeconfig && !getenv("KUBERNETES_SERVICE_HOST") && getenv("KUBECONFIG") && *getenv("KUBECONFIG"))
		kubeconfig = getenv("KUBECONFIG");
	r = kubeconfig ? k8s_config_from_kubeconfig(kubeconfig, &c->cfg, ret_err) : in_cluster(&c->cfg, ret_err);
	if (r < 0)
		goto fail;
	if (c->cfg.token) {
		c->token = strdup(c->cfg.token);
		if (!c->token) {
			r = -ENOMEM;
			goto fail;
		}
	}
	r = refresh_token(c, true);
	if (r < 0) {
		*ret_err = xasprintf("cannot read the service account token %s: %s", c->cfg.token_file, strerror(-r));
		goto fail;
	}
	c->curl = curl_easy_init();
	if (!c->curl) {
		r = -ENOMEM;
		goto fail;
	}
	*ret = c;
	return 0;
fail:
	k8s_client_free(c);
	return r;
}

int k8s_client_new_tls(const char *server, const char *resolve, const char *ca_file, const char *cert_file,
		       const char *key_file, struct k8s_client **ret, char **ret_err)
{
	struct k8s_client *c;

	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK) {
		*ret_err = strdup(global_err);
		return -EIO;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->timeout_ms = 15000;
	c->attempts = 1;
	pthread_mutex_init(&c->lock, NULL);
	c->cfg.server = strdup(server);
	c->cfg.ca_file = strdup(ca_file);
	c->cfg.cert_file = strdup(cert_file);
	c->cfg.key_file = strdup(key_file);
	c->resolve = resolve ? strdup(resolve) : NULL;
	c->curl = curl_easy_init();
	if (!c->cfg.server || !c->cfg.ca_file || !c->cfg.cert_file || !c->cfg.key_file || (resolve && !c->resolve) ||
	    !c->curl) {
		k8s_client_free(c);
		return -ENOMEM;
	}
	*ret = c;
	return 0;
}

void k8s_client_free(struct k8s_client *c)
{
	if (!c)
		return;
	free(c->resolve);
	if (c->curl)
		curl_easy_cleanup(c->curl);
	k8s_config_done(&c->cfg);
	free(c->token);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

const char *k8s_client_server(const struct k8s_client *c)
{
	return c->cfg.server;
}

void k8s_client_set_limits(struct k8s_client *c, long timeout_ms, unsigned attempts)
{
	c->timeout_ms = timeout_ms > 0 ? timeout_ms : 15000;
	c->attempts = attempts > 0 ? attempts : 1;
}

struct sink {
	struct strbuf buf;
	bool too_big;
	/* watch streams: each complete line goes to on_line (a negative return stops) */
	int (*on_line)(const char *line, size_t len, void *ud);
	void *ud;
	int line_err;
};

#define WATCH_LINE_MAX (16u * 1024 * 1024)

static size_t on_lines(struct sink *s, const char *ptr, size_t n)
{
	const char *nl;
	size_t start = 0;

	if (strbuf_len(&s->buf) + n > WATCH_LINE_MAX) {
		s->too_big = true;
		return 0;
	}
	strbuf_append(&s->buf, ptr, n);
	if (strbuf_failed(&s->buf))
		return 0;
	/* Dispatch every complete line; keep the partial one. */
	while ((nl = memchr(strbuf_str(&s->buf) + start, '\n', strbuf_len(&s->buf) - start))) {
		size_t len = (size_t)(nl - (strbuf_str(&s->buf) + start));
		int r = len ? s->on_line(strbuf_str(&s->buf) + start, len, s->ud) : 0;

		start += len + 1;
		if (r < 0) {
			s->line_err = r;
			return 0;
		}
	}
	if (start) {
		struct strbuf rest = STRBUF_INIT;
		strbuf_append(&rest, strbuf_str(&s->buf) + start, strbuf_len(&s->buf) - start);
		strbuf_free(&s->buf);
		s->buf = rest;
		if (strbuf_failed(&s->buf))
			return 0;
	}
	return n;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct sink *s = ud;
	size_t n = size * nmemb;

	if (s->on_line)
		return on_lines(s, ptr, n);
	if (strbuf_len(&s->buf) + n > RESPONSE_MAX) {
		s->too_big = true;
		return 0; /* aborts the transfer */
	}
	strbuf_append(&s->buf, ptr, n);
	return strbuf_failed(&s->buf) ? 0 : n;
}

/* The "message" of a Kubernetes Status object, or the start of the body. */
static char *status_message(const char *body, size_t len)
{
	_cleanup_(jv_unrefp) struct jv *v = NULL;
	const char *m;

	if (len == 0)
		return strdup("(empty response)");
	if (jv_parse(body, len, &v, NULL) >= 0 && (m = jv_string(jv_object_get(v, "message"))))
		return strdup(m);
	return xasprintf("%.200s", body);
}

static int errno_of_http(long code)
{
	switch (code) {
	case 404:
		return -ENOENT;
	case 409:
		return -EEXIST;
	case 401:
	case 403:
		return -EACCES;
	case 400:
	case 422:
		return -EINVAL;
	case 429:
	case 500:
	case 502:
	case 503:
	case 504:
		return -EAGAIN;
	default:
		return -EIO;
	}
}

static int errno_of_curl(CURLcode rc)
{
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
		return -EPERM;
	default:
		return -EIO;
	}
}

static bool retryable_curl(CURLcode rc)
{
	return rc == CURLE_COULDNT_CONNECT || rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_SEND_ERROR ||
	       rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING || rc == CURLE_COULDNT_RESOLVE_HOST ||
	       rc == CURLE_PARTIAL_FILE;
}

static void set_blob(CURL *h, CURLoption opt, char *data, size_t len)
{
	struct curl_blob b = { .data = data, .len = len, .flags = CURL_BLOB_COPY };

	curl_easy_setopt(h, opt, &b);
}

/* One attempt. Returns 0 with *ret_code set, or the curl error. */
static CURLcode perform_on(struct k8s_client *c, CURL *h, long timeout_ms, const char *method, const char *url,
			   const char *content_type, const char *body, struct sink *sink, long *ret_code,
			   char *errbuf)
{
	struct curl_slist *hdrs = NULL, *resolve = NULL;
	_cleanup_free_ char *auth = NULL, *ctype = NULL;
	CURLcode rc;

	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms < 5000 ? c->timeout_ms : 5000L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, sink);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "pmem-csi-driver");
	if (c->cfg.insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	} else if (c->cfg.ca_data) {
		set_blob(h, CURLOPT_CAINFO_BLOB, c->cfg.ca_data, c->cfg.ca_len);
	} else if (c->cfg.ca_file) {
		curl_easy_setopt(h, CURLOPT_CAINFO, c->cfg.ca_file);
	}
	if (c->cfg.cert_data)
		set_blob(h, CURLOPT_SSLCERT_BLOB, c->cfg.cert_data, c->cfg.cert_len);
	else if (c->cfg.cert_file)
		curl_easy_setopt(h, CURLOPT_SSLCERT, c->cfg.cert_file);
	if (c->cfg.key_data)
		set_blob(h, CURLOPT_SSLKEY_BLOB, c->cfg.key_data, c->cfg.key_len);
	else if (c->cfg.key_file)
		curl_easy_setopt(h, CURLOPT_SSLKEY, c->cfg.key_file);

	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (c->token) {
		auth = xasprintf("Authorization: Bearer %s", c->token);
		if (auth)
			hdrs = curl_slist_append(hdrs, auth);
	}
	if (body) {
		ctype = xasprintf("Content-Type: %s", content_type ? content_type : "application/json");
		if (ctype)
			hdrs = curl_slist_append(hdrs, ctype);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	if (c->resolve) {
		/* A peer by its role's name at a given address: the name is what its certificate must carry. */
		resolve = curl_slist_append(NULL, c->resolve);
		curl_easy_setopt(h, CURLOPT_RESOLVE, resolve);
		curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
		curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	rc = curl_easy_perform(h);
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, ret_code);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(h, CURLOPT_RESOLVE, NULL);
	curl_slist_free_all(resolve);
	curl_slist_free_all(hdrs);
	return rc;
}

static CURLcode perform(struct k8s_client *c, const char *method, const char *url, const char *content_type,
			const char *body, struct sink *sink, long *ret_code, char *errbuf)
{
	return perform_on(c, c->curl, c->timeout_ms, method, url, content_type, body, sink, ret_code, errbuf);
}

int k8s_request(struct k8s_client *c, const char *method, const char *path, const char *content_type,
		const char *body, struct jv **ret_body, char **ret_err)
{
	_cleanup_free_ char *url = xasprintf("%s%s", c->cfg.server, path);
	unsigned delay_ms = 250;
	bool reauth = false;
	int r = -EIO;

	if (!url)
		return -ENOMEM;
	pthread_mutex_lock(&c->lock);
	for (unsigned attempt = 1;; attempt++) {
		struct sink sink = { .buf = STRBUF_INIT };
		char errbuf[CURL_ERROR_SIZE] = "";
		long code = 0;
		CURLcode rc;
		bool retry;

		(void)refresh_token(c, false);
		rc = perform(c, method, url, content_type, body, &sink, &code, errbuf);
		if (rc == CURLE_OK && code >= 200 && code < 300) {
			r = 0;
			if (ret_body) {
				_cleanup_free_ char *perr = NULL;
				r = jv_parse(strbuf_len(&sink.buf) ? strbuf_str(&sink.buf) : "{}",
					     strbuf_len(&sink.buf) ? strbuf_len(&sink.buf) : 2, ret_body, &perr);
				if (r < 0) {
					free(*ret_err);
					*ret_err = xasprintf("%s %s: response is not JSON: %s", method, url,
							     perr ? perr : "");
				}
			}
			strbuf_free(&sink.buf);
			break;
		}
		free(*ret_err);
		if (rc != CURLE_OK) {
			r = sink.too_big ? -EFBIG : errno_of_curl(rc);
			*ret_err = sink.too_big ? xasprintf("%s %s: response larger than %u bytes", method, url,
							    RESPONSE_MAX)
						: xasprintf("%s %s: %s", method, url,
							    errbuf[0] ? errbuf : curl_easy_strerror(rc));
			retry = retryable_curl(rc);
		} else {
			_cleanup_free_ char *msg = status_message(strbuf_str(&sink.buf), strbuf_len(&sink.buf));
			r = errno_of_http(code);
			*ret_err = xasprintf("%s %s: HTTP %ld: %s", method, url, code, msg ? msg : "");
			retry = r == -EAGAIN;
			/* A rotated token: read it again once and retry at once. */
			if (code == 401 && c->cfg.token_file && !reauth) {
				reauth = true;
				(void)refresh_token(c, true);
				retry = true;
				attempt--;
			}
		}
		strbuf_free(&sink.buf);
		if (!retry || attempt >= c->attempts)
			break;
		log_v(3, "%s; retrying in %u ms (attempt %u of %u)", *ret_err ? *ret_err : "request failed",
		      delay_ms, attempt + 1, c->attempts);
		usleep(delay_ms * 1000);
		delay_ms = delay_ms * 2 > 4000 ? 4000 : delay_ms * 2;
	}
	pthread_mutex_unlock(&c->lock);
	if (r >= 0) {
		free(*ret_err);
		*ret_err = NULL;
	}
	return r;
}

int k8s_get(struct k8s_client *c, const char *path, struct jv **ret, char **ret_err)
{
	return k8s_request(c, "GET", path, NULL, NULL, ret, ret_err);
}

int k8s_merge_patch(struct k8s_client *c, const char *path, const char *patch, struct jv **ret, char **ret_err)
{
	return k8s_request(c, "PATCH", path, "application/merge-patch+json", patch, ret, ret_err);
}

char *k8s_path_escape(const char *s)
{
	struct strbuf b = STRBUF_INIT;

	for (const char *p = s; *p; p++) {
		bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
			     *p == '-' || *p == '.' || *p == '_' || *p == '~';
		if (plain)
			strbuf_append_char(&b, *p);
		else
			strbuf_appendf(&b, "%%%02X", (unsigned char)*p);
	}
	if (strbuf_failed(&b) || strbuf_len(&b) == 0) {
		bool failed = strbuf_failed(&b);
		strbuf_free(&b);
		return failed ? NULL : strdup("");
	}
	return strbuf_steal(&b);
}

struct watch_ctx {
	int (*on_event)(const char *type, const struct jv *object, void *ud);
	void *ud;
};

static int watch_line(const char *line, size_t len, void *ud)
{
	struct watch_ctx *w = ud;
	_cleanup_(jv_unrefp) struct jv *ev = NULL;
	const char *type;

	if (jv_parse(line, len, &ev, NULL) < 0)
		return -EBADMSG;
	type = jv_string(jv_object_get(ev, "type"));
	if (!type)
		return -EBADMSG;
	return w->on_event(type, jv_object_get(ev, "object"), w->ud);
}

int k8s_watch(struct k8s_client *c, const char *path, unsigned timeout_s,
	      int (*on_event)(const char *type, const struct jv *object, void *ud), void *ud, char **ret_err)
{
	_cleanup_free_ char *url = xasprintf("%s%s%swatch=1&allowWatchBookmarks=true&timeoutSeconds=%u",
					     c->cfg.server, path, strchr(path, '?') ? "&" : "?", timeout_s);
	struct watch_ctx w = { .on_event = on_event, .ud = ud };
	struct sink sink = { .buf = STRBUF_INIT, .on_line = watch_line, .ud = &w };
	char errbuf[CURL_ERROR_SIZE] = "";
	long code = 0;
	CURLcode rc;
	CURL *h;
	int r;

	if (!url)
		return -ENOMEM;
	/* A handle of its own: the stream stays open for timeout_s while other requests go on. */
	h = curl_easy_init();
	if (!h)
		return -ENOMEM;
	pthread_mutex_lock(&c->lock);
	(void)refresh_token(c, false);
	pthread_mutex_unlock(&c->lock);
	rc = perform_on(c, h, (long)(timeout_s + 30) * 1000, "GET", url, NULL, NULL, &sink, &code, errbuf);
	curl_easy_cleanup(h);
	free(*ret_err);
	*ret_err = NULL;
	if (sink.line_err) {
		r = sink.line_err;
		if (r != -ESTALE)
			*ret_err = xasprintf("GET %s: event stream: %s", url, strerror(-r));
	} else if (rc != CURLE_OK) {
		r = sink.too_big ? -EFBIG : errno_of_curl(rc);
		*ret_err = xasprintf("GET %s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
	} else if (code < 200 || code >= 300) {
		_cleanup_free_ char *msg = status_message(strbuf_str(&sink.buf), strbuf_len(&sink.buf));
		r = code == 410 ? -ESTALE : errno_of_http(code);
		*ret_err = xasprintf("GET %s: HTTP %ld: %s", url, code, msg ? msg : "");
	} else
		r = 0;
	strbuf_free(&sink.buf);
	return r;
}

int k8s_apply(struct k8s_client *c, const char *path, const char *field_manager, const char *object,
	      struct jv **ret, char **ret_err)
{
	_cleanup_free_ char *fm = k8s_path_escape(field_manager);
	_cleanup_free_ char *p = fm ? xasprintf("%s?fieldManager=%s&force=true", path, fm) : NULL;

	if (!p)
		return -ENOMEM;
	return k8s_request(c, "PATCH", p, "application/apply-patch+yaml", object, ret, ret_err);
}
