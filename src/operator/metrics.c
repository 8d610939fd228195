/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operator's metrics (see metrics.h): the 1.x operator's pmem_csi_deployment_*
 * families and controller-runtime's reconcile families, on the driver's registry and
 * HTTP endpoint (src/metrics/).
 *
 * Created or updated? Server-side apply answers with the object either way, so we
 * remember per API path the uid and resourceVersion we last saw: a new uid is a
 * created object, a new resourceVersion an updated one. The first apply of a path
 * in this process reads the object first (one GET), so that an operator restart does
 * not count every existing object as created, and a change made at start-up still
 * counts as an update.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strbuf.h"
#include "basic/strutil.h"
#include "json/json.h"
#include "k8s/k8s.h"
#include "metrics.h"
#include "metrics/http.h"
#include "metrics/metrics.h"
#include "metrics/registry.h"

#define CONTROLLER_NAME "deployment-controller"
/* Paths remembered; beyond this the oldest entry is reused (it costs one GET more). */
#define SEEN_MAX 1024

/* controller-runtime's reconcile_time_seconds buckets. */
static const double reconcile_buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35,
					    0.4,   0.45, 0.5,   0.6,  0.7, 0.8,  0.9, 1.0,  1.25, 1.5,
					    1.75,  2.0,  2.5,   3.0,  3.5, 4.0,  4.5, 5,    6,    7,
					    8,     9,    10,    15,   20,  25,   30,  40,   50,   60 };

struct seen {
	char *path;
	char *uid; /* NULL: the object did not exist */
	char *rv;
};

struct operator_metrics {
	struct metrics *m;
	struct metrics_http *http;
	struct metrics_family *reconcile, *created_at, *updated_at;
	struct metrics_family *cr_total, *cr_errors, *cr_time;
	pthread_mutex_t lock; /* seen[] */
	struct seen seen[SEEN_MAX];
	size_t next_victim;
};

static const char *const sub_labels[] = { "name", "namespace", "group", "version", "kind", "uid", "ownedBy", NULL };

int operator_metrics_new(const char *version, struct operator_metrics **ret)
{
	struct operator_metrics *om = calloc(1, sizeof(*om));
	struct metrics_registry *reg;
	int r;

	if (!om)
		return -ENOMEM;
	pthread_mutex_init(&om->lock, NULL);
	/* The driver's set: build_info and process_*; its CSI and capacity families stay empty. */
	r = metrics_new("pmem-csi-operator", "", version, &om->m);
	if (r < 0) {
		free(om);
		return r;
	}
	reg = metrics_registry(om->m);
	/* Names, help texts and labels of the 1.x operator (pkg/pmem-csi-operator/metrics). */
	if ((r = metrics_registry_add(reg, METRICS_TYPE_COUNTER, "pmem_csi_deployment_reconcile",
				      "Number of reconcile loops gone through by a PmemCSIDeployment CR.",
				      (const char *const[]){ "name", "uid", NULL }, NULL, 0, &om->reconcile)) < 0 ||
	    (r = metrics_registry_add(reg, METRICS_TYPE_GAUGE, "pmem_csi_deployment_sub_resource_created_at",
				      "Timestamp at which a sub resource was created.", sub_labels, NULL, 0,
				      &om->created_at)) < 0 ||
	    (r = metrics_registry_add(reg, METRICS_TYPE_GAUGE, "pmem_csi_deployment_sub_resource_updated_at",
				      "Timestamp at which a sub resource was update.", sub_labels, NULL, 0,
				      &om->updated_at)) < 0 ||
	    /* controller-runtime's, which the 1.x operator exposed too. */
	    (r = metrics_registry_add(reg, METRICS_TYPE_COUNTER, "controller_runtime_reconcile_total",
				      "Total number of reconciliations per controller",
				      (const char *const[]){ "controller", "result", NULL }, NULL, 0, &om->cr_total)) < 0 ||
	    (r = metrics_registry_add(reg, METRICS_TYPE_COUNTER, "controller_runtime_reconcile_errors_total",
				      "Total number of reconciliation errors per controller",
				      (const char *const[]){ "controller", NULL }, NULL, 0, &om->cr_errors)) < 0 ||
	    (r = metrics_registry_add(reg, METRICS_TYPE_HISTOGRAM, "controller_runtime_reconcile_time_seconds",
				      "Length of time per reconciliation per controller",
				      (const char *const[]){ "controller", NULL }, reconcile_buckets,
				      ELEMENTSOF(reconcile_buckets), &om->cr_time)) < 0) {
		operator_metrics_free(om);
		return r;
	}
	/* Present from the start, as the Go client shows a counter vector's known series. */
	(void)metrics_counter_add(om->cr_total, (const char *const[]){ CONTROLLER_NAME, "success", NULL }, 0);
	(void)metrics_counter_add(om->cr_total, (const char *const[]){ CONTROLLER_NAME, "error", NULL }, 0);
	(void)metrics_counter_add(om->cr_errors, (const char *const[]){ CONTROLLER_NAME, NULL }, 0);
	*ret = om;
	return 0;
}

