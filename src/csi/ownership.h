/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "volume/state.h"

/*
 * Ownership and crash consistency: what the driver may touch. The rules are
 * written down once, at the top of ownership.c (and for users in
 * docs/ownership.md).
 */

struct csi_driver;
struct csi_call;
struct ownership;

/* What start-up finds for one volume ID (see the table in ownership.c). */
enum ownership_device {
	OWNERSHIP_DEVICE_NONE,
	OWNERSHIP_DEVICE_PRESENT,
	OWNERSHIP_DEVICE_UNKNOWN, /* the lookup failed: it may exist */
};

struct ownership_facts {
	enum state_record record; /* none, ok or unreadable */
	bool creating;            /* the "creating" intent marker exists */
	enum ownership_device device;
	bool other_mode;           /* the record was made in the other device mode */
	bool other_mode_available; /* and that mode's device manager is open */
};

enum ownership_action {
	OWNERSHIP_SERVE,         /* register the volume */
	OWNERSHIP_DROP_RECORD,   /* remove the record (no device was made or it is gone) */
	OWNERSHIP_UNDO_CREATE,   /* remove device, record and marker: a create cut off */
	OWNERSHIP_KEEP_REPORTED, /* touch nothing, report the ID, block it for CreateVolume */
	OWNERSHIP_CLEAR_MARKER,  /* a marker without a record: remove the marker only */
	OWNERSHIP_RETRY_LATER,   /* the device lookup failed: keep the record, do not serve */
};

/** ownership_decide() - the start-up decision table (pure). */
enum ownership_action ownership_decide(const struct ownership_facts *f);
/** ownership_action_name() - e.g. "serve", for logs and tests. */
const char *ownership_action_name(enum ownership_action a);

int ownership_new(struct ownership **ret);
void ownership_free(struct ownership *o);

/**
 * ownership_reconcile() - at start-up: read the state directory and the
 * device list, apply ownership_decide() to every volume ID, register what is
 * ours, log and remember what is not. Opens the other mode's device manager
 * when a record needs it. Returns -errno only when the state directory cannot
 * be read at all.
 */
int ownership_reconcile(struct csi_driver *d);

/**
 * ownership_check_free() - before CreateVolume makes volume id: fails the
 * call (FAILED_PRECONDITION, naming the device or the record) when a device
 * or a record of that ID exists that is not a registered volume.
 */
int ownership_check_free(struct csi_call *c, struct csi_driver *d, const char *id);

/**
 * ownership_foreign() - CreateVolume found a device of that ID after all (made
 * by someone else while it ran): remember it for the report and fail the call.
 */
int ownership_foreign(struct csi_call *c, struct csi_driver *d, const char *id);

/**
 * ownership_forget() - after the device of a registered volume is gone:
 * remove its record and markers and unregister it, atomically with respect
 * to ownership_check_state_dir().
 */
int ownership_forget(struct csi_driver *d, const char *id);

/**
 * ownership_check_state_dir() - recreate a state directory that was removed
 * while the driver runs, and write the records of all registered volumes into
 * it again. Cheap (one access(2)) when it is there.
 */
int ownership_check_state_dir(struct csi_driver *d);

/** ownership_unowned_count() - devices that are present and not ours, by reason. */
void ownership_unowned_count(struct csi_driver *d, uint64_t *ret_unreadable_state, uint64_t *ret_no_state);
