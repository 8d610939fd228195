/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Driver certificates of a PmemCSIDeployment: generated with a self-signed CA when the
 * CR gives none, verified when it gives them, kept in two Secrets owned by the CR.
 * GnuTLS does all the X.509 and key work; this file only decides what to make, what
 * to check, and how to word what is wrong so that the CR's status names the field.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "basic/base64.h"
#include "basic/log.h"
#include "basic/macro.h"
#include "basic/strbuf.h"
#include "basic/strutil.h"
#include "certs.h"
#include "json/json.h"
#include "k8s/k8s.h"
#include "metrics.h"
#include "reconcile.h"

#define SECS_PER_DAY (24 * 60 * 60)
/* A PEM text in a CR or a Secret larger than this is not a certificate or key we take. */
#define PEM_MAX (64 * 1024)

/* The spec fields, in the order 1.x's documentation lists them. */
static const struct field {
	const char *name;
	size_t off;
} fields[] = {
	{ "caCert", offsetof(struct operator_certs, ca_cert) },
	{ "registryCert", offsetof(struct operator_certs, registry_cert) },
	{ "registryKey", offsetof(struct operator_certs, registry_key) },
	{ "nodeControllerCert", offsetof(struct operator_certs, nc_cert) },
	{ "nodeControllerKey", offsetof(struct operator_certs, nc_key) },
};

static char **field_ptr(struct operator_certs *c, size_t i)
{
	return (char **)((char *)c + fields[i].off);
}

static void wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void operator_certs_clear(struct operator_certs *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
		wipe_free(*field_ptr(c, i));
		*field_ptr(c, i) = NULL;
	}
}

void operator_certs_status_clear(struct operator_certs_status *st)
{
	free(st->verified_reason);
	free(st->ready_reason);
	*st = (struct operator_certs_status){ .verified = -1, .ready = -1 };
}

static void crt_freep(gnutls_x509_crt_t *p)
{
	if (*p)
		gnutls_x509_crt_deinit(*p);
}

static void key_freep(gnutls_x509_privkey_t *p)
{
	if (*p)
		gnutls_x509_privkey_deinit(*p);
}

/* Export a datum that GnuTLS allocated as a NUL-terminated malloc'd string. */
static int datum_to_string(gnutls_datum_t *d, char **ret)
{
	char *s = malloc(d->size + 1);

	if (s) {
		memcpy(s, d->data, d->size);
		s[d->size] = '\0';
	}
	explicit_bzero(d->data, d->size);
	gnutls_free(d->data);
	d->data = NULL;
	if (!s)
		return -ENOMEM;
	*ret = s;
	return 0;
}

static int fail(int r, char **ret_err, const char *what, int gr)
{
	if (ret_err)
		*ret_err = xasprintf("%s: %s", what, gnutls_strerror(gr));
	return r;
}

