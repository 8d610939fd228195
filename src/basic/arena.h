/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>

/*
 * A bump allocator for one request's response: everything a handler builds
 * is freed at once when the call ends, so building nested protobuf messages
 * cannot leak. Zeroed memory; a hard limit on the total.
 */
struct arena;

struct arena *arena_new(size_t limit);
void arena_free(struct arena *a);
/** arena_alloc() - zeroed, 16-byte aligned memory, NULL when over the limit. */
void *arena_alloc(struct arena *a, size_t size);
char *arena_strdup(struct arena *a, const char *s);
