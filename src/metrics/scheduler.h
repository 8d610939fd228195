/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>

/*
 * The metrics of the scheduler extender and pod webhook (-mode=webhooks),
 * with intel/pmem-csi 1.0's names, labels and buckets (promhttp's
 * instrumentation there):
 *
 *   scheduler_in_flight_requests                   gauge
 *   scheduler_requests_total{code,method}          counter ("200", "post")
 *   scheduler_request_duration_seconds{handler,method}
 *                                                  histogram, Prometheus' default buckets;
 *                                                  handler "filter", "status" or "mutate"
 *   scheduler_response_size_bytes                  histogram, buckets 200, 500, 900, 1500
 */

struct metrics_registry;
struct metrics_scheduler;

/** metrics_scheduler_new() - register the families in r; 0, -EEXIST, -ENOMEM. */
int metrics_scheduler_new(struct metrics_registry *r, struct metrics_scheduler **ret);
void metrics_scheduler_free(struct metrics_scheduler *s);

/** metrics_scheduler_begin() - a request starts (in-flight gauge + 1); s may be NULL. */
void metrics_scheduler_begin(struct metrics_scheduler *s);

/**
 * metrics_scheduler_end() - the request is answered (in-flight - 1) and recorded.
 * @handler: "filter", "status" or "mutate".
 * @method: the HTTP method; recorded in lower case as promhttp does.
 */
void metrics_scheduler_end(struct metrics_scheduler *s, const char *handler, const char *method, unsigned code,
			   double seconds, size_t response_bytes);
