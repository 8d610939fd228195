/* SPDX-License-Identifier: Apache-2.0 */
/* The operator's per-CR patching of the embedded deploy/generated manifest. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "json/json.h"
#include "operator/manifest.h"
#include "operator/reconcile.h"
#include "operator/sidecars.h"
#include "test.h"

static struct jv *parse(const char *s)
{
	struct jv *v = NULL;
	CHECK(jv_parse(s, strlen(s), &v, NULL) == 0);
	return v;
}

static struct jv *find(const struct jv *objs, const char *kind, const char *name)
{
	for (size_t i = 0; i < jv_array_size(objs); i++) {
		struct jv *o = jv_array_get(objs, i);
		if (strcmp(jv_string(jv_object_get(o, "kind")) ?: "", kind) == 0 &&
		    strcmp(jv_string(jv_object_get(jv_object_get(o, "metadata"), "name")) ?: "", name) == 0)
			return o;
	}
	return NULL;
}

static bool has_string(const struct jv *arr, const char *s)
{
	for (size_t i = 0; i < jv_array_size(arr); i++)
		if (jv_string(jv_array_get(arr, i)) && strcmp(jv_string(jv_array_get(arr, i)), s) == 0)
			return true;
	return false;
}

static const struct jv *container(const struct jv *obj, const char *name)
{
	const struct jv *cs = jv_object_get(jv_object_get(jv_object_get(jv_object_get(obj, "spec"), "template"), "spec"),
					    "containers");
	for (size_t i = 0; i < jv_array_size(cs); i++)
		if (strcmp(jv_string(jv_object_get(jv_array_get(cs, i), "name")) ?: "", name) == 0)
			return jv_array_get(cs, i);
	return NULL;
}

TEST(default_cr_renders_the_manifest_unchanged)
{
	struct jv *tmpl = parse(operator_manifest_json);
	struct jv *cr = parse("{\"metadata\":{\"name\":\"pmem-csi.intel.com\"},\"spec\":{\"deviceMode\":\"lvm\","
			      "\"logLevel\":3,\"logFormat\":\"text\",\"pmemPercentage\":100,\"kubeletDir\":\"/var/lib/kubelet\","
			      "\"nodeSelector\":{\"storage\":\"pmem\"},\"controllerReplicas\":1,\"maxUnavailable\":1,"
			      "\"pullPolicy\":\"IfNotPresent\"}}");
	struct operator_ctx ctx = { .namespace = "pmem-csi" };
	struct jv *out = NULL, *want = jv_new_array();
	char *err = NULL, *a, *b;

	/* The manifest without its Namespace is what the default CR gets (no uid: no owner). */
	for (size_t i = 0; i < jv_array_size(tmpl); i++)
		if (strcmp(jv_string(jv_object_get(jv_array_get(tmpl, i), "kind")), "Namespace") != 0)
			jv_array_append_new(want, jv_deep_copy(jv_array_get(tmpl, i)));
	CHECK_INT(operator_render(tmpl, cr, &ctx, &out, &err), 0);
	a = jv_dump(out);
	b = jv_dump(want);
	CHECK(a && b && strcmp(a, b) == 0);
	CHECK_INT(jv_array_size(out), 18);
	free(a);
	free(b);
	jv_unref(out);
	jv_unref(want);
	jv_unref(cr);
	jv_unref(tmpl);
}

