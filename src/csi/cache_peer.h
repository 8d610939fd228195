/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The peer channel of cache volumes (cache.c): an HTTPS server for the
 * other node drivers and a client per peer, both with mutual TLS.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

struct csi_driver;
struct cache_peers;

/* The name in every node driver's certificate (the operator's "pmem-node-controller"). */
#define CACHE_PEER_NAME "pmem-node-controller"
/* Without -peers: the pods with this label in the driver's namespace are the peers (deploy/'s node DaemonSet). */
#define CACHE_PEER_SELECTOR "app.kubernetes.io/name=pmem-csi-node"

struct cache_peers_config {
	const char *listen;    /* -peerListen, like ":10000" */
	const char *peers;     /* -peers: "node=host:port,..." (this node may be in the list); NULL or "":
				* the pods of selector in this pod's namespace, through the API */
	const char *selector;  /* -peerSelector; NULL or "": CACHE_PEER_SELECTOR */
	const char *ca_file;   /* -caFile: the CA that signed every node driver's certificate */
	const char *cert_file; /* -certFile / -keyFile: this node driver's certificate for CACHE_PEER_NAME */
	const char *key_file;
};

/**
 * cache_peers_start() - serve the peer channel and make cache volumes use it
 * (installs the controller's cache hooks).
 * @cfg: read during the call only.
 * @d: the driver whose volumes the peers create and delete; must outlive the channel.
 * @ret: stop it with cache_peers_stop().
 *
 * Return: 0; -EINVAL for a missing certificate flag or a malformed -peers
 * entry; what webserver_start() returns.
 */
int cache_peers_start(const struct cache_peers_config *cfg, struct csi_driver *d, struct cache_peers **ret);

/** cache_peers_stop() - remove the hooks, stop serving, free; NULL is fine. */
void cache_peers_stop(struct cache_peers *cp);

/**
 * cache_peer_decode() - the CSI request in a peer's request body
 * ({"request":"<hex of the protobuf>"}): a CreateVolumeRequest when create,
 * else a DeleteVolumeRequest. Free it with protobuf_c_message_free_unpacked().
 * Return: 0; -EINVAL when the body is not such a request; -ENOMEM.
 */
int cache_peer_decode(const char *body, size_t len, bool create, ProtobufCMessage **ret);

/* One node driver found through the API. */
struct cache_peer_addr {
	char *node;    /* spec.nodeName */
	char *address; /* status.podIP, "" while it has none */
	uint16_t port;
};

/**
 * cache_peers_from_pods() - the node drivers in a PodList (JSON): every pod
 * scheduled to a node and not Failed or Succeeded, with port.
 * Return: 0 and an array to free with cache_peer_addrs_free(); -EINVAL when
 * it is not a list; -ENOMEM.
 */
int cache_peers_from_pods(const char *json, size_t len, uint16_t port, struct cache_peer_addr **ret, size_t *ret_n);
void cache_peer_addrs_free(struct cache_peer_addr *a, size_t n);
