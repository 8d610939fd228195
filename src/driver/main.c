/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pmem-csi-driver: parse the (Go-style, upstream-compatible) flags, set up
 * logging, start the CSI gRPC server, prepare PMEM, serve until SIGTERM.
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <strings.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "csi/cache_peer.h"
#include "csi/driver.h"
#include "csi/server.h"
#include "metrics/http.h"
#include "metrics/metrics.h"
#include "modes.h"
#include "pmem/pmem.h"

#ifndef PMEM_CSI_VERSION
#define PMEM_CSI_VERSION "unknown"
#endif

#define MAX_REQUEST_BYTES (4 * 1024 * 1024)

struct options {
	const char *drivername;
	const char *nodeid;
	const char *endpoint;
	const char *mode;
	const char *device_manager;
	const char *state_path;
	const char *metrics_listen;
	const char *metrics_path;
	const char *node_selector;
	const char *kubeconfig;
	const char *logging_format;
	const char *scheduler_listen, *insecure_scheduler_listen, *ca_file, *cert_file, *key_file;
	const char *peer_listen, *peers, *peer_selector;
	int reschedule_seconds;
	int pmem_percentage;
	int verbosity;
	bool version;
};

enum flag_kind {
	FLAG_STRING,
	FLAG_INT,
	FLAG_BOOL,
	FLAG_IGNORED,      /* upstream's deprecated flags: a value, no effect */
	FLAG_IGNORED_BOOL,
	FLAG_KLOG,         /* klog's flags that 1.1 accepts: value checked as klog does, not applied */
	FLAG_KLOG_BOOL,
};

struct flag {
	const char *name;
	enum flag_kind kind;
	void *target;
	const char *help;
	int (*check)(const char *value); /* FLAG_KLOG: klog's own validation of the value */
};

/* Which klog flags were given, for the one start-up line that says they are not applied. */
struct klog_seen {
	char text[512];
	size_t len;
};

static void usage(const struct flag *flags, size_t n)
{
	fprintf(stderr, "Usage of pmem-csi-driver:\n");
	for (size_t i = 0; i < n; i++)
		if (flags[i].help)
			fprintf(stderr, "  -%s\n    \t%s\n", flags[i].name, flags[i].help);
}

/* klog's -log_file_max_size: a uint64 (megabytes). */
static int check_uint64(const char *v)
{
	uint64_t u;

	return safe_atou64(v, &u);
}

/* klog's -stderrthreshold: a severity name or number (INFO..FATAL, 0..3). */
static int check_severity(const char *v)
{
	static const char *const names[] = { "INFO", "WARNING", "ERROR", "FATAL", "0", "1", "2", "3" };

	for (size_t i = 0; i < ELEMENTSOF(names); i++)
		if (strcasecmp(v, names[i]) == 0)
			return 0;
	return -EINVAL;
}

/* klog's -vmodule: comma-separated pattern=N (empty is allowed). */
static int check_vmodule(const char *v)
{
	_cleanup_free_ char *copy = strdup(v);
	char *save = NULL;
	int n;

	if (!copy)
		return -ENOMEM;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		if (!eq || eq == tok || safe_atoi(eq + 1, &n) < 0)
			return -EINVAL;
	}
	return 0;
}

/* klog's -log_backtrace_at: empty, or file:line. */
static int check_trace_location(const char *v)
{
	const char *colon = strrchr(v, ':');
	int n;

	if (!*v)
		return 0;
	if (!colon || colon == v || safe_atoi(colon + 1, &n) < 0)
		return -EINVAL;
	return 0;
}

static void klog_seen_add(struct klog_seen *k, const char *name, const char *value)
{
	int n = snprintf(k->text + k->len, sizeof(k->text) - k->len, "%s-%s%s%s", k->len ? " " : "", name,
			 value ? "=" : "", value ? value : "");

	if (n > 0 && (size_t)n < sizeof(k->text) - k->len)
		k->len += (size_t)n;
}

/*
 * Go's flag syntax, as 1.1's flag.Parse(): -name=value, --name=value, -name
 * value; booleans as -name or -name=<strconv.ParseBool>. Parsing stops at
 * "--" or at the first argument that is not a flag; like 1.1 the rest is
 * ignored (said so on stderr).
 */
