/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The paths of Node calls, and what the driver may do there.
 *
 * A node plugin runs as root, and the paths come from whoever can reach its
 * socket: a confused or buggy client can name any directory of the node. So:
 *
 * - a path must be absolute and free of "." and ".." components: a relative
 *   path would be taken relative to the driver's working directory, and ".."
 *   can climb out of the directory a reader of the request would expect;
 * - a path is resolved (realpath(3), every symlink followed) before anything
 *   is done there, by every call alike: stage and unstage of one path string
 *   act on the same directory, which mountinfo shows under that name;
 * - unpublish and unstage unmount only mounts of the volume's own device
 *   (or of the loop device over its Kata image), and remove only what a
 *   publish makes (an empty directory or empty file). Anything else at the
 *   path - a tmpfs, another volume, a file with data - is left as it is and
 *   the call fails with FAILED_PRECONDITION saying what is there.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "fs/kata.h"
#include "node_internal.h"

#define MAX_STACKED_MOUNTS 16

int node_path_get(struct csi_call *c, const char *field, const char *path, char **ret)
{
	const char *why = NULL;
	int r;

	if (!path || !*path)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "%s is missing", field);
	if (fs_path_check(path, &why) < 0)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "%s \"%.256s\" %s", field, path, why);
	r = fs_path_resolve(path, ret);
	if (r == -ENOMEM)
		return csi_oom(c);
	if (r < 0)
		return csi_fail_errno(c, r == -ENOTDIR ? -EINVAL : r, "%s \"%.256s\" cannot be resolved", field, path);
	return 0;
}

bool node_same_device(const struct fs_mount_info *mi, const char *dev)
{
	struct stat st;

	if (!dev || stat(dev, &st) < 0 || !S_ISBLK(st.st_mode))
		return false;
	return mi->major == major(st.st_rdev) && mi->minor == minor(st.st_rdev);
}

/* A device node bound onto path (raw block publish) shows the devtmpfs it
 * lives in, not the device: compare what path is now. */
static bool same_node(const char *path, const char *dev)
{
	struct stat sp, sd;

	return dev && stat(path, &sp) == 0 && stat(dev, &sd) == 0 && S_ISBLK(sp.st_mode) && S_ISBLK(sd.st_mode) &&
	       sp.st_rdev == sd.st_rdev;
}

bool node_mount_is_ours(const struct node_owner *o, const char *path, const struct fs_mount_info *mi)
{
	if (o->dev && (node_same_device(mi, o->dev) || same_node(path, o->dev)))
		return true;
	return o->kata_image && kata_loop_backing(mi->major, mi->minor, o->kata_image) > 0;
}

int node_umount_ours(struct csi_call *c, const char *path, const char *what, const struct node_owner *o)
{
	for (int i = 0; i < MAX_STACKED_MOUNTS; i++) {
		struct fs_mount_info mi = {};
		int r = fs_mount_info(path, &mi);

		if (r < 0)
			return csi_fail_errno(c, r, "cannot read the mount table");
		if (r == 0)
			return 0;
		if (!node_mount_is_ours(o, path, &mi)) {
			r = csi_fail(c, CSI_CODE_FAILED_PRECONDITION,
				     "%s %s has %s (%s, device %u:%u) mounted, not volume %s: left as it is", what, path,
				     mi.fstype, mi.source, mi.major, mi.minor, o->volume_id);
			fs_mount_info_done(&mi);
			return r;
		}
		fs_mount_info_done(&mi);
		r = fs_umount(path);
		if (r == -EBUSY)
			return csi_fail(c, CSI_CODE_FAILED_PRECONDITION, "%s %s is busy (still in use)", what, path);
		if (r < 0)
			return csi_fail_errno(c, r, "cannot unmount %s %s", what, path);
	}
	return csi_fail(c, CSI_CODE_INTERNAL, "%s %s is still mounted after %d unmounts", what, path,
			MAX_STACKED_MOUNTS);
}

