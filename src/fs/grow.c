/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Growing a mounted filesystem to the size of its (grown) device: online
 * resize, which both ext4 and xfs do while mounted, DAX included. Neither
 * tool changes mount options, so a DAX mount stays one.
 */
#include <errno.h>

#include "basic/strutil.h"
#include "exec/exec.h"
#include "fs.h"

#define GROW_TIMEOUT_MS (10 * 60 * 1000)

int fs_grow(const char *dev, const char *mountpoint, const char *type, char **ret_err)
{
	if (streq_ptr(type, "ext4")) {
		/* Mounted: resize2fs asks the kernel (EXT4_IOC_RESIZE_FS) to grow
		 * to the device's size; "Nothing to do" is success. */
		const char *argv[] = { "resize2fs", dev, NULL };
		return exec_check(argv, GROW_TIMEOUT_MS, NULL, ret_err);
	}
	if (streq_ptr(type, "xfs")) {
		/* xfs grows through its mount point only; -d: the data section to the device's size. */
		const char *argv[] = { "xfs_growfs", "-d", mountpoint, NULL };
		return exec_check(argv, GROW_TIMEOUT_MS, NULL, ret_err);
	}
	return -EOPNOTSUPP;
}
