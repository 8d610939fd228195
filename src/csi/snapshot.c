/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Snapshots (CreateSnapshot, DeleteSnapshot, ListSnapshots) and clones
 * (CreateVolume with a volume_content_source).
 *
 * A snapshot is a full copy of its source volume on a device of its own,
 * named by the snapshot ID "snap.<sha224 of the name>" (never a volume ID, so
 * no volume call can reach it and no snapshot call a volume). The ownership
 * rules of volumes (ownership.c) apply unchanged, with records in
 * <statePath>/snapshots/:
 *   CreateSnapshot  record, "creating" marker, device, copy, marker removed,
 *                   registered; a failure removes device, record and marker.
 *   DeleteSnapshot  device erased (when the source volume had eraseafter) and
 *                   removed, record removed, unregistered.
 *   start-up        ownership_decide() on every snapshot ID: a marker means a
 *                   copy was cut off, so device, record and marker go.
 * A device named like a snapshot without a record of ours is not ours.
 *
 * Locks: a snapshot call holds the source volume's lock, then the snapshot's;
 * a clone holds the new volume's, then its source's. Nothing takes a volume
 * lock while holding a snapshot's, so the order never cycles.
 *
 * The copy (blockdev_copy()) reads the source while it may be mounted and in
 * use: the snapshot is crash-consistent, what a power cut at that moment would
 * leave. Applications that need more quiesce (fsfreeze) first.
 */
#include "snapshot.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "driver.h"
#include "ownership.h"
#include "pmem/blockdev.h"

#define MAX_SNAPSHOTS 65536

struct csi_snapshots {
	pthread_mutex_t lock;
	struct snapshot_record *v; /* sorted by id */
	size_t n, cap;
	/* IDs whose record cannot be used: blocked, their devices untouched. */
	char (*blocked)[SNAPSHOT_ID_MAX];
	size_t n_blocked;
};

int csi_snapshots_new(struct csi_snapshots **ret)
{
	struct csi_snapshots *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	*ret = s;
	return 0;
}

