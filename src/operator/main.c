/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pmem-csi-operator: watches turn into a work queue of CR names; one worker reconciles
 * them, only while this replica holds the leader lease.
 *
 * - The CR watch lists the PmemCSIDeployments and watches them from the list's
 *   resourceVersion; a 410 Gone (or any error, after a bounded backoff) re-lists, and
 *   every -resync seconds it re-lists and queues every CR (the periodic resync). An
 *   event queues its CR only when the CR's generation or uid changed: our own status
 *   writes come back as MODIFIED events with the same generation.
 * - One watch per kind of owned object (labelled app.kubernetes.io/part-of=pmem-csi,
 *   in the operator's namespace or cluster-scoped) queues the owning CR of an object
 *   that was changed or deleted, so a hand-made change is repaired at once and the
 *   status follows the DaemonSet's and Deployment's status as it changes.
 *   A workload event that changed nothing but the status (same generation, labels,
 *   annotations and owners as last seen) only refreshes the CR's status.
 * - Watches run on every replica (cheap); the worker drops work while not leading and
 *   queues everything when it becomes the leader.
 * - The cluster's version (GET /version, for the default sidecar images) is read at
 *   start and again before every "reconcile everything", so a changed version
 *   reaches every CR within one resync.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "json/json.h"
#include "k8s/k8s.h"
#include "leader.h"
#include "manifest.h"
#include "metrics.h"
#include "reconcile.h"

#ifndef PMEM_CSI_VERSION
#define PMEM_CSI_VERSION "unknown"
#endif

#define SEEN_MAX 256
#define QUEUE_MAX 256
#define BACKOFF_MAX_S 30
#define OWNED_SELECTOR "labelSelector=app.kubernetes.io%2Fpart-of%3Dpmem-csi"
#define LEASE_NAME "pmem-csi-operator-lock" /* the 1.x operator's LeaderElectionID */

static volatile sig_atomic_t stop;

/* ---- work queue: CR names (full reconcile, or status only), deduplicated, plus "everything" ---- */

enum work {
	WORK_NONE,
	WORK_ALL,    /* list and reconcile every CR */
	WORK_FULL,   /* reconcile one CR */
	WORK_STATUS, /* refresh the status of one CR */
};

struct name_set {
	char *names[QUEUE_MAX];
	size_t n;
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct name_set full, status;
	bool all;
} queue = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static bool set_has(const struct name_set *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (streq_ptr(s->names[i], name))
			return true;
	return false;
}

/* false when full or out of memory */
static bool set_add(struct name_set *s, const char *name)
{
	char *copy;

	if (set_has(s, name))
		return true;
	if (s->n >= QUEUE_MAX || !(copy = strdup(name)))
		return false;
	s->names[s->n++] = copy;
	return true;
}

static char *set_take_first(struct name_set *s)
{
	char *n = s->names[0];

	memmove(s->names, s->names + 1, (s->n - 1) * sizeof(s->names[0]));
	s->n--;
	return n;
}

static void set_clear(struct name_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->names[i]);
	s->n = 0;
}

/* name NULL: everything. status_only: the CR's workloads changed their status only. */
static void queue_push(const char *name, bool status_only)
{
	bool queued;

	pthread_mutex_lock(&queue.lock);
	if (!name)
		queued = false;
	else if (status_only)
		queued = set_has(&queue.full, name) || set_add(&queue.status, name);
	else
		queued = set_add(&queue.full, name);
	if (!queued)
		queue.all = true; /* everything, or the set is full or out of memory: a full pass covers it */
	pthread_cond_signal(&queue.cond);
	pthread_mutex_unlock(&queue.lock);
}

/* Wait up to 1 s for work; *ret_name for WORK_FULL and WORK_STATUS (caller frees). */
static enum work queue_pop(char **ret_name)
{
	struct timespec until;
	enum work w = WORK_NONE;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	pthread_mutex_lock(&queue.lock);
	while (!queue.all && queue.full.n == 0 && queue.status.n == 0 && !stop)
		if (pthread_cond_timedwait(&queue.cond, &queue.lock, &until) == ETIMEDOUT)
			break;
	*ret_name = NULL;
	if (queue.all) {
		queue.all = false;
		set_clear(&queue.full);
		set_clear(&queue.status);
		w = WORK_ALL;
	} else if (queue.full.n > 0) {
		*ret_name = set_take_first(&queue.full);
		w = WORK_FULL;
	} else if (queue.status.n > 0) {
		*ret_name = set_take_first(&queue.status);
		w = WORK_STATUS;
	}
	pthread_mutex_unlock(&queue.lock);
	return w;
}

