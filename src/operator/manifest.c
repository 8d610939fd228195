/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-CR patching of the embedded manifest. The manifest is written for the default
 * driver name pmem-csi.intel.com; the names, paths and arguments that depend on the CR
 * are rewritten in every string value, then the fields the CR sets directly (images,
 * replicas, node selector, resources) are set on the objects that carry them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "basic/macro.h"
#include "basic/strbuf.h"
#include "basic/strutil.h"
#include "json/json.h"
#include "k8s/k8s.h"
#include "manifest.h"

#define streq(a, b) (strcmp((a), (b)) == 0)

#define TMPL_DRIVER "pmem-csi.intel.com"
#define TMPL_PREFIX "pmem-csi-intel-com"
#define TMPL_KUBELET "/var/lib/kubelet"
#define TMPL_MODE_LABEL "lvm-production"

struct render {
	const char *name;       /* driver name = CR name */
	char *prefix;           /* name with dots as dashes */
	const char *mode;       /* lvm | direct */
	const char *kubelet;    /* kubelet root dir */
	char *mode_label;       /* <mode>-production */
	int64_t log_level;
	bool json_logs;
	int64_t percentage;
	char *node_selector;    /* -nodeSelector= value: compact JSON with sorted keys */
	const char *image, *provisioner_image, *registrar_image, *pull_policy;
};

/* Replace every occurrence of from in s (when accept() allows it) by to; NULL when nothing changed. */
static char *replace(const char *s, const char *from, const char *to,
		     bool (*accept)(const char *s, const char *hit, const char *after))
{
	size_t fl = strlen(from);
	struct strbuf b = STRBUF_INIT;
	bool changed = false;
	const char *p = s, *hit;

	while ((hit = strstr(p, from))) {
		if (accept && !accept(s, hit, hit + fl)) {
			strbuf_append(&b, p, (size_t)(hit - p) + fl);
			p = hit + fl;
			continue;
		}
		strbuf_append(&b, p, (size_t)(hit - p));
		strbuf_append_str(&b, to);
		p = hit + fl;
		changed = true;
	}
	if (!changed) {
		strbuf_free(&b);
		return NULL;
	}
	strbuf_append_str(&b, p);
	return strbuf_steal(&b);
}

/*
 * "pmem-csi.intel.com/..." at the start of a value is a label key prefix (a node
 * selector value such as "pmem-csi.intel.com/convert-raw-namespaces"), not the driver
 * name; inside a path ("/var/lib/kubelet/plugins/pmem-csi.intel.com/csi.sock") it is.
 */
static bool driver_name_at(const char *s, const char *hit, const char *after)
{
	return *after != '/' || (hit > s && hit[-1] == '/');
}

/* "/var/lib/kubelet" ends a path or continues it with '/'; "/var/lib/kubeletx" is another path. */
static bool path_end(const char *s, const char *hit, const char *after)
{
	return *after == '/' || *after == '\0';
}

static int rewrite_string(const struct render *r, const char *s, char **ret)
{
	_cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;
	const char *cur = s;

	if ((a = replace(cur, TMPL_PREFIX, r->prefix, NULL)))
		cur = a;
	if ((b = replace(cur, TMPL_DRIVER, r->name, driver_name_at)))
		cur = b;
	if ((c = replace(cur, TMPL_KUBELET, r->kubelet, path_end)))
		cur = c;
	if (streq(cur, TMPL_MODE_LABEL))
		cur = r->mode_label;
	else if (startswith(cur, "-deviceManager=")) {
		d = xasprintf("-deviceManager=%s", r->mode);
		if (!d)
			return -ENOMEM;
		cur = d;
	} else if (startswith(cur, "-nodeSelector=")) {
		e = xasprintf("-nodeSelector=%s", r->node_selector);
		if (!e)
			return -ENOMEM;
		cur = e;
	}
	*ret = cur == s ? NULL : strdup(cur);
	return cur == s || *ret ? 0 : -ENOMEM;
}

