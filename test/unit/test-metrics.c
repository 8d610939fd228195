/* SPDX-License-Identifier: Apache-2.0 */
/* metrics/: registry and text format, process metrics, driver metrics, HTTP endpoint. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "basic/fileio.h"
#include "basic/macro.h"
#include "basic/strbuf.h"
#include "metrics/http.h"
#include "metrics/metrics.h"
#include "metrics/process.h"
#include "metrics/registry.h"
#include "test.h"

#define V(...) ((const char *const[]){ __VA_ARGS__, NULL })

static char *render(struct metrics_registry *r, struct metrics_family *const *only)
{
	char *text = NULL;
	size_t len = 0;

	CHECK_INT(metrics_registry_render(r, only, &text, &len), 0);
	if (text)
		CHECK_INT(strlen(text), len);
	return text;
}

TEST(metrics_format_value)
{
	static const struct {
		double v;
		const char *s;
	} cases[] = {
		/* Expected strings are what Go's strconv.FormatFloat(v, 'g', -1, 64) prints. */
		{ 0, "0" },
		{ 1, "1" },
		{ -1, "-1" },
		{ 0.1, "0.1" },
		{ 0.25, "0.25" },
		{ 2.5, "2.5" },
		{ 120, "120" },
		{ 600, "600" },
		{ 100000, "100000" },
		{ 123456, "123456" },
		{ 1e6, "1e+06" },
		{ 1234567, "1.234567e+06" },
		{ 34359738368.0, "3.4359738368e+10" },
		{ 0.0001, "0.0001" },
		{ 0.00001, "1e-05" },
		{ 1.5e-7, "1.5e-07" },
		{ 1.0 / 3, "0.3333333333333333" },
		{ 18446744073709551615.0, "1.8446744073709552e+19" },
		{ 1795310176.37, "1.79531017637e+09" },
		{ 1e21, "1e+21" },
	};
	char buf[40];

	for (size_t i = 0; i < ELEMENTSOF(cases); i++)
		CHECK_STR(metrics_format_value(cases[i].v, buf, sizeof(buf)), cases[i].s);
	CHECK_STR(metrics_format_value(INFINITY, buf, sizeof(buf)), "+Inf");
	CHECK_STR(metrics_format_value(-INFINITY, buf, sizeof(buf)), "-Inf");
	CHECK_STR(metrics_format_value(NAN, buf, sizeof(buf)), "NaN");
}

TEST(metrics_registry_render_exact)
{
	struct metrics_registry *r = NULL;
	struct metrics_family *c = NULL, *g = NULL, *h = NULL, *empty = NULL;
	static const double buckets[] = { 0.5, 1, INFINITY };
	_cleanup_free_ char *text = NULL;

	CHECK_INT(metrics_registry_new(0, &r), 0);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_COUNTER, "zz_requests_total", "Requests.", NULL, NULL, 0, &c), 0);
	/* Labels declared out of order: output sorts them by name, as the Go client does. */
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_GAUGE, "aa_temperature", "Temperature.", V("zone", "building"),
				       NULL, 0, &g),
		  0);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_HISTOGRAM, "mm_latency_seconds", "Latency.", V("op"), buckets,
				       ELEMENTSOF(buckets), &h),
		  0);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_GAUGE, "no_samples", "Never set.", NULL, NULL, 0, &empty), 0);

	CHECK_INT(metrics_counter_add(c, NULL, 2), 0);
	CHECK_INT(metrics_counter_add(c, NULL, 1.5), 0);
	CHECK_INT(metrics_gauge_set(g, V("b", "west"), 21.5), 0);
	CHECK_INT(metrics_gauge_set(g, V("a", "east"), -3), 0);
	CHECK_INT(metrics_gauge_set(g, V("a", "east"), 19), 0); /* overwrites */
	CHECK_INT(metrics_histogram_observe(h, V("read"), 0.25), 0);
	CHECK_INT(metrics_histogram_observe(h, V("read"), 0.5), 0); /* le: lands in 0.5 */
	CHECK_INT(metrics_histogram_observe(h, V("read"), 0.75), 0);
	CHECK_INT(metrics_histogram_observe(h, V("read"), 7), 0);
	CHECK_INT(metrics_histogram_observe(h, V("write"), 1), 0);

	text = render(r, NULL);
	CHECK_STR(text, "# HELP aa_temperature Temperature.\n"
			"# TYPE aa_temperature gauge\n"
			"aa_temperature{building=\"east\",zone=\"a\"} 19\n"
			"aa_temperature{building=\"west\",zone=\"b\"} 21.5\n"
			"# HELP mm_latency_seconds Latency.\n"
			"# TYPE mm_latency_seconds histogram\n"
			"mm_latency_seconds_bucket{op=\"read\",le=\"0.5\"} 2\n"
			"mm_latency_seconds_bucket{op=\"read\",le=\"1\"} 3\n"
			"mm_latency_seconds_bucket{op=\"read\",le=\"+Inf\"} 4\n"
			"mm_latency_seconds_sum{op=\"read\"} 8.5\n"
			"mm_latency_seconds_count{op=\"read\"} 4\n"
			"mm_latency_seconds_bucket{op=\"write\",le=\"0.5\"} 0\n"
			"mm_latency_seconds_bucket{op=\"write\",le=\"1\"} 1\n"
			"mm_latency_seconds_bucket{op=\"write\",le=\"+Inf\"} 1\n"
			"mm_latency_seconds_sum{op=\"write\"} 1\n"
			"mm_latency_seconds_count{op=\"write\"} 1\n"
			"# HELP zz_requests_total Requests.\n"
			"# TYPE zz_requests_total counter\n"
			"zz_requests_total 3.5\n");
	free(text);

	/* Only selected families. */
	text = render(r, (struct metrics_family *const[]){ c, NULL });
	CHECK_STR(text, "# HELP zz_requests_total Requests.\n"
			"# TYPE zz_requests_total counter\n"
			"zz_requests_total 3.5\n");
	free(text);
	text = render(r, (struct metrics_family *const[]){ empty, NULL });
	CHECK_STR(text, "");
	metrics_registry_free(r);
}

