/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Controller service, node-local (distributed provisioning): each node's
 * external-provisioner calls CreateVolume/DeleteVolume on its own node's
 * driver. What these calls may touch, and the order of steps that keeps it
 * true across crashes, is decided in ownership.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"
#include "basic/strutil.h"
#include "cache.h"
#include "caps.h"
#include "csi.pb-c.h"
#include "driver.h"
#include "ownership.h"
#include "snapshot.h"
#include "fs/fs.h"
#include "pmem/blockdev.h"

#define ALLOC_ALIGN (4 * MiB)
#define MAX_PARAMS 64

/* Installed by cache.c when the peer channel runs (one driver per process). */
static const struct csi_cache_hooks *cache_hooks;

void csi_cache_set_hooks(const struct csi_cache_hooks *hooks)
{
	cache_hooks = hooks;
}

struct create_args {
	uint64_t required, limit, alloc;
	struct csi_caps_summary caps;
};

/* Collect a protobuf map into parallel key/value arrays (borrowed). */
#define MAP_TO_ARRAYS(entries, n, keys, values)            \
	do {                                               \
		for (size_t _i = 0; _i < (n); _i++) {      \
			(keys)[_i] = (entries)[_i]->key;   \
			(values)[_i] = (entries)[_i]->value; \
		}                                          \
	} while (0)

static int check_size(struct csi_call *c, const Csi__V1__CapacityRange *cr, struct create_args *a)
{
	char b1[32], b2[32];

	if (cr) {
		if (cr->required_bytes < 0 || cr->limit_bytes < 0)
			return csi_fail(c, CSI_CODE_OUT_OF_RANGE, "capacity_range must not be negative");
		a->required = (uint64_t)cr->required_bytes;
		a->limit = (uint64_t)cr->limit_bytes;
		if (a->limit && a->required > a->limit)
			return csi_fail(c, CSI_CODE_OUT_OF_RANGE,
					"capacity_range.required_bytes %" PRIu64 " exceeds limit_bytes %" PRIu64,
					a->required, a->limit);
	}
	a->alloc = a->required ? a->required : ALLOC_ALIGN;
	/* xfsprogs refuses filesystems under 300 MB: give such volumes 300 MiB
	 * rather than failing later in NodeStageVolume. */
	if (a->caps.mount && strcmp(a->caps.fs_type, "xfs") == 0 && a->alloc < FS_XFS_MIN_SIZE) {
		if (a->limit && a->limit < FS_XFS_MIN_SIZE)
			return csi_fail(c, CSI_CODE_OUT_OF_RANGE,
					"xfs needs at least %s, but limit_bytes is %s",
					format_bytes(b1, sizeof(b1), FS_XFS_MIN_SIZE),
					format_bytes(b2, sizeof(b2), a->limit));
		a->alloc = FS_XFS_MIN_SIZE;
	}
	a->alloc = round_up_u64(a->alloc, ALLOC_ALIGN);
	if (a->alloc == 0 || a->alloc > INT64_MAX)
		return csi_fail(c, CSI_CODE_OUT_OF_RANGE, "capacity_range.required_bytes is too large");
	if (a->limit && a->alloc > a->limit) {
		/* Rounding up would pass the limit: round down if that still fits. */
		uint64_t down = a->limit - a->limit % ALLOC_ALIGN;
		if (down < a->required || down == 0)
			return csi_fail(c, CSI_CODE_OUT_OF_RANGE,
					"no size between required_bytes %" PRIu64 " and limit_bytes %" PRIu64
					" is a multiple of the 4 MiB allocation unit",
					a->required, a->limit);
		a->alloc = down;
	}
	return 0;
}

static bool topology_allows(struct csi_driver *d, const Csi__V1__TopologyRequirement *req)
{
	const char *key = csi_driver_topology_key(d), *node = csi_driver_cfg(d)->node_id;

	if (!req || req->n_requisite == 0)
		return true;
	for (size_t i = 0; i < req->n_requisite; i++) {
		bool ours = true;
		for (size_t j = 0; j < req->requisite[i]->n_segments; j++) {
			const Csi__V1__Topology__SegmentsEntry *s = req->requisite[i]->segments[j];
			if (strcmp(s->key, key) == 0 && strcmp(s->value, node) != 0)
				ours = false;
		}
		if (ours)
			return true;
	}
	return false;
}

static Csi__V1__Volume *make_volume(struct csi_call *c, struct csi_driver *d, const struct volume_record *rec,
				    bool with_context)
{
	Csi__V1__Volume *v = CSI_NEW(c, Csi__V1__Volume, csi__v1__volume__init);
	Csi__V1__Topology **topo = CSI_NEW_ARRAY(c, Csi__V1__Topology *, 1);

	if (!v || !topo)
		return NULL;
	v->volume_id = arena_strdup(c->arena, rec->id);
	v->capacity_bytes = (int64_t)rec->size;
	topo[0] = csi_topology(c, d);
	if (!v->volume_id || !topo[0])
		return NULL;
	v->n_accessible_topology = 1;
	v->accessible_topology = topo;
	if (with_context) {
		/* The volume context reaches NodeStage/NodePublish; it carries the
		 * parameters as upstream did, so that PVs created by either
		 * driver look alike. */
		const char *keys[10], *values[10];
		size_t n = volume_params_to_pairs(&rec->params, keys, values, 10);
		Csi__V1__Volume__VolumeContextEntry **ctx =
			CSI_NEW_ARRAY(c, Csi__V1__Volume__VolumeContextEntry *, n);
		size_t m = 0;
		if (!ctx)
			return NULL;
		for (size_t i = 0; i < n; i++) {
			Csi__V1__Volume__VolumeContextEntry *e;
			if (strcmp(keys[i], "deviceMode") == 0)
				continue;
			e = CSI_NEW(c, Csi__V1__Volume__VolumeContextEntry, csi__v1__volume__volume_context_entry__init);
			if (!e)
				return NULL;
			e->key = (char *)keys[i];
			e->value = arena_strdup(c->arena, values[i]);
			if (!e->value)
				return NULL;
			ctx[m++] = e;
		}
		v->n_volume_context = m;
		v->volume_context = ctx;
	}
	return v;
}

