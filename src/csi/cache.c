/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cache volumes across nodes (docs/design.md, "Cache volumes"): the peer
 * channel between node drivers and the create/delete flow on top of it.
 *
 * The channel is HTTPS with mutual TLS: each node driver serves POST
 * /pmem-csi/v1/{CreateVolume,DeleteVolume} (k8s/webserver.c) and calls its
 * peers with libcurl (k8s/client.c). A request carries the CSI request as
 * the peer would get it from its own provisioner, protobuf-encoded in hex
 * inside a JSON object, so the copy goes through the same validation and
 * idempotency as any CreateVolume; the answer is the gRPC status code and
 * message (and the size). Both ends check the other's certificate: signed by
 * the CA of -caFile AND issued for CACHE_PEER_NAME, the node driver's name,
 * so that a certificate of another role of the driver cannot call in or
 * answer.
 */
#include "cache_peer.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/arena.h"
#include "basic/fileio.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strutil.h"
#include "cache.h"
#include "driver.h"
#include "json/json.h"
#include "k8s/k8s.h"
#include "k8s/webserver.h"

#define PEER_BODY_MAX (256u * 1024) /* a CreateVolumeRequest has at most 64 parameters of bounded size */
#define PEER_ARENA_MAX (1024u * 1024)
#define PEER_TIMEOUT_MS (180L * 1000) /* a create waits for the volume's lock and for lvcreate under load */
#define PATH_CREATE "/pmem-csi/v1/CreateVolume"
#define PATH_DELETE "/pmem-csi/v1/DeleteVolume"

struct peer {
	char *node;    /* node ID */
	char *address; /* host or IP as given */
	uint16_t port;
	struct k8s_client *client;
};

struct cache_peers {
	struct csi_driver *driver;
	struct webserver *server;
	/* -peers: fixed, with a client each */
	struct peer *peers;
	size_t n_peers;
	/* without -peers: the pods of the node DaemonSet, listed at each call */
	struct k8s_client *api;
	char *pods_path; /* /api/v1/namespaces/<ns>/pods?labelSelector=<selector> */
	uint16_t port;   /* the peer port (-peerListen's) */
	char *ca_file, *cert_file, *key_file;
};

/* The peers of one call: borrowed from -peers, or listed from the API (and freed after the call). */
struct peer_set {
	struct peer *peers;
	size_t n;
	bool owned;
};

/* The hooks reach the peer set through this (one driver, one set per process). */
static struct cache_peers *the_peers;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void hex_encode(const uint8_t *in, size_t len, char *out)
{
	hexlify(in, len, out);
}

