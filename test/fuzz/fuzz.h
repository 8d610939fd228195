/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Shared by the fuzz targets. Each fuzz-<name>.c defines LLVMFuzzerTestOneInput();
 * libFuzzer calls it with generated inputs (fuzz-<name>-libfuzzer), and
 * corpus-main.c calls it with the files of test/fuzz/corpus/<name>/ (fuzz-<name>,
 * a normal test built by every compiler).
 *
 * Not crashing is not enough for a target to find bugs: each one also checks
 * invariants of the code under test. A broken invariant is a bug, and
 * FUZZ_CHECK() turns it into a crash (abort()) so that libFuzzer saves the input
 * and the corpus runner names it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                       \
	do {                                                                                   \
		if (!(cond)) {                                                                 \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                               \
		}                                                                              \
	} while (0)

/* A NUL-terminated copy of the input (for parsers of C strings); NULL on OOM. */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		return NULL;
	if (size)
		memcpy(s, data, size);
	s[size] = 0;
	return s;
}