/* A new key pair and a certificate for it, signed by issuer (NULL: self-signed CA). */
static int make_cert(const char *cn, bool ca, time_t not_before, unsigned days, unsigned bits,
		     gnutls_x509_crt_t issuer, gnutls_x509_privkey_t issuer_key, gnutls_x509_crt_t *ret_crt,
		     gnutls_x509_privkey_t *ret_key, char **ret_err)
{
	_cleanup_(crt_freep) gnutls_x509_crt_t crt = NULL;
	_cleanup_(key_freep) gnutls_x509_privkey_t key = NULL;
	unsigned char serial[16], id[64];
	size_t id_len = sizeof(id);
	int g;

	if ((g = gnutls_x509_privkey_init(&key)) < 0 || (g = gnutls_x509_crt_init(&crt)) < 0)
		return fail(-ENOMEM, ret_err, "cannot allocate a key or certificate", g);
	if ((g = gnutls_x509_privkey_generate(key, GNUTLS_PK_RSA, bits, 0)) < 0)
		return fail(-EIO, ret_err, "cannot generate an RSA key", g);
	/* A random positive serial number (RFC 5280: at most 20 octets). */
	if ((g = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial))) < 0)
		return fail(-EIO, ret_err, "no random serial number", g);
	serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x01);
	if ((g = gnutls_x509_crt_set_version(crt, 3)) < 0 ||
	    (g = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial))) < 0 ||
	    (g = gnutls_x509_crt_set_activation_time(crt, not_before)) < 0 ||
	    (g = gnutls_x509_crt_set_expiration_time(crt, not_before + (time_t)days * SECS_PER_DAY)) < 0 ||
	    (g = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn, (unsigned)strlen(cn))) < 0 ||
	    (g = gnutls_x509_crt_set_key(crt, key)) < 0)
		return fail(-EIO, ret_err, "cannot fill in the certificate", g);
	if (ca) {
		/* 1.x's CA: DNS names "pmem-csi" and "ca", usable for signing certificates. */
		if ((g = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, "pmem-csi", 8,
							      GNUTLS_FSAN_APPEND)) < 0 ||
		    (g = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, "ca", 2, GNUTLS_FSAN_APPEND)) <
			    0 ||
		    (g = gnutls_x509_crt_set_basic_constraints(crt, 1, -1)) < 0 ||
		    (g = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN |
								   GNUTLS_KEY_DIGITAL_SIGNATURE |
								   GNUTLS_KEY_KEY_ENCIPHERMENT)) < 0)
			return fail(-EIO, ret_err, "cannot fill in the CA certificate", g);
	} else {
		/* Both ends of mutual TLS use each certificate: server and client purpose. */
		if ((g = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, cn, (unsigned)strlen(cn),
							      GNUTLS_FSAN_APPEND)) < 0 ||
		    (g = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) < 0 ||
		    (g = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE |
								   GNUTLS_KEY_KEY_ENCIPHERMENT)) < 0 ||
		    (g = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0)) < 0 ||
		    (g = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_CLIENT, 0)) < 0)
			return fail(-EIO, ret_err, "cannot fill in the certificate", g);
	}
	if ((g = gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA1, id, &id_len)) < 0 ||
	    (g = gnutls_x509_crt_set_subject_key_id(crt, id, id_len)) < 0)
		return fail(-EIO, ret_err, "cannot set the subject key id", g);
	if (issuer) {
		id_len = sizeof(id);
		if ((g = gnutls_x509_crt_get_subject_key_id(issuer, id, &id_len, NULL)) < 0 ||
		    (g = gnutls_x509_crt_set_authority_key_id(crt, id, id_len)) < 0)
			return fail(-EIO, ret_err, "cannot set the authority key id", g);
	}
	if ((g = gnutls_x509_crt_sign2(crt, issuer ? issuer : crt, issuer ? issuer_key : key, GNUTLS_DIG_SHA256,
				       0)) < 0)
		return fail(-EIO, ret_err, "cannot sign the certificate", g);
	*ret_crt = TAKE_PTR(crt);
	*ret_key = TAKE_PTR(key);
	return 0;
}

static int export_pair(gnutls_x509_crt_t crt, gnutls_x509_privkey_t key, char **ret_crt, char **ret_key,
		       char **ret_err)
{
	gnutls_datum_t d = {};
	int g, r;

	if ((g = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d)) < 0)
		return fail(-EIO, ret_err, "cannot export the certificate", g);
	if ((r = datum_to_string(&d, ret_crt)) < 0)
		return r;
	if (!key)
		return 0;
	/* An RSA key exports as "RSA PRIVATE KEY" (PKCS #1), as 1.x wrote it. */
	if ((g = gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &d)) < 0)
		return fail(-EIO, ret_err, "cannot export the key", g);
	return datum_to_string(&d, ret_key);
}

int operator_certs_generate(time_t not_before, unsigned days, unsigned key_bits, struct operator_certs *ret,
			    char **ret_err)
{
	_cleanup_(crt_freep) gnutls_x509_crt_t ca = NULL, reg = NULL, nc = NULL;
	_cleanup_(key_freep) gnutls_x509_privkey_t ca_key = NULL, reg_key = NULL, nc_key = NULL;
	struct operator_certs out = {};
	int r;

	if ((r = make_cert("pmem-csi-ca", true, not_before, days, key_bits, NULL, NULL, &ca, &ca_key, ret_err)) < 0 ||
	    (r = make_cert(OPERATOR_CERTS_REGISTRY_NAME, false, not_before, days, key_bits, ca, ca_key, &reg,
			   &reg_key, ret_err)) < 0 ||
	    (r = make_cert(OPERATOR_CERTS_NODE_NAME, false, not_before, days, key_bits, ca, ca_key, &nc, &nc_key,
			   ret_err)) < 0)
		return r;
	if ((r = export_pair(ca, NULL, &out.ca_cert, NULL, ret_err)) < 0 ||
	    (r = export_pair(reg, reg_key, &out.registry_cert, &out.registry_key, ret_err)) < 0 ||
	    (r = export_pair(nc, nc_key, &out.nc_cert, &out.nc_key, ret_err)) < 0) {
		operator_certs_clear(&out);
		return r;
	}
	*ret = out;
	return 0;
}

