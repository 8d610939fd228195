/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Internal to the Node service (node.c, node_paths.c, node_kata.c,
 * node_ephemeral.c): what the four files share. Not for other modules.
 */

#include <stdbool.h>

#include "caps.h"
#include "csi.pb-c.h"
#include "driver.h"
#include "fs/fs.h"
#include "volume/params.h"

/* ---- node_paths.c: which paths the driver acts on, and which mounts are its own ---- */

/**
 * node_path_get() - check a path field of a request (fs_path_check(): absolute,
 * no "." or ".." component) and resolve it (fs_path_resolve(): every symlink
 * in it followed). This is the one rule for every Node call, so that stage
 * and unstage (or publish and unpublish) of the same path string always act
 * on the same directory. Fails the call with INVALID_ARGUMENT naming field;
 * *ret (malloc'd) is the resolved path.
 */
int node_path_get(struct csi_call *c, const char *field, const char *path, char **ret);

/*
 * What a mount of a volume looks like: a mount of its block device (dev; the
 * bind mounts of a staging path have the same device), its device node bound
 * onto a file (raw block publish), or a loop device over its Kata Containers
 * image (kata_image). A mount that is none of these is not the driver's.
 */
struct node_owner {
	const char *volume_id; /* for messages */
	const char *dev;        /* block device of the volume, or NULL when unknown */
	const char *kata_image; /* <stateDir>/mount/<volume_id>/<image>, or NULL */
};

/** node_mount_is_ours() - whether mi, the topmost mount at path, is one of o's. */
bool node_mount_is_ours(const struct node_owner *o, const char *path, const struct fs_mount_info *mi);

/** node_same_device() - whether a mount is of the block device dev. */
bool node_same_device(const struct fs_mount_info *mi, const char *dev);

/**
 * node_umount_ours() - unmount every mount of o's volume stacked at path
 * (what: "target path" or "staging path", for messages). A mount that is not
 * the volume's stops it with FAILED_PRECONDITION naming what is mounted:
 * it stays as it is. Success when nothing (more) is mounted there.
 */
int node_umount_ours(struct csi_call *c, const char *path, const char *what, const struct node_owner *o);

/**
 * node_remove_made() - remove path if it is what a publish of ours makes: an
 * empty directory or an empty regular file. Nothing there is success;
 * anything else fails with FAILED_PRECONDITION saying what it is, untouched.
 */
int node_remove_made(struct csi_call *c, const char *path, const char *what);

/**
 * node_prepare_target() - make the target of a publish: a directory (dir) or
 * an empty regular file (raw block). What is there already is used only when
 * it is the same (an empty directory or an empty file, as a CO or an earlier
 * try leaves it); anything else fails with FAILED_PRECONDITION, untouched.
 * *ret_created tells whether this call made it (to undo on failure).
 */
int node_prepare_target(struct csi_call *c, const char *path, bool dir, bool *ret_created);

/* ---- node.c ---- */

/** node_mount_of() - the mount half of a capability's oneof; NULL for block. */
const Csi__V1__VolumeCapability__MountVolume *node_mount_of(const Csi__V1__VolumeCapability *cap);

/* ---- node_kata.c: Kata Containers volumes (image file on a loop device) ---- */

/** node_kata_host_dir() - <stateDir>/mount/<volume_id> (malloc'd), NULL if volume_id cannot name a directory. */
char *node_kata_host_dir(struct csi_driver *d, const char *volume_id);

/** node_kata_release() - undo the host side of node_kata_publish() unless another target still uses it. */
int node_kata_release(struct csi_call *c, const char *host);

/**
 * node_kata_publish() - publish a Kata volume at target. src is the staging
 * path of a persistent volume (bind-mounted to the host directory) or, with
 * ephemeral_dev set, the device of an ephemeral volume (mounted there).
 */
int node_kata_publish(struct csi_call *c, struct csi_driver *d, const char *volume_id, const char *src,
		      const char *ephemeral_dev, const char *fs, bool dax, unsigned long flags, bool ro,
		      const char *target);

/* ---- node_ephemeral.c: CSI inline ephemeral volumes ---- */

/** node_context_is_ephemeral() - csi.storage.k8s.io/ephemeral=true in a volume context. */
bool node_context_is_ephemeral(const char *const *keys, const char *const *values, size_t n);

/**
 * node_ephemeral_id() - the volume ID of the ephemeral volume that kubelet
 * calls name, when the driver has one: true and ret filled, else false.
 */
bool node_ephemeral_id(struct csi_driver *d, const char *name, char ret[VOLUME_ID_MAX]);

/**
 * node_publish_ephemeral() - create, format and mount an inline ephemeral
 * volume at target (already checked and resolved). Takes the volume's lock.
 */
int node_publish_ephemeral(struct csi_call *c, struct csi_driver *d, const Csi__V1__NodePublishVolumeRequest *req,
			   const char *target, const struct csi_caps_summary *caps, const struct volume_params *params);
