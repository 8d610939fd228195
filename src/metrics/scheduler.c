/* SPDX-License-Identifier: Apache-2.0 */
#include "scheduler.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "basic/macro.h"
#include "registry.h"

/* Prometheus' DefBuckets, which 1.0's histogram used. */
static const double duration_buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
static const double size_buckets[] = { 200, 500, 900, 1500 };

struct metrics_scheduler {
	struct metrics_family *in_flight, *requests, *duration, *size;
};

int metrics_scheduler_new(struct metrics_registry *r, struct metrics_scheduler **ret)
{
	static const char *const code_method[] = { "code", "method", NULL };
	static const char *const handler_method[] = { "handler", "method", NULL };
	struct metrics_scheduler *s = calloc(1, sizeof(*s));
	int k;

	if (!s)
		return -ENOMEM;
	if ((k = metrics_registry_add(r, METRICS_TYPE_GAUGE, "scheduler_in_flight_requests",
				      "A gauge of HTTP requests currently being served by the PMEM-CSI scheduler.", NULL,
				      NULL, 0, &s->in_flight)) < 0 ||
	    (k = metrics_registry_add(r, METRICS_TYPE_COUNTER, "scheduler_requests_total",
				      "A counter for HTTP requests to the PMEM-CSI scheduler.", code_method, NULL, 0,
				      &s->requests)) < 0 ||
	    (k = metrics_registry_add(r, METRICS_TYPE_HISTOGRAM, "scheduler_request_duration_seconds",
				      "A histogram of latencies for PMEM-CSI scheduler HTTP requests.", handler_method,
				      duration_buckets, ELEMENTSOF(duration_buckets), &s->duration)) < 0 ||
	    (k = metrics_registry_add(r, METRICS_TYPE_HISTOGRAM, "scheduler_response_size_bytes",
				      "A histogram of response sizes for PMEM-CSI scheduler requests.", NULL,
				      size_buckets, ELEMENTSOF(size_buckets), &s->size)) < 0) {
		free(s);
		return k;
	}
	/* Present from the start, as the Go gauge is. */
	(void)metrics_gauge_set(s->in_flight, NULL, 0);
	*ret = s;
	return 0;
}

void metrics_scheduler_free(struct metrics_scheduler *s)
{
	free(s);
}

void metrics_scheduler_begin(struct metrics_scheduler *s)
{
	if (s)
		(void)metrics_counter_add(s->in_flight, NULL, 1);
}

void metrics_scheduler_end(struct metrics_scheduler *s, const char *handler, const char *method, unsigned code,
			   double seconds, size_t response_bytes)
{
	char m[16], c[8];
	size_t i;

	if (!s)
		return;
	for (i = 0; method[i] && i < sizeof(m) - 1; i++)
		m[i] = (char)tolower((unsigned char)method[i]);
	m[i] = 0;
	snprintf(c, sizeof(c), "%u", code);
	(void)metrics_counter_add(s->in_flight, NULL, -1);
	(void)metrics_counter_add(s->requests, (const char *const[]){ c, m, NULL }, 1);
	(void)metrics_histogram_observe(s->duration, (const char *const[]){ handler, m, NULL }, seconds);
	(void)metrics_histogram_observe(s->size, NULL, (double)response_bytes);
}