static int import_crt(const char *field, const char *pem, gnutls_x509_crt_t *ret, char **ret_err)
{
	_cleanup_(crt_freep) gnutls_x509_crt_t crt = NULL;
	gnutls_datum_t d = { .data = (unsigned char *)pem, .size = (unsigned)strlen(pem) };
	int g;

	if ((g = gnutls_x509_crt_init(&crt)) < 0)
		return fail(-ENOMEM, ret_err, "cannot allocate a certificate", g);
	if ((g = gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM)) < 0) {
		*ret_err = xasprintf("spec.%s: not a PEM certificate (%s)", field, gnutls_strerror(g));
		return -EINVAL;
	}
	*ret = TAKE_PTR(crt);
	return 0;
}

static int import_key(const char *field, const char *pem, gnutls_x509_privkey_t *ret, char **ret_err)
{
	_cleanup_(key_freep) gnutls_x509_privkey_t key = NULL;
	gnutls_datum_t d = { .data = (unsigned char *)pem, .size = (unsigned)strlen(pem) };
	int g;

	if ((g = gnutls_x509_privkey_init(&key)) < 0)
		return fail(-ENOMEM, ret_err, "cannot allocate a key", g);
	/* No password: an encrypted key cannot be used by the driver either. */
	if ((g = gnutls_x509_privkey_import2(key, &d, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN)) < 0) {
		*ret_err = xasprintf("spec.%s: not an unencrypted PEM private key (%s)", field, gnutls_strerror(g));
		return -EINVAL;
	}
	*ret = TAKE_PTR(key);
	return 0;
}

static void fmt_time(time_t t, char buf[32])
{
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm)) {
		buf[0] = '?';
		buf[1] = '\0';
	}
}

static int check_times(const char *field, gnutls_x509_crt_t crt, time_t now, char **ret_err)
{
	time_t from = gnutls_x509_crt_get_activation_time(crt), until = gnutls_x509_crt_get_expiration_time(crt);
	char a[32], b[32];

	if (from == (time_t)-1 || until == (time_t)-1) {
		*ret_err = xasprintf("spec.%s: the certificate has no readable validity period", field);
		return -EINVAL;
	}
	fmt_time(from, a);
	fmt_time(until, b);
	if (now < from) {
		*ret_err = xasprintf("spec.%s: the certificate is not valid before %s", field, a);
		return -EINVAL;
	}
	if (now > until) {
		*ret_err = xasprintf("spec.%s: the certificate expired on %s", field, b);
		return -EINVAL;
	}
	return 0;
}

/* Extended key usage, when the certificate restricts it, must allow purpose. */
static bool allows_purpose(gnutls_x509_crt_t crt, const char *purpose)
{
	bool any = false;

	/* A certificate with more purposes than this is not one we were meant to get. */
	for (unsigned i = 0; i < 64; i++) {
		char oid[128];
		size_t len = sizeof(oid);
		int g = gnutls_x509_crt_get_key_purpose_oid(crt, i, oid, &len, NULL);

		if (g == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
			return !any;
		any = true;
		if (g >= 0 && (streq_ptr(oid, purpose) || streq_ptr(oid, GNUTLS_KP_ANY)))
			return true;
	}
	return false;
}

static int check_leaf(const char *cert_field, const char *key_field, const char *cert_pem, const char *key_pem,
		      gnutls_x509_crt_t ca, const char *name, const char *purpose, time_t now, char **ret_err)
{
	_cleanup_(crt_freep) gnutls_x509_crt_t crt = NULL;
	_cleanup_(key_freep) gnutls_x509_privkey_t key = NULL;
	unsigned char cid[64], kid[64];
	size_t clen = sizeof(cid), klen = sizeof(kid);
	unsigned status = 0;
	int g, r;

	if ((r = import_crt(cert_field, cert_pem, &crt, ret_err)) < 0 ||
	    (r = import_key(key_field, key_pem, &key, ret_err)) < 0)
		return r;
	/* Same public key: the key ids (SHA-256 of the public key) are equal. */
	if ((g = gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA256, cid, &clen)) < 0 ||
	    (g = gnutls_x509_privkey_get_key_id(key, GNUTLS_KEYID_USE_SHA256, kid, &klen)) < 0) {
		*ret_err = xasprintf("spec.%s: cannot compare the key with spec.%s (%s)", key_field, cert_field,
				     gnutls_strerror(g));
		return -EINVAL;
	}
	if (clen != klen || memcmp(cid, kid, clen) != 0) {
		*ret_err = xasprintf("spec.%s: the private key does not match the certificate in spec.%s", key_field,
				     cert_field);
		return -EINVAL;
	}
	/* The signature only; times are checked below against now, with clearer words. */
	g = gnutls_x509_crt_verify(crt, &ca, 1,
				   GNUTLS_VERIFY_DISABLE_TIME_CHECKS | GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS,
				   &status);
	if (g < 0 || status != 0) {
		gnutls_datum_t out = {};
		_cleanup_free_ char *why = NULL;

		if (g >= 0 && gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) >= 0)
			(void)datum_to_string(&out, &why);
		*ret_err = xasprintf("spec.%s: the certificate is not signed by spec.caCert (%s)", cert_field,
				     why ? why : g < 0 ? gnutls_strerror(g) : "verification failed");
		return -EINVAL;
	}
	if ((r = check_times(cert_field, crt, now, ret_err)) < 0)
		return r;
	if (!gnutls_x509_crt_check_hostname2(crt, name, 0)) {
		*ret_err = xasprintf("spec.%s: the certificate is not issued for \"%s\" (DNS name or common name)",
				     cert_field, name);
		return -EINVAL;
	}
	if (!allows_purpose(crt, purpose)) {
		*ret_err = xasprintf("spec.%s: the certificate's extended key usage does not allow TLS %s use",
				     cert_field, streq_ptr(purpose, GNUTLS_KP_TLS_WWW_SERVER) ? "server" : "client");
		return -EINVAL;
	}
	return 0;
}

