/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

/*
 * A growable string buffer with a sticky failure flag: appends after an
 * allocation failure are no-ops, and the caller checks once at the end
 * (strbuf_failed()). A hard limit (default 64 MiB) bounds every buffer.
 */
struct strbuf {
	char *buf;
	size_t len;
	size_t cap;
	size_t limit; /* 0 = default */
	bool failed;
};

#define STRBUF_INIT { NULL, 0, 0, 0, false }

void strbuf_append(struct strbuf *b, const char *s, size_t n);
void strbuf_append_str(struct strbuf *b, const char *s);
void strbuf_append_char(struct strbuf *b, char c);
void strbuf_appendf(struct strbuf *b, const char *fmt, ...) _printf_(2, 3);
/** strbuf_append_json_string() - append s quoted and escaped as a JSON string. */
void strbuf_append_json_string(struct strbuf *b, const char *s);
/** strbuf_str() - the NUL-terminated contents, valid until the next append ("" if empty). */
const char *strbuf_str(const struct strbuf *b);
size_t strbuf_len(const struct strbuf *b);
bool strbuf_failed(const struct strbuf *b);
/** strbuf_steal() - hand the buffer to the caller (NULL on failure); resets b. */
char *strbuf_steal(struct strbuf *b);
void strbuf_free(struct strbuf *b);
