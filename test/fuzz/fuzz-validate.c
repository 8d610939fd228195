/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gRPC boundary check (csi/validate.c): the input is checked as the
 * request of every method in the driver's method table, as transport.c does
 * before it unpacks.
 *
 * Checked, per method: no crash or leak; the result is 0, -EINVAL or -EBADMSG
 * and the same on a second run; an error message is non-empty printable ASCII
 * (bytes of the input are escaped) that starts with a field of the message or
 * "request"; and when the check accepts and protobuf-c unpacks, the unpacked
 * message holds what the check promises, seen independently through the
 * descriptors: every string (except secrets' values) is valid UTF-8 without
 * control characters and at most 4096 bytes, no map has more than 64 entries,
 * no repeated field more than 5000; and the message packed again passes the
 * check again.
 */
#include <errno.h>

#include "csi.pb-c.h"
#include "csi/driver.h"
#include "csi/validate.h"
#include "fuzz.h"

static void check_string(const char *s)
{
	size_t off;
	const char *what;

	if (!s)
		return;
	FUZZ_CHECK(strlen(s) <= 4096);
	FUZZ_CHECK(csi_validate_text((const uint8_t *)s, strlen(s), &off, &what) == 0);
}

static bool is_map_entry(const ProtobufCMessageDescriptor *d)
{
	size_t n = strlen(d->short_name);
	return n > 5 && strcmp(d->short_name + n - 5, "Entry") == 0 && d->n_fields == 2;
}

/* @opaque_value: @m is an entry of a secrets map, whose value is not text. */
static void check_unpacked(const ProtobufCMessage *m, bool opaque_value)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;

	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *member = (const char *)m + f->offset;
		size_t n = 1;
		const void *const *elems;

		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			uint32_t which = *(const uint32_t *)((const char *)m + f->quantifier_offset);
			if (which != f->id)
				continue;
		}
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			n = *(const size_t *)((const char *)m + f->quantifier_offset);
			elems = *(const void *const *const *)member;
			if (f->type == PROTOBUF_C_TYPE_MESSAGE && is_map_entry(f->descriptor))
				FUZZ_CHECK(n <= 64);
			else
				FUZZ_CHECK(n <= 5000);
		} else
			elems = (const void *const *)member;
		if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		for (size_t k = 0; k < n; k++) {
			const void *e = elems[k];
			if (f->type == PROTOBUF_C_TYPE_STRING) {
				if (!(opaque_value && strcmp(f->name, "value") == 0))
					check_string(e);
			} else if (e)
				check_unpacked(e, strcmp(f->name, "secrets") == 0);
		}
	}
}

static bool starts_with_field(const char *err, const ProtobufCMessageDescriptor *d)
{
	if (strncmp(err, "request:", 8) == 0)
		return true;
	for (unsigned i = 0; i < d->n_fields; i++) {
		size_t n = strlen(d->fields[i].name);
		if (strncmp(err, d->fields[i].name, n) == 0 && strchr(":.[ ", err[n]))
			return true;
	}
	return false;
}

static void check_one(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t size)
{
	char err[CSI_VALIDATE_ERROR_MAX], err2[CSI_VALIDATE_ERROR_MAX];
	ProtobufCMessage *m;
	int r, r2;

	err[0] = 0;
	r = csi_validate_request(d, data, size, err, sizeof(err));
	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -EBADMSG);
	r2 = csi_validate_request(d, data, size, err2, sizeof(err2));
	FUZZ_CHECK(r2 == r);
	if (r < 0) {
		FUZZ_CHECK(err[0]);
		FUZZ_CHECK(strcmp(err, err2) == 0);
		for (const char *p = err; *p; p++)
			FUZZ_CHECK(*p >= 0x20 && *p < 0x7f);
		if (!starts_with_field(err, d))
			fprintf(stderr, "%s: error \"%s\" names no field\n", d->name, err);
		FUZZ_CHECK(starts_with_field(err, d));
		return;
	}
	FUZZ_CHECK(err[0] == 0);
	m = protobuf_c_message_unpack(d, NULL, size, data);
	if (!m)
		return; /* a number protobuf-c refuses (its wire type): not this check's business */
	check_unpacked(m, false);
	{
		size_t len = protobuf_c_message_get_packed_size(m);
		uint8_t *buf = malloc(len ? len : 1);

		if (buf) {
			FUZZ_CHECK(protobuf_c_message_pack(m, buf) == len);
			r = csi_validate_request(d, buf, len, err, sizeof(err));
			if (r != 0)
				fprintf(stderr, "%s: packed again: %s\n", d->name, err);
			FUZZ_CHECK(r == 0);
			free(buf);
		}
	}
	protobuf_c_message_free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct csi_method *methods;
	size_t n_methods;

	if (size > 64 * 1024)
		return 0;
	methods = csi_driver_methods(&n_methods);
	for (size_t i = 0; i < n_methods; i++)
		check_one(methods[i].input, data, size);
	return 0;
}
