/* SPDX-License-Identifier: Apache-2.0 */
#include "metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "process.h"

/* Enough for the CSI methods times the status codes, with room to spare;
 * a client cannot push the driver past it with made-up method names. */
#define METRICS_MAX_SERIES 2048

enum {
	CAP_AVAILABLE,
	CAP_MANAGED,
	CAP_MAX_VOLUME_SIZE,
	CAP_TOTAL,
	CAP_N,
};

struct metrics {
	struct metrics_registry *registry;
	struct metrics_family *build_info;
	struct metrics_family *operations;
	struct metrics_family *capacity[CAP_N + 1]; /* NULL-terminated */
	char *driver_name;
	char *node;

	/* set_lock serializes metrics_set_capacity_source(); the callback
	 * itself is protected by the registry's scrape lock, which
	 * metrics_collector_remove() takes. */
	pthread_mutex_t set_lock;
	struct metrics_collector *capacity_collector;
	metrics_capacity_fn capacity_fn;
	void *capacity_userdata;

	struct metrics_family *unowned[2]; /* NULL-terminated */
	struct metrics_collector *unowned_collector;
	metrics_unowned_fn unowned_fn;
	void *unowned_userdata;

	int observe_warned; /* atomic: log a dropped observation once */
};

static const struct {
	const char *name;
	const char *path;
} csi_methods[] = {
	{ "GetPluginInfo", "/csi.v1.Identity/GetPluginInfo" },
	{ "GetPluginCapabilities", "/csi.v1.Identity/GetPluginCapabilities" },
	{ "Probe", "/csi.v1.Identity/Probe" },
	{ "CreateVolume", "/csi.v1.Controller/CreateVolume" },
	{ "DeleteVolume", "/csi.v1.Controller/DeleteVolume" },
	{ "ControllerPublishVolume", "/csi.v1.Controller/ControllerPublishVolume" },
	{ "ControllerUnpublishVolume", "/csi.v1.Controller/ControllerUnpublishVolume" },
	{ "ValidateVolumeCapabilities", "/csi.v1.Controller/ValidateVolumeCapabilities" },
	{ "ListVolumes", "/csi.v1.Controller/ListVolumes" },
	{ "GetCapacity", "/csi.v1.Controller/GetCapacity" },
	{ "ControllerGetCapabilities", "/csi.v1.Controller/ControllerGetCapabilities" },
	{ "CreateSnapshot", "/csi.v1.Controller/CreateSnapshot" },
	{ "DeleteSnapshot", "/csi.v1.Controller/DeleteSnapshot" },
	{ "ListSnapshots", "/csi.v1.Controller/ListSnapshots" },
	{ "GetSnapshot", "/csi.v1.Controller/GetSnapshot" },
	{ "ControllerExpandVolume", "/csi.v1.Controller/ControllerExpandVolume" },
	{ "ControllerGetVolume", "/csi.v1.Controller/ControllerGetVolume" },
	{ "ControllerModifyVolume", "/csi.v1.Controller/ControllerModifyVolume" },
	{ "GroupControllerGetCapabilities", "/csi.v1.GroupController/GroupControllerGetCapabilities" },
	{ "CreateVolumeGroupSnapshot", "/csi.v1.GroupController/CreateVolumeGroupSnapshot" },
	{ "DeleteVolumeGroupSnapshot", "/csi.v1.GroupController/DeleteVolumeGroupSnapshot" },
	{ "GetVolumeGroupSnapshot", "/csi.v1.GroupController/GetVolumeGroupSnapshot" },
	{ "NodeStageVolume", "/csi.v1.Node/NodeStageVolume" },
	{ "NodeUnstageVolume", "/csi.v1.Node/NodeUnstageVolume" },
	{ "NodePublishVolume", "/csi.v1.Node/NodePublishVolume" },
	{ "NodeUnpublishVolume", "/csi.v1.Node/NodeUnpublishVolume" },
	{ "NodeGetVolumeStats", "/csi.v1.Node/NodeGetVolumeStats" },
	{ "NodeExpandVolume", "/csi.v1.Node/NodeExpandVolume" },
	{ "NodeGetCapabilities", "/csi.v1.Node/NodeGetCapabilities" },
	{ "NodeGetInfo", "/csi.v1.Node/NodeGetInfo" },
};

