/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The wire-format check of CSI requests; see validate.h for the rules.
 *
 * Why on the raw bytes and not on the unpacked message: protobuf-c unpacks a
 * string into a NUL-terminated copy and drops its length, so after unpacking
 * "a\0b" cannot be told from "a". The walk follows the protobuf encoding
 * (https://protobuf.dev/programming-guides/encoding/) as strictly as
 * protobuf-c 1.4 does or more: a tag is a varint of at most 5 bytes, a length
 * prefix too, a scalar varint at most 10; field number 0 and the group wire
 * types are refused. Whatever this walk refuses as malformed, protobuf-c may
 * accept (e.g. a length prefix that wraps around 2^32): refusing more is safe,
 * accepting what protobuf-c reads differently would not be.
 *
 * Limits are looked up by field name, which in csi.proto means the same thing
 * in every message (a "volume_id" is a volume ID wherever it appears).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/macro.h"
#include "validate.h"

#define MAX_DEPTH 16       /* csi.proto nests 5 deep; more is not a CSI request */
#define FIELD_PATH_MAX 192 /* for the error message; longer paths are cut */
#define STRING_DEFAULT_MAX 4096
#define REPEATED_DEFAULT_MAX 1024
#define MAP_KEY_MAX 512           /* a Kubernetes qualified name is at most 317 */
#define MAP_VALUE_MAX 4096        /* the CSI spec allows 4 KiB for a whole map */
#define MAP_ENTRIES_MAX 64        /* MAX_PARAMS and MAX_CONTEXT of the handlers */
#define SECRET_VALUE_MAX (1 << 20) /* a Kubernetes Secret holds at most 1 MiB */
#define KEY_PREVIEW 40            /* bytes of a bad map key quoted in the error */

struct string_limit {
	const char *field;
	size_t max_bytes;
};

/* CSI "Size Limits": 128 bytes for a string; paths are PATH_MAX with the NUL. */
static const struct string_limit string_limits[] = {
	{ "name", 128 },
	{ "volume_id", 128 },
	{ "source_volume_id", 128 },
	{ "snapshot_id", 128 },
	{ "node_id", 256 },
	{ "starting_token", 128 },
	{ "staging_target_path", 4095 },
	{ "target_path", 4095 },
	{ "volume_path", 4095 },
	{ "fs_type", 64 },
	{ "mount_flags", 4095 }, /* the kernel takes one page of options in all */
	{ "volume_mount_group", 128 },
};

struct count_limit {
	const char *field;
	size_t max_count;
};

static const struct count_limit count_limits[] = {
	{ "volume_capabilities", 16 }, /* one per access mode is what a CO sends */
	{ "mount_flags", 64 },
	{ "requisite", 5000 }, /* one topology per node: Kubernetes' largest cluster */
	{ "preferred", 5000 },
};

struct map_limit {
	const char *field;
	size_t key_max, value_max, entries_max;
	bool opaque_value; /* checked for length only, never quoted */
};

static const struct map_limit secrets_limit = { "secrets", MAP_KEY_MAX, SECRET_VALUE_MAX, MAP_ENTRIES_MAX, true };
static const struct map_limit default_map_limit = { NULL, MAP_KEY_MAX, MAP_VALUE_MAX, MAP_ENTRIES_MAX, false };

struct walker {
	char *err;
	size_t err_size;
};

struct span {
	const uint8_t *p;
	size_t len;
};

static size_t string_max(const char *field)
{
	for (size_t i = 0; i < sizeof(string_limits) / sizeof(string_limits[0]); i++)
		if (strcmp(string_limits[i].field, field) == 0)
			return string_limits[i].max_bytes;
	return STRING_DEFAULT_MAX;
}

static size_t count_max(const char *field)
{
	for (size_t i = 0; i < sizeof(count_limits) / sizeof(count_limits[0]); i++)
		if (strcmp(count_limits[i].field, field) == 0)
			return count_limits[i].max_count;
	return REPEATED_DEFAULT_MAX;
}

static const struct map_limit *map_limit(const char *field)
{
	return strcmp(field, secrets_limit.field) == 0 ? &secrets_limit : &default_map_limit;
}

static int fail(struct walker *w, int r, const char *fmt, ...) _printf_(3, 4);

static int fail(struct walker *w, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->err, w->err_size, fmt, ap);
	va_end(ap);
	return r;
}

