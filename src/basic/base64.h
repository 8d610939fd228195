/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>

/**
 * base64_decode() - decode standard base64 (RFC 4648, with or without
 * padding; whitespace is skipped). *ret is NUL-terminated for convenience;
 * -EINVAL on any other character or a truncated quantum.
 */
int base64_decode(const char *s, size_t len, char **ret, size_t *ret_len);
