/* SPDX-License-Identifier: Apache-2.0 */
#include "process.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/macro.h"
#include "basic/strutil.h"

/* /proc files are small; these caps only guard against surprises. */
#define PROC_FILE_MAX (64 * 1024)
#define PROC_STAT_MAX (1024 * 1024) /* /proc/stat grows with the CPU count */

/* The fields after "pid (comm) ", counted from field 3 (state). */
enum {
	STAT_UTIME = 14 - 3,
	STAT_STIME = 15 - 3,
	STAT_STARTTIME = 22 - 3,
	STAT_VSIZE = 23 - 3,
	STAT_RSS = 24 - 3,
	STAT_NEEDED = 24 - 3 + 1,
};

/* Copies the next space-separated token of *p into buf; false at the end or if it does not fit. */
static bool next_token(const char **p, char *buf, size_t len)
{
	const char *s = *p;
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strcspn(s, " \t\n");
	if (n == 0 || n >= len)
		return false;
	memcpy(buf, s, n);
	buf[n] = 0;
	*p = s + n;
	return true;
}

static int read_self_stat(struct metrics_process_stats *st, uint64_t *ret_starttime)
{
	_cleanup_free_ char *text = NULL;
	uint64_t v[STAT_NEEDED];
	const char *p;
	char tok[32];
	long hz, page;
	int r;

	r = read_file_limited("/proc/self/stat", PROC_FILE_MAX, &text, NULL);
	if (r < 0)
		return r;
	/* comm may contain spaces and parentheses: the fields start after the last ')'. */
	p = strrchr(text, ')');
	if (!p)
		return -EBADMSG;
	p++;
	for (size_t i = 0; i < STAT_NEEDED; i++) {
		if (!next_token(&p, tok, sizeof(tok)))
			return -EBADMSG;
		v[i] = 0;
		if (i >= STAT_UTIME && safe_atou64(tok, &v[i]) < 0)
			return -EBADMSG;
	}
	hz = sysconf(_SC_CLK_TCK);
	page = sysconf(_SC_PAGESIZE);
	if (hz <= 0 || page <= 0)
		return -EINVAL;
	st->cpu_seconds = (double)(v[STAT_UTIME] + v[STAT_STIME]) / (double)hz;
	st->virtual_bytes = v[STAT_VSIZE];
	st->resident_bytes = v[STAT_RSS] * (uint64_t)page;
	*ret_starttime = v[STAT_STARTTIME];
	return 0;
}

