/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "volume/params.h"

/*
 * Device managers behind one ops table. A device manager turns PMEM into block
 * devices, one per volume, named by the volume ID: LVM (logical volumes in a
 * volume group per region) or direct (one namespace per volume). Every
 * operation is thread-safe; allocation is serialized per volume group or
 * region only, never across the node.
 */

struct pmem_device {
	char *name; /* volume ID */
	char *path; /* /dev/... block device */
	uint64_t size;
};

struct pmem_capacity {
	uint64_t total;           /* all PMEM on the node */
	uint64_t managed;         /* what this driver manages */
	uint64_t available;       /* free for new volumes */
	uint64_t max_volume_size; /* the largest volume that can be created now */
};

struct pmem_manager_ops {
	const char *mode;
	int (*create)(void *priv, const char *name, uint64_t size, enum volume_usage usage,
		      struct pmem_device *ret);
	int (*get)(void *priv, const char *name, struct pmem_device *ret);
	int (*delete)(void *priv, const char *name, bool erase);
	/* NULL when the mode cannot grow a device (direct: namespaces are fixed). */
	int (*expand)(void *priv, const char *name, uint64_t size, struct pmem_device *ret);
	int (*list)(void *priv, struct pmem_device **ret, size_t *ret_n);
	void (*capacity)(void *priv, struct pmem_capacity *ret);
	void (*free)(void *priv);
};

struct pmem_manager;

/**
 * pmem_manager_new() - set up a device manager: discover regions, prepare
 * namespaces and volume groups as needed, load the existing devices.
 * @mode: "lvm" or "direct" ("ndctl" is accepted as an alias of direct).
 * @percentage: LVM only: share of each region to use (0-100).
 */
int pmem_manager_new(const char *mode, unsigned percentage, struct pmem_manager **ret);
void pmem_manager_free(struct pmem_manager *m);
const char *pmem_manager_mode(const struct pmem_manager *m);

/**
 * pmem_create() - create a device of at least size bytes (0 = smallest). The
 * device's first 4 KiB are zeroed so an old filesystem never reappears.
 * Returns -EEXIST if the name exists, -ENOSPC when no region can hold it.
 */
int pmem_create(struct pmem_manager *m, const char *name, uint64_t size, enum volume_usage usage,
		struct pmem_device *ret);
/** pmem_get() - look a device up; -ENOENT if there is none. */
int pmem_get(struct pmem_manager *m, const char *name, struct pmem_device *ret);
/**
 * pmem_delete() - remove a device, zeroing it first when erase is set.
 * -ENOENT if there is none, -EBUSY if it is open (mounted) elsewhere.
 */
int pmem_delete(struct pmem_manager *m, const char *name, bool erase);
/**
 * pmem_expand() - grow device name to at least size bytes, in place and while
 * it is in use (mounted); never shrinks: a device that has size already is
 * left as it is. *ret gets the device with its new size.
 * -ENOENT if there is none, -ENOSPC when its pool has no room,
 * -EOPNOTSUPP when its device manager cannot grow devices (direct mode).
 */
int pmem_expand(struct pmem_manager *m, const char *name, uint64_t size, struct pmem_device *ret);
/**
 * pmem_can_expand() - whether the device manager of the given mode ("lvm",
 * "direct"; the primary one when mode is NULL) can grow devices.
 */
bool pmem_can_expand(const struct pmem_manager *m, const char *mode);
int pmem_list(struct pmem_manager *m, struct pmem_device **ret, size_t *ret_n);
void pmem_capacity(struct pmem_manager *m, struct pmem_capacity *ret);

/**
 * pmem_manager_add_other() - also open the device manager of the other mode
 * (LVM beside direct or the reverse), without taking PMEM for it
 * (percentage 0 in LVM mode), so that volumes created in that mode before a
 * switch keep being served, as intel/pmem-csi 1.x does: pmem_get() and
 * pmem_delete() fall back to it for names the primary does not have. New
 * volumes, capacity and listings stay with the primary.
 */
int pmem_manager_add_other(struct pmem_manager *m, unsigned percentage);
/** pmem_manager_other_mode() - the mode added by pmem_manager_add_other(), or NULL. */
const char *pmem_manager_other_mode(const struct pmem_manager *m);

#define PMEM_REGION_ALIGN_FALLBACK (96ull << 20)
/**
 * pmem_region_align() - a region's namespace size alignment from what
 * ndctl_region_get_align() reported: PMEM_REGION_ALIGN_FALLBACK when the
 * kernel has no such attribute (ULONG_MAX) or reports 0 or 1. Pure.
 */
uint64_t pmem_region_align(uint64_t raw);
/**
 * pmem_namespace_step() - the unit of namespace sizes in a region: the least
 * common multiple of the region alignment (with the fallback above) and the
 * personality's alignment times the interleave ways. Pure.
 */
uint64_t pmem_namespace_step(uint64_t raw_align, unsigned interleave_ways, uint64_t pfn_align);

void pmem_device_done(struct pmem_device *d);
void pmem_device_array_free(struct pmem_device *d, size_t n);

/* Constructors of the device managers (lvm.c, direct.c). */
int pmem_lvm_new(unsigned percentage, const struct pmem_manager_ops **ret_ops, void **ret_priv);
int pmem_direct_new(const struct pmem_manager_ops **ret_ops, void **ret_priv);
