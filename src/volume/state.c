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
		if (jv_object_set_string(params, keys[i], values[i]) < 0)
			return NULL;
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

int state_write(const char *dir, const struct volume_record *r)
{
	_cleanup_free_ char *json = state_format(r), *name = NULL;

	if (!json)
		return -ENOMEM;
	name = xasprintf("%s.json", r->id);
	if (!name)
		return -ENOMEM;
	return write_file_atomic(dir, name, json, strlen(json));
}

int state_remove(const char *dir, const char *id)
{
	_cleanup_free_ char *name = xasprintf("%s.json", id);

	if (!name)
		return -ENOMEM;
	return unlink_durable(dir, name);
}

int state_intent_set(const char *dir, const char *id, const char *what)
{
	_cleanup_free_ char *name = xasprintf("%s.%s", id, what);

	if (!name)
		return -ENOMEM;
	return write_file_atomic(dir, name, "", 0);
}

int state_intent_clear(const char *dir, const char *id, const char *what)
{
	_cleanup_free_ char *name = xasprintf("%s.%s", id, what);

	if (!name)
		return -ENOMEM;
	return unlink_durable(dir, name);
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