/* ---- watches ---- */

/* What was last queued per CR (name, uid, generation); the CR watch thread only. */
static struct seen {
	char *name;
	char *uid;
	int64_t generation;
} seen[SEEN_MAX];

#define PRINTS_MAX 64

struct watcher {
	struct k8s_client *client;
	char *path; /* collection path, maybe with ?labelSelector= */
	bool is_cr;
	bool workloads; /* DaemonSets or Deployments: they have a status of their own */
	unsigned resync_s;
	char *rv;
	/* Workloads: uid -> fingerprint of everything but the status (see fingerprint()). */
	struct {
		char *uid;
		char *print;
	} prints[PRINTS_MAX];
};

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static bool is_new(const struct jv *cr)
{
	const struct jv *meta = jv_object_get(cr, "metadata");
	const char *name = jv_string(jv_object_get(meta, "name"));
	const char *uid = jv_string(jv_object_get(meta, "uid"));
	int64_t gen = jv_integer(jv_object_get(meta, "generation"));
	struct seen *free_slot = NULL;

	if (!name || !uid)
		return true;
	for (size_t i = 0; i < SEEN_MAX; i++) {
		if (!seen[i].name) {
			if (!free_slot)
				free_slot = &seen[i];
			continue;
		}
		if (!streq_ptr(seen[i].name, name))
			continue;
		if (streq_ptr(seen[i].uid, uid) && seen[i].generation == gen)
			return false;
		free(seen[i].uid);
		seen[i].uid = strdup(uid);
		seen[i].generation = gen;
		return true;
	}
	if (free_slot) {
		free_slot->name = strdup(name);
		free_slot->uid = strdup(uid);
		free_slot->generation = gen;
	}
	return true;
}

static void set_rv(struct watcher *w, const struct jv *obj)
{
	const char *rv = jv_string(jv_object_get(jv_object_get(obj, "metadata"), "resourceVersion"));
	char *n;

	if (!rv || !(n = strdup(rv)))
		return;
	free(w->rv);
	w->rv = n;
}

/*
 * What a change to a workload can touch besides its status: its spec (generation),
 * labels, annotations and owners. Equal fingerprints: only the status changed.
 */
static char *fingerprint(const struct jv *obj)
{
	const struct jv *meta = jv_object_get(obj, "metadata");
	_cleanup_free_ char *l = jv_dump(jv_object_get(meta, "labels")), *a = jv_dump(jv_object_get(meta, "annotations")),
			    *o = jv_dump(jv_object_get(meta, "ownerReferences"));

	return xasprintf("%lld|%s|%s|%s|%s", (long long)jv_integer(jv_object_get(meta, "generation")), l ? l : "",
			 a ? a : "", o ? o : "", jv_string(jv_object_get(meta, "deletionTimestamp")) ?: "");
}

/* Remember obj's fingerprint (forget it when deleted); true when it is the one seen before. */
static bool same_print(struct watcher *w, const struct jv *obj, bool deleted)
{
	const char *uid = jv_string(jv_object_get(jv_object_get(obj, "metadata"), "uid"));
	_cleanup_free_ char *print = deleted ? NULL : fingerprint(obj);
	size_t free_slot = PRINTS_MAX;

	if (!uid)
		return false;
	for (size_t i = 0; i < PRINTS_MAX; i++) {
		if (!w->prints[i].uid) {
			if (free_slot == PRINTS_MAX)
				free_slot = i;
			continue;
		}
		if (!streq_ptr(w->prints[i].uid, uid))
			continue;
		bool same = print && streq_ptr(w->prints[i].print, print);
		free(w->prints[i].print);
		w->prints[i].print = TAKE_PTR(print);
		if (deleted) {
			free(w->prints[i].uid);
			w->prints[i].uid = NULL;
		}
		return same;
	}
	if (!deleted && print && free_slot < PRINTS_MAX && (w->prints[free_slot].uid = strdup(uid)))
		w->prints[free_slot].print = TAKE_PTR(print);
	return false;
}

