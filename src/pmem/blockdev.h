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

/**
 * blockdev_copy() - copy the first len bytes of block device src to block
 * device dst, as it is on src at that time (a crash-consistent image of a
 * device in use: what a power cut would leave). Both are opened O_DIRECT and
 * copied with large aligned buffers, so no byte goes through the page cache:
 * on PMEM each read and write is one memcpy by the pmem driver. dst is
 * opened O_EXCL (-EBUSY when open elsewhere) and flushed at the end; src is
 * not (it may be mounted) but its dirty buffers are written out first.
 * @ret_ns: optional, the time the copy took.
 * Returns -EFBIG when either device is smaller than len.
 */
int blockdev_copy(const char *src, const char *dst, uint64_t len, uint64_t *ret_ns);