void operator_metrics_free(struct operator_metrics *om)
{
	if (!om)
		return;
	metrics_http_stop(om->http);
	metrics_free(om->m);
	for (size_t i = 0; i < SEEN_MAX; i++) {
		free(om->seen[i].path);
		free(om->seen[i].uid);
		free(om->seen[i].rv);
	}
	pthread_mutex_destroy(&om->lock);
	free(om);
}

int operator_metrics_serve(struct operator_metrics *om, const char *listen, uint16_t *ret_port)
{
	int r;

	if (om->http)
		return -EALREADY;
	r = metrics_http_start(om->m, listen, "/metrics", &om->http);
	if (r < 0)
		return r;
	metrics_http_set_readiness(om->http, NULL, NULL);
	if (ret_port)
		*ret_port = metrics_http_port(om->http);
	return 0;
}

void operator_metrics_reconciled(struct operator_metrics *om, const struct jv *cr, int r, double seconds)
{
	const struct jv *meta = jv_object_get(cr, "metadata");
	const char *name = jv_string(jv_object_get(meta, "name")), *uid = jv_string(jv_object_get(meta, "uid"));

	if (!om)
		return;
	(void)metrics_counter_add(om->reconcile, (const char *const[]){ name ?: "", uid ?: "", NULL }, 1);
	(void)metrics_counter_add(om->cr_total,
				  (const char *const[]){ CONTROLLER_NAME, r < 0 ? "error" : "success", NULL }, 1);
	if (r < 0)
		(void)metrics_counter_add(om->cr_errors, (const char *const[]){ CONTROLLER_NAME, NULL }, 1);
	(void)metrics_histogram_observe(om->cr_time, (const char *const[]){ CONTROLLER_NAME, NULL }, seconds);
}

static struct seen *seen_find(struct operator_metrics *om, const char *path)
{
	for (size_t i = 0; i < SEEN_MAX; i++)
		if (streq_ptr(om->seen[i].path, path))
			return &om->seen[i];
	return NULL;
}

/* Record what path holds now (obj NULL: nothing). Called with om->lock held. */
static void seen_set(struct operator_metrics *om, const char *path, const char *uid, const char *rv)
{
	struct seen *s = seen_find(om, path);
	char *p = NULL, *u = uid ? strdup(uid) : NULL, *v = rv ? strdup(rv) : NULL;

	if (!s) {
		for (size_t i = 0; i < SEEN_MAX && !s; i++)
			if (!om->seen[i].path)
				s = &om->seen[i];
		if (!s) {
			s = &om->seen[om->next_victim];
			om->next_victim = (om->next_victim + 1) % SEEN_MAX;
		}
		p = strdup(path);
		if (!p)
			goto oom;
		free(s->path);
		s->path = p;
	}
	if ((uid && !u) || (rv && !v))
		goto oom;
	free(s->uid);
	free(s->rv);
	s->uid = u;
	s->rv = v;
	return;
oom:
	/* Forget the path: the next apply reads it again. */
	free(u);
	free(v);
	if (s) {
		free(s->path);
		free(s->uid);
		free(s->rv);
		*s = (struct seen){};
	}
}

