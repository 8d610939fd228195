/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One reconcile of one PmemCSIDeployment, in three steps:
 *
 *  1. check: render the objects, read the live ones, and refuse (phase Failed, a
 *     Warning event, nothing applied) what cannot be deployed: an invalid name or
 *     image reference, an object of the same name that is not owned by this CR, a
 *     node selector that overlaps the nodes of an older CR, a device mode change
 *     while PersistentVolumes of the driver or pods with its inline volumes exist;
 *  2. apply every object by server-side apply with force: the fields we set become
 *     ours (also those that 1.x's operator set with its own field manager), fields
 *     that others set and we do not stay theirs;
 *  3. status and events: phase, reason, conditions, components; an event only when
 *     the phase or reason changes, so resyncs that change nothing record nothing.
 *
 * Workload selectors are immutable. Where a live workload's selector differs from
 * ours but selects our pod template (1.x's operator used fewer selector labels), the
 * live selector is kept: the object is taken over in place, its pods roll. Only when
 * it cannot select our pods (a device mode change: the mode is a selector label) is
 * the workload deleted and created again, which step 1 allows only without volumes.
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
#include "events.h"
#include "json/json.h"
#include "k8s/k8s.h"
#include "leader.h"
#include "manifest.h"
#include "metrics.h"
#include "reconcile.h"

#define RUNNING_REASON "Driver deployed successfully"

static void now_rfc3339(char buf[32])
{
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

bool operator_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > 63)
		return false;
	/* DNS labels separated by dots: [a-z0-9]([-a-z0-9]*[a-z0-9])? */
	for (size_t i = 0; i < n; i++) {
		bool start = i == 0 || name[i - 1] == '.', end = i + 1 == n || name[i + 1] == '.';
		char c = name[i];

		if (c == '.' && !start && !end)
			continue;
		if (c == '-' && !start && !end)
			continue;
		if (!is_lower_alnum(c))
			return false;
	}
	return true;
}

/* [a-z0-9]+ separated by '.', '_', '__' or '-'+ */
static bool path_component_valid(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t sep = 0;
		if (!is_lower_alnum(s[i]))
			return false;
		while (i < n && is_lower_alnum(s[i]))
			i++;
		if (i == n)
			return true;
		if (s[i] == '.' || s[i] == '_') {
			sep = (s[i] == '_' && i + 1 < n && s[i + 1] == '_') ? 2 : 1;
		} else if (s[i] == '-') {
			while (i + sep < n && s[i + sep] == '-')
				sep++;
		} else
			return false;
		i += sep;
		if (i == n)
			return false;
	}
	return n > 0;
}

/* host[:port], host = [a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])? separated by dots */
static bool domain_valid(const char *s, size_t n)
{
	const char *colon = memchr(s, ':', n);
	size_t hn = colon ? (size_t)(colon - s) : n;

	if (colon) {
		size_t pn = n - hn - 1;
		if (pn == 0 || pn > 5)
			return false;
		for (size_t i = hn + 1; i < n; i++)
			if (s[i] < '0' || s[i] > '9')
				return false;
	}
	if (hn == 0)
		return false;
	for (size_t i = 0; i < hn; i++) {
		bool start = i == 0 || s[i - 1] == '.', end = i + 1 == hn || s[i + 1] == '.';
		if ((s[i] == '.' || s[i] == '-') && !start && !end)
			continue;
		if (!is_alnum(s[i]))
			return false;
	}
	return true;
}

