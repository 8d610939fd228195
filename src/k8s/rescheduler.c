/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strbuf.h"
#include "basic/strutil.h"
#include "json/json.h"
#include "k8s.h"
#include "rescheduler.h"

#define LIST_LIMIT 500

static const char *annotation(const struct jv *obj, const char *key)
{
	return jv_string(jv_object_get(jv_object_get(jv_object_get(obj, "metadata"), "annotations"), key));
}

const char *k8s_pvc_selected_node(const struct jv *pvc, const char *driver)
{
	const char *prov = annotation(pvc, "volume.kubernetes.io/storage-provisioner");
	const char *node = annotation(pvc, K8S_ANN_SELECTED_NODE);

	if (!prov)
		prov = annotation(pvc, "volume.beta.kubernetes.io/storage-provisioner");
	if (!streq_ptr(prov, driver) || !node || !*node)
		return NULL;
	if (!streq_ptr(jv_string(jv_object_get(jv_object_get(pvc, "status"), "phase")), "Pending"))
		return NULL;
	return node;
}

static bool has_driver(const struct jv *csinode, const char *driver)
{
	struct jv *drivers = jv_object_get(jv_object_get(csinode, "spec"), "drivers");

	for (size_t i = 0; i < jv_array_size(drivers); i++)
		if (streq_ptr(jv_string(jv_object_get(jv_array_get(drivers, i), "name")), driver))
			return true;
	return false;
}

static bool labels_match(const struct jv *node, const struct k8s_selector *sel)
{
	struct jv *labels = jv_object_get(jv_object_get(node, "metadata"), "labels");

	for (size_t i = 0; i < sel->n; i++)
		if (!streq_ptr(jv_string(jv_object_get(labels, sel->keys[i])), sel->values[i]))
			return false;
	return true;
}

enum k8s_reschedule k8s_reschedule_decide(const char *driver, const struct k8s_selector *sel,
					  const struct jv *csinode, const struct jv *node)
{
	if (csinode && has_driver(csinode, driver))
		return K8S_KEEP_RUNNING;
	if (!node)
		return K8S_RESCHEDULE_NO_NODE;
	if (!labels_match(node, sel))
		return K8S_RESCHEDULE_NO_LABELS;
	return K8S_KEEP_EXPECTED;
}

/* GET that maps 404 to "no object". */
static int get_optional(struct k8s_client *c, const char *path, struct jv **ret, char **ret_err)
{
	int r = k8s_get(c, path, ret, ret_err);

	if (r == -ENOENT) {
		*ret = NULL;
		free(*ret_err);
		*ret_err = NULL;
		return 0;
	}
	return r;
}

static int unselect(struct k8s_client *c, const struct jv *pvc, const char *node, char **ret_err)
{
	const char *ns = jv_string(jv_object_get(jv_object_get(pvc, "metadata"), "namespace"));
	const char *name = jv_string(jv_object_get(jv_object_get(pvc, "metadata"), "name"));
	_cleanup_free_ char *ens = ns ? k8s_path_escape(ns) : NULL, *ename = name ? k8s_path_escape(name) : NULL;
	_cleanup_free_ char *path = NULL, *patch = NULL;
	struct strbuf b = STRBUF_INIT;
	/* "/" in a JSON pointer is "~1". */
	const char *ptr = "/metadata/annotations/volume.kubernetes.io~1selected-node";

	if (!ens || !ename)
		return -EINVAL;
	path = xasprintf("/api/v1/namespaces/%s/persistentvolumeclaims/%s", ens, ename);
	strbuf_appendf(&b, "[{\"op\":\"test\",\"path\":\"%s\",\"value\":", ptr);
	strbuf_append_json_string(&b, node);
	strbuf_appendf(&b, "},{\"op\":\"remove\",\"path\":\"%s\"}]", ptr);
	patch = strbuf_steal(&b);
	if (!path || !patch)
		return -ENOMEM;
	return k8s_request(c, "PATCH", path, "application/json-patch+json", patch, NULL, ret_err);
}

