/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pmem-csi-operator: list the PmemCSIDeployment objects, reconcile each, then watch
 * them from the list's resourceVersion; a 410 Gone (or any error, after a bounded
 * backoff) re-lists. Every re-list reconciles all objects again, which also refreshes
 * the component status from the DaemonSet and Deployment; between re-lists, an event
 * reconciles only when the CR's generation or uid changed (our own status writes
 * come back as MODIFIED events with the same generation).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "json/json.h"
#include "k8s/k8s.h"
#include "manifest.h"
#include "metrics.h"
#include "reconcile.h"

#ifndef PMEM_CSI_VERSION
#define PMEM_CSI_VERSION "unknown"
#endif

#define SEEN_MAX 256
#define BACKOFF_MAX_S 30

static volatile sig_atomic_t stop;

/* What was last reconciled per CR (name, uid, generation). */
static struct seen {
	char *name;
	char *uid;
	int64_t generation;
} seen[SEEN_MAX];

struct loop {
	struct operator *op;
	char *rv;
};

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static bool is_new(const struct jv *cr)
{
	const struct jv *meta = jv_object_get(cr, "metadata");
	const char *name = jv_string(jv_object_get(meta, "name"));
	const char *uid = jv_string(jv_object_get(meta, "uid"));
	int64_t gen = jv_integer(jv_object_get(meta, "generation"));
	struct seen *free_slot = NULL;

	if (!name || !uid)
		return true;
	for (size_t i = 0; i < SEEN_MAX; i++) {
		if (!seen[i].name) {
			if (!free_slot)
				free_slot = &seen[i];
			continue;
		}
		if (!streq_ptr(seen[i].name, name))
			continue;
		if (streq_ptr(seen[i].uid, uid) && seen[i].generation == gen)
			return false;
		free(seen[i].uid);
		seen[i].uid = strdup(uid);
		seen[i].generation = gen;
		return true;
	}
	if (free_slot) {
		free_slot->name = strdup(name);
		free_slot->uid = strdup(uid);
		free_slot->generation = gen;
	}
	return true;
}

static void set_rv(struct loop *l, const struct jv *obj)
{
	const char *rv = jv_string(jv_object_get(jv_object_get(obj, "metadata"), "resourceVersion"));
	char *n;

	if (!rv || !(n = strdup(rv)))
		return;
	free(l->rv);
	l->rv = n;
}

static int on_event(const char *type, const struct jv *obj, void *ud)
{
	struct loop *l = ud;

	if (stop)
		return -ECANCELED;
	if (streq_ptr(type, "ERROR")) {
		int64_t code = jv_integer(jv_object_get(obj, "code"));
		log_v(2, "Watch error event (code %lld): %s", (long long)code,
		      jv_string(jv_object_get(obj, "message")) ?: "");
		return -ESTALE; /* 410 Expired and anything else: re-list */
	}
	set_rv(l, obj);
	if (streq_ptr(type, "ADDED") || streq_ptr(type, "MODIFIED")) {
		if (is_new(obj))
			(void)operator_reconcile(l->op, obj);
	}
	/* DELETED: the garbage collector removes the objects we own. */
	return 0;
}

static int relist(struct loop *l, char **ret_err)
{
	_cleanup_(jv_unrefp) struct jv *list = NULL;
	const struct jv *items;
	int r;

	r = k8s_get(l->op->client, OPERATOR_CRD_PATH, &list, ret_err);
	if (r < 0)
		return r;
	set_rv(l, list);
	items = jv_object_get(list, "items");
	for (size_t i = 0; i < jv_array_size(items) && !stop; i++) {
		(void)is_new(jv_array_get(items, i));
		(void)operator_reconcile(l->op, jv_array_get(items, i));
	}
	return 0;
}

static int run(struct operator *op, unsigned resync_s)
{
	struct loop l = { .op = op };
	unsigned backoff = 1;

	while (!stop) {
		_cleanup_free_ char *err = NULL;
		int r = relist(&l, &err);

		if (r < 0) {
			log_error_errno(r, "Failed to list PmemCSIDeployments: %s; retrying in %u s", err ? err : "",
					backoff);
			sleep(backoff);
			backoff = backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : backoff * 2;
			continue;
		}
		backoff = 1;
		/* One watch up to resync_s; then re-list and reconcile everything. */
		_cleanup_free_ char *path = xasprintf("%s?resourceVersion=%s", OPERATOR_CRD_PATH, l.rv ? l.rv : "0");
		if (!path)
			return -ENOMEM;
		r = k8s_watch(op->client, path, resync_s, on_event, &l, &err);
		if (r == -ESTALE || r == -ECANCELED || r == 0)
			continue;
		log_warning_errno(r, "Watch of PmemCSIDeployments ended: %s; re-listing in %u s", err ? err : "",
				  backoff);
		sleep(backoff);
		backoff = backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : backoff * 2;
	}
	free(l.rv);
	return 0;
}