bool operator_image_valid(const char *ref)
{
	size_t len = ref ? strlen(ref) : 0;
	const char *end, *at, *slash, *colon, *p;

	if (len == 0 || len > 1024)
		return false;
	at = strchr(ref, '@');
	end = at ? at : ref + len;
	if (at) {
		/* algorithm ':' hex, at least 32 hex digits */
		const char *d = at + 1, *dc = strchr(d, ':');
		size_t hex = 0;
		if (!dc || dc == d || !((*d >= 'a' && *d <= 'z') || (*d >= 'A' && *d <= 'Z')))
			return false;
		for (p = d; p < dc; p++)
			if (!is_alnum(*p) && *p != '+' && *p != '.' && *p != '_' && *p != '-')
				return false;
		for (p = dc + 1; *p; p++, hex++)
			if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
				return false;
		if (hex < 32)
			return false;
	}
	slash = NULL;
	for (p = ref; p < end; p++)
		if (*p == '/')
			slash = p;
	colon = NULL;
	for (p = slash ? slash : ref; p < end; p++)
		if (*p == ':')
			colon = p;
	if (colon) {
		/* tag: [\w][\w.-]{0,127} */
		size_t tn = (size_t)(end - colon - 1);
		if (tn == 0 || tn > 128 || colon[1] == '.' || colon[1] == '-')
			return false;
		for (p = colon + 1; p < end; p++)
			if (!is_alnum(*p) && *p != '_' && *p != '.' && *p != '-')
				return false;
		end = colon;
	}
	if (end == ref || end - ref > 255)
		return false;
	/* The first of several components is a domain when it looks like one. */
	p = ref;
	{
		const char *first_end = memchr(ref, '/', (size_t)(end - ref));
		if (first_end) {
			size_t fn = (size_t)(first_end - ref);
			bool domain = memchr(ref, '.', fn) || memchr(ref, ':', fn) ||
				      (fn == 9 && strncmp(ref, "localhost", 9) == 0);
			for (size_t i = 0; i < fn && !domain; i++)
				domain = ref[i] >= 'A' && ref[i] <= 'Z';
			if (domain) {
				if (!domain_valid(ref, fn))
					return false;
				p = first_end + 1;
			}
		}
	}
	while (p < end) {
		const char *e = memchr(p, '/', (size_t)(end - p));
		size_t n = e ? (size_t)(e - p) : (size_t)(end - p);
		if (!path_component_valid(p, n))
			return false;
		if (!e)
			return true;
		p = e + 1;
	}
	return false; /* empty name or a trailing '/' */
}

struct match_ctx {
	const struct jv *labels;
	bool ok;
};

static int match_one(const char *key, const struct jv *val, void *ud)
{
	struct match_ctx *m = ud;

	if (!jv_string(val) || !streq_ptr(jv_string(jv_object_get(m->labels, key)), jv_string(val)))
		m->ok = false;
	return 0;
}

bool operator_selector_matches(const struct jv *selector, const struct jv *labels)
{
	struct match_ctx m = { .labels = labels, .ok = true };

	if (!jv_is_object(selector))
		return false;
	(void)jv_object_iter(selector, match_one, &m);
	return m.ok;
}

