/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Filesystems on volumes: detect (libblkid), create (mkfs.ext4 / mkfs.xfs with
 * DAX-friendly geometry), mount with mount(2), and inspect mounts through
 * /proc/self/mountinfo.
 */

/* xfsprogs >= 5.19 refuses to make filesystems smaller than 300 MB. */
#define FS_XFS_MIN_SIZE (300ULL * 1024 * 1024)

/** fs_type_supported() - ext4 and xfs. */
bool fs_type_supported(const char *type);

/**
 * fs_detect() - the filesystem (or other signature) on a device: *ret is NULL
 * when the device holds no known signature, else e.g. "ext4" (caller frees).
 */
int fs_detect(const char *dev, char **ret);

/**
 * fs_mkfs() - make a filesystem: ext4 with 4 KiB blocks and a 2 MiB stripe,
 * xfs with 4 KiB blocks, su=2m and no reflink (both needed for DAX and huge
 * pages). ret_err gets mkfs's last line of error output on failure.
 */
int fs_mkfs(const char *dev, const char *type, char **ret_err);

/**
 * fs_grow() - grow the mounted ext4 (through dev) or xfs (through mountpoint)
 * filesystem to its device's size, online. Growing one that fills its device
 * already is success. -EOPNOTSUPP for other types; ret_err gets the tool's
 * last line of error output on failure (grow.c).
 */
int fs_grow(const char *dev, const char *mountpoint, const char *type, char **ret_err);

/**
 * fs_xfs_set_extsize() - set the 2 MiB extent size hint (inherited by new
 * files) on the root of a mounted xfs, so DAX mappings can use huge pages.
 */
int fs_xfs_set_extsize(const char *mountpoint);

/**
 * fs_parse_mount_options() - split mount flags from a CSI request ("ro",
 * "noatime", ...) into MS_* flags and a data string for the filesystem.
 * *ret_data is malloc'd (may be empty). -EINVAL for options that are not allowed
 * (e.g. "bind", "remount").
 */
int fs_parse_mount_options(const char *const *opts, size_t n, unsigned long *ret_flags,
			   char **ret_data);

/** fs_mount() - mount(2) with flags and data, logging nothing. */
int fs_mount(const char *src, const char *target, const char *type, unsigned long flags,
	     const char *data);
/** fs_bind_mount() - bind mount src on target, read-only if asked (two steps, as the kernel needs). */
int fs_bind_mount(const char *src, const char *target, bool readonly, unsigned long extra_flags);
/** fs_umount() - unmount; -EINVAL (not mounted) is reported as such. */
int fs_umount(const char *target);

struct fs_mount_info {
	unsigned major, minor; /* device of the mount */
	char *root;            /* root of the mount within its filesystem */
	char *fstype;
	char *source;
	char *options;       /* per-mount options (ro, noatime, ...) */
	char *super_options; /* filesystem options (dax=always, ...) */
};

void fs_mount_info_done(struct fs_mount_info *i);

/**
 * fs_mount_info() - information about the mount at exactly path (the topmost
 * one). Returns 1 and fills *ret when path is a mount point, 0 when it is not.
 */
int fs_mount_info(const char *path, struct fs_mount_info *ret);

/** fs_device_mount_count() - how many mounts use the block device dev: mounts of it
 * (by number) and binds of its device node onto a file (raw block publish). */
int fs_device_mount_count(const char *dev);

/** fs_has_option() - whether a comma-separated option list contains opt. */
bool fs_has_option(const char *list, const char *opt);

/**
 * fs_path_check() - whether path is one the driver acts on: absolute, at most
 * PATH_MAX - 1 bytes, and without "." or ".." components (empty components,
 * "//" or a trailing "/", are harmless: fs_path_resolve() drops them).
 * Returns 0, or -EINVAL with *ret_why (static text) saying what is wrong.
 */
int fs_path_check(const char *path, const char **ret_why);

/**
 * fs_path_resolve() - the canonical form of a checked path: realpath(3) of its
 * longest existing prefix (every symlink in it resolved, as mount(2) would)
 * with the components that do not exist yet appended. *ret is malloc'd.
 * A symlink that dangles is not followed: it is the path's last existing
 * component and appears as such.
 */
int fs_path_resolve(const char *path, char **ret);
