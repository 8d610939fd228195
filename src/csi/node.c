/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Node service. NodeStageVolume formats (if needed) and mounts the device on
 * the staging path, with `dax` for usage=AppDirect; NodePublishVolume
 * bind-mounts that into the pod. Raw block volumes skip staging and bind-mount
 * the device node onto a file. All calls are idempotent: a repeated call that
 * finds its work done succeeds without doing it again.
 *
 * Every path is checked and resolved first (node_paths.c: what the driver may
 * do at a path); Kata Containers volumes are in node_kata.c, inline ephemeral
 * volumes in node_ephemeral.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "fs/kata.h"
#include "node_internal.h"

#define MAX_CONTEXT 64

const Csi__V1__VolumeCapability__MountVolume *node_mount_of(const Csi__V1__VolumeCapability *cap)
{
	/* NULL for block: the union holds the block pointer. */
	return cap->access_type_case == CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT ? cap->mount : NULL;
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

static int check_volume_id(struct csi_call *c, const char *id)
{
	if (!id || !*id)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_id is missing");
	snprintf(c->volume, sizeof(c->volume), "%s", id);
	return 0;
}

struct stage {
	const Csi__V1__NodeStageVolumeRequest *req;
	struct csi_caps_summary caps;
	char *staging; /* resolved */
};

static int stage_locked(struct csi_call *c, struct csi_driver *d, const char *id _unused_, void *ud)
{
	const struct stage *s = ud;
	const Csi__V1__NodeStageVolumeRequest *req = s->req;
	const struct csi_caps_summary *caps = &s->caps;
	const char *staging = s->staging;
	struct volume_record rec = {};
	struct pmem_device dev = {};
	struct fs_mount_info mi = {};
	_cleanup_free_ char *existing = NULL, *data = NULL, *err = NULL, *opts = NULL;
	const Csi__V1__VolumeCapability__MountVolume *mv = node_mount_of(req->volume_capability);
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

	r = fs_mount_info(staging, &mi);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot read the mount table");
		goto out;
	}
	if (r > 0) {
		if (!node_same_device(&mi, dev.path))
			r = csi_fail(c, CSI_CODE_ALREADY_EXISTS, "staging path %s has another device mounted (%s)",
				     staging, mi.source);
		else if (strcmp(mi.fstype, caps->fs_type) != 0)
			r = csi_fail(c, CSI_CODE_ALREADY_EXISTS,
				     "volume %s is staged with filesystem %s, not %s", req->volume_id, mi.fstype,
				     caps->fs_type);
		else
			r = 0; /* staged already */
		goto out;
	}

	r = mkdir_p(staging, 0750);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot create staging path %s", staging);
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
	r = fs_mount(dev.path, staging, caps->fs_type, flags, dax ? opts : data);
	if (r < 0) {
		r = csi_fail_errno(c, r, "mount -t %s -o %s %s %s failed", caps->fs_type,
				   dax ? opts : (*data ? data : "defaults"), dev.path, staging);
		if (dax)
			c->code = CSI_CODE_FAILED_PRECONDITION;
		goto out;
	}
	if (strcmp(caps->fs_type, "xfs") == 0) {
		int q = fs_xfs_set_extsize(staging);
		if (q < 0)
			log_warning_errno(q, "Cannot set the 2 MiB extent size hint on %s: %m",
					  staging);
	}
	log_v(2, "Staged volume %s: %s (%s%s) on %s", req->volume_id, dev.path, caps->fs_type,
	      dax ? ", dax" : "", staging);
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
	struct stage s = { .req = req };
	_cleanup_free_ char *staging = NULL;
	Csi__V1__NodeStageVolumeResponse *resp;

	if (check_volume_id(c, req->volume_id) < 0 ||
	    node_path_get(c, "staging_target_path", req->staging_target_path, &staging) < 0 ||
	    csi_check_capability(c, req->volume_capability, "volume_capability", &s.caps) < 0)
		return -1;
	resp = CSI_NEW(c, Csi__V1__NodeStageVolumeResponse, csi__v1__node_stage_volume_response__init);
	if (!resp)
		return csi_oom(c);
	s.staging = staging;
	if (csi_volume_call(c, d, req->volume_id, stage_locked, &s) < 0)
		return -1;
	*ret = &resp->base;
	return 0;
}

/*
 * The mounts that count as volume id's: of its device when the driver knows
 * the volume. *dev is filled then (caller frees); an unknown volume owns none.
 */
static void owner_of(struct csi_driver *d, const char *id, struct pmem_device *dev, struct node_owner *ret)
{
	struct volume_record rec = {};

	ret->volume_id = id;
	if (csi_volume_lookup(d, id, &rec) >= 0 && pmem_get(csi_driver_pm(d), id, dev) >= 0)
		ret->dev = dev->path;
	volume_record_done(&rec);
}