/* 1.x: the driver image defaults to the operator's own (POD_NAME, OPERATOR_NAME). */
static char *own_image(struct k8s_client *c, const char *ns)
{
	const char *pod = getenv("POD_NAME"), *cname = getenv("OPERATOR_NAME");
	_cleanup_(jv_unrefp) struct jv *obj = NULL;
	_cleanup_free_ char *path = NULL, *err = NULL, *epod = NULL, *ens = NULL;
	const struct jv *cs;

	if (!pod || !*pod)
		return NULL;
	if (!cname || !*cname)
		cname = "pmem-csi-operator";
	epod = k8s_path_escape(pod);
	ens = k8s_path_escape(ns);
	path = epod && ens ? xasprintf("/api/v1/namespaces/%s/pods/%s", ens, epod) : NULL;
	if (!path || k8s_get(c, path, &obj, &err) < 0) {
		log_warning("Cannot read the operator pod for its image: %s", err ? err : "out of memory");
		return NULL;
	}
	cs = jv_object_get(jv_object_get(obj, "spec"), "containers");
	for (size_t i = 0; i < jv_array_size(cs); i++)
		if (streq_ptr(jv_string(jv_object_get(jv_array_get(cs, i), "name")), cname))
			return strdup(jv_string(jv_object_get(jv_array_get(cs, i), "image")) ?: "");
	return NULL;
}

/*
 * The metrics endpoint. A failure to listen on an address given with -metrics-addr is
 * fatal; on the default :8080 (which something else on the host may hold, e.g. a
 * second operator outside a pod) it is logged and the operator runs without it.
 */
static int setup_metrics(struct operator *op, const char *addr, bool given)
{
	uint16_t port = 0;
	int r;

	if (!*addr || streq_ptr(addr, "0"))
		return 0;
	r = operator_metrics_new(PMEM_CSI_VERSION, &op->metrics);
	if (r < 0)
		return log_error_errno(r, "Failed to set up the metrics: %m");
	r = operator_metrics_serve(op->metrics, addr, &port);
	if (r < 0) {
		operator_metrics_free(TAKE_PTR(op->metrics));
		if (given)
			return log_error_errno(r, "Failed to serve metrics on -metrics-addr=%s: %m", addr);
		log_warning_errno(r, "Cannot serve metrics on the default address %s: %m; running without metrics",
				  addr);
		return 0;
	}
	log_info("Serving metrics on %s (port %u), path /metrics", addr, (unsigned)port);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: pmem-csi-operator [-kubeconfig=PATH] [-namespace=NS] [-image=IMAGE] "
			"[-resync=SECONDS] [-metrics-addr=ADDR] [-v=N] [-logging-format=text|json] [-version]\n");
}

int main(int argc, char **argv)
{
	const char *kubeconfig = NULL, *ns = getenv("POD_NAMESPACE"), *image = getenv("PMEM_CSI_IMAGE");
	/* 1.x's flag and default; "0" (or empty) turns the endpoint off. */
	const char *metrics_addr = ":8080";
	bool metrics_addr_given = false;
	enum log_format fmt = LOG_FORMAT_TEXT;
	_cleanup_free_ char *err = NULL, *own = NULL;
	struct operator op = {};
	unsigned resync = 60;
	int v = 3, r;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (startswith(a, "--"))
			a++;
		if (startswith(a, "-kubeconfig="))
			kubeconfig = a + 12;
		else if (startswith(a, "-namespace="))
			ns = a + 11;
		else if (startswith(a, "-image="))
			image = a + 7;
		else if (startswith(a, "-metrics-addr=")) {
			metrics_addr = a + 14;
			metrics_addr_given = true;
		}
		else if (startswith(a, "-resync=")) {
			int n;
			if (safe_atoi(a + 8, &n) < 0 || n < 1 || n > 3600) {
				fprintf(stderr, "-resync: '%s' is not a number of seconds within 1-3600\n", a + 8);
				return 2;
			}
			resync = (unsigned)n;
		} else if (startswith(a, "-v=")) {
			if (safe_atoi(a + 3, &v) < 0 || v < 0 || v > 10) {
				fprintf(stderr, "-v: '%s' is not a level within 0-10\n", a + 3);
				return 2;
			}
		} else if (streq_ptr(a, "-logging-format=json"))
			fmt = LOG_FORMAT_JSON;
		else if (streq_ptr(a, "-logging-format=text"))
			fmt = LOG_FORMAT_TEXT;
		else if (streq_ptr(a, "-version")) {
			printf("pmem-csi-operator %s\n", PMEM_CSI_VERSION);
			return 0;
		} else {
			fprintf(stderr, "unknown argument '%s'\n", argv[i]);
			usage();
			return 2;
		}
	}
	log_setup(fmt, v);
	if (!ns || !*ns)
		ns = "pmem-csi";
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);

	r = jv_parse(operator_manifest_json, strlen(operator_manifest_json), &op.manifest, &err);
	if (r < 0) {
		log_error_errno(r, "The embedded manifest is not JSON: %s", err ? err : "");
		return 1;
	}
	r = k8s_client_new(kubeconfig, &op.client, &err);
	if (r < 0) {
		log_error_errno(r, "Failed to set up the Kubernetes client: %s", err ? err : "");
		jv_unref(op.manifest);
		return 1;
	}
	if (!image || !*image)
		image = own = own_image(op.client, ns);
	op.namespace = ns;
	op.default_image = image;
	r = setup_metrics(&op, metrics_addr, metrics_addr_given);
	if (r < 0) {
		k8s_client_free(op.client);
		jv_unref(op.manifest);
		return 1;
	}
	log_info("pmem-csi-operator %s: namespace %s, API server %s, driver image %s", PMEM_CSI_VERSION, ns,
		 k8s_client_server(op.client), image ? image : "(from the manifest)");
	r = run(&op, resync);
	operator_metrics_free(op.metrics);
	k8s_client_free(op.client);
	jv_unref(op.manifest);
	return r < 0 ? 1 : 0;
}