/* Rewrite every string value (not keys) below v. */
static int rewrite_tree(const struct render *r, struct jv *v);

struct walk {
	const struct render *r;
	struct jv *obj;
	int err;
};

static int walk_member(const char *key, const struct jv *val, void *ud)
{
	struct walk *w = ud;
	_cleanup_free_ char *n = NULL;
	int k;

	if (jv_string(val)) {
		k = rewrite_string(w->r, jv_string(val), &n);
		if (k < 0)
			return w->err = k;
		if (n && (k = jv_object_set_string(w->obj, key, n)) < 0)
			return w->err = k;
		return 0;
	}
	k = rewrite_tree(w->r, jv_object_get(w->obj, key));
	return k < 0 ? (w->err = k) : 0;
}

static int rewrite_tree(const struct render *r, struct jv *v)
{
	if (jv_is_object(v)) {
		struct walk w = { .r = r, .obj = v };
		(void)jv_object_iter(v, walk_member, &w);
		return w.err;
	}
	if (jv_is_array(v)) {
		for (size_t i = 0; i < jv_array_size(v); i++) {
			struct jv *e = jv_array_get(v, i);
			_cleanup_free_ char *n = NULL;
			int k;

			if (!jv_string(e)) {
				if ((k = rewrite_tree(r, e)) < 0)
					return k;
				continue;
			}
			if ((k = rewrite_string(r, jv_string(e), &n)) < 0)
				return k;
			if (n) {
				struct jv *s = jv_new_string(n);
				if (!s || jv_array_set_new(v, i, s) < 0)
					return -ENOMEM;
			}
		}
	}
	return 0;
}

static int set_string(struct jv *obj, const char *key, const char *val)
{
	return val && *val ? jv_object_set_string(obj, key, val) : 0;
}

/* Copy spec.<field> (ResourceRequirements) into the container when the CR sets it. */
static int set_resources(struct jv *container, const struct jv *spec, const char *field)
{
	const struct jv *res = jv_object_get(spec, field);
	struct jv *copy;

	if (!jv_is_object(res))
		return 0;
	copy = jv_deep_copy(res);
	if (!copy)
		return -ENOMEM;
	return jv_object_set_new(container, "resources", copy);
}

/* Add "-logging-format=json" right after "-v=N", and "-pmemPercentage=N" after "-deviceManager=lvm". */
static int patch_args(const struct render *r, struct jv *args, bool driver)
{
	for (size_t i = 0; i < jv_array_size(args); i++) {
		const char *a = jv_string(jv_array_get(args, i));
		_cleanup_free_ char *n = NULL;
		struct jv *s;

		if (!a)
			continue;
		if (startswith(a, "-v=")) {
			n = xasprintf("-v=%lld", (long long)r->log_level);
			if (!n || !(s = jv_new_string(n)) || jv_array_set_new(args, i, s) < 0)
				return -ENOMEM;
			if (driver && r->json_logs) {
				if (!(s = jv_new_string("-logging-format=json")) || jv_array_insert_new(args, i + 1, s) < 0)
					return -ENOMEM;
				i++;
			}
		} else if (driver && startswith(a, "-deviceManager=") && streq(r->mode, "lvm") && r->percentage != 100) {
			n = xasprintf("-pmemPercentage=%lld", (long long)r->percentage);
			if (!n || !(s = jv_new_string(n)) || jv_array_insert_new(args, i + 1, s) < 0)
				return -ENOMEM;
			i++;
		}
	}
	return 0;
}

