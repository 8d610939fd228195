/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>

/**
 * read_file_limited() - read a whole file, at most max bytes (-EFBIG beyond).
 * Returns a NUL-terminated buffer in *ret and its length in *ret_len (optional).
 */
int read_file_limited(const char *path, size_t max, char **ret, size_t *ret_len);

/**
 * write_file_atomic() - replace dir/name with data, crash-safe: write
 * dir/name.tmp (O_EXCL after removing a stale one), fsync, rename over name,
 * fsync dir. After a crash either the old or the new content is there, never
 * a torn file.
 */
int write_file_atomic(const char *dir, const char *name, const char *data, size_t len);

/** unlink_durable() - remove dir/name and fsync dir; -ENOENT is success. */
int unlink_durable(const char *dir, const char *name);

/** mkdir_p() - create a directory and its parents with mode. */
int mkdir_p(const char *path, unsigned mode);
