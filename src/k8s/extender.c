/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The scheduler extender's filter: which of the candidate nodes have room
 * for the PMEM volumes a pod still needs. See extender.h.
 */
#include "extender.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strbuf.h"
#include "basic/strutil.h"
#include "json/json.h"
#include "k8s.h"

static void set_err(char **ret_err, const char *fmt, ...) _printf_(2, 3);
static void set_err(char **ret_err, const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	if (!ret_err)
		return;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	free(*ret_err);
	*ret_err = s;
}

static const char *path_str(const struct jv *v, const char *a, const char *b, const char *c)
{
	const struct jv *x = jv_object_get(v, a);

	if (b)
		x = jv_object_get(x, b);
	if (c)
		x = jv_object_get(x, c);
	return jv_string(x);
}

static int getter_get(const struct k8s_getter *g, unsigned *lookups, const char *path, struct jv **ret,
		      char **ret_err)
{
	if (++*lookups > EXTENDER_LOOKUPS_MAX) {
		set_err(ret_err, "more than %d claims and storage classes to look up", EXTENDER_LOOKUPS_MAX);
		return -E2BIG;
	}
	return g->get(g->userdata, path, ret, ret_err);
}

/*
 * Whether a storage class is this driver's with late binding. 1.x: only
 * "Immediate" is excluded (a missing volumeBindingMode is the API server's
 * default Immediate only on old servers; it fills the field in).
 */
static int class_is_late_ours(const struct k8s_getter *g, const char *driver, const char *name, unsigned *lookups,
			      bool *ret, char **ret_err)
{
	_cleanup_(jv_unrefp) struct jv *sc = NULL;
	_cleanup_free_ char *esc = k8s_path_escape(name), *path = NULL;
	const char *mode;
	int r;

	if (!esc)
		return -ENOMEM;
	path = xasprintf("/apis/storage.k8s.io/v1/storageclasses/%s", esc);
	if (!path)
		return -ENOMEM;
	r = getter_get(g, lookups, path, &sc, ret_err);
	if (r == -ENOENT)
		set_err(ret_err, "storage class %s not found", name);
	if (r < 0)
		return r;
	mode = jv_string(jv_object_get(sc, "volumeBindingMode"));
	*ret = streq_ptr(jv_string(jv_object_get(sc, "provisioner")), driver) && !streq_ptr(mode, "Immediate");
	return 0;
}

int pod_volume_classify(const struct k8s_getter *g, const char *driver, const char *ns, const struct jv *vol,
			unsigned *lookups, enum pod_volume_kind *ret, struct jv **ret_claim, char **ret_err)
{
	const struct jv *pvc_src = jv_object_get(vol, "persistentVolumeClaim");
	const struct jv *eph = jv_object_get(vol, "ephemeral");
	const struct jv *csi = jv_object_get(vol, "csi");
	bool ours = false;
	int r;

	*ret = POD_VOLUME_OTHER;
	if (ret_claim)
		*ret_claim = NULL;
	if (jv_is_object(pvc_src)) {
		_cleanup_(jv_unrefp) struct jv *pvc = NULL;
		_cleanup_free_ char *ens = NULL, *ename = NULL, *path = NULL;
		const char *claim = jv_string(jv_object_get(pvc_src, "claimName")), *sc;

		if (!claim || !*claim) {
			set_err(ret_err, "volume %s: persistentVolumeClaim without claimName",
				jv_string(jv_object_get(vol, "name")) ?: "?");
			return -EINVAL;
		}
		ens = k8s_path_escape(ns);
		ename = k8s_path_escape(claim);
		path = ens && ename ? xasprintf("/api/v1/namespaces/%s/persistentvolumeclaims/%s", ens, ename) : NULL;
		if (!path)
			return -ENOMEM;
		r = getter_get(g, lookups, path, &pvc, ret_err);
		if (r == -ENOENT)
			set_err(ret_err, "claim %s/%s not found", ns, claim);
		if (r < 0)
			return r;
		sc = path_str(pvc, "spec", "storageClassName", NULL);
		/* No class: no dynamic provisioning by anyone (DefaultStorageClass fills it in otherwise). */
		if (!sc || !*sc)
			return 0;
		r = class_is_late_ours(g, driver, sc, lookups, &ours, ret_err);
		if (r < 0)
			return r;
		if (ours) {
			*ret = POD_VOLUME_CLAIM;
			if (ret_claim)
				*ret_claim = TAKE_PTR(pvc);
		}
		return 0;
	}
	if (jv_is_object(eph)) {
		const char *sc = path_str(eph, "volumeClaimTemplate", "spec", "storageClassName");

		if (!sc || !*sc)
			return 0;
		r = class_is_late_ours(g, driver, sc, lookups, &ours, ret_err);
		if (r < 0)
			return r;
		if (ours)
			*ret = POD_VOLUME_EPHEMERAL;
		return 0;
	}
	if (jv_is_object(csi) && streq_ptr(jv_string(jv_object_get(csi, "driver")), driver))
		*ret = POD_VOLUME_INLINE;
	return 0;
}