int operator_certs_verify(const struct operator_certs *c, time_t now, char **ret_err)
{
	_cleanup_(crt_freep) gnutls_x509_crt_t ca = NULL;
	unsigned critical = 0;
	int r;

	for (size_t i = 0; i < ELEMENTSOF(fields); i++)
		if (!*field_ptr((struct operator_certs *)c, i)) {
			*ret_err = xasprintf("spec.%s: missing", fields[i].name);
			return -EINVAL;
		}
	if ((r = import_crt("caCert", c->ca_cert, &ca, ret_err)) < 0)
		return r;
	if (gnutls_x509_crt_get_ca_status(ca, &critical) <= 0) {
		*ret_err = xasprintf("spec.caCert: not a CA certificate (no basic constraints CA:TRUE)");
		return -EINVAL;
	}
	if ((r = check_times("caCert", ca, now, ret_err)) < 0)
		return r;
	/* 1.x: the registry is the TLS server, the node controllers connect as clients. */
	if ((r = check_leaf("registryCert", "registryKey", c->registry_cert, c->registry_key, ca,
			    OPERATOR_CERTS_REGISTRY_NAME, GNUTLS_KP_TLS_WWW_SERVER, now, ret_err)) < 0)
		return r;
	return check_leaf("nodeControllerCert", "nodeControllerKey", c->nc_cert, c->nc_key, ca,
			  OPERATOR_CERTS_NODE_NAME, GNUTLS_KP_TLS_WWW_CLIENT, now, ret_err);
}

/* base64 text (a spec field, a Secret's data) to PEM text; what_fmt names the source. */
static int decode_field(const char *what, const char *b64, char **ret, char **ret_err)
{
	_cleanup_free_ char *out = NULL;
	size_t len = 0;
	int r;

	if (strlen(b64) > PEM_MAX * 4 / 3 + 4) {
		*ret_err = xasprintf("%s: longer than %d bytes", what, PEM_MAX);
		return -EINVAL;
	}
	r = base64_decode(b64, strlen(b64), &out, &len);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		*ret_err = xasprintf("%s: not base64 (the field holds the base64 of the PEM text)", what);
		return -EINVAL;
	}
	if (strlen(out) != len) {
		explicit_bzero(out, len);
		*ret_err = xasprintf("%s: not PEM text (NUL bytes)", what);
		return -EINVAL;
	}
	*ret = TAKE_PTR(out);
	return 0;
}

int operator_certs_from_spec(const struct jv *spec, struct operator_certs *ret, char **ret_err)
{
	struct operator_certs c = {};
	const char *v[ELEMENTSOF(fields)];
	size_t n = 0;
	int r;

	for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
		v[i] = jv_string(jv_object_get(spec, fields[i].name));
		if (v[i] && !*v[i])
			v[i] = NULL;
		n += v[i] != NULL;
	}
	if (n == 0)
		return 0;
	/* 1.x's rules and words for an incomplete set. */
	if (!v[0]) {
		*ret_err = strdup("incomplete deployment configuration: missing root CA certificate (spec.caCert) "
				  "by which the provided certificates are signed");
		return *ret_err ? -EINVAL : -ENOMEM;
	}
	if (n != ELEMENTSOF(fields)) {
		struct strbuf b = STRBUF_INIT;

		strbuf_append_str(&b, "incomplete deployment configuration: certificates and corresponding private "
				      "keys must be provided; missing:");
		for (size_t i = 0; i < ELEMENTSOF(fields); i++)
			if (!v[i])
				strbuf_appendf(&b, " spec.%s", fields[i].name);
		*ret_err = strbuf_steal(&b);
		return *ret_err ? -EINVAL : -ENOMEM;
	}
	for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
		_cleanup_free_ char *what = xasprintf("spec.%s", fields[i].name);

		if (!what) {
			operator_certs_clear(&c);
			return -ENOMEM;
		}
		if ((r = decode_field(what, v[i], field_ptr(&c, i), ret_err)) < 0) {
			operator_certs_clear(&c);
			return r;
		}
	}
	*ret = c;
	return 1;
}

