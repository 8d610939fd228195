/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NodeGetVolumeStats: what kubelet turns into kubelet_volume_stats_* metrics
 * and, with VOLUME_CONDITION, into a pod event when a volume is unwell.
 *
 * kubelet calls this every minute or so for every published volume, so it
 * must be cheap: one pmem_get() (in-memory tables), a stat(), one read of
 * /proc/self/mountinfo and a statvfs(); no external tools, no device scans.
 *
 * A path that exists but is not a mount of the volume, a device that is gone
 * and a filesystem the kernel made read-only after an error are not call
 * failures: the call succeeds with volume_condition.abnormal and a message,
 * which is what kubelet reports to the user. Usage is only reported for what
 * is provably the volume's (never the statvfs of whatever else is at the
 * path, such as the node's root filesystem under an unmounted directory).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "fs/kata.h"
#include "node_internal.h"

struct stats {
	const char *name; /* the request's volume_id (kubelet's name of an ephemeral volume) */
	const char *path; /* volume_path, resolved */
	Csi__V1__NodeGetVolumeStatsResponse *resp;
	bool abnormal;
	char message[512];
	/* usage, when it is the volume's */
	bool have_bytes, have_inodes;
	uint64_t total, available, used;
	uint64_t inodes, inodes_free, inodes_used;
};

static void abnormal(struct stats *s, const char *fmt, ...) _printf_(2, 3);
static void abnormal(struct stats *s, const char *fmt, ...)
{
	va_list ap;

	/* The first problem found is the one reported: later ones follow from it. */
	if (s->abnormal)
		return;
	s->abnormal = true;
	va_start(ap, fmt);
	vsnprintf(s->message, sizeof(s->message), fmt, ap);
	va_end(ap);
}

/* A block device node at the path: the raw block volume bound there by publish. */
static int block_stats(struct stats *s, const struct stat *st, const struct pmem_device *dev,
		       bool have_dev)
{
	struct stat sd;
	uint64_t size = 0;
	int fd;

	if (!have_dev)
		return 0; /* abnormal already: the device is gone */
	if (stat(dev->path, &sd) < 0)
		return 0; /* checked just before: gone since */
	if (sd.st_rdev != st->st_rdev) {
		abnormal(s, "volume_path %s is block device %u:%u, not volume %s (%s, %u:%u)", s->path,
			 major(st->st_rdev), minor(st->st_rdev), s->name, dev->path, major(sd.st_rdev),
			 minor(sd.st_rdev));
		return 0;
	}
	size = dev->size;
	/* The kernel's size is the truth (the device manager's may be rounded). */
	fd = open(s->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0) {
		uint64_t b;
		if (ioctl(fd, BLKGETSIZE64, &b) == 0)
			size = b;
		close(fd);
	}
	s->have_bytes = true;
	s->total = size;
	return 0;
}

/*
 * The errors ext4 has recorded in its superblock (s_error_count, cleared by
 * fsck): -ENOENT when the kernel has no such file for the device. Since
 * kernel 6.12 (and in the stable kernels it went to, e.g. Debian's 6.1.0-5x)
 * an ext4 error with errors=remount-ro no longer sets the superblock
 * read-only: the filesystem refuses writes but /proc/self/mountinfo still
 * says "rw", so this counter is what shows the error.
 */
static int ext4_error_count(unsigned maj, unsigned min, uint64_t *ret)
{
	_cleanup_free_ char *link = NULL, *file = NULL, *buf = NULL;
	char target[256];
	const char *name;
	ssize_t n;
	int r;

	link = xasprintf("/sys/dev/block/%u:%u", maj, min);
	if (!link)
		return -ENOMEM;
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return -errno;
	target[n] = 0;
	name = strrchr(target, '/');
	name = name ? name + 1 : target;
	file = xasprintf("/sys/fs/ext4/%s/errors_count", name);
	if (!file)
		return -ENOMEM;
	r = read_file_limited(file, 64, &buf, NULL);
	if (r < 0)
		return r;
	buf[strcspn(buf, "\n")] = 0;
	return safe_atou64(buf, ret);
}

