/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/*
 * A small, thread-safe metrics registry rendered in the Prometheus text
 * exposition format 0.0.4. No third-party code: the format is simple and
 * the only consumers are Prometheus and kubelet probes.
 *
 * A registry holds families (one metric name, HELP text, type, label names).
 * A family holds series, one per distinct tuple of label values. Gauges,
 * counters and histograms with fixed buckets keep their values in the
 * registry; "collected on scrape" values (PMEM capacity, process statistics)
 * come from collector callbacks that run at render time and add samples to
 * gauge or counter families for that one scrape only.
 *
 * Every series costs memory and every label value may come from a request,
 * so the number of series is capped per registry (and label values are
 * length-limited): beyond the cap, updates fail with -E2BIG and the series
 * is not created. Nothing here aborts.
 *
 * Output follows what the Prometheus Go client writes, so dashboards and
 * tests that compare text see the same thing: families sorted by name,
 * series sorted by label values, families without samples left out, values
 * in Go's shortest float form ("0.25", "1e+06", "3.4359738368e+10", "+Inf").
 */

/* Hard limits. Label values longer than this are rejected with -EINVAL. */
#define METRICS_LABEL_VALUE_MAX 1024
#define METRICS_LABELS_MAX 16
#define METRICS_BUCKETS_MAX 64
#define METRICS_FAMILIES_MAX 256
#define METRICS_SERIES_DEFAULT_MAX 4096
/* A rendered page larger than this fails with -E2BIG. */
#define METRICS_RENDER_MAX (16u * 1024 * 1024)

enum metrics_type {
	METRICS_TYPE_COUNTER,
	METRICS_TYPE_GAUGE,
	METRICS_TYPE_HISTOGRAM,
};

struct metrics_registry;
struct metrics_family;
struct metrics_collector;
struct metrics_scrape;

/**
 * metrics_registry_new() - create an empty registry.
 * @max_series: cap on the number of stored series over all families, and
 *	separately on the samples collectors add in one scrape
 *	(0 = METRICS_SERIES_DEFAULT_MAX).
 * @ret: the registry; free it with metrics_registry_free().
 *
 * Return: 0, or -ENOMEM.
 */
int metrics_registry_new(size_t max_series, struct metrics_registry **ret);

/**
 * metrics_registry_free() - free a registry, its families and collectors.
 * @r: the registry, or NULL.
 *
 * No other thread may use the registry or its families any more.
 */
void metrics_registry_free(struct metrics_registry *r);

/**
 * metrics_registry_add() - add a metric family.
 * @r: the registry.
 * @type: counter, gauge or histogram.
 * @name: metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`, unique in @r.
 * @help: the HELP text (escaped on output).
 * @label_names: NULL-terminated list of label names (`[a-zA-Z_][a-zA-Z0-9_]*`,
 *	not starting with "__", not "le" for histograms), or NULL for none.
 * @buckets: histogram upper bounds, strictly increasing and finite; a final
 *	+Inf is implied (and dropped if given). NULL for other types.
 * @n_buckets: number of entries in @buckets.
 * @ret: the family, owned by @r and valid until metrics_registry_free().
 *
 * Return: 0; -EINVAL for a bad name, label or bucket list; -EEXIST if the
 * name is taken; -E2BIG beyond METRICS_FAMILIES_MAX; -ENOMEM.
 */
int metrics_registry_add(struct metrics_registry *r, enum metrics_type type, const char *name,
			 const char *help, const char *const *label_names, const double *buckets,
			 size_t n_buckets, struct metrics_family **ret);

/**
 * metrics_gauge_set() - set the value of one gauge series.
 * @f: a gauge family.
 * @label_values: one value per label name, NULL-terminated (NULL if the
 *	family has no labels). Copied.
 * @value: the new value.
 *
 * Thread-safe. Creates the series on first use.
 *
 * Return: 0; -EINVAL for a wrong type, label count or over-long value;
 * -E2BIG when the series cap is reached; -ENOMEM.
 */
int metrics_gauge_set(struct metrics_family *f, const char *const *label_values, double value);

