/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One reconcile of one PmemCSIDeployment: render, apply every object, report status.
 * Server-side apply with force keeps the objects' fields that we set equal to the CR,
 * and leaves the fields that others set (and we do not) alone.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strbuf.h"
#include "basic/strutil.h"
#include "certs.h"
#include "json/json.h"
#include "k8s/k8s.h"
#include "manifest.h"
#include "metrics.h"
#include "reconcile.h"

static void now_rfc3339(char buf[32])
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Ready state of a component from its workload status; reason as the 1.x operator words it. */
static void component(struct strbuf *b, struct operator *op, const char *what, const char *path, bool node,
		      const char *ts)
{
	_cleanup_(jv_unrefp) struct jv *obj = NULL;
	_cleanup_free_ char *err = NULL, *reason = NULL;
	const struct jv *st;
	int64_t want = 0, ready = 0;
	bool ok;

	if (k8s_get(op->client, path, &obj, &err) < 0) {
		reason = xasprintf("%s", err ? err : "not found");
		ok = false;
	} else {
		st = jv_object_get(obj, "status");
		if (node) {
			want = jv_integer(jv_object_get(st, "desiredNumberScheduled"));
			ready = jv_integer(jv_object_get(st, "numberReady"));
		} else {
			want = jv_integer(jv_object_get(jv_object_get(obj, "spec"), "replicas"));
			ready = jv_integer(jv_object_get(st, "readyReplicas"));
		}
		ok = ready >= want;
		if (node)
			reason = ok ? xasprintf("All %lld node driver pod(s) running successfully", (long long)ready)
				    : xasprintf("%lld out of %lld driver pod(s) are ready", (long long)ready,
						(long long)want);
		else
			reason = ok ? xasprintf("%lld instance(s) of controller driver is running successfully",
						(long long)ready)
				    : xasprintf("%lld out of %lld controller pod(s) are ready", (long long)ready,
						(long long)want);
	}
	strbuf_appendf(b, "{\"component\":\"%s\",\"status\":\"%s\",\"lastUpdated\":\"%s\",\"reason\":", what,
		       ok ? "Ready" : "NotReady", ts);
	strbuf_append_json_string(b, reason ? reason : "");
	strbuf_append_str(b, "}");
}

static int write_status(struct operator *op, const char *name, const char *prefix, int failed, const char *reason,
			const struct operator_certs_status *certs)
{
	_cleanup_free_ char *ename = k8s_path_escape(name), *path = NULL, *err = NULL, *dpath = NULL,
			    *npath = NULL, *ens = k8s_path_escape(op->namespace);
	struct strbuf b = STRBUF_INIT;
	char ts[32];
	int r;

	if (!ename || !ens)
		return -ENOMEM;
	now_rfc3339(ts);
	path = xasprintf("%s/%s/status", OPERATOR_CRD_PATH, ename);
	dpath = xasprintf("/apis/apps/v1/namespaces/%s/deployments/%s-controller", ens, prefix);
	npath = xasprintf("/apis/apps/v1/namespaces/%s/daemonsets/%s-node", ens, prefix);
	if (!path || !dpath || !npath)
		return -ENOMEM;
	strbuf_appendf(&b, "{\"status\":{\"phase\":\"%s\",\"lastUpdated\":\"%s\",\"reason\":",
		       failed ? "Failed" : "Running", ts);
	strbuf_append_json_string(&b, reason);
	strbuf_append_str(&b, ",\"conditions\":[");
	operator_certs_conditions(certs, ts, &b); /* CertsVerified, CertsReady */
	strbuf_appendf(&b, "{\"type\":\"DriverDeployed\",\"status\":\"%s\",\"lastUpdateTime\":\"%s\","
			   "\"reason\":", failed ? "False" : "True", ts);
	strbuf_append_json_string(&b, reason);
	strbuf_append_str(&b, "}],\"driverComponents\":[");
	if (!failed) {
		component(&b, op, "Controller", dpath, false, ts);
		strbuf_append_str(&b, ",");
		component(&b, op, "Node", npath, true, ts);
	}
	strbuf_append_str(&b, "]}}");
	if (strbuf_failed(&b)) {
		strbuf_free(&b);
		return -ENOMEM;
	}
	r = k8s_merge_patch(op->client, path, strbuf_str(&b), NULL, &err);
	strbuf_free(&b);
	if (r < 0)
		return log_warning_errno(r, "Failed to write the status of PmemCSIDeployment '%s': %s", name,
					 err ? err : "");
	return 0;
}

static int reconcile_one(struct operator *op, const struct jv *cr)
{
	const char *name = jv_string(jv_object_get(jv_object_get(cr, "metadata"), "name"));
	struct operator_ctx ctx = { .namespace = op->namespace, .default_image = op->default_image };
	_cleanup_(jv_unrefp) struct jv *objs = NULL;
	_cleanup_free_ char *err = NULL, *prefix = NULL, *reason = NULL;
	_cleanup_(operator_certs_status_clear) struct operator_certs_status certs = { .verified = -1, .ready = -1 };
	int r;

	if (!name)
		return -EINVAL;
	prefix = strdup(name);
	if (!prefix)
		return -ENOMEM;
	for (char *p = prefix; *p; p++)
		if (*p == '.')
			*p = '-';

	r = operator_render(op->manifest, cr, &ctx, &objs, &err);
	if (r < 0) {
		reason = xasprintf("invalid PmemCSIDeployment: %s", err ? err : strerror(-r));
		log_error("PmemCSIDeployment '%s': %s", name, reason ? reason : "");
		(void)write_status(op, name, prefix, r, reason ? reason : "invalid", NULL);
		return r;
	}
	/* Certificates first: given ones that do not verify leave everything as it was. */
	r = operator_certs_reconcile(op, cr, &certs, &err);
	if (r >= 0)
		r = operator_certs_mount(objs, prefix);
	if (r < 0) {
		reason = xasprintf("%s", err ? err : strerror(-r));
		log_error("PmemCSIDeployment '%s': %s", name, reason ? reason : "");
		(void)write_status(op, name, prefix, r, reason ? reason : "certificates", &certs);
		return r;
	}
	for (size_t i = 0; i < jv_array_size(objs); i++) {
		const struct jv *o = jv_array_get(objs, i);
		_cleanup_free_ char *path = operator_object_path(o), *body = jv_dump(o);

		if (!path || !body) {
			r = -ENOMEM;
			reason = xasprintf("cannot apply %s: no API path or out of memory",
					   jv_string(jv_object_get(o, "kind")));
			break;
		}
		free(err);
		err = NULL;
		r = operator_metrics_apply(op->metrics, op->client, path, OPERATOR_FIELD_MANAGER, body, NULL, &err);
		if (r < 0) {
			reason = xasprintf("failed to apply %s: %s", path, err ? err : strerror(-r));
			break;
		}
		log_v(4, "Applied %s", path);
	}
	if (r < 0) {
		log_error("PmemCSIDeployment '%s': %s", name, reason ? reason : "");
		(void)write_status(op, name, prefix, r, reason ? reason : "apply failed", &certs);
		return r;
	}
	log_v(2, "PmemCSIDeployment '%s': %zu objects applied", name, jv_array_size(objs));
	(void)write_status(op, name, prefix, 0, "Driver deployed successfully", &certs);
	return 0;
}

int operator_reconcile(struct operator *op, const struct jv *cr)
{
	struct timespec a, b;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &a);
	r = reconcile_one(op, cr);
	clock_gettime(CLOCK_MONOTONIC, &b);
	operator_metrics_reconciled(op->metrics, cr, r,
				    (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
	return r;
}
