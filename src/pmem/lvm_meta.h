/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lvm_report.h"

/*
 * A read-only reader of LVM2's on-disk metadata, so that start-up need not
 * run `pvs` (0.4-0.6 s in an emulated guest, more than everything else the
 * driver does before it is ready). It reads the PV label, the metadata area
 * header and the committed metadata text of the given block devices and
 * builds the rows that `pvs -o pv_name,vg_name,vg_size,vg_free,lv_name,
 * lv_size,lv_attr` prints (one per PV segment, free space with lv "").
 *
 * It understands only the plain case the driver makes: one metadata area per
 * PV, VGs whose PVs are all among the devices read, visible linear/striped
 * LVs. Anything else returns -EOPNOTSUPP (logged at -v=2 with the reason) and
 * the caller runs `pvs`: a wrong picture is worse than a slow start.
 */

/* An image of the start of a device (tests and fuzzing): reads beyond len fail. */
struct lvm_meta_image {
	const char *name; /* the device path pvs would print, e.g. "/dev/pmem0" */
	const uint8_t *data;
	size_t len;
};

/**
 * lvm_meta_usable() - whether LVM's view can be read from the devices alone:
 * false when LVM uses a devices file (/etc/lvm/devices/system.devices), which
 * hides PVs not listed there from `pvs`.
 */
bool lvm_meta_usable(void);

/**
 * lvm_meta_rows() - the start-up report's rows for the block devices @devs
 * (paths, e.g. "/dev/pmem0"), read with O_DIRECT. A row's attr[4] is 'a'
 * when the LV's device-mapper device exists (/sys/block/dm-N/dm/uuid).
 * Devices without an LVM label give no rows. Returns 0, -EOPNOTSUPP when the
 * metadata is not plain enough to be trusted, -EIO, or -ENOMEM; @ret (free
 * with lvm_report_rows_free()) is set only on success.
 */
int lvm_meta_rows(const char *const *devs, size_t n, struct lvm_report_row **ret, size_t *ret_n);

/**
 * lvm_meta_rows_images() - lvm_meta_rows() on images instead of devices;
 * @active lists the device-mapper uuids ("LVM-<vg id><lv id>", no dashes)
 * that count as active. Pure: for tests and the fuzz target.
 */
int lvm_meta_rows_images(const struct lvm_meta_image *imgs, size_t n, const char *const *active,
			 size_t n_active, struct lvm_report_row **ret, size_t *ret_n);

/**
 * lvm_meta_crc() - LVM's checksum (CRC-32, reflected polynomial 0xedb88320,
 * no final inversion) of @len bytes, continued from @crc; LVM starts from
 * LVM_META_CRC_INIT.
 */
uint32_t lvm_meta_crc(uint32_t crc, const void *buf, size_t len);
#define LVM_META_CRC_INIT 0xf597a6cfu
