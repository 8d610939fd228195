/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>

#include "macro.h"

/*
 * Logging in the format every Kubernetes component uses: klog text by default
 * (`I1121 10:00:00.000000     123 file.c:42] "msg" key="value"`) or JSON lines
 * (`-logging-format=json`). Thread-safe; one write(2) per line.
 */

enum log_level {
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARNING,
	LOG_LEVEL_ERROR,
};

enum log_format {
	LOG_FORMAT_TEXT,
	LOG_FORMAT_JSON,
};

/**
 * log_setup() - configure the global logger.
 * @format: text (klog) or json.
 * @verbosity: messages with a V level above this are dropped (klog's -v).
 */
void log_setup(enum log_format format, int verbosity);

/**
 * log_set_error_hook() - call fn with the text of every error-level message
 * (after formatting, %m expanded), from the logging thread. main() uses it to
 * keep the last error for the termination log.
 */
void log_set_error_hook(void (*fn)(const char *msg));

/** log_get_verbosity() - the -v level in effect. */
int log_get_verbosity(void);

/**
 * log_internal() - emit one log line. Use the macros below instead.
 * @err: a positive errno value for %m and the "err" key, or 0.
 * Returns -err so that log_error_errno() can log and return in one line.
 */
int log_internal(enum log_level level, int v, int err, const char *file, int line,
		 const char *format, ...) _printf_(6, 7);

/**
 * log_structured() - a message plus key/value pairs (NULL-terminated list of
 * alternating key and value strings), rendered as klog's `"msg" key="value"` or
 * as JSON fields.
 */
void log_structured(enum log_level level, int v, const char *file, int line, const char *msg,
		    ...) __attribute__((sentinel));

#define log_full(level, v, err, ...) \
	log_internal(level, v, (err) < 0 ? -(err) : (err), __FILE__, __LINE__, __VA_ARGS__)

#define log_v(v, ...)                                                   \
	do {                                                            \
		if ((v) <= log_get_verbosity())                         \
			log_full(LOG_LEVEL_INFO, v, 0, __VA_ARGS__);    \
	} while (0)
#define log_debug(...) log_v(5, __VA_ARGS__)
#define log_info(...) log_full(LOG_LEVEL_INFO, 0, 0, __VA_ARGS__)
#define log_warning(...) log_full(LOG_LEVEL_WARNING, 0, 0, __VA_ARGS__)
#define log_error(...) log_full(LOG_LEVEL_ERROR, 0, 0, __VA_ARGS__)
/* Log at error level with errno r (negative or positive) and return -|r|. */
#define log_error_errno(r, ...) log_full(LOG_LEVEL_ERROR, 0, r, __VA_ARGS__)
#define log_warning_errno(r, ...) log_full(LOG_LEVEL_WARNING, 0, r, __VA_ARGS__)
#define log_debug_errno(r, ...)                                              \
	((5 <= log_get_verbosity()) ? log_full(LOG_LEVEL_INFO, 5, r, __VA_ARGS__) \
				    : -((r) < 0 ? -(r) : (r)))