static int respond_volume(struct csi_call *c, struct csi_driver *d, const struct volume_record *rec,
			  ProtobufCMessage **ret)
{
	Csi__V1__CreateVolumeResponse *resp =
		CSI_NEW(c, Csi__V1__CreateVolumeResponse, csi__v1__create_volume_response__init);

	if (!resp || !(resp->volume = make_volume(c, d, rec, true)))
		return csi_oom(c);
	*ret = &resp->base;
	return 0;
}

/* A failed create after the device exists: device, record, marker, in that
 * order. erase: the device holds a copy of another volume's data (a clone). */
static void undo_create(struct pmem_manager *pm, const char *state_dir, const char *id, bool erase)
{
	int r = pmem_delete(pm, id, erase);

	if (r < 0 && r != -ENOENT) {
		/* The marker stays: the next start removes the device. */
		log_warning_errno(r, "Cannot remove the device of the failed volume %s: %m", id);
		return;
	}
	(void)state_remove(state_dir, id);
	(void)state_intent_clear(state_dir, id, "copying");
	(void)state_intent_clear(state_dir, id, "creating");
}

/*
 * The content of a clone, copied while the "creating" marker stands (a crash
 * makes the next start remove the device, as for any create cut off). The
 * "copying" marker beside it tells that start to erase what was copied.
 */
static int clone_content(struct csi_call *c, const char *state_dir, const char *id, const struct csi_clone *clone,
			 const struct pmem_device *dev)
{
	int r;

	if (dev->size < clone->content)
		return csi_fail(c, CSI_CODE_INTERNAL, "the device for volume %s has %" PRIu64
				" bytes, less than the %" PRIu64 " bytes of %s", id, dev->size, clone->content,
				clone->source_id);
	r = state_intent_set(state_dir, id, "copying");
	if (r < 0)
		return csi_fail_errno(c, r, "cannot write the state of volume %s", id);
	return csi_clone_copy(c, clone, id, dev->path);
}

static int volume_create(struct csi_call *c, struct csi_driver *d, const char *name, const char *id,
			 uint64_t required, uint64_t limit, uint64_t alloc, const struct volume_params *params,
			 const struct csi_clone *clone, struct volume_record *ret)
{
	const struct create_args args = { .required = required, .limit = limit, .alloc = alloc }, *a = &args;
	struct pmem_manager *pm = csi_driver_pm(d);
	const char *state_dir = csi_driver_cfg(d)->state_dir;
	struct volume_record rec = {}, existing = {};
	struct pmem_device dev = {};
	char b1[32], b2[32];
	int r;

	r = csi_volume_lookup(d, id, &existing);
	if (r >= 0) {
		bool fits = existing.size >= a->required && (!a->limit || existing.size <= a->limit);
		if (!streq_ptr(existing.params.name, name)) {
			r = csi_fail(c, CSI_CODE_INTERNAL, "volume ID %s of name \"%s\" is already used by \"%s\"", id,
				     name, existing.params.name ? existing.params.name : "?");
		} else if (!fits) {
			r = csi_fail(c, CSI_CODE_ALREADY_EXISTS,
				     "volume \"%s\" already exists with size %" PRIu64 ", which does not match the requested range [%" PRIu64 ", %" PRIu64 "]",
				     name, existing.size, a->required, a->limit);
		} else if (!volume_params_equal(&existing.params, params)) {
			r = csi_fail(c, CSI_CODE_ALREADY_EXISTS,
				     "volume \"%s\" already exists with different parameters", name);
		} else {
			*ret = existing;
			return 0;
		}
		volume_record_done(&existing);
		return r;
	}

	/* Only a free ID: a device or record of this ID that is not a registered
	 * volume is not ours to adopt or overwrite (ownership.c). */
	if (ownership_check_free(c, d, id) < 0)
		return -1;
	r = ownership_check_state_dir(d);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot recreate the state directory %s", state_dir);

	memcpy(rec.id, id, strlen(id) + 1);
	rec.size = a->alloc;
	rec.params = *params;
	rec.params.name = (char *)name;
	rec.params.device_mode = (char *)pmem_manager_mode(pm);
	/* Record first: if we die after the device exists, the record says whose it is. */
	r = state_write(state_dir, &rec);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot write the state of volume %s", id);

	/* Until the device exists and its first 4 KiB are cleared, the "creating"
	 * marker says so: a crash in between makes the next start drop the
	 * half-made device instead of handing out a device with old contents. */
	r = state_intent_set(state_dir, id, "creating");
	if (r < 0) {
		(void)state_remove(state_dir, id);
		return csi_fail_errno(c, r, "cannot write the state of volume %s", id);
	}
	/* On failure the device manager has removed whatever it made. */
	r = pmem_create(pm, id, a->alloc, params->usage, &dev);
	if (r < 0) {
		struct pmem_capacity cap;
		(void)state_remove(state_dir, id);
		(void)state_intent_clear(state_dir, id, "creating");
		if (r == -EEXIST)
			/* Made by someone else since the check above. */
			return ownership_foreign(c, d, id);
		if (r == -EMEDIUMTYPE)
			return csi_fail(c, CSI_CODE_RESOURCE_EXHAUSTED,
					"direct mode cannot create volume %s: the PMEM of this node has no namespace labels "
					"(label-less NVDIMM, memmap= or virtio-pmem), so it cannot hold a namespace per "
					"volume; use LVM mode (after -mode=force-convert-raw-namespaces)",
					id);
		if (r == -ENOSPC) {
			pmem_capacity(pm, &cap);
			return csi_fail(c, CSI_CODE_RESOURCE_EXHAUSTED,
					"not enough PMEM for %s: the largest free space is %s",
					format_bytes(b1, sizeof(b1), a->alloc),
					format_bytes(b2, sizeof(b2), cap.max_volume_size));
		}
		return csi_fail_errno(c, r, "cannot create the device for volume %s", id);
	}
	/* The device can be larger than asked (alignment, whole namespaces); the
	 * CO gets a size within its range, and the state keeps what it got. */
	if (dev.size < a->required) {
		pmem_device_done(&dev);
		undo_create(pm, state_dir, id, false);
		return csi_fail(c, CSI_CODE_INTERNAL, "the device for volume %s has %" PRIu64 " bytes, less than %" PRIu64,
				id, dev.size, a->required);
	}
	if (clone) {
		r = clone_content(c, state_dir, id, clone, &dev);
		if (r < 0) {
			pmem_device_done(&dev);
			undo_create(pm, state_dir, id, params->erase_after);
			return r;
		}
	}
	if (dev.size != rec.size) {
		rec.size = a->limit && dev.size > a->limit ? a->limit : dev.size;
		r = state_write(state_dir, &rec);
		if (r < 0) {
			pmem_device_done(&dev);
			undo_create(pm, state_dir, id, clone && params->erase_after);
			return csi_fail_errno(c, r, "cannot update the state of volume %s", id);
		}
	}
	pmem_device_done(&dev);
	r = state_intent_clear(state_dir, id, "creating");
	if (r < 0) {
		undo_create(pm, state_dir, id, clone && params->erase_after);
		return csi_fail_errno(c, r, "cannot update the state of volume %s", id);
	}
	if (clone)
		(void)state_intent_clear(state_dir, id, "copying");
	r = csi_volume_add(d, &rec);
	if (r < 0) {
		undo_create(pm, state_dir, id, clone && params->erase_after);
		return csi_fail_errno(c, r, "cannot register volume %s", id);
	}
	log_v(2, "Created volume %s (name \"%s\", %" PRIu64 " bytes)", id, name, rec.size);
	return volume_record_copy(&rec, ret) < 0 ? csi_oom(c) : 0;
}

