/* SPDX-License-Identifier: Apache-2.0 */
/* The peers of cache volumes from the node DaemonSet's pods (as the API server lists them). */
#include <errno.h>
#include <string.h>

#include "csi/cache_peer.h"
#include "test.h"

TEST(peers_from_pods)
{
	static const char list[] =
		"{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"42\"},\"items\":["
		"{\"metadata\":{\"name\":\"pmem-csi-intel-com-node-a1\"},\"spec\":{\"nodeName\":\"worker-1\"},"
		"\"status\":{\"phase\":\"Running\",\"podIP\":\"10.0.0.1\"}},"
		"{\"metadata\":{\"name\":\"pending\"},\"spec\":{},\"status\":{\"phase\":\"Pending\"}},"
		"{\"metadata\":{\"name\":\"starting\"},\"spec\":{\"nodeName\":\"worker-2\"},\"status\":{\"phase\":\"Pending\"}},"
		"{\"metadata\":{\"name\":\"gone\"},\"spec\":{\"nodeName\":\"worker-3\"},"
		"\"status\":{\"phase\":\"Failed\",\"podIP\":\"10.0.0.3\"}},"
		"{\"metadata\":{\"name\":\"v6\"},\"spec\":{\"nodeName\":\"worker-4\"},"
		"\"status\":{\"phase\":\"Running\",\"podIP\":\"fd00::4\"}}]}";
	struct cache_peer_addr *a = NULL;
	size_t n = 0;

	CHECK_INT(cache_peers_from_pods(list, strlen(list), 10011, &a, &n), 0);
	CHECK_INT(n, 3);
	CHECK_STR(a[0].node, "worker-1");
	CHECK_STR(a[0].address, "10.0.0.1");
	CHECK_INT(a[0].port, 10011);
	/* scheduled but without an IP yet: listed, so that a delete waits for it */
	CHECK_STR(a[1].node, "worker-2");
	CHECK_STR(a[1].address, "");
	CHECK_STR(a[2].node, "worker-4");
	CHECK_STR(a[2].address, "fd00::4");
	cache_peer_addrs_free(a, n);

	CHECK_INT(cache_peers_from_pods("{\"items\":[]}", 12, 1, &a, &n), 0);
	CHECK_INT(n, 0);
	cache_peer_addrs_free(a, n);
	CHECK_INT(cache_peers_from_pods("{\"kind\":\"Status\"}", 17, 1, &a, &n), -EINVAL);
	CHECK_INT(cache_peers_from_pods("[", 1, 1, &a, &n), -EINVAL);
}