static int unhex_digit(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

static int hex_decode(const char *s, uint8_t **ret, size_t *ret_len)
{
	size_t len = strlen(s);
	uint8_t *buf;

	if (len % 2)
		return -EINVAL;
	buf = malloc(len / 2 + 1);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < len / 2; i++) {
		int hi = unhex_digit(s[2 * i]), lo = unhex_digit(s[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			free(buf);
			return -EINVAL;
		}
		buf[i] = (uint8_t)(hi << 4 | lo);
	}
	*ret = buf;
	*ret_len = len / 2;
	return 0;
}

/* ---- server side: a peer asks for this node's copy ---- */

int cache_peer_decode(const char *body, size_t len, bool create, ProtobufCMessage **ret)
{
	_cleanup_(jv_unrefp) struct jv *v = NULL;
	_cleanup_free_ uint8_t *pb = NULL;
	const ProtobufCMessageDescriptor *desc =
		create ? &csi__v1__create_volume_request__descriptor : &csi__v1__delete_volume_request__descriptor;
	ProtobufCMessage *m;
	const char *hex;
	size_t pb_len = 0;
	int r;

	if (jv_parse(body, len, &v, NULL) < 0 || !(hex = jv_string(jv_object_get(v, "request"))))
		return -EINVAL;
	r = hex_decode(hex, &pb, &pb_len);
	if (r < 0)
		return r;
	m = protobuf_c_message_unpack(desc, NULL, pb_len, pb);
	if (!m)
		return -EINVAL;
	*ret = m;
	return 0;
}

static void reply_json(struct webserver_reply *reply, unsigned status, enum csi_code code, const char *message,
		       int64_t capacity)
{
	_cleanup_(jv_unrefp) struct jv *o = jv_new_object();

	reply->status = status;
	reply->content_type = "application/json";
	if (!o || jv_object_set_integer(o, "code", code) < 0 ||
	    jv_object_set_string(o, "message", message ? message : "") < 0 ||
	    (capacity >= 0 && jv_object_set_integer(o, "capacity_bytes", capacity) < 0) ||
	    !(reply->body = jv_dump(o))) {
		reply->status = 500;
		reply->body = NULL;
		return;
	}
	reply->len = strlen(reply->body);
}

static void serve(void *userdata, const char *method, const char *path, const char *body, size_t len,
		  struct webserver_reply *reply)
{
	struct cache_peers *cp = userdata;
	ProtobufCMessage *req = NULL, *resp = NULL;
	struct csi_call call = {};
	bool create;
	int64_t capacity = -1;
	double start = now_s();
	int r;

	create = streq_ptr(path, PATH_CREATE);
	if (!streq_ptr(method, "POST") || (!create && !streq_ptr(path, PATH_DELETE))) {
		reply_json(reply, 404, CSI_CODE_UNIMPLEMENTED, "not found", -1);
		return;
	}
	if (cache_peer_decode(body, len, create, &req) < 0) {
		reply_json(reply, 400, CSI_CODE_INVALID_ARGUMENT, "request: not a hex-encoded CSI request", -1);
		return;
	}
	call.method = create ? "CreateVolume (peer)" : "DeleteVolume (peer)";
	call.arena = arena_new(PEER_ARENA_MAX);
	if (!call.arena) {
		protobuf_c_message_free_unpacked(req, NULL);
		reply_json(reply, 500, CSI_CODE_RESOURCE_EXHAUSTED, "out of memory", -1);
		return;
	}
	r = create ? csi_controller_create_copy(&call, cp->driver, req, &resp)
		   : csi_controller_delete_copy(&call, cp->driver, req, &resp);
	if (r >= 0) {
		call.code = CSI_CODE_OK;
		call.message[0] = 0;
		if (create && resp && ((Csi__V1__CreateVolumeResponse *)resp)->volume)
			capacity = ((Csi__V1__CreateVolumeResponse *)resp)->volume->capacity_bytes;
	}
	log_v(call.code == CSI_CODE_OK ? 2 : 1, "%s of %s: %s%s%s (%.3f s)", call.method, call.volume,
	      csi_code_name(call.code), call.message[0] ? ": " : "", call.message,
	      now_s() - start);
	/* The CSI outcome travels in the body: HTTP errors are the channel's own. */
	reply_json(reply, 200, call.code, call.message, capacity);
	arena_free(call.arena);
	protobuf_c_message_free_unpacked(req, NULL);
}

/* ---- client side ---- */

struct peer_result {
	enum csi_code code;
	char message[512];
	bool unreachable; /* no answer: connection, TLS or HTTP failure */
};

static int peer_call(struct peer *p, const char *path, const ProtobufCMessage *msg, struct peer_result *ret)
{
	_cleanup_(jv_unrefp) struct jv *o = NULL, *resp = NULL;
	_cleanup_free_ uint8_t *pb = NULL;
	_cleanup_free_ char *hex = NULL, *body = NULL, *err = NULL;
	size_t len = protobuf_c_message_get_packed_size(msg);
	int64_t code;
	const char *m;
	int r;

	*ret = (struct peer_result){ .code = CSI_CODE_UNAVAILABLE };
	if (!p->client) {
		ret->unreachable = true;
		snprintf(ret->message, sizeof(ret->message), "peer %s has no address (its pod has no IP yet)", p->node);
		return -EHOSTUNREACH;
	}
	pb = malloc(len ? len : 1);
	hex = malloc(2 * len + 1);
	o = jv_new_object();
	if (!pb || !hex || !o)
		return -ENOMEM;
	protobuf_c_message_pack(msg, pb);
	hex_encode(pb, len, hex);
	if (jv_object_set_string(o, "request", hex) < 0 || !(body = jv_dump(o)))
		return -ENOMEM;
	r = k8s_request(p->client, "POST", path, "application/json", body, &resp, &err);
	if (r < 0) {
		ret->unreachable = true;
		snprintf(ret->message, sizeof(ret->message), "peer %s (%s:%u) unreachable: %s", p->node, p->address,
			 p->port, err ? err : strerror(-r));
		return r;
	}
	code = jv_is_integer(jv_object_get(resp, "code")) ? jv_integer(jv_object_get(resp, "code")) : CSI_CODE_UNKNOWN;
	m = jv_string(jv_object_get(resp, "message"));
	ret->code = code >= 0 && code <= CSI_CODE_UNAUTHENTICATED ? (enum csi_code)code : CSI_CODE_UNKNOWN;
	snprintf(ret->message, sizeof(ret->message), "peer %s: %s", p->node, m ? m : "");
	return ret->code == CSI_CODE_OK ? 0 : -EIO;
}

static int peer_client(struct peer *p, const char *ca_file, const char *cert_file, const char *key_file)
{
	_cleanup_free_ char *server = NULL, *resolve = NULL, *err = NULL;
	bool v6 = strchr(p->address, ':') && p->address[0] != '[';
	int r;

	server = xasprintf("https://%s:%u", CACHE_PEER_NAME, p->port);
	resolve = xasprintf(v6 ? "%s:%u:[%s]" : "%s:%u:%s", CACHE_PEER_NAME, p->port, p->address);
	if (!server || !resolve)
		return -ENOMEM;
	r = k8s_client_new_tls(server, resolve, ca_file, cert_file, key_file, &p->client, &err);
	if (r < 0)
		return log_error_errno(r, "Cannot make a client for peer %s: %s", p->node, err ? err : "");
	k8s_client_set_limits(p->client, PEER_TIMEOUT_MS, 1);
	return 0;
}

static void peers_free(struct peer *peers, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		k8s_client_free(peers[i].client);
		free(peers[i].node);
		free(peers[i].address);
	}
	free(peers);
}