const char *metrics_csi_method_path(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < ELEMENTSOF(csi_methods); i++)
		if (strcmp(csi_methods[i].name, name) == 0)
			return csi_methods[i].path;
	return NULL;
}

static int add_families(struct metrics *m, const char *version)
{
	static const double buckets[] = { METRICS_CSI_BUCKETS };
	static const struct {
		const char *name, *help;
	} cap[CAP_N] = {
		/* HELP texts as upstream PMEM-CSI's CapacityCollector. */
		[CAP_AVAILABLE] = { "pmem_amount_available",
				    "Remaining amount of PMEM on the host that can be used for new volumes." },
		[CAP_MANAGED] = { "pmem_amount_managed", "Amount of PMEM on the host that is managed by PMEM-CSI." },
		[CAP_MAX_VOLUME_SIZE] = { "pmem_amount_max_volume_size",
					  "The size of the largest PMEM volume that can be created." },
		[CAP_TOTAL] = { "pmem_amount_total", "Total amount of PMEM on the host." },
	};
	int r;

	r = metrics_registry_add(m->registry, METRICS_TYPE_GAUGE, "build_info",
				 "A metric with a constant '1' value labeled by version.",
				 (const char *const[]){ "version", NULL }, NULL, 0, &m->build_info);
	if (r < 0)
		return r;
	r = metrics_gauge_set(m->build_info, (const char *const[]){ version, NULL }, 1);
	if (r < 0)
		return r;
	/* csi-lib-utils' histogram; "[ALPHA] " is what k8s.io/component-base
	 * prepends to the HELP of alpha-stability metrics. */
	r = metrics_registry_add(m->registry, METRICS_TYPE_HISTOGRAM, "csi_plugin_operations_seconds",
				 "[ALPHA] Container Storage Interface operation duration with gRPC error code status total",
				 (const char *const[]){ "driver_name", "method_name", "grpc_status_code", NULL },
				 buckets, ELEMENTSOF(buckets), &m->operations);
	if (r < 0)
		return r;
	for (size_t i = 0; i < CAP_N; i++) {
		r = metrics_registry_add(m->registry, METRICS_TYPE_GAUGE, cap[i].name, cap[i].help,
					 (const char *const[]){ "driver_name", "node", NULL }, NULL, 0,
					 &m->capacity[i]);
		if (r < 0)
			return r;
	}
	r = metrics_registry_add(m->registry, METRICS_TYPE_GAUGE, "pmem_csi_unowned_devices",
				 "PMEM devices that are not volumes of this driver and are left alone: reason "
				 "\"unreadable_state\" (a state record that cannot be read) or \"no_state\" "
				 "(made by hand, or its record was lost).",
				 (const char *const[]){ "driver_name", "node", "reason", NULL }, NULL, 0, &m->unowned[0]);
	if (r < 0)
		return r;
	return metrics_process_register(m->registry);
}

int metrics_new(const char *driver_name, const char *node, const char *version, struct metrics **ret)
{
	struct metrics *m;
	int r;

	if (!driver_name || !node || !version || !ret)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->set_lock, NULL);
	m->driver_name = strdup(*driver_name ? driver_name : "unknown-driver");
	m->node = strdup(node);
	if (!m->driver_name || !m->node) {
		r = -ENOMEM;
		goto fail;
	}
	r = metrics_registry_new(METRICS_MAX_SERIES, &m->registry);
	if (r < 0)
		goto fail;
	r = add_families(m, version);
	if (r < 0)
		goto fail;
	*ret = m;
	return 0;
fail:
	metrics_free(m);
	return r;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	metrics_registry_free(m->registry);
	pthread_mutex_destroy(&m->set_lock);
	free(m->driver_name);
	free(m->node);
	free(m);
}

