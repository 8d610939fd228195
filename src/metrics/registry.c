/* SPDX-License-Identifier: Apache-2.0 */
#include "registry.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/macro.h"
#include "basic/strbuf.h"

struct metrics_series {
	char **label_values; /* n_labels copies, in the family's label order */
	uint64_t hash;
	double value;     /* counter, gauge */
	double sum;       /* histogram */
	uint64_t count;   /* histogram */
	uint64_t *counts; /* histogram: per bucket, not cumulative; +Inf is count */
};

struct metrics_family {
	struct metrics_registry *registry;
	enum metrics_type type;
	char *name;
	char *help;
	char **label_names;
	size_t n_labels;
	/* Label positions in name order: the Go client prints (and sorts by)
	 * labels sorted by name, whatever order they were declared in. */
	size_t order[METRICS_LABELS_MAX];
	double *buckets;
	size_t n_buckets;
	struct metrics_series **series;
	size_t n_series;
	size_t cap_series;
};

struct metrics_collector {
	struct metrics_collector *next;
	struct metrics_family **families;
	size_t n_families;
	metrics_collect_fn fn;
	void *userdata;
	void (*destroy)(void *userdata);
};

struct metrics_registry {
	/* Lock order: scrape_lock, then lock. Observations take only lock, so
	 * a slow collector never delays a gRPC call's bookkeeping. */
	pthread_mutex_t lock;        /* families and their series */
	pthread_mutex_t scrape_lock; /* serializes renders; guards collectors */
	struct metrics_family **families;
	size_t n_families;
	struct metrics_collector *collectors;
	size_t max_series;
	size_t n_series;
};

struct scrape_sample {
	struct metrics_family *family;
	char **label_values;
	uint64_t hash;
	double value;
};

struct metrics_scrape {
	struct metrics_registry *registry;
	struct metrics_collector *collector;
	struct scrape_sample *samples;
	size_t n_samples;
	size_t cap_samples;
};

/* Validation ------------------------------------------------------------------ */

static bool valid_name(const char *s, bool colon)
{
	if (!s || !*s)
		return false;
	for (size_t i = 0; s[i]; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
			  (i > 0 && c >= '0' && c <= '9');
		if (!ok || i >= 200)
			return false;
	}
	return true;
}

/* Prometheus requires label values to be UTF-8; reject what a scraper would choke on. */
static bool valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		unsigned char c = *p;
		size_t n;
		uint32_t cp;

		if (c < 0x80) {
			p++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		for (size_t i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		/* Overlong forms, surrogates, beyond U+10FFFF. */
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return false;
		p += n + 1;
	}
	return true;
}

static uint64_t hash_values(const char *const *values, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

	for (size_t i = 0; i < n; i++) {
		for (const unsigned char *p = (const unsigned char *)values[i]; *p; p++)
			h = (h ^ *p) * 0x100000001b3ULL;
		h = (h ^ 0xff) * 0x100000001b3ULL; /* separator: 0xff never occurs in UTF-8 */
	}
	return h;
}

/* Checks the label values given for f: exactly n_labels, bounded, UTF-8. */
static int check_values(const struct metrics_family *f, const char *const *values)
{
	size_t n = 0;

	if (values)
		for (; values[n]; n++) {
			if (n >= f->n_labels)
				return -EINVAL;
			if (strnlen(values[n], METRICS_LABEL_VALUE_MAX + 1) > METRICS_LABEL_VALUE_MAX ||
			    !valid_utf8(values[n]))
				return -EINVAL;
		}
	return n == f->n_labels ? 0 : -EINVAL;
}

static void strv_free_n(char **v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static char **strv_copy_n(const char *const *v, size_t n)
{
	char **c = calloc(n ? n : 1, sizeof(char *));

	if (!c)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		c[i] = v[i] ? strdup(v[i]) : NULL;
		if (!c[i]) {
			strv_free_n(c, i);
			return NULL;
		}
	}
	return c;
}

static bool values_equal(char *const *a, const char *const *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!b[i] || strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

/* Registry and families ----------------------------------------------------- */

int metrics_registry_new(size_t max_series, struct metrics_registry **ret)
{
	struct metrics_registry *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->scrape_lock, NULL);
	r->max_series = max_series ? max_series : METRICS_SERIES_DEFAULT_MAX;
	*ret = r;
	return 0;
}