int csi_volume_create_locked(struct csi_call *c, struct csi_driver *d, const char *name, const char *id,
			     uint64_t required, uint64_t limit, uint64_t alloc, const struct volume_params *params,
			     struct volume_record *ret)
{
	return volume_create(c, d, name, id, required, limit, alloc, params, NULL, ret);
}

struct create_call {
	const Csi__V1__CreateVolumeRequest *req;
	const struct create_args *a;
	const struct volume_params *params;
	ProtobufCMessage **ret;
};

/*
 * Sizes of a clone: room for all of the source's content (its whole device,
 * which a filesystem spans). A smaller required_bytes gets the larger volume
 * (the CO sees its capacity); a limit_bytes below the content cannot be met.
 */
static int clone_sizes(struct csi_call *c, const struct csi_clone *cl, struct create_args *a)
{
	char b1[32], b2[32];
	uint64_t need = round_up_u64(cl->content, ALLOC_ALIGN);

	if (a->limit && a->limit < cl->content)
		return csi_fail(c, CSI_CODE_OUT_OF_RANGE,
				"capacity_range.limit_bytes %s is smaller than the source %s (%s)",
				format_bytes(b1, sizeof(b1), a->limit), cl->source_id,
				format_bytes(b2, sizeof(b2), cl->content));
	a->alloc = MAX(a->alloc, need);
	if (a->limit && a->alloc > a->limit)
		a->alloc = cl->content; /* the device manager rounds to what it can make */
	return 0;
}

static int create_fn(struct csi_call *c, struct csi_driver *d, const char *id, void *ud)
{
	struct create_call *cc = ud;
	const Csi__V1__VolumeContentSource *src = cc->req->volume_content_source;
	struct volume_record rec = {};
	struct csi_clone cl = {};
	struct create_args a = *cc->a;
	bool clone = false;
	int r;

	if (src) {
		/* A volume that exists already is answered as it is (idempotency). */
		r = csi_volume_lookup(d, id, &rec);
		volume_record_done(&rec);
		if (r < 0) {
			if (csi_clone_begin(c, d, src, id, &cl) < 0)
				return -1;
			clone = true;
			if (clone_sizes(c, &cl, &a) < 0) {
				csi_clone_end(d, &cl);
				return -1;
			}
		}
	}
	r = volume_create(c, d, cc->req->name, id, a.required, a.limit, a.alloc, cc->params, clone ? &cl : NULL,
			  &rec);
	if (clone)
		csi_clone_end(d, &cl);
	if (r < 0)
		return r;
	r = respond_volume(c, d, &rec, cc->ret);
	volume_record_done(&rec);
	/* The provisioner checks that a volume made from a source says so. */
	if (r >= 0 && src)
		((Csi__V1__CreateVolumeResponse *)*cc->ret)->volume->content_source =
			(Csi__V1__VolumeContentSource *)src;
	return r;
}

