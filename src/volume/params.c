/* SPDX-License-Identifier: Apache-2.0 */
#include "params.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/macro.h"
#include "basic/sha224.h"
#include "basic/strutil.h"

#define KEY_ERASE_AFTER "eraseafter"
#define KEY_ERASE_AFTER_DOC "eraseAfter" /* as upstream's docs spell it */
#define KEY_KATA "kataContainers"
#define KEY_USAGE "usage"
#define KEY_PERSISTENCY "persistencyModel"
#define KEY_CACHE_SIZE "cacheSize"
#define KEY_SIZE "size"
#define KEY_NAME "name"
#define KEY_NAME_V06 "Name" /* intel/pmem-csi 0.6's spelling in its state files */
#define KEY_DEVICE_MODE "deviceMode"
#define KEY_FSTYPE "fsType"
#define KEY_EPHEMERAL "csi.storage.k8s.io/ephemeral"
#define KEY_PROVISIONER_ID "storage.kubernetes.io/csiProvisionerIdentity"
#define PREFIX_K8S "csi.storage.k8s.io/"

void volume_params_init(struct volume_params *p)
{
	memset(p, 0, sizeof(*p));
	p->erase_after = true;
	p->usage = VOLUME_USAGE_APP_DIRECT;
	p->cache_size = 1;
}

void volume_params_done(struct volume_params *p)
{
	free(p->name);
	free(p->device_mode);
	free(p->fs_type);
	p->name = p->device_mode = p->fs_type = NULL;
}

const char *volume_usage_to_string(enum volume_usage u)
{
	return u == VOLUME_USAGE_FILE_IO ? "FileIO" : "AppDirect";
}

static bool allowed(enum params_origin o, const char *key)
{
	/* Keys the external-provisioner (--extra-create-metadata) and kubelet
	 * (podInfoOnMount) add; they carry no meaning for the volume. */
	bool k8s = startswith(key, PREFIX_K8S);

	if (streq_ptr(key, KEY_ERASE_AFTER) || streq_ptr(key, KEY_ERASE_AFTER_DOC) ||
	    streq_ptr(key, KEY_KATA) || streq_ptr(key, KEY_USAGE))
		return true;
	/* cache volumes: storage class, volume context and state; never inline */
	if (streq_ptr(key, KEY_CACHE_SIZE))
		return o != PARAMS_ORIGIN_EPHEMERAL;
	switch (o) {
	case PARAMS_ORIGIN_CREATE_VOLUME:
		return streq_ptr(key, KEY_PERSISTENCY) || streq_ptr(key, "csi.storage.k8s.io/pvc/name") ||
		       streq_ptr(key, "csi.storage.k8s.io/pvc/namespace") ||
		       streq_ptr(key, "csi.storage.k8s.io/pv/name");
	case PARAMS_ORIGIN_EPHEMERAL:
		return k8s || streq_ptr(key, KEY_SIZE) || streq_ptr(key, KEY_FSTYPE);
	case PARAMS_ORIGIN_PUBLISH_CONTEXT:
		return k8s || streq_ptr(key, KEY_PERSISTENCY) || streq_ptr(key, KEY_NAME) ||
		       streq_ptr(key, KEY_PROVISIONER_ID);
	case PARAMS_ORIGIN_STATE:
		/* 0.6 stored its inline volumes' whole context: the pod info keys too. */
		return streq_ptr(key, KEY_PERSISTENCY) || streq_ptr(key, KEY_NAME) ||
		       streq_ptr(key, KEY_NAME_V06) || k8s || streq_ptr(key, KEY_SIZE) ||
		       streq_ptr(key, KEY_DEVICE_MODE);
	}
	return false;
}

_printf_(2, 3) static int fail(char **ret_error, const char *fmt, ...)
{
	va_list ap;

	if (ret_error) {
		va_start(ap, fmt);
		if (vasprintf(ret_error, fmt, ap) < 0)
			*ret_error = NULL;
		va_end(ap);
	}
	return -EINVAL;
}

