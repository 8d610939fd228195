/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CSI inline ephemeral volumes: created, formatted and mounted by
 * NodePublishVolume from the pod's volume attributes, deleted by
 * NodeUnpublishVolume. Their name is kubelet's volume ID (csi-<hash>); the
 * driver's volume ID is derived from it as for any other name.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "node_internal.h"

bool node_context_is_ephemeral(const char *const *keys, const char *const *values, size_t n)
{
	bool b = false;

	for (size_t i = 0; i < n; i++)
		if (streq_ptr(keys[i], "csi.storage.k8s.io/ephemeral") && parse_bool(values[i], &b) >= 0)
			return b;
	return false;
}

struct find_ephemeral {
	const char *name;
	char *ret;
};

static int find_ephemeral_by_name(const struct volume_record *rec, void *ud)
{
	struct find_ephemeral *f = ud;

	if (!rec->params.ephemeral || !streq_ptr(rec->params.name, f->name))
		return 0;
	memcpy(f->ret, rec->id, strlen(rec->id) + 1);
	return -EEXIST; /* found: stop */
}

bool node_ephemeral_id(struct csi_driver *d, const char *name, char ret[VOLUME_ID_MAX])
{
	struct volume_record rec = {};
	struct find_ephemeral f = { .name = name, .ret = ret };
	bool ephemeral = false;

	if (volume_id_from_name(name, ret) < 0)
		return false;
	if (csi_volume_lookup(d, ret, &rec) >= 0) {
		ephemeral = rec.params.ephemeral && streq_ptr(rec.params.name, name);
		volume_record_done(&rec);
	}
	if (ephemeral)
		return true;
	/* A volume addressed by its own ID (every persistent volume, on every
	 * NodeGetVolumeStats and unpublish) is not looked for by name below. */
	{
		struct volume_record own = {};

		if (csi_volume_lookup(d, name, &own) >= 0) {
			volume_record_done(&own);
			return false;
		}
	}
	/* intel/pmem-csi 0.6 named the inline volume by the SHA-1 of kubelet's
	 * volume ID, so after an upgrade its record is found by the name in it. */
	return csi_volume_foreach(d, find_ephemeral_by_name, &f) == -EEXIST;
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
static int mount_ephemeral(struct csi_call *c, const char *dev, const char *fs, bool dax, bool ro,
			   const char *target)
{
	bool target_new;
	int r;

	r = format_ephemeral(c, dev, fs);
	if (r < 0)
		return r;
	r = node_prepare_target(c, target, true, &target_new);
	if (r < 0)
		return r;
	r = fs_mount(dev, target, fs, ro ? MS_RDONLY : 0, dax ? "dax" : NULL);
	if (r < 0) {
		if (target_new)
			(void)rmdir(target);
		return csi_fail_errno(c, r, "mount -t %s%s %s %s failed", fs, dax ? " -o dax" : "", dev, target);
	}
	if (strcmp(fs, "xfs") == 0 && fs_xfs_set_extsize(target) < 0)
		log_warning("Cannot set the 2 MiB extent size hint on %s", target);
	return 0;
}

struct ephemeral_publish {
	const Csi__V1__NodePublishVolumeRequest *req;
	const char *target; /* resolved */
	const struct volume_params *params;
	const char *fs;
	uint64_t alloc;
};

static int publish_locked(struct csi_call *c, struct csi_driver *d, const char *id, void *ud)
{
	const struct ephemeral_publish *e = ud;
	const struct volume_params *params = e->params;
	struct volume_record rec = {};
	struct pmem_device dev = {};
	struct fs_mount_info mi = {};
	bool ro = e->req->readonly, created = false;
	int r;

	r = csi_volume_create_locked(c, d, e->req->volume_id, id, params->size, 0, e->alloc, params, &rec);
	if (r < 0)
		goto out;
	created = true;
	r = pmem_get(csi_driver_pm(d), id, &dev);
	if (r < 0) {
		r = csi_fail_errno(c, r, "the device of ephemeral volume %s is missing", id);
		goto out;
	}
	if (params->kata) {
		r = format_ephemeral(c, dev.path, e->fs);
		if (r >= 0)
			r = node_kata_publish(c, d, e->req->volume_id, NULL, dev.path, e->fs,
					      params->usage == VOLUME_USAGE_APP_DIRECT, 0, ro, e->target);
		if (r >= 0)
			created = false;
		goto out;
	}
	r = fs_mount_info(e->target, &mi);
	if (r > 0) {
		r = node_same_device(&mi, dev.path)
			    ? 0
			    : csi_fail(c, CSI_CODE_ALREADY_EXISTS, "target path %s has another device mounted (%s)",
				       e->target, mi.source);
		created = false; /* published before: keep it */
		goto out;
	}
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot read the mount table");
		goto out;
	}
	r = mount_ephemeral(c, dev.path, e->fs, params->usage == VOLUME_USAGE_APP_DIRECT, ro, e->target);
	if (r >= 0) {
		log_v(2, "Published ephemeral volume %s (%s) at %s", id, e->fs, e->target);
		created = false;
	}
out:
	if (r < 0 && created) {
		/* Nothing is left behind by a failed ephemeral publish: kubelet retries from scratch. */
		struct csi_call scratch = *c;
		(void)csi_volume_delete_locked(&scratch, d, id);
	}
	fs_mount_info_done(&mi);
	pmem_device_done(&dev);
	volume_record_done(&rec);
	return r;
}

int node_publish_ephemeral(struct csi_call *c, struct csi_driver *d, const Csi__V1__NodePublishVolumeRequest *req,
			   const char *target, const struct csi_caps_summary *caps, const struct volume_params *params)
{
	struct ephemeral_publish e = { .req = req, .target = target, .params = params };
	char id[VOLUME_ID_MAX];

	e.fs = params->fs_type && *params->fs_type ? params->fs_type : caps->fs_type;
	if (caps->block)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "ephemeral volumes must be mount volumes, not block");
	if (!params->has_size || params->size == 0)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT,
				"volume attribute \"size\" is required for ephemeral volumes (a quantity like 1Gi)");
	if (!e.fs)
		e.fs = "ext4";
	if (volume_id_from_name(req->volume_id, id) < 0)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_id \"%s\" cannot name a volume", req->volume_id);
	e.alloc = params->size;
	if (strcmp(e.fs, "xfs") == 0 && e.alloc < FS_XFS_MIN_SIZE)
		e.alloc = FS_XFS_MIN_SIZE;
	e.alloc = round_up_u64(e.alloc, 4 * MiB);
	if (e.alloc == 0)
		return csi_fail(c, CSI_CODE_OUT_OF_RANGE, "volume attribute \"size\" is too large");
	return csi_volume_call(c, d, id, publish_locked, &e);
}