TEST(metrics_registry_escaping)
{
	struct metrics_registry *r = NULL;
	struct metrics_family *g = NULL;
	_cleanup_free_ char *text = NULL;

	CHECK_INT(metrics_registry_new(0, &r), 0);
	/* HELP escapes backslash and newline only; label values also the double quote. */
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_GAUGE, "g", "a \\ b\nc \"q\"", V("l"), NULL, 0, &g), 0);
	CHECK_INT(metrics_gauge_set(g, V("back\\slash \"quoted\"\nnewline ü"), 1), 0);
	text = render(r, NULL);
	CHECK_STR(text, "# HELP g a \\\\ b\\nc \"q\"\n"
			"# TYPE g gauge\n"
			"g{l=\"back\\\\slash \\\"quoted\\\"\\nnewline ü\"} 1\n");
	metrics_registry_free(r);
}

TEST(metrics_registry_histogram_cumulative)
{
	static const double buckets[] = { 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 25, 50, 120, 300, 600 };
	static const double obs[] = { 0.01, 0.1, 0.2, 0.3, 0.3, 3, 700, NAN };
	struct metrics_registry *r = NULL;
	struct metrics_family *h = NULL;
	_cleanup_free_ char *text = NULL;
	long long prev = -1;
	const char *p;
	int lines = 0;

	CHECK_INT(metrics_registry_new(0, &r), 0);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_HISTOGRAM, "h", "H.", NULL, buckets, ELEMENTSOF(buckets), &h), 0);
	for (size_t i = 0; i < ELEMENTSOF(obs); i++)
		CHECK_INT(metrics_histogram_observe(h, NULL, obs[i]), 0);
	text = render(r, NULL);
	CHECK(strstr(text, "h_bucket{le=\"0.1\"} 2\n"));
	CHECK(strstr(text, "h_bucket{le=\"0.25\"} 3\n"));
	CHECK(strstr(text, "h_bucket{le=\"0.5\"} 5\n"));
	CHECK(strstr(text, "h_bucket{le=\"5\"} 6\n"));
	CHECK(strstr(text, "h_bucket{le=\"600\"} 6\n"));
	CHECK(strstr(text, "h_bucket{le=\"+Inf\"} 8\n")); /* 700 and NaN */
	CHECK(strstr(text, "h_count 8\n"));
	CHECK(strstr(text, "h_sum NaN\n"));
	/* Monotonic, and one line per bucket plus +Inf. */
	for (p = strstr(text, "h_bucket"); p; p = strstr(p + 1, "h_bucket")) {
		long long v = strtoll(strchr(p, ' ') + 1, NULL, 10);
		CHECK(v >= prev);
		prev = v;
		lines++;
	}
	CHECK_INT(lines, ELEMENTSOF(buckets) + 1);
	metrics_registry_free(r);
}

TEST(metrics_registry_validation)
{
	struct metrics_registry *r = NULL;
	struct metrics_family *g = NULL, *c = NULL, *h = NULL, *x = NULL;
	static const double one[] = { 1 }, bad_order[] = { 1, 1 }, nan_bucket[] = { NAN };
	char long_value[METRICS_LABEL_VALUE_MAX + 2];

	CHECK_INT(metrics_registry_new(0, &r), 0);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_GAUGE, "g", "G.", V("a", "b"), NULL, 0, &g), 0);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_COUNTER, "ns:c_total", "C.", NULL, NULL, 0, &c), 0);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_HISTOGRAM, "h", "H.", NULL, one, 1, &h), 0);

	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_GAUGE, "g", "dup", NULL, NULL, 0, &x), -EEXIST);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_GAUGE, "1abc", "x", NULL, NULL, 0, &x), -EINVAL);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_GAUGE, "a-b", "x", NULL, NULL, 0, &x), -EINVAL);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_GAUGE, "", "x", NULL, NULL, 0, &x), -EINVAL);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_GAUGE, "x", "x", V("a:b"), NULL, 0, &x), -EINVAL);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_GAUGE, "x", "x", V("__reserved"), NULL, 0, &x), -EINVAL);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_GAUGE, "x", "x", V("a", "a"), NULL, 0, &x), -EINVAL);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_GAUGE, "x", "x", NULL, one, 1, &x), -EINVAL);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_HISTOGRAM, "x", "x", V("le"), one, 1, &x), -EINVAL);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_HISTOGRAM, "x", "x", NULL, NULL, 0, &x), -EINVAL);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_HISTOGRAM, "x", "x", NULL, bad_order, 2, &x), -EINVAL);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_HISTOGRAM, "x", "x", NULL, nan_bucket, 1, &x), -EINVAL);

	CHECK_INT(metrics_gauge_set(g, V("only-one"), 1), -EINVAL);
	CHECK_INT(metrics_gauge_set(g, V("1", "2", "3"), 1), -EINVAL);
	CHECK_INT(metrics_gauge_set(g, NULL, 1), -EINVAL);
	CHECK_INT(metrics_gauge_set(g, V("\xff", "x"), 1), -EINVAL);       /* not UTF-8 */
	CHECK_INT(metrics_gauge_set(g, V("\xc0\xaf", "x"), 1), -EINVAL);   /* overlong */
	CHECK_INT(metrics_gauge_set(g, V("\xed\xa0\x80", "x"), 1), -EINVAL); /* surrogate */
	memset(long_value, 'x', sizeof(long_value) - 1);
	long_value[sizeof(long_value) - 1] = 0;
	CHECK_INT(metrics_gauge_set(g, V(long_value, "x"), 1), -EINVAL);
	long_value[METRICS_LABEL_VALUE_MAX] = 0;
	CHECK_INT(metrics_gauge_set(g, V(long_value, "x"), 1), 0);
	CHECK_INT(metrics_counter_add(c, NULL, -1), -EINVAL);
	CHECK_INT(metrics_counter_add(c, NULL, NAN), -EINVAL);
	CHECK_INT(metrics_counter_add(g, V("a", "b"), -1), 0); /* gauges may go down */
	CHECK_INT(metrics_gauge_set(c, NULL, 1), -EINVAL);
	CHECK_INT(metrics_histogram_observe(g, V("a", "b"), 1), -EINVAL);
	CHECK_INT(metrics_gauge_set(h, NULL, 1), -EINVAL);
	metrics_registry_free(r);
}

