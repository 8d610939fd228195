/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cache_peer_decode(): the body of a peer channel request (after mutual TLS,
 * but still from another process). Checked: it fails with -EINVAL or -ENOMEM
 * and allocates nothing then, or gives a message of the asked type that packs
 * and decodes again to the same bytes.
 */
#include <errno.h>

#include "csi.pb-c.h"
#include "csi/cache_peer.h"
#include "fuzz.h"

static void check(const char *body, size_t len, bool create)
{
	ProtobufCMessage *m = NULL;
	int r = cache_peer_decode(body, len, create, &m);

	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL || r == -ENOMEM);
		FUZZ_CHECK(!m);
		return;
	}
	FUZZ_CHECK(r == 0 && m);
	FUZZ_CHECK(m->descriptor == (create ? &csi__v1__create_volume_request__descriptor
					    : &csi__v1__delete_volume_request__descriptor));
	protobuf_c_message_free_unpacked(m, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf;

	if (size > 256 * 1024)
		return 0;
	buf = fuzz_strndup(data, size);
	if (!buf)
		return 0;
	check(buf, size, true);
	check(buf, size, false);
	free(buf);
	return 0;
}
