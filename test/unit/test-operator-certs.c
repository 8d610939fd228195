/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operator's driver certificates: generated sets verify, and each way a given set
 * can be wrong (another CA, expired, not yet valid, key of another certificate, wrong
 * name, a leaf as CA, garbage base64 or PEM, incomplete) is refused with a reason that
 * names the spec field. Real GnuTLS, real RSA keys, small ones to keep this quick under
 * valgrind (the production size, 3072 bits, takes about a minute there); the
 * operator's own 3072-bit set is checked with openssl in test/k8s/test_operator.py.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/gnutls.h>

#include "basic/strbuf.h"
#include "json/json.h"
#include "operator-certs-1x.h"
#include "operator/certs.h"
#include "test.h"

#define DAY (24 * 60 * 60)

static struct operator_certs a, other, expired, future;
static bool made;

static void make_sets(void)
{
	time_t now = time(NULL);
	char *err = NULL;

	if (made)
		return;
	made = true;
	CHECK_INT(operator_certs_generate(now - 60, 365, 1024, &a, &err), 0);
	CHECK_INT(operator_certs_generate(now - 60, 365, 1024, &other, &err), 0);
	CHECK_INT(operator_certs_generate(now - 400 * DAY, 365, 1024, &expired, &err), 0);
	CHECK_INT(operator_certs_generate(now + 10 * DAY, 365, 1024, &future, &err), 0);
	if (err)
		fprintf(stderr, "  generate: %s\n", err);
	free(err);
}

/* A copy of set s with field i (0 ca, 1 reg cert, 2 reg key, 3 nc cert, 4 nc key) replaced. */
static struct operator_certs with(const struct operator_certs *s, int i, const char *v)
{
	struct operator_certs c = { strdup(s->ca_cert), strdup(s->registry_cert), strdup(s->registry_key),
				    strdup(s->nc_cert), strdup(s->nc_key) };
	char **f[] = { &c.ca_cert, &c.registry_cert, &c.registry_key, &c.nc_cert, &c.nc_key };

	free(*f[i]);
	*f[i] = strdup(v);
	return c;
}

/* verify c; the error must contain want (NULL: must pass). */
static void expect(struct operator_certs c, const char *want)
{
	char *err = NULL;
	int r = operator_certs_verify(&c, time(NULL), &err);

	if (!want) {
		CHECK_INT(r, 0);
		if (err)
			fprintf(stderr, "  unexpected: %s\n", err);
	} else {
		CHECK_INT(r, -EINVAL);
		CHECK(err && strstr(err, want));
		if (!err || !strstr(err, want))
			fprintf(stderr, "  error \"%s\" lacks \"%s\"\n", err ? err : "(none)", want);
	}
	free(err);
	operator_certs_clear(&c);
}

TEST(generated_set_verifies_with_1x_names)
{
	struct operator_certs c = {};
	char *err = NULL;
	time_t now = time(NULL);

	CHECK_INT(operator_certs_generate(now, OPERATOR_CERTS_DAYS, 2048, &c, &err), 0);
	CHECK(c.ca_cert && strstr(c.ca_cert, "-----BEGIN CERTIFICATE-----"));
	CHECK(c.registry_key && strstr(c.registry_key, "-----BEGIN RSA PRIVATE KEY-----"));
	CHECK(c.nc_key && strstr(c.nc_key, "-----BEGIN RSA PRIVATE KEY-----"));
	CHECK_INT(operator_certs_verify(&c, now, &err), 0);
	/* Valid for the whole year, not beyond. */
	CHECK_INT(operator_certs_verify(&c, now + 364 * DAY, &err), 0);
	free(err);
	err = NULL;
	CHECK_INT(operator_certs_verify(&c, now + 366 * DAY, &err), -EINVAL);
	CHECK(err && strstr(err, "expired on"));
	free(err);
	operator_certs_clear(&c);
	CHECK(!c.ca_cert && !c.nc_key);
}

TEST(good_set_verifies)
{
	make_sets();
	expect(with(&a, 0, a.ca_cert), NULL);
	expect(with(&other, 0, other.ca_cert), NULL);
}