static bool selectors_equal(const struct jv *a, const struct jv *b)
{
	return operator_selector_matches(a, b) && operator_selector_matches(b, a);
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

/*
 * certs: the conditions CertsVerified and CertsReady (NULL: none). components_only: a
 * status refresh; phase, reason and conditions stay as they are (a merge patch).
 */
static int write_status(struct operator *op, const char *name, const char *prefix, int failed, const char *reason,
			const struct operator_certs_status *certs, bool components_only)
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
	if (components_only)
		strbuf_appendf(&b, "{\"status\":{\"lastUpdated\":\"%s\"", ts);
	else {
		strbuf_appendf(&b, "{\"status\":{\"phase\":\"%s\",\"lastUpdated\":\"%s\",\"reason\":",
			       failed ? "Failed" : "Running", ts);
		strbuf_append_json_string(&b, reason);
		strbuf_append_str(&b, ",\"conditions\":[");
		operator_certs_conditions(certs, ts, &b); /* CertsVerified, CertsReady */
		strbuf_appendf(&b, "{\"type\":\"DriverDeployed\",\"status\":\"%s\",\"lastUpdateTime\":\"%s\","
				   "\"reason\":", failed ? "False" : "True", ts);
		strbuf_append_json_string(&b, reason);
		strbuf_append_str(&b, "}]");
	}
	strbuf_append_str(&b, ",\"driverComponents\":[");
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

static const char *meta_string(const struct jv *obj, const char *key)
{
	return jv_string(jv_object_get(jv_object_get(obj, "metadata"), key));
}

/*
 * Owned by this CR, or by an earlier PmemCSIDeployment of the same name (deleted and
 * created again before the garbage collector got to the objects): the apply replaces
 * the stale owner reference, and the collector then keeps the object.
 */
static bool owned_by(const struct jv *obj, const char *name, const char *uid)
{
	const struct jv *refs = jv_object_get(jv_object_get(obj, "metadata"), "ownerReferences");

	for (size_t i = 0; i < jv_array_size(refs); i++) {
		const struct jv *ref = jv_array_get(refs, i);
		if (uid && streq_ptr(jv_string(jv_object_get(ref, "uid")), uid))
			return true;
		if (streq_ptr(jv_string(jv_object_get(ref, "kind")), "PmemCSIDeployment") &&
		    streq_ptr(jv_string(jv_object_get(ref, "name")), name))
			return true;
	}
	return false;
}

static const struct jv *cr_node_selector(const struct jv *cr, struct jv **def)
{
	const struct jv *sel = jv_object_get(jv_object_get(cr, "spec"), "nodeSelector");

	if (jv_is_object(sel))
		return sel;
	/* The documented default; the CRD schema normally fills it in. */
	*def = jv_new_object();
	if (*def)
		(void)jv_object_set_string(*def, "storage", "pmem");
	return *def;
}

static int append_requirement(const char *key, const struct jv *val, void *ud)
{
	struct strbuf *b = ud;

	if (strbuf_len(b) > 0)
		strbuf_append_char(b, ',');
	strbuf_appendf(b, "%s=%s", key, jv_string(val) ?: "");
	return 0;
}

/* The nodes that selector selects, asked of the API server (not all nodes of a big cluster). */
static int list_selected_nodes(struct operator *op, const struct jv *selector, struct jv **ret, char **ret_err)
{
	struct strbuf b = STRBUF_INIT;
	_cleanup_free_ char *sel = NULL, *esc = NULL, *path = NULL;

	(void)jv_object_iter(selector, append_requirement, &b);
	if (strbuf_failed(&b)) {
		strbuf_free(&b);
		return -ENOMEM;
	}
	sel = strbuf_steal(&b);
	esc = k8s_path_escape(sel ? sel : "");
	path = esc ? xasprintf("/api/v1/nodes?labelSelector=%s", esc) : NULL;
	if (!path)
		return -ENOMEM;
	return k8s_get(op->client, path, ret, ret_err);
}

static const char *cr_mode(const struct jv *cr)
{
	const char *m = jv_string(jv_object_get(jv_object_get(cr, "spec"), "deviceMode"));
	return m && *m ? m : "lvm";
}

static int64_t cr_percentage(const struct jv *cr)
{
	const struct jv *v = jv_object_get(jv_object_get(cr, "spec"), "pmemPercentage");
	return jv_is_integer(v) ? jv_integer(v) : 100;
}

/*
 * 1.x's rule for two installations on one node: an LVM one whose pmemPercentage
 * leaves part of the PMEM to a direct one. Their objects do not collide (names,
 * sockets, state directories and the topology key all carry the driver name, the
 * pods do not use the host network); the LVM driver keeps to its namespace
 * ("pmem-csi", pmemPercentage of each region) and the direct one to namespaces it
 * created. Two LVM ones would fight over the same volume groups, and two direct ones
 * over the same free space: those are refused.
 */
static bool may_share_nodes(const struct jv *a, const struct jv *b)
{
	const struct jv *lvm = streq_ptr(cr_mode(a), "lvm") ? a : b, *direct = lvm == a ? b : a;

	return streq_ptr(cr_mode(lvm), "lvm") && streq_ptr(cr_mode(direct), "direct") && cr_percentage(lvm) < 100;
}

/*
 * One driver installation per node: the node selector may not select a node that an
 * older PmemCSIDeployment (created earlier; same second: smaller name) selects, nor
 * be equal to its selector (which also holds before any node carries the labels),
 * unless the two may share nodes (may_share_nodes()). Only the younger CR fails; the
 * older one never looks at younger ones, so it keeps running.
 */
static int check_overlap(struct operator *op, const struct jv *cr, char **ret_reason)
{
	_cleanup_(jv_unrefp) struct jv *crs = NULL, *nodes = NULL, *mydef = NULL;
	_cleanup_free_ char *err = NULL;
	const char *name = meta_string(cr, "name"), *ts = meta_string(cr, "creationTimestamp") ?: "";
	const struct jv *mine = cr_node_selector(cr, &mydef), *items, *nitems;
	int r;

	if (!mine)
		return -ENOMEM;
	r = k8s_get(op->client, OPERATOR_CRD_PATH, &crs, &err);
	if (r < 0) {
		*ret_reason = xasprintf("cannot list PmemCSIDeployments: %s", err ? err : strerror(-r));
		return r;
	}
	items = jv_object_get(crs, "items");
	for (size_t i = 0; i < jv_array_size(items); i++) {
		const struct jv *o = jv_array_get(items, i);
		_cleanup_(jv_unrefp) struct jv *odef = NULL;
		const char *oname = meta_string(o, "name"), *ots = meta_string(o, "creationTimestamp") ?: "";
		const struct jv *theirs;
		int c = strcmp(ots, ts);

		if (!oname || streq_ptr(oname, name) || meta_string(o, "deletionTimestamp"))
			continue;
		if (c > 0 || (c == 0 && strcmp(oname, name ? name : "") > 0))
			continue; /* younger: it is the one that fails */
		if (may_share_nodes(cr, o)) {
			log_v(2, "PmemCSIDeployment '%s' may share nodes with '%s': LVM with pmemPercentage < 100 "
				 "and direct", name, oname);
			continue;
		}
		theirs = cr_node_selector(o, &odef);
		if (!theirs)
			return -ENOMEM;
		/*
		 * Decided without nodes (none may carry the labels yet): equal selectors, or
		 * one whose key=values contain the other's, select nodes of the other as soon
		 * as any node is labelled for the narrower one.
		 */
		if (operator_selector_matches(mine, theirs) || operator_selector_matches(theirs, mine)) {
			*ret_reason = xasprintf("spec.nodeSelector: %s PmemCSIDeployment '%s'; one PMEM-CSI driver per "
						"node (or LVM with pmemPercentage < 100 beside direct)",
						selectors_equal(mine, theirs) ? "selects the same nodes as"
						: operator_selector_matches(theirs, mine) ? "every node it selects is also selected by"
						: "selects every node selected by",
						oname);
			return -EEXIST;
		}
		if (!nodes) {
			free(err);
			err = NULL;
			r = list_selected_nodes(op, mine, &nodes, &err);
			if (r < 0) {
				*ret_reason = xasprintf("cannot list nodes: %s", err ? err : strerror(-r));
				return r;
			}
		}
		nitems = jv_object_get(nodes, "items");
		for (size_t k = 0; k < jv_array_size(nitems); k++) {
			const struct jv *labels = jv_object_get(jv_object_get(jv_array_get(nitems, k), "metadata"), "labels");
			/* The API server applied our selector; theirs is checked here. */
			if (operator_selector_matches(mine, labels) && operator_selector_matches(theirs, labels)) {
				*ret_reason = xasprintf("spec.nodeSelector: node '%s' is also selected by "
							"PmemCSIDeployment '%s'; one PMEM-CSI driver per node "
							"(or LVM with pmemPercentage < 100 beside direct)",
							meta_string(jv_array_get(nitems, k), "name") ?: "",
							oname);
				return -EEXIST;
			}
		}
	}
	return 0;
}

/* The -deviceManager= of the driver container of a live node DaemonSet (ours and 1.x's), or NULL. */
static const char *live_mode(const struct jv *ds)
{
	const struct jv *cs = jv_object_get(
		jv_object_get(jv_object_get(jv_object_get(ds, "spec"), "template"), "spec"), "containers");

	for (size_t i = 0; i < jv_array_size(cs); i++) {
		const struct jv *args = jv_object_get(jv_array_get(cs, i), "args");
		for (size_t k = 0; k < jv_array_size(args); k++) {
			const char *a = jv_string(jv_array_get(args, k));
			if (a && startswith(a, "-deviceManager="))
				return a + 15;
		}
	}
	return NULL;
}

/* The PersistentVolumes of driver name: how many, and the name of the first. */
static int count_pvs(struct operator *op, const char *name, size_t *ret_n, char **ret_example, char **ret_err)
{
	_cleanup_(jv_unrefp) struct jv *pvs = NULL;
	const struct jv *items;
	int r;

	r = k8s_get(op->client, "/api/v1/persistentvolumes", &pvs, ret_err);
	if (r < 0)
		return r;
	items = jv_object_get(pvs, "items");
	for (size_t i = 0; i < jv_array_size(items); i++) {
		const struct jv *pv = jv_array_get(items, i);
		if (!streq_ptr(jv_string(jv_object_get(jv_object_get(jv_object_get(pv, "spec"), "csi"), "driver")), name))
			continue;
		if (!*ret_example)
			*ret_example = xasprintf("PersistentVolume %s", meta_string(pv, "name") ?: "");
		(*ret_n)++;
	}
	return 0;
}

/*
 * Pods that are not terminated (phase neither Succeeded nor Failed: pending, running,
 * or being deleted, whose volumes are still there) with a CSI inline ephemeral volume
 * of driver name. Generic ephemeral volumes are PVCs and count as PersistentVolumes.
 */
static int count_inline(struct operator *op, const char *name, size_t *ret_n, char **ret_example, char **ret_err)
{
	_cleanup_(jv_unrefp) struct jv *pods = NULL;
	const struct jv *items;
	int r;

	r = k8s_get(op->client, "/api/v1/pods?fieldSelector=status.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed",
		    &pods, ret_err);
	if (r < 0)
		return r;
	items = jv_object_get(pods, "items");
	for (size_t i = 0; i < jv_array_size(items); i++) {
		const struct jv *pod = jv_array_get(items, i);
		const struct jv *vols = jv_object_get(jv_object_get(pod, "spec"), "volumes");
		const char *phase = jv_string(jv_object_get(jv_object_get(pod, "status"), "phase"));

		/* The field selector already left these out; a server that ignored it must not count them. */
		if (streq_ptr(phase, "Succeeded") || streq_ptr(phase, "Failed"))
			continue;
		for (size_t k = 0; k < jv_array_size(vols); k++) {
			const struct jv *csi = jv_object_get(jv_array_get(vols, k), "csi");
			if (!streq_ptr(jv_string(jv_object_get(csi, "driver")), name))
				continue;
			if (!*ret_example)
				*ret_example = xasprintf("pod %s/%s", meta_string(pod, "namespace") ?: "",
							 meta_string(pod, "name") ?: "");
			(*ret_n)++;
			break;
		}
	}
	return 0;
}

/*
 * A device mode change leaves the volumes of the old mode behind on the nodes (LVs or
 * namespaces the new mode does not know), unreachable for their users. The operator
 * cannot see the nodes' PMEM, but it can see what holds it: PersistentVolumes that
 * name the driver, and pods that are not terminated with an inline ephemeral volume of
 * the driver. With any of them, the change is refused.
 */
static int check_mode_change(struct operator *op, const char *name, const char *from, const char *to,
			     char **ret_reason)
{
	_cleanup_free_ char *err = NULL, *pv_example = NULL, *pod_example = NULL;
	size_t npv = 0, npod = 0;
	int r;

	r = count_pvs(op, name, &npv, &pv_example, &err);
	if (r >= 0)
		r = count_inline(op, name, &npod, &pod_example, &err);
	if (r < 0) {
		*ret_reason = xasprintf("spec.deviceMode: cannot check for volumes before changing the mode from %s "
					"to %s: %s", from, to, err ? err : strerror(-r));
		return r;
	}
	if (npv == 0 && npod == 0)
		return 0;
	*ret_reason = xasprintf("spec.deviceMode: cannot change from %s to %s while %zu PersistentVolume(s) and %zu "
				"pod(s) with inline ephemeral volumes of driver %s exist (%s%s): their data is on the "
				"nodes in %s mode; delete them or set deviceMode back to %s",
				from, to, npv, npod, name, pv_example ? pv_example : pod_example ? pod_example : "",
				npv + npod > 1 ? ", ..." : "", from, from);
	return -EBUSY;
}

static int check_images(const struct jv *spec, char **ret_reason)
{
	static const char *const fields[] = { "image", "provisionerImage", "nodeRegistrarImage" };

	for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
		const char *s = jv_string(jv_object_get(spec, fields[i]));
		if (s && *s && !operator_image_valid(s)) {
			*ret_reason = xasprintf("spec.%s: '%s' is not a valid image reference", fields[i], s);
			return -EINVAL;
		}
	}
	return 0;
}

