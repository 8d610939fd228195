/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pmem/pmem.h"
#include "server.h"
#include "volume/state.h"

/*
 * The CSI driver: Identity, Controller and Node services over one device
 * manager, with the volumes of this node in memory (loaded from the state
 * directory and checked against the devices at start).
 */

struct csi_driver_config {
	const char *name;      /* -drivername */
	const char *version;
	const char *node_id;
	const char *state_dir;
	const char *device_mode; /* -deviceManager: what GetCapabilities offers before the devices are set up */
};

struct csi_driver;

int csi_driver_new(const struct csi_driver_config *cfg, struct csi_driver **ret);
void csi_driver_free(struct csi_driver *d);

/**
 * csi_driver_attach() - hand over the device manager once it is set up:
 * reconcile the state with the devices (ownership_reconcile()) and become
 * ready (Probe says ready; other calls stop answering UNAVAILABLE). Takes
 * ownership of pm.
 */
int csi_driver_attach(struct csi_driver *d, struct pmem_manager *pm);

/** csi_driver_methods() - the gRPC method table (Identity, Controller, Node). */
const struct csi_method *csi_driver_methods(size_t *ret_n);

/** csi_driver_capacity() - current capacity (zeros before attach). */
void csi_driver_capacity(struct csi_driver *d, struct pmem_capacity *ret);

/**
 * csi_driver_unowned() - devices on the node that are not volumes of this
 * driver (reported, left alone): with an unreadable state record, and without
 * any. Zeros before attach. Cheap (in-memory tables).
 */
void csi_driver_unowned(struct csi_driver *d, uint64_t *ret_unreadable_state, uint64_t *ret_no_state);

/* Internal to the csi/ handlers ---------------------------------------------- */

struct csi_volume {
	struct volume_record rec;
};

struct csi_driver_internal;
const struct csi_driver_config *csi_driver_cfg(struct csi_driver *d);
struct pmem_manager *csi_driver_pm(struct csi_driver *d);
bool csi_driver_ready(struct csi_driver *d);
/**
 * csi_driver_state_check_due() - true at most once a second (per driver): for
 * checks on a fast path that cost system calls, such as GetCapacity's look at
 * the state directory.
 */
bool csi_driver_state_check_due(struct csi_driver *d);
int csi_driver_lock(struct csi_driver *d, const char *id);
void csi_driver_unlock(struct csi_driver *d, const char *id);
/** csi_driver_topology_key() - "<drivername>/node". */
const char *csi_driver_topology_key(struct csi_driver *d);

/**
 * csi_volume_lookup() - copy of a volume's record (caller calls
 * volume_record_done()); -ENOENT if unknown.
 */
int csi_volume_lookup(struct csi_driver *d, const char *id, struct volume_record *ret);
/** csi_volume_add() - register a volume (copies rec). */
int csi_volume_add(struct csi_driver *d, const struct volume_record *rec);
void csi_volume_remove(struct csi_driver *d, const char *id);
/**
 * csi_volume_remove_if() - under the registry lock, run fn and unregister the
 * volume if fn succeeds (ownership.c: record removal and unregistering are
 * one step for a state directory rewrite). Returns fn's result.
 */
int csi_volume_remove_if(struct csi_driver *d, const char *id, int (*fn)(const char *id, void *ud), void *ud);
/** csi_volume_foreach() - fn on every registered record, under the registry lock (fn must not call back). */
int csi_volume_foreach(struct csi_driver *d, int (*fn)(const struct volume_record *rec, void *ud), void *ud);
/** csi_driver_ownership() - the ownership bookkeeping (ownership.c). */
struct ownership *csi_driver_ownership(struct csi_driver *d);
/** csi_driver_snapshots() - the registered snapshots (snapshot.c). */
struct csi_snapshots *csi_driver_snapshots(struct csi_driver *d);
/**
 * csi_volume_page() - up to max (0 = all) records with IDs greater than after
 * (NULL = from the start), in ID order. *ret_more tells whether more follow.
 */
int csi_volume_page(struct csi_driver *d, const char *after, size_t max, struct volume_record **ret,
		    size_t *ret_n, bool *ret_more);
void volume_record_array_free(struct volume_record *r, size_t n);
int volume_record_copy(const struct volume_record *src, struct volume_record *dst);

/**
 * csi_volume_create_locked() - create (or find, idempotently) volume id named
 * name with at least required bytes (alloc: the size to allocate; limit 0 =
 * none). Caller holds the volume's lock. Fills *ret (caller frees with
 * volume_record_done()) or fails the call.
 */
int csi_volume_create_locked(struct csi_call *c, struct csi_driver *d, const char *name, const char *id,
			     uint64_t required, uint64_t limit, uint64_t alloc, const struct volume_params *params,
			     struct volume_record *ret);