/* ---- Secrets ---- */

static char *secret_name(const char *prefix, bool registry)
{
	return xasprintf("%s-%s", prefix, registry ? "registry-secrets" : "node-secrets");
}

/* The three PEM texts of a Secret as 1.x wrote it; -ENOENT if it does not exist. */
static int read_secret(struct operator *op, const char *name, char **ret_ca, char **ret_crt, char **ret_key)
{
	_cleanup_(jv_unrefp) struct jv *obj = NULL;
	_cleanup_free_ char *ens = k8s_path_escape(op->namespace), *en = k8s_path_escape(name), *path = NULL,
			    *err = NULL, *ca = NULL, *crt = NULL, *key = NULL;
	const struct jv *data;
	const char *a, *b, *c;
	int r;

	if (!ens || !en || !(path = xasprintf("/api/v1/namespaces/%s/secrets/%s", ens, en)))
		return -ENOMEM;
	r = k8s_get(op->client, path, &obj, &err);
	if (r < 0) {
		if (r != -ENOENT)
			log_warning_errno(r, "Cannot read Secret %s/%s: %s", op->namespace, name, err ? err : "");
		return r;
	}
	data = jv_object_get(obj, "data");
	a = jv_string(jv_object_get(data, "ca.crt"));
	b = jv_string(jv_object_get(data, "tls.crt"));
	c = jv_string(jv_object_get(data, "tls.key"));
	if (!a || !b || !c)
		return -ENODATA;
	free(err);
	err = NULL;
	if ((r = decode_field("ca.crt", a, &ca, &err)) < 0 || (r = decode_field("tls.crt", b, &crt, &err)) < 0 ||
	    (r = decode_field("tls.key", c, &key, &err)) < 0) {
		wipe_free(TAKE_PTR(key));
		return r == -ENOMEM ? r : -ENODATA;
	}
	*ret_ca = TAKE_PTR(ca);
	*ret_crt = TAKE_PTR(crt);
	*ret_key = TAKE_PTR(key);
	return 0;
}

static int read_secrets(struct operator *op, const char *prefix, struct operator_certs *ret)
{
	_cleanup_free_ char *rn = secret_name(prefix, true), *nn = secret_name(prefix, false), *nc_ca = NULL;
	struct operator_certs c = {};
	int r;

	if (!rn || !nn)
		return -ENOMEM;
	r = read_secret(op, rn, &c.ca_cert, &c.registry_cert, &c.registry_key);
	if (r >= 0)
		r = read_secret(op, nn, &nc_ca, &c.nc_cert, &c.nc_key);
	/* Both Secrets must hold the same CA, or the two ends would not trust each other. */
	if (r >= 0 && !streq_ptr(nc_ca, c.ca_cert))
		r = -ENODATA;
	if (r < 0) {
		operator_certs_clear(&c);
		return r;
	}
	*ret = c;
	return 0;
}

static int b64(const char *pem, struct strbuf *b)
{
	gnutls_datum_t in = { .data = (unsigned char *)pem, .size = (unsigned)strlen(pem) }, out = {};
	_cleanup_free_ char *s = NULL;
	int r;

	if (gnutls_base64_encode2(&in, &out) < 0)
		return -ENOMEM;
	if ((r = datum_to_string(&out, &s)) < 0)
		return r;
	strbuf_append_json_string(b, s);
	explicit_bzero(s, strlen(s));
	return 0;
}

static int copy_label(const char *key, const struct jv *val, void *ud)
{
	return jv_string(val) ? jv_object_set_string(ud, key, jv_string(val)) : 0;
}

