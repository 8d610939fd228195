/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ownership: what this driver may touch, and how that stays true across
 * crashes. A node plugin runs as root beside everything else on the node, so
 * this file is the one place that decides; docs/ownership.md says the same for
 * users.
 *
 * A device (a logical volume in one of our volume groups, or a namespace) is
 * OURS when
 *   1. the state directory holds a readable record <id>.json for it: written
 *      before the device is created, removed after the device is gone; or
 *   2. next to that record, a "creating" intent marker <id>.creating says that a
 *      CreateVolume was cut off between making the device and clearing its
 *      first 4 KiB. Such a device was never handed out: it is removed at the
 *      next start and the CO retries.
 * Everything else is NOT OURS, whatever its name: a device made by hand whose
 * name has the shape of a volume ID, a device whose record cannot be read
 * (corrupt) or was lost. It is never erased, removed, adopted or handed out:
 *   - DeleteVolume of an ID that is not a registered volume succeeds and
 *     touches nothing (deleting what does not exist is success in CSI);
 *   - CreateVolume of a name whose ID has such a device, or an unusable
 *     record, fails with FAILED_PRECONDITION naming the device or record.
 *     Not ALREADY_EXISTS: that tells the CO a volume of this name exists with
 *     other properties, which is false. FAILED_PRECONDITION says the node is
 *     not in a state where the call can succeed until someone acts (the CO
 *     retries with backoff), which is the truth;
 *   - it is reported: a log line at start-up and at each refused create, and
 *     the gauge pmem_csi_unowned_devices{reason} (docs/metrics.md). An
 *     unreadable record stays in place for inspection, and its ID stays
 *     blocked until an administrator removes the record (and the device).
 *
 * Crash consistency comes from the order of the steps:
 *   CreateVolume  record, marker, device (first 4 KiB cleared), marker removed,
 *                 registered. A failure undoes the steps in reverse: the device
 *                 managers remove a device whose set-up failed, so a failed
 *                 call leaves no device, record or marker.
 *   DeleteVolume  device erased (if asked) and removed, record removed,
 *                 unregistered.
 * At start-up ownership_reconcile() looks at every volume ID that has a record
 * or a marker, and ownership_decide() picks one action:
 *
 *   record      marker  device    action
 *   unreadable  any     any       keep all, report, block the ID
 *   none        yes     any       remove the marker (a record, written first, is
 *                                 gone: a device of that name is not ours)
 *   ok          yes     any       undo the create: device, record, marker
 *   ok          no      present   serve
 *   ok          no      none      remove the record and any disabled leftover of
 *                                 the device (create cut off before the device,
 *                                 or delete cut off after it)
 *   ok          no      unknown   keep the record, do not serve (lookup failed)
 *
 * Then every device of the manager that is not a registered volume is
 * reported as not ours. A record made in the other device mode (its
 * "deviceMode") is looked up, served and deleted through a device manager of
 * that mode, as intel/pmem-csi 1.x does; it is never dropped only because our
 * mode cannot see its device. If that manager cannot be opened, the record is
 * kept and not served (the action for an unknown device).
 *
 * The state directory: removed while the driver runs, it is recreated by the
 * next CreateVolume, DeleteVolume or GetCapacity, which also writes the
 * records of all registered volumes again from memory (a record write
 * elsewhere, e.g. a mkfs marker, recreates the directory alone). Records are
 * removed under the registry lock, so such a rewrite never resurrects a
 * deleted volume.
 */
#include "ownership.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "driver.h"
#include "snapshot.h"

enum unowned_reason {
	UNOWNED_UNREADABLE_STATE,
	UNOWNED_NO_STATE,
};

struct unowned {
	char *name;
	enum unowned_reason reason;
};

struct ownership {
	pthread_mutex_t lock; /* protects the list */
	struct unowned *list;
	size_t n, cap;
};

/* Keeps the report bounded whatever is on the node. */
#define UNOWNED_MAX 4096

enum ownership_action ownership_decide(const struct ownership_facts *f)
{
	switch (f->record) {
	case STATE_RECORD_UNREADABLE:
		return OWNERSHIP_KEEP_REPORTED;
	case STATE_RECORD_NONE:
		return f->creating ? OWNERSHIP_CLEAR_MARKER : OWNERSHIP_KEEP_REPORTED;
	case STATE_RECORD_OK:
		break;
	}
	if (f->other_mode && !f->other_mode_available)
		return OWNERSHIP_RETRY_LATER;
	if (f->creating)
		return OWNERSHIP_UNDO_CREATE;
	switch (f->device) {
	case OWNERSHIP_DEVICE_PRESENT:
		return OWNERSHIP_SERVE;
	case OWNERSHIP_DEVICE_NONE:
		return OWNERSHIP_DROP_RECORD;
	case OWNERSHIP_DEVICE_UNKNOWN:
		break;
	}
	return OWNERSHIP_RETRY_LATER;
}