/* Queue the PmemCSIDeployment that controls obj, if any. */
static void queue_owner(const char *type, const struct jv *obj, bool status_only)
{
	const struct jv *meta = jv_object_get(obj, "metadata");
	const struct jv *refs = jv_object_get(meta, "ownerReferences");

	for (size_t i = 0; i < jv_array_size(refs); i++) {
		const struct jv *ref = jv_array_get(refs, i);
		if (!streq_ptr(jv_string(jv_object_get(ref, "kind")), "PmemCSIDeployment"))
			continue;
		log_v(5, "%s %s %s: queueing PmemCSIDeployment '%s'%s", type,
		      jv_string(jv_object_get(obj, "kind")) ?: "", jv_string(jv_object_get(meta, "name")) ?: "",
		      jv_string(jv_object_get(ref, "name")) ?: "", status_only ? " (status)" : "");
		queue_push(jv_string(jv_object_get(ref, "name")), status_only);
	}
}

static int on_event(const char *type, const struct jv *obj, void *ud)
{
	struct watcher *w = ud;

	if (stop)
		return -ECANCELED;
	if (streq_ptr(type, "ERROR")) {
		int64_t code = jv_integer(jv_object_get(obj, "code"));
		log_v(2, "Watch error event (code %lld): %s", (long long)code,
		      jv_string(jv_object_get(obj, "message")) ?: "");
		return -ESTALE; /* 410 Expired and anything else: re-list */
	}
	set_rv(w, obj);
	if (streq_ptr(type, "BOOKMARK"))
		return 0;
	if (w->is_cr) {
		if ((streq_ptr(type, "ADDED") || streq_ptr(type, "MODIFIED")) && is_new(obj))
			queue_push(jv_string(jv_object_get(jv_object_get(obj, "metadata"), "name")), false);
		else if (streq_ptr(type, "DELETED"))
			queue_push(NULL, false); /* a younger CR that overlapped this one may deploy now */
		/* The garbage collector removes what the deleted CR owned. */
		return 0;
	}
	/*
	 * Owned objects: ADDED is our own creation (or a list replay); changes and deletions
	 * are repaired. A workload change that touched only its status refreshes the status.
	 */
	if (streq_ptr(type, "ADDED")) {
		if (w->workloads)
			(void)same_print(w, obj, false);
	} else if (streq_ptr(type, "MODIFIED"))
		queue_owner(type, obj, w->workloads && same_print(w, obj, false));
	else if (streq_ptr(type, "DELETED")) {
		if (w->workloads)
			(void)same_print(w, obj, true);
		queue_owner(type, obj, false);
	}
	return 0;
}

static int relist(struct watcher *w, char **ret_err)
{
	_cleanup_(jv_unrefp) struct jv *list = NULL;
	const struct jv *items;
	int r;

	r = k8s_get(w->client, w->path, &list, ret_err);
	if (r < 0)
		return r;
	set_rv(w, list);
	items = jv_object_get(list, "items");
	if (!w->is_cr) {
		for (size_t i = 0; i < jv_array_size(items) && w->workloads; i++)
			(void)same_print(w, jv_array_get(items, i), false);
		return 0;
	}
	for (size_t i = 0; i < jv_array_size(items); i++)
		(void)is_new(jv_array_get(items, i));
	queue_push(NULL, false); /* the periodic resync: everything once */
	return 0;
}

static void *watch_thread(void *ud)
{
	struct watcher *w = ud;
	unsigned backoff = 1;

	while (!stop) {
		_cleanup_free_ char *err = NULL, *path = NULL;
		int r = relist(w, &err);

		if (r < 0) {
			log_error_errno(r, "Failed to list %s: %s; retrying in %u s", w->path, err ? err : "", backoff);
			sleep(backoff);
			backoff = backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : backoff * 2;
			continue;
		}
		backoff = 1;
		/* One watch up to resync_s; then re-list (the CR watch: and reconcile everything). */
		path = xasprintf("%s%sresourceVersion=%s", w->path, strchr(w->path, '?') ? "&" : "?",
				 w->rv ? w->rv : "0");
		if (!path) {
			sleep(1);
			continue;
		}
		r = k8s_watch(w->client, path, w->resync_s, on_event, w, &err);
		if (r == -ESTALE || r == -ECANCELED || r == 0)
			continue;
		log_warning_errno(r, "Watch of %s ended: %s; re-listing in %u s", w->path, err ? err : "", backoff);
		sleep(backoff);
		backoff = backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : backoff * 2;
	}
	return NULL;
}

