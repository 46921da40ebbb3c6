/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The clocks, in nanoseconds: one helper instead of a timespec in every file. */
#ifndef IOPF_TIME_UTIL_H
#define IOPF_TIME_UTIL_H

#include <stdint.h>
#include <time.h>

#define NSEC_PER_USEC UINT64_C(1000)
#define NSEC_PER_MSEC UINT64_C(1000000)
#define NSEC_PER_SEC  UINT64_C(1000000000)

static inline uint64_t now_ns(clockid_t clock)
{
	struct timespec ts;

	(void)clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* CLOCK_MONOTONIC: fault latencies, deadlines, rates. */
static inline uint64_t mono_ns(void)
{
	return now_ns(CLOCK_MONOTONIC);
}

#endif /* IOPF_TIME_UTIL_H */