const char *ownership_action_name(enum ownership_action a)
{
	static const char *const names[] = {
		[OWNERSHIP_SERVE] = "serve",
		[OWNERSHIP_DROP_RECORD] = "drop-record",
		[OWNERSHIP_UNDO_CREATE] = "undo-create",
		[OWNERSHIP_KEEP_REPORTED] = "keep-reported",
		[OWNERSHIP_CLEAR_MARKER] = "clear-marker",
		[OWNERSHIP_RETRY_LATER] = "retry-later",
	};

	return (size_t)a < ELEMENTSOF(names) && names[a] ? names[a] : "?";
}

int ownership_new(struct ownership **ret)
{
	struct ownership *o = calloc(1, sizeof(*o));

	if (!o)
		return -ENOMEM;
	pthread_mutex_init(&o->lock, NULL);
	*ret = o;
	return 0;
}

void ownership_free(struct ownership *o)
{
	if (!o)
		return;
	for (size_t i = 0; i < o->n; i++)
		free(o->list[i].name);
	free(o->list);
	pthread_mutex_destroy(&o->lock);
	free(o);
}

/* Remember a name for the report (once). Out of memory only loses a report line. */
static void remember(struct ownership *o, const char *name, enum unowned_reason reason)
{
	pthread_mutex_lock(&o->lock);
	for (size_t i = 0; i < o->n; i++)
		if (strcmp(o->list[i].name, name) == 0) {
			o->list[i].reason = reason;
			goto out;
		}
	if (o->n >= UNOWNED_MAX)
		goto out;
	if (o->n == o->cap) {
		size_t ncap = o->cap ? o->cap * 2 : 16;
		struct unowned *l = realloc(o->list, ncap * sizeof(*l));
		if (!l)
			goto out;
		o->list = l;
		o->cap = ncap;
	}
	o->list[o->n].name = strdup(name);
	if (o->list[o->n].name) {
		o->list[o->n].reason = reason;
		o->n++;
	}
out:
	pthread_mutex_unlock(&o->lock);
}

void ownership_unowned_count(struct csi_driver *d, uint64_t *ret_unreadable_state, uint64_t *ret_no_state)
{
	struct ownership *o = csi_driver_ownership(d);
	struct pmem_manager *pm = csi_driver_pm(d);
	uint64_t n[2] = {};

	if (!csi_driver_ready(d)) {
		*ret_unreadable_state = *ret_no_state = 0;
		return;
	}
	pthread_mutex_lock(&o->lock);
	for (size_t i = 0; i < o->n; i++) {
		struct pmem_device dev = {};
		struct volume_record rec = {};

		/* Lookups are in-memory tables: cheap enough for a scrape. */
		if (csi_volume_lookup(d, o->list[i].name, &rec) >= 0) {
			volume_record_done(&rec);
			continue;
		}
		if (pmem_get(pm, o->list[i].name, &dev) < 0)
			continue;
		pmem_device_done(&dev);
		n[o->list[i].reason]++;
	}
	pthread_mutex_unlock(&o->lock);
	*ret_unreadable_state = n[UNOWNED_UNREADABLE_STATE];
	*ret_no_state = n[UNOWNED_NO_STATE];
}

/* start-up ------------------------------------------------------------------ */

struct reconcile {
	struct csi_driver *d;
	const char *dir;
	unsigned served, dropped, undone, kept, other_failed;
};

static bool mode_is_other(const struct pmem_manager *pm, const char *mode)
{
	const char *ours = pmem_manager_mode(pm);

	if (!mode || !*mode)
		return false; /* records from before deviceMode existed: ours */
	if (strcmp(mode, "ndctl") == 0)
		mode = "direct";
	return strcmp(mode, ours) != 0;
}

static int serve(struct reconcile *c, const struct volume_record *src, const struct pmem_device *dev)
{
	struct volume_record rec;
	int r;

	r = volume_record_copy(src, &rec);
	if (r < 0)
		return r;
	/* The record has the size the CO was given, which can be below the
	 * device's (alignment); never more than the device really has. */
	if (rec.size == 0 || rec.size > dev->size)
		rec.size = dev->size;
	r = csi_volume_add(c->d, &rec);
	volume_record_done(&rec);
	if (r >= 0)
		c->served++;
	return r;
}