static int unstage_locked(struct csi_call *c, struct csi_driver *d, const char *id, void *ud)
{
	const char *staging = ud;
	struct pmem_device dev = {};
	struct node_owner owner = {};
	int r;

	/* An unknown volume owns no mount: with nothing mounted there this is
	 * success, not NOT_FOUND. For a raw block volume (whose staging mounts
	 * nothing) kubelet may unstage after DeleteVolume, and would retry a
	 * NOT_FOUND for ever, keeping its volumeDevices directories. A mount
	 * that is not the volume's is left alone and named in the error. */
	owner_of(d, id, &dev, &owner);
	r = node_umount_ours(c, staging, "staging path", &owner);
	if (r >= 0)
		log_v(2, "Unstaged volume %s from %s", id, staging);
	pmem_device_done(&dev);
	return r;
}

int csi_node_unstage_volume(struct csi_call *c, void *ud, const ProtobufCMessage *msg, ProtobufCMessage **ret)
{
	const Csi__V1__NodeUnstageVolumeRequest *req = (const Csi__V1__NodeUnstageVolumeRequest *)msg;
	struct csi_driver *d = ud;
	_cleanup_free_ char *staging = NULL;
	Csi__V1__NodeUnstageVolumeResponse *resp;

	if (check_volume_id(c, req->volume_id) < 0 ||
	    node_path_get(c, "staging_target_path", req->staging_target_path, &staging) < 0)
		return -1;
	resp = CSI_NEW(c, Csi__V1__NodeUnstageVolumeResponse, csi__v1__node_unstage_volume_response__init);
	if (!resp)
		return csi_oom(c);
	if (csi_volume_call(c, d, req->volume_id, unstage_locked, staging) < 0)
		return -1;
	*ret = &resp->base;
	return 0;
}

struct publish {
	const Csi__V1__NodePublishVolumeRequest *req;
	struct csi_caps_summary caps;
	char *target;  /* resolved */
	char *staging; /* resolved, NULL when the request has none */
};

/* The staging path of a filesystem publish must hold the volume's device; *smi gets its mount. */
static int check_staged(struct csi_call *c, const struct publish *p, const char *dev, struct fs_mount_info *smi)
{
	int r;

	if (!p->staging)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "staging_target_path is missing");
	r = fs_mount_info(p->staging, smi);
	if (r < 0)
		return csi_fail_errno(c, r, "cannot read the mount table");
	if (r == 0 || !node_same_device(smi, dev))
		return csi_fail(c, CSI_CODE_FAILED_PRECONDITION, "volume %s is not staged at %s", p->req->volume_id,
				p->staging);
	return 0;
}

static int publish_locked(struct csi_call *c, struct csi_driver *d, const char *id, void *ud)
{
	const struct publish *p = ud;
	const Csi__V1__NodePublishVolumeRequest *req = p->req;
	const struct csi_caps_summary *caps = &p->caps;
	const char *target = p->target;
	struct volume_record rec = {};
	struct pmem_device dev = {};
	struct fs_mount_info mi = {}, smi = {};
	struct node_owner owner = { .volume_id = id };
	const Csi__V1__VolumeCapability__MountVolume *mv = node_mount_of(req->volume_capability);
	_cleanup_free_ char *data = NULL;
	unsigned long flags = 0;
	bool ro, created = false;
	int r;

	if (find_device(c, d, id, &rec, &dev) < 0)
		return -1;
	owner.dev = dev.path;
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
				     id);
			goto out;
		}
		r = check_staged(c, p, dev.path, &smi);
		if (r < 0)
			goto out;
		r = node_kata_publish(c, d, id, p->staging, NULL, smi.fstype, false, flags, ro, target);
		goto out;
	}

	r = fs_mount_info(target, &mi);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot read the mount table");
		goto out;
	}
	if (r > 0) {
		bool is_ro = fs_has_option(mi.options, "ro");
		if (!node_mount_is_ours(&owner, target, &mi))
			r = csi_fail(c, CSI_CODE_ALREADY_EXISTS, "target path %s has another device mounted (%s)", target,
				     mi.source);
		else if (is_ro != ro)
			r = csi_fail(c, CSI_CODE_ALREADY_EXISTS, "volume %s is published at %s %s", id, target,
				     is_ro ? "read-only" : "read-write");
		else
			r = 0;
		goto out;
	}

	if (caps->block) {
		/* The device node is bound onto an empty file; never over a file
		 * with data or a directory: that is not ours to hide. */
		r = node_prepare_target(c, target, false, &created);
		if (r < 0)
			goto out;
		r = fs_bind_mount(dev.path, target, ro, 0);
		if (r < 0) {
			r = csi_fail_errno(c, r, "cannot bind-mount %s on %s", dev.path, target);
			goto out;
		}
		log_v(2, "Published block volume %s at %s", id, target);
		r = 0;
		goto out;
	}

	r = check_staged(c, p, dev.path, &smi);
	if (r < 0)
		goto out;
	r = node_prepare_target(c, target, true, &created);
	if (r < 0)
		goto out;
	r = fs_bind_mount(p->staging, target, ro, flags);
	if (r < 0) {
		r = csi_fail_errno(c, r, "cannot bind-mount %s on %s", p->staging, target);
		goto out;
	}
	log_v(2, "Published volume %s at %s%s", id, target, ro ? " (read-only)" : "");
	r = 0;