static int read_boot_time(uint64_t *ret)
{
	_cleanup_free_ char *text = NULL;
	const char *p;
	char tok[32];
	int r;

	r = read_file_limited("/proc/stat", PROC_STAT_MAX, &text, NULL);
	if (r < 0)
		return r;
	for (p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (startswith(p, "btime ")) {
			p += strlen("btime");
			if (!next_token(&p, tok, sizeof(tok)) || safe_atou64(tok, ret) < 0)
				return -EBADMSG;
			return 0;
		}
	return -EBADMSG;
}

/* The soft limit from a /proc/self/limits line; "unlimited" is 2^64-1 as in Go's procfs. */
static int limit_value(const char *text, const char *name, double *ret)
{
	const char *p;
	char tok[32];
	uint64_t v;

	for (p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (startswith(p, name)) {
			p += strlen(name);
			if (!next_token(&p, tok, sizeof(tok)))
				return -EBADMSG;
			if (strcmp(tok, "unlimited") == 0)
				v = UINT64_MAX;
			else if (safe_atou64(tok, &v) < 0)
				return -EBADMSG;
			*ret = (double)v;
			return 0;
		}
	return -EBADMSG;
}

static int count_open_fds(uint64_t *ret)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	uint64_t n = 0;

	if (!d)
		return -errno;
	/* Includes the fd of this very directory stream, as the Go client's count does. */
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	*ret = n;
	return 0;
}

int metrics_process_read(struct metrics_process_stats *ret)
{
	_cleanup_free_ char *limits = NULL;
	struct metrics_process_stats st = {};
	uint64_t starttime, btime;
	int r;

	r = read_self_stat(&st, &starttime);
	if (r < 0)
		return r;
	r = read_boot_time(&btime);
	if (r < 0)
		return r;
	st.start_time_seconds = (double)btime + (double)starttime / (double)sysconf(_SC_CLK_TCK);
	r = count_open_fds(&st.open_fds);
	if (r < 0)
		return r;
	r = read_file_limited("/proc/self/limits", PROC_FILE_MAX, &limits, NULL);
	if (r < 0)
		return r;
	r = limit_value(limits, "Max open files", &st.max_fds);
	if (r < 0)
		return r;
	r = limit_value(limits, "Max address space", &st.max_virtual_bytes);
	if (r < 0)
		return r;
	*ret = st;
	return 0;
}

enum {
	PROC_CPU,
	PROC_OPEN_FDS,
	PROC_MAX_FDS,
	PROC_VSIZE,
	PROC_VSIZE_MAX,
	PROC_RSS,
	PROC_START,
	PROC_N,
};

struct process_collector {
	struct metrics_family *f[PROC_N + 1]; /* NULL-terminated for metrics_collector_add() */
};

static void process_collect(void *userdata, struct metrics_scrape *s)
{
	struct process_collector *pc = userdata;
	struct metrics_process_stats st;

	/* Like the Go collector: if /proc cannot be read, the metrics are left out. */
	if (metrics_process_read(&st) < 0)
		return;
	metrics_scrape_add(s, pc->f[PROC_CPU], NULL, st.cpu_seconds);
	metrics_scrape_add(s, pc->f[PROC_OPEN_FDS], NULL, (double)st.open_fds);
	metrics_scrape_add(s, pc->f[PROC_MAX_FDS], NULL, st.max_fds);
	metrics_scrape_add(s, pc->f[PROC_VSIZE], NULL, (double)st.virtual_bytes);
	metrics_scrape_add(s, pc->f[PROC_VSIZE_MAX], NULL, st.max_virtual_bytes);
	metrics_scrape_add(s, pc->f[PROC_RSS], NULL, (double)st.resident_bytes);
	metrics_scrape_add(s, pc->f[PROC_START], NULL, st.start_time_seconds);
}

int metrics_process_register(struct metrics_registry *r)
{
	static const struct {
		enum metrics_type type;
		const char *name, *help;
	} defs[PROC_N] = {
		[PROC_CPU] = { METRICS_TYPE_COUNTER, "process_cpu_seconds_total",
			       "Total user and system CPU time spent in seconds." },
		[PROC_OPEN_FDS] = { METRICS_TYPE_GAUGE, "process_open_fds", "Number of open file descriptors." },
		[PROC_MAX_FDS] = { METRICS_TYPE_GAUGE, "process_max_fds",
				   "Maximum number of open file descriptors." },
		[PROC_VSIZE] = { METRICS_TYPE_GAUGE, "process_virtual_memory_bytes", "Virtual memory size in bytes." },
		[PROC_VSIZE_MAX] = { METRICS_TYPE_GAUGE, "process_virtual_memory_max_bytes",
				     "Maximum amount of virtual memory available in bytes." },
		[PROC_RSS] = { METRICS_TYPE_GAUGE, "process_resident_memory_bytes", "Resident memory size in bytes." },
		[PROC_START] = { METRICS_TYPE_GAUGE, "process_start_time_seconds",
				 "Start time of the process since unix epoch in seconds." },
	};
	struct process_collector *pc;
	int res;

	pc = calloc(1, sizeof(*pc));
	if (!pc)
		return -ENOMEM;
	for (size_t i = 0; i < PROC_N; i++) {
		res = metrics_registry_add(r, defs[i].type, defs[i].name, defs[i].help, NULL, NULL, 0, &pc->f[i]);
		if (res < 0)
			goto fail;
	}
	/* The registry owns pc from here on and frees it with the collector. */
	return metrics_collector_add(r, pc->f, process_collect, pc, free, NULL);
fail:
	free(pc);
	return res;
}