static void emit(struct operator *op, const struct jv *cr, const char *type, const char *reason, const char *msg)
{
	if (leader_is_leading(op->leader))
		(void)operator_event(op->client, cr, type, reason, msg);
}

int operator_kube_version_refresh(struct operator *op, bool *ret_changed, char **ret_err)
{
	_cleanup_(jv_unrefp) struct jv *v = NULL;
	struct operator_kube_version kv;
	bool changed;
	int r;

	r = k8s_get(op->client, "/version", &v, ret_err);
	if (r < 0)
		return r;
	if (operator_kube_version_parse(v, &kv) < 0) {
		*ret_err = xasprintf("GET /version: no usable major/minor or gitVersion");
		return -EBADMSG;
	}
	changed = op->kube_known && (kv.major != op->kube.major || kv.minor != op->kube.minor ||
				     strcmp(kv.git, op->kube.git) != 0);
	if (!op->kube_known || changed)
		log_info("Kubernetes %s (%u.%u)%s", kv.git, kv.major, kv.minor,
			 changed ? ": the version changed, reconciling every PmemCSIDeployment" : "");
	op->kube = kv;
	op->kube_known = true;
	if (ret_changed)
		*ret_changed = changed;
	return 0;
}

/* The sidecar images for this cluster (sidecars.h); Failed with the reason when it is too old. */
static int pick_sidecars(struct operator *op, const struct operator_sidecars **ret, char **ret_reason)
{
	_cleanup_free_ char *err = NULL;
	int r;

	if (!op->kube_known && (r = operator_kube_version_refresh(op, NULL, &err)) < 0) {
		*ret_reason = xasprintf("cannot read the Kubernetes version (GET /version) to choose the sidecar "
					"images: %s", err ? err : strerror(-r));
		return r;
	}
	*ret = operator_sidecars_for(op->kube.major, op->kube.minor);
	if (!*ret) {
		*ret_reason = xasprintf("Kubernetes %s (%u.%u) is older than 1.%u, the oldest the driver runs on: "
					"the node provisioner's storage capacity tracking needs the CSIStorageCapacity "
					"API storage.k8s.io/v1beta1 (Kubernetes 1.21)",
					op->kube.git, op->kube.major, op->kube.minor, OPERATOR_KUBE_MIN_MINOR);
		return -EOPNOTSUPP;
	}
	return 0;
}

