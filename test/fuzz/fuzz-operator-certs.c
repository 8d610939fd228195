/* SPDX-License-Identifier: Apache-2.0 */
/*
 * operator_certs_verify() (GnuTLS' PEM, X.509 and key parsers behind it): the five
 * certificate fields of a PmemCSIDeployment come from whoever may write the CR.
 * The input is up to five NUL-separated texts: caCert, registryCert, registryKey,
 * nodeControllerCert, nodeControllerKey (missing ones are empty).
 *
 * Checked: the set either verifies, or fails with -EINVAL and a reason that names the
 * spec field ("spec.<field>: ..."), or with -ENOMEM; nothing else.
 */
#include <errno.h>
#include <time.h>

#include "fuzz.h"
#include "operator/certs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *part[5] = {};
	struct operator_certs c;
	const uint8_t *p = data, *end = data + size;
	char *err = NULL;
	int r;

	if (size > 64 * 1024)
		return 0;
	for (int i = 0; i < 5; i++) {
		const uint8_t *nul = p < end ? memchr(p, 0, (size_t)(end - p)) : NULL;
		size_t n = p < end ? (size_t)((nul ? nul : end) - p) : 0;

		part[i] = strndup((const char *)p, n);
		FUZZ_CHECK(part[i]);
		p = nul ? nul + 1 : end;
	}
	c = (struct operator_certs){ part[0], part[1], part[2], part[3], part[4] };
	r = operator_certs_verify(&c, time(NULL), &err);
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL || r == -ENOMEM);
		FUZZ_CHECK(r == -ENOMEM || (err && strncmp(err, "spec.", 5) == 0));
	} else {
		FUZZ_CHECK(r == 0 && !err);
	}
	free(err);
	operator_certs_clear(&c);
	return 0;
}
