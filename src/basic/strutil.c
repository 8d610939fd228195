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

/*
 * Go's strconv.ParseBool, which Kubernetes components and intel/pmem-csi use
 * for boolean parameters and flags: exactly these spellings, nothing else.
 */
int parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = { "1", "t", "T", "TRUE", "true", "True" };
	static const char *const no[] = { "0", "f", "F", "FALSE", "false", "False" };

	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < ELEMENTSOF(yes); i++)
		if (strcmp(s, yes[i]) == 0) {
			*ret = true;
			return 0;
		}
	for (size_t i = 0; i < ELEMENTSOF(no); i++)
		if (strcmp(s, no[i]) == 0) {
			*ret = false;
			return 0;
		}
	return -EINVAL;
}

/* Go's strconv.ParseInt(s, 10, 64): optional sign, at least one digit, in range. */
static int go_parse_int64(const char *s, int64_t *ret)
{
	bool neg = false;
	uint64_t v = 0, limit;

	if (*s == '+' || *s == '-')
		neg = *s++ == '-';
	if (!*s)
		return -EINVAL;
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; *s; s++) {
		if (!isdigit((unsigned char)*s))
			return -EINVAL;
		if (v > (limit - (uint64_t)(*s - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*ret = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

/*
 * The suffix of a quantity, as apimachinery's quantitySuffixer interprets it:
 * the SI and binary tables first, then a decimal exponent "e<int>" or
 * "E<int>" whose value Go truncates to int32 (so does this).
 */
static int quantity_suffix(const char *suf, unsigned *ret_base, int64_t *ret_exp)
{
	static const struct {
		const char *suffix;
		unsigned base;
		int exp;
	} table[] = {
		{ "n", 10, -9 },  { "u", 10, -6 },  { "m", 10, -3 },  { "", 10, 0 },    { "k", 10, 3 },
		{ "M", 10, 6 },   { "G", 10, 9 },   { "T", 10, 12 },  { "P", 10, 15 },  { "E", 10, 18 },
		{ "Ki", 2, 10 },  { "Mi", 2, 20 },  { "Gi", 2, 30 },  { "Ti", 2, 40 },  { "Pi", 2, 50 },
		{ "Ei", 2, 60 },
	};
	int64_t e;

	for (size_t i = 0; i < ELEMENTSOF(table); i++)
		if (strcmp(suf, table[i].suffix) == 0) {
			*ret_base = table[i].base;
			*ret_exp = table[i].exp;
			return 0;
		}
	if ((suf[0] == 'e' || suf[0] == 'E') && suf[1] && go_parse_int64(suf + 1, &e) >= 0) {
		*ret_base = 10;
		*ret_exp = (int32_t)(uint32_t)(uint64_t)e;
		return 0;
	}
	return -EINVAL;
}

/*
 * ceil(digits * 2^bexp * 10^dexp) for a string of n decimal digits without
 * leading or trailing zeros (n >= 1), exactly: the digits are doubled bexp
 * times (bexp <= 60) in a decimal buffer, then the decimal point is placed.
 * Sets *ret_over when the result is above INT64_MAX.
 */
static int quantity_ceil(const char *digits, size_t n, unsigned bexp, int64_t dexp, uint64_t *ret,
			 bool *ret_over)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = n + 20, first, int_end;
	unsigned __int128 v = 0;
	bool frac = false;

	*ret_over = false;
	/* Below 1: the result is 1 (it is not zero). Far above: out of range. */
	if (dexp < -(int64_t)(n + 20)) {
		*ret = 1;
		return 0;
	}
	if (dexp > 40) {
		*ret_over = true;
		return 0;
	}
	buf = calloc(len, 1);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		buf[len - n + i] = (char)(digits[i] - '0');
	for (unsigned b = 0; b < bexp; b++) {
		unsigned carry = 0;
		for (size_t i = len; i-- > 0;) {
			unsigned d = (unsigned)buf[i] * 2 + carry;
			buf[i] = (char)(d % 10);
			carry = d / 10;
		}
	}
	for (first = 0; first < len && buf[first] == 0; first++)
		;
	/* The decimal point sits dexp places right of the buffer's end. */
	if (dexp >= 0)
		int_end = len;
	else if ((uint64_t)-dexp >= len)
		int_end = 0;
	else
		int_end = len - (size_t)-dexp;
	for (size_t i = int_end; i < len; i++)
		frac |= buf[i] != 0;
	if (first < int_end && int_end - first + (size_t)(dexp > 0 ? dexp : 0) > 19) {
		*ret_over = true;
		return 0;
	}
	for (size_t i = first; i < int_end; i++)
		v = v * 10 + (unsigned)buf[i];
	for (int64_t i = 0; i < dexp; i++)
		v *= 10;
	v += frac;
	if (v > INT64_MAX)
		*ret_over = true;
	else
		*ret = (uint64_t)v;
	return 0;
}

/*
 * A Kubernetes resource.Quantity as Quantity.Value() returns it, following
 * apimachinery's ParseQuantity (v0.25, which intel/pmem-csi 1.1 uses): the
 * scanner's grammar "[+-] digits [. digits] letters-from-eEinumkKMGTP [+-]
 * digits", leading zeros, "1." and ".5", a lone sign or "." meaning 0, the
 * suffix tables, exponents truncated to int32, rounding up to a whole byte,
 * and binary-suffixed values capped at 2^63-1. Where Go returns a number that
 * is not the quantity (negative values, decimal values above 2^63-1, which
 * wrap or become 0 in Value()), this returns -ERANGE instead.
 */
int parse_quantity(const char *s, uint64_t *ret)
{
	const char *p = s, *int_start, *frac_start = NULL, *suf;
	size_t n_int, n_frac = 0, n, lead = 0;
	_cleanup_free_ char *digits = NULL;
	bool negative = false, over;
	unsigned base;
	int64_t exp, dexp;
	uint64_t v = 0;
	int r;

	if (!s || !*s)
		return -EINVAL;
	if (*p == '+' || *p == '-')
		negative = *p++ == '-';
	int_start = p;
	while (isdigit((unsigned char)*p))
		p++;
	n_int = (size_t)(p - int_start);
	if (*p == '.') {
		frac_start = ++p;
		while (isdigit((unsigned char)*p))
			p++;
		n_frac = (size_t)(p - frac_start);
	}
	suf = p;
	while (*p && strchr("eEinumkKMGTP", *p))
		p++;
	if (*p == '+' || *p == '-')
		p++;
	while (isdigit((unsigned char)*p))
		p++;
	if (*p)
		return -EINVAL;
	r = quantity_suffix(suf, &base, &exp);
	if (r < 0)
		return r;
	if (n_int + n_frac == 0) {
		/* No digit at all ("+", ".", "-.k"): zero, unless Go's fast path is
		 * not taken and the slow one finds no number (ErrNumeric). */
		if ((base == 10 && exp < -9) || (base == 2 && exp >= 50))
			return -EINVAL;
		*ret = 0;
		return 0;
	}
	/* Significant digits: integer and fraction digits without leading and
	 * trailing zeros; dexp places the decimal point. */
	digits = malloc(n_int + n_frac + 1);
	if (!digits)
		return -ENOMEM;
	memcpy(digits, int_start, n_int);
	if (n_frac)
		memcpy(digits + n_int, frac_start, n_frac);
	n = n_int + n_frac;
	dexp = (base == 10 ? exp : 0) - (int64_t)n_frac;
	while (lead < n && digits[lead] == '0')
		lead++;
	if (lead == n) {
		*ret = 0;
		return 0;
	}
	while (digits[n - 1] == '0') {
		n--;
		dexp++;
	}
	if (negative)
		return -ERANGE;
	r = quantity_ceil(digits + lead, n - lead, base == 2 ? (unsigned)exp : 0, dexp, &v, &over);
	if (r < 0)
		return r;
	if (over) {
		if (base != 2)
			return -ERANGE;
		v = INT64_MAX; /* apimachinery caps binary-suffixed values */
	}
	*ret = v;
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