TEST(wrong_ca)
{
	make_sets();
	expect(with(&a, 0, other.ca_cert), "spec.registryCert: the certificate is not signed by spec.caCert");
	/* Only the node certificate from elsewhere. */
	struct operator_certs c = with(&a, 3, other.nc_cert);
	free(c.nc_key);
	c.nc_key = strdup(other.nc_key);
	expect(c, "spec.nodeControllerCert: the certificate is not signed by spec.caCert");
}

TEST(expired_and_not_yet_valid)
{
	make_sets();
	expect(with(&expired, 0, expired.ca_cert), "spec.caCert: the certificate expired on");
	expect(with(&future, 0, future.ca_cert), "spec.caCert: the certificate is not valid before");
}

TEST(key_does_not_match)
{
	make_sets();
	expect(with(&a, 2, other.registry_key),
	       "spec.registryKey: the private key does not match the certificate in spec.registryCert");
	expect(with(&a, 4, a.registry_key), "spec.nodeControllerKey: the private key does not match");
}

TEST(wrong_names_and_roles)
{
	make_sets();
	/* The node controller's pair where the registry's belongs. */
	struct operator_certs c = with(&a, 1, a.nc_cert);
	free(c.registry_key);
	c.registry_key = strdup(a.nc_key);
	expect(c, "spec.registryCert: the certificate is not issued for \"pmem-registry\"");
	/* A leaf certificate as the CA. */
	expect(with(&a, 0, a.registry_cert), "spec.caCert: not a CA certificate");
}

TEST(set_made_the_1x_way_verifies)
{
	struct operator_certs c = { (char *)x1_ca_cert, (char *)x1_registry_cert, (char *)x1_registry_key,
				    (char *)x1_nc_cert, (char *)x1_nc_key };
	char *err = NULL;

	/* Secrets the 1.x operator left behind are reused, not replaced. */
	CHECK_INT(operator_certs_verify(&c, time(NULL), &err), 0);
	if (err)
		fprintf(stderr, "  %s\n", err);
	free(err);
	err = NULL;
	/* A common name without DNS names is accepted, as 1.x's check did. */
	c.nc_cert = (char *)x1_cn_only_cert;
	c.nc_key = (char *)x1_cn_only_key;
	CHECK_INT(operator_certs_verify(&c, time(NULL), &err), 0);
	free(err);
	err = NULL;
	/* The registry is a TLS server: a client-only certificate is refused. */
	c.registry_cert = (char *)x1_client_only_cert;
	c.registry_key = (char *)x1_client_only_key;
	CHECK_INT(operator_certs_verify(&c, time(NULL), &err), -EINVAL);
	CHECK(err && strstr(err, "spec.registryCert: the certificate's extended key usage does not allow TLS server use"));
	free(err);
}