TEST(metrics_registry_series_limit)
{
	struct metrics_registry *r = NULL;
	struct metrics_family *g = NULL, *h = NULL;
	static const double one[] = { 1 };
	_cleanup_free_ char *text = NULL;

	CHECK_INT(metrics_registry_new(3, &r), 0);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_GAUGE, "g", "G.", V("k"), NULL, 0, &g), 0);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_HISTOGRAM, "h", "H.", V("k"), one, 1, &h), 0);
	CHECK_INT(metrics_gauge_set(g, V("1"), 1), 0);
	CHECK_INT(metrics_gauge_set(g, V("2"), 2), 0);
	CHECK_INT(metrics_histogram_observe(h, V("1"), 0.5), 0);
	/* The cap is per registry, over all families. */
	CHECK_INT(metrics_gauge_set(g, V("3"), 3), -E2BIG);
	CHECK_INT(metrics_histogram_observe(h, V("2"), 0.5), -E2BIG);
	/* Existing series keep working. */
	CHECK_INT(metrics_gauge_set(g, V("1"), 10), 0);
	CHECK_INT(metrics_histogram_observe(h, V("1"), 2), 0);
	text = render(r, NULL);
	CHECK(strstr(text, "g{k=\"1\"} 10\n"));
	CHECK(!strstr(text, "k=\"3\""));
	CHECK(strstr(text, "h_count{k=\"1\"} 2\n"));
	metrics_registry_free(r);
}

struct test_collector {
	struct metrics_family *f;
	int calls;
	int destroyed;
	double value;
};

static void test_collect(void *userdata, struct metrics_scrape *s)
{
	struct test_collector *t = userdata;

	t->calls++;
	CHECK_INT(metrics_scrape_add(s, t->f, V("x"), t->value), 0);
	CHECK_INT(metrics_scrape_add(s, t->f, V("x"), t->value), -EEXIST);
	CHECK_INT(metrics_scrape_add(s, t->f, V("y"), 2), 0);
	CHECK_INT(metrics_scrape_add(s, t->f, NULL, 2), -EINVAL);
}

static void test_collector_destroy(void *userdata)
{
	struct test_collector *t = userdata;

	t->destroyed++;
}

TEST(metrics_registry_collectors)
{
	struct metrics_registry *r = NULL;
	struct metrics_family *on_scrape = NULL, *other = NULL;
	struct metrics_collector *handle = NULL;
	struct test_collector t = { .value = 1e6 };
	_cleanup_free_ char *text = NULL;

	CHECK_INT(metrics_registry_new(0, &r), 0);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_GAUGE, "scraped", "S.", V("k"), NULL, 0, &on_scrape), 0);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_GAUGE, "other", "O.", NULL, NULL, 0, &other), 0);
	CHECK_INT(metrics_gauge_set(other, NULL, 5), 0);
	t.f = on_scrape;
	CHECK_INT(metrics_collector_add(r, (struct metrics_family *const[]){ on_scrape, NULL }, test_collect, &t,
					test_collector_destroy, &handle),
		  0);

	text = render(r, NULL);
	CHECK_INT(t.calls, 1);
	CHECK_STR(text, "# HELP other O.\n"
			"# TYPE other gauge\n"
			"other 5\n"
			"# HELP scraped S.\n"
			"# TYPE scraped gauge\n"
			"scraped{k=\"x\"} 1e+06\n"
			"scraped{k=\"y\"} 2\n");
	free(text);

	/* A render that does not include the collector's families does not run it. */
	text = render(r, (struct metrics_family *const[]){ other, NULL });
	CHECK_INT(t.calls, 1);
	CHECK(!strstr(text, "scraped"));
	free(text);

	/* Samples are per scrape: new values next time, nothing stored. */
	t.value = 7;
	text = render(r, NULL);
	CHECK_INT(t.calls, 2);
	CHECK(strstr(text, "scraped{k=\"x\"} 7\n"));
	free(text);

	metrics_collector_remove(r, handle);
	CHECK_INT(t.destroyed, 1);
	text = render(r, NULL);
	CHECK_INT(t.calls, 2);
	CHECK(!strstr(text, "scraped"));

	/* A collector may not feed a histogram or a family of another registry; destroy runs on failure. */
	{
		struct metrics_registry *r2 = NULL;
		struct metrics_family *h = NULL;
		static const double one[] = { 1 };

		CHECK_INT(metrics_registry_new(0, &r2), 0);
		CHECK_INT(metrics_registry_add(r2, METRICS_TYPE_HISTOGRAM, "h", "H.", NULL, one, 1, &h), 0);
		CHECK_INT(metrics_collector_add(r, (struct metrics_family *const[]){ h, NULL }, test_collect, &t,
						test_collector_destroy, NULL),
			  -EINVAL);
		CHECK_INT(metrics_collector_add(r2, (struct metrics_family *const[]){ h, NULL }, test_collect, &t,
						test_collector_destroy, NULL),
			  -EINVAL);
		CHECK_INT(t.destroyed, 3);
		metrics_registry_free(r2);
	}
	metrics_registry_free(r);
}