/* The Secret as JSON: type kubernetes.io/tls, 1.x's keys, owned by the CR, its labels. */
static int secret_json(struct operator *op, const struct jv *cr, const char *name, const char *ca, const char *crt,
		       const char *key, char **ret)
{
	const struct jv *meta = jv_object_get(cr, "metadata");
	const char *crname = jv_string(jv_object_get(meta, "name")), *uid = jv_string(jv_object_get(meta, "uid"));
	_cleanup_(jv_unrefp) struct jv *labels = jv_new_object();
	const struct jv *extra = jv_object_get(jv_object_get(cr, "spec"), "labels");
	_cleanup_free_ char *lj = NULL;
	struct strbuf b = STRBUF_INIT;
	int r = 0;

	if (!labels || jv_object_set_string(labels, "app.kubernetes.io/instance", crname) < 0 ||
	    jv_object_set_string(labels, "app.kubernetes.io/part-of", "pmem-csi") < 0 ||
	    (jv_is_object(extra) && jv_object_iter(extra, copy_label, labels) < 0) || !(lj = jv_dump(labels)))
		return -ENOMEM;
	strbuf_append_str(&b, "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"type\":\"kubernetes.io/tls\",\"metadata\":{\"name\":");
	strbuf_append_json_string(&b, name);
	strbuf_append_str(&b, ",\"namespace\":");
	strbuf_append_json_string(&b, op->namespace);
	strbuf_appendf(&b, ",\"labels\":%s", lj);
	if (uid) {
		strbuf_append_str(&b, ",\"ownerReferences\":[{\"apiVersion\":\"pmem-csi.intel.com/v1beta1\","
				      "\"kind\":\"PmemCSIDeployment\",\"name\":");
		strbuf_append_json_string(&b, crname);
		strbuf_append_str(&b, ",\"uid\":");
		strbuf_append_json_string(&b, uid);
		strbuf_append_str(&b, ",\"controller\":true,\"blockOwnerDeletion\":true}]");
	}
	strbuf_append_str(&b, "},\"data\":{\"ca.crt\":");
	if ((r = b64(ca, &b)) >= 0) {
		strbuf_append_str(&b, ",\"tls.crt\":");
		r = b64(crt, &b);
	}
	if (r >= 0) {
		strbuf_append_str(&b, ",\"tls.key\":");
		r = b64(key, &b);
	}
	strbuf_append_str(&b, "}}");
	if (r < 0 || strbuf_failed(&b)) {
		if (strbuf_str(&b))
			explicit_bzero((char *)strbuf_str(&b), strbuf_len(&b));
		strbuf_free(&b);
		return -ENOMEM;
	}
	*ret = strbuf_steal(&b);
	return 0;
}

static int apply_secret(struct operator *op, const struct jv *cr, const char *name, const char *ca,
			const char *crt, const char *key, char **ret_err)
{
	_cleanup_free_ char *ens = k8s_path_escape(op->namespace), *en = k8s_path_escape(name), *path = NULL,
			    *body = NULL, *err = NULL;
	int r;

	if (!ens || !en || !(path = xasprintf("/api/v1/namespaces/%s/secrets/%s", ens, en)))
		return -ENOMEM;
	if ((r = secret_json(op, cr, name, ca, crt, key, &body)) < 0)
		return r;
	r = operator_metrics_apply(op->metrics, op->client, path, OPERATOR_FIELD_MANAGER, body, NULL, &err);
	explicit_bzero(body, strlen(body));
	if (r < 0)
		*ret_err = xasprintf("failed to apply %s: %s", path, err ? err : strerror(-r));
	return r;
}

static int apply_secrets(struct operator *op, const struct jv *cr, const char *prefix,
			 const struct operator_certs *c, char **ret_err)
{
	_cleanup_free_ char *rn = secret_name(prefix, true), *nn = secret_name(prefix, false);
	int r;

	if (!rn || !nn)
		return -ENOMEM;
	if ((r = apply_secret(op, cr, rn, c->ca_cert, c->registry_cert, c->registry_key, ret_err)) < 0)
		return r;
	return apply_secret(op, cr, nn, c->ca_cert, c->nc_cert, c->nc_key, ret_err);
}

static int set_reason(char **dst, const char *s)
{
	free(*dst);
	*dst = strdup(s);
	return *dst ? 0 : -ENOMEM;
}