static int create_volume(struct csi_call *c, void *ud, const ProtobufCMessage *msg, bool copy,
			 ProtobufCMessage **ret)
{
	const Csi__V1__CreateVolumeRequest *req = (const Csi__V1__CreateVolumeRequest *)msg;
	struct csi_driver *d = ud;
	struct create_args a = {};
	struct volume_params params;
	const char *keys[MAX_PARAMS], *values[MAX_PARAMS];
	char id[VOLUME_ID_MAX];
	_cleanup_free_ char *err = NULL;
	int r;

	if (!req->name || !*req->name)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "name is missing");
	if (strlen(req->name) > 128)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "name is longer than 128 bytes");
	if (req->n_volume_capabilities == 0)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_capabilities are missing");
	for (size_t i = 0; i < req->n_volume_capabilities; i++) {
		char field[48];
		snprintf(field, sizeof(field), "volume_capabilities[%zu]", i);
		if (csi_check_capability(c, req->volume_capabilities[i], field, &a.caps) < 0)
			return -1;
	}
	if (req->n_parameters > MAX_PARAMS)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "too many parameters (%zu, at most %d)",
				req->n_parameters, MAX_PARAMS);
	if (req->n_mutable_parameters > 0)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "mutable_parameters are not supported");
	MAP_TO_ARRAYS(req->parameters, req->n_parameters, keys, values);
	volume_params_init(&params);
	r = volume_params_parse(&params, PARAMS_ORIGIN_CREATE_VOLUME, keys, values, req->n_parameters, &err);
	if (r < 0) {
		volume_params_done(&params);
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "%s", err ? err : "invalid parameters");
	}
	volume_params_done(&params); /* parse for CreateVolume allocates nothing; keep the flags */
	if (params.kata && a.caps.block)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT,
				"kataContainers=true cannot be used with block volumes");
	if (check_size(c, req->capacity_range, &a) < 0)
		return -1;
	if (volume_id_from_name(req->name, id) < 0)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT,
				"name \"%s\" cannot be used: its first 6 characters must be letters, digits, '+', '_', '.' or '-' and it must not start with '-'",
				req->name);
	if (!topology_allows(d, req->accessibility_requirements)) {
		snprintf(c->volume, sizeof(c->volume), "%s", id);
		return csi_fail(c, CSI_CODE_RESOURCE_EXHAUSTED,
				"accessibility_requirements do not include this node (%s=%s)",
				csi_driver_topology_key(d), csi_driver_cfg(d)->node_id);
	}
	/* The peer channel makes cache copies and nothing else: a peer's
	 * certificate is no licence for other volumes of this node. */
	if (copy && (!params.cache || req->volume_content_source))
		return csi_fail(c, CSI_CODE_PERMISSION_DENIED,
				"peer CreateVolume of %s: only copies of cache volumes (persistencyModel=cache, no "
				"volume_content_source) are made for peers",
				req->name);
	if (params.cache && !copy) {
		if (req->volume_content_source)
			return csi_fail(c, CSI_CODE_INVALID_ARGUMENT,
					"volume_content_source: cache volumes cannot be made from a snapshot or volume");
		if (cache_hooks && params.cache_size > 1)
			return cache_hooks->create(c, d, req, params.cache_size, id, ret);
		if (params.cache_size > 1)
			log_warning("CreateVolume of cache volume %s: no peer channel (-peerListen), so only the copy "
				    "on this node instead of %u", id, params.cache_size);
	}
	{
		struct create_call cc = { req, &a, &params, ret };
		return csi_volume_call(c, d, id, create_fn, &cc);
	}
}

int csi_controller_create_volume(struct csi_call *c, void *ud, const ProtobufCMessage *msg,
				 ProtobufCMessage **ret)
{
	return create_volume(c, ud, msg, false, ret);
}

int csi_controller_create_copy(struct csi_call *c, void *ud, const ProtobufCMessage *msg, ProtobufCMessage **ret)
{
	return create_volume(c, ud, msg, true, ret);
}

int csi_volume_delete_locked(struct csi_call *c, struct csi_driver *d, const char *id)
{
	struct pmem_manager *pm = csi_driver_pm(d);
	struct volume_record rec = {};
	struct pmem_device dev = {};
	bool erase;
	int r, mounts;

	/* Only a registered volume is ours: anything else of that name (a device
	 * made by hand, one whose record is unreadable) is left alone, and the
	 * volume is already deleted as far as the CO is concerned. */
	if (csi_volume_lookup(d, id, &rec) < 0) {
		log_v(2, "DeleteVolume of %s: not a volume of this driver, nothing to do", id);
		return 0;
	}
	erase = rec.params.erase_after;
	r = ownership_check_state_dir(d);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot recreate the state directory %s", csi_driver_cfg(d)->state_dir);
		goto out;
	}
	r = pmem_get(pm, id, &dev);
	if (r == -ENOENT)
		goto forget;
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot look up volume %s", id);
		goto out;
	}
	mounts = fs_device_mount_count(dev.path);
	if (mounts > 0) {
		r = csi_fail(c, CSI_CODE_FAILED_PRECONDITION,
			     "volume %s is still mounted (%d mount(s) of %s): unpublish and unstage it first", id,
			     mounts, dev.path);
		goto out;
	}
	r = pmem_delete(pm, id, erase);
	if (r == -EBUSY) {
		r = csi_fail(c, CSI_CODE_FAILED_PRECONDITION, "volume %s is in use (%s is open)", id, dev.path);
		goto out;
	}
	if (r < 0 && r != -ENOENT) {
		r = csi_fail_errno(c, r, "cannot delete volume %s", id);
		goto out;
	}
