/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pmem-csi-driver: parse the (Go-style, upstream-compatible) flags, set up
 * logging, start the CSI gRPC server, prepare PMEM, serve until SIGTERM.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
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
	int reschedule_seconds;
	int pmem_percentage;
	int verbosity;
	bool version;
};

enum flag_kind { FLAG_STRING, FLAG_INT, FLAG_BOOL, FLAG_IGNORED, FLAG_IGNORED_BOOL };

struct flag {
	const char *name;
	enum flag_kind kind;
	void *target;
	const char *help;
};

static void usage(const struct flag *flags, size_t n)
{
	fprintf(stderr, "Usage of pmem-csi-driver:\n");
	for (size_t i = 0; i < n; i++)
		if (flags[i].help)
			fprintf(stderr, "  -%s\n    \t%s\n", flags[i].name, flags[i].help);
}

/* Go's flag syntax: -name=value, --name=value, -name value; booleans as -name or -name=false. */
static int parse_flags(int argc, char **argv, const struct flag *flags, size_t n)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *eq, *value = NULL;
		char name[64];
		size_t len, j;

		if (a[0] != '-' || a[1] == 0) {
			fprintf(stderr, "pmem-csi-driver: unexpected argument \"%s\"\n", a);
			return -EINVAL;
		}
		a += a[1] == '-' ? 2 : 1;
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
		if (flags[j].kind == FLAG_BOOL || flags[j].kind == FLAG_IGNORED_BOOL) {
			bool b = true;
			if (value && parse_bool(value, &b) < 0) {
				fprintf(stderr, "pmem-csi-driver: invalid boolean value \"%s\" for -%s\n", value, name);
				return -EINVAL;
			}
			if (flags[j].kind == FLAG_BOOL)
				*(bool *)flags[j].target = b;
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
		default:
			break;
		}
	}
	return 0;
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

static int run_node(const struct options *o)
{
	_cleanup_free_ char *state_dir = NULL;
	struct csi_driver *driver = NULL;
	struct csi_server *server = NULL;
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
	/* Serve Identity at once: Probe says "not ready" until PMEM is set up. */
	r = csi_server_start(&scfg, &server);
	if (r < 0)
		goto out;
	if (http)
		metrics_http_set_liveness(http, grpc_live, server);

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
	pmem_manager_free(pm);
	csi_driver_free(driver);
	metrics_free(metrics);
	return r;
}

int main(int argc, char **argv)
{
	struct options o = {
		.drivername = "pmem-csi.intel.com",
		.nodeid = "nodeid",
		.endpoint = "unix:///tmp/pmem-csi.sock",
		.mode = "node",
		.device_manager = "lvm",
		.metrics_path = "/metrics",
		.logging_format = "text",
		.pmem_percentage = 100,
	};
	const struct flag flags[] = {
		{ "drivername", FLAG_STRING, &o.drivername, "name of the driver (default \"pmem-csi.intel.com\")" },
		{ "nodeid", FLAG_STRING, &o.nodeid, "node id (default \"nodeid\")" },
		{ "endpoint", FLAG_STRING, &o.endpoint, "PMEM CSI endpoint (default \"unix:///tmp/pmem-csi.sock\")" },
		{ "mode", FLAG_STRING, &o.mode, "driver run mode: node, webhooks, force-convert-raw-namespaces (default \"node\")" },
		{ "deviceManager", FLAG_STRING, &o.device_manager, "device manager to use to manage pmem devices, supported types: 'lvm' or 'direct' (= 'ndctl') (default \"lvm\")" },
		{ "statePath", FLAG_STRING, &o.state_path, "directory path where to persist the state of the driver, defaults to /var/lib/<drivername>" },
		{ "pmemPercentage", FLAG_INT, &o.pmem_percentage, "percentage of space to be used by the driver in each PMEM region (default 100)" },
		{ "metricsListen", FLAG_STRING, &o.metrics_listen, "listen address (like :8001) for prometheus metrics endpoint, disabled by default" },
		{ "metricsPath", FLAG_STRING, &o.metrics_path, "The HTTP path where prometheus metrics will be exposed. (default \"/metrics\")" },
		{ "nodeSelector", FLAG_STRING, &o.node_selector, "JSON representation of the node selector labels (default {\"storage\":\"pmem\"})" },
		{ "kubeconfig", FLAG_STRING, &o.kubeconfig, "kubeconfig file for -mode=webhooks and force-convert-raw-namespaces (default: in-cluster, else $KUBECONFIG)" },
		{ "rescheduleSeconds", FLAG_INT, &o.reschedule_seconds, "-mode=webhooks: seconds between passes over the PVCs (default 10)" },
		{ "logging-format", FLAG_STRING, &o.logging_format, "Sets the log format. Permitted formats: \"json\", \"text\". (default \"text\")" },
		{ "v", FLAG_INT, &o.verbosity, "number for the log level verbosity" },
		{ "version", FLAG_BOOL, &o.version, "display version information and exit" },
		/* Accepted for compatibility with upstream deployments; no effect. */
		{ "caFile", FLAG_IGNORED, NULL, NULL },
		{ "certFile", FLAG_IGNORED, NULL, NULL },
		{ "keyFile", FLAG_IGNORED, NULL, NULL },
		{ "schedulerListen", FLAG_IGNORED, NULL, NULL },
		{ "insecureSchedulerListen", FLAG_IGNORED, NULL, NULL },
		{ "kube-api-qps", FLAG_IGNORED, NULL, NULL },
		{ "kube-api-burst", FLAG_IGNORED, NULL, NULL },
		{ "vmodule", FLAG_IGNORED, NULL, NULL },
		{ "logtostderr", FLAG_IGNORED_BOOL, NULL, NULL },
		{ "alsologtostderr", FLAG_IGNORED_BOOL, NULL, NULL },
	};
	sigset_t mask;
	int r;

	if (parse_flags(argc, argv, flags, ELEMENTSOF(flags)) < 0)
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
	log_setup(streq_ptr(o.logging_format, "json") ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT, o.verbosity);

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
		};
		r = streq_ptr(o.mode, "webhooks") ? run_webhooks(&mo) : run_force_convert(&mo);
	} else
		r = log_error_errno(-EINVAL, "Unknown -mode=%s (node, webhooks or force-convert-raw-namespaces)",
				    o.mode);
	return r < 0 ? 1 : 0;
}