static int fs_stats(struct csi_call *c, struct csi_driver *d, struct stats *s, const struct pmem_device *dev,
		    bool have_dev)
{
	_cleanup_free_ char *host = node_kata_host_dir(d, s->name), *image = NULL;
	struct node_owner owner = { .volume_id = s->name, .dev = have_dev ? dev->path : NULL };
	struct fs_mount_info mi = {};
	struct statvfs sv;
	int r;

	if (host) {
		image = xasprintf("%s/%s", host, KATA_IMAGE_NAME);
		if (!image)
			return csi_oom(c);
		owner.kata_image = image;
	}
	r = fs_mount_info(s->path, &mi);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot read the mount table");
	if (r == 0) {
		abnormal(s, "volume %s is not mounted at %s (the staging or publish mount is missing)", s->name,
			 s->path);
		return 0;
	}
	if (!have_dev) {
		/* Abnormal already; what is mounted cannot be proven to be the volume. */
		r = 0;
		goto out;
	}
	if (!node_mount_is_ours(&owner, s->path, &mi)) {
		abnormal(s, "volume_path %s has %s (%s, device %u:%u) mounted, not volume %s", s->path, mi.fstype,
			 mi.source, mi.major, mi.minor, s->name);
		r = 0;
		goto out;
	}
	/*
	 * After an error with errors=remount-ro (ext4) the kernel makes the
	 * superblock read-only; the mounts keep their own "rw". A volume the CO
	 * mounted read-only has "ro" in both. So rw over ro is the error case.
	 */
	if (fs_has_option(mi.options, "rw") && fs_has_option(mi.super_options, "ro"))
		abnormal(s, "the %s filesystem of volume %s is read-only although mounted read-write at %s: "
			    "the kernel remounted it after an error (see the kernel log)",
			 mi.fstype, s->name, s->path);
	if (streq_ptr(mi.fstype, "ext4")) {
		uint64_t errors = 0;
		if (ext4_error_count(mi.major, mi.minor, &errors) >= 0 && errors > 0)
			abnormal(s, "the ext4 filesystem of volume %s has recorded %" PRIu64
				    " error(s) (see the kernel log): with errors=remount-ro it is read-only now; "
				    "unmount it and run fsck",
				 s->name, errors);
	}
	if (statvfs(s->path, &sv) < 0) {
		r = -errno;
		if (r == -EIO || r == -EUCLEAN || r == -ENOTCONN) {
			abnormal(s, "the %s filesystem of volume %s at %s fails: statvfs: %s", mi.fstype, s->name,
				 s->path, strerror(-r));
			r = 0;
		} else
			r = csi_fail_errno(c, r, "statvfs %s failed", s->path);
		goto out;
	}
	s->have_bytes = s->have_inodes = true;
	s->total = (uint64_t)sv.f_blocks * sv.f_frsize;
	s->available = (uint64_t)sv.f_bavail * sv.f_frsize;
	s->used = (uint64_t)(sv.f_blocks - sv.f_bfree) * sv.f_frsize;
	s->inodes = sv.f_files;
	s->inodes_free = sv.f_ffree;
	s->inodes_used = sv.f_files - sv.f_ffree;
	r = 0;
out:
	fs_mount_info_done(&mi);
	return r;
}

static Csi__V1__VolumeUsage *usage(struct csi_call *c, Csi__V1__VolumeUsage__Unit unit, uint64_t total,
				   uint64_t available, uint64_t used)
{
	Csi__V1__VolumeUsage *u = CSI_NEW(c, Csi__V1__VolumeUsage, csi__v1__volume_usage__init);

	if (!u)
		return NULL;
	/* int64 on the wire; nothing real comes near INT64_MAX. */
	u->unit = unit;
	u->total = (int64_t)MIN(total, (uint64_t)INT64_MAX);
	u->available = (int64_t)MIN(available, (uint64_t)INT64_MAX);
	u->used = (int64_t)MIN(used, (uint64_t)INT64_MAX);
	return u;
}