out:
	if (r < 0 && created)
		(void)(caps->block ? unlink(target) : rmdir(target));
	fs_mount_info_done(&mi);
	fs_mount_info_done(&smi);
	pmem_device_done(&dev);
	volume_record_done(&rec);
	return r;
}

int csi_node_publish_volume(struct csi_call *c, void *ud, const ProtobufCMessage *msg, ProtobufCMessage **ret)
{
	const Csi__V1__NodePublishVolumeRequest *req = (const Csi__V1__NodePublishVolumeRequest *)msg;
	struct csi_driver *d = ud;
	struct publish p = { .req = req };
	struct volume_params params;
	const char *keys[MAX_CONTEXT], *values[MAX_CONTEXT];
	_cleanup_free_ char *err = NULL, *target = NULL, *staging = NULL;
	Csi__V1__NodePublishVolumeResponse *resp;
	bool ephemeral;
	int r;

	if (check_volume_id(c, req->volume_id) < 0 || node_path_get(c, "target_path", req->target_path, &target) < 0)
		return -1;
	/* Optional here (inline ephemeral volumes have none), checked when given. */
	if (req->staging_target_path && *req->staging_target_path &&
	    node_path_get(c, "staging_target_path", req->staging_target_path, &staging) < 0)
		return -1;
	if (csi_check_capability(c, req->volume_capability, "volume_capability", &p.caps) < 0)
		return -1;
	if (req->n_volume_context > MAX_CONTEXT)
		return csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_context has too many entries");
	for (size_t i = 0; i < req->n_volume_context; i++) {
		keys[i] = req->volume_context[i]->key;
		values[i] = req->volume_context[i]->value;
	}
	resp = CSI_NEW(c, Csi__V1__NodePublishVolumeResponse, csi__v1__node_publish_volume_response__init);
	if (!resp)
		return csi_oom(c);
	volume_params_init(&params);
	ephemeral = node_context_is_ephemeral(keys, values, req->n_volume_context);
	r = volume_params_parse(&params, ephemeral ? PARAMS_ORIGIN_EPHEMERAL : PARAMS_ORIGIN_PUBLISH_CONTEXT, keys,
				values, req->n_volume_context, &err);
	if (r < 0)
		r = csi_fail(c, CSI_CODE_INVALID_ARGUMENT, "volume_context: %s", err ? err : "invalid");
	else if (ephemeral)
		r = node_publish_ephemeral(c, d, req, target, &p.caps, &params);
	else {
		p.target = target;
		p.staging = staging;
		r = csi_volume_call(c, d, req->volume_id, publish_locked, &p);
	}
	volume_params_done(&params);
	if (r < 0)
		return r;
	*ret = &resp->base;
	return 0;
}

struct unpublish {
	const char *name;   /* the request's volume_id */
	const char *target; /* resolved */
	bool ephemeral;     /* id is the ephemeral volume kubelet calls name */
};

