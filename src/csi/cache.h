/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>

#include "csi.pb-c.h"
#include "server.h"

/*
 * Cache volumes (persistencyModel=cache, cacheSize=N, as 0.7): one copy on
 * each of N nodes, made and removed through the peer channel between the
 * node drivers (cache.c, HTTPS with mutual TLS). docs/design.md has the flow
 * and its failure cases.
 *
 * controller.c stays free of the peer channel: cache.c installs these hooks
 * when the driver runs with -peerListen. Without them a cache volume gets its
 * local copy only, as 0.7 did when fewer nodes than cacheSize had room.
 */

struct csi_driver;

struct csi_cache_hooks {
	/* CreateVolume of a cache volume on the node that got the call: the local
	 * copy (csi_controller_create_copy()), then the peers' copies; *ret lists
	 * every node with a copy in accessible_topology. */
	int (*create)(struct csi_call *c, struct csi_driver *d, const Csi__V1__CreateVolumeRequest *req,
		      unsigned cache_size, const char *id, ProtobufCMessage **ret);
	/* DeleteVolume of a cache volume: every peer's copy (before the local one,
	 * which the caller deletes after a success). */
	int (*remove)(struct csi_call *c, struct csi_driver *d, const Csi__V1__DeleteVolumeRequest *req);
};

/** csi_cache_set_hooks() - install the hooks (at start, before serving); NULL removes them. */
void csi_cache_set_hooks(const struct csi_cache_hooks *hooks);

/**
 * csi_controller_create_copy() - CreateVolume of this node's copy only, as
 * a peer asks for it (same validation and idempotency as CreateVolume).
 */
int csi_controller_create_copy(struct csi_call *c, void *ud, const ProtobufCMessage *msg, ProtobufCMessage **ret);
/** csi_controller_delete_copy() - DeleteVolume of this node's copy only. */
int csi_controller_delete_copy(struct csi_call *c, void *ud, const ProtobufCMessage *msg, ProtobufCMessage **ret);