/* spec.resources.requests.storage of a claim (spec), EXTENDER_DEFAULT_CLAIM_SIZE when missing or zero. */
static int claim_size(const struct jv *spec, const char *what, uint64_t *ret, char **ret_err)
{
	const char *q = jv_string(jv_object_get(jv_object_get(jv_object_get(spec, "resources"), "requests"), "storage"));
	uint64_t size = 0;

	if (q && parse_quantity(q, &size) < 0) {
		set_err(ret_err, "%s: storage request \"%s\" is not a valid quantity", what, q);
		return -EINVAL;
	}
	*ret = size ? size : EXTENDER_DEFAULT_CLAIM_SIZE;
	return 0;
}

static bool claim_is_bound(const struct jv *pvc)
{
	const char *vn = path_str(pvc, "spec", "volumeName", NULL);

	return streq_ptr(path_str(pvc, "status", "phase", NULL), "Bound") || (vn && *vn);
}

static int add_demand(struct pmem_demand *d, uint64_t size, const char *what, char **ret_err)
{
	if (d->total + size < d->total) {
		set_err(ret_err, "%s: the sizes add up to more than 2^64 bytes", what);
		return -EINVAL;
	}
	d->total += size;
	d->largest = MAX(d->largest, size);
	d->volumes++;
	return 0;
}

int extender_pod_demand(const struct k8s_getter *g, const char *driver, const struct jv *pod, const char *ns,
			struct pmem_demand *ret, char **ret_err)
{
	const struct jv *meta = jv_object_get(pod, "metadata"), *vols;
	const char *pod_ns = jv_string(jv_object_get(meta, "namespace")), *pod_name;
	struct pmem_demand d = {};
	unsigned lookups = 0;
	int r;

	if (!jv_is_object(pod)) {
		set_err(ret_err, "no pod");
		return -EINVAL;
	}
	if (pod_ns && *pod_ns)
		ns = pod_ns;
	if (!ns || !*ns)
		ns = "default";
	pod_name = jv_string(jv_object_get(meta, "name"));
	vols = jv_object_get(jv_object_get(pod, "spec"), "volumes");
	for (size_t i = 0; i < jv_array_size(vols); i++) {
		const struct jv *vol = jv_array_get(vols, i);
		const char *vname = jv_string(jv_object_get(vol, "name"));
		_cleanup_(jv_unrefp) struct jv *claim = NULL;
		_cleanup_free_ char *what = NULL;
		enum pod_volume_kind kind;
		uint64_t size = 0;

		if (!jv_is_object(vol) || !vname) {
			set_err(ret_err, "pod.spec.volumes[%zu]: not an object with a name", i);
			return -EINVAL;
		}
		what = xasprintf("volume %s", vname);
		if (!what)
			return -ENOMEM;
		r = pod_volume_classify(g, driver, ns, vol, &lookups, &kind, &claim, ret_err);
		if (r < 0)
			return r;
		switch (kind) {
		case POD_VOLUME_OTHER:
			continue;
		case POD_VOLUME_CLAIM:
			if (claim_is_bound(claim))
				continue;
			r = claim_size(jv_object_get(claim, "spec"), what, &size, ret_err);
			break;
		case POD_VOLUME_EPHEMERAL: {
			/* The claim "<pod>-<volume>", once the ephemeral volume controller made it. */
			const struct jv *tspec = jv_object_get(
				jv_object_get(jv_object_get(vol, "ephemeral"), "volumeClaimTemplate"), "spec");
			_cleanup_free_ char *cn = NULL, *ens = NULL, *ecn = NULL, *path = NULL;

			if (!pod_name || !*pod_name) {
				set_err(ret_err, "%s: a generic ephemeral volume in a pod without a name", what);
				return -EINVAL;
			}
			cn = xasprintf("%s-%s", pod_name, vname);
			ens = k8s_path_escape(ns);
			ecn = cn ? k8s_path_escape(cn) : NULL;
			path = ens && ecn ? xasprintf("/api/v1/namespaces/%s/persistentvolumeclaims/%s", ens, ecn) : NULL;
			if (!path)
				return -ENOMEM;
			r = getter_get(g, &lookups, path, &claim, ret_err);
			if (r == -ENOENT) {
				r = claim_size(tspec, what, &size, ret_err);
				break;
			}
			if (r < 0)
				return r;
			if (claim_is_bound(claim))
				continue;
			r = claim_size(jv_object_get(claim, "spec"), what, &size, ret_err);
			break;
		}
		case POD_VOLUME_INLINE: {
			const struct jv *attrs = jv_object_get(jv_object_get(vol, "csi"), "volumeAttributes");
			const char *q = jv_string(jv_object_get(attrs, "size"));

			if (q && parse_quantity(q, &size) < 0) {
				set_err(ret_err, "ephemeral inline volume %s: size \"%s\" is not a valid quantity", vname, q);
				return -EINVAL;
			}
			break;
		}
		}
		if (r < 0)
			return r;
		r = add_demand(&d, size, what, ret_err);
		if (r < 0)
			return r;
	}
	*ret = d;
	return 0;
}