static const char *container_image(const struct jv *o, const char *cname)
{
	const struct jv *cs = jv_object_get(
		jv_object_get(jv_object_get(jv_object_get(o, "spec"), "template"), "spec"), "containers");

	for (size_t i = 0; i < jv_array_size(cs); i++)
		if (streq_ptr(jv_string(jv_object_get(jv_array_get(cs, i), "name")), cname))
			return jv_string(jv_object_get(jv_array_get(cs, i), "image"));
	return NULL;
}

/*
 * A Normal event SidecarImages when the node DaemonSet gets other sidecar images than
 * it has (or is new): which ones and why (the CR's field, or the row for the cluster's
 * version). Not repeated while nothing changes.
 */
static void sidecar_event(struct operator *op, const struct jv *cr, const struct operator_sidecars *sc,
			  const struct jv *ds, const struct jv *live)
{
	const struct jv *spec = jv_object_get(cr, "spec");
	const char *p = container_image(ds, "external-provisioner"), *g = container_image(ds, "node-driver-registrar");
	bool p_given = jv_string(jv_object_get(spec, "provisionerImage")) &&
		       *jv_string(jv_object_get(spec, "provisionerImage"));
	bool g_given = jv_string(jv_object_get(spec, "nodeRegistrarImage")) &&
		       *jv_string(jv_object_get(spec, "nodeRegistrarImage"));
	_cleanup_free_ char *row = NULL, *msg = NULL;

	if (!p || !g || (live && streq_ptr(p, container_image(live, "external-provisioner")) &&
			 streq_ptr(g, container_image(live, "node-driver-registrar"))))
		return;
	row = sc->max_minor ? xasprintf("the default for Kubernetes 1.%u-1.%u: %s", sc->min_minor, sc->max_minor,
					sc->why)
			    : xasprintf("the default for Kubernetes 1.%u and newer: %s", sc->min_minor, sc->why);
	msg = xasprintf("Kubernetes %s: external-provisioner %s (%s), node-driver-registrar %s (%s)", op->kube.git, p,
			p_given ? "spec.provisionerImage" : row ? row : "", g,
			g_given ? "spec.nodeRegistrarImage" : row ? row : "");
	if (!msg)
		return;
	log_info("PmemCSIDeployment '%s': %s", meta_string(cr, "name") ?: "", msg);
	emit(op, cr, "Normal", OPERATOR_EVENT_SIDECARS, msg);
}