static int start_watch(struct k8s_client *c, const char *path, bool is_cr, bool workloads, unsigned resync_s)
{
	struct watcher *w = calloc(1, sizeof(*w));
	pthread_t t;
	int r;

	if (!w)
		return -ENOMEM;
	*w = (struct watcher){ .client = c, .path = strdup(path), .is_cr = is_cr, .workloads = workloads,
			       .resync_s = resync_s };
	if (!w->path) {
		free(w);
		return -ENOMEM;
	}
	r = -pthread_create(&t, NULL, watch_thread, w);
	if (r < 0) {
		free(w->path);
		free(w);
		return r;
	}
	/* Runs until the process ends: a watch blocks in the stream, exit ends it. */
	pthread_detach(t);
	return 0;
}

/* The owned kinds: everything operator_render() produces (src/operator/manifest.c). */
static int start_watches(struct k8s_client *c, const char *ns, unsigned resync_s)
{
	/* Collections in the operator's namespace: "/apis/apps/v1/namespaces/" NS "/daemonsets". */
	static const char *const namespaced[][2] = {
		{ "/apis/apps/v1", "daemonsets" },
		{ "/apis/apps/v1", "deployments" },
		{ "/api/v1", "serviceaccounts" },
		{ "/api/v1", "secrets" }, /* the driver certificates (certs.c) */
		{ "/apis/rbac.authorization.k8s.io/v1", "roles" },
		{ "/apis/rbac.authorization.k8s.io/v1", "rolebindings" },
	};
	static const char *const cluster[] = {
		"/apis/rbac.authorization.k8s.io/v1/clusterroles",
		"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
		"/apis/storage.k8s.io/v1/csidrivers",
	};
	_cleanup_free_ char *ens = k8s_path_escape(ns);
	int r;

	if (!ens)
		return -ENOMEM;
	if ((r = start_watch(c, OPERATOR_CRD_PATH, true, false, resync_s)) < 0)
		return r;
	for (size_t i = 0; i < ELEMENTSOF(namespaced); i++) {
		_cleanup_free_ char *p = xasprintf("%s/namespaces/%s/%s?%s", namespaced[i][0], ens, namespaced[i][1],
						   OWNED_SELECTOR);
		bool workloads = streq_ptr(namespaced[i][1], "daemonsets") || streq_ptr(namespaced[i][1], "deployments");
		if (!p || (r = start_watch(c, p, false, workloads, resync_s)) < 0)
			return p ? r : -ENOMEM;
	}
	for (size_t i = 0; i < ELEMENTSOF(cluster); i++) {
		_cleanup_free_ char *p = xasprintf("%s?%s", cluster[i], OWNED_SELECTOR);
		if (!p || (r = start_watch(c, p, false, false, resync_s)) < 0)
			return p ? r : -ENOMEM;
	}
	return 0;
}

/* ---- the worker ---- */

static void on_leader_change(bool leading, void *ud)
{
	(void)ud;
	if (leading)
		queue_push(NULL, false); /* a new leader reconciles everything once */
}

static void reconcile_one(struct operator *op, const char *name, bool status_only)
{
	_cleanup_(jv_unrefp) struct jv *cr = NULL;
	_cleanup_free_ char *en = k8s_path_escape(name), *path = NULL, *err = NULL;
	int r;

	path = en ? xasprintf("%s/%s", OPERATOR_CRD_PATH, en) : NULL;
	if (!path)
		return;
	r = k8s_get(op->client, path, &cr, &err);
	if (r == -ENOENT)
		return; /* deleted meanwhile */
	if (r < 0) {
		log_warning_errno(r, "Cannot read PmemCSIDeployment '%s': %s", name, err ? err : "");
		return;
	}
	if (status_only)
		(void)operator_refresh_status(op, cr);
	else
		(void)operator_reconcile(op, cr);
}

static void reconcile_all(struct operator *op)
{
	_cleanup_(jv_unrefp) struct jv *list = NULL;
	_cleanup_free_ char *err = NULL, *verr = NULL;
	const struct jv *items;
	int r;

	/*
	 * Every resync (and every re-list after a broken watch, as an API server upgrade
	 * causes) re-reads the cluster's version: a changed one changes the default
	 * sidecar images, which the reconciles below apply.
	 */
	r = operator_kube_version_refresh(op, NULL, &verr);
	if (r < 0)
		log_warning_errno(r, "Cannot read the Kubernetes version: %s", verr ? verr : "");
	r = k8s_get(op->client, OPERATOR_CRD_PATH, &list, &err);
	if (r < 0) {
		log_warning_errno(r, "Failed to list PmemCSIDeployments: %s", err ? err : "");
		return;
	}
	items = jv_object_get(list, "items");
	for (size_t i = 0; i < jv_array_size(items) && !stop; i++)
		(void)operator_reconcile(op, jv_array_get(items, i));
}