static int count_key(const char *key, const struct jv *val, void *ud)
{
	(void)key;
	(void)val;
	(*(size_t *)ud)++;
	return 0;
}

static void max_into(struct jv *entry, const char *field, const char *quantity)
{
	const struct jv *old = jv_object_get(entry, field);
	uint64_t v;

	if (!quantity || parse_quantity(quantity, &v) < 0)
		return;
	v = MIN(v, (uint64_t)INT64_MAX);
	if (!old || (uint64_t)jv_integer(old) < v)
		(void)jv_object_set_integer(entry, field, (int64_t)v);
}

int extender_capacity_index(const struct jv *list, const char *driver, struct jv **ret)
{
	const struct jv *items = jv_object_get(list, "items");
	_cleanup_free_ char *key = xasprintf("%s/node", driver);
	_cleanup_(jv_unrefp) struct jv *index = jv_new_object();

	if (!key || !index)
		return -ENOMEM;
	for (size_t i = 0; i < jv_array_size(items); i++) {
		const struct jv *o = jv_array_get(items, i), *topo = jv_object_get(o, "nodeTopology");
		const struct jv *ml = jv_object_get(topo, "matchLabels");
		const char *node = jv_string(jv_object_get(ml, key));
		struct jv *entry;
		size_t n = 0;

		/* exactly {"<driver>/node": node}, no expressions: what the node's provisioner publishes */
		if (!node || jv_array_size(jv_object_get(topo, "matchExpressions")) > 0)
			continue;
		jv_object_iter(ml, count_key, &n);
		if (n != 1)
			continue;
		entry = jv_object_get(index, node);
		if (!entry) {
			if (jv_object_set_new(index, node, jv_new_object()) < 0)
				return -ENOMEM;
			entry = jv_object_get(index, node);
			if (!entry || jv_object_set_integer(entry, "a", 0) < 0)
				return -ENOMEM;
		}
		max_into(entry, "a", jv_string(jv_object_get(o, "capacity")));
		max_into(entry, "m", jv_string(jv_object_get(o, "maximumVolumeSize")));
	}
	*ret = TAKE_PTR(index);
	return 0;
}

void extender_node_capacity(const struct jv *index, const char *node, struct node_capacity *ret)
{
	const struct jv *entry = jv_object_get(index, node), *m = jv_object_get(entry, "m");
	struct node_capacity c = {};

	if (entry) {
		c.known = true;
		c.available = (uint64_t)jv_integer(jv_object_get(entry, "a"));
		c.max_volume = m ? (uint64_t)jv_integer(m) : c.available;
	}
	*ret = c;
}

struct ci_lookup {
	const char *key;
	const struct jv *found;
};

static int ci_match(const char *key, const struct jv *val, void *ud)
{
	struct ci_lookup *l = ud;

	if (!l->found && strcasecmp(key, l->key) == 0)
		l->found = val;
	return 0;
}

