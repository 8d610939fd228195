/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/**
 * blockdev_erase() - zero a block device. Opens it O_EXCL first, so a device
 * that is mounted or open elsewhere gives -EBUSY and is left alone.
 * @full: zero everything (BLKZEROOUT, at memory speed on PMEM); otherwise only
 *        the first 4 KiB (enough to hide an old filesystem signature).
 */
int blockdev_erase(const char *path, bool full);

/** blockdev_wait() - wait up to timeout_ms for a device node to appear (no udev). */
int blockdev_wait(const char *path, int timeout_ms);

/** blockdev_in_use() - true when the device cannot be opened O_EXCL. */
bool blockdev_in_use(const char *path);
