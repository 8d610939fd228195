/* SPDX-License-Identifier: Apache-2.0 */
#include "state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/sha224.h"
#include "basic/strutil.h"
#include "json/json.h"

#define STATE_FILE_MAX (64u * 1024)
#define STATE_MAX_PARAMS 32

void volume_record_done(struct volume_record *r)
{
	volume_params_done(&r->params);
}

struct collect {
	const char *keys[STATE_MAX_PARAMS];
	const char *values[STATE_MAX_PARAMS];
	size_t n;
	bool bad;
};

static int collect_param(const char *key, const struct jv *val, void *ud)
{
	struct collect *c = ud;

	if (c->n >= STATE_MAX_PARAMS || !jv_string(val)) {
		c->bad = true;
		return -EINVAL;
	}
	c->keys[c->n] = key;
	c->values[c->n] = jv_string(val);
	c->n++;
	return 0;
}

int state_parse(const char *buf, size_t len, struct volume_record *ret, char **ret_error)
{
	_cleanup_(jv_unrefp) struct jv *root = NULL;
	struct volume_record rec = {};
	struct collect c = {};
	const char *id;
	struct jv *params;
	int r;

	r = jv_parse(buf, len, &root, ret_error);
	if (r < 0)
		return r;
	id = jv_string(jv_object_get(root, "id"));
	if (!id || !volume_id_is_valid(id)) {
		if (ret_error)
			*ret_error = strdup("missing or invalid \"id\"");
		return -EINVAL;
	}
	if (jv_get_u64(jv_object_get(root, "size"), &rec.size) < 0) {
		if (ret_error)
			*ret_error = strdup("missing or invalid \"size\"");
		return -EINVAL;
	}
	params = jv_object_get(root, "parameters");
	if (params && jv_object_iter(params, collect_param, &c) < 0) {
		if (ret_error)
			*ret_error = strdup("\"parameters\" must map strings to strings");
		return -EINVAL;
	}
	memcpy(rec.id, id, strlen(id) + 1);
	volume_params_init(&rec.params);
	r = volume_params_parse(&rec.params, PARAMS_ORIGIN_STATE, c.keys, c.values, c.n, ret_error);
	if (r < 0) {
		volume_record_done(&rec);
		return r;
	}
	*ret = rec;
	return 0;
}

char *state_format(const struct volume_record *r)
{
	_cleanup_(jv_unrefp) struct jv *root = jv_new_object(), *params = jv_new_object();
	const char *keys[STATE_MAX_PARAMS], *values[STATE_MAX_PARAMS];
	char size_buf[VOLUME_PARAMS_SIZE_BUF];
	size_t n;

	if (!root || !params)
		return NULL;
	n = volume_params_to_state_pairs(&r->params, keys, values, STATE_MAX_PARAMS, size_buf);
	for (size_t i = 0; i < n; i++)
		if (jv_object_set_string(params, keys[i], values[i]) < 0) {
			/* A value JSON cannot hold (invalid UTF-8): bad input, not a
			 * lack of memory. The gRPC boundary refuses such strings
			 * first; this keeps the answer right if one gets here. */
			errno = EINVAL;
			return NULL;
		}
	errno = ENOMEM;
	if (jv_object_set_string(root, "id", r->id) < 0 ||
	    jv_object_set_integer(root, "size", (int64_t)r->size) < 0 ||
	    jv_object_set_new(root, "parameters", TAKE_PTR(params)) < 0)
		return NULL;
	return jv_dump(root);
}

int state_init(const char *dir)
{
	return mkdir_p(dir, 0750);
}

/*
 * Writes recreate the state directory when it is gone (removed by hand while
 * the driver runs): a record of ours must never fail to be written, and never
 * be written somewhere else. The caller learns nothing of it; the driver
 * rewrites the other records itself (see csi/ownership.c).
 */
static int write_in_dir(const char *dir, const char *name, const char *data, size_t len)
{
	int r;

	r = write_file_atomic(dir, name, data, len);
	if (r != -ENOENT)
		return r;
	if (access(dir, F_OK) == 0 || errno != ENOENT)
		return r;
	log_warning("State directory %s is gone: recreating it", dir);
	r = state_init(dir);
	if (r < 0)
		return r;
	return write_file_atomic(dir, name, data, len);
}

