/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gRPC server's endpoint: parsing the -endpoint flag and making the
 * listening socket. Shared by both transports (transport_h2.c, transport.c).
 */
#pragma once

#include <sys/stat.h>

/**
 * csi_endpoint_parse() - "unix:///p", "unix:/p" -> *ret_socket "/p";
 * "tcp://h:p", "h:p" -> *ret_hostport "h:p". -EINVAL for anything else.
 */
int csi_endpoint_parse(const char *ep, char **ret_socket, char **ret_hostport);

/** csi_listen_unix() - a non-blocking listening socket at path (a stale socket there is
 * removed, anything else is left and fails); *ret_st is the socket file's stat. */
int csi_listen_unix(const char *path, struct stat *ret_st);

/** csi_listen_tcp() - a non-blocking listening socket on "host:port", "[v6]:port" or ":port". */
int csi_listen_tcp(const char *hostport);
