/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>

/*
 * A small Kubernetes API client: JSON over HTTPS with libcurl, the pod's
 * service account (token re-read when the kubelet rotates it) or a kubeconfig,
 * per-request timeouts, and retries with exponential backoff for connection
 * failures, 429 and 5xx. Errors come back as -errno plus a message that names
 * the request and quotes the API server's Status message.
 *
 *   404 -> -ENOENT, 409 -> -EEXIST, 401/403 -> -EACCES, 400/422 -> -EINVAL,
 *   still 429/5xx after the retries -> -EAGAIN, no connection -> -ECONNREFUSED,
 *   timeout -> -ETIMEDOUT.
 */

struct k8s_client;
struct jv;

/**
 * k8s_client_new() - a client for the cluster of kubeconfig; with NULL, the
 * in-cluster configuration (KUBERNETES_SERVICE_HOST/PORT and the service
 * account in /var/run/secrets/kubernetes.io/serviceaccount, or the directory
 * in $PMEM_CSI_SERVICEACCOUNT_DIR), else $KUBECONFIG.
 */
int k8s_client_new(const char *kubeconfig, struct k8s_client **ret, char **ret_err);
/**
 * k8s_client_new_tls() - a client for another HTTPS server of this driver
 * (the peer channel of cache volumes): server is "https://<name>:<port>",
 * resolve "<name>:<port>:<address>" connects to address while the server's
 * certificate is checked against name; the client shows cert_file/key_file
 * (read at each new connection, so a rotated pair is used without a
 * restart). TLS 1.2 or newer, https only, one attempt (change it with
 * k8s_client_set_limits()).
 */
int k8s_client_new_tls(const char *server, const char *resolve, const char *ca_file, const char *cert_file,
		       const char *key_file, struct k8s_client **ret, char **ret_err);
void k8s_client_free(struct k8s_client *c);
/** k8s_client_server() - the API server URL; valid as long as the client. */
const char *k8s_client_server(const struct k8s_client *c);
/** k8s_client_set_limits() - per-attempt timeout and number of attempts (defaults 15 s, 5). */
void k8s_client_set_limits(struct k8s_client *c, long timeout_ms, unsigned attempts);

/**
 * k8s_request() - one API call. body may be NULL. On success (2xx), ret_body
 * (optional) gets the parsed JSON response. Thread-safe.
 */
int k8s_request(struct k8s_client *c, const char *method, const char *path, const char *content_type,
		const char *body, struct jv **ret_body, char **ret_err);

/** k8s_get() - GET path. */
int k8s_get(struct k8s_client *c, const char *path, struct jv **ret, char **ret_err);

/** k8s_merge_patch() - PATCH path with a JSON merge patch (RFC 7386). */
int k8s_merge_patch(struct k8s_client *c, const char *path, const char *patch, struct jv **ret, char **ret_err);

/** k8s_path_escape() - a name for use in a URL path segment (caller frees). */
char *k8s_path_escape(const char *s);

/**
 * k8s_watch() - GET path as a watch stream (?watch=1, bookmarks, timeoutSeconds) on a
 * connection of its own and call on_event(type, object) for each event as it arrives:
 * ADDED, MODIFIED, DELETED, BOOKMARK or ERROR (object is then a Status). A negative
 * return of on_event ends the watch with it; return -ESTALE to end it quietly. 0 when
 * the server ended the stream (timeout), -ESTALE for 410 Gone (re-list), else -errno
 * and ret_err. No retries: the caller decides (re-list, backoff).
 */
int k8s_watch(struct k8s_client *c, const char *path, unsigned timeout_s,
	      int (*on_event)(const char *type, const struct jv *object, void *ud), void *ud, char **ret_err);

/**
 * k8s_apply() - server-side apply: PATCH path with object (JSON or YAML) as
 * application/apply-patch+yaml, fieldManager=field_manager and force=true (the
 * operator owns its fields; fields others set and we do not stay theirs).
 */
int k8s_apply(struct k8s_client *c, const char *path, const char *field_manager, const char *object,
	      struct jv **ret, char **ret_err);
