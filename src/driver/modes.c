/* SPDX-License-Identifier: Apache-2.0 */
/*
 * -mode=force-convert-raw-namespaces and -mode=webhooks. Both run in pods
 * (a DaemonSet on labelled nodes, a Deployment) and wait for SIGTERM when
 * their work is done or between passes, as upstream's do: a container that
 * exits would just be restarted by its DaemonSet.
 */
#include <errno.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strbuf.h"
#include "basic/strutil.h"
#include "json/json.h"
#include "k8s/extender.h"
#include "k8s/k8s.h"
#include "k8s/rescheduler.h"
#include "k8s/webserver.h"
#include "metrics/http.h"
#include "metrics/metrics.h"
#include "metrics/scheduler.h"
#include "modes.h"
#include "pmem/convert.h"

#define MAX_SELECTOR 32
#define CONVERT_LABEL "convert-raw-namespaces"

struct selector {
	char *keys[MAX_SELECTOR], *values[MAX_SELECTOR];
	size_t n;
	struct k8s_selector sel;
};

static void selector_done(struct selector *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->keys[i]);
		free(s->values[i]);
	}
	s->n = 0;
}

static int selector_add(const char *key, const struct jv *val, void *ud)
{
	struct selector *s = ud;
	const char *v = jv_string(val);

	if (!v || s->n >= MAX_SELECTOR)
		return -EINVAL;
	s->keys[s->n] = strdup(key);
	s->values[s->n] = strdup(v);
	if (!s->keys[s->n] || !s->values[s->n])
		return -ENOMEM;
	s->n++;
	return 0;
}

/* -nodeSelector: a JSON object of label values, as upstream's flag. */
static int parse_selector(const char *json, struct selector *ret)
{
	_cleanup_(jv_unrefp) struct jv *v = NULL;
	_cleanup_free_ char *err = NULL;
	int r;

	if (!json || !*json)
		json = "{\"storage\":\"pmem\"}";
	r = jv_parse(json, strlen(json), &v, &err);
	if (r < 0 || !jv_is_object(v))
		return log_error_errno(-EINVAL, "-nodeSelector=%s: not a JSON object%s%s", json, err ? ": " : "",
				       err ? err : "");
	r = jv_object_iter(v, selector_add, ret);
	if (r < 0)
		return log_error_errno(r, "-nodeSelector=%s: values must be strings (at most %d labels)", json,
				       MAX_SELECTOR);
	ret->sel.keys = (const char *const *)ret->keys;
	ret->sel.values = (const char *const *)ret->values;
	ret->sel.n = ret->n;
	return 0;
}

static int connect_api(const struct mode_options *o, struct k8s_client **ret)
{
	_cleanup_free_ char *err = NULL;
	int r = k8s_client_new(o->kubeconfig, ret, &err);

	if (r < 0)
		return err ? log_error_errno(r, "Cannot set up the Kubernetes API client: %s", err)
			   : log_error_errno(r, "Cannot set up the Kubernetes API client: %m");
	log_info("Kubernetes API server: %s", k8s_client_server(*ret));
	return 0;
}

/* Wait for SIGTERM/SIGINT (blocked in all threads by main) for up to seconds (< 0: forever). */
static bool wait_signal(int seconds)
{
	sigset_t mask;
	struct timespec ts = { .tv_sec = seconds };
	int sig;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sig = seconds < 0 ? (sigwait(&mask, &sig) == 0 ? sig : -1) : sigtimedwait(&mask, NULL, &ts);
	if (sig > 0) {
		log_info("Received signal %d (%s), shutting down", sig, strsignal(sig));
		return true;
	}
	return false;
}

int serve_metrics(struct metrics *m, const char *listen, const char *path, metrics_ready_fn ready, void *userdata,
		  struct metrics_http **ret)
{
	int r;

	*ret = NULL;
	if (!listen || !*listen)
		return 0;
	r = metrics_http_start(m, listen, path, ret);
	if (r < 0)
		return log_error_errno(r, "Failed to serve metrics on %s: %m", listen);
	metrics_http_set_readiness(*ret, ready, userdata);
	log_info("Prometheus endpoint started on %s (port %u), path %s", listen, (unsigned)metrics_http_port(*ret),
		 path);
	return 0;
}