forget:
	r = ownership_forget(d, id);
	if (r < 0) {
		/* Never NOT_FOUND: the device is gone, the record could not go. */
		r = csi_fail(c, CSI_CODE_INTERNAL, "cannot remove the state of volume %s: %s", id, strerror(-r));
		goto out;
	}
	log_v(2, "Deleted volume %s (erase=%s)", id, erase ? "true" : "false");
out:
	pmem_device_done(&dev);
	volume_record_done(&rec);
	return r;
}

static int delete_fn(struct csi_call *c, struct csi_driver *d, const char *id, void *ud _unused_)
{
	return csi_volume_delete_locked(c, d, id);
}

static int delete_volume(struct csi_call *c, void *ud, const ProtobufCMessage *msg, bool copy,
			 ProtobufCMessage **ret)
{
	const Csi__V1__DeleteVolumeRequest *req = (const Csi__V1__DeleteVolumeRequest *)msg;
	struct csi_driver *d = ud;
	Csi__V1__DeleteVolumeResponse *resp;
	int r;

	if (!req->volume_id || !*req->volume_id)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_id is missing");
	resp = CSI_NEW(c, Csi__V1__DeleteVolumeResponse, csi__v1__delete_volume_response__init);
	if (!resp)
		return csi_oom(c);
	/* IDs that cannot be ours are already deleted. */
	if (!volume_id_is_valid(req->volume_id)) {
		snprintf(c->volume, sizeof(c->volume), "%s", req->volume_id);
		if (csi_check_ready(c, d) < 0)
			return -1;
		*ret = &resp->base;
		return 0;
	}
	if (copy) {
		/* A peer deletes copies of cache volumes only; an ID without a
		 * record here is a copy that is gone (below: nothing to do). */
		struct volume_record rec = {};
		bool known = csi_volume_lookup(d, req->volume_id, &rec) >= 0, cache = known && rec.params.cache;

		volume_record_done(&rec);
		snprintf(c->volume, sizeof(c->volume), "%s", req->volume_id);
		if (known && !cache)
			return csi_fail(c, CSI_CODE_PERMISSION_DENIED,
					"peer DeleteVolume of %s: not a cache volume; peers delete copies of cache volumes only",
					req->volume_id);
	} else if (cache_hooks) {
		/* The peers' copies first: while this node's record stands, a
		 * retry still knows that the volume has copies elsewhere. */
		struct volume_record rec = {};
		bool cache = csi_volume_lookup(d, req->volume_id, &rec) >= 0 && rec.params.cache;

		volume_record_done(&rec);
		snprintf(c->volume, sizeof(c->volume), "%s", req->volume_id);
		if (cache && cache_hooks->remove(c, d, req) < 0)
			return -1;
	}
	r = csi_volume_call(c, d, req->volume_id, delete_fn, NULL);
	if (r < 0)
		return r;
	*ret = &resp->base;
	return 0;
}

int csi_controller_delete_volume(struct csi_call *c, void *ud, const ProtobufCMessage *msg,
				 ProtobufCMessage **ret)
{
	return delete_volume(c, ud, msg, false, ret);
}

int csi_controller_delete_copy(struct csi_call *c, void *ud, const ProtobufCMessage *msg, ProtobufCMessage **ret)
{
	return delete_volume(c, ud, msg, true, ret);
}

int csi_controller_validate_volume_capabilities(struct csi_call *c, void *ud, const ProtobufCMessage *msg,
						ProtobufCMessage **ret)
{
	const Csi__V1__ValidateVolumeCapabilitiesRequest *req =
		(const Csi__V1__ValidateVolumeCapabilitiesRequest *)msg;
	struct csi_driver *d = ud;
	struct volume_record rec = {};
	struct csi_caps_summary sum = {};
	Csi__V1__ValidateVolumeCapabilitiesResponse *resp;
	Csi__V1__ValidateVolumeCapabilitiesResponse__Confirmed *conf;
	struct volume_params params;
	const char *keys[MAX_PARAMS], *values[MAX_PARAMS];
	_cleanup_free_ char *err = NULL;

	if (!req->volume_id || !*req->volume_id)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_id is missing");
	if (req->n_volume_capabilities == 0)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_capabilities are missing");
	snprintf(c->volume, sizeof(c->volume), "%s", req->volume_id);
	if (csi_check_ready(c, d) < 0)
		return -1;
	if (csi_volume_lookup(d, req->volume_id, &rec) < 0)
		return csi_fail(c, CSI_CODE_NOT_FOUND, "volume %s not found", req->volume_id);

	resp = CSI_NEW(c, Csi__V1__ValidateVolumeCapabilitiesResponse,
		       csi__v1__validate_volume_capabilities_response__init);
	if (!resp) {
		volume_record_done(&rec);
		return csi_oom(c);
	}
	*ret = &resp->base;
	/* Unsupported capabilities or parameters are not an error here: the
	 * answer is "not confirmed", with the reason. */
	for (size_t i = 0; i < req->n_volume_capabilities; i++) {
		char field[48];
		snprintf(field, sizeof(field), "volume_capabilities[%zu]", i);
		if (csi_check_capability(c, req->volume_capabilities[i], field, &sum) < 0) {
			resp->message = arena_strdup(c->arena, c->message);
			c->code = CSI_CODE_OK;
			volume_record_done(&rec);
			return 0;
		}
	}
	volume_params_init(&params);
	MAP_TO_ARRAYS(req->parameters, MIN(req->n_parameters, (size_t)MAX_PARAMS), keys, values);
	if (req->n_parameters > MAX_PARAMS ||
	    volume_params_parse(&params, PARAMS_ORIGIN_CREATE_VOLUME, keys, values, req->n_parameters, &err) < 0 ||
	    (req->n_parameters > 0 && !volume_params_equal(&params, &rec.params))) {
		resp->message = arena_strdup(c->arena, err ? err : "parameters do not match the volume");
		volume_params_done(&params);
		volume_record_done(&rec);
		return 0;
	}
	volume_params_done(&params);
	volume_record_done(&rec);
	conf = CSI_NEW(c, Csi__V1__ValidateVolumeCapabilitiesResponse__Confirmed,
		       csi__v1__validate_volume_capabilities_response__confirmed__init);
	if (!conf)
		return csi_oom(c);
	/* Echo what was confirmed; the request outlives the response packing. */
	conf->n_volume_capabilities = req->n_volume_capabilities;
	conf->volume_capabilities = req->volume_capabilities;
	conf->n_volume_context = req->n_volume_context;
	conf->volume_context = (Csi__V1__ValidateVolumeCapabilitiesResponse__Confirmed__VolumeContextEntry **)
				       req->volume_context;
	conf->n_parameters = req->n_parameters;
	conf->parameters =
		(Csi__V1__ValidateVolumeCapabilitiesResponse__Confirmed__ParametersEntry **)req->parameters;
	resp->confirmed = conf;
	return 0;
}

