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

/* Snapshots ------------------------------------------------------------------ */

/*
 * A snapshot is a full copy of a volume on a device of its own (an LV or a
 * namespace named by the snapshot ID). Its record lives in the "snapshots"
 * subdirectory of the state directory, <dir>/snapshots/<snapshotID>.json, so
 * that nothing that reads volume records (this driver's volume scan,
 * intel/pmem-csi 1.x after a downgrade) mistakes it for a volume. The same
 * rules as for volumes apply: written before the device is made, removed
 * after it is gone, a "creating" marker <snapshotID>.creating while the
 * device is made and the copy runs.
 */

#define SNAPSHOT_ID_MAX 64 /* "snap." + 56 hex + NUL = 62 */
#define SNAPSHOT_ID_PREFIX "snap."
#define STATE_SNAPSHOT_SUBDIR "snapshots"

/**
 * snapshot_id_from_name() - "snap." and the hex SHA-224 of the snapshot name.
 * Never a volume ID: a volume ID has '-' where this has '.', and a valid LV,
 * namespace and file name. -EINVAL for an empty name.
 */
int snapshot_id_from_name(const char *name, char ret[SNAPSHOT_ID_MAX]);
/** snapshot_id_is_valid() - whether s has the shape of a snapshot ID. */
bool snapshot_id_is_valid(const char *s);

struct snapshot_record {
	char id[SNAPSHOT_ID_MAX];
	char source[VOLUME_ID_MAX]; /* the source volume's ID */
	char *name;                 /* CSI snapshot name */
	char *device_mode;          /* "lvm" or "direct": where the device is */
	uint64_t size;              /* size_bytes: the source volume's size as the CO knows it */
	uint64_t content;           /* bytes copied: the whole source device */
	int64_t created_ns;         /* creation time, ns since the epoch */
	bool erase_after;           /* the source volume's eraseafter */
	enum volume_usage usage;    /* the source volume's usage (namespace mode in direct mode) */
};

void snapshot_record_done(struct snapshot_record *r);
int snapshot_record_copy(const struct snapshot_record *src, struct snapshot_record *dst);
/** snapshot_parse() - parse a snapshot record (pure, fuzzed like state_parse()). */
int snapshot_parse(const char *buf, size_t len, struct snapshot_record *ret, char **ret_error);
/** snapshot_format() - the JSON of a record; caller frees; NULL with errno set. */
char *snapshot_format(const struct snapshot_record *r);

/** snapshot_state_dir() - "<dir>/snapshots"; caller frees; NULL when out of memory. */
char *snapshot_state_dir(const char *dir);
/** snapshot_state_write() - write a record atomically, creating the directories. */
int snapshot_state_write(const char *dir, const struct snapshot_record *r);
/** snapshot_state_remove() - remove a record and its markers; success when gone. */
int snapshot_state_remove(const char *dir, const char *id);

struct snapshot_entry {
	const char *id;
	enum state_record record;
	const struct snapshot_record *rec; /* borrowed, valid during the callback */
	const char *error;
	bool creating;
};

/**
 * snapshot_state_scan() - fn once per snapshot ID with a record or a
 * "creating" marker in <dir>/snapshots, in ID order. A missing directory is
 * an empty one.
 */
int snapshot_state_scan(const char *dir, int (*fn)(const struct snapshot_entry *e, void *ud), void *ud);
