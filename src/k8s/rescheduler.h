/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * The rescheduler of -mode=webhooks (as in intel/pmem-csi 1.x): with late
 * binding, the scheduler writes the chosen node into a PVC's
 * "volume.kubernetes.io/selected-node" annotation and waits for the
 * external-provisioner on that node. When that node cannot run the driver,
 * nobody ever provisions and the pod stays pending; removing the annotation
 * makes the scheduler choose again.
 */

#define K8S_ANN_SELECTED_NODE "volume.kubernetes.io/selected-node"

struct jv;
struct k8s_client;

struct k8s_selector {
	const char *const *keys, *const *values;
	size_t n;
};

enum k8s_reschedule {
	K8S_KEEP_NOT_OURS,     /* not a pending PVC of this driver with a selected node */
	K8S_KEEP_RUNNING,      /* the driver is registered on the node (CSINode) */
	K8S_KEEP_EXPECTED,     /* not registered yet, but the node's labels match the selector */
	K8S_RESCHEDULE_NO_NODE,   /* the node does not exist */
	K8S_RESCHEDULE_NO_LABELS, /* the node's labels do not match: the driver cannot run there */
};

/**
 * k8s_pvc_selected_node() - the selected node of a pending PVC provisioned by
 * driver, or NULL (borrowed from pvc).
 */
const char *k8s_pvc_selected_node(const struct jv *pvc, const char *driver);

/**
 * k8s_reschedule_decide() - what to do with a PVC whose selected node has
 * CSINode csinode and Node node (NULL: the object does not exist).
 */
enum k8s_reschedule k8s_reschedule_decide(const char *driver, const struct k8s_selector *sel,
					  const struct jv *csinode, const struct jv *node);

struct k8s_rescheduler_stats {
	unsigned pending;     /* pending PVCs of the driver with a selected node */
	unsigned rescheduled; /* annotations removed in this pass */
	unsigned errors;      /* API calls that failed */
};

/**
 * k8s_rescheduler_pass() - look at every PVC once and remove the annotation
 * where the selected node cannot run the driver. The removal is a JSON patch
 * that first tests the annotation's value, so a node chosen again in the
 * meantime is never undone. Returns < 0 when the PVCs could not be listed.
 */
int k8s_rescheduler_pass(struct k8s_client *c, const char *driver, const struct k8s_selector *sel,
			 struct k8s_rescheduler_stats *ret, char **ret_err);