int operator_certs_reconcile(struct operator *op, const struct jv *cr, struct operator_certs_status *st,
			     char **ret_err)
{
	const char *name = jv_string(jv_object_get(jv_object_get(cr, "metadata"), "name"));
	_cleanup_(operator_certs_clear) struct operator_certs c = {};
	_cleanup_free_ char *prefix = NULL, *err = NULL;
	time_t now = time(NULL);
	int r;

	operator_certs_status_clear(st);
	if (!name || !(prefix = strdup(name)))
		return -ENOMEM;
	for (char *p = prefix; *p; p++)
		if (*p == '.')
			*p = '-';

	r = operator_certs_from_spec(jv_object_get(cr, "spec"), &c, &err);
	if (r == -ENOMEM)
		return r;
	if (r != 0) {
		/* Given: verified; anything wrong fails the deployment before anything is applied. */
		if (r > 0)
			r = operator_certs_verify(&c, now, &err);
		if (r < 0) {
			st->verified = st->ready = 0;
			(void)set_reason(&st->verified_reason, err ? err : "invalid certificates");
			(void)set_reason(&st->ready_reason, "Driver certificates are not available: the given ones "
							    "are invalid.");
			*ret_err = TAKE_PTR(err);
			return r;
		}
		st->verified = 1;
		(void)set_reason(&st->verified_reason, "Driver certificates validated.");
		log_v(3, "PmemCSIDeployment '%s': the certificates given in the spec are valid", name);
	} else {
		/* None given: reuse what the Secrets hold while it is valid for a while yet. */
		r = read_secrets(op, prefix, &c);
		if (r == -ENOMEM)
			return r;
		if (r >= 0) {
			r = operator_certs_verify(&c, now + (time_t)OPERATOR_CERTS_RENEW_DAYS * SECS_PER_DAY, &err);
			if (r < 0) {
				log_info("PmemCSIDeployment '%s': renewing the driver certificates: %s", name,
					 err ? err : "");
				operator_certs_clear(&c);
			}
		} else if (r != -ENOENT && r != -ENODATA) {
			/* The API server did not answer: do not replace what may be fine. */
			st->ready = 0;
			(void)set_reason(&st->ready_reason, "cannot read the driver certificate Secrets");
			*ret_err = strdup("cannot read the driver certificate Secrets");
			return r;
		}
		if (r < 0) {
			free(err);
			err = NULL;
			r = operator_certs_generate(now - 60, OPERATOR_CERTS_DAYS, OPERATOR_CERTS_KEY_BITS, &c, &err);
			if (r < 0) {
				st->ready = 0;
				(void)set_reason(&st->ready_reason, err ? err : "cannot generate certificates");
				*ret_err = TAKE_PTR(err);
				return r;
			}
			log_info("PmemCSIDeployment '%s': generated a CA and the driver certificates (valid %d days)",
				 name, OPERATOR_CERTS_DAYS);
		}
	}
	free(err);
	err = NULL;
	r = apply_secrets(op, cr, prefix, &c, &err);
	if (r < 0) {
		st->ready = 0;
		(void)set_reason(&st->ready_reason, err ? err : "cannot write the certificate Secrets");
		*ret_err = TAKE_PTR(err);
		return r;
	}
	st->ready = 1;
	(void)set_reason(&st->ready_reason, "Driver certificates are available.");
	return 0;
}

/* ---- mounting ---- */

static struct jv *find_object(struct jv *objs, const char *kind, const char *name)
{
	for (size_t i = 0; i < jv_array_size(objs); i++) {
		struct jv *o = jv_array_get(objs, i);
		if (streq_ptr(jv_string(jv_object_get(o, "kind")), kind) &&
		    streq_ptr(jv_string(jv_object_get(jv_object_get(o, "metadata"), "name")), name))
			return o;
	}
	return NULL;
}

static int append_parsed(struct jv *parent, const char *key, const char *json)
{
	_cleanup_(jv_unrefp) struct jv *v = NULL;
	struct jv *arr = jv_object_get(parent, key);

	if (jv_parse(json, strlen(json), &v, NULL) < 0)
		return -ENOMEM;
	if (!arr) {
		arr = jv_new_array();
		if (!arr || jv_object_set_new(parent, key, arr) < 0)
			return -ENOMEM;
	}
	return jv_array_append_new(arr, TAKE_PTR(v));
}

