/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Node service. NodeStageVolume formats (if needed) and mounts the device on
 * the staging path, with `dax` for usage=AppDirect; NodePublishVolume
 * bind-mounts that into the pod. Raw block volumes skip staging and bind-mount
 * the device node onto a file. All calls are idempotent: a repeated call that
 * finds its work done succeeds without doing it again.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/strutil.h"
#include "caps.h"
#include "csi.pb-c.h"
#include "driver.h"
#include "fs/fs.h"
#include "fs/kata.h"

#define MAX_CONTEXT 64

/* The mount half of a capability's oneof; NULL for block (the union holds the block pointer). */
static const Csi__V1__VolumeCapability__MountVolume *mount_of(const Csi__V1__VolumeCapability *cap)
{
	return cap->access_type_case == CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT ? cap->mount : NULL;
}

static bool same_node(const char *a, const char *b)
{
	struct stat sa, sb;

	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && S_ISBLK(sa.st_mode) && sa.st_rdev == sb.st_rdev;
}

static bool same_device(const struct fs_mount_info *mi, const char *dev)
{
	struct stat st;

	if (stat(dev, &st) < 0 || !S_ISBLK(st.st_mode))
		return false;
	return mi->major == major(st.st_rdev) && mi->minor == minor(st.st_rdev);
}

static int find_device(struct csi_call *c, struct csi_driver *d, const char *id, struct volume_record *rec,
		       struct pmem_device *dev)
{
	int r;

	if (csi_volume_lookup(d, id, rec) < 0)
		return csi_fail(c, CSI_CODE_NOT_FOUND, "volume %s not found", id);
	r = pmem_get(csi_driver_pm(d), id, dev);
	if (r < 0) {
		volume_record_done(rec);
		return csi_fail_errno(c, r, "the device of volume %s is missing", id);
	}
	return 0;
}