/*
 * The extender API types have no JSON tags: kube-scheduler sends "Pod",
 * "Nodes" and "NodeNames", and Go's decoder matches field names without
 * regard to case (an exact match first), so 1.x took "pod" as well.
 */
static const struct jv *get_field(const struct jv *obj, const char *name)
{
	struct ci_lookup l = { .key = name, .found = jv_object_get(obj, name) };

	if (!l.found && jv_is_object(obj))
		jv_object_iter(obj, ci_match, &l);
	return l.found;
}

/* The ExtenderFilterResult for a request that cannot be served. */
static int error_result(const char *msg, char **ret_json, size_t *ret_len)
{
	struct strbuf b = STRBUF_INIT;
	_cleanup_free_ char *clean = strdup(msg);

	if (!clean)
		return -ENOMEM;
	/* jansson's parse errors quote the input, which may not be UTF-8: keep printable ASCII only. */
	for (char *p = clean; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	strbuf_append_str(&b, "{\"Error\":");
	strbuf_append_json_string(&b, clean);
	strbuf_append_str(&b, "}");
	*ret_len = strbuf_len(&b);
	*ret_json = strbuf_steal(&b);
	return *ret_json ? 0 : -ENOMEM;
}

static const char *quantity_text(char *buf, size_t len, uint64_t v)
{
	return format_bytes(buf, len, v);
}

int extender_filter(const struct k8s_getter *g, const char *driver, const char *body, size_t len, char **ret_json,
		    size_t *ret_len, unsigned *ret_status)
{
	_cleanup_(jv_unrefp) struct jv *args = NULL, *caps = NULL, *index = NULL, *seen = NULL;
	_cleanup_free_ char *err = NULL;
	const struct jv *pod, *names, *nodes = NULL;
	struct pmem_demand d = {};
	struct strbuf ok = STRBUF_INIT, failed = STRBUF_INIT, out = STRBUF_INIT;
	bool by_name, first_ok = true, first_failed = true;
	size_t n, fit = 0;
	int r;

	*ret_status = 400;
	r = jv_parse(body, len, &args, &err);
	if (r < 0 || !jv_is_object(args)) {
		_cleanup_free_ char *msg = xasprintf("request body is not JSON ExtenderArgs: %s",
						      err ? err : "not an object");
		return msg ? error_result(msg, ret_json, ret_len) : -ENOMEM;
	}
	pod = get_field(args, "Pod");
	names = get_field(args, "NodeNames");
	by_name = jv_is_array(names);
	if (!by_name)
		nodes = jv_object_get(get_field(args, "Nodes"), "items");
	if (!jv_is_object(pod) || !path_str(pod, "metadata", "name", NULL))
		return error_result("ExtenderArgs.Pod: missing, or without metadata.name", ret_json, ret_len);
	if (!by_name && !jv_is_array(nodes))
		return error_result("ExtenderArgs: neither a NodeNames list nor a Nodes.items list", ret_json, ret_len);
	n = by_name ? jv_array_size(names) : jv_array_size(nodes);
	if (n > EXTENDER_NODES_MAX) {
		_cleanup_free_ char *msg = xasprintf("ExtenderArgs: %zu nodes, at most %d", n, EXTENDER_NODES_MAX);
		return msg ? error_result(msg, ret_json, ret_len) : -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		const char *name = by_name ? jv_string(jv_array_get(names, i))
					   : path_str(jv_array_get(nodes, i), "metadata", "name", NULL);
		if (!name || !*name) {
			_cleanup_free_ char *msg = xasprintf("ExtenderArgs.%s[%zu]: not a node name", by_name ? "NodeNames" : "Nodes.items", i);
			return msg ? error_result(msg, ret_json, ret_len) : -ENOMEM;
		}
	}

	*ret_status = 200;
	r = extender_pod_demand(g, driver, pod, NULL, &d, &err);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		_cleanup_free_ char *msg = xasprintf("checking for unbound volumes: %s", err ? err : strerror(-r));
		log_v(3, "Extender: pod %s/%s: %s", path_str(pod, "metadata", "namespace", NULL) ?: "",
		      path_str(pod, "metadata", "name", NULL), msg ? msg : "out of memory");
		return msg ? error_result(msg, ret_json, ret_len) : -ENOMEM;
	}
	if (d.volumes > 0 && d.total > 0) {
		free(err);
		err = NULL;
		r = g->get(g->userdata, "/apis/storage.k8s.io/v1/csistoragecapacities", &caps, &err);
		if (r == -ENOMEM)
			return r;
		if (r < 0) {
			_cleanup_free_ char *msg = xasprintf("listing CSIStorageCapacity objects: %s", err ? err : strerror(-r));
			return msg ? error_result(msg, ret_json, ret_len) : -ENOMEM;
		}
		r = extender_capacity_index(caps, driver, &index);
		if (r < 0)
			return r;
	}

	/* A node named twice is answered once in FailedNodes (JSON objects have unique keys). */
	seen = jv_new_object();
	if (!seen)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct jv *nodeobj = by_name ? NULL : jv_array_get(nodes, i);
		const char *name = by_name ? jv_string(jv_array_get(names, i)) : path_str(nodeobj, "metadata", "name", NULL);
		struct node_capacity c = {};
		char need[32], have[32], why[160] = "";

		if (d.volumes > 0 && d.total > 0) {
			extender_node_capacity(index, name, &c);
			if (!c.known)
				snprintf(why, sizeof(why), "no PMEM capacity known (no CSIStorageCapacity of %s for this node)", driver);
			else if (c.available < d.total)
				snprintf(why, sizeof(why), "only %s of PMEM available, need %s", quantity_text(have, sizeof(have), c.available),
					 quantity_text(need, sizeof(need), d.total));
			else if (c.max_volume < d.largest)
				snprintf(why, sizeof(why), "largest PMEM volume possible is %s, need %s",
					 quantity_text(have, sizeof(have), c.max_volume), quantity_text(need, sizeof(need), d.largest));
		}
		if (why[0] && jv_object_get(seen, name))
			continue;
		if (why[0]) {
			if (jv_object_set_integer(seen, name, 1) < 0) {
				strbuf_free(&ok);
				strbuf_free(&failed);
				return -ENOMEM;
			}
			strbuf_append_str(&failed, first_failed ? "" : ",");
			strbuf_append_json_string(&failed, name);
			strbuf_append_char(&failed, ':');
			strbuf_append_json_string(&failed, why);
			first_failed = false;
		} else {
			fit++;
			strbuf_append_str(&ok, first_ok ? "" : ",");
			if (by_name) {
				strbuf_append_json_string(&ok, name);
			} else {
				_cleanup_free_ char *dump = jv_dump(nodeobj);
				if (!dump) {
					strbuf_free(&ok);
					strbuf_free(&failed);
					return -ENOMEM;
				}
				strbuf_append_str(&ok, dump);
			}
			first_ok = false;
		}
	}
	strbuf_append_str(&out, by_name ? "{\"NodeNames\":[" : "{\"Nodes\":{\"items\":[");
	strbuf_append(&out, strbuf_str(&ok), strbuf_len(&ok));
	strbuf_append_str(&out, by_name ? "]" : "]}");
	if (strbuf_len(&failed)) {
		strbuf_append_str(&out, ",\"FailedNodes\":{");
		strbuf_append(&out, strbuf_str(&failed), strbuf_len(&failed));
		strbuf_append_str(&out, "}");
	}
	strbuf_append_str(&out, "}");
	r = strbuf_failed(&ok) || strbuf_failed(&failed) ? -ENOMEM : 0;
	strbuf_free(&ok);
	strbuf_free(&failed);
	if (r < 0) {
		strbuf_free(&out);
		return r;
	}
	log_v(3, "Extender: pod %s/%s needs %" PRIu64 " bytes in %u new volume(s): %zu of %zu node(s) fit",
	      path_str(pod, "metadata", "namespace", NULL) ?: "", path_str(pod, "metadata", "name", NULL), d.total,
	      d.volumes, fit, n);
	log_v(5, "Extender: pod %s/%s needs %" PRIu64 " bytes in %u volume(s): %s",
	      path_str(pod, "metadata", "namespace", NULL) ?: "", path_str(pod, "metadata", "name", NULL), d.total,
	      d.volumes, strbuf_str(&out));
	*ret_len = strbuf_len(&out);
	*ret_json = strbuf_steal(&out);
	return *ret_json ? 0 : -ENOMEM;
}