static bool always_ready(void *userdata _unused_)
{
	return true;
}

static int relabel(struct k8s_client *c, const struct mode_options *o, const struct selector *s)
{
	_cleanup_free_ char *node = k8s_path_escape(o->nodeid), *path = NULL, *patch = NULL, *err = NULL;
	_cleanup_free_ char *label = xasprintf("%s/%s", o->drivername, CONVERT_LABEL);
	struct strbuf b = STRBUF_INIT;
	int r;

	if (!node || !label)
		return -ENOMEM;
	strbuf_append_str(&b, "{\"metadata\":{\"labels\":{");
	strbuf_append_json_string(&b, label);
	strbuf_append_str(&b, ":null");
	for (size_t i = 0; i < s->n; i++) {
		strbuf_append_char(&b, ',');
		strbuf_append_json_string(&b, s->keys[i]);
		strbuf_append_char(&b, ':');
		strbuf_append_json_string(&b, s->values[i]);
	}
	strbuf_append_str(&b, "}}}");
	patch = strbuf_steal(&b);
	path = xasprintf("/api/v1/nodes/%s", node);
	if (!patch || !path)
		return -ENOMEM;
	r = k8s_merge_patch(c, path, patch, NULL, &err);
	if (r < 0)
		return err ? log_error_errno(r, "Cannot relabel node %s: %s", o->nodeid, err)
			   : log_error_errno(r, "Cannot relabel node %s: %m", o->nodeid);
	log_info("Node %s relabelled: %s", o->nodeid, patch);
	return 0;
}

/* RFC 6901: '~' -> "~0", '/' -> "~1"; a label key is JSON-safe otherwise (checked). */
static char *json_pointer_escape(const char *s)
{
	struct strbuf b = STRBUF_INIT;

	for (; *s; s++) {
		if (*s == '~')
			strbuf_append_str(&b, "~0");
		else if (*s == '/')
			strbuf_append_str(&b, "~1");
		else if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20) {
			strbuf_free(&b);
			return NULL;
		} else
			strbuf_append_char(&b, *s);
	}
	return strbuf_steal(&b);
}

