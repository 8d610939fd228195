/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * Node preparation for LVM mode (-mode=force-convert-raw-namespaces): raw
 * namespaces (legacy, label-less NVDIMMs and memmap= PMEM can only have those)
 * become fsdax namespaces in the volume group "<bus><region>fsdax" that LVM
 * mode uses, the same layout intel/pmem-csi's conversion produced.
 */

struct lvm_report_row;

/** pmem_lvm_vg_name() - "<bus><region>fsdax" (caller frees). */
char *pmem_lvm_vg_name(const char *bus, const char *region);
/** pmem_lvm_pvs() - all physical volumes (name, vg). */
int pmem_lvm_pvs(struct lvm_report_row **ret, size_t *ret_n);
/** pmem_lvm_vg_in() - whether a volume group exists: some physical volume of pvs is in it. */
bool pmem_lvm_vg_in(const struct lvm_report_row *pvs, size_t n, const char *vg);
/** pmem_lvm_vg_add() - vgcreate (vgextend when it exists) vg with devs (at most 16). */
int pmem_lvm_vg_add(const char *vg, bool exists, const char *const *devs, size_t n, char **ret_err);

struct pmem_convert_result {
	unsigned converted;   /* raw namespaces made fsdax in this run */
	unsigned added;       /* namespaces put into a volume group in this run */
	unsigned vgs;         /* volume groups LVM mode will find */
	unsigned lvm_namespaces; /* fsdax namespaces named "pmem-csi" (LVM mode makes its VGs from them) */
};

/**
 * pmem_convert_raw_namespaces() - convert every raw namespace of every
 * enabled region to fsdax and add it to its region's volume group. Like 1.1,
 * also adds every other fsdax namespace that is in no volume group, except
 * "pmem-csi" (LVM mode makes its own VGs from those), direct-mode volumes
 * (named by a volume ID) and namespaces holding a signature (reported).
 */
int pmem_convert_raw_namespaces(struct pmem_convert_result *ret, char **ret_err);
