/* SPDX-License-Identifier: Apache-2.0 */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STRBUF_DEFAULT_LIMIT (64u * 1024 * 1024)

static bool reserve(struct strbuf *b, size_t extra)
{
	size_t limit = b->limit ? b->limit : STRBUF_DEFAULT_LIMIT;
	size_t need, cap;
	char *n;

	if (b->failed)
		return false;
	if (extra > limit || b->len + extra + 1 > limit) {
		b->failed = true;
		return false;
	}
	need = b->len + extra + 1;
	if (need <= b->cap)
		return true;
	cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	if (cap > limit)
		cap = limit;
	n = realloc(b->buf, cap);
	if (!n) {
		b->failed = true;
		return false;
	}
	b->buf = n;
	b->cap = cap;
	return true;
}

void strbuf_append(struct strbuf *b, const char *s, size_t n)
{
	if (!reserve(b, n))
		return;
	memcpy(b->buf + b->len, s, n);
	b->len += n;
	b->buf[b->len] = 0;
}

void strbuf_append_str(struct strbuf *b, const char *s)
{
	strbuf_append(b, s, strlen(s));
}

void strbuf_append_char(struct strbuf *b, char c)
{
	strbuf_append(b, &c, 1);
}

void strbuf_appendf(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if (!reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void strbuf_append_json_string(struct strbuf *b, const char *s)
{
	const unsigned char *p;

	strbuf_append_char(b, '"');
	for (p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			strbuf_append(b, "\\\"", 2);
			break;
		case '\\':
			strbuf_append(b, "\\\\", 2);
			break;
		case '\n':
			strbuf_append(b, "\\n", 2);
			break;
		case '\t':
			strbuf_append(b, "\\t", 2);
			break;
		case '\r':
			strbuf_append(b, "\\r", 2);
			break;
		default:
			if (*p < 0x20)
				strbuf_appendf(b, "\\u%04x", *p);
			else
				strbuf_append_char(b, (char)*p);
		}
	}
	strbuf_append_char(b, '"');
}

const char *strbuf_str(const struct strbuf *b)
{
	return b->buf ? b->buf : "";
}

size_t strbuf_len(const struct strbuf *b)
{
	return b->len;
}

bool strbuf_failed(const struct strbuf *b)
{
	return b->failed;
}

char *strbuf_steal(struct strbuf *b)
{
	char *r = NULL;

	if (!b->failed) {
		r = b->buf ? b->buf : strdup("");
		b->buf = NULL;
	}
	strbuf_free(b);
	return r;
}

void strbuf_free(struct strbuf *b)
{
	free(b->buf);
	b->buf = NULL;
	b->len = b->cap = 0;
	b->failed = false;
}
