/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The libndctl adapter (the only file that includes ndctl headers): a snapshot
 * of the PMEM regions and namespaces. libndctl is not thread-safe, so every
 * call takes one lock and uses a fresh context (which also sees namespaces
 * that other processes created).
 */

struct ndctl_namespace_info {
	char dev[32];      /* namespace0.0 */
	char name[64];     /* alt-name */
	char blockdev[32]; /* pmem0, or "" */
	char mode[16];     /* fsdax, sector, devdax, raw, unknown */
	uint64_t size;     /* raw size */
	bool active;
};

struct ndctl_region_info {
	char bus[32];    /* ndbus0 */
	char region[32]; /* region0 */
	uint64_t size, available, max_extent, align;
	unsigned interleave_ways;
	bool enabled;
	struct ndctl_namespace_info *namespaces;
	size_t n_namespaces;
};

/** pmem_ndctl_regions() - all PMEM-type regions with their namespaces. */
int pmem_ndctl_regions(struct ndctl_region_info **ret, size_t *ret_n);
void pmem_ndctl_regions_free(struct ndctl_region_info *r, size_t n);
