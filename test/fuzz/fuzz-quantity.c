/* SPDX-License-Identifier: Apache-2.0 */
/*
 * parse_quantity(): Kubernetes quantities in storage class parameters and
 * ephemeral volume attributes ("size": "1Gi").
 *
 * Beyond not crashing, the result is checked against a reference written
 * independently of strutil.c, as a line-by-line port of apimachinery's
 * parseQuantityString() scanner and suffix interpretation (v0.25, the one
 * intel/pmem-csi 1.1 links), and the exact value ceil(digits * 10^e * 2^b)
 * in 128-bit arithmetic where that fits (up to 30 significant digits and
 * exponents of at most 30): so nothing Kubernetes rejects is accepted,
 * nothing it accepts is rejected except negative values and decimal values
 * above 2^63-1 (-ERANGE: Go's Value() wraps there), binary values above
 * 2^63-1 are capped, and a failed parse leaves the output untouched.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "basic/strutil.h"
#include "fuzz.h"

typedef unsigned __int128 u128;

struct ref {
	bool positive;
	const char *value; /* str[0:value_len] */
	size_t value_len;
	const char *num, *denom, *suffix;
	size_t num_len, denom_len;
	bool num_synth; /* num is the "0" Go substitutes */
};

static bool dig(char c)
{
	return c >= '0' && c <= '9';
}

/* parseQuantityString(), label by label. */
static bool ref_scan(const char *str, struct ref *q)
{
	size_t pos = 0, end = strlen(str), i, suffix_start;

	memset(q, 0, sizeof(*q));
	q->positive = true;
	q->suffix = "";
	q->denom = "";
	if (pos < end) {
		if (str[0] == '-') {
			q->positive = false;
			pos++;
		} else if (str[0] == '+')
			pos++;
	}
	for (i = pos;; i++) { /* Zeroes */
		if (i >= end) {
			q->num = "0", q->num_len = 1, q->num_synth = true;
			q->value = "0", q->value_len = 1;
			return true;
		}
		if (str[i] == '0')
			pos++;
		else
			break;
	}
	for (i = pos;; i++) { /* Num */
		if (i >= end) {
			q->num = str + pos, q->num_len = end - pos;
			q->value = str, q->value_len = end;
			return true;
		}
		if (!dig(str[i])) {
			q->num = str + pos, q->num_len = i - pos;
			pos = i;
			break;
		}
	}
	if (q->num_len == 0)
		q->num = "0", q->num_len = 1, q->num_synth = true;
	if (pos < end && str[pos] == '.') {
		pos++;
		for (i = pos;; i++) { /* Denom */
			if (i >= end) {
				q->denom = str + pos, q->denom_len = end - pos;
				q->value = str, q->value_len = end;
				return true;
			}
			if (!dig(str[i])) {
				q->denom = str + pos, q->denom_len = i - pos;
				pos = i;
				break;
			}
		}
	}
	q->value = str, q->value_len = pos;
	suffix_start = pos;
	for (i = pos;; i++) {
		if (i >= end) {
			q->suffix = str + suffix_start;
			return true;
		}
		if (!strchr("eEinumkKMGTP", str[i])) {
			pos = i;
			break;
		}
	}
	if (pos < end && (str[pos] == '-' || str[pos] == '+'))
		pos++;
	for (i = pos;; i++) { /* Suffix */
		if (i >= end) {
			q->suffix = str + suffix_start;
			return true;
		}
		if (!dig(str[i]))
			break;
	}
	return false;
}

