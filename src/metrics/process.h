/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdint.h>

#include "registry.h"

/*
 * The process_* metrics of the Prometheus Go client's process collector,
 * read from /proc at scrape time, so dashboards built for Go components
 * (and for upstream PMEM-CSI) work unchanged.
 */

struct metrics_process_stats {
	double cpu_seconds;         /* utime + stime */
	uint64_t resident_bytes;    /* rss pages * page size */
	uint64_t virtual_bytes;     /* vsize */
	double start_time_seconds;  /* since the epoch: btime + starttime / USER_HZ */
	uint64_t open_fds;          /* entries in /proc/self/fd */
	double max_fds;             /* soft "Max open files"; 2^64-1 if unlimited, as procfs reports */
	double max_virtual_bytes;   /* soft "Max address space" */
};

/**
 * metrics_process_read() - read the statistics of the calling process.
 * @ret: filled on success.
 *
 * Return: 0, or -errno from reading or parsing /proc (-EBADMSG for
 * unexpected content).
 */
int metrics_process_read(struct metrics_process_stats *ret);

/**
 * metrics_process_register() - add the process_* families to a registry,
 * with a collector that reads /proc on every scrape that includes them.
 * @r: the registry.
 *
 * Return: 0 or -errno from metrics_registry_add()/metrics_collector_add().
 */
int metrics_process_register(struct metrics_registry *r);
