/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>

/*
 * The one place that runs external programs (lvm2, mkfs, ndctl). argv arrays,
 * never a shell; stdin is /dev/null; stdout and stderr are captured up to a
 * limit; every child gets a hard timeout. Safe to call from many threads: it
 * uses posix_spawn (vfork semantics), so no gRPC or allocator state is touched
 * in the child.
 */

struct exec_result {
	int status;  /* exit status, or 128+signal */
	char *out;   /* captured stdout (NUL-terminated, possibly truncated) */
	char *err;   /* captured stderr */
	double seconds;
};

/**
 * exec_run() - run argv[0] (looked up in PATH) with argv, wait for it.
 * @timeout_ms: kill the child (SIGKILL) after this long; 0 = 10 minutes.
 * @ret: filled on success (>= 0 even if the child exited non-zero); free with
 *       exec_result_done().
 * Returns 0 when the child ran, -errno when it could not be started.
 */
int exec_run(const char *const *argv, int timeout_ms, struct exec_result *ret);

/**
 * exec_check() - exec_run() that fails with -EIO unless the exit status is 0,
 * logging the command's stderr at debug level. ret_out (optional) receives stdout.
 * ret_err (optional) receives the last line of stderr on failure, for error messages.
 */
int exec_check(const char *const *argv, int timeout_ms, char **ret_out, char **ret_err);

void exec_result_done(struct exec_result *r);

/** exec_argv_to_string() - "a b c" for logs; caller frees. */
char *exec_argv_to_string(const char *const *argv);
