/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "params.h"

/*
 * The state store: one JSON file per volume, <dir>/<volumeID>.json, in the
 * format of intel/pmem-csi 1.x: {"id": "...", "size": N, "parameters": {...}}.
 * Written atomically (temp file, fsync, rename, fsync dir) before the device
 * is created and removed after the device is gone, so that after a crash the
 * state file is never missing for an existing device.
 */

struct volume_record {
	char id[VOLUME_ID_MAX];
	uint64_t size;
	struct volume_params params;
};

void volume_record_done(struct volume_record *r);

/** state_parse() - parse one state file's content (pure, fuzzed). */
int state_parse(const char *buf, size_t len, struct volume_record *ret, char **ret_error);
/**
 * state_format() - the JSON for a record; caller frees. NULL with errno
 * EINVAL when a value cannot be JSON (invalid UTF-8), ENOMEM otherwise.
 */
char *state_format(const struct volume_record *r);

int state_init(const char *dir);
/**
 * state_write() - write a record atomically; recreates the directory when it
 * has been removed.
 */
int state_write(const char *dir, const struct volume_record *r);
/** state_remove() - remove a record; success when it (or the directory) is gone. */
int state_remove(const char *dir, const char *id);
/** state_exists() - 1 if <dir>/<id>.json exists (readable or not), 0 if not, -errno. */
int state_exists(const char *dir, const char *id);
/**
 * state_load_all() - call fn for every parseable <id>.json in dir (fn takes
 * ownership of the record's contents). Unparseable files are logged and skipped,
 * left in place for inspection.
 */
/*
 * Intent markers: <dir>/<id>.<what> files that exist while a step that cannot
 * be made atomic runs (creating a device and clearing its start, making a
 * filesystem). A marker found at start-up or at the next attempt means the step
 * was cut off and must be redone from scratch. Durable (fsynced) before the
 * step starts.
 */
int state_intent_set(const char *dir, const char *id, const char *what);
int state_intent_clear(const char *dir, const char *id, const char *what);
/** state_intent_test() - 1 if the marker exists, 0 if not, -errno on error. */
int state_intent_test(const char *dir, const char *id, const char *what);

int state_load_all(const char *dir, int (*fn)(struct volume_record *rec, void *ud), void *ud);

enum state_record {
	STATE_RECORD_NONE,       /* no <id>.json (only a marker) */
	STATE_RECORD_OK,         /* parsed; rec is set */
	STATE_RECORD_UNREADABLE, /* present but cannot be read or parsed; error says why */
};

struct state_entry {
	const char *id;
	enum state_record record;
	const struct volume_record *rec; /* borrowed, valid during the callback */
	const char *error;
	bool creating; /* the "creating" intent marker exists */
};

/**
 * state_scan() - call fn once per volume ID that has a record or a "creating"
 * marker in dir, in ID order, with what the files say. Files whose names are
 * not volume IDs are not looked at. Stops at fn's first negative return.
 */
int state_scan(const char *dir, int (*fn)(const struct state_entry *e, void *ud), void *ud);
