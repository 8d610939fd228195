/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The mutating pod webhook: pods that use volumes of this driver which the
 * extender must place (late-binding claims, generic ephemeral volumes with
 * such a class, CSI inline volumes) get one "<driver>/scheduler" in the
 * requests and limits of their first container. The scheduler configuration
 * lists that extended resource as managed by the extender and ignored by the
 * scheduler itself, so exactly these pods go through /filter. See extender.h.
 */
#include "extender.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strbuf.h"
#include "basic/strutil.h"
#include "json/json.h"

#define RESOURCE_SUFFIX "/scheduler"

static char *base64_encode(const char *in, size_t len)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)(unsigned char)in[i] << 16;
		if (i + 1 < len)
			v |= (unsigned)(unsigned char)in[i + 1] << 8;
		if (i + 2 < len)
			v |= (unsigned char)in[i + 2];
		*o++ = tbl[(v >> 18) & 63];
		*o++ = tbl[(v >> 12) & 63];
		*o++ = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
		*o++ = i + 2 < len ? tbl[v & 63] : '=';
	}
	*o = 0;
	return out;
}

/* A JSON pointer token (RFC 6901): "~" -> "~0", "/" -> "~1". */
static char *pointer_token(const char *s)
{
	struct strbuf t = STRBUF_INIT;

	for (; *s; s++) {
		if (*s == '~')
			strbuf_append_str(&t, "~0");
		else if (*s == '/')
			strbuf_append_str(&t, "~1");
		else
			strbuf_append_char(&t, *s);
	}
	return strbuf_steal(&t);
}

/* The JSON patch that adds resource=1 to the requests and limits of container 0. */
static char *mark_patch(const struct jv *container, const char *resource)
{
	const struct jv *res = jv_object_get(container, "resources");
	static const char *const kinds[] = { "requests", "limits" };
	struct strbuf b = STRBUF_INIT;

	strbuf_append_char(&b, '[');
	if (!jv_is_object(res)) {
		strbuf_append_str(&b, "{\"op\":\"add\",\"path\":\"/spec/containers/0/resources\",\"value\":{\"requests\":{");
		strbuf_append_json_string(&b, resource);
		strbuf_append_str(&b, ":\"1\"},\"limits\":{");
		strbuf_append_json_string(&b, resource);
		strbuf_append_str(&b, ":\"1\"}}}");
	} else {
		for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
			if (i)
				strbuf_append_char(&b, ',');
			if (!jv_is_object(jv_object_get(res, kinds[i]))) {
				strbuf_appendf(&b, "{\"op\":\"add\",\"path\":\"/spec/containers/0/resources/%s\",\"value\":{",
					       kinds[i]);
				strbuf_append_json_string(&b, resource);
				strbuf_append_str(&b, ":\"1\"}}");
			} else {
				_cleanup_free_ char *tok = pointer_token(resource), *ptr = NULL;

				ptr = tok ? xasprintf("/spec/containers/0/resources/%s/%s", kinds[i], tok) : NULL;
				if (!ptr) {
					strbuf_free(&b);
					return NULL;
				}
				strbuf_append_str(&b, "{\"op\":\"add\",\"path\":");
				strbuf_append_json_string(&b, ptr);
				strbuf_append_str(&b, ",\"value\":\"1\"}");
			}
		}
	}
	strbuf_append_char(&b, ']');
	return strbuf_steal(&b);
}

struct answer {
	const char *api_version;
	const char *uid;
	bool allowed;
	int code;            /* status.code, 0 for none */
	const char *message; /* status.message */
	const char *warning;
	const char *patch; /* JSON patch, not yet base64 */
};

static int review_response(const struct answer *a, char **ret_json, size_t *ret_len)
{
	struct strbuf b = STRBUF_INIT;
	_cleanup_free_ char *patch64 = NULL;

	if (a->patch && !(patch64 = base64_encode(a->patch, strlen(a->patch))))
		return -ENOMEM;
	strbuf_append_str(&b, "{\"apiVersion\":");
	strbuf_append_json_string(&b, a->api_version);
	strbuf_append_str(&b, ",\"kind\":\"AdmissionReview\",\"response\":{\"uid\":");
	strbuf_append_json_string(&b, a->uid);
	strbuf_append_str(&b, a->allowed ? ",\"allowed\":true" : ",\"allowed\":false");
	if (patch64) {
		strbuf_append_str(&b, ",\"patchType\":\"JSONPatch\",\"patch\":");
		strbuf_append_json_string(&b, patch64);
	}
	if (a->code || a->message) {
		strbuf_appendf(&b, ",\"status\":{\"code\":%d", a->code ? a->code : 200);
		if (a->message) {
			strbuf_append_str(&b, ",\"message\":");
			strbuf_append_json_string(&b, a->message);
		}
		strbuf_append_char(&b, '}');
	}
	if (a->warning) {
		strbuf_append_str(&b, ",\"warnings\":[");
		strbuf_append_json_string(&b, a->warning);
		strbuf_append_char(&b, ']');
	}
	strbuf_append_str(&b, "}}");
	*ret_len = strbuf_len(&b);
	*ret_json = strbuf_steal(&b);
	return *ret_json ? 0 : -ENOMEM;
}

