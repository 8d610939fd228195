/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A minimal unit-test harness: TEST(name) { ... } functions, CHECK macros
 * that record failures with file:line, and a main() that runs them all and
 * prints "N passed, N failed". Exit status 1 on any failure (meson counts it).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct test_case {
	const char *name;
	void (*fn)(void);
};

extern int test_failures;

#define TEST(name)                                                                  \
	static void test_##name(void);                                              \
	static const struct test_case tc_##name                                     \
		__attribute__((used, section("test_cases"), aligned(sizeof(void *)))) = \
			{ #name, test_##name };                                     \
	static void test_##name(void)

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
			test_failures++;                                                 \
		}                                                                        \
	} while (0)

#define CHECK_INT(a, b)                                                                          \
	do {                                                                                     \
		long long _a = (long long)(a), _b = (long long)(b);                              \
		if (_a != _b) {                                                                  \
			fprintf(stderr, "  %s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, \
				_a, _b);                                                         \
			test_failures++;                                                         \
		}                                                                                \
	} while (0)

#define CHECK_STR(a, b)                                                                          \
	do {                                                                                     \
		const char *_a = (a), *_b = (b);                                                 \
		if (!_a || !_b || strcmp(_a, _b) != 0) {                                         \
			fprintf(stderr, "  %s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, \
				#a, _a ? _a : "(null)", _b ? _b : "(null)");                     \
			test_failures++;                                                         \
		}                                                                                \
	} while (0)