void csi_snapshots_free(struct csi_snapshots *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		snapshot_record_done(&s->v[i]);
	free(s->v);
	free(s->blocked);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* Index of the first record with id >= key. Lock held. */
static size_t lower_bound(const struct csi_snapshots *s, const char *key)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (strcmp(s->v[mid].id, key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int snap_lookup(struct csi_snapshots *s, const char *id, struct snapshot_record *ret)
{
	size_t i;
	int r = -ENOENT;

	pthread_mutex_lock(&s->lock);
	i = lower_bound(s, id);
	if (i < s->n && strcmp(s->v[i].id, id) == 0)
		r = snapshot_record_copy(&s->v[i], ret);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int snap_add(struct csi_snapshots *s, const struct snapshot_record *rec)
{
	struct snapshot_record copy;
	size_t i;
	int r;

	r = snapshot_record_copy(rec, &copy);
	if (r < 0)
		return r;
	pthread_mutex_lock(&s->lock);
	i = lower_bound(s, rec->id);
	if (i < s->n && strcmp(s->v[i].id, rec->id) == 0) {
		snapshot_record_done(&s->v[i]);
		s->v[i] = copy;
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	if (s->n == s->cap) {
		size_t ncap = s->cap ? s->cap * 2 : 16;
		struct snapshot_record *nv = ncap <= MAX_SNAPSHOTS ? realloc(s->v, ncap * sizeof(*nv)) : NULL;
		if (!nv) {
			pthread_mutex_unlock(&s->lock);
			snapshot_record_done(&copy);
			return -ENOMEM;
		}
		s->v = nv;
		s->cap = ncap;
	}
	memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof(*s->v));
	s->v[i] = copy;
	s->n++;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* Unregister and remove the record in one step under the registry lock, so a
 * state directory rewrite never resurrects a deleted snapshot. */
static int snap_forget(struct csi_snapshots *s, const char *dir, const char *id)
{
	size_t i;
	int r;

	pthread_mutex_lock(&s->lock);
	r = snapshot_state_remove(dir, id);
	if (r >= 0) {
		i = lower_bound(s, id);
		if (i < s->n && strcmp(s->v[i].id, id) == 0) {
			snapshot_record_done(&s->v[i]);
			memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof(*s->v));
			s->n--;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void snap_block(struct csi_snapshots *s, const char *id)
{
	void *p;

	pthread_mutex_lock(&s->lock);
	p = s->n_blocked < MAX_SNAPSHOTS ? realloc(s->blocked, (s->n_blocked + 1) * sizeof(*s->blocked)) : NULL;
	if (p) {
		s->blocked = p;
		snprintf(s->blocked[s->n_blocked++], SNAPSHOT_ID_MAX, "%s", id);
	}
	pthread_mutex_unlock(&s->lock);
}

bool csi_snapshot_claims(struct csi_driver *d, const char *name)
{
	struct csi_snapshots *s = csi_driver_snapshots(d);
	bool found = false;
	size_t i;

	if (!snapshot_id_is_valid(name))
		return false;
	pthread_mutex_lock(&s->lock);
	i = lower_bound(s, name);
	found = i < s->n && strcmp(s->v[i].id, name) == 0;
	for (size_t j = 0; !found && j < s->n_blocked; j++)
		found = strcmp(s->blocked[j], name) == 0;
	pthread_mutex_unlock(&s->lock);
	return found;
}

void csi_snapshots_check_state_dir(struct csi_driver *d)
{
	struct csi_snapshots *s = csi_driver_snapshots(d);
	const char *dir = csi_driver_cfg(d)->state_dir;
	_cleanup_free_ char *sdir = snapshot_state_dir(dir);

	if (!sdir || access(sdir, F_OK) == 0 || errno != ENOENT)
		return;
	pthread_mutex_lock(&s->lock);
	if (s->n > 0)
		log_warning("Snapshot state directory %s was removed while the driver runs: writing the records of "
			    "%zu snapshot(s) again",
			    sdir, s->n);
	for (size_t i = 0; i < s->n; i++) {
		int r = snapshot_state_write(dir, &s->v[i]);
		if (r < 0)
			log_error_errno(r, "Cannot write the state of snapshot %s again: %m", s->v[i].id);
	}
	pthread_mutex_unlock(&s->lock);
}

/* start-up ------------------------------------------------------------------ */

struct snap_reconcile {
	struct csi_driver *d;
	const char *dir;
	unsigned served, dropped, undone, kept;
};

static bool mode_is_other(struct pmem_manager *pm, const char *mode)
{
	return mode && *mode && strcmp(mode, pmem_manager_mode(pm)) != 0;
}

static int reconcile_one(const struct snapshot_entry *e, void *ud)
{
	struct snap_reconcile *c = ud;
	struct csi_snapshots *s = csi_driver_snapshots(c->d);
	struct pmem_manager *pm = csi_driver_pm(c->d);
	struct ownership_facts f = { .record = e->record, .creating = e->creating };
	_cleanup_free_ char *sdir = snapshot_state_dir(c->dir);
	struct pmem_device dev = {};
	int r;

	if (!sdir)
		return -ENOMEM;
	if (e->record == STATE_RECORD_OK) {
		f.other_mode = mode_is_other(pm, e->rec->device_mode);
		if (f.other_mode && !pmem_manager_other_mode(pm))
			(void)pmem_manager_add_other(pm, 0);
		f.other_mode_available = pmem_manager_other_mode(pm) != NULL;
		r = pmem_get(pm, e->id, &dev);
		f.device = r >= 0 ? OWNERSHIP_DEVICE_PRESENT : r == -ENOENT ? OWNERSHIP_DEVICE_NONE
									 : OWNERSHIP_DEVICE_UNKNOWN;
	}
	switch (ownership_decide(&f)) {
	case OWNERSHIP_SERVE:
		r = snap_add(s, e->rec);
		pmem_device_done(&dev);
		if (r < 0)
			return r;
		c->served++;
		return 0;
	case OWNERSHIP_DROP_RECORD:
	case OWNERSHIP_UNDO_CREATE:
		/* The record makes the device ours; a marker means the copy was cut
		 * off: what was copied is the source's data, erased as it would be. */
		log_info("Snapshot %s %s: removing it", e->id,
			 f.creating ? "was being copied when the driver stopped" : "has a record but no device");
		r = pmem_delete(pm, e->id, e->rec->erase_after);
		if (r < 0 && r != -ENOENT) {
			log_warning_errno(r, "Cannot remove the device of snapshot %s (kept, retried at the next start): %m",
					  e->id);
			c->kept++;
			snap_block(s, e->id);
			break;
		}
		(void)snapshot_state_remove(c->dir, e->id);
		if (f.creating)
			c->undone++;
		else
			c->dropped++;
		break;
	case OWNERSHIP_CLEAR_MARKER:
		log_info("Snapshot %s has a creation marker but no record: removing the marker", e->id);
		(void)state_intent_clear(sdir, e->id, "creating");
		break;
	case OWNERSHIP_KEEP_REPORTED:
		log_warning("Snapshot record %s/%s.json cannot be read (%s): the snapshot is not served, the record "
			    "and any device of that name are left as they are until an administrator removes them",
			    sdir, e->id, e->error);
		snap_block(s, e->id);
		c->kept++;
		break;
	case OWNERSHIP_RETRY_LATER:
		log_warning("Snapshot %s cannot be checked: its record is kept, it is not served until a restart "
			    "finds its device",
			    e->id);
		snap_block(s, e->id);
		c->kept++;
		break;
	}
	pmem_device_done(&dev);
	return 0;
}

int csi_snapshots_reconcile(struct csi_driver *d)
{
	struct snap_reconcile c = { .d = d, .dir = csi_driver_cfg(d)->state_dir };
	int r;

	r = snapshot_state_scan(c.dir, reconcile_one, &c);
	if (r == -ENOMEM)
		return log_error_errno(r, "Failed to load the snapshot state from %s: %m", c.dir);
	if (r < 0) {
		/* Volumes are served all the same; snapshot devices without a
		 * readable record are reported as not ours and left alone. */
		log_warning_errno(r, "Cannot read the snapshot records in %s/%s: snapshots are not served: %m", c.dir,
				  STATE_SNAPSHOT_SUBDIR);
		return 0;
	}
	if (c.served || c.dropped || c.undone || c.kept)
		log_info("Loaded %u snapshot(s) (%u without device dropped, %u cut-off copies undone, %u kept unserved)",
			 c.served, c.dropped, c.undone, c.kept);
	return 0;
}

/* responses ------------------------------------------------------------------ */

static Csi__V1__Snapshot *make_snapshot(struct csi_call *c, const struct snapshot_record *rec)
{
	Csi__V1__Snapshot *s = CSI_NEW(c, Csi__V1__Snapshot, csi__v1__snapshot__init);
	Google__Protobuf__Timestamp *t = CSI_NEW(c, Google__Protobuf__Timestamp, google__protobuf__timestamp__init);

	if (!s || !t)
		return NULL;
	s->snapshot_id = arena_strdup(c->arena, rec->id);
	s->source_volume_id = arena_strdup(c->arena, rec->source);
	if (!s->snapshot_id || !s->source_volume_id)
		return NULL;
	s->size_bytes = (int64_t)rec->size;
	t->seconds = rec->created_ns / 1000000000;
	t->nanos = (int32_t)(rec->created_ns % 1000000000);
	s->creation_time = t;
	/* The copy is done before the call returns. */
	s->ready_to_use = true;
	return s;
}

/* CreateSnapshot -------------------------------------------------------------- */

struct create_snap {
	const char *name;
	const char *source;
	ProtobufCMessage **ret;
};

static int64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int respond_snapshot(struct csi_call *c, const struct snapshot_record *rec, ProtobufCMessage **ret)
{
	Csi__V1__CreateSnapshotResponse *resp =
		CSI_NEW(c, Csi__V1__CreateSnapshotResponse, csi__v1__create_snapshot_response__init);

	if (!resp || !(resp->snapshot = make_snapshot(c, rec)))
		return csi_oom(c);
	*ret = &resp->base;
	return 0;
}

/* Failed after the record: device (erased as the source would be), record, marker. */
static void undo_snapshot(struct csi_driver *d, const char *id, bool erase)
{
	int r = pmem_delete(csi_driver_pm(d), id, erase);

	if (r < 0 && r != -ENOENT) {
		/* The marker stays: the next start removes the device. */
		log_warning_errno(r, "Cannot remove the device of the failed snapshot %s: %m", id);
		return;
	}
	(void)snapshot_state_remove(csi_driver_cfg(d)->state_dir, id);
}

static int create_snapshot_locked(struct csi_call *c, struct csi_driver *d, const char *id,
				  const struct create_snap *cs)
{
	struct csi_snapshots *s = csi_driver_snapshots(d);
	struct pmem_manager *pm = csi_driver_pm(d);
	const char *dir = csi_driver_cfg(d)->state_dir;
	_cleanup_free_ char *sdir = snapshot_state_dir(dir);
	struct snapshot_record rec = {}, existing = {};
	struct volume_record vol = {};
	struct pmem_device src = {}, dst = {};
	uint64_t ns = 0;
	char b1[32], b2[32];
	int r;

	if (!sdir)
		return csi_oom(c);
	if (snap_lookup(s, id, &existing) >= 0) {
		if (!streq_ptr(existing.name, cs->name))
			r = csi_fail(c, CSI_CODE_INTERNAL, "snapshot ID %s of name \"%s\" is already used by \"%s\"",
				     id, cs->name, existing.name ? existing.name : "?");
		else if (strcmp(existing.source, cs->source) != 0)
			r = csi_fail(c, CSI_CODE_ALREADY_EXISTS,
				     "snapshot \"%s\" already exists with source volume %s, not %s", cs->name,
				     existing.source, cs->source);
		else
			r = respond_snapshot(c, &existing, cs->ret);
		snapshot_record_done(&existing);
		return r;
	}
	if (csi_volume_lookup(d, cs->source, &vol) < 0)
		return csi_fail(c, CSI_CODE_NOT_FOUND, "source_volume_id %s: no such volume", cs->source);
	/* Only a free ID, as for volumes: a record we cannot use or a device of
	 * that name we did not make is left alone (ownership.c). */
	r = state_exists(sdir, id);
	if (r > 0 || csi_snapshot_claims(d, id)) {
		r = csi_fail(c, CSI_CODE_FAILED_PRECONDITION,
			     "snapshot %s has a state record %s/%s.json that this driver cannot use: the record and any "
			     "device of that name are kept until an administrator removes them",
			     id, sdir, id);
		goto out;
	}
	r = pmem_get(pm, id, &dst);
	if (r >= 0) {
		log_warning("CreateSnapshot of %s refused: a device of that name exists at %s that this driver did not make",
			    id, dst.path);
		r = csi_fail(c, CSI_CODE_FAILED_PRECONDITION,
			     "a device named %s exists at %s that this driver did not create (no state record): it is "
			     "left as it is; remove it by hand or use another snapshot name",
			     id, dst.path);
		goto out;
	}
	r = pmem_get(pm, cs->source, &src);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot look up the device of source volume %s", cs->source);
		goto out;
	}
	(void)ownership_check_state_dir(d);
	csi_snapshots_check_state_dir(d);

	memcpy(rec.id, id, strlen(id) + 1);
	memcpy(rec.source, cs->source, strlen(cs->source) + 1);
	rec.name = (char *)cs->name;
	rec.device_mode = (char *)pmem_manager_mode(pm);
	rec.size = vol.size;
	/* The whole device: a filesystem spans it, also past the size the CO knows. */
	rec.content = src.size;
	rec.created_ns = realtime_ns();
	rec.erase_after = vol.params.erase_after;
	rec.usage = vol.params.usage;
	r = snapshot_state_write(dir, &rec);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot write the state of snapshot %s", id);
		goto out;
	}
	r = state_intent_set(sdir, id, "creating");
	if (r < 0) {
		(void)snapshot_state_remove(dir, id);
		r = csi_fail_errno(c, r, "cannot write the state of snapshot %s", id);
		goto out;
	}
	r = pmem_create(pm, id, rec.content, rec.usage, &dst);
	if (r < 0) {
		struct pmem_capacity cap;
		(void)snapshot_state_remove(dir, id);
		if (r == -ENOSPC) {
			pmem_capacity(pm, &cap);
			r = csi_fail(c, CSI_CODE_RESOURCE_EXHAUSTED,
				     "not enough PMEM for a snapshot of %s (a full copy): the largest free space is %s",
				     format_bytes(b1, sizeof(b1), rec.content),
				     format_bytes(b2, sizeof(b2), cap.max_volume_size));
		} else if (r == -EEXIST) {
			r = csi_fail(c, CSI_CODE_FAILED_PRECONDITION,
				     "a device named %s exists that this driver did not create: it is left as it is", id);
		} else {
			r = csi_fail_errno(c, r, "cannot create the device for snapshot %s", id);
		}
		goto out;
	}
	r = blockdev_copy(src.path, dst.path, rec.content, &ns);
	if (r < 0) {
		undo_snapshot(d, id, rec.erase_after);
		r = csi_fail_errno(c, r, "cannot copy volume %s (%s) to snapshot %s (%s)", cs->source, src.path, id,
				   dst.path);
		goto out;
	}
	r = state_intent_clear(sdir, id, "creating");
	if (r >= 0)
		r = snap_add(s, &rec);
	if (r < 0) {
		undo_snapshot(d, id, rec.erase_after);
		r = csi_fail_errno(c, r, "cannot register snapshot %s", id);
		goto out;
	}
	log_v(2, "Created snapshot %s (name \"%s\") of volume %s: %" PRIu64 " bytes copied in %.3f s (%.0f MB/s)", id,
	      cs->name, cs->source, rec.content, (double)ns / 1e9, ns ? (double)rec.content / 1e6 / ((double)ns / 1e9) : 0.0);
	r = respond_snapshot(c, &rec, cs->ret);
out:
	pmem_device_done(&src);
	pmem_device_done(&dst);
	volume_record_done(&vol);
	return r;
}

static int create_snapshot_fn(struct csi_call *c, struct csi_driver *d, const char *source _unused_, void *ud)
{
	struct create_snap *cs = ud;
	char id[SNAPSHOT_ID_MAX];
	int r;

	(void)snapshot_id_from_name(cs->name, id);
	/* The source volume's lock is held: the snapshot's is the inner one. */
	r = csi_driver_lock(d, id);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot lock snapshot %s", id);
	r = create_snapshot_locked(c, d, id, cs);
	csi_driver_unlock(d, id);
	snprintf(c->volume, sizeof(c->volume), "%s", id);
	return r;
}

static bool ignored_param(const char *key)
{
	/* What the external-snapshotter adds (--extra-create-metadata). */
	return strncmp(key, "csi.storage.k8s.io/", strlen("csi.storage.k8s.io/")) == 0;
}

int csi_controller_create_snapshot(struct csi_call *c, void *ud, const ProtobufCMessage *msg,
				   ProtobufCMessage **ret)
{
	const Csi__V1__CreateSnapshotRequest *req = (const Csi__V1__CreateSnapshotRequest *)msg;
	struct csi_driver *d = ud;
	struct create_snap cs = { req->name, req->source_volume_id, ret };

	if (!req->name || !*req->name)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "name is missing");
	if (strlen(req->name) > 128)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "name is longer than 128 bytes");
	if (!req->source_volume_id || !*req->source_volume_id)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "source_volume_id is missing");
	for (size_t i = 0; i < req->n_parameters; i++)
		if (!ignored_param(req->parameters[i]->key))
			return csi_fail(c, CSI_CODE_INVALID_ARGUMENT,
					"parameters: \"%s\" is not supported (snapshots take eraseafter and usage from their source volume)",
					req->parameters[i]->key);
	snprintf(c->volume, sizeof(c->volume), "%s", req->source_volume_id);
	if (csi_check_ready(c, d) < 0)
		return -1;
	if (!volume_id_is_valid(req->source_volume_id))
		return csi_fail(c, CSI_CODE_NOT_FOUND, "source_volume_id %s: no such volume",
				req->source_volume_id);
	return csi_volume_call(c, d, req->source_volume_id, create_snapshot_fn, &cs);
}

/* DeleteSnapshot -------------------------------------------------------------- */

static int delete_snapshot_fn(struct csi_call *c, struct csi_driver *d, const char *id, void *ud _unused_)
{
	struct csi_snapshots *s = csi_driver_snapshots(d);
	const char *dir = csi_driver_cfg(d)->state_dir;
	struct snapshot_record rec = {};
	int r;

	if (snap_lookup(s, id, &rec) < 0) {
		log_v(2, "DeleteSnapshot of %s: not a snapshot of this driver, nothing to do", id);
		return 0;
	}
	(void)ownership_check_state_dir(d);
	csi_snapshots_check_state_dir(d);
	r = pmem_delete(csi_driver_pm(d), id, rec.erase_after);
	if (r == -EBUSY) {
		r = csi_fail(c, CSI_CODE_FAILED_PRECONDITION, "snapshot %s is in use (its device is open)", id);
		goto out;
	}
	if (r < 0 && r != -ENOENT) {
		r = csi_fail_errno(c, r, "cannot delete snapshot %s", id);
		goto out;
	}
	r = snap_forget(s, dir, id);
	if (r < 0) {
		r = csi_fail(c, CSI_CODE_INTERNAL, "cannot remove the state of snapshot %s: %s", id, strerror(-r));
		goto out;
	}
	log_v(2, "Deleted snapshot %s (erase=%s)", id, rec.erase_after ? "true" : "false");
out:
	snapshot_record_done(&rec);
	return r;
}

int csi_controller_delete_snapshot(struct csi_call *c, void *ud, const ProtobufCMessage *msg,
				   ProtobufCMessage **ret)
{
	const Csi__V1__DeleteSnapshotRequest *req = (const Csi__V1__DeleteSnapshotRequest *)msg;
	struct csi_driver *d = ud;
	Csi__V1__DeleteSnapshotResponse *resp;
	int r;

	if (!req->snapshot_id || !*req->snapshot_id)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "snapshot_id is missing");
	resp = CSI_NEW(c, Csi__V1__DeleteSnapshotResponse, csi__v1__delete_snapshot_response__init);
	if (!resp)
		return csi_oom(c);
	/* IDs that cannot be ours are already deleted. */
	if (!snapshot_id_is_valid(req->snapshot_id)) {
		snprintf(c->volume, sizeof(c->volume), "%s", req->snapshot_id);
		if (csi_check_ready(c, d) < 0)
			return -1;
		*ret = &resp->base;
		return 0;
	}
	r = csi_volume_call(c, d, req->snapshot_id, delete_snapshot_fn, NULL);
	if (r < 0)
		return r;
	*ret = &resp->base;
	return 0;
}

/* ListSnapshots --------------------------------------------------------------- */

int csi_controller_list_snapshots(struct csi_call *c, void *ud, const ProtobufCMessage *msg,
				  ProtobufCMessage **ret)
{
	const Csi__V1__ListSnapshotsRequest *req = (const Csi__V1__ListSnapshotsRequest *)msg;
	struct csi_driver *d = ud;
	struct csi_snapshots *s = csi_driver_snapshots(d);
	Csi__V1__ListSnapshotsResponse *resp;
	const char *after = NULL, *only = NULL, *source = NULL;
	size_t start, n = 0, max;
	bool more = false;

	if (req->max_entries < 0)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "max_entries must not be negative");
	if (csi_check_ready(c, d) < 0)
		return -1;
	/* The token is the last snapshot ID of the previous page. */
	if (req->starting_token && *req->starting_token) {
		if (!snapshot_id_is_valid(req->starting_token))
			return csi_fail(c, CSI_CODE_ABORTED, "starting_token \"%s\" is not valid", req->starting_token);
		after = req->starting_token;
	}
	if (req->snapshot_id && *req->snapshot_id)
		only = req->snapshot_id;
	if (req->source_volume_id && *req->source_volume_id)
		source = req->source_volume_id;
	resp = CSI_NEW(c, Csi__V1__ListSnapshotsResponse, csi__v1__list_snapshots_response__init);
	if (!resp)
		return csi_oom(c);
	max = req->max_entries > 0 ? (size_t)req->max_entries : SIZE_MAX;
	pthread_mutex_lock(&s->lock);
	resp->entries = CSI_NEW_ARRAY(c, Csi__V1__ListSnapshotsResponse__Entry *, MIN(s->n, max));
	if (!resp->entries)
		goto oom;
	start = after ? lower_bound(s, after) : 0;
	if (after && start < s->n && strcmp(s->v[start].id, after) == 0)
		start++;
	for (size_t i = start; i < s->n; i++) {
		const struct snapshot_record *rec = &s->v[i];
		Csi__V1__ListSnapshotsResponse__Entry *e;

		/* Filters that match nothing give an empty list, not an error (spec). */
		if ((only && strcmp(rec->id, only) != 0) || (source && strcmp(rec->source, source) != 0))
			continue;
		if (n == max) {
			more = true;
			break;
		}
		e = CSI_NEW(c, Csi__V1__ListSnapshotsResponse__Entry, csi__v1__list_snapshots_response__entry__init);
		if (!e || !(e->snapshot = make_snapshot(c, rec)))
			goto oom;
		resp->entries[n++] = e;
	}
	resp->n_entries = n;
	if (more && !(resp->next_token = arena_strdup(c->arena, resp->entries[n - 1]->snapshot->snapshot_id)))
		goto oom;
	pthread_mutex_unlock(&s->lock);
	*ret = &resp->base;
	return 0;
oom:
	pthread_mutex_unlock(&s->lock);
	return csi_oom(c);
}