/**
 * metrics_counter_add() - add to one counter series (or, for a gauge, to
 * its value).
 * @f: a counter or gauge family.
 * @label_values: as for metrics_gauge_set().
 * @delta: amount to add; must be >= 0 for counters.
 *
 * Return: as metrics_gauge_set(); -EINVAL for a negative counter delta.
 */
int metrics_counter_add(struct metrics_family *f, const char *const *label_values, double delta);

/**
 * metrics_histogram_observe() - record one observation.
 * @f: a histogram family.
 * @label_values: as for metrics_gauge_set().
 * @value: the observed value; it lands in the first bucket whose upper
 *	bound is >= @value (Prometheus' "le" semantics).
 *
 * Thread-safe; constant time apart from the series lookup.
 *
 * Return: as metrics_gauge_set().
 */
int metrics_histogram_observe(struct metrics_family *f, const char *const *label_values,
			      double value);

/**
 * metrics_collect_fn - a collector callback, run at render time.
 * @userdata: as registered.
 * @s: add this scrape's samples with metrics_scrape_add().
 *
 * Runs with the registry's scrape lock held, so scrapes are serialized and a
 * collector never runs after metrics_collector_remove() returned. It must
 * not render, add or remove collectors (that would deadlock); updating
 * stored metrics is fine. A collector that cannot read its source simply
 * adds no samples, and its families drop out of that scrape, as the Go
 * client does.
 */
typedef void (*metrics_collect_fn)(void *userdata, struct metrics_scrape *s);

/**
 * metrics_collector_add() - register a collector.
 * @r: the registry.
 * @families: NULL-terminated list of the families @fn feeds. The collector
 *	runs only when a render includes at least one of them, so a cheap
 *	scrape (e.g. a probe's) never triggers an expensive collector.
 * @fn: the callback.
 * @userdata: passed to @fn.
 * @destroy: called with @userdata when the collector is removed or the
 *	registry freed, and on failure here; NULL if the caller keeps ownership.
 * @ret: a handle for metrics_collector_remove(), or NULL if not needed.
 *
 * Return: 0, -EINVAL (no families, a histogram, or a family of another
 * registry), -ENOMEM.
 */
int metrics_collector_add(struct metrics_registry *r, struct metrics_family *const *families,
			  metrics_collect_fn fn, void *userdata, void (*destroy)(void *userdata),
			  struct metrics_collector **ret);

/**
 * metrics_collector_remove() - unregister and free a collector.
 * @r: the registry.
 * @c: the handle, or NULL.
 *
 * Waits for a scrape in progress, so when this returns the callback is not
 * running and will not be called again: its userdata may be freed.
 */
void metrics_collector_remove(struct metrics_registry *r, struct metrics_collector *c);

/**
 * metrics_scrape_add() - add one sample for this scrape (from a collector).
 * @s: the scrape passed to the collector.
 * @f: a counter or gauge family listed when the collector was added.
 * @label_values: as for metrics_gauge_set().
 * @value: the sample value.
 *
 * Return: 0; -EINVAL (wrong family, type or labels); -E2BIG at the series
 * cap; -ENOMEM.
 */
int metrics_scrape_add(struct metrics_scrape *s, struct metrics_family *f,
		       const char *const *label_values, double value);

/**
 * metrics_registry_render() - render in the Prometheus text format 0.0.4.
 * @r: the registry.
 * @only: NULL-terminated list of families to render, or NULL for all.
 * @ret: the text, NUL-terminated, to be freed by the caller.
 * @ret_len: its length (optional).
 *
 * Runs the collectors that feed the selected families, then formats under
 * the registry lock (observations wait for the formatting only, never for a
 * collector).
 *
 * Return: 0; -E2BIG beyond METRICS_RENDER_MAX; -ENOMEM.
 */
int metrics_registry_render(struct metrics_registry *r, struct metrics_family *const *only,
			    char **ret, size_t *ret_len);

/**
 * metrics_format_value() - format a sample value as the Go client does
 * (strconv.FormatFloat(v, 'g', -1, 64); "+Inf", "-Inf", "NaN").
 * @v: the value.
 * @buf: output buffer.
 * @len: its size; 32 bytes always suffice.
 *
 * Return: @buf.
 */
const char *metrics_format_value(double v, char *buf, size_t len);
