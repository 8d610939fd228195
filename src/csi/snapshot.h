/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "csi.pb-c.h"
#include "server.h"
#include "volume/state.h"

/*
 * Snapshots and clones (snapshot.c). A snapshot is a full copy of a volume
 * on a device of its own; a clone is a new volume whose device gets the copy
 * of a volume or snapshot before it is registered. DAX excludes the
 * copy-on-write device mappers (dm-snapshot, thin pools) that would make
 * either cheap, so both cost the full size in PMEM and one copy at memory
 * speed (docs/usage.md).
 */

struct csi_driver;
struct csi_snapshots;

int csi_snapshots_new(struct csi_snapshots **ret);
void csi_snapshots_free(struct csi_snapshots *s);

/**
 * csi_snapshots_reconcile() - at start-up, before the volumes: read the
 * snapshot records and apply the ownership rules of volumes to them (serve,
 * drop a record without device, undo a create or copy cut off by a crash,
 * keep an unreadable record and its device untouched).
 */
int csi_snapshots_reconcile(struct csi_driver *d);

/**
 * csi_snapshot_claims() - whether a device name belongs to a snapshot record
 * (served, or kept for an unreadable record): not a foreign device.
 */
bool csi_snapshot_claims(struct csi_driver *d, const char *name);

/** csi_snapshots_check_state_dir() - rewrite the snapshot records when the state directory was removed. */
void csi_snapshots_check_state_dir(struct csi_driver *d);

/*
 * The source of a clone, locked and looked up by csi_clone_begin() and
 * released by csi_clone_end().
 */
struct csi_clone {
	char lock_id[VOLUME_ID_MAX]; /* held lock ("" when none) */
	char source_id[VOLUME_ID_MAX];
	bool from_snapshot;
	char *path;       /* the source device */
	uint64_t size;    /* the size the CO knows (minimum for the new volume) */
	uint64_t content; /* the bytes to copy */
};

/**
 * csi_clone_begin() - validate a volume_content_source, lock its source
 * (unless it is new_id itself), and look it up: NOT_FOUND for a missing
 * source, INVALID_ARGUMENT for an empty one. Fails the call on error.
 */
int csi_clone_begin(struct csi_call *c, struct csi_driver *d, const Csi__V1__VolumeContentSource *src,
		    const char *new_id, struct csi_clone *ret);
/** csi_clone_copy() - copy the source's content to the new device (under the "creating" marker). */
int csi_clone_copy(struct csi_call *c, const struct csi_clone *cl, const char *new_id, const char *dst_path);
void csi_clone_end(struct csi_driver *d, struct csi_clone *cl);

/** csi_content_source() - the volume_content_source of a response, in the arena. */
Csi__V1__VolumeContentSource *csi_content_source(struct csi_call *c, const struct csi_clone *cl);