TEST(cr_fields_reach_the_objects)
{
	struct jv *tmpl = parse(operator_manifest_json);
	struct jv *cr = parse("{\"metadata\":{\"name\":\"pmem.example.org\",\"uid\":\"u-1\"},\"spec\":{"
			      "\"deviceMode\":\"lvm\",\"logLevel\":5,\"logFormat\":\"json\",\"pmemPercentage\":50,"
			      "\"kubeletDir\":\"/data/kubelet\",\"nodeSelector\":{\"zone\":\"a\"},\"controllerReplicas\":2,"
			      "\"image\":\"example/driver:1\",\"provisionerImage\":\"example/prov:2\",\"pullPolicy\":\"Always\","
			      "\"labels\":{\"team\":\"storage\"},\"maxUnavailable\":\"50%\","
			      "\"nodeDriverResources\":{\"limits\":{\"memory\":\"1Gi\"}}}}");
	struct operator_ctx ctx = { .namespace = "ops" };
	struct jv *out = NULL;
	const struct jv *ds, *dep, *drv, *meta, *owner, *rb, *csid;
	char *err = NULL;

	CHECK_INT(operator_render(tmpl, cr, &ctx, &out, &err), 0);
	ds = find(out, "DaemonSet", "pmem-example-org-node");
	dep = find(out, "Deployment", "pmem-example-org-controller");
	csid = find(out, "CSIDriver", "pmem.example.org");
	rb = find(out, "ClusterRoleBinding", "pmem-example-org-csi-provisioner-role");
	CHECK(ds && dep && csid && rb);
	CHECK(!find(out, "Namespace", "pmem-csi"));
	if (!ds || !dep || !rb)
		return;
	meta = jv_object_get(ds, "metadata");
	CHECK_STR(jv_string(jv_object_get(meta, "namespace")), "ops");
	CHECK_STR(jv_string(jv_object_get(jv_object_get(meta, "labels"), "team")), "storage");
	CHECK_STR(jv_string(jv_object_get(jv_object_get(meta, "labels"), "app.kubernetes.io/instance")),
		  "pmem.example.org");
	owner = jv_array_get(jv_object_get(meta, "ownerReferences"), 0);
	CHECK_STR(jv_string(jv_object_get(owner, "uid")), "u-1");
	CHECK_STR(jv_string(jv_object_get(owner, "kind")), "PmemCSIDeployment");
	/* labels never go into the (immutable) selector */
	CHECK(!jv_object_get(jv_object_get(jv_object_get(jv_object_get(ds, "spec"), "selector"), "matchLabels"), "team"));
	drv = container(ds, "pmem-driver");
	CHECK_STR(jv_string(jv_object_get(drv, "image")), "example/driver:1");
	CHECK_STR(jv_string(jv_object_get(drv, "imagePullPolicy")), "Always");
	CHECK(has_string(jv_object_get(drv, "args"), "-v=5"));
	CHECK(has_string(jv_object_get(drv, "args"), "-logging-format=json"));
	CHECK(has_string(jv_object_get(drv, "args"), "-pmemPercentage=50"));
	CHECK(has_string(jv_object_get(drv, "args"), "-statePath=/var/lib/pmem.example.org"));
	CHECK_STR(jv_string(jv_object_get(jv_object_get(jv_object_get(drv, "resources"), "limits"), "memory")), "1Gi");
	CHECK_STR(jv_string(jv_object_get(container(ds, "external-provisioner"), "image")), "example/prov:2");
	CHECK(!has_string(jv_object_get(container(ds, "external-provisioner"), "args"), "-logging-format=json"));
	CHECK(has_string(jv_object_get(container(ds, "node-driver-registrar"), "args"),
			 "--kubelet-registration-path=/data/kubelet/plugins/pmem.example.org/csi.sock"));
	{
		const struct jv *dspec = jv_object_get(ds, "spec");
		const struct jv *pod = jv_object_get(jv_object_get(dspec, "template"), "spec");
		const struct jv *ru = jv_object_get(jv_object_get(dspec, "updateStrategy"), "rollingUpdate");

		CHECK_STR(jv_string(jv_object_get(jv_object_get(pod, "nodeSelector"), "zone")), "a");
		CHECK(!jv_object_get(jv_object_get(pod, "nodeSelector"), "storage"));
		CHECK_STR(jv_string(jv_object_get(ru, "maxUnavailable")), "50%");
	}
	CHECK_INT(jv_integer(jv_object_get(jv_object_get(dep, "spec"), "replicas")), 2);
	CHECK(has_string(jv_object_get(container(dep, "pmem-driver"), "args"), "-nodeSelector={\"zone\":\"a\"}"));
	CHECK_STR(jv_string(jv_object_get(jv_array_get(jv_object_get(rb, "subjects"), 0), "namespace")), "ops");
	CHECK_STR(jv_string(jv_object_get(jv_object_get(rb, "roleRef"), "name")),
		  "pmem-example-org-external-provisioner-runner");
	/* the node-setup DaemonSet keeps its own selector */
	CHECK_STR(jv_string(jv_object_get(jv_object_get(jv_object_get(jv_object_get(jv_object_get(
			find(out, "DaemonSet", "pmem-example-org-node-setup"), "spec"), "template"), "spec"),
			"nodeSelector"), "pmem-csi.intel.com/convert-raw-namespaces")), "force");
	jv_unref(out);
	jv_unref(cr);
	jv_unref(tmpl);
}

TEST(bad_cr_names_the_field)
{
	struct jv *tmpl = parse(operator_manifest_json);
	struct jv *cr = parse("{\"metadata\":{\"name\":\"x\"},\"spec\":{\"deviceMode\":\"raw\"}}");
	struct operator_ctx ctx = { .namespace = "ops" };
	struct jv *out = NULL;
	char *err = NULL;

	CHECK_INT(operator_render(tmpl, cr, &ctx, &out, &err), -EINVAL);
	CHECK(err && strstr(err, "spec.deviceMode"));
	CHECK(!out);
	free(err);
	err = NULL;
	jv_unref(cr);
	cr = parse("{\"metadata\":{\"name\":\"x\"},\"spec\":{\"pmemPercentage\":101}}");
	CHECK_INT(operator_render(tmpl, cr, &ctx, &out, &err), -EINVAL);
	CHECK(err && strstr(err, "spec.pmemPercentage"));
	free(err);
	jv_unref(cr);
	jv_unref(tmpl);
}

