/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "server.h"

const char *csi_code_name(enum csi_code code)
{
	static const char *const names[] = {
		"OK",	       "Canceled",	     "Unknown",		 "InvalidArgument",  "DeadlineExceeded",
		"NotFound",    "AlreadyExists",	     "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
		"Aborted",     "OutOfRange",	     "Unimplemented",	 "Internal",	      "Unavailable",
		"DataLoss",    "Unauthenticated",
	};
	/* The names are grpc-go's codes.Code strings, which csi-lib-utils puts in metrics labels. */
	if ((unsigned)code < sizeof(names) / sizeof(names[0]))
		return names[code];
	return "Unknown";
}

enum csi_code csi_code_from_errno(int r)
{
	switch (r < 0 ? -r : r) {
	case ENOENT:
	case ENODEV:
		return CSI_CODE_NOT_FOUND;
	case EEXIST:
		return CSI_CODE_ALREADY_EXISTS;
	case ENOSPC:
	case ENOMEM:
	case EMFILE:
	case ENFILE:
		return CSI_CODE_RESOURCE_EXHAUSTED;
	case EBUSY:
		return CSI_CODE_FAILED_PRECONDITION;
	case EINVAL:
		return CSI_CODE_INVALID_ARGUMENT;
	case ERANGE:
		return CSI_CODE_OUT_OF_RANGE;
	case EOPNOTSUPP:
		return CSI_CODE_UNIMPLEMENTED;
	case ETIMEDOUT:
		return CSI_CODE_DEADLINE_EXCEEDED;
	case EAGAIN:
		return CSI_CODE_UNAVAILABLE;
	default:
		return CSI_CODE_INTERNAL;
	}
}

int csi_fail(struct csi_call *call, enum csi_code code, const char *fmt, ...)
{
	va_list ap;

	call->code = code;
	va_start(ap, fmt);
	vsnprintf(call->message, sizeof(call->message), fmt, ap);
	va_end(ap);
	return -1;
}

int csi_fail_errno(struct csi_call *call, int r, const char *fmt, ...)
{
	va_list ap;
	size_t len;
	char buf[128];

	call->code = csi_code_from_errno(r);
	va_start(ap, fmt);
	vsnprintf(call->message, sizeof(call->message), fmt, ap);
	va_end(ap);
	len = strlen(call->message);
	snprintf(call->message + len, sizeof(call->message) - len, ": %s",
		 strerror_r(r < 0 ? -r : r, buf, sizeof(buf)));
	return -1;
}