static int stage_locked(struct csi_call *c, struct csi_driver *d, const Csi__V1__NodeStageVolumeRequest *req,
			const struct csi_caps_summary *caps)
{
	struct volume_record rec = {};
	struct pmem_device dev = {};
	struct fs_mount_info mi = {};
	_cleanup_free_ char *existing = NULL, *data = NULL, *err = NULL, *opts = NULL;
	const Csi__V1__VolumeCapability__MountVolume *mv = mount_of(req->volume_capability);
	unsigned long flags = 0;
	bool dax;
	int r;

	if (find_device(c, d, req->volume_id, &rec, &dev) < 0)
		return -1;
	if (caps->block) {
		/* Nothing to stage for raw block: NodePublishVolume binds the device. */
		r = 0;
		goto out;
	}
	dax = rec.params.usage == VOLUME_USAGE_APP_DIRECT;

	r = fs_mount_info(req->staging_target_path, &mi);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot read the mount table");
		goto out;
	}
	if (r > 0) {
		if (!same_device(&mi, dev.path))
			r = csi_fail(c, CSI_CODE_ALREADY_EXISTS, "staging path %s has another device mounted (%s)",
				     req->staging_target_path, mi.source);
		else if (strcmp(mi.fstype, caps->fs_type) != 0)
			r = csi_fail(c, CSI_CODE_ALREADY_EXISTS,
				     "volume %s is staged with filesystem %s, not %s", req->volume_id, mi.fstype,
				     caps->fs_type);
		else
			r = 0; /* staged already */
		goto out;
	}

	r = mkdir_p(req->staging_target_path, 0750);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot create staging path %s", req->staging_target_path);
		goto out;
	}
	r = fs_detect(dev.path, &existing);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot probe %s for a filesystem", dev.path);
		goto out;
	}
	/* A "mkfs" marker means a previous mkfs was cut off: what is on the
	 * device is a torn filesystem of ours, not data; make it again. */
	r = state_intent_test(csi_driver_cfg(d)->state_dir, req->volume_id, "mkfs");
	if (r > 0) {
		log_info("Volume %s: the last mkfs did not finish, formatting again", req->volume_id);
		free(existing);
		existing = NULL;
	}
	if (existing && strcmp(existing, caps->fs_type) != 0) {
		/* Never format over data. */
		r = csi_fail(c, CSI_CODE_ALREADY_EXISTS,
			     "volume %s already holds %s, refusing to format it as %s", req->volume_id, existing,
			     caps->fs_type);
		goto out;
	}
	if (!existing) {
		if (strcmp(caps->fs_type, "xfs") == 0 && dev.size < FS_XFS_MIN_SIZE) {
			r = csi_fail(c, CSI_CODE_OUT_OF_RANGE,
				     "volume %s is too small for xfs (%" PRIu64 " bytes, xfs needs 300 MiB)",
				     req->volume_id, dev.size);
			goto out;
		}
		r = state_intent_set(csi_driver_cfg(d)->state_dir, req->volume_id, "mkfs");
		if (r < 0) {
			r = csi_fail_errno(c, r, "cannot write the state of volume %s", req->volume_id);
			goto out;
		}
		r = fs_mkfs(dev.path, caps->fs_type, &err);
		if (r < 0) {
			r = csi_fail(c, CSI_CODE_INTERNAL, "mkfs.%s on %s failed: %s", caps->fs_type, dev.path,
				     err ? err : "unknown error");
			goto out;
		}
		r = state_intent_clear(csi_driver_cfg(d)->state_dir, req->volume_id, "mkfs");
		if (r < 0) {
			r = csi_fail_errno(c, r, "cannot update the state of volume %s", req->volume_id);
			goto out;
		}
	}
	r = fs_parse_mount_options(mv ? (const char *const *)mv->mount_flags : NULL, mv ? mv->n_mount_flags : 0,
				   &flags, &data);
	if (r < 0) {
		r = csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_capability.mount.mount_flags are not valid");
		goto out;
	}
	if (dax) {
		opts = *data ? xasprintf("%s,dax", data) : strdup("dax");
		if (!opts) {
			r = csi_oom(c);
			goto out;
		}
	}
	r = fs_mount(dev.path, req->staging_target_path, caps->fs_type, flags, dax ? opts : data);
	if (r < 0) {
		r = csi_fail_errno(c, r, "mount -t %s -o %s %s %s failed", caps->fs_type,
				   dax ? opts : (*data ? data : "defaults"), dev.path, req->staging_target_path);
		if (dax)
			c->code = CSI_CODE_FAILED_PRECONDITION;
		goto out;
	}
	if (strcmp(caps->fs_type, "xfs") == 0) {
		int q = fs_xfs_set_extsize(req->staging_target_path);
		if (q < 0)
			log_warning_errno(q, "Cannot set the 2 MiB extent size hint on %s: %m",
					  req->staging_target_path);
	}
	log_v(2, "Staged volume %s: %s (%s%s) on %s", req->volume_id, dev.path, caps->fs_type,
	      dax ? ", dax" : "", req->staging_target_path);
	r = 0;
out:
	fs_mount_info_done(&mi);
	pmem_device_done(&dev);
	volume_record_done(&rec);
	return r;
}

