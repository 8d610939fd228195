/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NodeExpandVolume: after ControllerExpandVolume has grown the LV, grow the
 * filesystem on it while it stays mounted (and in use by the pod): ext4 with
 * resize2fs, xfs with xfs_growfs, both online. A DAX mount stays DAX (resize
 * changes no mount option; the call checks it anyway). A raw block volume
 * needs no node step: ControllerExpandVolume tells the CO so, and a call
 * here for one only reports the device's size.
 *
 * What is grown must provably be the volume's: the mount at volume_path must
 * be of the volume's device (node_mount_is_ours()); anything else there is
 * left alone and named in the error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "node_internal.h"

struct node_expand {
	const Csi__V1__NodeExpandVolumeRequest *req;
	const char *path;    /* volume_path, resolved */
	const char *staging; /* staging_target_path, resolved, or NULL */
	bool block;          /* the capability says block */
	uint64_t required;
	Csi__V1__NodeExpandVolumeResponse *resp;
};

/* The kernel's size of a block device (the device manager's can be rounded). */
static uint64_t device_size(const char *path, uint64_t fallback)
{
	uint64_t b;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return fallback;
	if (ioctl(fd, BLKGETSIZE64, &b) < 0)
		b = fallback;
	close(fd);
	return b;
}

static bool mount_has_dax(const struct fs_mount_info *mi)
{
	/* "dax=always" (ext4 and xfs since 5.8) or plain "dax" (older kernels). */
	return fs_has_option(mi->super_options, "dax=always") || fs_has_option(mi->super_options, "dax") ||
	       fs_has_option(mi->options, "dax");
}

static int expand_locked(struct csi_call *c, struct csi_driver *d, const char *id, void *ud)
{
	struct node_expand *e = ud;
	struct volume_record rec = {};
	struct pmem_device dev = {};
	struct fs_mount_info mi = {}, after = {};
	_cleanup_free_ char *err = NULL;
	const char *where;
	struct stat st;
	uint64_t size;
	bool dax;
	int r;

	if (csi_volume_lookup(d, id, &rec) < 0)
		return csi_fail(c, CSI_CODE_NOT_FOUND, "volume %s not found", id);
	r = pmem_get(csi_driver_pm(d), id, &dev);
	if (r < 0) {
		r = csi_fail_errno(c, r, "the device of volume %s is missing", id);
		goto out;
	}
	if (stat(e->path, &st) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			r = csi_fail(c, CSI_CODE_NOT_FOUND, "volume_path %s does not exist", e->path);
		else
			r = csi_fail_errno(c, -errno, "cannot inspect volume_path %s", e->path);
		goto out;
	}
	size = device_size(dev.path, dev.size);
	if (e->required && size < e->required) {
		r = csi_fail(c, CSI_CODE_FAILED_PRECONDITION,
			     "the device of volume %s has %" PRIu64 " bytes, less than capacity_range.required_bytes %" PRIu64
			     ": ControllerExpandVolume must grow it first",
			     id, size, e->required);
		goto out;
	}
	if (e->block || S_ISBLK(st.st_mode)) {
		/* Raw block: the device node published there has its new size already. */
		struct stat sd;
		if (!S_ISBLK(st.st_mode) || stat(dev.path, &sd) < 0 || sd.st_rdev != st.st_rdev) {
			r = csi_fail(c, CSI_CODE_FAILED_PRECONDITION, "volume_path %s is not the block device of volume %s (%s)",
				     e->path, id, dev.path);
			goto out;
		}
		e->resp->capacity_bytes = (int64_t)size;
		r = 0;
		goto out;
	}
	if (rec.params.kata) {
		r = csi_fail(c, CSI_CODE_FAILED_PRECONDITION,
			     "volume %s is a Kata Containers volume (kataContainers=true): it cannot be expanded", id);
		goto out;
	}
	/* The staging mount when the CO names it (the filesystem's own mount),
	 * else volume_path (a bind mount of it): either must be the volume's. */
	where = e->staging ? e->staging : e->path;
	r = fs_mount_info(where, &mi);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot read the mount table");
		goto out;
	}
	if (r == 0) {
		r = csi_fail(c, e->staging ? CSI_CODE_FAILED_PRECONDITION : CSI_CODE_NOT_FOUND,
			     "volume %s is not mounted at %s", id, where);
		goto out;
	}
	if (!node_same_device(&mi, dev.path)) {
		r = csi_fail(c, CSI_CODE_FAILED_PRECONDITION, "%s has %s (%s) mounted, not volume %s", where,
			     mi.fstype, mi.source, id);
		goto out;
	}
	if (!streq_ptr(mi.fstype, "ext4") && !streq_ptr(mi.fstype, "xfs")) {
		r = csi_fail(c, CSI_CODE_FAILED_PRECONDITION, "volume %s has a %s filesystem, which cannot be grown",
			     id, mi.fstype);
		goto out;
	}
	if (fs_has_option(mi.super_options, "ro")) {
		r = csi_fail(c, CSI_CODE_FAILED_PRECONDITION,
			     "the filesystem of volume %s is read-only at %s: it cannot be grown", id, where);
		goto out;
	}
	dax = mount_has_dax(&mi);
	r = fs_grow(dev.path, where, mi.fstype, &err);
	if (r < 0) {
		r = csi_fail(c, CSI_CODE_INTERNAL, "growing the %s filesystem of volume %s failed: %s", mi.fstype, id,
			     err ? err : strerror(-r));
		goto out;
	}
	/* Growing must not have turned DAX off: a pod relying on it would silently go through the page cache. */
	if (dax && (fs_mount_info(where, &after) <= 0 || !mount_has_dax(&after))) {
		r = csi_fail(c, CSI_CODE_INTERNAL, "volume %s is no longer mounted with dax at %s after growing it",
			     id, where);
		goto out;
	}
	log_v(2, "Grew the %s filesystem of volume %s at %s to %" PRIu64 " bytes%s", mi.fstype, id, where, size,
	      dax ? " (dax)" : "");
	e->resp->capacity_bytes = (int64_t)size;
	r = 0;