/* quantitySuffixer.interpret(); *ret_exp as Go's int32. */
static bool ref_interpret(const char *suf, int *ret_base, int32_t *ret_exp)
{
	static const char *const dec[] = { "n", "u", "m", "", "k", "M", "G", "T", "P", "E" };
	static const int dec_exp[] = { -9, -6, -3, 0, 3, 6, 9, 12, 15, 18 };
	static const char *const bin[] = { "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
	const char *p;
	bool neg = false;
	u128 v = 0;

	for (int i = 0; i < 10; i++)
		if (strcmp(suf, dec[i]) == 0) {
			*ret_base = 10, *ret_exp = dec_exp[i];
			return true;
		}
	for (int i = 0; i < 6; i++)
		if (strcmp(suf, bin[i]) == 0) {
			*ret_base = 2, *ret_exp = 10 * (i + 1);
			return true;
		}
	if (strlen(suf) <= 1 || (suf[0] != 'e' && suf[0] != 'E'))
		return false;
	/* strconv.ParseInt(suf[1:], 10, 64) */
	p = suf + 1;
	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	if (!*p)
		return false;
	for (; *p; p++) {
		if (!dig(*p))
			return false;
		v = v * 10 + (unsigned)(*p - '0');
		if (v > (u128)INT64_MAX + 1)
			return false;
	}
	if (!neg && v > INT64_MAX)
		return false;
	*ret_base = 10;
	*ret_exp = (int32_t)(uint32_t)(uint64_t)(neg ? 0 - (uint64_t)v : (uint64_t)v);
	return true;
}

static bool mul_pow(u128 *v, unsigned base, long power)
{
	for (long i = 0; i < power; i++)
		if (__builtin_mul_overflow(*v, base, v))
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint64_t untouched = 0x5a5a5a5a5a5a5a5aULL;
	uint64_t v = untouched;
	struct ref q;
	int base = 0;
	int32_t exp = 0;
	bool ok, zero = true, any_digit = false;
	u128 mant = 0;
	size_t sig = 0;
	char *s;
	int r;

	if (size > 256) /* quantities are short; long inputs only slow the search */
		return 0;
	s = fuzz_strndup(data, size);
	if (!s)
		return 0;
	r = parse_quantity(s, &v);

	ok = *s && ref_scan(s, &q) && ref_interpret(q.suffix, &base, &exp);
	if (ok) {
		for (size_t i = 0; i < q.value_len; i++)
			any_digit |= dig(q.value[i]);
		/* No digit in value: Go's fast path gives 0, its slow path ErrNumeric. */
		if (!any_digit && ((base == 10 && exp < -9) || (base == 2 && exp >= 50)))
			ok = false;
	}
	if (strcmp(s, "0") == 0)
		ok = true, base = 10, exp = 0, q.num = "0", q.num_len = 1, q.denom_len = 0, q.positive = true;
	if (!ok) {
		if (r == 0)
			fprintf(stderr, "parse_quantity(\"%s\") accepted it as %llu\n", s, (unsigned long long)v);
		FUZZ_CHECK(r == -EINVAL);
		FUZZ_CHECK(v == untouched);
		free(s);
		return 0;
	}
	/* Accepted by Kubernetes: value, or -ERANGE for negative / huge decimal. */
	for (size_t i = 0; i < q.num_len + q.denom_len; i++) {
		char c = i < q.num_len ? q.num[i] : q.denom[i - q.num_len];
		if (c != '0')
			zero = false;
		if (!zero)
			sig++;
	}
	if (r < 0) {
		FUZZ_CHECK(v == untouched);
		FUZZ_CHECK(r == -ERANGE);
		FUZZ_CHECK(!zero);
		FUZZ_CHECK(!q.positive || base == 10);
	} else {
		FUZZ_CHECK(r == 0);
		FUZZ_CHECK(v <= INT64_MAX);
		if (zero)
			FUZZ_CHECK(v == 0);
		else
			FUZZ_CHECK(q.positive && v >= 1);
	}
	if (!zero && q.positive && sig <= 30 && exp >= -30 && exp <= 30) {
		long e10 = (base == 10 ? exp : 0) - (long)q.denom_len;
		u128 num, den = 1, want;
		bool fits = true;

		for (size_t i = 0; i < q.num_len + q.denom_len; i++) {
			char c = i < q.num_len ? q.num[i] : q.denom[i - q.num_len];
			mant = mant * 10 + (unsigned)(c - '0');
			if (mant >> 120)
				fits = false;
		}
		num = mant;
		if (fits && e10 >= 0)
			fits = mul_pow(&num, 10, e10);
		else if (fits)
			fits = mul_pow(&den, 10, -e10);
		if (fits && base == 2)
			fits = mul_pow(&num, 2, exp);
		if (fits) {
			want = num / den + (num % den ? 1 : 0);
			if (want > INT64_MAX) {
				if (base == 2) {
					FUZZ_CHECK(r == 0 && v == INT64_MAX);
				} else
					FUZZ_CHECK(r == -ERANGE);
			} else {
				if (r != 0 || v != (uint64_t)want)
					fprintf(stderr, "parse_quantity(\"%s\") = %d/%llu, expected %llu\n", s, r,
						(unsigned long long)v, (unsigned long long)want);
				FUZZ_CHECK(r == 0 && v == (uint64_t)want);
			}
		}
	}
	free(s);
	return 0;
}
