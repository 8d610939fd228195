/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lease-based leader election as client-go does it (tools/leaderelection with the
 * "leases" resource lock). The lease record is read and written with optimistic
 * concurrency (PUT with the resourceVersion read): of two candidates writing at
 * once, the API server lets one win and answers the other 409 Conflict.
 *
 * Expiry is judged on this process's monotonic clock: the record's renewTime, written
 * by another machine, is only compared for change. A record that has not changed for
 * lease_duration since we first saw it is expired.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strbuf.h"
#include "basic/strutil.h"
#include "json/json.h"
#include "k8s/k8s.h"
#include "leader.h"

struct leader {
	struct k8s_client *client;
	struct leader_config cfg;
	char *path;             /* .../namespaces/NS/leases/NAME */
	pthread_t thread;
	atomic_bool stop;
	atomic_bool leading;
	pthread_mutex_t lock;   /* stop wake-up */
	pthread_cond_t cond;
	/* What we last saw of the record, and when (monotonic). */
	char *observed;
	double observed_at;
	double last_renew;      /* monotonic time of our last successful write as leader */
};

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A MicroTime as the API wants it: 2006-01-02T15:04:05.000000Z. */
static void micro_time(char buf[40])
{
	struct timeval tv;
	struct tm tm;
	char s[32];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, 40, "%s.%06ldZ", s, (long)tv.tv_usec);
}

/* The lease object with holder (may be ""), our timing and the given times. */
static char *lease_body(const struct leader *l, const char *rv, const char *holder, unsigned duration,
			const char *acquire, const char *renew, int64_t transitions)
{
	struct strbuf b = STRBUF_INIT;

	strbuf_append_str(&b, "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":{\"name\":");
	strbuf_append_json_string(&b, l->cfg.name);
	strbuf_append_str(&b, ",\"namespace\":");
	strbuf_append_json_string(&b, l->cfg.namespace);
	if (rv) {
		strbuf_append_str(&b, ",\"resourceVersion\":");
		strbuf_append_json_string(&b, rv);
	}
	strbuf_append_str(&b, "},\"spec\":{\"holderIdentity\":");
	strbuf_append_json_string(&b, holder);
	strbuf_appendf(&b, ",\"leaseDurationSeconds\":%u,\"acquireTime\":", duration);
	strbuf_append_json_string(&b, acquire);
	strbuf_append_str(&b, ",\"renewTime\":");
	strbuf_append_json_string(&b, renew);
	strbuf_appendf(&b, ",\"leaseTransitions\":%lld}}", (long long)transitions);
	if (strbuf_failed(&b)) {
		strbuf_free(&b);
		return NULL;
	}
	return strbuf_steal(&b);
}

/*
 * One attempt of client-go's tryAcquireOrRenew: true when we hold the lease after it.
 * A failed request counts as "not acquired/renewed"; the caller's deadline decides.
 */
static bool try_acquire_or_renew(struct leader *l)
{
	_cleanup_(jv_unrefp) struct jv *lease = NULL;
	_cleanup_free_ char *err = NULL, *body = NULL, *seen = NULL, *ens = NULL, *coll = NULL;
	const struct jv *meta, *spec;
	const char *holder, *rv, *acquire;
	int64_t transitions, duration;
	char now[40];
	int r;

	micro_time(now);
	r = k8s_get(l->client, l->path, &lease, &err);
	if (r == -ENOENT) {
		/* No lease yet: create it, holding it. Two creators: one gets 409. */
		ens = k8s_path_escape(l->cfg.namespace);
		coll = ens ? xasprintf("/apis/coordination.k8s.io/v1/namespaces/%s/leases", ens) : NULL;
		body = lease_body(l, NULL, l->cfg.identity, l->cfg.lease_duration_s, now, now, 0);
		if (!coll || !body)
			return false;
		free(err);
		err = NULL;
		r = k8s_request(l->client, "POST", coll, "application/json", body, NULL, &err);
		if (r < 0) {
			log_v(4, "Leader election: cannot create lease %s: %s", l->path, err ? err : "");
			return false;
		}
		free(l->observed);
		l->observed = NULL;
		l->observed_at = now_mono();
		return true;
	}
	if (r < 0) {
		log_v(2, "Leader election: cannot read lease %s: %s", l->path, err ? err : "");
		return false;
	}
	meta = jv_object_get(lease, "metadata");
	spec = jv_object_get(lease, "spec");
	rv = jv_string(jv_object_get(meta, "resourceVersion"));
	holder = jv_string(jv_object_get(spec, "holderIdentity")) ?: "";
	acquire = jv_string(jv_object_get(spec, "acquireTime"));
	transitions = jv_integer(jv_object_get(spec, "leaseTransitions"));
	duration = jv_integer(jv_object_get(spec, "leaseDurationSeconds"));
	if (duration <= 0)
		duration = l->cfg.lease_duration_s;

	/* Has the record changed since we last looked? Then it is alive as of now. */
	seen = xasprintf("%s|%s|%s", holder, jv_string(jv_object_get(spec, "renewTime")) ?: "", acquire ?: "");
	if (!seen)
		return false;
	if (!streq_ptr(seen, l->observed)) {
		free(l->observed);
		l->observed = TAKE_PTR(seen);
		l->observed_at = now_mono();
	}
	if (*holder && !streq_ptr(holder, l->cfg.identity) && l->observed_at + (double)duration > now_mono()) {
		log_v(5, "Leader election: lease %s held by %s", l->path, holder);
		return false;
	}
	if (streq_ptr(holder, l->cfg.identity))
		body = lease_body(l, rv, l->cfg.identity, l->cfg.lease_duration_s, acquire ?: now, now, transitions);
	else
		body = lease_body(l, rv, l->cfg.identity, l->cfg.lease_duration_s, now, now,
				  *holder ? transitions + 1 : transitions);
	if (!body)
		return false;
	free(err);
	err = NULL;
	r = k8s_request(l->client, "PUT", l->path, "application/json", body, NULL, &err);
	if (r < 0) {
		log_v(r == -EEXIST ? 4 : 2, "Leader election: cannot write lease %s: %s", l->path, err ? err : "");
		return false;
	}
	return true;
}

/* Sleep up to s seconds; false when asked to stop. */
static bool nap(struct leader *l, double s)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)s;
	until.tv_nsec += (long)((s - (double)(time_t)s) * 1e9);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&l->lock);
	while (!atomic_load(&l->stop))
		if (pthread_cond_timedwait(&l->cond, &l->lock, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&l->lock);
	return !atomic_load(&l->stop);
}