int csi_node_stage_volume(struct csi_call *c, void *ud, const ProtobufCMessage *msg, ProtobufCMessage **ret)
{
	const Csi__V1__NodeStageVolumeRequest *req = (const Csi__V1__NodeStageVolumeRequest *)msg;
	struct csi_driver *d = ud;
	struct csi_caps_summary caps = {};
	Csi__V1__NodeStageVolumeResponse *resp;
	int r;

	if (!req->volume_id || !*req->volume_id)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_id is missing");
	snprintf(c->volume, sizeof(c->volume), "%s", req->volume_id);
	if (!req->staging_target_path || !*req->staging_target_path)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "staging_target_path is missing");
	if (req->staging_target_path[0] != '/')
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "staging_target_path must be absolute");
	if (csi_check_capability(c, req->volume_capability, "volume_capability", &caps) < 0)
		return -1;
	if (csi_check_ready(c, d) < 0)
		return -1;
	resp = CSI_NEW(c, Csi__V1__NodeStageVolumeResponse, csi__v1__node_stage_volume_response__init);
	if (!resp)
		return csi_oom(c);
	r = csi_driver_lock(d, req->volume_id);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot lock volume %s", req->volume_id);
	r = stage_locked(c, d, req, &caps);
	csi_driver_unlock(d, req->volume_id);
	if (r < 0)
		return r;
	*ret = &resp->base;
	return 0;
}

/* Unmount everything stacked on path. */
static int umount_all(struct csi_call *c, const char *path, const char *what)
{
	for (int i = 0; i < 16; i++) {
		struct fs_mount_info mi = {};
		int r = fs_mount_info(path, &mi);

		fs_mount_info_done(&mi);
		if (r < 0)
			return csi_fail_errno(c, r, "cannot read the mount table");
		if (r == 0)
			return 0;
		r = fs_umount(path);
		if (r == -EBUSY)
			return csi_fail(c, CSI_CODE_FAILED_PRECONDITION, "%s %s is busy (still in use)", what, path);
		if (r < 0 && r != -EINVAL)
			return csi_fail_errno(c, r, "cannot unmount %s %s", what, path);
	}
	return csi_fail(c, CSI_CODE_INTERNAL, "%s %s is still mounted after 16 unmounts", what, path);
}

int csi_node_unstage_volume(struct csi_call *c, void *ud, const ProtobufCMessage *msg, ProtobufCMessage **ret)
{
	const Csi__V1__NodeUnstageVolumeRequest *req = (const Csi__V1__NodeUnstageVolumeRequest *)msg;
	struct csi_driver *d = ud;
	struct volume_record rec = {};
	struct fs_mount_info mi = {};
	Csi__V1__NodeUnstageVolumeResponse *resp;
	int r, mounted;

	if (!req->volume_id || !*req->volume_id)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_id is missing");
	snprintf(c->volume, sizeof(c->volume), "%s", req->volume_id);
	if (!req->staging_target_path || !*req->staging_target_path)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "staging_target_path is missing");
	if (csi_check_ready(c, d) < 0)
		return -1;
	resp = CSI_NEW(c, Csi__V1__NodeUnstageVolumeResponse, csi__v1__node_unstage_volume_response__init);
	if (!resp)
		return csi_oom(c);
	r = csi_driver_lock(d, req->volume_id);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot lock volume %s", req->volume_id);
	mounted = fs_mount_info(req->staging_target_path, &mi);
	fs_mount_info_done(&mi);
	if (mounted < 0) {
		r = csi_fail_errno(c, mounted, "cannot read the mount table");
		goto out;
	}
	if (mounted == 0 && csi_volume_lookup(d, req->volume_id, &rec) < 0) {
		/* Nothing staged there and no such volume: nothing to undo. Not
		 * NOT_FOUND: for a raw block volume (whose staging mounts nothing)
		 * kubelet may unstage after DeleteVolume, and would retry a
		 * NOT_FOUND for ever, keeping its volumeDevices directories. */
		log_v(2, "Volume %s is unknown and %s is not a mount point: nothing to unstage", req->volume_id,
		      req->staging_target_path);
		r = 0;
		goto out;
	}
	r = umount_all(c, req->staging_target_path, "staging path");
	if (r >= 0 && mounted > 0)
		log_v(2, "Unstaged volume %s from %s", req->volume_id, req->staging_target_path);
out:
	volume_record_done(&rec);
	csi_driver_unlock(d, req->volume_id);
	if (r < 0)
		return r;
	*ret = &resp->base;
	return 0;
}