int csi_validate_text(const uint8_t *s, size_t len, size_t *ret_offset, const char **ret_what)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = s[i];
		uint32_t cp, min;
		size_t n;

		if (c == 0) {
			*ret_offset = i;
			*ret_what = "contains a NUL byte";
			return -EINVAL;
		}
		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				goto control;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 2;
			cp = c & 0x1f;
			min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 3;
			cp = c & 0x0f;
			min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 4;
			cp = c & 0x07;
			min = 0x10000;
		} else
			goto invalid;
		if (len - i < n)
			goto invalid;
		for (size_t k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				goto invalid;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			goto invalid;
		if (cp >= 0x80 && cp <= 0x9f)
			goto control;
		i += n;
	}
	return 0;

control:
	*ret_offset = i;
	*ret_what = "contains a control character";
	return -EINVAL;
invalid:
	*ret_offset = i;
	*ret_what = "is not valid UTF-8";
	return -EINVAL;
}

/* The code point at a control character csi_validate_text() found (C0, DEL or C1). */
static unsigned control_code_point(const uint8_t *s, size_t len, size_t off)
{
	if (s[off] < 0x80 || off + 1 >= len)
		return s[off];
	return ((unsigned)(s[off] & 0x1f) << 6) | (s[off + 1] & 0x3f);
}

/* @s as a quoted C string for the error message: printable ASCII as is, the rest \xNN, cut. */
static void quote(char *buf, size_t size, const uint8_t *s, size_t len)
{
	size_t o = 0;

	buf[o++] = '"';
	for (size_t i = 0; i < len && i < KEY_PREVIEW && o + 6 < size; i++) {
		if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\')
			buf[o++] = (char)s[i];
		else
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", s[i]);
	}
	if (len > KEY_PREVIEW && o + 4 < size) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	buf[o] = 0;
}

/* The text rule and a length limit for one string; @field names it in the error. */
static int check_string(struct walker *w, const char *field, const uint8_t *s, size_t len, size_t max)
{
	const char *what;
	size_t off;

	if (len > max)
		return fail(w, -EINVAL, "%s: %zu bytes, more than the limit of %zu", field, len, max);
	if (csi_validate_text(s, len, &off, &what) < 0) {
		if (strcmp(what, "contains a control character") == 0)
			return fail(w, -EINVAL, "%s: contains the control character U+%04X at byte %zu", field,
				    control_code_point(s, len, off), off);
		return fail(w, -EINVAL, "%s: %s at byte %zu", field, what, off);
	}
	return 0;
}

/* A varint of at most @max_bytes bytes at *pos; moves *pos past it. */
static int read_varint(const uint8_t *p, size_t len, size_t *pos, size_t max_bytes, uint64_t *ret)
{
	uint64_t v = 0;

	for (size_t i = 0; i < max_bytes && *pos + i < len; i++) {
		uint8_t b = p[*pos + i];
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			*pos += i + 1;
			*ret = v;
			return 0;
		}
	}
	return -EBADMSG;
}

/*
 * One field's payload: on return *pos is past it; for length-delimited data,
 * *ret_payload and *ret_len say where it is.
 */
static int skip_field(const uint8_t *p, size_t len, size_t *pos, unsigned wire, const uint8_t **ret_payload,
		      size_t *ret_len)
{
	uint64_t v;

	*ret_payload = NULL;
	*ret_len = 0;
	switch (wire) {
	case PROTOBUF_C_WIRE_TYPE_VARINT:
		return read_varint(p, len, pos, 10, &v);
	case PROTOBUF_C_WIRE_TYPE_64BIT:
		if (len - *pos < 8)
			return -EBADMSG;
		*pos += 8;
		return 0;
	case PROTOBUF_C_WIRE_TYPE_32BIT:
		if (len - *pos < 4)
			return -EBADMSG;
		*pos += 4;
		return 0;
	case PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED:
		if (read_varint(p, len, pos, 5, &v) < 0 || v > len - *pos)
			return -EBADMSG;
		*ret_payload = p + *pos;
		*ret_len = (size_t)v;
		*pos += (size_t)v;
		return 0;
	default: /* groups (deprecated, not in proto3) and the unused wire types */
		return -EBADMSG;
	}
}

