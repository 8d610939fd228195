/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "basic/arena.h"
#include "basic/macro.h"

/*
 * The gRPC transport (transport.c is the only file that includes gRPC
 * headers). It serves a table of methods with protobuf-c request/response
 * messages. Fast methods run inline on the completion-queue threads; slow ones
 * on a worker pool, so that Probe and GetCapacity answer at once while mkfs
 * runs. Every call is logged once, with method, volume, duration and status.
 */

/* gRPC status codes (the numbering is part of the gRPC protocol). */
enum csi_code {
	CSI_CODE_OK = 0,
	CSI_CODE_CANCELLED = 1,
	CSI_CODE_UNKNOWN = 2,
	CSI_CODE_INVALID_ARGUMENT = 3,
	CSI_CODE_DEADLINE_EXCEEDED = 4,
	CSI_CODE_NOT_FOUND = 5,
	CSI_CODE_ALREADY_EXISTS = 6,
	CSI_CODE_PERMISSION_DENIED = 7,
	CSI_CODE_RESOURCE_EXHAUSTED = 8,
	CSI_CODE_FAILED_PRECONDITION = 9,
	CSI_CODE_ABORTED = 10,
	CSI_CODE_OUT_OF_RANGE = 11,
	CSI_CODE_UNIMPLEMENTED = 12,
	CSI_CODE_INTERNAL = 13,
	CSI_CODE_UNAVAILABLE = 14,
	CSI_CODE_DATA_LOSS = 15,
	CSI_CODE_UNAUTHENTICATED = 16,
};

const char *csi_code_name(enum csi_code code);

/* One call, as a handler sees it. */
struct csi_call {
	const char *method;  /* "CreateVolume" */
	struct arena *arena; /* for the response and anything it points to */
	char volume[128];    /* set by the handler for the log line */
	enum csi_code code;
	char message[1024];
};

/**
 * csi_fail() - set the call's status and message; returns -1 so a handler can
 * `return csi_fail(call, CSI_CODE_NOT_FOUND, "volume %s not found", id);`.
 */
int csi_fail(struct csi_call *call, enum csi_code code, const char *fmt, ...) _printf_(3, 4);

/**
 * csi_fail_errno() - map -errno to a status: ENOENT->NOT_FOUND, EEXIST->ALREADY_EXISTS,
 * ENOSPC->RESOURCE_EXHAUSTED, EBUSY->FAILED_PRECONDITION, EINVAL->INVALID_ARGUMENT,
 * ERANGE->OUT_OF_RANGE, ENOMEM->RESOURCE_EXHAUSTED, EOPNOTSUPP->UNIMPLEMENTED,
 * ETIMEDOUT->DEADLINE_EXCEEDED, anything else INTERNAL. The message gets ": <strerror>".
 */
int csi_fail_errno(struct csi_call *call, int r, const char *fmt, ...) _printf_(3, 4);

enum csi_code csi_code_from_errno(int r);

/*
 * A handler: fills *ret_resp (allocated in call->arena) and returns 0, or
 * returns < 0 after csi_fail(). The request is borrowed.
 */
typedef int (*csi_handler_fn)(struct csi_call *call, void *userdata, const ProtobufCMessage *req,
			      ProtobufCMessage **ret_resp);

struct csi_method {
	const char *path; /* "/csi.v1.Identity/Probe" */
	const ProtobufCMessageDescriptor *input;
	csi_handler_fn handler;
	bool slow;
};

/* Called after every call, e.g. for metrics, with the full method path ("/csi.v1.Node/NodeStageVolume"). */
typedef void (*csi_observer_fn)(const char *method, enum csi_code code, double seconds, void *userdata);

struct csi_server_config {
	const char *endpoint; /* unix:///path, unix:/path, tcp://host:port, host:port */
	const struct csi_method *methods;
	size_t n_methods;
	void *userdata;
	csi_observer_fn observer;
	void *observer_userdata;
	size_t max_request_bytes; /* larger requests get RESOURCE_EXHAUSTED */
	unsigned workers;         /* threads for slow methods */
	/* Nice value for the thread that runs the fast methods (0: unchanged).
	 * Workers, and the tools they run, keep the process's own. Raising it
	 * needs CAP_SYS_NICE; without, the loop runs as it is. */
	int loop_nice;
};

struct csi_server;

/**
 * csi_server_start() - bind the endpoint and start serving.
 *
 * Connections are accepted by the transport itself (not by gRPC's listener),
 * which keeps FD_RESERVE descriptors free and never stops accepting for good.
 * Per connection: at most 100 concurrent calls, closed after 5 minutes
 * without a call, keepalive pings while calls run.
 */
int csi_server_start(const struct csi_server_config *config, struct csi_server **ret);

/**
 * csi_server_check() - whether clients can still connect, for the liveness check.
 * @s: the server.
 * @reason: filled with why not, in one line.
 * @reason_len: size of @reason.
 *
 * Cheap (a few system calls, no connection); safe from any thread.
 *
 * Return: 0; -EMFILE (or the errno accept4() failed with) when connections
 * could not be accepted for a second or more, or no file descriptor is left
 * for a new one; -ENOENT when the unix socket was removed or replaced.
 */
int csi_server_check(struct csi_server *s, char *reason, size_t reason_len);

/**
 * csi_server_stop() - stop accepting calls, let in-flight calls finish (up to
 * grace_ms, then cancel them), free everything and remove the unix socket.
 */
void csi_server_stop(struct csi_server *s, int grace_ms);
