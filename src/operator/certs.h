/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <time.h>

/*
 * The driver certificates of a PmemCSIDeployment, as the 1.x operator handled them
 * (spec fields caCert, registryCert, registryKey, nodeControllerCert and
 * nodeControllerKey, each the base64 of PEM text):
 *
 * - none given: a self-signed CA and two certificates signed by it, "pmem-registry"
 *   (the controller) and "pmem-node-controller" (the nodes), kept in the Secrets
 *   <prefix>-registry-secrets and <prefix>-node-secrets (type kubernetes.io/tls, keys
 *   ca.crt, tls.crt, tls.key) and reused while they stay valid;
 * - all given: verified (parseable, key matches certificate, signed by the CA, within
 *   their validity, the expected names) and written to the same Secrets; a set that
 *   does not verify fails the reconcile before anything is applied.
 *
 * Certificates and keys are made and checked with GnuTLS (this file is its only
 * includer in the operator); nothing here is hand-written crypto.
 */

struct jv;
struct strbuf;
struct operator;

/* Names the certificates are issued for, as in 1.x. */
#define OPERATOR_CERTS_REGISTRY_NAME "pmem-registry"
#define OPERATOR_CERTS_NODE_NAME "pmem-node-controller"
/* Lifetime of generated certificates (1.x: one year) and when to renew them. */
#define OPERATOR_CERTS_DAYS 365
#define OPERATOR_CERTS_RENEW_DAYS 30
/* RSA key size of generated keys (1.x: 3072). */
#define OPERATOR_CERTS_KEY_BITS 3072

/** struct operator_certs - one set of certificates and keys, each PEM text (NUL-terminated). */
struct operator_certs {
	char *ca_cert;
	char *registry_cert;
	char *registry_key;
	char *nc_cert;
	char *nc_key;
};

/** operator_certs_clear() - free the texts (keys are wiped first); c may be all NULL. */
void operator_certs_clear(struct operator_certs *c);

/**
 * operator_certs_generate() - a new self-signed CA and the registry and node
 * controller certificates signed by it, valid from not_before for days days, RSA
 * keys of key_bits bits. The CA's own key is not kept (as in 1.x): renewing means a
 * new set. ret is untouched on failure; -ENOMEM, or -EIO with ret_err.
 */
int operator_certs_generate(time_t not_before, unsigned days, unsigned key_bits, struct operator_certs *ret,
			    char **ret_err);

/**
 * operator_certs_verify() - check a set at time now: every text parses, the CA is a CA
 * certificate, each key matches its certificate, both certificates are signed by the
 * CA, all three are valid at now, and the certificates are issued for
 * OPERATOR_CERTS_REGISTRY_NAME and OPERATOR_CERTS_NODE_NAME (DNS name, or common name
 * without DNS names). -EINVAL with ret_err naming the spec field and the reason.
 */
int operator_certs_verify(const struct operator_certs *c, time_t now, char **ret_err);

/**
 * operator_certs_from_spec() - the certificate fields of a PmemCSIDeployment spec,
 * base64-decoded. Returns 0 when none is given (ret untouched), 1 when all five are
 * (ret filled), -EINVAL with ret_err for an incomplete set or a field that is not
 * base64, -ENOMEM.
 */
int operator_certs_from_spec(const struct jv *spec, struct operator_certs *ret, char **ret_err);

/**
 * struct operator_certs_status - the CertsReady and CertsVerified conditions of the
 * last reconcile; the reasons are as the 1.x operator words them or the error.
 */
struct operator_certs_status {
	int verified; /* -1: no certificates given (no CertsVerified condition), 0 false, 1 true */
	int ready;    /* -1: not reached, 0 false, 1 true */
	char *verified_reason;
	char *ready_reason;
};

/** operator_certs_status_clear() - free the reasons. */
void operator_certs_status_clear(struct operator_certs_status *st);

/**
 * operator_certs_reconcile() - make the Secrets of cr (given certificates verified,
 * else the stored ones reused, else new ones) and fill st. Returns < 0 with ret_err
 * when the deployment must go Failed; the Secrets are then left as they were.
 */
int operator_certs_reconcile(struct operator *op, const struct jv *cr, struct operator_certs_status *st,
			     char **ret_err);

/**
 * operator_certs_mount() - mount the Secrets into the driver containers as 1.x did:
 * <prefix>-registry-secrets into the controller (Deployment <prefix>-controller) and
 * <prefix>-node-secrets into the nodes (DaemonSet <prefix>-node), both at /certs of
 * the container pmem-driver. objs is the rendered array of objects.
 */
int operator_certs_mount(struct jv *objs, const char *prefix);

/**
 * operator_certs_conditions() - append the CertsVerified and CertsReady conditions of
 * st (those that apply) to b, each as a JSON object followed by ','.
 */
void operator_certs_conditions(const struct operator_certs_status *st, const char *ts, struct strbuf *b);

/* The port of the node drivers' peer channel (cache volumes), as in deploy/kustomize/components/cache-volumes. */
#define OPERATOR_PEER_PORT "10011"

/**
 * operator_peer_channel() - turn on the node drivers' peer channel for cache
 * volumes: -peerListen with the node certificate mounted by
 * operator_certs_mount(), the peers being this CR's node pods (listed through
 * the API: the node pods' Role may list pods), and the container port.
 * @objs: the objects to apply.
 * @prefix: the object name prefix (from the CR name).
 * @driver_name: the CR's name (app.kubernetes.io/instance of its pods).
 *
 * Return: 0 or -ENOMEM.
 */
int operator_peer_channel(struct jv *objs, const char *prefix, const char *driver_name);