int run_force_convert(const struct mode_options *o)
{
	_cleanup_(selector_done) struct selector sel = {};
	struct k8s_client *c = NULL;
	struct metrics *m = NULL;
	struct metrics_http *http = NULL;
	_cleanup_free_ char *path = NULL, *err = NULL, *label = xasprintf("%s/%s", o->drivername, CONVERT_LABEL);
	_cleanup_free_ char *enode = k8s_path_escape(o->nodeid), *test = NULL, *patch = NULL;
	struct pmem_convert_result res = {};
	int r;

	if (!label || !enode)
		return -ENOMEM;
	r = parse_selector(o->node_selector, &sel);
	if (r < 0)
		return r;
	r = connect_api(o, &c);
	if (r < 0)
		return r;
	/*
	 * The DaemonSet only runs on labelled nodes; this guards against running
	 * it by hand elsewhere. 1.1's ClusterRole for node setup grants only
	 * "patch" on nodes, so the label is checked with a JSON patch that only
	 * tests it: the API server answers 422 if the test fails and changes
	 * nothing either way.
	 */
	path = xasprintf("/api/v1/nodes/%s", enode);
	test = json_pointer_escape(label);
	patch = test ? xasprintf("[{\"op\":\"test\",\"path\":\"/metadata/labels/%s\",\"value\":\"force\"}]", test)
		     : NULL;
	r = path && patch ? k8s_request(c, "PATCH", path, "application/json-patch+json", patch, NULL, &err) : -ENOMEM;
	if (r == -EINVAL) {
		r = log_error_errno(-EPERM, "Node %s is not labelled %s=force (%s): refusing to convert its namespaces",
				    o->nodeid, label, err ? err : "the API server refused the label test");
		goto out;
	}
	if (r < 0) {
		if (err)
			log_error_errno(r, "Cannot check the labels of node %s (-nodeid): %s", o->nodeid, err);
		else
			log_error_errno(r, "Cannot check the labels of node %s (-nodeid): %m", o->nodeid);
		goto out;
	}

	free(err);
	err = NULL;
	r = pmem_convert_raw_namespaces(&res, &err);
	if (r < 0) {
		if (err)
			log_error_errno(r, "Converting raw namespaces failed: %s", err);
		else
			log_error_errno(r, "Converting raw namespaces failed: %m");
		goto out;
	}
	log_info("Raw namespace conversion: %u converted to fsdax, %u added to volume groups; %u volume group(s), "
		 "%u \"pmem-csi\" namespace(s) for LVM mode",
		 res.converted, res.added, res.vgs, res.lvm_namespaces);
	if (res.converted == 0 && res.added == 0 && res.vgs == 0 && res.lvm_namespaces == 0) {
		r = log_error_errno(-ENODEV, "Nothing to convert on node %s: no raw namespace, and no volume group "
					     "or \"pmem-csi\" namespace that LVM mode could use (ndctl list -RN shows what there is)",
				    o->nodeid);
		goto out;
	}
	if (res.converted == 0 && res.added == 0)
		log_info("No raw namespace left to convert: PMEM is already prepared for LVM mode");
	r = relabel(c, o, &sel);
	if (r < 0)
		goto out;

	/* The work is done: a metrics server that cannot start is no reason to fail now. */
	if (o->metrics_listen && *o->metrics_listen && metrics_new(o->drivername, o->nodeid, o->version, &m) >= 0)
		(void)serve_metrics(m, o->metrics_listen, o->metrics_path, always_ready, NULL, &http);
	/* Stay until Kubernetes removes the pod (the node lost the label): exiting
	 * would race with that and restart the container. */
	log_info("Raw namespace conversion is done, waiting for the termination signal");
	wait_signal(-1);
	r = 0;
out:
	metrics_http_stop(http);
	metrics_free(m);
	k8s_client_free(c);
	return r;
}

struct webhooks_state {
	bool ready;
	const char *drivername;
	struct k8s_client *api; /* the extender's client: short timeouts, the scheduler waits */
	struct metrics_scheduler *metrics;
};

static bool webhooks_ready(void *userdata)
{
	return ((struct webhooks_state *)userdata)->ready;
}

