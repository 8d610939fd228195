/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>

/*
 * Default sidecar images by the cluster's Kubernetes version. Pure functions: the
 * operator reads GET /version (reconcile.c) and looks the minor up here.
 */

struct jv;

/* The oldest Kubernetes minor (1.x) the driver can run on: see sidecars.c. */
#define OPERATOR_KUBE_MIN_MINOR 21

/** struct operator_kube_version - what GET /version said. */
struct operator_kube_version {
	unsigned major, minor;
	char git[64]; /* gitVersion, e.g. "v1.32.13" ("" when absent) */
};

/** struct operator_sidecars - one row of the table: the images for a range of minors. */
struct operator_sidecars {
	unsigned min_minor, max_minor; /* 1.min_minor - 1.max_minor; max_minor 0: and newer */
	const char *provisioner;       /* external-provisioner image */
	const char *registrar;         /* node-driver-registrar image */
	const char *why;               /* one sentence: why these releases for these minors */
};

/**
 * operator_kube_version_parse() - the major and minor of a GET /version answer.
 * "minor" may carry a suffix ("27+" on some distributions); without usable
 * major/minor, gitVersion ("v1.32.13-gke.1") is parsed. -EINVAL when neither is.
 */
int operator_kube_version_parse(const struct jv *version, struct operator_kube_version *ret);

/**
 * operator_sidecars_for() - the row for Kubernetes major.minor: the newest row for
 * a minor newer than the table knows, NULL for a cluster older than
 * 1.OPERATOR_KUBE_MIN_MINOR (the driver cannot run there). The row is static.
 */
const struct operator_sidecars *operator_sidecars_for(unsigned major, unsigned minor);

/** operator_sidecars_table() - the whole table, oldest row first; *ret_n rows. */
const struct operator_sidecars *operator_sidecars_table(unsigned *ret_n);