/* Removing what is already gone (or whose directory is gone) succeeds. */
static int remove_in_dir(const char *dir, const char *name)
{
	int r = unlink_durable(dir, name);

	return r == -ENOENT ? 0 : r;
}

int state_write(const char *dir, const struct volume_record *r)
{
	_cleanup_free_ char *json = NULL, *name = NULL;

	errno = ENOMEM;
	json = state_format(r);
	if (!json)
		return errno == EINVAL ? -EINVAL : -ENOMEM;
	name = xasprintf("%s.json", r->id);
	if (!name)
		return -ENOMEM;
	return write_in_dir(dir, name, json, strlen(json));
}

int state_remove(const char *dir, const char *id)
{
	_cleanup_free_ char *name = xasprintf("%s.json", id);

	if (!name)
		return -ENOMEM;
	return remove_in_dir(dir, name);
}

int state_exists(const char *dir, const char *id)
{
	_cleanup_free_ char *path = xasprintf("%s/%s.json", dir, id);

	if (!path)
		return -ENOMEM;
	if (access(path, F_OK) == 0)
		return 1;
	return errno == ENOENT ? 0 : -errno;
}

int state_intent_set(const char *dir, const char *id, const char *what)
{
	_cleanup_free_ char *name = xasprintf("%s.%s", id, what);

	if (!name)
		return -ENOMEM;
	return write_in_dir(dir, name, "", 0);
}

int state_intent_clear(const char *dir, const char *id, const char *what)
{
	_cleanup_free_ char *name = xasprintf("%s.%s", id, what);

	if (!name)
		return -ENOMEM;
	return remove_in_dir(dir, name);
}

int state_intent_test(const char *dir, const char *id, const char *what)
{
	_cleanup_free_ char *path = xasprintf("%s/%s.%s", dir, id, what);

	if (!path)
		return -ENOMEM;
	if (access(path, F_OK) == 0)
		return 1;
	return errno == ENOENT ? 0 : -errno;
}

/* The ID a state directory entry belongs to: "<id>.json" or "<id>.<marker>". */
static bool entry_id_valid(const char *name, const char *suffix, char id[VOLUME_ID_MAX],
			   bool (*valid)(const char *s))
{
	size_t len = strlen(name), slen = strlen(suffix);

	if (len <= slen + 1 || strcmp(name + len - slen, suffix) != 0 || name[len - slen - 1] != '.' ||
	    len - slen - 1 >= VOLUME_ID_MAX)
		return false;
	memcpy(id, name, len - slen - 1);
	id[len - slen - 1] = 0;
	return valid(id);
}

static bool entry_id(const char *name, const char *suffix, char id[VOLUME_ID_MAX])
{
	return entry_id_valid(name, suffix, id, volume_id_is_valid);
}

static int cmp_ids(const void *a, const void *b)
{
	return strcmp(a, b);
}

int state_scan(const char *dir, int (*fn)(const struct state_entry *e, void *ud), void *ud)
{
	DIR *d;
	struct dirent *de;
	char (*ids)[VOLUME_ID_MAX] = NULL;
	size_t n = 0, cap = 0;
	int r = 0;

	d = opendir(dir);
	if (!d)
		return -errno;
	/* First the IDs (a record or a creation marker, sorted, unique), then
	 * one call per ID: fn sees a volume's record and markers together. */
	while ((de = readdir(d))) {
		char id[VOLUME_ID_MAX];

		if (!entry_id(de->d_name, "json", id) && !entry_id(de->d_name, "creating", id))
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			void *p = realloc(ids, ncap * sizeof(*ids));
			if (!p) {
				r = -ENOMEM;
				goto out;
			}
			ids = p;
			cap = ncap;
		}
		memcpy(ids[n++], id, VOLUME_ID_MAX);
	}
	if (n)
		qsort(ids, n, sizeof(*ids), cmp_ids);
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *path = NULL, *buf = NULL, *err = NULL;
		struct state_entry e = { .id = ids[i] };
		struct volume_record rec;
		size_t blen;

		if (i > 0 && strcmp(ids[i], ids[i - 1]) == 0)
			continue;
		path = xasprintf("%s/%s.json", dir, ids[i]);
		if (!path) {
			r = -ENOMEM;
			break;
		}
		e.creating = state_intent_test(dir, ids[i], "creating") > 0;
		r = read_file_limited(path, STATE_FILE_MAX, &buf, &blen);
		if (r == -ENOENT) {
			e.record = STATE_RECORD_NONE;
		} else if (r < 0) {
			e.record = STATE_RECORD_UNREADABLE;
			err = xasprintf("cannot read it: %s", strerror(-r));
		} else if (state_parse(buf, blen, &rec, &err) < 0) {
			e.record = STATE_RECORD_UNREADABLE;
		} else if (strcmp(rec.id, ids[i]) != 0) {
			e.record = STATE_RECORD_UNREADABLE;
			free(err);
			err = xasprintf("it describes volume %s", rec.id);
			volume_record_done(&rec);
		} else {
			e.record = STATE_RECORD_OK;
			e.rec = &rec;
		}
		e.error = err ? err : "invalid";
		r = fn(&e, ud);
		if (e.rec)
			volume_record_done(&rec);
		if (r < 0)
			break;
	}