static const char *meta_string(const struct jv *obj, const char *key)
{
	return jv_string(jv_object_get(jv_object_get(obj, "metadata"), key));
}

static void set_sub_resource(struct metrics_family *f, const struct jv *obj)
{
	const char *api = jv_string(jv_object_get(obj, "apiVersion")) ?: "";
	const char *slash = strchr(api, '/');
	const struct jv *refs = jv_object_get(jv_object_get(obj, "metadata"), "ownerReferences");
	_cleanup_free_ char *group = slash ? strndup(api, (size_t)(slash - api)) : strdup("");
	struct strbuf owners = STRBUF_INIT;

	for (size_t i = 0; i < jv_array_size(refs); i++) {
		if (i)
			strbuf_append_char(&owners, ',');
		strbuf_append_str(&owners, jv_string(jv_object_get(jv_array_get(refs, i), "uid")) ?: "");
	}
	if (group && !strbuf_failed(&owners)) {
		const char *v[] = { meta_string(obj, "name") ?: "",
				    meta_string(obj, "namespace") ?: "",
				    group,
				    slash ? slash + 1 : api,
				    jv_string(jv_object_get(obj, "kind")) ?: "",
				    meta_string(obj, "uid") ?: "",
				    strbuf_str(&owners) ?: "",
				    NULL };
		int r = metrics_gauge_set(f, v, (double)time(NULL));
		if (r < 0)
			log_debug_errno(r, "Cannot set a sub_resource metric: %m");
	}
	strbuf_free(&owners);
}

int operator_metrics_apply(struct operator_metrics *om, struct k8s_client *c, const char *path,
			   const char *field_manager, const char *object, struct jv **ret, char **ret_err)
{
	_cleanup_(jv_unrefp) struct jv *after = NULL;
	_cleanup_free_ char *uid = NULL, *rv = NULL;
	bool known = false, existed = false, unsure = false;
	int r;

	if (!om)
		return k8s_apply(c, path, field_manager, object, ret, ret_err);

	pthread_mutex_lock(&om->lock);
	struct seen *s = seen_find(om, path);
	if (s) {
		known = true;
		existed = s->uid != NULL;
		uid = s->uid ? strdup(s->uid) : NULL;
		rv = s->rv ? strdup(s->rv) : NULL;
	}
	pthread_mutex_unlock(&om->lock);

	if (!known) {
		_cleanup_(jv_unrefp) struct jv *before = NULL;
		_cleanup_free_ char *err = NULL;

		r = k8s_get(c, path, &before, &err);
		if (r >= 0) {
			existed = true;
			uid = meta_string(before, "uid") ? strdup(meta_string(before, "uid")) : NULL;
			rv = meta_string(before, "resourceVersion") ? strdup(meta_string(before, "resourceVersion"))
								    : NULL;
		} else if (r != -ENOENT) {
			log_v(4, "Cannot read %s before applying it: %s", path, err ? err : "");
			unsure = true;
		}
	}

	r = k8s_apply(c, path, field_manager, object, &after, ret_err);
	if (r < 0)
		return r;

	const char *nuid = meta_string(after, "uid"), *nrv = meta_string(after, "resourceVersion");
	if (unsure)
		; /* neither: we cannot tell */
	else if (!existed || !streq_ptr(uid, nuid))
		set_sub_resource(om->created_at, after);
	else if (!streq_ptr(rv, nrv))
		set_sub_resource(om->updated_at, after);
	pthread_mutex_lock(&om->lock);
	seen_set(om, path, nuid, nrv);
	pthread_mutex_unlock(&om->lock);
	if (ret)
		*ret = TAKE_PTR(after);
	return 0;
}