TEST(garbage_pem)
{
	make_sets();
	expect(with(&a, 0, "hello"), "spec.caCert: not a PEM certificate");
	expect(with(&a, 1, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
	       "spec.registryCert: not a PEM certificate");
	expect(with(&a, 2, "hello"), "spec.registryKey: not an unencrypted PEM private key");
	/* A certificate where a key belongs. */
	expect(with(&a, 4, a.nc_cert), "spec.nodeControllerKey: not an unencrypted PEM private key");
}

static char *b64(const char *s)
{
	gnutls_datum_t in = { .data = (unsigned char *)s, .size = (unsigned)strlen(s) }, out = {};
	char *r;

	CHECK(gnutls_base64_encode2(&in, &out) >= 0);
	r = strndup((const char *)out.data, out.size);
	gnutls_free(out.data);
	return r;
}

static struct jv *spec_of(const char *ca, const char *rc, const char *rk, const char *nc, const char *nk)
{
	struct jv *spec = jv_new_object();
	const char *names[] = { "caCert", "registryCert", "registryKey", "nodeControllerCert", "nodeControllerKey" };
	const char *vals[] = { ca, rc, rk, nc, nk };

	jv_object_set_string(spec, "deviceMode", "lvm");
	for (int i = 0; i < 5; i++)
		if (vals[i])
			jv_object_set_string(spec, names[i], vals[i]);
	return spec;
}

TEST(spec_fields_base64_as_1x)
{
	char *e[5], *err = NULL;
	struct operator_certs c = {};
	struct jv *spec;

	make_sets();
	e[0] = b64(a.ca_cert);
	e[1] = b64(a.registry_cert);
	e[2] = b64(a.registry_key);
	e[3] = b64(a.nc_cert);
	e[4] = b64(a.nc_key);

	/* None given. */
	spec = spec_of(NULL, NULL, NULL, NULL, NULL);
	CHECK_INT(operator_certs_from_spec(spec, &c, &err), 0);
	jv_unref(spec);
	/* All given: decoded to the PEM texts, which verify. */
	spec = spec_of(e[0], e[1], e[2], e[3], e[4]);
	CHECK_INT(operator_certs_from_spec(spec, &c, &err), 1);
	CHECK(c.ca_cert && strcmp(c.ca_cert, a.ca_cert) == 0);
	CHECK(c.nc_key && strcmp(c.nc_key, a.nc_key) == 0);
	CHECK_INT(operator_certs_verify(&c, time(NULL), &err), 0);
	operator_certs_clear(&c);
	jv_unref(spec);
	/* Not base64. */
	spec = spec_of(e[0], "!!not base64!!", e[2], e[3], e[4]);
	CHECK_INT(operator_certs_from_spec(spec, &c, &err), -EINVAL);
	CHECK(err && strstr(err, "spec.registryCert: not base64"));
	free(err);
	err = NULL;
	jv_unref(spec);
	/* Incomplete, in 1.x's words, naming what is missing. */
	spec = spec_of(e[0], e[1], NULL, e[3], NULL);
	CHECK_INT(operator_certs_from_spec(spec, &c, &err), -EINVAL);
	CHECK(err && strstr(err, "certificates and corresponding private keys must be provided"));
	CHECK(err && strstr(err, "spec.registryKey") && strstr(err, "spec.nodeControllerKey"));
	free(err);
	err = NULL;
	jv_unref(spec);
	spec = spec_of(NULL, e[1], e[2], e[3], e[4]);
	CHECK_INT(operator_certs_from_spec(spec, &c, &err), -EINVAL);
	CHECK(err && strstr(err, "missing root CA certificate (spec.caCert)"));
	free(err);
	jv_unref(spec);
	for (int i = 0; i < 5; i++)
		free(e[i]);
}

static struct jv *parse(const char *s)
{
	struct jv *v = NULL;
	CHECK(jv_parse(s, strlen(s), &v, NULL) == 0);
	return v;
}

TEST(mounted_where_1x_mounted_them)
{
	struct jv *objs = parse(
		"[{\"kind\":\"Deployment\",\"metadata\":{\"name\":\"x-y-controller\"},\"spec\":{\"template\":{\"spec\":"
		"{\"containers\":[{\"name\":\"pmem-driver\"}]}}}},"
		"{\"kind\":\"DaemonSet\",\"metadata\":{\"name\":\"x-y-node\"},\"spec\":{\"template\":{\"spec\":"
		"{\"containers\":[{\"name\":\"external-provisioner\"},{\"name\":\"pmem-driver\",\"volumeMounts\":"
		"[{\"name\":\"a\",\"mountPath\":\"/a\"}]}],\"volumes\":[{\"name\":\"a\",\"emptyDir\":{}}]}}}},"
		"{\"kind\":\"DaemonSet\",\"metadata\":{\"name\":\"x-y-node-setup\"},\"spec\":{\"template\":{\"spec\":"
		"{\"containers\":[{\"name\":\"pmem-driver\"}]}}}}]");
	char *s;

	CHECK_INT(operator_certs_mount(objs, "x-y"), 0);
	s = jv_dump(objs);
	if (getenv("DEBUG"))
		fprintf(stderr, "%s\n", s);
	CHECK(s && strstr(s, "\"volumes\":[{\"name\":\"registry-cert\",\"secret\":{\"secretName\":\"x-y-registry-secrets\"}}]"));
	CHECK(s && strstr(s, "{\"mountPath\":\"/certs\",\"name\":\"registry-cert\",\"readOnly\":true}"));
	CHECK(s && strstr(s, "{\"emptyDir\":{},\"name\":\"a\"},{\"name\":\"node-cert\",\"secret\":{\"secretName\":\"x-y-node-secrets\"}}"));
	CHECK(s && strstr(s, "{\"mountPath\":\"/a\",\"name\":\"a\"},{\"mountPath\":\"/certs\",\"name\":\"node-cert\",\"readOnly\":true}"));
	/* The provisioner and the node-setup DaemonSet get nothing. */
	CHECK(s && strstr(s, "[{\"name\":\"external-provisioner\"},"));
	CHECK(s && strstr(s, "\"x-y-node-setup\"},\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"pmem-driver\"}]}}}"));
	free(s);
	jv_unref(objs);
}

TEST(peer_channel_of_cache_volumes)
{
	struct jv *objs = parse(
		"[{\"kind\":\"DaemonSet\",\"metadata\":{\"name\":\"x-y-node\"},\"spec\":{\"template\":{\"spec\":"
		"{\"containers\":[{\"name\":\"external-provisioner\",\"args\":[\"-v=3\"]},{\"name\":\"pmem-driver\","
		"\"args\":[\"-mode=node\"],\"ports\":[{\"name\":\"metrics\",\"containerPort\":10010}]}]}}}},"
		"{\"kind\":\"Role\",\"metadata\":{\"name\":\"x-y-external-provisioner-cfg\"},\"rules\":"
		"[{\"apiGroups\":[\"\"],\"resources\":[\"pods\"],\"verbs\":[\"get\"]}]},"
		"{\"kind\":\"Role\",\"metadata\":{\"name\":\"x-y-webhooks-cfg\"},\"rules\":[]}]");
	char *s;

	CHECK_INT(operator_peer_channel(objs, "x-y", "x.y"), 0);
	s = jv_dump(objs);
	if (getenv("DEBUG"))
		fprintf(stderr, "%s\n", s);
	CHECK(s && strstr(s, "\"args\":[\"-mode=node\",\"-peerListen=:10011\",\"-caFile=/certs/ca.crt\","
			      "\"-certFile=/certs/tls.crt\",\"-keyFile=/certs/tls.key\","
			      "\"-peerSelector=app.kubernetes.io/name=pmem-csi-node,app.kubernetes.io/instance=x.y\"]"));
	CHECK(s && strstr(s, "{\"containerPort\":10010,\"name\":\"metrics\"},{\"containerPort\":10011,\"name\":\"peer\",\"protocol\":\"TCP\"}"));
	CHECK(s && strstr(s, "{\"args\":[\"-v=3\"],\"name\":\"external-provisioner\"}"));
	/* Only the node pods' Role may list pods. */
	CHECK(s && strstr(s, "{\"apiGroups\":[\"\"],\"resources\":[\"pods\"],\"verbs\":[\"get\"]},"
			      "{\"apiGroups\":[\"\"],\"resources\":[\"pods\"],\"verbs\":[\"list\"]}"));
	CHECK(s && strstr(s, "\"x-y-webhooks-cfg\"},\"rules\":[]"));
	free(s);
	jv_unref(objs);
}

TEST(conditions_as_1x_words_them)
{
	struct operator_certs_status st = { .verified = 1, .ready = 1 };
	struct strbuf b = STRBUF_INIT;

	st.verified_reason = strdup("Driver certificates validated.");
	st.ready_reason = strdup("Driver certificates are available.");
	operator_certs_conditions(&st, "2026-11-29T00:00:00Z", &b);
	CHECK_STR(strbuf_str(&b),
		  "{\"type\":\"CertsVerified\",\"status\":\"True\",\"lastUpdateTime\":\"2026-11-29T00:00:00Z\","
		  "\"reason\":\"Driver certificates validated.\"},"
		  "{\"type\":\"CertsReady\",\"status\":\"True\",\"lastUpdateTime\":\"2026-11-29T00:00:00Z\","
		  "\"reason\":\"Driver certificates are available.\"},");
	strbuf_free(&b);
	operator_certs_status_clear(&st);
	CHECK_INT(st.verified, -1);
	/* Generated: no CertsVerified. */
	b = (struct strbuf)STRBUF_INIT;
	st.ready = 1;
	operator_certs_conditions(&st, "t", &b);
	CHECK(strstr(strbuf_str(&b), "CertsReady") && !strstr(strbuf_str(&b), "CertsVerified"));
	strbuf_free(&b);
}

/* After all tests, whatever order the harness runs them in. */
__attribute__((destructor)) static void free_sets(void)
{
	operator_certs_clear(&a);
	operator_certs_clear(&other);
	operator_certs_clear(&expired);
	operator_certs_clear(&future);
}