/*
 * Kata Containers volumes. The volume's own filesystem (staged as usual, or
 * for an ephemeral volume mounted here directly) is made visible at
 * <stateDir>/mount/<volume_id> (the same place as intel/pmem-csi); the image
 * file inside it is attached to a loop device and that is what the pod's
 * target gets. Several targets of one volume share one loop device, so the
 * image's filesystem is only ever mounted through one block device.
 */
static char *kata_host_dir(struct csi_driver *d, const char *volume_id)
{
	if (!*volume_id || strchr(volume_id, '/') || streq_ptr(volume_id, ".") || streq_ptr(volume_id, "..") ||
	    strlen(volume_id) > 200)
		return NULL;
	return xasprintf("%s/mount/%s", csi_driver_cfg(d)->state_dir, volume_id);
}

/* Undo kata_publish's host side: loop devices over the image, the host mount. */
static int kata_release(struct csi_call *c, const char *host)
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
	r = umount_all(c, host, "Kata Containers host mount");
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

/*
 * Publish a Kata volume at target. src is the staging path of a persistent
 * volume (bind-mounted to the host directory) or, with ephemeral_dev set, the
 * device of an ephemeral volume (mounted there with dax).
 */
static int kata_publish(struct csi_call *c, struct csi_driver *d, const char *volume_id, const char *src,
			const char *ephemeral_dev, const char *fs, bool dax, unsigned long flags, bool ro,
			const char *target)
{
	_cleanup_free_ char *host = kata_host_dir(d, volume_id), *image = NULL, *err = NULL;
	struct fs_mount_info mi = {};
	char loop[32];
	bool host_new = false, with_dax = false;
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

	r = mkdir_p(host, 0750);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot create %s", host);
	r = fs_mount_info(host, &mi);
	fs_mount_info_done(&mi);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot read the mount table");
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
	r = mkdir_p(target, 0750);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot create target path %s", target);
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
	if (host_new) {
		struct csi_call scratch = *c;
		(void)kata_release(&scratch, host);
	}
	return r;
}

/* The staging path of a filesystem publish must hold the volume's device; *smi gets its mount. */
static int check_staged(struct csi_call *c, const Csi__V1__NodePublishVolumeRequest *req, const char *dev,
			struct fs_mount_info *smi)
{
	int r;

	if (!req->staging_target_path || !*req->staging_target_path)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "staging_target_path is missing");
	r = fs_mount_info(req->staging_target_path, smi);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot read the mount table");
	if (r == 0 || !same_device(smi, dev))
		return csi_fail(c, CSI_CODE_FAILED_PRECONDITION, "volume %s is not staged at %s", req->volume_id,
				req->staging_target_path);
	return 0;
}

