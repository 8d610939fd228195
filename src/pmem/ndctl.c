/* SPDX-License-Identifier: Apache-2.0 */
#include "ndctl.h"

#include <errno.h>
#include <ndctl/libndctl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "basic/log.h"
#include "basic/macro.h"

/* From <ndctl/ndctl.h>, which needs ccan headers Debian does not ship. */
#ifndef ND_DEVICE_REGION_PMEM
#define ND_DEVICE_REGION_PMEM 2
#endif
#ifndef ND_DEVICE_NAMESPACE_IO
#define ND_DEVICE_NAMESPACE_IO 4
#endif

/*
 * Walks of every region (pmem_ndctl_regions(), name_exists(), a cleanup of all
 * regions) hold it exclusively; changes of one region (create, destroy, a
 * cleanup of that region; callers serialize per region) share it. libndctl
 * parses sysfs as it walks: a namespace or pfn device that another thread
 * tears down in the middle of the walk crashed it (SIGSEGV in
 * ndctl_pfn_get_size() under the direct-mode stress test, 2026-11-29).
 * Writer-preferring, so that a stream of creates cannot starve a walk.
 */
static pthread_rwlock_t ndctl_lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;

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
	ns->usable = ns->size;
	if (mode == NDCTL_NS_MODE_FSDAX && ndctl_namespace_get_pfn(ndns)) {
		bdev = ndctl_pfn_get_block_device(ndctl_namespace_get_pfn(ndns));
		ns->usable = ndctl_pfn_get_size(ndctl_namespace_get_pfn(ndns));
	} else if (mode == NDCTL_NS_MODE_SECTOR && ndctl_namespace_get_btt(ndns)) {
		bdev = ndctl_btt_get_block_device(ndctl_namespace_get_btt(ndns));
		ns->usable = ndctl_btt_get_size(ndctl_namespace_get_btt(ndns));
	} else if (mode == NDCTL_NS_MODE_RAW || mode == NDCTL_NS_MODE_FSDAX)
		/* fsdax without a pfn device: memmap= and virtio-pmem PMEM, whose
		 * page map is in RAM ("map":"mem"), are DAX-capable as they are. */
		bdev = ndctl_namespace_get_block_device(ndns);
	copy(ns->blockdev, sizeof(ns->blockdev), bdev);
}