static void work(struct operator *op)
{
	while (!stop) {
		char *name = NULL;
		enum work w = queue_pop(&name);

		if (w == WORK_NONE)
			continue;
		if (!leader_is_leading(op->leader)) {
			free(name); /* becoming the leader queues everything */
			continue;
		}
		if (w == WORK_ALL)
			reconcile_all(op);
		else
			reconcile_one(op, name, w == WORK_STATUS);
		free(name);
	}
}

/* 1.x: the driver image defaults to the operator's own (POD_NAME, OPERATOR_NAME). */
static char *own_image(struct k8s_client *c, const char *ns)
{
	const char *pod = getenv("POD_NAME"), *cname = getenv("OPERATOR_NAME");
	_cleanup_(jv_unrefp) struct jv *obj = NULL;
	_cleanup_free_ char *path = NULL, *err = NULL, *epod = NULL, *ens = NULL;
	const struct jv *cs;

	if (!pod || !*pod)
		return NULL;
	if (!cname || !*cname)
		cname = "pmem-csi-operator";
	epod = k8s_path_escape(pod);
	ens = k8s_path_escape(ns);
	path = epod && ens ? xasprintf("/api/v1/namespaces/%s/pods/%s", ens, epod) : NULL;
	if (!path || k8s_get(c, path, &obj, &err) < 0) {
		log_warning("Cannot read the operator pod for its image: %s", err ? err : "out of memory");
		return NULL;
	}
	cs = jv_object_get(jv_object_get(obj, "spec"), "containers");
	for (size_t i = 0; i < jv_array_size(cs); i++)
		if (streq_ptr(jv_string(jv_object_get(jv_array_get(cs, i), "name")), cname))
			return strdup(jv_string(jv_object_get(jv_array_get(cs, i), "image")) ?: "");
	return NULL;
}

/* client-go's identity: the host (pod) name plus a random suffix, unique per process. */
static char *identity(void)
{
	const char *pod = getenv("POD_NAME");
	char host[256] = "";
	unsigned char rnd[8] = { 0 };
	char hex[17];

	if (!pod || !*pod) {
		if (gethostname(host, sizeof(host) - 1) < 0 || !*host)
			strcpy(host, "pmem-csi-operator");
		pod = host;
	}
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		uint64_t t = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
		memcpy(rnd, &t, sizeof(rnd));
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
	return xasprintf("%s_%s", pod, hex);
}

/*
 * The metrics endpoint. A failure to listen on an address given with -metrics-addr is
 * fatal; on the default :8080 (which something else on the host may hold, e.g. a
 * second operator outside a pod) it is logged and the operator runs without it.
 */
static int setup_metrics(struct operator *op, const char *addr, bool given)
{
	uint16_t port = 0;
	int r;

	if (!*addr || streq_ptr(addr, "0"))
		return 0;
	r = operator_metrics_new(PMEM_CSI_VERSION, &op->metrics);
	if (r < 0)
		return log_error_errno(r, "Failed to set up the metrics: %m");
	r = operator_metrics_serve(op->metrics, addr, &port);
	if (r < 0) {
		operator_metrics_free(TAKE_PTR(op->metrics));
		if (given)
			return log_error_errno(r, "Failed to serve metrics on -metrics-addr=%s: %m", addr);
		log_warning_errno(r, "Cannot serve metrics on the default address %s: %m; running without metrics",
				  addr);
		return 0;
	}
	log_info("Serving metrics on %s (port %u), path /metrics", addr, (unsigned)port);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: pmem-csi-operator [-kubeconfig=PATH] [-namespace=NS] [-image=IMAGE] "
			"[-resync=SECONDS] [-metrics-addr=ADDR] [-leader-election=true|false] [-v=N] "
			"[-logging-format=text|json] [-version]\n");
}