int cache_peers_from_pods(const char *json, size_t len, uint16_t port, struct cache_peer_addr **ret, size_t *ret_n)
{
	_cleanup_(jv_unrefp) struct jv *v = NULL;
	struct cache_peer_addr *out;
	struct jv *items;
	size_t n = 0;

	if (jv_parse(json, len, &v, NULL) < 0 || !jv_is_array(items = jv_object_get(v, "items")))
		return -EINVAL;
	out = calloc(jv_array_size(items) + 1, sizeof(*out));
	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < jv_array_size(items); i++) {
		struct jv *pod = jv_array_get(items, i), *status = jv_object_get(pod, "status");
		const char *node = jv_string(jv_object_get(jv_object_get(pod, "spec"), "nodeName"));
		const char *ip = jv_string(jv_object_get(status, "podIP"));
		const char *phase = jv_string(jv_object_get(status, "phase"));

		/* Not scheduled yet, or done for good: not a node driver that can hold a copy. */
		if (!node || !*node || streq_ptr(phase, "Failed") || streq_ptr(phase, "Succeeded"))
			continue;
		out[n].node = strdup(node);
		out[n].address = strdup(ip ? ip : ""); /* "" : the pod has no IP yet, it does not answer */
		out[n].port = port;
		if (!out[n].node || !out[n].address) {
			cache_peer_addrs_free(out, n + 1);
			return -ENOMEM;
		}
		n++;
	}
	*ret = out;
	*ret_n = n;
	return 0;
}

void cache_peer_addrs_free(struct cache_peer_addr *a, size_t n)
{
	if (!a)
		return;
	for (size_t i = 0; i < n; i++) {
		free(a[i].node);
		free(a[i].address);
	}
	free(a);
}

