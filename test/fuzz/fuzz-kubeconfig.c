/* SPDX-License-Identifier: Apache-2.0 */
/*
 * k8s_config_from_kubeconfig() (libyaml) and base64_decode(): kubeconfig files
 * are written by people and tools, and their "-data" fields are base64.
 *
 * Checked: a parse either succeeds with a non-empty server or fails with a
 * message; and base64 round-trips: the input bytes, encoded here by a
 * reference encoder (with and without padding, with a line break), decode to
 * exactly the input.
 */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "basic/base64.h"
#include "fuzz.h"
#include "k8s/k8s-internal.h"

static char *encode(const uint8_t *d, size_t n, bool pad, size_t *ret_len)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc(n / 3 * 4 + 8 + n / 38 + 1), *p = out;

	FUZZ_CHECK(out);
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
		size_t chars = i + 2 < n ? 4 : i + 1 < n ? 3 : 2;
		for (size_t k = 0; k < 4; k++) {
			if (k < chars)
				*p++ = a[(v >> (18 - 6 * k)) & 63];
			else if (pad)
				*p++ = '=';
		}
		if (i % 57 == 54)
			*p++ = '\n';
	}
	*ret_len = (size_t)(p - out);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct k8s_config c = {};
	char path[64], *err = NULL;
	int fd, r;

	if (size > 256 * 1024)
		return 0;
	for (int pad = 0; pad < 2; pad++) {
		size_t len, outlen = 0;
		char *enc = encode(data, size, pad, &len), *dec = NULL;
		FUZZ_CHECK(base64_decode(enc, len, &dec, &outlen) == 0);
		FUZZ_CHECK(outlen == size && (size == 0 || memcmp(dec, data, size) == 0));
		free(enc);
		free(dec);
	}
	fd = memfd_create("kubeconfig", MFD_CLOEXEC);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(write(fd, data, size) == (ssize_t)size);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	r = k8s_config_from_kubeconfig(path, &c, &err);
	if (r >= 0) {
		FUZZ_CHECK(c.server && *c.server);
		FUZZ_CHECK(!err);
	} else {
		FUZZ_CHECK(r == -ENOMEM || (err && *err));
	}
	k8s_config_done(&c);
	free(err);
	close(fd);
	return 0;
}
