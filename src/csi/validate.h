/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/*
 * The check of a request's raw bytes at the gRPC boundary, before
 * protobuf_c_message_unpack(). protobuf-c hands strings to the handlers as C
 * strings, so "a\0b" arrives as "a", and it never checks UTF-8, so bytes that
 * no JSON encoder (state files) or log reader accepts get deep into the driver.
 * This walks the protobuf wire format against the message descriptor, into
 * sub-messages and map entries, and refuses every string field that holds
 *   - a NUL byte,
 *   - invalid UTF-8 (overlong forms, surrogates, above U+10FFFF, cut sequences),
 *   - a control character: C0 (U+0001-U+001F, tab and newline included), DEL
 *     (U+007F) and C1 (U+0080-U+009F). No value the driver takes needs one:
 *     names, IDs, paths, mount flags, parameter and context keys and values are
 *     single-line text; kubelet's and the sidecars' values are too (JSON in a
 *     volume context comes from Go's json.Marshal, which escapes controls).
 *     The exception is the value of a secrets entry: opaque bytes, checked for
 *     nothing but length and never quoted in an error;
 *   - more bytes than its field's limit (see validate.c: 128 for names and
 *     volume IDs as the CSI spec's size limits say, 4095 for paths, PATH_MAX
 *     with its NUL, 512 for map keys, 4096 for map values);
 * and every map or repeated field with more entries than its limit (64 for
 * maps, as the handlers' parameter and context tables), a map key given twice,
 * and a non-repeated string or message field given twice (protobuf-c would keep
 * the last string or merge the messages, adding up repeated entries behind the
 * per-occurrence counts; no real encoder sends a field twice).
 *
 * Unknown fields are skipped (proto3 keeps them); malformed wire data is
 * refused too, so that nothing this check did not see reaches the handlers.
 * Pure logic: no gRPC, no allocation beyond a small table per message level.
 */

/* Size of an error buffer that holds every message of csi_validate_request(). */
#define CSI_VALIDATE_ERROR_MAX 512

/**
 * csi_validate_request() - check the serialized request @data of @len bytes,
 * of the message type @desc.
 * @ret_error: buffer of @error_size bytes (CSI_VALIDATE_ERROR_MAX is enough)
 *	for a message that starts with the field's path, e.g.
 *	`name: contains a NUL byte at byte 1` or
 *	`parameters["usage"] value: invalid UTF-8 at byte 3` or
 *	`volume_capability.mount.mount_flags[0]: control character U+000A at byte 2`.
 *	Bytes of the input are quoted only for map keys, escaped (\xNN) and cut;
 *	secrets' values are never quoted. Untouched on success.
 *
 * Return: 0 when the request may be unpacked; -EINVAL when a field breaks the
 * rules above; -EBADMSG when the bytes are not a valid message of that type.
 */
int csi_validate_request(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
			 char *ret_error, size_t error_size);

/**
 * csi_validate_text() - the string rule alone, for @s of @len bytes: 0 when
 * it is valid UTF-8 without NUL or control characters, else -EINVAL with the
 * byte offset of the first bad character in *@ret_offset and a short
 * description ("contains a NUL byte", ...) in *@ret_what (a static string).
 * Exported for the tests and the fuzz target, which check unpacked messages
 * against it.
 */
int csi_validate_text(const uint8_t *s, size_t len, size_t *ret_offset, const char **ret_what);