struct slow_collector {
	struct metrics_registry *registry;
	struct metrics_family *f;
	int started;
	int finished;
};

static void slow_collect(void *userdata, struct metrics_scrape *s)
{
	struct slow_collector *sc = userdata;

	__atomic_store_n(&sc->started, 1, __ATOMIC_SEQ_CST);
	usleep(200 * 1000);
	metrics_scrape_add(s, sc->f, NULL, 1);
	__atomic_store_n(&sc->finished, 1, __ATOMIC_SEQ_CST);
}

static void *render_thread(void *p)
{
	struct slow_collector *sc = p;
	char *text = NULL;

	CHECK_INT(metrics_registry_render(sc->registry, NULL, &text, NULL), 0);
	CHECK(text && strstr(text, "slow 1\n"));
	free(text);
	return NULL;
}

TEST(metrics_registry_collector_remove_waits)
{
	struct slow_collector sc = {};
	struct metrics_collector *handle = NULL;
	pthread_t th;

	CHECK_INT(metrics_registry_new(0, &sc.registry), 0);
	CHECK_INT(metrics_registry_add(sc.registry, METRICS_TYPE_GAUGE, "slow", "S.", NULL, NULL, 0, &sc.f), 0);
	CHECK_INT(metrics_collector_add(sc.registry, (struct metrics_family *const[]){ sc.f, NULL }, slow_collect, &sc,
					NULL, &handle),
		  0);
	CHECK_INT(pthread_create(&th, NULL, render_thread, &sc), 0);
	while (!__atomic_load_n(&sc.started, __ATOMIC_SEQ_CST))
		usleep(1000);
	/* Observations do not wait for a slow collector... */
	{
		struct metrics_family *g = NULL;
		struct timespec a, b;

		CHECK_INT(metrics_registry_add(sc.registry, METRICS_TYPE_GAUGE, "fast", "F.", NULL, NULL, 0, &g), 0);
		clock_gettime(CLOCK_MONOTONIC, &a);
		CHECK_INT(metrics_gauge_set(g, NULL, 1), 0);
		clock_gettime(CLOCK_MONOTONIC, &b);
		CHECK(b.tv_sec - a.tv_sec < 1 && !__atomic_load_n(&sc.finished, __ATOMIC_SEQ_CST));
	}
	/* ...but removing the collector does, so its userdata may be freed afterwards. */
	metrics_collector_remove(sc.registry, handle);
	CHECK_INT(__atomic_load_n(&sc.finished, __ATOMIC_SEQ_CST), 1);
	pthread_join(th, NULL);
	metrics_registry_free(sc.registry);
}

TEST(metrics_registry_render_limit)
{
	static const char *const names[] = { "l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "l9", "la",
					     "lb", "lc", "ld", "le", "lf", NULL };
	struct metrics_registry *r = NULL;
	struct metrics_family *g = NULL;
	const char *values[17];
	char v[1001], id[32];
	char *text = NULL;
	int res = 0;

	/* 16 labels of 1000 bytes: about 16 KB a line, so ~1100 series pass METRICS_RENDER_MAX. */
	CHECK_INT(metrics_registry_new(0, &r), 0);
	CHECK_INT(metrics_registry_add(r, METRICS_TYPE_GAUGE, "big", "B.", names, NULL, 0, &g), 0);
	memset(v, 'v', sizeof(v) - 1);
	v[sizeof(v) - 1] = 0;
	for (int i = 0; i < 16; i++)
		values[i] = v;
	values[16] = NULL;
	values[0] = id;
	for (int i = 0; i < 1200 && res == 0; i++) {
		snprintf(id, sizeof(id), "%d", i);
		res = metrics_gauge_set(g, values, i);
	}
	CHECK_INT(res, 0);
	CHECK_INT(metrics_registry_render(r, NULL, &text, NULL), -E2BIG);
	CHECK(!text);
	metrics_registry_free(r);
}

struct observer_arg {
	struct metrics *m;
	int n;
};

static void *observer_thread(void *p)
{
	struct observer_arg *a = p;

	for (int i = 0; i < a->n; i++)
		metrics_observe_call(a->m, i % 2 ? "CreateVolume" : "/csi.v1.Node/NodeStageVolume", "OK", 0.001 * (i % 7));
	return NULL;
}