static int patch_pod(const struct render *r, const struct jv *spec, struct jv *pod, bool node)
{
	struct jv *containers = jv_object_get(pod, "containers");
	int k;

	for (size_t i = 0; i < jv_array_size(containers); i++) {
		struct jv *c = jv_array_get(containers, i);
		const char *cname = jv_string(jv_object_get(c, "name"));
		bool driver = streq_ptr(cname, "pmem-driver");

		if ((k = set_string(c, "imagePullPolicy", r->pull_policy)) < 0)
			return k;
		if ((k = patch_args(r, jv_object_get(c, "args"), driver)) < 0)
			return k;
		if (driver) {
			if ((k = set_string(c, "image", r->image)) < 0 ||
			    (k = set_resources(c, spec, node ? "nodeDriverResources" : "controllerDriverResources")) < 0)
				return k;
		} else if (streq_ptr(cname, "external-provisioner")) {
			if ((k = set_string(c, "image", r->provisioner_image)) < 0 ||
			    (k = set_resources(c, spec, "provisionerResources")) < 0)
				return k;
		} else if (streq_ptr(cname, "node-driver-registrar")) {
			if ((k = set_string(c, "image", r->registrar_image)) < 0 ||
			    (k = set_resources(c, spec, "nodeRegistrarResources")) < 0)
				return k;
		}
	}
	return 0;
}

static int copy_label(const char *key, const struct jv *val, void *ud)
{
	return jv_string(val) ? jv_object_set_string(ud, key, jv_string(val)) : 0;
}

/* spec.labels go onto the object and its pod template, never into selectors (immutable). */
static int add_labels(struct jv *meta, const struct jv *labels)
{
	struct jv *l;

	if (!jv_is_object(labels) || !jv_is_object(meta))
		return 0;
	l = jv_object_get(meta, "labels");
	if (!l) {
		l = jv_new_object();
		if (!l || jv_object_set_new(meta, "labels", l) < 0)
			return -ENOMEM;
	}
	return jv_object_iter(labels, copy_label, l);
}

static int node_selector_json(const struct jv *sel, char **ret)
{
	_cleanup_(jv_unrefp) struct jv *def = NULL;

	if (!jv_is_object(sel)) {
		def = jv_new_object();
		if (!def || jv_object_set_string(def, "storage", "pmem") < 0)
			return -ENOMEM;
		sel = def;
	}
	*ret = jv_dump(sel);
	return *ret ? 0 : -ENOMEM;
}

static const char *spec_string(const struct jv *spec, const char *key, const char *def)
{
	const char *s = jv_string(jv_object_get(spec, key));
	return s && *s ? s : def;
}

static int64_t spec_int(const struct jv *spec, const char *key, int64_t def)
{
	const struct jv *v = jv_object_get(spec, key);
	return jv_is_integer(v) ? jv_integer(v) : def;
}

static int owner_ref(const struct jv *cr, struct jv **ret)
{
	const struct jv *meta = jv_object_get(cr, "metadata");
	const char *uid = jv_string(jv_object_get(meta, "uid"));
	_cleanup_(jv_unrefp) struct jv *refs = NULL, *ref = NULL;

	*ret = NULL;
	if (!uid)
		return 0;
	refs = jv_new_array();
	ref = jv_new_object();
	if (!refs || !ref || jv_object_set_string(ref, "apiVersion", "pmem-csi.intel.com/v1beta1") < 0 ||
	    jv_object_set_string(ref, "kind", "PmemCSIDeployment") < 0 ||
	    jv_object_set_string(ref, "name", jv_string(jv_object_get(meta, "name"))) < 0 ||
	    jv_object_set_string(ref, "uid", uid) < 0 || jv_object_set_new(ref, "controller", jv_new_true()) < 0 ||
	    jv_object_set_new(ref, "blockOwnerDeletion", jv_new_true()) < 0 ||
	    jv_array_append_new(refs, TAKE_PTR(ref)) < 0)
		return -ENOMEM;
	*ret = TAKE_PTR(refs);
	return 0;
}