static int reconcile_one(const struct state_entry *e, void *ud)
{
	struct reconcile *c = ud;
	struct pmem_manager *pm = csi_driver_pm(c->d);
	struct ownership_facts f = { .record = e->record, .creating = e->creating };
	struct pmem_device dev = {};
	enum ownership_action a;
	int r = 0;

	if (e->record == STATE_RECORD_OK) {
		f.other_mode = mode_is_other(pm, e->rec->params.device_mode);
		if (f.other_mode && !pmem_manager_other_mode(pm) && !c->other_failed) {
			log_info("Volume %s was made in %s mode: opening that device manager to serve it", e->id,
				 e->rec->params.device_mode);
			r = pmem_manager_add_other(pm, 0);
			if (r < 0) {
				log_warning_errno(r, "Cannot open the %s device manager: %m", e->rec->params.device_mode);
				c->other_failed = 1;
			}
		}
		f.other_mode_available = pmem_manager_other_mode(pm) != NULL;
		r = pmem_get(pm, e->id, &dev);
		f.device = r >= 0 ? OWNERSHIP_DEVICE_PRESENT : r == -ENOENT ? OWNERSHIP_DEVICE_NONE
									 : OWNERSHIP_DEVICE_UNKNOWN;
	}
	a = ownership_decide(&f);
	log_debug("Volume %s: record %d, creating %d, device %d, other mode %d: %s", e->id, f.record, f.creating,
		  f.device, f.other_mode, ownership_action_name(a));
	r = 0;
	switch (a) {
	case OWNERSHIP_SERVE:
		r = serve(c, e->rec, &dev);
		break;
	case OWNERSHIP_DROP_RECORD:
		log_info("Volume %s has a state record but no device: removing the record", e->id);
		/* The record makes it ours: what a delete cut off may have left
		 * (a disabled namespace of that name) goes too. */
		r = pmem_delete(pm, e->id, false);
		if (r < 0 && r != -ENOENT) {
			log_warning_errno(r, "Cannot remove what is left of the device of %s (record kept): %m", e->id);
			c->kept++;
			r = 0;
			break;
		}
		r = state_remove(c->dir, e->id);
		if (r < 0)
			log_warning_errno(r, "Failed to remove the state of %s: %m", e->id);
		c->dropped++;
		r = 0;
		break;
	case OWNERSHIP_UNDO_CREATE: {
		/* A "copying" marker: the device holds part of a copy of another
		 * volume (a clone, snapshot.c), erased as that volume would be. */
		bool erase = e->rec->params.erase_after && state_intent_test(c->dir, e->id, "copying") > 0;
		log_info("Volume %s was being created when the driver stopped: removing it%s", e->id,
			 erase ? " (erasing the partial copy)" : "");
		r = pmem_delete(pm, e->id, erase);
		if (r < 0 && r != -ENOENT) {
			log_warning_errno(r, "Cannot remove the half-created device of %s (kept, retried at the next start): %m",
					  e->id);
			c->kept++;
			r = 0;
			break;
		}
		(void)state_remove(c->dir, e->id);
		(void)state_intent_clear(c->dir, e->id, "mkfs");
		(void)state_intent_clear(c->dir, e->id, "copying");
		(void)state_intent_clear(c->dir, e->id, "creating");
		c->undone++;
		r = 0;
		break;
	}
	case OWNERSHIP_KEEP_REPORTED:
		log_warning("State record %s/%s.json cannot be read (%s): volume %s is not served, the record and "
			    "any device of that name are left as they are until an administrator removes them",
			    c->dir, e->id, e->error, e->id);
		remember(csi_driver_ownership(c->d), e->id, UNOWNED_UNREADABLE_STATE);
		c->kept++;
		break;
	case OWNERSHIP_CLEAR_MARKER:
		log_info("Volume %s has a creation marker but no record: removing the marker", e->id);
		(void)state_intent_clear(c->dir, e->id, "creating");
		break;
	case OWNERSHIP_RETRY_LATER:
		log_warning("Volume %s cannot be checked (%s): its record is kept, the volume is not served until "
			    "a restart finds its device",
			    e->id, f.other_mode && !f.other_mode_available ? "its device mode cannot be opened"
									   : "device lookup failed");
		c->kept++;
		break;
	}
	pmem_device_done(&dev);
	return r;
}

