/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Small helpers every file may use: scope-bound cleanup in the style of
 * systemd, and a few arithmetic helpers.
 */
#ifndef IOPF_UTIL_H
#define IOPF_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* What the hot paths lay their structures out for (x86-64 and arm64 alike). */
#define IOPF_CACHE_LINE 64

#define _cleanup_(f)   __attribute__((cleanup(f)))
#define _unused_       __attribute__((unused))
#define _likely_(x)    __builtin_expect(!!(x), 1)
#define _unlikely_(x)  __builtin_expect(!!(x), 0)
#define _printf_(a, b) __attribute__((format(printf, a, b)))

static inline void freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

/* Close an fd if it is one; keep errno; return -EBADF so "fd = safe_close(fd);" works. */
static inline int safe_close(int fd)
{
	if (fd >= 0) {
		int saved = errno;
		(void)close(fd);
		errno = saved;
	}
	return -EBADF;
}

static inline void closep(int *fd)
{
	safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

/* Take a value out of a cleanup-guarded variable. */
#define TAKE_GENERIC(var, type, nullvalue)                                                         \
	({                                                                                         \
		type *_pvar_ = &(var);                                                             \
		type _var_ = *_pvar_;                                                              \
		*_pvar_ = (nullvalue);                                                             \
		_var_;                                                                             \
	})
#define TAKE_PTR(p) TAKE_GENERIC(p, typeof(p), NULL)
#define TAKE_FD(fd) TAKE_GENERIC(fd, int, -EBADF)

/* Define <type>_freep() for a _free() function that returns NULL. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                    \
	static inline void func##p(type *p)                                                        \
	{                                                                                          \
		if (*p)                                                                            \
			*p = func(*p);                                                             \
	}

/* x rounded down / up to a power-of-two alignment a. */
#define ALIGN_DOWN(x, a) ((x) & ~((typeof(x))(a)-1))
#define ALIGN_UP(x, a)	 ALIGN_DOWN((x) + (typeof(x))(a)-1, (a))
#define IS_ALIGNED(x, a) (((x) & ((typeof(x))(a)-1)) == 0)

static inline bool is_power_of_2(uint64_t x)
{
	return x && !(x & (x - 1));
}

/*
 * Resize the array @p (an lvalue) to @n elements: @p is set to the new array,
 * or on failure left as it was. Return: 0 or -ENOMEM.
 */
#define REALLOC_ARRAY(p, n)                                                                        \
	({                                                                                         \
		typeof(p) _new_ = realloc((p), (n) * sizeof(*(p)));                                \
		_new_ ? ((p) = _new_, 0) : -ENOMEM;                                                \
	})

/* The libc -1/errno convention turned into -errno. */
/* calloc() of one object on lines of its own (free() it): for layouts that count lines. */
static inline void *calloc_lines(size_t size)
{
	size_t n = ALIGN_UP(size, (size_t)IOPF_CACHE_LINE);
	void *p = aligned_alloc(IOPF_CACHE_LINE, n);

	return p ? memset(p, 0, n) : NULL;
}

static inline int negative_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}

#endif /* IOPF_UTIL_H */
