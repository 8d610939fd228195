/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

struct k8s_client;
struct jv;
struct operator_metrics;

#define OPERATOR_FIELD_MANAGER "pmem-csi-operator"
#define OPERATOR_CRD_PATH "/apis/pmem-csi.intel.com/v1beta1/pmemcsideployments"

struct operator {
	struct k8s_client *client;
	const char *namespace;
	const char *default_image;
	struct jv *manifest; /* the embedded objects (JSON array) */
	struct operator_metrics *metrics; /* NULL: no metrics (-metrics-addr=0) */
};

/**
 * operator_reconcile() - apply the objects of one PmemCSIDeployment (server-side apply,
 * forced, as field manager pmem-csi-operator) and write its status: phase Running or
 * Failed with the reason, the CertsVerified, CertsReady and DriverDeployed conditions
 * and the Controller and Node components from the Deployment and DaemonSet status.
 * The driver certificates (certs.h) come first. Counted in op->metrics. Returns the
 * error that made the phase Failed, 0 otherwise.
 */
int operator_reconcile(struct operator *op, const struct jv *cr);