static int parse_flags(int argc, char **argv, const struct flag *flags, size_t n, struct klog_seen *klog)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *eq, *value = NULL;
		char name[64];
		size_t len, j;

		if (streq_ptr(a, "--"))
			break;
		if (a[0] != '-' || a[1] == 0) {
			fprintf(stderr, "pmem-csi-driver: ignoring the arguments from \"%s\" on (not flags)\n", a);
			break;
		}
		a += a[1] == '-' ? 2 : 1;
		if (a[0] == '-' || a[0] == '=') {
			fprintf(stderr, "pmem-csi-driver: bad flag syntax: %s\n", argv[i]);
			return -EINVAL;
		}
		eq = strchr(a, '=');
		len = eq ? (size_t)(eq - a) : strlen(a);
		if (len >= sizeof(name)) {
			fprintf(stderr, "pmem-csi-driver: flag provided but not defined: -%s\n", a);
			return -EINVAL;
		}
		memcpy(name, a, len);
		name[len] = 0;
		if (streq_ptr(name, "h") || streq_ptr(name, "help")) {
			usage(flags, n);
			exit(0);
		}
		for (j = 0; j < n; j++)
			if (streq_ptr(flags[j].name, name))
				break;
		if (j == n) {
			fprintf(stderr, "pmem-csi-driver: flag provided but not defined: -%s\n", name);
			usage(flags, n);
			return -EINVAL;
		}
		if (eq)
			value = eq + 1;
		if (flags[j].kind == FLAG_BOOL || flags[j].kind == FLAG_IGNORED_BOOL || flags[j].kind == FLAG_KLOG_BOOL) {
			bool b = true;
			if (value && parse_bool(value, &b) < 0) {
				fprintf(stderr, "pmem-csi-driver: invalid boolean value \"%s\" for -%s\n", value, name);
				return -EINVAL;
			}
			if (flags[j].kind == FLAG_BOOL)
				*(bool *)flags[j].target = b;
			/* We always log to stderr: -logtostderr (true) is what we do. */
			if (flags[j].kind == FLAG_KLOG_BOOL && !(streq_ptr(name, "logtostderr") && b) &&
			    !streq_ptr(name, "alsologtostderr"))
				klog_seen_add(klog, name, b ? NULL : "false");
			continue;
		}
		if (!value) {
			if (i + 1 >= argc) {
				fprintf(stderr, "pmem-csi-driver: flag needs an argument: -%s\n", name);
				return -EINVAL;
			}
			value = argv[++i];
		}
		switch (flags[j].kind) {
		case FLAG_STRING:
			*(const char **)flags[j].target = value;
			break;
		case FLAG_INT:
			if (safe_atoi(value, (int *)flags[j].target) < 0) {
				fprintf(stderr, "pmem-csi-driver: invalid value \"%s\" for -%s: not an integer\n", value,
					name);
				return -EINVAL;
			}
			break;
		case FLAG_KLOG:
			if (flags[j].check && flags[j].check(value) < 0) {
				fprintf(stderr, "pmem-csi-driver: invalid value \"%s\" for flag -%s\n", value, name);
				return -EINVAL;
			}
			klog_seen_add(klog, name, value);
			break;
		default:
			break;
		}
	}
	return 0;
}

/*
 * TERMINATION_LOG_PATH: 1.1 writes the error that ends the program there
 * (pmem-common ExitError), which kubelet shows as the container's
 * termination message. The last error logged is that error.
 */
static pthread_mutex_t last_error_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_error[1024];

static void remember_error(const char *msg)
{
	pthread_mutex_lock(&last_error_lock);
	snprintf(last_error, sizeof(last_error), "%s", msg);
	pthread_mutex_unlock(&last_error_lock);
}

static void write_termination_log(int r)
{
	const char *path = getenv("TERMINATION_LOG_PATH");
	_cleanup_free_ char *msg = NULL;
	FILE *f;

	if (!path || !*path)
		return;
	pthread_mutex_lock(&last_error_lock);
	msg = last_error[0] ? xasprintf("pmem-csi-driver failed: %s", last_error)
			    : xasprintf("pmem-csi-driver failed: %s", strerror(-r));
	pthread_mutex_unlock(&last_error_lock);
	f = fopen(path, "we");
	if (!f || !msg || fputs(msg, f) < 0 || fclose(f) != 0) {
		if (f)
			fclose(f);
		fprintf(stderr, "Can not create termination log file: %s\n", path);
		return;
	}
}