/* Every device of the manager that is not a registered volume: not ours. */
static void report_foreign(struct reconcile *c)
{
	struct pmem_device *devs = NULL;
	size_t n = 0;
	struct volume_record rec;
	int r;

	r = pmem_list(csi_driver_pm(c->d), &devs, &n);
	if (r < 0) {
		log_warning_errno(r, "Cannot list devices to check what is ours: %m");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (csi_volume_lookup(c->d, devs[i].name, &rec) >= 0) {
			volume_record_done(&rec);
			continue;
		}
		if (state_exists(c->dir, devs[i].name) > 0)
			continue; /* reported with its record */
		if (csi_snapshot_claims(c->d, devs[i].name))
			continue; /* a snapshot (snapshot.c) */
		log_warning("Device %s (%s) has no state record: it is not a volume of this driver and is left as it is",
			    devs[i].name, devs[i].path);
		remember(csi_driver_ownership(c->d), devs[i].name, UNOWNED_NO_STATE);
	}
	pmem_device_array_free(devs, n);
}

int ownership_reconcile(struct csi_driver *d)
{
	struct reconcile c = { .d = d, .dir = csi_driver_cfg(d)->state_dir };
	int r;

	r = state_init(c.dir);
	if (r < 0)
		return log_error_errno(r, "Cannot create the state directory %s: %m", c.dir);
	r = state_scan(c.dir, reconcile_one, &c);
	if (r < 0)
		return log_error_errno(r, "Failed to load the state from %s: %m", c.dir);
	report_foreign(&c);
	log_info("Loaded %u volume(s) from %s (%u incomplete one(s) dropped, %u undone, %u kept unserved)", c.served,
		 c.dir, c.dropped, c.undone, c.kept);
	return 0;
}

/* at run time ------------------------------------------------------------------ */

int ownership_foreign(struct csi_call *c, struct csi_driver *d, const char *id)
{
	struct pmem_device dev = {};
	int r;

	remember(csi_driver_ownership(d), id, UNOWNED_NO_STATE);
	r = pmem_get(csi_driver_pm(d), id, &dev);
	log_warning("CreateVolume of %s refused: a device of that name exists%s%s that this driver did not make", id,
		    r >= 0 ? " at " : "", r >= 0 ? dev.path : "");
	r = csi_fail(c, CSI_CODE_FAILED_PRECONDITION,
		     "a device named %s%s%s exists that this driver did not create (no state record): it is left "
		     "as it is; remove it by hand or use another volume name",
		     id, r >= 0 ? " at " : "", r >= 0 ? dev.path : "");
	pmem_device_done(&dev);
	return r;
}

int ownership_check_free(struct csi_call *c, struct csi_driver *d, const char *id)
{
	const char *dir = csi_driver_cfg(d)->state_dir;
	struct pmem_device dev = {};
	int r;

	r = state_exists(dir, id);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot check the state of volume %s", id);
	if (r > 0)
		return csi_fail(c, CSI_CODE_FAILED_PRECONDITION,
				"volume %s has a state record %s/%s.json that this driver cannot use (unreadable, or of a "
				"device mode it cannot open): the record and any device of that name are kept until an "
				"administrator removes them",
				id, dir, id);
	r = pmem_get(csi_driver_pm(d), id, &dev);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return csi_fail_errno(c, r, "cannot look up the device of volume %s", id);
	pmem_device_done(&dev);
	return ownership_foreign(c, d, id);
}

static int forget_files(const char *id, void *ud)
{
	const char *dir = ud;
	int r;

	r = state_remove(dir, id);
	if (r < 0)
		return r;
	(void)state_intent_clear(dir, id, "mkfs");
	(void)state_intent_clear(dir, id, "copying");
	(void)state_intent_clear(dir, id, "creating");
	return 0;
}

int ownership_forget(struct csi_driver *d, const char *id)
{
	return csi_volume_remove_if(d, id, forget_files, (void *)csi_driver_cfg(d)->state_dir);
}

static int rewrite_one(const struct volume_record *rec, void *ud)
{
	int r = state_write(ud, rec);

	if (r < 0)
		log_error_errno(r, "Cannot write the state of volume %s again: %m", rec->id);
	return 0;
}

int ownership_check_state_dir(struct csi_driver *d)
{
	const char *dir = csi_driver_cfg(d)->state_dir;
	int r;

	if (access(dir, F_OK) == 0 || errno != ENOENT)
		return 0;
	log_warning("State directory %s was removed while the driver runs: recreating it with the records of the "
		    "registered volumes",
		    dir);
	r = state_init(dir);
	if (r < 0)
		return log_error_errno(r, "Cannot recreate the state directory %s: %m", dir);
	return csi_volume_foreach(d, rewrite_one, (void *)dir);
}