struct metrics_registry *metrics_registry(struct metrics *m)
{
	return m->registry;
}

static void capacity_collect(void *userdata, struct metrics_scrape *s)
{
	struct metrics *m = userdata;
	const char *const labels[] = { m->driver_name, m->node, NULL };
	uint64_t v[CAP_N] = {};

	m->capacity_fn(m->capacity_userdata, &v[CAP_AVAILABLE], &v[CAP_MANAGED], &v[CAP_MAX_VOLUME_SIZE],
		       &v[CAP_TOTAL]);
	for (size_t i = 0; i < CAP_N; i++)
		metrics_scrape_add(s, m->capacity[i], labels, (double)v[i]);
}

void metrics_set_capacity_source(struct metrics *m, metrics_capacity_fn fn, void *userdata)
{
	int r;

	pthread_mutex_lock(&m->set_lock);
	/* Removing the collector waits for a running scrape; only then may the
	 * callback and its userdata change. */
	metrics_collector_remove(m->registry, m->capacity_collector);
	m->capacity_collector = NULL;
	m->capacity_fn = fn;
	m->capacity_userdata = userdata;
	if (fn) {
		r = metrics_collector_add(m->registry, m->capacity, capacity_collect, m, NULL,
					  &m->capacity_collector);
		if (r < 0)
			log_error_errno(r, "Failed to register the PMEM capacity metrics: %m");
	}
	pthread_mutex_unlock(&m->set_lock);
}

static void unowned_collect(void *userdata, struct metrics_scrape *s)
{
	struct metrics *m = userdata;
	uint64_t unreadable = 0, no_state = 0;

	m->unowned_fn(m->unowned_userdata, &unreadable, &no_state);
	metrics_scrape_add(s, m->unowned[0], (const char *const[]){ m->driver_name, m->node, "unreadable_state", NULL },
			   (double)unreadable);
	metrics_scrape_add(s, m->unowned[0], (const char *const[]){ m->driver_name, m->node, "no_state", NULL },
			   (double)no_state);
}

void metrics_set_unowned_source(struct metrics *m, metrics_unowned_fn fn, void *userdata)
{
	int r;

	pthread_mutex_lock(&m->set_lock);
	metrics_collector_remove(m->registry, m->unowned_collector);
	m->unowned_collector = NULL;
	m->unowned_fn = fn;
	m->unowned_userdata = userdata;
	if (fn) {
		r = metrics_collector_add(m->registry, m->unowned, unowned_collect, m, NULL, &m->unowned_collector);
		if (r < 0)
			log_error_errno(r, "Failed to register the unowned device metric: %m");
	}
	pthread_mutex_unlock(&m->set_lock);
}

void metrics_observe_call(struct metrics *m, const char *method, const char *status_name, double seconds)
{
	const char *path;
	int r;

	if (!m || !method || !status_name)
		return;
	path = method[0] == '/' ? method : metrics_csi_method_path(method);
	if (!path)
		path = method;
	r = metrics_histogram_observe(m->operations, (const char *const[]){ m->driver_name, path, status_name, NULL },
				      seconds);
	if (r < 0 && !__atomic_exchange_n(&m->observe_warned, 1, __ATOMIC_RELAXED)) {
		char safe[65];
		size_t i;

		/* The method may be what a client sent: log printable ASCII only. */
		for (i = 0; i < sizeof(safe) - 1 && path[i]; i++)
			safe[i] = path[i] >= 0x20 && path[i] < 0x7f ? path[i] : '?';
		safe[i] = 0;
		log_warning_errno(r, "Dropping CSI call metrics for method \"%s\" (further drops are not logged): %m",
				  safe);
	}
}

int metrics_render(struct metrics *m, bool simple, char **ret, size_t *ret_len)
{
	struct metrics_family *const only[] = { m->build_info, NULL };

	return metrics_registry_render(m->registry, simple ? only : NULL, ret, ret_len);
}