int volume_params_parse(struct volume_params *p, enum params_origin origin, const char *const *keys,
			const char *const *values, size_t n, char **ret_error)
{
	bool has_cache_size = false;

	for (size_t i = 0; i < n; i++) {
		const char *k = keys[i], *v = values[i] ? values[i] : "";
		int r;

		if (!allowed(origin, k))
			return fail(ret_error, "parameter \"%s\" is not valid here (value \"%s\")", k, v);
		if (streq_ptr(k, KEY_ERASE_AFTER) || streq_ptr(k, KEY_ERASE_AFTER_DOC)) {
			if (parse_bool(v, &p->erase_after) < 0)
				return fail(ret_error, "parameter \"%s\": \"%s\" is not a boolean", k, v);
		} else if (streq_ptr(k, KEY_KATA)) {
			if (parse_bool(v, &p->kata) < 0)
				return fail(ret_error, "parameter \"%s\": \"%s\" is not a boolean", k, v);
		} else if (streq_ptr(k, KEY_USAGE)) {
			/* "" means unset, as in 1.1: the default, AppDirect */
			if (streq_ptr(v, "AppDirect") || streq_ptr(v, ""))
				p->usage = VOLUME_USAGE_APP_DIRECT;
			else if (streq_ptr(v, "FileIO"))
				p->usage = VOLUME_USAGE_FILE_IO;
			else
				return fail(ret_error,
					    "parameter \"%s\": unknown value \"%s\" (AppDirect or FileIO)", k, v);
		} else if (streq_ptr(k, KEY_PERSISTENCY)) {
			p->cache = false;
			if (streq_ptr(v, "normal") || streq_ptr(v, ""))
				p->persistency_none = false;
			else if (streq_ptr(v, "none"))
				p->persistency_none = true;
			else if (streq_ptr(v, "cache") && origin != PARAMS_ORIGIN_EPHEMERAL)
				p->cache = true;
			else if (streq_ptr(v, "ephemeral") && origin == PARAMS_ORIGIN_STATE)
				/* how 1.1 marks inline ephemeral volumes in its state files */
				p->ephemeral = true;
			else
				return fail(ret_error, "parameter \"%s\": unknown value \"%s\" (normal or cache)", k, v);
		} else if (streq_ptr(k, KEY_CACHE_SIZE)) {
			uint64_t u;

			if (safe_atou64(v, &u) < 0 || u == 0 || u > VOLUME_CACHE_SIZE_MAX)
				return fail(ret_error,
					    "parameter \"%s\": \"%s\" is not a number of nodes between 1 and %u", k,
					    v, VOLUME_CACHE_SIZE_MAX);
			p->cache_size = (unsigned)u;
			has_cache_size = true;
		} else if (streq_ptr(k, KEY_SIZE)) {
			r = parse_quantity(v, &p->size);
			if (r < 0)
				return fail(ret_error,
					    "parameter \"%s\": \"%s\" is not a valid size (a Kubernetes quantity like 1Gi or 500M)",
					    k, v);
			p->has_size = true;
		} else if (streq_ptr(k, KEY_NAME) || streq_ptr(k, KEY_NAME_V06)) {
			free(p->name);
			p->name = strdup(v);
			if (!p->name)
				return -ENOMEM;
		} else if (streq_ptr(k, KEY_DEVICE_MODE)) {
			/* 1.1's DeviceMode.Set(): "ndctl" is the old name of direct mode,
			 * "fake" its test mode. */
			if (streq_ptr(v, "ndctl"))
				v = "direct";
			else if (!streq_ptr(v, "lvm") && !streq_ptr(v, "direct") && !streq_ptr(v, "fake"))
				return fail(ret_error, "parameter \"%s\": unknown device mode \"%s\" (lvm or direct)",
					    k, v);
			free(p->device_mode);
			p->device_mode = strdup(v);
			if (!p->device_mode)
				return -ENOMEM;
		} else if (streq_ptr(k, KEY_FSTYPE)) {
			if (!streq_ptr(v, "ext4") && !streq_ptr(v, "xfs") && !streq_ptr(v, ""))
				return fail(ret_error, "parameter \"%s\": unsupported filesystem \"%s\" (ext4 or xfs)",
					    k, v);
			free(p->fs_type);
			p->fs_type = strdup(v);
			if (!p->fs_type)
				return -ENOMEM;
		} else if (streq_ptr(k, KEY_EPHEMERAL)) {
			bool b;

			/* As 1.1: "true" marks the volume ephemeral, "false" does not unmark
			 * it (persistencyModel=ephemeral in a state file still counts). */
			if (parse_bool(v, &b) < 0)
				return fail(ret_error, "parameter \"%s\": \"%s\" is not a boolean", k, v);
			if (b)
				p->ephemeral = true;
		}
		/* other csi.storage.k8s.io/ keys: pod info, ignored */
	}
	if (p->kata && p->usage != VOLUME_USAGE_APP_DIRECT)
		return fail(ret_error, "parameter \"%s\": %s volumes cannot be used with usage=FileIO",
			    KEY_KATA, "Kata Containers");
	/* As 0.7: cacheSize only means something for a cache volume. */
	if (has_cache_size && !p->cache)
		return fail(ret_error, "parameter \"%s\": only valid with %s=cache", KEY_CACHE_SIZE,
			    KEY_PERSISTENCY);
	if (p->cache && p->ephemeral)
		return fail(ret_error, "parameter \"%s\": an inline ephemeral volume cannot be a cache volume",
			    KEY_PERSISTENCY);
	return 0;
}

bool volume_params_equal(const struct volume_params *a, const struct volume_params *b)
{
	return a->erase_after == b->erase_after && a->kata == b->kata && a->usage == b->usage &&
	       a->persistency_none == b->persistency_none && a->cache == b->cache &&
	       (!a->cache || a->cache_size == b->cache_size);
}

