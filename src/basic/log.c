/* SPDX-License-Identifier: Apache-2.0 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "strbuf.h"

static enum log_format log_format = LOG_FORMAT_TEXT;
static int log_verbosity = 0;

void log_setup(enum log_format format, int verbosity)
{
	log_format = format;
	log_verbosity = verbosity;
}

int log_get_verbosity(void)
{
	return log_verbosity;
}

static const char *basename_of(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

static void write_line(struct strbuf *b)
{
	const char *p;
	size_t left;

	strbuf_append_char(b, '\n');
	if (strbuf_failed(b)) {
		static const char oom[] = "E0000 00:00:00.000000       0 log.c:0] \"log line dropped: out of memory\"\n";
		(void)!write(STDERR_FILENO, oom, sizeof(oom) - 1);
		return;
	}
	/* One write(2) per line keeps lines from concurrent threads whole. */
	p = strbuf_str(b);
	left = strbuf_len(b);
	while (left > 0) {
		ssize_t n = write(STDERR_FILENO, p, left);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		p += n;
		left -= (size_t)n;
	}
}

static void header(struct strbuf *b, enum log_level level, int v, const char *file, int line,
		   const char *msg)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (log_format == LOG_FORMAT_JSON) {
		strbuf_appendf(b, "{\"ts\":%lld.%03ld,\"caller\":\"%s:%d\",\"msg\":", (long long)ts.tv_sec,
			       ts.tv_nsec / 1000000, basename_of(file), line);
		strbuf_append_json_string(b, msg);
		if (level == LOG_LEVEL_INFO)
			strbuf_appendf(b, ",\"v\":%d", v);
		return;
	}
	gmtime_r(&ts.tv_sec, &tm);
	strbuf_appendf(b, "%c%02d%02d %02d:%02d:%02d.%06ld %7ld %s:%d] ",
		       level == LOG_LEVEL_ERROR ? 'E' : level == LOG_LEVEL_WARNING ? 'W' : 'I',
		       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000,
		       (long)syscall(SYS_gettid), basename_of(file), line);
	strbuf_append_json_string(b, msg);
}

static void key_value(struct strbuf *b, const char *key, const char *value)
{
	if (log_format == LOG_FORMAT_JSON) {
		strbuf_append_char(b, ',');
		strbuf_append_json_string(b, key);
		strbuf_append_char(b, ':');
		strbuf_append_json_string(b, value);
	} else {
		strbuf_appendf(b, " %s=", key);
		strbuf_append_json_string(b, value);
	}
}

static void (*error_hook)(const char *msg);

void log_set_error_hook(void (*fn)(const char *msg))
{
	error_hook = fn;
}

int log_internal(enum log_level level, int v, int err, const char *file, int line,
		 const char *format, ...)
{
	char msg[2048];
	char errbuf[256];
	va_list ap;
	struct strbuf b = STRBUF_INIT;

	errno = err;
	va_start(ap, format);
	vsnprintf(msg, sizeof(msg), format, ap);
	va_end(ap);
	if (level == LOG_LEVEL_ERROR && error_hook)
		error_hook(msg);

	header(&b, level, v, file, line, msg);
	if (err > 0)
		key_value(&b, "err", strerror_r(err, errbuf, sizeof(errbuf)));
	if (log_format == LOG_FORMAT_JSON)
		strbuf_append_char(&b, '}');
	write_line(&b);
	strbuf_free(&b);
	return -err;
}

void log_structured(enum log_level level, int v, const char *file, int line, const char *msg, ...)
{
	struct strbuf b = STRBUF_INIT;
	va_list ap;
	const char *k;

	if (level == LOG_LEVEL_INFO && v > log_verbosity)
		return;
	header(&b, level, v, file, line, msg);
	va_start(ap, msg);
	while ((k = va_arg(ap, const char *))) {
		const char *val = va_arg(ap, const char *);
		key_value(&b, k, val ? val : "");
	}
	va_end(ap);
	if (log_format == LOG_FORMAT_JSON)
		strbuf_append_char(&b, '}');
	write_line(&b);
	strbuf_free(&b);
}