/* The peers for one call: -peers as they are, or the node DaemonSet's pods now. */
static int peer_set_get(struct cache_peers *cp, struct peer_set *ret, char *why, size_t why_len)
{
	_cleanup_free_ char *err = NULL, *body = NULL;
	_cleanup_(jv_unrefp) struct jv *list = NULL;
	struct cache_peer_addr *addrs = NULL;
	struct peer *peers;
	size_t n = 0;
	int r;

	if (!cp->api) {
		*ret = (struct peer_set){ cp->peers, cp->n_peers, false };
		return 0;
	}
	r = k8s_get(cp->api, cp->pods_path, &list, &err);
	if (r >= 0 && !(body = jv_dump(list)))
		r = -ENOMEM;
	if (r >= 0)
		r = cache_peers_from_pods(body, strlen(body), cp->port, &addrs, &n);
	if (r < 0) {
		snprintf(why, why_len, "cannot list the node drivers (%s): %s", cp->pods_path,
			 err ? err : strerror(-r));
		return r;
	}
	peers = calloc(n + 1, sizeof(*peers));
	if (!peers) {
		cache_peer_addrs_free(addrs, n);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		peers[i].node = TAKE_PTR(addrs[i].node);
		peers[i].address = TAKE_PTR(addrs[i].address);
		peers[i].port = addrs[i].port;
		if (peers[i].address[0] &&
		    (r = peer_client(&peers[i], cp->ca_file, cp->cert_file, cp->key_file)) < 0) {
			cache_peer_addrs_free(addrs, n);
			peers_free(peers, n);
			snprintf(why, why_len, "cannot make a client for node %s", peers[i].node);
			return r;
		}
	}
	cache_peer_addrs_free(addrs, n);
	*ret = (struct peer_set){ peers, n, true };
	return 0;
}

static void peer_set_done(struct peer_set *s)
{
	if (s->owned)
		peers_free(s->peers, s->n);
	*s = (struct peer_set){};
}

/* Whether accessibility_requirements allow node (no requisite: every node). */
static bool node_allowed(struct csi_driver *d, const Csi__V1__TopologyRequirement *req, const char *node)
{
	const char *key = csi_driver_topology_key(d);

	if (!req || req->n_requisite == 0)
		return true;
	for (size_t i = 0; i < req->n_requisite; i++) {
		bool ok = true;
		for (size_t j = 0; j < req->requisite[i]->n_segments; j++) {
			const Csi__V1__Topology__SegmentsEntry *s = req->requisite[i]->segments[j];
			if (streq_ptr(s->key, key) && !streq_ptr(s->value, node))
				ok = false;
		}
		if (ok)
			return true;
	}
	return false;
}

