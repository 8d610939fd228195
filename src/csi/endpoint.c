/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "basic/macro.h"
#include "basic/strutil.h"
#include "endpoint.h"

#define LISTEN_BACKLOG 1024

/*
 * "unix:///csi/csi.sock" and "unix:/csi/csi.sock" -> *ret_socket "/csi/csi.sock";
 * "tcp://1.2.3.4:5" and "1.2.3.4:5" -> *ret_hostport "1.2.3.4:5".
 */
int csi_endpoint_parse(const char *ep, char **ret_socket, char **ret_hostport)
{
	const char *p;

	if (startswith(ep, "unix://")) {
		p = ep + strlen("unix://");
		if (*p != '/')
			return -EINVAL;
	} else if (startswith(ep, "unix:")) {
		p = ep + strlen("unix:");
	} else {
		p = startswith(ep, "tcp://") ? ep + strlen("tcp://") : ep;
		if (strstr(p, "://") || !strchr(p, ':'))
			return -EINVAL;
		*ret_hostport = strdup(p);
		return *ret_hostport ? 0 : -ENOMEM;
	}
	if (!*p)
		return -EINVAL;
	*ret_socket = strdup(p);
	return *ret_socket ? 0 : -ENOMEM;
}

int csi_listen_unix(const char *path, struct stat *ret_st)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = -1;
	size_t len = strlen(path);
	struct stat st;

	if (len >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, len + 1);
	/* A socket left behind by an earlier run goes; anything else at the path stays. */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && unlink(path) < 0 && errno != ENOENT)
		return -errno;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, LISTEN_BACKLOG) < 0 ||
	    lstat(path, ret_st) < 0)
		return -errno;
	return TAKE_FD(fd);
}

/* "host:port", "[v6]:port" or ":port" (all addresses), as gRPC took them. */
int csi_listen_tcp(const char *hostport)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	_cleanup_free_ char *host = strdup(hostport);
	char *colon, *h;
	int fd = -EADDRNOTAVAIL, one = 1, r;

	if (!host)
		return -ENOMEM;
	colon = strrchr(host, ':');
	*colon = 0;
	h = host;
	if (h[0] == '[' && colon > h && colon[-1] == ']') {
		h++;
		colon[-1] = 0;
	}
	r = getaddrinfo(*h ? h : NULL, colon + 1, &hints, &ai);
	if (r != 0)
		return r == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
		if (fd < 0) {
			fd = -errno;
			continue;
		}
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
		    bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, LISTEN_BACKLOG) == 0)
			break;
		r = -errno;
		close(fd);
		fd = r;
	}
	freeaddrinfo(ai);
	return fd;
}
