/* SPDX-License-Identifier: Apache-2.0 */
/*
 * parse_quantity(): Kubernetes quantities in storage class parameters and
 * ephemeral volume attributes ("size": "1Gi").
 *
 * Beyond not crashing, the result is checked against a reference written
 * independently of strutil.c: the grammar
 *
 *     ["+"] digits ["." digits] [ ("e"|"E") ["+"|"-"] digits | suffix ]
 *
 * (at least one digit before the exponent or suffix; "1E" is the exa suffix)
 * and the exact value ceil(mantissa * 10^exp * suffix) in 128-bit arithmetic.
 * So: nothing outside the grammar is accepted (no trailing garbage), every
 * accepted value is exact ("<N>Ki" is N * 1024, fractions round up), and a
 * rejected value is out of range, or beyond a documented limit of the parser
 * (more than 18 fraction digits, a mantissa above 1000 * UINT64_MAX, an
 * exponent above 18). A failed parse leaves the output untouched.
 */
#include <errno.h>
#include <stdbool.h>

#include "basic/strutil.h"
#include "fuzz.h"

typedef unsigned __int128 u128;

struct quantity {
	const char *digits; /* integer and fraction digits, with the '.' */
	size_t n_int, n_frac;
	bool has_exp;
	bool exp_negative;
	unsigned exp;           /* saturates at 10000 */
	unsigned base, power;   /* the suffix: base^power (1^0 without one) */
};

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool ref_syntax(const char *s, struct quantity *q)
{
	static const struct {
		const char *name;
		unsigned base, power;
	} suffixes[] = {
		{ "Ki", 2, 10 }, { "Mi", 2, 20 }, { "Gi", 2, 30 }, { "Ti", 2, 40 }, { "Pi", 2, 50 },
		{ "Ei", 2, 60 }, { "k", 10, 3 },  { "M", 10, 6 },  { "G", 10, 9 },  { "T", 10, 12 },
		{ "P", 10, 15 }, { "E", 10, 18 },
	};

	memset(q, 0, sizeof(*q));
	q->base = 1;
	if (*s == '+')
		s++;
	q->digits = s;
	while (is_digit(*s)) {
		s++;
		q->n_int++;
	}
	if (*s == '.') {
		s++;
		while (is_digit(*s)) {
			s++;
			q->n_frac++;
		}
	}
	if (q->n_int + q->n_frac == 0)
		return false;
	if (!*s)
		return true;
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
		if (strcmp(s, suffixes[i].name) == 0) {
			q->base = suffixes[i].base;
			q->power = suffixes[i].power;
			return true;
		}
	if (*s != 'e' && *s != 'E')
		return false;
	s++;
	q->has_exp = true;
	if (*s == '+' || *s == '-')
		q->exp_negative = *s++ == '-';
	if (!is_digit(*s))
		return false;
	for (; is_digit(*s); s++)
		q->exp = q->exp >= 10000 ? 10000 : q->exp * 10 + (unsigned)(*s - '0');
	return *s == 0;
}

/* The digits without the '.', saturating at 2^128 - 1 (*ret_overflow set). */
static u128 ref_mantissa(const struct quantity *q, bool *ret_overflow)
{
	u128 m = 0;

	*ret_overflow = false;
	for (const char *p = q->digits; is_digit(*p) || *p == '.'; p++) {
		if (*p == '.')
			continue;
		if (__builtin_mul_overflow(m, 10, &m) || __builtin_add_overflow(m, (unsigned)(*p - '0'), &m)) {
			*ret_overflow = true;
			return ~(u128)0;
		}
	}
	return m;
}

static bool mul_pow(u128 *v, unsigned base, int power)
{
	for (int i = 0; i < power; i++)
		if (__builtin_mul_overflow(*v, base, v))
			return false;
	return true;
}

/*
 * The exact value, rounded up, when it fits in 64 bits: returns true and sets
 * *ret; false when the value is above UINT64_MAX. The caller has made sure
 * the mantissa fits and the exponent is at most 40.
 */
static bool ref_value(const struct quantity *q, u128 mant, uint64_t *ret)
{
	int e10 = (q->exp_negative ? -(int)q->exp : (int)q->exp) - (int)q->n_frac;
	u128 num = mant, den = 1, v;

	if (e10 >= 0) {
		if (!mul_pow(&num, 10, e10) || !mul_pow(&num, q->base, (int)q->power))
			return false;
		v = num;
	} else if (-e10 > 38) {
		/* 10^39 is above any mantissa that fits in 128 bits: 0 < value < 1. */
		v = mant ? 1 : 0;
	} else {
		mul_pow(&den, 10, -e10);
		/* A product above 2^128 divided by at most 10^18 (a suffix excludes an
		 * exponent) is still far above UINT64_MAX. */
		if (!mul_pow(&num, q->base, (int)q->power))
			return false;
		v = num / den + (num % den ? 1 : 0);
	}
	if (v > UINT64_MAX)
		return false;
	*ret = (uint64_t)v;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint64_t untouched = 0x5a5a5a5a5a5a5a5aULL;
	uint64_t v = untouched, want;
	struct quantity q;
	bool syntax, mant_overflow;
	u128 mant;
	char *s;
	int r;

	if (size > 256) /* quantities are short; long inputs only slow the search */
		return 0;
	s = fuzz_strndup(data, size);
	if (!s)
		return 0;
	r = parse_quantity(s, &v);
	syntax = ref_syntax(s, &q);

	if (!syntax) {
		/* Trailing garbage, a sign, whitespace, milli-units: never accepted. The
		 * parser may find the mantissa too large before it sees the garbage. */
		if (r == 0)
			fprintf(stderr, "parse_quantity(\"%s\") accepted it as %llu\n", s,
				(unsigned long long)v);
		FUZZ_CHECK(r == -EINVAL || r == -ERANGE);
		FUZZ_CHECK(v == untouched);
		free(s);
		return 0;
	}
	mant = ref_mantissa(&q, &mant_overflow);
	if (r < 0) {
		FUZZ_CHECK(v == untouched);
		if (r == -EINVAL) {
			/* The only valid syntax the parser rejects as invalid. */
			FUZZ_CHECK(q.n_frac > 18);
		} else {
			FUZZ_CHECK(r == -ERANGE);
			/* Out of range, or beyond the parser's limits. */
			FUZZ_CHECK(mant_overflow || mant > (u128)UINT64_MAX * 1000 || q.exp > 18 ||
				   !ref_value(&q, mant, &want));
		}
	} else {
		FUZZ_CHECK(r == 0);
		FUZZ_CHECK(q.n_frac <= 18 && !mant_overflow && q.exp <= 18);
		FUZZ_CHECK(ref_value(&q, mant, &want));
		if (v != want)
			fprintf(stderr, "parse_quantity(\"%s\") = %llu, expected %llu\n", s,
				(unsigned long long)v, (unsigned long long)want);
		FUZZ_CHECK(v == want);
	}
	free(s);
	return 0;
}
