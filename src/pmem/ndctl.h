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
	uint64_t usable;   /* size of the block device (after fsdax/sector metadata) */
	bool active;
};

struct ndctl_region_info {
	char bus[32];      /* ndbus0 */
	char region[32];   /* region0 */
	char provider[32]; /* the bus's: ACPI.NFIT, e820, virtio-pmem, CXL, ... */
	uint64_t size, available, max_extent, align;
	unsigned interleave_ways;
	bool enabled;
	/*
	 * No namespace labels (the region's namespace type is "io"): one namespace
	 * spans the whole region and only its mode can change, none can be created.
	 * Label-less NVDIMMs, memmap= (e820) PMEM and virtio-pmem are like that.
	 */
	bool labelless;
	struct ndctl_namespace_info *namespaces;
	size_t n_namespaces;
};

/** pmem_ndctl_regions() - all PMEM-type regions with their namespaces. */
int pmem_ndctl_regions(struct ndctl_region_info **ret, size_t *ret_n);
void pmem_ndctl_regions_free(struct ndctl_region_info *r, size_t n);

/**
 * pmem_ndctl_region_kind() - what kind of PMEM a region is, for messages:
 * "NVDIMM", "label-less NVDIMM", "memmap= PMEM", "virtio-pmem", "CXL PMEM", or
 * the bus provider. Valid as long as ri.
 */
const char *pmem_ndctl_region_kind(const struct ndctl_region_info *ri);

enum ndctl_ns_mode {
	NDCTL_NS_FSDAX,  /* memmap on the device, 2 MiB aligned: for DAX */
	NDCTL_NS_SECTOR, /* BTT with 4 KiB sectors: atomic sector writes, no DAX */
};

/**
 * pmem_ndctl_create_namespace() - create and enable a namespace of raw_size
 * bytes named name in bus/region, the way `ndctl create-namespace` does it.
 * On failure the half-made namespace is deleted again. -ENOSPC when the
 * region has no room (or no idle seed namespace).
 */
int pmem_ndctl_create_namespace(const char *bus, const char *region, uint64_t raw_size, const char *name,
				enum ndctl_ns_mode mode, struct ndctl_namespace_info *ret);

/**
 * pmem_ndctl_destroy_namespace() - disable (refused with -EBUSY while the
 * block device is in use), drop the personality and delete namespace dev of
 * region. -ENOENT when it is gone already.
 */
int pmem_ndctl_destroy_namespace(const char *bus, const char *region, const char *dev);

/**
 * pmem_ndctl_cleanup_incomplete() - delete namespaces that a creation left
 * behind when it was cut off (disabled, not idle, named so that is_ours()
 * accepts the name), and release pfn/btt claims on them. Returns how many
 * objects were cleaned.
 */
int pmem_ndctl_cleanup_incomplete(bool (*is_ours)(const char *name));

/**
 * pmem_ndctl_cleanup_named() - the same, for the namespace named name only
 * (a creation of ours that a crash cut off: the caller knows it is ours).
 */
int pmem_ndctl_cleanup_named(const char *name);

/**
 * pmem_ndctl_destroy_named() - destroy every namespace named name, enabled or
 * left half set up. Only for names the caller knows to be its own.
 */
int pmem_ndctl_destroy_named(const char *name);

/** pmem_ndctl_name_exists() - 1 if a namespace named name exists (enabled or not), 0 if not, -errno. */
int pmem_ndctl_name_exists(const char *name);

/**
 * pmem_ndctl_cleanup_region() - the same for one region; with any_claim, every
 * claim of a never-enabled pfn/btt on an inactive namespace is released (safe
 * only while the caller holds the region's allocation lock).
 */
int pmem_ndctl_cleanup_region(const char *bus, const char *region, bool (*is_ours)(const char *name),
			      bool any_claim);