static bool is_map_entry(const ProtobufCFieldDescriptor *f)
{
	const ProtobufCMessageDescriptor *d = f->descriptor;
	size_t n;

	if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->label != PROTOBUF_C_LABEL_REPEATED || !d)
		return false;
	n = strlen(d->short_name);
	return n > 5 && strcmp(d->short_name + n - 5, "Entry") == 0 && d->n_fields == 2 &&
	       d->fields[0].id == 1 && strcmp(d->fields[0].name, "key") == 0 &&
	       d->fields[0].type == PROTOBUF_C_TYPE_STRING && d->fields[1].id == 2 &&
	       strcmp(d->fields[1].name, "value") == 0 && d->fields[1].type == PROTOBUF_C_TYPE_STRING;
}

/*
 * One entry of a map<string, string> field @field (its path): the key, then
 * the value, named by its key. @keys holds the keys seen so far (@n_keys).
 */
static int check_map_entry(struct walker *w, const char *field, const struct map_limit *lim,
			   const uint8_t *p, size_t len, struct span *keys, size_t n_keys, struct span *ret_key)
{
	struct span key = { (const uint8_t *)"", 0 }, value = { (const uint8_t *)"", 0 };
	unsigned seen_key = 0, seen_value = 0;
	char what[FIELD_PATH_MAX + 4 * KEY_PREVIEW + 32], q[4 * KEY_PREVIEW + 8];
	size_t pos = 0;
	int r;

	while (pos < len) {
		const uint8_t *payload;
		size_t plen;
		uint64_t tag;
		unsigned wire;

		if (read_varint(p, len, &pos, 5, &tag) < 0 || (tag >> 3) == 0 || tag > UINT32_MAX)
			return fail(w, -EBADMSG, "%s: an entry is not a valid map entry", field);
		wire = (unsigned)(tag & 7);
		if (skip_field(p, len, &pos, wire, &payload, &plen) < 0)
			return fail(w, -EBADMSG, "%s: an entry is not a valid map entry", field);
		if ((tag >> 3) != 1 && (tag >> 3) != 2)
			continue; /* unknown field */
		if (wire != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED)
			return fail(w, -EBADMSG, "%s: an entry is not a valid map entry", field);
		if ((tag >> 3) == 1) {
			key = (struct span){ payload, plen };
			seen_key++;
		} else {
			value = (struct span){ payload, plen };
			seen_value++;
		}
	}
	quote(q, sizeof(q), key.p, key.len);
	if (seen_key > 1 || seen_value > 1)
		return fail(w, -EINVAL, "%s: the entry with key %s has its %s more than once", field, q,
			    seen_key > 1 ? "key" : "value");
	snprintf(what, sizeof(what), "%s key %s", field, q);
	r = check_string(w, what, key.p, key.len, lim->key_max);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n_keys; i++)
		if (keys[i].len == key.len && (key.len == 0 || memcmp(keys[i].p, key.p, key.len) == 0))
			return fail(w, -EINVAL, "%s: key %s given more than once", field, q);
	/* The value's errors name it by its key (quoted as above, cut after KEY_PREVIEW bytes). */
	snprintf(what, sizeof(what), "%s[%s] value", field, q);
	if (lim->opaque_value) {
		/* A secret: its length may be told, its bytes never. */
		if (value.len > lim->value_max)
			return fail(w, -EINVAL, "%s: %zu bytes, more than the limit of %zu", what, value.len,
				    lim->value_max);
	} else {
		r = check_string(w, what, value.p, value.len, lim->value_max);
		if (r < 0)
			return r;
	}
	*ret_key = key;
	return 0;
}

struct field_seen {
	size_t count;
	struct span *keys; /* map fields: the keys seen, up to the entry limit */
};

static int walk_message(struct walker *w, const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
			const char *path, unsigned depth);