static void log_ready(const struct pmem_manager *pm, const struct pmem_capacity *cap)
{
	char m[32], a[32], x[32], t[32];

	log_info("PMEM-CSI ready. Mode: %s. Capacity: %s managed, %s available, %s maximum volume size, %s total",
		 pmem_manager_mode(pm), format_bytes(m, sizeof(m), cap->managed),
		 format_bytes(a, sizeof(a), cap->available), format_bytes(x, sizeof(x), cap->max_volume_size),
		 format_bytes(t, sizeof(t), cap->total));
}

/* Glue between the CSI driver and the metrics module. */
static void metrics_capacity(void *userdata, uint64_t *available, uint64_t *managed, uint64_t *max_volume_size,
			     uint64_t *total)
{
	struct pmem_capacity cap;

	csi_driver_capacity(userdata, &cap);
	*available = cap.available;
	*managed = cap.managed;
	*max_volume_size = cap.max_volume_size;
	*total = cap.total;
}

static void metrics_unowned(void *userdata, uint64_t *unreadable_state, uint64_t *no_state)
{
	csi_driver_unowned(userdata, unreadable_state, no_state);
}

static bool metrics_ready(void *userdata)
{
	return csi_driver_ready(userdata);
}

/* Liveness: the CSI socket still takes connections (see csi_server_check()). */
static bool grpc_live(void *userdata, char *reason, size_t reason_len)
{
	return csi_server_check(userdata, reason, reason_len) >= 0;
}

/*
 * Every gRPC and HTTP client holds a file descriptor, and the usual soft limit
 * of 1024 goes with a thousand idle clients: take what the hard limit allows,
 * as systemd does for its services. Nothing in the driver uses select(), the
 * one API that breaks with descriptors above 1023.
 */
static void raise_open_file_limit(void)
{
	struct rlimit rl;
	rlim_t old;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		log_warning_errno(errno, "Cannot read the open-file limit: %m");
		return;
	}
	if (rl.rlim_cur >= rl.rlim_max)
		return;
	old = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		log_warning_errno(errno, "Cannot raise the open-file limit from %llu to %llu: %m",
				  (unsigned long long)old, (unsigned long long)rl.rlim_max);
		return;
	}
	log_v(2, "Raised the open-file limit from %llu to %llu", (unsigned long long)old,
	      (unsigned long long)rl.rlim_max);
}

static void metrics_observer(const char *method, enum csi_code code, double seconds, void *userdata)
{
	metrics_observe_call(userdata, method, csi_code_name(code), seconds);
}

/*
 * glibc gives each thread that allocates its own malloc arena (up to 8 per
 * core), and an arena keeps the pages its peak needed: with 16 workers and
 * gRPC's threads, RssAnon grew with every new thread that served a slow call.
 * Two arenas bound that; the fixed thresholds (which also stop glibc from
 * raising the mmap threshold after large frees) give freed memory back.
 * Set before any thread starts.
 */
static void malloc_setup(void)
{
	(void)mallopt(M_ARENA_MAX, 2);
	(void)mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	(void)mallopt(M_TRIM_THRESHOLD, 256 * 1024);
}

