/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Small macros used everywhere: cleanup attributes (systemd style), array sizes,
 * ownership transfer. No project dependencies.
 */

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _noreturn_ __attribute__((noreturn))

static inline void freep(void *p)
{
	free(*(void **)p);
}

static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/* Defines type_freep() so that `_cleanup_(type_freep)` frees a pointer to it. */
#define DEFINE_CLEANUP_FUNC(type, func)                \
	static inline void func##p(type **p)           \
	{                                              \
		if (*p)                                \
			func(*p);                      \
	}

/* Take ownership of a pointer away from a cleanup variable. */
#define TAKE_PTR(ptr)                                  \
	({                                             \
		__typeof__(ptr) _ptr_ = (ptr);         \
		(ptr) = NULL;                          \
		_ptr_;                                 \
	})

#define TAKE_FD(fd)                                    \
	({                                             \
		int _fd_ = (fd);                       \
		(fd) = -1;                             \
		_fd_;                                  \
	})

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Round x up to a multiple of a (a > 0); returns 0 on overflow. */
static inline unsigned long long round_up_u64(unsigned long long x, unsigned long long a)
{
	unsigned long long r = x % a;
	if (r == 0)
		return x;
	if (x > ~0ULL - (a - r))
		return 0;
	return x + (a - r);
}

#define KiB (1024ULL)
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)
