/* SPDX-License-Identifier: Apache-2.0 */
#include "ndctl.h"

#include <errno.h>
#include <ndctl/libndctl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/log.h"
#include "basic/macro.h"

/* From <ndctl/ndctl.h>, which needs ccan headers Debian does not ship. */
#ifndef ND_DEVICE_REGION_PMEM
#define ND_DEVICE_REGION_PMEM 2
#endif

static pthread_mutex_t ndctl_lock = PTHREAD_MUTEX_INITIALIZER;

static void copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

static const char *mode_name(enum ndctl_namespace_mode m)
{
	switch (m) {
	case NDCTL_NS_MODE_FSDAX:
		return "fsdax";
	case NDCTL_NS_MODE_SECTOR:
		return "sector";
	case NDCTL_NS_MODE_RAW:
		return "raw";
	case NDCTL_NS_MODE_DEVDAX:
		return "devdax";
	default:
		return "unknown";
	}
}

static void fill_namespace(struct ndctl_namespace *ndns, struct ndctl_namespace_info *ns)
{
	enum ndctl_namespace_mode mode = ndctl_namespace_get_mode(ndns);
	const char *bdev = NULL;

	copy(ns->dev, sizeof(ns->dev), ndctl_namespace_get_devname(ndns));
	copy(ns->name, sizeof(ns->name), ndctl_namespace_get_alt_name(ndns));
	copy(ns->mode, sizeof(ns->mode), mode_name(mode));
	ns->size = ndctl_namespace_get_size(ndns);
	ns->active = ndctl_namespace_is_active(ndns);
	if (mode == NDCTL_NS_MODE_FSDAX && ndctl_namespace_get_pfn(ndns))
		bdev = ndctl_pfn_get_block_device(ndctl_namespace_get_pfn(ndns));
	else if (mode == NDCTL_NS_MODE_SECTOR && ndctl_namespace_get_btt(ndns))
		bdev = ndctl_btt_get_block_device(ndctl_namespace_get_btt(ndns));
	else if (mode == NDCTL_NS_MODE_RAW)
		bdev = ndctl_namespace_get_block_device(ndns);
	copy(ns->blockdev, sizeof(ns->blockdev), bdev);
}

static int fill_region(struct ndctl_bus *bus, struct ndctl_region *region, struct ndctl_region_info *ri)
{
	struct ndctl_namespace *ndns;
	size_t n = 0;

	copy(ri->bus, sizeof(ri->bus), ndctl_bus_get_devname(bus));
	copy(ri->region, sizeof(ri->region), ndctl_region_get_devname(region));
	ri->size = ndctl_region_get_size(region);
	ri->available = ndctl_region_get_available_size(region);
	ri->max_extent = ndctl_region_get_max_available_extent(region);
	ri->align = ndctl_region_get_align(region);
	ri->interleave_ways = ndctl_region_get_interleave_ways(region);
	ri->enabled = ndctl_region_is_enabled(region);
	ndctl_namespace_foreach(region, ndns)
		n++;
	ri->namespaces = calloc(n ? n : 1, sizeof(*ri->namespaces));
	if (!ri->namespaces)
		return -ENOMEM;
	ndctl_namespace_foreach(region, ndns) {
		/* Skip idle seed namespaces: size 0 and nothing on them. */
		if (ndctl_namespace_get_size(ndns) == 0)
			continue;
		fill_namespace(ndns, &ri->namespaces[ri->n_namespaces++]);
	}
	return 0;
}

int pmem_ndctl_regions(struct ndctl_region_info **ret, size_t *ret_n)
{
	struct ndctl_ctx *ctx = NULL;
	struct ndctl_bus *bus;
	struct ndctl_region *region;
	struct ndctl_region_info *regions = NULL;
	size_t n = 0, cap = 0;
	int r;

	pthread_mutex_lock(&ndctl_lock);
	r = ndctl_new(&ctx);
	if (r < 0) {
		pthread_mutex_unlock(&ndctl_lock);
		return log_debug_errno(r, "ndctl_new() failed: %m");
	}
	ndctl_bus_foreach(ctx, bus) {
		ndctl_region_foreach(bus, region) {
			if (ndctl_region_get_type(region) != ND_DEVICE_REGION_PMEM)
				continue;
			if (n == cap) {
				size_t ncap = cap ? cap * 2 : 4;
				struct ndctl_region_info *nr = realloc(regions, ncap * sizeof(*nr));
				if (!nr) {
					r = -ENOMEM;
					goto out;
				}
				regions = nr;
				cap = ncap;
			}
			memset(&regions[n], 0, sizeof(regions[n]));
			r = fill_region(bus, region, &regions[n]);
			n++;
			if (r < 0)
				goto out;
		}
	}
	r = 0;
out:
	ndctl_unref(ctx);
	pthread_mutex_unlock(&ndctl_lock);
	if (r < 0) {
		pmem_ndctl_regions_free(regions, n);
		return r;
	}
	*ret = regions;
	*ret_n = n;
	return 0;
}

void pmem_ndctl_regions_free(struct ndctl_region_info *r, size_t n)
{
	if (!r)
		return;
	for (size_t i = 0; i < n; i++)
		free(r[i].namespaces);
	free(r);
}
