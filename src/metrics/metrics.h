/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry.h"

/*
 * The metrics the driver exposes. Names, labels, HELP texts and buckets are
 * compatibility points with intel/pmem-csi 1.x and kubernetes-csi's
 * csi-lib-utils (dashboards and alerts select on them):
 *
 *   build_info{version}                                  gauge, always 1
 *   pmem_amount_{available,managed,max_volume_size,total}{driver_name,node}
 *                                                        gauges in bytes, read at scrape time
 *   csi_plugin_operations_seconds{driver_name,grpc_status_code,method_name}
 *                                                        histogram of gRPC call durations
 *   pmem_csi_unowned_devices{driver_name,node,reason}    gauge: devices left alone as not ours
 *   process_*                                            as the Go client's process collector
 *
 * See docs/metrics.md.
 */

/* csi-lib-utils' operationsLatencyBuckets, in seconds. */
#define METRICS_CSI_BUCKETS 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 25, 50, 120, 300, 600

struct metrics;

/**
 * metrics_capacity_fn - report the node's PMEM capacity in bytes.
 * @userdata: as given to metrics_set_capacity_source().
 *
 * Called at scrape time (at most one scrape at a time), from the HTTP
 * server's thread.
 */
typedef void (*metrics_capacity_fn)(void *userdata, uint64_t *available, uint64_t *managed,
				    uint64_t *max_volume_size, uint64_t *total);

/**
 * metrics_new() - create the driver's registry with build_info, the CSI call
 * histogram and the process metrics.
 * @driver_name: the driver_name label (-drivername); "unknown-driver" if
 *	empty, as csi-lib-utils does.
 * @node: the node label of the capacity gauges (-nodeid).
 * @version: the version label of build_info.
 * @ret: the metrics; free with metrics_free().
 *
 * Return: 0, -EINVAL (a NULL argument, or a version longer than
 * METRICS_LABEL_VALUE_MAX or not UTF-8), -ENOMEM.
 */
int metrics_new(const char *driver_name, const char *node, const char *version, struct metrics **ret);

/**
 * metrics_free() - free the metrics. Stop the HTTP server first.
 * @m: the metrics, or NULL.
 */
void metrics_free(struct metrics *m);

/**
 * metrics_registry() - the underlying registry, to add more metrics.
 * @m: the metrics.
 *
 * Return: a borrowed pointer, valid until metrics_free().
 */
struct metrics_registry *metrics_registry(struct metrics *m);

/**
 * metrics_set_capacity_source() - where the pmem_amount_* gauges come from.
 * @m: the metrics.
 * @fn: the callback, or NULL to stop reporting capacity (the gauges then
 *	drop out of the output, as before PMEM is set up).
 * @userdata: passed to @fn.
 *
 * Waits for a scrape in progress: when this returns, the previous callback
 * is not running and will not be called again. Do not call it from inside
 * the callback, nor while holding a lock the callback takes.
 */
void metrics_set_capacity_source(struct metrics *m, metrics_capacity_fn fn, void *userdata);

/**
 * metrics_unowned_fn - count the devices that are not the driver's own
 * (see csi/ownership.c), by reason. Called at scrape time like
 * metrics_capacity_fn.
 */
typedef void (*metrics_unowned_fn)(void *userdata, uint64_t *unreadable_state, uint64_t *no_state);

/**
 * metrics_set_unowned_source() - where pmem_csi_unowned_devices comes from;
 * the same rules as metrics_set_capacity_source().
 */
void metrics_set_unowned_source(struct metrics *m, metrics_unowned_fn fn, void *userdata);

/**
 * metrics_csi_method_path() - the full gRPC method path of a CSI v1 method.
 * @name: a short method name such as "CreateVolume".
 *
 * Return: e.g. "/csi.v1.Controller/CreateVolume" (static), or NULL if @name
 * is not a CSI v1 method.
 */
const char *metrics_csi_method_path(const char *name);

/**
 * metrics_observe_call() - record one finished gRPC call.
 * @m: the metrics.
 * @method: the full method path, "/csi.v1.Controller/CreateVolume", which is
 *	what csi-lib-utils records (grpc.UnaryServerInfo.FullMethod). A short
 *	CSI name ("CreateVolume") is mapped with metrics_csi_method_path();
 *	anything else is recorded as given.
 * @status_name: the gRPC status as grpc-go prints it ("OK", "InvalidArgument").
 * @seconds: the call's duration.
 *
 * Thread-safe and cheap (one mutex, no allocation after the first call of a
 * method/status pair). Never fails the call: problems (series cap reached,
 * bad UTF-8) are logged once and the observation is dropped.
 */
void metrics_observe_call(struct metrics *m, const char *method, const char *status_name, double seconds);

/**
 * metrics_render() - the text exposition.
 * @m: the metrics.
 * @simple: only build_info (cheap: no /proc reads, no capacity query), for
 *	probes and for checking that the endpoint is up.
 * @ret: the text, to be freed by the caller.
 * @ret_len: its length (optional).
 *
 * Return: 0 or -errno from metrics_registry_render().
 */
int metrics_render(struct metrics *m, bool simple, char **ret, size_t *ret_len);