/**
 * csi_volume_delete_locked() - delete volume id (erasing it if its parameters
 * say so) and its state; success when it does not exist. Caller holds the lock.
 */
int csi_volume_delete_locked(struct csi_call *c, struct csi_driver *d, const char *id);

/* Handlers (identity.c, controller.c, node.c) */
int csi_identity_get_plugin_info(struct csi_call *c, void *ud, const ProtobufCMessage *req,
				 ProtobufCMessage **ret);
int csi_identity_get_plugin_capabilities(struct csi_call *c, void *ud, const ProtobufCMessage *req,
					 ProtobufCMessage **ret);
int csi_identity_probe(struct csi_call *c, void *ud, const ProtobufCMessage *req, ProtobufCMessage **ret);
int csi_controller_create_volume(struct csi_call *c, void *ud, const ProtobufCMessage *req,
				 ProtobufCMessage **ret);
int csi_controller_delete_volume(struct csi_call *c, void *ud, const ProtobufCMessage *req,
				 ProtobufCMessage **ret);
int csi_controller_validate_volume_capabilities(struct csi_call *c, void *ud, const ProtobufCMessage *req,
						ProtobufCMessage **ret);
int csi_controller_list_volumes(struct csi_call *c, void *ud, const ProtobufCMessage *req,
				ProtobufCMessage **ret);
int csi_controller_get_capacity(struct csi_call *c, void *ud, const ProtobufCMessage *req,
				ProtobufCMessage **ret);
int csi_controller_get_capabilities(struct csi_call *c, void *ud, const ProtobufCMessage *req,
				    ProtobufCMessage **ret);
int csi_controller_expand_volume(struct csi_call *c, void *ud, const ProtobufCMessage *req,
				 ProtobufCMessage **ret);
int csi_controller_create_snapshot(struct csi_call *c, void *ud, const ProtobufCMessage *req,
				   ProtobufCMessage **ret);
int csi_controller_delete_snapshot(struct csi_call *c, void *ud, const ProtobufCMessage *req,
				   ProtobufCMessage **ret);
int csi_controller_list_snapshots(struct csi_call *c, void *ud, const ProtobufCMessage *req,
				  ProtobufCMessage **ret);
int csi_node_stage_volume(struct csi_call *c, void *ud, const ProtobufCMessage *req, ProtobufCMessage **ret);
int csi_node_unstage_volume(struct csi_call *c, void *ud, const ProtobufCMessage *req,
			    ProtobufCMessage **ret);
int csi_node_publish_volume(struct csi_call *c, void *ud, const ProtobufCMessage *req,
			    ProtobufCMessage **ret);
int csi_node_unpublish_volume(struct csi_call *c, void *ud, const ProtobufCMessage *req,
			      ProtobufCMessage **ret);
int csi_node_get_volume_stats(struct csi_call *c, void *ud, const ProtobufCMessage *req,
			      ProtobufCMessage **ret);
int csi_node_expand_volume(struct csi_call *c, void *ud, const ProtobufCMessage *req, ProtobufCMessage **ret);
int csi_node_get_info(struct csi_call *c, void *ud, const ProtobufCMessage *req, ProtobufCMessage **ret);
int csi_node_get_capabilities(struct csi_call *c, void *ud, const ProtobufCMessage *req,
			      ProtobufCMessage **ret);
int csi_unimplemented(struct csi_call *c, void *ud, const ProtobufCMessage *req, ProtobufCMessage **ret);

/* Helpers shared by the handlers (util.c) */

/* Allocate and initialise a protobuf-c message in the call's arena. */
#define CSI_NEW(call, type, init)                                        \
	({                                                               \
		type *_m = arena_alloc((call)->arena, sizeof(type));     \
		if (_m)                                                  \
			init(_m);                                        \
		_m;                                                      \
	})
#define CSI_NEW_ARRAY(call, type, n) ((type *)arena_alloc((call)->arena, sizeof(type) * ((n) ? (n) : 1)))

int csi_oom(struct csi_call *c);
/** csi_topology() - {<drivername>/node: <nodeid>} in the arena. */
struct Csi__V1__Topology *csi_topology(struct csi_call *c, struct csi_driver *d);
/** csi_not_ready() - fails with UNAVAILABLE unless the driver is ready. */
int csi_check_ready(struct csi_call *c, struct csi_driver *d);

/**
 * csi_volume_call() - the frame shared by every handler that acts on one
 * volume, after it has validated its request: records the volume ID for the
 * call's log line, answers UNAVAILABLE until the driver is ready, and runs fn
 * with the volume's lock held (released on every path). Returns fn's result.
 */
int csi_volume_call(struct csi_call *c, struct csi_driver *d, const char *id,
		    int (*fn)(struct csi_call *c, struct csi_driver *d, const char *id, void *ud), void *ud);