TEST(metrics_observe_threads)
{
	struct metrics *m = NULL;
	struct observer_arg a;
	pthread_t th[8];
	_cleanup_free_ char *text = NULL;
	char *p;

	CHECK_INT(metrics_new("pmem-csi.intel.com", "node-1", "v1.2.3", &m), 0);
	a.m = m;
	a.n = 20000;
	for (size_t i = 0; i < ELEMENTSOF(th); i++)
		CHECK_INT(pthread_create(&th[i], NULL, observer_thread, &a), 0);
	/* Scrape concurrently with the observers. */
	for (int i = 0; i < 20; i++) {
		char *t = NULL;
		CHECK_INT(metrics_render(m, false, &t, NULL), 0);
		free(t);
	}
	for (size_t i = 0; i < ELEMENTSOF(th); i++)
		pthread_join(th[i], NULL);
	CHECK_INT(metrics_render(m, false, &text, NULL), 0);
	p = strstr(text, "csi_plugin_operations_seconds_count{driver_name=\"pmem-csi.intel.com\",grpc_status_code=\"OK\","
			 "method_name=\"/csi.v1.Controller/CreateVolume\"} ");
	CHECK(p);
	if (p)
		CHECK_INT(strtoll(strchr(p, '}') + 2, NULL, 10), 8 * 20000 / 2);
	CHECK(strstr(text, "csi_plugin_operations_seconds_count{driver_name=\"pmem-csi.intel.com\",grpc_status_code=\"OK\","
			   "method_name=\"/csi.v1.Node/NodeStageVolume\"} 80000\n"));
	metrics_free(m);
}

static bool has_line_starting(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, prefix, n) == 0)
			return true;
	return false;
}

static double sample_value(const char *text, const char *name)
{
	char key[128];
	const char *p;

	snprintf(key, sizeof(key), "\n%s ", name);
	p = strstr(text, key);
	return p ? strtod(p + strlen(key), NULL) : -1;
}

