/* SPDX-License-Identifier: Apache-2.0 */
#include "driver.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/keylock.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "csi.pb-c.h"
#include "ownership.h"
#include "snapshot.h"

struct csi_driver {
	struct csi_driver_config cfg;
	char *topology_key;
	struct keylock *locks;
	struct pmem_manager *pm;
	struct ownership *ownership;
	struct csi_snapshots *snapshots;
	atomic_bool ready;
	_Atomic int64_t state_check_ms; /* see csi_driver_state_check_due() */

	pthread_mutex_t lock; /* protects vols */
	struct volume_record *vols; /* sorted by id */
	size_t n_vols, cap_vols;
};

int csi_driver_new(const struct csi_driver_config *cfg, struct csi_driver **ret)
{
	struct csi_driver *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->cfg = *cfg;
	d->topology_key = xasprintf("%s/node", cfg->name);
	d->locks = keylock_new();
	pthread_mutex_init(&d->lock, NULL);
	if (!d->topology_key || !d->locks || ownership_new(&d->ownership) < 0 ||
	    csi_snapshots_new(&d->snapshots) < 0) {
		csi_driver_free(d);
		return -ENOMEM;
	}
	*ret = d;
	return 0;
}

void csi_driver_free(struct csi_driver *d)
{
	if (!d)
		return;
	volume_record_array_free(d->vols, d->n_vols);
	pmem_manager_free(d->pm);
	ownership_free(d->ownership);
	csi_snapshots_free(d->snapshots);
	keylock_free(d->locks);
	free(d->topology_key);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

const struct csi_driver_config *csi_driver_cfg(struct csi_driver *d)
{
	return &d->cfg;
}

struct pmem_manager *csi_driver_pm(struct csi_driver *d)
{
	return d->pm;
}

struct ownership *csi_driver_ownership(struct csi_driver *d)
{
	return d->ownership;
}

struct csi_snapshots *csi_driver_snapshots(struct csi_driver *d)
{
	return d->snapshots;
}

bool csi_driver_state_check_due(struct csi_driver *d)
{
	struct timespec ts;
	int64_t now, last;

	/* The coarse clock is read without a system call (vDSO). */
	if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) < 0)
		return true;
	now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	last = atomic_load(&d->state_check_ms);
	if (last != 0 && now - last < 1000 && now >= last)
		return false;
	return atomic_compare_exchange_strong(&d->state_check_ms, &last, now);
}

bool csi_driver_ready(struct csi_driver *d)
{
	return atomic_load(&d->ready);
}

const char *csi_driver_topology_key(struct csi_driver *d)
{
	return d->topology_key;
}

int csi_driver_lock(struct csi_driver *d, const char *id)
{
	return keylock_lock(d->locks, id);
}

void csi_driver_unlock(struct csi_driver *d, const char *id)
{
	keylock_unlock(d->locks, id);
}

void csi_driver_capacity(struct csi_driver *d, struct pmem_capacity *ret)
{
	if (!csi_driver_ready(d)) {
		memset(ret, 0, sizeof(*ret));
		return;
	}
	pmem_capacity(d->pm, ret);
}

void csi_driver_unowned(struct csi_driver *d, uint64_t *ret_unreadable_state, uint64_t *ret_no_state)
{
	ownership_unowned_count(d, ret_unreadable_state, ret_no_state);
}

int volume_record_copy(const struct volume_record *src, struct volume_record *dst)
{
	struct volume_record r = *src;

	r.params.name = src->params.name ? strdup(src->params.name) : NULL;
	r.params.device_mode = src->params.device_mode ? strdup(src->params.device_mode) : NULL;
	r.params.fs_type = src->params.fs_type ? strdup(src->params.fs_type) : NULL;
	if ((src->params.name && !r.params.name) || (src->params.device_mode && !r.params.device_mode) ||
	    (src->params.fs_type && !r.params.fs_type)) {
		volume_record_done(&r);
		return -ENOMEM;
	}
	*dst = r;
	return 0;
}

void volume_record_array_free(struct volume_record *r, size_t n)
{
	if (!r)
		return;
	for (size_t i = 0; i < n; i++)
		volume_record_done(&r[i]);
	free(r);
}