static int publish_locked(struct csi_call *c, struct csi_driver *d, const Csi__V1__NodePublishVolumeRequest *req,
			  const struct csi_caps_summary *caps)
{
	struct volume_record rec = {};
	struct pmem_device dev = {};
	struct fs_mount_info mi = {}, smi = {};
	const Csi__V1__VolumeCapability__MountVolume *mv = mount_of(req->volume_capability);
	_cleanup_free_ char *data = NULL;
	unsigned long flags = 0;
	bool ro;
	int r;

	if (find_device(c, d, req->volume_id, &rec, &dev) < 0)
		return -1;
	r = fs_parse_mount_options(mv ? (const char *const *)mv->mount_flags : NULL, mv ? mv->n_mount_flags : 0,
				   &flags, &data);
	if (r < 0) {
		r = csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_capability.mount.mount_flags are not valid");
		goto out;
	}
	ro = req->readonly || (flags & MS_RDONLY);
	flags &= MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME;

	if (rec.params.kata) {
		if (caps->block) {
			r = csi_fail(c, CSI_CODE_INVALID_ARGUMENT,
				     "volume %s is a Kata Containers volume: it cannot be published as a block device",
				     req->volume_id);
			goto out;
		}
		r = check_staged(c, req, dev.path, &smi);
		if (r < 0)
			goto out;
		r = kata_publish(c, d, req->volume_id, req->staging_target_path, NULL, smi.fstype, false, flags, ro,
				 req->target_path);
		goto out;
	}

	r = fs_mount_info(req->target_path, &mi);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot read the mount table");
		goto out;
	}
	if (r > 0) {
		bool is_ro = fs_has_option(mi.options, "ro");
		/* A bound device node shows the devtmpfs it lives in, not the device. */
		bool ours = caps->block ? same_node(req->target_path, dev.path) : same_device(&mi, dev.path);
		if (!ours)
			r = csi_fail(c, CSI_CODE_ALREADY_EXISTS, "target path %s has another device mounted (%s)",
				     req->target_path, mi.source);
		else if (is_ro != ro)
			r = csi_fail(c, CSI_CODE_ALREADY_EXISTS, "volume %s is published at %s %s", req->volume_id,
				     req->target_path, is_ro ? "read-only" : "read-write");
		else
			r = 0;
		goto out;
	}

	if (caps->block) {
		_cleanup_free_ char *parent = strdup(req->target_path);
		char *slash = parent ? strrchr(parent, '/') : NULL;
		int fd;
		if (!parent) {
			r = csi_oom(c);
			goto out;
		}
		if (slash && slash != parent) {
			*slash = 0;
			(void)mkdir_p(parent, 0750);
		}
		fd = open(req->target_path, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0640);
		if (fd < 0) {
			r = csi_fail_errno(c, -errno, "cannot create target file %s", req->target_path);
			goto out;
		}
		close(fd);
		r = fs_bind_mount(dev.path, req->target_path, ro, 0);
		if (r < 0) {
			r = csi_fail_errno(c, r, "cannot bind-mount %s on %s", dev.path, req->target_path);
			goto out;
		}
		log_v(2, "Published block volume %s at %s", req->volume_id, req->target_path);
		r = 0;
		goto out;
	}

	r = check_staged(c, req, dev.path, &smi);
	if (r < 0)
		goto out;
	r = mkdir_p(req->target_path, 0750);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot create target path %s", req->target_path);
		goto out;
	}
	r = fs_bind_mount(req->staging_target_path, req->target_path, ro, flags);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot bind-mount %s on %s", req->staging_target_path, req->target_path);
		goto out;
	}
	log_v(2, "Published volume %s at %s%s", req->volume_id, req->target_path, ro ? " (read-only)" : "");
	r = 0;
out:
	fs_mount_info_done(&mi);
	fs_mount_info_done(&smi);
	pmem_device_done(&dev);
	volume_record_done(&rec);
	return r;
}

static bool is_ephemeral(const char *const *keys, const char *const *values, size_t n)
{
	bool b = false;

	for (size_t i = 0; i < n; i++)
		if (streq_ptr(keys[i], "csi.storage.k8s.io/ephemeral") && parse_bool(values[i], &b) >= 0)
			return b;
	return false;
}

/* Make the filesystem of an ephemeral volume unless it has it already. */
static int format_ephemeral(struct csi_call *c, const char *dev, const char *fs)
{
	_cleanup_free_ char *existing = NULL, *err = NULL;
	int r;

	r = fs_detect(dev, &existing);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot probe %s for a filesystem", dev);
	if (existing && strcmp(existing, fs) != 0)
		return csi_fail(c, CSI_CODE_ALREADY_EXISTS, "ephemeral volume already holds %s, not %s", existing, fs);
	if (!existing && fs_mkfs(dev, fs, &err) < 0)
		return csi_fail(c, CSI_CODE_INTERNAL, "mkfs.%s on %s failed: %s", fs, dev, err ? err : "unknown error");
	return 0;
}