out:
	free(ids);
	closedir(d);
	return r;
}

int state_load_all(const char *dir, int (*fn)(struct volume_record *rec, void *ud), void *ud)
{
	DIR *d;
	struct dirent *de;
	int r = 0;

	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		_cleanup_free_ char *path = NULL, *buf = NULL, *err = NULL;
		struct volume_record rec;
		size_t len = strlen(de->d_name), blen;

		if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0)
			continue;
		path = xasprintf("%s/%s", dir, de->d_name);
		if (!path) {
			r = -ENOMEM;
			break;
		}
		r = read_file_limited(path, STATE_FILE_MAX, &buf, &blen);
		if (r < 0) {
			log_warning_errno(r, "Skipping state file %s: %m", path);
			r = 0;
			continue;
		}
		if (state_parse(buf, blen, &rec, &err) < 0) {
			log_warning("Skipping state file %s: %s", path, err ? err : "invalid");
			continue;
		}
		if (strncmp(rec.id, de->d_name, len - 5) != 0 || rec.id[len - 5] != 0) {
			log_warning("Skipping state file %s: it describes volume %s", path, rec.id);
			volume_record_done(&rec);
			continue;
		}
		r = fn(&rec, ud);
		if (r < 0)
			break;
	}
	closedir(d);
	return r;
}

/* Snapshots ------------------------------------------------------------------ */

int snapshot_id_from_name(const char *name, char ret[SNAPSHOT_ID_MAX])
{
	uint8_t digest[SHA224_DIGEST_SIZE];
	size_t len = name ? strlen(name) : 0;

	if (len == 0)
		return -EINVAL;
	sha224(name, len, digest);
	memcpy(ret, SNAPSHOT_ID_PREFIX, strlen(SNAPSHOT_ID_PREFIX));
	hexlify(digest, sizeof(digest), ret + strlen(SNAPSHOT_ID_PREFIX));
	return 0;
}

