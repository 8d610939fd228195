/* SPDX-License-Identifier: Apache-2.0 */
#include "strutil.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int safe_atou64(const char *s, uint64_t *ret)
{
	unsigned long long v;
	char *end;

	if (!s || !*s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (*end)
		return -EINVAL;
	*ret = v;
	return 0;
}

int safe_atoi(const char *s, int *ret)
{
	long v;
	char *end;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno == ERANGE || v > INT_MAX || v < INT_MIN)
		return -ERANGE;
	if (*end || isspace((unsigned char)*s))
		return -EINVAL;
	*ret = (int)v;
	return 0;
}

int parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = { "true", "1", "yes", "on", "t" };
	static const char *const no[] = { "false", "0", "no", "off", "f" };

	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < ELEMENTSOF(yes); i++)
		if (strcasecmp(s, yes[i]) == 0) {
			*ret = true;
			return 0;
		}
	for (size_t i = 0; i < ELEMENTSOF(no); i++)
		if (strcasecmp(s, no[i]) == 0) {
			*ret = false;
			return 0;
		}
	return -EINVAL;
}

/* Multiply a decimal mantissa (digits, with a fractional part of frac_digits) by
 * base^exp exactly in 128-bit integer arithmetic, rounding up. */
int parse_quantity(const char *s, uint64_t *ret)
{
	static const struct {
		const char *suffix;
		unsigned base;
		int exp;
	} suffixes[] = {
		{ "Ki", 2, 10 }, { "Mi", 2, 20 }, { "Gi", 2, 30 }, { "Ti", 2, 40 }, { "Pi", 2, 50 },
		{ "Ei", 2, 60 }, { "k", 10, 3 },  { "M", 10, 6 },  { "G", 10, 9 },  { "T", 10, 12 },
		{ "P", 10, 15 }, { "E", 10, 18 },
	};
	unsigned __int128 mant = 0, num, den = 1;
	const char *p = s;
	int digits = 0, frac = 0, dexp = 0;
	bool had_exp = false;
	unsigned base = 10;
	int exp = 0;

	if (!s || !*s)
		return -EINVAL;
	if (*p == '+')
		p++;
	for (; isdigit((unsigned char)*p); p++, digits++) {
		mant = mant * 10 + (unsigned)(*p - '0');
		if (mant > (unsigned __int128)UINT64_MAX * 1000)
			return -ERANGE;
	}
	if (*p == '.') {
		p++;
		for (; isdigit((unsigned char)*p); p++, digits++) {
			if (frac >= 18)
				return -EINVAL;
			mant = mant * 10 + (unsigned)(*p - '0');
			frac++;
			if (mant > (unsigned __int128)UINT64_MAX * 1000)
				return -ERANGE;
		}
	}
	if (digits == 0)
		return -EINVAL;
	if (*p == 'e' || *p == 'E') {
		/* "1E" alone would be the exa suffix; an exponent needs digits. */
		const char *q = p + 1;
		int sign = 1, e = 0, nd = 0;
		if (*q == '+' || *q == '-') {
			sign = *q == '-' ? -1 : 1;
			q++;
		}
		/* |exponent| <= 18 keeps 10^(fraction digits + exponent) inside 128 bits;
		 * anything beyond is out of range for a byte count anyway. */
		for (; isdigit((unsigned char)*q); q++, nd++) {
			e = e * 10 + (*q - '0');
			if (e > 18)
				return -ERANGE;
		}
		if (nd > 0) {
			dexp = sign * e;
			had_exp = true;
			p = q;
		}
	}
	if (*p) {
		size_t i;
		for (i = 0; i < ELEMENTSOF(suffixes); i++)
			if (strcmp(p, suffixes[i].suffix) == 0)
				break;
		if (i == ELEMENTSOF(suffixes))
			return -EINVAL;
		if (had_exp) /* "1e3k": an exponent and a suffix */
			return -EINVAL;
		base = suffixes[i].base;
		exp = suffixes[i].exp;
	}
	num = mant;
	dexp -= frac;
	for (; dexp > 0; dexp--) {
		num *= 10;
		if (num > (unsigned __int128)UINT64_MAX * 1000)
			return -ERANGE;
	}
	for (; dexp < 0; dexp++)
		den *= 10;
	for (int i = 0; i < exp; i++) {
		num *= base;
		if (num > ((unsigned __int128)UINT64_MAX) * den)
			return -ERANGE;
	}
	num = (num + den - 1) / den;
	if (num > UINT64_MAX)
		return -ERANGE;
	*ret = (uint64_t)num;
	return 0;
}

bool startswith(const char *s, const char *prefix)
{
	return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

bool streq_ptr(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *r;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&r, fmt, ap);
	va_end(ap);
	return n < 0 ? NULL : r;
}

const char *format_bytes(char *buf, size_t len, uint64_t bytes)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = (double)bytes;
	size_t u = 0;

	while (v >= 1024 && u + 1 < ELEMENTSOF(units)) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%lluB", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.4g%s", v, units[u]);
	return buf;
}

void hexlify(const uint8_t *in, size_t len, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 15];
	}
	out[2 * len] = 0;
}