/* clones ---------------------------------------------------------------------- */

int csi_clone_begin(struct csi_call *c, struct csi_driver *d, const Csi__V1__VolumeContentSource *src,
		    const char *new_id, struct csi_clone *ret)
{
	struct csi_clone cl = {};
	struct pmem_device dev = {};
	const char *id;
	int r;

	switch (src->type_case) {
	case CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_SNAPSHOT:
		id = src->snapshot ? src->snapshot->snapshot_id : NULL;
		if (!id || !*id)
			return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_content_source.snapshot.snapshot_id is missing");
		if (!snapshot_id_is_valid(id))
			return csi_fail(c, CSI_CODE_NOT_FOUND, "volume_content_source.snapshot.snapshot_id %s: no such snapshot", id);
		cl.from_snapshot = true;
		break;
	case CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_VOLUME:
		id = src->volume ? src->volume->volume_id : NULL;
		if (!id || !*id)
			return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_content_source.volume.volume_id is missing");
		if (!volume_id_is_valid(id))
			return csi_fail(c, CSI_CODE_NOT_FOUND, "volume_content_source.volume.volume_id %s: no such volume", id);
		break;
	default:
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_content_source has neither snapshot nor volume");
	}
	snprintf(cl.source_id, sizeof(cl.source_id), "%s", id);
	if (strcmp(id, new_id) != 0) {
		r = csi_driver_lock(d, id);
		if (r < 0)
			return csi_fail_errno(c, r, "cannot lock %s", id);
		snprintf(cl.lock_id, sizeof(cl.lock_id), "%s", id);
	}
	if (cl.from_snapshot) {
		struct snapshot_record rec = {};
		if (snap_lookup(csi_driver_snapshots(d), id, &rec) < 0) {
			r = csi_fail(c, CSI_CODE_NOT_FOUND, "volume_content_source.snapshot.snapshot_id %s: no such snapshot", id);
			goto fail;
		}
		cl.size = rec.size;
		cl.content = rec.content;
		snapshot_record_done(&rec);
	} else {
		struct volume_record rec = {};
		if (csi_volume_lookup(d, id, &rec) < 0) {
			r = csi_fail(c, CSI_CODE_NOT_FOUND, "volume_content_source.volume.volume_id %s: no such volume", id);
			goto fail;
		}
		cl.size = rec.size;
		volume_record_done(&rec);
	}
	r = pmem_get(csi_driver_pm(d), id, &dev);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot look up the device of %s", id);
		goto fail;
	}
	if (!cl.from_snapshot)
		cl.content = dev.size;
	cl.path = TAKE_PTR(dev.path);
	pmem_device_done(&dev);
	*ret = cl;
	return 0;
