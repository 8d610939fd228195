/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bodies of -mode=webhooks' endpoints: extender_filter() with ExtenderArgs
 * and webhook_mutate() with an AdmissionReview, both from the same input, with
 * canned cluster objects instead of the API server: claims "big" (2Gi, unbound),
 * "bound" (bound) and "nosize" (no request) of class "pmem-late", claim
 * "immediate" of class "pmem-now", claim "other" of another driver's class; any
 * other name does not exist. Node "n1" has 4Gi of PMEM, "n2" 1Gi, others none.
 *
 * Checked: both return 0 (no other failure is allowed but -ENOMEM); every answer
 * is a JSON object; a 200 /filter answer without "Error" names each input node
 * exactly once, in NodeNames (or Nodes) or FailedNodes; a 200 /pod/mutate answer
 * is an AdmissionReview whose response carries the request's uid, and its patch,
 * if any, is base64 of a JSON list.
 */
#include <errno.h>
#include <strings.h>

#include "basic/base64.h"
#include "basic/strutil.h"
#include "fuzz.h"
#include "json/json.h"
#include "k8s/extender.h"

static const struct {
	const char *path, *json;
} objects[] = {
	{ "/api/v1/namespaces/default/persistentvolumeclaims/big",
	  "{\"spec\":{\"storageClassName\":\"pmem-late\",\"resources\":{\"requests\":{\"storage\":\"2Gi\"}}},"
	  "\"status\":{\"phase\":\"Pending\"}}" },
	{ "/api/v1/namespaces/default/persistentvolumeclaims/bound",
	  "{\"spec\":{\"storageClassName\":\"pmem-late\",\"volumeName\":\"pv\"},\"status\":{\"phase\":\"Bound\"}}" },
	{ "/api/v1/namespaces/default/persistentvolumeclaims/nosize", "{\"spec\":{\"storageClassName\":\"pmem-late\"}}" },
	{ "/api/v1/namespaces/default/persistentvolumeclaims/immediate", "{\"spec\":{\"storageClassName\":\"pmem-now\"}}" },
	{ "/api/v1/namespaces/default/persistentvolumeclaims/other", "{\"spec\":{\"storageClassName\":\"other\"}}" },
	{ "/apis/storage.k8s.io/v1/storageclasses/pmem-late",
	  "{\"provisioner\":\"pmem-csi.intel.com\",\"volumeBindingMode\":\"WaitForFirstConsumer\"}" },
	{ "/apis/storage.k8s.io/v1/storageclasses/pmem-now",
	  "{\"provisioner\":\"pmem-csi.intel.com\",\"volumeBindingMode\":\"Immediate\"}" },
	{ "/apis/storage.k8s.io/v1/storageclasses/other", "{\"provisioner\":\"other.example.com\"}" },
	{ "/apis/storage.k8s.io/v1/csistoragecapacities",
	  "{\"items\":[{\"capacity\":\"4Gi\",\"nodeTopology\":{\"matchLabels\":{\"pmem-csi.intel.com/node\":\"n1\"}}},"
	  "{\"capacity\":\"1Gi\",\"maximumVolumeSize\":\"1Gi\",\"nodeTopology\":{\"matchLabels\":"
	  "{\"pmem-csi.intel.com/node\":\"n2\"}}}]}" },
};

static int canned_get(void *userdata, const char *path, struct jv **ret, char **ret_err)
{
	(void)userdata;
	for (size_t i = 0; i < sizeof(objects) / sizeof(objects[0]); i++)
		if (strcmp(objects[i].path, path) == 0) {
			FUZZ_CHECK(jv_parse(objects[i].json, strlen(objects[i].json), ret, NULL) == 0);
			return 0;
		}
	*ret_err = xasprintf("GET %s: HTTP 404", path);
	return -ENOENT;
}

struct ci {
	const char *key;
	const struct jv *found;
};

static int ci_match(const char *key, const struct jv *val, void *ud)
{
	struct ci *c = ud;

	if (!c->found && strcasecmp(key, c->key) == 0)
		c->found = val;
	return 0;
}