static int walk_field(struct walker *w, const ProtobufCFieldDescriptor *f, struct field_seen *seen,
		      const uint8_t *payload, size_t plen, const char *path, unsigned depth)
{
	char field[FIELD_PATH_MAX];
	bool repeated = f->label == PROTOBUF_C_LABEL_REPEATED;

	seen->count++;
	snprintf(field, sizeof(field), "%s%s%s", path, *path ? "." : "", f->name);
	if (!repeated && seen->count > 1)
		return fail(w, -EINVAL, "%s: given more than once", field);
	if (is_map_entry(f)) {
		const struct map_limit *lim = map_limit(f->name);
		int r;

		if (seen->count > lim->entries_max)
			return fail(w, -EINVAL, "%s: more than %zu entries", field, lim->entries_max);
		if (!seen->keys) {
			seen->keys = calloc(lim->entries_max, sizeof(*seen->keys));
			if (!seen->keys)
				return fail(w, -ENOMEM, "%s: out of memory", field);
		}
		r = check_map_entry(w, field, lim, payload, plen, seen->keys, seen->count - 1,
				    &seen->keys[seen->count - 1]);
		return r;
	}
	if (repeated) {
		size_t max = count_max(f->name);
		size_t n = strlen(field);

		if (seen->count > max)
			return fail(w, -EINVAL, "%s: more than %zu entries", field, max);
		snprintf(field + n, sizeof(field) - n, "[%zu]", seen->count - 1);
	}
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING:
		return check_string(w, field, payload, plen, string_max(f->name));
	case PROTOBUF_C_TYPE_BYTES:
		if (plen > STRING_DEFAULT_MAX)
			return fail(w, -EINVAL, "%s: %zu bytes, more than the limit of %d", field, plen,
				    STRING_DEFAULT_MAX);
		return 0;
	case PROTOBUF_C_TYPE_MESSAGE:
		return walk_message(w, f->descriptor, payload, plen, field, depth + 1);
	default:
		return 0; /* a packed repeated scalar */
	}
}

static int walk_message(struct walker *w, const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
			const char *path, unsigned depth)
{
	struct field_seen *seen;
	size_t pos = 0;
	int r = 0;

	if (depth > MAX_DEPTH)
		return fail(w, -EBADMSG, "%s: nested more than %d deep", *path ? path : "request", MAX_DEPTH);
	if (desc->n_fields == 0) {
		/* Nothing to check, but the framing must still hold for protobuf-c. */
		seen = NULL;
	} else {
		seen = calloc(desc->n_fields, sizeof(*seen));
		if (!seen)
			return fail(w, -ENOMEM, "out of memory");
	}
	while (pos < len) {
		const ProtobufCFieldDescriptor *f;
		const uint8_t *payload;
		size_t plen;
		uint64_t tag;
		unsigned wire;

		if (read_varint(p, len, &pos, 5, &tag) < 0 || (tag >> 3) == 0 || tag > UINT32_MAX) {
			r = fail(w, -EBADMSG, "%s: not a valid %s message (bad tag)", *path ? path : "request",
				 desc->name);
			break;
		}
		wire = (unsigned)(tag & 7);
		if (skip_field(p, len, &pos, wire, &payload, &plen) < 0) {
			r = fail(w, -EBADMSG, "%s: not a valid %s message (bad field %u)", *path ? path : "request",
				 desc->name, (unsigned)(tag >> 3));
			break;
		}
		f = protobuf_c_message_descriptor_get_field(desc, (unsigned)(tag >> 3));
		if (!f)
			continue; /* unknown: protobuf-c keeps it aside, no handler reads it */
		if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_BYTES &&
		    f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue; /* a number: its wire type is protobuf-c's to check */
		if (wire != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) {
			r = fail(w, -EBADMSG, "%s%s%s: wrong wire type %u", path, *path ? "." : "", f->name, wire);
			break;
		}
		r = walk_field(w, f, &seen[f - desc->fields], payload, plen, path, depth);
		if (r < 0)
			break;
	}
	for (size_t i = 0; seen && i < desc->n_fields; i++)
		free(seen[i].keys);
	free(seen);
	return r;
}

int csi_validate_request(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
			 char *ret_error, size_t error_size)
{
	char buf[CSI_VALIDATE_ERROR_MAX];
	struct walker w = { buf, sizeof(buf) };
	int r;

	r = walk_message(&w, desc, data, len, "", 0);
	if (r < 0 && ret_error && error_size > 0)
		snprintf(ret_error, error_size, "%s", buf);
	return r < 0 ? r : 0;
}