/* FNV-1a of volume ID and node: each volume gets its own, stable order of peers (retries ask the same ones). */
static uint64_t rank(const char *id, const char *node)
{
	uint64_t h = 1469598103934665603ULL;

	for (const char *s = id; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ULL;
	h = (h ^ 0xff) * 1099511628211ULL;
	for (const char *s = node; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ULL;
	return h;
}

static Csi__V1__Topology *topology_of(struct csi_call *c, struct csi_driver *d, const char *node)
{
	Csi__V1__Topology *t = CSI_NEW(c, Csi__V1__Topology, csi__v1__topology__init);
	Csi__V1__Topology__SegmentsEntry *e =
		CSI_NEW(c, Csi__V1__Topology__SegmentsEntry, csi__v1__topology__segments_entry__init);
	Csi__V1__Topology__SegmentsEntry **arr = CSI_NEW_ARRAY(c, Csi__V1__Topology__SegmentsEntry *, 1);

	if (!t || !e || !arr)
		return NULL;
	e->key = (char *)csi_driver_topology_key(d);
	e->value = arena_strdup(c->arena, node);
	if (!e->value)
		return NULL;
	arr[0] = e;
	t->n_segments = 1;
	t->segments = arr;
	return t;
}

/* Remove the copies made so far (best effort: a failure is logged, the volume was never handed out). */
static void roll_back(struct csi_driver *d, const char *id, struct peer **made, size_t n_made)
{
	Csi__V1__DeleteVolumeRequest del = CSI__V1__DELETE_VOLUME_REQUEST__INIT;
	struct csi_call call = { .method = "DeleteVolume (rollback)" };
	ProtobufCMessage *resp = NULL;
	struct peer_result res;

	del.volume_id = (char *)id;
	for (size_t i = 0; i < n_made; i++)
		if (peer_call(made[i], PATH_DELETE, &del.base, &res) < 0)
			log_warning("Cache volume %s: cannot remove the copy on %s after the failed create: %s", id,
				    made[i]->node, res.message);
	call.arena = arena_new(PEER_ARENA_MAX);
	if (!call.arena || csi_controller_delete_copy(&call, d, &del.base, &resp) < 0)
		log_warning("Cache volume %s: cannot remove the local copy after the failed create: %s", id,
			    call.message);
	arena_free(call.arena);
}

static int create_copies(struct csi_call *c, struct csi_driver *d, const Csi__V1__CreateVolumeRequest *req,
			 unsigned cache_size, const char *id, struct peer_set *set, ProtobufCMessage **ret);

static int cache_create(struct csi_call *c, struct csi_driver *d, const Csi__V1__CreateVolumeRequest *req,
			unsigned cache_size, const char *id, ProtobufCMessage **ret)
{
	struct peer_set set = {};
	char why[512];
	int r;

	/* This node's copy first: the provisioner that called us runs here. */
	r = csi_controller_create_copy(c, d, &req->base, ret);
	if (r < 0)
		return r;
	r = peer_set_get(the_peers, &set, why, sizeof(why));
	if (r < 0) {
		roll_back(d, id, NULL, 0);
		return csi_fail(c, CSI_CODE_UNAVAILABLE, "cache volume %s: %s", id, why);
	}
	r = create_copies(c, d, req, cache_size, id, &set, ret);
	peer_set_done(&set);
	return r;
}

static int create_copies(struct csi_call *c, struct csi_driver *d, const Csi__V1__CreateVolumeRequest *req,
			 unsigned cache_size, const char *id, struct peer_set *set, ProtobufCMessage **ret)
{
	const char *self = csi_driver_cfg(d)->node_id;
	_cleanup_free_ struct peer **order = NULL, **made = NULL;
	Csi__V1__CreateVolumeResponse *resp;
	Csi__V1__Topology **topo;
	size_t n = 0, n_made = 0, full = 0;

	order = calloc(set->n + 1, sizeof(*order));
	made = calloc(set->n + 1, sizeof(*made));
	if (!order || !made) {
		roll_back(d, id, NULL, 0);
		return csi_oom(c);
	}
	/* a pod without an IP is a node whose driver is not running yet: no room to offer */
	for (size_t i = 0; i < set->n; i++)
		if (!streq_ptr(set->peers[i].node, self) && set->peers[i].client &&
		    node_allowed(d, req->accessibility_requirements, set->peers[i].node))
			order[n++] = &set->peers[i];
	/* insertion sort by rank: a handful of peers */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && rank(id, order[j]->node) < rank(id, order[j - 1]->node); j--) {
			struct peer *t = order[j];
			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	for (size_t i = 0; i < n && n_made + 1 < cache_size; i++) {
		struct peer_result res;

		if (peer_call(order[i], PATH_CREATE, &req->base, &res) >= 0) {
			made[n_made++] = order[i];
			continue;
		}
		if (!res.unreachable && res.code == CSI_CODE_RESOURCE_EXHAUSTED) {
			/* no room there: as 0.7, try the next node */
			log_v(2, "Cache volume %s: %s", id, res.message);
			full++;
			continue;
		}
		/* A node that exists but does not answer, or refuses: no volume with
		 * fewer copies than could be made, and nothing left behind. */
		roll_back(d, id, made, n_made);
		return csi_fail(c, res.unreachable ? CSI_CODE_UNAVAILABLE : res.code,
				"cache volume %s: cannot create the copy on %s, so the copies made (%zu) are removed "
				"again: %s",
				id, order[i]->node, n_made + 1, res.message);
	}
	if (n_made + 1 < cache_size)
		log_warning("Cache volume %s: %zu of %u copies (%zu other nodes, %zu of them without room)", id,
			    n_made + 1, cache_size, n, full);
	resp = (Csi__V1__CreateVolumeResponse *)*ret;
	topo = CSI_NEW_ARRAY(c, Csi__V1__Topology *, n_made + 1);
	if (!topo || !(topo[0] = topology_of(c, d, self)))
		return csi_oom(c);
	for (size_t i = 0; i < n_made; i++)
		if (!(topo[i + 1] = topology_of(c, d, made[i]->node)))
			return csi_oom(c);
	resp->volume->accessible_topology = topo;
	resp->volume->n_accessible_topology = n_made + 1;
	log_v(2, "Cache volume %s: %zu copies", id, n_made + 1);
	return 0;
}

static int cache_remove(struct csi_call *c, struct csi_driver *d, const Csi__V1__DeleteVolumeRequest *req)
{
	const char *self = csi_driver_cfg(d)->node_id;
	struct peer_set set = {};
	char why[512];
	int r;

	r = peer_set_get(the_peers, &set, why, sizeof(why));
	if (r < 0)
		return csi_fail(c, CSI_CODE_UNAVAILABLE, "cache volume %s: %s", req->volume_id, why);
	/* Every peer: a copy may be on any of them, and a peer without one answers OK. */
	for (size_t i = 0; i < set.n; i++) {
		struct peer_result res;

		if (streq_ptr(set.peers[i].node, self))
			continue;
		if (peer_call(&set.peers[i], PATH_DELETE, &req->base, &res) < 0) {
			r = csi_fail(c, res.unreachable ? CSI_CODE_UNAVAILABLE : res.code,
				     "cache volume %s: cannot delete the copy on %s (the copy here is kept until it "
				     "is gone): %s",
				     req->volume_id, set.peers[i].node, res.message);
			break;
		}
	}
	peer_set_done(&set);
	return r < 0 ? r : 0;
}

static const struct csi_cache_hooks hooks = {
	.create = cache_create,
	.remove = cache_remove,
};

/* "node=host:port" (host may be "[v6]") */
static int parse_peer(const char *s, struct peer *ret)
{
	const char *eq = strchr(s, '='), *colon = strrchr(s, ':');
	uint64_t port;

	if (!eq || eq == s || !colon || colon < eq || colon == eq + 1 || safe_atou64(colon + 1, &port) < 0 ||
	    port == 0 || port > 65535)
		return -EINVAL;
	ret->node = strndup(s, (size_t)(eq - s));
	ret->address = strndup(eq + 1, (size_t)(colon - eq - 1));
	ret->port = (uint16_t)port;
	return ret->node && ret->address ? 0 : -ENOMEM;
}

/* A label selector as a query value: keep what is safe, escape the rest. */
static char *query_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = malloc(strlen(s) * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
		    ch == '_' || ch == '.') {
			*o++ = (char)ch;
		} else {
			*o++ = '%';
			*o++ = hex[ch >> 4];
			*o++ = hex[ch & 15];
		}
	}
	*o = 0;
	return out;
}