static void set_leading(struct leader *l, bool on)
{
	if (atomic_exchange(&l->leading, on) == on)
		return;
	if (on)
		log_info("Leader election: %s acquired lease %s/%s", l->cfg.identity, l->cfg.namespace, l->cfg.name);
	else
		log_warning("Leader election: %s lost lease %s/%s: reconciling stops", l->cfg.identity,
			    l->cfg.namespace, l->cfg.name);
	if (l->cfg.on_change)
		l->cfg.on_change(on, l->cfg.ud);
}

static void *run(void *ud)
{
	struct leader *l = ud;
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();

	log_info("Leader election: %s is a candidate for lease %s/%s", l->cfg.identity, l->cfg.namespace,
		 l->cfg.name);
	while (!atomic_load(&l->stop)) {
		bool ok = try_acquire_or_renew(l);
		double t = now_mono(), wait = l->cfg.retry_period_s;

		if (ok) {
			l->last_renew = t;
			set_leading(l, true);
		} else if (atomic_load(&l->leading) && t - l->last_renew >= (double)l->cfg.renew_deadline_s) {
			set_leading(l, false);
		} else if (!atomic_load(&l->leading)) {
			/* Candidates retry with jitter (client-go: JitterFactor 1.2). */
			wait += wait * 1.2 * (double)(rand_r(&seed) % 1000) / 1000.0;
		}
		if (atomic_load(&l->leading) && l->observed && !ok) {
			/* Someone else wrote the record while we thought we held it: we do not. */
			const char *bar = strchr(l->observed, '|');
			size_t n = bar ? (size_t)(bar - l->observed) : 0;
			if (n && (strlen(l->cfg.identity) != n || strncmp(l->observed, l->cfg.identity, n) != 0))
				set_leading(l, false);
		}
		if (!nap(l, wait))
			break;
	}
	return NULL;
}

int leader_start(struct k8s_client *c, const struct leader_config *cfg, struct leader **ret)
{
	_cleanup_free_ char *ens = k8s_path_escape(cfg->namespace), *en = k8s_path_escape(cfg->name);
	struct leader *l;
	int r;

	if (!ens || !en)
		return -ENOMEM;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->client = c;
	l->cfg = *cfg;
	if (!l->cfg.lease_duration_s)
		l->cfg.lease_duration_s = 15;
	if (!l->cfg.renew_deadline_s)
		l->cfg.renew_deadline_s = 10;
	if (!l->cfg.retry_period_s)
		l->cfg.retry_period_s = 2;
	l->path = xasprintf("/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s", ens, en);
	if (!l->path) {
		free(l);
		return -ENOMEM;
	}
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	r = -pthread_create(&l->thread, NULL, run, l);
	if (r < 0) {
		free(l->path);
		free(l);
		return r;
	}
	*ret = l;
	return 0;
}

bool leader_is_leading(const struct leader *l)
{
	return !l || atomic_load(&l->leading);
}

void leader_stop(struct leader *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	atomic_store(&l->stop, true);
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	pthread_join(l->thread, NULL);
	if (atomic_load(&l->leading)) {
		/* Release as client-go's ReleaseOnCancel does: no holder, duration 1 s. */
		_cleanup_(jv_unrefp) struct jv *lease = NULL;
		_cleanup_free_ char *err = NULL, *body = NULL;
		char now[40];

		atomic_store(&l->leading, false);
		micro_time(now);
		if (k8s_get(l->client, l->path, &lease, &err) == 0 &&
		    streq_ptr(jv_string(jv_object_get(jv_object_get(lease, "spec"), "holderIdentity")), l->cfg.identity)) {
			body = lease_body(l, jv_string(jv_object_get(jv_object_get(lease, "metadata"), "resourceVersion")),
					  "", 1, now, now,
					  jv_integer(jv_object_get(jv_object_get(lease, "spec"), "leaseTransitions")));
			if (body && k8s_request(l->client, "PUT", l->path, "application/json", body, NULL, &err) == 0)
				log_info("Leader election: released lease %s/%s", l->cfg.namespace, l->cfg.name);
		}
	}
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	free(l->observed);
	free(l->path);
	free(l);
}
