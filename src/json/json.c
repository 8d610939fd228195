/* SPDX-License-Identifier: Apache-2.0 */
#include "json.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/strutil.h"

/* struct jv is never defined: it is json_t in disguise. */
#define J(v) ((json_t *)(v))
#define JC(v) ((const json_t *)(v))
#define V(j) ((struct jv *)(j))

#define JV_MAX_DEPTH 64

static int depth_ok(const json_t *j, int depth)
{
	if (depth > JV_MAX_DEPTH)
		return 0;
	if (json_is_object(j)) {
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)j, k, v)
			if (!depth_ok(v, depth + 1))
				return 0;
	} else if (json_is_array(j)) {
		size_t i;
		json_t *v;
		json_array_foreach(j, i, v)
			if (!depth_ok(v, depth + 1))
				return 0;
	}
	return 1;
}

int jv_parse(const char *buf, size_t len, struct jv **ret, char **ret_error)
{
	json_error_t err;
	json_t *j;

	j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
	if (!j) {
		if (ret_error)
			*ret_error = xasprintf("line %d column %d: %s", err.line, err.column, err.text);
		return -EINVAL;
	}
	if (!depth_ok(j, 0)) {
		json_decref(j);
		if (ret_error)
			*ret_error = xasprintf("nested too deeply (more than %d levels)", JV_MAX_DEPTH);
		return -EINVAL;
	}
	*ret = V(j);
	return 0;
}

void jv_unref(struct jv *v)
{
	json_decref(J(v));
}

struct jv *jv_object_get(const struct jv *obj, const char *key)
{
	return V(json_object_get(JC(obj), key));
}

const char *jv_string(const struct jv *v)
{
	return v ? json_string_value(JC(v)) : NULL;
}

bool jv_is_object(const struct jv *v)
{
	return v && json_is_object(JC(v));
}

bool jv_is_array(const struct jv *v)
{
	return v && json_is_array(JC(v));
}

bool jv_is_integer(const struct jv *v)
{
	return v && json_is_integer(JC(v));
}

int64_t jv_integer(const struct jv *v)
{
	return v ? (int64_t)json_integer_value(JC(v)) : 0;
}

size_t jv_array_size(const struct jv *v)
{
	return v ? json_array_size(JC(v)) : 0;
}

struct jv *jv_array_get(const struct jv *v, size_t i)
{
	return v ? V(json_array_get(JC(v), i)) : NULL;
}

int jv_object_iter(const struct jv *obj, int (*fn)(const char *key, const struct jv *val, void *ud),
		   void *ud)
{
	const char *k;
	json_t *v;

	if (!jv_is_object(obj))
		return -EINVAL;
	json_object_foreach(J(obj), k, v) {
		int r = fn(k, V(v), ud);
		if (r < 0)
			return r;
	}
	return 0;
}

int jv_get_u64(const struct jv *v, uint64_t *ret)
{
	if (!v)
		return -EINVAL;
	if (json_is_integer(JC(v))) {
		json_int_t i = json_integer_value(JC(v));
		if (i < 0)
			return -ERANGE;
		*ret = (uint64_t)i;
		return 0;
	}
	if (json_is_string(JC(v))) {
		/* Values above INT64_MAX could not be written back as JSON integers. */
		uint64_t u;
		int r = safe_atou64(json_string_value(JC(v)), &u);
		if (r < 0)
			return r;
		if (u > INT64_MAX)
			return -ERANGE;
		*ret = u;
		return 0;
	}
	return -EINVAL;
}

struct jv *jv_new_object(void)
{
	return V(json_object());
}

int jv_object_set_string(struct jv *obj, const char *key, const char *val)
{
	json_t *s = json_string(val);
	if (!s)
		return -EINVAL; /* invalid UTF-8 or OOM */
	return json_object_set_new(J(obj), key, s) < 0 ? -ENOMEM : 0;
}

int jv_object_set_integer(struct jv *obj, const char *key, int64_t val)
{
	return json_object_set_new(J(obj), key, json_integer((json_int_t)val)) < 0 ? -ENOMEM : 0;
}

int jv_object_set_new(struct jv *obj, const char *key, struct jv *val)
{
	return json_object_set_new(J(obj), key, J(val)) < 0 ? -ENOMEM : 0;
}

char *jv_dump(const struct jv *v)
{
	return json_dumps(JC(v), JSON_COMPACT | JSON_SORT_KEYS);
}

struct jv *jv_new_array(void)
{
	return V(json_array());
}

struct jv *jv_new_string(const char *s)
{
	return V(json_string(s));
}

int jv_array_append_new(struct jv *arr, struct jv *val)
{
	return json_array_append_new(J(arr), J(val)) < 0 ? -ENOMEM : 0;
}

int jv_array_set_new(struct jv *arr, size_t i, struct jv *val)
{
	return json_array_set_new(J(arr), i, J(val)) < 0 ? -EINVAL : 0;
}

int jv_array_insert_new(struct jv *arr, size_t i, struct jv *val)
{
	return json_array_insert_new(J(arr), i, J(val)) < 0 ? -EINVAL : 0;
}

int jv_object_del(struct jv *obj, const char *key)
{
	return json_object_del(J(obj), key) < 0 ? -ENOENT : 0;
}

struct jv *jv_deep_copy(const struct jv *v)
{
	return V(json_deep_copy(JC(v)));
}

struct jv *jv_new_true(void)
{
	return V(json_true());
}