int main(int argc, char **argv)
{
	const char *kubeconfig = NULL, *ns = getenv("POD_NAMESPACE"), *image = getenv("PMEM_CSI_IMAGE");
	enum log_format fmt = LOG_FORMAT_TEXT;
	_cleanup_free_ char *err = NULL, *own = NULL, *id = NULL;
	struct k8s_client *lease_client = NULL;
	struct operator op = {};
	/* 1.x's flag and default; "0" (or empty) turns the endpoint off. */
	const char *metrics_addr = ":8080";
	bool metrics_addr_given = false;
	bool elect = true;
	unsigned resync = 60;
	int v = 3, r;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (startswith(a, "--"))
			a++;
		if (startswith(a, "-kubeconfig="))
			kubeconfig = a + 12;
		else if (startswith(a, "-namespace="))
			ns = a + 11;
		else if (startswith(a, "-image="))
			image = a + 7;
		else if (startswith(a, "-resync=")) {
			int n;
			if (safe_atoi(a + 8, &n) < 0 || n < 1 || n > 3600) {
				fprintf(stderr, "-resync: '%s' is not a number of seconds within 1-3600\n", a + 8);
				return 2;
			}
			resync = (unsigned)n;
		} else if (startswith(a, "-metrics-addr=")) {
			metrics_addr = a + 14;
			metrics_addr_given = true;
		} else if (streq_ptr(a, "-leader-election") || streq_ptr(a, "-leader-election=true"))
			elect = true;
		else if (streq_ptr(a, "-leader-election=false"))
			elect = false;
		else if (startswith(a, "-v=")) {
			if (safe_atoi(a + 3, &v) < 0 || v < 0 || v > 10) {
				fprintf(stderr, "-v: '%s' is not a level within 0-10\n", a + 3);
				return 2;
			}
		} else if (streq_ptr(a, "-logging-format=json"))
			fmt = LOG_FORMAT_JSON;
		else if (streq_ptr(a, "-logging-format=text"))
			fmt = LOG_FORMAT_TEXT;
		else if (streq_ptr(a, "-version")) {
			printf("pmem-csi-operator %s\n", PMEM_CSI_VERSION);
			return 0;
		} else {
			fprintf(stderr, "unknown argument '%s'\n", argv[i]);
			usage();
			return 2;
		}
	}
	log_setup(fmt, v);
	if (!ns || !*ns)
		ns = "pmem-csi";
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);

	r = jv_parse(operator_manifest_json, strlen(operator_manifest_json), &op.manifest, &err);
	if (r < 0) {
		log_error_errno(r, "The embedded manifest is not JSON: %s", err ? err : "");
		return 1;
	}
	r = k8s_client_new(kubeconfig, &op.client, &err);
	if (r < 0) {
		log_error_errno(r, "Failed to set up the Kubernetes client: %s", err ? err : "");
		jv_unref(op.manifest);
		return 1;
	}
	if (!image || !*image)
		image = own = own_image(op.client, ns);
	free(err);
	err = NULL;
	/* Once at start; a failure is retried before the first reconcile that needs it. */
	if (operator_kube_version_refresh(&op, NULL, &err) < 0)
		log_warning("Cannot read the Kubernetes version (GET /version): %s", err ? err : "");
	op.namespace = ns;
	op.default_image = image;
	r = setup_metrics(&op, metrics_addr, metrics_addr_given);
	if (r < 0) {
		k8s_client_free(op.client);
		jv_unref(op.manifest);
		return 1;
	}
	log_info("pmem-csi-operator %s: namespace %s, API server %s, driver image %s", PMEM_CSI_VERSION, ns,
		 k8s_client_server(op.client), image ? image : "(from the manifest)");

	if (elect) {
		struct leader_config lc = { .namespace = ns, .name = LEASE_NAME, .on_change = on_leader_change };

		id = identity();
		lc.identity = id;
		/* Its own client: a renew must give up within the renew deadline, not after 5 retries. */
		r = id ? k8s_client_new(kubeconfig, &lease_client, &err) : -ENOMEM;
		if (r >= 0) {
			k8s_client_set_limits(lease_client, 5000, 1);
			r = leader_start(lease_client, &lc, &op.leader);
		}
		if (r < 0) {
			log_error_errno(r, "Failed to start leader election: %s", err ? err : "");
			operator_metrics_free(op.metrics);
			k8s_client_free(lease_client);
			k8s_client_free(op.client);
			jv_unref(op.manifest);
			return 1;
		}
	}
	r = start_watches(op.client, ns, resync);
	if (r < 0)
		log_error_errno(r, "Failed to start the watches");
	else
		work(&op);
	/* Watch threads still hold op.client: leave it and the manifest to the process exit. */
	leader_stop(op.leader);
	operator_metrics_free(op.metrics);
	log_info("pmem-csi-operator stopped");
	return r < 0 ? 1 : 0;
}
