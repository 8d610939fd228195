/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which external-provisioner and node-driver-registrar a PmemCSIDeployment gets when
 * its provisionerImage / nodeRegistrarImage are empty, by the cluster's Kubernetes
 * minor.
 *
 * What decides it (the sidecars' release notes and compatibility tables at
 * kubernetes-csi.github.io, and the Kubernetes API history):
 *  - the node DaemonSet runs external-provisioner with --node-deployment and
 *    --enable-capacity: it publishes CSIStorageCapacity objects with
 *    maximumVolumeSize. That API is storage.k8s.io/v1beta1 from Kubernetes 1.21 and
 *    v1 from 1.24; v1beta1 is gone in 1.27. Before 1.21 there is only the alpha
 *    API, off unless the cluster turns it on, and released provisioners with
 *    maximumVolumeSize fail to list it: the driver as deployed cannot run there,
 *    hence OPERATOR_KUBE_MIN_MINOR.
 *  - external-provisioner v3.0 (CSIStorageCapacity beta, recommended for 1.22)
 *    talks v1beta1 only; from v3.2 it uses v1 and falls back to v1beta1. Every
 *    release from v3.0 to v5.3 states minimum Kubernetes 1.20; the rows pick, per
 *    range of minors, a release whose recommended Kubernetes version is in it, so
 *    that a cluster runs a sidecar built and tested against its own API era.
 *  - node-driver-registrar states minimum Kubernetes 1.13 in every 2.x release (it
 *    talks only to the kubelet); the rows pair it by release era likewise.
 *  - the newest row is what deploy/generated ships and what CI runs against
 *    kubelet/kube-apiserver 1.32 (test/unit/test-operator.c checks it equals the
 *    embedded manifest). A minor newer than the table gets it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/macro.h"
#include "basic/strutil.h"
#include "json/json.h"
#include "sidecars.h"

#define REG "registry.k8s.io/sig-storage/"

static const struct operator_sidecars table[] = {
	{ 21, 23, REG "csi-provisioner:v3.0.0", REG "csi-node-driver-registrar:v2.5.1",
	  "CSIStorageCapacity is v1beta1 only before 1.24; external-provisioner v3.0 (recommended for 1.22) "
	  "uses it" },
	{ 24, 26, REG "csi-provisioner:v3.4.1", REG "csi-node-driver-registrar:v2.7.0",
	  "CSIStorageCapacity v1 (1.24); external-provisioner v3.4 is recommended for 1.26" },
	{ 27, 28, REG "csi-provisioner:v3.6.0", REG "csi-node-driver-registrar:v2.9.0",
	  "CSIStorageCapacity v1beta1 is gone (1.27); external-provisioner v3.6 is recommended for 1.27" },
	{ 29, 31, REG "csi-provisioner:v5.2.0", REG "csi-node-driver-registrar:v2.13.0",
	  "external-provisioner v5.2 is recommended for 1.29 and 1.31" },
	{ 32, 0, REG "csi-provisioner:v5.3.0", REG "csi-node-driver-registrar:v2.14.0",
	  "the releases deploy/generated ships, tested in CI with Kubernetes 1.32" },
};

const struct operator_sidecars *operator_sidecars_table(unsigned *ret_n)
{
	*ret_n = ELEMENTSOF(table);
	return table;
}

const struct operator_sidecars *operator_sidecars_for(unsigned major, unsigned minor)
{
	if (major > 1)
		return &table[ELEMENTSOF(table) - 1];
	if (major < 1 || minor < OPERATOR_KUBE_MIN_MINOR)
		return NULL;
	for (size_t i = 0; i < ELEMENTSOF(table); i++)
		if (minor >= table[i].min_minor && (table[i].max_minor == 0 || minor <= table[i].max_minor))
			return &table[i];
	return &table[ELEMENTSOF(table) - 1];
}

/* Leading decimal digits of s (at most 6) as a number; -EINVAL without any. *ret_end after them. */
static int leading_uint(const char *s, unsigned *ret, const char **ret_end)
{
	unsigned v = 0;
	size_t n = 0;

	while (s[n] >= '0' && s[n] <= '9') {
		if (n == 6)
			return -EINVAL;
		v = v * 10 + (unsigned)(s[n] - '0');
		n++;
	}
	if (n == 0)
		return -EINVAL;
	*ret = v;
	*ret_end = s + n;
	return 0;
}

int operator_kube_version_parse(const struct jv *version, struct operator_kube_version *ret)
{
	const char *major = jv_string(jv_object_get(version, "major"));
	const char *minor = jv_string(jv_object_get(version, "minor"));
	const char *git = jv_string(jv_object_get(version, "gitVersion"));
	struct operator_kube_version v = {};
	const char *end;

	if (git)
		snprintf(v.git, sizeof(v.git), "%s", git);
	/* "minor" may be "27+" (a distribution's build): the digits count. */
	if (major && minor && leading_uint(major, &v.major, &end) == 0 && *end == '\0' &&
	    leading_uint(minor, &v.minor, &end) == 0 && (*end == '\0' || *end == '+')) {
		*ret = v;
		return 0;
	}
	/* gitVersion: v<major>.<minor>.<patch>[-suffix] */
	if (!git || git[0] != 'v' || leading_uint(git + 1, &v.major, &end) < 0 || *end != '.' ||
	    leading_uint(end + 1, &v.minor, &end) < 0 || (*end != '.' && *end != '\0' && *end != '-' && *end != '+'))
		return -EINVAL;
	*ret = v;
	return 0;
}