TEST(object_paths)
{
	struct jv *o = parse("{\"kind\":\"DaemonSet\",\"metadata\":{\"name\":\"a\",\"namespace\":\"n\"}}");
	char *p = operator_object_path(o);
	CHECK_STR(p, "/apis/apps/v1/namespaces/n/daemonsets/a");
	free(p);
	jv_unref(o);
	o = parse("{\"kind\":\"CSIDriver\",\"metadata\":{\"name\":\"a.b\"}}");
	p = operator_object_path(o);
	CHECK_STR(p, "/apis/storage.k8s.io/v1/csidrivers/a.b");
	free(p);
	jv_unref(o);
	o = parse("{\"kind\":\"Widget\",\"metadata\":{\"name\":\"a\"}}");
	CHECK(!operator_object_path(o));
	jv_unref(o);
}

/* Bad CRs the schema lets through: the operator refuses them before applying anything. */
TEST(image_references)
{
	static const char *const good[] = {
		"busybox", "intel/pmem-csi-driver:v1.1.0", "localhost/pmem-csi-driver:v0.1.0",
		"localhost:5000/a/b_c__d.e-f:1.0-rc_1", "registry.k8s.io/sig-storage/csi-provisioner:v5.1.0",
		"docker.io/library/busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"Example.COM:443/x/y:tag@sha256:0123456789abcdef0123456789abcdef",
		"UPPER/case", /* an upper-case first component is a registry host, as in docker */
	};
	static const char *const bad[] = {
		"", "Bad//Image:x", "upper/CASE", "[::1]/x", "a//b", "a/", "/a", "a:", "a:-tag", "a@sha256:abc",
		"a b", "host:port/x", "a:b:c", "-a", "a__-b", "example.com:99999999/x",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK(operator_image_valid(good[i]));
	/* "[::1]/x" is refused: IPv6 registry addresses are not supported. */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (operator_image_valid(bad[i]))
			fprintf(stderr, "accepted: '%s'\n", bad[i]);
		CHECK(!operator_image_valid(bad[i]));
	}
}