int csi_controller_list_volumes(struct csi_call *c, void *ud, const ProtobufCMessage *msg,
				ProtobufCMessage **ret)
{
	const Csi__V1__ListVolumesRequest *req = (const Csi__V1__ListVolumesRequest *)msg;
	struct csi_driver *d = ud;
	Csi__V1__ListVolumesResponse *resp;
	struct volume_record *recs = NULL;
	size_t n = 0;
	bool more = false;
	const char *after = NULL;
	int r;

	if (req->max_entries < 0)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "max_entries must not be negative");
	if (csi_check_ready(c, d) < 0)
		return -1;
	/* The token is the last volume ID of the previous page: pages stay
	 * consistent when volumes come and go between calls. */
	if (req->starting_token && *req->starting_token) {
		if (!volume_id_is_valid(req->starting_token))
			return csi_fail(c, CSI_CODE_ABORTED, "starting_token \"%s\" is not valid",
					req->starting_token);
		after = req->starting_token;
	}
	r = csi_volume_page(d, after, (size_t)req->max_entries, &recs, &n, &more);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot list volumes");
	resp = CSI_NEW(c, Csi__V1__ListVolumesResponse, csi__v1__list_volumes_response__init);
	if (!resp || !(resp->entries = CSI_NEW_ARRAY(c, Csi__V1__ListVolumesResponse__Entry *, n)))
		goto oom;
	for (size_t i = 0; i < n; i++) {
		Csi__V1__ListVolumesResponse__Entry *e =
			CSI_NEW(c, Csi__V1__ListVolumesResponse__Entry, csi__v1__list_volumes_response__entry__init);
		if (!e || !(e->volume = make_volume(c, d, &recs[i], true)))
			goto oom;
		resp->entries[i] = e;
	}
	resp->n_entries = n;
	if (more && n > 0 && !(resp->next_token = arena_strdup(c->arena, recs[n - 1].id)))
		goto oom;
	volume_record_array_free(recs, n);
	*ret = &resp->base;
	return 0;
oom:
	volume_record_array_free(recs, n);
	return csi_oom(c);
}

int csi_controller_get_capacity(struct csi_call *c, void *ud, const ProtobufCMessage *msg,
				ProtobufCMessage **ret)
{
	const Csi__V1__GetCapacityRequest *req = (const Csi__V1__GetCapacityRequest *)msg;
	struct csi_driver *d = ud;
	struct pmem_capacity cap;
	Csi__V1__GetCapacityResponse *resp =
		CSI_NEW(c, Csi__V1__GetCapacityResponse, csi__v1__get_capacity_response__init);
	Google__Protobuf__Int64Value *max = CSI_NEW(c, Google__Protobuf__Int64Value, google__protobuf__int64_value__init);
	bool other_node = false;

	if (!resp || !max)
		return csi_oom(c);
	if (csi_check_ready(c, d) < 0)
		return -1;
	/* The provisioner asks for capacity every minute or so: a state directory
	 * removed by hand is put back soon, not only at the next create or delete.
	 * At most once a second: GetCapacity is answered from memory otherwise,
	 * without a system call (two access(2) per call cost more than the rest of
	 * it, and under emulation several times a Probe). */
	if (csi_driver_state_check_due(d)) {
		(void)ownership_check_state_dir(d);
		csi_snapshots_check_state_dir(d);
	}
	/* Capacity of another node's topology segment is zero here. */
	if (req->accessible_topology)
		for (size_t i = 0; i < req->accessible_topology->n_segments; i++) {
			const Csi__V1__Topology__SegmentsEntry *s = req->accessible_topology->segments[i];
			if (strcmp(s->key, csi_driver_topology_key(d)) == 0 &&
			    strcmp(s->value, csi_driver_cfg(d)->node_id) != 0)
				other_node = true;
		}
	csi_driver_capacity(d, &cap);
	if (other_node)
		memset(&cap, 0, sizeof(cap));
	resp->available_capacity = (int64_t)cap.available;
	max->value = (int64_t)cap.max_volume_size;
	resp->maximum_volume_size = max;
	*ret = &resp->base;
	return 0;
}

