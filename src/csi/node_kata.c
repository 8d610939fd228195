/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kata Containers volumes. The volume's own filesystem (staged as usual, or
 * for an ephemeral volume mounted here directly) is made visible at
 * <stateDir>/mount/<volume_id> (the same place as intel/pmem-csi); the image
 * file inside it is attached to a loop device and that is what the pod's
 * target gets. Several targets of one volume share one loop device, so the
 * image's filesystem is only ever mounted through one block device.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/strutil.h"
#include "fs/kata.h"
#include "node_internal.h"

char *node_kata_host_dir(struct csi_driver *d, const char *volume_id)
{
	if (!*volume_id || strchr(volume_id, '/') || streq_ptr(volume_id, ".") || streq_ptr(volume_id, "..") ||
	    strlen(volume_id) > 200)
		return NULL;
	return xasprintf("%s/mount/%s", csi_driver_cfg(d)->state_dir, volume_id);
}

/*
 * Unmount everything stacked on the host directory. It lies in the driver's
 * own state directory and only ever holds the volume's filesystem, so every
 * mount there is the driver's.
 */
static int umount_host(struct csi_call *c, const char *host)
{
	for (int i = 0; i < 16; i++) {
		struct fs_mount_info mi = {};
		int r = fs_mount_info(host, &mi);

		fs_mount_info_done(&mi);
		if (r < 0)
			return csi_fail_errno(c, r, "cannot read the mount table");
		if (r == 0)
			return 0;
		r = fs_umount(host);
		if (r == -EBUSY)
			return csi_fail(c, CSI_CODE_FAILED_PRECONDITION, "Kata Containers host mount %s is busy", host);
		if (r < 0)
			return csi_fail_errno(c, r, "cannot unmount the Kata Containers host mount %s", host);
	}
	return csi_fail(c, CSI_CODE_INTERNAL, "Kata Containers host mount %s is still mounted after 16 unmounts",
			host);
}

/* Undo node_kata_publish's host side: loop devices over the image, the host mount. */
int node_kata_release(struct csi_call *c, const char *host)
{
	_cleanup_free_ char *image = xasprintf("%s/%s", host, KATA_IMAGE_NAME);
	char loop[32];
	int r;

	if (!image)
		return csi_oom(c);
	if (access(host, F_OK) < 0)
		return 0;
	/* Another target of the same volume still has the image mounted: keep it. */
	r = kata_loop_find(image, loop, sizeof(loop));
	if (r > 0 && fs_device_mount_count(loop) > 0)
		return 0;
	r = kata_loop_detach_all(image);
	if (r < 0 && r != -ENOENT)
		return csi_fail_errno(c, r, "cannot detach the loop devices of %s", image);
	r = umount_host(c, host);
	if (r < 0)
		return r;
	if (rmdir(host) < 0 && errno != ENOENT)
		return csi_fail_errno(c, -errno, "cannot remove %s", host);
	return 0;
}

/* Mount the loop device over the image at target: with dax where the kernel
 * allows it (loop devices do not offer DAX today), without otherwise. */
static int kata_mount_target(const char *loop, const char *target, const char *fs, unsigned long flags, bool ro,
			     bool *ret_dax)
{
	int r = fs_mount(loop, target, fs, flags, "dax");

	*ret_dax = r >= 0;
	if (r < 0)
		r = fs_mount(loop, target, fs, flags, NULL);
	if (r >= 0 && ro) {
		/* Read-only per mount, so a read-write target of the same loop device stays so. */
		r = mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | flags, NULL) < 0 ? -errno : 0;
		if (r < 0)
			(void)fs_umount(target);
	}
	return r;
}

int node_kata_publish(struct csi_call *c, struct csi_driver *d, const char *volume_id, const char *src,
			const char *ephemeral_dev, const char *fs, bool dax, unsigned long flags, bool ro,
			const char *target)
{
	_cleanup_free_ char *host = node_kata_host_dir(d, volume_id), *image = NULL, *err = NULL;
	struct fs_mount_info mi = {};
	char loop[32];
	bool host_new = false, target_new = false, with_dax = false;
	int r, lfd = -1;

	if (!host)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_id \"%s\" cannot name a directory", volume_id);
	image = xasprintf("%s/%s", host, KATA_IMAGE_NAME);
	if (!image)
		return csi_oom(c);

	r = fs_mount_info(target, &mi);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot read the mount table");
	if (r > 0) {
		bool is_ro = fs_has_option(mi.options, "ro");
		if (!kata_loop_backing(mi.major, mi.minor, image))
			r = csi_fail(c, CSI_CODE_ALREADY_EXISTS, "target path %s has another device mounted (%s)",
				     target, mi.source);
		else if (is_ro != ro)
			r = csi_fail(c, CSI_CODE_ALREADY_EXISTS, "volume %s is published at %s %s", volume_id, target,
				     is_ro ? "read-only" : "read-write");
		else
			r = 0;
		fs_mount_info_done(&mi);
		return r;
	}

	r = node_prepare_target(c, target, true, &target_new);
	if (r < 0)
		return r;
	r = mkdir_p(host, 0750);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot create %s", host);
		goto fail;
	}
	r = fs_mount_info(host, &mi);
	fs_mount_info_done(&mi);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot read the mount table");
		goto fail;
	}
	if (r == 0) {
		host_new = true;
		if (ephemeral_dev)
			r = fs_mount(ephemeral_dev, host, fs, 0, dax ? "dax" : NULL);
		else
			r = fs_bind_mount(src, host, false, 0);
		if (r < 0) {
			r = csi_fail_errno(c, r, "cannot mount the volume's filesystem on %s", host);
			goto fail;
		}
	}
	r = kata_image_ensure(host, fs, &err);
	if (r < 0) {
		r = csi_fail(c, r == -ENOSPC ? CSI_CODE_OUT_OF_RANGE : CSI_CODE_INTERNAL,
			     "Kata Containers image for volume %s: %s", volume_id, err ? err : "failed");
		goto fail;
	}
	/* The same volume published elsewhere: mount its loop device again. */
	r = kata_loop_find(image, loop, sizeof(loop));
	if (r <= 0) {
		lfd = kata_loop_attach(image, loop, sizeof(loop));
		if (lfd < 0) {
			r = csi_fail_errno(c, lfd, "cannot attach a loop device to %s", image);
			goto fail;
		}
	}
	r = kata_mount_target(loop, target, fs, flags, ro, &with_dax);
	if (lfd >= 0)
		close(lfd); /* the mount holds the loop device now; autoclear when it goes */
	if (r < 0) {
		r = csi_fail_errno(c, r, "mount -t %s %s %s failed", fs, loop, target);
		goto fail;
	}
	log_v(2, "Published Kata Containers volume %s at %s (%s over %s%s)", volume_id, target, loop, image,
	      with_dax ? ", dax" : "");
	return 0;
fail:
	if (target_new)
		(void)rmdir(target);
	if (host_new) {
		struct csi_call scratch = *c;
		(void)node_kata_release(&scratch, host);
	}
	return r;
}