static int unpublish_locked(struct csi_call *c, struct csi_driver *d, const char *id, void *ud)
{
	const struct unpublish *u = ud;
	_cleanup_free_ char *host = node_kata_host_dir(d, u->name), *image = NULL;
	struct pmem_device dev = {};
	struct node_owner owner = {};
	int r;

	/* The target may hold the volume's device (its staging bind mount, a
	 * bound device node, an ephemeral volume's own mount) or a loop device
	 * over its Kata image; nothing else there is unmounted or removed. */
	owner_of(d, id, &dev, &owner);
	owner.volume_id = u->name;
	if (host) {
		image = xasprintf("%s/%s", host, KATA_IMAGE_NAME);
		if (!image) {
			r = csi_oom(c);
			goto out;
		}
		owner.kata_image = image;
	}
	r = node_umount_ours(c, u->target, "target path", &owner);
	if (r < 0)
		goto out;
	/* The spec asks the plugin to remove what it created at the target. */
	r = node_remove_made(c, u->target, "target path");
	if (r < 0)
		goto out;
	/* A Kata Containers volume also has its host side to release. */
	if (host) {
		r = node_kata_release(c, host);
		if (r < 0)
			goto out;
	}
	log_v(2, "Unpublished volume %s from %s", u->name, u->target);
	/* An ephemeral volume ends with its last unpublish. */
	if (u->ephemeral) {
		struct volume_record rec = {};
		bool still = csi_volume_lookup(d, id, &rec) >= 0 && rec.params.ephemeral &&
			     streq_ptr(rec.params.name, u->name);

		volume_record_done(&rec);
		if (still)
			r = csi_volume_delete_locked(c, d, id);
	}
out:
	pmem_device_done(&dev);
	return r;
}

int csi_node_unpublish_volume(struct csi_call *c, void *ud, const ProtobufCMessage *msg, ProtobufCMessage **ret)
{
	const Csi__V1__NodeUnpublishVolumeRequest *req = (const Csi__V1__NodeUnpublishVolumeRequest *)msg;
	struct csi_driver *d = ud;
	_cleanup_free_ char *target = NULL;
	struct unpublish u = { .name = req->volume_id };
	Csi__V1__NodeUnpublishVolumeResponse *resp;
	char eid[VOLUME_ID_MAX];

	if (check_volume_id(c, req->volume_id) < 0 || node_path_get(c, "target_path", req->target_path, &target) < 0)
		return -1;
	resp = CSI_NEW(c, Csi__V1__NodeUnpublishVolumeResponse, csi__v1__node_unpublish_volume_response__init);
	if (!resp)
		return csi_oom(c);
	u.target = target;
	/* An inline ephemeral volume is locked by its own ID, as its publish did. */
	u.ephemeral = csi_driver_ready(d) && node_ephemeral_id(d, req->volume_id, eid);
	if (csi_volume_call(c, d, u.ephemeral ? eid : req->volume_id, unpublish_locked, &u) < 0)
		return -1;
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

int csi_node_get_capabilities(struct csi_call *c, void *ud, const ProtobufCMessage *msg _unused_,
			      ProtobufCMessage **ret)
{
	static const Csi__V1__NodeServiceCapability__RPC__Type types[] = {
		CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__STAGE_UNSTAGE_VOLUME,
		CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__GET_VOLUME_STATS, /* node_stats.c */
		CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__VOLUME_CONDITION, /* in NodeGetVolumeStats */
	};
	Csi__V1__NodeGetCapabilitiesResponse *resp =
		CSI_NEW(c, Csi__V1__NodeGetCapabilitiesResponse, csi__v1__node_get_capabilities_response__init);
	Csi__V1__NodeServiceCapability **caps =
		CSI_NEW_ARRAY(c, Csi__V1__NodeServiceCapability *, ELEMENTSOF(types) + 1);

	if (!resp || !caps)
		return csi_oom(c);
	for (size_t i = 0; i < ELEMENTSOF(types); i++) {
		Csi__V1__NodeServiceCapability *cap =
			CSI_NEW(c, Csi__V1__NodeServiceCapability, csi__v1__node_service_capability__init);
		Csi__V1__NodeServiceCapability__RPC *rpc =
			CSI_NEW(c, Csi__V1__NodeServiceCapability__RPC, csi__v1__node_service_capability__rpc__init);

		if (!cap || !rpc)
			return csi_oom(c);
		rpc->type = types[i];
		cap->type_case = CSI__V1__NODE_SERVICE_CAPABILITY__TYPE_RPC;
		cap->rpc = rpc;
		caps[i] = cap;
	}
	resp->n_capabilities = ELEMENTSOF(types);
	resp->capabilities = caps;
	if (csi_expansion_supported(ud)) { /* node_expand.c */
		Csi__V1__NodeServiceCapability *cap =
			CSI_NEW(c, Csi__V1__NodeServiceCapability, csi__v1__node_service_capability__init);
		Csi__V1__NodeServiceCapability__RPC *rpc =
			CSI_NEW(c, Csi__V1__NodeServiceCapability__RPC, csi__v1__node_service_capability__rpc__init);
		if (!cap || !rpc)
			return csi_oom(c);
		rpc->type = CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__EXPAND_VOLUME;
		cap->type_case = CSI__V1__NODE_SERVICE_CAPABILITY__TYPE_RPC;
		cap->rpc = rpc;
		caps[resp->n_capabilities++] = cap;
	}
	*ret = &resp->base;
	return 0;
}
