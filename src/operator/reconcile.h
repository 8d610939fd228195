/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>

#include "sidecars.h"

struct k8s_client;
struct jv;
struct leader;
struct operator_metrics;

#define OPERATOR_FIELD_MANAGER "pmem-csi-operator"
#define OPERATOR_CRD_PATH "/apis/pmem-csi.intel.com/v1beta1/pmemcsideployments"

struct operator {
	struct k8s_client *client;
	const char *namespace;
	const char *default_image;
	struct jv *manifest;              /* the embedded objects (JSON array) */
	struct leader *leader;            /* NULL: no leader election, always reconcile */
	struct operator_metrics *metrics; /* NULL: no metrics (-metrics-addr=0) */
	/* The cluster's version (GET /version), cached: read at start and on every resync,
	 * used by the worker thread only. kube_known false: not read yet. */
	struct operator_kube_version kube;
	bool kube_known;
};

/**
 * operator_kube_version_refresh() - read GET /version into op->kube. *ret_changed
 * (may be NULL) tells whether it differs from the version known before (false on the
 * first read). -errno with ret_err when the API server did not answer usably; the
 * cached version stays.
 */
int operator_kube_version_refresh(struct operator *op, bool *ret_changed, char **ret_err);

/**
 * operator_reconcile() - check one PmemCSIDeployment, make its certificates (certs.h),
 * apply its objects (server-side apply, forced, as field manager pmem-csi-operator) and
 * write its status: phase Running or Failed with the reason, the CertsVerified,
 * CertsReady and DriverDeployed conditions and the Controller and Node components from
 * the Deployment and DaemonSet status. Empty sidecar image fields get the images for
 * the cluster's version (op->kube, sidecars.h). A CR that cannot be deployed (an
 * invalid name or image reference, a cluster older than 1.OPERATOR_KUBE_MIN_MINOR, a
 * node selector that overlaps an older CR's, a device mode change while the driver has
 * PersistentVolumes or pods with inline volumes) fails before anything is written. Events (NewDeployment,
 * Running, Failed) are recorded when the phase or reason changes. Stops at once,
 * without writing, when this replica is not the leader (any more). Counted in
 * op->metrics. Returns the error that made the phase Failed, 0 otherwise.
 */
int operator_reconcile(struct operator *op, const struct jv *cr);

/**
 * operator_refresh_status() - only rewrite the components of a Running CR's status
 * from its workloads' status (3 requests instead of a whole reconcile; phase, reason
 * and conditions stay): for events that changed nothing but a DaemonSet's or
 * Deployment's status. A CR that is not Running is reconciled.
 */
int operator_refresh_status(struct operator *op, const struct jv *cr);

/** operator_name_valid() - name is a CSI driver name: a DNS subdomain of at most 63 characters. */
bool operator_name_valid(const char *name);

/**
 * operator_image_valid() - ref is a container image reference as the distribution
 * grammar defines it ([domain[:port]/]path[:tag][@algorithm:hex]).
 */
bool operator_image_valid(const char *ref);

/** operator_selector_matches() - every key=value of selector (an object) is in labels. */
bool operator_selector_matches(const struct jv *selector, const struct jv *labels);