static int stats_locked(struct csi_call *c, struct csi_driver *d, const char *id, void *ud)
{
	struct stats *s = ud;
	Csi__V1__NodeGetVolumeStatsResponse *resp = s->resp;
	Csi__V1__VolumeCondition *cond;
	struct volume_record rec = {};
	struct pmem_device dev = {};
	bool have_dev = false;
	struct stat st, sd = {};
	size_t n = 0;
	int r;

	if (csi_volume_lookup(d, id, &rec) < 0)
		return csi_fail(c, CSI_CODE_NOT_FOUND, "volume %s not found", s->name);
	volume_record_done(&rec);
	if (stat(s->path, &st) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return csi_fail(c, CSI_CODE_NOT_FOUND, "volume_path %s does not exist", s->path);
		return csi_fail_errno(c, -errno, "cannot inspect volume_path %s", s->path);
	}
	/* The device manager's tables can be older than the device: an LV or a
	 * namespace removed behind the driver's back is still listed there. */
	r = pmem_get(csi_driver_pm(d), id, &dev);
	if (r < 0)
		abnormal(s, "the device of volume %s is missing: %s", s->name, strerror(-r));
	else if (stat(dev.path, &sd) < 0)
		abnormal(s, "the device %s of volume %s is missing: %m", dev.path, s->name);
	else if (!S_ISBLK(sd.st_mode))
		abnormal(s, "the device %s of volume %s is missing: not a block device", dev.path, s->name);
	else
		have_dev = true;

	if (S_ISBLK(st.st_mode))
		r = block_stats(s, &st, &dev, have_dev);
	else if (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode))
		r = fs_stats(c, d, s, &dev, have_dev);
	else {
		abnormal(s, "volume_path %s is neither a directory nor a block device: volume %s is not there",
			 s->path, s->name);
		r = 0;
	}
	pmem_device_done(&dev);
	if (r < 0)
		return r;

	resp->usage = CSI_NEW_ARRAY(c, Csi__V1__VolumeUsage *, 2);
	cond = CSI_NEW(c, Csi__V1__VolumeCondition, csi__v1__volume_condition__init);
	if (!resp->usage || !cond)
		return csi_oom(c);
	if (s->have_bytes &&
	    !(resp->usage[n++] = usage(c, CSI__V1__VOLUME_USAGE__UNIT__BYTES, s->total, s->available, s->used)))
		return csi_oom(c);
	if (s->have_inodes && !(resp->usage[n++] = usage(c, CSI__V1__VOLUME_USAGE__UNIT__INODES, s->inodes,
							 s->inodes_free, s->inodes_used)))
		return csi_oom(c);
	resp->n_usage = n;
	cond->abnormal = s->abnormal;
	cond->message = arena_strdup(c->arena, s->abnormal ? s->message : "volume is healthy");
	if (!cond->message)
		return csi_oom(c);
	resp->volume_condition = cond;
	if (s->abnormal)
		log_v(2, "Volume %s at %s is abnormal: %s", s->name, s->path, s->message);
	return 0;
}

int csi_node_get_volume_stats(struct csi_call *c, void *ud, const ProtobufCMessage *msg, ProtobufCMessage **ret)
{
	const Csi__V1__NodeGetVolumeStatsRequest *req = (const Csi__V1__NodeGetVolumeStatsRequest *)msg;
	struct csi_driver *d = ud;
	_cleanup_free_ char *path = NULL, *staging = NULL;
	struct stats s = { .name = req->volume_id };
	char eid[VOLUME_ID_MAX];
	const char *id;

	if (!req->volume_id || !*req->volume_id)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_id is missing");
	snprintf(c->volume, sizeof(c->volume), "%s", req->volume_id);
	if (!req->volume_path || !*req->volume_path)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_path is missing");
	/*
	 * A relative volume_path cannot name any mount of ours: the CSI spec
	 * (and csi-sanity, which sends "some/path" for a known volume) call that
	 * NOT_FOUND, the volume does not exist at that path. Every other
	 * malformed path is INVALID_ARGUMENT, as in the other Node calls.
	 */
	if (req->volume_path[0] != '/')
		return csi_fail(c, CSI_CODE_NOT_FOUND,
				"volume_path \"%.256s\" is not an absolute path: volume %s is not there",
				req->volume_path, req->volume_id);
	if (node_path_get(c, "volume_path", req->volume_path, &path) < 0)
		return -1;
	/* Optional; checked when given (nothing needs it: volume_path says it all). */
	if (req->staging_target_path && *req->staging_target_path &&
	    node_path_get(c, "staging_target_path", req->staging_target_path, &staging) < 0)
		return -1;
	s.resp = CSI_NEW(c, Csi__V1__NodeGetVolumeStatsResponse, csi__v1__node_get_volume_stats_response__init);
	if (!s.resp)
		return csi_oom(c);
	s.path = path;
	/* kubelet names an inline ephemeral volume by its own name, as in publish. */
	id = csi_driver_ready(d) && node_ephemeral_id(d, req->volume_id, eid) ? eid : req->volume_id;
	if (csi_volume_call(c, d, id, stats_locked, &s) < 0)
		return -1;
	*ret = &s.resp->base;
	return 0;
}