/* The values of cacheSize as static strings: the pairs borrow their values. */
static const char *const cache_sizes[VOLUME_CACHE_SIZE_MAX + 1] = {
	"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
	"16", "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30",
	"31", "32", "33", "34", "35", "36", "37", "38", "39", "40", "41", "42", "43", "44", "45",
	"46", "47", "48", "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59", "60",
	"61", "62", "63", "64"
};

static size_t to_pairs(const struct volume_params *p, const char **keys, const char **values, size_t max,
		       char *size_buf, size_t size_len)
{
	size_t n = 0;

#define ADD(k, v)                          \
	do {                               \
		if (n < max && (v)) {      \
			keys[n] = (k);     \
			values[n] = (v);   \
			n++;               \
		}                          \
	} while (0)
	ADD(KEY_ERASE_AFTER, p->erase_after ? "true" : "false");
	ADD(KEY_KATA, p->kata ? "true" : "false");
	ADD(KEY_USAGE, volume_usage_to_string(p->usage));
	/* 1.1 rejects a state file with the csi.storage.k8s.io/ephemeral key (not
	 * in its NodeVolumeOrigin list) and deletes an inline volume on unpublish
	 * when persistencyModel is "ephemeral": so that is how we write it. */
	ADD(KEY_PERSISTENCY, p->ephemeral ? "ephemeral" : p->cache ? "cache" : p->persistency_none ? "none" : "normal");
	if (p->cache && p->cache_size < ELEMENTSOF(cache_sizes))
		ADD(KEY_CACHE_SIZE, cache_sizes[p->cache_size]);
	ADD(KEY_NAME, p->name);
	ADD(KEY_DEVICE_MODE, p->device_mode);
	if (p->has_size && size_buf) {
		int len = snprintf(size_buf, size_len, "%" PRIu64, p->size);
		if (len > 0 && (size_t)len < size_len)
			ADD(KEY_SIZE, size_buf);
	}
#undef ADD
	return n;
}

size_t volume_params_to_pairs(const struct volume_params *p, const char **keys, const char **values,
			      size_t max)
{
	return to_pairs(p, keys, values, max, NULL, 0);
}

size_t volume_params_to_state_pairs(const struct volume_params *p, const char **keys, const char **values,
				    size_t max, char size_buf[VOLUME_PARAMS_SIZE_BUF])
{
	return to_pairs(p, keys, values, max, size_buf, VOLUME_PARAMS_SIZE_BUF);
}

static bool lvm_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '_' || c == '.' || c == '-';
}

/*
 * LVM refuses LV names containing these (lvm(8), "reserved names"); only the
 * ones that fit in 6 characters matter here, as '-' follows the prefix.
 */
static const char *const lvm_reserved[] = { "_cdata", "_cmeta", "_corig", "_iorig", "_mlog",
					    "_rlog",  "_rmeta", "_tdata", "_tmeta", "_vdata" };

int volume_id_from_name(const char *name, char ret[VOLUME_ID_MAX])
{
	uint8_t digest[SHA224_DIGEST_SIZE];
	size_t len = strlen(name), prefix = MIN(len, (size_t)6);
	char id[VOLUME_ID_MAX];

	if (len == 0)
		return -EINVAL;
	/*
	 * 1.1 uses name[0:6] as it is. Every volume it could create in LVM mode
	 * has a prefix LVM accepts, and that ID is kept unchanged. Other bytes
	 * (and a leading '-', and the '_' of a reserved LVM suffix) become '+',
	 * so that the ID is always a valid LV name, namespace name and file name
	 * where 1.1 failed in LVM mode or wrote a name no tool could handle.
	 */
	memcpy(id, name, prefix);
	id[prefix] = 0;
	for (size_t i = 0; i < prefix; i++)
		if (!lvm_name_char(id[i]) || (i == 0 && id[i] == '-'))
			id[i] = '+';
	for (size_t i = 0; i < ELEMENTSOF(lvm_reserved); i++) {
		char *hit;
		while ((hit = strstr(id, lvm_reserved[i])))
			*hit = '+';
	}
	sha224(name, len, digest);
	id[prefix] = '-';
	hexlify(digest, sizeof(digest), id + prefix + 1);
	memcpy(ret, id, strlen(id) + 1);
	return 0;
}

static bool lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

bool volume_id_is_valid(const char *s)
{
	size_t len = s ? strlen(s) : 0, hex = 2 * SHA224_DIGEST_SIZE;

	/* intel/pmem-csi 0.6 named volumes by the hex SHA-1 of the name: its
	 * volumes (state records, LVs, namespaces) keep these IDs after an
	 * upgrade. No name derives such an ID here (ours always have a '-'). */
	if (len == 40 && lower_hex(s, len))
		return true;
	if (len < hex + 1 || len > hex + 7 || s[0] == '-')
		return false;
	if (s[len - hex - 1] != '-')
		return false;
	for (size_t i = 0; i < len - hex - 1; i++)
		if (!lvm_name_char(s[i]))
			return false;
	return lower_hex(s + len - hex, hex);
}