int csi_controller_get_capabilities(struct csi_call *c, void *ud, const ProtobufCMessage *msg _unused_,
				    ProtobufCMessage **ret)
{
	static const Csi__V1__ControllerServiceCapability__RPC__Type types[] = {
		CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CREATE_DELETE_VOLUME,
		CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__LIST_VOLUMES,
		CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__GET_CAPACITY,
		CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CREATE_DELETE_SNAPSHOT,
		CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__LIST_SNAPSHOTS,
		CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CLONE_VOLUME,
	};
	Csi__V1__ControllerGetCapabilitiesResponse *resp = CSI_NEW(
		c, Csi__V1__ControllerGetCapabilitiesResponse, csi__v1__controller_get_capabilities_response__init);
	Csi__V1__ControllerServiceCapability **caps =
		CSI_NEW_ARRAY(c, Csi__V1__ControllerServiceCapability *, ELEMENTSOF(types) + 1);

	if (!resp || !caps)
		return csi_oom(c);
	for (size_t i = 0; i < ELEMENTSOF(types); i++) {
		Csi__V1__ControllerServiceCapability *cap = CSI_NEW(c, Csi__V1__ControllerServiceCapability,
								    csi__v1__controller_service_capability__init);
		Csi__V1__ControllerServiceCapability__RPC *rpc = CSI_NEW(
			c, Csi__V1__ControllerServiceCapability__RPC, csi__v1__controller_service_capability__rpc__init);
		if (!cap || !rpc)
			return csi_oom(c);
		rpc->type = types[i];
		cap->type_case = CSI__V1__CONTROLLER_SERVICE_CAPABILITY__TYPE_RPC;
		cap->rpc = rpc;
		caps[i] = cap;
	}
	resp->n_capabilities = ELEMENTSOF(types);
	resp->capabilities = caps;
	if (csi_expansion_supported(ud)) {
		Csi__V1__ControllerServiceCapability *cap = CSI_NEW(c, Csi__V1__ControllerServiceCapability,
								    csi__v1__controller_service_capability__init);
		Csi__V1__ControllerServiceCapability__RPC *rpc = CSI_NEW(
			c, Csi__V1__ControllerServiceCapability__RPC, csi__v1__controller_service_capability__rpc__init);
		if (!cap || !rpc)
			return csi_oom(c);
		rpc->type = CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__EXPAND_VOLUME;
		cap->type_case = CSI__V1__CONTROLLER_SERVICE_CAPABILITY__TYPE_RPC;
		cap->rpc = rpc;
		caps[resp->n_capabilities++] = cap;
	}
	*ret = &resp->base;
	return 0;
}

/* ---- ControllerExpandVolume ------------------------------------------------------------------ */

/*
 * Growing a volume: the LV grows in place (lvextend) while it may be mounted;
 * the filesystem on it grows in NodeExpandVolume (node_expand.c).
 *
 * Crash safety comes from the order: the device grows first, the record
 * second. A crash in between leaves a record smaller than its device, which
 * is a state the driver always accepts (records may be below the device's
 * size, e.g. after rounding): the restart serves the old size, and the CO,
 * which never saw an answer, calls again; that call finds the device large
 * enough, runs no lvextend and writes the record. The reverse order could
 * leave a record promising more than the device has.
 */

struct expand_call {
	uint64_t required, limit, alloc;
	bool have_cap, block;
	Csi__V1__ControllerExpandVolumeResponse *resp;
};

/* The size to grow to, rounded as CreateVolume rounds (4 MiB units), within the range. */
static int expand_size(struct csi_call *c, const Csi__V1__CapacityRange *cr, struct expand_call *e)
{
	if (!cr)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "capacity_range is missing");
	if (cr->required_bytes < 0 || cr->limit_bytes < 0)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT,
				"capacity_range: required_bytes and limit_bytes must not be negative");
	if (cr->required_bytes == 0 && cr->limit_bytes == 0)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT,
				"capacity_range: one of required_bytes and limit_bytes must be set");
	e->required = (uint64_t)cr->required_bytes;
	e->limit = (uint64_t)cr->limit_bytes;
	if (e->limit && e->required > e->limit)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT,
				"capacity_range.required_bytes %" PRIu64 " exceeds limit_bytes %" PRIu64, e->required,
				e->limit);
	e->alloc = round_up_u64(e->required ? e->required : ALLOC_ALIGN, ALLOC_ALIGN);
	if (e->alloc == 0 || e->alloc > INT64_MAX)
		return csi_fail(c, CSI_CODE_OUT_OF_RANGE, "capacity_range.required_bytes is too large");
	if (e->limit && e->alloc > e->limit) {
		uint64_t down = e->limit - e->limit % ALLOC_ALIGN;
		if (down < e->required || down == 0)
			return csi_fail(c, CSI_CODE_OUT_OF_RANGE,
					"no size between required_bytes %" PRIu64 " and limit_bytes %" PRIu64
					" is a multiple of the 4 MiB allocation unit",
					e->required, e->limit);
		e->alloc = down;
	}
	return 0;
}