/* Index of the first record with id >= key. Lock held. */
static size_t lower_bound(struct csi_driver *d, const char *key)
{
	size_t lo = 0, hi = d->n_vols;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (strcmp(d->vols[mid].id, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int csi_volume_lookup(struct csi_driver *d, const char *id, struct volume_record *ret)
{
	size_t i;
	int r = -ENOENT;

	pthread_mutex_lock(&d->lock);
	i = lower_bound(d, id);
	if (i < d->n_vols && strcmp(d->vols[i].id, id) == 0)
		r = volume_record_copy(&d->vols[i], ret);
	pthread_mutex_unlock(&d->lock);
	return r;
}

int csi_volume_add(struct csi_driver *d, const struct volume_record *rec)
{
	struct volume_record copy;
	size_t i;
	int r;

	r = volume_record_copy(rec, &copy);
	if (r < 0)
		return r;
	pthread_mutex_lock(&d->lock);
	i = lower_bound(d, rec->id);
	if (i < d->n_vols && strcmp(d->vols[i].id, rec->id) == 0) {
		volume_record_done(&d->vols[i]);
		d->vols[i] = copy;
		pthread_mutex_unlock(&d->lock);
		return 0;
	}
	if (d->n_vols == d->cap_vols) {
		size_t ncap = d->cap_vols ? d->cap_vols * 2 : 64;
		struct volume_record *n = realloc(d->vols, ncap * sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&d->lock);
			volume_record_done(&copy);
			return -ENOMEM;
		}
		d->vols = n;
		d->cap_vols = ncap;
	}
	memmove(&d->vols[i + 1], &d->vols[i], (d->n_vols - i) * sizeof(*d->vols));
	d->vols[i] = copy;
	d->n_vols++;
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* Lock held. */
static void remove_at(struct csi_driver *d, const char *id)
{
	size_t i = lower_bound(d, id);

	if (i < d->n_vols && strcmp(d->vols[i].id, id) == 0) {
		volume_record_done(&d->vols[i]);
		memmove(&d->vols[i], &d->vols[i + 1], (d->n_vols - i - 1) * sizeof(*d->vols));
		d->n_vols--;
	}
}

void csi_volume_remove(struct csi_driver *d, const char *id)
{
	pthread_mutex_lock(&d->lock);
	remove_at(d, id);
	pthread_mutex_unlock(&d->lock);
}

int csi_volume_remove_if(struct csi_driver *d, const char *id, int (*fn)(const char *id, void *ud), void *ud)
{
	int r;

	pthread_mutex_lock(&d->lock);
	r = fn(id, ud);
	if (r >= 0)
		remove_at(d, id);
	pthread_mutex_unlock(&d->lock);
	return r;
}

int csi_volume_foreach(struct csi_driver *d, int (*fn)(const struct volume_record *rec, void *ud), void *ud)
{
	int r = 0;

	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; r >= 0 && i < d->n_vols; i++)
		r = fn(&d->vols[i], ud);
	pthread_mutex_unlock(&d->lock);
	return r;
}

int csi_volume_page(struct csi_driver *d, const char *after, size_t max, struct volume_record **ret,
		    size_t *ret_n, bool *ret_more)
{
	struct volume_record *out;
	size_t start, n, i;
	int r = 0;

	pthread_mutex_lock(&d->lock);
	start = 0;
	if (after) {
		start = lower_bound(d, after);
		if (start < d->n_vols && strcmp(d->vols[start].id, after) == 0)
			start++;
	}
	n = d->n_vols - start;
	if (max && n > max)
		n = max;
	out = calloc(n ? n : 1, sizeof(*out));
	if (!out)
		r = -ENOMEM;
	for (i = 0; r >= 0 && i < n; i++)
		r = volume_record_copy(&d->vols[start + i], &out[i]);
	*ret_more = start + n < d->n_vols;
	pthread_mutex_unlock(&d->lock);
	if (r < 0) {
		volume_record_array_free(out, i);
		return r;
	}
	*ret = out;
	*ret_n = n;
	return 0;
}

int csi_driver_attach(struct csi_driver *d, struct pmem_manager *pm)
{
	int r;

	d->pm = pm;
	/* Snapshots first: their devices are then known, not reported as foreign. */
	r = csi_snapshots_reconcile(d);
	if (r < 0)
		return r;
	r = ownership_reconcile(d);
	if (r < 0)
		return r;
	atomic_store(&d->ready, true);
	return 0;
}

/* util ---------------------------------------------------------------------- */

int csi_oom(struct csi_call *c)
{
	return csi_fail(c, CSI_CODE_RESOURCE_EXHAUSTED, "out of memory");
}

Csi__V1__Topology *csi_topology(struct csi_call *c, struct csi_driver *d)
{
	Csi__V1__Topology *t = CSI_NEW(c, Csi__V1__Topology, csi__v1__topology__init);
	Csi__V1__Topology__SegmentsEntry *e =
		CSI_NEW(c, Csi__V1__Topology__SegmentsEntry, csi__v1__topology__segments_entry__init);
	Csi__V1__Topology__SegmentsEntry **arr = CSI_NEW_ARRAY(c, Csi__V1__Topology__SegmentsEntry *, 1);

	if (!t || !e || !arr)
		return NULL;
	e->key = (char *)d->topology_key;
	e->value = (char *)d->cfg.node_id;
	arr[0] = e;
	t->n_segments = 1;
	t->segments = arr;
	return t;
}

int csi_check_ready(struct csi_call *c, struct csi_driver *d)
{
	if (!csi_driver_ready(d))
		return csi_fail(c, CSI_CODE_UNAVAILABLE, "the driver is still setting up PMEM, try again later");
	return 0;
}

int csi_volume_call(struct csi_call *c, struct csi_driver *d, const char *id,
		    int (*fn)(struct csi_call *c, struct csi_driver *d, const char *id, void *ud), void *ud)
{
	int r;

	snprintf(c->volume, sizeof(c->volume), "%s", id);
	if (csi_check_ready(c, d) < 0)
		return -1;
	r = csi_driver_lock(d, id);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot lock volume %s", id);
	r = fn(c, d, id, ud);
	csi_driver_unlock(d, id);
	return r;
}

int csi_unimplemented(struct csi_call *c, void *ud _unused_, const ProtobufCMessage *req _unused_,
		      ProtobufCMessage **ret _unused_)
{
	return csi_fail(c, CSI_CODE_UNIMPLEMENTED, "%s is not supported by this driver", c->method);
}

#define M(svc, name, type, fn, slow)                                                           \
	{                                                                                      \
		"/csi.v1." svc "/" name, &csi__v1__##type##__descriptor, fn, slow              \
	}

static const struct csi_method methods[] = {
	M("Identity", "GetPluginInfo", get_plugin_info_request, csi_identity_get_plugin_info, false),
	M("Identity", "GetPluginCapabilities", get_plugin_capabilities_request,
	  csi_identity_get_plugin_capabilities, false),
	M("Identity", "Probe", probe_request, csi_identity_probe, false),
	M("Controller", "CreateVolume", create_volume_request, csi_controller_create_volume, true),
	M("Controller", "DeleteVolume", delete_volume_request, csi_controller_delete_volume, true),
	M("Controller", "ControllerPublishVolume", controller_publish_volume_request, csi_unimplemented,
	  false),
	M("Controller", "ControllerUnpublishVolume", controller_unpublish_volume_request, csi_unimplemented,
	  false),
	M("Controller", "ValidateVolumeCapabilities", validate_volume_capabilities_request,
	  csi_controller_validate_volume_capabilities, false),
	M("Controller", "ListVolumes", list_volumes_request, csi_controller_list_volumes, false),
	M("Controller", "GetCapacity", get_capacity_request, csi_controller_get_capacity, false),
	M("Controller", "ControllerGetCapabilities", controller_get_capabilities_request,
	  csi_controller_get_capabilities, false),
	M("Controller", "CreateSnapshot", create_snapshot_request, csi_controller_create_snapshot, true),
	M("Controller", "DeleteSnapshot", delete_snapshot_request, csi_controller_delete_snapshot, true),
	M("Controller", "ListSnapshots", list_snapshots_request, csi_controller_list_snapshots, false),
	M("Controller", "GetSnapshot", get_snapshot_request, csi_unimplemented, false),
	M("Controller", "ControllerExpandVolume", controller_expand_volume_request, csi_controller_expand_volume,
	  true),
	M("Controller", "ControllerGetVolume", controller_get_volume_request, csi_unimplemented, false),
	M("Controller", "ControllerModifyVolume", controller_modify_volume_request, csi_unimplemented, false),
	M("Node", "NodeStageVolume", node_stage_volume_request, csi_node_stage_volume, true),
	M("Node", "NodeUnstageVolume", node_unstage_volume_request, csi_node_unstage_volume, true),
	M("Node", "NodePublishVolume", node_publish_volume_request, csi_node_publish_volume, true),
	M("Node", "NodeUnpublishVolume", node_unpublish_volume_request, csi_node_unpublish_volume, true),
	M("Node", "NodeGetVolumeStats", node_get_volume_stats_request, csi_node_get_volume_stats, true),
	M("Node", "NodeExpandVolume", node_expand_volume_request, csi_node_expand_volume, true),
	M("Node", "NodeGetCapabilities", node_get_capabilities_request, csi_node_get_capabilities, false),
	M("Node", "NodeGetInfo", node_get_info_request, csi_node_get_info, false),
};

const struct csi_method *csi_driver_methods(size_t *ret_n)
{
	*ret_n = ELEMENTSOF(methods);
	return methods;
}