TEST(metrics_process)
{
	struct metrics_process_stats st;
	struct metrics_registry *r = NULL;
	_cleanup_free_ char *text = NULL;
	double now = (double)time(NULL);
	int fds = 0;
	DIR *d;

	CHECK_INT(metrics_process_read(&st), 0);
	CHECK(st.cpu_seconds >= 0 && st.cpu_seconds < 3600);
	CHECK(st.resident_bytes > 1024 * 1024);
	CHECK(st.virtual_bytes >= st.resident_bytes);
	CHECK(st.open_fds >= 3);
	CHECK((double)st.open_fds <= st.max_fds);
	CHECK(st.max_virtual_bytes > 0);
	/* Started less than ten minutes ago, and not in the future (1 s tick granularity). */
	CHECK(st.start_time_seconds <= now + 1 && st.start_time_seconds > now - 600);
	d = opendir("/proc/self/fd");
	CHECK(d);
	if (d) {
		while (readdir(d))
			fds++;
		closedir(d);
		/* "." and ".." not counted; both counts include a directory fd. */
		CHECK_INT(st.open_fds, fds - 2);
	}

	CHECK_INT(metrics_registry_new(0, &r), 0);
	CHECK_INT(metrics_process_register(r), 0);
	text = render(r, NULL);
	CHECK(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
	CHECK(strstr(text, "# TYPE process_resident_memory_bytes gauge\n"));
	CHECK(sample_value(text, "process_resident_memory_bytes") > 1024 * 1024);
	CHECK(sample_value(text, "process_virtual_memory_bytes") > 1024 * 1024);
	CHECK(sample_value(text, "process_open_fds") >= 3);
	CHECK(sample_value(text, "process_max_fds") >= 3);
	CHECK(sample_value(text, "process_start_time_seconds") > 1e9);
	CHECK(sample_value(text, "process_cpu_seconds_total") >= 0);
	CHECK(sample_value(text, "process_virtual_memory_max_bytes") > 0);
	metrics_registry_free(r);
}

static void fake_capacity(void *userdata, uint64_t *available, uint64_t *managed, uint64_t *max_volume_size,
			  uint64_t *total)
{
	int *calls = userdata;

	(*calls)++;
	*available = 3ULL << 30;
	*managed = 32ULL << 30;
	*max_volume_size = 1ULL << 30;
	*total = 34359738368ULL;
}

TEST(metrics_driver)
{
	struct metrics *m = NULL;
	_cleanup_free_ char *text = NULL;
	int calls = 0;

	CHECK_INT(metrics_new("pmem-csi.intel.com", "node \"1\"", "v1.0.0-7-gabc", &m), 0);
	CHECK_STR(metrics_csi_method_path("NodeGetInfo"), "/csi.v1.Node/NodeGetInfo");
	CHECK_STR(metrics_csi_method_path("Probe"), "/csi.v1.Identity/Probe");
	CHECK(!metrics_csi_method_path("Nope"));

	metrics_observe_call(m, "CreateVolume", "OK", 0.3);
	metrics_observe_call(m, "/csi.v1.Controller/CreateVolume", "OK", 0.7);
	metrics_observe_call(m, "CreateVolume", "InvalidArgument", 0.001);
	metrics_observe_call(m, "/custom.Service/Method", "Unimplemented", 0.001);
	metrics_observe_call(m, "\xff", "OK", 1); /* dropped: not UTF-8 */

	/* No capacity source yet: no pmem_amount_* at all (upstream registers the collector after setup). */
	CHECK_INT(metrics_render(m, false, &text, NULL), 0);
	CHECK(!strstr(text, "pmem_amount"));
	CHECK(strstr(text, "# HELP build_info A metric with a constant '1' value labeled by version.\n"
			   "# TYPE build_info gauge\n"
			   "build_info{version=\"v1.0.0-7-gabc\"} 1\n"));
	CHECK(strstr(text, "# HELP csi_plugin_operations_seconds [ALPHA] Container Storage Interface operation "
			   "duration with gRPC error code status total\n"
			   "# TYPE csi_plugin_operations_seconds histogram\n"));
	CHECK(strstr(text, "csi_plugin_operations_seconds_bucket{driver_name=\"pmem-csi.intel.com\",grpc_status_code="
			   "\"InvalidArgument\",method_name=\"/csi.v1.Controller/CreateVolume\",le=\"0.1\"} 1\n"));
	CHECK(strstr(text, "csi_plugin_operations_seconds_bucket{driver_name=\"pmem-csi.intel.com\",grpc_status_code="
			   "\"OK\",method_name=\"/csi.v1.Controller/CreateVolume\",le=\"0.25\"} 0\n"));
	CHECK(strstr(text, "csi_plugin_operations_seconds_bucket{driver_name=\"pmem-csi.intel.com\",grpc_status_code="
			   "\"OK\",method_name=\"/csi.v1.Controller/CreateVolume\",le=\"0.5\"} 1\n"));
	CHECK(strstr(text, "csi_plugin_operations_seconds_bucket{driver_name=\"pmem-csi.intel.com\",grpc_status_code="
			   "\"OK\",method_name=\"/csi.v1.Controller/CreateVolume\",le=\"600\"} 2\n"));
	CHECK(strstr(text, "csi_plugin_operations_seconds_sum{driver_name=\"pmem-csi.intel.com\",grpc_status_code="
			   "\"OK\",method_name=\"/csi.v1.Controller/CreateVolume\"} 1\n"));
	CHECK(strstr(text, "method_name=\"/custom.Service/Method\""));
	CHECK(strstr(text, "process_open_fds "));
	free(text);

	metrics_set_capacity_source(m, fake_capacity, &calls);
	CHECK_INT(metrics_render(m, false, &text, NULL), 0);
	CHECK_INT(calls, 1);
	CHECK(strstr(text, "# HELP pmem_amount_available Remaining amount of PMEM on the host that can be used for new "
			   "volumes.\n# TYPE pmem_amount_available gauge\n"
			   "pmem_amount_available{driver_name=\"pmem-csi.intel.com\",node=\"node \\\"1\\\"\"} "
			   "3.221225472e+09\n"));
	CHECK(strstr(text, "pmem_amount_managed{driver_name=\"pmem-csi.intel.com\",node=\"node \\\"1\\\"\"} "
			   "3.4359738368e+10\n"));
	CHECK(strstr(text, "pmem_amount_max_volume_size{driver_name=\"pmem-csi.intel.com\",node=\"node \\\"1\\\"\"} "
			   "1.073741824e+09\n"));
	CHECK(strstr(text, "pmem_amount_total{driver_name=\"pmem-csi.intel.com\",node=\"node \\\"1\\\"\"} "
			   "3.4359738368e+10\n"));
	free(text);

	/* simple: build_info only, and no capacity query. */
	CHECK_INT(metrics_render(m, true, &text, NULL), 0);
	CHECK_INT(calls, 1);
	CHECK_STR(text, "# HELP build_info A metric with a constant '1' value labeled by version.\n"
			"# TYPE build_info gauge\n"
			"build_info{version=\"v1.0.0-7-gabc\"} 1\n");
	free(text);

	metrics_set_capacity_source(m, NULL, NULL);
	CHECK_INT(metrics_render(m, false, &text, NULL), 0);
	CHECK_INT(calls, 1);
	CHECK(!strstr(text, "pmem_amount"));
	metrics_free(m);

	/* csi-lib-utils' default for an empty driver name. */
	CHECK_INT(metrics_new("", "n", "v", &m), 0);
	metrics_observe_call(m, "Probe", "OK", 0.01);
	free(text);
	CHECK_INT(metrics_render(m, false, &text, NULL), 0);
	CHECK(strstr(text, "driver_name=\"unknown-driver\""));
	metrics_free(m);
}

/* HTTP ------------------------------------------------------------------------ */

struct http_reply {
	int status;
	char headers[4096];
	char *body;
	size_t body_len;
};

static void http_reply_done(struct http_reply *r)
{
	free(r->body);
	r->body = NULL;
}

/* A minimal HTTP/1.1 client: one request, "Connection: close", read to EOF. */
static int http_request(uint16_t port, const char *request, struct http_reply *ret)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct timeval tv = { .tv_sec = 10 };
	struct strbuf b = STRBUF_INIT;
	_cleanup_close_ int fd = -1;
	const char *end, *text;
	size_t off = 0, len = strlen(request);
	char buf[4096];
	ssize_t n;

	memset(ret, 0, sizeof(*ret));
	ret->status = -1;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	while (off < len) {
		n = send(fd, request + off, len - off, MSG_NOSIGNAL);
		if (n < 0)
			break; /* the server may close early (oversized headers); read what it said */
		off += (size_t)n;
	}
	for (;;) {
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		strbuf_append(&b, buf, (size_t)n);
	}
	text = strbuf_str(&b);
	if (strncmp(text, "HTTP/1.1 ", 9) == 0)
		ret->status = (int)strtol(text + 9, NULL, 10);
	end = strstr(text, "\r\n\r\n");
	if (end) {
		size_t hl = MIN((size_t)(end - text), sizeof(ret->headers) - 1);
		memcpy(ret->headers, text, hl);
		ret->headers[hl] = 0;
		ret->body_len = strbuf_len(&b) - (size_t)(end + 4 - text);
		ret->body = strndup(end + 4, ret->body_len);
	}
	strbuf_free(&b);
	return 0;
}