/* The namespace of this pod: $POD_NAMESPACE, else the service account's. */
static char *own_namespace(void)
{
	const char *env = getenv("POD_NAMESPACE");
	const char *dir = getenv("PMEM_CSI_SERVICEACCOUNT_DIR");
	_cleanup_free_ char *path = NULL, *text = NULL;
	size_t n;

	if (env && *env)
		return strdup(env);
	path = xasprintf("%s/namespace", dir && *dir ? dir : "/var/run/secrets/kubernetes.io/serviceaccount");
	if (!path || read_file_limited(path, 256, &text, NULL) < 0)
		return NULL;
	n = strcspn(text, "\r\n");
	text[n] = 0;
	return n ? TAKE_PTR(text) : NULL;
}

static int static_peers(struct cache_peers *cp, const struct cache_peers_config *cfg)
{
	_cleanup_free_ char *list = strdup(cfg->peers);
	char *save = NULL;
	int r;

	if (!list)
		return -ENOMEM;
	for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		struct peer *np = realloc(cp->peers, (cp->n_peers + 1) * sizeof(*np)), *p;

		if (!np)
			return -ENOMEM;
		cp->peers = np;
		p = &cp->peers[cp->n_peers];
		*p = (struct peer){};
		cp->n_peers++;
		r = parse_peer(tok, p);
		if (r < 0)
			return log_error_errno(r, "-peers: \"%s\" is not node=host:port", tok);
		r = peer_client(p, cfg->ca_file, cfg->cert_file, cfg->key_file);
		if (r < 0)
			return r;
	}
	return 0;
}