static int render_one(const struct render *r, const struct jv *spec, const struct operator_ctx *ctx,
		      const struct jv *owner, struct jv *obj)
{
	const char *kind = jv_string(jv_object_get(obj, "kind"));
	struct jv *meta = jv_object_get(obj, "metadata");
	struct jv *ospec = jv_object_get(obj, "spec");
	const struct jv *labels = jv_object_get(spec, "labels");
	int k;

	if ((k = rewrite_tree(r, obj)) < 0)
		return k;
	if (jv_object_get(meta, "namespace") && (k = jv_object_set_string(meta, "namespace", ctx->namespace)) < 0)
		return k;
	/* Subjects of role bindings live in our namespace too. */
	struct jv *subjects = jv_object_get(obj, "subjects");
	for (size_t i = 0; i < jv_array_size(subjects); i++) {
		struct jv *s = jv_array_get(subjects, i);
		if (jv_object_get(s, "namespace") && (k = jv_object_set_string(s, "namespace", ctx->namespace)) < 0)
			return k;
	}
	if ((k = add_labels(meta, labels)) < 0)
		return k;
	if (owner) {
		struct jv *copy = jv_deep_copy(owner);
		if (!copy || jv_object_set_new(meta, "ownerReferences", copy) < 0)
			return -ENOMEM;
	}
	if (streq_ptr(kind, "Deployment") || streq_ptr(kind, "DaemonSet")) {
		const char *component = jv_string(jv_object_get(jv_object_get(meta, "labels"), "app.kubernetes.io/component"));
		bool node = streq_ptr(kind, "DaemonSet") && streq_ptr(component, "node");
		struct jv *tmpl = jv_object_get(ospec, "template");
		struct jv *pod = jv_object_get(tmpl, "spec");

		if ((k = add_labels(jv_object_get(tmpl, "metadata"), labels)) < 0)
			return k;
		if ((k = patch_pod(r, spec, pod, node)) < 0)
			return k;
		if (streq_ptr(kind, "Deployment") &&
		    (k = jv_object_set_integer(ospec, "replicas", spec_int(spec, "controllerReplicas", 1))) < 0)
			return k;
		if (node) {
			const struct jv *sel = jv_object_get(spec, "nodeSelector");
			const struct jv *mu = jv_object_get(spec, "maxUnavailable");
			struct jv *ru = jv_object_get(jv_object_get(ospec, "updateStrategy"), "rollingUpdate");

			if (jv_is_object(sel)) {
				struct jv *copy = jv_deep_copy(sel);
				if (!copy || jv_object_set_new(pod, "nodeSelector", copy) < 0)
					return -ENOMEM;
			}
			if (ru && mu && (jv_is_integer(mu) || jv_string(mu))) {
				struct jv *copy = jv_deep_copy(mu);
				if (!copy || jv_object_set_new(ru, "maxUnavailable", copy) < 0)
					return -ENOMEM;
			}
		}
	}
	return 0;
}

int operator_render(const struct jv *tmpl, const struct jv *cr, const struct operator_ctx *ctx,
		    struct jv **ret, char **ret_err)
{
	const struct jv *spec = jv_object_get(cr, "spec");
	const char *name = jv_string(jv_object_get(jv_object_get(cr, "metadata"), "name"));
	_cleanup_(jv_unrefp) struct jv *out = NULL, *owner = NULL;
	_cleanup_free_ char *prefix = NULL, *mode_label = NULL, *sel = NULL;
	struct render r;
	int k;

