/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The JSON adapter: the only file that includes jansson. Values are reference
 * counted; getters return borrowed pointers that stay valid as long as the
 * parent value lives. Parsing rejects invalid UTF-8 and documents nested more
 * than 64 levels deep.
 */

struct jv;

/** jv_parse() - parse len bytes of JSON. On error, ret_error (optional) gets a message. */
int jv_parse(const char *buf, size_t len, struct jv **ret, char **ret_error);
void jv_unref(struct jv *v);
static inline void jv_unrefp(struct jv **v)
{
	if (*v)
		jv_unref(*v);
}

/* Accessors; NULL or false when the value has another type. Borrowed pointers. */
struct jv *jv_object_get(const struct jv *obj, const char *key);
const char *jv_string(const struct jv *v);
bool jv_is_object(const struct jv *v);
bool jv_is_array(const struct jv *v);
bool jv_is_integer(const struct jv *v);
int64_t jv_integer(const struct jv *v);
size_t jv_array_size(const struct jv *v);
struct jv *jv_array_get(const struct jv *v, size_t i);
/** jv_object_iter() - calls fn for every member, stops at the first negative return. */
int jv_object_iter(const struct jv *obj, int (*fn)(const char *key, const struct jv *val, void *ud),
		   void *ud);
/**
 * jv_get_u64() - a number that LVM and others print as a string ("1234")
 * or as a JSON integer, 0..INT64_MAX. -EINVAL when neither, -ERANGE beyond.
 */
int jv_get_u64(const struct jv *v, uint64_t *ret);

/* Builders. Each returns NULL (or -ENOMEM) when out of memory. */
struct jv *jv_new_object(void);
int jv_object_set_string(struct jv *obj, const char *key, const char *val);
int jv_object_set_integer(struct jv *obj, const char *key, int64_t val);
/** jv_object_set_new() - set key to val, taking over the caller's reference. */
int jv_object_set_new(struct jv *obj, const char *key, struct jv *val);
/** jv_dump() - compact JSON with sorted keys; caller frees. */
char *jv_dump(const struct jv *v);

/* Building and editing trees (the operator patches manifests with these). */
struct jv *jv_new_array(void);
/** jv_new_string() - NULL for invalid UTF-8 or when out of memory. */
struct jv *jv_new_string(const char *s);
/** jv_array_append_new() / _set_new() / _insert_new() - take over the caller's reference to val. */
int jv_array_append_new(struct jv *arr, struct jv *val);
int jv_array_set_new(struct jv *arr, size_t i, struct jv *val);
int jv_array_insert_new(struct jv *arr, size_t i, struct jv *val);
/** jv_object_del() - remove key; -ENOENT when it is not there. */
int jv_object_del(struct jv *obj, const char *key);
/** jv_deep_copy() - a copy that shares nothing with v; NULL when out of memory. */
struct jv *jv_deep_copy(const struct jv *v);
struct jv *jv_new_true(void);