static void series_free(struct metrics_series *s, size_t n_labels)
{
	if (!s)
		return;
	strv_free_n(s->label_values, n_labels);
	free(s->counts);
	free(s);
}

static void family_free(struct metrics_family *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n_series; i++)
		series_free(f->series[i], f->n_labels);
	free(f->series);
	strv_free_n(f->label_names, f->n_labels);
	free(f->buckets);
	free(f->name);
	free(f->help);
	free(f);
}

static void collector_free(struct metrics_collector *c)
{
	if (!c)
		return;
	if (c->destroy)
		c->destroy(c->userdata);
	free(c->families);
	free(c);
}

void metrics_registry_free(struct metrics_registry *r)
{
	if (!r)
		return;
	while (r->collectors) {
		struct metrics_collector *c = r->collectors;
		r->collectors = c->next;
		collector_free(c);
	}
	for (size_t i = 0; i < r->n_families; i++)
		family_free(r->families[i]);
	free(r->families);
	pthread_mutex_destroy(&r->lock);
	pthread_mutex_destroy(&r->scrape_lock);
	free(r);
}

static int family_init_labels(struct metrics_family *f, const char *const *label_names)
{
	size_t n = 0;

	if (label_names)
		for (; label_names[n]; n++) {
			if (n >= METRICS_LABELS_MAX || !valid_name(label_names[n], false) ||
			    strncmp(label_names[n], "__", 2) == 0)
				return -EINVAL;
			if (f->type == METRICS_TYPE_HISTOGRAM && strcmp(label_names[n], "le") == 0)
				return -EINVAL;
			for (size_t j = 0; j < n; j++)
				if (strcmp(label_names[j], label_names[n]) == 0)
					return -EINVAL;
		}
	f->label_names = strv_copy_n(label_names, n);
	if (!f->label_names)
		return -ENOMEM;
	f->n_labels = n;
	/* Insertion sort of positions by name: at most METRICS_LABELS_MAX. */
	for (size_t i = 0; i < n; i++) {
		size_t j = i;
		while (j > 0 && strcmp(f->label_names[f->order[j - 1]], f->label_names[i]) > 0) {
			f->order[j] = f->order[j - 1];
			j--;
		}
		f->order[j] = i;
	}
	return 0;
}

static int family_init_buckets(struct metrics_family *f, const double *buckets, size_t n)
{
	if (f->type != METRICS_TYPE_HISTOGRAM)
		return n == 0 ? 0 : -EINVAL;
	if (n > 0 && isinf(buckets[n - 1]) && buckets[n - 1] > 0)
		n--; /* +Inf is implied */
	if (n == 0 || n > METRICS_BUCKETS_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])))
			return -EINVAL;
	f->buckets = malloc(n * sizeof(double));
	if (!f->buckets)
		return -ENOMEM;
	memcpy(f->buckets, buckets, n * sizeof(double));
	f->n_buckets = n;
	return 0;
}

int metrics_registry_add(struct metrics_registry *r, enum metrics_type type, const char *name,
			 const char *help, const char *const *label_names, const double *buckets,
			 size_t n_buckets, struct metrics_family **ret)
{
	struct metrics_family *f = NULL, **nf;
	int res;

	if (!r || !valid_name(name, true) || !help ||
	    (type != METRICS_TYPE_COUNTER && type != METRICS_TYPE_GAUGE && type != METRICS_TYPE_HISTOGRAM))
		return -EINVAL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->registry = r;
	f->type = type;
	f->name = strdup(name);
	f->help = strdup(help);
	if (!f->name || !f->help) {
		res = -ENOMEM;
		goto fail;
	}
	res = family_init_labels(f, label_names);
	if (res < 0)
		goto fail;
	res = family_init_buckets(f, buckets, n_buckets);
	if (res < 0)
		goto fail;

	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < r->n_families; i++)
		if (strcmp(r->families[i]->name, name) == 0) {
			pthread_mutex_unlock(&r->lock);
			res = -EEXIST;
			goto fail;
		}
	if (r->n_families >= METRICS_FAMILIES_MAX) {
		pthread_mutex_unlock(&r->lock);
		res = -E2BIG;
		goto fail;
	}
	nf = realloc(r->families, (r->n_families + 1) * sizeof(struct metrics_family *));
	if (!nf) {
		pthread_mutex_unlock(&r->lock);
		res = -ENOMEM;
		goto fail;
	}
	r->families = nf;
	r->families[r->n_families++] = f;
	pthread_mutex_unlock(&r->lock);
	if (ret)
		*ret = f;
	return 0;