static bool is_workload(const struct jv *o)
{
	const char *kind = jv_string(jv_object_get(o, "kind"));
	return streq_ptr(kind, "DaemonSet") || streq_ptr(kind, "Deployment");
}

static const struct jv *match_labels(const struct jv *o)
{
	return jv_object_get(jv_object_get(jv_object_get(o, "spec"), "selector"), "matchLabels");
}

static const struct jv *template_labels(const struct jv *o)
{
	return jv_object_get(jv_object_get(jv_object_get(jv_object_get(o, "spec"), "template"), "metadata"),
			     "labels");
}

/*
 * Step 1: read the live objects (into live[i], NULL when absent) and check everything
 * that can make the CR fail before anything is written.
 */
static int check(struct operator *op, const struct jv *cr, const struct jv *objs, struct jv **live,
		 char **ret_reason)
{
	const char *name = meta_string(cr, "name"), *uid = meta_string(cr, "uid");
	const struct jv *spec = jv_object_get(cr, "spec");
	int r;

	if ((r = check_images(spec, ret_reason)) < 0)
		return r;
	if ((r = check_overlap(op, cr, ret_reason)) < 0)
		return r;
	for (size_t i = 0; i < jv_array_size(objs); i++) {
		const struct jv *o = jv_array_get(objs, i);
		_cleanup_free_ char *path = operator_object_path(o), *err = NULL;

		if (!path)
			return -ENOMEM;
		r = k8s_get(op->client, path, &live[i], &err);
		if (r == -ENOENT) {
			live[i] = NULL;
			continue;
		}
		if (r < 0) {
			*ret_reason = xasprintf("cannot read %s: %s", path, err ? err : strerror(-r));
			return r;
		}
		if (!owned_by(live[i], name, uid)) {
			*ret_reason = xasprintf("%s %s exists and is not owned by PmemCSIDeployment '%s': remove it "
						"or the installation it belongs to",
						jv_string(jv_object_get(o, "kind")), path, name);
			return -EEXIST;
		}
		if (streq_ptr(jv_string(jv_object_get(o, "kind")), "DaemonSet")) {
			const char *from = live_mode(live[i]), *to = live_mode(o);
			if (from && to && !streq_ptr(from, to) && (r = check_mode_change(op, name, from, to, ret_reason)) < 0)
				return r;
		}
	}
	return 0;
}

