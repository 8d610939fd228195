/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The scheduler extender and the mutating pod webhook of -mode=webhooks, as
 * intel/pmem-csi 0.7-1.0 had them (pkg/scheduler there):
 *
 *   POST /filter      ExtenderArgs (k8s.io/kube-scheduler/extender/v1) ->
 *                     ExtenderFilterResult: the nodes with enough PMEM for the
 *                     pod's volumes of this driver that do not exist yet
 *   GET|POST /status  "ok"
 *   POST /pod/mutate  AdmissionReview (admission.k8s.io/v1) -> a JSON patch
 *                     that makes the first container request one
 *                     "<driver>/scheduler": the extended resource that the
 *                     scheduler configuration hands to the extender
 *                     (managedResources, ignoredByScheduler)
 *
 * Capacity per node: unlike 1.0, which scraped pmem_amount_max_volume_size
 * from each node pod's metrics endpoint, the extender reads the
 * CSIStorageCapacity objects that every node's external-provisioner
 * (--enable-capacity, --node-deployment) publishes from our GetCapacity: no
 * connection from the controller to the nodes, and the same numbers the
 * scheduler's own volume binding uses. An object counts for node N when its
 * nodeTopology is exactly matchLabels {"<driver>/node": N}, which is what
 * that provisioner writes for this driver's topology.
 *
 * All Kubernetes reads go through struct k8s_getter, so the logic runs
 * against the real API server in production and against canned objects in
 * the fuzz target.
 */

struct jv;

/* Hard limits on what one request can make the extender do. */
#define EXTENDER_NODES_MAX 10000
#define EXTENDER_LOOKUPS_MAX 128 /* PVC and storage class reads per pod */
#define EXTENDER_BODY_MAX (4u * 1024 * 1024)
/* 1.x: a claim without a size is counted as 1 GiB, the driver rounds up anyway. */
#define EXTENDER_DEFAULT_CLAIM_SIZE (1024ull * 1024 * 1024)

/**
 * struct k8s_getter - read one object or list.
 * @get: GET path (an API path, query included); -ENOENT when it does not
 *	exist, other -errno with *ret_err on failure.
 * @userdata: passed to @get.
 */
struct k8s_getter {
	int (*get)(void *userdata, const char *path, struct jv **ret, char **ret_err);
	void *userdata;
};

/**
 * struct pmem_demand - what a pod still needs from a node.
 * @total: bytes of all its volumes of this driver that are not provisioned yet.
 * @largest: the largest of them (each must fit into one volume).
 * @volumes: how many.
 */
struct pmem_demand {
	uint64_t total;
	uint64_t largest;
	unsigned volumes;
};

/**
 * extender_pod_demand() - sum up the unbound late-binding claims (storage
 * class of @driver, not Immediate), generic ephemeral volumes (claim not
 * created or not bound yet) and CSI inline volumes of @driver ("size") of pod.
 * @ns: the namespace when the pod has none (a webhook request's).
 *
 * Return: 0; -ENOENT (a claim or storage class is missing), -EINVAL (a bad
 * size, a malformed pod), -E2BIG (more than EXTENDER_LOOKUPS_MAX reads),
 * -errno from the API; *ret_err says which volume.
 */
int extender_pod_demand(const struct k8s_getter *g, const char *driver, const struct jv *pod, const char *ns,
			struct pmem_demand *ret, char **ret_err);

/**
 * struct node_capacity - what the CSIStorageCapacity objects say about a node.
 * @known: there is at least one object for the node.
 * @available: the largest "capacity" of them.
 * @max_volume: the largest "maximumVolumeSize" (@available where none is given).
 */
struct node_capacity {
	bool known;
	uint64_t available;
	uint64_t max_volume;
};

/**
 * extender_capacity_index() - index a CSIStorageCapacityList by node, for
 * extender_node_capacity() (one pass over the objects, then one lookup per
 * node: a cluster of thousands of nodes has thousands of objects per class).
 * Return: 0 or -ENOMEM.
 */
int extender_capacity_index(const struct jv *list, const char *driver, struct jv **ret);

/** extender_node_capacity() - the capacity of node in the index; unknown nodes have known == false. */
void extender_node_capacity(const struct jv *index, const char *node, struct node_capacity *ret);

/**
 * extender_filter() - answer a /filter request.
 * @body: the ExtenderArgs ({"Pod", "NodeNames"} or {"Pod", "Nodes"}; the
 *	keys in any case, as Go decodes them).
 * @ret_json: the ExtenderFilterResult (malloc'ed); on a malformed request
 *	one with only "Error" set. Keys as Go encodes the untagged structs:
 *	"NodeNames" (or "Nodes"), "FailedNodes", "Error".
 * @ret_status: 200, or 400 for a malformed request.
 *
 * Problems with the cluster's objects (a missing claim, the API server down)
 * are answered with 200 and "Error", which makes the scheduler retry the pod
 * later, as 1.x did.
 *
 * Return: 0, or -ENOMEM.
 */
int extender_filter(const struct k8s_getter *g, const char *driver, const char *body, size_t len, char **ret_json,
		    size_t *ret_len, unsigned *ret_status);

/**
 * webhook_mutate() - answer a /pod/mutate AdmissionReview.
 * @body: the AdmissionReview (admission.k8s.io/v1) with a Pod.
 * @ret_json: the AdmissionReview with the response (malloc'ed), or a plain
 *	text error for a body that is no AdmissionReview at all.
 * @ret_status: 200, or 400 for a body that is no AdmissionReview.
 * @ret_mutated: whether the pod was marked.
 *
 * As 1.x: a pod without containers is denied; a pod without volumes of this
 * driver is allowed unchanged. Unlike 1.x, a failed lookup (API server
 * unreachable) allows the pod unchanged, with a warning, instead of denying it:
 * the configuration's failurePolicy is Ignore for the same reason.
 *
 * Return: 0, or -ENOMEM.
 */
int webhook_mutate(const struct k8s_getter *g, const char *driver, const char *body, size_t len, char **ret_json,
		   size_t *ret_len, unsigned *ret_status, bool *ret_mutated);

/* Shared by extender.c and webhook.c. */
enum pod_volume_kind {
	POD_VOLUME_OTHER,     /* not this driver's, or provisioned immediately */
	POD_VOLUME_CLAIM,     /* a claim with a late-binding storage class of this driver */
	POD_VOLUME_EPHEMERAL, /* a generic ephemeral volume with such a class */
	POD_VOLUME_INLINE,    /* a CSI inline volume of this driver */
};

/**
 * pod_volume_classify() - what kind of volume vol of a pod is, with at most
 * one claim and one storage class read (counted in *lookups).
 * @ret_claim: for POD_VOLUME_CLAIM, the claim (a new reference, NULL when
 *	it does not exist).
 *
 * A missing claim or storage class is POD_VOLUME_OTHER with -ENOENT.
 */
int pod_volume_classify(const struct k8s_getter *g, const char *driver, const char *ns, const struct jv *vol,
			unsigned *lookups, enum pod_volume_kind *ret, struct jv **ret_claim, char **ret_err);