TEST(driver_names)
{
	CHECK(operator_name_valid("pmem-csi.intel.com"));
	CHECK(operator_name_valid("a"));
	CHECK(operator_name_valid("0.a-b.c"));
	CHECK(!operator_name_valid(""));
	CHECK(!operator_name_valid("Upper.Case"));
	CHECK(!operator_name_valid("a..b"));
	CHECK(!operator_name_valid("-a"));
	CHECK(!operator_name_valid("a-"));
	CHECK(!operator_name_valid("a.-b"));
	CHECK(!operator_name_valid("a_b"));
	CHECK(operator_name_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
	CHECK(!operator_name_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

TEST(selectors)
{
	struct jv *labels = parse("{\"a\":\"1\",\"b\":\"2\"}");
	struct jv *s1 = parse("{\"a\":\"1\"}"), *s2 = parse("{\"a\":\"2\"}"), *s3 = parse("{}");
	struct jv *s4 = parse("{\"a\":\"1\",\"c\":\"3\"}");

	CHECK(operator_selector_matches(s1, labels));
	CHECK(!operator_selector_matches(s2, labels));
	CHECK(operator_selector_matches(s3, labels)); /* empty selects everything, as in a DaemonSet */
	CHECK(!operator_selector_matches(s4, labels));
	CHECK(!operator_selector_matches(s1, NULL));
	jv_unref(labels);
	jv_unref(s1);
	jv_unref(s2);
	jv_unref(s3);
	jv_unref(s4);
}

TEST(kube_version_parse)
{
	struct operator_kube_version v;
	struct jv *j;

	j = parse("{\"major\":\"1\",\"minor\":\"32\",\"gitVersion\":\"v1.32.13\"}");
	CHECK(operator_kube_version_parse(j, &v) == 0);
	CHECK_INT(v.major, 1);
	CHECK_INT(v.minor, 32);
	CHECK_STR(v.git, "v1.32.13");
	jv_unref(j);
	/* Distributions: "27+" in minor. */
	j = parse("{\"major\":\"1\",\"minor\":\"27+\",\"gitVersion\":\"v1.27.16-eks-a18cd3a\"}");
	CHECK(operator_kube_version_parse(j, &v) == 0);
	CHECK_INT(v.minor, 27);
	jv_unref(j);
	/* No usable major/minor: gitVersion. */
	j = parse("{\"major\":\"\",\"minor\":\"\",\"gitVersion\":\"v1.30.2-gke.1\"}");
	CHECK(operator_kube_version_parse(j, &v) == 0);
	CHECK_INT(v.major, 1);
	CHECK_INT(v.minor, 30);
	jv_unref(j);
	j = parse("{\"minor\":\"x\",\"gitVersion\":\"1.30\"}");
	CHECK(operator_kube_version_parse(j, &v) == -EINVAL);
	jv_unref(j);
	j = parse("{\"major\":\"1\",\"minor\":\"99999999\"}");
	CHECK(operator_kube_version_parse(j, &v) == -EINVAL);
	jv_unref(j);
	j = parse("[]");
	CHECK(operator_kube_version_parse(j, &v) == -EINVAL);
	jv_unref(j);
}

TEST(sidecars_by_kubernetes_version)
{
	struct jv *tmpl = parse(operator_manifest_json);
	const struct jv *ds = NULL;
	const struct operator_sidecars *t, *last;
	unsigned n;

	/* Too old: the driver cannot run (no CSIStorageCapacity v1beta1). */
	CHECK(operator_sidecars_for(1, 20) == NULL);
	CHECK(operator_sidecars_for(1, 13) == NULL);
	CHECK(operator_sidecars_for(0, 99) == NULL);
	CHECK_STR(operator_sidecars_for(1, 21)->provisioner, "registry.k8s.io/sig-storage/csi-provisioner:v3.0.0");
	CHECK_STR(operator_sidecars_for(1, 23)->provisioner, "registry.k8s.io/sig-storage/csi-provisioner:v3.0.0");
	/* From 1.27 on (v1beta1 removed) never a provisioner that speaks only v1beta1. */
	CHECK_STR(operator_sidecars_for(1, 27)->provisioner, "registry.k8s.io/sig-storage/csi-provisioner:v3.6.0");
	CHECK_STR(operator_sidecars_for(1, 31)->registrar,
		  "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.13.0");

	/* The table covers every minor from the oldest on, without gaps or overlaps. */
	t = operator_sidecars_table(&n);
	CHECK(n >= 2);
	CHECK_INT(t[0].min_minor, OPERATOR_KUBE_MIN_MINOR);
	for (unsigned i = 0; i + 1 < n; i++) {
		CHECK(t[i].max_minor >= t[i].min_minor);
		CHECK_INT(t[i + 1].min_minor, t[i].max_minor + 1);
		CHECK(t[i].why && *t[i].why);
	}
	last = &t[n - 1];
	CHECK_INT(last->max_minor, 0);
	/* Newer than known (and a major 2): the newest row. */
	CHECK(operator_sidecars_for(1, 32) == last);
	CHECK(operator_sidecars_for(1, 40) == last);
	CHECK(operator_sidecars_for(2, 0) == last);
	for (unsigned m = OPERATOR_KUBE_MIN_MINOR; m < 45; m++)
		CHECK(operator_sidecars_for(1, m) != NULL);

	/* The newest row is what deploy/generated ships (the embedded manifest). */
	for (size_t i = 0; i < jv_array_size(tmpl); i++)
		if (strcmp(jv_string(jv_object_get(jv_array_get(tmpl, i), "kind")) ?: "", "DaemonSet") == 0 &&
		    container(jv_array_get(tmpl, i), "external-provisioner"))
			ds = jv_array_get(tmpl, i);
	CHECK(ds != NULL);
	CHECK_STR(jv_string(jv_object_get(container(ds, "external-provisioner"), "image")), last->provisioner);
	CHECK_STR(jv_string(jv_object_get(container(ds, "node-driver-registrar"), "image")), last->registrar);
	jv_unref(tmpl);
}

TEST(sidecars_rendered_explicit_fields_win)
{
	struct jv *tmpl = parse(operator_manifest_json);
	const struct operator_sidecars *old = operator_sidecars_for(1, 24);
	struct operator_ctx ctx = { .namespace = "pmem-csi", .provisioner_image = old->provisioner,
				    .registrar_image = old->registrar };
	struct jv *cr = parse("{\"metadata\":{\"name\":\"pmem-csi.intel.com\"},\"spec\":{\"nodeRegistrarImage\":"
			      "\"example.org/registrar:v9\"}}");
	struct jv *out = NULL;
	const struct jv *ds;
	char *err = NULL;

	CHECK(operator_render(tmpl, cr, &ctx, &out, &err) == 0);
	ds = find(out, "DaemonSet", "pmem-csi-intel-com-node");
	CHECK(ds != NULL);
	CHECK_STR(jv_string(jv_object_get(container(ds, "external-provisioner"), "image")), old->provisioner);
	CHECK_STR(jv_string(jv_object_get(container(ds, "node-driver-registrar"), "image")), "example.org/registrar:v9");
	jv_unref(out);
	jv_unref(cr);
	jv_unref(tmpl);
}