static int run_node(const struct options *o)
{
	_cleanup_free_ char *state_dir = NULL;
	struct csi_driver *driver = NULL;
	struct csi_server *server = NULL;
	struct cache_peers *peers = NULL;
	struct metrics *metrics = NULL;
	struct metrics_http *http = NULL;
	struct pmem_manager *pm = NULL;
	struct pmem_capacity cap;
	struct csi_server_config scfg = {};
	struct csi_driver_config dcfg = {};
	sigset_t mask;
	int r, sig = 0;

	state_dir = o->state_path && *o->state_path ? strdup(o->state_path)
						    : xasprintf("/var/lib/%s", o->drivername);
	if (!state_dir)
		return -ENOMEM;
	dcfg.name = o->drivername;
	dcfg.version = PMEM_CSI_VERSION;
	dcfg.node_id = o->nodeid;
	dcfg.state_dir = state_dir;
	dcfg.device_mode = o->device_manager;
	r = csi_driver_new(&dcfg, &driver);
	if (r < 0)
		return log_error_errno(r, "Failed to set up the driver: %m");

	r = metrics_new(o->drivername, o->nodeid, PMEM_CSI_VERSION, &metrics);
	if (r < 0) {
		log_error_errno(r, "Failed to set up metrics: %m");
		goto out;
	}
	r = serve_metrics(metrics, o->metrics_listen, o->metrics_path, metrics_ready, driver, &http);
	if (r < 0)
		goto out;

	scfg.endpoint = o->endpoint;
	scfg.observer = metrics_observer;
	scfg.observer_userdata = metrics;
	scfg.methods = csi_driver_methods(&scfg.n_methods);
	scfg.userdata = driver;
	scfg.max_request_bytes = MAX_REQUEST_BYTES;
	scfg.workers = 16;
	scfg.loop_nice = -10;
	/* Serve Identity at once: Probe says "not ready" until PMEM is set up. */
	r = csi_server_start(&scfg, &server);
	if (r < 0)
		goto out;
	if (http)
		metrics_http_set_liveness(http, grpc_live, server);
	if (o->peer_listen && *o->peer_listen) {
		struct cache_peers_config pcfg = {
			.listen = o->peer_listen,
			.peers = o->peers,
			.selector = o->peer_selector,
			.ca_file = o->ca_file,
			.cert_file = o->cert_file,
			.key_file = o->key_file,
		};
		r = cache_peers_start(&pcfg, driver, &peers);
		if (r < 0)
			goto out;
	}

	r = sys_ensure_writable("/sys", "/host-sys");
	if (r < 0)
		goto out;
	r = pmem_manager_new(o->device_manager, (unsigned)o->pmem_percentage, &pm);
	if (r < 0) {
		log_error_errno(r, "Failed to set up PMEM in %s mode: %m", o->device_manager);
		goto out;
	}
	r = csi_driver_attach(driver, TAKE_PTR(pm));
	if (r < 0)
		goto out;
	metrics_set_capacity_source(metrics, metrics_capacity, driver);
	metrics_set_unowned_source(metrics, metrics_unowned, driver);
	csi_driver_capacity(driver, &cap);
	log_ready(csi_driver_pm(driver), &cap);

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigwait(&mask, &sig) == 0)
		log_info("Received signal %d (%s), shutting down", sig, strsignal(sig));
	r = 0;
out:
	/* Scrapes and /healthz use the driver, gRPC calls the metrics: stop both users first. */
	metrics_http_stop(http);
	csi_server_stop(server, 60 * 1000);
	cache_peers_stop(peers);
	pmem_manager_free(pm);
	csi_driver_free(driver);
	metrics_free(metrics);
	return r;
}

static const char default_nodeid[] = "nodeid";