/* Format (if new) and mount an ephemeral volume's device directly on the target. */
static int mount_ephemeral(struct csi_call *c, const char *dev, uint64_t size, const char *fs, bool dax, bool ro,
			   const char *target)
{
	int r;

	r = format_ephemeral(c, dev, fs);
	if (r < 0)
		return r;
	r = mkdir_p(target, 0750);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot create target path %s", target);
	r = fs_mount(dev, target, fs, ro ? MS_RDONLY : 0, dax ? "dax" : NULL);
	if (r < 0)
		return csi_fail_errno(c, r, "mount -t %s%s %s %s failed", fs, dax ? " -o dax" : "", dev, target);
	if (strcmp(fs, "xfs") == 0 && fs_xfs_set_extsize(target) < 0)
		log_warning("Cannot set the 2 MiB extent size hint on %s", target);
	(void)size;
	return 0;
}

/*
 * CSI inline ephemeral volume: created, formatted and mounted by
 * NodePublishVolume from the pod's volume attributes, deleted by
 * NodeUnpublishVolume. Its name is kubelet's volume ID (csi-<hash>).
 */
static int publish_ephemeral(struct csi_call *c, struct csi_driver *d, const Csi__V1__NodePublishVolumeRequest *req,
			     const struct csi_caps_summary *caps, const struct volume_params *params)
{
	char id[VOLUME_ID_MAX];
	struct volume_record rec = {};
	struct pmem_device dev = {};
	struct fs_mount_info mi = {};
	const char *fs = params->fs_type && *params->fs_type ? params->fs_type : caps->fs_type;
	bool ro = req->readonly, created = false;
	uint64_t alloc;
	int r;

	if (caps->block)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "ephemeral volumes must be mount volumes, not block");
	if (!params->has_size || params->size == 0)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT,
				"volume attribute \"size\" is required for ephemeral volumes (a quantity like 1Gi)");
	if (!fs)
		fs = "ext4";
	if (volume_id_from_name(req->volume_id, id) < 0)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_id \"%s\" cannot name a volume", req->volume_id);
	alloc = params->size;
	if (strcmp(fs, "xfs") == 0 && alloc < FS_XFS_MIN_SIZE)
		alloc = FS_XFS_MIN_SIZE;
	alloc = round_up_u64(alloc, 4 * MiB);
	if (alloc == 0)
		return csi_fail(c, CSI_CODE_OUT_OF_RANGE, "volume attribute \"size\" is too large");

	r = csi_driver_lock(d, id);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot lock volume %s", id);
	r = csi_volume_create_locked(c, d, req->volume_id, id, params->size, 0, alloc, params, &rec);
	if (r < 0)
		goto out;
	created = true;
	r = pmem_get(csi_driver_pm(d), id, &dev);
	if (r < 0) {
		r = csi_fail_errno(c, r, "the device of ephemeral volume %s is missing", id);
		goto out;
	}
	if (params->kata) {
		r = format_ephemeral(c, dev.path, fs);
		if (r >= 0)
			r = kata_publish(c, d, req->volume_id, NULL, dev.path, fs,
					 params->usage == VOLUME_USAGE_APP_DIRECT, 0, ro, req->target_path);
		if (r >= 0)
			created = false;
		goto out;
	}
	r = fs_mount_info(req->target_path, &mi);
	if (r > 0) {
		r = same_device(&mi, dev.path) ? 0
					       : csi_fail(c, CSI_CODE_ALREADY_EXISTS, "target path %s has another device mounted",
							  req->target_path);
		created = false; /* published before: keep it */
		goto out;
	}
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot read the mount table");
		goto out;
	}
	r = mount_ephemeral(c, dev.path, dev.size, fs, params->usage == VOLUME_USAGE_APP_DIRECT, ro, req->target_path);
	if (r >= 0) {
		log_v(2, "Published ephemeral volume %s (%s) at %s", id, fs, req->target_path);
		created = false;
	}