static int http_get(uint16_t port, const char *path, struct http_reply *ret)
{
	char req[512];

	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\nConnection: close\r\n\r\n",
		 path);
	return http_request(port, req, ret);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static bool ready_value;

static bool test_ready(void *userdata)
{
	return *(bool *)userdata;
}

TEST(metrics_http_round_trip)
{
	struct metrics *m = NULL;
	struct metrics_http *h = NULL;
	struct http_reply rep;
	uint16_t port;
	int calls = 0, fds_before, r;

	CHECK_INT(metrics_new("pmem-csi.intel.com", "node-1", "v9", &m), 0);
	metrics_set_capacity_source(m, fake_capacity, &calls);
	metrics_observe_call(m, "NodeGetInfo", "OK", 0.002);
	fds_before = count_fds();
	r = metrics_http_start(m, "127.0.0.1:0", "/metrics", &h);
	CHECK_INT(r, 0);
	if (r < 0) {
		metrics_free(m);
		return;
	}
	port = metrics_http_port(h);
	CHECK(port > 0);

	CHECK_INT(http_get(port, "/metrics", &rep), 0);
	CHECK_INT(rep.status, 200);
	CHECK(strstr(rep.headers, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"));
	CHECK(rep.body && strstr(rep.body, "build_info{version=\"v9\"} 1\n"));
	CHECK(rep.body && strstr(rep.body, "csi_plugin_operations_seconds_bucket{driver_name=\"pmem-csi.intel.com\","
					   "grpc_status_code=\"OK\",method_name=\"/csi.v1.Node/NodeGetInfo\",le=\"0.1\"} 1\n"));
	CHECK(rep.body && strstr(rep.body, "pmem_amount_total{driver_name=\"pmem-csi.intel.com\",node=\"node-1\"} "
					   "3.4359738368e+10\n"));
	CHECK(rep.body && strstr(rep.body, "\nprocess_open_fds "));
	CHECK_INT(calls, 1);
	http_reply_done(&rep);

	/* Query strings do not change the route. */
	CHECK_INT(http_get(port, "/metrics?foo=bar", &rep), 0);
	CHECK_INT(rep.status, 200);
	http_reply_done(&rep);

	/* simple: only build_info, and no capacity query behind it. */
	CHECK_INT(http_get(port, "/metrics/simple", &rep), 0);
	CHECK_INT(rep.status, 200);
	CHECK(strstr(rep.headers, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"));
	CHECK_STR(rep.body, "# HELP build_info A metric with a constant '1' value labeled by version.\n"
			    "# TYPE build_info gauge\n"
			    "build_info{version=\"v9\"} 1\n");
	CHECK(rep.body && !has_line_starting(rep.body, "process_"));
	CHECK_INT(calls, 2);
	http_reply_done(&rep);

	/* /healthz: not ready until told otherwise. */
	CHECK_INT(http_get(port, "/healthz", &rep), 0);
	CHECK_INT(rep.status, 503);
	CHECK_STR(rep.body, "not ready");
	http_reply_done(&rep);
	ready_value = false;
	metrics_http_set_readiness(h, test_ready, &ready_value);
	CHECK_INT(http_get(port, "/healthz", &rep), 0);
	CHECK_INT(rep.status, 503);
	http_reply_done(&rep);
	ready_value = true;
	CHECK_INT(http_get(port, "/healthz", &rep), 0);
	CHECK_INT(rep.status, 200);
	CHECK_STR(rep.body, "ok");
	http_reply_done(&rep);
	metrics_http_set_readiness(h, NULL, NULL);
	CHECK_INT(http_get(port, "/healthz", &rep), 0);
	CHECK_INT(rep.status, 200);
	http_reply_done(&rep);

	CHECK_INT(http_get(port, "/", &rep), 0);
	CHECK_INT(rep.status, 404);
	http_reply_done(&rep);
	CHECK_INT(http_get(port, "/metricsx", &rep), 0);
	CHECK_INT(rep.status, 404);
	http_reply_done(&rep);
	CHECK_INT(http_get(port, "/metrics/simple/x", &rep), 0);
	CHECK_INT(rep.status, 404);
	http_reply_done(&rep);

	CHECK_INT(http_request(port,
			       "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
			       &rep),
		  0);
	CHECK_INT(rep.status, 405);
	CHECK(strstr(rep.headers, "\r\nAllow: GET, HEAD"));
	http_reply_done(&rep);
	CHECK_INT(http_request(port, "DELETE /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &rep), 0);
	CHECK_INT(rep.status, 405);
	http_reply_done(&rep);

	/* HEAD: the headers of a GET, no body. */
	CHECK_INT(http_request(port, "HEAD /metrics/simple HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &rep), 0);
	CHECK_INT(rep.status, 200);
	CHECK_INT(rep.body_len, 0);
	http_reply_done(&rep);

	/* Oversized request headers are refused, and the server keeps serving. */
	{
		size_t big = 64 * 1024;
		char *req = malloc(big + 256);
		CHECK(req);
		if (req) {
			int n = snprintf(req, 256, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ");
			memset(req + n, 'a', big);
			memcpy(req + n + big, "\r\nConnection: close\r\n\r\n", sizeof("\r\nConnection: close\r\n\r\n"));
			CHECK_INT(http_request(port, req, &rep), 0);
			CHECK(rep.status != 200);
			if (rep.status > 0)
				CHECK(rep.status == 431 || rep.status == 413);
			http_reply_done(&rep);
			free(req);
		}
		CHECK_INT(http_get(port, "/healthz", &rep), 0);
		CHECK_INT(rep.status, 200);
		http_reply_done(&rep);
	}

	/* Keep-alive: two requests on one connection (pipelined), the first one kept open. */
	CHECK_INT(http_request(port,
			       "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
			       "GET /metrics/simple HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			       &rep),
		  0);
	CHECK_INT(rep.status, 200);
	CHECK(!strstr(rep.headers, "Connection: close"));
	CHECK(rep.body && strstr(rep.body, "ok" "HTTP/1.1 200"));
	CHECK(rep.body && strstr(rep.body, "build_info{version=\"v9\"} 1\n"));
	http_reply_done(&rep);

	/* A GET with a body: the connection is closed without an answer. */
	CHECK_INT(http_request(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", &rep), 0);
	CHECK_INT(rep.status, -1);
	http_reply_done(&rep);

	metrics_http_stop(h);
	/* The listening socket and the server's internal fds are gone. */
	CHECK_INT(count_fds(), fds_before);
	CHECK(http_get(port, "/healthz", &rep) < 0);
	http_reply_done(&rep);
	metrics_free(m);
}

TEST(metrics_http_listen_addresses)
{
	static const char *const bad[] = { "", "10010", "1.2.3.4:70000", "::1:80", "[::1:80", "host:abc", ":-1",
					   "[]x:80", "a]:80" };
	struct metrics *m = NULL;
	struct metrics_http *h = NULL, *h2 = NULL;
	struct http_reply rep;
	char addr[64];
	int r;

	CHECK_INT(metrics_new("d", "n", "v", &m), 0);
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		r = metrics_http_start(m, bad[i], "/metrics", &h);
		if (r != -EINVAL)
			fprintf(stderr, "  listen \"%s\" -> %d\n", bad[i], r);
		CHECK_INT(r, -EINVAL);
	}
	CHECK_INT(metrics_http_start(m, ":0", "metrics", &h), -EINVAL);

	/* All addresses, reachable over IPv4 loopback; path "/" puts simple at "/simple". */
	CHECK_INT(metrics_http_start(m, ":0", "/", &h), 0);
	if (h) {
		CHECK_INT(http_get(metrics_http_port(h), "/", &rep), 0);
		CHECK_INT(rep.status, 200);
		http_reply_done(&rep);
		CHECK_INT(http_get(metrics_http_port(h), "/simple", &rep), 0);
		CHECK_INT(rep.status, 200);
		CHECK(rep.body && strstr(rep.body, "build_info"));
		CHECK(rep.body && !strstr(rep.body, "process_"));
		http_reply_done(&rep);

		/* The port is taken now. */
		snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)metrics_http_port(h));
		CHECK_INT(metrics_http_start(m, addr, "/metrics", &h2), -EADDRINUSE);
		metrics_http_stop(h);
	}

	CHECK_INT(metrics_http_start(m, "localhost:0", "/metrics", &h), 0);
	metrics_http_stop(h);
	h = NULL;
	r = metrics_http_start(m, "[::1]:0", "/metrics", &h);
	if (r == -EADDRNOTAVAIL || r == -EAFNOSUPPORT)
		printf("  (IPv6 loopback not available here: [::1] not tested)\n");
	else
		CHECK_INT(r, 0);
	metrics_http_stop(h);
	metrics_free(m);
}

static void doc_capacity(void *ud, uint64_t *available, uint64_t *managed, uint64_t *max_volume_size,
			  uint64_t *total)
{
	*available = 1;
	*managed = 2;
	*max_volume_size = 3;
	*total = 4;
}

static void fake_unowned(void *ud, uint64_t *unreadable_state, uint64_t *no_state)
{
	*unreadable_state = 2;
	*no_state = 5;
}

/* Every family the driver exposes is in docs/metrics.md (keeps the docs in step). */
TEST(metrics_documented)
{
	struct metrics *m = NULL;
	_cleanup_free_ char *text = NULL, *doc = NULL;
	size_t len = 0;
	int families = 0;

	CHECK_INT(metrics_new("pmem-csi.intel.com", "n1", "v1", &m), 0);
	metrics_set_capacity_source(m, doc_capacity, NULL);
	metrics_set_unowned_source(m, fake_unowned, NULL);
	metrics_observe_call(m, "CreateVolume", "OK", 0.3);
	CHECK_INT(metrics_render(m, false, &text, NULL), 0);
	CHECK(strstr(text, "pmem_csi_unowned_devices{driver_name=\"pmem-csi.intel.com\",node=\"n1\",reason="
			   "\"unreadable_state\"} 2\n"));
	CHECK(strstr(text, "pmem_csi_unowned_devices{driver_name=\"pmem-csi.intel.com\",node=\"n1\",reason="
			   "\"no_state\"} 5\n"));
	CHECK_INT(read_file_limited(DOCS_DIR "/metrics.md", 1 << 20, &doc, &len), 0);
	for (const char *p = text; doc && (p = strstr(p, "# TYPE ")); p++) {
		char name[128], quoted[132];
		size_t n = strcspn(p + 7, " \n");

		if (n >= sizeof(name))
			continue;
		memcpy(name, p + 7, n);
		name[n] = 0;
		snprintf(quoted, sizeof(quoted), "`%s`", name);
		families++;
		if (!strstr(doc, quoted)) {
			fprintf(stderr, "  metric %s is not in docs/metrics.md\n", name);
			test_failures++;
		}
	}
	CHECK(families >= 10);
	metrics_set_capacity_source(m, NULL, NULL);
	metrics_set_unowned_source(m, NULL, NULL);
	metrics_free(m);
}