/* key of obj as Go (and extender.c) decode it: an exact match, else any case. */
static const struct jv *field(const struct jv *obj, const char *key)
{
	struct ci c = { key, jv_object_get(obj, key) };

	if (!c.found && jv_is_object(obj))
		jv_object_iter(obj, ci_match, &c);
	return c.found;
}

static const char *node_name(const struct jv *v)
{
	return jv_string(v) ? jv_string(v) : jv_string(jv_object_get(jv_object_get(v, "metadata"), "name"));
}

static void check_filter(const uint8_t *data, size_t size)
{
	const struct k8s_getter g = { canned_get, NULL };
	struct jv *in = NULL, *out = NULL;
	char *json = NULL;
	size_t len = 0;
	unsigned status = 0;

	FUZZ_CHECK(extender_filter(&g, "pmem-csi.intel.com", (const char *)data, size, &json, &len, &status) == 0);
	FUZZ_CHECK(json && strlen(json) == len);
	FUZZ_CHECK(status == 200 || status == 400);
	FUZZ_CHECK(jv_parse(json, len, &out, NULL) == 0 && jv_is_object(out));
	FUZZ_CHECK(status == 200 || jv_string(jv_object_get(out, "Error")));
	if (status == 200 && !jv_object_get(out, "Error") && jv_parse((const char *)data, size, &in, NULL) == 0) {
		const struct jv *names = field(in, "NodeNames"), *ok = jv_object_get(out, "NodeNames");
		const struct jv *failed = jv_object_get(out, "FailedNodes");

		if (!jv_is_array(names))
			names = jv_object_get(field(in, "Nodes"), "items");
		if (!ok)
			ok = jv_object_get(jv_object_get(out, "Nodes"), "items");
		FUZZ_CHECK(jv_is_array(ok) && (!failed || jv_is_object(failed)));
		FUZZ_CHECK(jv_array_size(ok) <= jv_array_size(names));
		/* every node asked about is answered, as fitting or failed */
		for (size_t i = 0; i < jv_array_size(names) && i < 200; i++) {
			const char *n = node_name(jv_array_get(names, i));
			bool found = n && jv_object_get(failed, n);

			for (size_t k = 0; n && !found && k < jv_array_size(ok); k++)
				found = strcmp(node_name(jv_array_get(ok, k)) ?: "", n) == 0;
			FUZZ_CHECK(found);
		}
	}
	jv_unrefp(&in);
	jv_unrefp(&out);
	free(json);
}

static void check_mutate(const uint8_t *data, size_t size)
{
	const struct k8s_getter g = { canned_get, NULL };
	struct jv *in = NULL, *out = NULL, *patch = NULL;
	char *json = NULL, *decoded = NULL;
	size_t len = 0, dlen = 0;
	unsigned status = 0;
	bool mutated = false;

	FUZZ_CHECK(webhook_mutate(&g, "pmem-csi.intel.com", (const char *)data, size, &json, &len, &status, &mutated) ==
		   0);
	FUZZ_CHECK(json && strlen(json) == len);
	FUZZ_CHECK(status == 200 || status == 400);
	if (status == 200) {
		const struct jv *resp, *p;

		FUZZ_CHECK(jv_parse(json, len, &out, NULL) == 0 && jv_is_object(out));
		FUZZ_CHECK(jv_parse((const char *)data, size, &in, NULL) == 0);
		resp = jv_object_get(out, "response");
		FUZZ_CHECK(strcmp(jv_string(jv_object_get(resp, "uid")),
				  jv_string(jv_object_get(jv_object_get(in, "request"), "uid"))) == 0);
		p = jv_object_get(resp, "patch");
		FUZZ_CHECK(!!p == mutated);
		if (p) {
			FUZZ_CHECK(base64_decode(jv_string(p), strlen(jv_string(p)), &decoded, &dlen) == 0);
			FUZZ_CHECK(jv_parse(decoded, dlen, &patch, NULL) == 0 && jv_is_array(patch));
		}
	}
	jv_unrefp(&in);
	jv_unrefp(&out);
	jv_unrefp(&patch);
	free(decoded);
	free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 1024 * 1024)
		return 0;
	check_filter(data, size);
	check_mutate(data, size);
	return 0;
}