out:
	if (r < 0 && created) {
		/* Nothing is left behind by a failed ephemeral publish: kubelet retries from scratch. */
		struct csi_call scratch = *c;
		(void)rmdir(req->target_path);
		(void)csi_volume_delete_locked(&scratch, d, id);
	}
	fs_mount_info_done(&mi);
	pmem_device_done(&dev);
	volume_record_done(&rec);
	csi_driver_unlock(d, id);
	return r;
}

int csi_node_publish_volume(struct csi_call *c, void *ud, const ProtobufCMessage *msg, ProtobufCMessage **ret)
{
	const Csi__V1__NodePublishVolumeRequest *req = (const Csi__V1__NodePublishVolumeRequest *)msg;
	struct csi_driver *d = ud;
	struct csi_caps_summary caps = {};
	struct volume_params params;
	const char *keys[MAX_CONTEXT], *values[MAX_CONTEXT];
	_cleanup_free_ char *err = NULL;
	Csi__V1__NodePublishVolumeResponse *resp;
	bool ephemeral;
	int r;

	if (!req->volume_id || !*req->volume_id)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_id is missing");
	snprintf(c->volume, sizeof(c->volume), "%s", req->volume_id);
	if (!req->target_path || !*req->target_path)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "target_path is missing");
	if (req->target_path[0] != '/')
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "target_path must be absolute");
	if (csi_check_capability(c, req->volume_capability, "volume_capability", &caps) < 0)
		return -1;
	if (req->n_volume_context > MAX_CONTEXT)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_context has too many entries");
	for (size_t i = 0; i < req->n_volume_context; i++) {
		keys[i] = req->volume_context[i]->key;
		values[i] = req->volume_context[i]->value;
	}
	volume_params_init(&params);
	ephemeral = is_ephemeral(keys, values, req->n_volume_context);
	r = volume_params_parse(&params, ephemeral ? PARAMS_ORIGIN_EPHEMERAL : PARAMS_ORIGIN_PUBLISH_CONTEXT, keys,
				values, req->n_volume_context, &err);
	if (r < 0) {
		volume_params_done(&params);
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_context: %s", err ? err : "invalid");
	}
	if (csi_check_ready(c, d) < 0) {
		volume_params_done(&params);
		return -1;
	}
	if (ephemeral) {
		resp = CSI_NEW(c, Csi__V1__NodePublishVolumeResponse, csi__v1__node_publish_volume_response__init);
		r = resp ? publish_ephemeral(c, d, req, &caps, &params) : csi_oom(c);
		volume_params_done(&params);
		if (r < 0)
			return r;
		*ret = &resp->base;
		return 0;
	}
	volume_params_done(&params);
	resp = CSI_NEW(c, Csi__V1__NodePublishVolumeResponse, csi__v1__node_publish_volume_response__init);
	if (!resp)
		return csi_oom(c);
	r = csi_driver_lock(d, req->volume_id);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot lock volume %s", req->volume_id);
	r = publish_locked(c, d, req, &caps);
	csi_driver_unlock(d, req->volume_id);
	if (r < 0)
		return r;
	*ret = &resp->base;
	return 0;
}

/* An ephemeral volume ends with its last unpublish. */
static int delete_if_ephemeral(struct csi_call *c, struct csi_driver *d, const char *volume_id)
{
	char id[VOLUME_ID_MAX];
	struct volume_record rec = {};
	int r = 0;

	if (volume_id_from_name(volume_id, id) < 0)
		return 0;
	if (csi_driver_lock(d, id) < 0)
		return csi_fail(c, CSI_CODE_RESOURCE_EXHAUSTED, "out of memory");
	if (csi_volume_lookup(d, id, &rec) >= 0 && rec.params.ephemeral && streq_ptr(rec.params.name, volume_id))
		r = csi_volume_delete_locked(c, d, id);
	volume_record_done(&rec);
	csi_driver_unlock(d, id);
	return r;
}