static int fill_region(struct ndctl_bus *bus, struct ndctl_region *region, struct ndctl_region_info *ri)
{
	struct ndctl_namespace *ndns;
	size_t n = 0;

	copy(ri->bus, sizeof(ri->bus), ndctl_bus_get_devname(bus));
	copy(ri->region, sizeof(ri->region), ndctl_region_get_devname(region));
	copy(ri->provider, sizeof(ri->provider), ndctl_bus_get_provider(bus));
	ri->labelless = ndctl_region_get_nstype(region) == ND_DEVICE_NAMESPACE_IO;
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

	pthread_rwlock_wrlock(&ndctl_lock);
	r = ndctl_new(&ctx);
	if (r < 0) {
		pthread_rwlock_unlock(&ndctl_lock);
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
	pthread_rwlock_unlock(&ndctl_lock);
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

const char *pmem_ndctl_region_kind(const struct ndctl_region_info *ri)
{
	/* The providers as the kernel's bus drivers name them (nfit, e820, virtio_pmem, cxl_pmem). */
	if (strcmp(ri->provider, "ACPI.NFIT") == 0 || strncmp(ri->provider, "nfit_test", 9) == 0)
		return ri->labelless ? "label-less NVDIMM" : "NVDIMM";
	if (strcmp(ri->provider, "e820") == 0)
		return "memmap= PMEM";
	if (strcmp(ri->provider, "virtio-pmem") == 0)
		return "virtio-pmem";
	if (strcasecmp(ri->provider, "cxl") == 0 || strncmp(ri->provider, "CXL", 3) == 0)
		return "CXL PMEM";
	return ri->provider[0] ? ri->provider : "unknown PMEM";
}

static struct ndctl_region *find_region(struct ndctl_ctx *ctx, const char *bus_name, const char *region_name)
{
	struct ndctl_bus *bus;
	struct ndctl_region *region;

	ndctl_bus_foreach(ctx, bus) {
		if (strcmp(ndctl_bus_get_devname(bus), bus_name) != 0)
			continue;
		ndctl_region_foreach(bus, region)
			if (strcmp(ndctl_region_get_devname(region), region_name) == 0)
				return region;
	}
	return NULL;
}

/* A random (version 4) UUID; libndctl only stores it. */
static void random_uuid(uuid_t uu)
{
	if (getrandom(uu, sizeof(uuid_t), 0) != (ssize_t)sizeof(uuid_t)) {
		/* getrandom() on a 16-byte buffer does not fail once the pool is up. */
		for (size_t i = 0; i < sizeof(uuid_t); i++)
			uu[i] = (unsigned char)rand();
	}
	uu[6] = (uu[6] & 0x0f) | 0x40;
	uu[8] = (uu[8] & 0x3f) | 0x80;
}

/*
 * Namespace operations in different regions run in parallel: each call has its
 * own libndctl context (no shared state), and the kernel serializes per
 * region. Callers serialize per region; walks of all regions wait for them
 * (ndctl_lock).
 */
static int create_namespace(const char *bus, const char *region_name, uint64_t raw_size, const char *name,
			    enum ndctl_ns_mode mode, struct ndctl_namespace_info *ret);

int pmem_ndctl_create_namespace(const char *bus, const char *region_name, uint64_t raw_size, const char *name,
				enum ndctl_ns_mode mode, struct ndctl_namespace_info *ret)
{
	int r;

	pthread_rwlock_rdlock(&ndctl_lock);
	r = create_namespace(bus, region_name, raw_size, name, mode, ret);
	pthread_rwlock_unlock(&ndctl_lock);
	return r;
}

static int create_namespace(const char *bus, const char *region_name, uint64_t raw_size, const char *name,
			    enum ndctl_ns_mode mode, struct ndctl_namespace_info *ret)
{
	struct ndctl_ctx *ctx = NULL;
	struct ndctl_region *region;
	struct ndctl_namespace *ndns;
	struct ndctl_pfn *pfn = NULL;
	struct ndctl_btt *btt = NULL;
	uuid_t uu;
	int r;

	r = ndctl_new(&ctx);
	if (r < 0)
		return r;
	region = find_region(ctx, bus, region_name);
	if (!region) {
		r = -ENODEV;
		goto out;
	}
	ndns = ndctl_region_get_namespace_seed(region);
	if (!ndns || !ndctl_namespace_is_configuration_idle(ndns)) {
		r = -ENOSPC;
		goto out;
	}
	random_uuid(uu);
	if ((r = ndctl_namespace_set_uuid(ndns, uu)) < 0 || (r = ndctl_namespace_set_alt_name(ndns, name)) < 0 ||
	    (r = ndctl_namespace_set_size(ndns, raw_size)) < 0) {
		log_debug_errno(r, "Configuring %s in %s (size %llu) failed: %m", ndctl_namespace_get_devname(ndns),
				region_name, (unsigned long long)raw_size);
		if (r == -ENXIO || r == -EINVAL)
			r = -ENOSPC; /* no extent of that size */
		goto undo;
	}
	(void)ndctl_namespace_set_enforce_mode(ndns, mode == NDCTL_NS_FSDAX ? NDCTL_NS_MODE_FSDAX : NDCTL_NS_MODE_SECTOR);
	random_uuid(uu);
	if (mode == NDCTL_NS_FSDAX) {
		pfn = ndctl_region_get_pfn_seed(region);
		if (!pfn) {
			r = -ENODEV;
			goto undo;
		}
		if ((r = ndctl_pfn_set_uuid(pfn, uu)) < 0 || (r = ndctl_pfn_set_location(pfn, NDCTL_PFN_LOC_PMEM)) < 0)
			goto undo;
		if (ndctl_pfn_has_align(pfn) && (r = ndctl_pfn_set_align(pfn, 2UL << 20)) < 0)
			goto undo;
		if ((r = ndctl_pfn_set_namespace(pfn, ndns)) < 0 || (r = ndctl_pfn_enable(pfn)) < 0)
			goto undo;
	} else {
		btt = ndctl_region_get_btt_seed(region);
		if (!btt) {
			r = -ENODEV;
			goto undo;
		}
		if ((r = ndctl_btt_set_uuid(btt, uu)) < 0 || (r = ndctl_btt_set_sector_size(btt, 4096)) < 0 ||
		    (r = ndctl_btt_set_namespace(btt, ndns)) < 0 || (r = ndctl_btt_enable(btt)) < 0)
			goto undo;
	}
	memset(ret, 0, sizeof(*ret));
	fill_namespace(ndns, ret);
	r = 0;
	goto out;
undo:
	log_debug_errno(r, "Creating namespace \"%s\" in %s failed, undoing: %m", name, region_name);
	if (pfn)
		(void)ndctl_pfn_set_namespace(pfn, NULL);
	if (btt)
		(void)ndctl_btt_set_namespace(btt, NULL);
	(void)ndctl_namespace_disable_invalidate(ndns);
	(void)ndctl_namespace_delete(ndns);
out:
	ndctl_unref(ctx);
	return r;
}

static int destroy_namespace(const char *bus, const char *region_name, const char *dev);

int pmem_ndctl_destroy_namespace(const char *bus, const char *region_name, const char *dev)
{
	int r;

	pthread_rwlock_rdlock(&ndctl_lock);
	r = destroy_namespace(bus, region_name, dev);
	pthread_rwlock_unlock(&ndctl_lock);
	return r;
}

static int destroy_namespace(const char *bus, const char *region_name, const char *dev)
{
	struct ndctl_ctx *ctx = NULL;
	struct ndctl_region *region;
	struct ndctl_namespace *ndns, *found = NULL;
	int r;

	r = ndctl_new(&ctx);
	if (r < 0)
		return r;
	region = find_region(ctx, bus, region_name);
	if (region)
		ndctl_namespace_foreach(region, ndns)
			if (strcmp(ndctl_namespace_get_devname(ndns), dev) == 0)
				found = ndns;
	if (!found) {
		r = -ENOENT;
		goto out;
	}
	/* disable_safe refuses while the block device is mounted or open. */
	if (ndctl_namespace_is_active(found)) {
		r = ndctl_namespace_disable_safe(found);
		if (r < 0)
			goto out;
	}
	(void)ndctl_namespace_set_enforce_mode(found, NDCTL_NS_MODE_RAW);
	r = ndctl_namespace_disable_invalidate(found);
	if (r >= 0)
		r = ndctl_namespace_delete(found);
out:
	ndctl_unref(ctx);
	return r;
}

static int cleanup(const char *bus_name, const char *region_name, bool (*is_ours)(const char *name),
		   bool any_claim);

int pmem_ndctl_cleanup_incomplete(bool (*is_ours)(const char *name))
{
	return pmem_ndctl_cleanup_region(NULL, NULL, is_ours, false);
}

static const char *cleanup_only; /* the one name cleanup_named() accepts; ndctl_lock held exclusively */

static bool is_cleanup_only(const char *name)
{
	return cleanup_only && strcmp(name, cleanup_only) == 0;
}

int pmem_ndctl_cleanup_named(const char *name)
{
	int r;

	pthread_rwlock_wrlock(&ndctl_lock);
	cleanup_only = name;
	r = cleanup(NULL, NULL, is_cleanup_only, false);
	cleanup_only = NULL;
	pthread_rwlock_unlock(&ndctl_lock);
	return r;
}

int pmem_ndctl_destroy_named(const char *name)
{
	struct ndctl_region_info *ri = NULL;
	size_t n = 0;
	int r, done = 0;

	/* Enabled ones through the normal destroy, then whatever is left half
	 * set up (disabled, or claimed by a personality that never came up). */
	r = pmem_ndctl_regions(&ri, &n);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < ri[i].n_namespaces; j++)
			if (strcmp(ri[i].namespaces[j].name, name) == 0 && ri[i].namespaces[j].active &&
			    pmem_ndctl_destroy_namespace(ri[i].bus, ri[i].region, ri[i].namespaces[j].dev) >= 0)
				done++;
	pmem_ndctl_regions_free(ri, n);
	r = pmem_ndctl_cleanup_named(name);
	return r < 0 ? r : done + r;
}

int pmem_ndctl_name_exists(const char *name)
{
	struct ndctl_ctx *ctx = NULL;
	struct ndctl_bus *bus;
	struct ndctl_region *region;
	struct ndctl_namespace *ndns;
	int r, found = 0;

	pthread_rwlock_wrlock(&ndctl_lock);
	r = ndctl_new(&ctx);
	if (r < 0) {
		pthread_rwlock_unlock(&ndctl_lock);
		return r;
	}
	ndctl_bus_foreach(ctx, bus)
		ndctl_region_foreach(bus, region)
			ndctl_namespace_foreach(region, ndns) {
				const char *alt = ndctl_namespace_get_alt_name(ndns);
				if (ndctl_namespace_get_size(ndns) > 0 && alt && strcmp(alt, name) == 0)
					found = 1;
			}
	ndctl_unref(ctx);
	pthread_rwlock_unlock(&ndctl_lock);
	return found;
}

int pmem_ndctl_cleanup_region(const char *bus_name, const char *region_name, bool (*is_ours)(const char *name),
			      bool any_claim)
{
	int r;

	if (region_name)
		pthread_rwlock_rdlock(&ndctl_lock);
	else
		pthread_rwlock_wrlock(&ndctl_lock);
	r = cleanup(bus_name, region_name, is_ours, any_claim);
	pthread_rwlock_unlock(&ndctl_lock);
	return r;
}

static int cleanup(const char *bus_name, const char *region_name, bool (*is_ours)(const char *name),
		   bool any_claim)
{
	struct ndctl_ctx *ctx = NULL;
	struct ndctl_bus *bus;
	struct ndctl_region *region;
	int r, cleaned = 0;

	r = ndctl_new(&ctx);
	if (r < 0)
		return r;
	ndctl_bus_foreach(ctx, bus) {
		ndctl_region_foreach(bus, region) {
			struct ndctl_namespace *ndns, *next;
			struct ndctl_pfn *pfn;
			struct ndctl_btt *btt;

			if (ndctl_region_get_type(region) != ND_DEVICE_REGION_PMEM || !ndctl_region_is_enabled(region))
				continue;
			if (region_name && (strcmp(ndctl_region_get_devname(region), region_name) != 0 ||
					    strcmp(ndctl_bus_get_devname(bus), bus_name) != 0))
				continue;
			/* A pfn or btt personality claimed but never enabled: release the claim. */
			ndctl_pfn_foreach(region, pfn)
				if (!ndctl_pfn_is_enabled(pfn) && ndctl_pfn_get_namespace(pfn) &&
				    !ndctl_namespace_is_active(ndctl_pfn_get_namespace(pfn)) &&
				    (any_claim || is_ours(ndctl_namespace_get_alt_name(ndctl_pfn_get_namespace(pfn)) ?: ""))) {
					(void)ndctl_pfn_set_namespace(pfn, NULL);
					cleaned++;
				}
			ndctl_btt_foreach(region, btt)
				if (!ndctl_btt_is_enabled(btt) && ndctl_btt_get_namespace(btt) &&
				    !ndctl_namespace_is_active(ndctl_btt_get_namespace(btt)) &&
				    (any_claim || is_ours(ndctl_namespace_get_alt_name(ndctl_btt_get_namespace(btt)) ?: ""))) {
					(void)ndctl_btt_set_namespace(btt, NULL);
					cleaned++;
				}
			/* _safe: a deleted namespace is freed by libndctl. */
			ndctl_namespace_foreach_safe(region, ndns, next) {
				const char *name = ndctl_namespace_get_alt_name(ndns);
				if (ndctl_namespace_is_active(ndns) || ndctl_namespace_is_configuration_idle(ndns))
					continue;
				/* Ours (named like a volume) but not enabled: a creation that
				 * was cut off. An unnamed seed with settings is the same, from
				 * before the name was set. */
				if (!is_ours(name ? name : "") &&
				    (is_ours == is_cleanup_only || ndctl_namespace_get_size(ndns) != 0 || (name && *name)))
					continue;
				log_info("Removing incomplete namespace %s (\"%s\") in %s", ndctl_namespace_get_devname(ndns),
					 name ? name : "", ndctl_region_get_devname(region));
				(void)ndctl_namespace_set_enforce_mode(ndns, NDCTL_NS_MODE_RAW);
				(void)ndctl_namespace_disable_invalidate(ndns);
				if (ndctl_namespace_delete(ndns) >= 0)
					cleaned++;
			}
		}
	}
	ndctl_unref(ctx);
	return cleaned;
}