static int expand_fn(struct csi_call *c, struct csi_driver *d, const char *id, void *ud)
{
	struct expand_call *e = ud;
	struct pmem_manager *pm = csi_driver_pm(d);
	struct volume_record rec = {};
	struct pmem_device dev = {};
	_cleanup_free_ char *fs = NULL;
	uint64_t size;
	char b1[32], b2[32];
	int r;

	if (csi_volume_lookup(d, id, &rec) < 0)
		return csi_fail(c, CSI_CODE_NOT_FOUND, "volume %s not found", id);
	if (!pmem_can_expand(pm, rec.params.device_mode)) {
		r = csi_fail(c, CSI_CODE_FAILED_PRECONDITION,
			     "volume %s is a %s-mode volume: a PMEM namespace cannot grow in place", id,
			     rec.params.device_mode ? rec.params.device_mode : "direct");
		goto out;
	}
	if (rec.params.kata) {
		/* Its filesystem lives in an image file on the volume: growing the LV would not grow it. */
		r = csi_fail(c, CSI_CODE_FAILED_PRECONDITION,
			     "volume %s is a Kata Containers volume (kataContainers=true): it cannot be expanded", id);
		goto out;
	}
	if (rec.params.ephemeral) {
		r = csi_fail(c, CSI_CODE_FAILED_PRECONDITION, "volume %s is an inline ephemeral volume: it cannot be expanded",
			     id);
		goto out;
	}
	/* Never shrink; a volume above the range stays as it is, which the range does not allow. */
	if (e->limit && rec.size > e->limit) {
		r = csi_fail(c, CSI_CODE_OUT_OF_RANGE,
			     "volume %s has %s, more than limit_bytes %" PRIu64 ": volumes never shrink", id,
			     format_bytes(b1, sizeof(b1), rec.size), e->limit);
		goto out;
	}
	r = ownership_check_state_dir(d);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot recreate the state directory %s", csi_driver_cfg(d)->state_dir);
		goto out;
	}
	/* A volume that has the size already stays as it is (a smaller request
	 * is no shrink). pmem_expand() leaves a device that is large enough as
	 * it is: the retry after a crash between lvextend and the record. */
	if (rec.size >= e->required)
		r = pmem_get(pm, id, &dev);
	else
		r = pmem_expand(pm, id, e->alloc, &dev);
	if (r == -ENOSPC) {
		struct pmem_capacity cap;
		pmem_capacity(pm, &cap);
		r = csi_fail(c, CSI_CODE_OUT_OF_RANGE,
			     "not enough PMEM to grow volume %s to %s: its volume group has %s free", id,
			     format_bytes(b1, sizeof(b1), e->alloc), format_bytes(b2, sizeof(b2), cap.max_volume_size));
		goto out;
	}
	if (r == -EOPNOTSUPP) {
		r = csi_fail(c, CSI_CODE_FAILED_PRECONDITION, "the device of volume %s cannot grow in place", id);
		goto out;
	}
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot grow volume %s", id);
		goto out;
	}
	/* What the CO gets and the record keeps: what the device has, within the limit. */
	size = e->limit && dev.size > e->limit ? e->limit : dev.size;
	if (rec.size < e->required && size > rec.size) {
		uint64_t old = rec.size;
		rec.size = size;
		r = state_write(csi_driver_cfg(d)->state_dir, &rec);
		if (r < 0) {
			r = csi_fail_errno(c, r, "cannot update the state of volume %s", id);
			goto out;
		}
		r = csi_volume_add(d, &rec); /* replaces the registered record */
		if (r < 0) {
			r = csi_fail_errno(c, r, "cannot register volume %s", id);
			goto out;
		}
		log_v(2, "Expanded volume %s from %" PRIu64 " to %" PRIu64 " bytes", id, old, size);
	}
	e->resp->capacity_bytes = (int64_t)rec.size;
	/* A filesystem needs the node step (NodeExpandVolume); a raw block
	 * volume is done. Without a capability, the device says which it is:
	 * one without a filesystem yet gets it at its full size at staging. */
	if (e->have_cap)
		e->resp->node_expansion_required = !e->block;
	else
		e->resp->node_expansion_required = fs_detect(dev.path, &fs) < 0 || fs != NULL;
	r = 0;
out:
	pmem_device_done(&dev);
	volume_record_done(&rec);
	return r;
}

int csi_controller_expand_volume(struct csi_call *c, void *ud, const ProtobufCMessage *msg,
				 ProtobufCMessage **ret)
{
	const Csi__V1__ControllerExpandVolumeRequest *req = (const Csi__V1__ControllerExpandVolumeRequest *)msg;
	struct csi_driver *d = ud;
	struct expand_call e = {};

	if (!req->volume_id || !*req->volume_id)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_id is missing");
	snprintf(c->volume, sizeof(c->volume), "%s", req->volume_id);
	if (expand_size(c, req->capacity_range, &e) < 0)
		return -1;
	if (req->volume_capability) {
		struct csi_caps_summary sum = {};
		if (csi_check_capability(c, req->volume_capability, "volume_capability", &sum) < 0)
			return -1;
		e.have_cap = true;
		e.block = sum.block;
	}
	if (!csi_expansion_supported(d))
		return csi_fail(c, CSI_CODE_UNIMPLEMENTED,
				"volume expansion is not supported in %s mode: a PMEM namespace cannot grow in place "
				"(use -deviceManager=lvm for expandable volumes)",
				csi_driver_cfg(d)->device_mode ? csi_driver_cfg(d)->device_mode : "direct");
	if (!volume_id_is_valid(req->volume_id)) {
		if (csi_check_ready(c, d) < 0)
			return -1;
		return csi_fail(c, CSI_CODE_NOT_FOUND, "volume %s not found", req->volume_id);
	}
	e.resp = CSI_NEW(c, Csi__V1__ControllerExpandVolumeResponse, csi__v1__controller_expand_volume_response__init);
	if (!e.resp)
		return csi_oom(c);
	if (csi_volume_call(c, d, req->volume_id, expand_fn, &e) < 0)
		return -1;
	*ret = &e.resp->base;
	return 0;
}
