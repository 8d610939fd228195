/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The two cluster-facing modes besides "node": both talk to the API server. */

#include "metrics/http.h"

struct metrics;

/**
 * serve_metrics() - start the metrics HTTP server on listen (nothing, and
 * *ret = NULL, when listen is empty) with the readiness that /healthz reports.
 * Logs its failure.
 */
int serve_metrics(struct metrics *m, const char *listen, const char *path, metrics_ready_fn ready, void *userdata,
		  struct metrics_http **ret);

struct mode_options {
	const char *drivername;
	const char *nodeid;
	const char *kubeconfig;    /* NULL: in-cluster, else $KUBECONFIG */
	const char *node_selector; /* JSON object of labels; NULL/empty: {"storage":"pmem"} */
	const char *metrics_listen;
	const char *metrics_path;
	const char *version;
	int resync_seconds; /* webhooks: seconds between passes over the PVCs */
	/* webhooks: the scheduler extender and pod webhook (empty: not served) */
	const char *scheduler_listen;          /* HTTPS with cert_file, key_file (and ca_file: client certificates) */
	const char *insecure_scheduler_listen; /* plain HTTP */
	const char *ca_file, *cert_file, *key_file;
};

/** run_force_convert() - -mode=force-convert-raw-namespaces; returns after SIGTERM (0) or on failure (< 0). */
int run_force_convert(const struct mode_options *o);

/** run_webhooks() - -mode=webhooks (the rescheduler); returns after SIGTERM. */
int run_webhooks(const struct mode_options *o);

/**
 * sys_ensure_writable() - make sys (/sys) writable for libndctl and ndctl: when
 * it is mounted read-only (OpenShift 4.5, containerd issue 3221) and host_sys
 * (/host-sys, which 1.1's manifests mount from the host's /sys) exists, bind-
 * mount host_sys onto sys, as intel/pmem-csi 1.1 did. 0 when sys is writable
 * (then or already); logs and returns -errno otherwise.
 */
int sys_ensure_writable(const char *sys, const char *host_sys);