fail:
	family_free(f);
	return res;
}

/* Stored series --------------------------------------------------------------- */

/* Find or create the series for values; called with the registry lock held. */
static int series_get(struct metrics_family *f, const char *const *values, struct metrics_series **ret)
{
	struct metrics_registry *r = f->registry;
	static const char *const none[] = { NULL };
	struct metrics_series *s;
	uint64_t h;

	if (!values)
		values = none;
	h = hash_values(values, f->n_labels);
	for (size_t i = 0; i < f->n_series; i++) {
		s = f->series[i];
		if (s->hash == h && values_equal(s->label_values, values, f->n_labels)) {
			*ret = s;
			return 0;
		}
	}
	if (r->n_series >= r->max_series)
		return -E2BIG;
	if (f->n_series == f->cap_series) {
		size_t cap = f->cap_series ? f->cap_series * 2 : 8;
		struct metrics_series **n = realloc(f->series, cap * sizeof(struct metrics_series *));
		if (!n)
			return -ENOMEM;
		f->series = n;
		f->cap_series = cap;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->hash = h;
	s->label_values = strv_copy_n(values, f->n_labels);
	if (f->type == METRICS_TYPE_HISTOGRAM)
		s->counts = calloc(MAX(f->n_buckets, (size_t)1), sizeof(uint64_t));
	if (!s->label_values || (f->type == METRICS_TYPE_HISTOGRAM && !s->counts)) {
		series_free(s, f->n_labels);
		return -ENOMEM;
	}
	f->series[f->n_series++] = s;
	r->n_series++;
	*ret = s;
	return 0;
}

static int update(struct metrics_family *f, const char *const *values, enum metrics_type want, double v,
		  bool add)
{
	struct metrics_series *s;
	int r;

	if (!f)
		return -EINVAL;
	if (f->type != want && !(want == METRICS_TYPE_COUNTER && f->type == METRICS_TYPE_GAUGE))
		return -EINVAL;
	if (f->type == METRICS_TYPE_COUNTER && !(v >= 0))
		return -EINVAL;
	r = check_values(f, values);
	if (r < 0)
		return r;
	pthread_mutex_lock(&f->registry->lock);
	r = series_get(f, values, &s);
	if (r >= 0) {
		if (add)
			s->value += v;
		else
			s->value = v;
	}
	pthread_mutex_unlock(&f->registry->lock);
	return r;
}

int metrics_gauge_set(struct metrics_family *f, const char *const *label_values, double value)
{
	return update(f, label_values, METRICS_TYPE_GAUGE, value, false);
}

int metrics_counter_add(struct metrics_family *f, const char *const *label_values, double delta)
{
	return update(f, label_values, METRICS_TYPE_COUNTER, delta, true);
}

int metrics_histogram_observe(struct metrics_family *f, const char *const *label_values, double value)
{
	struct metrics_series *s;
	size_t i;
	int r;

	if (!f || f->type != METRICS_TYPE_HISTOGRAM)
		return -EINVAL;
	r = check_values(f, label_values);
	if (r < 0)
		return r;
	/* Outside the lock: the first bucket with value <= bound ("le"). NaN
	 * lands in +Inf only, as in the Go client. */
	for (i = 0; i < f->n_buckets; i++)
		if (value <= f->buckets[i])
			break;
	pthread_mutex_lock(&f->registry->lock);
	r = series_get(f, label_values, &s);
	if (r >= 0) {
		if (i < f->n_buckets)
			s->counts[i]++;
		s->count++;
		s->sum += value;
	}
	pthread_mutex_unlock(&f->registry->lock);
	return r;
}

/* Collectors ------------------------------------------------------------------ */

int metrics_collector_add(struct metrics_registry *r, struct metrics_family *const *families,
			  metrics_collect_fn fn, void *userdata, void (*destroy)(void *userdata),
			  struct metrics_collector **ret)
{
	struct metrics_collector *c;
	size_t n = 0;
	int res = -EINVAL;

	if (!r || !fn || !families || !families[0])
		goto fail;
	for (; families[n]; n++)
		if (families[n]->registry != r || families[n]->type == METRICS_TYPE_HISTOGRAM ||
		    n >= METRICS_FAMILIES_MAX)
			goto fail;
	res = -ENOMEM;
	c = calloc(1, sizeof(*c));
	if (!c)
		goto fail;
	c->families = malloc(n * sizeof(struct metrics_family *));
	if (!c->families) {
		free(c);
		goto fail;
	}
	memcpy(c->families, families, n * sizeof(struct metrics_family *));
	c->n_families = n;
	c->fn = fn;
	c->userdata = userdata;
	c->destroy = destroy;
	pthread_mutex_lock(&r->scrape_lock);
	c->next = r->collectors;
	r->collectors = c;
	pthread_mutex_unlock(&r->scrape_lock);
	if (ret)
		*ret = c;
	return 0;
fail:
	if (destroy)
		destroy(userdata);
	return res;
}

void metrics_collector_remove(struct metrics_registry *r, struct metrics_collector *c)
{
	if (!r || !c)
		return;
	/* Taking the scrape lock waits for a render that may be inside c->fn. */
	pthread_mutex_lock(&r->scrape_lock);
	for (struct metrics_collector **p = &r->collectors; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	pthread_mutex_unlock(&r->scrape_lock);
	collector_free(c);
}

int metrics_scrape_add(struct metrics_scrape *s, struct metrics_family *f, const char *const *label_values,
		       double value)
{
	static const char *const none[] = { NULL };
	struct scrape_sample *smp;
	bool listed = false;
	uint64_t h;
	int r;

	if (!s || !f || (f->type != METRICS_TYPE_GAUGE && f->type != METRICS_TYPE_COUNTER))
		return -EINVAL;
	for (size_t i = 0; i < s->collector->n_families; i++)
		if (s->collector->families[i] == f)
			listed = true;
	if (!listed)
		return -EINVAL;
	r = check_values(f, label_values);
	if (r < 0)
		return r;
	if (!label_values)
		label_values = none;
	h = hash_values(label_values, f->n_labels);
	for (size_t i = 0; i < s->n_samples; i++)
		if (s->samples[i].family == f && s->samples[i].hash == h &&
		    values_equal(s->samples[i].label_values, label_values, f->n_labels))
			return -EEXIST;
	if (s->n_samples >= s->registry->max_series)
		return -E2BIG;
	if (s->n_samples == s->cap_samples) {
		size_t cap = s->cap_samples ? s->cap_samples * 2 : 16;
		struct scrape_sample *n = realloc(s->samples, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		s->samples = n;
		s->cap_samples = cap;
	}
	smp = &s->samples[s->n_samples];
	smp->label_values = strv_copy_n(label_values, f->n_labels);
	if (!smp->label_values)
		return -ENOMEM;
	smp->family = f;
	smp->hash = h;
	smp->value = value;
	s->n_samples++;
	return 0;
}

static void scrape_done(struct metrics_scrape *s)
{
	for (size_t i = 0; i < s->n_samples; i++)
		strv_free_n(s->samples[i].label_values, s->samples[i].family->n_labels);
	free(s->samples);
}

/* Rendering ------------------------------------------------------------------- */

const char *metrics_format_value(double v, char *buf, size_t len)
{
	char tmp[40];
	int p, e;
	char *x;

	if (isnan(v)) {
		snprintf(buf, len, "NaN");
		return buf;
	}
	if (isinf(v)) {
		snprintf(buf, len, "%s", v > 0 ? "+Inf" : "-Inf");
		return buf;
	}
	if (v == 0) {
		snprintf(buf, len, "0");
		return buf;
	}
	/* Go's 'g' with precision -1: the fewest significant digits that read
	 * back as the same double; exponent form when the decimal exponent is
	 * below -4 or at least 6 (Go fixes that threshold at 6 for "shortest"). */
	for (p = 1; p < 17; p++) {
		snprintf(tmp, sizeof(tmp), "%.*e", p - 1, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	snprintf(tmp, sizeof(tmp), "%.*e", p - 1, v);
	x = strchr(tmp, 'e');
	e = x ? (int)strtol(x + 1, NULL, 10) : 0;
	if (e < -4 || e >= 6)
		snprintf(buf, len, "%s", tmp);
	else
		snprintf(buf, len, "%.*f", MAX(p - 1 - e, 0), v);
	return buf;
}

static void append_escaped(struct strbuf *b, const char *s, bool quote)
{
	const char *special = quote ? "\\\n\"" : "\\\n";

	for (;;) {
		size_t n = strcspn(s, special);

		strbuf_append(b, s, n);
		s += n;
		if (!*s)
			return;
		if (*s == '\\')
			strbuf_append(b, "\\\\", 2);
		else if (*s == '\n')
			strbuf_append(b, "\\n", 2);
		else
			strbuf_append(b, "\\\"", 2);
		s++;
	}
}

static void append_value(struct strbuf *b, double v)
{
	char buf[40];

	strbuf_append_str(b, metrics_format_value(v, buf, sizeof(buf)));
}

/* name{a="x",b="y",le="0.5"} value */
static void append_sample(struct strbuf *b, const struct metrics_family *f, const char *suffix,
			  char *const *values, const char *le, double v)
{
	bool any = false;

	strbuf_append_str(b, f->name);
	strbuf_append_str(b, suffix);
	for (size_t i = 0; i < f->n_labels; i++) {
		size_t k = f->order[i];
		strbuf_append_char(b, any ? ',' : '{');
		strbuf_append_str(b, f->label_names[k]);
		strbuf_append_str(b, "=\"");
		append_escaped(b, values[k], true);
		strbuf_append_char(b, '"');
		any = true;
	}
	if (le) {
		strbuf_append_str(b, any ? ",le=\"" : "{le=\"");
		strbuf_append_str(b, le);
		strbuf_append_char(b, '"');
		any = true;
	}
	if (any)
		strbuf_append_char(b, '}');
	strbuf_append_char(b, ' ');
	append_value(b, v);
	strbuf_append_char(b, '\n');
}

static void append_histogram(struct strbuf *b, const struct metrics_family *f, const struct metrics_series *s)
{
	uint64_t cum = 0;
	char le[40];

	for (size_t i = 0; i < f->n_buckets; i++) {
		cum += s->counts[i];
		append_sample(b, f, "_bucket", s->label_values, metrics_format_value(f->buckets[i], le, sizeof(le)),
			      (double)cum);
	}
	append_sample(b, f, "_bucket", s->label_values, "+Inf", (double)s->count);
	append_sample(b, f, "_sum", s->label_values, NULL, s->sum);
	append_sample(b, f, "_count", s->label_values, NULL, (double)s->count);
}

/* One output row: a stored series or a sample from this scrape. */
struct row {
	const struct metrics_family *family;
	char *const *values;
	const struct metrics_series *series; /* NULL for a scraped sample */
	double value;
};

static int row_cmp(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	const struct metrics_family *f = x->family;

	for (size_t i = 0; i < f->n_labels; i++) {
		int c = strcmp(x->values[f->order[i]], y->values[f->order[i]]);
		if (c != 0)
			return c;
	}
	return 0;
}

static int family_cmp(const void *a, const void *b)
{
	const struct metrics_family *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

static const char *type_name(enum metrics_type t)
{
	switch (t) {
	case METRICS_TYPE_COUNTER:
		return "counter";
	case METRICS_TYPE_GAUGE:
		return "gauge";
	case METRICS_TYPE_HISTOGRAM:
		return "histogram";
	}
	return "untyped";
}

/* Called with the registry lock held. */
static int render_family(struct strbuf *b, const struct metrics_family *f, const struct metrics_scrape *s)
{
	_cleanup_free_ struct row *rows = NULL;
	size_t n = 0, max = f->n_series;

	for (size_t i = 0; i < s->n_samples; i++)
		if (s->samples[i].family == f)
			max++;
	if (max == 0)
		return 0; /* like the Go client: no samples, no HELP/TYPE either */
	rows = calloc(max, sizeof(*rows));
	if (!rows)
		return -ENOMEM;
	for (size_t i = 0; i < f->n_series; i++)
		rows[n++] = (struct row){ f, f->series[i]->label_values, f->series[i], f->series[i]->value };
	for (size_t i = 0; i < s->n_samples; i++)
		if (s->samples[i].family == f)
			rows[n++] = (struct row){ f, s->samples[i].label_values, NULL, s->samples[i].value };
	qsort(rows, n, sizeof(*rows), row_cmp);

	strbuf_append_str(b, "# HELP ");
	strbuf_append_str(b, f->name);
	strbuf_append_char(b, ' ');
	append_escaped(b, f->help, false);
	strbuf_append_str(b, "\n# TYPE ");
	strbuf_append_str(b, f->name);
	strbuf_append_char(b, ' ');
	strbuf_append_str(b, type_name(f->type));
	strbuf_append_char(b, '\n');
	for (size_t i = 0; i < n; i++) {
		if (f->type == METRICS_TYPE_HISTOGRAM && rows[i].series)
			append_histogram(b, f, rows[i].series);
		else
			append_sample(b, f, "", rows[i].values, NULL, rows[i].value);
	}
	return 0;
}

static bool collector_selected(const struct metrics_collector *c, struct metrics_family *const *sel, size_t n)
{
	for (size_t i = 0; i < c->n_families; i++)
		for (size_t j = 0; j < n; j++)
			if (c->families[i] == sel[j])
				return true;
	return false;
}

int metrics_registry_render(struct metrics_registry *r, struct metrics_family *const *only, char **ret,
			    size_t *ret_len)
{
	_cleanup_free_ struct metrics_family **sel = NULL;
	struct metrics_scrape scrape = { .registry = r };
	struct strbuf b = STRBUF_INIT;
	size_t n = 0, len;
	int res = 0;

	if (!r || !ret)
		return -EINVAL;
	b.limit = METRICS_RENDER_MAX;
	pthread_mutex_lock(&r->scrape_lock);

	/* Families are never removed, so the pointers stay valid after unlock. */
	pthread_mutex_lock(&r->lock);
	sel = calloc(MAX(r->n_families, (size_t)1), sizeof(struct metrics_family *));
	if (sel)
		for (size_t i = 0; i < r->n_families; i++) {
			bool want = !only;
			for (size_t j = 0; only && only[j] && !want; j++)
				want = only[j] == r->families[i];
			if (want)
				sel[n++] = r->families[i];
		}
	pthread_mutex_unlock(&r->lock);
	if (!sel) {
		res = -ENOMEM;
		goto out;
	}

	/* Collectors run without the data lock: they may be slow (capacity
	 * queries) and may themselves update stored metrics. */
	for (struct metrics_collector *c = r->collectors; c; c = c->next)
		if (collector_selected(c, sel, n)) {
			scrape.collector = c;
			c->fn(c->userdata, &scrape);
		}

	qsort(sel, n, sizeof(struct metrics_family *), family_cmp);
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < n && res >= 0; i++)
		res = render_family(&b, sel[i], &scrape);
	pthread_mutex_unlock(&r->lock);
	/* strbuf does not say why it failed: one append is at most a few KiB
	 * (label values are bounded), so a failure near the limit is the limit. */
	if (res >= 0 && strbuf_failed(&b))
		res = strbuf_len(&b) + 64 * 1024 >= METRICS_RENDER_MAX ? -E2BIG : -ENOMEM;
	if (res >= 0) {
		len = strbuf_len(&b);
		*ret = strbuf_steal(&b);
		if (!*ret)
			*ret = strdup("");
		if (!*ret)
			res = -ENOMEM;
		else if (ret_len)
			*ret_len = len;
	}
out:
	pthread_mutex_unlock(&r->scrape_lock);
	scrape_done(&scrape);
	strbuf_free(&b);
	return res;
}