	if (!jv_is_array(tmpl))
		return -EINVAL;
	if (!name || !*name || strlen(name) > 63) {
		*ret_err = xasprintf("metadata.name: '%s' is not a CSI driver name", name ? name : "");
		return -EINVAL;
	}
	r = (struct render){
		.name = name,
		.mode = spec_string(spec, "deviceMode", "lvm"),
		.kubelet = spec_string(spec, "kubeletDir", TMPL_KUBELET),
		.log_level = spec_int(spec, "logLevel", 3),
		.json_logs = streq(spec_string(spec, "logFormat", "text"), "json"),
		.percentage = spec_int(spec, "pmemPercentage", 100),
		.image = spec_string(spec, "image", ctx->default_image),
		.provisioner_image = spec_string(spec, "provisionerImage", ctx->provisioner_image),
		.registrar_image = spec_string(spec, "nodeRegistrarImage", ctx->registrar_image),
		.pull_policy = spec_string(spec, "pullPolicy", NULL),
	};
	if (!streq(r.mode, "lvm") && !streq(r.mode, "direct")) {
		*ret_err = xasprintf("spec.deviceMode: '%s' is neither 'lvm' nor 'direct'", r.mode);
		return -EINVAL;
	}
	if (r.percentage < 0 || r.percentage > 100) {
		*ret_err = xasprintf("spec.pmemPercentage: %lld is not within 0-100", (long long)r.percentage);
		return -EINVAL;
	}
	if (r.log_level < 0 || r.log_level > 10) {
		*ret_err = xasprintf("spec.logLevel: %lld is not within 0-10", (long long)r.log_level);
		return -EINVAL;
	}
	if (r.kubelet[0] != '/') {
		*ret_err = xasprintf("spec.kubeletDir: '%s' is not an absolute path", r.kubelet);
		return -EINVAL;
	}
	prefix = strdup(name);
	mode_label = xasprintf("%s-production", r.mode);
	if (!prefix || !mode_label || node_selector_json(jv_object_get(spec, "nodeSelector"), &sel) < 0)
		return -ENOMEM;
	for (char *p = prefix; *p; p++)
		if (*p == '.')
			*p = '-';
	r.prefix = prefix;
	r.mode_label = mode_label;
	r.node_selector = sel;
	if ((k = owner_ref(cr, &owner)) < 0)
		return k;

	out = jv_new_array();
	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < jv_array_size(tmpl); i++) {
		const struct jv *o = jv_array_get(tmpl, i);
		struct jv *copy;

		if (streq_ptr(jv_string(jv_object_get(o, "kind")), "Namespace"))
			continue;
		copy = jv_deep_copy(o);
		if (!copy || jv_array_append_new(out, copy) < 0)
			return -ENOMEM;
		if ((k = render_one(&r, spec, ctx, owner, copy)) < 0)
			return k;
	}
	*ret = TAKE_PTR(out);
	return 0;
}

/* kind -> API group/version and resource; everything the manifest holds. */
static const struct {
	const char *kind, *prefix, *resource;
} kinds[] = {
	{ "ServiceAccount", "/api/v1", "serviceaccounts" },
	{ "Service", "/api/v1", "services" },
	{ "Secret", "/api/v1", "secrets" },
	{ "Role", "/apis/rbac.authorization.k8s.io/v1", "roles" },
	{ "RoleBinding", "/apis/rbac.authorization.k8s.io/v1", "rolebindings" },
	{ "ClusterRole", "/apis/rbac.authorization.k8s.io/v1", "clusterroles" },
	{ "ClusterRoleBinding", "/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings" },
	{ "Deployment", "/apis/apps/v1", "deployments" },
	{ "DaemonSet", "/apis/apps/v1", "daemonsets" },
	{ "CSIDriver", "/apis/storage.k8s.io/v1", "csidrivers" },
};

char *operator_object_path(const struct jv *obj)
{
	const char *kind = jv_string(jv_object_get(obj, "kind"));
	const struct jv *meta = jv_object_get(obj, "metadata");
	const char *name = jv_string(jv_object_get(meta, "name"));
	const char *ns = jv_string(jv_object_get(meta, "namespace"));
	_cleanup_free_ char *ename = NULL, *ens = NULL;

	if (!kind || !name)
		return NULL;
	for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
		if (!streq(kinds[i].kind, kind))
			continue;
		ename = k8s_path_escape(name);
		if (!ename)
			return NULL;
		if (!ns)
			return xasprintf("%s/%s/%s", kinds[i].prefix, kinds[i].resource, ename);
		ens = k8s_path_escape(ns);
		return ens ? xasprintf("%s/namespaces/%s/%s/%s", kinds[i].prefix, ens, kinds[i].resource, ename) : NULL;
	}
	return NULL;
}