fail:
	csi_clone_end(d, &cl);
	return r;
}

int csi_clone_copy(struct csi_call *c, const struct csi_clone *cl, const char *new_id, const char *dst_path)
{
	uint64_t ns = 0;
	int r;

	r = blockdev_copy(cl->path, dst_path, cl->content, &ns);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot copy %s %s (%s) to volume %s (%s)",
				      cl->from_snapshot ? "snapshot" : "volume", cl->source_id, cl->path, new_id, dst_path);
	log_v(2, "Copied %s %s to volume %s: %" PRIu64 " bytes in %.3f s (%.0f MB/s)",
	      cl->from_snapshot ? "snapshot" : "volume", cl->source_id, new_id, cl->content, (double)ns / 1e9,
	      ns ? (double)cl->content / 1e6 / ((double)ns / 1e9) : 0.0);
	return 0;
}

void csi_clone_end(struct csi_driver *d, struct csi_clone *cl)
{
	if (cl->lock_id[0])
		csi_driver_unlock(d, cl->lock_id);
	cl->lock_id[0] = 0;
	free(cl->path);
	cl->path = NULL;
}

Csi__V1__VolumeContentSource *csi_content_source(struct csi_call *c, const struct csi_clone *cl)
{
	Csi__V1__VolumeContentSource *s =
		CSI_NEW(c, Csi__V1__VolumeContentSource, csi__v1__volume_content_source__init);

	if (!s)
		return NULL;
	if (cl->from_snapshot) {
		s->type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_SNAPSHOT;
		s->snapshot = CSI_NEW(c, Csi__V1__VolumeContentSource__SnapshotSource,
				      csi__v1__volume_content_source__snapshot_source__init);
		if (!s->snapshot || !(s->snapshot->snapshot_id = arena_strdup(c->arena, cl->source_id)))
			return NULL;
	} else {
		s->type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_VOLUME;
		s->volume = CSI_NEW(c, Csi__V1__VolumeContentSource__VolumeSource,
				    csi__v1__volume_content_source__volume_source__init);
		if (!s->volume || !(s->volume->volume_id = arena_strdup(c->arena, cl->source_id)))
			return NULL;
	}
	return s;
}