static int handle_pvc(struct k8s_client *c, const char *driver, const struct k8s_selector *sel,
		      const struct jv *pvc, struct k8s_rescheduler_stats *st)
{
	const char *node = k8s_pvc_selected_node(pvc, driver);
	const char *ns = jv_string(jv_object_get(jv_object_get(pvc, "metadata"), "namespace"));
	const char *name = jv_string(jv_object_get(jv_object_get(pvc, "metadata"), "name"));
	_cleanup_(jv_unrefp) struct jv *csinode = NULL, *nodeobj = NULL;
	_cleanup_free_ char *en = NULL, *p1 = NULL, *p2 = NULL, *err = NULL;
	enum k8s_reschedule d;
	int r;

	if (!node)
		return 0;
	st->pending++;
	en = k8s_path_escape(node);
	if (!en)
		return -ENOMEM;
	p1 = xasprintf("/apis/storage.k8s.io/v1/csinodes/%s", en);
	p2 = xasprintf("/api/v1/nodes/%s", en);
	if (!p1 || !p2)
		return -ENOMEM;
	r = get_optional(c, p1, &csinode, &err);
	if (r >= 0)
		r = get_optional(c, p2, &nodeobj, &err);
	if (r < 0) {
		st->errors++;
		log_error("PVC %s/%s: cannot check node %s: %s", ns, name, node, err ? err : "");
		return 0;
	}
	d = k8s_reschedule_decide(driver, sel, csinode, nodeobj);
	if (d != K8S_RESCHEDULE_NO_NODE && d != K8S_RESCHEDULE_NO_LABELS) {
		log_v(5, "PVC %s/%s: keeping selected node %s (%s)", ns, name, node,
		      d == K8S_KEEP_RUNNING ? "driver registered there" : "labels match, driver not registered yet");
		return 0;
	}
	r = unselect(c, pvc, node, &err);
	if (r == -EINVAL || r == -ENOENT) {
		/* The test op failed (another node was chosen meanwhile) or the PVC is gone. */
		log_v(3, "PVC %s/%s changed meanwhile, left alone: %s", ns, name, err ? err : "");
		return 0;
	}
	if (r < 0) {
		st->errors++;
		log_error("PVC %s/%s: cannot remove the selected node %s: %s", ns, name, node, err ? err : "");
		return 0;
	}
	st->rescheduled++;
	log_info("PVC %s/%s: removed selected node %s (%s), the scheduler picks again", ns, name, node,
		 d == K8S_RESCHEDULE_NO_NODE ? "the node does not exist"
					     : "the node's labels do not match -nodeSelector and the driver is not registered there");
	return 0;
}

int k8s_rescheduler_pass(struct k8s_client *c, const char *driver, const struct k8s_selector *sel,
			 struct k8s_rescheduler_stats *ret, char **ret_err)
{
	struct k8s_rescheduler_stats st = {};
	_cleanup_free_ char *cont = NULL;
	int r;

	for (unsigned page = 0; page < 100000; page++) {
		_cleanup_(jv_unrefp) struct jv *list = NULL;
		_cleanup_free_ char *path = NULL, *econt = NULL;
		struct jv *items;
		const char *next;

		if (cont) {
			econt = k8s_path_escape(cont);
			if (!econt)
				return -ENOMEM;
		}
		path = econt ? xasprintf("/api/v1/persistentvolumeclaims?limit=%d&continue=%s", LIST_LIMIT, econt)
			     : xasprintf("/api/v1/persistentvolumeclaims?limit=%d", LIST_LIMIT);
		if (!path)
			return -ENOMEM;
		r = k8s_get(c, path, &list, ret_err);
		if (r < 0)
			return r;
		items = jv_object_get(list, "items");
		for (size_t i = 0; i < jv_array_size(items); i++) {
			r = handle_pvc(c, driver, sel, jv_array_get(items, i), &st);
			if (r < 0)
				return r;
		}
		next = jv_string(jv_object_get(jv_object_get(list, "metadata"), "continue"));
		free(cont);
		cont = next && *next ? strdup(next) : NULL;
		if (!cont)
			break;
	}
	*ret = st;
	return 0;
}
