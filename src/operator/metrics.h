/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdint.h>

/*
 * The operator's metrics, served with src/metrics/ (registry and HTTP endpoint) on
 * -metrics-addr (1.x: default ":8080", path /metrics):
 *
 *   pmem_csi_deployment_reconcile{name,uid}                     counter, per reconcile of a CR
 *   pmem_csi_deployment_sub_resource_created_at{name,namespace,group,version,kind,uid,ownedBy}
 *                                                               gauge, when we created the object
 *   pmem_csi_deployment_sub_resource_updated_at{...same...}     gauge, when we last changed it
 *   controller_runtime_reconcile_total{controller,result}      counter, result success | error
 *   controller_runtime_reconcile_errors_total{controller}      counter
 *   controller_runtime_reconcile_time_seconds{controller}      histogram
 *   build_info{version}, process_*                              as the driver
 *
 * The first three are the 1.x operator's own (same names, labels, types); the
 * controller_runtime_* ones are those of the controller-runtime library the 1.x
 * operator was built on (controller="deployment-controller"), so dashboards keep
 * working. See docs/operator.md.
 */

struct operator_metrics;
struct k8s_client;
struct jv;

/** operator_metrics_new() - the registry with every family above; -ENOMEM. */
int operator_metrics_new(const char *version, struct operator_metrics **ret);

/** operator_metrics_free() - stop serving and free; m may be NULL. */
void operator_metrics_free(struct operator_metrics *m);

/**
 * operator_metrics_serve() - serve GET /metrics (and /metrics/simple, /healthz) on
 * listen (":8080", "host:port", port 0 picks one). ret_port (optional) gets the port.
 * -errno from binding (-EADDRINUSE ...), -EINVAL for a malformed address.
 */
int operator_metrics_serve(struct operator_metrics *m, const char *listen, uint16_t *ret_port);

/**
 * operator_metrics_reconciled() - count one reconcile of cr that ended with r (< 0:
 * error) after seconds. m may be NULL (no metrics).
 */
void operator_metrics_reconciled(struct operator_metrics *m, const struct jv *cr, int r, double seconds);

/**
 * operator_metrics_apply() - server-side apply of object (JSON) at path as field
 * manager, forced (k8s_apply()), and set the sub_resource gauges: created_at when
 * the object did not exist before (or was replaced: new uid), updated_at when the
 * apply changed it (new resourceVersion). What existed before is learned with one
 * GET the first time a path is applied, then remembered. m may be NULL: plain apply.
 * ret (optional) gets the object the API server returned.
 */
int operator_metrics_apply(struct operator_metrics *m, struct k8s_client *c, const char *path,
			   const char *field_manager, const char *object, struct jv **ret, char **ret_err);