static const char *file_type(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG:
		return "a regular file";
	case S_IFDIR:
		return "a directory";
	case S_IFLNK:
		return "a symlink";
	case S_IFBLK:
		return "a block device node";
	case S_IFCHR:
		return "a character device node";
	case S_IFIFO:
		return "a FIFO";
	case S_IFSOCK:
		return "a socket";
	default:
		return "a file of unknown type";
	}
}

int node_remove_made(struct csi_call *c, const char *path, const char *what)
{
	struct stat st;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return csi_fail_errno(c, -errno, "cannot inspect %s %s", what, path);
	}
	if (S_ISDIR(st.st_mode)) {
		if (rmdir(path) == 0 || errno == ENOENT)
			return 0;
		if (errno == ENOTEMPTY || errno == EEXIST)
			return csi_fail(c, CSI_CODE_FAILED_PRECONDITION,
					"%s %s is a directory that is not empty, not one made by NodePublishVolume: left as it is",
					what, path);
		return csi_fail_errno(c, -errno, "cannot remove %s %s", what, path);
	}
	if (S_ISREG(st.st_mode) && st.st_size == 0) {
		if (unlink(path) == 0 || errno == ENOENT)
			return 0;
		return csi_fail_errno(c, -errno, "cannot remove %s %s", what, path);
	}
	if (S_ISREG(st.st_mode))
		return csi_fail(c, CSI_CODE_FAILED_PRECONDITION,
				"%s %s is a regular file with %" PRIu64
				" bytes, not one made by NodePublishVolume: left as it is",
				what, path, (uint64_t)st.st_size);
	return csi_fail(c, CSI_CODE_FAILED_PRECONDITION,
			"%s %s is %s, not one made by NodePublishVolume: left as it is", what, path,
			file_type(st.st_mode));
}

static bool dir_is_empty(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	struct dirent *de;
	bool empty = true;
	DIR *dir;

	if (fd < 0)
		return false;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return false;
	}
	while (empty && (de = readdir(dir)))
		empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
	closedir(dir);
	return empty;
}

int node_prepare_target(struct csi_call *c, const char *path, bool dir, bool *ret_created)
{
	_cleanup_free_ char *parent = NULL;
	struct stat st;
	char *slash;
	int r, fd;

	*ret_created = false;
	if (lstat(path, &st) == 0) {
		if (dir && S_ISDIR(st.st_mode) && dir_is_empty(path))
			return 0;
		if (!dir && S_ISREG(st.st_mode) && st.st_size == 0)
			return 0;
		if (S_ISREG(st.st_mode))
			return csi_fail(c, CSI_CODE_FAILED_PRECONDITION,
					"target path %s is a regular file with %" PRIu64 " bytes, not %s: left as it is",
					path, (uint64_t)st.st_size, dir ? "a directory" : "an empty file");
		return csi_fail(c, CSI_CODE_FAILED_PRECONDITION, "target path %s is %s%s, not %s: left as it is", path,
				S_ISDIR(st.st_mode) ? "a directory" : file_type(st.st_mode),
				S_ISDIR(st.st_mode) ? " that is not empty" : "", dir ? "an empty directory" : "an empty file");
	}
	if (errno != ENOENT)
		return csi_fail_errno(c, -errno, "cannot inspect target path %s", path);

	/* The CO makes the parent; make it too where it did not (as before). */
	parent = strdup(path);
	if (!parent)
		return csi_oom(c);
	slash = strrchr(parent, '/');
	if (slash && slash != parent) {
		*slash = 0;
		r = mkdir_p(parent, 0750);
		if (r < 0)
			return csi_fail_errno(c, r, "cannot create the parent of target path %s", path);
	}
	if (dir) {
		if (mkdir(path, 0750) < 0 && errno != EEXIST)
			return csi_fail_errno(c, -errno, "cannot create target path %s", path);
	} else {
		fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0640);
		if (fd < 0)
			return csi_fail_errno(c, -errno, "cannot create target file %s", path);
		close(fd);
	}
	*ret_created = true;
	return 0;
}