out:
	fs_mount_info_done(&mi);
	fs_mount_info_done(&after);
	pmem_device_done(&dev);
	volume_record_done(&rec);
	return r;
}

int csi_node_expand_volume(struct csi_call *c, void *ud, const ProtobufCMessage *msg, ProtobufCMessage **ret)
{
	const Csi__V1__NodeExpandVolumeRequest *req = (const Csi__V1__NodeExpandVolumeRequest *)msg;
	struct csi_driver *d = ud;
	_cleanup_free_ char *path = NULL, *staging = NULL;
	struct node_expand e = { .req = req };
	const Csi__V1__CapacityRange *cr = req->capacity_range;

	if (!req->volume_id || !*req->volume_id)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_id is missing");
	snprintf(c->volume, sizeof(c->volume), "%s", req->volume_id);
	if (!req->volume_path || !*req->volume_path)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_path is missing");
	/* As in NodeGetVolumeStats: a relative volume_path cannot name a mount of
	 * ours, the volume is not there (csi-sanity sends "some/path" and wants
	 * NOT_FOUND); other malformed paths are INVALID_ARGUMENT. */
	if (req->volume_path[0] != '/')
		return csi_fail(c, CSI_CODE_NOT_FOUND,
				"volume_path \"%.256s\" is not an absolute path: volume %s is not there",
				req->volume_path, req->volume_id);
	if (node_path_get(c, "volume_path", req->volume_path, &path) < 0)
		return -1;
	/* Optional; checked when given. */
	if (req->staging_target_path && *req->staging_target_path &&
	    node_path_get(c, "staging_target_path", req->staging_target_path, &staging) < 0)
		return -1;
	if (cr) {
		if (cr->required_bytes < 0 || cr->limit_bytes < 0)
			return csi_fail(c, CSI_CODE_INVALID_ARGUMENT,
					"capacity_range: required_bytes and limit_bytes must not be negative");
		if (cr->limit_bytes && cr->required_bytes > cr->limit_bytes)
			return csi_fail(c, CSI_CODE_INVALID_ARGUMENT,
					"capacity_range.required_bytes %" PRId64 " exceeds limit_bytes %" PRId64,
					cr->required_bytes, cr->limit_bytes);
		e.required = (uint64_t)cr->required_bytes;
	}
	if (req->volume_capability) {
		struct csi_caps_summary sum = {};
		if (csi_check_capability(c, req->volume_capability, "volume_capability", &sum) < 0)
			return -1;
		e.block = sum.block;
	}
	if (!csi_expansion_supported(d))
		return csi_fail(c, CSI_CODE_UNIMPLEMENTED,
				"volume expansion is not supported in %s mode: a PMEM namespace cannot grow in place",
				csi_driver_cfg(d)->device_mode ? csi_driver_cfg(d)->device_mode : "direct");
	if (!volume_id_is_valid(req->volume_id)) {
		if (csi_check_ready(c, d) < 0)
			return -1;
		return csi_fail(c, CSI_CODE_NOT_FOUND, "volume %s not found", req->volume_id);
	}
	e.resp = CSI_NEW(c, Csi__V1__NodeExpandVolumeResponse, csi__v1__node_expand_volume_response__init);
	if (!e.resp)
		return csi_oom(c);
	e.path = path;
	e.staging = staging;
	if (csi_volume_call(c, d, req->volume_id, expand_locked, &e) < 0)
		return -1;
	*ret = &e.resp->base;
	return 0;
}