static int api_peers(struct cache_peers *cp, const struct cache_peers_config *cfg, uint16_t port)
{
	_cleanup_free_ char *ns = own_namespace(), *sel = NULL, *err = NULL;
	int r;

	if (!ns)
		return log_error_errno(-ENOENT, "-peerListen without -peers finds the peers through the API, but the "
						"pod's namespace is unknown ($POD_NAMESPACE or the service account's)");
	sel = query_escape(cfg->selector && *cfg->selector ? cfg->selector : CACHE_PEER_SELECTOR);
	cp->pods_path = sel ? xasprintf("/api/v1/namespaces/%s/pods?labelSelector=%s", ns, sel) : NULL;
	cp->ca_file = strdup(cfg->ca_file);
	cp->cert_file = strdup(cfg->cert_file);
	cp->key_file = strdup(cfg->key_file);
	if (!cp->pods_path || !cp->ca_file || !cp->cert_file || !cp->key_file)
		return -ENOMEM;
	cp->port = port;
	r = k8s_client_new(NULL, &cp->api, &err);
	if (r < 0)
		return log_error_errno(r, "-peerListen without -peers needs the API server: %s", err ? err : "");
	k8s_client_set_limits(cp->api, 10000, 3);
	log_info("Peers of cache volumes: the pods of %s", cp->pods_path);
	return 0;
}

int cache_peers_start(const struct cache_peers_config *cfg, struct csi_driver *d, struct cache_peers **ret)
{
	struct cache_peers *cp;
	struct webserver_config wcfg = {
		.listen = cfg->listen,
		.cert_file = cfg->cert_file,
		.key_file = cfg->key_file,
		.ca_file = cfg->ca_file,
		.client_name = CACHE_PEER_NAME,
		.max_body = PEER_BODY_MAX,
		.handler = serve,
	};
	int r;

	if (!cfg->ca_file || !*cfg->ca_file || !cfg->cert_file || !*cfg->cert_file || !cfg->key_file ||
	    !*cfg->key_file)
		return log_error_errno(-EINVAL, "-peerListen=%s needs -caFile, -certFile and -keyFile (mutual TLS)",
				       cfg->listen);
	cp = calloc(1, sizeof(*cp));
	if (!cp)
		return -ENOMEM;
	cp->driver = d;
	wcfg.userdata = cp;
	r = webserver_start(&wcfg, &cp->server);
	if (r < 0) {
		log_error_errno(r, "Cannot serve the peer channel on %s: %m", cfg->listen);
		goto fail;
	}
	r = cfg->peers && *cfg->peers ? static_peers(cp, cfg) : api_peers(cp, cfg, webserver_port(cp->server));
	if (r < 0)
		goto fail;
	the_peers = cp;
	csi_cache_set_hooks(&hooks);
	log_info("Peer channel for cache volumes on %s (port %u), mutual TLS as \"%s\"", cfg->listen,
		 webserver_port(cp->server), CACHE_PEER_NAME);
	*ret = cp;
	return 0;
fail:
	cache_peers_stop(cp);
	return r;
}

void cache_peers_stop(struct cache_peers *cp)
{
	if (!cp)
		return;
	if (the_peers == cp) {
		csi_cache_set_hooks(NULL);
		the_peers = NULL;
	}
	webserver_stop(cp->server);
	peers_free(cp->peers, cp->n_peers);
	k8s_client_free(cp->api);
	free(cp->pods_path);
	free(cp->ca_file);
	free(cp->cert_file);
	free(cp->key_file);
	free(cp);
}
