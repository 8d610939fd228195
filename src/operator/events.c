/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One POST per event. Deduplication is the caller's: the reconcile emits an event
 * only when the CR's phase or reason changes, so a resync that changes nothing
 * records nothing (client-go's recorder would count repeats up instead).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strbuf.h"
#include "basic/strutil.h"
#include "events.h"
#include "json/json.h"
#include "k8s/k8s.h"

#define EVENT_NAMESPACE "default"
#define EVENT_MESSAGE_MAX 1024 /* what the API server keeps of a message */

int operator_event(struct k8s_client *c, const struct jv *cr, const char *type, const char *reason,
		   const char *message)
{
	const struct jv *meta = jv_object_get(cr, "metadata");
	const char *name = jv_string(jv_object_get(meta, "name"));
	const char *uid = jv_string(jv_object_get(meta, "uid"));
	const char *rv = jv_string(jv_object_get(meta, "resourceVersion"));
	_cleanup_free_ char *err = NULL, *body = NULL, *msg = NULL;
	struct strbuf b = STRBUF_INIT;
	struct timeval tv;
	struct tm tm;
	char ts[32];
	int r;

	if (!name)
		return -EINVAL;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	msg = strndup(message ? message : "", EVENT_MESSAGE_MAX);
	if (!msg)
		return -ENOMEM;

	/* Name as client-go makes it: <object>.<unix nanoseconds in hex>. */
	strbuf_append_str(&b, "{\"apiVersion\":\"v1\",\"kind\":\"Event\",\"metadata\":{\"name\":");
	{
		_cleanup_free_ char *n = xasprintf("%s.%llx", name,
						   (unsigned long long)tv.tv_sec * 1000000000ULL +
							   (unsigned long long)tv.tv_usec * 1000ULL);
		strbuf_append_json_string(&b, n ? n : name);
	}
	strbuf_append_str(&b, ",\"namespace\":\"" EVENT_NAMESPACE "\"},\"involvedObject\":{"
			      "\"apiVersion\":\"pmem-csi.intel.com/v1beta1\",\"kind\":\"PmemCSIDeployment\",\"name\":");
	strbuf_append_json_string(&b, name);
	if (uid) {
		strbuf_append_str(&b, ",\"uid\":");
		strbuf_append_json_string(&b, uid);
	}
	if (rv) {
		strbuf_append_str(&b, ",\"resourceVersion\":");
		strbuf_append_json_string(&b, rv);
	}
	strbuf_append_str(&b, "},\"reason\":");
	strbuf_append_json_string(&b, reason);
	strbuf_append_str(&b, ",\"message\":");
	strbuf_append_json_string(&b, msg);
	strbuf_append_str(&b, ",\"type\":");
	strbuf_append_json_string(&b, type);
	strbuf_appendf(&b, ",\"source\":{\"component\":\"pmem-csi-operator\"},\"reportingComponent\":"
			   "\"pmem-csi-operator\",\"firstTimestamp\":\"%s\",\"lastTimestamp\":\"%s\",\"count\":1}",
		       ts, ts);
	if (strbuf_failed(&b)) {
		strbuf_free(&b);
		return -ENOMEM;
	}
	body = strbuf_steal(&b);
	r = k8s_request(c, "POST", "/api/v1/namespaces/" EVENT_NAMESPACE "/events", "application/json", body, NULL,
			&err);
	if (r < 0)
		return log_warning_errno(r, "Failed to record event %s about PmemCSIDeployment '%s': %s", reason, name,
					 err ? err : "");
	log_v(3, "Event %s %s about PmemCSIDeployment '%s': %s", type, reason, name, msg);
	return 0;
}