/*
 * Before applying workload o over live: keep a live selector that selects our pods
 * (takeover in place); delete a workload whose selector cannot (recreated by the apply).
 */
static int prepare_workload(struct operator *op, struct jv *o, const struct jv *live, const char *path,
			    char **ret_reason)
{
	const struct jv *have = match_labels(live), *want = match_labels(o);
	_cleanup_free_ char *err = NULL, *del = NULL;
	struct jv *sel, *copy;
	int r;

	if (!have || !want || selectors_equal(have, want))
		return 0;
	if (operator_selector_matches(have, template_labels(o))) {
		sel = jv_object_get(jv_object_get(o, "spec"), "selector");
		copy = jv_deep_copy(have);
		if (!sel || !copy || jv_object_set_new(sel, "matchLabels", copy) < 0)
			return -ENOMEM;
		log_v(2, "Keeping the selector of %s: it selects the new pods", path);
		return 0;
	}
	log_info("Recreating %s: its selector cannot select the new pods (immutable)", path);
	del = xasprintf("%s?propagationPolicy=Background", path);
	if (!del)
		return -ENOMEM;
	r = k8s_request(op->client, "DELETE", del, NULL, NULL, NULL, &err);
	if (r < 0 && r != -ENOENT) {
		*ret_reason = xasprintf("cannot delete %s to recreate it: %s", path, err ? err : strerror(-r));
		return r;
	}
	return 0;
}

int operator_refresh_status(struct operator *op, const struct jv *cr)
{
	const char *name = meta_string(cr, "name");
	const char *phase = jv_string(jv_object_get(jv_object_get(cr, "status"), "phase"));
	_cleanup_free_ char *prefix = NULL;

	if (!name)
		return -EINVAL;
	if (meta_string(cr, "deletionTimestamp"))
		return 0;
	if (!leader_is_leading(op->leader))
		return -ECANCELED;
	/* Only a Running CR has component status; anything else gets the whole reconcile. */
	if (!streq_ptr(phase, "Running"))
		return operator_reconcile(op, cr);
	prefix = strdup(name);
	if (!prefix)
		return -ENOMEM;
	for (char *p = prefix; *p; p++)
		if (*p == '.')
			*p = '-';
	log_v(4, "PmemCSIDeployment '%s': refreshing the component status", name);
	return write_status(op, name, prefix, 0, NULL, NULL, true);
}