int main(int argc, char **argv)
{
	struct options o = {
		.drivername = "pmem-csi.intel.com",
		.nodeid = default_nodeid,
		.endpoint = "unix:///tmp/pmem-csi.sock",
		.mode = "node",
		.device_manager = "lvm",
		.metrics_path = "/metrics",
		.logging_format = "text",
		.pmem_percentage = 100,
		/* 1.0's defaults; its deployments set all three. */
		.ca_file = "ca.pem",
		.cert_file = "pmem-controller.pem",
		.key_file = "pmem-controller-key.pem",
	};
	const struct flag flags[] = {
		{ "drivername", FLAG_STRING, &o.drivername, "name of the driver (default \"pmem-csi.intel.com\")", NULL },
		{ "nodeid", FLAG_STRING, &o.nodeid, "node id (default \"nodeid\")", NULL },
		{ "endpoint", FLAG_STRING, &o.endpoint, "PMEM CSI endpoint (default \"unix:///tmp/pmem-csi.sock\")", NULL },
		{ "mode", FLAG_STRING, &o.mode, "driver run mode: node, webhooks, force-convert-raw-namespaces (default \"node\")", NULL },
		{ "deviceManager", FLAG_STRING, &o.device_manager, "device manager to use to manage pmem devices, supported types: 'lvm' or 'direct' (= 'ndctl') (default \"lvm\")", NULL },
		{ "statePath", FLAG_STRING, &o.state_path, "directory path where to persist the state of the driver, defaults to /var/lib/<drivername>", NULL },
		{ "pmemPercentage", FLAG_INT, &o.pmem_percentage, "percentage of space to be used by the driver in each PMEM region (default 100)", NULL },
		{ "metricsListen", FLAG_STRING, &o.metrics_listen, "listen address (like :8001) for prometheus metrics endpoint, disabled by default", NULL },
		{ "metricsPath", FLAG_STRING, &o.metrics_path, "The HTTP path where prometheus metrics will be exposed. (default \"/metrics\")", NULL },
		{ "nodeSelector", FLAG_STRING, &o.node_selector, "JSON representation of the node selector labels (default {\"storage\":\"pmem\"})", NULL },
		{ "kubeconfig", FLAG_STRING, &o.kubeconfig, "kubeconfig file for -mode=webhooks and force-convert-raw-namespaces (default: in-cluster, else $KUBECONFIG)", NULL },
		{ "rescheduleSeconds", FLAG_INT, &o.reschedule_seconds, "-mode=webhooks: seconds between passes over the PVCs (default 10)", NULL },
		{ "logging-format", FLAG_STRING, &o.logging_format, "Sets the log format. Permitted formats: \"json\", \"text\". (default \"text\")", NULL },
		{ "v", FLAG_INT, &o.verbosity, "number for the log level verbosity", NULL },
		{ "version", FLAG_BOOL, &o.version, "display version information and exit", NULL },
		{ "schedulerListen", FLAG_STRING, &o.scheduler_listen, "-mode=webhooks: HTTPS listen address (like :8000) for scheduler extender and mutating webhook, disabled by default (needs certFile, keyFile; caFile: client certificates required)", NULL },
		{ "insecureSchedulerListen", FLAG_STRING, &o.insecure_scheduler_listen, "-mode=webhooks: HTTP listen address (like :8001) for scheduler extender and mutating webhook, disabled by default (does not use TLS config)", NULL },
		{ "caFile", FLAG_STRING, &o.ca_file, "-schedulerListen, -peerListen: root CA certificate file for verifying clients (and, -peerListen, the peers); empty: no client certificate asked for (default \"ca.pem\")", NULL },
		{ "certFile", FLAG_STRING, &o.cert_file, "-schedulerListen, -peerListen: certificate file (PEM) of the HTTPS server; -peerListen: also the client certificate, issued for \"pmem-node-controller\" (default \"pmem-controller.pem\")", NULL },
		{ "keyFile", FLAG_STRING, &o.key_file, "-schedulerListen, -peerListen: private key file (PEM) for the certificate (default \"pmem-controller-key.pem\")", NULL },
		{ "peerListen", FLAG_STRING, &o.peer_listen, "-mode=node: HTTPS listen address (like :10000) of the peer channel that makes the copies of cache volumes on other nodes, mutual TLS with caFile, certFile, keyFile; disabled by default (cache volumes then get the copy of the node that creates them only)", NULL },
		{ "peers", FLAG_STRING, &o.peers, "-peerListen: the node drivers that can hold copies of cache volumes, as nodeid=host:port,... (this node may be listed); empty: the pods of -peerSelector in this pod's namespace, through the API, at the port of -peerListen", NULL },
		{ "peerSelector", FLAG_STRING, &o.peer_selector, "-peerListen without -peers: label selector of the node driver pods (default \"app.kubernetes.io/name=pmem-csi-node\")", NULL },
		/* Accepted for compatibility with upstream deployments; no effect. */
		{ "kube-api-qps", FLAG_IGNORED, NULL, NULL, NULL },
		{ "kube-api-burst", FLAG_IGNORED, NULL, NULL, NULL },
		/* klog's flags (klog.InitFlags in 1.1): accepted, values checked, not applied. */
		{ "log_dir", FLAG_KLOG, NULL, NULL, NULL },
		{ "log_file", FLAG_KLOG, NULL, NULL, NULL },
		{ "log_file_max_size", FLAG_KLOG, NULL, NULL, check_uint64 },
		{ "logtostderr", FLAG_KLOG_BOOL, NULL, NULL, NULL },
		{ "alsologtostderr", FLAG_KLOG_BOOL, NULL, NULL, NULL },
		{ "stderrthreshold", FLAG_KLOG, NULL, NULL, check_severity },
		{ "skip_headers", FLAG_KLOG_BOOL, NULL, NULL, NULL },
		{ "skip_log_headers", FLAG_KLOG_BOOL, NULL, NULL, NULL },
		{ "add_dir_header", FLAG_KLOG_BOOL, NULL, NULL, NULL },
		{ "one_output", FLAG_KLOG_BOOL, NULL, NULL, NULL },
		{ "log_backtrace_at", FLAG_KLOG, NULL, NULL, check_trace_location },
		{ "vmodule", FLAG_KLOG, NULL, NULL, check_vmodule },
	};
	struct klog_seen klog = {};
	sigset_t mask;
	int r;

	if (parse_flags(argc, argv, flags, ELEMENTSOF(flags), &klog) < 0)
		return 2;
	if (o.version) {
		printf("%s\n", PMEM_CSI_VERSION);
		return 0;
	}
	if (!streq_ptr(o.logging_format, "text") && !streq_ptr(o.logging_format, "json")) {
		fprintf(stderr, "pmem-csi-driver: -logging-format=%s: must be \"text\" or \"json\"\n", o.logging_format);
		return 2;
	}
	if (o.pmem_percentage < 0 || o.pmem_percentage > 100) {
		fprintf(stderr, "pmem-csi-driver: -pmemPercentage=%d: must be between 0 and 100\n", o.pmem_percentage);
		return 2;
	}
	if (!o.drivername[0] || !o.nodeid[0]) {
		fprintf(stderr, "pmem-csi-driver: -drivername and -nodeid must not be empty\n");
		return 2;
	}
	if (((o.scheduler_listen && *o.scheduler_listen) || (o.insecure_scheduler_listen && *o.insecure_scheduler_listen)) &&
	    !streq_ptr(o.mode, "webhooks")) {
		fprintf(stderr, "pmem-csi-driver: -schedulerListen and -insecureSchedulerListen need -mode=webhooks\n");
		return 2;
	}
	if (((o.peer_listen && *o.peer_listen) || (o.peers && *o.peers) || (o.peer_selector && *o.peer_selector)) &&
	    !streq_ptr(o.mode, "node")) {
		fprintf(stderr, "pmem-csi-driver: -peerListen, -peers and -peerSelector need -mode=node\n");
		return 2;
	}
	malloc_setup();
	log_setup(streq_ptr(o.logging_format, "json") ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT, o.verbosity);
	log_set_error_hook(remember_error);
	if (klog.len)
		log_info("Accepted for compatibility but not applied (this driver logs to stderr only, without "
			 "per-file verbosity): %s", klog.text);
	/* 1.1's manifests pass -nodeid=$(KUBE_NODE_NAME); without -nodeid, use it directly. */
	if (o.nodeid == default_nodeid && getenv("KUBE_NODE_NAME") && *getenv("KUBE_NODE_NAME"))
		o.nodeid = getenv("KUBE_NODE_NAME");

	/* Block the shutdown signals in every thread (threads inherit the mask);
	 * the main thread collects them with sigwait(). */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* No udev in the driver's container: LVM must not wait for it. */
	setenv("DM_DISABLE_UDEV", "1", 1);
	setenv("LVM_SUPPRESS_FD_WARNINGS", "1", 1);

	log_info("pmem-csi-driver %s starting: mode %s, driver %s, node %s", PMEM_CSI_VERSION, o.mode,
		 o.drivername, o.nodeid);
	raise_open_file_limit();
	if (streq_ptr(o.mode, "node"))
		r = run_node(&o);
	else if (streq_ptr(o.mode, "webhooks") || streq_ptr(o.mode, "force-convert-raw-namespaces")) {
		struct mode_options mo = {
			.drivername = o.drivername,
			.nodeid = o.nodeid,
			.kubeconfig = o.kubeconfig && *o.kubeconfig ? o.kubeconfig : NULL,
			.node_selector = o.node_selector,
			.metrics_listen = o.metrics_listen,
			.metrics_path = o.metrics_path,
			.version = PMEM_CSI_VERSION,
			.resync_seconds = o.reschedule_seconds,
			.scheduler_listen = o.scheduler_listen,
			.insecure_scheduler_listen = o.insecure_scheduler_listen,
			.ca_file = o.ca_file,
			.cert_file = o.cert_file,
			.key_file = o.key_file,
		};
		r = streq_ptr(o.mode, "webhooks") ? run_webhooks(&mo) : run_force_convert(&mo);
	} else
		r = log_error_errno(-EINVAL, "Unknown -mode=%s (node, webhooks or force-convert-raw-namespaces)",
				    o.mode);
	if (r < 0)
		write_termination_log(r);
	return r < 0 ? 1 : 0;
}