bool snapshot_id_is_valid(const char *s)
{
	size_t plen = strlen(SNAPSHOT_ID_PREFIX), hex = 2 * SHA224_DIGEST_SIZE;

	if (!s || strlen(s) != plen + hex || strncmp(s, SNAPSHOT_ID_PREFIX, plen) != 0)
		return false;
	for (size_t i = plen; i < plen + hex; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

void snapshot_record_done(struct snapshot_record *r)
{
	if (!r)
		return;
	free(r->name);
	free(r->device_mode);
	r->name = r->device_mode = NULL;
}

int snapshot_record_copy(const struct snapshot_record *src, struct snapshot_record *dst)
{
	struct snapshot_record r = *src;

	r.name = src->name ? strdup(src->name) : NULL;
	r.device_mode = src->device_mode ? strdup(src->device_mode) : NULL;
	if ((src->name && !r.name) || (src->device_mode && !r.device_mode)) {
		snapshot_record_done(&r);
		return -ENOMEM;
	}
	*dst = r;
	return 0;
}

static int snap_fail(char **ret_error, const char *what)
{
	if (ret_error)
		*ret_error = strdup(what);
	return -EINVAL;
}

int snapshot_parse(const char *buf, size_t len, struct snapshot_record *ret, char **ret_error)
{
	_cleanup_(jv_unrefp) struct jv *root = NULL;
	struct snapshot_record rec = {};
	const char *id, *source, *name, *mode, *erase, *usage, *kind;
	uint64_t created;
	struct jv *params;
	int r;

	r = jv_parse(buf, len, &root, ret_error);
	if (r < 0)
		return r;
	kind = jv_string(jv_object_get(root, "kind"));
	if (!kind || strcmp(kind, "snapshot") != 0)
		return snap_fail(ret_error, "missing or invalid \"kind\" (must be \"snapshot\")");
	id = jv_string(jv_object_get(root, "id"));
	if (!id || !snapshot_id_is_valid(id))
		return snap_fail(ret_error, "missing or invalid \"id\"");
	source = jv_string(jv_object_get(root, "sourceVolumeID"));
	if (!source || !volume_id_is_valid(source))
		return snap_fail(ret_error, "missing or invalid \"sourceVolumeID\"");
	name = jv_string(jv_object_get(root, "name"));
	if (!name || !*name || strlen(name) > 128)
		return snap_fail(ret_error, "missing or invalid \"name\"");
	if (jv_get_u64(jv_object_get(root, "size"), &rec.size) < 0 || rec.size > INT64_MAX)
		return snap_fail(ret_error, "missing or invalid \"size\"");
	if (jv_get_u64(jv_object_get(root, "contentBytes"), &rec.content) < 0 || rec.content > INT64_MAX)
		return snap_fail(ret_error, "missing or invalid \"contentBytes\"");
	if (jv_get_u64(jv_object_get(root, "creationTimeNs"), &created) < 0 || created > INT64_MAX)
		return snap_fail(ret_error, "missing or invalid \"creationTimeNs\"");
	rec.created_ns = (int64_t)created;
	params = jv_object_get(root, "parameters");
	if (!jv_is_object(params))
		return snap_fail(ret_error, "missing \"parameters\"");
	mode = jv_string(jv_object_get(params, "deviceMode"));
	if (!mode || (strcmp(mode, "lvm") != 0 && strcmp(mode, "direct") != 0))
		return snap_fail(ret_error, "missing or invalid \"parameters.deviceMode\"");
	erase = jv_string(jv_object_get(params, "eraseafter"));
	if (!erase || (strcmp(erase, "true") != 0 && strcmp(erase, "false") != 0))
		return snap_fail(ret_error, "missing or invalid \"parameters.eraseafter\"");
	rec.erase_after = strcmp(erase, "true") == 0;
	usage = jv_string(jv_object_get(params, "usage"));
	if (!usage || (strcmp(usage, "AppDirect") != 0 && strcmp(usage, "FileIO") != 0))
		return snap_fail(ret_error, "missing or invalid \"parameters.usage\"");
	rec.usage = strcmp(usage, "FileIO") == 0 ? VOLUME_USAGE_FILE_IO : VOLUME_USAGE_APP_DIRECT;
	memcpy(rec.id, id, strlen(id) + 1);
	memcpy(rec.source, source, strlen(source) + 1);
	rec.name = strdup(name);
	rec.device_mode = strdup(mode);
	if (!rec.name || !rec.device_mode) {
		snapshot_record_done(&rec);
		return -ENOMEM;
	}
	*ret = rec;
	return 0;
}

char *snapshot_format(const struct snapshot_record *r)
{
	_cleanup_(jv_unrefp) struct jv *root = jv_new_object(), *params = jv_new_object();

	errno = ENOMEM;
	if (!root || !params)
		return NULL;
	if (jv_object_set_string(params, "deviceMode", r->device_mode ? r->device_mode : "") < 0 ||
	    jv_object_set_string(params, "eraseafter", r->erase_after ? "true" : "false") < 0 ||
	    jv_object_set_string(params, "usage", volume_usage_to_string(r->usage)) < 0)
		return NULL;
	if (jv_object_set_string(root, "kind", "snapshot") < 0 || jv_object_set_string(root, "id", r->id) < 0 ||
	    jv_object_set_string(root, "sourceVolumeID", r->source) < 0 ||
	    jv_object_set_integer(root, "size", (int64_t)r->size) < 0 ||
	    jv_object_set_integer(root, "contentBytes", (int64_t)r->content) < 0 ||
	    jv_object_set_integer(root, "creationTimeNs", r->created_ns) < 0)
		return NULL;
	if (jv_object_set_string(root, "name", r->name ? r->name : "") < 0) {
		errno = EINVAL; /* invalid UTF-8: refused at the gRPC boundary first */
		return NULL;
	}
	if (jv_object_set_new(root, "parameters", TAKE_PTR(params)) < 0)
		return NULL;
	return jv_dump(root);
}

char *snapshot_state_dir(const char *dir)
{
	return xasprintf("%s/%s", dir, STATE_SNAPSHOT_SUBDIR);
}

int snapshot_state_write(const char *dir, const struct snapshot_record *r)
{
	_cleanup_free_ char *json = NULL, *name = NULL, *sdir = snapshot_state_dir(dir);
	int k;

	if (!sdir)
		return -ENOMEM;
	errno = ENOMEM;
	json = snapshot_format(r);
	if (!json)
		return errno == EINVAL ? -EINVAL : -ENOMEM;
	name = xasprintf("%s.json", r->id);
	if (!name)
		return -ENOMEM;
	k = state_init(sdir);
	if (k < 0)
		return k;
	return write_in_dir(sdir, name, json, strlen(json));
}

int snapshot_state_remove(const char *dir, const char *id)
{
	_cleanup_free_ char *sdir = snapshot_state_dir(dir);
	int r;

	if (!sdir)
		return -ENOMEM;
	r = state_remove(sdir, id);
	if (r < 0)
		return r;
	return state_intent_clear(sdir, id, "creating");
}

static bool snapshot_id_valid_cb(const char *s)
{
	return snapshot_id_is_valid(s);
}

int snapshot_state_scan(const char *dir, int (*fn)(const struct snapshot_entry *e, void *ud), void *ud)
{
	_cleanup_free_ char *sdir = snapshot_state_dir(dir);
	DIR *d;
	struct dirent *de;
	char (*ids)[VOLUME_ID_MAX] = NULL;
	size_t n = 0, cap = 0;
	int r = 0;

	if (!sdir)
		return -ENOMEM;
	d = opendir(sdir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		char id[VOLUME_ID_MAX];

		if (!entry_id_valid(de->d_name, "json", id, snapshot_id_valid_cb) &&
		    !entry_id_valid(de->d_name, "creating", id, snapshot_id_valid_cb))
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			void *p = realloc(ids, ncap * sizeof(*ids));
			if (!p) {
				r = -ENOMEM;
				goto out;
			}
			ids = p;
			cap = ncap;
		}
		memcpy(ids[n++], id, VOLUME_ID_MAX);
	}
	if (n)
		qsort(ids, n, sizeof(*ids), cmp_ids);
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *path = NULL, *buf = NULL, *err = NULL;
		struct snapshot_entry e = { .id = ids[i] };
		struct snapshot_record rec;
		size_t blen;

		if (i > 0 && strcmp(ids[i], ids[i - 1]) == 0)
			continue;
		path = xasprintf("%s/%s.json", sdir, ids[i]);
		if (!path) {
			r = -ENOMEM;
			break;
		}
		e.creating = state_intent_test(sdir, ids[i], "creating") > 0;
		r = read_file_limited(path, STATE_FILE_MAX, &buf, &blen);
		if (r == -ENOENT) {
			e.record = STATE_RECORD_NONE;
		} else if (r < 0) {
			e.record = STATE_RECORD_UNREADABLE;
			err = xasprintf("cannot read it: %s", strerror(-r));
		} else if (snapshot_parse(buf, blen, &rec, &err) < 0) {
			e.record = STATE_RECORD_UNREADABLE;
		} else if (strcmp(rec.id, ids[i]) != 0) {
			e.record = STATE_RECORD_UNREADABLE;
			free(err);
			err = xasprintf("it describes snapshot %s", rec.id);
			snapshot_record_done(&rec);
		} else {
			e.record = STATE_RECORD_OK;
			e.rec = &rec;
		}
		e.error = err ? err : "invalid";
		r = fn(&e, ud);
		if (e.rec)
			snapshot_record_done(&rec);
		if (r < 0)
			break;
	}
out:
	free(ids);
	closedir(d);
	return r;
}
