/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/*
 * Safe parsing and string helpers. All parsers reject trailing garbage, empty
 * input and overflow with -EINVAL / -ERANGE, and leave ret_* untouched on failure.
 */

int safe_atou64(const char *s, uint64_t *ret);
int safe_atoi(const char *s, int *ret);
/**
 * parse_bool() - Go's strconv.ParseBool, as Kubernetes and intel/pmem-csi parse
 * booleans: 1 t T TRUE true True, 0 f F FALSE false False. Nothing else.
 */
int parse_bool(const char *s, bool *ret);
/**
 * parse_quantity() - a Kubernetes resource quantity as resource.Quantity.Value()
 * returns it (bytes): the grammar of apimachinery's ParseQuantity (sign,
 * digits, fraction, suffixes n u m k M G T P E Ki..Ei, exponents e<int>/E<int>),
 * rounded up to a whole byte, binary-suffixed values capped at 2^63-1.
 * -EINVAL where Kubernetes rejects the string; -ERANGE for negative values and
 * decimal values above 2^63-1 (where Go's Value() wraps or returns 0).
 */
int parse_quantity(const char *s, uint64_t *ret);
bool startswith(const char *s, const char *prefix);
bool streq_ptr(const char *a, const char *b);
/** xasprintf() - asprintf that returns NULL on failure instead of an undefined pointer. */
char *xasprintf(const char *fmt, ...) _printf_(1, 2);
/** format_bytes() - "1.5GiB" style, into buf. */
const char *format_bytes(char *buf, size_t len, uint64_t bytes);
/** hexlify() - lower-case hex of len bytes into out (2*len+1 bytes). */
void hexlify(const uint8_t *in, size_t len, char *out);
