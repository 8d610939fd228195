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
	struct peer *peers;
	size_t n_peers;
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

static int cache_create(struct csi_call *c, struct csi_driver *d, const Csi__V1__CreateVolumeRequest *req,
			unsigned cache_size, const char *id, ProtobufCMessage **ret)
{
	struct cache_peers *cp = the_peers;
	const char *self = csi_driver_cfg(d)->node_id;
	_cleanup_free_ struct peer **order = NULL, **made = NULL;
	Csi__V1__CreateVolumeResponse *resp;
	Csi__V1__Topology **topo;
	size_t n = 0, n_made = 0, full = 0;
	int r;

	/* This node's copy first: the provisioner that called us runs here. */
	r = csi_controller_create_copy(c, d, &req->base, ret);
	if (r < 0)
		return r;
	order = calloc(cp->n_peers + 1, sizeof(*order));
	made = calloc(cp->n_peers + 1, sizeof(*made));
	if (!order || !made)
		return csi_oom(c);
	for (size_t i = 0; i < cp->n_peers; i++)
		if (!streq_ptr(cp->peers[i].node, self) &&
		    node_allowed(d, req->accessibility_requirements, cp->peers[i].node))
			order[n++] = &cp->peers[i];
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
	struct cache_peers *cp = the_peers;
	const char *self = csi_driver_cfg(d)->node_id;

	/* Every peer: a copy may be on any of them, and a peer without one answers OK. */
	for (size_t i = 0; i < cp->n_peers; i++) {
		struct peer_result res;

		if (streq_ptr(cp->peers[i].node, self))
			continue;
		if (peer_call(&cp->peers[i], PATH_DELETE, &req->base, &res) < 0)
			return csi_fail(c, res.unreachable ? CSI_CODE_UNAVAILABLE : res.code,
					"cache volume %s: cannot delete the copy on %s (the copy here is kept until it "
					"is gone): %s",
					req->volume_id, cp->peers[i].node, res.message);
	}
	return 0;
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

int cache_peers_start(const struct cache_peers_config *cfg, struct csi_driver *d, struct cache_peers **ret)
{
	_cleanup_free_ char *list = NULL;
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
	char *save = NULL;
	int r;

	if (!cfg->ca_file || !*cfg->ca_file || !cfg->cert_file || !*cfg->cert_file || !cfg->key_file ||
	    !*cfg->key_file)
		return log_error_errno(-EINVAL, "-peerListen=%s needs -caFile, -certFile and -keyFile (mutual TLS)",
				       cfg->listen);
	cp = calloc(1, sizeof(*cp));
	if (!cp)
		return -ENOMEM;
	cp->driver = d;
	list = cfg->peers ? strdup(cfg->peers) : strdup("");
	if (!list) {
		r = -ENOMEM;
		goto fail;
	}
	for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		struct peer *np = realloc(cp->peers, (cp->n_peers + 1) * sizeof(*np));
		_cleanup_free_ char *server = NULL, *resolve = NULL, *err = NULL;
		struct peer *p;

		if (!np) {
			r = -ENOMEM;
			goto fail;
		}
		cp->peers = np;
		p = &cp->peers[cp->n_peers];
		*p = (struct peer){};
		cp->n_peers++;
		r = parse_peer(tok, p);
		if (r < 0) {
			log_error("-peers: \"%s\" is not node=host:port", tok);
			goto fail;
		}
		server = xasprintf("https://%s:%u", CACHE_PEER_NAME, p->port);
		resolve = xasprintf("%s:%u:%s", CACHE_PEER_NAME, p->port, p->address);
		if (!server || !resolve) {
			r = -ENOMEM;
			goto fail;
		}
		r = k8s_client_new_tls(server, resolve, cfg->ca_file, cfg->cert_file, cfg->key_file, &p->client, &err);
		if (r < 0) {
			log_error_errno(r, "Cannot make a client for peer %s: %s", p->node, err ? err : "");
			goto fail;
		}
		k8s_client_set_limits(p->client, PEER_TIMEOUT_MS, 1);
	}
	wcfg.userdata = cp;
	r = webserver_start(&wcfg, &cp->server);
	if (r < 0) {
		log_error_errno(r, "Cannot serve the peer channel on %s: %m", cfg->listen);
		goto fail;
	}
	the_peers = cp;
	csi_cache_set_hooks(&hooks);
	log_info("Peer channel for cache volumes on %s (port %u), %zu peer(s), mutual TLS as \"%s\"", cfg->listen,
		 webserver_port(cp->server), cp->n_peers, CACHE_PEER_NAME);
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
	for (size_t i = 0; i < cp->n_peers; i++) {
		k8s_client_free(cp->peers[i].client);
		free(cp->peers[i].node);
		free(cp->peers[i].address);
	}
	free(cp->peers);
	free(cp);
}