static int mount_one(struct jv *objs, const char *kind, const char *obj_name, const char *volume,
		     const char *secret)
{
	struct jv *o = find_object(objs, kind, obj_name), *pod, *cs;
	_cleanup_free_ char *vol = NULL, *mnt = NULL;
	struct strbuf b = STRBUF_INIT;
	int r;

	if (!o)
		return 0; /* not in this manifest: nothing to mount into */
	pod = jv_object_get(jv_object_get(jv_object_get(o, "spec"), "template"), "spec");
	cs = jv_object_get(pod, "containers");
	strbuf_appendf(&b, "{\"name\":\"%s\",\"secret\":{\"secretName\":", volume);
	strbuf_append_json_string(&b, secret);
	strbuf_append_str(&b, "}}");
	if (strbuf_failed(&b)) {
		strbuf_free(&b);
		return -ENOMEM;
	}
	vol = strbuf_steal(&b);
	mnt = xasprintf("{\"name\":\"%s\",\"mountPath\":\"/certs\",\"readOnly\":true}", volume);
	if (!vol || !mnt)
		return -ENOMEM;
	for (size_t i = 0; i < jv_array_size(cs); i++) {
		struct jv *c = jv_array_get(cs, i);
		if (!streq_ptr(jv_string(jv_object_get(c, "name")), "pmem-driver"))
			continue;
		if ((r = append_parsed(c, "volumeMounts", mnt)) < 0)
			return r;
		return append_parsed(pod, "volumes", vol);
	}
	return 0;
}

int operator_certs_mount(struct jv *objs, const char *prefix)
{
	_cleanup_free_ char *ctrl = xasprintf("%s-controller", prefix), *node = xasprintf("%s-node", prefix),
			    *rs = secret_name(prefix, true), *ns = secret_name(prefix, false);
	int r;

	if (!ctrl || !node || !rs || !ns)
		return -ENOMEM;
	if ((r = mount_one(objs, "Deployment", ctrl, "registry-cert", rs)) < 0)
		return r;
	return mount_one(objs, "DaemonSet", node, "node-cert", ns);
}

static void condition(struct strbuf *b, const char *type, int status, const char *reason, const char *ts)
{
	strbuf_appendf(b, "{\"type\":\"%s\",\"status\":\"%s\",\"lastUpdateTime\":\"%s\",\"reason\":", type,
		       status > 0 ? "True" : "False", ts);
	strbuf_append_json_string(b, reason ? reason : "");
	strbuf_append_str(b, "},");
}

void operator_certs_conditions(const struct operator_certs_status *st, const char *ts, struct strbuf *b)
{
	if (!st)
		return;
	if (st->verified >= 0)
		condition(b, "CertsVerified", st->verified, st->verified_reason, ts);
	if (st->ready >= 0)
		condition(b, "CertsReady", st->ready, st->ready_reason, ts);
}

/* ---- the peer channel of cache volumes ---- */

static int append_arg(struct jv *container, const char *arg)
{
	struct jv *args = jv_object_get(container, "args"), *v;

	if (!args) {
		args = jv_new_array();
		if (!args || jv_object_set_new(container, "args", args) < 0)
			return -ENOMEM;
	}
	v = jv_new_string(arg);
	return v ? jv_array_append_new(args, v) : -ENOMEM;
}

int operator_peer_channel(struct jv *objs, const char *prefix, const char *driver_name)
{
	_cleanup_free_ char *node = xasprintf("%s-node", prefix), *role = xasprintf("%s-external-provisioner-cfg", prefix),
			    *sel = xasprintf("-peerSelector=app.kubernetes.io/name=pmem-csi-node,app.kubernetes.io/instance=%s",
					     driver_name);
	struct jv *o, *cs;
	int r;

	if (!node || !role || !sel)
		return -ENOMEM;
	o = find_object(objs, "DaemonSet", node);
	if (!o)
		return 0;
	cs = jv_object_get(jv_object_get(jv_object_get(jv_object_get(o, "spec"), "template"), "spec"), "containers");
	for (size_t i = 0; i < jv_array_size(cs); i++) {
		struct jv *c = jv_array_get(cs, i);
		if (!streq_ptr(jv_string(jv_object_get(c, "name")), "pmem-driver"))
			continue;
		/* The peers are this CR's node pods only: another CR's have another CA. */
		if ((r = append_arg(c, "-peerListen=:" OPERATOR_PEER_PORT)) < 0 ||
		    (r = append_arg(c, "-caFile=/certs/ca.crt")) < 0 || (r = append_arg(c, "-certFile=/certs/tls.crt")) < 0 ||
		    (r = append_arg(c, "-keyFile=/certs/tls.key")) < 0 || (r = append_arg(c, sel)) < 0 ||
		    (r = append_parsed(c, "ports",
				       "{\"name\":\"peer\",\"containerPort\":" OPERATOR_PEER_PORT ",\"protocol\":\"TCP\"}")) < 0)
			return r;
		break;
	}
	/* The node pods run as the controller's service account (1.x's names):
	 * its Role in the driver's namespace may now also list pods. */
	o = find_object(objs, "Role", role);
	if (o && (r = append_parsed(o, "rules", "{\"apiGroups\":[\"\"],\"resources\":[\"pods\"],\"verbs\":[\"list\"]}")) < 0)
		return r;
	return 0;
}