static int api_get(void *userdata, const char *path, struct jv **ret, char **ret_err)
{
	return k8s_get(userdata, path, ret, ret_err);
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* /filter, /status and /pod/mutate, as 1.0's scheduler HTTP handler. */
static void webhooks_serve(void *userdata, const char *method, const char *path, const char *body, size_t len,
			   struct webserver_reply *reply)
{
	struct webhooks_state *st = userdata;
	struct k8s_getter g = { .get = api_get, .userdata = st->api };
	const char *handler = NULL;
	double t0 = now_seconds();
	bool mutated = false;
	int r = 0;

	if (streq_ptr(path, "/filter"))
		handler = "filter";
	else if (streq_ptr(path, "/status"))
		handler = "status";
	else if (streq_ptr(path, "/pod/mutate"))
		handler = "mutate";
	if (!handler) {
		reply->status = 404;
		reply->body = strdup("not found\n");
		reply->len = reply->body ? strlen(reply->body) : 0;
		return;
	}
	if (!streq_ptr(method, "GET") && !streq_ptr(method, "POST")) {
		reply->status = 405;
		reply->body = xasprintf("%s not supported\n", method);
		reply->len = reply->body ? strlen(reply->body) : 0;
		return;
	}
	metrics_scheduler_begin(st->metrics);
	reply->content_type = "application/json";
	if (streq_ptr(handler, "status")) {
		reply->status = 200;
		reply->content_type = "text/plain; charset=utf-8";
		reply->body = strdup("ok");
		reply->len = reply->body ? 2 : 0;
	} else if (streq_ptr(handler, "filter")) {
		r = extender_filter(&g, st->drivername, body, len, &reply->body, &reply->len, &reply->status);
	} else {
		r = webhook_mutate(&g, st->drivername, body, len, &reply->body, &reply->len, &reply->status, &mutated);
		if (reply->status != 200)
			reply->content_type = "text/plain; charset=utf-8";
	}
	if (r < 0) {
		free(reply->body);
		reply->status = 500;
		reply->content_type = "text/plain; charset=utf-8";
		reply->body = xasprintf("internal error: %s\n", strerror(-r));
		reply->len = reply->body ? strlen(reply->body) : 0;
	}
	metrics_scheduler_end(st->metrics, handler, method, reply->status, now_seconds() - t0, reply->len);
	log_v(5, "Webhooks: %s %s -> %u (%zu bytes)", method, path, reply->status, reply->len);
}

static int start_scheduler_servers(const struct mode_options *o, struct webhooks_state *st, struct webserver **ret_tls,
				   struct webserver **ret_plain)
{
	struct webserver_config cfg = {
		.max_body = EXTENDER_BODY_MAX,
		.handler = webhooks_serve,
		.userdata = st,
	};
	int r;

	*ret_tls = *ret_plain = NULL;
	if (o->scheduler_listen && *o->scheduler_listen) {
		if (!o->cert_file || !*o->cert_file || !o->key_file || !*o->key_file)
			return log_error_errno(-EINVAL, "-schedulerListen=%s needs -certFile and -keyFile", o->scheduler_listen);
		cfg.listen = o->scheduler_listen;
		cfg.cert_file = o->cert_file;
		cfg.key_file = o->key_file;
		cfg.ca_file = o->ca_file;
		r = webserver_start(&cfg, ret_tls);
		if (r < 0)
			return log_error_errno(r, "Cannot serve the scheduler extender and webhook on -schedulerListen=%s: %m",
					       o->scheduler_listen);
		log_info("Scheduler extender and pod webhook: HTTPS on %s (port %u), client certificates %s",
			 o->scheduler_listen, (unsigned)webserver_port(*ret_tls),
			 o->ca_file && *o->ca_file ? "required (-caFile)" : "not asked for (-caFile is empty)");
	}
	if (o->insecure_scheduler_listen && *o->insecure_scheduler_listen) {
		cfg.listen = o->insecure_scheduler_listen;
		cfg.cert_file = cfg.key_file = cfg.ca_file = NULL;
		r = webserver_start(&cfg, ret_plain);
		if (r < 0) {
			webserver_stop(*ret_tls);
			*ret_tls = NULL;
			return log_error_errno(r, "Cannot serve the scheduler extender and webhook on -insecureSchedulerListen=%s: %m",
					       o->insecure_scheduler_listen);
		}
		log_info("Scheduler extender and pod webhook: plain HTTP on %s (port %u)", o->insecure_scheduler_listen,
			 (unsigned)webserver_port(*ret_plain));
	}
	return 0;
}

int run_webhooks(const struct mode_options *o)
{
	_cleanup_(selector_done) struct selector sel = {};
	static const char *const result_label[] = { "result", NULL };
	struct k8s_client *c = NULL;
	struct metrics *m = NULL;
	struct metrics_http *http = NULL;
	struct metrics_family *passes = NULL, *rescheduled = NULL, *pending = NULL;
	struct webhooks_state state = { .drivername = o->drivername };
	struct webserver *sched_tls = NULL, *sched_plain = NULL;
	int r, interval = o->resync_seconds > 0 ? o->resync_seconds : 10;

	r = parse_selector(o->node_selector, &sel);
	if (r < 0)
		return r;
	r = connect_api(o, &c);
	if (r < 0)
		return r;
	r = metrics_new(o->drivername, "", o->version, &m);
	if (r < 0)
		goto out;
	if (metrics_registry_add(metrics_registry(m), METRICS_TYPE_COUNTER, "pmem_csi_rescheduler_passes_total",
				 "Passes over the PVCs of the cluster, by result (ok or error).", result_label, NULL,
				 0, &passes) < 0 ||
	    metrics_registry_add(metrics_registry(m), METRICS_TYPE_COUNTER,
				 "pmem_csi_rescheduler_rescheduled_total",
				 "PVCs whose selected node was removed because the driver cannot run there.", NULL,
				 NULL, 0, &rescheduled) < 0 ||
	    metrics_registry_add(metrics_registry(m), METRICS_TYPE_GAUGE, "pmem_csi_rescheduler_pending_pvcs",
				 "Pending PVCs of this driver with a selected node, in the last pass.", NULL, NULL, 0,
				 &pending) < 0) {
		r = log_error_errno(-ENOMEM, "Cannot set up the rescheduler metrics");
		goto out;
	}
	r = serve_metrics(m, o->metrics_listen, o->metrics_path, webhooks_ready, &state, &http);
	if (r < 0)
		goto out;
	if ((o->scheduler_listen && *o->scheduler_listen) ||
	    (o->insecure_scheduler_listen && *o->insecure_scheduler_listen)) {
		r = metrics_scheduler_new(metrics_registry(m), &state.metrics);
		if (r < 0) {
			log_error_errno(r, "Cannot set up the scheduler metrics: %m");
			goto out;
		}
		/* Its own client: the scheduler waits for /filter (httpTimeout), so no long retries. */
		r = connect_api(o, &state.api);
		if (r < 0)
			goto out;
		k8s_client_set_limits(state.api, 5000, 2);
		r = start_scheduler_servers(o, &state, &sched_tls, &sched_plain);
		if (r < 0)
			goto out;
	}
	log_info("Rescheduler started: driver %s, node selector %s, a pass every %d s", o->drivername,
		 o->node_selector && *o->node_selector ? o->node_selector : "{\"storage\":\"pmem\"}", interval);
	do {
		struct k8s_rescheduler_stats st = {};
		_cleanup_free_ char *err = NULL;
		const char *ok[] = { "ok", NULL }, *bad[] = { "error", NULL };

		r = k8s_rescheduler_pass(c, o->drivername, &sel.sel, &st, &err);
		if (r < 0) {
			log_error("Rescheduler pass failed: %s", err ? err : strerror(-r));
			metrics_counter_add(passes, bad, 1);
			continue;
		}
		state.ready = true;
		metrics_counter_add(passes, st.errors ? bad : ok, 1);
		metrics_counter_add(rescheduled, NULL, st.rescheduled);
		metrics_gauge_set(pending, NULL, st.pending);
		log_v(st.rescheduled ? 2 : 5, "Rescheduler pass: %u pending PVC(s) with a selected node, %u rescheduled, %u error(s)",
		      st.pending, st.rescheduled, st.errors);
	} while (!wait_signal(interval));
	r = 0;
out:
	webserver_stop(sched_tls);
	webserver_stop(sched_plain);
	metrics_http_stop(http);
	metrics_scheduler_free(state.metrics);
	metrics_free(m);
	k8s_client_free(state.api);
	k8s_client_free(c);
	return r;
}

static int sys_is_writable(const char *sys)
{
	struct statvfs sv;

	if (statvfs(sys, &sv) < 0)
		return -errno;
	return !(sv.f_flag & ST_RDONLY);
}

int sys_ensure_writable(const char *sys, const char *host_sys)
{
	int r = sys_is_writable(sys);

	if (r < 0)
		return log_error_errno(r, "Cannot check whether %s is writable: %m", sys);
	if (r > 0)
		return 0;
	if (access(host_sys, F_OK) < 0)
		return log_error_errno(-EROFS, "%s is mounted read-only and there is no %s to use instead: cannot "
					       "manage PMEM", sys, host_sys);
	if (mount(host_sys, sys, NULL, MS_BIND, NULL) < 0)
		return log_error_errno(-errno, "%s is mounted read-only; bind-mounting %s onto it failed: %m", sys,
				       host_sys);
	r = sys_is_writable(sys);
	if (r <= 0)
		return log_error_errno(r < 0 ? r : -EROFS, "Bind-mounting %s onto %s did not make it writable", host_sys,
				       sys);
	log_info("%s was mounted read-only: bind-mounted %s onto it, as intel/pmem-csi 1.1 did", sys, host_sys);
	return 0;
}