static int plain_error(const char *msg, char **ret_json, size_t *ret_len, unsigned *ret_status)
{
	*ret_status = 400;
	*ret_json = xasprintf("%s\n", msg);
	if (!*ret_json)
		return -ENOMEM;
	/* jansson's parse errors quote the input: printable ASCII only in the answer */
	for (char *p = *ret_json; p[1]; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	*ret_len = strlen(*ret_json);
	return 0;
}

int webhook_mutate(const struct k8s_getter *g, const char *driver, const char *body, size_t len, char **ret_json,
		   size_t *ret_len, unsigned *ret_status, bool *ret_mutated)
{
	_cleanup_(jv_unrefp) struct jv *review = NULL;
	_cleanup_free_ char *err = NULL, *resource = NULL, *patch = NULL, *warning = NULL, *bad = NULL;
	const struct jv *req, *pod, *containers, *vols;
	struct answer a = { .allowed = true };
	const char *op, *rsrc, *ns, *pod_name;
	unsigned lookups = 0;
	bool ours = false;
	int r;

	*ret_mutated = false;
	r = jv_parse(body, len, &review, &err);
	if (r == -ENOMEM)
		return r;
	if (r < 0 || !jv_is_object(review)) {
		_cleanup_free_ char *msg = xasprintf("request body is not a JSON AdmissionReview: %s", err ? err : "not an object");
		return msg ? plain_error(msg, ret_json, ret_len, ret_status) : -ENOMEM;
	}
	a.api_version = jv_string(jv_object_get(review, "apiVersion"));
	if (!streq_ptr(a.api_version, "admission.k8s.io/v1") && !streq_ptr(a.api_version, "admission.k8s.io/v1beta1"))
		return plain_error("AdmissionReview.apiVersion: must be admission.k8s.io/v1 (or v1beta1)", ret_json, ret_len,
				   ret_status);
	if (!streq_ptr(jv_string(jv_object_get(review, "kind")), "AdmissionReview"))
		return plain_error("AdmissionReview.kind: must be AdmissionReview", ret_json, ret_len, ret_status);
	req = jv_object_get(review, "request");
	a.uid = jv_string(jv_object_get(req, "uid"));
	if (!jv_is_object(req) || !a.uid || !*a.uid)
		return plain_error("AdmissionReview.request.uid: missing", ret_json, ret_len, ret_status);
	*ret_status = 200;

	op = jv_string(jv_object_get(req, "operation"));
	rsrc = jv_string(jv_object_get(jv_object_get(req, "resource"), "resource"));
	if ((op && !streq_ptr(op, "CREATE")) || (rsrc && !streq_ptr(rsrc, "pods"))) {
		a.message = "not a pod creation";
		return review_response(&a, ret_json, ret_len);
	}
	pod = jv_object_get(req, "object");
	containers = jv_object_get(jv_object_get(pod, "spec"), "containers");
	vols = jv_object_get(jv_object_get(pod, "spec"), "volumes");
	if (!jv_is_object(pod) || (jv_object_get(jv_object_get(pod, "spec"), "containers") && !jv_is_array(containers)) ||
	    (vols && !jv_is_array(vols))) {
		a.allowed = false;
		a.code = 400;
		a.message = "AdmissionReview.request.object: not a pod (spec.containers and spec.volumes must be lists)";
		return review_response(&a, ret_json, ret_len);
	}
	if (jv_array_size(containers) == 0) {
		a.allowed = false;
		a.code = 403;
		a.message = "pod has no containers";
		return review_response(&a, ret_json, ret_len);
	}
	if (jv_array_size(vols) == 0) {
		a.message = "no volumes";
		return review_response(&a, ret_json, ret_len);
	}
	ns = jv_string(jv_object_get(jv_object_get(pod, "metadata"), "namespace"));
	if (!ns || !*ns)
		ns = jv_string(jv_object_get(req, "namespace"));
	if (!ns || !*ns)
		ns = "default";
	pod_name = jv_string(jv_object_get(jv_object_get(pod, "metadata"), "name"));
	if (!pod_name || !*pod_name)
		pod_name = jv_string(jv_object_get(jv_object_get(pod, "metadata"), "generateName"));

	for (size_t i = 0; i < jv_array_size(vols) && !ours; i++) {
		const struct jv *vol = jv_array_get(vols, i);
		enum pod_volume_kind kind;

		free(err);
		err = NULL;
		r = pod_volume_classify(g, driver, ns, vol, &lookups, &kind, NULL, &err);
		if (r == -ENOMEM)
			return r;
		if (r == -ENOENT) {
			/* 1.x: a pod may be created before its claim; it is not ours then. */
			log_v(3, "Webhook: pod %s/%s: %s, ignored", ns, pod_name ?: "", err ? err : "not found");
			continue;
		}
		if (r == -EINVAL) {
			a.allowed = false;
			a.code = 400;
			bad = xasprintf("AdmissionReview.request.object: %s", err ? err : "a malformed volume");
			a.message = bad ? bad : "a malformed volume";
			return review_response(&a, ret_json, ret_len);
		}
		if (r < 0) {
			warning = xasprintf("pmem-csi: cannot check whether the pod uses PMEM (%s): the scheduler "
					    "extender will not check its PMEM capacity",
					    err ? err : strerror(-r));
			log_warning("Webhook: pod %s/%s: %s", ns, pod_name ?: "", warning ? warning : "");
			a.warning = warning;
			a.message = "volumes not checked";
			return review_response(&a, ret_json, ret_len);
		}
		ours = kind != POD_VOLUME_OTHER;
	}
	if (!ours) {
		a.message = "no relevant PMEM volumes";
		log_v(5, "Webhook: pod %s/%s does not use late-binding or inline PMEM volumes", ns, pod_name ?: "");
		return review_response(&a, ret_json, ret_len);
	}
	resource = xasprintf("%s%s", driver, RESOURCE_SUFFIX);
	patch = resource ? mark_patch(jv_array_get(containers, 0), resource) : NULL;
	if (!patch)
		return -ENOMEM;
	a.patch = patch;
	*ret_mutated = true;
	log_v(4, "Webhook: pod %s/%s uses PMEM: %s", ns, pod_name ?: "", patch);
	return review_response(&a, ret_json, ret_len);
}