static int reconcile_cr(struct operator *op, const struct jv *cr)
{
	const char *name = meta_string(cr, "name");
	const struct jv *status = jv_object_get(cr, "status");
	const char *prev_phase = jv_string(jv_object_get(status, "phase")) ?: "";
	const char *prev_reason = jv_string(jv_object_get(status, "reason")) ?: "";
	struct operator_ctx ctx = { .namespace = op->namespace, .default_image = op->default_image };
	const struct operator_sidecars *sidecars = NULL;
	_cleanup_(jv_unrefp) struct jv *objs = NULL;
	_cleanup_free_ char *err = NULL, *prefix = NULL, *reason = NULL;
	_cleanup_(operator_certs_status_clear) struct operator_certs_status certs = { .verified = -1, .ready = -1 };
	const struct operator_certs_status *have_certs = NULL;
	struct jv **live = NULL;
	size_t n = 0;
	int r;

	if (!name)
		return -EINVAL;
	if (meta_string(cr, "deletionTimestamp"))
		return 0; /* the garbage collector removes what we own */
	if (!leader_is_leading(op->leader))
		return -ECANCELED;
	prefix = strdup(name);
	if (!prefix)
		return -ENOMEM;
	for (char *p = prefix; *p; p++)
		if (*p == '.')
			*p = '-';
	if (!*prev_phase)
		emit(op, cr, "Normal", OPERATOR_EVENT_NEW, "Processing new driver deployment");

	if (!operator_name_valid(name)) {
		r = -EINVAL;
		reason = xasprintf("metadata.name: '%s' is not a CSI driver name (lower case alphanumerics, '-' and "
				   "'.', at most 63 characters)", name);
		goto fail;
	}
	r = pick_sidecars(op, &sidecars, &reason);
	if (r < 0)
		goto fail;
	ctx.provisioner_image = sidecars->provisioner;
	ctx.registrar_image = sidecars->registrar;
	r = operator_render(op->manifest, cr, &ctx, &objs, &err);
	if (r < 0) {
		reason = xasprintf("invalid PmemCSIDeployment: %s", err ? err : strerror(-r));
		goto fail;
	}
	n = jv_array_size(objs);
	live = calloc(n ? n : 1, sizeof(*live));
	if (!live) {
		r = -ENOMEM;
		goto fail;
	}
	r = check(op, cr, objs, live, &reason);
	if (r < 0)
		goto fail;
	/* Certificates next: given ones that do not verify leave everything as it was. */
	have_certs = &certs;
	free(err);
	err = NULL;
	r = operator_certs_reconcile(op, cr, &certs, &err);
	if (r >= 0)
		r = operator_certs_mount(objs, prefix);
	if (r >= 0)
		r = operator_peer_channel(objs, prefix, name);
	if (r < 0) {
		reason = xasprintf("%s", err ? err : strerror(-r));
		goto fail;
	}

	for (size_t i = 0; i < n; i++) {
		struct jv *o = jv_array_get(objs, i);
		_cleanup_free_ char *path = operator_object_path(o), *body = NULL;

		if (!leader_is_leading(op->leader)) {
			log_warning("PmemCSIDeployment '%s': not the leader any more, stopping", name);
			r = -ECANCELED;
			goto out;
		}
		if (!path) {
			r = -ENOMEM;
			goto fail;
		}
		if (live[i] && is_workload(o) && (r = prepare_workload(op, o, live[i], path, &reason)) < 0)
			goto fail;
		body = jv_dump(o);
		if (!body) {
			r = -ENOMEM;
			goto fail;
		}
		free(err);
		err = NULL;
		r = operator_metrics_apply(op->metrics, op->client, path, OPERATOR_FIELD_MANAGER, body, NULL, &err);
		if (r < 0) {
			reason = xasprintf("failed to apply %s: %s", path, err ? err : strerror(-r));
			goto fail;
		}
		log_v(4, "Applied %s", path);
		if (streq_ptr(jv_string(jv_object_get(o, "kind")), "DaemonSet") &&
		    container_image(o, "external-provisioner"))
			sidecar_event(op, cr, sidecars, o, live[i]);
	}
	log_v(2, "PmemCSIDeployment '%s': %zu objects applied", name, n);
	if (!leader_is_leading(op->leader)) {
		r = -ECANCELED;
		goto out;
	}
	if (!streq_ptr(prev_phase, "Running"))
		emit(op, cr, "Normal", OPERATOR_EVENT_RUNNING, "Driver deployment successful");
	(void)write_status(op, name, prefix, 0, RUNNING_REASON, have_certs, false);
	r = 0;
	goto out;

fail:
	if (!reason)
		reason = xasprintf("%s", strerror(-r));
	log_error("PmemCSIDeployment '%s': %s", name, reason ? reason : "");
	if (leader_is_leading(op->leader)) {
		if (!streq_ptr(prev_phase, "Failed") || !streq_ptr(prev_reason, reason))
			emit(op, cr, "Warning", OPERATOR_EVENT_FAILED, reason ? reason : "failed");
		(void)write_status(op, name, prefix, r, reason ? reason : "failed", have_certs, false);
	}
out:
	for (size_t i = 0; live && i < n; i++)
		jv_unref(live[i]);
	free(live);
	return r;
}

int operator_reconcile(struct operator *op, const struct jv *cr)
{
	struct timespec a, b;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &a);
	r = reconcile_cr(op, cr);
	clock_gettime(CLOCK_MONOTONIC, &b);
	if (r != -ECANCELED) /* not the leader: nothing was reconciled */
		operator_metrics_reconciled(op->metrics, cr, r,
					    (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
	return r;
}