int csi_node_unpublish_volume(struct csi_call *c, void *ud, const ProtobufCMessage *msg, ProtobufCMessage **ret)
{
	const Csi__V1__NodeUnpublishVolumeRequest *req = (const Csi__V1__NodeUnpublishVolumeRequest *)msg;
	struct csi_driver *d = ud;
	Csi__V1__NodeUnpublishVolumeResponse *resp;
	struct stat st;
	int r;

	if (!req->volume_id || !*req->volume_id)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_id is missing");
	snprintf(c->volume, sizeof(c->volume), "%s", req->volume_id);
	if (!req->target_path || !*req->target_path)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "target_path is missing");
	if (csi_check_ready(c, d) < 0)
		return -1;
	resp = CSI_NEW(c, Csi__V1__NodeUnpublishVolumeResponse, csi__v1__node_unpublish_volume_response__init);
	if (!resp)
		return csi_oom(c);
	r = csi_driver_lock(d, req->volume_id);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot lock volume %s", req->volume_id);
	r = umount_all(c, req->target_path, "target path");
	if (r >= 0 && lstat(req->target_path, &st) == 0) {
		/* The spec asks the plugin to remove what it created at the target. */
		if ((S_ISDIR(st.st_mode) ? rmdir(req->target_path) : unlink(req->target_path)) < 0 &&
		    errno != ENOENT)
			r = csi_fail_errno(c, -errno, "cannot remove target path %s", req->target_path);
	}
	if (r >= 0) {
		/* A Kata Containers volume also has its host side to release. */
		_cleanup_free_ char *host = kata_host_dir(d, req->volume_id);
		if (host)
			r = kata_release(c, host);
	}
	csi_driver_unlock(d, req->volume_id);
	if (r < 0)
		return r;
	log_v(2, "Unpublished volume %s from %s", req->volume_id, req->target_path);
	r = delete_if_ephemeral(c, d, req->volume_id);
	if (r < 0)
		return r;
	*ret = &resp->base;
	return 0;
}

int csi_node_get_info(struct csi_call *c, void *ud, const ProtobufCMessage *msg _unused_, ProtobufCMessage **ret)
{
	struct csi_driver *d = ud;
	Csi__V1__NodeGetInfoResponse *resp =
		CSI_NEW(c, Csi__V1__NodeGetInfoResponse, csi__v1__node_get_info_response__init);

	if (!resp || !(resp->accessible_topology = csi_topology(c, d)))
		return csi_oom(c);
	resp->node_id = (char *)csi_driver_cfg(d)->node_id;
	*ret = &resp->base;
	return 0;
}

int csi_node_get_capabilities(struct csi_call *c, void *ud _unused_, const ProtobufCMessage *msg _unused_,
			      ProtobufCMessage **ret)
{
	Csi__V1__NodeGetCapabilitiesResponse *resp =
		CSI_NEW(c, Csi__V1__NodeGetCapabilitiesResponse, csi__v1__node_get_capabilities_response__init);
	Csi__V1__NodeServiceCapability **caps = CSI_NEW_ARRAY(c, Csi__V1__NodeServiceCapability *, 1);
	Csi__V1__NodeServiceCapability *cap =
		CSI_NEW(c, Csi__V1__NodeServiceCapability, csi__v1__node_service_capability__init);
	Csi__V1__NodeServiceCapability__RPC *rpc =
		CSI_NEW(c, Csi__V1__NodeServiceCapability__RPC, csi__v1__node_service_capability__rpc__init);

	if (!resp || !caps || !cap || !rpc)
		return csi_oom(c);
	rpc->type = CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__STAGE_UNSTAGE_VOLUME;
	cap->type_case = CSI__V1__NODE_SERVICE_CAPABILITY__TYPE_RPC;
	cap->rpc = rpc;
	caps[0] = cap;
	resp->n_capabilities = 1;
	resp->capabilities = caps;
	*ret = &resp->base;
	return 0;
}
